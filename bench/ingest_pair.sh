#!/usr/bin/env bash
# Two `datacube ingest` processes of disjoint accounts on one PostgreSQL database (issue 33):
# one after the other, then both at once, wall time of each — for two builds in one session
# (before and after per-account write locks), each on a fresh database every run.
#
#   bench/ingest_pair.sh BEFORE_BIN AFTER_BIN     # PG=postgres://postgres@127.0.0.1:5432
#   ACCOUNTS=4 DAYS=365 ROUNDS=2 bench/ingest_pair.sh …
#
# Each side is ACCOUNTS demo accounts × DAYS days (`datacube demo`, each seeded by its number):
# side A accounts 1…ACCOUNTS, side B the next ACCOUNTS. Needs psql and a PostgreSQL server
# where it may create the database dcbench_pair (dropped and made again for every run).
set -euo pipefail
before=${1:?usage: ingest_pair.sh BEFORE_BIN AFTER_BIN}
after=${2:?usage: ingest_pair.sh BEFORE_BIN AFTER_BIN}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
ACCOUNTS=${ACCOUNTS:-4}
DAYS=${DAYS:-365}
ROUNDS=${ROUNDS:-2}
BATCH=${BATCH:-200000}
clock=2026-01-01T10:00:00+08:00
db=$PG/dcbench_pair
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

appid() { printf 'wxpair%012d' "$1"; }
for side in a b; do
  events=/tmp/datacube-pair-$side-$ACCOUNTS-$DAYS.ndjson
  if [ ! -s "$events" ]; then
    first=$([ $side = a ] && echo 1 || echo $((ACCOUNTS + 1)))
    for i in $(seq "$first" $((first + ACCOUNTS - 1))); do
      "$after" demo --appid "$(appid "$i")" --seed "$i" --days "$DAYS" --clock "$clock" --output -
    done >"$events"
  fi
  echo "side $side: $(wc -l <"$events") events, $(du -h "$events" | cut -f1)"
done

fresh() {  # bin: a new database with both sides' accounts
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS dcbench_pair" -c "CREATE DATABASE dcbench_pair"
  for i in $(seq 1 $((2 * ACCOUNTS))); do
    DATACUBE_LOG=warn "$1" account add --database "$db" --appid "$(appid "$i")" \
      --secret benchbenchbenchbenchbenchbench32 >/dev/null 2>&1
  done
}
ingest() {  # bin side
  DATACUBE_LOG=warn "$1" ingest --database "$db" --clock "$clock" --batch "$BATCH" \
    "/tmp/datacube-pair-$2-$ACCOUNTS-$DAYS.ndjson" >"$work/$2.out"
}
now() { date +%s.%N; }
# The machine's busy CPU time in seconds (all cores, from /proc/stat): how much of the two
# cores a phase used — what bounds running both at once.
busy() { awk '/^cpu / {print ($2+$3+$4+$7+$8+$9) / 100}' /proc/stat; }
secs() { echo "$2 - $1" | bc; }

for round in $(seq 1 "$ROUNDS"); do
  for build in before after; do
    bin=${!build}
    fresh "$bin"
    b0=$(busy); t0=$(now); ingest "$bin" a; t1=$(now); ingest "$bin" b; t2=$(now); b1=$(busy)
    seq_a=$(secs "$t0" "$t1"); seq_b=$(secs "$t1" "$t2"); seq_all=$(secs "$t0" "$t2")
    cat "$work/a.out" "$work/b.out" | tr '\n' ' '; echo
    fresh "$bin"
    b2=$(busy); t0=$(now)
    (ingest "$bin" a; now >"$work/a.end") &
    (ingest "$bin" b; now >"$work/b.end") &
    wait
    b3=$(busy)
    con_a=$(secs "$t0" "$(cat "$work/a.end")"); con_b=$(secs "$t0" "$(cat "$work/b.end")")
    con_all=$(echo "if ($con_a > $con_b) $con_a else $con_b" | bc)
    cat "$work/a.out" "$work/b.out" | tr '\n' ' '; echo
    printf 'round %s %-6s one after the other: %6.2f s (A %5.2f, B %5.2f; CPU %4.2f cores) | at once: %6.2f s (A %5.2f, B %5.2f; CPU %4.2f cores) | at once / after: %.2f\n' \
      "$round" "$build" "$seq_all" "$seq_a" "$seq_b" "$(echo "($b1 - $b0) / $seq_all" | bc -l)" \
      "$con_all" "$con_a" "$con_b" "$(echo "($b3 - $b2) / $con_all" | bc -l)" "$(echo "$con_all / $seq_all" | bc -l)"
  done
done
