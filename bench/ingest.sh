#!/usr/bin/env bash
# Ingest benchmark (issues 3 and 19): `datacube ingest` of EVENTS mixed events of ACCOUNTS
# accounts over the year 2025 (bench/gen_events.py: every kind of event, the 2025 ones too,
# each with an id), in three arrival orders of the same events:
#
#   account  account after account, each in time order
#   time     one time-ordered stream, every account interleaved (`sort` of the lines)
#   random   no order (`shuf`)
#
# Anchor: DuckDB (PyPI) computing the matching daily/hourly rollups (GROUP BY with distinct
# counts) from the same file into a database file, run just before datacube on each order.
# Wall time and peak RSS (GNU time's max RSS) of both; then the statistics of the three
# orders are compared (identical, byte for byte) and one account's against DuckDB's.
#
#   bench/ingest.sh                          # ACCOUNTS=100 EVENTS=10000000
#   EVENTS=20000000 bench/ingest.sh          # growth
#   ORDERS="random" bench/ingest.sh          # one order only
#   DATABASE=postgres://postgres@127.0.0.1:5432/bench_ingest bench/ingest.sh
#       # on PostgreSQL: the database is dropped and created for each order (psql)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ACCOUNTS=${ACCOUNTS:-100}
EVENTS=${EVENTS:-10000000}
ORDERS=${ORDERS:-account time random}
work=${WORK:-/tmp/datacube-ingest-bench}
mkdir -p "$work"
cd "$root"
cargo build --release -q -p datacube
bin=$root/target/release/datacube
clock=2026-01-01T10:00:00+08:00
tag="$ACCOUNTS-$EVENTS"
if [ ! -s "$work/account-$tag.ndjson" ]; then
  echo "generating $EVENTS events of $ACCOUNTS accounts…"
  rm -f "$work"/*-"$tag".ndjson
  python3 bench/gen_events.py "$ACCOUNTS" "$EVENTS" 19 >"$work/account-$tag.ndjson.tmp"
  mv "$work/account-$tag.ndjson.tmp" "$work/account-$tag.ndjson"
  LC_ALL=C sort -S 4G --parallel=2 -T "$work" "$work/account-$tag.ndjson" >"$work/time-$tag.ndjson"
  shuf --random-source=<(yes 19) "$work/account-$tag.ndjson" >"$work/random-$tag.ndjson"
fi
echo "events: $(wc -l <"$work/account-$tag.ndjson") lines, $(du -h "$work/account-$tag.ndjson" | cut -f1) per order"

venv="$root/target/duckdb-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb
fi
echo "DuckDB $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)'), datacube $("$bin" --version)"

cat >"$work/duck.py" <<'PY'
import sys, duckdb
events, db = sys.argv[1], sys.argv[2]
con = duckdb.connect(db)
con.execute(f"""
CREATE TABLE ev AS SELECT *, ((epoch(time)::BIGINT + 28800) // 86400)::INTEGER AS day,
       (((epoch(time)::BIGINT + 28800) % 86400) // 3600)::INTEGER AS hour
FROM read_json('{events}', format='newline_delimited', columns={{
  'type':'VARCHAR','appid':'VARCHAR','id':'VARCHAR','time':'TIMESTAMPTZ','openid':'VARCHAR',
  'source':'INTEGER','msg_type':'VARCHAR','cost_ms':'BIGINT','ok':'BOOLEAN','msgid':'VARCHAR',
  'title':'VARCHAR','page':'VARCHAR','scene':'VARCHAR','from':'VARCHAR',
  'publish_type':'INTEGER','money':'BIGINT','active_ms':'BIGINT','progress':'INTEGER'}})""")
rollups = {
  "follows": "SELECT appid, day, source, count(DISTINCT openid) u FROM ev WHERE type='follow' GROUP BY ALL",
  "unfollows": "SELECT appid, day, count(DISTINCT openid) u FROM ev WHERE type='unfollow' GROUP BY ALL",
  "msg_day": "SELECT appid, day, msg_type, count(DISTINCT openid) u, count(*) n FROM ev WHERE type='message' GROUP BY ALL",
  "msg_hour": "SELECT appid, day, hour, msg_type, count(DISTINCT openid) u, count(*) n FROM ev WHERE type='message' GROUP BY ALL",
  "msg_dist": "SELECT appid, day, CASE WHEN n <= 5 THEN 1 WHEN n <= 10 THEN 2 ELSE 3 END k, count(*) u FROM (SELECT appid, day, openid, count(*) n FROM ev WHERE type='message' GROUP BY ALL) GROUP BY ALL",
  "reply_day": "SELECT appid, day, count(*) n, count(*) FILTER (WHERE NOT ok) f, sum(cost_ms) t, max(cost_ms) m FROM ev WHERE type='reply' GROUP BY ALL",
  "reply_hour": "SELECT appid, day, hour, count(*) n, count(*) FILTER (WHERE NOT ok) f, sum(cost_ms) t, max(cost_ms) m FROM ev WHERE type='reply' GROUP BY ALL",
  "read_scene": "SELECT appid, day, scene, page, count(DISTINCT openid) u, count(*) n FROM ev WHERE type='read' GROUP BY ALL",
  "read_all": "SELECT appid, day, page, count(DISTINCT openid) u, count(*) n FROM ev WHERE type='read' GROUP BY ALL",
  "read_hour": "SELECT appid, day, hour, scene, count(DISTINCT openid) u, count(*) n FROM ev WHERE type='read' GROUP BY ALL",
  "share_day": "SELECT appid, day, scene, count(DISTINCT openid) u, count(*) n FROM ev WHERE type='share' GROUP BY ALL",
  "article_day": "SELECT appid, msgid, day, type, page, count(DISTINCT openid) u, count(*) n FROM ev WHERE type IN ('read','share','favorite') GROUP BY ALL",
  # The 2025 endpoints: readers by article, day and scene (getarticleread); the account's day
  # by kind of event (getbizsummary); per article, readers, sharers, likers… cumulative over
  # its first 30 days, from each user's first day (getarticletotaldetail), and its readers'
  # furthest progress and reading time.
  "published_scene": "SELECT appid, msgid, day, CASE scene WHEN 'home' THEN 'history' WHEN 'recommend' THEN 'kanyikan' ELSE scene END s, count(DISTINCT openid) u FROM ev WHERE type='read' AND page='int' GROUP BY ALL",
  "published_day": "SELECT appid, day, type, page, scene, count(DISTINCT openid) u, count(*) n FROM ev WHERE type IN ('read','share','favorite','zaikan','like','comment') GROUP BY ALL",
  "published_total": "SELECT appid, msgid, type, scene, first, sum(n) OVER (PARTITION BY appid, msgid, type, scene ORDER BY first) u FROM (SELECT appid, msgid, type, scene, first, count(*) n FROM (SELECT appid, msgid, type, scene, openid, min(day) first FROM ev WHERE type IN ('read','share','favorite','zaikan','like','comment') AND NOT (type='read' AND page='ori') GROUP BY ALL) GROUP BY ALL)",
  "published_leave": "SELECT appid, msgid, count(*) readers, sum(CASE WHEN p >= 100 THEN 1 ELSE 0 END) finished, sum(t) active FROM (SELECT appid, msgid, openid, max(progress) p, sum(active_ms) t FROM ev WHERE type='leave' GROUP BY ALL) GROUP BY ALL",
}
for name, sql in rollups.items():
    con.execute(f"CREATE TABLE {name} AS {sql}")
con.execute("CHECKPOINT")
print("duckdb rows:", sum(con.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in rollups))
con.close()
PY

database=${DATABASE:-}
fresh_database() { # $1: order
  if [ -n "$database" ]; then
    local name=${database##*/} admin=${database%/*}/postgres
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
    echo "$database"
  else
    rm -f "$work/datacube-$1.db" "$work/datacube-$1.db-wal" "$work/datacube-$1.db-shm"
    echo "sqlite://$work/datacube-$1.db"
  fi
}
seconds() { awk '/^wall/ {print $2}' "$1"; }
peak() { awk '/^wall/ {print $3}' "$1"; }

export DATACUBE_LOG=warn
rm -f "$work"/stats-*.md5
declare -A results
for order in $ORDERS; do
  events="$work/$order-$tag.ndjson"
  echo; echo "== $order"
  rm -f "$work/duck-$order.db" "$work/duck-$order.db.wal"
  /usr/bin/time -f "wall %e %M" -o "$work/duck.time" "$venv/bin/python" "$work/duck.py" "$events" "$work/duck-$order.db"
  echo "duckdb:   $(seconds "$work/duck.time") s, peak RSS $(( $(peak "$work/duck.time") / 1024 )) MiB"
  export DATACUBE_DATABASE=$(fresh_database "$order")
  for i in $(seq 1 "$ACCOUNTS"); do
    "$bin" account add --appid "$(printf 'wxbench%011d' "$i")" --secret bench-secret-0001 >/dev/null
  done
  /usr/bin/time -f "wall %e %M" -o "$work/datacube.time" "$bin" ingest --clock "$clock" "$events"
  echo "datacube: $(seconds "$work/datacube.time") s, peak RSS $(( $(peak "$work/datacube.time") / 1024 )) MiB"
  results[$order]="$(seconds "$work/duck.time") $(peak "$work/duck.time") $(seconds "$work/datacube.time") $(peak "$work/datacube.time")"

  # The same figures: one account's answers through datacube's own API against DuckDB's rollups.
  "$bin" serve --listen 127.0.0.1:18282 --clock "$clock" >"$work/serve.out" 2>&1 &
  serve_pid=$!
  for _ in $(seq 1 100); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
"$venv/bin/python" - "$work/duck-$order.db" "http://127.0.0.1:18282" wxbench00000000001 <<'PY'
import datetime, json, sys, urllib.request, duckdb
base, appid = sys.argv[2], sys.argv[3]
token = json.load(urllib.request.urlopen(
    f"{base}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret=bench-secret-0001"))["access_token"]
def rows(endpoint, span, first, last):
    out, d = [], first
    while d <= last:
        e = min(d + datetime.timedelta(days=span - 1), last)
        req = urllib.request.Request(f"{base}/datacube/{endpoint}?access_token={token}",
            data=json.dumps({"begin_date": str(d), "end_date": str(e)}).encode())
        out += json.load(urllib.request.urlopen(req))["list"]
        d = e + datetime.timedelta(days=1)
    return out
first, last = datetime.date(2025, 1, 1), datetime.date(2025, 12, 31)
con = duckdb.connect(sys.argv[1], read_only=True)
epoch = datetime.date(1970, 1, 1)
codes = {"text": 1, "image": 2, "voice": 3, "video": 4, "shortvideo": 4, "link": 6}
# video and shortvideo share msg_type 4: their users are counted once, so compare types 1, 2, 3, 6.
duck_msg = {(str(epoch + datetime.timedelta(days=d)), codes[t]): (u, n) for d, t, u, n in con.execute(
    "SELECT day, msg_type, u, n FROM msg_day WHERE appid = ? AND msg_type NOT IN ('location','video','shortvideo')",
    [appid]).fetchall()}
dc_msg = {(r["ref_date"], r["msg_type"]): (r["msg_user"], r["msg_count"])
          for r in rows("getupstreammsg", 7, first, last) if r["msg_type"] != 4}
duck_read = {str(epoch + datetime.timedelta(days=d)): (u, n) for d, u, n in con.execute(
    "SELECT day, u, n FROM read_all WHERE appid = ? AND page = 'int'", [appid]).fetchall()}
dc_read = {r["ref_date"]: (r["int_page_read_user"], r["int_page_read_count"])
           for r in rows("getuserread", 3, first, last) if r["user_source"] == 99999999 and r["int_page_read_count"]}
labels = {"session": "公众号消息", "friends": "聊天会话", "feed": "朋友圈", "history": "公众号主页",
          "other": "其他", "kanyikan": "推荐", "souyisou": "搜一搜"}
# The 2025 endpoints have data from 2025-11-01 on.
floor = datetime.date(2025, 11, 1)
duck_scene = {(str(epoch + datetime.timedelta(days=d)), m, labels[sc]): u for m, d, sc, u in con.execute(
    "SELECT msgid, day, s, u FROM published_scene WHERE appid = ? AND day >= ?",
    [appid, (floor - epoch).days]).fetchall()}
dc_scene = {(r["ref_date"], r["msgid"], s["scene_desc"]): s["user_count"]
            for r in rows("getarticleread", 1, floor, last)
            for s in r["detail"]["read_user_source"] if s["scene_desc"] != "全部"}
assert dc_msg == duck_msg, "getupstreammsg differs from DuckDB's msg_day"
assert dc_read == duck_read, "getuserread differs from DuckDB's read_all"
assert dc_scene == duck_scene, "getarticleread differs from DuckDB's published_scene"
print(f"cross-check: {len(dc_msg)} message rows, {len(dc_read)} read days and {len(dc_scene)} getarticleread scene counts of {appid} equal DuckDB's")
PY
  kill $serve_pid; wait $serve_pid 2>/dev/null || true
  # Every statistic of every account, to compare the orders.
  if [ -z "$database" ]; then
    sqlite3 "$work/datacube-$order.db" "SELECT appid, endpoint, ref_date, n, rows FROM stat_day ORDER BY 1, 2, 3" | md5sum | cut -d' ' -f1 >"$work/stats-$order.md5"
  else
    psql -qtA "$database" -c "SELECT appid, endpoint, ref_date, n, rows FROM stat_day ORDER BY 1, 2, 3" | md5sum | cut -d' ' -f1 >"$work/stats-$order.md5"
  fi
  echo "statistics: $(cat "$work/stats-$order.md5") ($([ -z "$database" ] && sqlite3 "$work/datacube-$order.db" 'SELECT sum(n) FROM stat_day' || psql -qtA "$database" -c 'SELECT sum(n) FROM stat_day') rows)"
done

echo; echo "== summary ($EVENTS events, $ACCOUNTS accounts${database:+, PostgreSQL})"
echo "| order | datacube | DuckDB | ratio | peak RSS datacube / DuckDB |"
echo "|---|---:|---:|---:|---:|"
for order in $ORDERS; do
  read -r ds dm cs cm <<<"${results[$order]}"
  echo "| $order | $cs s | $ds s | $(awk -v a="$cs" -v b="$ds" 'BEGIN {printf "%.2f", a / b}')× | $((cm / 1024)) / $((dm / 1024)) MiB |"
done
if [ "$(cat "$work"/stats-*.md5 | sort -u | wc -l)" != 1 ]; then
  echo "the statistics differ between orders:"; cat "$work"/stats-*.md5; exit 1
fi
echo "every order gave the same statistics"
