//! tessera: the homeserver binary's library half.
//!
//! Owns the wiring: configuration into per-crate settings, the store, the
//! services built from it, the routers, the listeners, and
//! [`serve`]`(config, listeners, shutdown)` which runs until `shutdown`
//! resolves, finishes in-flight requests and closes the database. The
//! integration tests call exactly what `main` calls.

pub mod config;
mod connection_limit;
mod connections;
mod signing_key;
mod tls;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tessera_client_api::{ClientServices, ClientState, DiscoverySettings};
use tessera_core::ServerSigningKey;
use tessera_federation::{
    FederationState,
    client::{ClientSettings, FederationClient},
    outbound::OutboundRules,
};
use tessera_service::{
    account_data::AccountData,
    accounts::Accounts,
    auth::Authenticator,
    delivery::Delivery,
    devices::Devices,
    federation::{EduReceivers, Outbox, Remote, ServerKeys, Transactions},
    key_backup::KeyBackup,
    keys::{DeviceLists, Keys},
    media::{LocalBlobs, Media},
    notifications::Notifications,
    notifier::Notifier,
    passwords::Passwords,
    presence::Presence,
    profiles::Profiles,
    push_rules::PushRules,
    rate_limit::RateLimiter,
    receipts::Receipts,
    rooms::{Rooms, RoomsFederation},
    shared_secret::SharedSecretRegistration,
    streams::StreamAllocator,
    sync::{SyncService, SyncSources},
    to_device::ToDevice,
    typing::Typing,
    uia::Uia,
};
use tessera_storage::{PoolSettings, Store};
use tessera_web::Gate;
use tokio::net::TcpListener;

pub use config::Config;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("database: {0}")]
    Database(#[from] tessera_storage::OpenError),
    #[error("database: {0}")]
    Storage(String),
    #[error("signing key: {0}")]
    SigningKey(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// The sockets the server answers on, bound before [`serve`] so that tests
/// can bind port 0 and learn the port.
pub struct Listeners {
    pub client: TcpListener,
    pub federation: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses in `config`.
    pub async fn bind(config: &Config) -> Result<Self, ServeError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })
        };
        let client = bind(config.listen).await?;
        let federation = match config.federation_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self { client, federation })
    }
}

/// Opens the database, builds the services and serves until `shutdown`.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = Store::open(&config.database_url(), config.pool_settings()).await?;
    let result = serve_with_store(config, listeners, store.clone(), shutdown).await;
    // Every in-flight request has finished by now; close cleanly so SQLite
    // checkpoints its WAL and PostgreSQL sees orderly disconnects.
    store.close().await;
    tracing::info!("database closed; bye");
    result
}

