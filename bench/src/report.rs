//! Turns results directories (`<target>/<scenario>.json`, plus each run's
//! `run.json` written by bench/run.sh) into docs/benchmarks.md: one table
//! per scenario with every target side by side and Tessera-versus-Synapse
//! ratios on the same database, the targets met or missed, and the plots.
//! Several directories make one page: a later run's result replaces an
//! earlier one's, and each section names the run it comes from.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::plot;

mod targets;

/// Results by target name, then by file stem (`steady`, `steady-ws`).
pub type Results = BTreeMap<String, BTreeMap<String, Value>>;

/// Whether a larger value of a metric is better.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    /// A count reported for completeness (no ratio).
    Neither,
}

/// One table row: label, JSON pointer into the result, unit, direction.
type Row = (&'static str, &'static str, Unit, Better);

#[derive(Clone, Copy)]
enum Unit {
    Count,
    PerSecond,
    /// A rate that may be small: decimals below 100.
    Rate,
    Ms,
    /// Seconds shown as milliseconds (CPU time per request).
    SecondsAsMs,
    Seconds,
    Kib,
    Mib,
    Bytes,
}

const CHAT_ROWS: &[Row] = &[
    ("messages accepted per second", "/outcome/accepted_per_second", Unit::PerSecond, Better::Higher),
    ("send latency p50", "/outcome/send_latency/p50_ms", Unit::Ms, Better::Lower),
    ("send latency p99", "/outcome/send_latency/p99_ms", Unit::Ms, Better::Lower),
    ("delivery latency p50", "/outcome/delivery_latency/p50_ms", Unit::Ms, Better::Lower),
    ("delivery latency p95", "/outcome/delivery_latency/p95_ms", Unit::Ms, Better::Lower),
    ("delivery latency p99", "/outcome/delivery_latency/p99_ms", Unit::Ms, Better::Lower),
    ("delivery latency max", "/outcome/delivery_latency/max_ms", Unit::Ms, Better::Lower),
    ("deliveries expected", "/outcome/deliveries_expected", Unit::Count, Better::Neither),
    ("deliveries missing", "/outcome/deliveries_missing", Unit::Count, Better::Neither),
    ("server RSS peak", "/outcome/resources/server_rss_peak_kib", Unit::Mib, Better::Lower),
    ("server RSS steady", "/outcome/resources/server_rss_steady_kib", Unit::Mib, Better::Lower),
    ("server CPU seconds", "/outcome/resources/server_cpu_seconds", Unit::Seconds, Better::Lower),
    ("PostgreSQL CPU seconds", "/outcome/resources/postgres_cpu_seconds", Unit::Seconds, Better::Neither),
    ("benchmark tool CPU seconds", "/outcome/resources/tool_cpu_seconds", Unit::Seconds, Better::Neither),
];

const FEDERATION_ROWS: &[Row] = &[
    ("messages accepted per second", "/outcome/accepted_per_second", Unit::PerSecond, Better::Higher),
    ("send latency p99", "/outcome/send_latency/p99_ms", Unit::Ms, Better::Lower),
    ("cross-server delivery p50", "/outcome/cross_server_delivery_latency/p50_ms", Unit::Ms, Better::Lower),
    ("cross-server delivery p95", "/outcome/cross_server_delivery_latency/p95_ms", Unit::Ms, Better::Lower),
    ("cross-server delivery p99", "/outcome/cross_server_delivery_latency/p99_ms", Unit::Ms, Better::Lower),
    ("cross-server delivery max", "/outcome/cross_server_delivery_latency/max_ms", Unit::Ms, Better::Lower),
    ("all deliveries p99", "/outcome/delivery_latency/p99_ms", Unit::Ms, Better::Lower),
    ("deliveries expected", "/outcome/deliveries_expected", Unit::Count, Better::Neither),
    ("deliveries missing", "/outcome/deliveries_missing", Unit::Count, Better::Neither),
    ("server A RSS peak", "/outcome/resources/server_rss_peak_kib", Unit::Mib, Better::Lower),
    ("server B RSS peak", "/outcome/resources_b/server_rss_peak_kib", Unit::Mib, Better::Lower),
    ("server A CPU seconds", "/outcome/resources/server_cpu_seconds", Unit::Seconds, Better::Lower),
    ("server B CPU seconds", "/outcome/resources_b/server_cpu_seconds", Unit::Seconds, Better::Lower),
    ("PostgreSQL CPU seconds (A)", "/outcome/resources/postgres_cpu_seconds", Unit::Seconds, Better::Neither),
    (
        "PostgreSQL CPU seconds (B)",
        "/outcome/resources_b/postgres_cpu_seconds",
        Unit::Seconds,
        Better::Neither,
    ),
    ("benchmark tool CPU seconds", "/outcome/resources/tool_cpu_seconds", Unit::Seconds, Better::Neither),
];

