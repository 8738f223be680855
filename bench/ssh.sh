#!/usr/bin/env bash
# SSH through Proctor, compared in one run with the same OpenSSH server reached directly: scp and sftp
# of one file (1 GiB) both ways, and the time of `ssh HOST true` run 100 times one after the other.
#
#   bash bench/ssh.sh [ROUNDS]              # default 3 rounds (or the ROUNDS variable)
#   SIZE_MB=64 bash bench/ssh.sh 1          # the file's size in MiB (default 1024)
#   LOGINS=20 bash bench/ssh.sh ...         # `ssh HOST true` per round and target (default 100)
#   TESTS="scp-up sftp-get" bash ...        # some of scp-up scp-down sftp-put sftp-get logins
#   TARGETS=direct bash bench/ssh.sh ...    # only sshd directly: no build, no Proctor
#   TARGETS="direct relay proctor" bash ... # also through a relay that only copies bytes (the floor
#                                           # of bench/sysbench.sh: what any extra hop costs here)
#   FILES_DIR=/var/tmp bash bench/ssh.sh    # where the files live (default /dev/shm if it has room
#                                           # for three of them, else /tmp)
#   CIPHER=aes256-gcm@openssh.com bash ...  # the clients' cipher (default: OpenSSH's choice)
#   KEX=curve25519-sha256 bash ...          # the clients' key exchange (default: OpenSSH's choice,
#                                           # sntrup761x25519-sha512 from 9.0 on where the server
#                                           # offers it: about twice the CPU of curve25519 a login)
#
# Needs root: it runs an sshd of its own (the shape of the tests' one, crates/proctor/tests/support/
# sshd.rs: its own configuration, host key and authorized client key in a temporary directory, on a free
# port of 127.0.0.1, only the account proctor-ssh in, which .ci/sshd-setup.sh makes and this script
# makes sure of), never the machine's. Proctor (`cargo build --release -p proctor`, recording as it
# does by default) listens for SSH on a free port and reaches that sshd as proctor-ssh with the client
# key, the host key pinned; its clients log in as `bench%box` with the token PROCTOR_BENCH_TOKEN (made
# here unless given) as password, given by SSH_ASKPASS. The direct clients log in with the client key.
# Both use the same other options (no configuration files, no known_hosts).
#
# Each round runs every test against sshd directly and then through Proctor (and the relay), so that
# noise from other work on the machine falls on all alike. A transfer writes a new file (the old one
# removed first, outside the time) and is compared with the original afterwards; its time includes
# its login (a small file measures mostly that: keep SIZE_MB large). Prints the key exchange and
# cipher each target negotiated, each run's MiB/s (logins/s for `logins`, and the seconds they took),
# the ratio Proctor/direct of each round (above 1: Proctor faster), and per test the medians of the
# values and of these ratios (a failed run, shown as such, counts in none). The acceptance bar for
# transfers is 0.8 of direct; the goal 0.95.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-${ROUNDS:-3}}
size_mb=${SIZE_MB:-1024}
logins=${LOGINS:-100}
read -r -a tests <<< "${TESTS:-scp-up scp-down sftp-put sftp-get logins}"
read -r -a targets <<< "${TARGETS:-direct proctor}"
user=${PROCTOR_TEST_SSH_USER:-proctor-ssh}
proctor=${CARGO_TARGET_DIR:-target}/release/proctor

with_proctor=
with_relay=
for target in "${targets[@]}"; do
  case $target in
    direct) ;;
    relay) with_relay=1 ;;
    proctor) with_proctor=1 ;;
    *) echo "unknown target $target (TARGETS: direct, relay, proctor)" >&2; exit 2 ;;
  esac
done
transfers=
for test in "${tests[@]}"; do
  case $test in
    scp-up | scp-down | sftp-put | sftp-get) transfers=1 ;;
    logins) ;;
    *) echo "unknown test $test (TESTS: scp-up scp-down sftp-put sftp-get logins)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "bench/ssh.sh needs root: it runs an sshd of its own and logs in to it as $user" >&2
  exit 1
