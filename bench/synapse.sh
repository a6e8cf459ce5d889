#!/usr/bin/env bash
# bench/synapse.sh — install and run Synapse as the reference server for the
# Tessera benchmark. The load generator runs the same scenarios against Tessera
# and against this Synapse, on the same machine.
#
# Usage:
#   bench/synapse.sh install
#       Create a virtualenv at $SYNAPSE_VENV and install the pinned
#       matrix-synapse[postgres]. Skipped if that version is already there.
#   bench/synapse.sh start <sqlite|postgres> <port>
#       Write a fresh config and data dir under $BENCH_DIR/synapse-<db>/ (the
#       previous one is wiped; for postgres the database synapse_bench is
#       dropped and recreated), start Synapse in the background on
#       127.0.0.1:<port> (client API, plain HTTP), wait until it answers, and
#       print ONLY the PID of the serving Synapse process on stdout.
#   bench/synapse.sh start-federating <sqlite|postgres> <client_port> <federation_port> <instance>
#       Like start, for one of a federating pair (or more): data dir
#       $BENCH_DIR/synapse-<db>-<instance>/, postgres database
#       synapse_bench_<instance>, server_name localhost:<federation_port>,
#       client API on http://127.0.0.1:<client_port>, federation on
#       https://127.0.0.1:<federation_port> with a certificate from the test
#       CA in $FEDERATION_CA_DIR (made by bench/federation-ca.sh), trusting
#       only that CA for outbound federation. Prints ONLY the PID on stdout.
#   bench/synapse.sh stop <sqlite|postgres> [<instance>]
#       SIGTERM that instance, wait up to 20 s, then SIGKILL.
#
# Environment:
#   SYNAPSE_VENV          virtualenv path (default $BENCH_DIR/synapse-venv)
#   SYNAPSE_VERSION       matrix-synapse version to install (default below)
#   BENCH_SHARED_SECRET   registration_shared_secret (default tessera-bench-secret)
#   PYTHON                interpreter used to create the venv (default python3)
#   SYNAPSE_LOG_LEVEL     level of DIR/homeserver.log (default WARNING; the
#                         interop test uses INFO to see every request)
#   FEDERATION_CA_DIR     test CA for start-federating (default
#                         $BENCH_DIR/federation-ca); Tessera can trust the
#                         same DIR/ca.pem via TESSERA_FEDERATION_TRUSTED_CA
#   SYNAPSE_EXTRA_CONFIG  YAML appended to homeserver.yaml (top-level keys
#                         the generated config does not set, e.g.
#                         "max_upload_size: 200M" for bench/media.sh)
# PostgreSQL is expected on 127.0.0.1:5432, user postgres, trust auth.
#
# Everything except the PID printed by `start` and `start-federating` goes
# to stderr.
#
# How a federating pair finds each other (Synapse 1.163): a server name with
# an explicit port, such as localhost:18449, skips both .well-known and SRV
# lookups; Synapse connects straight to localhost:18449 over TLS with SNI
# "localhost", sends "Host: localhost:18449", and verifies the certificate
# against hostname "localhost" (hence the DNS:localhost SAN). No .well-known
# is needed or served. Server keys are fetched from the origin itself
# (/_matrix/key/v2/server on the federation listener) since
# trusted_key_servers is empty. Outbound requests to 127.0.0.1 are blocked by
# Synapse's default ip_range_blacklist; ip_range_whitelist overrides it (it
# also governs federation unless the legacy federation_ip_range_blacklist is
# set). Each start-federating wipes the instance and makes a new signing key
# under the same server_name, and the other side caches the old key, so
# restart a pair together, never one side alone.

set -euo pipefail

# Scratch area for everything this script creates.
readonly BENCH_DIR=/var/tmp/tessera-bench
readonly VENV="${SYNAPSE_VENV:-$BENCH_DIR/synapse-venv}"
# Newest release installable from PyPI here with Python 3.11 at the time of
# writing (1.164.0 was only available as release candidates).
readonly SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.2}"
readonly SHARED_SECRET="${BENCH_SHARED_SECRET:-tessera-bench-secret}"
readonly PYTHON="${PYTHON:-python3}"
readonly LOG_LEVEL="${SYNAPSE_LOG_LEVEL:-WARNING}"
readonly SERVER_NAME=bench.test
readonly PG_DB=synapse_bench
readonly PG_ARGS=(-h 127.0.0.1 -p 5432 -U postgres)
readonly START_TIMEOUT=120 # seconds to wait for /_matrix/client/versions
readonly STOP_TIMEOUT=20   # seconds between SIGTERM and SIGKILL
# Rate limits are raised to this so the benchmark measures throughput, not
# Synapse's rate limiter.
readonly RL=100000
# The test CA and the leaf certificates of start-federating instances.
readonly CA_DIR="${FEDERATION_CA_DIR:-$BENCH_DIR/federation-ca}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR

# log MESSAGE... — print a message on stderr, prefixed with the script name.
log() {
	printf 'synapse.sh: %s\n' "$*" >&2
}

# die MESSAGE... — print an error on stderr and exit 1.
die() {
	log "error: $*"
	exit 1
}

# usage — print the usage on stderr and exit 2.
usage() {
	sed -n '6,26p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# installed_version — print the matrix-synapse version installed in the venv
# (empty if the venv or synapse or psycopg2 is missing).
installed_version() {
	[[ -x "$VENV/bin/python" ]] || return 0
	"$VENV/bin/python" -c 'import psycopg2, synapse; print(synapse.__version__)' 2>/dev/null || true
}

# cmd_install — create the venv and pip install the pinned Synapse with its
# postgres extra; does nothing if that version is already installed.
cmd_install() {
	local have
	have="$(installed_version)"
	if [[ "$have" == "$SYNAPSE_VERSION" ]]; then
		log "matrix-synapse $SYNAPSE_VERSION already installed in $VENV"
		return 0
	fi
	mkdir -p "$(dirname "$VENV")"
	if [[ ! -x "$VENV/bin/python" ]]; then
		log "creating virtualenv $VENV"
		"$PYTHON" -m venv "$VENV" >&2
	fi
	log "installing matrix-synapse[postgres]==$SYNAPSE_VERSION into $VENV"
	"$VENV/bin/python" -m pip install --quiet "matrix-synapse[postgres]==$SYNAPSE_VERSION" >&2
	have="$(installed_version)"
	[[ "$have" == "$SYNAPSE_VERSION" ]] ||
		die "install finished but venv reports synapse version '${have:-none}'"
	log "matrix-synapse $have installed"
}

# check_db DB — fail unless DB is one of the supported database kinds.
check_db() {
	case "${1:-}" in
	sqlite | postgres) ;;
	*) die "database must be 'sqlite' or 'postgres', got '${1:-}'" ;;
	esac
}

# check_instance LABEL — fail unless LABEL is a valid instance label (it
# becomes part of a directory and of a PostgreSQL database name).
check_instance() {
	[[ "${1:-}" =~ ^[a-z0-9_]{1,32}$ ]] ||
		die "instance must match [a-z0-9_]{1,32}, got '${1:-}'"
}

# check_port WHAT PORT — fail unless PORT is a number in 1..65535.
check_port() {
	if ! [[ "$2" =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > 65535)); then
		die "$1 must be a number in 1..65535, got '$2'"
	fi
}

# data_dir DB [INSTANCE] — print the data dir of the instance using database
# DB (synapse-<db> for `start`, synapse-<db>-<instance> for start-federating).
data_dir() {
	printf '%s/synapse-%s%s\n' "$BENCH_DIR" "$1" "${2:+-$2}"
}

# pg_db [INSTANCE] — print the PostgreSQL database name of the instance.
pg_db() {
	printf '%s%s\n' "$PG_DB" "${1:+_$1}"
}

# running_pid DIR — print the PID from DIR/homeserver.pid if that process is
# alive and is a Synapse homeserver; print nothing otherwise.
running_pid() {
	local pidfile="$1/homeserver.pid" pid cmdline
	[[ -s "$pidfile" ]] || return 0
	pid="$(<"$pidfile")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 0
	[[ -r "/proc/$pid/cmdline" ]] || return 0
	cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
	if [[ "$cmdline" == *synapse.app.homeserver* ]]; then
		printf '%s\n' "$pid"
	fi
}

# port_in_use PORT — succeed if something already listens on 127.0.0.1:PORT.
port_in_use() {
	"$VENV/bin/python" - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
sys.exit(0)
PY
}

# reset_postgres NAME — drop and recreate the database NAME with the C
# collation Synapse requires.
reset_postgres() {
	local name="$1"
	log "recreating postgres database $name"
	dropdb "${PG_ARGS[@]}" --if-exists --force "$name" >&2
	createdb "${PG_ARGS[@]}" --encoding=UTF8 --lc-collate=C --lc-ctype=C \
		--template=template0 "$name" >&2
}

