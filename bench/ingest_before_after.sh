#!/usr/bin/env bash
# `datacube ingest` of the ingest benchmark's events (bench/ingest.sh: ACCOUNTS accounts,
# EVENTS events of the year 2025, every kind, each with an id) with each binary given, in
# turn, ROUNDS times, on a fresh SQLite file each time: wall time and peak RSS (GNU time), and
# whether every binary stored the same statistics (md5 of every stat_day row). For "is bulk
# ingest no slower than before" (issue 31).
#
#   bench/ingest_before_after.sh /tmp/datacube-before target/release/datacube
#   ORDERS="time account" ROUNDS=2 bench/ingest_before_after.sh A B
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ACCOUNTS=${ACCOUNTS:-100}
EVENTS=${EVENTS:-10000000}
ORDERS=${ORDERS:-time}
ROUNDS=${ROUNDS:-2}
work=${WORK:-/tmp/datacube-ingest-bench}
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
mkdir -p "$work"
tag="$ACCOUNTS-$EVENTS"
if [ ! -s "$work/account-$tag.ndjson" ]; then
  python3 "$root/bench/gen_events.py" "$ACCOUNTS" "$EVENTS" 19 >"$work/account-$tag.ndjson.tmp"
  mv "$work/account-$tag.ndjson.tmp" "$work/account-$tag.ndjson"
fi
[ -s "$work/time-$tag.ndjson" ] ||
  LC_ALL=C sort -S 2G -T "$work" "$work/account-$tag.ndjson" >"$work/time-$tag.ndjson"
[ -s "$work/random-$tag.ndjson" ] ||
  shuf --random-source=<(yes 19) "$work/account-$tag.ndjson" >"$work/random-$tag.ndjson"
export DATACUBE_LOG=warn
db=$work/ab.db
for order in $ORDERS; do
  for round in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do
      rm -f "$db" "$db"-*
      for i in $(seq 1 "$ACCOUNTS"); do
        "$bin" account add --database "sqlite://$db" --appid "$(printf 'wxbench%011d' "$i")" \
          --secret bench-secret-0001 2>/dev/null >/dev/null
      done
      /usr/bin/time -f "%e %M" -o "$work/time.out" "$bin" ingest --database "sqlite://$db" \
        --clock 2026-01-01T10:00:00+08:00 "$work/$order-$tag.ndjson" >/dev/null
      read -r wall rss <"$work/time.out"
      sum=$(sqlite3 "$db" "SELECT appid, endpoint, ref_date, n, rows FROM stat_day ORDER BY 1, 2, 3" | md5sum | cut -c1-12)
      printf '%-8s round %s  %-32s %7.2f s  %6d MiB  stats %s\n' "$order" "$round" "$bin" "$wall" $((rss / 1024)) "$sum"
    done
  done
done
