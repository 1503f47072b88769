#!/usr/bin/env bash
# Where serving spends its time (issue 32): `perf record` of `datacube serve` under each load
# of bench/serve.sh — the same request (cache hits), 100 accounts × random 30-day windows
# (mostly misses) — and the flat profile of each, by symbol (self time, top 40).
#
#   bench/serve_profile.sh                     # builds with `--profile profiling`
#   BIN=/tmp/datacube-old bench/serve_profile.sh
# Needs perf, wrk, and the store bench/serve.sh fills (DB=/tmp/datacube-bench.db).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DB=${DB:-/tmp/datacube-bench.db}
DUR=${DUR:-10}
OUT=${OUT:-/tmp/datacube-serve-profile}
[ -s "$DB" ] || { echo "no store at $DB: run bench/serve.sh first"; exit 2; }
mkdir -p "$OUT"
if [ -z "${BIN:-}" ]; then (cd "$root" && cargo build --profile profiling -q -p datacube); fi
bin=${BIN:-$root/target/profiling/datacube}
DATACUBE_LOG=warn "$bin" serve --database "sqlite://$DB" --listen 127.0.0.1:18181 \
  --clock 2026-01-01T10:00:00+08:00 >"$OUT/serve.out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q serving "$OUT/serve.out" 2>/dev/null && break; sleep 0.1; done
token_of() {
  curl -s "http://127.0.0.1:18181/cgi-bin/token?grant_type=client_credential&appid=$1&secret=bench-secret" \
    | sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}
token=$(token_of wxbench00000000500)
cat >"$OUT/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"begin_date":"2025-12-01","end_date":"2025-12-30"}'
wrk.headers["Content-Type"] = "application/json"
LUA
tokens=$(for i in $(seq 100 9 991); do printf '"%s",' "$(token_of "$(printf 'wxbench%011d' "$i")")"; done)
python3 "$root/bench/mixed_lua.py" "$OUT/mixed.lua" "$tokens"
profile() {  # name url script
  wrk -t2 -c64 -d3s -s "$3" "$2" >/dev/null  # warm up
  perf record -q -F 1999 -g -p "$pid" -o "$OUT/$1.perf" -- sleep "$DUR" >/dev/null 2>&1 &
  local perf_pid=$!
  wrk -t2 -c64 -d"${DUR}s" --latency -s "$3" "$2" | tee "$OUT/$1.wrk" | grep -E 'Requests/sec|99%'
  wait $perf_pid || true
  perf report -i "$OUT/$1.perf" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -40 | tee "$OUT/$1.txt"
}
echo "== the same request (cache hits)"
profile hits "http://127.0.0.1:18181/datacube/getinterfacesummary?access_token=$token" "$OUT/post.lua"
echo "== 100 accounts × random 30-day windows (mostly misses)"
profile mixed "http://127.0.0.1:18181" "$OUT/mixed.lua"
grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/$pid/status" | tr -s ' \t' ' ' | paste -sd' '
