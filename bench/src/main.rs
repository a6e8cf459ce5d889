//! tessera-bench: chat load against any homeserver by URL, measured side
//! by side. `run` measures one scenario against one target and writes its
//! JSON under `--out`; `report` turns a results directory into
//! docs/benchmarks.md's tables and PNG plots. See bench/README.md.

mod keys;
mod load;
mod matrix;
mod measure;
mod plot;
mod report;
mod scenarios;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::{load::Transport, matrix::Server, measure::Watched, scenarios::Target};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tessera-bench", about = "Chat load against a homeserver, measured")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario against one target.
    Run(RunArgs),
    /// Renders the tables and plots of a results directory.
    Report {
        /// Directory holding `<target>/<scenario>.json` files. Repeatable:
        /// a later directory's result replaces an earlier one's for the
        /// same target and scenario (a run of one scenario published beside
        /// an earlier run of the others).
        #[arg(long, default_value = "bench/results/latest")]
        results: Vec<PathBuf>,
        /// Where the PNG plots go.
        #[arg(long, default_value = "docs/bench")]
        plots: PathBuf,
        /// The Markdown file written (tables, plots, the run's facts).
        #[arg(long, default_value = "docs/benchmarks.md")]
        doc: PathBuf,
        /// Hand-written analysis appended to the page.
        #[arg(long, default_value = "bench/analysis.md")]
        analysis: PathBuf,
    },
}

