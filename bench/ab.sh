#!/usr/bin/env bash
# Before/after: runs several server builds against PostgreSQL in
# alternation, round after round, and prints one line per run. This
# machine's speed drifts by tens of percent over an hour, so builds are
# compared only within a round, never across separate sittings.
#
#   bench/ab.sh OUT ROUNDS BIN...
#   SCENARIOS="steady big-room" STEADY_ARGS="--users 1000 --room-size 10 --rate 1000 --seconds 30" \
#     bench/ab.sh /tmp/ab 2 /tmp/tessera-before target/release/tessera
#
# Build the tool first (cargo build --release -p tessera-bench, into
# CARGO_TARGET_DIR if set). Each run is `bench/run.sh` with TESSERA_BIN set, results in
# OUT/<binary name>-<round>. SCENARIOS and the <SCENARIO>_ARGS overrides
# are passed through (default: 30 s of steady chat and of the 500-member
# room).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 3 ]]; then
	sed -n '2,18p' "$0" >&2
	exit 2
fi
out=$1 rounds=$2
shift 2
export SCENARIOS=${SCENARIOS:-"steady big-room"}
export STEADY_ARGS=${STEADY_ARGS:-"--users 1000 --room-size 10 --rate 1000 --seconds 30"}
export BIG_ROOM_ARGS=${BIG_ROOM_ARGS:-"--members 500 --rate 20 --seconds 30"}

for round in $(seq 1 "$rounds"); do
	for bin in "$@"; do
		label="$(basename "$bin")-$round"
		TESSERA_BIN=$(realpath "$bin") SIZES=smoke TARGETS=tessera-postgres RESULTS="$out/$label" \
			bash bench/run.sh >"$out.$label.log" 2>&1
		python3 - "$out/$label/tessera-postgres" "$label" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    o = json.loads(path.read_text())["outcome"]
    r = o.get("resources", {})
    if "rss_per_connection_kib" in o:  # idle connections
        print(f"{sys.argv[2]:28s} {path.stem:14s} RSS per connection {o['rss_per_connection_kib']:6.1f} KiB "
              f"(before {o['baseline_rss_kib'] / 1024:.0f} MiB, held {o['held_rss_kib'] / 1024:.0f} MiB) "
              f"ended early {o['ended_early']}", flush=True)
        continue
    if "query_user" in o:  # the key API: a line per operation
        for key in ("query_user", "claim_user", "query_room", "claim_room"):
            op, ms = o[key], lambda seconds: seconds * 1000
            print(f"{sys.argv[2]:28s} keys {key:9s} p50 {op['latency']['p50_ms']:7.1f} "
                  f"p99 {op['latency']['p99_ms']:7.1f} ms  server {ms(op['server_cpu_seconds_per_request']):6.2f} ms "
                  f"postgres {ms(op['postgres_cpu_seconds_per_request']):6.2f} ms per request "
                  f"incomplete {op['incomplete']} errors {sum(op['errors'].values())}", flush=True)
        continue
    if "deliveries_received" not in o:  # other scenarios: see the JSON
        print(f"{sys.argv[2]:28s} {path.stem:14s} {path}", flush=True)
        continue
    d = o.get("delivery_latency", {})
    cpu = (r["server_cpu_seconds"] + r["postgres_cpu_seconds"]) / max(1, o["deliveries_received"]) * 1000
    print(f"{sys.argv[2]:28s} {path.stem:14s} accepted {o['accepted_per_second']:7.1f}/s "
          f"delivery p50 {d.get('p50_ms', 0):7.1f} p99 {d.get('p99_ms', 0):7.1f} ms "
          f"missing {o['deliveries_missing']}  server {r['server_cpu_seconds']:5.1f} s "
          f"postgres {r['postgres_cpu_seconds']:5.1f} s tool {r['tool_cpu_seconds']:5.1f} s "
          f"(server+postgres per 1k deliveries {cpu:.3f} s)", flush=True)
PY
	done
done
