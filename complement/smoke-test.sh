#!/usr/bin/env bash
# Checks the complement-tessera image against Complement's image contract
# without Complement: a throwaway CA mounted at /complement/ca, SERVER_NAME=hs1,
# ports published on 127.0.0.1 only (random host ports). It checks that
#   - /_matrix/client/versions answers 200 within $STARTUP_TIMEOUT seconds;
#   - 8448 serves /_matrix/key/v2/server over HTTPS with a certificate that
#     verifies against the CA for the name hs1;
#   - the CA is in the container's trust store;
#   - /_synapse/admin/v1/register works with the shared secret "complement",
#     and the new user's access token works;
#   - a restart (the entrypoint run again) keeps the data and the signing key;
#   - `docker stop` ends the server by SIGTERM, not by the 10 s kill.
# The container and the temporary CA are removed at the end.
set -euo pipefail

IMAGE=${IMAGE:-complement-tessera}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-10}
SERVER=hs1
name="tessera-smoke-$$"
tmp=$(mktemp -d)
failures=0
passes=0

cleanup() {
    docker rm -f "$name" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

pass() { passes=$((passes + 1)); echo "PASS: $*"; }
fail() { failures=$((failures + 1)); echo "FAIL: $*"; }
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }

# A throwaway CA, like the one Complement makes and mounts.
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 1 \
    -subj "/CN=Tessera smoke-test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null

