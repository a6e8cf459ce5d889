//! The page's "Targets" section: the targets, each met or missed by
//! Tessera on PostgreSQL, judged only on results at the sizes.

use std::fmt::Write as _;

use serde_json::Value;

use super::Results;

/// The targets, checked on Tessera with PostgreSQL.
pub(super) fn section(out: &mut String, results: &Results) {
    // A result counts only if it was measured at the sizes.
    let full_size = |stem: &str, result: &Value| {
        let param =
            |key: &str| result.pointer(&format!("/params/{key}")).and_then(Value::as_f64).unwrap_or(0.0);
        match stem {
            "steady" | "ceiling" => {
                param("users") >= 1000.0 && (stem == "ceiling" || param("rate") >= 1000.0)
            }
            "big-room" => param("members") >= 500.0,
            "federation" => param("rate") >= 500.0,
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
    // to build 300 rooms of 300); Tessera's run at the size counts.
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
    let across = get(pg, "federation", "/outcome/cross_server_delivery_latency/p99_ms");
    let across_missing = get(pg, "federation", "/outcome/deliveries_missing");
    let across_rate = get(pg, "federation", "/outcome/accepted_per_second");
    line(
        "two servers: 500 msg/s across, cross-server delivery p99 ≤ 100 ms, nothing missing",
        across,
        format!(
            "{:.0} msg/s, p99 {:.1} ms, {:.0} missing",
            across_rate.unwrap_or(0.0),
            across.unwrap_or(0.0),
            across_missing.unwrap_or(0.0)
        ),
        across.zip(across_missing).zip(across_rate).map(|((p, m), r)| p <= 100.0 && m == 0.0 && r >= 495.0),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::report::tests::results;

    #[test]
    fn targets_are_judged_on_tessera_with_postgres_at_full_size() {
        let mut out = String::new();
        section(&mut out, &results());
        assert!(out.contains(
            "1,000 msg/s, delivery p99 ≤ 50 ms, nothing missing | 1000 msg/s, p99 20.0 ms, 0 missing | met"
        ), "{out}");
        assert!(out.contains("ceiling ≥ 5,000 msg/s | 0 msg/s | not measured at the target's size"), "{out}");

        let mut small = results();
        small.get_mut("tessera-postgres").unwrap().get_mut("steady").unwrap()["params"]["users"] = json!(6);
        let mut out = String::new();
        section(&mut out, &small);
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
        section(&mut out, &results);
        assert!(
            out.contains("| catch-up initial sync < 2 s | 0.30 s at 100 rooms × 100 members | not measured"),
            "{out}"
        );

        results.get_mut("tessera-postgres").unwrap().insert("catch-up-full".into(), catch_up(300, 2.5));
        let mut out = String::new();
        section(&mut out, &results);
        assert!(out.contains("| catch-up initial sync < 2 s | 2.50 s | **missed** |"), "{out}");
    }

    #[test]
    fn a_synapse_that_passed_no_ceiling_step_bounds_the_ratio_by_its_first_step() {
        let ceiling = |sustained: f64| json!({ "params": { "users": 1000, "start_rate": 8 }, "outcome": { "sustained_rate": sustained } });
        let mut results = results();
        results.get_mut("tessera-postgres").unwrap().insert("ceiling".into(), ceiling(400.0));
        results.get_mut("synapse-postgres").unwrap().insert("ceiling".into(), ceiling(0.0));
        let mut out = String::new();
        section(&mut out, &results);
        assert!(out.contains("| ≥ 10× Synapse's ceiling | more than 50.0× (Synapse passed no step; its first was 8 msg/s) | met |"), "{out}");

        results.get_mut("synapse-postgres").unwrap().insert("ceiling".into(), ceiling(80.0));
        let mut out = String::new();
        section(&mut out, &results);
        assert!(out.contains("| ≥ 10× Synapse's ceiling | 5.0× | **missed** |"), "{out}");
    }
}
