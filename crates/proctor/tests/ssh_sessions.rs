//! The SSH gateway end to end: the real OpenSSH clients (`ssh`, `scp`, `sftp`, `rsync`) through
//! Proctor to the tests' own OpenSSH server, and what the journal holds afterwards.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;

use serde_json::Value;
use support::sshd::{client_options, random_file, sha256, sshd};
use support::{output_with_stdin, stderr, stdout, Proctor};

/// A client (`ssh`, `scp`, `sftp`) through Proctor's SSH listener, logging in with `token`.
fn through(proctor: &Proctor, program: &str, token: &str) -> Command {
    let mut command = Command::new(program);
    command.args(client_options()).args([
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
    ]);
    command.arg(format!("Port={}", proctor.ssh_port));
    sshd().askpass(&mut command, token);
    command
}

/// `ssh identity%connection@127.0.0.1 COMMAND` through Proctor.
fn ssh(proctor: &Proctor, login: &str, token: &str, command: &str) -> Output {
    let mut ssh = through(proctor, "ssh", token);
    ssh.arg(format!("{login}@127.0.0.1")).arg(command);
    ssh.output().unwrap()
}

fn ok(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn of_kind<'e>(events: &'e [Value], kind: &str) -> Vec<&'e Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// Approves a pending request over the HTTP API, as `approver`.
fn approve(proctor: &Proctor, request: &Value, approver: &str) {
    let id = request["id"].as_str().unwrap();
    let (status, body) = proctor.http(
        "POST",
        &format!("/api/v1/approvals/{id}/approve"),
        Some(approver),
        r#"{"reason": "planned"}"#,
    );
    assert_eq!(status, 200, "{body}");
}

/// A gateway with the test sshd as connection `box`, usable by `alice` (group dba) and `bob`.
fn gateway(extra: &str) -> (Proctor, String, String) {
    let config = format!("{}{extra}", sshd().connection_config("box", "*"));
    let proctor = Proctor::start(&config);
    let alice = proctor.add_identity("alice", &["dba"]);
    let bob = proctor.add_identity("bob", &["dba"]);
    (proctor, alice, bob)
}

#[test]
fn commands_run_with_their_exit_codes_and_are_recorded_masked() {
    let (proctor, alice, _) = gateway("");
    let home = sshd().home().display().to_string();
    let out = ssh(
        &proctor,
        "alice%box",
        &alice,
        "echo hello; echo oops >&2; id -un; exit 3",
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("hello\n{}\n", sshd().user()));
    assert_eq!(stderr(&out), "oops\n");

    // A secret printed by a command reaches the user, and is masked in the journal.
    let secret = "AKIAQYLPMN5HFIQR7XYZ";
    let env_file = sshd().scratch_dir("env");
    let out = ssh(
        &proctor,
        "alice",
        &alice,
        &format!(
            "printf 'AWS_ACCESS_KEY_ID={secret}\\n' > {0}/.env && cat {0}/.env",
            env_file.path.display()
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("AWS_ACCESS_KEY_ID={secret}\n"));

    // Standard input reaches the command, all of it.
    let input = "line\n".repeat(100_000);
    let mut wc = through(&proctor, "ssh", &alice);
    wc.arg("alice%box@127.0.0.1").arg("wc -c");
    let out = output_with_stdin(wc, &input);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), input.len().to_string());

    let events = proctor.events_of("alice", 3);
    let execs = of_kind(&events, "ssh.exec");
    assert_eq!(execs.len(), 3, "{events:#?}");
    assert_eq!(
        execs[0]["body"]["command"],
        "echo hello; echo oops >&2; id -un; exit 3"
    );
    let exits = of_kind(&events, "ssh.exit");
    assert_eq!(exits[0]["body"]["exit_status"], 3);
    assert_eq!(exits[2]["body"]["bytes_to_target"], input.len());
    let output: String = of_kind(&events, "term.out")
        .iter()
        .map(|e| e["body"]["data"].as_str().unwrap())
        .collect();
    assert!(output.contains("hello"), "{output}");
    assert!(output.contains("AWS_ACCESS_KEY_ID=[MASKED"), "{output}");
    assert!(!proctor.data_dir_contains(secret), "the secret is stored");
    let starts = of_kind(&events, "session.start");
    assert_eq!(starts[0]["body"]["connection"], "box");
    assert_eq!(starts[0]["body"]["auth"]["method"], "password");
    assert!(home.starts_with('/'));
}

