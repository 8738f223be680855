#!/usr/bin/env bash
# Whether slow work in one session delays the others: the latency of `select 1` through Proctor,
# alone and while other clients log in over and over or send prompts of megabytes to the LLM proxy,
# in one run for this build and (BASELINE=) an older one.
#
#   bash bench/event-loops.sh [SECONDS_PER_RUN] [ROUNDS]
#   BASELINE=/path/to/older/proctor bash bench/event-loops.sh ...
#
# Each gateway runs with one worker, so that every PostgreSQL session shares one event loop: what one
# session's work holds up, the measured session waits for. The gateways run on the first core and
# every client on the others (taskset), so that the clients' own work (libpq's SCRAM, the prompts'
# JSON) does not take the gateway's core. Two measured clients:
#   - "session": one connection, `select 1` after `select 1` (pgbench -c 1): mean and 99th
#     percentile of its transactions;
#   - "new-session": a new connection for each `select 1` (pgbench -C): it must also be accepted,
#     logged in and opened; pgbench's mean, connection included (its log leaves the connection out).
# Three loads beside them:
#   - "quiet": none;
#   - "logins": 4 clients that log in as a configured identity for each statement (pgbench -C -c 4);
#     its SCRAM keys cost 4,096 PBKDF2 rounds if derived at each login;
#   - "prompts": 2 clients that each send 7 MiB prompts to the LLM proxy, one after another (masked
#     before they leave; the local fixture provider answers).
# Prints, per gateway, client and load, the median over rounds of the mean (and for "session" the
# 99th percentile) latency in ms, and each over its value under "quiet".
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
rounds=${2:-3}
baseline=${BASELINE:-}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

source bench/gateway_config.sh
require_machine_postgres
cargo build --release -q -p proctor
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists proctor_bench' \
  -c 'create database proctor_bench'
echo 'select 1;' > "$work/select1.sql"

python3 crates/proctor/tests/fixtures/llm_provider.py /dev/null > "$work/provider.port" &
for _ in $(seq 1 100); do [ -s "$work/provider.port" ] && break; sleep 0.1; done
provider_port=$(head -n 1 "$work/provider.port")

export PROCTOR_BENCH_TOKEN=bench-token
# The gateways on core 0, the clients on the rest (when there are several cores and taskset).
gateway_cpu=()
client_cpu=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  gateway_cpu=(taskset -c 0)
  client_cpu=(taskset -c "1-$(($(nproc) - 1))")
fi
gateways=(proctor)
binaries=(target/release/proctor)
if [ -n "$baseline" ]; then
  gateways+=(baseline)
  binaries+=("$baseline")
fi
declare -A pg_port http_port
for i in "${!gateways[@]}"; do
  name=${gateways[$i]}
  pg_port[$name]=$((46432 + i))
  http_port[$name]=$((48080 + i))
  require_free_ports "${pg_port[$name]}" "${http_port[$name]}"
  gateway_config "$work/$name-data" "${pg_port[$name]}" "
[[llm.provider]]
name = \"fixture\"
kind = \"openai\"
base_url = \"http://127.0.0.1:$provider_port\"
allow = [\"bench\"]" \
    | sed -e "s/^http_listen = .*/http_listen = \"127.0.0.1:${http_port[$name]}\"\nworkers = 1/" \
    > "$work/$name.toml"
  "${gateway_cpu[@]}" "${binaries[$i]}" serve --config "$work/$name.toml" 2>"$work/$name.log" &
done
for i in "${!gateways[@]}"; do
  name=${gateways[$i]}
  for _ in $(seq 1 100); do
    pg_isready -q -h 127.0.0.1 -p "${pg_port[$name]}" && break
    # A build older than providers' allow lists refuses the key: it gets the provider without it.
    if grep -q 'unknown field `allow`' "$work/$name.log"; then
      awk '/^\[\[llm.provider\]\]/ { p = 1 } !(p && /^allow = /)' "$work/$name.toml" > "$work/$name.toml.new"
      mv "$work/$name.toml.new" "$work/$name.toml"
      "${gateway_cpu[@]}" "${binaries[$i]}" serve --config "$work/$name.toml" 2>"$work/$name.log" &
    fi
    sleep 0.1
  done
done

cat > "$work/prompts.py" <<'PY'
"""Sends 7 MiB prompts to the LLM proxy, one after another, until killed."""
import json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
line = "order 20261207 shipped to warehouse 12 by truck 7741; tracking id a1b2c3d4e5f6 noted\n"
prompt = line * (7 * 1024 * 1024 // len(line))
body = json.dumps({"model": "text", "messages": [{"role": "user", "content": prompt}]}).encode()
while True:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json",
                                                 "Authorization": "Bearer " + token})
    urllib.request.urlopen(request).read()
