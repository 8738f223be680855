//! End to end: an SSH session's terminal stream, as the journal holds it, exported by the real
//! `proctor export --format asciicast` and played by `proctor replay`; and the export played by
//! asciinema where it is installed. The session is written through the journal's writer, as the
//! gateway writes it, so no SSH target is needed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor_core::journal::{
    no_findings, CanonicalJson, Chain, SessionHeader, Store, SyncMode, Writer,
};
use serde_json::{json, Value};

/// 2026-12-07T10:00:00Z, in nanoseconds.
const STARTED_NS: i64 = 1_796_637_600_000_000_000;

/// A data dir holding recorded sessions, and the configuration that names it.
struct Journal {
    dir: tempfile::TempDir,
}

impl Journal {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(
            dir.path().join("proctor.toml"),
            format!("[server]\ndata_dir = \"{}\"\n", data.display()),
        )
        .unwrap();
        Self { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("proctor.toml")
    }

    /// Records a session of alice on `connection` with `events` (kind and body), one millisecond
    /// apart, and ends it.
    fn record(&self, id: &str, protocol: &str, connection: &str, events: &[(&'static str, Value)]) {
        let header = SessionHeader {
            session_id: id.into(),
            protocol: protocol.into(),
            identity: "alice".into(),
            connection: connection.into(),
            client_addr: "192.0.2.7:50022".into(),
            started_at: STARTED_NS,
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = Store::open(&self.dir.path().join("data"), SyncMode::Normal).unwrap();
            let writer = Writer::start(&store).unwrap();
            let broken = Arc::new(AtomicBool::new(false));
            let mut chain = Chain::start(&header).unwrap();
            writer.open_session(header.clone(), &broken).await.unwrap();
            let mut at = STARTED_NS;
            for (kind, body) in events {
                at += 1_000_000;
                let event = chain.next_event(at, kind, CanonicalJson::of(body), no_findings());
                writer.append(event, &broken).await.unwrap();
            }
            writer
                .close_session(id.into(), at, "client disconnected".into(), &broken)
                .await
                .unwrap();
            writer.shutdown();
        });
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_proctor"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

const SHELL_SESSION: &str = "0193a0b1-0000-7000-8000-00000000cafe";
const PROMPT: &str = "\u{1b}[1;32malice@web-1\u{1b}[0m:~$ ";

/// As the gateway records them: a shell on channel 0 (typed `ls`, then a password at `sudo`), a `top`
/// with a terminal on channel 1 and then an `uptime` on the same channel number, and a shell without
/// a terminal on channel 2.
fn shell_session() -> Journal {
    let journal = Journal::new();
    journal.record(
        SHELL_SESSION,
        "ssh",
        "web-1",
        &[
            ("session.start", json!({"identity": "alice"})),
            (
                "ssh.shell",
                json!({"channel": 0, "term": "xterm-256color", "cols": 100, "rows": 30}),
            ),
            // The gateway records the size it starts with as a resize too.
            (
                "term.resize",
                json!({"channel": 0, "ms": 0, "cols": 100, "rows": 30}),
            ),
            ("term.out", json!({"channel": 0, "ms": 120, "data": PROMPT})),
            ("term.in", json!({"channel": 0, "ms": 800, "data": "ls\r"})),
            (
                "term.out",
                json!({"channel": 0, "ms": 900, "data": "ls\r\n"}),
            ),
            (
                "ssh.exec",
                json!({"channel": 1, "command": "top", "pty": true}),
            ),
            (
                "term.resize",
                json!({"channel": 1, "ms": 0, "cols": 132, "rows": 50}),
            ),
            (
                "term.out",
                json!({"channel": 1, "ms": 5, "data": "top - 10:00:01\r\n"}),
            ),
            (
                "term.resize",
                json!({"channel": 0, "ms": 1500, "cols": 120, "rows": 40}),
            ),
            (
                "term.out",
                json!({"channel": 0, "ms": 2250, "data": format!("a.txt  b.txt\r\n{PROMPT}")}),
            ),
            (
                "term.out",
                json!({"channel": 0, "ms": 2600, "data": "sudo -i\r\n[sudo] password for alice: "}),
            ),
            (
                "term.in",
                json!({"channel": 0, "ms": 3000, "hidden": true, "bytes": 8}),
            ),
            ("term.out", json!({"channel": 0, "ms": 3100, "data": "\n"})),
            // Channel 1 again, for another command: a stream of its own.
            (
                "ssh.exec",
                json!({"channel": 1, "command": "uptime", "pty": true}),
            ),
            (
                "term.resize",
                json!({"channel": 1, "ms": 0, "cols": 90, "rows": 20}),
            ),
            (
                "term.out",
                json!({"channel": 1, "ms": 3, "data": "up 1 day\r\n"}),
            ),
            // A shell without a terminal.
            (
                "ssh.shell",
                json!({"channel": 2, "term": null, "cols": null, "rows": null}),
            ),
            ("term.out", json!({"channel": 2, "ms": 40, "data": "# "})),
        ],
    );
    journal
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn output_of(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|frame| frame[1] == "o")
        .map(|frame| frame[2].as_str().unwrap())
        .collect()
}

#[test]
fn a_shell_exports_as_asciicast_v2_with_its_times_output_and_resizes() {
    let journal = shell_session();
    let text = journal.cli_ok(&["export", "0193a0b1", "--format", "asciicast"]);
    let lines = json_lines(&text);
    assert_eq!(
        lines[0],
        json!({
            "version": 2,
            "width": 100,
            "height": 30,
            "timestamp": STARTED_NS / 1_000_000_000,
            "env": {"TERM": "xterm-256color"},
            "title": format!("alice@web-1 {SHELL_SESSION}"),
        })
    );
    assert!(text.starts_with("{\"version\":2,"));
    assert_eq!(
        lines[1..],
        [
            json!([0.12, "o", PROMPT]),
            json!([0.9, "o", "ls\r\n"]),
            json!([1.5, "r", "120x40"]),
            json!([2.25, "o", format!("a.txt  b.txt\r\n{PROMPT}")]),
            json!([2.6, "o", "sudo -i\r\n[sudo] password for alice: "]),
            json!([3.1, "o", "\n"]),
        ]
    );

    // To a file, the same; the other channel on request.
    let file = journal.dir.path().join("shell.cast");
    let out = journal.cli(&[
        "export",
        SHELL_SESSION,
        "--format",
        "asciicast",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    let top = json_lines(&journal.cli_ok(&[
        "export",
        SHELL_SESSION,
        "--format",
        "asciicast",
        "--channel",
        "1",
    ]));
    // An exec's size is in its first resize; its TERM is not recorded.
    assert_eq!(
        (&top[0]["width"], &top[0]["height"], &top[0]["env"]),
        (&json!(132), &json!(50), &json!({}))
    );
    assert_eq!(top[1..], [json!([0.005, "o", "top - 10:00:01\r\n"])]);
    let plain = json_lines(&journal.cli_ok(&[
        "export",
        SHELL_SESSION,
        "--format",
        "asciicast",
        "--channel",
        "2",
    ]));
    assert_eq!(
        (&plain[0]["width"], &plain[0]["height"], &plain[0]["env"]),
        (&json!(80), &json!(24), &json!({}))
    );
    assert_eq!(plain[1..], [json!([0.04, "o", "# "])]);

    asciinema_plays(&file, &output_of(&lines[1..]));
}

#[test]
fn the_bundle_export_keeps_its_form() {
    let journal = shell_session();
    let bundle = journal.dir.path().join("bundle.json");
    journal.cli_ok(&["export", SHELL_SESSION, "-o", bundle.to_str().unwrap()]);
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    assert_eq!(bundle["session"]["session_id"], SHELL_SESSION);
    let out = journal.cli(&["export", SHELL_SESSION]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("-o FILE"));
}

#[test]
fn replay_prints_the_output_in_order_at_its_pace() {
    let journal = shell_session();
    let expected =
        format!("{PROMPT}ls\r\na.txt  b.txt\r\n{PROMPT}sudo -i\r\n[sudo] password for alice: \n");
    let started = Instant::now();
    let played = journal.cli_ok(&["replay", "0193a0b1", "--speed", "100"]);
    assert_eq!(played, expected);
    assert!(started.elapsed() >= Duration::from_millis(31));

    // Pauses cut to 0.1 s: 0.12 s, 0.78 s, 1.35 s, 0.35 s, 0.5 s become 0.5 s in all.
    let started = Instant::now();
    let played = journal.cli_ok(&["replay", SHELL_SESSION, "--idle-limit", "0.1"]);
    let elapsed = started.elapsed();
    assert_eq!(played, expected);
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );

    let top = journal.cli_ok(&["replay", SHELL_SESSION, "--channel", "1", "--speed", "10"]);
    assert_eq!(top, "top - 10:00:01\r\n");
}

#[test]
fn a_session_without_terminal_output_is_refused_clearly() {
    let journal = shell_session();
    journal.record(
        "0193a0b1-0000-7000-8000-0000000000db",
        "postgres",
        "app-db",
        &[("db.query", json!({"sql": "select 1"}))],
    );
    for args in [
        ["replay", "0193a0b1-0000-7000-8000-0000000000db"].as_slice(),
        &[
            "export",
            "0193a0b1-0000-7000-8000-0000000000db",
            "--format",
            "asciicast",
        ],
    ] {
        let out = journal.cli(args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("has no terminal output"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    let out = journal.cli(&["replay", SHELL_SESSION, "--channel", "7"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("channel 7 of session")
            && stderr.contains("channels with terminal output: 0, 1, 2"),
        "{stderr}"
    );
}

/// asciinema, if installed, plays the file, resize events and all. It runs without a controlling
/// terminal, as asciinema 2.2 can: `asciinema cat` then fails (it opens /dev/tty), and `asciinema
/// play` prints the output without its timing (it waits by reading the terminal).
fn asciinema_plays(file: &Path, output: &str) {
    let mut play = Command::new("asciinema");
    play.args(["play", "--speed", "100"])
        .arg(file)
        .stdin(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe; the child leaves the test's terminal, if it has one.
    unsafe {
        play.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let Ok(out) = play.output() else {
        eprintln!("asciinema is not installed: the export is not checked with it");
        return;
    };
    assert!(
        out.status.success(),
        "asciinema play: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), output);
}
