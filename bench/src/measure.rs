//! Measurements: latency percentiles, and CPU time and memory of a process
//! read from `/proc` (the server's by PID, the tool's own, PostgreSQL's).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// From samples in microseconds (sorted here).
    pub fn of(mut micros: Vec<u32>) -> Self {
        if micros.is_empty() {
            return Self::default();
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let index = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[index]) / 1000.0
        };
        Self {
            count: micros.len() as u64,
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Microseconds of a duration, saturating.
pub fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// Kernel clock ticks per second for `/proc/<pid>/stat` times (100 on
/// every Linux this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds of a process, `None` if it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parens.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The processes a phase's resources are read from.
#[derive(Clone, Debug, Default)]
pub struct Watched {
    /// The server's, for its RSS and CPU time.
    pub server_pid: Option<u32>,
    /// The target's PostgreSQL database: the client backends of other
    /// databases are left out of PostgreSQL's CPU time.
    pub postgres_database: Option<String>,
}

/// CPU seconds of PostgreSQL's processes (the database's share of the
/// work when the target uses PostgreSQL): every process named `postgres`
/// but, given a `database`, the client backends of other databases. On a
/// shared machine others' tests come and go on the same PostgreSQL, and a
/// backend that exits within a phase would take its time out of the
/// difference.
pub fn postgres_cpu_seconds(database: Option<&str>) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "postgres")
        })
        .filter(|pid| {
            let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            counts_for(&String::from_utf8_lossy(&title).replace('\0', " "), database)
        })
        .filter_map(cpu_seconds)
        .sum()
}

/// Whether a PostgreSQL process with this title counts for `database`. A
/// client backend's title is `postgres: <cluster>: <user> <database>
/// <host(port)> <state>`; the server and its background processes always
/// count.
fn counts_for(title: &str, database: Option<&str>) -> bool {
    let Some(database) = database else { return true };
    let Some((_, rest)) = title.strip_prefix("postgres: ").and_then(|t| t.split_once(": ")) else {
        return true;
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let client = words.get(2).is_some_and(|w| w.ends_with(')') || *w == "[local]");
    !client || words.get(1) == Some(&database)
}

/// What a scenario measured of the server process and the tool itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Highest sampled server RSS during the measured phase.
    pub server_rss_peak_kib: u64,
    /// Median sampled server RSS during the measured phase.
    pub server_rss_steady_kib: u64,
    /// Server CPU seconds spent during the measured phase.
    pub server_cpu_seconds: f64,
    /// PostgreSQL's CPU seconds in the same phase (0 on SQLite).
    pub postgres_cpu_seconds: f64,
    /// The benchmark tool's own CPU seconds in the same phase.
    pub tool_cpu_seconds: f64,
    pub seconds: f64,
}

/// Samples a server's RSS every 200 ms while a phase runs.
pub struct Sampler {
    pid: Option<u32>,
    database: Option<String>,
    samples: Arc<Mutex<Vec<u64>>>,
    stop: tokio::sync::watch::Sender<bool>,
    cpu_start: f64,
    postgres_start: f64,
    tool_start: f64,
    started: std::time::Instant,
}

impl Sampler {
    pub fn start(watched: &Watched) -> Self {
        let (pid, database) = (watched.server_pid, watched.postgres_database.clone());
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        if let Some(pid) = pid {
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Some(rss) = rss_kib(pid) {
                                samples.lock().unwrap_or_else(|p| p.into_inner()).push(rss);
                            }
                        }
                        _ = stopped.changed() => return,
                    }
                }
            });
        }
        Self {
            pid,
            samples,
            stop,
            cpu_start: pid.and_then(cpu_seconds).unwrap_or(0.0),
            postgres_start: postgres_cpu_seconds(database.as_deref()),
            database,
            tool_start: cpu_seconds(std::process::id()).unwrap_or(0.0),
            started: std::time::Instant::now(),
        }
    }

    pub fn finish(self) -> Resources {
        let _ = self.stop.send(true);
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(rss) = self.pid.and_then(rss_kib) {
            samples.push(rss);
        }
        samples.sort_unstable();
        Resources {
            server_rss_peak_kib: samples.last().copied().unwrap_or(0),
            server_rss_steady_kib: samples.get(samples.len() / 2).copied().unwrap_or(0),
            server_cpu_seconds: self.pid.and_then(cpu_seconds).map_or(0.0, |now| now - self.cpu_start),
            postgres_cpu_seconds: postgres_cpu_seconds(self.database.as_deref()) - self.postgres_start,
            tool_cpu_seconds: cpu_seconds(std::process::id()).unwrap_or(0.0) - self.tool_start,
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let p = Percentiles::of(samples);
        assert_eq!((p.count, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms), (100, 50.0, 95.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(vec![]).count, 0);
        assert_eq!(Percentiles::of(vec![1500]).p99_ms, 1.5);
    }

    #[test]
    fn postgres_time_leaves_out_other_databases_client_backends() {
        let ours = "postgres: 15/main: postgres tessera_bench 127.0.0.1(45210) idle";
        let theirs = "postgres: 15/main: postgres tessera_test_1 127.0.0.1(45202) idle in transaction";
        let local = "postgres: 15/main: postgres tessera_test_1 [local] idle";
        let shared = ["postgres: 15/main: walwriter ", "/usr/lib/postgresql/15/bin/postgres -D /var/lib/x"];
        assert!(counts_for(ours, Some("tessera_bench")));
        assert!(!counts_for(theirs, Some("tessera_bench")) && !counts_for(local, Some("tessera_bench")));
        assert!(shared.iter().all(|title| counts_for(title, Some("tessera_bench"))));
        assert!(counts_for(theirs, None));
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let pid = std::process::id();
        assert!(rss_kib(pid).is_some_and(|kib| kib > 0));
        assert!(cpu_seconds(pid).is_some());
        assert!(cpu_seconds(u32::MAX).is_none());
    }
}
