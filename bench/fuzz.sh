#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each, one after the other, and
# prints the executions of each. Needs a nightly toolchain and cargo-fuzz
# (`cargo +nightly install cargo-fuzz --locked`).
#
#   bash bench/fuzz.sh [SECONDS] [TARGET...]
#
# The seeds in fuzz/corpus/<target> are read, never written: what a run finds goes to
# fuzz/target/corpus/<target>, kept for the next run. A crash stops the script, names the target and
# leaves its input in fuzz/artifacts/<target>; `cargo +nightly fuzz run TARGET INPUT` replays it.
# FUZZ_BUILD gives other build options (default `-O`: optimized, with AddressSanitizer); `.ci/run`
# smoke-tests with `--dev -s none`, which builds in a fraction of the time.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

read -ra build <<<"${FUZZ_BUILD:--O}"
cargo +nightly fuzz build "${build[@]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
printf '%-14s %12s %8s\n' target executions seconds
for target in "${targets[@]}"; do
  mkdir -p "target/corpus/$target"
  if ! cargo +nightly fuzz run "${build[@]}" "$target" "target/corpus/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "$target: crashed; the input is in fuzz/artifacts/$target" >&2
    exit 1
  fi
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')
  printf '%-14s %12s %8s\n' "$target" "$runs" "$seconds"
done
