#!/usr/bin/env bash
# The LLM proxy's cost on a streamed completion: time to first byte and per-chunk overhead, through
# Proctor against directly to the same local fixture provider (its OpenAI wire format), in one run.
#
#   bash bench/llm.sh [REQUESTS_PER_ROUND] [ROUNDS] [CHUNKS]
#   PROCTOR=/path/to/proctor bash bench/llm.sh ...   # measure that build (default: build this tree's)
#   BASELINE=/path/to/older/proctor bash bench/llm.sh ...   # also an older build, to compare
#
# Each round streams REQUESTS_PER_ROUND completions of CHUNKS content chunks directly, then through
# Proctor (then through the baseline build, if given), one after the other on one keep-alive
# connection each. Every request sends the same conversation, so after the first it continues one
# chain: the token check, the conversation lookup, the recorded `llm.request`, the forward and the
# stream. Prints the medians over all requests, and per target the median over the rounds of the
# round's median time to first byte minus (and over) the direct one: each compares requests made
# seconds apart, so load from other work on the machine falls on all targets alike.
set -euo pipefail
cd "$(dirname "$0")/.."

requests=${1:-50}
rounds=${2:-3}
chunks=${3:-200}
baseline=${BASELINE:-}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

proctor=${PROCTOR:-${CARGO_TARGET_DIR:-target}/release/proctor}
[ -n "${PROCTOR:-}" ] || cargo build --release -q -p proctor

FIXTURE_LAST_EVENT_DELAY=0 FIXTURE_LONG_CHUNKS=$chunks \
  python3 crates/proctor/tests/fixtures/llm_provider.py "$work/provider.jsonl" > "$work/port" &
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(head -1 "$work/port")
http_port=${PROCTOR_HTTP_PORT:-38080}
baseline_port=${BASELINE_HTTP_PORT:-38081}
source bench/gateway_config.sh
require_free_ports "$http_port" ${baseline:+"$baseline_port"}
config() { # data dir, HTTP port
  cat <<TOML
[server]
data_dir = "$1"
postgres_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:$2"

[[identity]]
name = "bench"
token_env = "PROCTOR_BENCH_TOKEN"

[[llm.provider]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:$port"
allow = ["bench"]
TOML
}
export PROCTOR_BENCH_TOKEN=bench-token
targets=(direct proctor)
config "$work/data" "$http_port" > "$work/proctor.toml"
"$proctor" serve --config "$work/proctor.toml" 2>"$work/proctor.log" &
if [ -n "$baseline" ]; then
  config "$work/baseline-data" "$baseline_port" > "$work/baseline.toml"
  "$baseline" serve --config "$work/baseline.toml" 2>"$work/baseline.log" &
  targets+=(baseline)
fi
for p in "$http_port" ${baseline:+"$baseline_port"}; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p/healthz" >/dev/null && break; sleep 0.1; done
done

for round in $(seq 1 "$rounds"); do
  for target in "${targets[@]}"; do
    case $target in
      direct) url="http://127.0.0.1:$port" key=none ;;
      proctor) url="http://127.0.0.1:$http_port/llm/openai" key=$PROCTOR_BENCH_TOKEN ;;
      baseline) url="http://127.0.0.1:$baseline_port/llm/openai" key=$PROCTOR_BENCH_TOKEN ;;
    esac
    python3 bench/llm_client.py "$url" "$key" "$requests" | sed "s/^/$round $target /" >> "$work/results"
  done
  echo "round $round done" >&2
done

python3 - "$work/results" "$chunks" "${targets[@]}" <<'PY'
import json, statistics, sys
path, chunks, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = {}  # (round, target) -> results
for line in open(path):
    round_, target, data = line.split(" ", 2)
    rows.setdefault((int(round_), target), []).append(json.loads(data))
rounds = sorted({r for r, _ in rows})
every = lambda target: [x for r in rounds for x in rows[(r, target)]]
med = lambda target, key: statistics.median(x[key] for x in every(target)) * 1000
round_ttfb = lambda r, target: statistics.median(x["ttfb"] for x in rows[(r, target)]) * 1000
print(f"streamed completions of {chunks} chunks, {len(every('direct'))} per target in {len(rounds)} "
      f"rounds (median ms)")
print(f"{'':10} {'ttfb':>8} {'total':>8}")
for target in targets:
    print(f"{target:10} {med(target, 'ttfb'):8.2f} {med(target, 'total'):8.2f}")
print("time to first byte against direct (median over the rounds of each round's medians):")
for target in targets[1:]:
    extra = statistics.median(round_ttfb(r, target) - round_ttfb(r, "direct") for r in rounds)
    ratio = statistics.median(round_ttfb(r, target) / round_ttfb(r, "direct") for r in rounds)
    print(f"  {target:10} +{extra:.2f} ms (ratio {ratio:.2f})")
if "baseline" in targets:
    ratio = statistics.median(round_ttfb(r, "proctor") / round_ttfb(r, "baseline") for r in rounds)
    print(f"  proctor/baseline ttfb: {ratio:.2f}")
print("overhead per streamed chunk after the first:")
for target in targets[1:]:
    extra = (med(target, 'total') - med(target, 'ttfb')) - (med('direct', 'total') - med('direct', 'ttfb'))
    print(f"  {target:10} {extra * 1000 / chunks:.1f} us")
PY
