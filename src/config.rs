//! Configuration: `tessera.toml`, then `TESSERA_*` environment variables on
//! top (every key has one; see [`ENV_OVERRIDES`]), then defaults. The result
//! is split into each crate's settings by the wiring in `lib.rs`.
//!
//! The variable names are a public contract (`../shared/CONTRACTS.md`):
//! tools and tests outside the repository set them.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tessera_service::{accounts::AccountSettings, presence::PresenceSettings, rate_limit::RateLimitSettings};
use tessera_storage::PoolSettings;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The domain in user IDs. Cannot change once users exist.
    pub server_name: String,
    /// Client API listener.
    pub listen: SocketAddr,
    /// Federation listener (HTTPS); off when unset.
    pub federation_listen: Option<SocketAddr>,
    /// PEM certificate chain and private key for the federation listener.
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// PEM CA certificates trusted for outbound federation besides the
    /// system's roots.
    pub federation_trusted_ca: Option<PathBuf>,
    /// Comma-separated CIDR ranges outbound requests may reach although
    /// not public (loopback, private).
    pub outbound_allowed_ranges: String,
    /// Comma-separated notary servers asked for keys a server cannot give.
    pub trusted_key_servers: String,
    /// Comma-separated servers this one federates with, and no other
    /// (empty: every server); see `federation::ServerPolicy`.
    pub federation_allowed_servers: String,
    /// Comma-separated servers this one never federates with.
    pub federation_denied_servers: String,
    /// The nameserver asked for federation's SRV records (`IP:port`); the
    /// system's first (`/etc/resolv.conf`) when unset.
    pub federation_dns_server: Option<SocketAddr>,
    /// Keys, the SQLite database and (later) media live here.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; SQLite under `data_dir` if unset.
    pub database_url: Option<String>,
    /// Connection pool size for PostgreSQL.
    pub database_max_connections: u32,
    /// How long a request waits for a database connection before it is
    /// answered 503 (database unavailable), in ms.
    pub database_acquire_timeout_ms: u64,
    /// PostgreSQL's `statement_timeout`, in ms; a statement still unanswered
    /// 2 s later means its connection is dead (503, connection closed).
    pub database_statement_timeout_ms: u64,
    /// tracing filter, e.g. `info` or `tessera=debug,info`.
    pub log: String,
    pub allow_registration: bool,
    pub registration_requires_token: bool,
    pub allow_guests: bool,
    /// Enables `/_synapse/admin/v1/register` when set.
    pub registration_shared_secret: Option<String>,
    pub refreshable_token_lifetime_ms: u64,
    pub login_token_lifetime_ms: u64,
    /// Room version of new rooms unless the creator asks for another.
    pub default_room_version: String,
    /// Largest request body accepted on the client API, in bytes.
    pub max_request_bytes: usize,
    /// Take client IPs from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    pub well_known: WellKnown,
    pub rate_limits: RateLimitSettings,
    pub presence: PresenceSettings,
    pub connections: Connections,
    pub media: MediaConfig,
}

/// The content repository (`service::media`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest file accepted, uploaded here or fetched from another server.
    pub max_upload_bytes: u64,
    /// Bytes each user may upload in all; 0 for no quota.
    pub max_bytes_per_user: u64,
    /// Media IDs a user may have reserved (`/create`) and not yet filled.
    pub max_pending_uploads: i64,
    /// How long a reserved media ID waits for its upload, in ms.
    pub unused_expiry_ms: u64,
    /// The deprecated unauthenticated downloads serve only media that
    /// arrived before this time (ms since the epoch); 0 freezes them.
    pub unauthenticated_until_ms: i64,
    /// Pictures with more pixels are not thumbnailed.
    pub max_thumbnail_pixels: u64,
    /// Serve `/preview_url` (pages fetched only from addresses that
    /// `outbound_allowed_ranges` permits).
    pub url_previews: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        let settings = tessera_service::media::MediaSettings::default();
        Self {
            max_upload_bytes: settings.max_upload_bytes,
            max_bytes_per_user: settings.max_bytes_per_user,
            max_pending_uploads: settings.max_pending_uploads,
            unused_expiry_ms: duration_ms(settings.unused_expiry),
            unauthenticated_until_ms: settings.unauthenticated_until_ts,
            max_thumbnail_pixels: settings.max_thumbnail_pixels,
            url_previews: settings.url_previews,
        }
    }
}

