#!/usr/bin/env bash
# bench/interop.sh — Tessera <-> Synapse federation interop test, one command.
#
# Starts one Tessera (SQLite under its data dir) and one Synapse (SQLite,
# bench/synapse.sh start-federating) on 127.0.0.1 only, federating over TLS
# with certificates from the test CA (bench/federation-ca.sh), runs the
# checks of bench/interop.py against both client APIs, stops both and exits
# non-zero if any check did not pass. Both servers' logs, the driver's
# request trace and the results (JSON) are kept in a directory it prints.
#
# Usage: bench/interop.sh [interop.py options, e.g. --only '^3 ' --deadline 30]
#
# Environment:
#   TESSERA_BIN      the Tessera binary (default target/release/tessera)
#   TESSERA_LOG      Tessera's tracing filter (default info,ruma_state_res=warn: a
#                    line per request, without the auth rules' line per check)
#   SYNAPSE_LOG_LEVEL  Synapse's log level (default INFO: a line per request)
#   T_CLIENT T_FED   Tessera's client and federation ports (18030, 18470)
#   S_CLIENT S_FED   Synapse's client and federation ports (18031, 18471)
#   INTEROP_DIR      scratch and logs (default /var/tmp/tessera-bench/interop)
#   KEEP=1           leave both servers running at the end
# Needs bench/synapse.sh install first (run here if missing), curl, python3.
# Server names are localhost:<federation port>: each side reaches the other
# at that address and checks its certificate for "localhost".

set -euo pipefail
cd "$(dirname "$0")/.."

readonly SECRET=${BENCH_SHARED_SECRET:-tessera-bench-secret}
export BENCH_SHARED_SECRET=$SECRET
readonly T_CLIENT=${T_CLIENT:-18030} T_FED=${T_FED:-18470}
readonly S_CLIENT=${S_CLIENT:-18031} S_FED=${S_FED:-18471}
readonly WORK=${INTEROP_DIR:-/var/tmp/tessera-bench/interop}
readonly CA_DIR=$WORK/federation-ca
readonly SYNAPSE_INSTANCE=interop
readonly SYNAPSE_DIR=/var/tmp/tessera-bench/synapse-sqlite-$SYNAPSE_INSTANCE
BIN=${TESSERA_BIN:-target/release/tessera}
LOGS=$WORK/logs/$(date -u +%Y%m%dT%H%M%SZ)
TESSERA_PID=
SYNAPSE_STARTED=

say() { printf 'interop.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 2
}

