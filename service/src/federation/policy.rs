//! The operator's list of servers this one federates with, or refuses:
//! `federation_allowed_servers` (when set, only these) and
//! `federation_denied_servers` (never these). A refused server's requests
//! are answered 403 `M_FORBIDDEN`, and nothing is sent to it (its queued
//! transactions are dropped). An entry is a server name (`example.org`,
//! `example.org:8448`) or `*.` and a domain (`*.example.org`: its
//! subdomains); a name without a port stands for every port.

use std::sync::Arc;

use ruma::ServerName;

/// See the module. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ServerPolicy {
    allowed: Option<Arc<Vec<String>>>,
    denied: Arc<Vec<String>>,
}

impl ServerPolicy {
    /// From the comma-separated lists (`allowed` empty: every server).
    pub fn new(allowed: &str, denied: &str) -> Self {
        let list = |text: &str| -> Vec<String> {
            text.split(',').map(|entry| entry.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).collect()
        };
        let allowed = list(allowed);
        Self { allowed: (!allowed.is_empty()).then(|| Arc::new(allowed)), denied: Arc::new(list(denied)) }
    }

    /// Whether this server federates with `server`.
    pub fn permits(&self, server: &ServerName) -> bool {
        let matches = |entries: &[String]| entries.iter().any(|entry| matches(entry, server));
        !matches(&self.denied) && self.allowed.as_deref().is_none_or(|allowed| matches(allowed))
    }
}

/// Whether a list entry names `server`.
fn matches(entry: &str, server: &ServerName) -> bool {
    let name = server.as_str().to_ascii_lowercase();
    let host = server.host().to_ascii_lowercase();
    match entry.strip_prefix("*.") {
        Some(domain) => host.ends_with(&format!(".{domain}")),
        None => entry == name || entry == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str) -> &ServerName {
        <&ServerName>::try_from(name).unwrap()
    }

    #[test]
    fn no_lists_permit_every_server() {
        assert!(ServerPolicy::default().permits(server("example.org")));
        assert!(ServerPolicy::new("", " , ").permits(server("example.org")));
    }

    #[test]
    fn denied_servers_are_refused_with_any_port_unless_one_is_named() {
        let policy = ServerPolicy::new("", "Evil.example, other.example:8448, *.spam.example");
        assert!(!policy.permits(server("evil.example")));
        assert!(!policy.permits(server("evil.example:1234")));
        assert!(!policy.permits(server("other.example:8448")));
        assert!(policy.permits(server("other.example:9000")));
        assert!(!policy.permits(server("a.spam.example")));
        assert!(policy.permits(server("spam.example")));
        assert!(policy.permits(server("example.org")));
    }

    #[test]
    fn an_allow_list_permits_only_its_servers_and_the_deny_list_wins() {
        let policy = ServerPolicy::new("friend.example, *.partner.example", "bad.partner.example");
        assert!(policy.permits(server("friend.example")));
        assert!(policy.permits(server("hs.partner.example")));
        assert!(!policy.permits(server("bad.partner.example")));
        assert!(!policy.permits(server("stranger.example")));
    }
}
