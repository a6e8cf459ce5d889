#!/usr/bin/env bash
# bench/federation-ca.sh — a throw-away certificate authority for federation
# tests on loopback, shared by Synapse (federation_custom_ca_list) and Tessera
# (TESSERA_FEDERATION_TRUSTED_CA).
#
# Usage:
#   bench/federation-ca.sh DIR NAME...
#       Create, unless already there, a test CA in DIR (DIR/ca.pem,
#       DIR/ca.key) and for each NAME a leaf certificate and key
#       (DIR/NAME.pem, DIR/NAME.key) signed by it: subjectAltName
#       DNS:localhost and IP:127.0.0.1, extendedKeyUsage serverAuth, valid
#       365 days. All files are plain PEM; keys are ECDSA P-256 (PKCS#8).
#
# Idempotent: an existing CA is kept unless it expires within a day; an
# existing leaf is kept if it still verifies against DIR/ca.pem, has its key
# and does not expire within a day; otherwise it is reissued. Concurrent runs
# on the same DIR are serialised with a lock file. Prints nothing but errors.

set -euo pipefail

readonly DAYS=365
readonly MIN_VALID=86400 # seconds a kept certificate must still be valid

# die MESSAGE... — print an error on stderr and exit 1.
die() {
	printf 'federation-ca.sh: error: %s\n' "$*" >&2
	exit 1
}

# usage — print the usage on stderr and exit 2.
usage() {
	sed -n '6,12p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# quiet CMD... — run CMD with its output captured; show the output (on
# stderr) only if CMD fails. openssl chatters on stderr even on success.
quiet() {
	local out
	if ! out="$("$@" 2>&1)"; then
		printf '%s\n' "$out" >&2
		die "command failed: $*"
	fi
}

# new_key FILE — write a fresh ECDSA P-256 private key to FILE (mode 600).
new_key() {
	(umask 077 && quiet openssl genpkey -algorithm EC \
		-pkeyopt ec_paramgen_curve:P-256 -out "$1.tmp")
	mv -f "$1.tmp" "$1"
}

# serial — print a random positive 128-bit serial number for openssl.
serial() {
	printf '0x%s\n' "$(openssl rand -hex 16)"
}

# still_valid CERT — succeed if CERT exists and is valid for MIN_VALID more
# seconds.
still_valid() {
	[[ -s "$1" ]] && openssl x509 -in "$1" -noout -checkend "$MIN_VALID" >/dev/null 2>&1
}

# ensure_ca DIR — create DIR/ca.key and the self-signed DIR/ca.pem unless a
# valid pair is there. A CA certificate (basicConstraints critical CA:TRUE,
# keyUsage keyCertSign) that strict verifiers such as webpki accept.
ensure_ca() {
	local dir="$1"
	if [[ -s "$dir/ca.key" ]] && still_valid "$dir/ca.pem"; then
		return 0
	fi
	new_key "$dir/ca.key"
	quiet openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$DAYS" \
		-set_serial "$(serial)" -subj "/O=Tessera test/CN=Tessera test federation CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash" \
		-out "$dir/ca.pem.tmp"
	mv -f "$dir/ca.pem.tmp" "$dir/ca.pem"
}

# leaf_ok DIR NAME — succeed if DIR/NAME.pem and DIR/NAME.key exist, the
# certificate verifies against DIR/ca.pem for serverAuth, its key matches and
# it stays valid for MIN_VALID more seconds.
leaf_ok() {
	local dir="$1" name="$2"
	[[ -s "$dir/$name.key" ]] && still_valid "$dir/$name.pem" || return 1
	openssl verify -CAfile "$dir/ca.pem" -purpose sslserver \
		"$dir/$name.pem" >/dev/null 2>&1 || return 1
	[[ "$(openssl x509 -in "$dir/$name.pem" -noout -pubkey 2>/dev/null)" == \
		"$(openssl pkey -in "$dir/$name.key" -pubout 2>/dev/null)" ]]
}

# ensure_leaf DIR NAME — issue DIR/NAME.pem (and a new DIR/NAME.key) signed
# by the CA in DIR unless leaf_ok says the current pair is fine.
ensure_leaf() {
	local dir="$1" name="$2" ext
	leaf_ok "$dir" "$name" && return 0
	new_key "$dir/$name.key"
	ext="$dir/.$name.ext"
	cat >"$ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
	quiet openssl req -new -key "$dir/$name.key" -subj "/O=Tessera test/CN=$name" \
		-out "$dir/.$name.csr"
	quiet openssl x509 -req -in "$dir/.$name.csr" -CA "$dir/ca.pem" \
		-CAkey "$dir/ca.key" -set_serial "$(serial)" -sha256 -days "$DAYS" \
		-extfile "$ext" -out "$dir/$name.pem.tmp"
	mv -f "$dir/$name.pem.tmp" "$dir/$name.pem"
	rm -f "$ext" "$dir/.$name.csr"
}

# main DIR NAME... — check the arguments, then create what is missing under a
# lock on DIR/.lock.
main() {
	[[ $# -ge 2 ]] || usage
	local dir="$1" name
	shift
	for name in "$@"; do
		[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ && "$name" != ca ]] ||
			die "NAME must match [A-Za-z0-9][A-Za-z0-9._-]* and not be 'ca', got '$name'"
	done
	command -v openssl >/dev/null || die "openssl is required"
	mkdir -p "$dir"
	exec 9>"$dir/.lock"
	flock 9
	ensure_ca "$dir"
	for name in "$@"; do
		ensure_leaf "$dir" "$name"
	done
}

main "$@"