listening() {
	python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

# cleanup — stop both servers (unless KEEP=1) and keep Synapse's logs.
cleanup() {
	local rc=$?
	if [[ ${KEEP:-} == 1 ]]; then
		say "KEEP=1: Tessera pid $TESSERA_PID and Synapse ($SYNAPSE_DIR) left running"
	else
		if [[ -n $TESSERA_PID ]]; then
			kill -TERM "$TESSERA_PID" 2>/dev/null || true
			wait "$TESSERA_PID" 2>/dev/null || true
		fi
		if [[ -n $SYNAPSE_STARTED ]]; then
			SYNAPSE_LOG_LEVEL=INFO bench/synapse.sh stop sqlite "$SYNAPSE_INSTANCE" 2>/dev/null || true
		fi
	fi
	for f in homeserver.log startup.log homeserver.yaml; do
		[[ -f $SYNAPSE_DIR/$f ]] && cp "$SYNAPSE_DIR/$f" "$LOGS/synapse-$f"
	done
	say "logs: $LOGS (tessera.log, synapse-homeserver.log, driver-trace.log, results.json)"
	exit "$rc"
}

start_tessera() {
	local dir=$WORK/tessera
	rm -rf "$dir"
	mkdir -p "$dir"
	listening "$T_CLIENT" && die "something already listens on 127.0.0.1:$T_CLIENT"
	listening "$T_FED" && die "something already listens on 127.0.0.1:$T_FED"
	say "starting Tessera $BIN: server localhost:$T_FED, client http://127.0.0.1:$T_CLIENT, federation https://127.0.0.1:$T_FED"
	env TESSERA_SERVER_NAME="localhost:$T_FED" TESSERA_LISTEN="127.0.0.1:$T_CLIENT" \
		TESSERA_FEDERATION_LISTEN="127.0.0.1:$T_FED" TESSERA_LOG="${TESSERA_LOG:-info,ruma_state_res=warn}" \
		TESSERA_TLS_CERTIFICATE="$CA_DIR/tessera-interop.pem" TESSERA_TLS_PRIVATE_KEY="$CA_DIR/tessera-interop.key" \
		TESSERA_FEDERATION_TRUSTED_CA="$CA_DIR/ca.pem" TESSERA_OUTBOUND_ALLOWED_RANGES=127.0.0.0/8 \
		TESSERA_REGISTRATION_SHARED_SECRET="$SECRET" TESSERA_RATE_LIMITS_GENERAL_PER_SECOND=0 \
		TESSERA_RATE_LIMITS_LOGIN_PER_SECOND=0 TESSERA_RATE_LIMITS_REGISTRATION_PER_SECOND=0 \
		TESSERA_RATE_LIMITS_FAILED_LOGIN_PER_SECOND=0 TESSERA_DATA_DIR="$dir" \
		"$BIN" >"$LOGS/tessera.log" 2>&1 &
	TESSERA_PID=$!
	local i
	for ((i = 0; i < 600; i++)); do
		kill -0 "$TESSERA_PID" 2>/dev/null || {
			tail -n 30 "$LOGS/tessera.log" >&2
			die "Tessera exited at start"
		}
		if curl -sf -o /dev/null "http://127.0.0.1:$T_CLIENT/_matrix/client/versions" &&
			curl -sf -o /dev/null --cacert "$CA_DIR/ca.pem" --resolve "localhost:$T_FED:127.0.0.1" \
				"https://localhost:$T_FED/_matrix/key/v2/server"; then
			say "Tessera pid $TESSERA_PID answers"
			return 0
		fi
		sleep 0.1
	done
	tail -n 30 "$LOGS/tessera.log" >&2
	die "Tessera did not answer within 60 s"
}

main() {
	[[ -x $BIN ]] || die "no Tessera binary at $BIN (set TESSERA_BIN)"
	BIN=$(realpath "$BIN")
	command -v curl >/dev/null || die "curl is required"
	mkdir -p "$LOGS"
	bench/synapse.sh install
	bench/federation-ca.sh "$CA_DIR" tessera-interop "synapse-$SYNAPSE_INSTANCE"
	trap cleanup EXIT
	start_tessera
	SYNAPSE_STARTED=1
	FEDERATION_CA_DIR=$CA_DIR SYNAPSE_LOG_LEVEL=${SYNAPSE_LOG_LEVEL:-INFO} \
		bench/synapse.sh start-federating sqlite "$S_CLIENT" "$S_FED" "$SYNAPSE_INSTANCE" >/dev/null
	say "Synapse localhost:$S_FED answers (client http://127.0.0.1:$S_CLIENT)"
	"$BIN" --version >"$LOGS/versions.txt" 2>&1 || true
	"${SYNAPSE_VENV:-/var/tmp/tessera-bench/synapse-venv}/bin/python" -c 'import synapse; print("synapse", synapse.__version__)' \
		>>"$LOGS/versions.txt" 2>&1 || true
	python3 bench/interop.py \
		--tessera "http://127.0.0.1:$T_CLIENT" --tessera-server "localhost:$T_FED" \
		--synapse "http://127.0.0.1:$S_CLIENT" --synapse-server "localhost:$S_FED" \
		--secret "$SECRET" --trace "$LOGS/driver-trace.log" --json "$LOGS/results.json" "$@" |
		tee "$LOGS/results.txt"
}

main "$@"