fi
for program in scp sftp ssh ssh-keygen python3; do
  command -v "$program" >/dev/null || { echo "$program is missing (bash .ci/run installs it)" >&2; exit 1; }
done
bash .ci/sshd-setup.sh >/dev/null

# The files: the original, the copy that arrives on the server's side (in a directory of the
# account's) and the one that comes back; on tmpfs unless it lacks room, so that disks measure nothing.
[ -n "$transfers" ] || size_mb=0   # no file to make
need_kb=$(( (size_mb * 3 + 64) * 1024 ))
free_kb() { df -Pk "$1" | awk 'NR == 2 { print $4 }'; }
if [ -n "${FILES_DIR:-}" ]; then
  files_base=$FILES_DIR
elif [ -d /dev/shm ] && [ "$(free_kb /dev/shm)" -ge "$need_kb" ]; then
  files_base=/dev/shm
else
  files_base=/tmp
fi
if [ "$(free_kb "$files_base")" -lt "$need_kb" ]; then
  echo "$files_base has $(( $(free_kb "$files_base") / 1024 )) MiB free; three files of $size_mb MiB need" \
    "$(( need_kb / 1024 )) MiB: set SIZE_MB lower or FILES_DIR elsewhere" >&2
  exit 1
fi

work=$(mktemp -d)
files=$(mktemp -d "$files_base/proctor-bench-ssh.XXXXXX")
sshd_pid=
proctor_pid=
relay_pid=
cleanup() {
  [ -z "$proctor_pid" ] || kill "$proctor_pid" 2>/dev/null || true
  [ -z "$relay_pid" ] || kill "$relay_pid" 2>/dev/null || true
  [ -z "$sshd_pid" ] || kill "$sshd_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work" "$files"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The server's directory: the account reads the authorized keys as itself, so it must reach them.
chmod 711 "$work"
ssh-keygen -q -t ed25519 -N '' -C '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -C '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
chmod 644 "$work/authorized_keys"
host_key=$(cut -d' ' -f1,2 "$work/host_key.pub")

# A port free now may be taken before sshd binds it: then sshd exits, and another one is tried.
for _ in $(seq 1 20); do
  sshd_port=$(free_port)
  cat > "$work/sshd_config" <<EOF
ListenAddress 127.0.0.1:$sshd_port
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
StrictModes no
AllowUsers $user
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitEmptyPasswords no
UsePAM no
AllowTcpForwarding yes
X11Forwarding no
Subsystem sftp internal-sftp
LogLevel VERBOSE
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100:30:200
EOF
  /usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
  sshd_pid=$!
  for _ in $(seq 1 100); do
    grep -q "Server listening on 127.0.0.1 port $sshd_port" "$work/sshd.log" && break
    kill -0 "$sshd_pid" 2>/dev/null || break
    sleep 0.05
  done
  grep -q "Server listening on 127.0.0.1 port $sshd_port" "$work/sshd.log" && break
  wait "$sshd_pid" 2>/dev/null || true
  sshd_pid=
  grep -q 'Address already in use' "$work/sshd.log" || break
done
if [ -z "$sshd_pid" ]; then
  echo "sshd did not start; its log:" >&2
  tail -n 20 "$work/sshd.log" >&2
  exit 1
fi

client_opts=(-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
  -o ConnectTimeout=10)
[ -z "${CIPHER:-}" ] || client_opts+=(-c "$CIPHER")
[ -z "${KEX:-}" ] || client_opts+=(-o "KexAlgorithms=$KEX")
key_opts=("${client_opts[@]}" -o BatchMode=yes -o IdentitiesOnly=yes -i "$work/client_key")
direct_opts=("${key_opts[@]}" -o "Port=$sshd_port")

if [ -n "$with_relay" ]; then
  # The floor (crates/proctor-net/examples/passthrough.rs): copies bytes on event loops laid out as
  # Proctor's, and does nothing else; the clients reach sshd through it as they do directly.
  cargo build --release -q -p proctor-net --example passthrough
  relay_port=$(free_port)
  "${CARGO_TARGET_DIR:-target}/release/examples/passthrough" "127.0.0.1:$relay_port" \
    "127.0.0.1:$sshd_port" &
  relay_pid=$!
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$relay_port") 2>/dev/null && break
    sleep 0.1
  done
  relay_opts=("${key_opts[@]}" -o "Port=$relay_port")
fi

if [ -n "$with_proctor" ]; then
  cargo build --release -q -p proctor
  # A token shaped like the ones Proctor issues (prt_<id>_<secret>), unless one is given.
  if [ -z "${PROCTOR_BENCH_TOKEN:-}" ]; then
    PROCTOR_BENCH_TOKEN=prt_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')_$(head -c 32 /dev/urandom \
      | base64 | tr '+/' '-_' | tr -d '=\n')
  fi
  export PROCTOR_BENCH_TOKEN
  proctor_port=$(free_port)
  cat > "$work/proctor.toml" <<TOML
[server]
data_dir = "$work/proctor-data"
postgres_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
ssh_listen = "127.0.0.1:$proctor_port"

[[identity]]
name = "bench"
token_env = "PROCTOR_BENCH_TOKEN"

[[connection]]
name = "box"
kind = "ssh"
address = "127.0.0.1:$sshd_port"
user = "$user"
private_key_file = "$work/client_key"
host_key = "$host_key"
allow = ["bench"]
TOML
  "$proctor" serve --config "$work/proctor.toml" 2>"$work/proctor.log" &
  proctor_pid=$!
  ready=
  for _ in $(seq 1 300); do
    ready=$(grep -m 1 'proctor is ready' "$work/proctor.log" || true)
    [ -z "$ready" ] || break
    kill -0 "$proctor_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    echo "proctor did not become ready (a build without the SSH gateway, or a configuration it" >&2
    echo "refuses?); its log:" >&2
    tail -n 20 "$work/proctor.log" >&2
    exit 1
  fi
  # The ready line names each listener, the SSH one as ssh=127.0.0.1:PORT.
  listen=$(tr ' ' '\n' <<< "$ready" | sed -n 's/^ssh=//p' | head -n 1)
  if [ -z "$listen" ]; then
    echo "proctor's ready line names no SSH listener (a build without the SSH gateway?):" >&2
    echo "$ready" >&2
    exit 1
  fi
  proctor_port=${listen##*:}
  # The token as the password, from a program rather than a terminal. sftp -b asks ssh for
  # BatchMode, which allows no password: BatchMode=no comes first, and the first value counts.
  cat > "$work/askpass" <<'EOF'
#!/bin/sh
printf '%s\n' "$PROCTOR_BENCH_TOKEN"
EOF
  chmod 755 "$work/askpass"
  export SSH_ASKPASS=$work/askpass SSH_ASKPASS_REQUIRE=force
  proctor_opts=("${client_opts[@]}" -o BatchMode=no -o PubkeyAuthentication=no
    -o NumberOfPasswordPrompts=1 -o "Port=$proctor_port")
  # One login before measuring: the Proctor side must work, or nothing it measures means anything.
  # (LogLevel INFO, the first value, so that a failed negotiation says why.)
  if ! ssh -o LogLevel=INFO "${proctor_opts[@]}" "bench%box@127.0.0.1" true </dev/null \
    2>"$work/check.log"; then
    echo "ssh through proctor (bench%box@127.0.0.1 port $proctor_port) failed:" >&2
    cat "$work/check.log" >&2
    echo "proctor's log:" >&2
    tail -n 20 "$work/proctor.log" >&2
    exit 1
  fi
fi

# The files, all on one side of the machine: the original (world-readable, for scp-down and sftp-get
# to fetch), the account's directory where uploads arrive, and where downloads land.
chmod 755 "$files"
head -c "$((size_mb * 1024 * 1024))" /dev/urandom > "$files/original"
chmod 644 "$files/original"
mkdir "$files/remote"
chown "$user:" "$files/remote"
original=$files/original
uploaded=$files/remote/uploaded
downloaded=$files/downloaded

now() { date +%s%N; }
ticks=$(getconf CLK_TCK)
machine_cpu() { # the CPU time all cores have spent working since boot, in ticks
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}
proctor_cpu() { # Proctor's CPU time (user and system), in ticks; 0 without Proctor
  if [ -n "${proctor_pid:-}" ] && [ -r "/proc/$proctor_pid/stat" ]; then
    awk '{ print $14 + $15 }' "/proc/$proctor_pid/stat"
  else
    echo 0
  fi
}
target_opts() { # target -> sets opts and dest: how the clients reach it
  case $1 in
    direct) opts=("${direct_opts[@]}") dest=$user@127.0.0.1 ;;
    relay) opts=("${relay_opts[@]}") dest=$user@127.0.0.1 ;;
    proctor) opts=("${proctor_opts[@]}") dest=bench%box@127.0.0.1 ;;
  esac
}
run() { # target test -> MiB/s (logins/s for logins), or "failed" (and why on stderr)
  local target=$1 test=$2 opts dest log=$work/run.log start end arrived status=0
  target_opts "$target"
  rm -f "$uploaded" "$downloaded"
  case $test in
    scp-up | sftp-put) arrived=$uploaded ;;
    *) arrived=$downloaded ;;
  esac
  local cpu_before gateway_before
  cpu_before=$(machine_cpu) gateway_before=$(proctor_cpu)
  start=$(now)
  case $test in
    scp-up) scp -q "${opts[@]}" "$original" "$dest:$uploaded" </dev/null 2>"$log" || status=$? ;;
    scp-down) scp -q "${opts[@]}" "$dest:$original" "$downloaded" </dev/null 2>"$log" || status=$? ;;
    sftp-put) sftp -q "${opts[@]}" -b - "$dest" <<< "put $original $uploaded" >/dev/null 2>"$log" \
      || status=$? ;;
    sftp-get) sftp -q "${opts[@]}" -b - "$dest" <<< "get $original $downloaded" >/dev/null 2>"$log" \
      || status=$? ;;
    logins)
      for _ in $(seq 1 "$logins"); do
        ssh "${opts[@]}" "$dest" true </dev/null 2>"$log" || { status=$?; break; }
      done ;;
  esac
  end=$(now)
  # CPU seconds per GiB moved: the whole machine's, and the gateway's share of it.
  if [ "$test" != logins ] && [ "$status" = 0 ]; then
    echo "$target $test $(( $(machine_cpu) - cpu_before )) $(( $(proctor_cpu) - gateway_before ))" \
      | awk -v t="$ticks" -v mb="$size_mb" '{ printf "%s %s %.2f %.2f\n", $1, $2, $3 / t * 1024 / mb, $4 / t * 1024 / mb }' \
      >> "$work/cpu"
  fi
  if [ "$status" != 0 ]; then
    echo "$test against $target failed (exit status $status):" >&2
    tail -n 5 "$log" >&2
    echo failed
  elif [ "$test" = logins ]; then
    echo "$logins $start $end" | awk '{ printf "%.1f\n", $1 / (($3 - $2) / 1e9) }'
  elif ! cmp -s "$original" "$arrived"; then
    echo "$test against $target: the file that arrived differs from the original" >&2
    echo failed
  else
    echo "$size_mb $start $end" | awk '{ printf "%.1f\n", $1 / (($3 - $2) / 1e9) }'
  fi
}