/// What `/.well-known/matrix/{client,server}` announce.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WellKnown {
    /// `m.homeserver.base_url`; derived from `listen` when unset.
    pub client: Option<String>,
    /// `m.server` (`host:port`); not served when unset.
    pub server: Option<String>,
}

/// What each listener allows a connection (`src/connections.rs`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Connections {
    /// How long a request's line and headers may take to arrive, from the
    /// connection's opening or its previous response. Also bounds the TLS
    /// handshake and HTTP/2's preface, and how long an HTTP/2 peer may stay
    /// silent before it is pinged (and closed if it does not answer).
    pub header_read_timeout_ms: u64,
    /// The longest a request body may go without a byte arriving.
    pub body_read_timeout_ms: u64,
    /// After its first `body_read_timeout_ms`, the slowest average rate a
    /// body may arrive at; 0 turns the check off.
    pub body_min_bytes_per_second: u64,
    /// Open connections per listener; more are refused with a 503.
    /// Derived from the file-descriptor limit when unset.
    pub max_connections: Option<u64>,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 30_000,
            body_min_bytes_per_second: 1024,
            max_connections: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let accounts = AccountSettings::default();
        let pool = PoolSettings::default();
        Self {
            server_name: "localhost".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            federation_listen: None,
            tls_certificate: None,
            tls_private_key: None,
            federation_trusted_ca: None,
            outbound_allowed_ranges: String::new(),
            trusted_key_servers: String::new(),
            federation_allowed_servers: String::new(),
            federation_denied_servers: String::new(),
            federation_dns_server: None,
            data_dir: PathBuf::from("./tessera-data"),
            database_url: None,
            database_max_connections: pool.max_connections,
            database_acquire_timeout_ms: duration_ms(pool.acquire_timeout),
            database_statement_timeout_ms: duration_ms(pool.statement_timeout),
            log: "info".into(),
            allow_registration: accounts.allow_registration,
            registration_requires_token: accounts.registration_requires_token,
            allow_guests: accounts.allow_guests,
            registration_shared_secret: None,
            refreshable_token_lifetime_ms: accounts.refreshable_token_lifetime_ms,
            login_token_lifetime_ms: accounts.login_token_lifetime_ms,
            default_room_version: tessera_core::room_versions::default_version().to_string(),
            max_request_bytes: 1024 * 1024,
            trust_forwarded_for: false,
            well_known: WellKnown::default(),
            rate_limits: RateLimitSettings::default(),
            presence: PresenceSettings::default(),
            connections: Connections::default(),
            media: MediaConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Str,
    Bool,
    Int,
    Float,
}

