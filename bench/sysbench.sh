#!/usr/bin/env bash
# MySQL throughput through Proctor, compared in one run with a direct connection, on the machine's
# MariaDB (127.0.0.1:3306, root without a password; not the tests' own server).
#
#   bash bench/sysbench.sh [SECONDS_PER_RUN] [ROUNDS]   # default 10 s and 3 rounds (or the
#                                                       # SECONDS_PER_RUN and ROUNDS variables)
#   THREADS=8 bash bench/sysbench.sh ...                # sysbench threads (default 8)
#   TESTS=oltp_point_select bash bench/sysbench.sh ...  # some of oltp_point_select, oltp_read_only
#   TARGETS=direct bash bench/sysbench.sh ...           # only MariaDB directly: no build, no Proctor
#   TARGETS="direct proctor" bash ...                   # without the floor (the `relay` target)
#
# The database `proctor_bench` holds sysbench's 4 tables of 10,000 rows (`sysbench ... prepare`, done
# once: kept while the tables are complete). Proctor records as it does by default (journal on); the
# sessions and statements it recorded are counted at the end. Both targets are reached with the same
# client settings: no TLS (--mysql-ssl=off), prepared statements where the driver can use them
# (--db-ps-mode=auto). Each round runs every test against MariaDB directly and then through Proctor,
# so that noise from other work on the machine falls on both alike. Prints the TPS of every run, the
# ratio Proctor/direct of each round, and per test the median of these ratios (a failed run, shown as
# such, counts in none).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-${SECONDS_PER_RUN:-10}}
rounds=${2:-${ROUNDS:-3}}
threads=${THREADS:-8}
read -r -a tests <<< "${TESTS:-oltp_point_select oltp_read_only}"
read -r -a targets <<< "${TARGETS:-direct relay proctor}"
tables=4
table_size=10000
direct_port=3306
proctor_port=${PROCTOR_MYSQL_PORT:-33306}
relay_port=${RELAY_PORT:-34306}
proctor=${CARGO_TARGET_DIR:-target}/release/proctor
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

with_proctor=
with_relay=
for target in "${targets[@]}"; do
  case $target in
    direct) ;;
    relay) with_relay=1 ;;
    proctor) with_proctor=1 ;;
    *) echo "unknown target $target (TARGETS: direct, relay, proctor)" >&2; exit 2 ;;
  esac
done

# shellcheck source=bench/gateway_config.sh
source bench/gateway_config.sh
require_machine_mariadb
command -v sysbench >/dev/null || { apt-get update -qq && apt-get install -y -qq sysbench >/dev/null; }
[ -z "$with_proctor" ] || cargo build --release -q -p proctor
if [ -n "$with_relay" ]; then
  # The floor (crates/proctor-net/examples/passthrough.rs, as bench/pgbench.sh's FLOOR=1): a relay
  # that copies bytes on event loops laid out as Proctor's and does nothing else. Proctor over it is
  # the cost of Proctor's own work; it over direct, what the extra hop costs any gateway here.
  cargo build --release -q -p proctor-net --example passthrough
  require_free_ports "$relay_port"
  "${CARGO_TARGET_DIR:-target}/release/examples/passthrough" "127.0.0.1:$relay_port" \
    "127.0.0.1:$direct_port" &
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$relay_port") 2>/dev/null && break
    sleep 0.1
  done
fi

direct_sql() { mariadb -h127.0.0.1 -P"$direct_port" -uroot "$@"; }
common=(--db-driver=mysql --mysql-db=proctor_bench --tables="$tables" --table-size="$table_size"
  --mysql-ssl=off --db-ps-mode=auto)
prepared=1
for i in $(seq 1 "$tables"); do
  rows=$(direct_sql -N -e "select count(*) from proctor_bench.sbtest$i" 2>/dev/null || echo 0)
  [ "$rows" = "$table_size" ] || prepared=
done
if [ -z "$prepared" ]; then
  direct_sql -e 'drop database if exists proctor_bench; create database proctor_bench'
  sysbench oltp_read_only "${common[@]}" --mysql-host=127.0.0.1 --mysql-port="$direct_port" \
    --mysql-user=root --mysql-password= prepare >"$work/prepare.log" 2>&1 \
    || { echo "sysbench prepare failed:" >&2; tail -n 20 "$work/prepare.log" >&2; exit 1; }
fi