#[test]
fn a_wrong_token_or_connection_is_refused_and_recorded() {
    let (proctor, alice, _) = gateway("");
    let out = ssh(&proctor, "alice%box", "prt_00000000_not-the-token", "true");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let out = ssh(&proctor, "alice%nowhere", &alice, "true");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("connection \"nowhere\" does not exist"),
        "{}",
        stderr(&out)
    );
    let events = proctor.events_of("alice", 2);
    let failures = of_kind(&events, "auth.failure");
    assert_eq!(failures[0]["body"]["reason"], "wrong token", "{events:#?}");
    let refused = failures.last().unwrap();
    assert_eq!(refused["body"]["stage"], "authorize", "{events:#?}");
    assert_eq!(
        refused["body"]["reason"],
        "connection \"nowhere\" does not exist"
    );
    assert!(of_kind(&events, "ssh.exec").is_empty());
}

#[test]
fn only_a_login_that_does_not_authenticate_in_time_is_cut() {
    let (proctor, alice, _) = gateway("\n[ssh]\nauth_timeout_secs = 1\n");
    let out = ssh(&proctor, "alice%box", &alice, "sleep 2; echo still-here");
    assert_eq!(stdout(&out), "still-here\n", "{}", stderr(&out));
    // A client that never authenticates is disconnected.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", proctor.ssh_port)).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut banner = Vec::new();
    let read = idle.read_to_end(&mut banner);
    assert!(
        read.is_ok(),
        "the idle client was not disconnected: {read:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&banner).starts_with("SSH-2.0-Proctor"));
}

#[test]
fn bytes_that_break_sftp_end_the_channel_and_are_recorded() {
    let (proctor, alice, _) = gateway("");
    // A packet claiming almost 2 GiB, where OpenSSH's limit is 256 KiB.
    let mut sftp = through(&proctor, "ssh", &alice);
    sftp.args(["-s", "alice%box@127.0.0.1", "sftp"]);
    let out = output_with_stdin(sftp, "\u{7f}\u{7f}\u{7f}\u{7f}garbage");
    assert!(stderr(&out).contains("Proctor: sftp:"), "{}", stderr(&out));
    let events = proctor.events_of("alice", 1);
    let errors = of_kind(&events, "protocol.error");
    assert_eq!(errors.len(), 1, "{events:#?}");
    assert!(errors[0]["body"]["message"]
        .as_str()
        .unwrap()
        .starts_with("sftp:"));
    // The gateway goes on serving.
    assert_eq!(
        stdout(&ssh(&proctor, "alice%box", &alice, "echo after")),
        "after\n"
    );
}

#[test]
fn a_registered_public_key_logs_in() {
    let (proctor, _, _) = gateway("");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let pub_key = key.with_extension("pub");
    let added = proctor.cli_ok(&["identity", "add-key", "alice", pub_key.to_str().unwrap()]);
    assert!(added.contains("registered for alice"), "{added}");
    let mut ssh = Command::new("ssh");
    ssh.args(client_options())
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&key)
        .arg("-o")
        .arg(format!("Port={}", proctor.ssh_port))
        .arg("alice%box@127.0.0.1")
        .arg("echo by-key");
    assert_eq!(ok(ssh), "by-key\n");
    // The key is alice's: bob cannot log in with it.
    let mut ssh = Command::new("ssh");
    ssh.args(client_options())
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&key)
        .arg("-o")
        .arg(format!("Port={}", proctor.ssh_port))
        .arg("bob%box@127.0.0.1")
        .arg("true");
    let out = ssh.output().unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    let events = proctor.events_of("alice", 1);
    assert_eq!(
        of_kind(&events, "session.start")[0]["body"]["auth"]["method"],
        "publickey"
    );
}

