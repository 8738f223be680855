//! End to end: guardrails through Proctor against the real PostgreSQL — statements denied with a
//! clear error while the session goes on, statements held until an approver decides (from the CLI or
//! the HTTP API), timed out or withdrawn, and read-only connections, with every decision recorded.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    admin_sql, approval_outcomes, of_kind, refused_config, stderr, stdout, Proctor, APP_DB,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

const GUARDED: &str = r#"
guardrails = "recommended"
approvers = ["group:leads"]
approval_timeout_secs = 60
rules = [
  { name = "no-drop-table", flags = ["drop"], kinds = ["ddl"], regex = "(?i)^\\s*drop\\s+table", action = "deny", message = "tables are dropped by migrations, not by hand" },
  { name = "quick-index-review", regex = "(?i)create\\s+index", action = "require_approval", timeout_secs = 2 },
]
"#;

struct Team {
    proctor: Proctor,
    alice: String,
    bob: String,
}

/// Proctor with the guarded connection; alice (dba) works on it, bob (leads) approves.
fn team() -> Team {
    let proctor = Proctor::start(&format!("{APP_DB}{GUARDED}"));
    let alice = proctor.add_identity("alice", &["dba"]);
    let bob = proctor.add_identity("bob", &["leads"]);
    Team {
        proctor,
        alice,
        bob,
    }
}

async fn connect(proctor: &Proctor, token: &str) -> tokio_postgres::Client {
    let (client, driver) =
        tokio_postgres::connect(&proctor.conninfo("alice", token, "app-db"), NoTls)
            .await
            .unwrap();
    tokio::spawn(driver);
    client
}

fn db_error(e: tokio_postgres::Error) -> (SqlState, String) {
    let db = e.as_db_error().expect("an error from the server");
    (db.code().clone(), db.message().to_owned())
}

