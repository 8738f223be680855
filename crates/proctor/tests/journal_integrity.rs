//! End to end: the journal is tamper-evident, survives `kill -9`, and when it cannot commit, nothing is
//! forwarded.

mod support;

use std::time::Duration;

use proctor_core::journal::CUT_SHORT;
use support::{admin_sql, edit_stored_events, of_kind, stderr, stdout, Proctor, APP_DB};
use tokio_postgres::NoTls;

fn journal(proctor: &Proctor) -> rusqlite::Connection {
    proctor.sessions(&[]);
    store_db(proctor)
}

/// The store, opened directly: no command runs first.
fn store_db(proctor: &Proctor) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(proctor.data_dir().join("journal.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

#[test]
fn an_edited_or_deleted_event_is_named_by_sessions_verify() {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let out = proctor.psql(
        "alice",
        &token,
        "app-db",
        "disable",
        &["-c", "select 1", "-c", "select 2", "-c", "select 3"],
    );
    assert!(out.status.success());
    let id = proctor.ended_sessions_of("alice", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let verify = proctor.cli(&["sessions", "verify", &id]);
    assert!(verify.status.success(), "{}", stdout(&verify));

    let db = journal(&proctor);
    let edited = db
        .execute(
            "UPDATE event_blocks SET data = replace(data, '\"select 2\"', '\"select 9\"') WHERE session_no = (SELECT no FROM sessions WHERE id = ?1) AND instr(data, '\"select 2\"') > 0",
            [&id],
        )
        .unwrap();
    assert_eq!(edited, 1);
    let verify = proctor.cli(&["sessions", "verify", &id]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        stdout(&verify).contains("BROKEN at event 4: content does not match its hash"),
        "{}",
        stdout(&verify)
    );
    db.execute("UPDATE event_blocks SET data = replace(data, '\"select 9\"', '\"select 2\"') WHERE session_no = (SELECT no FROM sessions WHERE id = ?1)", [&id])
        .unwrap();
    assert!(proctor.cli(&["sessions", "verify", &id]).status.success());

    let session_no: i64 = db
        .query_row("SELECT no FROM sessions WHERE id = ?1", [&id], |row| {
            row.get(0)
        })
        .unwrap();
    edit_stored_events(&db, session_no, |events| events.retain(|e| e["seq"] != 3));
    let verify = proctor.cli(&["sessions", "verify", &id]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        stdout(&verify).contains("BROKEN at event 3: event 3 is missing"),
        "{}",
        stdout(&verify)
    );

    db.execute("UPDATE sessions SET identity = 'bob' WHERE id = ?1", [&id])
        .unwrap();
    let verify = proctor.cli(&["sessions", "verify", &id]);
    assert!(
        stdout(&verify).contains("BROKEN at event 1: does not link to the session header"),
        "{}",
        stdout(&verify)
    );
}

#[test]
fn every_acknowledged_statement_is_in_the_journal_after_kill_9() {
    let mut proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    admin_sql("drop table if exists e2e_durable; create table e2e_durable (n int)");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let conninfo = proctor.conninfo("alice", &token, "app-db");
    let acknowledged = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
        tokio::spawn(connection);
        for n in 0..200 {
            client
                .execute("insert into e2e_durable values ($1)", &[&n])
                .await
                .unwrap();
        }
        200
    });
    proctor.kill9();
    assert_eq!(admin_sql("select count(*) from e2e_durable"), "200");

    // The first command after the crash recovers the log the gateway left, and ends the session it
    // left open, at its last event.
    let session = &proctor.sessions(&["--identity", "alice"])[0];
    assert_eq!(session["end_reason"], CUT_SHORT, "{session}");
    let id = session["id"].as_str().unwrap();
    let events = proctor.events(id);
    let (last, end) = (&events[events.len() - 2], &events[events.len() - 1]);
    assert_eq!(end["kind"], "session.end");
    assert_eq!(end["body"]["reason"], CUT_SHORT);
    assert_eq!(end["at"], last["at"]);
    assert_eq!(session["ended_at"], last["at"]);
    let inserts = proctor
        .events(id)
        .iter()
        .filter(|e| {
            e["kind"] == "db.query" && e["body"]["sql"] == "insert into e2e_durable values ($1)"
        })
        .count();
    assert_eq!(inserts, acknowledged);
    let verify = proctor.cli(&["sessions", "verify", id]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    proctor.spawn();
    let ok = proctor.psql("alice", &token, "app-db", "disable", &["-c", "select 1"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

/// Waits until alice's first session shows `count` events in the store, so all of them are committed.
fn wait_for_events(proctor: &Proctor, count: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sessions = proctor.sessions(&["--identity", "alice"]);
        if sessions.first().is_some_and(|s| s["events"] == count) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{sessions:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_statement_that_cannot_be_recorded_is_not_forwarded() {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    admin_sql("drop table if exists e2e_fail_closed; create table e2e_fail_closed (n int)");
    let (runtime, client) = proctor.tokio_client("alice", &token, "app-db");
    runtime.block_on(client.simple_query("select 1")).unwrap();
    wait_for_events(&proctor, 3);

    // The journal reserves its disk space ahead, a megabyte at a time: a statement larger than
    // that needs more, which the file size limit refuses, as a full disk would.
    support::limit_file_size(proctor.pid(), "1");
    let padded = format!(
        "insert into e2e_fail_closed values (1) /* {} */",
        "x".repeat(2 << 20)
    );
    let error = runtime.block_on(client.simple_query(&padded)).unwrap_err();
    support::limit_file_size(proctor.pid(), "unlimited");
    let error = error
        .as_db_error()
        .unwrap_or_else(|| panic!("not a PostgreSQL error: {error:?}\n{}", proctor.log()));
    assert_eq!(error.code().code(), "58030");
    assert!(error
        .message()
        .contains("could not record this statement, so it was not sent"));
    assert_eq!(admin_sql("select count(*) from e2e_fail_closed"), "0");

    // What was committed before the failure: the start, `select 1` and its result. The end of the
    // session could not be recorded while the journal was failing, so the session stays open.
    let session = proctor.sessions(&["--identity", "alice"])[0].clone();
    assert_eq!(session["events"], 3);
    let events = proctor.events(session["id"].as_str().unwrap());
    let queries: Vec<_> = of_kind(&events, "db.query")
        .iter()
        .map(|e| e["body"]["sql"].clone())
        .collect();
    assert_eq!(queries, ["select 1"]);
    let verify = proctor.cli(&["sessions", "verify", session["id"].as_str().unwrap()]);
    assert!(
        verify.status.success(),
        "what was committed is an intact prefix: {}",
        stdout(&verify)
    );

    let again = proctor.psql(
        "alice",
        &token,
        "app-db",
        "disable",
        &["-c", "insert into e2e_fail_closed values (2)"],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(admin_sql("select count(*) from e2e_fail_closed"), "1");
}

#[test]
fn a_session_open_when_its_gateway_was_killed_is_ended_by_the_next_gateway() {
    let mut proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let (runtime, client) = proctor.tokio_client("alice", &token, "app-db");
    runtime.block_on(client.simple_query("select 1")).unwrap();
    wait_for_events(&proctor, 3);
    proctor.kill9();
    proctor.spawn();

    // Asked of the running gateway's data dir: the new gateway ended it when it started.
    let session = proctor.sessions(&["--identity", "alice"])[0].clone();
    assert_eq!(session["end_reason"], CUT_SHORT, "{session}");
    let id = session["id"].as_str().unwrap();
    let events = proctor.events(id);
    let kinds: Vec<_> = events.iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(
        kinds,
        ["session.start", "db.query", "db.result", "session.end"]
    );
    assert_eq!(events[3]["at"], events[2]["at"]);
    let verify = proctor.cli(&["sessions", "verify", id]);
    assert!(verify.status.success(), "{}", stdout(&verify));

    // A session of the gateway running now stays open whatever commands run meanwhile.
    let (runtime, client) = proctor.tokio_client("alice", &token, "app-db");
    runtime.block_on(client.simple_query("select 2")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let live = loop {
        let sessions = proctor.sessions(&["--identity", "alice"]);
        if sessions.len() == 2 && sessions[1]["events"] == 3 {
            break sessions[1].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{sessions:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(live["end_reason"].is_null(), "{live}");
    let (ok, text) = log_check(&proctor);
    assert!(ok, "{text}");
}

fn log_check(proctor: &Proctor) -> (bool, String) {
    let out = proctor.cli(&["log", "check"]);
    (out.status.success(), stdout(&out))
}

/// Where the store's ingestion of the commit log stands.
fn ingested_offset(db: &rusqlite::Connection) -> usize {
    db.query_row(
        "SELECT coalesce(max(value), 0) FROM journal_state WHERE key = 'log_offset'",
        [],
        |row| row.get::<_, i64>(0),
    )
    .unwrap() as usize
}

#[test]
fn a_damaged_commit_log_record_is_set_aside_reported_and_never_sealed_over() {
    let mut proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    proctor.cli_ok(&["log", "checkpoint"]);
    // The store is held by another writer, so the gateway commits to its log but cannot copy it
    // into the store: what it commits now is only in the log when it is killed.
    let holder = store_db(&proctor);
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let out = proctor.psql(
        "alice",
        &token,
        "app-db",
        "disable",
        &["-c", "select 1", "-c", "select 2", "-c", "select 3"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log_path = proctor.data_dir().join("journal.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).contains("\"op\":\"close\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the session never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proctor.kill9();
    let ingested = ingested_offset(&holder);
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);

    // One byte of a record in the middle of what was not ingested: `select 2`'s statement.
    let mut log = std::fs::read(&log_path).unwrap();
    let at = ingested
        + log[ingested..]
            .windows(8)
            .position(|w| w == b"select 2")
            .expect("the statement is in the log");
    log[at + 7] = b'9';
    std::fs::write(&log_path, &log).unwrap();

    for args in [&["sessions", "list"][..], &["log", "check"]] {
        let out = proctor.cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("the commit log was found damaged: journal.log.damaged-")
                && stderr(&out).contains("proctor log acknowledge-damage"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let kept: Vec<_> = std::fs::read_dir(proctor.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("journal.log.damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let tail = std::fs::read(proctor.data_dir().join(&kept[0])).unwrap();
    assert!(
        String::from_utf8_lossy(&tail).contains("select 9"),
        "the damaged record leads the tail kept"
    );

    // The store holds the session up to the event before the damaged record, and no seal reaches
    // past what it holds.
    let db = store_db(&proctor);
    let (stored, sealed): (i64, i64) = db
        .query_row(
            "SELECT (SELECT max(last_seq) FROM event_blocks WHERE session_no = s.no), \
             (SELECT coalesce(max(last_seq), 0) FROM log_sealed WHERE session_no = s.no) \
             FROM sessions s WHERE s.identity = 'alice'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(stored, 3, "session.start, select 1 and its result");
    assert!(sealed <= stored, "sealed up to {sealed}");
    let out = proctor.cli(&["serve"]);
    assert_eq!(out.status.code(), Some(2), "serve refuses to start too");

    let acknowledged = proctor.cli_ok(&["log", "acknowledge-damage"]);
    assert!(
        acknowledged.contains(&format!("acknowledged {}.acknowledged", kept[0])),
        "{acknowledged}"
    );
    let session = proctor.sessions(&["--identity", "alice"])[0].clone();
    assert_eq!(session["end_reason"], CUT_SHORT, "{session}");
    assert_eq!(session["events"], 4);
    let verify = proctor.cli(&["sessions", "verify", session["id"].as_str().unwrap()]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let (ok, text) = log_check(&proctor);
    assert!(ok, "{text}");
    assert!(proctor
        .data_dir()
        .join(format!("{}.acknowledged", kept[0]))
        .exists());
    let leaves: i64 = db
        .query_row(
            "SELECT count(*) FROM log_leaves WHERE kind = 'log.damage_acknowledged' \
             AND instr(data, ?1) > 0",
            [&kept[0]],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(leaves, 1, "the acknowledgement is part of the signed log");
    proctor.spawn();
}