async fn serve_with_store(
    config: Config,
    listeners: Listeners,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let server_name: ruma::OwnedServerName = config
        .server_name
        .as_str()
        .try_into()
        .map_err(|e| ServeError::SigningKey(format!("server_name: {e}")))?;
    let signing_key = Arc::new(signing_key::load_or_generate(&config.data_dir, server_name.clone())?);
    let remote: Arc<dyn Remote> = Arc::new(federation_client(&config, signing_key.clone())?);
    let server_keys = ServerKeys::new(
        store.clone(),
        remote.clone(),
        signing_key.clone(),
        config.trusted_key_servers().map_err(|e| ServeError::Tls(e.to_string()))?,
        config.server_policy(),
    );

    let rate_limiter = RateLimiter::new(config.rate_limits.clone());
    let gate = Gate {
        authenticator: Authenticator::new(store.clone()),
        rate_limiter: rate_limiter.clone(),
        max_body_bytes: config.max_request_bytes,
        trust_forwarded_for: config.trust_forwarded_for,
        server_keys: server_keys.clone(),
    };
    let passwords = Passwords::new(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let uia = Uia::new(store.clone(), passwords.clone(), rate_limiter.clone(), server_name.clone());
    let streams = StreamAllocator::start(Arc::new(store.clone()))
        .await
        .map_err(|e| ServeError::Storage(e.to_string()))?;
    let notifier = Notifier::new(store.clone());
    let account_data = AccountData::new(store.clone(), streams.clone(), notifier.clone());
    let push_rules = PushRules::new(store.clone(), account_data.clone());
    let outbox =
        Outbox::start(store.clone(), remote.clone()).await.map_err(|e| ServeError::Storage(e.to_string()))?;
    let rooms = Rooms::new(
        store.clone(),
        signing_key.clone(),
        config.default_room_version(),
        streams.clone(),
        notifier.clone(),
        push_rules.clone(),
        RoomsFederation { outbox: outbox.clone(), server_keys: server_keys.clone(), remote: remote.clone() },
    );
    let device_lists = DeviceLists::new(store.clone(), streams.clone(), notifier.clone(), rooms.clone());
    let accounts = Accounts::new(
        store.clone(),
        uia,
        passwords,
        rate_limiter.clone(),
        server_name.clone(),
        config.account_settings(),
    )
    .with_device_lists(device_lists.clone());
    let keys = Keys::new(
        store.clone(),
        streams.clone(),
        device_lists.clone(),
        accounts.clone(),
        remote.clone(),
        server_name.clone(),
    );
    let profiles = Profiles::new(store.clone(), rooms.clone(), remote.clone(), server_name.clone());
    let typing = Typing::new(notifier.clone(), rooms.clone());
    let receipts =
        Receipts::new(store.clone(), rooms.clone(), account_data.clone(), streams.clone(), notifier.clone());
    let to_device =
        ToDevice::new(store.clone(), streams.clone(), notifier.clone(), server_name.clone(), outbox.clone());
    let presence = Presence::new(
        store.clone(),
        streams.clone(),
        notifier.clone(),
        rooms.clone(),
        config.presence.clone(),
    );
    let transactions = Transactions::new(
        store.clone(),
        rooms.clone(),
        EduReceivers {
            to_device: to_device.clone(),
            typing: typing.clone(),
            receipts: receipts.clone(),
            presence: presence.clone(),
            device_lists: device_lists.clone(),
        },
    );
    presence.spawn_sweeper();
    let delivery = Delivery::start(store.clone(), streams.clone(), notifier.clone(), rooms.clone());
    let sync = SyncService::new(
        store.clone(),
        rooms.clone(),
        notifier.clone(),
        streams.clone(),
        SyncSources {
            account_data: account_data.clone(),
            delivery: delivery.clone(),
            typing: typing.clone(),
            receipts: receipts.clone(),
            to_device: to_device.clone(),
            presence: presence.clone(),
            keys: keys.clone(),
        },
    );
    let blobs = media_blobs(&config)?;
    blobs.clear_staging().map_err(|e| ServeError::Storage(format!("media staging directory: {e}")))?;
    let media = Media::new(
        store.clone(),
        Arc::new(blobs),
        remote.clone(),
        server_name.clone(),
        config.media_settings(),
    );
    let client_addr = listeners.client.local_addr()?;
    let client_state = ClientState::new(ClientServices {
        gate: gate.clone(),
        receipts,
        to_device,
        presence,
        keys: keys.clone(),
        push_rules,
        notifications: Notifications::new(store.clone(), rooms.clone()),
        account_data,
        devices: Devices::new(store.clone(), accounts.clone()),
        key_backup: KeyBackup::new(store.clone()),
        shared_secret: SharedSecretRegistration::new(
            config.registration_shared_secret.clone(),
            accounts.clone(),
            profiles.clone(),
        ),
        accounts,
        profiles: profiles.clone(),
        rooms: rooms.clone(),
        media: media.clone(),
        sync,
        typing,
        rate_limiter,
        discovery: DiscoverySettings {
            client_base_url: Some(config.well_known.client.clone().unwrap_or_else(|| {
                // Listening on every interface: the server name is the best guess.
                if client_addr.ip().is_unspecified() {
                    format!("http://{}:{}", config.server_name, client_addr.port())
                } else {
                    format!("http://{client_addr}")
                }
            })),
            server: config.well_known.server.clone(),
        },
    });
    let federation_state =
        FederationState { gate, server_keys, profiles, keys, transactions, rooms: rooms.clone(), media };
    let client_router = tessera_client_api::router(client_state)
        .merge(tessera_federation::key_router(federation_state.clone()));

    // One shutdown signal fans out to every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        // Long-polls answer now instead of at their timeout.
        notifier.shut_down();
        // Federation senders stop; what they had not sent stays queued.
        outbox.shut_down();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let limits = connection_limits(&config, 1 + u64::from(listeners.federation.is_some()));
    tracing::info!(
        server_name = %server_name,
        addr = %client_addr,
        max_connections = limits.max_connections,
        "client API listening"
    );
    let client = connections::serve(
        listeners.client,
        connections::Transport::Plain,
        client_router,
        limits,
        stopped(stop_rx.clone()),
    );

    let federation = match listeners.federation {
        Some(listener) => {
            let (cert, key) = match (&config.tls_certificate, &config.tls_private_key) {
                (Some(cert), Some(key)) => (cert.clone(), key.clone()),
                _ => {
                    return Err(ServeError::Tls(
                        "federation_listen needs tls_certificate and tls_private_key".into(),
                    ));
                }
            };
            let acceptor = tls::acceptor(&cert, &key)?;
            tracing::info!(
                addr = %listener.local_addr()?,
                max_connections = limits.max_connections,
                "federation API listening (TLS)"
            );
            let router = tessera_federation::router(federation_state);
            let transport = connections::Transport::Tls(acceptor);
            Some(tokio::spawn(connections::serve(listener, transport, router, limits, stopped(stop_rx))))
        }
        None => None,
    };
    client.await;
    if let Some(federation) = federation {
        federation.await.map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
    }
    // Acknowledgements noted by the last requests are recorded before the
    // database closes.
    delivery.stop().await;
    Ok(())
}

/// Each listener's timeouts and connection limit, the limit derived from
/// the file-descriptor limit (raised first) unless configured.
/// The outbound federation client, trusting `federation_trusted_ca` and
/// reaching only the addresses the rules permit.
fn federation_client(config: &Config, key: Arc<ServerSigningKey>) -> Result<FederationClient, ServeError> {
    let trusted_ca_pem = match &config.federation_trusted_ca {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| ServeError::Tls(format!("federation_trusted_ca {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let ranges = OutboundRules::parse_ranges(&config.outbound_allowed_ranges).map_err(ServeError::Tls)?;
    let settings = ClientSettings {
        trusted_ca_pem,
        rules: OutboundRules::new(ranges),
        servers: config.server_policy(),
        dns_server: config.federation_dns_server,
    };
    FederationClient::new(key, settings).map_err(|e| ServeError::Tls(e.to_string()))
}

fn connection_limits(config: &Config, listeners: u64) -> connections::Limits {
    let settings = &config.connections;
    let fd_limit = connection_limit::raise_fd_limit();
    let max_connections = settings
        .max_connections
        .unwrap_or_else(|| connection_limit::default_max_connections(fd_limit, listeners));
    connections::Limits {
        header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms),
        body: tessera_web::slow_body::BodyTimeouts {
            idle: Duration::from_millis(settings.body_read_timeout_ms),
            min_bytes_per_second: settings.body_min_bytes_per_second,
        },
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Opens the store for admin commands (no listeners).
pub async fn open_store(config: &Config) -> Result<Store, ServeError> {
    Ok(Store::open(&config.database_url(), PoolSettings { max_connections: 2, ..config.pool_settings() })
        .await?)
}

/// Builds the accounts service for admin commands.
pub fn admin_accounts(config: &Config, store: &Store) -> Result<Accounts, ServeError> {
    let server_name: ruma::OwnedServerName = config
        .server_name
        .as_str()
        .try_into()
        .map_err(|e| ServeError::SigningKey(format!("server_name: {e}")))?;
    // The CLI runs one command at a time and has no clients to limit.
    let passwords = Passwords::new(1);
    let rate_limiter = RateLimiter::new(tessera_service::rate_limit::RateLimitSettings {
        login: tessera_service::rate_limit::Limit::new(0.0, 0),
        failed_login: tessera_service::rate_limit::Limit::new(0.0, 0),
        registration: tessera_service::rate_limit::Limit::new(0.0, 0),
        general: tessera_service::rate_limit::Limit::new(0.0, 0),
    });
    let uia = Uia::new(store.clone(), passwords.clone(), rate_limiter.clone(), server_name.clone());
    Ok(Accounts::new(store.clone(), uia, passwords, rate_limiter, server_name, config.account_settings()))
}

/// The media files' store under the data directory.
pub fn media_blobs(config: &Config) -> Result<LocalBlobs, ServeError> {
    LocalBlobs::open(&config.data_dir.join("media"))
        .map_err(|e| ServeError::Storage(format!("media directory: {e}")))
}

/// The signing key, for commands that print it.
pub fn signing_key(config: &Config) -> Result<ServerSigningKey, ServeError> {
    let server_name = config
        .server_name
        .as_str()
        .try_into()
        .map_err(|e| ServeError::SigningKey(format!("server_name: {e}")))?;
    signing_key::load_or_generate(&config.data_dir, server_name)
}