/// Every configuration key and the environment variable that overrides it.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("TESSERA_SERVER_NAME", "server_name"),
    ("TESSERA_LISTEN", "listen"),
    ("TESSERA_FEDERATION_LISTEN", "federation_listen"),
    ("TESSERA_TLS_CERTIFICATE", "tls_certificate"),
    ("TESSERA_TLS_PRIVATE_KEY", "tls_private_key"),
    ("TESSERA_FEDERATION_TRUSTED_CA", "federation_trusted_ca"),
    ("TESSERA_OUTBOUND_ALLOWED_RANGES", "outbound_allowed_ranges"),
    ("TESSERA_TRUSTED_KEY_SERVERS", "trusted_key_servers"),
    ("TESSERA_FEDERATION_ALLOWED_SERVERS", "federation_allowed_servers"),
    ("TESSERA_FEDERATION_DENIED_SERVERS", "federation_denied_servers"),
    ("TESSERA_FEDERATION_DNS_SERVER", "federation_dns_server"),
    ("TESSERA_DATA_DIR", "data_dir"),
    ("TESSERA_DATABASE_URL", "database_url"),
    ("TESSERA_DATABASE_MAX_CONNECTIONS", "database_max_connections"),
    ("TESSERA_DATABASE_ACQUIRE_TIMEOUT_MS", "database_acquire_timeout_ms"),
    ("TESSERA_DATABASE_STATEMENT_TIMEOUT_MS", "database_statement_timeout_ms"),
    ("TESSERA_LOG", "log"),
    ("TESSERA_ALLOW_REGISTRATION", "allow_registration"),
    ("TESSERA_REGISTRATION_REQUIRES_TOKEN", "registration_requires_token"),
    ("TESSERA_ALLOW_GUESTS", "allow_guests"),
    ("TESSERA_REGISTRATION_SHARED_SECRET", "registration_shared_secret"),
    ("TESSERA_REFRESHABLE_TOKEN_LIFETIME_MS", "refreshable_token_lifetime_ms"),
    ("TESSERA_LOGIN_TOKEN_LIFETIME_MS", "login_token_lifetime_ms"),
    ("TESSERA_DEFAULT_ROOM_VERSION", "default_room_version"),
    ("TESSERA_MAX_REQUEST_BYTES", "max_request_bytes"),
    ("TESSERA_TRUST_FORWARDED_FOR", "trust_forwarded_for"),
    ("TESSERA_WELL_KNOWN_CLIENT", "well_known.client"),
    ("TESSERA_WELL_KNOWN_SERVER", "well_known.server"),
    ("TESSERA_RATE_LIMITS_LOGIN_PER_SECOND", "rate_limits.login.per_second"),
    ("TESSERA_RATE_LIMITS_LOGIN_BURST", "rate_limits.login.burst"),
    ("TESSERA_RATE_LIMITS_FAILED_LOGIN_PER_SECOND", "rate_limits.failed_login.per_second"),
    ("TESSERA_RATE_LIMITS_FAILED_LOGIN_BURST", "rate_limits.failed_login.burst"),
    ("TESSERA_RATE_LIMITS_REGISTRATION_PER_SECOND", "rate_limits.registration.per_second"),
    ("TESSERA_RATE_LIMITS_REGISTRATION_BURST", "rate_limits.registration.burst"),
    ("TESSERA_RATE_LIMITS_GENERAL_PER_SECOND", "rate_limits.general.per_second"),
    ("TESSERA_RATE_LIMITS_GENERAL_BURST", "rate_limits.general.burst"),
    ("TESSERA_PRESENCE_ENABLED", "presence.enabled"),
    ("TESSERA_PRESENCE_IDLE_TIMEOUT_MS", "presence.idle_timeout_ms"),
    ("TESSERA_PRESENCE_OFFLINE_TIMEOUT_MS", "presence.offline_timeout_ms"),
    ("TESSERA_CONNECTIONS_HEADER_READ_TIMEOUT_MS", "connections.header_read_timeout_ms"),
    ("TESSERA_CONNECTIONS_BODY_READ_TIMEOUT_MS", "connections.body_read_timeout_ms"),
    ("TESSERA_CONNECTIONS_BODY_MIN_BYTES_PER_SECOND", "connections.body_min_bytes_per_second"),
    ("TESSERA_CONNECTIONS_MAX_CONNECTIONS", "connections.max_connections"),
    ("TESSERA_MEDIA_MAX_UPLOAD_BYTES", "media.max_upload_bytes"),
    ("TESSERA_MEDIA_MAX_BYTES_PER_USER", "media.max_bytes_per_user"),
    ("TESSERA_MEDIA_MAX_PENDING_UPLOADS", "media.max_pending_uploads"),
    ("TESSERA_MEDIA_UNUSED_EXPIRY_MS", "media.unused_expiry_ms"),
    ("TESSERA_MEDIA_UNAUTHENTICATED_UNTIL_MS", "media.unauthenticated_until_ms"),
    ("TESSERA_MEDIA_MAX_THUMBNAIL_PIXELS", "media.max_thumbnail_pixels"),
    ("TESSERA_MEDIA_URL_PREVIEWS", "media.url_previews"),
];

