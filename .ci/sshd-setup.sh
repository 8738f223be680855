#!/usr/bin/env bash
# Prepares the machine for the SSH tests, which start an OpenSSH server of their own (one per test
# binary, crates/proctor/tests/support/sshd.rs: its own configuration, host key and authorized key in
# a temporary directory, on a free port of 127.0.0.1) and need from the machine only:
#   the account proctor-ssh ($PROCTOR_TEST_SSH_USER), with a home directory and /bin/bash as its shell,
#     and the password ssh-secret-pw ($PROCTOR_TEST_SSH_PASSWORD), for the upstream password login;
#     the sshd of the tests lets no other account in;
#   /run/sshd, the privilege separation directory sshd requires (root's, 0755);
#   sshd, ssh-keygen and the clients (installed if missing).
# No daemon is started here, and the machine's own sshd, if any, is left alone. Both need root, as the
# SSH tests do: without it this prints what is missing and does nothing.
#
# Idempotent: the account is created once, its shell and password set again every time. The last line
# printed is the account's name, which .ci/run hands to the tests as PROCTOR_TEST_SSH_USER.
set -euo pipefail

user=${PROCTOR_TEST_SSH_USER:-proctor-ssh}
password=${PROCTOR_TEST_SSH_PASSWORD:-ssh-secret-pw}
PATH=$PATH:/usr/sbin:/usr/local/sbin

if [ "$(id -u)" != 0 ]; then
  echo "not root: the SSH tests need root (to run sshd and log in as $user); they will fail" >&2
  echo "$user"
  exit 0
fi

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null || ! command -v ssh >/dev/null \
  || ! command -v scp >/dev/null || ! command -v sftp >/dev/null; then
  apt-get update -qq && apt-get install -y -qq openssh-server openssh-client >/dev/null
fi

if ! id -u "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
fi
IFS=: read -r _ _ _ _ _ home shell < <(getent passwd "$user")
[ "$shell" = /bin/bash ] || usermod --shell /bin/bash "$user"
if [ ! -d "$home" ]; then
  mkdir -p "$home"
  chown "$user:" "$home"
  chmod 755 "$home"
fi
echo "$user:$password" | chpasswd
# A locked or expired account refuses even a key (sshd without PAM reads shadow's fields itself).
chage --expiredate -1 --maxdays -1 "$user"

mkdir -p /run/sshd
chmod 755 /run/sshd

echo "$user"