# write_log_config DIR — write DIR/log.config: WARNING and above (or
# $SYNAPSE_LOG_LEVEL) to DIR/homeserver.log only (nothing on stdout), so
# logging does not weigh on the measurements.
write_log_config() {
	local dir="$1"
	cat >"$dir/log.config" <<EOF
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: $dir/homeserver.log
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: $LOG_LEVEL
  handlers: [file]
disable_existing_loggers: false
EOF
}

# rate_limit NAME — print the top-level rate-limit block NAME with
# per_second and burst_count raised to $RL.
rate_limit() {
	printf '%s:\n  per_second: %s\n  burst_count: %s\n' "$1" "$RL" "$RL"
}

# nested_rate_limit NAME SUB... — print NAME with each SUB as a raised
# rate-limit block under it.
nested_rate_limit() {
	local name="$1" sub
	shift
	printf '%s:\n' "$name"
	for sub in "$@"; do
		printf '  %s:\n    per_second: %s\n    burst_count: %s\n' "$sub" "$RL" "$RL"
	done
}

# federation_rate_limit — print rc_federation (incoming federation requests,
# per origin server) raised so that a peer sending at benchmark rates is
# never slept, queued or rejected: sleep only after RL requests in the
# window, reject only with RL queued, RL requests processed at once.
federation_rate_limit() {
	printf 'rc_federation:\n  window_size: 1000\n  sleep_limit: %s\n  sleep_delay: 1\n' "$RL"
	printf '  reject_limit: %s\n  concurrent: %s\n' "$RL" "$RL"
}

# write_config DB DIR PORT PG_NAME [FED_PORT CERT] — write DIR/homeserver.yaml
# for database DB (PostgreSQL database PG_NAME), with the client API on
# 127.0.0.1:PORT. Without FED_PORT: server_name $SERVER_NAME, no federation.
# With FED_PORT: server_name localhost:FED_PORT, a TLS federation listener on
# 127.0.0.1:FED_PORT serving CA_DIR/CERT.pem and CA_DIR/CERT.key, and outbound
# federation to loopback trusting only CA_DIR/ca.pem.
write_config() {
	local db="$1" dir="$2" port="$3" pg_name="$4" fed_port="${5:-}" cert="${6:-}"
	local macaroon form server_name signing_key
	# Fresh random secrets per instance (Synapse would otherwise derive the
	# macaroon key from the signing key; explicit is clearer).
	macaroon="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')"
	form="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')"
	if [[ -n "$fed_port" ]]; then
		server_name="localhost:$fed_port"
		signing_key="$dir/signing.key"
	else
		server_name="$SERVER_NAME"
		signing_key="$dir/$SERVER_NAME.signing.key"
	fi
	{
		cat <<EOF
# Generated by bench/synapse.sh — reference Synapse for the Tessera benchmark.
server_name: "$server_name"
public_baseurl: "http://127.0.0.1:$port/"
pid_file: "$dir/homeserver.pid"
report_stats: false
enable_metrics: false

# Client API only, plain HTTP, loopback only. The admin API (used by the
# benchmark to register users) is served under the client resource.
listeners:
  - port: $port
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false

EOF
		if [[ -n "$fed_port" ]]; then
			cat <<EOF
  # Federation (and the server key API /_matrix/key/v2/server) over TLS,
  # loopback only.
  - port: $fed_port
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [federation]
        compress: false

tls_certificate_path: "$CA_DIR/$cert.pem"
tls_private_key_path: "$CA_DIR/$cert.key"

EOF
		fi
		if [[ "$db" == postgres ]]; then
			cat <<EOF
database:
  name: psycopg2
  args:
    user: postgres
    host: 127.0.0.1
    port: 5432
    database: $pg_name
    cp_min: 5
    cp_max: 10

EOF
		else
			cat <<EOF
database:
  name: sqlite3
  args:
    database: "$dir/homeserver.db"

EOF
		fi
		cat <<EOF
log_config: "$dir/log.config"
media_store_path: "$dir/media_store"
signing_key_path: "$signing_key"

# Users are created through /_synapse/admin/v1/register with this secret.
registration_shared_secret: "$SHARED_SECRET"
enable_registration: false
macaroon_secret_key: "$macaroon"
form_secret: "$form"
# bcrypt_rounds 4 only makes user provisioning (registration and password
# login) fast; provisioning is not part of what the benchmark measures.
bcrypt_rounds: 4

presence:
  enabled: true

EOF
		if [[ -n "$fed_port" ]]; then
			cat <<EOF
# Federation on loopback with the test CA. Outbound certificates are
# verified, against this CA only (the list replaces the system roots).
federation_verify_certificates: true
federation_custom_ca_list: ["$CA_DIR/ca.pem"]
# The default ip_range_blacklist blocks 127.0.0.0/8 and ::1 for outbound
# requests, federation included; the whitelist takes precedence over it.
ip_range_whitelist: ["127.0.0.1", "::1"]
# Fetch each server's keys from that server itself, never via a notary (no
# matrix.org, hence no key-server warning to suppress).
trusted_key_servers: []
# federation_domain_whitelist unset: federate with anyone.

EOF
		else
			cat <<EOF
# No federation in the benchmark.
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []

EOF
		fi
		cat <<EOF
# Rate limits raised so that the benchmark measures throughput, not rate
# limiting. These are all the rc_* keys read by synapse/config/ratelimiting.py
EOF
		if [[ -n "$fed_port" ]]; then
			echo "# of the pinned version."
			federation_rate_limit
		else
			echo "# of the pinned version (federation limits aside)."
		fi
		rate_limit rc_message
		rate_limit rc_registration
		rate_limit rc_registration_token_validity
		nested_rate_limit rc_login address account failed_attempts
		nested_rate_limit rc_joins local remote
		rate_limit rc_joins_per_room
		nested_rate_limit rc_invites per_room per_user per_issuer
		rate_limit rc_third_party_invite
		rate_limit rc_3pid_validation
		rate_limit rc_admin_redaction
		nested_rate_limit rc_presence per_user
		rate_limit rc_delayed_event_mgmt
		rate_limit rc_room_creation
		rate_limit rc_reports
		rate_limit rc_key_requests
		rate_limit rc_media_create
		rate_limit rc_user_directory
		rate_limit rc_profile
		if [[ -n "${SYNAPSE_EXTRA_CONFIG:-}" ]]; then
			printf '\n# From SYNAPSE_EXTRA_CONFIG.\n%s\n' "$SYNAPSE_EXTRA_CONFIG"
		fi
	} >"$dir/homeserver.yaml"
}

