#!/usr/bin/env bash
# Instructions per `pgbench -S` transaction in each of the gateway's threads, counted by callgrind.
# The count is the same whatever else the machine is doing, so a change too small to show through the
# noise of bench/pgbench.sh still shows here. It counts user space only (not the kernel's sends and
# receives), and valgrind hides SHA-NI, so hashing counts as software SHA-256.
#
#   bash bench/instructions.sh [TRANSACTIONS_PER_CLIENT]
#   BASELINE=/path/to/older/proctor bash bench/instructions.sh ...   # also an older build, to compare
#   PROCTOR=/path/to/proctor bash bench/instructions.sh ...   # count that build (default: build this tree's)
#
# The gateway runs as recommended for production, with guardrails = "recommended".
#
# The event loops' instructions are also split into the parts of the work they do (hashing, encoding,
# the commit, the protocol, masking, guardrails, the runtime...: see bench/instruction-parts.awk), the
# budget each part is held to; `part:` lines give them.
#
# Each build runs twice under callgrind, with a quarter of the transactions and then all of them; the
# difference, divided by the extra transactions, leaves out start-up and log-in (SCRAM) costs.
set -euo pipefail
cd "$(dirname "$0")/.."

per_client=${1:-1000}
clients=8
port=${PORT:-39432}
baseline=${BASELINE:-}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
source bench/gateway_config.sh
require_machine_postgres
proctor=${PROCTOR:-${CARGO_TARGET_DIR:-target}/release/proctor}
[ -n "${PROCTOR:-}" ] || cargo build --release -q -p proctor
if ! psql -X -q -h 127.0.0.1 -U postgres -d proctor_bench -c 'select 1 from pgbench_accounts limit 1' \
  >/dev/null 2>&1; then
  psql -X -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists proctor_bench' \
    -c 'create database proctor_bench'
  pgbench -q -i -s 10 -h 127.0.0.1 -U postgres proctor_bench >/dev/null 2>&1
fi

require_free_ports "$port"

count() { # binary, transactions per client -> one line per thread: name and instructions
  local binary=$1 transactions=$2 dir
  dir=$work/$(date +%s%N)
  mkdir -p "$dir"
  gateway_config "$dir/data" "$port" 'guardrails = "recommended"' > "$dir/proctor.toml"
  PROCTOR_BENCH_TOKEN=bench-token valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$dir/callgrind.out" "$binary" serve --config "$dir/proctor.toml" \
    >"$dir/log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 240); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.5
  done
  PGSSLMODE=disable PGPASSWORD=bench-token pgbench -n -S -M simple -c "$clients" -j 2 -t "$transactions" \
    -h 127.0.0.1 -p "$port" -U bench proctor_bench >/dev/null 2>&1
  kill -INT "$pid"
  wait "$pid" || true
  # Threads by what they run (a build with LTO inlines most names away): callgrind numbers the main
  # thread 1; the event loops run the PostgreSQL relay; of the others, those that call SQLite are the
  # ingest thread (and the blocking threads that look logins up, the same in both runs, so they cancel
  # out below).
  for file in "$dir"/callgrind.out-*; do
    local thread=other
    if [[ $file == *-01 ]]; then
      thread=main
    elif grep -q 'proctor_pg::' "$file"; then
      thread=event-loop
    elif grep -q 'sqlite3' "$file"; then
      thread=ingest
    fi
    echo "$thread $(awk '/^summary:/ { print $2; exit }' "$file")"
    if [ "$thread" = event-loop ]; then
      callgrind_annotate --auto=no --threshold=100 "$file" 2>/dev/null | awk -f bench/instruction-parts.awk
    fi
  done
}

per_transaction() { # binary -> one line per thread: name and instructions per transaction
  local fewer=$((per_client / 4))
  count "$1" "$fewer" > "$work/fewer"
  count "$1" "$per_client" > "$work/more"
  awk -v extra=$((clients * (per_client - fewer))) '
    NR == FNR { before[$1] += $2; next }
    { after[$1] += $2 }
    END { for (t in after) { if (t !~ /^part:/) total += after[t] - before[t]
                             printf "%s %.0f\n", t, (after[t] - before[t]) / extra }
          printf "total %.0f\n", total / extra }' "$work/fewer" "$work/more" | sort
}

per_transaction "$proctor" > "$work/proctor"
echo "instructions per pgbench -S transaction (callgrind, $clients clients, $per_client transactions each)"
if [ -z "$baseline" ]; then
  printf '%-16s %12s\n' thread proctor
  awk '{ printf "%-16s %12s\n", $1, $2 }' "$work/proctor"
else
  per_transaction "$baseline" > "$work/baseline"
  printf '%-16s %12s %12s %18s\n' thread proctor baseline baseline/proctor
  join -a 1 -a 2 -e 0 -o 0,1.2,2.2 "$work/proctor" "$work/baseline" | awk '{ printf "%-16s %12s %12s %18.3f\n", $1, $2, $3, ($2 > 0 ? $3 / $2 : 0) }'
fi
