//! The web console in a real browser: Debian's headless Chromium driven by `playwright-core`
//! (`tests/browser/console.mjs`) against the real `proctor` binary. An auditor signs in, filters the
//! sessions on an identity and finds the session a `psql` run recorded, reads its statements and its
//! verification, replays it, sees the queue of held statements (and may not decide them); an approver
//! approves the statement a waiting `psql` holds, which then finishes with its result. An SSH session
//! is replayed too where the SSH tests can run (root, `.ci/sshd-setup.sh`).
//!
//! The browser and the driver are installed by `.ci/run` (`apt-get install chromium`, `npm ci` in
//! `tests/browser`). Without them the test says why and passes, unless `PROCTOR_TEST_BROWSER=1` (as
//! in CI), where it fails. Screenshots of each page go to `<target dir>/console-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::sshd::{sshd, DEFAULT_SSH_USER};
use support::{admin_sql, stderr, stdout, Proctor, APP_DB};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Holds updates of the test table until someone of group `approver` approves.
const HOLD: &str = r#"
approvers = ["group:approver"]
approval_timeout_secs = 300
rules = [
  { name = "hold-console-items", regex = "(?i)^\\s*update\\s+console_items", action = "require_approval" },
]
"#;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What the browser test needs and lacks, if anything.
fn missing_tools() -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is missing (apt-get install nodejs npm)".to_owned());
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        return Some(format!(
            "playwright-core is not installed (npm ci in {})",
            browser_dir().display()
        ));
    }
    None
}

/// Whether an SSH session can be recorded here, as the SSH tests do; why not otherwise.
fn ssh_unavailable() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".to_owned());
    }
    if !Path::new("/usr/sbin/sshd").exists() {
        return Some("no /usr/sbin/sshd".to_owned());
    }
    if Command::new("expect").arg("-v").output().is_err() {
        return Some("no expect".to_owned());
    }
    let user =
        std::env::var("PROCTOR_TEST_SSH_USER").unwrap_or_else(|_| DEFAULT_SSH_USER.to_owned());
    let known = Command::new("getent")
        .args(["passwd", &user])
        .output()
        .is_ok_and(|out| out.status.success());
    if !known {
        return Some(format!("no account {user} (.ci/sshd-setup.sh)"));
    }
    None
}

/// Where the screenshots go: `console-screenshots` in the target dir (the one that holds the
/// `proctor` binary's profile dir).
fn screenshot_dir() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_proctor"));
    let target = binary
        .parent()
        .and_then(Path::parent)
        .expect("the binary lies in <target>/<profile>/");
    target.join("console-screenshots")
}

/// An interactive shell through Proctor's SSH listener, on a 100x24 terminal that `expect` drives:
/// a prompt, a typed command and its output, recorded as a terminal channel.
fn ssh_shell(proctor: &Proctor, token: &str) -> Output {
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        format!(
            r#"set timeout 20
set stty_init "rows 24 cols 100"
spawn ssh -tt -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o PreferredAuthentications=password -o PubkeyAuthentication=no -o Port={port} alice%box@127.0.0.1
proc fail {{what}} {{ puts "\nFAILED: $what"; exit 1 }}
expect "$ " {{}} timeout {{ fail prompt }}
send "echo console-ssh-\$((6*7))\r"
expect "console-ssh-42" {{}} timeout {{ fail echo }}
expect "$ " {{}} timeout {{ fail prompt-again }}
send "exit\r"
expect eof
"#,
            port = proctor.ssh_port
        ),
    )
    .unwrap();
    let mut expect = Command::new("expect");
    expect.arg("-f").arg(script.path()).stdin(Stdio::null());
    sshd().askpass(&mut expect, token);
    expect.output().unwrap()
}

