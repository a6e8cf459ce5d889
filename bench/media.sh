#!/usr/bin/env bash
# bench/media.sh — the media benchmark, Tessera beside Synapse in one run.
#
# Starts Tessera ($TESSERA_BIN), runs bench/media.py against it, stops it;
# then the same with Synapse (bench/synapse.sh start, with max_upload_size
# raised to 200M). One server runs at a time, both on 127.0.0.1, both on
# the same database kind ($DB) and with their rate limits off. Per server:
# 50 users each upload 20 files of 1 MiB of random bytes at once, then
# download them (authenticated media, every byte checked); then, on a
# freshly restarted server, one 100 MiB file is uploaded and downloaded
# while the server's RSS is sampled every 50 ms. Prints a Markdown report; the JSON results, the report and both
# servers' logs stay in the directory it names.
#
# Usage: bench/media.sh [bench/media.py run options: --clients N --files N
#                        --size BYTES --big-mb N]
#
# Environment:
#   TESSERA_BIN   the Tessera binary (default target/release/tessera)
#   DB            sqlite (default) or postgres (127.0.0.1:5432, user
#                 postgres; databases tessera_media and synapse_bench are
#                 dropped and recreated)
#   TARGETS       which servers, in order (default "tessera synapse")
#   T_PORT S_PORT client API ports of Tessera and Synapse (18040, 18041)
#   QUIET_WAIT    seconds to wait at the start for a quiet machine (other
#                 processes using under 10% of one core over 10 s; default
#                 600); past it the run goes ahead with a warning. Each
#                 phase reports the CPU seconds of other processes anyway.
#   MEDIA_DIR     scratch, logs and results (default
#                 /var/tmp/tessera-bench/media); each run gets a dated
#                 directory under it, and Tessera's data dir is wiped at start
# Needs bench/synapse.sh install first (run here if missing), curl, python3.

set -euo pipefail
cd "$(dirname "$0")/.."

readonly SECRET=${BENCH_SHARED_SECRET:-tessera-bench-secret}
export BENCH_SHARED_SECRET=$SECRET
readonly DB=${DB:-sqlite}
readonly T_PORT=${T_PORT:-18040} S_PORT=${S_PORT:-18041}
readonly WORK=${MEDIA_DIR:-/var/tmp/tessera-bench/media}
readonly TARGETS=${TARGETS:-"tessera synapse"}
readonly PG=(-h 127.0.0.1 -p 5432 -U postgres)
readonly T_DB=tessera_media
# Both servers accept files of up to 200 MiB (the large-file case).
readonly MAX_UPLOAD=209715200
BIN=${TESSERA_BIN:-target/release/tessera}
OUT=$WORK/$(date -u +%Y%m%dT%H%M%SZ)
TESSERA_PID=
SYNAPSE_STARTED=

say() { printf 'media.sh: %s\n' "$*" >&2; }
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

stop_tessera() {
	if [[ -n $TESSERA_PID ]]; then
		kill -TERM "$TESSERA_PID" 2>/dev/null || true
		wait "$TESSERA_PID" 2>/dev/null || true
		TESSERA_PID=
	fi
}

# stop_synapse [PART] — stop Synapse and keep its logs as synapse[-PART]-*.
stop_synapse() {
	if [[ -n $SYNAPSE_STARTED ]]; then
		bench/synapse.sh stop "$DB" || true
		local f dir=/var/tmp/tessera-bench/synapse-$DB
		for f in homeserver.log startup.log homeserver.yaml; do
			[[ -f $dir/$f ]] && cp "$dir/$f" "$OUT/synapse${1:+-$1}-$f"
		done
		SYNAPSE_STARTED=
	fi
}

cleanup() {
	local rc=$?
	stop_tessera
	stop_synapse
	say "results and logs: $OUT"
	exit "$rc"
}

