#!/usr/bin/env bash
# bench/synapse-pair-check.sh — check that two Synapse instances started by
# `bench/synapse.sh start-federating` federate on loopback: alice on A
# creates a public room, bob on B joins it over federation, each sends a
# message and the other side's /sync must yield it within 20 s.
#
# Usage: bench/synapse-pair-check.sh [sqlite|postgres]
#   Starts A (client 18008, federation 18448) and B (client 18009,
#   federation 18449) fresh, runs the check, stops both (KEEP=1 leaves them
#   running). Exits non-zero if any step fails or a message is late.
# Environment: A_CLIENT A_FED B_CLIENT B_FED override the ports;
# BENCH_SHARED_SECRET must match what synapse.sh used (same default).
# Needs bench/synapse.sh install first, curl and python3.

set -euo pipefail

readonly DB="${1:-sqlite}"
readonly A_CLIENT="${A_CLIENT:-18008}" A_FED="${A_FED:-18448}"
readonly B_CLIENT="${B_CLIENT:-18009}" B_FED="${B_FED:-18449}"
readonly SECRET="${BENCH_SHARED_SECRET:-tessera-bench-secret}"
readonly DEADLINE=20 # seconds a message may take to reach the other side
SYNAPSE_SH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/synapse.sh"
readonly SYNAPSE_SH

# say MESSAGE... — print a progress line on stdout.
say() {
	printf '%s\n' "$*"
}

# fail MESSAGE... — print an error on stderr and exit 1 (the EXIT trap stops
# the servers).
fail() {
	printf 'synapse-pair-check.sh: FAIL: %s\n' "$*" >&2
	exit 1
}

# now — print the time in seconds with milliseconds.
now() {
	date +%s.%3N
}

# since T — print the seconds elapsed since T (from now), to 0.01 s.
since() {
	python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.2f}")' "$1"
}

# json EXPR — read JSON on stdin and print the Python expression EXPR of it
# (bound to j).
json() {
	python3 -c 'import json, sys; j = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# urlenc STRING — print STRING percent-encoded for a URL path or query.
urlenc() {
	python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"
}

# api PORT METHOD PATH [TOKEN [BODY]] — call the client API on
# 127.0.0.1:PORT and print the response body; fail unless it is a 2xx.
api() {
	local port="$1" method="$2" path="$3" token="${4:-}" body="${5:-}" out code
	local args=(-sS -X "$method" --max-time 60 -w '\n%{http_code}')
	[[ -n "$token" ]] && args+=(-H "Authorization: Bearer $token")
	[[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data "$body")
	out="$(curl "${args[@]}" "http://127.0.0.1:$port$path")" ||
		fail "$method $path on :$port: curl failed"
	code="${out##*$'\n'}"
	out="${out%$'\n'*}"
	[[ "$code" == 2?? ]] || fail "$method $path on :$port: HTTP $code: $out"
	printf '%s\n' "$out"
}

# register PORT USER — create USER through shared-secret registration on
# 127.0.0.1:PORT and print its access token.
register() {
	local port="$1" user="$2" nonce mac
	nonce="$(api "$port" GET /_synapse/admin/v1/register | json 'j["nonce"]')"
	mac="$(python3 -c '
import hashlib, hmac, sys
secret, nonce, user = sys.argv[1:]
msg = b"\0".join(s.encode() for s in (nonce, user, "password-" + user, "notadmin"))
print(hmac.new(secret.encode(), msg, hashlib.sha1).hexdigest())' "$SECRET" "$nonce" "$user")"
	api "$port" POST /_synapse/admin/v1/register "" \
		"{\"nonce\":\"$nonce\",\"username\":\"$user\",\"password\":\"password-$user\",\"admin\":false,\"mac\":\"$mac\"}" |
		json 'j["access_token"]'
}

# sync_filter ROOM — print an inline /sync filter (URL-encoded) for the
# timeline of ROOM only.
sync_filter() {
	urlenc "{\"room\":{\"rooms\":[\"$1\"],\"timeline\":{\"limit\":50}},\"presence\":{\"types\":[]},\"account_data\":{\"types\":[]}}"
}

# sync_token PORT TOKEN ROOM — print a /sync next_batch to wait from.
sync_token() {
	api "$1" GET "/_matrix/client/v3/sync?timeout=0&filter=$(sync_filter "$3")" "$2" |
		json 'j["next_batch"]'
}

# await_message PORT TOKEN ROOM SINCE BODY — long-poll /sync on 127.0.0.1:PORT
# from SINCE until ROOM's timeline yields an m.room.message with BODY; fail
# once DEADLINE seconds have passed (each poll is cut at the deadline, so a
# stalled server fails the check too).
await_message() {
	local port="$1" token="$2" room="$3" since_tok="$4" body="$5" end resp found
	end=$((SECONDS + DEADLINE))
	while ((SECONDS < end)); do
		resp="$(curl -sS --fail --max-time "$((end - SECONDS > 0 ? end - SECONDS : 1))" -H "Authorization: Bearer $token" \
			"http://127.0.0.1:$port/_matrix/client/v3/sync?timeout=2000&since=$since_tok&filter=$(sync_filter "$room")" \
			2>/dev/null)" || { sleep 0.2; continue; }
		found="$(printf '%s' "$resp" | python3 -c '
import json, sys
j = json.load(sys.stdin)
room, body = sys.argv[1:]
events = j.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
print(any(e.get("type") == "m.room.message" and e.get("content", {}).get("body") == body for e in events))' "$room" "$body")"
		[[ "$found" == True ]] && return 0
		since_tok="$(printf '%s' "$resp" | json 'j["next_batch"]')"
	done
	fail "\"$body\" did not reach :$port's /sync within ${DEADLINE}s"
}

# send_and_check FROM_PORT FROM_TOKEN TO_PORT TO_TOKEN ROOM BODY — send BODY
# into ROOM on one side and wait for it on the other side's /sync.
send_and_check() {
	local from="$1" from_token="$2" to="$3" to_token="$4" room="$5" body="$6" tok t0 id
	tok="$(sync_token "$to" "$to_token" "$room")"
	t0="$(now)"
	id="$(api "$from" PUT "/_matrix/client/v3/rooms/$(urlenc "$room")/send/m.room.message/check-$RANDOM-$(now)" \
		"$from_token" "{\"msgtype\":\"m.text\",\"body\":\"$body\"}" | json 'j["event_id"]')"
	await_message "$to" "$to_token" "$room" "$tok" "$body"
	say "ok: \"$body\" ($id) sent on :$from, in :$to's /sync after $(since "$t0") s"
}

# await_member PORT TOKEN ROOM USER — wait until USER shows in ROOM's
# /joined_members on 127.0.0.1:PORT; fail after DEADLINE seconds.
await_member() {
	local port="$1" token="$2" room="$3" user="$4" start members
	start=$SECONDS
	while ((SECONDS - start < DEADLINE)); do
		members="$(api "$port" GET "/_matrix/client/v3/rooms/$(urlenc "$room")/joined_members" "$token" |
			json '" ".join(sorted(j["joined"]))')"
		[[ " $members " == *" $user "* ]] && return 0
		sleep 0.2
	done
	fail "$user not in $room's members on :$port within ${DEADLINE}s (members: $members)"
}

