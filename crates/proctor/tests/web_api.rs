//! The REST API under `/api/v1`, driven over HTTP against the real gateway, with sessions recorded
//! from real `psql` runs: every route, what each role may do, and bad input answered with a 4xx and
//! a JSON error, never a 500.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{admin_sql, stderr, stdout, Proctor, APP_DB};

const HOLDING: &str = r#"
rules = [
  { name = "hold-alter", regex = "(?i)^\\s*alter\\s+table", action = "require_approval", approvers = ["group:approver"] },
  { name = "no-truncate", regex = "(?i)^\\s*truncate", action = "deny" },
]
"#;

const ROLES: &str = r#"
[web]
admins = ["group:admin"]
auditors = ["group:audit"]
approvers = ["group:approver"]
"#;

struct Team {
    proctor: Proctor,
    /// Admin, and a dba who works on the database.
    ana: String,
    /// Auditor.
    aud: String,
    /// Approver (by the `[web]` section only).
    bob: String,
    /// A dba without any web role.
    dan: String,
}

fn team() -> Team {
    let proctor = Proctor::start(&format!("{APP_DB}{HOLDING}{ROLES}"));
    let ana = proctor.add_identity("ana", &["admin", "dba"]);
    let aud = proctor.add_identity("aud", &["audit"]);
    let bob = proctor.add_identity("bob", &["approver"]);
    let dan = proctor.add_identity("dan", &["dba"]);
    Team {
        proctor,
        ana,
        aud,
        bob,
        dan,
    }
}

/// A request whose answer must be JSON; returns the status, the head and the parsed body.
fn call(
    proctor: &Proctor,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, Value) {
    let (status, head, text) = proctor.http_with_head(method, path, token, body);
    let value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{method} {path}: {status} with a body that is not JSON ({e}): {text}")
    });
    (status, head, value)
}

