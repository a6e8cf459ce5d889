//! The integration-test harness: a real Tessera on an ephemeral port over a
//! fresh database, and a small HTTP client that speaks to it as a Matrix
//! client does.
//!
//! PostgreSQL runs when `TESSERA_TEST_POSTGRES` (an admin URL) is set — then
//! it must work — or when a server answers on 127.0.0.1:5432. Each test gets
//! its own database, dropped when the server is dropped.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde_json::{Value, json};
use tessera::{Config, Listeners};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A scenario that has not finished after this long is stuck: it fails
/// (naming itself) instead of hanging the whole run. Not a speed check.
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);

/// Runs a scenario, failing it if it is stuck (see [`SCENARIO_LIMIT`]).
pub async fn bounded(scenario: impl std::future::Future<Output = ()>) {
    // reqwest's TLS needs rustls' process-wide crypto provider before any
    // client is built (the server installs it too, but may start later).
    tessera_federation::client::install_crypto_provider();
    if tokio::time::timeout(SCENARIO_LIMIT, scenario).await.is_err() {
        panic!("the scenario was still running after {SCENARIO_LIMIT:?}: stuck");
    }
}

/// Runs each named scenario `async fn name(backend: Backend)` on both
/// databases, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::harness::bounded(super::$name($crate::harness::Backend::Sqlite)).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::harness::postgres_admin_url().is_some() {
                        $crate::harness::bounded(super::$name($crate::harness::Backend::Postgres)).await
                    }
                }
            )*
        }
    };
}

/// The PostgreSQL admin URL, or `None` to skip PostgreSQL tests.
pub fn postgres_admin_url() -> Option<String> {
    if let Ok(url) = std::env::var("TESSERA_TEST_POSTGRES") {
        return Some(url);
    }
    let reachable = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], 5432)),
        Duration::from_millis(200),
    )
    .is_ok();
    if reachable {
        Some("postgres://postgres@127.0.0.1:5432/postgres".to_owned())
    } else {
        eprintln!("PostgreSQL not found (set TESSERA_TEST_POSTGRES): skipping the PostgreSQL variant");
        None
    }
}

/// A database made for one test; dropped with it.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    async fn create() -> Self {
        let admin_url = postgres_admin_url().expect("PostgreSQL tests run only when it is available");
        let name = format!("tessera_test_{}", rand_suffix());
        let mut conn = connect_admin(&admin_url).await;
        sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        Self { admin_url, name }
    }

    fn url(&self) -> String {
        let base = self.admin_url.rsplit_once('/').map_or(self.admin_url.as_str(), |(base, _)| base);
        format!("{base}/{}", self.name)
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connect to PostgreSQL at {url}: {e}"))
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async; a short-lived runtime on its own thread
        // issues the DROP (FORCE ends the server's pooled connections).
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = connect_admin(&url).await;
                sqlx::Executor::execute(
                    &mut conn,
                    sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                )
                .await
                .ok()
            })
        })
        .join();
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}_{}_{}", std::process::id(), nanos % 1_000_000_000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A certificate authority for the servers of one test: it signs their
/// federation certificates (for `localhost` and 127.0.0.1), and they trust
/// it.
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Tessera test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write CA");
        Self { params, key, dir }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A new certificate and key for `localhost`: their PEM files.
    pub fn issue(&self) -> (PathBuf, PathBuf) {
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate params");
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        let name = rand_suffix();
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}

/// A running server and everything it owns.
pub struct TestServer {
    pub base: String,
    /// The federation listener's address, when the config enables it.
    pub federation_addr: Option<SocketAddr>,
    pub config: Config,
    /// A federation listener bound before the server starts (so that its
    /// port can be in the server name), used by the first launch.
    federation_listener: Option<TcpListener>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tessera::ServeError>>>,
    data_dir: tempfile::TempDir,
    /// Held so the database is dropped with the server.
    _database: Option<PgDatabase>,
}

