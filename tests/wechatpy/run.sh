#!/usr/bin/env bash
# Drives the real datacube binary with wechatpy 1.8.18 from PyPI, unchanged.
# Makes its own virtual environment (under target/), database and server; cleans up after.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/target/wechatpy-venv"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import wechatpy, cryptography; assert wechatpy.__version__ == "1.8.18"' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'wechatpy==1.8.18' cryptography
fi

cargo build --quiet -p datacube
bin="$root/target/debug/datacube"
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# WECHATPY_DATABASE: another database to run on (scripts/test passes a fresh PostgreSQL one).
export DATACUBE_DATABASE="${WECHATPY_DATABASE:-sqlite://$work/wechatpy.db}"
export DATACUBE_LOG=warn
appid=wx00000000000000aa
secret=wechatpy-test-secret-0123456789ab
"$bin" account add --appid "$appid" --secret "$secret" >/dev/null
for f in "$here"/fixtures/*.json; do
  "$bin" import --appid "$appid" --endpoint "$(basename "$f" .json)" "$f" >/dev/null
done

# 2024-05-01 09:00 China time: April is ready.
admin=wechatpy-admin-token
"$bin" serve --listen 127.0.0.1:0 --clock 2024-05-01T09:00:00+08:00 --admin-token "$admin" >"$work/serve.out" &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q 'serving the WeChat API on' "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
base=$(sed -n 's/^datacube is serving the WeChat API on //p' "$work/serve.out")
[ -n "$base" ] || { echo "datacube serve did not start"; exit 1; }

DATACUBE_BASE="$base" DATACUBE_APPID="$appid" DATACUBE_SECRET="$secret" FIXTURES="$here/fixtures" \
  "$venv/bin/python" "$here/test_wechatpy.py"
# Third-party platforms: WeChatComponent through the whole authorization flow.
DATACUBE_BASE="$base" DATACUBE_APPID="$appid" DATACUBE_ADMIN="$admin" FIXTURES="$here/fixtures" \
  "$venv/bin/python" "$here/test_component.py"
