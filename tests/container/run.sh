#!/usr/bin/env bash
# The container image: builds it with podman from this repository's Dockerfile (from source, as a
# user with `docker build .` does) and runs tests/container/test_image.py against it.
#
# podman runs as this project's machines allow (runc, cgroupfs, no default ulimits: a
# containers.conf of its own); the base images the Dockerfile names are built from Debian's
# packages when podman lacks them (base-images.sh), as no image registry is reachable here.
#   CONTAINER_SCENARIOS     which scenarios of test_image.py (default "volume compose")
#   CONTAINER_POSTGRES=URL  the fresh PostgreSQL database of the "postgres" scenario
#   IMAGE_BINARY=PATH       packs that binary instead (`--target prebuilt`), for a quick rerun
# compose.yaml runs with podman-compose from PyPI (installed under target/) on a PostgreSQL image
# made from Debian's packages (POSTGRES_IMAGE).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

for tool in podman mmdebstrap; do
  if ! command -v "$tool" >/dev/null; then
    echo "tests/container: $tool is missing (apt-get install podman runc mmdebstrap)" >&2
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF="$work/containers.conf"

commit=$(git -C "$root" rev-parse --short=12 HEAD)
image=localhost/datacube:test
# --format docker: the OCI format has no HEALTHCHECK.
build=(podman build --quiet --format docker --network host --build-arg "DATACUBE_COMMIT=$commit"
  --build-arg RUST_IMAGE=localhost/datacube-base/rust:1.95-bookworm
  --build-arg BASE_IMAGE=localhost/datacube-base/debian:bookworm-slim -t "$image")
start=$(date +%s)
if [ -n "${IMAGE_BINARY:-}" ]; then
  "$here/base-images.sh"
  cp "$IMAGE_BINARY" "$work/datacube"
  "${build[@]}" --target prebuilt -f "$root/Dockerfile" "$work" >/dev/null
else
  # As README says: the one command that builds the image offline.
  "$root/scripts/container-image" "$image"
fi
echo "  image built in $(( $(date +%s) - start )) s"

# compose.yaml: podman-compose from PyPI, Debian's PostgreSQL behind the official image's interface.
venv="$root/target/compose-venv"
if ! "$venv/bin/podman-compose" --version 2>/dev/null | grep -q 'podman-compose version 1.6.0'; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'podman-compose==1.6.0'
fi
"$here/base-images.sh" --postgres

IMAGE="$image" COMMIT="$commit" COMPOSE="$venv/bin/podman-compose" \
  POSTGRES_IMAGE=localhost/datacube-base/postgres:15-bookworm python3 "$here/test_image.py"
