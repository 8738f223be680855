//! End to end: sessions are sealed into the signed log; an exported bundle verifies offline with only
//! the verifier key, and each way of tampering with a bundle or with the store is caught and named.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use proctor_core::journal::note::{Checkpoint, LogKey, NoteVerifier};
use proctor_core::journal::{
    event_hash, genesis_hash, merkle, CanonicalJson, Event, SessionHeader,
};
use serde_json::Value;
use support::{edit_stored_events, stdout, Proctor, APP_DB};

/// Runs three statements as alice and returns the id of the ended session.
fn session_of(proctor: &Proctor, token: &str, statements: &[&str]) -> String {
    let mut args = Vec::new();
    for statement in statements {
        args.extend(["-c", statement]);
    }
    let before = proctor.sessions(&["--identity", "alice"]).len();
    let out = proctor.psql("alice", token, "app-db", "disable", &args);
    assert!(out.status.success(), "{}", support::stderr(&out));
    let sessions = proctor.ended_sessions_of("alice", before + 1);
    sessions[before]["id"].as_str().unwrap().to_owned()
}

fn export(proctor: &Proctor, id: &str, name: &str) -> PathBuf {
    let path = proctor.dir.path().join(name);
    proctor.cli_ok(&["export", id, "-o", path.to_str().unwrap()]);
    path
}

/// `proctor verify` with nothing but the bundle and the key: no config, no data dir.
fn verify(bundle: &Path, key: &str) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["verify", bundle.to_str().unwrap(), "--key", key])
        .env_remove("PROCTOR_CONFIG")
        .current_dir(bundle.parent().unwrap())
        .output()
        .unwrap()
}

fn read(bundle: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap()
}

/// Writes an altered copy of `bundle` and verifies it; it must fail, naming `expected`.
fn assert_tampering_caught(
    bundle: &Path,
    key: &str,
    what: &str,
    alter: impl FnOnce(&mut Value),
    expected: &str,
) {
    let mut value = read(bundle);
    alter(&mut value);
    let altered = bundle.with_file_name(format!("tampered-{}.json", what.replace(' ', "-")));
    std::fs::write(&altered, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    let out = verify(&altered, key);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{what}: verify passed:\n{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("FAIL") && last.contains(expected),
        "{what}: expected {expected:?}, got:\n{text}"
    );
}

#[test]
fn a_bundle_verifies_offline_and_each_tampering_is_named() {
    let mut proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let id = session_of(&proctor, &token, &["select 1", "select 2", "select 3"]);
    let key = proctor.cli_ok(&["log", "key"]).trim().to_owned();
    let bundle = export(&proctor, &id, "bundle.json");
    proctor.stop();
    std::fs::remove_dir_all(proctor.data_dir()).unwrap();

    let out = verify(&bundle, &key);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for check in [
        "checkpoint: signed by",
        "chain: 8 events",
        "seals:",
        "inclusion:",
        "complete: the session ends with session.end",
    ] {
        assert!(text.contains(check), "{check} missing from:\n{text}");
    }
    assert!(text.lines().all(|line| line.starts_with("ok")), "{text}");

    let sql_of = |v: &Value, seq: usize| v["events"][seq - 1]["body"]["sql"].clone();
    assert_eq!(sql_of(&read(&bundle), 4), "select 2");
    assert_tampering_caught(
        &bundle,
        &key,
        "body byte",
        |v| {
            v["events"][3]["body"]["sql"] = "select 9".into();
        },
        "chain: event 4: content does not match its hash",
    );
    assert_tampering_caught(
        &bundle,
        &key,
        "timestamp",
        |v| {
            let at = v["events"][2]["at"].as_i64().unwrap();
            v["events"][2]["at"] = (at + 1).into();
        },
        "chain: event 3: content does not match its hash",
    );
    assert_tampering_caught(
        &bundle,
        &key,
        "identity",
        |v| {
            v["session"]["identity"] = "mallory".into();
        },
        "chain: event 1: does not link to the session header",
    );
    assert_tampering_caught(
        &bundle,
        &key,
        "deleted event",
        |v| {
            v["events"].as_array_mut().unwrap().remove(4);
        },
        "chain: event 5: event 5 is missing (found 6 next)",
    );
    assert_tampering_caught(
        &bundle,
        &key,
        "reordered events",
        |v| {
            v["events"].as_array_mut().unwrap().swap(3, 4);
        },
        "chain: event 4: event 4 is missing (found 5 next)",
    );
    assert_tampering_caught(
        &bundle,
        &key,
        "truncated end",
        |v| {
            let events = v["events"].as_array_mut().unwrap();
            events.truncate(events.len() - 2);
        },
        "events were removed from its end",
    );
    assert_tampering_caught(
        &bundle,
        &key,
        "altered seal",
        |v| {
            let leaf = v["seals"][0]["leaf"]
                .as_str()
                .unwrap()
                .replace("\"node\":\"", "\"node\":\"x");
            v["seals"][0]["leaf"] = leaf.into();
        },
        "inclusion: leaf",
    );
    assert_tampering_caught(
        &bundle,
        &key,
        "altered checkpoint",
        |v| {
            let note = v["checkpoint"].as_str().unwrap();
            let mut lines: Vec<String> = note.lines().map(str::to_owned).collect();
            lines[1] = (lines[1].parse::<u64>().unwrap() + 1).to_string();
            v["checkpoint"] = format!("{}\n", lines.join("\n")).into();
        },
        "checkpoint: the signature by",
    );

    // Rewritten whole: a consistent chain with an edited statement, sealed into a fresh tree and
    // signed with another key of the same name. Only the key gives it away.
    let (rewritten, forger) = rewrite_and_reseal(&read(&bundle), &key);
    let forged = bundle.with_file_name("forged.json");
    std::fs::write(&forged, serde_json::to_vec_pretty(&rewritten).unwrap()).unwrap();
    let with_forgers_key = verify(&forged, &forger);
    assert!(
        with_forgers_key.status.success(),
        "the forgery is self-consistent: {}",
        stdout(&with_forgers_key)
    );
    let out = verify(&forged, &key);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("FAIL checkpoint: the note is signed by a different key"),
        "{}",
        stdout(&out)
    );
}

