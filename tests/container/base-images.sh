#!/usr/bin/env bash
# Builds, from Debian's packages, stand-ins for the base images the Dockerfile names (passed to
# it as RUST_IMAGE and BASE_IMAGE), for machines that reach Debian's mirror but no image
# registry (this project's test machines). They are named under localhost/datacube-base/, never
# as the official images, and each is made only when podman does not have it yet:
#   localhost/datacube-base/debian:bookworm-slim — mmdebstrap's minbase without documentation,
#                                             as Debian's own slim image is made
#   localhost/datacube-base/rust:1.95-bookworm — only with --rust: the slim base with gcc and this
#                                             machine's Rust toolchain, where the official image
#                                             keeps it (/usr/local/{rustup,cargo}), and the
#                                             certificate authorities this machine trusts
#                                             (its egress to crates.io may pass a proxy)
#   localhost/datacube-base/postgres:15-bookworm — only with --postgres: Debian's PostgreSQL 15 with an
#                                             entrypoint that takes the official postgres image's
#                                             variables (postgres-entrypoint.sh), for compose.yaml
#                                             (POSTGRES_IMAGE)
# Usage: tests/container/base-images.sh [--rust] [--postgres]
set -euo pipefail
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
slim=localhost/datacube-base/debian:bookworm-slim
rust=localhost/datacube-base/rust:1.95-bookworm
postgres=localhost/datacube-base/postgres:15-bookworm
here=$(cd "$(dirname "$0")" && pwd)
want_rust=false want_postgres=false
for arg in "$@"; do
  case "$arg" in
    --rust) want_rust=true ;;
    --postgres) want_postgres=true ;;
    *) echo "usage: $0 [--rust] [--postgres]" >&2; exit 2 ;;
  esac
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

slim_opts=(
  --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
)

# A Debian 12 root file system as a tarball: the slim options, then the image's own.
rootfs() {
  local tar=$1
  shift
  mmdebstrap "${slim_opts[@]}" "$@" bookworm "$tar" "$mirror" >"$work/log" 2>&1 \
    || { cat "$work/log" >&2; exit 1; }
}

if ! podman image exists "$slim"; then
  echo "building $slim from Debian's packages…"
  rootfs "$work/slim.tar"
  podman import --quiet --change 'CMD ["bash"]' "$work/slim.tar" "$slim" >/dev/null
fi

if $want_rust && ! podman image exists "$rust"; then
  echo "building $rust from Debian's packages and this machine's toolchain…"
  toolchain="$(rustc --print sysroot)"
  rootfs "$work/rust.tar" --include=gcc,libc6-dev,git,ca-certificates \
    --customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share' \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook="mkdir -p \$1/usr/local/rustup/toolchains \$1/usr/local/cargo/bin" \
    --customize-hook="cp -a $toolchain \$1/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu" \
    --customize-hook="for t in cargo rustc rustdoc; do ln -s /usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/bin/\$t \$1/usr/local/cargo/bin/\$t; done"
  podman import --quiet \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$work/rust.tar" "$rust" >/dev/null
fi

if $want_postgres && ! podman image exists "$postgres"; then
  echo "building $postgres from Debian's packages…"
  rootfs "$work/postgres.tar" --include=postgresql-15 --skip=cleanup/run \
    --customize-hook='chroot "$1" pg_dropcluster 15 main' \
    --customize-hook="copy-in $here/postgres-entrypoint.sh /usr/local/bin" \
    --customize-hook='chroot "$1" install -d -o postgres -g postgres -m 2775 /var/run/postgresql' \
    --customize-hook='chroot "$1" install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data'
  podman import --quiet \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' --change 'USER postgres' \
    --change 'VOLUME /var/lib/postgresql/data' --change 'EXPOSE 5432' \
    --change 'ENTRYPOINT ["postgres-entrypoint.sh"]' "$work/postgres.tar" "$postgres" >/dev/null
fi
