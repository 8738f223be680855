//! End to end: the real `mariadb` command-line client through the real `proctor` binary, against a
//! real MariaDB; then what the journal holds.

mod support;

use serde_json::json;
use support::{mysql_admin, of_kind, stderr, stdout, Proctor, MARIA_DB};

fn start_with_alice() -> (Proctor, String) {
    let proctor = Proctor::start(&MARIA_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    (proctor, token)
}

#[test]
fn mariadb_statements_and_results_are_recorded_in_order_and_attributed() {
    let (proctor, token) = start_with_alice();
    let out = proctor.mariadb(
        "alice",
        &token,
        "maria",
        &[
            "-e",
            "drop table if exists my_simple; create table my_simple (id int, name text); \
             insert into my_simple values (1, 'one'), (2, 'two'); \
             select id, name from my_simple order by id; \
             select count(*) from my_simple; select 'x' as a, null as b",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1\tone\n2\ttwo\n2\nx\tNULL");

    let sessions = proctor.ended_sessions_of("alice", 1);
    let session = &sessions[0];
    assert_eq!(session["protocol"], "mysql");
    assert_eq!(session["connection"], "maria");
    assert_eq!(session["end_reason"], "client closed the session");
    let events = proctor.events(session["id"].as_str().unwrap());
    let start = of_kind(&events, "session.start")[0];
    assert_eq!(start["body"]["identity"], "alice");
    assert_eq!(start["body"]["auth"]["method"], "mysql_native_password");
    assert_eq!(start["body"]["upstream"]["user"], "root");
    assert!(start["body"]["upstream"]["server_version"]
        .as_str()
        .unwrap()
        .contains("MariaDB"));
    // The client sends each statement on its own; each has its query and its result, in order.
    let queries: Vec<_> = of_kind(&events, "db.query")
        .into_iter()
        .filter(|q| q["body"]["protocol"] == "text")
        .collect();
    let sql: Vec<&str> = queries
        .iter()
        .map(|q| q["body"]["sql"].as_str().unwrap())
        .collect();
    let first = sql
        .iter()
        .position(|s| s.starts_with("drop table"))
        .unwrap();
    assert_eq!(
        &sql[first..],
        [
            "drop table if exists my_simple",
            "create table my_simple (id int, name text)",
            "insert into my_simple values (1, 'one'), (2, 'two')",
            "select id, name from my_simple order by id",
            "select count(*) from my_simple",
            "select 'x' as a, null as b"
        ]
    );
    let result_of = |n: usize| {
        let results: Vec<_> = of_kind(&events, "db.result")
            .into_iter()
            .filter(|r| r["body"]["query"] == queries[first + n]["seq"])
            .collect();
        assert_eq!(results.len(), 1, "{results:?}");
        results[0].clone()
    };
    assert_eq!(
        result_of(2)["body"]["rows"],
        2,
        "the insert's affected rows"
    );
    assert_eq!(result_of(2)["body"]["tag"], "OK");
    assert_eq!(result_of(3)["body"]["columns"], json!(["id", "name"]));
    assert_eq!(result_of(3)["body"]["rows"], 2);
    assert_eq!(
        result_of(3)["body"]["sample"],
        json!([["1", "one"], ["2", "two"]])
    );
    assert_eq!(result_of(5)["body"]["sample"], json!([["x", null]]));
    assert_eq!(events.last().unwrap()["kind"], "session.end");
    assert_eq!(mysql_admin("select count(*) from my_simple"), "2");
}

#[test]
fn a_wrong_token_is_refused_with_mysql_access_denied_and_recorded() {
    let (proctor, token) = start_with_alice();
    let wrong = format!("{}x", &token[..token.len() - 1]);
    let out = proctor.mariadb("alice", &wrong, "maria", &["-e", "select 1"], "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ERROR 1045 (28000)"),
        "{}",
        stderr(&out)
    );
    let out = proctor.mariadb("nobody", &token, "maria", &["-e", "select 1"], "");
    assert!(
        stderr(&out).contains("ERROR 1045 (28000)"),
        "{}",
        stderr(&out)
    );
    let out = proctor.mariadb("alice", &token, "nowhere", &["-e", "select 1"], "");
    assert!(
        stderr(&out).contains("ERROR 1049 (42000)"),
        "{}",
        stderr(&out)
    );

    let failed = proctor.ended_sessions_of("alice", 2);
    let reasons: Vec<String> = failed
        .iter()
        .map(|s| {
            let events = proctor.events(s["id"].as_str().unwrap());
            of_kind(&events, "auth.failure")[0]["body"]["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(reasons.iter().any(|r| r == "wrong token"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("does not exist")),
        "{reasons:?}"
    );
    assert!(!proctor.data_dir_contains(&wrong));
}

#[test]
fn a_postgres_client_cannot_use_a_mysql_connection() {
    let (proctor, token) = start_with_alice();
    let out = proctor.psql("alice", &token, "maria", "disable", &["-c", "select 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a MySQL connection"),
        "{}",
        stderr(&out)
    );
}
