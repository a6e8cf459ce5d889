#!/usr/bin/env bash
# Runs the stock matrix-nio client scenarios against Tessera on SQLite and
# on PostgreSQL: nio_smoke.py (accounts) and then nio_rooms.py (rooms,
# relations, permissions and paging back through $NIO_ROOMS_MESSAGES
# messages, default 300). Usage: tests/clients/run_nio_smoke.sh [path/to/tessera]
# Needs python3 with venv and PyPI access (to install matrix-nio once into
# $NIO_VENV, default /var/tmp/tessera-nio-venv), and for the PostgreSQL run
# an admin URL in TESSERA_TEST_POSTGRES (skipped when unset).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="${1:-$here/../../target/debug/tessera}"
venv="${NIO_VENV:-/var/tmp/tessera-nio-venv}"
messages="${NIO_ROOMS_MESSAGES:-300}"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import nio' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'matrix-nio==0.26.0'
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_against() { # $1 = label, $2 = database URL or empty for SQLite
    local data port pid status=0
    data="$(mktemp -d)"
    port="$(free_port)"
    TESSERA_ALLOW_REGISTRATION=true TESSERA_LISTEN="127.0.0.1:$port" TESSERA_DATA_DIR="$data" \
        TESSERA_DATABASE_URL="${2:-sqlite://$data/tessera.db}" TESSERA_LOG=warn \
        TESSERA_RATE_LIMITS_LOGIN_PER_SECOND=0 TESSERA_RATE_LIMITS_REGISTRATION_PER_SECOND=0 \
        TESSERA_RATE_LIMITS_GENERAL_PER_SECOND=0 \
        "$binary" >"$data/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
        sleep 0.1
    done
    echo "== matrix-nio (nio_smoke.py) against Tessera on $1"
    "$venv/bin/python" "$here/nio_smoke.py" "http://127.0.0.1:$port" || status=$?
    echo "== matrix-nio (nio_rooms.py --messages $messages) against Tessera on $1"
    "$venv/bin/python" "$here/nio_rooms.py" "http://127.0.0.1:$port" --messages "$messages" || status=$?
    echo "== matrix-nio (nio_sync.py) against Tessera on $1"
    "$venv/bin/python" "$here/nio_sync.py" "http://127.0.0.1:$port" || status=$?
    kill "$pid"; wait "$pid" || true
    [ "$status" -eq 0 ] || cat "$data/server.log"
    rm -rf "$data"
    return "$status"
}

# Both backends run even when the first fails; the exit status is 1 if any
# scenario failed on either.
overall=0
run_against SQLite "" || overall=1
if [ -n "${TESSERA_TEST_POSTGRES:-}" ]; then
    db="nio_smoke_$$"
    psql "$TESSERA_TEST_POSTGRES" -qc "CREATE DATABASE $db"
    trap 'psql "$TESSERA_TEST_POSTGRES" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
    run_against PostgreSQL "${TESSERA_TEST_POSTGRES%/*}/$db" || overall=1
fi
exit "$overall"