#[test]
fn the_console_finds_replays_and_approves_in_a_real_browser() {
    if let Some(why) = missing_tools() {
        if std::env::var("PROCTOR_TEST_BROWSER").as_deref() == Ok("1") {
            panic!("the browser test cannot run: {why}; `bash .ci/run` installs what it needs");
        }
        println!(
            "browser test skipped: {why} (`bash .ci/run` installs it; PROCTOR_TEST_BROWSER=1 makes this a failure)"
        );
        return;
    }
    admin_sql(
        "drop table if exists console_items; \
         create table console_items (id int primary key, name text, note text); \
         insert into console_items values (1, 'widget', 'plain'), \
           (2, 'gadget', 'postgres://app:Console-S3cret-pw@db.internal/prod'), (3, 'gizmo', null)",
    );
    let ssh = ssh_unavailable();
    let mut config = format!("{APP_DB}{HOLD}");
    if ssh.is_none() {
        config.push_str(&sshd().connection_config("box", "group:dba"));
    }
    let proctor = Proctor::start(&config);
    let alice = proctor.add_identity("alice", &["dba"]);
    let carol = proctor.add_identity("carol", &["dba"]);
    let ana = proctor.add_identity("ana", &["auditor"]);
    let bob = proctor.add_identity("bob", &["approver"]);

    // The session the console must find: alice's psql run, with a value masked in its result.
    let statement = "SELECT id, name, note FROM console_items ORDER BY id";
    let shown = proctor.psql_ok("alice", &alice, "app-db", &["-c", statement]);
    assert!(shown.contains("widget"), "{shown}");
    let session = proctor.ended_sessions_of("alice", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another identity's session, which the filter must leave out.
    proctor.psql_ok(
        "carol",
        &carol,
        "app-db",
        &["-c", "SELECT count(*) FROM console_items"],
    );
    let other = proctor.ended_sessions_of("carol", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let ssh_text = "console-ssh-42";
    let ssh_session = match &ssh {
        None => {
            let out = ssh_shell(&proctor, &alice);
            assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
            let sessions = proctor.ended_sessions_of("alice", 2);
            let ssh = sessions
                .iter()
                .find(|s| s["protocol"] == "ssh")
                .expect("the SSH session");
            Some(ssh["id"].as_str().unwrap().to_owned())
        }
        Some(why) => {
            println!("no SSH session in the browser test: {why}");
            None
        }
    };

    // A statement held for approval, its psql waiting.
    let held = "UPDATE console_items SET name = 'approved-in-browser' WHERE id = 1 RETURNING name";
    let waiting = proctor.psql_in_background("alice", &alice, "app-db", held);
    let request = proctor.pending_approvals(1)[0].clone();
    assert_eq!(request["rule"], "hold-console-items", "{request}");

    let screenshots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&screenshots);
    let mut node = Command::new("node");
    node.arg("console.mjs")
        .current_dir(browser_dir())
        .env(
            "PROCTOR_CONSOLE_URL",
            format!("http://127.0.0.1:{}/", proctor.http_port),
        )
        .env("PROCTOR_CONSOLE_TOKEN", &ana)
        .env("PROCTOR_CONSOLE_APPROVER_TOKEN", &bob)
        .env("PROCTOR_CONSOLE_IDENTITY", "alice")
        .env("PROCTOR_CONSOLE_SESSION", &session)
        .env("PROCTOR_CONSOLE_OTHER_SESSION", &other)
        .env("PROCTOR_CONSOLE_STATEMENT", statement)
        .env("PROCTOR_CONSOLE_MASKED", "1")
        .env("PROCTOR_CONSOLE_HELD", held)
        .env("PROCTOR_CONSOLE_SCREENSHOTS", &screenshots)
        .env("PROCTOR_CONSOLE_CHROMIUM", CHROMIUM);
    if let Some(ssh_session) = &ssh_session {
        node.env("PROCTOR_CONSOLE_SSH_SESSION", ssh_session)
            .env("PROCTOR_CONSOLE_SSH_TEXT", ssh_text);
    }
    let browser = node.output().unwrap();
    println!("{}{}", stdout(&browser), stderr(&browser));
    if !browser.status.success() {
        // The held psql would wait for its timeout: withdraw it by ending the gateway first.
        drop(proctor);
        let _ = waiting.join();
        panic!(
            "the browser test failed (screenshots in {}):\n{}{}",
            screenshots.display(),
            stdout(&browser),
            stderr(&browser)
        );
    }

    // The approval in the browser let the waiting client finish, with its result.
    let out = waiting.join().unwrap();
    assert!(
        out.status.success(),
        "the held psql failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("approved-in-browser"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        admin_sql("select name from console_items where id = 1"),
        "approved-in-browser"
    );
    let decided = proctor.cli_ok(&["approvals", "list", "--all", "--format", "json"]);
    let decided: serde_json::Value = serde_json::from_str(&decided).unwrap();
    let row = decided
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == request["id"])
        .expect("the request is listed");
    assert_eq!(row["status"], "approved", "{row}");
    assert_eq!(row["decided_by"], "bob", "{row}");

    let mut pages: Vec<PathBuf> = std::fs::read_dir(&screenshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    println!("screenshots of the console:");
    for page in &pages {
        println!("  {}", page.display());
    }
    assert!(pages.len() >= 8, "{pages:?}");
}
