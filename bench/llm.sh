#!/usr/bin/env bash
# The LLM proxy's cost on a streamed completion: time to first byte and per-chunk overhead, through
# Proctor against directly to the same local fixture provider (its OpenAI wire format), in one run.
#
#   bash bench/llm.sh [REQUESTS_PER_ROUND] [ROUNDS] [CHUNKS]
#
# Each round streams REQUESTS_PER_ROUND completions of CHUNKS content chunks directly, then through
# Proctor (a new conversation each: the whole request, record and stream path). Prints medians.
set -euo pipefail
cd "$(dirname "$0")/.."

requests=${1:-50}
rounds=${2:-3}
chunks=${3:-200}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -q -p proctor

FIXTURE_LAST_EVENT_DELAY=0 FIXTURE_LONG_CHUNKS=$chunks \
  python3 crates/proctor/tests/fixtures/llm_provider.py "$work/provider.jsonl" > "$work/port" &
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(head -1 "$work/port")
http_port=${PROCTOR_HTTP_PORT:-38080}
source bench/gateway_config.sh
require_free_ports "$http_port"
cat > "$work/proctor.toml" <<TOML
[server]
data_dir = "$work/data"
postgres_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:$http_port"

[[identity]]
name = "bench"
token_env = "PROCTOR_BENCH_TOKEN"

[[llm.provider]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:$port"
allow = ["bench"]
TOML
export PROCTOR_BENCH_TOKEN=bench-token
target/release/proctor serve --config "$work/proctor.toml" 2>"$work/proctor.log" &
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null && break; sleep 0.1; done

for round in $(seq 1 "$rounds"); do
  python3 bench/llm_client.py "http://127.0.0.1:$port" none "$requests" | sed 's/^/direct /' >> "$work/results"
  python3 bench/llm_client.py "http://127.0.0.1:$http_port/llm/openai" "$PROCTOR_BENCH_TOKEN" "$requests" \
    | sed 's/^/proctor /' >> "$work/results"
  echo "round $round done" >&2
done

python3 - "$work/results" "$chunks" <<'PY'
import json, statistics, sys
rows = {"direct": [], "proctor": []}
for line in open(sys.argv[1]):
    target, data = line.split(" ", 1)
    rows[target].append(json.loads(data))
chunks = int(sys.argv[2])
med = lambda target, key: statistics.median(r[key] for r in rows[target]) * 1000
print(f"streamed completions of {chunks} chunks, {len(rows['direct'])} per target (median ms)")
print(f"{'':10} {'ttfb':>8} {'total':>8}")
for target in rows:
    print(f"{target:10} {med(target, 'ttfb'):8.2f} {med(target, 'total'):8.2f}")
print(f"ttfb through Proctor - direct: {med('proctor', 'ttfb') - med('direct', 'ttfb'):.2f} ms "
      f"(ratio {med('proctor', 'ttfb') / med('direct', 'ttfb'):.2f})")
extra = (med('proctor', 'total') - med('proctor', 'ttfb')) - (med('direct', 'total') - med('direct', 'ttfb'))
print(f"overhead per streamed chunk after the first: {extra * 1000 / chunks:.1f} us")
PY