fn get(proctor: &Proctor, path: &str, token: &str) -> Value {
    let (status, _, body) = call(proctor, "GET", path, Some(token), "");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The error code of a refused request, after checking its status.
fn refused(
    proctor: &Proctor,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    status: u16,
) -> String {
    let (got, _, error) = call(proctor, method, path, token, body);
    assert_eq!(got, status, "{method} {path}: {error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{error}"
    );
    error["error"]["code"].as_str().unwrap().to_owned()
}

#[test]
fn sessions_are_listed_filtered_read_verified_exported_and_replayed_by_readers_only() {
    admin_sql("drop table if exists web_orders; create table web_orders (id int, note text)");
    let Team {
        proctor,
        ana,
        aud,
        bob,
        dan,
    } = team();
    proctor.psql_ok(
        "ana",
        &ana,
        "app-db",
        &[
            "-c",
            "insert into web_orders values (1, 'AKIAIOSFODNN7EXAMPLE'), (2, 'plain')",
            "-c",
            "select id, note from web_orders order by id",
        ],
    );
    let truncated = proctor.psql(
        "ana",
        &ana,
        "app-db",
        "disable",
        &["-c", "truncate web_orders"],
    );
    assert!(
        !truncated.status.success(),
        "the rule denies it: {}",
        stdout(&truncated)
    );
    proctor.psql_ok("dan", &dan, "app-db", &["-c", "select 42 as answer"]);
    proctor.ended_sessions_of("dan", 1);
    proctor.ended_sessions_of("ana", 2);

    // Who may read: admins and auditors; not an approver by role, not a dba without a role.
    assert_eq!(
        get(&proctor, "/api/v1/me", &aud)["roles"],
        serde_json::json!(["auditor"])
    );
    assert_eq!(
        get(&proctor, "/api/v1/me", &ana)["roles"],
        serde_json::json!(["admin", "approver"])
    );
    assert_eq!(
        get(&proctor, "/api/v1/me", &dan)["roles"],
        serde_json::json!(["approver"])
    );
    assert_eq!(
        refused(&proctor, "GET", "/api/v1/sessions", None, "", 401),
        "unauthorized"
    );
    assert_eq!(
        refused(
            &proctor,
            "GET",
            "/api/v1/sessions",
            Some("not-a-token"),
            "",
            401
        ),
        "unauthorized"
    );
    assert_eq!(
        refused(&proctor, "GET", "/api/v1/sessions", Some(&bob), "", 403),
        "forbidden"
    );
    let nobody = proctor.add_identity("nobody", &[]);
    assert_eq!(
        get(&proctor, "/api/v1/me", &nobody)["roles"],
        serde_json::json!([])
    );
    for path in [
        "/api/v1/sessions",
        "/api/v1/identities",
        "/api/v1/connections",
        "/api/v1/approvals",
        "/api/v1/chains",
        "/api/v1/log/checkpoint",
    ] {
        assert_eq!(
            refused(&proctor, "GET", path, Some(&nobody), "", 403),
            "forbidden",
            "{path}"
        );
    }

    // The list, newest first, with its filters.
    let all = get(&proctor, "/api/v1/sessions", &aud);
    let sessions = all["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{all}");
    assert_eq!(sessions[0]["identity"], "dan", "newest first: {all}");
    let of_ana = get(
        &proctor,
        "/api/v1/sessions?identity=ana&protocol=postgres",
        &aud,
    );
    let of_ana = of_ana["sessions"].as_array().unwrap();
    assert_eq!(of_ana.len(), 2);
    assert!(of_ana
        .iter()
        .all(|s| s["identity"] == "ana" && s["connection"] == "app-db"));
    let denied = get(&proctor, "/api/v1/sessions?has_denials=true", &aud);
    assert_eq!(denied["sessions"].as_array().unwrap().len(), 1, "{denied}");
    assert!(denied["sessions"][0]["denials"].as_u64().unwrap() >= 1);
    let with_secret = get(&proctor, "/api/v1/sessions?has_findings=true", &aud);
    assert_eq!(
        with_secret["sessions"].as_array().unwrap().len(),
        1,
        "{with_secret}"
    );
    let session = with_secret["sessions"][0].clone();
    let id = session["id"].as_str().unwrap().to_owned();
    let by_text = get(
        &proctor,
        "/api/v1/sessions?text=SELECT%20ID%2C%20NOTE",
        &aud,
    );
    assert_eq!(
        by_text["sessions"].as_array().unwrap().len(),
        1,
        "case-insensitive: {by_text}"
    );
    assert_eq!(by_text["sessions"][0]["id"], id.as_str());
    let none = get(&proctor, "/api/v1/sessions?text=web_orders_nowhere", &aud);
    assert_eq!(none["sessions"], serde_json::json!([]));
    let future = get(&proctor, "/api/v1/sessions?from=2200-01-01T00:00:00Z", &aud);
    assert_eq!(future["sessions"], serde_json::json!([]));
    let past = get(&proctor, "/api/v1/sessions?to=2000-01-01T00:00:00Z", &aud);
    assert_eq!(past["sessions"], serde_json::json!([]));

    // Pages follow each other without a gap or a repeat.
    let mut seen = Vec::new();
    let mut path = "/api/v1/sessions?limit=1".to_owned();
    loop {
        let page = get(&proctor, &path, &aud);
        seen.extend(
            page["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/sessions?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    let listed: Vec<Value> = sessions.iter().map(|s| s["id"].clone()).collect();
    assert_eq!(seen, listed);

    // Bad input is a 400 that says why.
    for path in [
        "/api/v1/sessions?from=yesterday",
        "/api/v1/sessions?limit=0",
        "/api/v1/sessions?limit=100000",
        "/api/v1/sessions?limit=ten",
        "/api/v1/sessions?has_denials=maybe",
        "/api/v1/sessions?colour=red",
        "/api/v1/sessions?cursor=not-a-cursor",
        &format!("/api/v1/sessions/{id}/events?limit=0"),
        &format!("/api/v1/sessions/{id}/events?after=-1"),
    ] {
        assert_eq!(
            refused(&proctor, "GET", path, Some(&aud), "", 400),
            "bad_request",
            "{path}"
        );
    }
    assert_eq!(
        refused(
            &proctor,
            "GET",
            "/api/v1/sessions/no-such-session",
            Some(&aud),
            "",
            404
        ),
        "not_found"
    );
    assert_eq!(
        refused(
            &proctor,
            "GET",
            "/api/v1/sessions/no-such-session/events",
            Some(&aud),
            "",
            404
        ),
        "not_found"
    );
    assert_eq!(
        refused(
            &proctor,
            "GET",
            &format!("/api/v1/sessions/{}", &id[..8]),
            Some(&aud),
            "",
            404
        ),
        "not_found",
        "the API takes whole ids only"
    );
    assert_eq!(
        refused(&proctor, "GET", "/api/v1/nothing-here", Some(&aud), "", 404),
        "not_found"
    );
    assert_eq!(
        refused(&proctor, "DELETE", "/api/v1/sessions", Some(&aud), "", 405),
        "method_not_allowed"
    );

    // One session: its header, its events page by page, masked.
    let detail = get(&proctor, &format!("/api/v1/sessions/{id}"), &aud);
    assert_eq!(detail["session"]["identity"], "ana");
    assert_eq!(detail["terminal_channels"], serde_json::json!([]));
    let first = get(
        &proctor,
        &format!("/api/v1/sessions/{id}/events?limit=3"),
        &aud,
    );
    assert_eq!(first["events"].as_array().unwrap().len(), 3);
    let after = first["next_after"].as_u64().unwrap();
    assert_eq!(after, 3);
    let rest = get(
        &proctor,
        &format!("/api/v1/sessions/{id}/events?after={after}"),
        &aud,
    );
    assert_eq!(rest["next_after"], Value::Null);
    let events: Vec<&Value> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["events"].as_array().unwrap())
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains("AKIAIOSFODNN7EXAMPLE"),
        "the secret is masked: {text}"
    );
    assert!(text.contains("[MASKED:"), "{text}");
    assert!(events.iter().any(|e| e["kind"] == "db.query"
        && e["body"]["sql"] == "select id, note from web_orders order by id"));

    // Verified: the chain, and the bundle against the signed log.
    let verification = get(
        &proctor,
        &format!("/api/v1/sessions/{id}/verification"),
        &aud,
    );
    assert_eq!(verification["verified"], true, "{verification}");
    assert_eq!(verification["chain"]["intact"], true);
    assert_eq!(
        verification["chain"]["events"].as_u64().unwrap(),
        seqs.len() as u64
    );
    assert!(
        verification["checks"].as_array().unwrap().len() >= 3,
        "{verification}"
    );

    // The bundle verifies offline with `proctor verify` and the checkpoint's key.
    let checkpoint = get(&proctor, "/api/v1/log/checkpoint", &aud);
    assert!(
        checkpoint["tree_size"].as_u64().unwrap() >= 1,
        "{checkpoint}"
    );
    let (status, head, bundle) = proctor.http_with_head(
        "GET",
        &format!("/api/v1/sessions/{id}/bundle"),
        Some(&aud),
        "",
    );
    assert_eq!(status, 200, "{bundle}");
    assert!(
        head.to_lowercase()
            .contains("content-disposition: attachment"),
        "{head}"
    );
    let file = proctor.dir.path().join("api.bundle.json");
    std::fs::write(&file, &bundle).unwrap();
    let verified = Command::new(env!("CARGO_BIN_EXE_proctor"))
        .arg("verify")
        .arg(&file)
        .arg("--key")
        .arg(checkpoint["verifier_key"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );

    // The replay: the client's screen, statement and result sample, with the recorded timing.
    let (status, head, cast) = proctor.http_with_head(
        "GET",
        &format!("/api/v1/sessions/{id}/asciicast"),
        Some(&aud),
        "",
    );
    assert_eq!(status, 200, "{cast}");
    assert!(
        head.to_lowercase()
            .contains("content-type: application/x-asciicast"),
        "{head}"
    );
    let mut lines = cast.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    let frames: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let screen: String = frames.iter().map(|f| f[2].as_str().unwrap()).collect();
    assert!(
        screen.contains("app-db=> select id, note from web_orders order by id"),
        "{screen}"
    );
    assert!(screen.contains("(2 rows)"), "{screen}");
    assert!(!screen.contains("AKIAIOSFODNN7EXAMPLE"), "{screen}");
    let times: Vec<f64> = frames.iter().map(|f| f[0].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(
        refused(
            &proctor,
            "GET",
            &format!("/api/v1/sessions/{id}/asciicast?channel=1"),
            Some(&aud),
            "",
            404
        ),
        "not_found"
    );

    // Every answer says how long the server took.
    let (_, head, _) = proctor.http_with_head("GET", "/api/v1/sessions", Some(&aud), "");
    assert!(
        head.to_lowercase().contains("server-timing: app;dur="),
        "{head}"
    );

    // The document that describes it all needs no token.
    let (status, _, doc) = call(&proctor, "GET", "/api/v1/openapi.json", None, "");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[test]
fn identities_and_tokens_are_read_by_auditors_and_changed_by_admins_only() {
    let Team {
        proctor, ana, aud, ..
    } = team();
    let listed = get(&proctor, "/api/v1/identities", &aud);
    let names: Vec<&str> = listed["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ana", "aud", "bob", "dan"]);
    assert!(
        !listed.to_string().contains(&ana),
        "tokens are never shown again"
    );

    let body = r#"{"name": "eve", "groups": ["audit"]}"#;
    assert_eq!(
        refused(
            &proctor,
            "POST",
            "/api/v1/identities",
            Some(&aud),
            body,
            403
        ),
        "forbidden"
    );
    let (status, _, created) = call(&proctor, "POST", "/api/v1/identities", Some(&ana), body);
    assert_eq!(status, 201, "{created}");
    let eve = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&proctor, "/api/v1/me", &eve)["roles"],
        serde_json::json!(["auditor"])
    );
    assert_eq!(
        refused(
            &proctor,
            "POST",
            "/api/v1/identities",
            Some(&ana),
            body,
            409
        ),
        "conflict"
    );
    for bad in [
        "",
        "{",
        r#"{"name": "has space"}"#,
        r#"{"name": "x", "groups": ["a b"]}"#,
        r#"{"name": "x", "role": "admin"}"#,
        r#"{"groups": []}"#,
        "[]",
    ] {
        assert_eq!(
            refused(&proctor, "POST", "/api/v1/identities", Some(&ana), bad, 400),
            "bad_request",
            "{bad}"
        );
    }

    let (status, _, second) = call(
        &proctor,
        "POST",
        "/api/v1/identities/eve/tokens",
        Some(&ana),
        "",
    );
    assert_eq!(status, 201, "{second}");
    assert_eq!(
        refused(
            &proctor,
            "POST",
            "/api/v1/identities/nobody-here/tokens",
            Some(&ana),
            "",
            404
        ),
        "not_found"
    );
    let token_id = second["token_id"].as_str().unwrap();
    let path = format!("/api/v1/tokens/{token_id}");
    assert_eq!(
        refused(&proctor, "DELETE", &path, Some(&aud), "", 403),
        "forbidden"
    );
    let (status, _, revoked) = call(&proctor, "DELETE", &path, Some(&ana), "");
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].as_i64().is_some());
    assert_eq!(
        refused(
            &proctor,
            "GET",
            "/api/v1/me",
            second["token"].as_str(),
            "",
            401
        ),
        "unauthorized"
    );
    assert_eq!(
        get(&proctor, "/api/v1/me", &eve)["identity"],
        "eve",
        "the first token still works"
    );
    assert_eq!(
        refused(
            &proctor,
            "DELETE",
            "/api/v1/tokens/no-such-token",
            Some(&ana),
            "",
            404
        ),
        "not_found"
    );

    let connections = get(&proctor, "/api/v1/connections", &aud);
    assert_eq!(connections["connections"][0]["name"], "app-db");
    assert_eq!(connections["connections"][0]["kind"], "postgres");
}

