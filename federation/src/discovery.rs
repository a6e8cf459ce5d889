//! Server-name resolution: where to connect for a server name, and which
//! `Host` header and certificate name to use, in the spec's order.
//!
//! 1. An IP literal: that address, its port or 8448; Host the server name.
//! 2. A hostname with a port: that host and port; Host the server name.
//! 3. `https://<hostname>/.well-known/matrix/server` naming a delegated
//!    server: its IP literal, or its host and port, or its host on 8448;
//!    Host the delegated name. Cached per its `Cache-Control` (a day by
//!    default, two at most); a failure for an hour.
//!    A delegated name without a port is looked up as in 4 and 5.
//! 4. The SRV records `_matrix-fed._tcp.<hostname>`, then the deprecated
//!    `_matrix._tcp.<hostname>` (`srv`): their target and port; Host and
//!    certificate name the hostname. The URL then carries the hostname
//!    without a port, and the client's resolver ([`SrvRoutes`], read by
//!    `outbound::FilteringResolver`) answers the target's addresses with
//!    the record's port. Kept for the records' TTL (an hour at least, a
//!    day at most); none found, for an hour.
//! 5. Otherwise the hostname on 8448; Host the hostname.
//!
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#resolving-server-names>.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use ruma::{OwnedServerName, ServerName};
use tessera_service::federation::RemoteError;

use crate::{outbound::OutboundRules, srv::SrvResolver};

/// Hostnames reached through an SRV record: the record's target and port.
/// Shared by [`Discovery`], which writes it, and the client's resolver.
pub type SrvRoutes = std::sync::Arc<Mutex<HashMap<String, (String, u16)>>>;

/// A hostname's SRV target and port (or none), and until when it holds.
type SrvCached = (Option<(String, u16)>, Instant);

const SRV_MIN_TTL: Duration = Duration::from_secs(60 * 60);
const SRV_MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const SRV_FAILURE_TTL: Duration = Duration::from_secs(60 * 60);

const DEFAULT_PORT: u16 = 8448;
const WELL_KNOWN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const WELL_KNOWN_MAX_TTL: Duration = Duration::from_secs(48 * 60 * 60);
const WELL_KNOWN_FAILURE_TTL: Duration = Duration::from_secs(60 * 60);
const WELL_KNOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Servers whose `.well-known` answer is kept at most.
const MAX_CACHED: usize = 10_000;
/// A `.well-known` answer larger than this is not a server delegation.
const WELL_KNOWN_MAX_BYTES: usize = 64 * 1024;

/// Where a server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `https://host:port`: the host is the name the certificate must
    /// carry (and SNI, for a hostname).
    pub base_url: String,
    /// The `Host` header.
    pub host_header: String,
}

/// The resolver, with its `.well-known` and SRV caches.
pub struct Discovery {
    http: reqwest::Client,
    rules: OutboundRules,
    well_known: Mutex<HashMap<OwnedServerName, (Option<OwnedServerName>, Instant)>>,
    srv: SrvResolver,
    /// Per hostname: its SRV target and port, or none, until when.
    srv_cache: Mutex<HashMap<String, SrvCached>>,
    routes: SrvRoutes,
}

impl Discovery {
    pub fn new(http: reqwest::Client, rules: OutboundRules, srv: SrvResolver, routes: SrvRoutes) -> Self {
        Self { http, rules, well_known: Mutex::default(), srv, srv_cache: Mutex::default(), routes }
    }

    /// Where to send requests for `server`.
    pub async fn resolve(&self, server: &ServerName) -> Result<Destination, RemoteError> {
        if let Some(destination) = self.direct(server, server)? {
            return Ok(destination);
        }
        let host = server.host();
        if let Some(delegated) = self.delegation(server).await {
            if let Some(destination) = self.direct(server, &delegated)? {
                return Ok(destination);
            }
            return Ok(self.by_hostname(delegated.host()).await);
        }
        Ok(self.by_hostname(host).await)
    }

    /// Steps 4 and 5 for a hostname without a port.
    async fn by_hostname(&self, host: &str) -> Destination {
        let base_url = match self.srv_target(host).await {
            Some(_) => format!("https://{host}"),
            None => format!("https://{host}:{DEFAULT_PORT}"),
        };
        Destination { base_url, host_header: host.to_owned() }
    }

