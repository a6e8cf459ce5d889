#!/bin/sh
# Entrypoint of the complement-tessera image: Tessera as Complement's
# homeserver under test (https://github.com/matrix-org/complement).
#
# At every container start (Complement may start the same container, or an
# image committed from it, more than once) it:
#   1. signs a fresh TLS certificate for $SERVER_NAME with the CA that
#      Complement mounts at /complement/ca/ca.{crt,key};
#   2. adds that CA to the system trust store;
#   3. configures Tessera through TESSERA_* variables and execs it as PID 1,
#      so SIGTERM from `docker stop` reaches it directly.
# Arguments are passed to `tessera` (none = serve), so for example
# `docker run ... complement-tessera user create alice` works too.
set -eu

log() { echo "complement-entrypoint: $*" >&2; }

# Runs a command, showing its output only if it fails (openssl is chatty).
quiet() {
    out=$("$@" 2>&1) || {
        status=$?
        printf '%s\n' "$out" >&2
        log "failed ($status): $*"
        return "$status"
    }
}

if [ -z "${SERVER_NAME:-}" ]; then
    log "SERVER_NAME is not set (Complement sets it to hs1, hs2, ...)"
    exit 1
fi

CA_DIR=/complement/ca
TLS_DIR=/tessera/tls
DATA_DIR=/tessera/data
mkdir -p "$TLS_DIR" "$DATA_DIR"

# The certificate names the host part of the server name: "hs1" for "hs1",
# "hs1" for "hs1:8448", "::1" for "[::1]:8448".
case "$SERVER_NAME" in
    \[*)
        host=${SERVER_NAME#\[}
        host=${host%%\]*}
        san="IP:$host"
        ;;
    *)
        host=${SERVER_NAME%%:*}
        if printf '%s' "$host" | grep -Eq '^[0-9]+(\.[0-9]+){3}$'; then
            san="IP:$host"
        else
            san="DNS:$host"
        fi
        ;;
esac

# Extensions of the server certificate. rustls, Go and current OpenSSL
# clients match the name against subjectAltName only, never the CN.
cat > "$TLS_DIR/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = $san
EOF

(
    umask 077
    quiet openssl genrsa -out "$TLS_DIR/server.key" 2048
)
quiet openssl req -new -sha256 -key "$TLS_DIR/server.key" \
    -subj "/O=Complement Tessera/CN=$host" -out "$TLS_DIR/server.csr"

if [ -r "$CA_DIR/ca.crt" ] && [ -r "$CA_DIR/ca.key" ]; then
    # A random serial, so that nothing is written next to the mounted CA
    # (-CAcreateserial would create ca.srl there).
    quiet openssl x509 -req -sha256 -days 7 -in "$TLS_DIR/server.csr" \
        -CA "$CA_DIR/ca.crt" -CAkey "$CA_DIR/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" \
        -extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.crt"
    # Trust Complement's CA (its mock homeservers' certificates are signed
    # by it) for anything in the container that makes outbound TLS calls.
    cp "$CA_DIR/ca.crt" /usr/local/share/ca-certificates/complement.crt
    quiet update-ca-certificates
    log "certificate for $san signed by $CA_DIR/ca.crt; that CA is trusted"
else
    # Run by hand without Complement's CA: a self-signed certificate, so
    # that the federation listener still starts.
    log "no CA at $CA_DIR/ca.crt and ca.key: using a self-signed certificate"
    quiet openssl x509 -req -sha256 -days 7 -in "$TLS_DIR/server.csr" \
        -signkey "$TLS_DIR/server.key" -set_serial "0x$(openssl rand -hex 16)" \
        -extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.crt"
fi
rm -f "$TLS_DIR/server.csr"

# Tessera's whole configuration. No config file is read: TESSERA_CONFIG is
# cleared and the working directory (/tessera) has no tessera.toml.
unset TESSERA_CONFIG
export TESSERA_SERVER_NAME="$SERVER_NAME"
export TESSERA_LISTEN=0.0.0.0:8008
export TESSERA_FEDERATION_LISTEN=0.0.0.0:8448
export TESSERA_TLS_CERTIFICATE="$TLS_DIR/server.crt"
export TESSERA_TLS_PRIVATE_KEY="$TLS_DIR/server.key"
# Outbound federation trusts Complement's CA and may reach the Docker
# network's private addresses (and the host's, where Complement's own
# servers listen).
if [ -f "$CA_DIR/ca.crt" ]; then
    export TESSERA_FEDERATION_TRUSTED_CA="$CA_DIR/ca.crt"
fi
export TESSERA_OUTBOUND_ALLOWED_RANGES="10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8"
export TESSERA_DATA_DIR="$DATA_DIR"
export TESSERA_ALLOW_REGISTRATION=true
export TESSERA_REGISTRATION_SHARED_SECRET=complement
# Complement registers, logs in and sends far faster than any person.
export TESSERA_RATE_LIMITS_LOGIN_PER_SECOND=0
export TESSERA_RATE_LIMITS_FAILED_LOGIN_PER_SECOND=0
export TESSERA_RATE_LIMITS_REGISTRATION_PER_SECOND=0
export TESSERA_RATE_LIMITS_GENERAL_PER_SECOND=0
# Complement's media tests download through the deprecated unauthenticated
# endpoints (never frozen here) and preview a page on the Docker host.
export TESSERA_MEDIA_UNAUTHENTICATED_UNTIL_MS=9223372036854775807
export TESSERA_MEDIA_URL_PREVIEWS=true
# Tunable from outside, e.g. through Complement's COMPLEMENT_SHARE_ENV_PREFIX
# (PASS_TESSERA_LOG=debug with COMPLEMENT_SHARE_ENV_PREFIX=PASS_).
export TESSERA_LOG="${TESSERA_LOG:-info}"
export TESSERA_ALLOW_GUESTS="${TESSERA_ALLOW_GUESTS:-true}"

cd /tessera
exec /usr/local/bin/tessera "$@"