const CEILING_ROWS: &[Row] = &[
    ("highest sustained rate (msg/s)", "/outcome/sustained_rate", Unit::PerSecond, Better::Higher),
    ("p99 limit", "/outcome/p99_limit_ms", Unit::Ms, Better::Neither),
];

const IDLE_ROWS: &[Row] = &[
    ("connections held", "/outcome/connections", Unit::Count, Better::Neither),
    ("RSS per connection", "/outcome/rss_per_connection_kib", Unit::Kib, Better::Lower),
    ("RSS before", "/outcome/baseline_rss_kib", Unit::Mib, Better::Lower),
    ("RSS while held", "/outcome/held_rss_kib", Unit::Mib, Better::Lower),
    ("syncs that ended early", "/outcome/ended_early", Unit::Count, Better::Neither),
    ("server CPU seconds while held", "/outcome/resources/server_cpu_seconds", Unit::Seconds, Better::Lower),
];

const CATCH_UP_ROWS: &[Row] = &[
    ("initial sync time", "/outcome/initial_sync/seconds", Unit::Seconds, Better::Lower),
    ("initial sync size", "/outcome/initial_sync/bytes", Unit::Bytes, Better::Lower),
    ("initial sync rooms", "/outcome/initial_sync/rooms", Unit::Count, Better::Neither),
    ("incremental sync time", "/outcome/incremental_sync/seconds", Unit::Seconds, Better::Lower),
    ("incremental sync size", "/outcome/incremental_sync/bytes", Unit::Bytes, Better::Lower),
    ("incremental sync rooms", "/outcome/incremental_sync/rooms", Unit::Count, Better::Neither),
    ("messages that failed to send", "/outcome/messages_failed", Unit::Count, Better::Neither),
];

const COLD_START_ROWS: &[Row] = &[
    ("start to first /versions", "/outcome/seconds_to_versions", Unit::Seconds, Better::Lower),
    ("idle RSS", "/outcome/idle_rss_kib", Unit::Mib, Better::Lower),
];

