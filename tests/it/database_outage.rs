//! The database going away under a running server: requests are answered
//! 503 `M_UNKNOWN` with a retry hint after a short wait instead of stalling
//! into a 500, and work again once the database is back, without a restart.
//!
//! PostgreSQL only: the server reaches it through a [`Relay`] the test cuts
//! (as if PostgreSQL stopped) or freezes (as if its host hung or the network
//! path dropped: connections stay open and nothing answers). SQLite runs
//! in-process and cannot go away; the error mapping has unit tests.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::json;
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{Mutex, watch},
    task::JoinSet,
};

use crate::harness::{Backend, Response, TestClient, TestServer, postgres_admin_url};

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_get_503_while_the_database_is_away_and_work_once_it_is_back() {
        if crate::harness::postgres_admin_url().is_some() {
            crate::harness::bounded(super::sends_get_503_while_the_database_is_away_and_work_once_it_is_back())
                .await
        }
    }
}

/// A send that has not been answered after this long stalled. Generous: not
/// a speed check, only "answered, not hung" (the server's waits are a second
/// for a connection and three for a statement's answer here).
const ANSWERED_WITHIN: Duration = Duration::from_secs(30);

async fn sends_get_503_while_the_database_is_away_and_work_once_it_is_back() {
    let admin_url = postgres_admin_url().expect("PostgreSQL is available");
    let relay = Relay::start(postgres_address(&admin_url)).await;
    let server = TestServer::start_with(Backend::Postgres, |c| {
        let url = c.database_url.clone().expect("the harness set a PostgreSQL URL");
        c.database_url = Some(with_address(&url, relay.addr));
        c.database_acquire_timeout_ms = 1000;
        c.database_statement_timeout_ms = 1000;
    })
    .await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    alice.send_text(&room, "before").await;

    // PostgreSQL stops: its connections close and new ones are refused.
    relay.cut().await;
    let during = send(&alice, &room, "during the outage", "txn-outage").await;
    assert_unavailable(&during);
    // Again, now with no connection left to try: the wait for one ends it.
    assert_unavailable(&send(&alice, &room, "still down", "txn-down").await);

    // PostgreSQL is back: the retry of the send that failed goes through,
    // once (its transaction ID is the same), and so do new sends.
    relay.resume().await;
    let retried = send_until_answered(&alice, &room, "during the outage", "txn-outage").await;
    for i in 0..3 {
        send(&alice, &room, &format!("after {i}"), &format!("txn-after-{i}")).await.ok();
    }

    // Its host hangs: open connections stop answering, new ones get no reply.
    relay.freeze();
    assert_unavailable(&send(&alice, &room, "frozen", "txn-frozen").await);
    assert_unavailable(&send(&alice, &room, "frozen again", "txn-frozen-2").await);
    relay.resume().await;
    send_until_answered(&alice, &room, "thawed", "txn-thawed").await;

    // The backends go away under a live server (an administrator's
    // pg_terminate_backend, a restart): 503 or a fresh connection, never 500.
    terminate_backends(&admin_url, &server.database_url()).await;
    send_until_answered(&alice, &room, "reconnected", "txn-reconnected").await;

    let messages = alice.all_messages(&room, 50).await;
    let bodies: Vec<&str> = messages
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        ["before", "during the outage", "after 0", "after 1", "after 2", "thawed", "reconnected"],
        "every send answered 200 is there once, and none answered 503 but the retried one"
    );
    let retried_event = messages.iter().find(|e| e["content"]["body"] == "during the outage");
    assert_eq!(retried_event.expect("the retried send")["event_id"], retried.as_str());
}

/// `PUT /send` with this transaction ID, failing if it is not answered in
/// [`ANSWERED_WITHIN`].
async fn send(client: &TestClient, room: &str, body: &str, txn: &str) -> Response {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let request = client.put(&path, json!({ "msgtype": "m.text", "body": body }));
    tokio::time::timeout(ANSWERED_WITHIN, request)
        .await
        .unwrap_or_else(|_| panic!("the send of {body:?} stalled for {ANSWERED_WITHIN:?}"))
}