/// Edits statement 4 of a bundle, recomputes every hash after it, seals it into a new one-leaf tree and
/// signs that with a new key named like the real one. Returns the forged bundle and the forger's key.
fn rewrite_and_reseal(bundle: &Value, real_key: &str) -> (Value, String) {
    let mut forged = bundle.clone();
    let header: SessionHeader = serde_json::from_value(forged["session"].clone()).unwrap();
    let mut prev = genesis_hash(&header).unwrap();
    let events = forged["events"].as_array_mut().unwrap();
    events[3]["body"]["sql"] = "select 9".into();
    for event in events.iter_mut() {
        event["prev"] = prev.clone().into();
        let parsed: Event = serde_json::from_value(event.clone()).unwrap();
        prev = event_hash(&parsed).unwrap();
        event["hash"] = prev.clone().into();
    }
    let mut seal: Value =
        serde_json::from_str(forged["seals"][0]["leaf"].as_str().unwrap()).unwrap();
    seal["chain_head"] = prev.into();
    let leaf = CanonicalJson::of(&seal).as_str().to_owned();
    let name = NoteVerifier::parse(real_key).unwrap().name().to_owned();
    let forger = LogKey::generate(&name).unwrap();
    let checkpoint = Checkpoint {
        origin: name,
        size: 1,
        root: merkle::leaf_hash(leaf.as_bytes()),
    };
    forged["seals"] = serde_json::json!([{"index": 0, "leaf": leaf, "proof": []}]);
    forged["checkpoint"] = forger.sign(&checkpoint.text()).into();
    (forged, forger.verifier_key())
}

