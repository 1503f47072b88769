#!/usr/bin/env bash
# PostgreSQL beside SQLite (issue 6), in one session on this machine:
#  1. serving: the serving benchmark's store (1,000 accounts × 3 years, bench/serve.sh) in an
#     SQLite file and in a PostgreSQL database; wrk -c64 on getinterfacesummary over 30 days —
#     one request (response cache on), 100 accounts × random windows (mostly cache misses),
#     and one request with the response cache off;
#  2. serving with two instances on one PostgreSQL vs one: the mixed load, split over both;
#  3. ingest: `datacube ingest` of the ingest benchmark's events (bench/ingest.sh) into each.
#
#   bench/postgres.sh      # PG=postgres://postgres@127.0.0.1:5432 DUR=10s INGEST_ACCOUNTS=10
#   PARTS="postgres two" bench/postgres.sh   # only some parts: sqlite postgres two ingest
# Needs Debian's wrk (apt-get install wrk) and a PostgreSQL server where it may create
# databases (dcbench_serve, dcbench_ingest; kept between runs, dropped with DROP=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PG=${PG:-postgres://postgres@127.0.0.1:5432}
SQLITE_DB=${SQLITE_DB:-/tmp/datacube-bench.db}
DUR=${DUR:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}
INGEST_ACCOUNTS=${INGEST_ACCOUNTS:-10}
PARTS=${PARTS:-sqlite postgres two ingest}
part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cd "$root"
cargo build --release -q -p datacube
cargo build --release -q -p datacube-server --example bench_fill
cargo build --release -q -p datacube-store --example testdb
bin=$root/target/release/datacube
psql_url() { printf '%s/%s' "$PG" "$1"; }
ensure_db() {  # name: creates the database if missing; prints "new" when it did
  if ! psql -Atq "$(psql_url postgres)" -c "SELECT 1 FROM pg_database WHERE datname = '$1'" | grep -q 1; then
    psql -q "$(psql_url postgres)" -c "CREATE DATABASE $1"
    echo new
  fi
}
[ "${DROP:-0}" = 1 ] && psql -q "$(psql_url postgres)" -c "DROP DATABASE IF EXISTS dcbench_serve" -c "DROP DATABASE IF EXISTS dcbench_ingest"

# ---- 1. serving ----
SERVE_PG=$(psql_url dcbench_serve)
if [ ! -s "$SQLITE_DB" ]; then
  echo "filling $SQLITE_DB (1,000 accounts × 1,096 days)…"
  /usr/bin/time -f "SQLite fill: %e s" target/release/examples/bench_fill "sqlite://$SQLITE_DB" 1000 1096 2025-12-31
fi
if [ "$(ensure_db dcbench_serve)" = new ]; then
  echo "filling dcbench_serve (1,000 accounts × 1,096 days)…"
  /usr/bin/time -f "PostgreSQL fill: %e s" target/release/examples/bench_fill "$SERVE_PG" 1000 1096 2025-12-31
fi
echo "SQLite: $(sqlite3 "$SQLITE_DB" 'select sum(n) from stat_day') rows, $(du -h "$SQLITE_DB" | cut -f1)"
echo "PostgreSQL: $(psql -Atq "$SERVE_PG" -c 'select sum(n) from stat_day') rows, $(psql -Atq "$SERVE_PG" -c "select pg_size_pretty(pg_database_size('dcbench_serve'))")"

start() {  # name port database [serve flags…]
  local name=$1 port=$2 db=$3; shift 3
  DATACUBE_LOG=warn "$bin" serve --database "$db" --listen "127.0.0.1:$port" \
    --clock 2026-01-01T10:00:00+08:00 "$@" >"$work/$name.out" &
  pids+=($!); eval "pid_$name=$!"
  for _ in $(seq 1 100); do grep -q serving "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
}
stop() { local p; eval "p=\$pid_$1"; kill "$p"; wait "$p" 2>/dev/null || true; }
token_of() {  # port appid
  curl -s "http://127.0.0.1:$1/cgi-bin/token?grant_type=client_credential&appid=$2&secret=bench-secret" \
    | sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}
body='{"begin_date":"2025-12-01","end_date":"2025-12-30"}'
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
mixed_lua() {  # port out
  local tokens
  tokens=$(for i in $(seq 100 9 991); do printf '"%s",' "$(token_of "$1" "$(printf 'wxbench%011d' "$i")")"; done)
  python3 "$root/bench/mixed_lua.py" "$2" "$tokens"
}
wrk_run() { wrk -t2 -c"${3:-$CONNS}" -d"$DUR" --latency -s "$2" "$1"; }
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
p50() { awk '$1 == "50%" {print $2}' "$1"; }
p99() { awk '$1 == "99%" {print $2}' "$1"; }

