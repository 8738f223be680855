//! End to end with real MySQL drivers through the real `proctor` binary, against a real MariaDB:
//! mysql_async (text queries, multi-statement results, prepared statements with every common type,
//! a large streamed result, packets over 16 MiB, KILL QUERY, concurrent sessions) and MySQL
//! Connector/Python (server-side prepared statements, long data, COM_INIT_DB); then what the
//! journal holds.

mod support;

use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};
use serde_json::{json, Value as Json};
use support::{mysql_admin, of_kind, python, Proctor, MARIA_DB};

fn start_with_alice() -> (Proctor, String) {
    let proctor = Proctor::start(&MARIA_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    (proctor, token)
}

async fn connect(proctor: &Proctor, identity: &str, token: &str) -> Conn {
    Conn::from_url(proctor.mysql_url(identity, token, "maria"))
        .await
        .unwrap()
}

/// The server error a driver call failed with: its code.
fn server_code(error: mysql_async::Error) -> u16 {
    match error {
        mysql_async::Error::Server(e) => e.code,
        other => panic!("not a server error: {other:?}"),
    }
}

/// The events of each ended session of `identity` (waits for `count` of them), off the async
/// runtime.
async fn sessions_and_events(
    proctor: Proctor,
    identity: &'static str,
    count: usize,
) -> (Proctor, Vec<(Json, Vec<Json>)>) {
    tokio::task::spawn_blocking(move || {
        let sessions = proctor.ended_sessions_of(identity, count);
        let all = sessions
            .into_iter()
            .map(|s| {
                let events = proctor.events(s["id"].as_str().unwrap());
                (s, events)
            })
            .collect();
        (proctor, all)
    })
    .await
    .unwrap()
}

/// The `db.query` events whose SQL is `sql`.
fn queries_of<'a>(events: &'a [Json], sql: &str) -> Vec<&'a Json> {
    of_kind(events, "db.query")
        .into_iter()
        .filter(|q| q["body"]["sql"] == sql)
        .collect()
}

/// The `db.result` events answering the query event `query`, in order.
fn results_of<'a>(events: &'a [Json], query: &Json) -> Vec<&'a Json> {
    of_kind(events, "db.result")
        .into_iter()
        .filter(|r| r["body"]["query"] == query["seq"])
        .collect()
}

