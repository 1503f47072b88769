#!/usr/bin/env bash
# Ingest benchmark (issue 3): datacube ingests ~10 million mixed events from an NDJSON file;
# anchor: DuckDB (PyPI) computing the daily rollups (GROUP BY with distinct counts) from the
# same file into a database file, in the same session.
#
#   bench/ingest.sh            # ACCOUNTS=30 (≈ 330,000 events each) by default
#   SECOND_YEAR=1 bench/ingest.sh   # then also a second year of the same accounts on top:
#                                   # does ingesting get slower or bigger with history kept?
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ACCOUNTS=${ACCOUNTS:-30}
work=${WORK:-/tmp/datacube-ingest-bench}
mkdir -p "$work"
cd "$root"
cargo build --release -q -p datacube
bin=$root/target/release/datacube
clock=2026-01-01T10:00:00+08:00
events="$work/events.ndjson"
if [ ! -s "$events" ] || [ "$(cat "$work/accounts" 2>/dev/null)" != "$ACCOUNTS" ]; then
  echo "generating events for $ACCOUNTS accounts…"
  : >"$events"
  for i in $(seq 1 "$ACCOUNTS"); do
    "$bin" demo --appid "$(printf 'wxingest%010d' "$i")" --seed "$i" --days 365 --clock "$clock" --output - >>"$events"
  done
  echo "$ACCOUNTS" >"$work/accounts"
fi
echo "events: $(wc -l <"$events") lines, $(du -h "$events" | cut -f1)"

venv="$root/target/duckdb-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb
fi

# DuckDB: the same file to daily rollups, stored in a database file. (Days and hours in integer
# arithmetic: epoch() is a DOUBLE, and a DOUBLE cast to INTEGER rounds, which put every event
# after noon in the next day until the cross-check at the end caught it.)
rm -f "$work/duck.db" "$work/duck.db.wal"
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
echo; echo "== DuckDB $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)')"
/usr/bin/time -f "duckdb: %e s wall, %M KB max RSS" "$venv/bin/python" "$work/duck.py" "$events" "$work/duck.db"

# datacube: accounts, then one `datacube ingest` of the whole file.
rm -f "$work/datacube.db" "$work/datacube.db-wal" "$work/datacube.db-shm"
export DATACUBE_DATABASE="sqlite://$work/datacube.db" DATACUBE_LOG=warn
for i in $(seq 1 "$ACCOUNTS"); do
  "$bin" account add --appid "$(printf 'wxingest%010d' "$i")" --secret bench >/dev/null
done
echo; echo "== datacube ingest"
/usr/bin/time -f "datacube: %e s wall, %M KB max RSS" "$bin" ingest --clock "$clock" "$events" &
# Peak anonymous memory (heap), sampled: max RSS above also counts the database pages mapped.
anon=0
while kill -0 $! 2>/dev/null; do
  pid=$(pgrep -n -f "datacube ingest --clock" || true)
  a=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ "${a:-0}" -gt "$anon" ] && anon=$a
  sleep 0.5
done
wait $!
echo "datacube: peak anonymous RSS (sampled every 0.5 s): $anon KB"
echo "stored rows: $(sqlite3 "$work/datacube.db" 'select sum(n) from stat_day'), events with ids: $(sqlite3 "$work/datacube.db" 'select sum(ids) from event_app')"

# Both computed the same figures: datacube's answers through its own API, for one account,
# against DuckDB's rollups (daily messages per type, daily int-page reads over all scenes).
"$bin" serve --listen 127.0.0.1:18282 --clock "$clock" >"$work/serve.out" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
"$venv/bin/python" - "$work/duck.db" <<'PY'
import datetime, json, sys, urllib.request, duckdb
base, appid = "http://127.0.0.1:18282", "wxingest0000000001"
token = json.load(urllib.request.urlopen(
    f"{base}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret=bench"))["access_token"]
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

if [ "${SECOND_YEAR:-0}" = 1 ]; then
  kill $serve_pid 2>/dev/null || true
  events2="$work/events2.ndjson"
  if [ ! -s "$events2" ] || [ "$(cat "$work/accounts2" 2>/dev/null)" != "$ACCOUNTS" ]; then
    : >"$events2"
    for i in $(seq 1 "$ACCOUNTS"); do
      "$bin" demo --appid "$(printf 'wxingest%010d' "$i")" --seed $((i + 100)) --days 365 \
        --clock 2027-01-01T10:00:00+08:00 --output - >>"$events2"
    done
    echo "$ACCOUNTS" >"$work/accounts2"
  fi
  echo; echo "== datacube ingest of a second year ($(wc -l <"$events2") lines) on top of the first"
  /usr/bin/time -f "datacube, second year: %e s wall, %M KB max RSS" \
    "$bin" ingest --clock 2027-01-01T10:00:00+08:00 "$events2" &
  anon=0
  while kill -0 $! 2>/dev/null; do
    pid=$(pgrep -n -f "datacube ingest --clock 2027" || true)
    a=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${a:-0}" -gt "$anon" ] && anon=$a
    sleep 0.5
  done
  wait $!
  echo "datacube, second year: peak anonymous RSS (sampled every 0.5 s): $anon KB"
fi
