# Sourced by the benchmark scripts: the config of a gateway under test, with one identity (`bench`, its
# token from PROCTOR_BENCH_TOKEN) and one connection (`proctor_bench`) to the machine's PostgreSQL,
# or (mysql_gateway_config) to the machine's MariaDB, pgbouncer in front of that PostgreSQL
# (start_pgbouncer), the checks that this PostgreSQL or MariaDB answers, and the check that the ports a
# benchmark listens on are free.

gateway_config() { # data dir, port [extra connection keys]
  cat <<TOML
[server]
data_dir = "$1"
postgres_listen = "127.0.0.1:$2"
http_listen = "127.0.0.1:0"

[[identity]]
name = "bench"
token_env = "PROCTOR_BENCH_TOKEN"

[[connection]]
name = "proctor_bench"
kind = "postgres"
address = "127.0.0.1:5432"
database = "proctor_bench"
user = "postgres"
allow = ["bench"]
${3:-}
TOML
}

require_machine_postgres() { # the benchmarks measure against the machine's PostgreSQL, as it runs
  if ! psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    echo "the benchmarks run against the machine's PostgreSQL on 127.0.0.1:5432, as postgres without a" >&2
    echo "password; start it, or allow that login (the tests' own cluster, .ci/postgres-setup.sh, is" >&2
    echo "tuned for tests, not for measuring)" >&2
    exit 1
  fi
}

mysql_gateway_config() { # data dir, mysql port [extra connection keys]
  cat <<TOML
[server]
data_dir = "$1"
postgres_listen = "127.0.0.1:0"
mysql_listen = "127.0.0.1:$2"
http_listen = "127.0.0.1:0"

[[identity]]
name = "bench"
token_env = "PROCTOR_BENCH_TOKEN"

[[connection]]
name = "proctor_bench"
kind = "mysql"
address = "127.0.0.1:3306"
database = "proctor_bench"
user = "root"
allow = ["bench"]
${3:-}
TOML
}

require_machine_mariadb() { # the MySQL benchmarks measure against the machine's MariaDB, as it runs
  if ! mariadb -h127.0.0.1 -P3306 -uroot -e 'select 1' >/dev/null 2>&1; then
    echo "the MySQL benchmarks run against the machine's MariaDB (or MySQL) on 127.0.0.1:3306, as root" >&2
    echo "without a password; start it, or allow that login (the tests' own server, .ci/mariadb-setup.sh," >&2
    echo "is tuned for tests, not for measuring)" >&2
    exit 1
  fi
}

require_free_ports() { # port... : refuses to go on if anything listens there already
  local port
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is in use (a gateway left running?): stop it or pick another port" >&2
      exit 1
    fi
  done
}

start_pgbouncer() { # dir, port [client sslmode]: pgbouncer (session pooling) in front of the machine's
  # PostgreSQL, in the background (its pid in $!), with a certificate of its own unless sslmode is disable
  local dir=$1 port=$2 sslmode=${3:-disable}
  mkdir -p "$dir"
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
proctor_bench = host=127.0.0.1 port=5432 dbname=proctor_bench user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
unix_socket_dir =
INI
  echo '"postgres" ""' > "$dir/userlist.txt"
  if [ "$sslmode" != disable ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout "$dir/key.pem" \
      -out "$dir/cert.pem" >/dev/null 2>&1
    printf 'client_tls_sslmode = require\nclient_tls_key_file = %s\nclient_tls_cert_file = %s\n' \
      "$dir/key.pem" "$dir/cert.pem" >> "$dir/pgbouncer.ini"
  fi
  if [ "$(id -u)" = 0 ]; then
    # pgbouncer refuses to run as root.
    chmod 755 "$(dirname "$dir")"
    chown -R postgres "$dir"
    pgbouncer -u postgres "$dir/pgbouncer.ini" >/dev/null 2>&1 &
  else
    pgbouncer "$dir/pgbouncer.ini" >/dev/null 2>&1 &
  fi
}
