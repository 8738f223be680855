#!/usr/bin/env bash
# PostgreSQL throughput through Proctor, compared in one run with a direct connection and with
# pgbouncer (session pooling), on the machine's PostgreSQL.
#
#   bash bench/pgbench.sh [SECONDS_PER_RUN] [ROUNDS]
#   SSLMODE=require bash bench/pgbench.sh ...   # TLS from pgbench to every target (default: disable)
#   BASELINE=/path/to/older/proctor bash bench/pgbench.sh ...   # also an older build, to compare
#   PROCTOR=/path/to/proctor bash bench/pgbench.sh ...   # measure that build (default: build this tree's)
#   UNGUARDED=1 bash bench/pgbench.sh ...   # also Proctor without guardrails, to compare
#   MODES=select-simple bash bench/pgbench.sh ...   # only some of select-simple, select-extended,
#                                                   # select-prepared, update-simple
#   FLOOR=1 bash bench/pgbench.sh ...   # also a relay that only copies bytes (the floor, see below)
#                                       # and the same relay on io_uring (floor-uring)
#
# Proctor (and the BASELINE build) run as recommended for production: recording, masking with the
# default detectors and the gitleaks set, and guardrails = "recommended".
# Every target is reached with the same client TLS setting, so that one target's encryption is never
# compared with another's plain TCP (libpq's default, "prefer", would encrypt to PostgreSQL and Proctor
# but not to a pgbouncer without a certificate).
# Each round runs every mode against every target, alternating, so that noise from other work on the
# machine falls on all of them alike. Prints the median TPS per target and mode, and the ratios, and
# the share of time the host took the machine's CPUs away during each target's runs (steal): a round
# with much steal on one target and little on another compares the host's load, not the targets.
# The floor (crates/proctor-net/examples/passthrough.rs) copies bytes between pgbench and PostgreSQL
# on event loops laid out as Proctor's, and does nothing else: Proctor over the floor is the cost of
# Proctor's own work, and the floor over pgbouncer is as near pgbouncer as a gateway built so can get.
# floor-uring (passthrough_uring.rs) is that floor on io_uring: what io_uring would save such a gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
rounds=${2:-3}
clients=${CLIENTS:-8}
threads=${THREADS:-2}
scale=${SCALE:-10}
sslmode=${SSLMODE:-disable}
direct_port=5432
proctor_port=${PROCTOR_PORT:-35432}
baseline_port=${BASELINE_PORT:-37432}
baseline=${BASELINE:-}
unguarded=${UNGUARDED:-}
unguarded_port=${UNGUARDED_PORT:-38432}
guardrails='guardrails = "recommended"'
floor=${FLOOR:-}
floor_port=${FLOOR_PORT:-39432}
floor_uring_port=${FLOOR_URING_PORT:-39433}
if [ -n "$floor" ] && [ "$sslmode" != disable ]; then
  echo "FLOOR needs SSLMODE=disable: the floor would pass TLS through to PostgreSQL, not end it" >&2
  exit 2
fi
bouncer_port=${BOUNCER_PORT:-36432}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

source bench/gateway_config.sh
require_machine_postgres
command -v pgbouncer >/dev/null || { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; }
proctor=${PROCTOR:-${CARGO_TARGET_DIR:-target}/release/proctor}
[ -n "${PROCTOR:-}" ] || cargo build --release -q -p proctor
[ -z "$floor" ] || cargo build --release -q -p proctor-net --example passthrough --example passthrough_uring

psql -X -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists proctor_bench' \
  -c 'create database proctor_bench'
pgbench -q -i -s "$scale" -h 127.0.0.1 -U postgres proctor_bench >/dev/null 2>&1

# A gateway still listening on one of these ports would answer in place of the build under test.
require_free_ports "$proctor_port" "$bouncer_port" ${baseline:+"$baseline_port"} ${unguarded:+"$unguarded_port"} \
  ${floor:+"$floor_port" "$floor_uring_port"}