if [ -n "$with_proctor" ]; then
  # A gateway still listening there would answer in place of the build under test.
  require_free_ports "$proctor_port"
  # A token shaped like the ones Proctor issues (prt_<id>_<secret>), unless one is given.
  if [ -z "${PROCTOR_BENCH_TOKEN:-}" ]; then
    PROCTOR_BENCH_TOKEN=prt_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')_$(head -c 32 /dev/urandom \
      | base64 | tr '+/' '-_' | tr -d '=\n')
  fi
  export PROCTOR_BENCH_TOKEN
  mysql_gateway_config "$work/proctor-data" "$proctor_port" > "$work/proctor.toml"
  "$proctor" serve --config "$work/proctor.toml" 2>"$work/proctor.log" &
  proctor_pid=$!
  ready=
  for _ in $(seq 1 300); do
    ready=$(grep -m 1 'proctor is ready' "$work/proctor.log" || true)
    [ -z "$ready" ] || break
    kill -0 "$proctor_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    echo "proctor did not become ready; its log:" >&2
    tail -n 20 "$work/proctor.log" >&2
    exit 1
  fi
  # The ready line names each listener, the MySQL one as mysql=127.0.0.1:PORT.
  listen=$(tr ' ' '\n' <<< "$ready" | sed -n 's/^mysql=//p' | head -n 1)
  if [ -z "$listen" ]; then
    echo "proctor's ready line names no MySQL listener (a build without the MySQL gateway?):" >&2
    echo "$ready" >&2
    exit 1
  fi
  proctor_port=${listen##*:}
fi

run() { # target test -> transactions per second, or "failed" (and the log's tail on stderr)
  local target=$1 test=$2 log=$work/run.log args
  case $target in
    direct) args=(--mysql-port="$direct_port" --mysql-user=root --mysql-password=) ;;
    relay) args=(--mysql-port="$relay_port" --mysql-user=root --mysql-password=) ;;
    proctor) args=(--mysql-port="$proctor_port" --mysql-user=bench --mysql-password="$PROCTOR_BENCH_TOKEN") ;;
  esac
  if sysbench "$test" "${common[@]}" --mysql-host=127.0.0.1 "${args[@]}" --threads="$threads" \
    --time="$seconds" --report-interval=0 run >"$log" 2>&1 \
    && grep -q 'transactions:' "$log"; then
    # "    transactions:                        68954  (6894.64 per sec.)"
    awk '/transactions:/ { gsub(/\(/, "", $3); print $3; exit }' "$log"
  else
    echo "sysbench $test against $target failed:" >&2
    tail -n 10 "$log" >&2
    echo failed
  fi
}

for round in $(seq 1 "$rounds"); do
  for test in "${tests[@]}"; do
    for target in "${targets[@]}"; do
      tps=$(run "$target" "$test")
      echo "$round $test $target $tps" >> "$work/results"
      echo "round $round  $test  $target  $tps tps" >&2
    done
  done
done

tps_of() { # round test target -> its TPS, or nothing
  awk -v r="$1" -v t="$2" -v g="$3" '$1 == r && $2 == t && $3 == g { print $4 }' "$work/results"
}
ratio_of() { # round test target base -> the target's TPS over the base's in that round, or nothing
  awk -v r="$1" -v t="$2" -v g="$3" -v b="$4" '$1 == r && $2 == t && $3 == b { d = $4 + 0 } $1 == r && $2 == t && $3 == g { p = $4 + 0 }
    END { if (d > 0 && p > 0) printf "%.2f\n", p / d }' "$work/results"
}
ratios=("proctor direct" "relay direct" "proctor relay")
median_of() { # numbers, one a line -> their median (nothing for none)
  sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "sysbench, $threads threads, ${seconds}s x $rounds rounds, $tables tables x $table_size rows, no TLS, ps-mode auto"
printf '%-18s %6s %10s %10s %10s %15s %13s %14s\n' test round direct relay proctor \
  proctor/direct relay/direct proctor/relay
for test in "${tests[@]}"; do
  for round in $(seq 1 "$rounds"); do
    printf '%-18s %6s %10s %10s %10s' "$test" "$round" "$(tps_of "$round" "$test" direct)" \
      "$(tps_of "$round" "$test" relay)" "$(tps_of "$round" "$test" proctor)"
    printf ' %15s %13s %14s\n' "$(ratio_of "$round" "$test" proctor direct)" \
      "$(ratio_of "$round" "$test" relay direct)" "$(ratio_of "$round" "$test" proctor relay)"
  done
done
echo
echo "median of the rounds' ratios (not a ratio of the medians)"
printf '%-18s %15s %13s %14s\n' test proctor/direct relay/direct proctor/relay
for test in "${tests[@]}"; do
  printf '%-18s' "$test"
  widths=(15 13 14)
  for i in 0 1 2; do
    read -r target base <<< "${ratios[$i]}"
    median=$(for round in $(seq 1 "$rounds"); do ratio_of "$round" "$test" "$target" "$base"; done | median_of)
    printf " %${widths[$i]}s" "${median:--}"
  done
  echo
done
echo "(compare proctor/direct with pgbouncer/direct from bench/pgbench.sh; relay/direct is the floor)"

if [ -n "$with_proctor" ]; then
  # Stop the gateway first, so that the journal holds everything it acknowledged when it is counted.
  kill -TERM "$proctor_pid"
  wait "$proctor_pid" || true
  sessions=$("$proctor" sessions list --config "$work/proctor.toml" --format json | grep -c '"id"' || true)
  queries=$("$proctor" sessions list --config "$work/proctor.toml" --format json \
    | awk -F': ' '/"queries"/ { gsub(/,/, "", $2); n += $2 } END { print n + 0 }')
  echo "recorded by proctor during the run: $sessions sessions, $queries statements"
fi
