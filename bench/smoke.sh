#!/usr/bin/env bash
# CI's smoke run of the benchmark tool: a few seconds of each load shape
# at tiny sizes against Tessera on SQLite, with --strict, so the run fails
# unless every message was delivered exactly once to every other member
# (every asked key was answered) and nothing failed. It checks the tool's accounting, never a speed.
# Usage: bench/smoke.sh [target-dir/debug]
set -euo pipefail
bin="${1:-target/debug}"
secret=tessera-bench-smoke
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

data="$(mktemp -d)"
port="$(free_port)"
TESSERA_LISTEN="127.0.0.1:$port" TESSERA_DATA_DIR="$data" TESSERA_LOG=warn \
    TESSERA_REGISTRATION_SHARED_SECRET="$secret" TESSERA_RATE_LIMITS_GENERAL_PER_SECOND=0 \
    TESSERA_RATE_LIMITS_REGISTRATION_PER_SECOND=0 TESSERA_RATE_LIMITS_LOGIN_PER_SECOND=0 \
    TESSERA_RATE_LIMITS_FAILED_LOGIN_PER_SECOND=0 \
    "$bin/tessera" >"$data/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
done

run() {
    echo "== tessera-bench run $*"
    BENCH_SHARED_SECRET="$secret" "$bin/tessera-bench" run --url "http://127.0.0.1:$port" \
        --target tessera-sqlite --server-pid "$pid" --warmup-seconds 1 --strict "$@" >"$data/result.json" || {
        cat "$data/result.json" "$data/server.log"
        exit 1
    }
    grep -E '"(deliveries_expected|deliveries_received|deliveries_missing)"' "$data/result.json" || true
}

run steady --users 6 --room-size 3 --rate 20 --seconds 2
run --transport web-socket steady --users 6 --room-size 3 --rate 20 --seconds 2
run big-room --members 8 --rate 10 --seconds 2
run catch-up --rooms 3 --room-size 3 --messages 30
run keys --devices 4 --members 5 --query-rounds 3 --claim-rounds 3
echo "== benchmark smoke run passed"