wait_for_versions() {
    local deadline=$((SECONDS + STARTUP_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if curl -fsS -o "$tmp/versions.json" "http://127.0.0.1:$client_port/_matrix/client/versions" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

started=$(date +%s.%N)
docker run -d --name "$name" -e SERVER_NAME=$SERVER -v "$tmp:/complement/ca" \
    -p 127.0.0.1::8008 -p 127.0.0.1::8448 "$IMAGE" >/dev/null
client_port=$(docker port "$name" 8008/tcp | sed -n 's/^127\.0\.0\.1://p' | head -1)
fed_port=$(docker port "$name" 8448/tcp | sed -n 's/^127\.0\.0\.1://p' | head -1)
echo "container $name: client 127.0.0.1:$client_port, federation 127.0.0.1:$fed_port"

# 1. The client API.
if wait_for_versions; then
    elapsed=$(awk -v now="$(date +%s.%N)" -v then="$started" 'BEGIN { printf "%.2f", now - then }')
    pass "GET /_matrix/client/versions 200 after ${elapsed}s: $(head -c 120 "$tmp/versions.json")"
else
    fail "/_matrix/client/versions did not answer within ${STARTUP_TIMEOUT}s"
    docker logs "$name" 2>&1 | tail -30
    exit 1
fi

# 2. Federation over HTTPS with a certificate signed by the CA for hs1.
if curl -fsS --cacert "$tmp/ca.crt" --resolve "$SERVER:$fed_port:127.0.0.1" \
    -o "$tmp/keys.json" "https://$SERVER:$fed_port/_matrix/key/v2/server"; then
    pass "https://$SERVER:$fed_port/_matrix/key/v2/server verifies against the CA: $(head -c 160 "$tmp/keys.json")"
else
    fail "key server over HTTPS with --cacert"
fi
openssl s_client -connect "127.0.0.1:$fed_port" -servername "$SERVER" </dev/null 2>/dev/null |
    openssl x509 -out "$tmp/served.crt"
openssl x509 -in "$tmp/served.crt" -noout -subject -issuer -ext subjectAltName 2>/dev/null | sed 's/^/    /'
if openssl verify -CAfile "$tmp/ca.crt" -verify_hostname "$SERVER" "$tmp/served.crt" >/dev/null 2>&1; then
    pass "openssl verify: served certificate is valid for $SERVER under the CA"
else
    fail "openssl verify of the served certificate"
fi
if curl -fsS --cacert "$tmp/ca.crt" --resolve "wrong-name:$fed_port:127.0.0.1" \
    "https://wrong-name:$fed_port/_matrix/key/v2/server" >/dev/null 2>&1; then
    fail "the certificate also verified for another name"
else
    pass "the certificate does not verify for another name"
fi

# 3. The CA is trusted inside the container (update-ca-certificates).
if docker exec "$name" openssl verify /tessera/tls/server.crt >/dev/null 2>&1; then
    pass "inside the container, the system trust store verifies the server certificate"
else
    fail "the CA is not in the container's trust store"
fi

# 4. Shared-secret registration, as Complement does it.
register() { # user password -> response body
    local nonce mac
    nonce=$(curl -fsS "http://127.0.0.1:$client_port/_synapse/admin/v1/register" | json_field nonce)
    mac=$(printf '%s\0%s\0%s\0notadmin' "$nonce" "$1" "$2" |
        openssl dgst -sha1 -hmac complement | awk '{print $NF}')
    curl -sS -XPOST "http://127.0.0.1:$client_port/_synapse/admin/v1/register" \
        -H 'Content-Type: application/json' \
        -d "{\"nonce\":\"$nonce\",\"username\":\"$1\",\"password\":\"$2\",\"admin\":false,\"mac\":\"$mac\"}"
}
response=$(register alice 'complement-password')
token=$(printf '%s' "$response" | json_field access_token)
if [ "$(printf '%s' "$response" | json_field user_id)" = "@alice:$SERVER" ] && [ -n "$token" ]; then
    pass "shared-secret registration: $response"
else
    fail "shared-secret registration: $response"
fi
whoami=$(curl -sS -H "Authorization: Bearer $token" "http://127.0.0.1:$client_port/_matrix/client/v3/account/whoami")
if [ "$(printf '%s' "$whoami" | json_field user_id)" = "@alice:$SERVER" ]; then
    pass "whoami with the new token: $whoami"
else
    fail "whoami with the new token: $whoami"
fi

# 5. The entrypoint runs again on restart; data and signing key survive.
key_before=$(json_field key <"$tmp/keys.json" | head -1)
docker restart "$name" >/dev/null
client_port=$(docker port "$name" 8008/tcp | sed -n 's/^127\.0\.0\.1://p' | head -1)
fed_port=$(docker port "$name" 8448/tcp | sed -n 's/^127\.0\.0\.1://p' | head -1)
if wait_for_versions &&
    curl -fsS --cacert "$tmp/ca.crt" --resolve "$SERVER:$fed_port:127.0.0.1" \
        -o "$tmp/keys2.json" "https://$SERVER:$fed_port/_matrix/key/v2/server"; then
    key_after=$(json_field key <"$tmp/keys2.json" | head -1)
    login=$(curl -sS -XPOST "http://127.0.0.1:$client_port/_matrix/client/v3/login" \
        -d '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"complement-password"}')
    if [ -n "$key_before" ] && [ "$key_before" = "$key_after" ] &&
        [ -n "$(printf '%s' "$login" | json_field access_token)" ]; then
        pass "after docker restart: same signing key, alice still logs in"
    else
        fail "after docker restart: key $key_before -> $key_after, login: $login"
    fi
else
    fail "after docker restart the server did not come back"
fi

# 6. SIGTERM reaches tessera (PID 1 via exec).
stop_started=$SECONDS
docker stop "$name" >/dev/null
stop_took=$((SECONDS - stop_started))
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
if [ "$stop_took" -lt 10 ] && [ "$exit_code" = 0 ]; then
    pass "docker stop: exited $exit_code after ${stop_took}s"
else
    fail "docker stop: exit code $exit_code after ${stop_took}s"
fi

echo
echo "server log (last lines):"
docker logs "$name" 2>&1 | tail -8 | sed 's/^/    /'
echo
echo "smoke-test: $passes passed, $failures failed"
[ "$failures" = 0 ]
