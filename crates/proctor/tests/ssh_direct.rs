//! The SSH tests' own OpenSSH server (`support::sshd`), reached directly with the real clients, without
//! Proctor: commands and their exit codes, the pinned host key, `scp` both ways (SFTP and the legacy
//! protocol), `sftp` in batch mode, `rsync` over ssh, password logins without a terminal and an
//! interactive shell on a terminal. What the tests through Proctor take for granted of their upstream.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::output_with_stdin;
use support::sshd::{client_options, random_file, sha256, sshd};
use support::{stderr, stdout};

/// A client (`ssh`, `scp`, `sftp`) with the options that reach the test sshd directly.
fn direct(program: &str) -> Command {
    let mut command = Command::new(program);
    command.args(sshd().direct_ssh_args());
    command
}

/// Runs `command`; it must succeed. Returns what it printed.
fn ok(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}\nsshd's log: {}",
        stdout(&out),
        stderr(&out),
        sshd().log()
    );
    stdout(&out)
}

/// The SHA-256 of a file of the test account's, computed on the far end through ssh.
fn remote_sha256(path: &str) -> String {
    let mut ssh = direct("ssh");
    ssh.arg(sshd().destination())
        .arg(format!("sha256sum {path}"));
    ok(ssh).split_whitespace().next().unwrap().to_owned()
}

#[test]
fn ssh_runs_a_command_with_its_output_and_exit_code() {
    let sshd = sshd();
    let mut ssh = direct("ssh");
    ssh.arg(sshd.destination())
        .arg("echo hello; echo oops >&2; id -un; exit 3");
    let out = ssh.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("hello\n{}\n", sshd.user()));
    assert_eq!(stderr(&out), "oops\n");

    // Standard input reaches the command, all of it.
    let input = "line\n".repeat(100_000);
    let mut ssh = direct("ssh");
    ssh.arg(sshd.destination()).arg("wc -c");
    let out = output_with_stdin(ssh, &input);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), input.len().to_string());

    assert!(
        sshd.log().contains(&format!(
            "Accepted publickey for {} from 127.0.0.1",
            sshd.user()
        )),
        "{}",
        sshd.log()
    );
}

#[test]
fn the_host_key_is_the_one_it_serves() {
    let sshd = sshd();
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), sshd.host_key),
    )
    .unwrap();
    let strict = |known_hosts: &Path| {
        let mut ssh = Command::new("ssh");
        ssh.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(&sshd.client_key)
        .arg("-o")
        .arg(format!("Port={}", sshd.port()))
        .arg(sshd.destination())
        .arg("true");
        ssh.output().unwrap()
    };
    let out = strict(&known_hosts);
    assert!(out.status.success(), "{}", stderr(&out));

    // Another key for the same address: the client refuses the server.
    let other = dir.path().join("other");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(keygen.success());
    let other_public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {other_public}", sshd.port()),
    )
    .unwrap();
    let out = strict(&known_hosts);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn scp_both_ways_keeps_the_bytes() {
    let sshd = sshd();
    let local = tempfile::tempdir().unwrap();
    let remote = sshd.scratch_dir("scp");
    let original = local.path().join("original");
    random_file(&original, 1 << 20);
    let original = original.display().to_string();
    let sum = sha256(&original);
    // The SFTP protocol (scp's default) and the legacy one (-O, scp/rcp over a command).
    for (mode, extra) in [("sftp", &[][..]), ("legacy", &["-O"][..])] {
        let uploaded = remote.join(&format!("up-{mode}"));
        let mut scp = direct("scp");
        scp.args(extra)
            .arg(&original)
            .arg(format!("{}:{uploaded}", sshd.destination()));
        ok(scp);
        assert_eq!(remote_sha256(&uploaded), sum, "scp {mode} upload");
        assert_eq!(sha256(&uploaded), sum);

        let downloaded = local.path().join(format!("down-{mode}"));
        let mut scp = direct("scp");
        scp.args(extra)
            .arg(format!("{}:{uploaded}", sshd.destination()))
            .arg(&downloaded);
        ok(scp);
        assert_eq!(
            sha256(&downloaded.display().to_string()),
            sum,
            "scp {mode} download"
        );
    }
}

#[test]
fn sftp_batch_puts_gets_renames_and_removes() {
    let sshd = sshd();
    let local = tempfile::tempdir().unwrap();
    let remote = sshd.scratch_dir("sftp");
    let original = local.path().join("original");
    random_file(&original, 1 << 20);
    let back = local.path().join("back");
    let batch = local.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "cd {dir}\nput {original} a\nrename a b\nmkdir sub\nget b {back}\nls -1\nrm b\nrmdir sub\nls -1\n",
            dir = remote.path.display(),
            original = original.display(),
            back = back.display(),
        ),
    )
    .unwrap();
    let mut sftp = direct("sftp");
    sftp.arg("-b").arg(&batch).arg(sshd.destination());
    let printed = ok(sftp);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&original).unwrap()
    );
    // Between the two listings: b and sub, then nothing.
    let listing: Vec<&str> = printed
        .lines()
        .filter(|l| !l.starts_with("sftp>"))
        .collect();
    assert_eq!(listing, ["b", "sub"], "{printed}");
    assert_eq!(std::fs::read_dir(&remote.path).unwrap().count(), 0);
}