fn journal(proctor: &Proctor) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(proctor.data_dir().join("journal.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

fn log_check(proctor: &Proctor) -> (bool, String) {
    let out = proctor.cli(&["log", "check"]);
    (out.status.success(), stdout(&out))
}

#[test]
fn the_log_check_names_a_rewritten_chain_a_dropped_session_and_an_altered_leaf() {
    let mut proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let rewritten = session_of(&proctor, &token, &["select 1", "select 2"]);
    session_of(&proctor, &token, &["select 3"]);
    proctor.cli_ok(&["log", "checkpoint"]);
    proctor.stop();
    let (ok, text) = log_check(&proctor);
    assert!(ok, "{text}");
    assert!(
        text.contains("seals of 2 sessions match the chains in the store"),
        "{text}"
    );

    // A chain rewritten consistently: `sessions verify` cannot tell, the log can.
    let db = journal(&proctor);
    let session_no: i64 = db
        .query_row("SELECT no FROM sessions WHERE id = ?1", [&rewritten], |r| {
            r.get(0)
        })
        .unwrap();
    let mut events = Vec::new();
    let header: SessionHeader = {
        let row = proctor
            .sessions(&[])
            .into_iter()
            .find(|s| s["id"] == rewritten.as_str())
            .unwrap();
        SessionHeader {
            session_id: rewritten.clone(),
            protocol: row["protocol"].as_str().unwrap().into(),
            identity: row["identity"].as_str().unwrap().into(),
            connection: row["connection"].as_str().unwrap().into(),
            client_addr: row["client_addr"].as_str().unwrap().into(),
            started_at: row["started_at"].as_i64().unwrap(),
        }
    };
    for event in proctor.events(&rewritten) {
        events.push(serde_json::from_value::<Event>(event).unwrap());
    }
    let mut prev = genesis_hash(&header).unwrap();
    for event in &mut events {
        if event.body["sql"] == "select 2" {
            event.body["sql"] = "drop table nothing_to_see".into();
        }
        event.prev = prev.clone();
        event.hash = event_hash(event).unwrap();
        prev = event.hash.clone();
    }
    edit_stored_events(&db, session_no, |stored| {
        for (line, event) in stored.iter_mut().zip(&events) {
            line["body"] = event.body.clone();
            line["prev"] = event.prev.clone().into();
            line["hash"] = event.hash.clone().into();
        }
    });
    let verify = proctor.cli(&["sessions", "verify", &rewritten]);
    assert!(
        verify.status.success(),
        "the rewrite is consistent: {}",
        stdout(&verify)
    );
    let (ok, text) = log_check(&proctor);
    assert!(
        !ok && text.contains(&format!("session {rewritten}"))
            && text.contains("the chain was rewritten"),
        "{text}"
    );
    db.execute(
        "DELETE FROM event_blocks WHERE session_no = ?1",
        [session_no],
    )
    .unwrap();
    db.execute("DELETE FROM sessions WHERE no = ?1", [session_no])
        .unwrap();
    db.execute("DELETE FROM log_sealed WHERE session_no = ?1", [session_no])
        .unwrap();

    // The same session dropped from the store altogether.
    let (ok, text) = log_check(&proctor);
    assert!(
        !ok && text.contains(&format!("session {rewritten}"))
            && text.contains("the session or its events were deleted"),
        "{text}"
    );

    // The log's own leaves altered.
    db.execute(
        "UPDATE log_leaves SET data = replace(data, 'seal', 'SEAL') WHERE kind = 'seal'",
        [],
    )
    .unwrap();
    let (ok, text) = log_check(&proctor);
    assert!(
        !ok && text.contains("do not hash to the signed root"),
        "{text}"
    );
}

/// The session number the store files `id` under.
fn session_no(db: &rusqlite::Connection, id: &str) -> i64 {
    db.query_row("SELECT no FROM sessions WHERE id = ?1", [id], |r| r.get(0))
        .unwrap()
}

/// `proctor log check` must fail, naming `expected` on its first failing line.
fn assert_log_check_names(proctor: &Proctor, what: &str, expected: &str) {
    let (ok, text) = log_check(proctor);
    assert!(!ok, "{what}: log check passed:\n{text}");
    let first_failure = text
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_default();
    assert!(
        first_failure.contains(expected),
        "{what}: expected {expected:?}, got:\n{text}"
    );
}

#[test]
fn the_log_check_rehashes_every_stored_event_and_names_the_first_bad_one() {
    let mut proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let tampered = session_of(&proctor, &token, &["select 1", "select 2", "select 3"]);
    session_of(&proctor, &token, &["select 4"]);
    proctor.cli_ok(&["log", "checkpoint"]);
    proctor.stop();
    let (ok, text) = log_check(&proctor);
    assert!(ok, "{text}");
    assert!(
        text.contains("chains: 12 events of 2 sessions rehashed"),
        "{text}"
    );

    let db = journal(&proctor);
    let no = session_no(&db, &tampered);
    let mut original = Vec::new();
    edit_stored_events(&db, no, |events| original = events.clone());
    let restore = || edit_stored_events(&db, no, |events| *events = original.clone());

    // One byte of a statement, inside the seal: its head is untouched.
    let edited = db
        .execute(
            "UPDATE event_blocks SET data = replace(data, '\"select 2\"', '\"select 9\"') \
             WHERE session_no = ?1",
            [no],
        )
        .unwrap();
    assert_eq!(edited, 1);
    assert_log_check_names(
        &proctor,
        "edited byte",
        &format!("chain: session {tampered} event 4: content does not match its hash"),
    );
    restore();

    edit_stored_events(&db, no, |events| events.retain(|e| e["seq"] != 3));
    assert_log_check_names(
        &proctor,
        "missing event",
        &format!("chain: session {tampered} event 3: event 3 is missing (found 4 next)"),
    );
    restore();

    edit_stored_events(&db, no, |events| events.swap(3, 4));
    assert_log_check_names(
        &proctor,
        "reordered pair",
        &format!("chain: session {tampered} event 4: event 4 is missing (found 5 next)"),
    );
    restore();

    let (ok, text) = log_check(&proctor);
    assert!(ok, "restored, the store checks out again: {text}");
}

/// The tree size of a signed checkpoint.
fn size_of(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

#[test]
fn identity_changes_are_leaves_the_log_only_grows_and_old_bundles_survive_a_key_rotation() {
    let proctor = Proctor::start(&APP_DB);
    let start = size_of(&proctor.cli_ok(&["log", "checkpoint"]));
    let token = proctor.add_identity("alice", &["dba"]);
    let after_identity = size_of(&proctor.cli_ok(&["log", "checkpoint"]));
    assert_eq!(
        after_identity,
        start + 2,
        "identity.added and token.created"
    );
    let first = session_of(&proctor, &token, &["select 1"]);
    let old_key = proctor.cli_ok(&["log", "key"]).trim().to_owned();
    let old_bundle = export(&proctor, &first, "before-rotation.json");

    let rotated = proctor.cli_ok(&["log", "rotate-key"]);
    let new_key = proctor.cli_ok(&["log", "key"]).trim().to_owned();
    assert_ne!(old_key, new_key);
    assert!(
        rotated.contains(&old_key) && rotated.contains(&new_key),
        "{rotated}"
    );
    let second = session_of(&proctor, &token, &["select 2"]);
    let new_bundle = export(&proctor, &second, "after-rotation.json");
    assert!(verify(&old_bundle, &old_key).status.success());
    assert!(verify(&new_bundle, &new_key).status.success());
    assert_eq!(verify(&old_bundle, &new_key).status.code(), Some(1));
    assert_eq!(verify(&new_bundle, &old_key).status.code(), Some(1));

    // The log only grew: consistency from the first checkpoint to now holds.
    let consistency = proctor.cli_ok(&["log", "consistency", &start.max(1).to_string()]);
    assert!(consistency.contains("ok   the log at"), "{consistency}");

    // The gateway serves the newest checkpoint over HTTP, signed by the current key.
    let served = http_get(proctor.http_port, "/log/checkpoint");
    let verifier = NoteVerifier::parse(&new_key).unwrap();
    let text = verifier.verify(&served).unwrap();
    assert!(Checkpoint::parse(text).unwrap().size > after_identity);
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        if head.starts_with("HTTP/1.1 200") {
            return body.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{response}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// docs/verify_bundle.py, the verifier written from docs/journal-format.md alone.
fn independent_verify(bundle: &Path, key: &str) -> Output {
    std::process::Command::new("python3")
        .arg(docs().join("verify_bundle.py"))
        .arg(bundle)
        .arg(key)
        .output()
        .unwrap()
}

#[test]
fn the_documented_format_is_enough_to_verify_bundles_independently() {
    let example = docs().join("example-bundle.json");
    let example_key = std::fs::read_to_string(docs().join("example-bundle.key")).unwrap();
    let example_key = example_key.trim();
    let ours = verify(&example, example_key);
    assert!(ours.status.success(), "{}", stdout(&ours));
    let theirs = independent_verify(&example, example_key);
    assert!(
        theirs.status.success(),
        "{}{}",
        stdout(&theirs),
        support::stderr(&theirs)
    );

    // A fresh bundle, with statements whose timestamps and text differ, verifies the same way, and a
    // tampered copy fails there too.
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let id = session_of(&proctor, &token, &["select 'é😀\"quoted\"'", "select 2"]);
    let key = proctor.cli_ok(&["log", "key"]).trim().to_owned();
    let bundle = export(&proctor, &id, "fresh.json");
    let theirs = independent_verify(&bundle, &key);
    assert!(
        theirs.status.success(),
        "{}{}",
        stdout(&theirs),
        support::stderr(&theirs)
    );
    let mut value = read(&bundle);
    value["events"][3]["body"]["sql"] = "select 3".into();
    let tampered = bundle.with_file_name("fresh-tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&value).unwrap()).unwrap();
    let theirs = independent_verify(&tampered, &key);
    assert!(!theirs.status.success());
    assert!(
        support::stderr(&theirs).contains("FAIL chain: event 4"),
        "{}",
        support::stderr(&theirs)
    );
}

#[test]
/// Seals are due a second after an event at most; the deadline here leaves room for a loaded machine.
fn an_open_session_is_sealed_without_waiting_for_its_end() {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (client, connection) = runtime
        .block_on(tokio_postgres::connect(
            &proctor.conninfo("alice", &token, "app-db"),
            tokio_postgres::NoTls,
        ))
        .unwrap();
    runtime.spawn(connection);
    runtime.block_on(client.simple_query("select 1")).unwrap();
    let sealed = |db: &rusqlite::Connection| -> i64 {
        db.query_row(
            "SELECT coalesce(max(l.last_seq), 0) FROM log_sealed l JOIN sessions s ON s.no = l.session_no \
             WHERE s.identity = 'alice'",
            [],
            |row| row.get(0),
        )
        .unwrap()
    };
    let db = journal(&proctor);
    let asked = std::time::Instant::now();
    while sealed(&db) < 3 {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "the open session was not sealed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still open: the seal came from the clock, not from the session's end.
    assert!(!client.is_closed());
    assert!(proctor.sessions(&["--identity", "alice"])[0]["end_reason"].is_null());
}
