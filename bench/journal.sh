#!/usr/bin/env bash
# The journal on its own: events per second committed by many concurrent sessions through the group
# commit, how long the store then takes to catch up and seal, and how fast `proctor verify` checks a
# bundle of the longest session.
#
#   bash bench/journal.sh [SESSIONS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

sessions=${1:-64}
seconds=${2:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release -q -p proctor
cargo build --release -q -p proctor-journal --example journal_bench
out=$(target/release/examples/journal_bench "$work/data" "$sessions" "$seconds")
echo "$out"
bundle=$(echo "$out" | awk '/^bundle:/ { print $2 }')
events=$(echo "$out" | awk '/^bundle:/ { print $4 }')
key=$(echo "$out" | awk '/^bundle:/ { print $NF }')

runs=5
start=$(date +%s.%N)
for _ in $(seq 1 "$runs"); do
  target/release/proctor verify "$bundle" --key "$key" >/dev/null
done
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v r="$runs" -v n="$events" -v b="$(stat -c %s "$bundle")" 'BEGIN {
  t = (e - s) / r
  printf "verify: a bundle of %d events (%.1f MB) in %.3f s: %.0f events/s\n", n, b / 1048576, t, n / t
}'