# log_tail DIR — print the end of the instance's logs on stderr.
log_tail() {
	local f
	for f in "$1/startup.log" "$1/homeserver.log"; do
		if [[ -s "$f" ]]; then
			printf -- '--- tail of %s ---\n' "$f" >&2
			tail -n 40 "$f" >&2
		fi
	done
}

# stop_dir DIR — stop the Synapse whose pid file is in DIR, if it runs:
# SIGTERM, wait up to $STOP_TIMEOUT s, then SIGKILL.
stop_dir() {
	local dir="$1" pid i
	pid="$(running_pid "$dir")"
	if [[ -z "$pid" ]]; then
		log "no running Synapse for $dir"
		return 0
	fi
	log "stopping Synapse pid $pid (SIGTERM)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "Synapse pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	kill -0 "$pid" 2>/dev/null && die "could not stop Synapse pid $pid"
	rm -f "$dir/homeserver.pid"
	log "stopped"
}

# require_install — fail unless the pinned Synapse and curl are available.
require_install() {
	[[ "$(installed_version)" == "$SYNAPSE_VERSION" ]] ||
		die "matrix-synapse $SYNAPSE_VERSION is not installed in $VENV; run '$0 install' first"
	command -v curl >/dev/null || die "curl is required"
}

# prepare_dir DIR PORT... — stop a previous Synapse holding DIR (it would hold
# the data dir and the database), check that no PORT is taken, then wipe DIR
# and recreate it empty.
prepare_dir() {
	local dir="$1" port
	shift
	[[ -d "$dir" ]] && stop_dir "$dir"
	for port in "$@"; do
		port_in_use "$port" && die "something already listens on 127.0.0.1:$port"
	done
	rm -rf "$dir"
	mkdir -p "$dir/media_store"
}

# launch DIR WHAT... — generate the signing key for DIR/homeserver.yaml and
# start Synapse daemonised, logging "starting Synapse WHAT...".
launch() {
	local dir="$1"
	shift
	log "generating signing key"
	"$VENV/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" \
		--generate-keys >"$dir/startup.log" 2>&1 || {
		log_tail "$dir"
		die "key generation failed"
	}

	# --daemonize: Synapse prepares the database, then forks; the parent
	# exits and the child (the process that opens the listener and serves
	# requests) writes its own PID to pid_file.
	log "starting Synapse $*"
	(cd "$dir" && "$VENV/bin/python" -m synapse.app.homeserver \
		-c "$dir/homeserver.yaml" --daemonize </dev/null >>"$dir/startup.log" 2>&1) || {
		log_tail "$dir"
		die "Synapse failed to start"
	}
}