    /// The hostname's SRV target (cached), recorded in the routes the
    /// client's resolver reads.
    async fn srv_target(&self, host: &str) -> Option<(String, u16)> {
        let cached = self.srv_cache.lock().unwrap_or_else(|p| p.into_inner()).get(host).cloned();
        let target = match cached {
            Some((target, expires)) if expires > Instant::now() => target,
            _ => {
                let mut found = None;
                for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
                    found = self.srv.lookup(&format!("{service}.{host}")).await;
                    if found.is_some() {
                        break;
                    }
                }
                let ttl = found.as_ref().map_or(SRV_FAILURE_TTL, |t| t.ttl.clamp(SRV_MIN_TTL, SRV_MAX_TTL));
                let target = found.map(|t| (t.host, t.port));
                let mut cache = self.srv_cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(host.to_owned(), (target.clone(), Instant::now() + ttl));
                target
            }
        };
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        match &target {
            Some(target) => {
                if routes.len() >= MAX_CACHED {
                    routes.clear();
                }
                routes.insert(host.to_owned(), target.clone());
            }
            None => {
                routes.remove(host);
            }
        }
        target
    }

    /// Steps 1 and 2 for `name` (the server name, or its delegation): an
    /// IP literal or an explicit port decide without a lookup.
    fn direct(&self, server: &ServerName, name: &ServerName) -> Result<Option<Destination>, RemoteError> {
        let host = name.host();
        // Names the URL parser reads as addresses (`127.1`) count as
        // literals too: they are connected to without a lookup.
        let is_address = name.is_ip_literal() || self.url(server, host)?.host_str().is_some_and(is_ip);
        if !is_address && name.port().is_none() {
            return Ok(None);
        }
        let port = name.port().unwrap_or(DEFAULT_PORT);
        self.url(server, &format!("{host}:{port}"))?;
        Ok(Some(Destination { base_url: format!("https://{host}:{port}"), host_header: name.to_string() }))
    }

    /// `https://<authority>/`, refused unless the rules permit it.
    fn url(&self, server: &ServerName, authority: &str) -> Result<reqwest::Url, RemoteError> {
        let not_allowed = |reason: String| RemoteError::NotAllowed { server: server.to_owned(), reason };
        let url: reqwest::Url = format!("https://{authority}/")
            .parse()
            .map_err(|e| not_allowed(format!("bad host {authority}: {e}")))?;
        if !self.rules.permits_url(&url) {
            return Err(not_allowed(format!("{authority} is not a public address")));
        }
        Ok(url)
    }

    /// The server its `.well-known` delegates to, if any (cached).
    async fn delegation(&self, server: &ServerName) -> Option<OwnedServerName> {
        if let Some((delegated, expires)) =
            self.well_known.lock().unwrap_or_else(|p| p.into_inner()).get(server)
            && *expires > Instant::now()
        {
            return delegated.clone();
        }
        let (delegated, ttl) = match self.fetch_well_known(server).await {
            Ok((delegated, ttl)) => (Some(delegated), ttl),
            Err(reason) => {
                tracing::debug!(%server, reason, "no .well-known delegation");
                (None, WELL_KNOWN_FAILURE_TTL)
            }
        };
        {
            let mut cache = self.well_known.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED {
                // Bounded: made-up names cannot grow it for ever.
                cache.clear();
            }
            cache.insert(server.to_owned(), (delegated.clone(), Instant::now() + ttl));
        }
        delegated
    }

    async fn fetch_well_known(&self, server: &ServerName) -> Result<(OwnedServerName, Duration), String> {
        let url = format!("https://{}/.well-known/matrix/server", server.host());
        let url: reqwest::Url = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        if !self.rules.permits_url(&url) {
            return Err("not a public address".into());
        }
        let response =
            self.http.get(url).timeout(WELL_KNOWN_TIMEOUT).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let ttl = max_age(response.headers()).map_or(WELL_KNOWN_TTL, |ttl| ttl.min(WELL_KNOWN_MAX_TTL));
        let body =
            crate::client::read_limited(response, WELL_KNOWN_MAX_BYTES).await.map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let delegated = json.get("m.server").and_then(serde_json::Value::as_str).ok_or("no m.server")?;
        let delegated = ServerName::parse(delegated).map_err(|e| format!("bad m.server: {e}"))?;
        Ok((delegated, ttl))
    }
}

fn is_ip(host: &str) -> bool {
    host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok()
}

/// `Cache-Control: max-age` of a response.
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').find_map(|directive| {
        let seconds = directive.trim().strip_prefix("max-age=")?;
        seconds.parse().ok().map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use ruma::server_name;

    use super::*;

    fn discovery(allowed: &str) -> Discovery {
        let rules = OutboundRules::new(OutboundRules::parse_ranges(allowed).unwrap());
        crate::client::install_crypto_provider();
        Discovery::new(reqwest::Client::new(), rules, SrvResolver::new(None), SrvRoutes::default())
    }

    #[tokio::test]
    async fn ip_literals_and_explicit_ports_need_no_lookup() {
        let d = discovery("127.0.0.0/8, ::1/128");
        let at = |base: &str, host: &str| Destination { base_url: base.into(), host_header: host.into() };
        assert_eq!(
            d.resolve(server_name!("127.0.0.1")).await.unwrap(),
            at("https://127.0.0.1:8448", "127.0.0.1")
        );
        assert_eq!(
            d.resolve(server_name!("127.0.0.1:9000")).await.unwrap(),
            at("https://127.0.0.1:9000", "127.0.0.1:9000")
        );
        assert_eq!(
            d.resolve(server_name!("[::1]:9000")).await.unwrap(),
            at("https://[::1]:9000", "[::1]:9000")
        );
        assert_eq!(
            d.resolve(server_name!("localhost:9000")).await.unwrap(),
            at("https://localhost:9000", "localhost:9000")
        );
        // Not allowed: private literals are refused before any connection.
        let strict = discovery("");
        for private in ["10.0.0.1:8448", "127.1:8448", "0x7f000001:8448", "[::1]", "127.1"] {
            let name = ServerName::parse(private).unwrap();
            assert!(matches!(strict.resolve(&name).await, Err(RemoteError::NotAllowed { .. })), "{private}");
        }
    }

    #[test]
    fn cache_control_max_age_is_read() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::CACHE_CONTROL, "public, max-age=600".parse().unwrap());
        assert_eq!(max_age(&headers), Some(Duration::from_secs(600)));
        headers.insert(reqwest::header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(max_age(&headers), None);
    }
}