# start_instance INSTANCE CLIENT FED — start one instance, report how long it
# took.
start_instance() {
	local t0 pid
	t0="$(now)"
	pid="$("$SYNAPSE_SH" start-federating "$DB" "$2" "$3" "$1")" || fail "could not start instance $1"
	say "started $1: Synapse localhost:$3 ($DB) pid $pid in $(since "$t0") s"
}

# cleanup — stop both instances unless KEEP=1.
cleanup() {
	if [[ "${KEEP:-}" == 1 ]]; then
		say "KEEP=1: leaving both instances running"
		return 0
	fi
	"$SYNAPSE_SH" stop "$DB" a 2>/dev/null || true
	"$SYNAPSE_SH" stop "$DB" b 2>/dev/null || true
}

# main — start the pair, then room, join and a message each way.
main() {
	local alice bob room t0
	command -v curl >/dev/null || fail "curl is required"
	command -v python3 >/dev/null || fail "python3 is required"
	trap cleanup EXIT
	start_instance a "$A_CLIENT" "$A_FED"
	start_instance b "$B_CLIENT" "$B_FED"

	alice="$(register "$A_CLIENT" alice)"
	bob="$(register "$B_CLIENT" bob)"
	say "ok: registered @alice:localhost:$A_FED and @bob:localhost:$B_FED"

	room="$(api "$A_CLIENT" POST /_matrix/client/v3/createRoom "$alice" \
		'{"preset":"public_chat","visibility":"public","name":"pair check"}' | json 'j["room_id"]')"
	say "ok: alice created public room $room"

	t0="$(now)"
	api "$B_CLIENT" POST "/_matrix/client/v3/join/$(urlenc "$room")?server_name=$(urlenc "localhost:$A_FED")" \
		"$bob" '{}' >/dev/null
	say "ok: bob joined over federation in $(since "$t0") s"
	await_member "$A_CLIENT" "$alice" "$room" "@bob:localhost:$B_FED"
	say "ok: A lists @bob:localhost:$B_FED as joined"

	send_and_check "$A_CLIENT" "$alice" "$B_CLIENT" "$bob" "$room" "hello from A"
	send_and_check "$B_CLIENT" "$bob" "$A_CLIENT" "$alice" "$room" "hello from B"
	say "PASS: Synapse pair ($DB) federates both ways"
}

main "$@"
