//! SRV lookups for server-name resolution (`_matrix-fed._tcp.<host>`,
//! then the deprecated `_matrix._tcp.<host>`): one query over UDP to a
//! nameserver (the system's first, from `/etc/resolv.conf`, unless
//! `federation_dns_server` names one), its answer parsed here. The records
//! of the lowest priority are taken, the heaviest first; a failure or an
//! empty answer means no SRV record.
//! Spec: <https://spec.matrix.org/v1.16/server-server-api/#resolving-server-names>.

use std::{net::SocketAddr, time::Duration};

/// How long a nameserver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The record type SRV and the class IN.
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// Where an SRV record points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub host: String,
    pub port: u16,
    /// How long the answer may be kept.
    pub ttl: Duration,
}

/// Asks one nameserver for SRV records.
#[derive(Debug, Clone)]
pub struct SrvResolver {
    nameserver: Option<SocketAddr>,
}

impl SrvResolver {
    /// Asks `nameserver`, or the system's first one when `None`.
    pub fn new(nameserver: Option<SocketAddr>) -> Self {
        let nameserver = nameserver.or_else(|| {
            let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
            system_nameserver(&conf)
        });
        Self { nameserver }
    }

    /// The target of `name`'s SRV records, if it has any.
    pub async fn lookup(&self, name: &str) -> Option<SrvTarget> {
        let nameserver = self.nameserver?;
        let answer = tokio::time::timeout(TIMEOUT, ask(nameserver, name)).await;
        match answer {
            Ok(Ok(records)) => choose(records),
            Ok(Err(reason)) => {
                tracing::debug!(name, reason, "SRV lookup failed");
                None
            }
            Err(_) => {
                tracing::debug!(name, "SRV lookup timed out");
                None
            }
        }
    }
}

/// One SRV record: priority, weight, target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    priority: u16,
    weight: u16,
    target: SrvTarget,
}

/// The first `nameserver` line of a resolv.conf.
fn system_nameserver(conf: &str) -> Option<SocketAddr> {
    conf.lines().find_map(|line| {
        let address = line.trim().strip_prefix("nameserver")?.trim();
        let ip: std::net::IpAddr = address.split('%').next()?.parse().ok()?;
        Some(SocketAddr::new(ip, 53))
    })
}

async fn ask(nameserver: SocketAddr, name: &str) -> Result<Vec<Record>, String> {
    let local: SocketAddr = match nameserver {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(nameserver).await.map_err(|e| e.to_string())?;
    let id = rand_id();
    socket.send(&query(id, name)?).await.map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 4096];
    loop {
        let read = socket.recv(&mut buffer).await.map_err(|e| e.to_string())?;
        // A stray datagram (another query's late answer) is skipped.
        if read >= 2 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
            return parse(id, &buffer[..read]);
        }
    }
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (nanos.subsec_nanos() ^ (nanos.as_secs() as u32)) as u16
}

/// A recursive query for `name`'s SRV records.
fn query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut packet = Vec::with_capacity(name.len() + 18);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00]); // recursion desired
    packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name} is not a domain name"));
        }
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&TYPE_SRV.to_be_bytes());
    packet.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(packet)
}

/// The SRV records of an answer to query `id`.
fn parse(id: u16, packet: &[u8]) -> Result<Vec<Record>, String> {
    let short = || "truncated answer".to_owned();
    let u16_at =
        |at: usize| packet.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(short);
    if u16_at(0)? != id {
        return Err("answer to another query".into());
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return Err("not an answer".into());
    }
    match flags & 0x000f {
        0 => {}
        3 => return Ok(Vec::new()), // no such name
        code => return Err(format!("the nameserver answered code {code}")),
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let (kind, class) = (u16_at(at)?, u16_at(at + 2)?);
        let ttl = packet
            .get(at + 4..at + 8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(short)?;
        let length = usize::from(u16_at(at + 8)?);
        let data = at + 10;
        if packet.len() < data + length {
            return Err(short());
        }
        if kind == TYPE_SRV && class == CLASS_IN && length >= 7 {
            let (target, _) = read_name(packet, data + 6)?;
            records.push(Record {
                priority: u16_at(data)?,
                weight: u16_at(data + 2)?,
                target: SrvTarget {
                    host: target,
                    port: u16_at(data + 4)?,
                    ttl: Duration::from_secs(ttl.into()),
                },
            });
        }
        at = data + length;
    }
    Ok(records)
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], at: usize) -> Result<usize, String> {
    read_name(packet, at).map(|(_, end)| end)
}

