# Sourced by the benchmark scripts: the config of a gateway under test, with one identity (`bench`, its
# token from PROCTOR_BENCH_TOKEN) and one connection (`proctor_bench`) to the machine's PostgreSQL.

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