/// The only `db.query` whose SQL is `sql`, and its only `db.result`.
fn query_and_result<'a>(events: &'a [Json], sql: &str) -> (&'a Json, &'a Json) {
    let queries = queries_of(events, sql);
    assert_eq!(queries.len(), 1, "{sql}: {queries:?}");
    let results = results_of(events, queries[0]);
    assert_eq!(results.len(), 1, "{sql}: {results:?}");
    (queries[0], results[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn text_queries_and_every_result_set_of_a_multi_statement_query_are_recorded() {
    let (proctor, token) = start_with_alice();
    let mut conn = connect(&proctor, "alice", &token).await;
    conn.query_drop(
        "drop table if exists drv_multi; create table drv_multi (id int primary key, name varchar(20))",
    )
    .await
    .unwrap();
    let multi =
        "select 1; select 2, 3 as three; insert into drv_multi values (1, 'one'), (2, 'two')";
    let mut result = conn.query_iter(multi).await.unwrap();
    let first: Vec<i64> = result.collect().await.unwrap();
    assert_eq!(first, [1]);
    let second: Vec<(i64, i64)> = result.collect().await.unwrap();
    assert_eq!(second, [(2, 3)]);
    let third: Vec<Row> = result.collect().await.unwrap();
    assert!(third.is_empty());
    assert_eq!(result.affected_rows(), 2);
    assert!(result.is_empty());
    drop(result);
    let rows: Vec<(i32, String)> = conn
        .query("select id, name from drv_multi order by id")
        .await
        .unwrap();
    assert_eq!(rows, [(1, "one".to_owned()), (2, "two".to_owned())]);
    let error = conn
        .query_drop("select * from drv_no_such_table")
        .await
        .unwrap_err();
    assert_eq!(server_code(error), 1146);
    let after: Option<String> = conn.query_first("select 'still here'").await.unwrap();
    assert_eq!(after.as_deref(), Some("still here"));
    conn.disconnect().await.unwrap();

    let (_proctor, sessions) = sessions_and_events(proctor, "alice", 1).await;
    let (session, events) = &sessions[0];
    assert_eq!(session["protocol"], "mysql");
    assert_eq!(session["end_reason"], "client closed the session");
    // One query event for the whole multi-statement query, one result per statement, in order.
    let query = queries_of(events, multi);
    assert_eq!(query.len(), 1);
    assert_eq!(query[0]["body"]["protocol"], "text");
    let results = results_of(events, query[0]);
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(results[0]["body"]["columns"], json!(["1"]));
    assert_eq!(results[0]["body"]["sample"], json!([["1"]]));
    assert_eq!(results[0]["body"]["rows"], 1);
    assert_eq!(results[0]["body"]["tag"], "rows");
    assert_eq!(results[1]["body"]["columns"], json!(["2", "three"]));
    assert_eq!(results[1]["body"]["sample"], json!([["2", "3"]]));
    assert_eq!(results[1]["body"]["rows"], 1);
    assert_eq!(results[2]["body"]["tag"], "OK");
    assert_eq!(results[2]["body"]["rows"], 2);
    let positions: Vec<usize> = results
        .iter()
        .map(|r| events.iter().position(|e| e["seq"] == r["seq"]).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));

    let (_, select) = query_and_result(events, "select id, name from drv_multi order by id");
    assert_eq!(
        select["body"]["sample"],
        json!([["1", "one"], ["2", "two"]])
    );
    let failed = &queries_of(events, "select * from drv_no_such_table")[0];
    let error = of_kind(events, "db.error")
        .into_iter()
        .find(|e| e["body"]["query"] == failed["seq"])
        .unwrap();
    assert_eq!(error["body"]["code"], 1146);
    assert_eq!(error["body"]["sqlstate"], "42S02");
    let (_, after) = query_and_result(events, "select 'still here'");
    assert_eq!(after["body"]["sample"], json!([["still here"]]));
    assert_eq!(events.last().unwrap()["kind"], "session.end");
    assert_eq!(mysql_admin("select count(*) from drv_multi"), "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_round_trip_every_common_type_and_record_decoded_values() {
    let (proctor, token) = start_with_alice();
    let mut conn = connect(&proctor, "alice", &token).await;
    conn.query_drop(
        "drop table if exists drv_types; create table drv_types (id int primary key, \
         ti tinyint, tu tinyint unsigned, i int, iu int unsigned, bi bigint, bu bigint unsigned, \
         f float, d double, dc decimal(30,6), vc varchar(64), tx text, bl blob, dt date, \
         dtm datetime(6), tm time(6), yr year, js json, nl int, b bool) default charset = utf8mb4",
    )
    .await
    .unwrap();
    let insert =
        "insert into drv_types values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let statement = conn.prep(insert).await.unwrap();
    let blob = vec![0xffu8, 0x00, 0xfe, 0x80, 0x41];
    let json_doc = r#"{"k": [1, "two"], "ü": null}"#;
    let params = vec![
        Value::Int(1),
        Value::Int(-128),
        Value::UInt(255),
        Value::Int(i64::from(i32::MIN)),
        Value::UInt(u64::from(u32::MAX)),
        Value::Int(i64::MIN),
        Value::UInt(u64::MAX),
        Value::Float(1.5),
        Value::Double(-2.25e100),
        Value::Bytes(b"12345678901234.123456".to_vec()),
        Value::Bytes("héllo wörld ✓".into()),
        Value::Bytes("日本語のテキスト 🚀".into()),
        Value::Bytes(blob.clone()),
        Value::Date(2024, 2, 29, 0, 0, 0, 0),
        Value::Date(2024, 12, 31, 23, 59, 58, 123456),
        Value::Time(true, 1, 13, 5, 6, 250000),
        Value::Int(2155),
        Value::Bytes(json_doc.into()),
        Value::NULL,
        Value::from(true),
    ];
    conn.exec_drop(&statement, params).await.unwrap();
    assert_eq!(conn.affected_rows(), 1);
    let select = conn
        .prep("select * from drv_types where id = ?")
        .await
        .unwrap();
    let row: Row = conn.exec_first(&select, (1,)).await.unwrap().unwrap();
    assert_eq!(row.get::<i32, _>("id"), Some(1));
    assert_eq!(row.get::<i8, _>("ti"), Some(-128));
    assert_eq!(row.get::<u8, _>("tu"), Some(255));
    assert_eq!(row.get::<i32, _>("i"), Some(i32::MIN));
    assert_eq!(row.get::<u32, _>("iu"), Some(u32::MAX));
    assert_eq!(row.get::<i64, _>("bi"), Some(i64::MIN));
    assert_eq!(row.get::<u64, _>("bu"), Some(u64::MAX));
    assert_eq!(row.get::<f32, _>("f"), Some(1.5));
    assert_eq!(row.get::<f64, _>("d"), Some(-2.25e100));
    assert_eq!(
        row.get::<String, _>("dc").as_deref(),
        Some("12345678901234.123456")
    );
    assert_eq!(row.get::<String, _>("vc").as_deref(), Some("héllo wörld ✓"));
    assert_eq!(
        row.get::<String, _>("tx").as_deref(),
        Some("日本語のテキスト 🚀")
    );
    assert_eq!(row.get::<Vec<u8>, _>("bl"), Some(blob.clone()));
    assert_eq!(row["dt"], Value::Date(2024, 2, 29, 0, 0, 0, 0));
    assert_eq!(row["dtm"], Value::Date(2024, 12, 31, 23, 59, 58, 123456));
    assert_eq!(row["tm"], Value::Time(true, 1, 13, 5, 6, 250000));
    assert_eq!(row.get::<u16, _>("yr"), Some(2155));
    assert_eq!(row.get::<String, _>("js").as_deref(), Some(json_doc));
    assert_eq!(row["nl"], Value::NULL);
    assert_eq!(row.get::<bool, _>("b"), Some(true));
    let (insert_id, select_id) = (statement.id(), select.id());
    conn.close(statement).await.unwrap();
    conn.disconnect().await.unwrap();

    let (_proctor, sessions) = sessions_and_events(proctor, "alice", 1).await;
    let events = &sessions[0].1;
    let executed: Vec<&Json> = of_kind(events, "db.query")
        .into_iter()
        .filter(|q| q["body"]["protocol"] == "binary")
        .collect();
    assert_eq!(executed.len(), 2, "{executed:?}");
    let (insert_event, select_event) = (executed[0], executed[1]);
    assert_eq!(insert_event["body"]["sql"], insert);
    assert_eq!(insert_event["body"]["statement"], insert_id);
    let decoded = json!([
        1,
        -128,
        255,
        -2147483648i64,
        4294967295u64,
        "-9223372036854775808",
        "18446744073709551615",
        1.5,
        -2.25e100,
        "12345678901234.123456",
        "héllo wörld ✓",
        "日本語のテキスト 🚀",
        {"hex": "ff00fe8041"},
        "2024-02-29 00:00:00",
        "2024-12-31 23:59:58.123456",
        "-37:05:06.250000",
        2155,
        json_doc,
        null,
        1
    ]);
    assert_eq!(insert_event["body"]["params"], decoded);
    let results = results_of(events, insert_event);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["body"]["tag"], "OK");
    assert_eq!(results[0]["body"]["rows"], 1);

    assert_eq!(
        select_event["body"]["sql"],
        "select * from drv_types where id = ?"
    );
    assert_eq!(select_event["body"]["statement"], select_id);
    assert_eq!(select_event["body"]["params"], json!([1]));
    let results = results_of(events, select_event);
    assert_eq!(results.len(), 1);
    let result = &results[0]["body"];
    assert_eq!(result["rows"], 1);
    assert_eq!(
        result["columns"],
        json!([
            "id", "ti", "tu", "i", "iu", "bi", "bu", "f", "d", "dc", "vc", "tx", "bl", "dt", "dtm",
            "tm", "yr", "js", "nl", "b"
        ])
    );
    // The row as the binary protocol carries it, decoded by column type: the same values, a DATE
    // column's without a time of day.
    let mut row = decoded.as_array().unwrap().clone();
    row[13] = json!("2024-02-29");
    assert_eq!(result["sample"], json!([row]));
    assert_eq!(result["sample_truncated"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_python_prepared_statements_record_parameters_and_masked_long_data() {
    const AWS_KEY: &str = "AKIAE2EMYSQLLONGDATA";
    let (proctor, token) = start_with_alice();
    let head = format!("aws_access_key_id = {AWS_KEY}\n");
    let port = proctor.mysql_port.to_string();
    let (proctor, ran) = tokio::task::spawn_blocking(move || {
        let ran = python(
            "mysql_connector_client.py",
            &[&port, "alice", &token, "maria", "drv_connector", &head],
        );
        (proctor, ran)
    })
    .await
    .unwrap();
    let long_data_len = 300000 + AWS_KEY.len() + 21;
    assert_eq!(ran["inserted"], 1);
    assert_eq!(
        ran["rows"],
        json!([
            [1, "ünïcødé", long_data_len, ran["long_data_md5"]],
            [2, "second", 7, "5c39cab10fd1b31cb3f4e44635175548"]
        ])
    );
    assert_eq!(ran["init_db_other"], 1044, "{ran}");
    assert_eq!(ran["database"], "test");

    let (proctor, sessions) = sessions_and_events(proctor, "alice", 1).await;
    let (session, events) = &sessions[0];
    let start = of_kind(events, "session.start")[0];
    assert_eq!(start["body"]["identity"], "alice");
    let executed: Vec<&Json> = of_kind(events, "db.query")
        .into_iter()
        .filter(|q| q["body"]["protocol"] == "binary")
        .collect();
    assert_eq!(executed.len(), 3, "{executed:?}");
    assert_eq!(
        executed[0]["body"]["sql"],
        "insert into drv_connector (id, name, doc) values (?, ?, ?)"
    );
    let params = &executed[0]["body"]["params"];
    assert_eq!(params[0], 1);
    assert_eq!(params[1], "ünïcødé");
    // The long data: its length, and its start, masked.
    assert_eq!(params[2]["bytes"], long_data_len);
    let kept = params[2]["long_data"].as_str().unwrap();
    assert!(
        kept.starts_with("aws_access_key_id = [MASKED:aws-access-key-id]\nyyyy"),
        "{kept}"
    );
    assert!(kept.len() < 20 * 1024, "{}", kept.len());
    let findings = executed[0]["findings"].to_string();
    assert!(findings.contains("aws-access-key-id"), "{findings}");
    assert_eq!(
        executed[1]["body"]["params"],
        json!([2, "second", {"hex": "00ff6279746573"}])
    );
    assert!(executed[2]["body"]["sql"]
        .as_str()
        .unwrap()
        .starts_with("select id, name, length(doc), md5(doc) from drv_connector"));
    assert_eq!(executed[2]["body"]["params"], json!([1]));
    let results = results_of(events, executed[2]);
    assert_eq!(results[0]["body"]["rows"], 2);
    assert_eq!(
        results[0]["body"]["sample"][0],
        json!([1, "ünïcødé", long_data_len, ran["long_data_md5"]])
    );
    // COM_INIT_DB: to another database refused by Proctor, to the connection's own passed on.
    let init_db: Vec<&Json> = of_kind(events, "db.query")
        .into_iter()
        .filter(|q| q["body"]["protocol"] == "init_db")
        .collect();
    assert_eq!(init_db.len(), 2, "{init_db:?}");
    assert_eq!(init_db[0]["body"]["sql"], "USE `mysql`");
    let refused = of_kind(events, "db.error")
        .into_iter()
        .find(|e| e["body"]["query"] == init_db[0]["seq"])
        .unwrap();
    assert_eq!(refused["body"]["code"], 1044);
    assert_eq!(refused["body"]["source"], "proctor");
    assert_eq!(init_db[1]["body"]["sql"], "USE `test`");
    assert_eq!(results_of(events, init_db[1])[0]["body"]["tag"], "OK");
    assert!(!session["end_reason"].is_null());

    let mut proctor = proctor;
    proctor.stop();
    assert!(!proctor.data_dir_contains(AWS_KEY));
}

/// A process's peak resident memory (VmHWM), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .to_owned();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_result_streams_through_in_bounded_memory_with_a_bounded_sample() {
    const ROWS: u64 = 300_000;
    let proctor = Proctor::start(&format!(
        "[mysql]\nsample_rows = 50\nsample_bytes = 4096\n{MARIA_DB}"
    ));
    let token = proctor.add_identity("alice", &["dba"]);
    let mut conn = connect(&proctor, "alice", &token).await;
    let warm: Option<i64> = conn.query_first("select 1").await.unwrap();
    assert_eq!(warm, Some(1));
    // The peak so far (the start's) could hide the streaming's: it is reset to the current size.
    std::fs::write(format!("/proc/{}/clear_refs", proctor.pid()), "5").unwrap();
    let before = peak_memory(proctor.pid());
    let sql = format!("select seq, repeat('x', 200) from seq_1_to_{ROWS}");
    let mut result = conn.query_iter(sql.as_str()).await.unwrap();
    let (mut rows, mut bytes, mut next) = (0u64, 0u64, 1u64);
    result
        .for_each(|row: Row| {
            let (seq, text): (u64, String) = mysql_async::from_row(row);
            assert_eq!(seq, next);
            assert_eq!(text.len(), 200);
            next += 1;
            rows += 1;
            bytes += 200 + seq.to_string().len() as u64;
        })
        .await
        .unwrap();
    drop(result);
    assert_eq!(rows, ROWS);
    let growth = peak_memory(proctor.pid()).saturating_sub(before);
    assert!(
        growth < bytes / 2,
        "Proctor's peak memory grew by {growth} bytes while {bytes} bytes of rows passed through"
    );
    conn.disconnect().await.unwrap();

    let (_proctor, sessions) = sessions_and_events(proctor, "alice", 1).await;
    let events = &sessions[0].1;
    let (_, result) = query_and_result(events, &sql);
    let result = &result["body"];
    assert_eq!(result["rows"], ROWS);
    assert_eq!(result["tag"], "rows");
    assert_eq!(result["sample_truncated"], true);
    assert!(result["bytes"].as_u64().unwrap() >= bytes);
    let sample = result["sample"].as_array().unwrap();
    assert!(!sample.is_empty() && sample.len() <= 50, "{}", sample.len());
    // The cells' bytes, without the note that ends a cut cell ("…[200 bytes]").
    let sampled: usize = sample
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|cell| {
            let cell = cell.as_str().unwrap();
            cell.split_once('…').map_or(cell, |(kept, _)| kept).len()
        })
        .sum();
    assert!(sampled <= 4096, "{sampled} bytes sampled");
    assert_eq!(sample[0], json!(["1", "x".repeat(200)]));
}

/// A deterministic 20 MiB value that is not UTF-8.
fn big_value() -> Vec<u8> {
    (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn values_over_16_mib_pass_both_ways_intact() {
    let (proctor, token) = start_with_alice();
    let mut conn = connect(&proctor, "alice", &token).await;
    conn.query_drop(
        "drop table if exists drv_big; create table drv_big (id int primary key, v longblob)",
    )
    .await
    .unwrap();
    let value = big_value();
    // Too large for one COM_STMT_EXECUTE: the driver sends it as long data, in packets of 16 MiB
    // that span two frames.
    conn.exec_drop("insert into drv_big values (?, ?)", (1, value.clone()))
        .await
        .unwrap();
    let checked: Option<(u64, String)> = conn
        .query_first("select length(v), md5(v) from drv_big where id = 1")
        .await
        .unwrap();
    let (length, md5) = checked.unwrap();
    assert_eq!(length, value.len() as u64);
    // Back through the text protocol, then the binary one: rows of more than 16 MiB.
    let text: Option<Vec<u8>> = conn
        .query_first("select v from drv_big where id = 1")
        .await
        .unwrap();
    assert!(text.unwrap() == value, "the text-protocol row differs");
    let binary: Option<Vec<u8>> = conn
        .exec_first("select v from drv_big where id = ?", (1,))
        .await
        .unwrap();
    assert!(binary.unwrap() == value, "the binary-protocol row differs");
    let repeated: Option<String> = conn
        .query_first("select repeat('ab', 9 * 1024 * 1024)")
        .await
        .unwrap();
    assert_eq!(repeated.unwrap(), "ab".repeat(9 * 1024 * 1024));
    let after: Option<i64> = conn.query_first("select 42").await.unwrap();
    assert_eq!(after, Some(42));
    conn.disconnect().await.unwrap();
    assert_eq!(mysql_admin("select md5(v) from drv_big where id = 1"), md5);

    let (_proctor, sessions) = sessions_and_events(proctor, "alice", 1).await;
    let events = &sessions[0].1;
    let (insert, result) = query_and_result(events, "insert into drv_big values (?, ?)");
    assert_eq!(insert["body"]["protocol"], "binary");
    let params = &insert["body"]["params"];
    assert_eq!(params[0], 1);
    assert_eq!(params[1]["bytes"], value.len());
    assert!(params[1]["long_data"]["hex"]
        .as_str()
        .unwrap()
        .starts_with(&hex::encode(&value[..16])));
    assert!(
        insert.to_string().len() < 64 * 1024,
        "a huge parameter makes a small event"
    );
    assert_eq!(result["body"]["rows"], 1);
    for sql in [
        "select v from drv_big where id = 1",
        "select v from drv_big where id = ?",
        "select repeat('ab', 9 * 1024 * 1024)",
    ] {
        let (_, result) = query_and_result(events, sql);
        assert_eq!(result["body"]["rows"], 1, "{sql}");
        assert!(result["body"]["bytes"].as_u64().unwrap() > 16 * 1024 * 1024);
        assert!(
            result.to_string().len() < 256 * 1024,
            "{sql}: a huge row makes a small event"
        );
    }
    let (_, result) = query_and_result(events, "select 42");
    assert_eq!(result["body"]["sample"], json!([["42"]]));
}

/// Waits until the target runs `sql` (as its process list shows).
async fn wait_until_running(sql: &'static str) {
    let running =
        format!("select count(*) from information_schema.processlist where info = '{sql}'");
    loop {
        let running = running.clone();
        if tokio::task::spawn_blocking(move || mysql_admin(&running))
            .await
            .unwrap()
            == "1"
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_query_from_another_connection_stops_a_long_query_of_the_same_identity_only() {
    const SLEEP: &str = "SELECT SLEEP(60) AS drv_kill";
    let (proctor, token) = start_with_alice();
    let bob_token = proctor.add_identity("bob", &["dba"]);
    let mut sleeper = connect(&proctor, "alice", &token).await;
    let id = sleeper.id();
    let sleeping = tokio::spawn(async move {
        let result: Result<Option<i64>, _> = sleeper.query_first(SLEEP).await;
        (sleeper, result)
    });
    wait_until_running(SLEEP).await;

    // Another identity's KILL does not reach it: MySQL's "unknown thread".
    let mut bob = connect(&proctor, "bob", &bob_token).await;
    let error = bob
        .query_drop(format!("KILL QUERY {id}"))
        .await
        .unwrap_err();
    assert_eq!(server_code(error), 1094);
    bob.disconnect().await.unwrap();
    assert!(!sleeping.is_finished());

    let mut killer = connect(&proctor, "alice", &token).await;
    killer.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    // The query ends: an interrupted SLEEP returns 1 (or the query fails as interrupted).
    let (mut sleeper, result) = sleeping.await.unwrap();
    match result {
        Ok(value) => assert_eq!(value, Some(1)),
        Err(error) => assert_eq!(server_code(error), 1317),
    }
    // KILL QUERY leaves the connection usable.
    let after: Option<i64> = sleeper.query_first("select 7").await.unwrap();
    assert_eq!(after, Some(7));
    sleeper.disconnect().await.unwrap();
    killer.disconnect().await.unwrap();

    let (proctor, sessions) = sessions_and_events(proctor, "alice", 2).await;
    let (killed, killing): (Vec<_>, Vec<_>) = sessions
        .iter()
        .partition(|(_, events)| !queries_of(events, SLEEP).is_empty());
    let (killed, killing) = (&killed[0].1, &killing[0].1);
    let kill = &queries_of(killing, &format!("KILL QUERY {id}"))[0]["body"];
    assert_eq!(kill["protocol"], "text");
    assert_eq!(kill["kill"]["session"], id);
    let thread = kill["kill"]["upstream_thread"].as_u64().unwrap();
    assert_ne!(
        thread,
        u64::from(id),
        "the target's thread is not the id the client saw"
    );
    let cancel = of_kind(killed, "db.cancel");
    assert_eq!(cancel.len(), 1, "{killed:?}");
    let sleep = queries_of(killed, SLEEP)[0];
    let position = |e: &Json| killed.iter().position(|k| k["seq"] == e["seq"]).unwrap();
    assert!(position(cancel[0]) > position(sleep));
    let answered = killed
        .iter()
        .find(|e| {
            (e["kind"] == "db.result" || e["kind"] == "db.error")
                && e["body"]["query"] == sleep["seq"]
        })
        .unwrap();
    assert!(
        position(cancel[0]) < position(answered),
        "the kill is recorded before its effect"
    );

    let bob_sessions = proctor.ended_sessions_of("bob", 1);
    let bob_events = proctor.events(bob_sessions[0]["id"].as_str().unwrap());
    let refused = of_kind(&bob_events, "db.error")[0];
    assert_eq!(refused["body"]["code"], 1094);
    assert_eq!(refused["body"]["source"], "proctor");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sessions_each_record_only_their_own_statements() {
    let (proctor, token) = start_with_alice();
    mysql_admin(
        "drop table if exists drv_concurrent; \
         create table drv_concurrent (n int, i int, v varchar(40), primary key (n, i))",
    );
    let mut tasks = Vec::new();
    for n in 0..8i32 {
        let mut conn = connect(&proctor, "alice", &token).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..20i32 {
                conn.exec_drop(
                    "insert into drv_concurrent values (?, ?, ?)",
                    (n, i, format!("task-{n}-{i}")),
                )
                .await
                .unwrap();
            }
            let values: Vec<String> = conn
                .exec("select v from drv_concurrent where n = ? order by i", (n,))
                .await
                .unwrap();
            let expected: Vec<String> = (0..20).map(|i| format!("task-{n}-{i}")).collect();
            assert_eq!(values, expected);
            conn.disconnect().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(mysql_admin("select count(*) from drv_concurrent"), "160");

    let (proctor, sessions) = sessions_and_events(proctor, "alice", 8).await;
    assert_eq!(sessions.len(), 8);
    let mut seen = Vec::new();
    for (session, events) in &sessions {
        let id = session["id"].as_str().unwrap();
        let verify = proctor.cli(&["sessions", "verify", id]);
        assert!(verify.status.success(), "{}", support::stdout(&verify));
        let executed: Vec<&Json> = of_kind(events, "db.query")
            .into_iter()
            .filter(|q| q["body"]["protocol"] == "binary")
            .collect();
        assert_eq!(executed.len(), 21);
        let n = executed[0]["body"]["params"][0].as_i64().unwrap();
        seen.push(n);
        for (i, insert) in executed[..20].iter().enumerate() {
            assert_eq!(
                insert["body"]["params"],
                json!([n, i, format!("task-{n}-{i}")])
            );
        }
        assert_eq!(executed[20]["body"]["params"], json!([n]));
        let results = results_of(events, executed[20]);
        let expected: Vec<Json> = (0..20).map(|i| json!([format!("task-{n}-{i}")])).collect();
        assert_eq!(results[0]["body"]["sample"], json!(expected));
        assert_eq!(results[0]["body"]["rows"], 20);
    }
    seen.sort();
    assert_eq!(seen, (0..8).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_connections_own_database_can_be_chosen() {
    let (proctor, token) = start_with_alice();
    let mut conn = connect(&proctor, "alice", &token).await;
    let error = conn.query_drop("USE mysql").await.unwrap_err();
    assert_eq!(server_code(error), 1044);
    let error = conn
        .query_drop("use `information_schema`;")
        .await
        .unwrap_err();
    assert_eq!(server_code(error), 1044);
    let database: Option<String> = conn.query_first("select database()").await.unwrap();
    assert_eq!(database.as_deref(), Some("test"));
    conn.query_drop("USE test").await.unwrap();
    let database: Option<String> = conn.query_first("select database()").await.unwrap();
    assert_eq!(database.as_deref(), Some("test"));
    conn.disconnect().await.unwrap();
    // The mariadb client's `use` command sends COM_INIT_DB.
    let proctor = tokio::task::spawn_blocking(move || {
        let out = proctor.mariadb("alice", &token, "maria", &["-e", "use mysql"], "");
        assert!(!out.status.success());
        assert!(
            support::stderr(&out).contains("ERROR 1044 (42000)"),
            "{}",
            support::stderr(&out)
        );
        let shown = proctor.mariadb_ok("alice", &token, "maria", "use test\nselect database()");
        assert_eq!(shown.trim(), "test");
        proctor
    })
    .await
    .unwrap();

    let (_proctor, sessions) = sessions_and_events(proctor, "alice", 3).await;
    let all: Vec<&Json> = sessions.iter().flat_map(|(_, events)| events).collect();
    let refusals: Vec<&Json> = all
        .iter()
        .copied()
        .filter(|e| e["kind"] == "db.error" && e["body"]["code"] == 1044)
        .collect();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(refusals.iter().all(|e| e["body"]["source"] == "proctor"));
    let uses: Vec<(&str, &str)> = all
        .iter()
        .filter(|e| {
            e["kind"] == "db.query" && e["body"]["sql"].as_str().unwrap_or("").starts_with("USE ")
        })
        .map(|e| {
            (
                e["body"]["protocol"].as_str().unwrap(),
                e["body"]["sql"].as_str().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("text", "USE `mysql`"),
        ("text", "USE `information_schema`"),
        ("text", "USE `test`"),
        ("init_db", "USE `mysql`"),
        ("init_db", "USE `test`"),
    ] {
        assert!(uses.contains(&expected), "{expected:?} not in {uses:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_connection_forgets_prepared_statements_and_the_session_goes_on() {
    let (proctor, token) = start_with_alice();
    let mut conn = connect(&proctor, "alice", &token).await;
    let before: Option<i64> = conn.exec_first("select ? + 1", (41,)).await.unwrap();
    assert_eq!(before, Some(42));
    conn.ping().await.unwrap();
    conn.reset().await.unwrap();
    // The driver prepares the statement again: Proctor forgot the old one with the target.
    let after: Option<i64> = conn.exec_first("select ? + 1", (1,)).await.unwrap();
    assert_eq!(after, Some(2));
    conn.disconnect().await.unwrap();

    let (_proctor, sessions) = sessions_and_events(proctor, "alice", 1).await;
    let events = &sessions[0].1;
    let reset = of_kind(events, "db.query")
        .into_iter()
        .find(|q| q["body"]["protocol"] == "reset_connection")
        .expect("the reset is recorded");
    let answered = results_of(events, reset);
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["body"]["tag"], "OK");
    let executions: Vec<&Json> = of_kind(events, "db.query")
        .into_iter()
        .filter(|q| q["body"]["protocol"] == "binary")
        .collect();
    assert_eq!(executions.len(), 2);
    assert_eq!(executions[1]["body"]["params"], json!([1]));
    assert_eq!(executions[1]["body"]["sql"], "select ? + 1");
}
