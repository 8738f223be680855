//! End to end: MCP's own front door. A tool call runs in a session that the gateway opens
//! in-process, so it works whatever address the PostgreSQL listener is bound to; a malformed request
//! is a 400, and a wrong token is told that it is wrong.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;
use support::{python, Proctor, APP_DB};

/// POSTs `body` to /mcp as an MCP client does (it accepts JSON and event streams).
fn post_mcp(proctor: &Proctor, bearer: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", proctor.http_port)).unwrap();
    let auth = bearer
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
         Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

#[test]
fn a_tool_call_runs_in_process_whatever_the_listener_is_bound_to() {
    let mut proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    // Bound to IPv6 loopback only: nothing reaches it as 127.0.0.1.
    proctor.stop();
    let config = std::fs::read_to_string(&proctor.config_path).unwrap();
    let config = config.replacen(
        &format!("postgres_listen = \"127.0.0.1:{}\"", proctor.pg_port),
        "postgres_listen = \"[::1]:0\"",
        1,
    );
    std::fs::write(&proctor.config_path, config).unwrap();
    proctor.spawn();

    let calls = json!([["query", {"connection": "app-db", "sql": "select 6 * 7 as answer"}]]);
    let ran = python(
        "mcp_client.py",
        &[&proctor.http_port.to_string(), &token, &calls.to_string()],
    );
    assert_eq!(
        ran["results"][0]["content"]["rows"],
        json!([["42"]]),
        "{ran}"
    );
    let sessions = proctor.ended_sessions_of("alice", 2);
    let database = sessions
        .iter()
        .find(|s| s["protocol"] == "postgres")
        .expect("the call's database session is recorded");
    let events = proctor.events(database["id"].as_str().unwrap());
    let start = &support::of_kind(&events, "session.start")[0];
    assert_eq!(start["body"]["auth"]["method"], "mcp", "{start}");
}

#[test]
fn malformed_requests_are_400_and_a_wrong_token_is_told_so() {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);

    for body in ["{not json", "[1, 2", "\"just a string\"", "{}"] {
        let (status, answer) = post_mcp(&proctor, Some(&token), body);
        assert!(
            (400..500).contains(&status),
            "{body:?} answered {status}: {answer}"
        );
    }
    let (status, answer) = post_mcp(&proctor, Some(&token), "{not json");
    assert_eq!(status, 400, "{answer}");

    let id = token.split('_').nth(1).unwrap();
    let wrong = format!("prt_{id}_{}", "B".repeat(43));
    let (status, answer) = post_mcp(&proctor, Some(&wrong), "{}");
    assert_eq!(status, 401);
    assert!(answer.contains("not a valid Proctor token"), "{answer}");
    let (status, answer) = post_mcp(&proctor, None, "{}");
    assert_eq!(status, 401);
    assert!(answer.contains("send your Proctor token"), "{answer}");
}
