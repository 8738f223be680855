#!/usr/bin/env bash
# What the console waits for on a journal of 1,000,000 events: a fresh data dir filled through the
# journal's writer (crates/proctor-journal/examples/console_fill.rs: about 10,600 sessions of many
# identities, connections and protocols, and one session of 10,000 events), then `proctor serve` on
# it, and the API's reads, each RUNS times as an auditor: the median and the slowest of the server's
# time (its `Server-Timing: app;dur=` header) and of curl's whole request. The fill also prints the
# store's own times for the same reads.
#
# Targets, on the server's time: a page of sessions under 100 ms, the 10,000-event session's page
# (the session, all its events, its verification) under 500 ms.
#
#   bash bench/console.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-20}
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
serve_pid=
cleanup() {
  if [ -n "$serve_pid" ]; then
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p proctor
cargo build --release -q -p proctor-journal --example console_fill
out=$("$target/release/examples/console_fill" "$work/data")
echo "$out"
long=$(awk '/^long-session:/ { print $2 }' <<<"$out")
identity=$(awk '/^identity:/ { print $2 }' <<<"$out")

cat >"$work/proctor.toml" <<TOML
[server]
data_dir = "$work/data"
postgres_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
TOML
export PROCTOR_CONFIG="$work/proctor.toml"
proctor=("$target/release/proctor")
# Auditors are the identities of group `auditor` unless [web] says otherwise: they read everything.
token=$("${proctor[@]}" identity add bench-auditor --group auditor)

"${proctor[@]}" serve >/dev/null 2>"$work/serve.log" &
serve_pid=$!
ready=
for _ in $(seq 1 600); do
  ready=$(sed 's/\x1b\[[0-9;]*m//g' "$work/serve.log" | grep 'proctor is ready' || true)
  [ -n "$ready" ] && break
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "proctor serve stopped:" >&2
    cat "$work/serve.log" >&2
    exit 1
  fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "proctor serve did not start in 60 s" >&2; exit 1; }
http=$(grep -o 'http=[^ ]*' <<<"$ready" | cut -d= -f2)

get() { # path; writes the body to $work/body and the headers to $work/headers, prints "code seconds"
  curl -sS -o "$work/body" -D "$work/headers" -w '%{http_code} %{time_total}' \
    -H "Authorization: Bearer $token" "http://$http$1"
}

stats() { # file of numbers, factor: prints the median and the largest, times the factor
  if [ ! -s "$1" ]; then
    echo "- -"
    return
  fi
  sort -g "$1" | awk -v k="$2" '{ v[NR] = $1 * k } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.1f %.1f", m, v[NR]
  }'
}

missed=0
measure() { # name, path, target ms of the server's median time (0: none)
  local name=$1 path=$2 bound=$3 got app total
  : >"$work/app"
  : >"$work/total"
  for _ in $(seq 1 "$runs"); do
    got=$(get "$path")
    if [ "${got%% *}" != 200 ]; then
      echo "$name: GET $path answered ${got%% *}: $(head -c 400 "$work/body")" >&2
      exit 1
    fi
    echo "${got#* }" >>"$work/total"
    tr -d '\r' <"$work/headers" | grep -i '^server-timing:' | grep -o 'dur=[0-9.]*' | cut -d= -f2 \
      >>"$work/app" || true
  done
  read -r app_median app_max <<<"$(stats "$work/app" 1)"
  read -r total_median total_max <<<"$(stats "$work/total" 1000)"
  verdict=""
  if [ "$bound" -gt 0 ]; then
    if [ "$app_median" != "-" ] && awk -v m="$app_median" -v b="$bound" 'BEGIN { exit !(m < b) }'; then
      verdict="< $bound ok"
    else
      verdict="< $bound MISSED"
      missed=1
    fi
  fi
  printf "  %-40s %8s %8s %9s %9s %9s  %s\n" "$name" "$app_median" "$app_max" "$total_median" \
    "$total_max" "$(stat -c %s "$work/body")" "$verdict"
}

got=$(get "/api/v1/sessions")
if [ "${got%% *}" != 200 ]; then
  echo "GET /api/v1/sessions answered ${got%% *}: $(head -c 400 "$work/body")" >&2
  exit 1
fi
cursor=$( (grep -o '"next_cursor":"[^"]*"' "$work/body" || true) | cut -d'"' -f4)
[ -n "$cursor" ] || { echo "the first page of sessions has no next_cursor" >&2; exit 1; }

echo
echo "API, $runs runs each, as an auditor ($http): milliseconds"
printf "  %-40s %8s %8s %9s %9s %9s\n" "" "server" "" "curl" "" ""
printf "  %-40s %8s %8s %9s %9s %9s\n" "request" "median" "max" "median" "max" "bytes"
measure "sessions, first page" "/api/v1/sessions" 100
measure "sessions, identity=$identity" "/api/v1/sessions?identity=$identity" 100
measure "sessions, has_denials" "/api/v1/sessions?has_denials=true" 100
measure "sessions, text=order_items" "/api/v1/sessions?text=order_items" 100
measure "sessions, page 2 (cursor)" "/api/v1/sessions?cursor=$cursor" 100
measure "10k session: the session" "/api/v1/sessions/$long" 500
measure "10k session: its events (limit=10000)" "/api/v1/sessions/$long/events?limit=10000" 500
measure "10k session: its verification" "/api/v1/sessions/$long/verification" 500
# A text that one old session ran: the search reads every block of the store.
measure "sessions, text in one session only" "/api/v1/sessions?text=legacy_payroll_2019" 0
exit "$missed"
