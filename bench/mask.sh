#!/usr/bin/env bash
# Masking's cost: the scanner's throughput on one core (criterion: clean text, result rows, text dense
# with secrets), and, with BASELINE=/path/to/a/proctor/built/before/masking, pgbench through both.
#
#   bash bench/mask.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench -q -p proctor-mask --bench scan -- --warm-up-time 1 --measurement-time 3 2>&1 \
  | grep -E '^scan/|thrpt' || true
if [ -n "${BASELINE:-}" ]; then
  bash bench/pgbench.sh "${1:-10}" "${2:-3}"
fi
