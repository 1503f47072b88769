#!/usr/bin/env bash
# Serving benchmark (issue 2): getinterfacesummary over 30 days, 1,000 accounts × 3 years of
# statistics in the store, wrk -c64 against datacube and against nginx answering the same
# response bytes as a constant (`return 200 '…'`: no file, no lookup — the fastest nginx can
# answer), with the same wrk script, alternating rounds on this machine.
#
#   bench/serve.sh              # DUR=20s DB=/tmp/datacube-bench.db by default
#   BIN=/tmp/datacube-old bench/serve.sh   # another build of datacube, for a before/after
# Needs Debian's wrk and nginx-light (apt-get install wrk nginx-light).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DB=${DB:-/tmp/datacube-bench.db}
DUR=${DUR:-20s}
CONNS=${CONNS:-64}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cd "$root"
cargo build --release -q -p datacube
cargo build --release -q -p datacube-server --example bench_fill
bin=${BIN:-$root/target/release/datacube}
if [ ! -s "$DB" ]; then
  echo "filling $DB (1,000 accounts × 1,096 days; about two minutes)…"
  target/release/examples/bench_fill "sqlite://$DB" 1000 1096 2025-12-31
fi
rows=$(sqlite3 "$DB" 'select sum(n) from stat_day')
echo "store: $rows rows, $(du -h "$DB" | cut -f1)"

start_datacube() {  # extra serve flags…
  DATACUBE_LOG=warn "$bin" serve --database "sqlite://$DB" --listen 127.0.0.1:18181 \
    --clock 2026-01-01T10:00:00+08:00 "$@" >"$work/serve.out" &
  dc_pid=$!; pids+=($dc_pid)
  for _ in $(seq 1 100); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
}
stop_datacube() { kill "$dc_pid"; wait "$dc_pid" 2>/dev/null || true; }
token_of() {
  curl -s "http://127.0.0.1:18181/cgi-bin/token?grant_type=client_credential&appid=$1&secret=bench-secret" \
    | sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

# datacube, as a user runs it; 2026-01-01 10:00 China time, so 2025-12 is ready.
start_datacube
token=$(token_of wxbench00000000500)
body='{"begin_date":"2025-12-01","end_date":"2025-12-30"}'
url="http://127.0.0.1:18181/datacube/getinterfacesummary?access_token=$token"
curl -s "$url" -d "$body" >"$work/resp.json"
echo "response: $(wc -c <"$work/resp.json") bytes, $(grep -o ref_date "$work/resp.json" | wc -l) rows"

# nginx answering the same POST with the same bytes as a constant (bench/nginx_constant.sh).
. "$root/bench/nginx_constant.sh"
start_nginx_constant "$work" 18182 "$work/resp.json"
pids+=("$(cat "$work/nginx.pid")")
cmp -s <(curl -s "http://127.0.0.1:18182/datacube/getinterfacesummary?access_token=$token" -d "$body") "$work/resp.json" \
  || { echo "nginx bytes differ"; exit 1; }

cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA

# A mixed load: 100 accounts, random 30-day windows over the three years (mostly cache misses).
tokens=$(for i in $(seq 100 9 991); do printf '"%s",' "$(token_of "$(printf 'wxbench%011d' "$i")")"; done)
python3 "$root/bench/mixed_lua.py" "$work/mixed.lua" "$tokens"

run() { wrk -t2 -c"$CONNS" -d"$DUR" --latency -s "${2:-$work/post.lua}" "$1"; }
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '$1 == "99%" {print $2}' "$1"; }
ROUNDS=${ROUNDS:-3}
for r in $(seq 1 "$ROUNDS"); do
  echo; echo "== round $r: nginx (return 200, same bytes)"; run "http://127.0.0.1:18182/datacube/getinterfacesummary?access_token=$token" | tee "$work/nginx$r.txt"
  echo; echo "== round $r: datacube, same request (response cache on, the default)"; run "$url" | tee "$work/datacube$r.txt"
done
grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/$dc_pid/status" | tr -s ' \t' ' ' | paste -sd' '
last=$(curl -s "$url" -d "$body"); cmp -s <(printf %s "$last") "$work/resp.json" && echo "datacube answer unchanged after the runs"
# The mixed load's script builds each request in Lua (a random token and window), which costs
# wrk CPU on this machine's two cores: its anchor is nginx under the same script (nginx answers
# every path with the constant), rounds alternating as above.
for r in $(seq 1 "$ROUNDS"); do
  echo; echo "== round $r: nginx, mixed script"; run "http://127.0.0.1:18182" "$work/mixed.lua" | tee "$work/nginxmixed$r.txt"
  echo; echo "== round $r: datacube, 100 accounts × random 30-day windows (mostly cache misses)"
  run "http://127.0.0.1:18181" "$work/mixed.lua" | tee "$work/mixed$r.txt"
done
grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/$dc_pid/status" | tr -s ' \t' ' ' | paste -sd' '
stop_datacube
start_datacube --response-cache 0
echo; echo "== datacube, same request, response cache off (a SQLite read per request)"
run "$url" | tee "$work/nocache.txt"
grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/$dc_pid/status" | tr -s ' \t' ' ' | paste -sd' '
stop_datacube

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
n=$(for r in $(seq 1 "$ROUNDS"); do rate "$work/nginx$r.txt"; done | median)
echo
printf '%-12s %10s %8s %6s\n' run req/s p99 ratio
for f in $(for r in $(seq 1 "$ROUNDS"); do echo "nginx$r datacube$r"; done) nocache; do
  printf '%-12s %10s %8s %6s\n' "$f" "$(rate "$work/$f.txt")" "$(p99 "$work/$f.txt")" \
    "$(awk -v a="$(rate "$work/$f.txt")" -v b="$n" 'BEGIN {printf "%.2f", a/b}')"
done
d=$(for r in $(seq 1 "$ROUNDS"); do rate "$work/datacube$r.txt"; done | median)
echo "median nginx $n req/s; median datacube (cached) $d req/s; ratio $(awk -v a="$d" -v b="$n" 'BEGIN {printf "%.2f", a/b}')"
echo "(ratios above are against the median nginx rate)"
nm=$(for r in $(seq 1 "$ROUNDS"); do rate "$work/nginxmixed$r.txt"; done | median)
for f in $(for r in $(seq 1 "$ROUNDS"); do echo "nginxmixed$r mixed$r"; done); do
  printf '%-12s %10s %8s %6s\n' "$f" "$(rate "$work/$f.txt")" "$(p99 "$work/$f.txt")" \
    "$(awk -v a="$(rate "$work/$f.txt")" -v b="$nm" 'BEGIN {printf "%.2f", a/b}')"
done
m=$(for r in $(seq 1 "$ROUNDS"); do rate "$work/mixed$r.txt"; done | median)
echo "mixed script: median nginx $nm req/s; median datacube $m req/s; ratio $(awk -v a="$m" -v b="$nm" 'BEGIN {printf "%.2f", a/b}') (against nginx under the plain script: $(awk -v a="$m" -v b="$n" 'BEGIN {printf "%.2f", a/b}'))"
