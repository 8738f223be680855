#!/usr/bin/env bash
# Gives the tests a PostgreSQL cluster of their own, whatever the machine's PostgreSQL allows (or
# whether it has one running at all): the cluster lives in $PROCTOR_TEST_PGDATA, listens on 127.0.0.1
# only, on port 55432 or the next free one, with its socket inside its data dir, TLS from a
# self-signed certificate for "localhost" made here (`server.crt`, the CA file of the verify-full
# test), and these authentication rules (pg_hba.conf):
#   proctor_scram  host     scram-sha-256   the upstream-authentication tests: Proctor logs in
#   proctor_md5    host     md5             with SCRAM, with md5,
#   proctor_tls    hostssl  scram-sha-256   and with SCRAM over TLS only;
#   proctor_tls    hostnossl reject
#   every other role on 127.0.0.1: trust    (the tests administer it as `postgres`, no password)
# The trust rule is why it is a cluster of its own on loopback and not the machine's: nothing else
# listens to it and it holds only test data. Durability is off (fsync) for speed: the tests check
# Proctor's journal, never this cluster's.
#
# Idempotent: a running cluster is reused. The last line printed is the cluster's address,
# host:port, which .ci/run hands to the tests as PROCTOR_TEST_PG.
set -euo pipefail

pgdata=${PROCTOR_TEST_PGDATA:-/var/tmp/proctor-test-postgres-$(id -u)}

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null \
  || ! command -v openssl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq postgresql postgresql-client openssl >/dev/null
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` account that the
# package creates.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ ! -s "$pgdata/PG_VERSION" ]; then
  rm -rf "$pgdata"
  mkdir -p "$pgdata"
  [ "$(id -u)" = 0 ] && chown postgres: "$pgdata"
  chmod 700 "$pgdata"
  as_owner "$bin/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  port=55432
  while port_taken "$port"; do port=$((port + 1)); done
  as_owner openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$pgdata/server.key" -out "$pgdata/server.crt" 2>/dev/null
  as_owner tee -a "$pgdata/postgresql.conf" >/dev/null <<EOF
# proctor tests
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pgdata'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
max_connections = 300
fsync = off
full_page_writes = off
synchronous_commit = off
EOF
  as_owner tee "$pgdata/pg_hba.conf" >/dev/null <<'EOF'
# proctor tests: upstream authentication
host      all  proctor_scram  127.0.0.1/32  scram-sha-256
host      all  proctor_md5    127.0.0.1/32  md5
hostssl   all  proctor_tls    127.0.0.1/32  scram-sha-256
hostnossl all  proctor_tls    127.0.0.1/32  reject
# proctor tests: everyone else, on this loopback-only test cluster
host      all  all            127.0.0.1/32  trust
local     all  all                          trust
EOF
fi
port=$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$pgdata/postgresql.conf" | tail -n 1)

if ! as_owner "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
  as_owner "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 start >/dev/null
fi
"$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres

psql -X -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt \
  -c "select 1 from pg_database where datname = 'test'" | grep -q 1 \
  || psql -X -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc 'create database test'
echo "127.0.0.1:$port"