# What each client and the server it reaches agree on: the key exchange weighs on the logins, the
# cipher on the transfers (through Proctor: the cipher between the client and Proctor).
negotiated=()
for target in "${targets[@]}"; do
  target_opts "$target"
  agreed=$(ssh -v "${opts[@]}" "$dest" true </dev/null 2>&1 \
    | sed -n 's/^debug1: kex: algorithm: \(.*\)/kex \1/p
      s/^debug1: kex: client->server cipher: \([^ ]*\).*/cipher \1/p' | paste -sd ' ' -)
  negotiated+=("$target: ${agreed:-?}")
done

for round in $(seq 1 "$rounds"); do
  for test in "${tests[@]}"; do
    for target in "${targets[@]}"; do
      value=$(run "$target" "$test")
      echo "$round $test $target $value" >> "$work/results"
      if [ "$test" = logins ] && [ "$value" != failed ]; then
        echo "round $round  $test  $target  $value logins/s ($(awk -v n="$logins" -v r="$value" \
          'BEGIN { printf "%.2f", n / r }') s for $logins)" >&2
      else
        echo "round $round  $test  $target  $value MiB/s" >&2
      fi
    done
  done
done

value_of() { # round test target -> its value, or nothing
  awk -v r="$1" -v t="$2" -v g="$3" '$1 == r && $2 == t && $3 == g { print $4 }' "$work/results"
}
ratio_of() { # round test target -> the target's value over direct's in that round, or nothing
  awk -v r="$1" -v t="$2" -v g="$3" '$1 == r && $2 == t && $3 == "direct" { d = $4 + 0 }
    $1 == r && $2 == t && $3 == g { p = $4 + 0 }
    END { if (d > 0 && p > 0) printf "%.2f\n", p / d }' "$work/results"
}
median_of() { # numbers, one a line -> their median (nothing for none)
  sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
median_value() { # test target -> the median of its values over the rounds that did not fail
  for round in $(seq 1 "$rounds"); do value_of "$round" "$1" "$2"; done | { grep -v failed || true; } \
    | median_of
}
median_ratio() { # test target -> the median of the rounds' ratios target/direct
  for round in $(seq 1 "$rounds"); do ratio_of "$round" "$1" "$2"; done | median_of
}
compared=()   # the targets set beside direct
for target in "${targets[@]}"; do
  [ "$target" = direct ] || compared+=("$target")
done
header() { # first columns...: the header line of a table
  printf '%-9s' "$1"
  shift
  [ $# -eq 0 ] || printf ' %6s' "$@"
  for target in "${targets[@]}"; do printf ' %10s' "$target"; done
  for target in "${compared[@]}"; do printf ' %15s' "$target/direct"; done
  echo
}

echo
if [ -n "$transfers" ]; then
  echo "ssh, $size_mb MiB files in $files_base, $logins logins, $rounds rounds"
else
  echo "ssh, $logins logins, $rounds rounds"
fi
printf '  %s\n' "${negotiated[@]}"
echo "(MiB/s; logins: logins/s)"
header test round
for test in "${tests[@]}"; do
  for round in $(seq 1 "$rounds"); do
    printf '%-9s %6s' "$test" "$round"
    for target in "${targets[@]}"; do printf ' %10s' "$(value_of "$round" "$test" "$target")"; done
    for target in "${compared[@]}"; do printf ' %15s' "$(ratio_of "$round" "$test" "$target")"; done
    echo
  done
done
echo
echo "medians (of the rounds' values, and of the rounds' ratios: not a ratio of the medians)"
header test
for test in "${tests[@]}"; do
  printf '%-9s' "$test"
  for target in "${targets[@]}"; do printf ' %10s' "$(median_value "$test" "$target")"; done
  for target in "${compared[@]}"; do
    ratio=$(median_ratio "$test" "$target")
    printf ' %15s' "${ratio:--}"
  done
  echo
done
echo "(transfers: acceptance 0.8 of direct, goal 0.95)"
if [ -s "$work/cpu" ]; then
  echo
  echo "CPU seconds per GiB moved, medians: all cores (client, server, and the gateway), and the gateway's part"
  for test in "${tests[@]}"; do
    for target in "${targets[@]}"; do
      machine=$(awk -v t="$target" -v x="$test" '$1 == t && $2 == x { print $3 }' "$work/cpu" | median_of)
      gateway=$(awk -v t="$target" -v x="$test" '$1 == t && $2 == x { print $4 }' "$work/cpu" | median_of)
      [ -n "$machine" ] && printf '%-9s %-8s machine %6s  gateway %6s\n' "$test" "$target" "$machine" "$gateway"
    done
  done
fi

if [ -n "$with_proctor" ]; then
  # Stop the gateway first, so that the journal holds everything it acknowledged when it is counted.
  kill -TERM "$proctor_pid"
  wait "$proctor_pid" || true
  proctor_pid=
  sessions=$("$proctor" sessions list --config "$work/proctor.toml" --format json | grep -c '"id"' || true)
  echo "recorded by proctor during the run: $sessions sessions"
fi
