//! Where outbound requests (federation; later media and push) may go: only
//! to public addresses, unless the operator allows more ranges
//! (`outbound_allowed_ranges`, e.g. `127.0.0.0/8` in tests). Enforced on
//! every address a name resolves to ([`FilteringResolver`]) and on every
//! URL before it is requested or a redirect to it followed
//! ([`OutboundRules::permits_url`], since an address in a URL is connected
//! to without resolving), so a server name, a `.well-known` answer or a
//! redirect cannot point this server at its own network.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The address rules. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct OutboundRules {
    allowed: Arc<Vec<IpNet>>,
}

impl OutboundRules {
    /// Public addresses, and `allowed` (CIDRs) besides.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed: Arc::new(allowed) }
    }

    /// Parses a comma-separated CIDR list (`TESSERA_OUTBOUND_ALLOWED_RANGES`).
    pub fn parse_ranges(list: &str) -> Result<Vec<IpNet>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|range| !range.is_empty())
            .map(|range| range.parse().map_err(|e| format!("{range}: {e}")))
            .collect()
    }

    /// Whether a request may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|range| range.contains(&ip))
    }

    /// Whether a request may go to `url`: an address as its host (in any
    /// spelling the URL parser reads as one: `127.1`, `0x7f000001`, …) must
    /// be permitted; a name is, its addresses being filtered when it is
    /// resolved ([`FilteringResolver`]).
    pub fn permits_url(&self, url: &reqwest::Url) -> bool {
        match url.host_str() {
            None => false,
            Some(host) => match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                Ok(ip) => self.permits(ip),
                Err(_) => true,
            },
        }
    }
}

/// Whether the address is globally routable: not loopback, private,
/// link-local, shared (CGNAT), documentation, multicast, reserved or
/// unspecified (IPv4-mapped and NAT64 IPv6 addresses judged by their IPv4).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let segments = v6.segments();
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (segments[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::from(1u128)) // ::1 spelled out
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// The DNS resolver of the outbound client: the system's, keeping only the
/// addresses the rules permit (a name with none left fails to resolve). A
/// hostname reached through an SRV record (`routes`) resolves to its
/// target's addresses with the record's port (a URL without a port keeps
/// the port the resolver gives).
pub struct FilteringResolver {
    pub rules: OutboundRules,
    pub routes: crate::discovery::SrvRoutes,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = self.rules.clone();
        let route = self.routes.lock().unwrap_or_else(|p| p.into_inner()).get(name.as_str()).cloned();
        Box::pin(async move {
            let (host, port) = route.unwrap_or_else(|| (name.as_str().to_owned(), 0));
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port)).await?.collect();
            let permitted: Vec<SocketAddr> =
                found.into_iter().filter(|addr| rules.permits(addr.ip())).collect();
            if permitted.is_empty() {
                let message = format!("no address of {} may be contacted", name.as_str());
                return Err(message.into());
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_unless_allowed() {
        let rules = OutboundRules::default();
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(rules.permits(public.parse().unwrap()), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "2001:db8::1",
        ] {
            assert!(!rules.permits(private.parse().unwrap()), "{private}");
        }
        let allowed = OutboundRules::new(OutboundRules::parse_ranges("127.0.0.0/8, 10.0.0.0/8").unwrap());
        assert!(allowed.permits("127.0.0.1".parse().unwrap()));
        assert!(allowed.permits("10.9.9.9".parse().unwrap()));
        assert!(!allowed.permits("192.168.1.1".parse().unwrap()));
        assert!(OutboundRules::parse_ranges("127.0.0.0/33").is_err());
        // Addresses in URLs, in every spelling the URL parser accepts.
        let strict = OutboundRules::default();
        for url in [
            "https://127.1:8448/",
            "https://0x7f000001/",
            "https://2130706433/",
            "https://[::1]/",
            "http://10.1.2.3/",
        ] {
            assert!(!strict.permits_url(&url.parse().unwrap()), "{url}");
        }
        assert!(strict.permits_url(&"https://matrix.example.org:8448/".parse().unwrap()));
        assert!(allowed.permits_url(&"https://127.0.0.1:8448/".parse().unwrap()));
        assert!(OutboundRules::parse_ranges("").unwrap().is_empty());
    }
}