gateway_config "$work/proctor-data" "$proctor_port" "$guardrails" > "$work/proctor.toml"
export PROCTOR_BENCH_TOKEN=bench-token
"$proctor" serve --config "$work/proctor.toml" 2>"$work/proctor.log" &
proctor_pid=$!
targets=(direct proctor pgbouncer)
if [ -n "$baseline" ]; then
  gateway_config "$work/baseline-data" "$baseline_port" "$guardrails" > "$work/baseline.toml"
  "$baseline" serve --config "$work/baseline.toml" 2>"$work/baseline.log" &
  targets+=(baseline)
fi
if [ -n "$unguarded" ]; then
  gateway_config "$work/unguarded-data" "$unguarded_port" > "$work/unguarded.toml"
  "$proctor" serve --config "$work/unguarded.toml" 2>"$work/unguarded.log" &
  targets+=(unguarded)
fi
if [ -n "$floor" ]; then
  "${CARGO_TARGET_DIR:-target}"/release/examples/passthrough "127.0.0.1:$floor_port" "127.0.0.1:$direct_port" &
  "${CARGO_TARGET_DIR:-target}"/release/examples/passthrough_uring "127.0.0.1:$floor_uring_port" "127.0.0.1:$direct_port" &
  targets+=(floor floor-uring)
fi

start_pgbouncer "$work/pgbouncer" "$bouncer_port" "$sslmode"

for _ in $(seq 1 100); do
  pg_isready -q -h 127.0.0.1 -p "$proctor_port" && pg_isready -q -h 127.0.0.1 -p "$bouncer_port" \
    && { [ -z "$baseline" ] || pg_isready -q -h 127.0.0.1 -p "$baseline_port"; } \
    && { [ -z "$unguarded" ] || pg_isready -q -h 127.0.0.1 -p "$unguarded_port"; } \
    && { [ -z "$floor" ] || pg_isready -q -h 127.0.0.1 -p "$floor_port"; } \
    && { [ -z "$floor" ] || pg_isready -q -h 127.0.0.1 -p "$floor_uring_port"; } && break
  sleep 0.1
done

cpu_times() { # -> steal and total time of all CPUs so far, in ticks
  awk '/^cpu / { total = 0; for (i = 2; i <= NF; i++) total += $i; print $9, total }' /proc/stat
}

run() { # target mode -> tps and the percentage of the run's CPU time the host stole
  local target=$1 mode=$2 port user args
  case $target in
    direct) port=$direct_port user=postgres ;;
    proctor) port=$proctor_port user=bench ;;
    baseline) port=$baseline_port user=bench ;;
    unguarded) port=$unguarded_port user=bench ;;
    pgbouncer) port=$bouncer_port user=postgres ;;
    floor) port=$floor_port user=postgres ;;
    floor-uring) port=$floor_uring_port user=postgres ;;
  esac
  case $mode in
    select-simple) args=(-S -M simple) ;;
    select-extended) args=(-S -M extended) ;;
    select-prepared) args=(-S -M prepared) ;;
    update-simple) args=(-N -M simple) ;;
  esac
  local before after tps
  before=$(cpu_times)
  tps=$(PGSSLMODE=$sslmode PGPASSWORD=$PROCTOR_BENCH_TOKEN pgbench -n "${args[@]}" -c "$clients" -j "$threads" \
    -T "$seconds" -h 127.0.0.1 -p "$port" -U "$user" proctor_bench 2>/dev/null | awk '/^tps/ { print $3; exit }')
  after=$(cpu_times)
  echo "$tps $before $after" | awk '{ total = $5 - $3; printf "%s %.1f\n", $1, (total > 0 ? 100 * ($4 - $2) / total : 0) }'
}

read -r -a modes <<< "${MODES:-select-simple select-extended select-prepared update-simple}"
for round in $(seq 1 "$rounds"); do
  for mode in "${modes[@]}"; do
    for target in "${targets[@]}"; do
      read -r tps steal < <(run "$target" "$mode")
      echo "$round $mode $target $tps $steal" >> "$work/results"
      echo "round $round  $mode  $target  $tps tps  (steal $steal %)" >&2
    done
  done
done