/// The name at `at` (following compression pointers) and the offset after
/// it where it starts.
fn read_name(packet: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let length = *packet.get(at).ok_or("truncated name")?;
        match length {
            0 => {
                return Ok((labels.join("."), end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let low = *packet.get(at + 1).ok_or("truncated name")?;
                end.get_or_insert(at + 2);
                at = (usize::from(l & 0x3f) << 8) | usize::from(low);
            }
            l => {
                let label = packet.get(at + 1..at + 1 + usize::from(l)).ok_or("truncated name")?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += 1 + usize::from(l);
            }
        }
    }
    Err("a name loops".into())
}

/// The target to use: of the lowest priority, the heaviest. A single
/// record whose target is "." says the service is not offered.
fn choose(mut records: Vec<Record>) -> Option<SrvTarget> {
    records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
    records.into_iter().map(|r| r.target).find(|target| !target.host.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `question` (a query) with `records` (priority, weight,
    /// port, target), the first target written in full and each later one
    /// compressed to a pointer at it.
    pub(crate) fn answer(question: &[u8], records: &[(u16, u16, u16, &str)]) -> Vec<u8> {
        let mut packet = question.to_vec();
        packet[2] = 0x81;
        packet[3] = 0x80;
        packet[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        let mut first_target = None;
        for (priority, weight, port, target) in records {
            packet.extend_from_slice(&[0xc0, 12]); // the question's name
            packet.extend_from_slice(&TYPE_SRV.to_be_bytes());
            packet.extend_from_slice(&CLASS_IN.to_be_bytes());
            packet.extend_from_slice(&300u32.to_be_bytes());
            let mut data = Vec::new();
            data.extend_from_slice(&priority.to_be_bytes());
            data.extend_from_slice(&weight.to_be_bytes());
            data.extend_from_slice(&port.to_be_bytes());
            match first_target {
                Some(offset) if *target != "." => data.extend_from_slice(&[0xc0, offset]),
                _ => {
                    if *target != "." {
                        first_target = Some((packet.len() + 2 + data.len()) as u8);
                        for label in target.split('.') {
                            data.push(label.len() as u8);
                            data.extend_from_slice(label.as_bytes());
                        }
                    }
                    data.push(0);
                }
            }
            packet.extend_from_slice(&(data.len() as u16).to_be_bytes());
            packet.extend_from_slice(&data);
        }
        packet
    }

    #[test]
    fn a_query_names_the_service_and_asks_for_srv() {
        let packet = query(0x1234, "_matrix-fed._tcp.example.org").unwrap();
        assert_eq!(&packet[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&packet[12..24], b"\x0b_matrix-fed");
        assert_eq!(&packet[packet.len() - 4..], &[0, 33, 0, 1]);
        assert!(query(1, "a..b").is_err());
    }

    #[test]
    fn answers_are_read_through_compression_and_the_best_record_is_chosen() {
        let question = query(7, "_matrix-fed._tcp.example.org").unwrap();
        let packet =
            answer(&question, &[(20, 0, 8448, "backup.example.org"), (10, 5, 443, "hs.example.org")]);
        let records = parse(7, &packet).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].target.host, "backup.example.org");
        assert_eq!(records[1].target.host, "backup.example.org", "the second is a pointer to the first");
        let packet = answer(&question, &[(20, 0, 8448, "backup.example.org")]);
        let chosen = choose(parse(7, &packet).unwrap()).unwrap();
        assert_eq!((chosen.host.as_str(), chosen.port), ("backup.example.org", 8448));
        assert_eq!(chosen.ttl, Duration::from_secs(300));
        let chosen = choose(vec![
            Record {
                priority: 20,
                weight: 9,
                target: SrvTarget { host: "b".into(), port: 1, ttl: Duration::ZERO },
            },
            Record {
                priority: 10,
                weight: 1,
                target: SrvTarget { host: "c".into(), port: 2, ttl: Duration::ZERO },
            },
            Record {
                priority: 10,
                weight: 5,
                target: SrvTarget { host: "d".into(), port: 3, ttl: Duration::ZERO },
            },
        ]);
        assert_eq!(chosen.unwrap().host, "d");
    }

    #[test]
    fn no_service_errors_and_garbage_give_no_target() {
        let question = query(9, "_matrix-fed._tcp.example.org").unwrap();
        assert_eq!(choose(parse(9, &answer(&question, &[(0, 0, 0, ".")])).unwrap()), None);
        assert!(parse(8, &answer(&question, &[])).is_err(), "another query's answer");
        let mut missing = answer(&question, &[]);
        missing[3] = 0x83; // no such name
        assert_eq!(parse(9, &missing).unwrap(), Vec::new());
        let full = answer(&question, &[(1, 1, 1, "x.example")]);
        for cut in 0..full.len() {
            let _ = parse(9, &full[..cut]); // never panics
        }
        let mut looping = answer(&question, &[]);
        looping[12] = 0xc0;
        looping[13] = 12;
        assert!(parse(9, &looping).is_err());
    }

    #[test]
    fn the_system_nameserver_is_the_first_listed() {
        let conf = "# comment\nsearch example\nnameserver 10.0.0.2\nnameserver 8.8.8.8\n";
        assert_eq!(system_nameserver(conf), Some("10.0.0.2:53".parse().unwrap()));
        assert_eq!(system_nameserver("nameserver fe80::1%eth0"), Some("[fe80::1]:53".parse().unwrap()));
        assert_eq!(system_nameserver(""), None);
    }
}