/// Sends as a client does while the database comes back: a 503 is retried
/// with the same transaction ID after its `retry_after_ms`. Returns the
/// event ID.
async fn send_until_answered(client: &TestClient, room: &str, body: &str, txn: &str) -> String {
    let deadline = tokio::time::Instant::now() + ANSWERED_WITHIN;
    loop {
        let response = send(client, room, body, txn).await;
        if response.status == 200 {
            return response.body["event_id"].as_str().expect("event_id").to_owned();
        }
        assert_unavailable(&response);
        assert!(tokio::time::Instant::now() < deadline, "sends still fail: {}", response.body);
        let wait = response.body["retry_after_ms"].as_u64().expect("retry_after_ms");
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// 503 `M_UNKNOWN`, and when to come back in both the body and the header.
#[track_caller]
fn assert_unavailable(response: &Response) {
    response.assert_error(503, "M_UNKNOWN");
    let retry_after_ms = response.body["retry_after_ms"].as_u64().expect("retry_after_ms in the body");
    assert!(retry_after_ms > 0, "{}", response.body);
    let header = response.headers.get("retry-after").expect("Retry-After header");
    assert!(header.to_str().expect("ASCII").parse::<u64>().expect("seconds") > 0);
}

/// Ends every connection the server has to its database, as PostgreSQL
/// does to them when it shuts down (SQLSTATE 57P01).
async fn terminate_backends(admin_url: &str, database_url: &str) {
    use sqlx::Connection;
    let name = database_url.rsplit('/').next().expect("a database name");
    let mut admin = sqlx::PgConnection::connect(admin_url).await.expect("admin connection");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .execute(&mut admin)
        .await
        .expect("terminate the server's backends");
}

/// `host:port` of the PostgreSQL server in `url`.
fn postgres_address(url: &str) -> String {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") }
}

/// `url` with its host and port replaced by `addr`.
fn with_address(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    format!("{scheme}://{user}{addr}/{path}")
}

/// A TCP relay in front of PostgreSQL: up, cut (connections closed, new
/// ones refused) or frozen (connections open, nothing relayed).
struct Relay {
    addr: SocketAddr,
    upstream: String,
    frozen: watch::Sender<bool>,
    /// The accept loop and every relayed connection; dropping ends them.
    tasks: Arc<Mutex<JoinSet<()>>>,
    /// While cut: the relay's port, bound but not listening, so that
    /// connecting is refused and no other test can take the port.
    parked: Mutex<Option<TcpSocket>>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let relay = Self {
            addr: listener.local_addr().expect("relay address"),
            upstream,
            frozen: watch::channel(false).0,
            tasks: Arc::new(Mutex::new(JoinSet::new())),
            parked: Mutex::new(None),
        };
        relay.listen(listener).await;
        relay
    }

    async fn listen(&self, listener: TcpListener) {
        let (upstream, frozen, tasks) = (self.upstream.clone(), self.frozen.clone(), Arc::clone(&self.tasks));
        self.tasks.lock().await.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, frozen) = (upstream.clone(), frozen.subscribe());
                tasks.lock().await.spawn(relay(client, upstream, frozen));
            }
        });
    }

    /// Closes every connection and stops listening: connecting is refused.
    async fn cut(&self) {
        let mut parked = self.parked.lock().await;
        if parked.is_none() {
            self.tasks.lock().await.shutdown().await;
            let socket = TcpSocket::new_v4().expect("socket");
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            socket.bind(self.addr).expect("keep the relay's port");
            *parked = Some(socket);
        }
    }

    /// Relays nothing more, on open connections or new ones, and closes
    /// none: whoever waits for an answer waits.
    fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Back to relaying, from a clean slate: what was open is closed.
    async fn resume(&self) {
        self.cut().await;
        self.frozen.send_replace(false);
        let socket = self.parked.lock().await.take().expect("parked while cut");
        self.listen(socket.listen(64).expect("listen on the relay's port again")).await;
    }
}

/// Relays one connection until either side closes or the relay freezes;
/// frozen, it holds both sockets open, relaying nothing, until it is ended.
async fn relay(mut client: TcpStream, upstream: String, mut frozen: watch::Receiver<bool>) {
    let freeze = async move {
        let _ = frozen.wait_for(|frozen| *frozen).await;
    };
    tokio::pin!(freeze);
    let connected = tokio::select! {
        biased;
        () = &mut freeze => return std::future::pending().await,
        connected = TcpStream::connect(upstream) => connected,
    };
    let Ok(mut server) = connected else { return };
    tokio::select! {
        // Checked first, so that nothing written after the freeze gets through.
        biased;
        () = freeze => std::future::pending().await,
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}