echo
median_of() { # numbers, one a line -> their median
  sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
median() { # target [column] -> the median over the rounds of $mode of its TPS (or of another column)
  awk -v m="$mode" -v t="$1" -v c="${2:-4}" '$2 == m && $3 == t { print $c }' "$work/results" | median_of
}
ratios() { # target other -> target's TPS over other's in each round of $mode, in round order
  awk -v m="$mode" -v a="$1" -v b="$2" -v n="$rounds" \
    '$2 == m && $3 == a { x[$1] = $4 } $2 == m && $3 == b { y[$1] = $4 }
     END { for (r = 1; r <= n; r++) if (y[r] > 0) print x[r] / y[r] }' "$work/results"
}
ratio() { # target other -> the median of the rounds' ratios: each compares runs seconds apart
  ratios "$1" "$2" | median_of
}

echo "pgbench, $clients clients, $threads threads, ${seconds}s x $rounds rounds, scale $scale, sslmode $sslmode"
echo "(median TPS; each ratio is the median of the rounds' ratios, not a ratio of the medians)"
printf '%-16s %10s %10s %10s %14s %14s %16s\n' mode direct proctor pgbouncer proctor/direct bouncer/direct proctor/bouncer
for mode in "${modes[@]}"; do
  printf '%-16s %10.0f %10.0f %10.0f %14.2f %14.2f %16.2f\n' "$mode" "$(median direct)" "$(median proctor)" \
    "$(median pgbouncer)" "$(ratio proctor direct)" "$(ratio pgbouncer direct)" "$(ratio proctor pgbouncer)"
done
echo
echo "proctor/pgbouncer in each round"
for mode in "${modes[@]}"; do
  printf '%-16s' "$mode"; ratios proctor pgbouncer | awk '{ printf " %6.2f", $1 } END { print "" }'
done
echo
echo "host steal (median % of the machine's CPU time in each target's rounds)"
printf '%-16s' mode; printf ' %10s' "${targets[@]}"; echo
for mode in "${modes[@]}"; do
  printf '%-16s' "$mode"
  for target in "${targets[@]}"; do printf ' %10s' "$(median "$target" 5)"; done
  echo
done
against_proctor() { # other target: its median TPS per mode, and its ratio to this build's
  echo
  printf '%-16s %10s %10s %18s\n' mode proctor "$1" "$1/proctor"
  for mode in "${modes[@]}"; do
    printf '%-16s %10.0f %10.0f %18.2f\n' "$mode" "$(median proctor)" "$(median "$1")" "$(ratio "$1" proctor)"
  done
}
[ -z "$baseline" ] || against_proctor baseline
[ -z "$unguarded" ] || against_proctor unguarded
if [ -n "$floor" ]; then
  echo
  printf '%-16s %10s %10s %16s %16s\n' mode proctor floor proctor/floor floor/pgbouncer
  for mode in "${modes[@]}"; do
    printf '%-16s %10.0f %10.0f %16.2f %16.2f\n' "$mode" "$(median proctor)" "$(median floor)" \
      "$(ratio proctor floor)" "$(ratio floor pgbouncer)"
  done
  echo
  echo "floor/pgbouncer in each round"
  for mode in "${modes[@]}"; do
    printf '%-16s' "$mode"; ratios floor pgbouncer | awk '{ printf " %6.2f", $1 } END { print "" }'
  done
  echo
  printf '%-16s %10s %10s %22s %18s\n' mode floor floor-uring floor-uring/pgbouncer floor-uring/floor
  for mode in "${modes[@]}"; do
    printf '%-16s %10.0f %10.0f %22.2f %18.2f\n' "$mode" "$(median floor)" "$(median floor-uring)" \
      "$(ratio floor-uring pgbouncer)" "$(ratio floor-uring floor)"
  done
  echo
  echo "floor-uring/floor in each round"
  for mode in "${modes[@]}"; do
    printf '%-16s' "$mode"; ratios floor-uring floor | awk '{ printf " %6.2f", $1 } END { print "" }'
  done
fi
# Stop the gateway first, so that the journal holds everything it acknowledged when it is counted.
kill -TERM "$proctor_pid"
wait "$proctor_pid" || true
sessions=$("$proctor" sessions list --config "$work/proctor.toml" --format json | grep -c '"id"' || true)
queries=$("$proctor" sessions list --config "$work/proctor.toml" --format json \
  | awk -F': ' '/"queries"/ { gsub(/,/, "", $2); n += $2 } END { print n + 0 }')
echo "recorded by proctor during the run: $sessions sessions, $queries statements"
