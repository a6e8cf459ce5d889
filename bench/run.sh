#!/usr/bin/env bash
# Runs the benchmark scenarios against Tessera (SQLite and PostgreSQL) and
# Synapse (SQLite and PostgreSQL) on this machine, one fresh server per
# scenario, then renders docs/benchmarks.md and its plots from the results
# (full sizes into bench/results only; otherwise into RESULTS itself).
#
#   bench/run.sh                      # everything, full sizes (hours)
#   TARGETS="tessera-postgres synapse-postgres" SCENARIOS="steady" bench/run.sh
#   SIZES=smoke bench/run.sh          # tiny sizes: checks the tool works
#
# Environment:
#   TARGETS     targets to run (default: all four)
#   SCENARIOS   steady big-room ceiling idle catch-up keys cold-start federation
#               (default: all; federation runs a pair of each target, see
#               start_pair_member)
#   SIZES       full (the issue's sizes) or smoke
#   RESULTS     results directory (default bench/results/<UTC date>)
#   REPORT_ALSO earlier results directories the page keeps (space-separated):
#               their results are shown where this run has none, so a run
#               of a few scenarios is published beside an earlier full run
#   TESSERA_BIN a server binary to run instead of building this tree's
#               (a before/after against an older commit); the tool is
#               still this tree's, built beforehand
#   <SCENARIO>_ARGS  override one scenario's size flags, e.g.
#               CATCH_UP_ARGS="--rooms 100 --room-size 100 --messages 10000"
#               (with full sizes, Tessera then also runs catch-up at the
#               issue's size alone, into catch-up-full.json: Synapse takes
#               many minutes to build 300 rooms of 300)
#
# Servers listen on 127.0.0.1 only. Scratch data lives in /var/tmp/tessera-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly WORK=/var/tmp/tessera-bench
readonly PORT=18008
readonly SECRET=tessera-bench-secret
readonly PG=(-h 127.0.0.1 -p 5432 -U postgres)
TARGETS=${TARGETS:-"tessera-sqlite tessera-postgres synapse-sqlite synapse-postgres"}
SCENARIOS=${SCENARIOS:-"steady big-room ceiling idle catch-up keys cold-start federation"}
SIZES=${SIZES:-full}
RESULTS=${RESULTS:-bench/results/$(date -u +%Y-%m-%d)}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$(realpath -m "$TARGET_DIR")/release"
SERVER=$BIN/tessera
COMMANDS=()
export BENCH_SHARED_SECRET=$SECRET

log() { printf '\n== %s\n' "$*" >&2; }

# The size flags of a scenario.
sizes() {
	local override
	override="$(echo "${1^^}" | tr '-' '_')_ARGS"
	if [[ -n "${!override:-}" ]]; then
		echo "${!override}"
		return
	fi
	case "$SIZES:$1" in
	full:steady) echo "--users 1000 --room-size 10 --rate 1000 --seconds 60" ;;
	full:big-room) echo "--members 500 --rate 20 --seconds 60" ;;
	full:ceiling) echo "--users 1000 --room-size 10 --start-rate 250 --step-seconds 10" ;;
	full:idle) echo "--users 1000 --connections 10000 --seconds 60" ;;
	full:catch-up) echo "--rooms 300 --room-size 300 --messages 10000" ;;
	full:keys) echo "--devices 100 --members 500 --query-rounds 200 --claim-rounds 50" ;;
	full:federation) echo "--users 100 --room-size 4 --rate 500 --seconds 60" ;;
	smoke:steady) echo "--users 6 --room-size 3 --rate 20 --seconds 2" ;;
	smoke:big-room) echo "--members 8 --rate 10 --seconds 2" ;;
	smoke:ceiling) echo "--users 6 --room-size 3 --start-rate 20 --max-rate 45 --step-seconds 2" ;;
	smoke:idle) echo "--users 4 --connections 20 --seconds 2" ;;
	smoke:catch-up) echo "--rooms 3 --room-size 3 --messages 30" ;;
	smoke:keys) echo "--devices 4 --members 5 --query-rounds 3 --claim-rounds 3" ;;
	smoke:federation) echo "--users 4 --room-size 4 --rate 20 --seconds 2" ;;
	*) echo "" ;;
	esac
}