/// Reads a server-sent event stream until an `approvals` event satisfies `wanted`.
fn next_approvals(reader: &mut BufReader<TcpStream>, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    loop {
        assert!(Instant::now() < deadline, "no such event in the stream");
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let list: Value = serde_json::from_str(data).unwrap();
            if wanted(&list) {
                return list;
            }
        }
    }
}

#[test]
fn approvers_decide_held_statements_live_and_auditors_cannot() {
    admin_sql("drop table if exists web_held; create table web_held (id int)");
    let Team {
        proctor,
        ana,
        aud,
        bob,
        dan,
    } = team();

    let mut stream = TcpStream::connect(("127.0.0.1", proctor.http_port)).unwrap();
    write!(stream, "GET /api/v1/approvals/stream HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {bob}\r\n\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut events = BufReader::new(stream);
    let mut status = String::new();
    events.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    next_approvals(&mut events, |list| {
        list["approvals"] == serde_json::json!([])
    });

    let altering = proctor.psql_in_background(
        "ana",
        &ana,
        "app-db",
        "ALTER TABLE web_held ADD COLUMN approved int",
    );
    let list = next_approvals(&mut events, |list| {
        !list["approvals"].as_array().unwrap().is_empty()
    });
    let request = &list["approvals"][0];
    assert_eq!(request["identity"], "ana");
    assert_eq!(request["status"], "pending");
    assert_eq!(
        request["statement"],
        "ALTER TABLE web_held ADD COLUMN approved int"
    );
    let id = request["id"].as_str().unwrap().to_owned();
    let session = request["session_id"].as_str().unwrap().to_owned();

    // Everyone who reads approvals sees it; only approvers decide, and never their own.
    let listed = get(&proctor, "/api/v1/approvals", &aud);
    assert_eq!(listed["approvals"][0]["id"], id.as_str());
    assert_eq!(
        get(&proctor, &format!("/api/v1/approvals/{id}"), &aud)["status"],
        "pending"
    );
    let approve = format!("/api/v1/approvals/{id}/approve");
    assert_eq!(
        refused(&proctor, "POST", &approve, Some(&aud), "", 403),
        "forbidden",
        "an auditor changes nothing"
    );
    assert_eq!(
        refused(&proctor, "POST", &approve, Some(&ana), "", 403),
        "forbidden",
        "not one's own request"
    );
    assert_eq!(
        refused(&proctor, "POST", &approve, Some(&bob), "{\"why\": 1}", 400),
        "bad_request"
    );
    assert_eq!(
        refused(&proctor, "POST", &approve, Some(&bob), "not json", 400),
        "bad_request"
    );
    assert_eq!(
        refused(
            &proctor,
            "POST",
            "/api/v1/approvals/nope/approve",
            Some(&bob),
            "",
            404
        ),
        "not_found"
    );
    assert_eq!(
        refused(
            &proctor,
            "GET",
            "/api/v1/approvals?status=soon",
            Some(&bob),
            "",
            400
        ),
        "bad_request"
    );

    // An approver reads the session that asked (once the store has it: it copies the commit log
    // every 250 ms), not the others.
    let deadline = Instant::now() + Duration::from_secs(10);
    let path = format!("/api/v1/sessions/{session}/events");
    while call(&proctor, "GET", &path, Some(&bob), "").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            call(&proctor, "GET", &path, Some(&bob), "")
        );
        thread::sleep(Duration::from_millis(50));
    }
    proctor.psql_ok("dan", &dan, "app-db", &["-c", "select 1"]);
    let other = proctor.ended_sessions_of("dan", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        refused(
            &proctor,
            "GET",
            &format!("/api/v1/sessions/{other}"),
            Some(&bob),
            "",
            403
        ),
        "forbidden"
    );

    let (status, _, decided) = call(
        &proctor,
        "POST",
        &approve,
        Some(&bob),
        r#"{"reason": "planned"}"#,
    );
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["decided_by"], "bob");
    let out = altering.join().unwrap();
    assert!(
        out.status.success(),
        "the held psql finishes once approved: {}",
        stderr(&out)
    );
    next_approvals(&mut events, |list| {
        list["approvals"] == serde_json::json!([])
    });
    assert_eq!(
        refused(
            &proctor,
            "POST",
            &format!("/api/v1/approvals/{id}/deny"),
            Some(&bob),
            "",
            409
        ),
        "conflict"
    );
    let all = get(&proctor, "/api/v1/approvals?status=all", &aud);
    assert_eq!(all["approvals"][0]["status"], "approved");

    // Denied: the client gets the reason.
    let altering = proctor.psql_in_background(
        "ana",
        &ana,
        "app-db",
        "ALTER TABLE web_held ADD COLUMN denied int",
    );
    let list = next_approvals(&mut events, |list| {
        !list["approvals"].as_array().unwrap().is_empty()
    });
    let deny = format!(
        "/api/v1/approvals/{}/deny",
        list["approvals"][0]["id"].as_str().unwrap()
    );
    let code = refused(&proctor, "POST", &deny, Some(&dan), "", 403);
    assert_eq!(
        code, "forbidden",
        "the rule names its approvers, and dan is not one"
    );
    let (status, _, decided) = call(
        &proctor,
        "POST",
        &deny,
        Some(&bob),
        r#"{"reason": "not today"}"#,
    );
    assert_eq!(status, 200, "{decided}");
    let out = altering.join().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not today"), "{}", stderr(&out));
}
