#!/usr/bin/env bash
# Live ingestion benchmark (issue 19): `POST /admin/events` with small time-ordered batches —
# the shape of a service forwarding its events as they happen. EVENTS events of ACCOUNTS
# accounts (bench/gen_events.py, sorted by time) are posted in batches of BATCH lines, one
# after the other on one keep-alive connection, to a fresh `datacube serve` on SQLite; each
# binary given is run ROUNDS times, alternating. Prints the wall time and the batch latency
# (median, p99) of each run.
#
#   bench/admin_events.sh                               # target/release/datacube
#   bench/admin_events.sh /tmp/datacube-old target/release/datacube   # before / after
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ACCOUNTS=${ACCOUNTS:-10}
EVENTS=${EVENTS:-200000}
BATCH=${BATCH:-100}
ROUNDS=${ROUNDS:-2}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$root"
if [ $# = 0 ]; then
  cargo build --release -q -p datacube
  set -- "$root/target/release/datacube"
fi
python3 bench/gen_events.py "$ACCOUNTS" "$EVENTS" 7 | LC_ALL=C sort -S 1G >"$work/events.ndjson"
echo "$(wc -l <"$work/events.ndjson") events of $ACCOUNTS accounts, batches of $BATCH lines"
token=bench-admin-token-0123456789
export DATACUBE_LOG=warn

for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    rm -f "$work"/db*
    for i in $(seq 1 "$ACCOUNTS"); do
      "$bin" account add --database "sqlite://$work/db" --appid "$(printf 'wxbench%011d' "$i")" \
        --secret bench-secret-0001 >/dev/null
    done
    DATACUBE_LOG=warn "$bin" serve --database "sqlite://$work/db" --listen 127.0.0.1:18383 \
      --clock 2026-01-01T10:00:00+08:00 --admin-token "$token" >"$work/serve.out" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
    printf '%s: ' "$bin"
    python3 - "$work/events.ndjson" "$BATCH" "$token" <<'PY'
import http.client, json, statistics, sys, time
path, batch, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(path, "rb").read().splitlines(keepends=True)
conn = http.client.HTTPConnection("127.0.0.1", 18383)
latencies, accepted = [], 0
started = time.perf_counter()
for i in range(0, len(lines), batch):
    body = b"".join(lines[i:i + batch])
    t = time.perf_counter()
    conn.request("POST", "/admin/events", body, {"Authorization": f"Bearer {token}"})
    answer = conn.getresponse().read()
    latencies.append(time.perf_counter() - t)
    accepted += json.loads(answer)["accepted"]
wall = time.perf_counter() - started
latencies.sort()
print(f"{wall:.2f} s, {accepted} accepted, batch median {statistics.median(latencies) * 1000:.2f} ms, "
      f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.2f} ms")
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
done
