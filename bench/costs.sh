#!/usr/bin/env bash
# Where the time goes: what each gateway in front of the machine's PostgreSQL costs the machine per
# transaction of `pgbench -S -M simple` (one SELECT a transaction, 8 clients): pgbouncer (session
# pooling), the two bare relays (the floor on tokio, crates/proctor-net/examples/passthrough.rs, and
# on io_uring, passthrough_uring.rs) and Proctor with guardrails = "recommended".
#
#   bash bench/costs.sh [SECONDS_PER_RUN] [ROUNDS]
#   PROCTOR=/path/to/proctor bash bench/costs.sh ...   # a release build (default: build
#                                                         # target/release/proctor)
#   TARGETS="floor floor-1" bash bench/costs.sh ...   # some of pgbouncer floor floor-uring proctor,
#                                                     # floor-1 floor-uring-1 (the floors on one loop)
#
# Over the same window as each pgbench run, and for the gateway's process only:
#   syscalls   system calls entered, counted by `perf stat -e 'syscalls:sys_enter_*' -p PID` (kernel
#              tracepoints; perf attaches to the threads alive when it starts)
#   waits      of which epoll_wait/epoll_pwait/epoll_pwait2/io_uring_enter/poll/ppoll/select: the
#              wake-ups of the event loops (an io_uring_enter also submits)
#   vcs, ivcs  voluntary and involuntary context switches of its threads (/proc/PID/task/*/status)
#   user, sys  CPU µs of its threads in user and kernel mode (/proc/PID/task/*/stat, ticks -> µs)
# and for the whole machine (pgbench, PostgreSQL and everything else running too):
#   mcs        context switches (/proc/stat ctxt)
# each divided by the run's transactions. Each round runs every target in turn, so that noise from
# other work on the machine falls on all of them alike; the table holds the medians over the rounds,
# then the system calls that make up the count, per transaction.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
rounds=${2:-3}
clients=${CLIENTS:-8}
threads=${THREADS:-2}
scale=${SCALE:-10}
read -r -a targets <<< "${TARGETS:-pgbouncer floor floor-uring proctor}"
direct_port=5432
base_port=${BASE_PORT:-40432}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

source bench/gateway_config.sh
require_machine_postgres
command -v perf >/dev/null || { echo "costs.sh counts system calls with perf (linux-perf)" >&2; exit 1; }
command -v pgbouncer >/dev/null || { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; }
proctor_bin=${PROCTOR:-${CARGO_TARGET_DIR:-target}/release/proctor}
if [ -z "${PROCTOR:-}" ] && [[ " ${targets[*]} " == *" proctor "* ]]; then
  cargo build --release -q -p proctor
fi
if [[ " ${targets[*]} " == *" floor"* ]]; then
  cargo build --release -q -p proctor-net --example passthrough --example passthrough_uring
fi
# perf opens one counter per syscall tracepoint per thread.
ulimit -n 65536 2>/dev/null || true

psql -X -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists proctor_bench' \
  -c 'create database proctor_bench'
pgbench -q -i -s "$scale" -h 127.0.0.1 -U postgres proctor_bench >/dev/null 2>&1

export PROCTOR_BENCH_TOKEN=bench-token
declare -A port user pid
next_port=$base_port
for target in "${targets[@]}"; do
  port[$target]=$next_port
  user[$target]=postgres
  next_port=$((next_port + 1))
done
require_free_ports "${port[@]}"
for target in "${targets[@]}"; do
  listen=127.0.0.1:${port[$target]}
  case $target in
    floor) "${CARGO_TARGET_DIR:-target}"/release/examples/passthrough "$listen" "127.0.0.1:$direct_port" & ;;
    floor-1) "${CARGO_TARGET_DIR:-target}"/release/examples/passthrough "$listen" "127.0.0.1:$direct_port" 1 & ;;
    floor-uring) "${CARGO_TARGET_DIR:-target}"/release/examples/passthrough_uring "$listen" "127.0.0.1:$direct_port" & ;;
    floor-uring-1) "${CARGO_TARGET_DIR:-target}"/release/examples/passthrough_uring "$listen" "127.0.0.1:$direct_port" 1 & ;;
    proctor)
      gateway_config "$work/proctor-data" "${port[$target]}" 'guardrails = "recommended"' > "$work/proctor.toml"
      "$proctor_bin" serve --config "$work/proctor.toml" 2>"$work/proctor.log" &
      user[$target]=bench
      ;;
    pgbouncer) start_pgbouncer "$work/pgbouncer" "${port[$target]}" ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  pid[$target]=$!
done
for target in "${targets[@]}"; do
  for _ in $(seq 1 100); do
    pg_isready -q -h 127.0.0.1 -p "${port[$target]}" && break
    sleep 0.1
  done
done

