#!/usr/bin/env bash
# Makes sure the machine's PostgreSQL is running, and adds the pg_hba rules under which the upstream
# authentication tests log in with SCRAM-SHA-256, md5, and SCRAM over TLS only. Idempotent.
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null; then
  apt-get update -qq && apt-get install -y -qq postgresql postgresql-client >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
pg_isready -h 127.0.0.1 -p 5432

hba=$(psql -X -h 127.0.0.1 -U postgres -d postgres -Atc 'show hba_file')
marker='# proctor tests: upstream authentication'
if ! grep -qF "$marker" "$hba"; then
  tmp=$(mktemp)
  {
    echo "$marker"
    echo 'host      all  proctor_scram  127.0.0.1/32  scram-sha-256'
    echo 'host      all  proctor_md5    127.0.0.1/32  md5'
    echo 'hostssl   all  proctor_tls    127.0.0.1/32  scram-sha-256'
    echo 'hostnossl all  proctor_tls    127.0.0.1/32  reject'
    cat "$hba"
  } > "$tmp"
  cat "$tmp" > "$hba"
  rm -f "$tmp"
  psql -X -h 127.0.0.1 -U postgres -d postgres -qAtc 'select pg_reload_conf()' >/dev/null
fi
psql -X -h 127.0.0.1 -U postgres -d postgres -qAt -c "select 1 from pg_database where datname = 'test'" | grep -q 1 \
  || psql -X -h 127.0.0.1 -U postgres -d postgres -qc 'create database test'