#[test]
fn a_target_whose_host_key_changed_is_refused() {
    let other_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF7wpdqozJW+UmrqeQoOPkl25iTHYUzKRYzffOpjJIDE";
    let sshd = sshd();
    let config = format!(
        r#"
[[connection]]
name = "pinned"
kind = "ssh"
address = "{address}"
user = "{user}"
private_key_file = "{key}"
host_key = "{other_key}"
allow = ["*"]

[[connection]]
name = "tofu"
kind = "ssh"
address = "{address}"
user = "{user}"
password_env = "PROCTOR_TEST_SSH_PASSWORD"
allow = ["*"]
"#,
        address = sshd.address(),
        user = sshd.user(),
        key = sshd.client_key.display(),
    );
    let proctor =
        Proctor::start_with_env(&config, &[("PROCTOR_TEST_SSH_PASSWORD", sshd.password())]);
    let alice = proctor.add_identity("alice", &[]);
    let out = ssh(&proctor, "alice%pinned", &alice, "echo never");
    assert_eq!(out.status.code(), Some(255));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("does not match its pinned key"),
        "{}",
        stderr(&out)
    );
    // Trusted on first use (with the upstream password), then pinned.
    for _ in 0..2 {
        let out = ssh(&proctor, "alice%tofu", &alice, "echo first");
        assert_eq!(stdout(&out), "first\n", "{}", stderr(&out));
    }
    let events = proctor.events_of("alice", 3);
    let checks: Vec<&Value> = of_kind(&events, "ssh.host_key");
    assert_eq!(checks[0]["body"]["trust"], "mismatch");
    assert_eq!(checks[1]["body"]["trust"], "first_use");
    assert_eq!(checks[2]["body"]["trust"], "pinned");
    let fingerprint = checks[1]["body"]["fingerprint"].as_str().unwrap();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
}

#[test]
fn denied_and_held_commands() {
    let (proctor, alice, bob) = gateway(
        r#"
[[connection.rules]]
name = "no-recursive-delete"
regex = "rm\\s+-rf"
action = "deny"
message = "recursive deletes are not allowed"

[[connection.rules]]
name = "hold-restarts"
regex = "^touch .*restarted"
action = "require_approval"
"#,
    );
    let dir = sshd().scratch_dir("guard");
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let out = ssh(&proctor, "alice%box", &alice, &format!("rm -rf {victim}"));
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"no-recursive-delete\" denied this command"),
        "{}",
        stderr(&out)
    );
    assert!(Path::new(&victim).exists(), "the command ran");

    let marker = dir.join("restarted");
    thread::scope(|scope| {
        let held = scope.spawn(|| ssh(&proctor, "alice%box", &alice, &format!("touch {marker}")));
        let request = proctor.pending_approvals(1)[0].clone();
        assert_eq!(request["rule"], "hold-restarts");
        assert!(!Path::new(&marker).exists(), "nothing runs before approval");
        approve(&proctor, &request, &bob);
        let out = held.join().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("holds this command for approval"),
            "{}",
            stderr(&out)
        );
    });
    assert!(Path::new(&marker).exists());
    let events = proctor.events_of("alice", 2);
    let decisions = of_kind(&events, "policy.decision");
    assert_eq!(decisions[0]["body"]["action"], "deny");
    assert_eq!(decisions[0]["body"]["command"], format!("rm -rf {victim}"));
    assert_eq!(decisions[1]["body"]["action"], "require_approval");
    assert_eq!(
        of_kind(&events, "approval")[0]["body"]["outcome"],
        "approved"
    );
    let execs = of_kind(&events, "ssh.exec");
    assert_eq!(execs.len(), 1, "only the approved command ran: {execs:#?}");
    assert_eq!(execs[0]["body"]["policy"]["approved_by"], "bob");
}