# Tessera's configuration for the benchmark: rate limits off, quiet logs.
tessera_env() {
	local target=$1
	echo "TESSERA_SERVER_NAME=bench.test TESSERA_LISTEN=127.0.0.1:$PORT TESSERA_LOG=warn" \
		"TESSERA_REGISTRATION_SHARED_SECRET=$SECRET TESSERA_RATE_LIMITS_GENERAL_PER_SECOND=0" \
		"TESSERA_RATE_LIMITS_LOGIN_PER_SECOND=0 TESSERA_RATE_LIMITS_REGISTRATION_PER_SECOND=0" \
		"TESSERA_RATE_LIMITS_FAILED_LOGIN_PER_SECOND=0" \
		"TESSERA_DATA_DIR=$WORK/$target"
	if [[ $target == tessera-postgres ]]; then
		echo "TESSERA_DATABASE_URL=postgres://postgres@127.0.0.1/tessera_bench"
	fi
}

# The command that starts a target in the foreground (for cold start).
start_command() {
	case $1 in
	tessera-*) echo "env $(tessera_env "$1" | tr '\n' ' ') $SERVER" ;;
	synapse-*) echo "$WORK/synapse-venv/bin/python -m synapse.app.homeserver -c $WORK/synapse-${1#synapse-}/homeserver.yaml" ;;
	esac
}

# Starts a fresh target (empty database); prints its PID.
start_target() {
	local target=$1
	case $target in
	tessera-*)
		rm -rf "${WORK:?}/$target"
		mkdir -p "$WORK/$target"
		if [[ $target == tessera-postgres ]]; then
			dropdb "${PG[@]}" --if-exists --force tessera_bench
			createdb "${PG[@]}" tessera_bench
		fi
		# Every start appends to the target's log, so a scenario's errors
		# outlive the next scenario's server.
		echo "== $(date -u +%FT%TZ) starting $SERVER" >>"$WORK/$target.log"
		# shellcheck disable=SC2046 # word-splitting the env assignments is intended
		env $(tessera_env "$target") "$SERVER" >>"$WORK/$target.log" 2>&1 &
		local pid=$!
		for _ in $(seq 1 600); do
			curl -sf "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null && break
			sleep 0.1
		done
		echo "$pid"
		;;
	synapse-*) bench/synapse.sh start "${target#synapse-}" "$PORT" ;;
	esac
}

stop_target() {
	local target=$1 pid=$2
	case $target in
	tessera-*)
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		;;
	synapse-*) bench/synapse.sh stop "${target#synapse-}" ;;
	esac
}

# Runs the tool; records the command for the report (once per shape:
# target name, PID and PostgreSQL database as placeholders).
bench() {
	local line="tessera-bench run $*"
	log "$line"
	# shellcheck disable=SC2016 # the $ placeholders are literal text
	line=$(sed -E 's/--server-pid [0-9]+/--server-pid $PID/; s/--server-pid-b [0-9]+/--server-pid-b $PID_B/; s/--postgres-database [a-z_]+/--postgres-database $DB/; s/--postgres-database-b [a-z_]+/--postgres-database-b $DB_B/; s/--target (tessera|synapse)-(sqlite|postgres) (.*--transport)/--target $TARGET \3/' <<<"$line")
	if [[ " ${COMMANDS[*]} " != *" $line "* ]]; then
		COMMANDS+=("$line")
	fi
	"$BIN/tessera-bench" run "$@"
}

# The federating pair's ports: client API, then federation (TLS), of A and B.
readonly PAIR_PORTS=(18008 18448 18009 18449)
readonly CA_DIR=$WORK/federation-ca