#[derive(Parser)]
struct RunArgs {
    /// The homeserver's client API base URL (127.0.0.1 only).
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    url: String,
    /// Name of the target in the results (tessera-sqlite, synapse-postgres).
    #[arg(long)]
    target: String,
    /// PID of the server process, for its RSS and CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The target's PostgreSQL database: PostgreSQL's CPU time leaves out
    /// the client backends of other databases (default: every `postgres`
    /// process counts).
    #[arg(long)]
    postgres_database: Option<String>,
    /// Scenario 8: the second server's client API base URL (127.0.0.1 only).
    #[arg(long)]
    url_b: Option<String>,
    /// Scenario 8: PID of the second server's process.
    #[arg(long)]
    server_pid_b: Option<u32>,
    /// Scenario 8: the second server's PostgreSQL database.
    #[arg(long)]
    postgres_database_b: Option<String>,
    /// The server's registration shared secret.
    #[arg(long, env = "BENCH_SHARED_SECRET", default_value = "tessera-bench-secret")]
    shared_secret: String,
    /// How recipients sync.
    #[arg(long, value_enum, default_value = "long-poll")]
    transport: Transport,
    /// Chat scenarios: seconds every sync runs before the measured window
    /// (start-up traffic settles outside it).
    #[arg(long, default_value_t = 5.0)]
    warmup_seconds: f64,
    /// Results directory; the scenario's JSON goes to `<out>/<target>/`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The result file's name in `<out>/<target>/`, without `.json`
    /// (default: the scenario's, with `-ws` for the WebSocket channel).
    #[arg(long)]
    name: Option<String>,
    /// Exit non-zero unless every delivery arrived once (every key was
    /// answered) and nothing failed.
    #[arg(long)]
    strict: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// 1: users in rooms of `room_size`, all syncing, a steady send rate.
    Steady {
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        room_size: usize,
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// 2: one room of `members`, all syncing: fan-out latency.
    BigRoom {
        #[arg(long, default_value_t = 500)]
        members: usize,
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// 3: raise the rate until delivery p99 passes the limit or errors appear.
    Ceiling {
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        room_size: usize,
        #[arg(long, default_value_t = 250.0)]
        start_rate: f64,
        #[arg(long, default_value_t = 50_000.0)]
        max_rate: f64,
        #[arg(long, default_value_t = 10)]
        step_seconds: u64,
        #[arg(long, default_value_t = 200.0)]
        p99_limit_ms: f64,
    },
    /// 4: idle syncs held open: RSS per connection.
    Idle {
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// 5: a user in many rooms catches up after many messages.
    CatchUp {
        #[arg(long, default_value_t = 300)]
        rooms: usize,
        #[arg(long, default_value_t = 300)]
        room_size: usize,
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
    },
    /// 7: `/keys/query` and `/keys/claim` for a user with `devices` devices
    /// and for every member of an encrypted room of `members`, one request
    /// at a time. Every device uploads `claim_rounds` + 1 one-time keys.
    Keys {
        #[arg(long, default_value_t = 100)]
        devices: usize,
        #[arg(long, default_value_t = 500)]
        members: usize,
        #[arg(long, default_value_t = 200)]
        query_rounds: usize,
        #[arg(long, default_value_t = 50)]
        claim_rounds: usize,
    },
    /// 8: two federating servers (`--url` and `--url-b`): `users` on each,
    /// in rooms of `room_size` with members of both, both sides sending;
    /// cross-server delivery latency and each server's resources.
    Federation {
        #[arg(long, default_value_t = 100)]
        users: usize,
        #[arg(long, default_value_t = 4)]
        room_size: usize,
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// 6: server start to first answered /versions, and idle RSS. Starts the
    /// server itself with `command` (through `sh -c`) and stops it after.
    ColdStart {
        #[arg(long)]
        command: String,
        #[arg(long, default_value_t = 5)]
        settle_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // reqwest's TLS (its features are shared with the server's federation
    // client) needs rustls' process-wide crypto provider: ring.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Report { results, plots, doc, analysis } => report::write(&results, &plots, &doc, &analysis),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tessera-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    for url in std::iter::once(&args.url).chain(&args.url_b) {
        if !url.starts_with("http://127.0.0.1") && !url.starts_with("http://localhost") {
            return Err(format!("{url} is not on 127.0.0.1: the benchmark only runs on loopback"));
        }
    }
    let run_id = format!(
        "b{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 100_000_000)
    );
    let target = Target {
        server: Server::new(&args.url),
        shared_secret: args.shared_secret.clone(),
        watched: Watched { server_pid: args.server_pid, postgres_database: args.postgres_database.clone() },
        transport: args.transport,
        run_id,
        label: args.target.clone(),
        warmup: Duration::from_secs_f64(args.warmup_seconds.max(0.0)),
    };
    let (name, record, accounted) = match args.scenario.clone() {
        Scenario::Steady { users, room_size, rate, seconds } => {
            let outcome =
                scenarios::chat(&target, users, room_size, rate, Duration::from_secs(seconds)).await?;
            let params = json!({ "users": users, "room_size": room_size, "rate": rate, "seconds": seconds });
            let accounted = outcome.accounted();
            ("steady", scenarios::record("steady", params, outcome), accounted)
        }
        Scenario::BigRoom { members, rate, seconds } => {
            let outcome =
                scenarios::chat(&target, members, members, rate, Duration::from_secs(seconds)).await?;
            let params = json!({ "members": members, "rate": rate, "seconds": seconds });
            let accounted = outcome.accounted();
            ("big-room", scenarios::record("big-room", params, outcome), accounted)
        }
        Scenario::Ceiling { users, room_size, start_rate, max_rate, step_seconds, p99_limit_ms } => {
            let step = Duration::from_secs(step_seconds);
            let outcome =
                scenarios::ceiling(&target, users, room_size, start_rate, max_rate, step, p99_limit_ms)
                    .await?;
            let params = json!({ "users": users, "room_size": room_size, "start_rate": start_rate,
                                 "step_seconds": step_seconds, "p99_limit_ms": p99_limit_ms });
            ("ceiling", scenarios::record("ceiling", params, outcome), true)
        }
        Scenario::Idle { users, connections, seconds } => {
            let outcome = scenarios::idle(&target, users, connections, Duration::from_secs(seconds)).await?;
            let params = json!({ "users": users, "connections": connections, "seconds": seconds });
            ("idle", scenarios::record("idle", params, outcome), true)
        }
        Scenario::CatchUp { rooms, room_size, messages } => {
            let outcome = scenarios::catch_up(&target, rooms, room_size, messages).await?;
            // Every message sent, and both syncs carry every room.
            let all = rooms as u64;
            let accounted = outcome.messages_failed == 0
                && outcome.initial_sync.rooms == all
                && outcome.incremental_sync.rooms == all;
            let params = json!({ "rooms": rooms, "room_size": room_size, "messages": messages });
            ("catch-up", scenarios::record("catch-up", params, outcome), accounted)
        }
        Scenario::Keys { devices, members, query_rounds, claim_rounds } => {
            let outcome = keys::keys(&target, devices, members, query_rounds, claim_rounds).await?;
            let params = json!({ "devices": devices, "members": members,
                                 "query_rounds": query_rounds, "claim_rounds": claim_rounds });
            let accounted = outcome.accounted();
            ("keys", scenarios::record("keys", params, outcome), accounted)
        }
        Scenario::Federation { users, room_size, rate, seconds } => {
            let url_b = args.url_b.as_deref().ok_or("the federation scenario needs --url-b")?;
            let target_b = Target {
                server: Server::new(url_b),
                watched: Watched {
                    server_pid: args.server_pid_b,
                    postgres_database: args.postgres_database_b.clone(),
                },
                label: format!("{} B", args.target),
                ..target.clone()
            };
            let outcome = scenarios::federation(
                &target,
                &target_b,
                users,
                room_size,
                rate,
                Duration::from_secs(seconds),
            )
            .await?;
            let params = json!({ "users_per_server": users, "room_size": room_size, "rate": rate,
                                 "seconds": seconds });
            let accounted = outcome.accounted();
            ("federation", scenarios::record("federation", params, outcome), accounted)
        }
        Scenario::ColdStart { command, settle_seconds } => {
            let outcome =
                scenarios::cold_start(&target.server, &command, Duration::from_secs(settle_seconds)).await?;
            ("cold-start", scenarios::record("cold-start", json!({ "command": command }), outcome), true)
        }
    };
    let mut record = record;
    record["target"] = Value::from(args.target.clone());
    record["url"] = Value::from(args.url.clone());
    record["transport"] = serde_json::to_value(args.transport).unwrap_or_default();
    record["finished_at_unix"] = Value::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    );
    let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
    println!("{text}");
    if let Some(out) = &args.out {
        let dir = out.join(&args.target);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let suffix = if args.transport == Transport::WebSocket { "-ws" } else { "" };
        let stem = args.name.clone().unwrap_or_else(|| format!("{name}{suffix}"));
        let file = dir.join(format!("{stem}.json"));
        std::fs::write(&file, text + "\n").map_err(|e| format!("{}: {e}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    if args.strict && !accounted {
        return Err("accounting failed: deliveries missing or duplicated, or errors (see the JSON)".into());
    }
    Ok(())
}