usec_per_tick=$((1000000 / $(getconf CLK_TCK)))
counters() { # pid -> user and system ticks, voluntary and involuntary switches of its threads, then
  # the machine's context switches
  local task=/proc/$1/task
  sed 's/.*) //' "$task"/*/stat | awk '{ user += $12; sys += $13 } END { printf "%d %d ", user, sys }'
  awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 }
       END { printf "%d %d ", v, n }' "$task"/*/status
  awk '/^ctxt/ { print $2 }' /proc/stat
}

run() { # round target -> one line per measure in $work/results: round target measure per-transaction
  local round=$1 target=$2 before after transactions
  perf stat -x, -o "$work/perf" -e 'syscalls:sys_enter_*' -p "${pid[$target]}" &
  local perf_pid=$!
  sleep 0.5 # perf attaches to every thread before the run starts
  before=$(counters "${pid[$target]}")
  transactions=$(PGSSLMODE=disable PGPASSWORD=$PROCTOR_BENCH_TOKEN pgbench -n -S -M simple -c "$clients" \
    -j "$threads" -T "$seconds" -h 127.0.0.1 -p "${port[$target]}" -U "${user[$target]}" proctor_bench \
    2>/dev/null | awk '/^number of transactions actually processed/ { split($NF, n, "/"); print n[1] }')
  after=$(counters "${pid[$target]}")
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  [ "${transactions:-0}" -gt 0 ] || { echo "no transactions through $target" >&2; exit 1; }
  echo "$before $after" | awk -v r="$round" -v t="$target" -v n="$transactions" -v s="$seconds" \
    -v us="$usec_per_tick" '{
      printf "%s %s tps %.0f\n", r, t, n / s
      printf "%s %s user %.2f\n", r, t, ($6 - $1) * us / n
      printf "%s %s sys %.2f\n", r, t, ($7 - $2) * us / n
      printf "%s %s vcs %.3f\n", r, t, ($8 - $3) / n
      printf "%s %s ivcs %.3f\n", r, t, ($9 - $4) / n
      printf "%s %s mcs %.3f\n", r, t, ($10 - $5) / n }' >> "$work/results"
  # perf -x, lines: count,unit,event,... ; a count perf could not read is "<not counted>".
  awk -F, -v r="$round" -v t="$target" -v n="$transactions" '
    $3 ~ /^syscalls:sys_enter_/ && $1 ~ /^[0-9]+$/ {
      name = substr($3, 20); total += $1
      if (name ~ /^(epoll_wait|epoll_pwait|epoll_pwait2|io_uring_enter|poll|ppoll|select|pselect6)$/) waits += $1
      if ($1 > 0) printf "%s %s sys_%s %.4f\n", r, t, name, $1 / n
    }
    END { printf "%s %s syscalls %.3f\n%s %s waits %.3f\n", r, t, total / n, r, t, waits / n }' \
    "$work/perf" >> "$work/results"
  echo "round $round  $target  $((transactions / seconds)) tps" >&2
}

for round in $(seq 1 "$rounds"); do
  for target in "${targets[@]}"; do run "$round" "$target"; done
done

median() { # target measure -> its median over the rounds (0 in a round that did not see it)
  awk -v t="$1" -v m="$2" -v n="$rounds" '$2 == t && $3 == m { print $4; k++ } END { for (; k < n; k++) print 0 }' \
    "$work/results" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { # target -> its TPS over the first target's, the median of the rounds' ratios
  awk -v a="$1" -v b="${targets[0]}" '$3 == "tps" && $2 == a { x[$1] = $4 } $3 == "tps" && $2 == b { y[$1] = $4 }
    END { for (r in x) if (y[r] > 0) print x[r] / y[r] }' "$work/results" \
    | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "pgbench -n -S -M simple -c $clients -j $threads -T $seconds, scale $scale, $rounds rounds; medians over the"
echo "rounds, per transaction; the gateway's process only, but mcs: the whole machine's context switches;"
echo "ratio: to ${targets[0]}, the median of the rounds' TPS ratios (with perf counting, which slows every target)"
printf '%-14s %8s %7s %9s %7s %7s %7s %8s %8s %7s\n' target tps ratio syscalls waits vcs ivcs \
  'user µs' 'sys µs' mcs
for target in "${targets[@]}"; do
  printf '%-14s %8.0f %7.3f %9.2f %7.2f %7.2f %7.3f %8.2f %8.2f %7.2f\n' "$target" "$(median "$target" tps)" \
    "$(ratio "$target")" \
    "$(median "$target" syscalls)" "$(median "$target" waits)" "$(median "$target" vcs)" \
    "$(median "$target" ivcs)" "$(median "$target" user)" "$(median "$target" sys)" "$(median "$target" mcs)"
done
echo
echo "system calls per transaction (medians; those at 0.01 or more for some target)"
printf '%-22s' syscall; printf ' %13s' "${targets[@]}"; echo
for name in $(awk '$3 ~ /^sys_/ && $4 >= 0.01 { print $3 }' "$work/results" | sort -u); do
  printf '%-22s' "${name#sys_}"
  for target in "${targets[@]}"; do printf ' %13.3f' "$(median "$target" "$name")"; done
  echo
done
