//! End to end: every kind of bad input gets a clear PostgreSQL error with the right SQLSTATE, is
//! recorded, and leaves the gateway serving other sessions.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use support::{of_kind, stderr, Proctor, APP_DB};

fn refused_sessions(proctor: &Proctor, identity: &str, count: usize) -> Vec<serde_json::Value> {
    proctor
        .ended_sessions_of(identity, count)
        .iter()
        .flat_map(|s| proctor.events(s["id"].as_str().unwrap()))
        .collect()
}

#[test]
fn wrong_token_unknown_identity_and_unauthorized_use_are_refused_and_recorded() {
    let extra = format!(
        "{APP_DB}{}",
        APP_DB
            .replace("app-db", "billing")
            .replace("group:dba", "carol")
    );
    let proctor = Proctor::start(&extra);
    let token = proctor.add_identity("alice", &["dba"]);

    let wrong = proctor.psql(
        "alice",
        "prt_00000000_not-the-token",
        "app-db",
        "disable",
        &["-c", "select 1"],
    );
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("password authentication failed for identity \"alice\""),
        "{}",
        stderr(&wrong)
    );

    let unknown = proctor.psql("mallory", &token, "app-db", "disable", &["-c", "select 1"]);
    assert!(
        stderr(&unknown).contains("password authentication failed for identity \"mallory\""),
        "{}",
        stderr(&unknown)
    );

    let no_such = proctor.psql("alice", &token, "nowhere", "disable", &["-c", "select 1"]);
    assert!(
        stderr(&no_such).contains("connection \"nowhere\" does not exist in Proctor"),
        "{}",
        stderr(&no_such)
    );

    let forbidden = proctor.psql("alice", &token, "billing", "disable", &["-c", "select 1"]);
    assert!(
        stderr(&forbidden).contains("identity \"alice\" may not use connection \"billing\""),
        "{}",
        stderr(&forbidden)
    );

    let alice = refused_sessions(&proctor, "alice", 3);
    let reasons: Vec<&str> = of_kind(&alice, "auth.failure")
        .iter()
        .map(|e| e["body"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "wrong token",
            "connection \"nowhere\" does not exist",
            "identity \"alice\" may not use connection \"billing\""
        ]
    );
    let mallory = refused_sessions(&proctor, "mallory", 1);
    assert_eq!(
        of_kind(&mallory, "auth.failure")[0]["body"]["reason"],
        "unknown identity"
    );
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert_eq!(secret.len(), 43, "the whole secret part of the token");
    assert!(
        !proctor.data_dir_contains(secret),
        "the token is in the data dir"
    );

    let ok = proctor.psql("alice", &token, "app-db", "disable", &["-c", "select 1"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn sqlstates_of_refusals_are_the_ones_drivers_expect() {
    let down = APP_DB.replace("app-db", "down-db").replace(
        &support::pg_address(),
        &format!("127.0.0.1:{}", support::free_port()),
    );
    let proctor = Proctor::start(&format!("{APP_DB}{down}"));
    let token = proctor.add_identity("alice", &["dba"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let code = |connection: &str, token: &str| {
        let conninfo = proctor.conninfo("alice", token, connection);
        runtime.block_on(async move {
            match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                Ok(_) => "connected".to_owned(),
                Err(e) => e
                    .as_db_error()
                    .map(|d| d.code().code().to_owned())
                    .unwrap_or_else(|| e.to_string()),
            }
        })
    };
    assert_eq!(code("app-db", "wrong"), "28P01");
    assert_eq!(code("nowhere", &token), "3D000");
    assert_eq!(code("down-db", &token), "08001");
    assert_eq!(code("app-db", &token), "connected");
    let events = refused_sessions(&proctor, "alice", 4);
    let connect_failure = of_kind(&events, "db.error")[0];
    assert_eq!(connect_failure["body"]["stage"], "connect");
    assert!(connect_failure["body"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot reach the database"));
}

/// A client that authenticates with SCRAM by hand, so that the test can then send raw bytes.
fn raw_session(proctor: &Proctor, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", proctor.pg_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = BytesMut::new();
    frontend::startup_message([("user", "alice"), ("database", "app-db")], &mut out).unwrap();
    stream.write_all(&out).unwrap();
    let mut scram: Option<ScramSha256> = None;
    loop {
        let (tag, body) = read_message(&mut stream);
        out.clear();
        let code = body
            .get(..4)
            .map_or(0, |b| i32::from_be_bytes(b.try_into().unwrap()));
        match (tag, code) {
            (b'R', 10) => {
                let client = ScramSha256::new(token.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response("SCRAM-SHA-256", client.message(), &mut out)
                    .unwrap();
                scram = Some(client);
            }
            (b'R', 11) => {
                let client = scram.as_mut().unwrap();
                client.update(&body[4..]).unwrap();
                frontend::sasl_response(client.message(), &mut out).unwrap();
            }
            (b'R', 12) => scram.as_mut().unwrap().finish(&body[4..]).unwrap(),
            (b'Z', _) => return stream,
            (b'E', _) => panic!("login failed: {}", String::from_utf8_lossy(&body)),
            _ => {}
        }
        if !out.is_empty() {
            stream.write_all(&out).unwrap();
        }
    }
}

fn read_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).unwrap();
    let len = i32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).unwrap();
    (header[0], body)
}

/// Reads until an ErrorResponse and returns its SQLSTATE and message.
fn read_error(stream: &mut TcpStream) -> (String, String) {
    loop {
        let (tag, body) = read_message(stream);
        if tag == b'E' {
            let text = String::from_utf8_lossy(&body).into_owned();
            let field = |code: char| {
                text.split('\0')
                    .find_map(|f| f.strip_prefix(code))
                    .unwrap_or_default()
                    .to_owned()
            };
            return (field('C'), field('M'));
        }
    }
}

#[test]
fn a_startup_without_a_user_is_refused_and_recorded_as_an_authentication_failure() {
    let proctor = Proctor::start(&APP_DB);
    let mut stream = TcpStream::connect(("127.0.0.1", proctor.pg_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = BytesMut::new();
    frontend::startup_message([("database", "app-db")], &mut out).unwrap();
    stream.write_all(&out).unwrap();
    let (code, message) = read_error(&mut stream);
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("28000", "no user given")
    );

    let events = refused_sessions(&proctor, "-", 1);
    let failure = of_kind(&events, "auth.failure");
    assert_eq!(failure.len(), 1, "{events:?}");
    assert_eq!(failure[0]["body"]["reason"], "no user given");
    let session = &proctor.ended_sessions_of("-", 1)[0];
    assert_eq!(session["connection"], "app-db");
}

#[test]
fn malformed_and_oversized_messages_get_protocol_errors_and_are_recorded() {
    let proctor = Proctor::start(&format!("[postgres]\nmax_message_bytes = 4096\n{APP_DB}"));
    let token = proctor.add_identity("alice", &["dba"]);

    let mut bad_count = raw_session(&proctor, &token);
    bad_count.write_all(b"B\0\0\0\x0a\0\0\0\0\x7f\xff").unwrap();
    let (code, message) = read_error(&mut bad_count);
    assert_eq!(code, "08P01");
    assert!(message.contains("count exceeds the message"), "{message}");

    let mut unknown_type = raw_session(&proctor, &token);
    unknown_type.write_all(b"z\0\0\0\x04").unwrap();
    let (code, message) = read_error(&mut unknown_type);
    assert_eq!(code, "08P01");
    assert!(
        message.contains("message type 'z' is not valid here"),
        "{message}"
    );

    let mut oversized = raw_session(&proctor, &token);
    let mut query = BytesMut::new();
    frontend::query(&format!("select '{}'", "x".repeat(10_000)), &mut query).unwrap();
    oversized.write_all(&query).unwrap();
    let (code, message) = read_error(&mut oversized);
    assert_eq!(code, "54000");
    assert!(
        message.contains("exceeds the limit of 4096 bytes"),
        "{message}"
    );

    let mut gss = TcpStream::connect(("127.0.0.1", proctor.pg_port)).unwrap();
    gss.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    gss.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .unwrap();
    let mut answer = [0u8; 1];
    gss.read_exact(&mut answer).unwrap();
    assert_eq!(
        &answer, b"N",
        "GSSENCRequest is declined, so the client goes on without it"
    );

    let mut garbage = TcpStream::connect(("127.0.0.1", proctor.pg_port)).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    garbage
        .write_all(b"\x7f\xff\xff\xffGET / HTTP/1.1\r\n")
        .unwrap();
    let (code, message) = read_error(&mut garbage);
    assert_eq!(code, "08P01");
    assert!(
        message.contains("invalid startup packet length"),
        "{message}"
    );

    let events = refused_sessions(&proctor, "alice", 3);
    let errors: Vec<&str> = of_kind(&events, "protocol.error")
        .iter()
        .map(|e| e["body"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("exceeds the limit")));
    assert!(
        of_kind(&events, "db.query").is_empty(),
        "nothing malformed was recorded as a query"
    );

    let startup = refused_sessions(&proctor, "-", 1);
    let startup_error = of_kind(&startup, "protocol.error")[0];
    assert!(startup_error["body"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid startup packet length"));

    let ok = proctor.psql("alice", &token, "app-db", "disable", &["-c", "select 1"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn a_client_that_vanishes_mid_query_does_not_leave_the_query_running() {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let mut client = raw_session(&proctor, &token);
    let mut query = BytesMut::new();
    frontend::query("select pg_sleep(120) as e2e_vanishing", &mut query).unwrap();
    client.write_all(&query).unwrap();
    let running = "select count(*) from pg_stat_activity where query like '%e2e_vanishing%' and pid <> pg_backend_pid()";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while support::admin_sql(running) != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the query never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    let sessions = proctor.ended_sessions_of("alice", 1);
    assert_eq!(
        sessions[0]["end_reason"],
        "client disconnected mid-query; the running statement was cancelled"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while support::admin_sql(running) != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the query kept running after the client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ok = proctor.psql("alice", &token, "app-db", "disable", &["-c", "select 1"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}