#[test]
fn port_forwards_are_allowed_per_connection_and_recorded() {
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in echo.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
    let sshd = sshd();
    let config = format!(
        "{}port_forwarding = true\n{}",
        sshd.connection_config("open", "*"),
        sshd.connection_config("closed", "*")
    );
    let proctor = Proctor::start(&config);
    let alice = proctor.add_identity("alice", &[]);
    // `ssh -W` carries its standard input and output over a direct-tcpip channel.
    let mut forward = through(&proctor, "ssh", &alice);
    forward
        .args(["-W", &format!("127.0.0.1:{port}")])
        .arg("alice%open@127.0.0.1");
    let out = output_with_stdin(forward, "ping through the tunnel\n");
    assert_eq!(
        stdout(&out),
        "ping through the tunnel\n",
        "{}{}",
        stderr(&out),
        proctor.log()
    );

    let mut forward = through(&proctor, "ssh", &alice);
    forward
        .args(["-W", &format!("127.0.0.1:{port}")])
        .arg("alice%closed@127.0.0.1");
    let out = output_with_stdin(forward, "blocked\n");
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("stdio forwarding failed"),
        "{}",
        stderr(&out)
    );

    let events = proctor.events_of("alice", 2);
    let forwards = of_kind(&events, "ssh.forward");
    assert_eq!(forwards[0]["body"]["action"], "allow");
    assert_eq!(forwards[0]["body"]["port"], port);
    assert_eq!(forwards[1]["body"]["action"], "deny");
    let ended = of_kind(&events, "ssh.forward.end");
    assert_eq!(ended[0]["body"]["bytes_to_target"], 24);
    assert_eq!(ended[0]["body"]["bytes_from_target"], 24);
}

#[test]
fn files_cross_by_scp_sftp_and_rsync_recorded_file_by_file() {
    let (proctor, alice, _) = gateway("");
    let local = tempfile::tempdir().unwrap();
    let remote = sshd().scratch_dir("files");
    let original = local.path().join("original");
    let size: u64 = 100 << 20;
    random_file(&original, size);
    let original = original.display().to_string();
    let sum = sha256(&original);
    let at = |path: &str| format!("alice%box@127.0.0.1:{path}");
    // The SFTP protocol (scp's default) and the legacy one (-O, scp over a command).
    for (mode, extra) in [("sftp", &[][..]), ("legacy", &["-O"][..])] {
        let uploaded = remote.join(&format!("up-{mode}"));
        let mut scp = through(&proctor, "scp", &alice);
        scp.args(extra).arg(&original).arg(at(&uploaded));
        ok(scp);
        assert_eq!(sha256(&uploaded), sum, "scp {mode} upload");
        let downloaded = local
            .path()
            .join(format!("down-{mode}"))
            .display()
            .to_string();
        let mut scp = through(&proctor, "scp", &alice);
        scp.args(extra).arg(at(&uploaded)).arg(&downloaded);
        ok(scp);
        assert_eq!(sha256(&downloaded), sum, "scp {mode} download");
    }
    // sftp: put, rename, get, remove.
    let small = local.path().join("small");
    std::fs::write(&small, "small file\n").unwrap();
    let back = local.path().join("back");
    let batch = local.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "cd {dir}\nput {small} a\nrename a b\nget b {back}\nrm b\n",
            dir = remote.path.display(),
            small = small.display(),
            back = back.display(),
        ),
    )
    .unwrap();
    let mut sftp = through(&proctor, "sftp", &alice);
    // `-b` turns on BatchMode, which forbids the password prompt; the first value given wins.
    sftp.args(["-o", "BatchMode=no", "-b"])
        .arg(&batch)
        .arg("alice%box@127.0.0.1");
    ok(sftp);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "small file\n");
    assert!(!remote.path.join("b").exists());
    // rsync over ssh.
    let rsynced = remote.join("rsynced");
    let mut rsync = Command::new("rsync");
    let mut ssh_command = vec!["ssh".to_owned()];
    ssh_command.extend(client_options());
    ssh_command.extend(
        [
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ]
        .map(str::to_owned),
    );
    ssh_command.push(format!("-oPort={}", proctor.ssh_port));
    rsync
        .arg("-e")
        .arg(ssh_command.join(" "))
        .arg(&small)
        .arg(at(&rsynced));
    sshd().askpass(&mut rsync, &alice);
    ok(rsync);
    assert_eq!(std::fs::read_to_string(&rsynced).unwrap(), "small file\n");

    let events = proctor.events_of("alice", 6);
    let transfers: Vec<&Value> = of_kind(&events, "file.transfer");
    let find = |protocol: &str, direction: &str, path_end: &str| {
        transfers
            .iter()
            .find(|t| {
                t["body"]["protocol"] == protocol
                    && t["body"]["direction"] == direction
                    && t["body"]["path"].as_str().unwrap().ends_with(path_end)
            })
            .unwrap_or_else(|| panic!("no {protocol} {direction} of {path_end}: {transfers:#?}"))
    };
    for (protocol, name) in [("sftp", "up-sftp"), ("scp", "up-legacy")] {
        for direction in ["upload", "download"] {
            let transfer = find(protocol, direction, name);
            assert_eq!(transfer["body"]["size"], size, "{transfer}");
            assert_eq!(transfer["body"]["sha256"], sum.as_str(), "{transfer}");
            assert_eq!(transfer["body"]["outcome"], "complete", "{transfer}");
        }
    }
    let small_sum = sha256(&small.display().to_string());
    assert_eq!(
        find("sftp", "upload", "/a")["body"]["sha256"],
        small_sum.as_str()
    );
    assert_eq!(find("sftp", "download", "/b")["body"]["size"], 11);
    let ops: Vec<&str> = of_kind(&events, "file.op")
        .iter()
        .map(|e| e["body"]["op"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"rename") && ops.contains(&"remove"),
        "{ops:?}"
    );
    let rsync_exec = of_kind(&events, "ssh.exec")
        .into_iter()
        .find(|e| {
            e["body"]["command"]
                .as_str()
                .unwrap()
                .starts_with("rsync --server")
        })
        .expect("rsync's command is recorded");
    assert!(rsync_exec["body"]["command"]
        .as_str()
        .unwrap()
        .ends_with("rsynced"));
}

