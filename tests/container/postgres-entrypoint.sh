#!/bin/sh
# The entrypoint of the stand-in for the official postgres image (base-images.sh --postgres):
# the same variables (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGDATA) and behaviour —
# a new data directory is initialised, password authentication over TCP, then the server runs
# in the foreground as PID 1.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pw"
  initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pw" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait start >/dev/null
    createdb --username="$user" "$db"
    pg_ctl --pgdata="$PGDATA" --wait stop >/dev/null
  fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