fn column_exists(table: &str, column: &str) -> bool {
    admin_sql(&format!(
        "select count(*) from information_schema.columns where table_name = '{table}' and column_name = '{column}'"
    )) == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangerous_statements_are_denied_and_the_session_goes_on() {
    admin_sql(
        "drop table if exists g_items; create table g_items (id int primary key, name text); \
         insert into g_items select g, 'item ' || g from generate_series(1, 5) g",
    );
    let Team { proctor, alice, .. } = team();

    let out = proctor.psql(
        "alice",
        &alice,
        "app-db",
        "disable",
        &["-c", "DROP TABLE g_items"],
    );
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains(
            "guardrail \"no-drop-table\" denied this statement: tables are dropped by migrations"
        ),
        "{message}"
    );
    assert!(
        message.contains("Nothing was sent to the database"),
        "{message}"
    );
    assert_eq!(
        admin_sql("select count(*) from g_items"),
        "5",
        "the table is still there"
    );
    let out = proctor.psql(
        "alice",
        &alice,
        "app-db",
        "disable",
        &["-c", "DELETE FROM g_items"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("DELETE without WHERE would remove every row"),
        "{}",
        stderr(&out)
    );
    proctor.psql_ok(
        "alice",
        &alice,
        "app-db",
        &["-c", "DELETE FROM g_items WHERE id = 5"],
    );
    assert_eq!(admin_sql("select count(*) from g_items"), "4");

    let client = connect(&proctor, &alice).await;
    let (code, message) = db_error(
        client
            .batch_execute("DELETE FROM g_items")
            .await
            .unwrap_err(),
    );
    assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(
        message.contains("recommended/deny-delete-without-where"),
        "{message}"
    );
    let (code, _) = db_error(
        client
            .execute("UPDATE g_items SET name = 'x'", &[])
            .await
            .unwrap_err(),
    );
    assert_eq!(
        code,
        SqlState::INSUFFICIENT_PRIVILEGE,
        "refused in the extended protocol too"
    );
    let (code, _) = db_error(
        client
            .batch_execute("SELECT 1; /* cleanup */ TRUNCATE g_items")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        code,
        SqlState::INSUFFICIENT_PRIVILEGE,
        "each statement of a text is judged"
    );
    let deleted = client
        .execute("DELETE FROM g_items WHERE id = $1", &[&1])
        .await
        .unwrap();
    assert_eq!(deleted, 1, "with WHERE it runs, in the same session");
    let count: i64 = client
        .query_one("SELECT count(*) FROM g_items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);
    drop(client);

    let events = proctor.events_of("alice", 4);
    let decisions = of_kind(&events, "policy.decision");
    let rules: Vec<&str> = decisions
        .iter()
        .map(|d| d["body"]["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "no-drop-table",
            "recommended/deny-delete-without-where",
            "recommended/deny-delete-without-where",
            "recommended/deny-update-without-where",
            "recommended/deny-truncate"
        ]
    );
    assert!(decisions.iter().all(|d| d["body"]["action"] == "deny"));
    assert_eq!(decisions[0]["body"]["kind"], "ddl");
    assert_eq!(
        decisions[0]["body"]["tables"],
        serde_json::json!(["g_items"])
    );
    assert_eq!(
        decisions[1]["body"]["flags"],
        serde_json::json!(["delete_without_where"])
    );
    let queries: Vec<String> = of_kind(&events, "db.query")
        .iter()
        .map(|q| q["body"]["sql"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        !queries.iter().any(|sql| sql.contains("DROP")
            || sql == "DELETE FROM g_items"
            || sql.contains("TRUNCATE")),
        "denied statements were never sent: {queries:?}"
    );
    let allowed = of_kind(&events, "db.query")
        .into_iter()
        .find(|q| q["body"]["sql"] == "DELETE FROM g_items WHERE id = $1")
        .unwrap();
    assert!(
        allowed["body"]["policy"].is_null(),
        "allowed by default: no note, the session's start names the guardrails"
    );
    let start = of_kind(&events, "session.start")[0];
    assert_eq!(start["body"]["guardrails"]["default_action"], "allow");
    assert_eq!(
        start["body"]["guardrails"]["rules"][0], "no-drop-table",
        "{start}"
    );
    assert_eq!(
        start["body"]["guardrails"]["rules"][2],
        "recommended/deny-drop-database"
    );

    let session = proctor.sessions(&["--identity", "alice"])[3]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = stdout(&proctor.cli(&["sessions", "show", &session]));
    assert!(
        shown.contains("guardrail DENIED by rule recommended/deny-delete-without-where (write, delete_without_where)  DELETE FROM g_items"),
        "{shown}"
    );
    assert!(proctor
        .cli(&["sessions", "verify", &session])
        .status
        .success());
}

#[test]
fn held_statements_run_once_approved_and_are_refused_when_denied_or_unanswered() {
    admin_sql("drop table if exists g_held; create table g_held (id int)");
    let Team {
        proctor,
        alice,
        bob,
    } = team();

    // Approved from the CLI by bob, after alice's own approval is refused.
    let altering = proctor.psql_in_background(
        "alice",
        &alice,
        "app-db",
        "ALTER TABLE g_held ADD COLUMN approved int",
    );
    let request = proctor.pending_approvals(1)[0].clone();
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(request["identity"], "alice");
    assert_eq!(request["rule"], "recommended/hold-ddl");
    assert_eq!(
        request["statement"],
        "ALTER TABLE g_held ADD COLUMN approved int"
    );
    assert!(
        !column_exists("g_held", "approved"),
        "nothing runs before the approval"
    );
    let own = proctor.cli_with_env(&["approvals", "approve", &id], &[("PROCTOR_TOKEN", &alice)]);
    assert!(!own.status.success());
    assert!(
        stderr(&own).contains("cannot approve or deny it"),
        "{}",
        stderr(&own)
    );
    let approved = proctor.cli_with_env(
        &["approvals", "approve", &id, "--reason", "planned migration"],
        &[("PROCTOR_TOKEN", &bob)],
    );
    assert!(approved.status.success(), "{}", stderr(&approved));
    let out = altering.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("holds this statement for approval: request {id}")),
        "the client is told what it waits for: {}",
        stderr(&out)
    );
    assert!(column_exists("g_held", "approved"));

    // Denied over HTTP.
    let altering = proctor.psql_in_background(
        "alice",
        &alice,
        "app-db",
        "ALTER TABLE g_held ADD COLUMN denied int",
    );
    let id2 = proctor.pending_approvals(1)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = proctor.http("GET", "/api/v1/approvals", None, "");
    assert_eq!(status, 401, "the API wants a token");
    let (status, listed) = proctor.http("GET", "/api/v1/approvals", Some(&bob), "");
    assert_eq!(status, 200);
    assert!(listed.contains(&id2), "{listed}");
    let path = format!("/api/v1/approvals/{id2}/deny");
    let (status, body) = proctor.http("POST", &path, Some(&alice), r#"{"reason": "mine"}"#);
    assert_eq!(status, 403, "{body}");
    let (status, body) = proctor.http(
        "POST",
        &path,
        Some(&bob),
        r#"{"reason": "not during business hours"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = proctor.http("POST", &path, Some(&bob), "");
    assert_eq!(status, 409, "a request is decided once");
    let out = altering.join().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "approval request {id2} was denied by bob: not during business hours"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!column_exists("g_held", "denied"));

    // Nobody answers within the rule's 2 s.
    let started = Instant::now();
    let out = proctor.psql(
        "alice",
        &alice,
        "app-db",
        "disable",
        &["-c", "CREATE INDEX g_held_id ON g_held (id)"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("timed out: no approver decided within 2 s"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        admin_sql("select count(*) from pg_indexes where indexname = 'g_held_id'"),
        "0"
    );

    let events = proctor.events_of("alice", 3);
    let outcomes = approval_outcomes(&events);
    assert_eq!(
        outcomes,
        [("approved", "bob"), ("denied", "bob"), ("timed_out", "-")]
    );
    let held = of_kind(&events, "policy.decision");
    assert!(held
        .iter()
        .all(|d| d["body"]["action"] == "require_approval"));
    assert_eq!(held[0]["body"]["approval"], id.as_str());
    let ran = of_kind(&events, "db.query")
        .into_iter()
        .find(|q| q["body"]["sql"] == "ALTER TABLE g_held ADD COLUMN approved int")
        .unwrap();
    assert_eq!(ran["body"]["policy"]["approved_by"], "bob");
    assert_eq!(ran["body"]["policy"]["approval"], id.as_str());
    let first = proctor.sessions(&["--identity", "alice"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = stdout(&proctor.cli(&["sessions", "show", &first]));
    assert!(
        shown.contains(&format!("HELD for approval (request {id})")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("approval {id} approved by bob: planned migration")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("(approved by bob, request {id})")),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_withdraws_a_held_statement() {
    admin_sql("drop table if exists g_cancel; create table g_cancel (id int)");
    let Team { proctor, alice, .. } = team();
    let client = connect(&proctor, &alice).await;
    let cancel = client.cancel_token();
    let held = tokio::spawn(async move {
        let result = client
            .execute("ALTER TABLE g_cancel ADD COLUMN c int", &[])
            .await;
        (result.map_err(db_error), client)
    });
    let id = tokio::task::spawn_blocking({
        let config = proctor.config_path.clone();
        move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
                    .args(["approvals", "list", "--format", "json", "--config"])
                    .arg(&config)
                    .output()
                    .unwrap();
                let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
                if let Some(first) = list.first() {
                    return first["id"].as_str().unwrap().to_owned();
                }
                assert!(Instant::now() < deadline);
                thread::sleep(Duration::from_millis(50));
            }
        }
    })
    .await
    .unwrap();
    cancel.cancel_query(NoTls).await.unwrap();
    let (result, client) = held.await.unwrap();
    let (code, _) = result.unwrap_err();
    assert_eq!(code, SqlState::QUERY_CANCELED);
    assert!(!column_exists("g_cancel", "c"));
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "the session goes on");
    let all = stdout(&proctor.cli(&["approvals", "list", "--all", "--format", "json"]));
    let list: Vec<Value> = serde_json::from_str(&all).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "withdrawn");
}

#[test]
fn a_read_only_connection_refuses_writes_here_and_at_the_database() {
    admin_sql(
        "drop table if exists g_ro; create table g_ro (id int); insert into g_ro values (1); \
         create or replace function g_ro_writer() returns int language sql volatile as \
         'insert into g_ro values (2) returning id'",
    );
    let proctor = Proctor::start(&format!("{APP_DB}read_only = true\n"));
    let alice = proctor.add_identity("alice", &["dba"]);
    let run = |sql: &str| proctor.psql("alice", &alice, "app-db", "disable", &["-c", sql]);

    let read = proctor.psql_ok(
        "alice",
        &alice,
        "app-db",
        &["-c", "SELECT count(*) FROM g_ro"],
    );
    assert_eq!(read.trim(), "1");
    for write in [
        "INSERT INTO g_ro VALUES (3)",
        "SET default_transaction_read_only = off",
        "BEGIN READ WRITE",
        "CREATE TABLE g_ro_new (id int)",
    ] {
        let out = run(write);
        assert!(!out.status.success(), "{write}");
        assert!(
            stderr(&out).contains("guardrail \"read-only\" denied"),
            "{write}: {}",
            stderr(&out)
        );
    }
    // A SELECT that writes through a volatile function passes the classifier; the database's own
    // read-only session refuses it.
    let sneaky = run("SELECT g_ro_writer()");
    assert!(!sneaky.status.success());
    assert!(
        stderr(&sneaky).contains("read-only transaction"),
        "{}",
        stderr(&sneaky)
    );
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            &format!(
                "host=127.0.0.1 port={} user=alice dbname=app-db sslmode=disable",
                proctor.pg_port
            ),
            "-c",
            "SHOW default_transaction_read_only",
        ])
        .env("PGPASSWORD", &alice)
        .env("PGOPTIONS", "-c default_transaction_read_only=off")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out).trim(),
        "on",
        "the client cannot turn it off at startup: {}",
        stderr(&out)
    );
    assert_eq!(admin_sql("select count(*) from g_ro"), "1");
}

