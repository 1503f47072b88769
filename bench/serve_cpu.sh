#!/usr/bin/env bash
# CPU time (user and system), context switches and system calls per request (issue 32):
# datacube answering the same cached request as bench/serve.sh, against nginx `return 200` of
# the same bytes and against a bare hyper server answering them (the floor of serving on
# hyper: crates/server/examples/bare_hyper.rs), measured with `perf stat` and /proc on the
# server's own threads while wrk runs, alternating (ROUNDS, 2).
#
#   bench/serve_cpu.sh                       # the release build
#   BIN=/tmp/datacube-old bench/serve_cpu.sh
# Needs perf, wrk, nginx-light and the store bench/serve.sh fills (DB=/tmp/datacube-bench.db).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DB=${DB:-/tmp/datacube-bench.db}
[ -s "$DB" ] || { echo "no store at $DB: run bench/serve.sh first"; exit 2; }
bin=${BIN:-$root/target/release/datacube}
ROUNDS=${ROUNDS:-2}
(cd "$root" && cargo build --release -q -p datacube-server --example bare_hyper)
work=$(mktemp -d); chmod a+rx "$work"
DATACUBE_LOG=warn "$bin" serve --database "sqlite://$DB" --listen 127.0.0.1:18181 \
  --clock 2026-01-01T10:00:00+08:00 >"$work/out" 2>&1 &
pid=$!
bare=
trap 'kill $pid $bare 2>/dev/null; [ -s "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")"; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q serving "$work/out" 2>/dev/null && break; sleep 0.1; done
token=$(curl -s "http://127.0.0.1:18181/cgi-bin/token?grant_type=client_credential&appid=wxbench00000000500&secret=bench-secret" \
  | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
path="/datacube/getinterfacesummary?access_token=$token"
body='{"begin_date":"2025-12-01","end_date":"2025-12-30"}'
curl -s "http://127.0.0.1:18181$path" -d "$body" >"$work/resp.json"
. "$root/bench/nginx_constant.sh"
start_nginx_constant "$work" 18182 "$work/resp.json"
"$root/target/release/examples/bare_hyper" 127.0.0.1:18183 "$work/resp.json" &
bare=$!
sleep 0.5
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
ticks() {  # user and system clock ticks of pids…
  local u=0 s=0 u1 s1
  for p in "$@"; do
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$p/stat")
    u=$((u + u1)); s=$((s + s1))
  done
  echo "$u $s"
}
measure() {  # name port pids…
  local name=$1 port=$2; shift 2
  wrk -t2 -c64 -d2s -s "$work/post.lua" "http://127.0.0.1:$port$path" >/dev/null  # warm up
  local u0 s0 u1 s1
  read -r u0 s0 < <(ticks "$@")
  perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -p "$(echo "$@" | tr ' ' ,)" \
    -o "$work/$name.stat" -- sleep 8 &
  local sp=$!
  wrk -t2 -c64 -d8s -s "$work/post.lua" "http://127.0.0.1:$port$path" >"$work/$name.wrk"
  wait $sp
  read -r u1 s1 < <(ticks "$@")
  local n; n=$(awk '/requests in/ {print $1}' "$work/$name.wrk")
  printf '%-9s %10s req/s' "$name" "$(awk '/Requests\/sec/ {print $2}' "$work/$name.wrk")"
  awk -v r="$n" '/task-clock/ {gsub(",","",$1); printf "  %6.2f µs CPU", $1*1000/r}
    /context-switches/ {gsub(",","",$1); printf "  %5.3f switches", $1/r}
    /sys_enter/ {gsub(",","",$1); printf "  %4.2f syscalls", $1/r}' "$work/$name.stat"
  awk -v r="$n" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "  user %4.2f sys %4.2f µs", u / hz * 1e6 / r, s / hz * 1e6 / r }'
  echo "  (per request)"
}
workers=$(pgrep -f "nginx: worker" | tr '\n' ' ')
for _ in $(seq 1 "$ROUNDS"); do
  measure nginx 18182 $workers
  measure datacube 18181 $pid
  measure hyper 18183 $bare
done