/// How a scenario's section is laid out.
enum Layout {
    /// One row per metric, one column per target.
    Metrics(&'static [Row]),
    /// One row per operation and target, one column per metric (the key
    /// API's operations, `/outcome/<key>`, each an `Operation`).
    Operations(&'static [(&'static str, &'static str)]),
}

/// Scenario 7's operations: key in the outcome, what the client does.
const KEY_OPERATIONS: &[(&str, &str)] = &[
    ("query_user", "`/keys/query`, one user's devices"),
    ("claim_user", "`/keys/claim`, one user's devices"),
    ("query_room", "`/keys/query`, the room's members"),
    ("claim_room", "`/keys/claim`, the other members' devices"),
];

/// The scenarios in report order: file stem, title, layout.
const SCENARIOS: &[(&str, &str, Layout)] = &[
    ("steady", "1. Steady chat", Layout::Metrics(CHAT_ROWS)),
    ("steady-ws", "1b. Steady chat, Tessera's WebSocket channel", Layout::Metrics(CHAT_ROWS)),
    ("big-room", "2. Big room fan-out", Layout::Metrics(CHAT_ROWS)),
    ("big-room-ws", "2b. Big room fan-out, Tessera's WebSocket channel", Layout::Metrics(CHAT_ROWS)),
    ("ceiling", "3. Throughput ceiling", Layout::Metrics(CEILING_ROWS)),
    ("idle", "4. Idle connections (long-poll)", Layout::Metrics(IDLE_ROWS)),
    ("idle-ws", "4b. Idle connections (Tessera's WebSocket channel)", Layout::Metrics(IDLE_ROWS)),
    ("catch-up", "5. Catch-up", Layout::Metrics(CATCH_UP_ROWS)),
    ("catch-up-full", "5b. Catch-up at the issue's size, Tessera alone", Layout::Metrics(CATCH_UP_ROWS)),
    ("cold-start", "6. Cold start", Layout::Metrics(COLD_START_ROWS)),
    ("keys", "7. Key API: `/keys/query` and `/keys/claim`", Layout::Operations(KEY_OPERATIONS)),
    ("federation", "8. Two servers federating (each target is a pair)", Layout::Metrics(FEDERATION_ROWS)),
    (
        "federation-ws",
        "8b. Two servers federating, Tessera's WebSocket channel",
        Layout::Metrics(FEDERATION_ROWS),
    ),
];

/// Reads every result file under `dir`.
pub fn read(dir: &Path) -> Result<Results, String> {
    let mut results = Results::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let target = entry.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&path).map_err(|e| e.to_string())?.flatten() {
            let file = file.path();
            if file.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let value: Value =
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
                let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                results.entry(target.clone()).or_default().insert(stem, value);
            }
        }
    }
    Ok(results)
}

/// Targets in report order: Tessera first, SQLite before PostgreSQL.
fn ordered(results: &Results) -> Vec<String> {
    let mut targets: Vec<String> = results.keys().cloned().collect();
    targets.sort_by_key(|t| (!t.starts_with("tessera"), !t.contains("sqlite"), t.clone()));
    targets
}

fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Count => format!("{value:.0}"),
        Unit::PerSecond => format!("{value:.0}"),
        Unit::Rate if value < 10.0 => format!("{value:.2}"),
        Unit::Rate if value < 100.0 => format!("{value:.1}"),
        Unit::Rate => format!("{value:.0}"),
        Unit::Ms => format!("{value:.1} ms"),
        Unit::SecondsAsMs => format!("{:.2} ms", value * 1000.0),
        Unit::Seconds => format!("{value:.2} s"),
        Unit::Kib => format!("{value:.1} KiB"),
        Unit::Mib => format!("{:.1} MiB", value / 1024.0),
        Unit::Bytes if value >= 1_048_576.0 => format!("{:.2} MiB", value / 1_048_576.0),
        Unit::Bytes => format!("{:.1} KiB", value / 1024.0),
    }
}

/// How many times better Tessera is than Synapse on this metric; none if
/// either is zero (a CPU time below the clock's tick has no ratio).
fn ratio(tessera: f64, synapse: f64, better: Better) -> Option<f64> {
    match better {
        _ if tessera <= 0.0 || synapse <= 0.0 => None,
        Better::Higher => Some(tessera / synapse),
        Better::Lower => Some(synapse / tessera),
        Better::Neither => None,
    }
}

/// The Tessera/Synapse pairs on the same database present in `targets`.
fn pairs(targets: &[String]) -> Vec<(String, String)> {
    ["sqlite", "postgres"]
        .iter()
        .map(|db| (format!("tessera-{db}"), format!("synapse-{db}")))
        .filter(|(t, s)| targets.contains(t) && targets.contains(s))
        .collect()
}