#[test]
fn an_invalid_rule_is_refused_at_start_with_its_path() {
    let action = refused_config(&format!(
        "{APP_DB}rules = [{{ name = \"x\", kinds = [\"read\"], action = \"hold\" }}]\n"
    ));
    assert!(action.contains("connection[0].rules[0].action"), "{action}");
    let regex = refused_config(&format!(
        "{APP_DB}rules = [{{ name = \"x\", regex = \"(\", action = \"deny\" }}]\n"
    ));
    assert!(regex.contains("connection[0].rules[0].regex"), "{regex}");
}

#[test]
fn a_request_left_pending_by_a_crash_is_withdrawn_when_the_gateway_starts_again() {
    admin_sql("drop table if exists g_crash; create table g_crash (id int)");
    let Team {
        mut proctor,
        alice,
        bob,
    } = team();
    let altering = proctor.psql_in_background(
        "alice",
        &alice,
        "app-db",
        "ALTER TABLE g_crash ADD COLUMN c int",
    );
    let id = proctor.pending_approvals(1)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    proctor.kill9();
    let out = altering.join().unwrap();
    assert!(!out.status.success(), "the held client lost its gateway");

    proctor.spawn();
    let all = stdout(&proctor.cli(&["approvals", "list", "--all", "--format", "json"]));
    let list: Vec<Value> = serde_json::from_str(&all).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "withdrawn", "{list:?}");
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the gateway stopped while the statement was held"),
        "{list:?}"
    );
    let late = proctor.cli_with_env(&["approvals", "approve", &id], &[("PROCTOR_TOKEN", &bob)]);
    assert!(!late.status.success(), "nobody can approve it any more");
    assert!(!column_exists("g_crash", "c"), "the statement never ran");
    assert!(
        stdout(&proctor.cli(&["approvals", "list", "--format", "json"])).trim() == "[]",
        "nothing is left pending"
    );
}