# start_pair_member TARGET INSTANCE CLIENT_PORT FEDERATION_PORT — starts one
# server of a federating pair (server name localhost:FEDERATION_PORT,
# certificate from the test CA, federation to loopback allowed); prints
# its PID.
start_pair_member() {
	local target=$1 instance=$2 client=$3 federation=$4
	case $target in
	tessera-*)
		local dir=$WORK/$target-$instance db=tessera_bench_$instance
		rm -rf "$dir"
		mkdir -p "$dir"
		bench/federation-ca.sh "$CA_DIR" "tessera-$instance"
		local env=(TESSERA_SERVER_NAME="localhost:$federation" TESSERA_LISTEN="127.0.0.1:$client"
			TESSERA_FEDERATION_LISTEN="127.0.0.1:$federation" TESSERA_LOG=warn
			TESSERA_TLS_CERTIFICATE="$CA_DIR/tessera-$instance.pem" TESSERA_TLS_PRIVATE_KEY="$CA_DIR/tessera-$instance.key"
			TESSERA_FEDERATION_TRUSTED_CA="$CA_DIR/ca.pem" TESSERA_OUTBOUND_ALLOWED_RANGES=127.0.0.0/8
			TESSERA_REGISTRATION_SHARED_SECRET=$SECRET TESSERA_RATE_LIMITS_GENERAL_PER_SECOND=0
			TESSERA_RATE_LIMITS_LOGIN_PER_SECOND=0 TESSERA_RATE_LIMITS_REGISTRATION_PER_SECOND=0
			TESSERA_RATE_LIMITS_FAILED_LOGIN_PER_SECOND=0 TESSERA_DATA_DIR="$dir")
		if [[ $target == tessera-postgres ]]; then
			dropdb "${PG[@]}" --if-exists --force "$db"
			createdb "${PG[@]}" "$db"
			env+=(TESSERA_DATABASE_URL="postgres://postgres@127.0.0.1/$db")
		fi
		echo "== $(date -u +%FT%TZ) starting $SERVER ($instance)" >>"$WORK/$target-$instance.log"
		env "${env[@]}" "$SERVER" >>"$WORK/$target-$instance.log" 2>&1 &
		local pid=$!
		for _ in $(seq 1 600); do
			curl -sf "http://127.0.0.1:$client/_matrix/client/versions" >/dev/null && break
			sleep 0.1
		done
		echo "$pid"
		;;
	synapse-*)
		FEDERATION_CA_DIR=$CA_DIR bench/synapse.sh start-federating "${target#synapse-}" "$client" "$federation" "$instance"
		;;
	esac
}

# stop_pair_member TARGET INSTANCE PID
stop_pair_member() {
	local target=$1 instance=$2 pid=$3
	case $target in
	tessera-*)
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		;;
	synapse-*) bench/synapse.sh stop "${target#synapse-}" "$instance" ;;
	esac
}

# run_federation TARGET — scenario 8 on a fresh pair of TARGET's servers
# (and for Tessera again with its WebSocket channel).
run_federation() {
	local target=$1 a b transport
	local transports=(long-poll)
	if [[ $target == tessera-* ]]; then
		transports+=(web-socket)
	fi
	for transport in "${transports[@]}"; do
		a=$(start_pair_member "$target" a "${PAIR_PORTS[0]}" "${PAIR_PORTS[1]}")
		b=$(start_pair_member "$target" b "${PAIR_PORTS[2]}" "${PAIR_PORTS[3]}")
		local args=(--url "http://127.0.0.1:${PAIR_PORTS[0]}" --url-b "http://127.0.0.1:${PAIR_PORTS[2]}"
			--target "$target" --out "$RESULTS" --server-pid "$a" --server-pid-b "$b" --transport "$transport")
		case $target in
		tessera-postgres) args+=(--postgres-database tessera_bench_a --postgres-database-b tessera_bench_b) ;;
		synapse-postgres) args+=(--postgres-database synapse_bench_a --postgres-database-b synapse_bench_b) ;;
		esac
		# shellcheck disable=SC2046 # the size flags are separate words
		bench "${args[@]}" federation $(sizes federation) >/dev/null || log "$target federation failed"
		stop_pair_member "$target" a "$a"
		stop_pair_member "$target" b "$b"
	done
}