fn table(out: &mut String, results: &Results, targets: &[String], stem: &str, rows: &[Row]) {
    let present: Vec<&String> = targets.iter().filter(|t| results[*t].contains_key(stem)).collect();
    let pairs: Vec<(String, String)> = pairs(targets)
        .into_iter()
        .filter(|(t, s)| results[t].contains_key(stem) && results[s].contains_key(stem))
        .collect();
    let _ = write!(out, "| metric |");
    for target in &present {
        let _ = write!(out, " {target} |");
    }
    for (tessera, _) in &pairs {
        let db = tessera.trim_start_matches("tessera-");
        let _ = write!(out, " Tessera vs Synapse ({db}) |");
    }
    out.push('\n');
    out.push_str(&"|---".repeat(1 + present.len() + pairs.len()));
    out.push_str("|\n");
    for (label, pointer, unit, better) in rows {
        let _ = write!(out, "| {label} |");
        for target in &present {
            let value = results[*target][stem].pointer(pointer).and_then(Value::as_f64);
            let _ = write!(out, " {} |", value.map_or_else(|| "-".to_owned(), |v| format_value(v, *unit)));
        }
        for (tessera, synapse) in &pairs {
            let t = results[tessera][stem].pointer(pointer).and_then(Value::as_f64);
            let s = results[synapse][stem].pointer(pointer).and_then(Value::as_f64);
            let cell = match t.zip(s).and_then(|(t, s)| ratio(t, s, *better)) {
                Some(r) if r >= 1.0 => format!("{r:.1}× better"),
                Some(r) => format!("{:.1}× worse", 1.0 / r),
                None => String::new(),
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    for target in &present {
        if let Some(errors) = results[*target][stem].pointer("/outcome/errors").and_then(Value::as_object)
            && !errors.is_empty()
        {
            let _ = writeln!(out, "\nErrors on {target}: `{}`", Value::Object(errors.clone()));
        }
    }
    if let Some(params) = present.first().and_then(|t| results[*t][stem].get("params")) {
        let _ = writeln!(out, "\nSizes: `{params}`.");
    }
}

/// The columns of an operations table: header, pointer into the
/// operation, unit, direction.
const OPERATION_COLUMNS: &[Row] = &[
    ("requests", "/latency/count", Unit::Count, Better::Neither),
    ("first request", "/first_request_ms", Unit::Ms, Better::Lower),
    ("p50", "/latency/p50_ms", Unit::Ms, Better::Lower),
    ("p95", "/latency/p95_ms", Unit::Ms, Better::Lower),
    ("p99", "/latency/p99_ms", Unit::Ms, Better::Lower),
    ("requests/s", "/requests_per_second", Unit::Rate, Better::Higher),
    ("server CPU per request", "/server_cpu_seconds_per_request", Unit::SecondsAsMs, Better::Lower),
    ("PostgreSQL CPU per request", "/postgres_cpu_seconds_per_request", Unit::SecondsAsMs, Better::Neither),
    ("answer", "/response_bytes", Unit::Bytes, Better::Neither),
];

/// One row per operation and target, then per database Tessera's ratio to
/// Synapse in each column.
fn operations_table(
    out: &mut String,
    results: &Results,
    targets: &[String],
    stem: &str,
    operations: &[(&str, &str)],
) {
    let present: Vec<&String> = targets.iter().filter(|t| results[*t].contains_key(stem)).collect();
    let pairs: Vec<(String, String)> = pairs(targets)
        .into_iter()
        .filter(|(t, s)| results[t].contains_key(stem) && results[s].contains_key(stem))
        .collect();
    let at = |target: &str, key: &str, pointer: &str| {
        results[target][stem].pointer(&format!("/outcome/{key}{pointer}")).and_then(Value::as_f64)
    };
    out.push_str("| operation | target |");
    for (header, ..) in OPERATION_COLUMNS {
        let _ = write!(out, " {header} |");
    }
    out.push('\n');
    out.push_str(&"|---".repeat(2 + OPERATION_COLUMNS.len()));
    out.push_str("|\n");
    for (key, label) in operations {
        // The request's size, as the first target measured it.
        let size = present.first().map_or_else(String::new, |t| {
            let users = at(t, key, "/users").unwrap_or(0.0);
            let devices = at(t, key, "/devices").unwrap_or(0.0);
            let plural = if users == 1.0 { "" } else { "s" };
            format!(": {users:.0} user{plural}, {devices:.0} devices")
        });
        for (n, target) in present.iter().enumerate() {
            let _ = match n {
                0 => write!(out, "| {label}{size} | {target} |"),
                _ => write!(out, "| | {target} |"),
            };
            for (_, pointer, unit, _) in OPERATION_COLUMNS {
                let value = at(target, key, pointer);
                let _ =
                    write!(out, " {} |", value.map_or_else(|| "-".to_owned(), |v| format_value(v, *unit)));
            }
            out.push('\n');
        }
        for (tessera, synapse) in &pairs {
            let db = tessera.trim_start_matches("tessera-");
            let _ = write!(out, "| | Tessera vs Synapse ({db}) |");
            for (_, pointer, _, better) in OPERATION_COLUMNS {
                let (t, s) = (at(tessera, key, pointer), at(synapse, key, pointer));
                let cell = match t.zip(s).and_then(|(t, s)| ratio(t, s, *better)) {
                    Some(r) if r >= 1.0 => format!("{r:.1}× better"),
                    Some(r) => format!("{:.1}× worse", 1.0 / r),
                    None => String::new(),
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
    }
    for target in &present {
        for (key, label) in operations {
            let failed = results[*target][stem].pointer(&format!("/outcome/{key}/errors"));
            if let Some(errors) = failed.and_then(Value::as_object).filter(|e| !e.is_empty()) {
                let _ = writeln!(out, "\nErrors on {target}, {label}: `{}`", Value::Object(errors.clone()));
            }
            if let Some(incomplete) = at(target, key, "/incomplete").filter(|n| *n > 0.0) {
                let _ = writeln!(out, "\nAnswers missing keys on {target}, {label}: {incomplete:.0}");
            }
        }
    }
    if let Some(params) = present.first().and_then(|t| results[*t][stem].get("params")) {
        let _ = writeln!(out, "\nSizes: `{params}`.");
    }
}

/// One results directory's run, as the page describes it.
struct Run {
    dir: PathBuf,
    /// Its `run.json` (date, commit, machine, Synapse, commands).
    facts: Value,
    targets: Vec<String>,
}

/// Per scenario (file stem), the runs (indices) its shown results come from.
type Sources = BTreeMap<String, BTreeSet<usize>>;

/// Reads every directory, a later one's result replacing an earlier one's.
fn read_all(dirs: &[PathBuf]) -> Result<(Results, Vec<Run>, Sources), String> {
    let mut results = Results::new();
    let mut origin: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut runs = Vec::with_capacity(dirs.len());
    for (n, dir) in dirs.iter().enumerate() {
        let found = read(dir)?;
        if found.is_empty() {
            return Err(format!("no results under {}", dir.display()));
        }
        let facts: Value = std::fs::read_to_string(dir.join("run.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        runs.push(Run { dir: dir.clone(), facts, targets: ordered(&found) });
        for (target, files) in found {
            for (stem, value) in files {
                origin.insert((target.clone(), stem.clone()), n);
                results.entry(target.clone()).or_default().insert(stem, value);
            }
        }
    }
    let mut sources = Sources::new();
    for ((_, stem), n) in origin {
        sources.entry(stem).or_default().insert(n);
    }
    Ok((results, runs, sources))
}

/// A run's date, commit, machine, Synapse version, targets and commands.
fn run_facts(out: &mut String, run: &Run) {
    let field = |key: &str| run.facts.get(key).and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let _ = writeln!(out, "- Date: {}", field("date"));
    let _ = writeln!(out, "- Commit: `{}`", field("commit"));
    let _ = writeln!(out, "- Machine: {}", field("machine"));
    let _ = writeln!(out, "- Synapse: {}", field("synapse"));
    let _ = writeln!(out, "- Targets: {}", run.targets.join(", "));
    if let Some(commands) = run.facts.get("commands").and_then(Value::as_array) {
        out.push_str("\nThe exact commands (bench/run.sh runs them all):\n\n```sh\n");
        for command in commands.iter().filter_map(Value::as_str) {
            let _ = writeln!(out, "{command}");
        }
        out.push_str("```\n");
    }
}

/// Writes the page and its plots from the results in `results_dirs`.
pub fn write(results_dirs: &[PathBuf], plots: &Path, doc: &Path, analysis: &Path) -> Result<(), String> {
    let (results, runs, sources) = read_all(results_dirs)?;
    let targets = ordered(&results);
    std::fs::create_dir_all(plots).map_err(|e| format!("{}: {e}", plots.display()))?;
    let drawn = plot::draw_all(&results, &targets, plots)?;

    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str("Generated by `tessera-bench report` from the results in ");
    let dirs: Vec<String> = runs.iter().map(|run| format!("`{}`", run.dir.display())).collect();
    let _ = write!(out, "{}", dirs.join(" and "));
    if let [run] = runs.as_slice() {
        out.push_str("; do not edit by hand (edit bench/analysis.md).\n\n");
        run_facts(&mut out, run);
    } else {
        out.push_str(" (a later run's result replaces an earlier one's; each section names its run); ");
        out.push_str("do not edit by hand (edit bench/analysis.md).\n\n## Runs\n");
        for (n, run) in runs.iter().enumerate() {
            let stems: Vec<&str> = SCENARIOS
                .iter()
                .map(|s| s.0)
                .filter(|stem| sources.get(*stem).is_some_and(|r| r.contains(&n)))
                .collect();
            let _ = writeln!(out, "\n### `{}`: {}\n", run.dir.display(), stems.join(", "));
            run_facts(&mut out, run);
        }
    }
    out.push_str(
        "\nEvery latency is measured by the tool on the same machine; every delivery is accounted for ",
    );
    out.push_str(
        "(expected = accepted messages × other room members). \"Tessera vs Synapse\" compares the two on ",
    );
    out.push_str("the same database: above 1× Tessera is better.\n\n## Targets\n\n");
    targets::section(&mut out, &results);
    for (stem, title, layout) in SCENARIOS {
        if !results.values().any(|r| r.contains_key(*stem)) {
            continue;
        }
        let _ = writeln!(out, "\n## {title}\n");
        if runs.len() > 1 {
            let from: Vec<String> =
                sources.get(*stem).into_iter().flatten().map(|n| dirs[*n].clone()).collect();
            let _ = writeln!(out, "From the run in {}.\n", from.join(" and "));
        }
        match layout {
            Layout::Metrics(rows) => table(&mut out, &results, &targets, stem, rows),
            Layout::Operations(operations) => {
                operations_table(&mut out, &results, &targets, stem, operations)
            }
        }
        for png in drawn.iter().filter(|p| p.0 == *stem) {
            let relative = relative_to(doc, &png.1);
            let _ = writeln!(out, "\n![{title}]({relative})");
        }
    }
    if let Ok(text) = std::fs::read_to_string(analysis) {
        out.push('\n');
        out.push_str(&text);
    }
    std::fs::write(doc, out).map_err(|e| format!("{}: {e}", doc.display()))?;
    eprintln!("wrote {} and {} plots", doc.display(), drawn.len());
    Ok(())
}

/// `file`'s path as a link from the page at `doc`.
fn relative_to(doc: &Path, file: &Path) -> String {
    let base = doc.parent().unwrap_or(Path::new(""));
    file.strip_prefix(base).map(PathBuf::from).unwrap_or_else(|_| file.to_path_buf()).display().to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Steady chat on Tessera and Synapse with PostgreSQL.
    pub(super) fn results() -> Results {
        let steady = |p99: f64, rate: f64| {
            json!({ "params": { "users": 1000, "rate": 1000 }, "outcome": {
            "accepted_per_second": rate, "delivery_latency": { "p99_ms": p99 }, "deliveries_missing": 0,
            "resources": { "server_rss_peak_kib": 2048 } } })
        };
        let mut results = Results::new();
        results.entry("tessera-postgres".into()).or_default().insert("steady".into(), steady(20.0, 1000.0));
        results.entry("synapse-postgres".into()).or_default().insert("steady".into(), steady(80.0, 400.0));
        results
    }

    #[test]
    fn ratios_say_how_many_times_better_tessera_is() {
        assert_eq!(ratio(1000.0, 400.0, Better::Higher), Some(2.5));
        assert_eq!(ratio(20.0, 80.0, Better::Lower), Some(4.0));
        assert_eq!(ratio(1.0, 1.0, Better::Neither), None);
        assert_eq!((ratio(0.01, 0.0, Better::Lower), ratio(0.0, 5.0, Better::Higher)), (None, None));
        let results = results();
        let mut out = String::new();
        table(&mut out, &results, &ordered(&results), "steady", CHAT_ROWS);
        assert!(out.contains("| delivery latency p99 | 20.0 ms | 80.0 ms | 4.0× better |"), "{out}");
        assert!(out.contains("| messages accepted per second | 1000 | 400 | 2.5× better |"), "{out}");
    }

    #[test]
    fn key_operations_show_each_target_and_the_ratio_on_each_database() {
        let keys = |p50: f64, cpu: f64| {
            let op = json!({ "users": 1, "devices": 100, "first_request_ms": 2.0 * p50,
                             "latency": { "count": 50, "p50_ms": p50, "p95_ms": p50, "p99_ms": p50 },
                             "requests_per_second": 1000.0 / p50, "server_cpu_seconds_per_request": cpu,
                             "postgres_cpu_seconds_per_request": 0.0, "response_bytes": 2048,
                             "incomplete": 0, "errors": {} });
            json!({ "params": { "devices": 100 }, "outcome": { "query_user": op } })
        };
        let mut results = Results::new();
        results.entry("tessera-sqlite".into()).or_default().insert("keys".into(), keys(4.0, 0.002));
        results.entry("synapse-sqlite".into()).or_default().insert("keys".into(), keys(2.0, 0.004));
        let mut out = String::new();
        let operations = &KEY_OPERATIONS[..1];
        operations_table(&mut out, &results, &ordered(&results), "keys", operations);
        assert!(out.contains(
            "| `/keys/query`, one user's devices: 1 user, 100 devices | tessera-sqlite | 50 | 8.0 ms | 4.0 ms \
             | 4.0 ms | 4.0 ms | 250 | 2.00 ms | 0.00 ms | 2.0 KiB |"
        ), "{out}");
        assert!(out.contains("| | synapse-sqlite | 50 | 4.0 ms |"), "{out}");
        assert!(
            out.contains(
                "| | Tessera vs Synapse (sqlite) |  | 2.0× worse | 2.0× worse | 2.0× worse | 2.0× worse \
             | 2.0× worse | 2.0× better |  |  |"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_later_run_replaces_an_earlier_ones_result_and_each_is_named() {
        let root = std::env::temp_dir().join(format!("tessera-bench-report-{}", std::process::id()));
        let write = |run: &str, target: &str, stem: &str, p99: f64| {
            let dir = root.join(run).join(target);
            std::fs::create_dir_all(&dir).unwrap();
            let result = json!({ "params": {}, "outcome": { "delivery_latency": { "p99_ms": p99 } } });
            std::fs::write(dir.join(format!("{stem}.json")), result.to_string()).unwrap();
        };
        write("a", "tessera-sqlite", "steady", 10.0);
        write("a", "tessera-sqlite", "big-room", 20.0);
        write("b", "tessera-sqlite", "big-room", 30.0);
        std::fs::write(root.join("b/run.json"), r#"{"date":"2026-12-07"}"#).unwrap();
        let (results, runs, sources) = read_all(&[root.join("a"), root.join("b")]).unwrap();
        let p99 =
            |stem: &str| results["tessera-sqlite"][stem]["outcome"]["delivery_latency"]["p99_ms"].clone();
        assert_eq!((p99("steady"), p99("big-room")), (json!(10.0), json!(30.0)));
        assert_eq!(sources["steady"], BTreeSet::from([0]));
        assert_eq!(sources["big-room"], BTreeSet::from([1]));
        assert_eq!(runs[1].facts["date"], "2026-12-07");

        let doc = root.join("page.md");
        super::write(&[root.join("a"), root.join("b")], &root.join("plots"), &doc, &root.join("none"))
            .unwrap();
        let page = std::fs::read_to_string(&doc).unwrap();
        let _ = std::fs::remove_dir_all(&root);
        assert!(page.contains(&format!("### `{}`: big-room\n", root.join("b").display())), "{page}");
        assert!(page.contains(&format!("From the run in `{}`.", root.join("a").display())), "{page}");
    }
}
