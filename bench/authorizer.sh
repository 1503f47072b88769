#!/usr/bin/env bash
# Serving with an authorizer token (issue 9) beside the account's own token: the same
# getusersummary request (7 days of the demo account), wrk -c32 for DUR each, in turn.
# An authorizer token also needs its grant (cached like tokens, for a second).
#
#   bench/authorizer.sh          # DUR=5s RUNS=2
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DUR=${DUR:-5s}
RUNS=${RUNS:-2}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$root"
cargo build --release -q -p datacube
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"begin_date":"2026-11-01","end_date":"2026-11-07"}'
LUA
DATACUBE_LOG=warn target/release/datacube serve --database "sqlite://$work/db.db" \
  --listen 127.0.0.1:18191 --demo --demo-days 60 --admin-token adm-token-for-bench \
  --clock 2026-11-24T10:00:00+08:00 >"$work/out" 2>&1 &
pid=$!
for _ in $(seq 1 300); do grep -q "try:" "$work/out" 2>/dev/null && break; sleep 0.2; done
B=http://127.0.0.1:18191
A="Authorization: Bearer adm-token-for-bench"
C=wxc0000000000000b1
field() { sed -E "s/.*\"$1\":\"([^\"]+)\".*/\1/"; }
curl -s -H "$A" "$B/admin/components" -d "{\"appid\":\"$C\",\"secret\":\"benchsecret\",\"token\":\"benchtoken\",\"aes_key\":\"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\"}" >/dev/null
ticket=$(curl -s -XPOST -H "$A" "$B/admin/components/$C/ticket" | field ticket)
ctoken=$(curl -s "$B/cgi-bin/component/api_component_token" -d "{\"component_appid\":\"$C\",\"component_appsecret\":\"benchsecret\",\"component_verify_ticket\":\"$ticket\"}" | field component_access_token)
code=$(curl -s -H "$A" "$B/admin/components/$C/grants" -d '{"authorizer_appid":"wx6461746163756265","func_ids":[2]}' | field authorization_code)
authorizer=$(curl -s "$B/cgi-bin/component/api_query_auth?component_access_token=$ctoken" -d "{\"component_appid\":\"$C\",\"authorization_code\":\"$code\"}" | field authorizer_access_token)
own=$(curl -s "$B/cgi-bin/token?grant_type=client_credential&appid=wx6461746163756265&secret=64656d6f5f7365637265745f32303236" | field access_token)
for _ in $(seq 1 "$RUNS"); do
  for t in "own:$own" "authorizer:$authorizer"; do
    printf '%-11s' "${t%%:*}"
    wrk -t2 -c32 -d"$DUR" -s "$work/post.lua" "$B/datacube/getusersummary?access_token=${t#*:}" |
      awk '/Latency/ {l=$2} /Requests\/sec/ {print $2 " req/s, mean latency " l}'
  done
done
