#!/usr/bin/env bash
# The dashboard in a real browser: Debian's Chromium, driven by Playwright (playwright-core from
# the npm registry, installed under target/), against `datacube serve --demo`. Signs in both
# ways, opens every view, checks that every chart drew data and that the page logged no error,
# downloads a CSV, changes the range, looks at it on a phone-sized screen, saves screenshots to
# target/dashboard-screenshots/ and prints how long the first view took; then opens the API
# reference (/docs) from its link and checks that it lists every operation of /openapi.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
node_dir="$root/target/dashboard-node"
playwright_version=1.65.1

if [ ! -f "$node_dir/node_modules/playwright-core/package.json" ] ||
   ! grep -q "\"version\": \"$playwright_version\"" "$node_dir/node_modules/playwright-core/package.json"; then
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --silent "playwright-core@$playwright_version"
fi
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium…"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  else
    echo "the dashboard test needs Chromium: apt-get install chromium (or set CHROMIUM)" >&2
    exit 1
  fi
fi

cd "$root"
cargo build --quiet -p datacube
bin="$root/target/debug/datacube"
work=$(mktemp -d)
server_pid=
mirror_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  [ -n "$mirror_pid" ] && kill "$mirror_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

DATACUBE_DATABASE="${DASHBOARD_DATABASE:-sqlite://$work/dashboard.db}" DATACUBE_LOG=warn \
  "$bin" serve --listen 127.0.0.1:0 --demo --admin-token dashboard-admin-token \
  --clock 2026-06-15T10:00:00+08:00 >"$work/serve.out" &
server_pid=$!
# A year of demo events takes a debug build about a minute (more on PostgreSQL).
for _ in $(seq 1 1800); do
  grep -q 'demo account:' "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
base=$(sed -n 's/^datacube is serving the WeChat API on //p' "$work/serve.out")
[ -n "$base" ] || { echo "datacube serve did not start"; cat "$work/serve.out"; exit 1; }
appid=$(sed -n 's/^demo account: appid \([^ ]*\) .*/\1/p' "$work/serve.out")
secret=$(sed -n 's/^demo account: .*secret \([^ ]*\).*/\1/p' "$work/serve.out")

# A mirror of the demo account and of one the upstream does not know (its secret refused), for
# the Mirror view.
cat >"$work/mirror.toml" <<EOF
name = "agency"
upstream = "$base"
from = "2026-06-01"
endpoints = ["getusersummary", "getusercumulate"]
[[account]]
appid = "$appid"
secret_env = "DASHBOARD_DEMO_SECRET"
[[account]]
appid = "wxbbbb000000000404"
secret = "a-secret-the-upstream-never-saw"
EOF
chmod 600 "$work/mirror.toml"
DATACUBE_DATABASE="sqlite://$work/mirror.db" DATACUBE_LOG=warn DASHBOARD_DEMO_SECRET="$secret" \
  "$bin" serve --listen 127.0.0.1:0 --mirror "$work/mirror.toml" --admin-token dashboard-admin-token \
  --clock 2026-06-15T10:00:00+08:00 >"$work/mirror.out" &
mirror_pid=$!
for _ in $(seq 1 300); do
  grep -q 'datacube is serving' "$work/mirror.out" 2>/dev/null && break
  sleep 0.1
done
mirror=$(sed -n 's/^datacube is serving the WeChat API on //p' "$work/mirror.out")
[ -n "$mirror" ] || { echo "datacube serve --mirror did not start"; cat "$work/mirror.out"; exit 1; }

shots="$root/target/dashboard-screenshots"
mkdir -p "$shots"
PLAYWRIGHT="$node_dir/node_modules/playwright-core" node "$here/test.cjs" \
  "$base" "$chromium" "$shots" "$appid" "$secret" dashboard-admin-token "$mirror"
