#!/usr/bin/env bash
# Sync benchmark (issue 5): a full backfill of all 17 endpoints of one account, from
# 2014-12-01 to yesterday, from a local `datacube serve --demo` (a year of statistics):
# `datacube sync` into a fresh SQLite database, against a wechatpy 1.8.18 script making the
# same calls one after the other, as its users do. Same session, same server.
#
#   bench/sync.sh            # ROUNDS=3
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cd "$root"
cargo build --release -q -p datacube
bin=$root/target/release/datacube
venv="$root/target/wechatpy-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import wechatpy, cryptography; assert wechatpy.__version__ == "1.8.18"' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'wechatpy==1.8.18' cryptography
fi
export DATACUBE_LOG=warn
clock=2026-11-24T10:00:00+08:00
appid=wx6461746163756265
secret=64656d6f5f7365637265745f32303236
"$bin" serve --database "sqlite://$work/up.db" --demo --listen 127.0.0.1:18501 --clock "$clock" >"$work/up.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do grep -q 'serving the WeChat API' "$work/up.out" 2>/dev/null && break; sleep 0.1; done
base=http://127.0.0.1:18501

cat >"$work/anchor.py" <<'PY'
"""The same calls with wechatpy 1.8.18, one after the other."""
import datetime, sys, time
from wechatpy import WeChatClient
from wechatpy.client.api import WeChatDataCube

BASE, APPID, SECRET = sys.argv[1], sys.argv[2], sys.argv[3]
LAST_READY = datetime.date.fromisoformat(sys.argv[4])

class Client(WeChatClient):
    API_BASE_URL = BASE + "/cgi-bin/"
    def fetch_access_token(self):
        return self._fetch_access_token(url=BASE + "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret})

WeChatDataCube.API_BASE_URL = BASE + "/datacube/"
client = Client(APPID, SECRET)
d = client.datacube
day = datetime.timedelta(days=1)
monday = lambda x: x - datetime.timedelta(days=x.weekday())
last_week = monday(LAST_READY - 6 * day)
last_month = ((LAST_READY + day).replace(day=1) - day).replace(day=1)
# (method, span, last label) as datacube's plan makes them.
endpoints = [
    (d.get_user_summary, 7, LAST_READY), (d.get_user_cumulate, 7, LAST_READY),
    (d.get_article_summary, 1, LAST_READY), (d.get_article_total, 1, LAST_READY),
    (d.get_user_read, 3, LAST_READY), (d.get_user_read_hour, 1, LAST_READY),
    (d.get_user_share, 7, LAST_READY), (d.get_user_share_hour, 1, LAST_READY),
    (d.get_upstream_msg, 7, LAST_READY), (d.get_upstream_msg_hour, 1, LAST_READY),
    (d.get_upstream_msg_week, 30, last_week), (d.get_upstream_msg_month, 30, last_month),
    (d.get_upstream_msg_dist, 15, LAST_READY), (d.get_upstream_msg_dist_week, 30, last_week),
    (d.get_upstream_msg_dist_month, 30, last_month),
    (d.get_interface_summary, 30, LAST_READY), (d.get_interface_summary_hour, 1, LAST_READY),
]
start = time.time()
calls = rows = 0
for method, span, last in endpoints:
    at = datetime.date(2014, 12, 1)
    while at <= last:
        end = min(at + (span - 1) * day, last)
        rows += len(method(at, end))
        calls += 1
        at = end + day
took = time.time() - start
print("wechatpy: %d calls, %d rows in %.1f s (%.0f rows/s)" % (calls, rows, took, rows / took))
PY

ready=$(date -d "$(echo $clock | cut -c1-10) -1 day" +%Y-%m-%d)
echo "== plan"; "$bin" sync --database "sqlite://$work/plan.db" --appid $appid --secret $secret --upstream $base --clock $clock --dry-run | head -1
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  rm -f "$work"/mirror.db*
  /usr/bin/time -f "datacube sync: %e s wall, %M KB max RSS" "$bin" sync --database "sqlite://$work/mirror.db" \
    --appid $appid --secret $secret --upstream $base --clock $clock 2>&1 | grep -v 'added the local'
  "$venv/bin/python" "$work/anchor.py" $base $appid $secret "$ready"
done
