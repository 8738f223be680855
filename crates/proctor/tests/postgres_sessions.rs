//! End to end: real psql and tokio-postgres clients, through the real `proctor` binary, against the
//! machine's real PostgreSQL; then what the journal holds.

mod support;

use serde_json::{json, Value};
use support::{admin_sql, of_kind, refused_config, stderr, stdout, Proctor, APP_DB};

fn start_with_alice() -> (Proctor, String) {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    (proctor, token)
}

#[test]
fn psql_statements_and_results_are_recorded_in_order_and_attributed() {
    let (proctor, token) = start_with_alice();
    let out = proctor.psql(
        "alice",
        &token,
        "app-db",
        "disable",
        &[
            "-c",
            "drop table if exists e2e_simple; create table e2e_simple (id int, name text); \
             insert into e2e_simple values (1, 'one'), (2, 'two');",
            "-c",
            "select id, name from e2e_simple order by id",
            "-c",
            "begin; update e2e_simple set name = 'uno' where id = 1; rollback;",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1|one\n2|two");

    let sessions = proctor.ended_sessions_of("alice", 1);
    let session = &sessions[0];
    assert_eq!(session["connection"], "app-db");
    assert_eq!(session["authenticated"], true);
    assert_eq!(session["end_reason"], "client closed the session");
    let events = proctor.events(session["id"].as_str().unwrap());

    let start = of_kind(&events, "session.start")[0];
    assert_eq!(start["body"]["identity"], "alice");
    assert_eq!(start["body"]["tls"], false);
    assert_eq!(start["body"]["upstream"]["user"], "postgres");
    let queries: Vec<&str> = of_kind(&events, "db.query")
        .iter()
        .map(|e| e["body"]["sql"].as_str().unwrap())
        .collect();
    assert_eq!(queries.len(), 3);
    assert!(queries[1].starts_with("select id, name"));
    let tags: Vec<&str> = of_kind(&events, "db.result")
        .iter()
        .map(|e| e["body"]["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "DROP TABLE",
            "CREATE TABLE",
            "INSERT 0 2",
            "SELECT 2",
            "BEGIN",
            "UPDATE 1",
            "ROLLBACK"
        ]
    );
    let select = of_kind(&events, "db.result")[3];
    assert_eq!(select["body"]["rows"], 2);
    assert_eq!(select["body"]["columns"], json!(["id", "name"]));
    assert_eq!(
        select["body"]["sample"],
        json!([["1", "one"], ["2", "two"]])
    );
    assert_eq!(
        select["body"]["query"],
        of_kind(&events, "db.query")[1]["seq"]
    );
    assert_eq!(events.last().unwrap()["kind"], "session.end");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());

    assert_eq!(
        proctor
            .sessions(&["--since", "1h", "--connection", "app-db"])
            .len(),
        1
    );
    assert!(proctor
        .sessions(&["--since", "2100-01-01T00:00:00Z"])
        .is_empty());
    assert!(proctor.sessions(&["--connection", "other"]).is_empty());
    let verify = proctor.cli(&["sessions", "verify", session["id"].as_str().unwrap()]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let shown = stdout(&proctor.cli(&["sessions", "show", &session["id"].as_str().unwrap()[..13]]));
    assert!(
        shown.contains("query  select id, name from e2e_simple order by id"),
        "{shown}"
    );
    assert!(shown.contains("SELECT 2 (2 rows"), "{shown}");
}

#[test]
fn result_samples_are_bounded_while_large_results_stream_whole() {
    let proctor = Proctor::start(&format!(
        "[postgres]\nsample_rows = 3\nsample_bytes = 1000\n{APP_DB}"
    ));
    let token = proctor.add_identity("alice", &["dba"]);
    let out = proctor.psql(
        "alice",
        &token,
        "app-db",
        "disable",
        &[
            "-c",
            "select g, repeat('x', 2000000) from generate_series(1, 20) g",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 20);
    assert!(stdout(&out).lines().all(|l| l.len() > 2_000_000));
    let session = &proctor.ended_sessions_of("alice", 1)[0];
    let events = proctor.events(session["id"].as_str().unwrap());
    let result = of_kind(&events, "db.result")[0];
    assert_eq!(result["body"]["rows"], 20);
    assert!(result["body"]["bytes"].as_u64().unwrap() > 40_000_000);
    assert_eq!(result["body"]["sample_truncated"], true);
    assert!(serde_json::to_string(&result["body"]).unwrap().len() < 5_000);
}

#[test]
fn copy_from_stdin_and_to_stdout_pass_through_and_are_counted() {
    let (proctor, token) = start_with_alice();
    admin_sql("drop table if exists e2e_copy; create table e2e_copy (id int, name text)");
    let rows: String = (1..=100).map(|i| format!("{i}\tname-{i}\n")).collect();
    let copied_in = proctor.psql_with_stdin(
        "alice",
        &token,
        "app-db",
        "disable",
        &["-c", "\\copy e2e_copy from stdin"],
        &rows,
    );
    assert!(copied_in.status.success(), "{}", stderr(&copied_in));
    assert_eq!(admin_sql("select count(*) from e2e_copy"), "100");
    let copied_out = proctor.psql(
        "alice",
        &token,
        "app-db",
        "disable",
        &[
            "-c",
            "\\copy (select * from e2e_copy order by id) to stdout",
        ],
    );
    assert!(copied_out.status.success(), "{}", stderr(&copied_out));
    assert_eq!(stdout(&copied_out), rows);

    let sessions = proctor.ended_sessions_of("alice", 2);
    let copy_in = proctor.events(sessions[0]["id"].as_str().unwrap());
    let result = of_kind(&copy_in, "db.result")[0];
    assert_eq!(result["body"]["tag"], "COPY 100");
    assert_eq!(result["body"]["rows"], 100);
    assert_eq!(result["body"]["bytes"], rows.len());
    assert_eq!(result["body"]["sample"][0], "1\tname-1");
    let copy_out = proctor.events(sessions[1]["id"].as_str().unwrap());
    let result = of_kind(&copy_out, "db.result")[0];
    assert_eq!(result["body"]["rows"], 100);
    assert_eq!(result["body"]["bytes"], rows.len());
    assert_eq!(result["body"]["sample"].as_array().unwrap().len(), 20);
}

#[test]
fn tls_with_sslmode_require_is_used_and_recorded() {
    let (proctor, token) = start_with_alice();
    let out = proctor.psql(
        "alice",
        &token,
        "app-db",
        "require",
        &[
            "-c",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let session = &proctor.ended_sessions_of("alice", 1)[0];
    let events = proctor.events(session["id"].as_str().unwrap());
    assert_eq!(of_kind(&events, "session.start")[0]["body"]["tls"], true);
    assert!(proctor.data_dir().join("tls-cert.pem").exists());
}

#[test]
fn help_is_available_for_every_command() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["identity", "--help"],
        vec!["identity", "add", "--help"],
        vec!["token", "revoke", "--help"],
        vec!["sessions", "list", "--help"],
        vec!["sessions", "show", "--help"],
        vec!["sessions", "verify", "--help"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn a_bad_config_is_refused_at_start_with_the_key_path() {
    let bad_address = refused_config(&APP_DB.replace(&support::pg_address(), "no-port-here"));
    assert!(
        bad_address.contains("connection[0].address"),
        "{bad_address}"
    );
    let unset = refused_config(&format!("{APP_DB}password_env = \"PROCTOR_E2E_UNSET\"\n"));
    assert!(unset.contains("connection[0].password_env"), "{unset}");
    assert!(unset.contains("PROCTOR_E2E_UNSET"), "{unset}");
}

#[test]
fn identities_and_tokens_are_managed_from_the_cli() {
    let (proctor, first) = start_with_alice();
    let second = {
        let out = proctor.cli(&["token", "create", "alice"]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let listed = stdout(&proctor.cli(&["identity", "list"]));
    let first_id = first.split('_').nth(1).unwrap();
    let second_id = second.split('_').nth(1).unwrap();
    assert!(
        listed.contains("alice") && listed.contains(first_id) && listed.contains(second_id),
        "{listed}"
    );

    let revoked = proctor.cli(&["token", "revoke", first_id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let old = proctor.psql("alice", &first, "app-db", "disable", &["-c", "select 1"]);
    assert!(!old.status.success());
    let new = proctor.psql("alice", &second, "app-db", "disable", &["-c", "select 1"]);
    assert!(new.status.success(), "{}", stderr(&new));

    let failures: Vec<Value> = proctor
        .ended_sessions_of("alice", 2)
        .iter()
        .flat_map(|s| proctor.events(s["id"].as_str().unwrap()))
        .filter(|e| e["kind"] == "auth.failure")
        .collect();
    assert_eq!(
        failures[0]["body"]["reason"],
        format!("token {first_id} is revoked")
    );
    let again = proctor.cli(&["token", "revoke", first_id]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already revoked"));
}

#[test]
fn configured_identities_take_their_token_from_the_environment() {
    let proctor = Proctor::start_with_env(
        &format!("[[identity]]\nname = \"ci-bot\"\ngroups = [\"dba\"]\ntoken_env = \"CI_BOT_TOKEN\"\n{APP_DB}"),
        &[("CI_BOT_TOKEN", "bot-secret-token")],
    );
    let out = proctor.psql(
        "ci-bot",
        "bot-secret-token",
        "app-db",
        "disable",
        &["-c", "select 1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let wrong = proctor.psql("ci-bot", "nope", "app-db", "disable", &["-c", "select 1"]);
    assert!(!wrong.status.success());
}

#[test]
fn the_http_listener_answers_health_checks() {
    use std::io::{Read, Write};
    let proctor = Proctor::start("");
    let mut http = std::net::TcpStream::connect(("127.0.0.1", proctor.http_port)).unwrap();
    http.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
}

#[test]
fn sigterm_ends_open_sessions_cleanly_and_records_why() {
    let (mut proctor, token) = start_with_alice();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let conninfo = proctor.conninfo("alice", &token, "app-db");
    let (client, connection) = runtime
        .block_on(tokio_postgres::connect(&conninfo, tokio_postgres::NoTls))
        .unwrap();
    let connection = runtime.spawn(connection);
    runtime.block_on(client.simple_query("select 1")).unwrap();
    let status = proctor.stop();
    assert!(status.success(), "{status}");
    let ended = runtime.block_on(connection).unwrap();
    let error = ended.expect_err("the gateway ended the session");
    assert_eq!(
        error.as_db_error().map(|e| e.code().code()),
        Some("57P01"),
        "{error}"
    );

    let sessions = proctor.sessions(&["--identity", "alice"]);
    assert_eq!(sessions[0]["end_reason"], "gateway shutting down");
    let verify = proctor.cli(&["sessions", "verify", sessions[0]["id"].as_str().unwrap()]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}

#[test]
fn a_timeline_piped_into_a_reader_that_stops_early_ends_quietly() {
    let (proctor, token) = start_with_alice();
    // Enough statements that the timeline outgrows a pipe's buffer, so the reader's going away
    // meets a write still to come.
    let statements: String = (0..2000).map(|n| format!("select {n};\n")).collect();
    let out = proctor.psql_with_stdin("alice", &token, "app-db", "disable", &[], &statements);
    assert!(out.status.success(), "{}", stderr(&out));
    let session = proctor.ended_sessions_of("alice", 1).remove(0);
    let id = session["id"].as_str().unwrap();

    let mut show = std::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["sessions", "show", id, "--config"])
        .arg(&proctor.config_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(show.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    assert!(!first_line.is_empty());
    let ended = show.wait_with_output().unwrap();
    let complaint = stderr(&ended);
    assert!(complaint.is_empty(), "{complaint}");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&ended.status),
        Some(libc::SIGPIPE),
        "{:?}",
        ended.status
    );
}

#[test]
fn each_result_names_its_own_columns_when_queries_alternate() {
    let (proctor, token) = start_with_alice();
    proctor.psql_ok(
        "alice",
        &token,
        "app-db",
        &[
            "-c",
            "select 1 as a",
            "-c",
            "select 1 as a",
            "-c",
            "select 2 as b, 3 as c",
            "-c",
            "select 1 as a",
        ],
    );
    let session = proctor.ended_sessions_of("alice", 1).remove(0);
    let events = proctor.events(session["id"].as_str().unwrap());
    let columns: Vec<Value> = of_kind(&events, "db.result")
        .iter()
        .map(|result| result["body"]["columns"].clone())
        .collect();
    assert_eq!(
        columns,
        [json!(["a"]), json!(["a"]), json!(["b", "c"]), json!(["a"])]
    );
}
