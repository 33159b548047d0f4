#!/bin/sh
# The part of the official postgres image's entry point that deploy/docker-compose.yml relies on:
# POSTGRES_USER, POSTGRES_DB and POSTGRES_PASSWORD_FILE create the cluster on first start.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --username="$POSTGRES_USER" --pwfile="$POSTGRES_PASSWORD_FILE" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions >/dev/null
  # Through the socket only while the database does not exist yet (PGHOST may name the TCP address).
  pg_ctl -w -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start >/dev/null
  createdb --host=/var/run/postgresql --username="$POSTGRES_USER" "$POSTGRES_DB"
  pg_ctl -w stop >/dev/null
fi
exec postgres -c listen_addresses="${POSTGRES_LISTEN:-127.0.0.1}" "$@"
