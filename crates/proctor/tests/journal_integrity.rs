//! End to end: the journal is tamper-evident, survives `kill -9`, and when it cannot commit, nothing is
//! forwarded.

mod support;

use std::time::Duration;

use support::{admin_sql, edit_stored_events, of_kind, stdout, Proctor, APP_DB};
use tokio_postgres::NoTls;

fn journal(proctor: &Proctor) -> rusqlite::Connection {
    proctor.sessions(&[]);
    let conn = rusqlite::Connection::open(proctor.data_dir().join("journal.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

#[test]
fn an_edited_or_deleted_event_is_named_by_sessions_verify() {
    let proctor = Proctor::start(APP_DB);
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
    let mut proctor = Proctor::start(APP_DB);
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

    let session = &proctor.sessions(&["--identity", "alice"])[0];
    assert!(
        session["end_reason"].is_null(),
        "the crash left the session open"
    );
    let id = session["id"].as_str().unwrap();
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
    assert!(ok.status.success(), "{}", support::stderr(&ok));
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
    let proctor = Proctor::start(APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    admin_sql("drop table if exists e2e_fail_closed; create table e2e_fail_closed (n int)");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let conninfo = proctor.conninfo("alice", &token, "app-db");
    let (client, connection) = runtime
        .block_on(tokio_postgres::connect(&conninfo, NoTls))
        .unwrap();
    runtime.spawn(connection);
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
    assert!(again.status.success(), "{}", support::stderr(&again));
    assert_eq!(admin_sql("select count(*) from e2e_fail_closed"), "1");
}