# start_tessera — a fresh Tessera on 127.0.0.1:$T_PORT; sets TESSERA_PID.
start_tessera() {
	local dir=$WORK/tessera-data
	local env=(TESSERA_SERVER_NAME=bench.test TESSERA_LISTEN="127.0.0.1:$T_PORT" TESSERA_LOG=warn
		TESSERA_REGISTRATION_SHARED_SECRET="$SECRET" TESSERA_RATE_LIMITS_GENERAL_PER_SECOND=0
		TESSERA_RATE_LIMITS_LOGIN_PER_SECOND=0 TESSERA_RATE_LIMITS_REGISTRATION_PER_SECOND=0
		TESSERA_RATE_LIMITS_FAILED_LOGIN_PER_SECOND=0 TESSERA_MEDIA_MAX_UPLOAD_BYTES=$MAX_UPLOAD
		TESSERA_DATA_DIR="$dir")
	rm -rf "$dir"
	mkdir -p "$dir"
	if [[ $DB == postgres ]]; then
		dropdb "${PG[@]}" --if-exists --force "$T_DB"
		createdb "${PG[@]}" "$T_DB"
		env+=(TESSERA_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$T_DB")
	fi
	listening "$T_PORT" && die "something already listens on 127.0.0.1:$T_PORT"
	say "starting Tessera $BIN ($DB) on 127.0.0.1:$T_PORT, data in $dir"
	env "${env[@]}" "$BIN" >>"$OUT/tessera.log" 2>&1 &
	TESSERA_PID=$!
	local i
	for ((i = 0; i < 600; i++)); do
		kill -0 "$TESSERA_PID" 2>/dev/null || {
			tail -n 30 "$OUT/tessera.log" >&2
			die "Tessera exited at start"
		}
		if curl -sf -o /dev/null "http://127.0.0.1:$T_PORT/_matrix/client/versions"; then
			say "Tessera pid $TESSERA_PID answers"
			return 0
		fi
		sleep 0.1
	done
	tail -n 30 "$OUT/tessera.log" >&2
	die "Tessera did not answer within 60 s"
}

# wait_quiet — wait up to $QUIET_WAIT s until the machine is quiet: under
# 10% of one core busy over 10 s (a build or a test run alongside would
# skew every number). Warns and goes on if it never is.
wait_quiet() {
	python3 - "${QUIET_WAIT:-600}" <<'PY'
import os, sys, time
tck = os.sysconf("SC_CLK_TCK")
def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / tck
deadline = time.time() + float(sys.argv[1])
while True:
    b0 = busy(); time.sleep(10); cores = (busy() - b0) / 10
    if cores < 0.1:
        print(f"media.sh: machine quiet ({cores:.2f} cores busy over 10 s)", file=sys.stderr)
        break
    if time.time() > deadline:
        print(f"media.sh: WARNING: machine still busy ({cores:.2f} cores over 10 s); going ahead", file=sys.stderr)
        break
    print(f"media.sh: waiting for a quiet machine ({cores:.2f} cores busy over 10 s)", file=sys.stderr)
PY
}

# machine — a few lines on the machine and the software, for the report.
machine() {
	local cpu
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "- machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
	echo "- tessera: $("$BIN" --version 2>/dev/null | head -n 1 || echo "$BIN") ($BIN), database $DB; bench scripts at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "- synapse: $("${SYNAPSE_VENV:-/var/tmp/tessera-bench/synapse-venv}/bin/python" -c 'import synapse; print(synapse.__version__)' 2>/dev/null || echo '?'), database $DB"
	echo "- client: bench/media.py, $(python3 --version), one thread and one keep-alive connection per client"
	echo "- data: $WORK ($(df -h --output=source "$WORK" | tail -n 1))"
	echo "- \"other CPU s\" below: every other process's CPU time during the phase (PostgreSQL's included)"
}

main() {
	[[ -x $BIN ]] || die "no Tessera binary at $BIN (set TESSERA_BIN)"
	BIN=$(realpath "$BIN")
	case $DB in sqlite | postgres) ;; *) die "DB must be sqlite or postgres, got $DB" ;; esac
	command -v curl >/dev/null || die "curl is required"
	mkdir -p "$OUT"
	bench/synapse.sh install
	trap cleanup EXIT
	wait_quiet
	local target part json pid status=0 jsons=()
	for target in $TARGETS; do
		# The large file goes to a freshly started server: after the
		# concurrent part its allocator would hold memory to reuse.
		for part in concurrent big; do
			json=$OUT/$target-$DB-$part.json
			jsons+=("$json")
			case $target in
			tessera)
				start_tessera
				python3 bench/media.py run --url "http://127.0.0.1:$T_PORT" --target "tessera-$DB" \
					--pid "$TESSERA_PID" --phases "$part" --json "$json" "$@" || status=1
				stop_tessera
				;;
			synapse)
				SYNAPSE_STARTED=1
				pid=$(SYNAPSE_EXTRA_CONFIG="max_upload_size: 200M" bench/synapse.sh start "$DB" "$S_PORT")
				python3 bench/media.py run --url "http://127.0.0.1:$S_PORT" --target "synapse-$DB" \
					--pid "$pid" --phases "$part" --json "$json" "$@" || status=1
				stop_synapse "$part"
				;;
			*) die "unknown target $target (tessera or synapse)" ;;
			esac
		done
	done
	{
		machine
		echo
		python3 bench/media.py report "${jsons[@]}"
	} >"$OUT/report.md"
	cat "$OUT/report.md"
	return "$status"
}

main "$@"