run_scenario() {
	local target=$1 scenario=$2 pid
	if [[ $scenario == federation ]]; then
		run_federation "$target"
		return
	fi
	if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
		# A server left over from an interrupted run would be measured
		# instead of the fresh one (which cannot bind the port).
		log "port $PORT is already in use: stop whatever listens there first"
		exit 1
	fi
	local common=(--url "http://127.0.0.1:$PORT" --target "$target" --out "$RESULTS")
	# PostgreSQL's CPU time counts this target's database only: others'
	# tests on the same PostgreSQL are left out.
	case $target in
	tessera-postgres) common+=(--postgres-database tessera_bench) ;;
	synapse-postgres) common+=(--postgres-database synapse_bench) ;;
	esac
	if [[ $scenario == cold-start ]]; then
		# Initialise the database first, so that cold start is a restart.
		pid=$(start_target "$target")
		stop_target "$target" "$pid"
		bench "${common[@]}" cold-start --command "$(start_command "$target")" >/dev/null ||
			log "$target cold-start failed"
		return
	fi
	local transports=(long-poll)
	if [[ $target == tessera-* && $scenario =~ ^(steady|big-room|idle)$ ]]; then
		transports+=(web-socket)
	fi
	for transport in "${transports[@]}"; do
		pid=$(start_target "$target")
		# shellcheck disable=SC2046 # the size flags are separate words
		bench "${common[@]}" --server-pid "$pid" --transport "$transport" \
			"$scenario" $(sizes "$scenario") >/dev/null || log "$target $scenario failed"
		stop_target "$target" "$pid"
	done
	if [[ $target == tessera-* && $scenario == catch-up && $SIZES == full && -n ${CATCH_UP_ARGS:-} ]]; then
		pid=$(start_target "$target")
		# shellcheck disable=SC2046 # the size flags are separate words
		bench "${common[@]}" --server-pid "$pid" --transport long-poll --name catch-up-full \
			catch-up $(CATCH_UP_ARGS="" sizes catch-up) >/dev/null || log "$target catch-up at full size failed"
		stop_target "$target" "$pid"
	fi
}

main() {
	ulimit -n "$(ulimit -Hn)"
	if [[ -n ${TESSERA_BIN:-} ]]; then
		# Another build of the server (an older commit, for a before/after).
		log "server: $TESSERA_BIN"
		SERVER=$TESSERA_BIN
	else
		log "building"
		cargo build --release -p tessera -p tessera-bench
	fi
	if [[ $TARGETS == *synapse* ]]; then
		bench/synapse.sh install
	fi
	mkdir -p "$RESULTS" "$WORK"
	for target in $TARGETS; do
		for scenario in $SCENARIOS; do
			run_scenario "$target" "$scenario"
		done
	done
	local synapse
	synapse=$("$WORK/synapse-venv/bin/python" -c 'import synapse; print(synapse.__version__)' 2>/dev/null || echo none)
	python3 - "$RESULTS/run.json" "$synapse" "${COMMANDS[@]}" <<'PY'
import json, os, platform, subprocess, sys, datetime
out, synapse, *commands = sys.argv[1:]
# A results directory filled by several invocations keeps every command.
try:
    earlier = json.load(open(out)).get("commands", [])
except (OSError, ValueError):
    earlier = []
commands = [c for c in earlier if c != "bench/synapse.sh install"] + [c for c in commands if c not in earlier]
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
if os.environ.get("TESSERA_BIN"):
    commit = "server " + os.environ["TESSERA_BIN"] + ", tool " + commit
    dirty = ""
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "commit": commit + ("+changes" if dirty else ""),
    "machine": f"{os.cpu_count()} cores ({model}), {mem / 1048576:.0f} GiB RAM, Linux {platform.release()}",
    "synapse": synapse,
    "commands": ["bench/synapse.sh install", *commands],
}, open(out, "w"), indent=2)
PY
	local dirs=()
	for dir in ${REPORT_ALSO:-} "$RESULTS"; do
		dirs+=(--results "$dir")
	done
	if [[ $SIZES == full && "$(realpath -m "$RESULTS")" == "$(realpath -m bench/results)"/* ]]; then
		"$BIN/tessera-bench" report "${dirs[@]}"
	else
		# Trial sizes, and results kept outside bench/results, never
		# overwrite the published page.
		"$BIN/tessera-bench" report "${dirs[@]}" --doc "$RESULTS/benchmarks.md" --plots "$RESULTS/plots"
	fi
}

main "$@"
