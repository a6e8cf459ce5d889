//! Turns a results directory (`<target>/<scenario>.json`, plus the run's
//! `run.json` written by bench/run.sh) into docs/benchmarks.md: one table
//! per scenario with every target side by side and Tessera-versus-Synapse
//! ratios on the same database, the targets met or missed, and the plots.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::plot;

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
    Ms,
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

/// The scenarios in report order: file stem, title, rows.
const SCENARIOS: &[(&str, &str, &[Row])] = &[
    ("steady", "1. Steady chat", CHAT_ROWS),
    ("steady-ws", "1b. Steady chat, Tessera's WebSocket channel", CHAT_ROWS),
    ("big-room", "2. Big room fan-out", CHAT_ROWS),
    ("big-room-ws", "2b. Big room fan-out, Tessera's WebSocket channel", CHAT_ROWS),
    ("ceiling", "3. Throughput ceiling", CEILING_ROWS),
    ("idle", "4. Idle connections (long-poll)", IDLE_ROWS),
    ("idle-ws", "4b. Idle connections (Tessera's WebSocket channel)", IDLE_ROWS),
    ("catch-up", "5. Catch-up", CATCH_UP_ROWS),
    ("catch-up-full", "5b. Catch-up at the issue's size, Tessera alone", CATCH_UP_ROWS),
    ("cold-start", "6. Cold start", COLD_START_ROWS),
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
        Unit::Ms => format!("{value:.1} ms"),
        Unit::Seconds => format!("{value:.2} s"),
        Unit::Kib => format!("{value:.1} KiB"),
        Unit::Mib => format!("{:.1} MiB", value / 1024.0),
        Unit::Bytes if value >= 1_048_576.0 => format!("{:.2} MiB", value / 1_048_576.0),
        Unit::Bytes => format!("{:.1} KiB", value / 1024.0),
    }
}