bench_backend() {  # label database
  local label=$1 db=$2
  start "$label" 18191 "$db"
  local t; t=$(token_of 18191 wxbench00000000500)
  curl -s "http://127.0.0.1:18191/datacube/getinterfacesummary?access_token=$t" -d "$body" >"$work/resp_$label.json"
  mixed_lua 18191 "$work/mixed_$label.lua"
  for r in $(seq 1 "$ROUNDS"); do
    echo "== $label round $r: one request, cached"
    wrk_run "http://127.0.0.1:18191/datacube/getinterfacesummary?access_token=$t" "$work/post.lua" | tee "$work/$label-cached-$r.txt" | grep -E "Requests/sec|99%"
    echo "== $label round $r: mixed (mostly cache misses)"
    wrk_run "http://127.0.0.1:18191" "$work/mixed_$label.lua" | tee "$work/$label-mixed-$r.txt" | grep -E "Requests/sec|99%"
  done
  stop "$label"
  start "$label" 18191 "$db" --response-cache 0
  t=$(token_of 18191 wxbench00000000500)
  for r in $(seq 1 "$ROUNDS"); do
    echo "== $label round $r: one request, response cache off"
    wrk_run "http://127.0.0.1:18191/datacube/getinterfacesummary?access_token=$t" "$work/post.lua" | tee "$work/$label-nocache-$r.txt" | grep -E "Requests/sec|99%"
  done
  stop "$label"
}
part sqlite && bench_backend sqlite "sqlite://$SQLITE_DB"
part postgres && bench_backend postgres "$SERVE_PG"
if part sqlite && part postgres; then
  cmp -s "$work/resp_sqlite.json" "$work/resp_postgres.json" && echo "the same answer bytes from both backends"
fi

# ---- 2. two instances on one PostgreSQL vs one ----
if part two; then
start pa 18191 "$SERVE_PG"
start pb 18192 "$SERVE_PG"
mixed_lua 18191 "$work/mixed_a.lua"
mixed_lua 18192 "$work/mixed_b.lua"
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r: one instance, mixed, c$CONNS"
  wrk_run "http://127.0.0.1:18191" "$work/mixed_a.lua" | tee "$work/one-$r.txt" | grep -E "Requests/sec|99%"
  echo "== round $r: two instances, mixed, c$((CONNS / 2)) each at once"
  wrk -t1 -c$((CONNS / 2)) -d"$DUR" --latency -s "$work/mixed_a.lua" http://127.0.0.1:18191 >"$work/two-a-$r.txt" &
  wa=$!
  wrk -t1 -c$((CONNS / 2)) -d"$DUR" --latency -s "$work/mixed_b.lua" http://127.0.0.1:18192 >"$work/two-b-$r.txt"
  wait "$wa"
  echo "   A $(rate "$work/two-a-$r.txt") req/s (p99 $(p99 "$work/two-a-$r.txt")), B $(rate "$work/two-b-$r.txt") req/s (p99 $(p99 "$work/two-b-$r.txt"))"
done
stop pa; stop pb
fi

# ---- 3. ingest ----
if part ingest; then
events=/tmp/datacube-pg-ingest-$INGEST_ACCOUNTS.ndjson
clock=2026-01-01T10:00:00+08:00
if [ ! -s "$events" ]; then
  echo "generating events for $INGEST_ACCOUNTS accounts…"
  for i in $(seq 1 "$INGEST_ACCOUNTS"); do
    "$bin" demo --appid "$(printf 'wxingest%010d' "$i")" --seed "$i" --days 365 --clock "$clock" --output -
  done >"$events"
fi
echo "events: $(wc -l <"$events") lines, $(du -h "$events" | cut -f1)"
ingest_into() {  # label database
  for i in $(seq 1 "$INGEST_ACCOUNTS"); do
    "$bin" account add --database "$2" --appid "$(printf 'wxingest%010d' "$i")" --secret bench >/dev/null
  done
  echo "== ingest into $1"
  DATACUBE_LOG=warn /usr/bin/time -f "$1: %e s wall, %U s user, %S s sys, %M KB max RSS" \
    "$bin" ingest --database "$2" --clock "$clock" "$events"
}
rm -f /tmp/datacube-pg-ingest.db /tmp/datacube-pg-ingest.db-wal /tmp/datacube-pg-ingest.db-shm
psql -q "$(psql_url postgres)" -c "DROP DATABASE IF EXISTS dcbench_ingest" -c "CREATE DATABASE dcbench_ingest"
ingest_into sqlite sqlite:///tmp/datacube-pg-ingest.db
ingest_into postgres "$(psql_url dcbench_ingest)"
echo "sizes: SQLite $(du -h /tmp/datacube-pg-ingest.db | cut -f1), PostgreSQL $(psql -Atq "$(psql_url dcbench_ingest)" -c "select pg_size_pretty(pg_database_size('dcbench_ingest'))")"
fi

# ---- summary ----
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf '%-22s %12s %12s\n' "median req/s" SQLite PostgreSQL
for kind in cached mixed nocache; do
  part sqlite && part postgres || break
  printf '%-22s %12s %12s\n' "$kind" \
    "$(for r in $(seq 1 "$ROUNDS"); do rate "$work/sqlite-$kind-$r.txt"; done | median)" \
    "$(for r in $(seq 1 "$ROUNDS"); do rate "$work/postgres-$kind-$r.txt"; done | median)"
done
part two || exit 0
one=$(for r in $(seq 1 "$ROUNDS"); do rate "$work/one-$r.txt"; done | median)
two=$(for r in $(seq 1 "$ROUNDS"); do awk -v a="$(rate "$work/two-a-$r.txt")" -v b="$(rate "$work/two-b-$r.txt")" 'BEGIN {print a + b}'; done | median)
echo "PostgreSQL, mixed: one instance $one req/s, two instances $two req/s ($(awk -v a="$two" -v b="$one" 'BEGIN {printf "%.2f", a/b}')×)"