/// An interactive shell on a terminal (driven by `expect`): typed lines run and are recorded, a
/// password typed without echo is not stored, a window change is recorded, a denied line is not
/// run, a held line runs once approved; the recording exports as asciicast that asciinema plays.
#[test]
fn an_interactive_shell_is_recorded_and_replays() {
    let (proctor, alice, bob) = gateway(
        r#"
[[connection.rules]]
name = "no-recursive-delete"
regex = "rm\\s+-rf"
action = "deny"

[[connection.rules]]
name = "hold-markers"
regex = "^touch .*held-marker"
action = "require_approval"
"#,
    );
    let dir = sshd().scratch_dir("shell");
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let marker = dir.join("held-marker");
    let password = "hunter2-typed-blind";
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        format!(
            r#"set timeout 20
spawn ssh -tt -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o PreferredAuthentications=password -o PubkeyAuthentication=no -o Port={port} alice%box@127.0.0.1
proc fail {{what}} {{ puts "\nFAILED: $what"; exit 1 }}
expect "$ " {{}} timeout {{ fail prompt }}
send "PS1='REA''DY> '\r"
expect "READY> " {{}} timeout {{ fail ps1 }}
send "echo typed-\$((6*7))\r"
expect "typed-42" {{}} timeout {{ fail echo }}
expect "READY> "
send "stty -echo; read -r P; stty echo; echo length=\${{#P}}\r"
sleep 0.5
send "{password}\r"
expect "length=19" {{}} timeout {{ fail password }}
expect "READY> "
stty rows 40 columns 100 < $spawn_out(slave,name)
send "stty size\r"
expect "40 100" {{}} timeout {{ fail resize }}
expect "READY> "
send "rm -rf {victim}\r"
expect "denied this command" {{}} timeout {{ fail deny }}
send "\r"
expect "READY> "
send "touch {marker}\r"
expect "holds this command for approval" {{}} timeout {{ fail hold }}
set timeout 40
expect "READY> " {{}} timeout {{ fail approval }}
set timeout 20
send "ls {dir}\r"
expect "held-marker" {{}} timeout {{ fail marker }}
expect "READY> "
send "exit\r"
expect eof
"#,
            port = proctor.ssh_port,
            victim = victim,
            marker = marker,
            dir = dir.path.display(),
        ),
    )
    .unwrap();
    thread::scope(|scope| {
        let shell = scope.spawn(|| {
            let mut expect = Command::new("expect");
            expect.arg("-f").arg(script.path());
            sshd().askpass(&mut expect, &alice);
            expect.output().unwrap()
        });
        // The shell waits at its held line; if it ended instead, what it printed says why.
        let request = loop {
            let out = proctor.cli(&["approvals", "list", "--format", "json"]);
            let pending: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(request) = pending.first() {
                break request.clone();
            }
            if shell.is_finished() {
                let out = shell.join().unwrap();
                let session = proctor.sessions(&[])[0]["id"].as_str().unwrap().to_owned();
                panic!(
                    "the shell ended: {}{}\n{:#?}",
                    stdout(&out),
                    stderr(&out),
                    proctor.events(&session)
                );
            }
            thread::sleep(std::time::Duration::from_millis(50));
        };
        assert_eq!(request["rule"], "hold-markers");
        assert!(!Path::new(&marker).exists(), "nothing runs before approval");
        approve(&proctor, &request, &bob);
        let out = shell.join().unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    });
    assert!(Path::new(&victim).exists(), "the denied line ran");
    assert!(Path::new(&marker).exists(), "the approved line did not run");

    let events = proctor.events_of("alice", 1);
    let typed: String = of_kind(&events, "term.in")
        .iter()
        .filter_map(|e| e["body"]["data"].as_str())
        .collect();
    assert!(typed.contains("echo typed-$((6*7))"), "{typed:?}");
    assert!(!typed.contains(password), "{typed:?}");
    assert!(
        of_kind(&events, "term.in")
            .iter()
            .any(|e| e["body"]["hidden"] == true
                && e["body"]["bytes"].as_u64() >= Some(password.len() as u64)),
        "{events:#?}"
    );
    assert!(
        !proctor.data_dir_contains(password),
        "the password is stored"
    );
    assert!(of_kind(&events, "term.resize")
        .iter()
        .any(|e| e["body"]["cols"] == 100 && e["body"]["rows"] == 40));
    let commands: Vec<&str> = of_kind(&events, "ssh.command")
        .iter()
        .map(|e| e["body"]["command"].as_str().unwrap())
        .collect();
    assert!(commands.contains(&"echo typed-$((6*7))"), "{commands:?}");
    assert!(
        !commands.iter().any(|c| c.contains(password)),
        "{commands:?}"
    );
    let decisions = of_kind(&events, "policy.decision");
    assert_eq!(decisions[0]["body"]["action"], "deny");
    assert_eq!(decisions[0]["body"]["command"], format!("rm -rf {victim}"));
    assert_eq!(decisions[1]["body"]["action"], "require_approval");
    assert_eq!(
        of_kind(&events, "approval")[0]["body"]["outcome"],
        "approved"
    );

    // The recording, as asciicast v2, plays in asciinema.
    let session = proctor.ended_sessions_of("alice", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cast = proctor.cli_ok(&["export", &session, "--format", "asciicast"]);
    let mut lines = cast.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    let frames: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let shown: String = frames
        .iter()
        .filter(|f| f[1] == "o")
        .map(|f| f[2].as_str().unwrap())
        .collect();
    assert!(shown.contains("typed-42"), "{shown:?}");
    assert!(frames.iter().any(|f| f[1] == "r" && f[2] == "100x40"));
    let times: Vec<f64> = frames.iter().map(|f| f[0].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &cast).unwrap();
    let played = Command::new("asciinema")
        .args(["play", "--speed", "100"])
        .arg(file.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("asciinema is installed (.ci/run installs it)");
    assert!(played.status.success(), "{}", stderr(&played));
    assert!(stdout(&played).contains("typed-42"));
}
