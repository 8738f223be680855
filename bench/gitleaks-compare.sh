#!/usr/bin/env bash
# The shipped gitleaks rule set in Proctor against gitleaks itself: the same findings where both have a
# rule? Writes the corpora of bench/mask-quality.sh (clean and seeded, files of about 64 KiB) and one
# of 20 strings drawn from each rule's regex (alone, quoted, in a JSON line), runs
# gitleaks over them with crates/proctor-mask/rules/gitleaks.toml as it ships, runs Proctor's scanner
# with that set alone (no built-in detectors) over the same files, and compares per rule the findings
# (file, line, rule, secret): both / gitleaks only / Proctor only. Also CPU time per MB on one core.
#
#   bash bench/gitleaks-compare.sh [MEGABYTES] [SEED]        # default 20 MB, seed 1
#
# The reference tool is gitleaks 8.26.0 as Debian packages it (gitleaks_8.26.0-1+b1_amd64.deb, from
# Debian's archive, deb.debian.org, unstable), fetched once into target/gitleaks/ and checked against
# its SHA-256; it is used for this comparison only, never shipped or linked. 8.26 is the oldest
# gitleaks Debian carries that reads the rule file as 8.30 wrote it (the file asks for 8.25 or later:
# `[[rules.allowlists]]`, and a rule's secret is its first non-empty capture group, not the whole
# match). Like 8.26's default, no base64 decoding pass (`--max-decode-depth 0`). GITLEAKS=path uses
# another gitleaks binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."

mb="${1:-20}"
seed="${2:-1}"
deb=gitleaks_8.26.0-1+b1_amd64.deb
sha256=b228ade47a811ffc94d258bd84b1c257458b4e81e37c55201c9d912c0e01bfdb
cache=target/gitleaks
rules=crates/proctor-mask/rules/gitleaks.toml

gitleaks="${GITLEAKS:-$cache/8.26.0/gitleaks}"
if [ ! -x "$gitleaks" ]; then
  mkdir -p "$cache/8.26.0"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -fsSL -o "$tmp/$deb" "http://deb.debian.org/debian/pool/main/g/gitleaks/$deb"
  echo "$sha256  $tmp/$deb" | sha256sum -c --quiet
  dpkg-deb -x "$tmp/$deb" "$tmp/root"
  cp "$tmp/root/usr/bin/gitleaks" "$gitleaks"
fi

# One core for both, as the harness measures Proctor.
pin=()
if command -v taskset >/dev/null; then
  pin=(taskset -c 0)
fi
export GOMAXPROCS=1

cargo build -q --release -p proctor-mask --example mask_quality
example=("${CARGO_TARGET_DIR:-target}/release/examples/mask_quality")
dir="$cache/corpus-${mb}mb-seed$seed"
rm -rf "$dir"
"${example[@]}" --mb "$mb" --seed "$seed" --write "$dir"

# gitleaks' CPU seconds (user + system) on a directory, report written to $2.
gitleaks_seconds() {
  local times
  TIMEFORMAT='%U %S'
  times=$({ time "${pin[@]}" "$gitleaks" detect --no-git --source "$1" --config "$rules" \
    --report-format json --report-path "$2" --max-decode-depth 0 --exit-code 0 \
    --no-banner --log-level error >/dev/null 2>&1; } 2>&1)
  awk '{print $1 + $2}' <<<"$times"
}

# Its start-up (reading the rule file, compiling the regexes) on one short file, taken off its times
# below so that both figures are the scan alone.
mkdir -p "$dir/startup"
echo "nothing to see" >"$dir/startup/0000.txt"
startup=$(gitleaks_seconds "$dir/startup" "$dir/startup-gitleaks.json")
echo "gitleaks start-up: $startup s CPU (taken off the times below)"

for corpus in seeded clean rules; do
  echo
  report="$dir/$corpus-gitleaks.json"
  seconds=$(gitleaks_seconds "$dir/$corpus" "$report")
  scan=$(awk -v a="$seconds" -v b="$startup" 'BEGIN {print a - b}')
  "${pin[@]}" "${example[@]}" --compare "$dir/$corpus" --report "$report" --gitleaks-seconds "$scan"
done