# federation_answers FED_PORT — succeed if the TLS federation listener on
# 127.0.0.1:FED_PORT serves its server keys under the name localhost with a
# certificate that verifies against CA_DIR/ca.pem (what a peer will check).
federation_answers() {
	local code
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
		--cacert "$CA_DIR/ca.pem" --resolve "localhost:$1:127.0.0.1" \
		"https://localhost:$1/_matrix/key/v2/server" || true)"
	[[ "$code" == 200 ]]
}

# wait_ready DIR PORT [FED_PORT] — wait until the Synapse of DIR answers
# /_matrix/client/versions on PORT (and, with FED_PORT, serves its keys over
# TLS there), then print its PID on stdout; stop it and fail after
# $START_TIMEOUT s.
wait_ready() {
	local dir="$1" port="$2" fed_port="${3:-}" pid url code started what
	url="http://127.0.0.1:$port/_matrix/client/versions"
	what="$url${fed_port:+ and https://localhost:$fed_port/_matrix/key/v2/server}"
	started=$SECONDS
	while ((SECONDS - started < START_TIMEOUT)); do
		pid="$(running_pid "$dir")"
		if [[ -n "$pid" ]]; then
			code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
			if [[ "$code" == 200 ]] && { [[ -z "$fed_port" ]] || federation_answers "$fed_port"; }; then
				log "Synapse pid $pid answers on $what"
				printf '%s\n' "$pid"
				return 0
			fi
		elif ((SECONDS - started > 5)); then
			# The daemon writes its pid file right after forking; still no
			# live process after a few seconds means it died.
			log_tail "$dir"
			die "Synapse is not running (no live process in $dir/homeserver.pid)"
		fi
		sleep 0.25
	done
	log_tail "$dir"
	stop_dir "$dir" || true
	die "Synapse did not answer $what within ${START_TIMEOUT}s"
}

# cmd_start DB PORT — fresh config/data dir and database, start Synapse
# daemonised, wait for /_matrix/client/versions, print the serving PID.
cmd_start() {
	local db="${1:-}" port="${2:-}" dir
	check_db "$db"
	check_port port "$port"
	require_install

	dir="$(data_dir "$db")"
	prepare_dir "$dir" "$port"
	[[ "$db" == postgres ]] && reset_postgres "$(pg_db)"

	write_log_config "$dir"
	write_config "$db" "$dir" "$port" "$(pg_db)"
	launch "$dir" "($db) on 127.0.0.1:$port, data in $dir"
	wait_ready "$dir" "$port"
}

# cmd_start_federating DB PORT FED_PORT INSTANCE — like cmd_start for the
# federating instance INSTANCE: its own data dir and database, server_name
# localhost:FED_PORT, TLS federation on 127.0.0.1:FED_PORT with the leaf
# certificate synapse-INSTANCE of the test CA (created if missing).
cmd_start_federating() {
	local db="${1:-}" port="${2:-}" fed_port="${3:-}" instance="${4:-}" dir cert
	check_db "$db"
	check_port client_port "$port"
	check_port federation_port "$fed_port"
	((port != fed_port)) || die "client_port and federation_port must differ"
	check_instance "$instance"
	require_install

	cert="synapse-$instance"
	"$SCRIPT_DIR/federation-ca.sh" "$CA_DIR" "$cert"
	dir="$(data_dir "$db" "$instance")"
	prepare_dir "$dir" "$port" "$fed_port"
	[[ "$db" == postgres ]] && reset_postgres "$(pg_db "$instance")"

	write_log_config "$dir"
	write_config "$db" "$dir" "$port" "$(pg_db "$instance")" "$fed_port" "$cert"
	launch "$dir" "localhost:$fed_port ($db): client http://127.0.0.1:$port," \
		"federation https://127.0.0.1:$fed_port, data in $dir"
	wait_ready "$dir" "$port" "$fed_port"
}

# cmd_stop DB [INSTANCE] — stop the instance using database DB (the
# federating instance INSTANCE if given).
cmd_stop() {
	local db="${1:-}" instance="${2:-}"
	check_db "$db"
	[[ -z "$instance" ]] || check_instance "$instance"
	stop_dir "$(data_dir "$db" "$instance")"
}

# main ARGS... — dispatch the subcommand.
main() {
	local cmd="${1:-}"
	shift || true
	case "$cmd" in
	install) cmd_install ;;
	start) [[ $# -eq 2 ]] || usage; cmd_start "$@" ;;
	start-federating) [[ $# -eq 4 ]] || usage; cmd_start_federating "$@" ;;
	stop) [[ $# -eq 1 || $# -eq 2 ]] || usage; cmd_stop "$@" ;;
	*) usage ;;
	esac
}

main "$@"