/// The configuration tests start from: rate limits off, registration open.
pub fn test_config(data_dir: PathBuf) -> Config {
    let mut config =
        Config { server_name: "tessera.test".into(), data_dir, log: "warn".into(), ..Config::default() };
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.allow_registration = true;
    for limit in [
        &mut config.rate_limits.login,
        &mut config.rate_limits.failed_login,
        &mut config.rate_limits.registration,
        &mut config.rate_limits.general,
    ] {
        limit.per_second = 0.0;
    }
    config
}

impl TestServer {
    /// Starts a server with the test configuration.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server after `adjust` has changed the test configuration.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut server = Self::prepare(backend, adjust).await;
        server.launch().await.expect("server starts");
        server
    }

    /// A server configured, with its database, not started yet.
    async fn prepare(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(data_dir.path().to_path_buf());
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let db = PgDatabase::create().await;
                config.database_url = Some(db.url());
                Some(db)
            }
        };
        adjust(&mut config);
        Self {
            base: String::new(),
            federation_addr: None,
            config,
            federation_listener: None,
            stop: None,
            task: None,
            data_dir,
            _database: database,
        }
    }

    async fn launch(&mut self) -> Result<(), tessera::ServeError> {
        let listener = TcpListener::bind(self.config.listen).await.expect("bind 127.0.0.1:0");
        self.base = format!("http://{}", listener.local_addr().expect("local addr"));
        let federation = match self.config.federation_listen {
            Some(_) if self.federation_listener.is_some() => self.federation_listener.take(),
            Some(addr) => {
                let listener = TcpListener::bind(addr).await.expect("bind federation");
                self.federation_addr = Some(listener.local_addr().expect("local addr"));
                Some(listener)
            }
            None => None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = Listeners { client: listener, federation };
        let task = tokio::spawn(tessera::serve(self.config.clone(), listeners, async move {
            let _ = stopped.await;
        }));
        self.stop = Some(stop);
        // Wait until it answers (or has failed).
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if task.is_finished() {
                return task.await.expect("server task");
            }
            if http.get(format!("{}/health", self.base)).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "server did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.task = Some(task);
        Ok(())
    }

    /// A server that federates over loopback: named `localhost:<port>` after
    /// its federation listener, with a certificate from `ca`, trusting
    /// `ca`, and allowed to reach 127.0.0.0/8.
    pub async fn start_federating(backend: Backend, ca: &TestCa) -> Self {
        Self::start_federating_with(backend, ca, |_| {}).await
    }

    /// [`Self::start_federating`], after `adjust` has changed the config.
    pub async fn start_federating_with(
        backend: Backend,
        ca: &TestCa,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind federation");
        let addr = listener.local_addr().expect("local addr");
        let (cert, key) = ca.issue();
        let mut server = Self::prepare(backend, |c| {
            c.server_name = format!("localhost:{}", addr.port());
            c.federation_listen = Some(addr);
            c.tls_certificate = Some(cert);
            c.tls_private_key = Some(key);
            c.federation_trusted_ca = Some(ca.ca_path());
            c.outbound_allowed_ranges = "127.0.0.0/8".into();
            adjust(c);
        })
        .await;
        server.federation_listener = Some(listener);
        server.launch().await.expect("server starts");
        server
    }

    /// The federation listener's port.
    pub fn federation_port(&self) -> u16 {
        self.config.federation_listen.expect("a federating server").port()
    }

    /// The server's name.
    pub fn server_name(&self) -> &str {
        &self.config.server_name
    }

    /// Stops the server gracefully and returns how `serve` ended.
    pub async fn stop(&mut self) -> Result<(), tessera::ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("graceful shutdown finishes")
                .expect("server task"),
            None => Ok(()),
        }
    }

    /// Stops and starts again on the same data directory and database.
    pub async fn restart(&mut self) {
        self.stop().await.expect("clean stop");
        self.launch().await.expect("server restarts");
    }

    /// Stops, then tries to start again; returns the start error if any.
    pub async fn restart_result(&mut self) -> Result<(), tessera::ServeError> {
        self.stop().await.expect("clean stop");
        self.launch().await
    }

    /// Runs the `tessera` binary as an operator would, on this server's
    /// data directory and database (stop the in-process server first), on
    /// a port of its own; returns the process, its log on stdout, and its
    /// base URL once `/health` answers.
    pub async fn spawn_binary(&self) -> (tokio::process::Child, String) {
        self.spawn_binary_with(&[]).await
    }

    /// [`TestServer::spawn_binary`] with more `TESSERA_*` variables.
    pub async fn spawn_binary_with(&self, env: &[(&str, &str)]) -> (tokio::process::Child, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .env_clear()
            .env("TESSERA_SERVER_NAME", "tessera.test")
            .env("TESSERA_LISTEN", format!("127.0.0.1:{port}"))
            .env("TESSERA_DATA_DIR", self.data_dir())
            .env("TESSERA_DATABASE_URL", self.database_url())
            .env("TESSERA_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tessera");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !reqwest::get(format!("{base}/health")).await.is_ok_and(|r| r.status().is_success()) {
            assert!(tokio::time::Instant::now() < deadline, "tessera did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (child, base)
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// The database URL the server uses.
    pub fn database_url(&self) -> String {
        self.config.database_url()
    }

    pub fn client(&self) -> TestClient {
        TestClient {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: None,
            user_id: None,
            device_id: None,
        }
    }

    /// Registers `name` with `password` through the UIA dummy flow.
    pub async fn register(&self, name: &str, password: &str) -> TestClient {
        let mut client = self.client();
        client.register(name, password).await;
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // The database guard (a field) drops after this, with the server gone.
    }
}

/// A response as a client sees it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    /// Asserts a success and returns the body.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {} {}", self.status, self.body);
        self.body
    }

    /// Asserts the spec's error shape: this status and errcode, and a
    /// human-readable `error`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, errcode: &str) {
        assert_eq!(
            (self.status, self.body["errcode"].as_str()),
            (status, Some(errcode)),
            "body: {}",
            self.body
        );
        assert!(self.body["error"].is_string(), "error message missing: {}", self.body);
    }
}