#[test]
fn rsync_over_ssh_copies_a_tree() {
    let sshd = sshd();
    let local = tempfile::tempdir().unwrap();
    let remote = sshd.scratch_dir("rsync");
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    random_file(&tree.join("big"), 1 << 20);
    std::fs::write(tree.join("sub/small"), "small\n").unwrap();
    let rsh = format!("ssh {}", sshd.direct_ssh_args().join(" "));
    let mut rsync = Command::new("rsync");
    rsync
        .args(["-a", "-e", &rsh])
        .arg(format!("{}/", tree.display()))
        .arg(format!("{}:{}/", sshd.destination(), remote.join("tree")));
    ok(rsync);
    let copy = remote.path.join("tree");
    assert_eq!(
        std::fs::read(copy.join("big")).unwrap(),
        std::fs::read(tree.join("big")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(copy.join("sub/small")).unwrap(),
        "small\n"
    );

    // And back, into an empty directory.
    let back = local.path().join("back");
    let mut rsync = Command::new("rsync");
    rsync
        .args(["-a", "-e", &rsh])
        .arg(format!("{}:{}/", sshd.destination(), remote.join("tree")))
        .arg(format!("{}/", back.display()));
    ok(rsync);
    assert_eq!(
        std::fs::read(back.join("big")).unwrap(),
        std::fs::read(tree.join("big")).unwrap()
    );
}

/// `ssh` logging in with a password given by `SSH_ASKPASS`, without a terminal.
fn password_login(password: &str) -> Output {
    let sshd = sshd();
    let mut ssh = Command::new("ssh");
    ssh.args(client_options())
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .arg("-o")
        .arg(format!("Port={}", sshd.port()))
        .arg(sshd.destination())
        .arg("echo logged in as $(id -un)");
    sshd.askpass(&mut ssh, password);
    output_with_stdin(ssh, "")
}

#[test]
fn password_login_without_a_terminal() {
    let sshd = sshd();
    let out = password_login(sshd.password());
    assert!(out.status.success(), "{}{}", stderr(&out), sshd.log());
    assert_eq!(stdout(&out), format!("logged in as {}\n", sshd.user()));
    assert!(
        sshd.log()
            .contains(&format!("Accepted password for {}", sshd.user())),
        "{}",
        sshd.log()
    );

    // sftp -b with a password: BatchMode=no before -b.
    let local = tempfile::tempdir().unwrap();
    let remote = sshd.scratch_dir("sftp-password");
    std::fs::write(local.path().join("note"), "by password\n").unwrap();
    let mut sftp = Command::new("sftp");
    sftp.args(client_options())
        .args(["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"])
        .arg("-o")
        .arg(format!("Port={}", sshd.port()))
        .args(["-b", "-"])
        .arg(sshd.destination());
    sshd.askpass(&mut sftp, sshd.password());
    let batch = format!(
        "put {} {}\n",
        local.path().join("note").display(),
        remote.join("note")
    );
    let out = output_with_stdin(sftp, &batch);
    assert!(out.status.success(), "{}{}", stderr(&out), sshd.log());
    assert_eq!(
        std::fs::read_to_string(remote.path.join("note")).unwrap(),
        "by password\n"
    );

    let out = password_login("not-the-password");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn interactive_shell_on_a_terminal() {
    let sshd = sshd();
    let dir = tempfile::tempdir().unwrap();
    // expect gives ssh a terminal: the password prompt, then a login shell on the far end's pty.
    let script = dir.path().join("session.exp");
    std::fs::write(
        &script,
        r#"set timeout 20
spawn ssh {*}$env(SSH_OPTIONS) -tt $env(DESTINATION)
expect {
  -re "password: $" { send "$env(PASSWORD)\r" }
  timeout { puts "no password prompt"; exit 10 }
}
expect {
  -re {[$#] $} {}
  timeout { puts "no shell prompt"; exit 11 }
}
# A leading space keeps the lines out of the account's shell history.
send " tty; echo \$((6 * 7))\r"
expect {
  -re {\n42\r} {}
  timeout { puts "no answer"; exit 12 }
}
send " exit 4\r"
expect eof
lassign [wait] pid spawnid os_error status
exit $status
"#,
    )
    .unwrap();
    let mut options = client_options();
    options.extend([
        "-o".to_owned(),
        "PubkeyAuthentication=no".to_owned(),
        "-o".to_owned(),
        format!("Port={}", sshd.port()),
    ]);
    let out = Command::new("expect")
        .arg(&script)
        .env("SSH_OPTIONS", options.join(" "))
        .env("DESTINATION", sshd.destination())
        .env("PASSWORD", sshd.password())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}{}\nsshd's log: {}",
        stdout(&out),
        stderr(&out),
        sshd.log()
    );
    assert!(stdout(&out).contains("/dev/pts/"), "{}", stdout(&out));
}
