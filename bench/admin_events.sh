#!/usr/bin/env bash
# Live ingestion benchmark (issues 19 and 31): `POST /admin/events` with small time-ordered
# batches of today's events — the shape of a service forwarding its events as they happen —
# to an account with a year of history (`datacube demo --days 365`) and to a new account, in
# batches of 100 and of 1,000 lines, one after the other on one keep-alive connection. Each
# backend (SQLite, PostgreSQL) gets a fresh database; each binary given is run ROUNDS times,
# alternating. Then CONCURRENT posters, each to an account of its own, against one poster
# alone: whether posters to different accounts wait for each other. Prints events/s and the
# batch latency (median, p99) of each run.
#
#   bench/admin_events.sh                               # target/release/datacube
#   bench/admin_events.sh /tmp/datacube-old target/release/datacube   # before / after
#   BACKENDS=sqlite EVENTS=20000 bench/admin_events.sh
# EVENTS per scenario: long enough to hold the periodic merges of a year-old account's id index
# (one per ~75,000 new ids; BENCHMARKS.md); an older binary, which recomputes at every batch,
# is measured as well with fewer (EVENTS=50000).
# PostgreSQL: PG (default postgres://postgres@127.0.0.1:5432), where the database
# dcbench_live is dropped and created for each run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
EVENTS=${EVENTS:-150000}
ROUNDS=${ROUNDS:-1}
BACKENDS=${BACKENDS:-sqlite postgres}
CONCURRENT=${CONCURRENT:-4}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
NOW=2026-03-02T10:00:00+08:00
YEAR=wxbenchyear000001
NEW=wxbenchnew0000001
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$root"
if [ $# = 0 ]; then
  cargo build --release -q -p datacube
  set -- "$root/target/release/datacube"
fi
token=bench-admin-token-0123456789
export DATACUBE_LOG=warn

fresh() {  # backend: a fresh database's URL
  case $1 in
    sqlite) rm -f "$work"/db*; echo "sqlite://$work/db" ;;
    postgres)
      psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS dcbench_live" 2>/dev/null
      psql -q "$PG/postgres" -c "CREATE DATABASE dcbench_live"
      echo "$PG/dcbench_live" ;;
  esac
}

for round in $(seq 1 "$ROUNDS"); do
  for backend in $BACKENDS; do
    for bin in "$@"; do
      db=$(fresh "$backend")
      accounts=("$YEAR" "$NEW")
      for i in $(seq 1 "$CONCURRENT"); do accounts+=("$(printf 'wxbenchpar%07d' "$i")"); done
      for a in "${accounts[@]}"; do
        "$bin" account add --database "$db" --appid "$a" --secret bench-secret-0001 >/dev/null
      done
      "$bin" demo --database "$db" --appid "$YEAR" --days 365 --clock "$NOW" >/dev/null
      "$bin" serve --database "$db" --listen 127.0.0.1:18383 --clock "$NOW" \
        --admin-token "$token" >"$work/serve.out" 2>&1 &
      pid=$!
      for _ in $(seq 1 100); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
      echo "== $backend, $bin (round $round)"
      python3 - "$token" "$EVENTS" "$CONCURRENT" "$YEAR" "$NEW" "${accounts[@]:2}" <<'PY'
import datetime, http.client, json, random, statistics, sys, threading, time
token, total, concurrent, year, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
parallel = sys.argv[6:]
china = datetime.timezone(datetime.timedelta(hours=8))
day = int(datetime.datetime(2026, 3, 2, tzinfo=china).timestamp())
serial = [0]

