#!/usr/bin/env bash
# Gives the tests a MariaDB server of their own, whatever the machine's MariaDB or MySQL allows (or
# whether it has one running at all): the server lives in $PROCTOR_TEST_MYSQLDATA (default
# /var/tmp/proctor-test-mariadb-<uid>), reads only its own option file there (`proctor-test.cnf`, never
# /etc/mysql), listens on 127.0.0.1 only, on port 53306 or the next free one, with its socket, pid file
# and error log (`error.log`) inside its data dir, TLS from a self-signed certificate for "localhost"
# made here (`server.crt`, also the CA file of the verify tests), max_allowed_packet 64M, LOAD DATA
# LOCAL INFILE allowed, and these accounts:
#   root (127.0.0.1, ::1, localhost)  no password, every privilege: the tests administer the server
#   proctor_native@'%'  mysql_native_password, password native-secret-pw  the upstream-authentication
#   proctor_tls@'%'     password tls-secret-pw, REQUIRE SSL               tests: Proctor logs in with a
#                                                                         password, and over TLS only
# Both test users may do anything in the database `test` (created here) and in every database whose
# name starts with `proctor_`. There is no anonymous account. The empty root password is why it is a
# server of its own on loopback and not the machine's: nothing else listens to it and it holds only
# test data. Durability is relaxed (innodb_flush_log_at_trx_commit 0, sync_binlog 0, no binary log)
# and the buffer pool small (64M), for speed and memory: the tests check Proctor's journal, never this
# server's.
#
# Idempotent: a running server is reused. The last line printed is the server's address, host:port,
# which .ci/run hands to the tests as PROCTOR_TEST_MYSQL.
set -euo pipefail

datadir=${PROCTOR_TEST_MYSQLDATA:-/var/tmp/proctor-test-mariadb-$(id -u)}
cnf=$datadir/proctor-test.cnf
PATH=$PATH:/usr/sbin:/usr/local/sbin

if ! command -v mariadbd >/dev/null || ! command -v mariadb-install-db >/dev/null \
  || ! command -v mariadb >/dev/null || ! command -v openssl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq mariadb-server mariadb-client openssl >/dev/null
fi

# As root, the server runs as the `mysql` account that the package creates, and its files are that
# account's (mariadbd refuses to run as root).
if [ "$(id -u)" = 0 ]; then
  as_owner() { runuser -u mysql -- "$@"; }
  user_args=(--user=mysql)
else
  as_owner() { "$@"; }
  user_args=()
fi

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ ! -e "$datadir/proctor-initialized" ]; then
  rm -rf "$datadir"
  mkdir -p "$datadir"
  [ "$(id -u)" = 0 ] && chown mysql: "$datadir"
  chmod 700 "$datadir"
  port=53306
  while port_taken "$port"; do port=$((port + 1)); done
  as_owner openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$datadir/server.key" -out "$datadir/server.crt" 2>/dev/null
  as_owner tee "$cnf" >/dev/null <<EOF
# proctor tests
[mariadbd]
datadir = $datadir
bind-address = 127.0.0.1
port = $port
socket = $datadir/mariadbd.sock
pid-file = $datadir/mariadbd.pid
log-error = $datadir/error.log
skip-name-resolve
ssl-cert = $datadir/server.crt
ssl-key = $datadir/server.key
max_allowed_packet = 64M
local_infile = ON
max_connections = 300
innodb_buffer_pool_size = 64M
innodb_log_file_size = 48M
innodb_flush_log_at_trx_commit = 0
sync_binlog = 0
skip-log-bin

[client]
socket = $datadir/mariadbd.sock
EOF
  # --defaults-file must come first.
  mariadb-install-db --defaults-file="$cnf" "${user_args[@]}" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve >"$datadir/install.log" 2>&1 \
    || { echo "mariadb-install-db failed:" >&2; tail -n 20 "$datadir/install.log" >&2; exit 1; }
  as_owner touch "$datadir/proctor-initialized"
fi
port=$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$cnf" | tail -n 1)

sql() { mariadb --no-defaults -h 127.0.0.1 -P "$port" -u root "$@"; }
answers() { sql -e 'select 1' >/dev/null 2>&1; }

running() { # the pid file names a live process
  local pid
  pid=$(cat "$datadir/mariadbd.pid" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

if ! answers; then
  if ! running; then
    if port_taken "$port"; then
      echo "port $port (in $cnf) is taken by something that is not this test server:" >&2
      echo "stop it, or remove $datadir to set up a new server on a free port" >&2
      exit 1
    fi
    setsid nohup mariadbd --defaults-file="$cnf" "${user_args[@]}" </dev/null >>"$datadir/mariadbd.out" 2>&1 &
  fi
  for _ in $(seq 1 300); do
    answers && break
    sleep 0.1
  done
  if ! answers; then
    echo "the test MariaDB in $datadir does not answer on 127.0.0.1:$port after 30 s; its error log:" >&2
    tail -n 30 "$datadir/error.log" >&2 2>/dev/null || true
    tail -n 10 "$datadir/mariadbd.out" >&2 2>/dev/null || true
    exit 1
  fi
fi

# The accounts and grants, brought to the state described above whatever they were. The accounts
# mariadb-install-db makes for the machine's name are dropped: the server resolves no names.
host=$(uname -n)
sql -e "DROP USER IF EXISTS 'root'@'$host', ''@'$host', ''@'localhost'"
sql <<'SQL'
CREATE DATABASE IF NOT EXISTS test;
CREATE USER IF NOT EXISTS 'proctor_native'@'%';
ALTER USER 'proctor_native'@'%'
  IDENTIFIED VIA mysql_native_password USING PASSWORD('native-secret-pw') REQUIRE NONE;
CREATE USER IF NOT EXISTS 'proctor_tls'@'%';
ALTER USER 'proctor_tls'@'%' IDENTIFIED BY 'tls-secret-pw' REQUIRE SSL;
GRANT ALL PRIVILEGES ON `test`.* TO 'proctor_native'@'%', 'proctor_tls'@'%';
GRANT ALL PRIVILEGES ON `proctor\_%`.* TO 'proctor_native'@'%', 'proctor_tls'@'%';
SQL
echo "127.0.0.1:$port"