/// A response whose body may be anything (media).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl RawResponse {
    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The body as JSON (errors, upload answers).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.bytes)))
    }

    /// Asserts the spec's error shape.
    #[track_caller]
    pub fn assert_error(&self, status: u16, errcode: &str) {
        let body = self.json();
        assert_eq!((self.status, body["errcode"].as_str()), (status, Some(errcode)), "body: {body}");
        assert!(body["error"].is_string(), "error message missing: {body}");
    }
}

/// A client of the test server.
#[derive(Clone)]
pub struct TestClient {
    http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
}

impl TestClient {
    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::send(request).await
    }

    /// Sends a built request; the response must be the spec's JSON or empty.
    async fn send(request: reqwest::RequestBuilder) -> Response {
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("response is not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Response { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.request(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str, body: Value) -> Response {
        self.request(reqwest::Method::DELETE, path, Some(body)).await
    }

    /// Sends raw bytes (for malformed-body tests).
    pub async fn post_raw(&self, path: &str, body: &'static str) -> Response {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Response { status, headers, body }
    }

    /// Sends `body` as it is, with any method (for bodies `json!` cannot
    /// write, like lone surrogates or huge numbers); the response must be
    /// the spec's JSON or empty.
    pub async fn send_raw(&self, method: reqwest::Method, path: &str, body: impl Into<String>) -> Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.into());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        Self::send(request).await
    }

    /// Sends `body` as raw bytes with these headers (media uploads) and
    /// returns the response as it came (media downloads are not JSON).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> RawResponse {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body").to_vec();
        RawResponse { status, headers, bytes }
    }

    /// Uploads `bytes` as `content_type` (named `file_name` if given);
    /// returns the `mxc://` URI.
    pub async fn upload(&self, bytes: &[u8], content_type: &str, file_name: Option<&str>) -> String {
        let path = match file_name {
            Some(name) => format!("/_matrix/media/v3/upload?filename={}", encode_all(name)),
            None => "/_matrix/media/v3/upload".to_owned(),
        };
        let response =
            self.raw(reqwest::Method::POST, &path, &[("content-type", content_type)], bytes.to_vec()).await;
        assert_eq!(response.status, 200, "upload: {}", String::from_utf8_lossy(&response.bytes));
        response.json()["content_uri"].as_str().expect("content_uri").to_owned()
    }

    fn adopt(&mut self, body: &Value) {
        self.token = body["access_token"].as_str().map(str::to_owned);
        self.user_id = body["user_id"].as_str().map(str::to_owned);
        self.device_id = body["device_id"].as_str().map(str::to_owned);
    }

    /// Creates a room with `body` and returns its ID.
    pub async fn create_room(&self, body: Value) -> String {
        let created = self.post("/_matrix/client/v3/createRoom", body).await.ok();
        created["room_id"].as_str().expect("room_id").to_owned()
    }

    /// Sends an `m.room.message` text with a fresh transaction ID; returns
    /// the event ID.
    pub async fn send_text(&self, room_id: &str, body: &str) -> String {
        let txn = format!("txn-{}", next_txn());
        let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
        let sent = self.put(&path, json!({ "msgtype": "m.text", "body": body })).await.ok();
        sent["event_id"].as_str().expect("event_id").to_owned()
    }

    /// Joins a room by ID or alias.
    pub async fn join(&self, room: &str) -> Response {
        self.post(&format!("/_matrix/client/v3/join/{}", encode(room)), json!({})).await
    }

    /// Every event of a room the client can see, oldest first, by paging
    /// `/messages` forwards `limit` at a time.
    pub async fn all_messages(&self, room_id: &str, limit: usize) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..10_000 {
            let from_param = from.as_ref().map(|f| format!("&from={f}")).unwrap_or_default();
            let page = self
                .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=f&limit={limit}{from_param}"))
                .await
                .ok();
            events.extend(page["chunk"].as_array().expect("chunk").iter().cloned());
            match page["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => return events,
            }
        }
        panic!("pagination did not end");
    }

    /// `GET /sync` with `since` and extra query parameters (`&...`).
    pub async fn sync(&self, since: Option<&str>, query: &str) -> Value {
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        self.get(&format!("/_matrix/client/v3/sync?timeout=0{since}{query}")).await.ok()
    }

    /// Registers through the UIA dummy flow and adopts the new session.
    pub async fn register(&mut self, name: &str, password: &str) -> Value {
        let body = self.register_with(json!({ "username": name, "password": password })).await.ok();
        self.adopt(&body);
        body
    }

    /// `POST /register` with `body`, completing the dummy stage.
    pub async fn register_with(&self, mut body: Value) -> Response {
        let challenge = self.post("/_matrix/client/v3/register", body.clone()).await;
        if challenge.status != 401 {
            return challenge;
        }
        body["auth"] = json!({ "type": "m.login.dummy", "session": challenge.body["session"] });
        self.post("/_matrix/client/v3/register", body).await
    }

    /// Logs in with a password and adopts the session.
    pub async fn login(&mut self, user: &str, password: &str) -> Response {
        let response = self
            .post(
                "/_matrix/client/v3/login",
                json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user }, "password": password }),
            )
            .await;
        if response.status == 200 {
            self.adopt(&response.body);
        }
        response
    }

    /// Completes a password UIA for a sensitive request: sends `body`,
    /// expects the 401 challenge, answers it with `password`.
    pub async fn with_password_uia(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
        password: &str,
    ) -> Response {
        let challenge = self.request(method.clone(), path, Some(body.clone())).await;
        assert_eq!(challenge.status, 401, "expected a UIA challenge: {}", challenge.body);
        assert_eq!(challenge.body["flows"][0]["stages"][0], "m.login.password");
        let mut body = body;
        body["auth"] = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": self.user_id.clone().expect("logged in") },
            "password": password,
            "session": challenge.body["session"],
        });
        self.request(method, path, Some(body)).await
    }
}

pub fn next_txn() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Percent-encodes a room ID or alias for a path segment.
/// Percent-encodes every byte but ASCII letters and digits.
pub fn encode_all(text: &str) -> String {
    text.bytes()
        .map(|b| match b.is_ascii_alphanumeric() {
            true => char::from(b).to_string(),
            false => format!("%{b:02X}"),
        })
        .collect()
}

pub fn encode(segment: &str) -> String {
    segment.replace('%', "%25").replace('#', "%23").replace('!', "%21").replace(':', "%3A")
}