PY

session_latency() { # port: the mean and the 99th percentile latency in ms of one session's statements
  rm -f "$work"/latency.*
  PGPASSWORD=$PROCTOR_BENCH_TOKEN "${client_cpu[@]}" pgbench -n -c 1 -j 1 -T "$seconds" \
    -f "$work/select1.sql" -l --log-prefix="$work/latency" -h 127.0.0.1 -p "$1" -U bench \
    proctor_bench >/dev/null 2>&1
  # Each line of pgbench's log: client, transaction, latency in microseconds, ...
  cat "$work"/latency.* | awk '{ print $3 / 1000 }' | sort -n \
    | awk '{ v[NR] = $1; sum += $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f %.3f\n", sum / NR, v[i] }'
}

new_session_latency() { # port: pgbench's mean latency in ms with a connection per statement
  PGPASSWORD=$PROCTOR_BENCH_TOKEN "${client_cpu[@]}" pgbench -n -C -c 1 -j 1 -T "$seconds" \
    -f "$work/select1.sql" -h 127.0.0.1 -p "$1" -U bench proctor_bench 2>/dev/null \
    | awk '/^latency average/ { print $4, "-"; exit }'
}

for round in $(seq 1 "$rounds"); do
  for name in "${gateways[@]}"; do
    port=${pg_port[$name]}
    for load in quiet logins prompts; do
      load_pids=()
      case $load in
        logins)
          PGPASSWORD=$PROCTOR_BENCH_TOKEN "${client_cpu[@]}" pgbench -n -C -c 4 -j 1 -T $((seconds * 2 + 5)) \
            -f "$work/select1.sql" -h 127.0.0.1 -p "$port" -U bench proctor_bench >/dev/null 2>&1 &
          load_pids+=($!)
          ;;
        prompts)
          for _ in 1 2; do
            "${client_cpu[@]}" python3 "$work/prompts.py" \
              "http://127.0.0.1:${http_port[$name]}/llm/fixture/v1/chat/completions" \
              "$PROCTOR_BENCH_TOKEN" >/dev/null 2>&1 &
            load_pids+=($!)
          done
          ;;
      esac
      sleep 1
      echo "$name session $load $(session_latency "$port")" >> "$work/results"
      echo "$name new-session $load $(new_session_latency "$port")" >> "$work/results"
      [ ${#load_pids[@]} -eq 0 ] || { kill "${load_pids[@]}" 2>/dev/null || true; wait "${load_pids[@]}" 2>/dev/null || true; }
    done
  done
  echo "round $round done" >&2
done

python3 - "$work/results" <<'PY'
import statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    gateway, client, load, mean, p99 = line.split()
    runs[(gateway, client, load)].append((float(mean), float(p99) if p99 != "-" else float("nan")))
median = {key: tuple(statistics.median(v[i] for v in values) for i in (0, 1))
          for key, values in runs.items()}
print(f"{'gateway':<10} {'client':<12} {'load':<8} {'mean ms':>8} {'/ quiet':>8} {'p99 ms':>8} {'/ quiet':>8}")
for (gateway, client, load), (mean, p99) in sorted(median.items()):
    quiet_mean, quiet_p99 = median[(gateway, client, "quiet")]
    tail = "" if p99 != p99 else f" {p99:>8.3f} {p99 / quiet_p99:>8.2f}"
    print(f"{gateway:<10} {client:<12} {load:<8} {mean:>8.3f} {mean / quiet_mean:>8.2f}{tail}")
PY
