#!/usr/bin/env bash
# Masking quality and speed on generated traffic (SQL, JSON logs, CSV, terminal output): recall per
# detector on a corpus seeded with secrets, false positives per 100 MB on a clean corpus full of
# near-misses, and MB/s on one core with the built-in detectors and with the shipped gitleaks set, on
# clean and on secret-dense text. Deterministic for a seed.
#
#   bash bench/mask-quality.sh [MEGABYTES] [SEED]        # default 20 MB, seed 1
#   DENSITY=0.1 ROUNDS=5 ONLY=quality|speed bash bench/mask-quality.sh 100
set -euo pipefail
cd "$(dirname "$0")/.."

args=(--mb "${1:-20}" --seed "${2:-1}" --density "${DENSITY:-0.05}" --rounds "${ROUNDS:-3}")
if [ -n "${ONLY:-}" ]; then
  args+=(--only "$ONLY")
fi
cargo run -q --release -p proctor-mask --example mask_quality -- "${args[@]}"
