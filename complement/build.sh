#!/usr/bin/env bash
# Builds the complement-tessera image (see complement/README.md):
#   1. the base image tessera-debian-base (Debian bookworm by debootstrap),
#      only if BASE_IMAGE is that name and it does not exist yet;
#   2. `cargo build --release --bin tessera` on the host;
#   3. `docker build` with complement/ alone as the context.
#
# Environment:
#   IMAGE          image to build             (complement-tessera)
#   BASE_IMAGE     FROM of the Dockerfile     (tessera-debian-base)
#   DEBIAN_MIRROR  for debootstrap            (http://deb.debian.org/debian)
#   SKIP_CARGO=1   use the binary already in target/release
#   CARGO_TARGET_DIR is honoured.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
IMAGE=${IMAGE:-complement-tessera}
BASE_IMAGE=${BASE_IMAGE:-tessera-debian-base}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 ||
    die "no Docker daemon answers (start one, e.g. 'nohup dockerd > /tmp/dockerd.log 2>&1 &')"

# 1. The base image, made locally because no container registry may be
#    reachable. Any other BASE_IMAGE (debian:bookworm-slim, ...) is used as is.
make_base() {
    [ "$(id -u)" = 0 ] || die "making $BASE_IMAGE needs root (debootstrap)"
    if ! command -v debootstrap >/dev/null 2>&1; then
        step "apt-get install debootstrap"
        apt-get install -y debootstrap >/dev/null ||
            { apt-get update >/dev/null && apt-get install -y debootstrap >/dev/null; }
    fi
    local root
    root=$(mktemp -d /var/tmp/tessera-debian-base.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf --one-file-system '$root'" EXIT
    step "debootstrap bookworm ($DEBIAN_MIRROR) into $root"
    local start=$SECONDS
    debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 ||
        { tail -20 "$root.log" >&2; die "debootstrap failed (log: $root.log)"; }
    rm -f "$root.log"
    # Updates and security fixes for apt-get inside `docker build`.
    cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main
EOF
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    step "docker import $BASE_IMAGE"
    tar --numeric-owner -C "$root" -c . |
        docker import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf --one-file-system "$root"
    trap - EXIT
    echo "base image: $((SECONDS - start)) s" >&2
}
if [ "$BASE_IMAGE" = tessera-debian-base ] && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    make_base
fi

# 2. The release binary.
if [ "${SKIP_CARGO:-0}" != 1 ]; then
    step "cargo build --release --bin tessera"
    start=$SECONDS
    (cd "$repo" && cargo build --release --bin tessera)
    echo "cargo: $((SECONDS - start)) s" >&2
fi
binary="$target_dir/release/tessera"
[ -x "$binary" ] || die "no binary at $binary"

# 3. The image. The binary is copied into complement/ (ignored by git) so
#    that the context is this directory, not the repository and its target/.
step "docker build -t $IMAGE (FROM $BASE_IMAGE)"
install -m 0755 "$binary" "$here/tessera"
start=$SECONDS
docker build -t "$IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" "$here"
echo "docker build: $((SECONDS - start)) s" >&2
step "built $IMAGE; run Complement with COMPLEMENT_BASE_IMAGE=$IMAGE go test ./tests/..."