/// How many times better Tessera is than Synapse on this metric.
fn ratio(tessera: f64, synapse: f64, better: Better) -> Option<f64> {
    match better {
        Better::Higher if synapse > 0.0 => Some(tessera / synapse),
        Better::Lower if tessera > 0.0 => Some(synapse / tessera),
        _ => None,
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

/// The issue's targets, checked on Tessera with PostgreSQL.
fn targets_section(out: &mut String, results: &Results) {
    // A result counts only if it was measured at the issue's sizes.
    let full_size = |stem: &str, result: &Value| {
        let param =
            |key: &str| result.pointer(&format!("/params/{key}")).and_then(Value::as_f64).unwrap_or(0.0);
        match stem {
            "steady" | "ceiling" => {
                param("users") >= 1000.0 && (stem == "ceiling" || param("rate") >= 1000.0)
            }
            "big-room" => param("members") >= 500.0,
            "idle" => param("connections") >= 10_000.0,
            "catch-up" => {
                param("rooms") >= 300.0 && param("room_size") >= 300.0 && param("messages") >= 10_000.0
            }
            _ => true,
        }
    };
    let get = |target: &str, stem: &str, pointer: &str| {
        let result = results.get(target)?.get(stem)?;
        full_size(stem, result).then(|| result.pointer(pointer).and_then(Value::as_f64)).flatten()
    };
    let pg = "tessera-postgres";
    out.push_str("| target (Tessera on PostgreSQL) | measured | verdict |\n|---|---|---|\n");
    let mut line = |what: &str, value: Option<f64>, shown: String, met: Option<bool>| {
        let verdict = match (value, met) {
            (None, _) | (_, None) => "not measured at the target's size",
            (_, Some(true)) => "met",
            (_, Some(false)) => "**missed**",
        };
        let _ = writeln!(out, "| {what} | {shown} | {verdict} |");
    };
    let p99 = get(pg, "steady", "/outcome/delivery_latency/p99_ms");
    let missing = get(pg, "steady", "/outcome/deliveries_missing");
    let rate = get(pg, "steady", "/outcome/accepted_per_second");
    line(
        "steady chat at 1,000 msg/s, delivery p99 ≤ 50 ms, nothing missing",
        p99,
        format!(
            "{:.0} msg/s, p99 {:.1} ms, {:.0} missing",
            rate.unwrap_or(0.0),
            p99.unwrap_or(0.0),
            missing.unwrap_or(0.0)
        ),
        p99.zip(missing).zip(rate).map(|((p, m), r)| p <= 50.0 && m == 0.0 && r >= 990.0),
    );
    let ceiling = get(pg, "ceiling", "/outcome/sustained_rate");
    line(
        "ceiling ≥ 5,000 msg/s",
        ceiling,
        format!("{:.0} msg/s", ceiling.unwrap_or(0.0)),
        ceiling.map(|c| c >= 5000.0),
    );
    let fan_out = get(pg, "big-room", "/outcome/delivery_latency/p99_ms");
    line(
        "500-member fan-out p99 ≤ 100 ms",
        fan_out,
        format!("{:.1} ms", fan_out.unwrap_or(0.0)),
        fan_out.map(|p| p <= 100.0),
    );
    let idle = get(pg, "idle", "/outcome/rss_per_connection_kib");
    line(
        "idle connections ≤ 20 KiB RSS each",
        idle,
        format!("{:.1} KiB", idle.unwrap_or(0.0)),
        idle.map(|k| k <= 20.0),
    );
    // The side-by-side catch-up may run smaller (Synapse takes many minutes
    // to build 300 rooms of 300); Tessera's run at the issue's size counts.
    let catch_up = get(pg, "catch-up", "/outcome/initial_sync/seconds")
        .or_else(|| get(pg, "catch-up-full", "/outcome/initial_sync/seconds"));
    // A smaller catch-up run is still shown, with its size.
    let smaller = results.get(pg).and_then(|r| r.get("catch-up")).filter(|_| catch_up.is_none()).map(|r| {
        let number = |pointer: &str| r.pointer(pointer).and_then(Value::as_f64).unwrap_or(0.0);
        format!(
            "{:.2} s at {:.0} rooms × {:.0} members",
            number("/outcome/initial_sync/seconds"),
            number("/params/rooms"),
            number("/params/room_size")
        )
    });
    line(
        "catch-up initial sync < 2 s",
        catch_up,
        smaller.unwrap_or_else(|| format!("{:.2} s", catch_up.unwrap_or(0.0))),
        catch_up.map(|s| s < 2.0),
    );
    let synapse_ceiling = get("synapse-postgres", "ceiling", "/outcome/sustained_rate");
    let synapse_start = get("synapse-postgres", "ceiling", "/params/start_rate");
    // A Synapse that passed no step has a ceiling below its first step's
    // rate: dividing by that rate gives a lower bound.
    let times = ceiling.zip(synapse_ceiling).and_then(|(t, s)| match s > 0.0 {
        true => Some(t / s),
        false => synapse_start.filter(|start| *start > 0.0).map(|start| t / start),
    });
    let shown = match (times, synapse_ceiling, synapse_start) {
        (Some(times), Some(s), Some(start)) if s <= 0.0 => {
            format!("more than {times:.1}× (Synapse passed no step; its first was {start:.0} msg/s)")
        }
        (Some(times), _, _) => format!("{times:.1}×"),
        (None, Some(_), _) => "Synapse passed no step, so no ratio".to_owned(),
        (None, None, _) => "0.0×".to_owned(),
    };
    line("≥ 10× Synapse's ceiling", times, shown, times.map(|x| x >= 10.0));
    let rss = get(pg, "steady", "/outcome/resources/server_rss_peak_kib");
    let synapse_rss = get("synapse-postgres", "steady", "/outcome/resources/server_rss_peak_kib");
    let fraction = rss.zip(synapse_rss).map(|(t, s)| t / s.max(1.0));
    line(
        "≤ one tenth of Synapse's RSS (steady chat peak)",
        fraction,
        format!("{:.2} of Synapse's", fraction.unwrap_or(0.0)),
        fraction.map(|f| f <= 0.1),
    );
}

/// Writes the page and its plots.
pub fn write(results_dir: &Path, plots: &Path, doc: &Path, analysis: &Path) -> Result<(), String> {
    let results = read(results_dir)?;
    if results.is_empty() {
        return Err(format!("no results under {}", results_dir.display()));
    }
    let targets = ordered(&results);
    let run: Value = std::fs::read_to_string(results_dir.join("run.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    std::fs::create_dir_all(plots).map_err(|e| format!("{}: {e}", plots.display()))?;
    let drawn = plot::draw_all(&results, &targets, plots)?;

    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str("Generated by `tessera-bench report` from the results in ");
    let _ = writeln!(out, "`{}`; do not edit by hand (edit bench/analysis.md).\n", results_dir.display());
    let field = |key: &str| run.get(key).and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let _ = writeln!(out, "- Date: {}", field("date"));
    let _ = writeln!(out, "- Commit: `{}`", field("commit"));
    let _ = writeln!(out, "- Machine: {}", field("machine"));
    let _ = writeln!(out, "- Synapse: {}", field("synapse"));
    let _ = writeln!(out, "- Targets: {}", targets.join(", "));
    if let Some(commands) = run.get("commands").and_then(Value::as_array) {
        out.push_str("\nThe exact commands (bench/run.sh runs them all):\n\n```sh\n");
        for command in commands.iter().filter_map(Value::as_str) {
            let _ = writeln!(out, "{command}");
        }
        out.push_str("```\n");
    }
    out.push_str(
        "\nEvery latency is measured by the tool on the same machine; every delivery is accounted for ",
    );
    out.push_str(
        "(expected = accepted messages × other room members). \"Tessera vs Synapse\" compares the two on ",
    );
    out.push_str("the same database: above 1× Tessera is better.\n\n## Targets\n\n");
    targets_section(&mut out, &results);
    for (stem, title, rows) in SCENARIOS {
        if !results.values().any(|r| r.contains_key(*stem)) {
            continue;
        }
        let _ = writeln!(out, "\n## {title}\n");
        table(&mut out, &results, &targets, stem, rows);
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

    fn results() -> Results {
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
        let results = results();
        let mut out = String::new();
        table(&mut out, &results, &ordered(&results), "steady", CHAT_ROWS);
        assert!(out.contains("| delivery latency p99 | 20.0 ms | 80.0 ms | 4.0× better |"), "{out}");
        assert!(out.contains("| messages accepted per second | 1000 | 400 | 2.5× better |"), "{out}");
    }

    #[test]
    fn targets_are_judged_on_tessera_with_postgres_at_full_size() {
        let mut out = String::new();
        targets_section(&mut out, &results());
        assert!(out.contains(
            "1,000 msg/s, delivery p99 ≤ 50 ms, nothing missing | 1000 msg/s, p99 20.0 ms, 0 missing | met"
        ), "{out}");
        assert!(out.contains("ceiling ≥ 5,000 msg/s | 0 msg/s | not measured at the target's size"), "{out}");

        let mut small = results();
        small.get_mut("tessera-postgres").unwrap().get_mut("steady").unwrap()["params"]["users"] = json!(6);
        let mut out = String::new();
        targets_section(&mut out, &small);
        assert!(out.contains("nothing missing | 0 msg/s, p99 0.0 ms, 0 missing | not measured"), "{out}");
    }

    #[test]
    fn catch_up_counts_at_full_size_alone_when_the_side_by_side_run_is_smaller() {
        let catch_up = |rooms: u64, seconds: f64| {
            json!({ "params": { "rooms": rooms, "room_size": rooms, "messages": 10000 },
                    "outcome": { "initial_sync": { "seconds": seconds } } })
        };
        let mut results = results();
        let pg = results.get_mut("tessera-postgres").unwrap();
        pg.insert("catch-up".into(), catch_up(100, 0.3));
        let mut out = String::new();
        targets_section(&mut out, &results);
        assert!(
            out.contains("| catch-up initial sync < 2 s | 0.30 s at 100 rooms × 100 members | not measured"),
            "{out}"
        );

        results.get_mut("tessera-postgres").unwrap().insert("catch-up-full".into(), catch_up(300, 2.5));
        let mut out = String::new();
        targets_section(&mut out, &results);
        assert!(out.contains("| catch-up initial sync < 2 s | 2.50 s | **missed** |"), "{out}");
    }

    #[test]
    fn a_synapse_that_passed_no_ceiling_step_bounds_the_ratio_by_its_first_step() {
        let ceiling = |sustained: f64| json!({ "params": { "users": 1000, "start_rate": 8 }, "outcome": { "sustained_rate": sustained } });
        let mut results = results();
        results.get_mut("tessera-postgres").unwrap().insert("ceiling".into(), ceiling(400.0));
        results.get_mut("synapse-postgres").unwrap().insert("ceiling".into(), ceiling(0.0));
        let mut out = String::new();
        targets_section(&mut out, &results);
        assert!(out.contains("| ≥ 10× Synapse's ceiling | more than 50.0× (Synapse passed no step; its first was 8 msg/s) | met |"), "{out}");

        results.get_mut("synapse-postgres").unwrap().insert("ceiling".into(), ceiling(80.0));
        let mut out = String::new();
        targets_section(&mut out, &results);
        assert!(out.contains("| ≥ 10× Synapse's ceiling | 5.0× | **missed** |"), "{out}");
    }
}