fn kind_of(path: &str) -> Kind {
    match path {
        "allow_registration"
        | "registration_requires_token"
        | "allow_guests"
        | "trust_forwarded_for"
        | "presence.enabled"
        | "media.url_previews" => Kind::Bool,
        "database_max_connections"
        | "refreshable_token_lifetime_ms"
        | "login_token_lifetime_ms"
        | "max_request_bytes" => Kind::Int,
        p if p.ends_with(".burst") || p.ends_with("_ms") => Kind::Int,
        p if p.starts_with("connections.") || p.starts_with("media.") => Kind::Int,
        p if p.ends_with(".per_second") => Kind::Float,
        _ => Kind::Str,
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{var}={value:?} is not a valid {kind}")]
    Env { var: &'static str, value: String, kind: &'static str },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the file (`explicit`, else `TESSERA_CONFIG`, else
    /// `./tessera.toml` if present), then applies the environment.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let env_path = std::env::var_os("TESSERA_CONFIG").map(PathBuf::from);
        let path = explicit.map(Path::to_path_buf).or(env_path).or_else(|| {
            let default = PathBuf::from("tessera.toml");
            default.exists().then_some(default)
        });
        let mut table = match &path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|source| ConfigError::Parse { path: path.clone(), source })?
            }
            None => toml::Table::new(),
        };
        table = with_defaults(table)?;
        apply_env(&mut table, |var| std::env::var(var).ok())?;
        let config: Config = table.try_into().map_err(|source| ConfigError::Parse {
            path: path.unwrap_or_else(|| PathBuf::from("<environment>")),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ruma::ServerName::parse(&self.server_name)
            .map_err(|e| ConfigError::Invalid(format!("server_name {:?}: {e}", self.server_name)))?;
        let version = ruma::RoomVersionId::try_from(self.default_room_version.as_str())
            .map_err(|e| ConfigError::Invalid(format!("default_room_version: {e}")))?;
        if !tessera_core::room_versions::is_supported(&version) {
            return Err(ConfigError::Invalid(format!("default_room_version {version} is not supported")));
        }
        if self.federation_listen.is_some()
            && (self.tls_certificate.is_none() || self.tls_private_key.is_none())
        {
            return Err(ConfigError::Invalid(
                "federation_listen needs tls_certificate and tls_private_key".into(),
            ));
        }
        tessera_federation::outbound::OutboundRules::parse_ranges(&self.outbound_allowed_ranges)
            .map_err(|e| ConfigError::Invalid(format!("outbound_allowed_ranges: {e}")))?;
        self.trusted_key_servers()?;
        let connections = &self.connections;
        if connections.header_read_timeout_ms == 0 || connections.body_read_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "connections: header_read_timeout_ms and body_read_timeout_ms must be above 0".into(),
            ));
        }
        if connections.max_connections == Some(0) {
            return Err(ConfigError::Invalid("connections.max_connections must be above 0".into()));
        }
        Ok(())
    }

    /// The notaries of `trusted_key_servers`.
    pub fn trusted_key_servers(&self) -> Result<Vec<ruma::OwnedServerName>, ConfigError> {
        self.trusted_key_servers
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                ruma::ServerName::parse(name)
                    .map_err(|e| ConfigError::Invalid(format!("trusted_key_servers {name:?}: {e}")))
            })
            .collect()
    }

    /// The servers this one federates with.
    pub fn server_policy(&self) -> tessera_service::federation::ServerPolicy {
        tessera_service::federation::ServerPolicy::new(
            &self.federation_allowed_servers,
            &self.federation_denied_servers,
        )
    }

    /// The validated default room version.
    pub fn default_room_version(&self) -> ruma::RoomVersionId {
        ruma::RoomVersionId::try_from(self.default_room_version.as_str())
            .unwrap_or_else(|_| tessera_core::room_versions::default_version())
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tessera.db").display()))
    }

    /// How the database pools behave.
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.database_max_connections,
            acquire_timeout: Duration::from_millis(self.database_acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.database_statement_timeout_ms),
        }
    }

    /// The content repository's settings.
    pub fn media_settings(&self) -> tessera_service::media::MediaSettings {
        let media = &self.media;
        tessera_service::media::MediaSettings {
            max_upload_bytes: media.max_upload_bytes,
            max_bytes_per_user: media.max_bytes_per_user,
            max_pending_uploads: media.max_pending_uploads,
            unused_expiry: Duration::from_millis(media.unused_expiry_ms),
            unauthenticated_until_ts: media.unauthenticated_until_ms,
            max_thumbnail_pixels: media.max_thumbnail_pixels,
            url_previews: media.url_previews,
            ..Default::default()
        }
    }

    pub fn account_settings(&self) -> AccountSettings {
        AccountSettings {
            allow_registration: self.allow_registration,
            registration_requires_token: self.registration_requires_token,
            allow_guests: self.allow_guests,
            refreshable_token_lifetime_ms: self.refreshable_token_lifetime_ms,
            login_token_lifetime_ms: self.login_token_lifetime_ms,
        }
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Lays `file` over the defaults, so that a partial section (one field of a
/// rate limit, say) keeps the defaults of its siblings.
fn with_defaults(file: toml::Table) -> Result<toml::Table, ConfigError> {
    fn merge(base: &mut toml::Table, over: toml::Table) {
        for (key, value) in over {
            match (base.get_mut(&key), value) {
                (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
                (_, value) => {
                    base.insert(key, value);
                }
            }
        }
    }
    let mut base = toml::Table::try_from(Config::default())
        .map_err(|e| ConfigError::Invalid(format!("defaults do not serialise: {e}")))?;
    merge(&mut base, file);
    Ok(base)
}

/// Writes each set `TESSERA_*` variable into the table at its key's path.
fn apply_env(table: &mut toml::Table, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    for (var, path) in ENV_OVERRIDES {
        let Some(raw) = get(var) else { continue };
        let invalid = |kind| ConfigError::Env { var, value: raw.clone(), kind };
        let value = match kind_of(path) {
            Kind::Str => toml::Value::String(raw.clone()),
            Kind::Bool => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
                "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
                _ => return Err(invalid("boolean (true/false)")),
            },
            Kind::Int => toml::Value::Integer(raw.trim().parse().map_err(|_| invalid("integer"))?),
            Kind::Float => toml::Value::Float(raw.trim().parse().map_err(|_| invalid("number"))?),
        };
        let mut parts: Vec<&str> = path.split('.').collect();
        let leaf = parts.pop().expect("ENV_OVERRIDES paths are non-empty");
        let mut node = &mut *table;
        for part in parts {
            let entry = node.entry(part).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = match entry {
                toml::Value::Table(t) => t,
                _ => return Err(ConfigError::Invalid(format!("{part} must be a table"))),
            };
        }
        node.insert(leaf.to_owned(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_with(env: &[(&str, &str)], file: &str) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let mut table = with_defaults(toml::from_str(file).expect("test TOML"))?;
        apply_env(&mut table, |var| env.get(var).cloned())?;
        let config: Config =
            table.try_into().map_err(|source| ConfigError::Parse { path: "t".into(), source })?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_serve_localhost_on_sqlite() {
        let config = load_with(&[], "").expect("defaults");
        assert_eq!(config, Config::default());
        assert_eq!(config.server_name, "localhost");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8008");
        assert!(config.database_url().starts_with("sqlite://"));
        assert!(!config.allow_registration);
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load_with(
            &[
                ("TESSERA_SERVER_NAME", "example.org"),
                ("TESSERA_ALLOW_REGISTRATION", "true"),
                ("TESSERA_RATE_LIMITS_LOGIN_BURST", "7"),
                ("TESSERA_RATE_LIMITS_GENERAL_PER_SECOND", "2.5"),
                ("TESSERA_RATE_LIMITS_REGISTRATION_BURST", "9"),
                ("TESSERA_RATE_LIMITS_FAILED_LOGIN_PER_SECOND", "0.5"),
                ("TESSERA_DATABASE_ACQUIRE_TIMEOUT_MS", "1500"),
                ("TESSERA_WELL_KNOWN_SERVER", "matrix.example.org:443"),
            ],
            "server_name = \"file.org\"\nallow_registration = false\n[rate_limits.login]\nper_second = 1.0\nburst = 3\n",
        )
        .expect("valid");
        assert_eq!(config.server_name, "example.org");
        assert!(config.allow_registration);
        assert_eq!(config.rate_limits.login.burst, 7);
        assert_eq!(config.rate_limits.login.per_second, 1.0);
        assert_eq!(config.rate_limits.general.per_second, 2.5);
        assert_eq!(config.rate_limits.general.burst, RateLimitSettings::default().general.burst);
        assert_eq!(config.rate_limits.registration.burst, 9);
        assert_eq!(config.rate_limits.failed_login.per_second, 0.5);
        assert_eq!(config.rate_limits.failed_login.burst, RateLimitSettings::default().failed_login.burst);
        assert_eq!(config.pool_settings().acquire_timeout, Duration::from_millis(1500));
        assert_eq!(config.pool_settings().statement_timeout, PoolSettings::default().statement_timeout);
        assert_eq!(config.well_known.server.as_deref(), Some("matrix.example.org:443"));
    }

    #[test]
    fn bad_values_are_reported_with_their_variable() {
        let err = load_with(&[("TESSERA_ALLOW_REGISTRATION", "maybe")], "").expect_err("invalid");
        assert!(err.to_string().contains("TESSERA_ALLOW_REGISTRATION"), "{err}");
        let err = load_with(&[("TESSERA_SERVER_NAME", "not a name")], "").expect_err("invalid");
        assert!(err.to_string().contains("server_name"), "{err}");
        assert!(load_with(&[], "unknown_key = 1").is_err());
    }

    #[test]
    fn connection_limits_come_from_the_environment_and_must_be_above_zero() {
        let config = load_with(
            &[
                ("TESSERA_CONNECTIONS_MAX_CONNECTIONS", "500"),
                ("TESSERA_CONNECTIONS_BODY_READ_TIMEOUT_MS", "2000"),
            ],
            "[connections]\nheader_read_timeout_ms = 5000\n",
        )
        .expect("valid");
        assert_eq!(config.connections.max_connections, Some(500));
        assert_eq!(config.connections.body_read_timeout_ms, 2000);
        assert_eq!(config.connections.header_read_timeout_ms, 5000);
        assert_eq!(
            config.connections.body_min_bytes_per_second,
            Connections::default().body_min_bytes_per_second
        );
        for zero in ["TESSERA_CONNECTIONS_HEADER_READ_TIMEOUT_MS", "TESSERA_CONNECTIONS_MAX_CONNECTIONS"] {
            let err = load_with(&[(zero, "0")], "").expect_err("zero");
            assert!(err.to_string().contains("connections"), "{err}");
        }
    }

    #[test]
    fn every_key_of_the_example_file_has_a_variable() {
        let example = include_str!("../tessera.example.toml");
        // Keys appear as `key = ...` or commented `# key = ...` lines.
        let mut section = String::new();
        let mut seen = 0;
        for line in example.lines() {
            let line = line.trim_start_matches('#').trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("{name}.");
            } else if let Some((key, _)) = line.split_once(" = ")
                && !key.contains(' ')
            {
                let path = format!("{section}{key}");
                assert!(ENV_OVERRIDES.iter().any(|(_, p)| *p == path), "no variable for {path}");
                seen += 1;
            }
        }
        assert_eq!(seen, ENV_OVERRIDES.len(), "the example documents every key");
        // And the example itself is a valid configuration.
        load_with(&[], example).expect("example parses");
    }
}