def events(appid, n, seed, late=0.0):
    """n of today's events of appid, in time order, each with an id of its own; a share
    `late` of them dated one to three days back (a forwarder's retries)."""
    rng = random.Random(seed)
    serial[0] += 1
    run = serial[0]
    times = sorted(day + rng.randrange(10 * 3600) for _ in range(n))
    times = [t - rng.randrange(1, 4) * 86400 if rng.random() < late else t for t in times]
    msgid = f"2247499{run:03d}_1"
    out = [json.dumps({"type": "publish", "appid": appid, "id": f"b{run}-p",
                       "time": datetime.datetime.fromtimestamp(day, china).isoformat(),
                       "msgid": msgid, "title": "bench"}).encode() + b"\n"]
    for i, t in enumerate(times[1:]):
        stamp = datetime.datetime.fromtimestamp(t, china).isoformat()
        e = {"appid": appid, "id": f"b{run}-{i}", "time": stamp}
        openid = f"o{rng.randrange(5000):05d}"
        r = rng.random()
        if r < 0.10:
            e.update(type="follow", openid=openid, source=rng.choice([0, 1, 30, 43]))
        elif r < 0.13:
            e.update(type="unfollow", openid=openid)
        elif r < 0.48:
            e.update(type="message", openid=openid, msg_type=rng.choice(["text", "image", "voice"]))
        elif r < 0.78:
            e.update(type="reply", cost_ms=rng.randrange(50, 3000), ok=rng.random() < 0.98)
        elif r < 0.98:
            e.update(type="read", openid=openid, msgid=msgid, page="int", scene="session")
        else:
            e.update(type="share", openid=openid, msgid=msgid, scene="friends", **{"from": "session"})
        out.append(json.dumps(e, ensure_ascii=False).encode() + b"\n")
    return out

def post(lines, batch, latencies):
    conn = http.client.HTTPConnection("127.0.0.1", 18383)
    accepted = 0
    for i in range(0, len(lines), batch):
        body = b"".join(lines[i:i + batch])
        t = time.perf_counter()
        conn.request("POST", "/admin/events", body, {"Authorization": f"Bearer {token}"})
        answer = conn.getresponse().read()
        latencies.append(time.perf_counter() - t)
        report = json.loads(answer)
        assert report.get("rejected_total", 0) == 0, report
        accepted += report["accepted"]
    return accepted

def show(label, n, wall, latencies):
    latencies.sort()
    print(f"{label}: {n / wall:,.0f} events/s, batch median {statistics.median(latencies) * 1000:.2f} ms, "
          f"p99 {latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000:.2f} ms", flush=True)

# Warm-up, not measured: a server that has run a while (its caches of each account's id
# index filled), as a service forwarding its events all day meets it.
for appid in (year, new):
    post(events(appid, 2000, 1), 100, [])

for batch in (100, 1000):
    for name, appid in (("year of history", year), ("new account", new)):
        lines = events(appid, total, batch)
        latencies = []
        started = time.perf_counter()
        accepted = post(lines, batch, latencies)
        wall = time.perf_counter() - started
        assert accepted == len(lines), (accepted, len(lines))
        show(f"  batch {batch:>5}, {name:<15}", accepted, wall, latencies)

# The next day at 08:00, today's statistics become readable: the first answer for each
# account waits for its day to be counted (all that was posted above, at once). The clock
# then goes back to where it was.
conn = http.client.HTTPConnection("127.0.0.1", 18383)
def clock(now):
    conn.request("POST", "/admin/clock", json.dumps({"now": now}), {"Authorization": f"Bearer {token}"})
    conn.getresponse().read()
clock("2026-03-03T08:00:01+08:00")
for name, appid in (("year of history", year), ("new account", new)):
    t = time.perf_counter()
    conn.request("POST", f"/admin/datacube/getusersummary?appid={appid}",
                 json.dumps({"begin_date": "2026-03-02", "end_date": "2026-03-02"}),
                 {"Authorization": f"Bearer {token}"})
    answer = json.loads(conn.getresponse().read())
    assert answer.get("list"), answer
    print(f"  the day becomes readable, {name:<15}: first answer in {(time.perf_counter() - t) * 1000:.0f} ms")
clock("2026-03-02T10:00:00+08:00")

# Late events: 5 % of each batch dated one to three days back, whose periods are readable
# at once (recomputed before the next answer, or by the server within 250 ms).
for name, appid in (("year of history", year), ("new account", new)):
    lines = events(appid, total, 5, late=0.05)
    latencies = []
    started = time.perf_counter()
    accepted = post(lines, 100, latencies)
    show(f"  batch   100, {name:<15}, 5 % late", accepted, time.perf_counter() - started, latencies)

# Posters to different accounts: one alone, then `concurrent` at once (batches of 100).
batch = 100
for k in (1, concurrent):
    streams = [events(parallel[i], total // concurrent, 7_000 + i) for i in range(k)]
    latencies = [[] for _ in range(k)]
    threads = [threading.Thread(target=post, args=(streams[i], batch, latencies[i])) for i in range(k)]
    started = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    wall = time.perf_counter() - started
    show(f"  {k} poster(s) to {k} account(s), batch {batch}", sum(map(len, streams)), wall,
         [x for l in latencies for x in l])
PY
      kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    done
  done
done
