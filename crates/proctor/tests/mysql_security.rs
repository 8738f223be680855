//! End to end: the MySQL gateway's security promises, with the real `mariadb` client, drivers and
//! hand-written packets through the real `proctor` binary against a real MariaDB — files sent with
//! LOAD DATA LOCAL INFILE, guardrails and held statements, bad input of every kind, masking in text
//! and binary results, TLS and the logins it allows, the credentials Proctor keeps, read-only
//! connections — and what the journal holds of each.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use bytes::BytesMut;
use proctor_mysql::auth::native_password_response;
use proctor_mysql::codec::{self, Greeting, HandshakeResponse};
use serde_json::Value;
use support::{
    approval_outcomes, mysql_address, mysql_admin, mysql_ca, of_kind, output_with_stdin,
    search_secret, stderr, stdout, Proctor, MARIA_DB,
};

/// A `[[connection]]` to the test MariaDB's `test` database for group `dba`, named `name`, with
/// `extra` lines (user, rules, masking...); the user is `root` unless `extra` names one.
fn maria(name: &str, extra: &str) -> String {
    let user = if extra.contains("user =") {
        String::new()
    } else {
        "user = \"root\"\n".to_owned()
    };
    format!(
        "\n[[connection]]\nname = \"{name}\"\nkind = \"mysql\"\naddress = \"{}\"\ndatabase = \"test\"\n{user}allow = [\"group:dba\"]\n{extra}\n",
        mysql_address()
    )
}

/// The `db.result` that answers the `db.query` event `query`.
fn result_of<'a>(events: &'a [Value], query: &Value) -> &'a Value {
    of_kind(events, "db.result")
        .into_iter()
        .find(|r| r["body"]["query"] == query["seq"])
        .unwrap_or_else(|| panic!("no result for {query}"))
}

fn failed_with(out: &Output, code: &str) -> String {
    assert!(!out.status.success(), "{}", stdout(out));
    let err = stderr(out);
    assert!(err.contains(code), "expected {code}: {err}");
    err
}

fn column_exists(table: &str, column: &str) -> bool {
    mysql_admin(&format!(
        "select count(*) from information_schema.columns where table_schema = 'test' \
         and table_name = '{table}' and column_name = '{column}'"
    )) == "1"
}

// ---------------------------------------------------------------------------------------------
// 1. LOAD DATA LOCAL INFILE

const INFILE_KEY: &str = "AKIAINFILE7LOAD0KEY9";
const INFILE_TOKEN: &str = "ghp_InFi1eL0adDataT0ken9876543210abcdEFG";

#[test]
fn a_local_infile_is_recorded_masked_and_a_rule_can_refuse_it() {
    assert_eq!(INFILE_TOKEN.len(), 40);
    mysql_admin("drop table if exists sec_load; create table sec_load (id int, note text)");
    let proctor = Proctor::start(&format!(
        "{}{}",
        maria("maria", ""),
        maria(
            "maria-noload",
            "rules = [{ name = \"no-load-data\", regex = \"(?i)^\\\\s*load\\\\s+data\", action = \"deny\", message = \"files are loaded by the import job\" }]"
        )
    ));
    let token = proctor.add_identity("alice", &["dba"]);
    let csv = proctor.dir.path().join("rows.csv");
    let content = format!("1,{INFILE_KEY}\n2,{INFILE_TOKEN}\n3,plain row\n");
    std::fs::write(&csv, &content).unwrap();
    let load = format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE sec_load FIELDS TERMINATED BY ',' (id, note)",
        csv.display()
    );

    let out = proctor.mariadb(
        "alice",
        &token,
        "maria",
        &["--local-infile=1", "-e", &load],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mysql_admin("select count(*) from sec_load"), "3");
    assert_eq!(
        mysql_admin("select note from sec_load where id = 2"),
        INFILE_TOKEN,
        "the file reached the table unchanged"
    );

    let events = proctor.events_of("alice", 1);
    let query = of_kind(&events, "db.query")
        .into_iter()
        .find(|q| q["body"]["sql"] == load.as_str())
        .expect("the LOAD DATA statement is recorded");
    let result = result_of(&events, query);
    assert_eq!(result["body"]["rows"], 3, "{result}");
    assert_eq!(result["body"]["bytes"], content.len(), "{result}");
    let sample: Vec<&str> = result["body"]["sample"]
        .as_array()
        .unwrap_or_else(|| panic!("a sample of the file: {result}"))
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(sample.len(), 3, "{sample:?}");
    assert_eq!(sample[2], "3,plain row");
    assert!(
        sample[0].starts_with("1,") && !sample[0].contains(INFILE_KEY),
        "{sample:?}"
    );
    assert!(!sample[1].contains(INFILE_TOKEN), "{sample:?}");
    for secret in [INFILE_KEY, INFILE_TOKEN] {
        assert!(!proctor.data_dir_contains(secret), "{secret} is stored");
        let (found, printed) = search_secret(&proctor, secret);
        assert!(found, "search finds {secret}: {printed}");
    }

    // A rule denies LOAD DATA: the client is told why, the file is never asked for.
    let out = proctor.mariadb(
        "alice",
        &token,
        "maria-noload",
        &["--local-infile=1", "-e", &load],
        "",
    );
    let err = failed_with(&out, "ERROR 1227 (42000)");
    assert!(
        err.contains("no-load-data") && err.contains("files are loaded by the import job"),
        "{err}"
    );
    assert_eq!(
        mysql_admin("select count(*) from sec_load"),
        "3",
        "nothing reached the table"
    );
    let events = proctor.events_of("alice", 2);
    let decision = of_kind(&events, "policy.decision")
        .into_iter()
        .find(|d| d["body"]["rule"] == "no-load-data")
        .expect("the denial is recorded");
    assert_eq!(decision["body"]["action"], "deny");
    assert_eq!(
        of_kind(&events, "db.query")
            .iter()
            .filter(|q| q["body"]["sql"] == load.as_str())
            .count(),
        1,
        "the denied statement was never sent"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Guardrails

const GUARDED: &str = r#"guardrails = "recommended"
rules = [
  { name = "no-drop-table", flags = ["drop"], kinds = ["ddl"], regex = "(?i)^\\s*drop\\s+table", action = "deny", message = "tables are dropped by migrations, not by hand" },
]"#;

#[test]
fn guardrails_deny_and_hold_mysql_statements_until_an_approver_decides() {
    mysql_admin(
        "drop table if exists g_my; create table g_my (id int); insert into g_my values (1), (2)",
    );
    let proctor = Proctor::start(&maria("maria", GUARDED));
    let alice = proctor.add_identity("alice", &["dba"]);
    let bob = proctor.add_identity("bob", &["dba"]);

    let out = proctor.mariadb("alice", &alice, "maria", &["-e", "DROP TABLE g_my"], "");
    let err = failed_with(&out, "ERROR 1227 (42000)");
    assert!(
        err.contains(
            "guardrail \"no-drop-table\" denied this statement: tables are dropped by migrations"
        ),
        "{err}"
    );
    assert_eq!(
        mysql_admin("select count(*) from g_my"),
        "2",
        "the table is still there"
    );
    let out = proctor.mariadb("alice", &alice, "maria", &["-e", "DELETE FROM g_my"], "");
    let err = failed_with(&out, "ERROR 1227 (42000)");
    assert!(
        err.contains("recommended/deny-delete-without-where"),
        "{err}"
    );
    assert_eq!(mysql_admin("select count(*) from g_my"), "2");

    // Held, then approved over HTTP by another member of dba (the default approvers).
    thread::scope(|scope| {
        let altering = scope.spawn(|| {
            proctor.mariadb(
                "alice",
                &alice,
                "maria",
                &["-e", "ALTER TABLE g_my ADD COLUMN approved int"],
                "",
            )
        });
        let request = proctor.pending_approvals(1)[0].clone();
        let id = request["id"].as_str().unwrap().to_owned();
        assert_eq!(request["rule"], "recommended/hold-ddl");
        assert_eq!(
            request["statement"],
            "ALTER TABLE g_my ADD COLUMN approved int"
        );
        assert!(
            !column_exists("g_my", "approved"),
            "nothing runs before the approval"
        );
        let path = format!("/api/v1/approvals/{id}/approve");
        let (status, body) = proctor.http("POST", &path, Some(&alice), r#"{"reason": "mine"}"#);
        assert_eq!(status, 403, "nobody approves their own statement: {body}");
        let (status, body) = proctor.http(
            "POST",
            &path,
            Some(&bob),
            r#"{"reason": "planned migration"}"#,
        );
        assert_eq!(status, 200, "{body}");
        let out = altering.join().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(column_exists("g_my", "approved"));
    });

    // Held, then denied.
    thread::scope(|scope| {
        let altering = scope.spawn(|| {
            proctor.mariadb(
                "alice",
                &alice,
                "maria",
                &["-e", "ALTER TABLE g_my ADD COLUMN denied int"],
                "",
            )
        });
        let id = proctor.pending_approvals(1)[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, body) = proctor.http(
            "POST",
            &format!("/api/v1/approvals/{id}/deny"),
            Some(&bob),
            r#"{"reason": "not during business hours"}"#,
        );
        assert_eq!(status, 200, "{body}");
        let out = altering.join().unwrap();
        let err = failed_with(&out, "ERROR 1227 (42000)");
        assert!(
            err.contains(&format!(
                "approval request {id} was denied by bob: not during business hours"
            )),
            "{err}"
        );
        assert!(!column_exists("g_my", "denied"));
    });

    let out = proctor.mariadb_ok("alice", &alice, "maria", "select count(*) from g_my");
    assert_eq!(out.trim(), "2", "the connection goes on");

    let events = proctor.events_of("alice", 5);
    let decisions: Vec<(&str, &str)> = of_kind(&events, "policy.decision")
        .iter()
        .map(|d| {
            (
                d["body"]["rule"].as_str().unwrap(),
                d["body"]["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("no-drop-table", "deny"),
            ("recommended/deny-delete-without-where", "deny"),
            ("recommended/hold-ddl", "require_approval"),
            ("recommended/hold-ddl", "require_approval"),
        ]
    );
    let outcomes = approval_outcomes(&events);
    assert_eq!(outcomes, [("approved", "bob"), ("denied", "bob")]);
    let sent: Vec<&str> = of_kind(&events, "db.query")
        .iter()
        .filter_map(|q| q["body"]["sql"].as_str())
        .collect();
    assert!(
        !sent
            .iter()
            .any(|s| s.contains("DROP") || *s == "DELETE FROM g_my" || s.contains("denied int")),
        "refused statements were never sent: {sent:?}"
    );
    let ran = of_kind(&events, "db.query")
        .into_iter()
        .find(|q| q["body"]["sql"] == "ALTER TABLE g_my ADD COLUMN approved int")
        .unwrap();
    assert_eq!(ran["body"]["policy"]["approved_by"], "bob");
    assert_eq!(result_of(&events, ran)["body"]["tag"], "OK");
}

// ---------------------------------------------------------------------------------------------
// 3. Bad input over raw TCP

const CAPS: u32 = codec::CLIENT_LONG_PASSWORD
    | codec::CLIENT_LONG_FLAG
    | codec::CLIENT_CONNECT_WITH_DB
    | codec::CLIENT_PROTOCOL_41
    | codec::CLIENT_TRANSACTIONS
    | codec::CLIENT_SECURE_CONNECTION
    | codec::CLIENT_MULTI_RESULTS
    | codec::CLIENT_PLUGIN_AUTH
    | codec::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

/// A MySQL client written by hand: packets in, packets out.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    fn connect(port: u16) -> (Self, Greeting) {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut raw = Self {
            stream,
            buf: BytesMut::new(),
        };
        let (_, greeting) = raw.recv().expect("a greeting");
        (raw, Greeting::parse(&greeting).unwrap())
    }

    /// Logs in with mysql_native_password.
    fn login(port: u16, user: &str, token: &str, connection: &str) -> Self {
        let (mut raw, greeting) = Self::connect(port);
        raw.send(1, &hello(CAPS, user, token, connection, &greeting));
        let (_, answer) = raw.recv().expect("a login answer");
        assert_eq!(
            answer[0],
            0x00,
            "login failed: {:?}",
            codec::parse_err(&answer)
        );
        raw
    }

    fn send(&mut self, seq: u8, payload: &[u8]) {
        let mut out = BytesMut::new();
        codec::write_packet(&mut out, seq, payload);
        self.stream.write_all(&out).unwrap();
    }

    /// The next packet, or None once the gateway closed the connection.
    fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some(packet) = codec::take_packet(&mut self.buf, usize::MAX).unwrap() {
                return Some((packet.first_seq, packet.payload.to_vec()));
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends a command and reads its whole answer: an OK or ERR, or a result set's packets.
    fn command(&mut self, payload: &[u8]) -> Vec<Vec<u8>> {
        self.send(0, payload);
        let (_, first) = self.recv().expect("an answer");
        if matches!(first[0], 0x00 | 0xFF) {
            return vec![first];
        }
        let mut packets = vec![first];
        let mut eofs = 0;
        while eofs < 2 {
            let (_, packet) = self.recv().expect("the rest of the result");
            if packet[0] == 0xFE && packet.len() < 9 {
                eofs += 1;
            }
            let err = packet[0] == 0xFF;
            packets.push(packet);
            if err {
                break;
            }
        }
        packets
    }

    /// `COM_QUERY`: the text rows of its result.
    fn query(&mut self, sql: &str) -> Vec<Vec<String>> {
        let mut payload = vec![codec::COM_QUERY];
        payload.extend_from_slice(sql.as_bytes());
        let packets = self.command(&payload);
        assert_ne!(
            packets[0][0],
            0xFF,
            "{sql}: {:?}",
            codec::parse_err(&packets[0])
        );
        let columns = packets[0][0] as usize;
        let mut rows = Vec::new();
        for packet in &packets[columns + 2..packets.len() - 1] {
            let cells = codec::text_row(packet, columns).unwrap();
            rows.push(
                cells
                    .iter()
                    .map(|c| c.map_or("NULL".into(), |c| String::from_utf8_lossy(c).into_owned()))
                    .collect(),
            );
        }
        rows
    }

    /// A command Proctor answers with an error: its code and SQLSTATE, and its message.
    fn refused(&mut self, payload: &[u8]) -> (u16, String, String) {
        let packets = self.command(payload);
        assert_eq!(packets.len(), 1);
        err(&packets[0])
    }
}

fn err(packet: &[u8]) -> (u16, String, String) {
    let e = codec::parse_err(packet).unwrap_or_else(|_| panic!("not an ERR: {packet:?}"));
    (e.code, e.sqlstate, e.message)
}

fn hello(
    capabilities: u32,
    user: &str,
    token: &str,
    connection: &str,
    greeting: &Greeting,
) -> Vec<u8> {
    HandshakeResponse {
        capabilities,
        max_packet: 1 << 24,
        charset: 45,
        user: user.into(),
        auth_response: native_password_response(token.as_bytes(), &greeting.nonce),
        database: Some(connection.into()),
        auth_plugin: Some("mysql_native_password".into()),
        attributes: Vec::new(),
    }
    .encode()
}

#[test]
fn bad_input_gets_a_mysql_error_is_recorded_and_other_sessions_go_on() {
    let proctor = Proctor::start(&format!("{MARIA_DB}\n[mysql]\nmax_packet_bytes = 4096\n"));
    let token = proctor.add_identity("alice", &["dba"]);
    let port = proctor.mysql_port;
    // A session that stays open through it all.
    let mut bystander = Raw::login(port, "alice", &token, "maria");
    assert_eq!(bystander.query("select 1"), [["1"]]);
    let still_working = |bystander: &mut Raw| {
        assert_eq!(bystander.query("select 'still here'"), [["still here"]]);
        assert_eq!(
            proctor
                .mariadb_ok("alice", &token, "maria", "select 2")
                .trim(),
            "2"
        );
    };

    // Garbage instead of a handshake response.
    let (mut raw, _) = Raw::connect(port);
    raw.send(1, &[1, 2, 3]);
    let (code, state, message) = err(&raw.recv().unwrap().1);
    assert_eq!((code, state.as_str()), (1043, "08S01"), "{message}");
    assert!(raw.recv().is_none(), "the connection is closed");
    // A pre-4.1 handshake response (HandshakeResponse320).
    let (mut raw, _) = Raw::connect(port);
    raw.send(1, b"\x05\x00\x00\x00\x01alice\x0012345678");
    let (code, _, message) = err(&raw.recv().unwrap().1);
    assert_eq!(code, 1043, "{message}");
    assert!(message.contains("pre-4.1"), "{message}");
    assert!(raw.recv().is_none());
    // A client asking for compression.
    let (mut raw, greeting) = Raw::connect(port);
    raw.send(
        1,
        &hello(
            CAPS | codec::CLIENT_COMPRESS,
            "alice",
            &token,
            "maria",
            &greeting,
        ),
    );
    let (code, state, message) = err(&raw.recv().unwrap().1);
    assert_eq!((code, state.as_str()), (1235, "42000"), "{message}");
    assert!(message.contains("compression"), "{message}");
    assert!(raw.recv().is_none());
    // An SSLRequest followed at once, in the same write, by what should be a TLS ClientHello: those
    // bytes go to the TLS handshake, which fails on them (not wait for more).
    let (mut raw, _) = Raw::connect(port);
    let mut out = BytesMut::new();
    codec::write_packet(
        &mut out,
        1,
        &codec::ssl_request(CAPS | codec::CLIENT_SSL, 1 << 24, 45),
    );
    out.extend_from_slice(b"this is no TLS ClientHello");
    raw.stream.write_all(&out).unwrap();
    assert!(raw.recv().is_none(), "the connection is closed");
    still_working(&mut bystander);

    // After login: an unknown command, COM_CHANGE_USER, a truncated COM_STMT_EXECUTE, an unknown
    // statement; each refused, the session goes on.
    let mut raw = Raw::login(port, "alice", &token, "maria");
    let (code, state, message) = raw.refused(&[0x1d]);
    assert_eq!((code, state.as_str()), (1047, "08S01"), "{message}");
    let (code, _, message) = raw.refused(b"\x11alice\x00\x00maria\x00");
    assert_eq!(code, 1235, "{message}");
    assert!(message.contains("COM_CHANGE_USER"), "{message}");
    let (code, _, message) = raw.refused(&[]);
    assert_eq!(code, 1835, "{message}");
    let mut prepare = vec![codec::COM_STMT_PREPARE];
    prepare.extend_from_slice(b"select ?");
    let prepared = raw.command(&prepare);
    assert_eq!(prepared[0][0], 0x00, "{:?}", codec::parse_err(&prepared[0]));
    let id = &prepared[0][1..5];
    let columns = usize::from(u16::from_le_bytes([prepared[0][5], prepared[0][6]]));
    assert_eq!(
        u16::from_le_bytes([prepared[0][7], prepared[0][8]]),
        1,
        "one parameter"
    );
    // The parameter's definition and its EOF, then the columns' definitions and their EOF.
    for _ in 0..2 + columns + usize::from(columns > 0) {
        raw.recv().unwrap();
    }
    let mut truncated = vec![codec::COM_STMT_EXECUTE];
    truncated.extend_from_slice(id);
    truncated.extend_from_slice(&[0, 1, 0, 0, 0]);
    let (code, _, message) = raw.refused(&truncated);
    assert!(code == 1835 || code == 1243, "{code}: {message}");
    let (code, _, message) =
        raw.refused(&[codec::COM_STMT_EXECUTE, 0xEE, 0xEE, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(code, 1243, "{message}");
    assert_eq!(
        raw.query("select 'after'"),
        [["after"]],
        "the session goes on"
    );
    still_working(&mut bystander);

    // A packet over [mysql] max_packet_bytes ends the session.
    let mut big = vec![codec::COM_QUERY];
    big.extend_from_slice(format!("select '{}'", "x".repeat(5000)).as_bytes());
    raw.send(0, &big);
    let (code, state, message) = err(&raw.recv().unwrap().1);
    assert_eq!((code, state.as_str()), (1153, "08S01"), "{message}");
    assert!(message.contains("4096"), "{message}");
    assert!(raw.recv().is_none(), "the session ended");
    still_working(&mut bystander);
    bystander.send(0, &[codec::COM_QUIT]);
    assert!(bystander.recv().is_none());

    // The journal: refused logins under `-`, refused commands in their session.
    let refused = proctor.ended_sessions_of("-", 4);
    let startup: Vec<String> = refused
        .iter()
        .flat_map(|s| proctor.events(s["id"].as_str().unwrap()))
        .filter(|e| e["kind"] == "protocol.error")
        .map(|e| {
            assert_eq!(e["body"]["stage"], "startup", "{e}");
            e["body"]["message"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(startup.len(), 4, "{startup:?}");
    assert!(startup[3].contains("TLS handshake failed"), "{startup:?}");
    assert!(startup[0].contains("Bad handshake"), "{startup:?}");
    assert!(startup[1].contains("pre-4.1"), "{startup:?}");
    assert!(startup[2].contains("compression"), "{startup:?}");

    let sessions = proctor.ended_sessions_of("alice", 5);
    let broken = sessions
        .iter()
        .find(|s| s["end_reason"].as_str().unwrap().contains("4096"))
        .unwrap_or_else(|| panic!("the session that sent too much: {sessions:?}"));
    let events = proctor.events(broken["id"].as_str().unwrap());
    let errors: Vec<&str> = of_kind(&events, "protocol.error")
        .iter()
        .map(|e| e["body"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors[0].contains("0x1d"), "{errors:?}");
    assert!(errors[1].contains("COM_CHANGE_USER"), "{errors:?}");
    assert!(errors[2].contains("empty command packet"), "{errors:?}");
    assert!(errors[3].contains("COM_STMT_EXECUTE"), "{errors:?}");
    assert!(errors[4].contains("4096"), "{errors:?}");
    let unknown = of_kind(&events, "db.error")
        .into_iter()
        .find(|e| e["body"]["code"] == 1243)
        .unwrap_or_else(|| panic!("the unknown statement is recorded: {events:?}"));
    assert_eq!(unknown["body"]["source"], "proctor");
    assert_eq!(events.last().unwrap()["kind"], "session.end");
    let calm = sessions
        .iter()
        .filter(|s| s["end_reason"] == "client closed the session")
        .count();
    assert!(
        calm >= 4,
        "the bystander and the CLI sessions ended normally: {sessions:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Masking, text and binary

const ROW_TOKEN: &str = "ghp_RowT0kenInMaskedMysqlTable0123456789";
const PARAM_KEY: &str = "AKIAPARAM7BINARY0KEY";
const ERROR_TOKEN: &str = "ghp_Err0rT0kenQuotedByMariaDB0123456789a";
const USER_TOKEN: &str = "ghp_UserNameT0kenTypedAsUser0123456789ab";
const DB_TOKEN: &str = "ghp_DatabaseT0kenTypedAsDb0123456789abcd";

#[test]
fn secrets_are_masked_for_the_client_and_kept_out_of_the_journal() {
    for t in [ROW_TOKEN, ERROR_TOKEN, USER_TOKEN, DB_TOKEN] {
        assert_eq!(t.len(), 40, "{t}");
    }
    mysql_admin(&format!(
        "drop table if exists sec_mask; create table sec_mask (id int, note text); \
         insert into sec_mask values (1, 'token {ROW_TOKEN} here'), (2, 'nothing')"
    ));
    let proctor = Proctor::start(&maria("maria", "mask_results = \"client_and_journal\""));
    let token = proctor.add_identity("alice", &["dba"]);

    // Text protocol, the mariadb client.
    let out = proctor.mariadb_ok(
        "alice",
        &token,
        "maria",
        "select id, note from sec_mask order by id",
    );
    assert!(!out.contains(ROW_TOKEN), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("1\ttoken ") && lines[0].ends_with(" here"),
        "{out}"
    );
    assert_eq!(lines[1], "2\tnothing");

    // Binary protocol, mysql_async's prepared statements.
    let url = format!(
        "{}?prefer_socket=false",
        proctor.mysql_url("alice", &token, "maria")
    );
    let (row, echoed, failure) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use mysql_async::prelude::*;
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
            .await
            .unwrap();
        let row: Vec<(i32, String)> = conn
            .exec("select id, note from sec_mask where id = ?", (1,))
            .await
            .unwrap();
        let echoed: Vec<(String,)> = conn
            .exec("select concat('key ', ?)", (PARAM_KEY,))
            .await
            .unwrap();
        let failure = conn
            .query_drop(format!("select `{ERROR_TOKEN}` from sec_mask"))
            .await
            .unwrap_err();
        let still: Vec<(i32,)> = conn.exec("select ?", (7,)).await.unwrap();
        assert_eq!(still, [(7,)]);
        conn.disconnect().await.unwrap();
        (row, echoed, failure.to_string())
    });
    assert_eq!(row.len(), 1);
    assert_eq!(row[0].0, 1);
    assert!(
        row[0].1.starts_with("token ") && !row[0].1.contains(ROW_TOKEN),
        "{row:?}"
    );
    assert!(
        echoed[0].0.starts_with("key ") && !echoed[0].0.contains(PARAM_KEY),
        "{echoed:?}"
    );
    assert!(failure.contains("1054"), "{failure}");

    // A token typed as the user or as the connection.
    let out = proctor.mariadb(USER_TOKEN, &token, "maria", &["-e", "select 1"], "");
    failed_with(&out, "ERROR 1045 (28000)");
    let out = proctor.mariadb("alice", &token, DB_TOKEN, &["-e", "select 1"], "");
    failed_with(&out, "ERROR 1049 (42000)");

    let events = proctor.events_of("alice", 3);
    let binary: Vec<&Value> = of_kind(&events, "db.query")
        .into_iter()
        .filter(|q| q["body"]["protocol"] == "binary")
        .collect();
    let echo = binary
        .iter()
        .find(|q| q["body"]["sql"] == "select concat('key ', ?)")
        .unwrap();
    let param = echo["body"]["params"][0].as_str().unwrap();
    assert!(!param.contains(PARAM_KEY), "{echo}");
    let sample = result_of(&events, echo)["body"].clone();
    assert!(!sample.to_string().contains(PARAM_KEY), "{sample}");
    assert_eq!(sample["client_masked"]["cells"], 1, "{sample}");
    let failed = of_kind(&events, "db.error")
        .into_iter()
        .find(|e| e["body"]["code"] == 1054)
        .expect("the failing statement's error");
    assert!(!failed.to_string().contains(ERROR_TOKEN), "{failed}");
    for secret in [ROW_TOKEN, PARAM_KEY, ERROR_TOKEN, USER_TOKEN, DB_TOKEN] {
        assert!(!proctor.data_dir_contains(secret), "{secret} is stored");
        let (found, printed) = search_secret(&proctor, secret);
        assert!(found, "search finds {secret}: {printed}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. TLS

fn python(code: &str, args: &[&str]) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap()
}

const CONNECTOR: &str = r#"
import sys, mysql.connector
port, user, password, db, ca, implementation = sys.argv[1:7]
# The pure-Python protocol, or the C extension (libmysqlclient).
kwargs = dict(host="127.0.0.1", port=int(port), user=user, password=password, database=db,
              auth_plugin="caching_sha2_password", use_pure=implementation == "pure")
if ca == "-":
    kwargs["ssl_disabled"] = True
else:
    kwargs.update(ssl_ca=ca, ssl_verify_cert=True)
conn = mysql.connector.connect(**kwargs)
cur = conn.cursor()
cur.execute("select 40 + 2")
print(cur.fetchone()[0])
conn.close()
"#;

#[test]
fn tls_clients_log_in_and_caching_sha2_is_switched_without_tls() {
    let proctor = Proctor::start(&MARIA_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let cert = proctor.data_dir().join("tls-cert.pem");
    assert!(cert.exists(), "Proctor made its certificate");
    let cert = cert.to_str().unwrap().to_owned();

    let out = proctor.mariadb(
        "alice",
        &token,
        "maria",
        &[
            "--ssl",
            "--ssl-verify-server-cert",
            &format!("--ssl-ca={cert}"),
            "-e",
            "select 1",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1");

    let port = proctor.mysql_port.to_string();
    // libmysqlclient sends no scramble when the greeting names another plugin than its own: it
    // waits for the nonce in a switch to its plugin.
    for implementation in ["pure", "c-extension"] {
        let out = python(
            CONNECTOR,
            &[&port, "alice", &token, "maria", &cert, implementation],
        );
        assert!(out.status.success(), "{implementation}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "42");
    }
    let out = python(CONNECTOR, &[&port, "alice", &token, "maria", "-", "pure"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "42");

    let starts: Vec<Value> = proctor
        .events_of("alice", 4)
        .into_iter()
        .filter(|e| e["kind"] == "session.start")
        .collect();
    let seen: Vec<(bool, &str)> = starts
        .iter()
        .map(|s| {
            (
                s["body"]["tls"].as_bool().unwrap(),
                s["body"]["auth"]["method"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (true, "mysql_native_password"),
            (true, "caching_sha2_password"),
            (true, "caching_sha2_password"),
            (false, "mysql_native_password"),
        ]
    );
    assert!(!proctor.data_dir_contains(&token));
}

// ---------------------------------------------------------------------------------------------
// 6. Upstream credentials

const NATIVE_PW: &str = "native-secret-pw";
const TLS_PW: &str = "tls-secret-pw";

#[test]
fn upstream_credentials_stay_with_proctor() {
    let ca = mysql_ca().expect("PROCTOR_TEST_MYSQL_CA names the test MariaDB's CA");
    let config = format!(
        "{}{}{}",
        maria(
            "maria-native",
            "user = \"proctor_native\"\npassword_env = \"MY_NATIVE_PW\""
        ),
        // The test MariaDB's certificate names `localhost`.
        maria(
            "maria-tls",
            &format!(
                "user = \"proctor_tls\"\npassword_env = \"MY_TLS_PW\"\ntls = \"verify-full\"\ntls_ca_file = \"{ca}\""
            )
        )
        .replace(
            &format!("address = \"{}\"", mysql_address()),
            &format!("address = \"localhost:{}\"", support::mysql_host_and_port().1)
        ),
        maria(
            "maria-tls-plain",
            "user = \"proctor_tls\"\npassword_env = \"MY_TLS_PW\""
        ),
    );
    let proctor = Proctor::start_with_env(
        &config,
        &[("MY_NATIVE_PW", NATIVE_PW), ("MY_TLS_PW", TLS_PW)],
    );
    let token = proctor.add_identity("alice", &["dba"]);

    let out = proctor.mariadb_ok("alice", &token, "maria-native", "select current_user()");
    assert_eq!(out.trim(), "proctor_native@%");
    let out = proctor.mariadb_ok(
        "alice",
        &token,
        "maria-tls",
        "select current_user(), variable_value <> '' from information_schema.session_status where variable_name = 'Ssl_cipher'",
    );
    assert_eq!(out.trim(), "proctor_tls@%\t1");
    let out = proctor.mariadb("alice", &token, "maria-tls-plain", &["-e", "select 1"], "");
    let err = failed_with(&out, "ERROR 1105 (HY000)");
    assert!(err.contains("maria-tls-plain"), "{err}");

    let sessions = proctor.ended_sessions_of("alice", 3);
    let events: Vec<Vec<Value>> = sessions
        .iter()
        .map(|s| proctor.events(s["id"].as_str().unwrap()))
        .collect();
    let start = |n: usize| of_kind(&events[n], "session.start")[0]["body"]["upstream"].clone();
    assert_eq!(start(0)["user"], "proctor_native");
    assert_eq!(start(1)["user"], "proctor_tls");
    assert_eq!(start(1)["tls"], true, "{}", start(1));
    let refused = of_kind(&events[2], "db.error");
    assert_eq!(refused.len(), 1, "{:?}", events[2]);
    assert_eq!(refused[0]["body"]["stage"], "connect");
    assert_eq!(sessions[2]["end_reason"], "database unavailable");
    for pw in [NATIVE_PW, TLS_PW] {
        assert!(
            !proctor.data_dir_contains(pw),
            "the upstream password is stored"
        );
        assert!(!stdout(&out).contains(pw) && !stderr(&out).contains(pw));
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Read-only connections

#[test]
fn a_read_only_connection_refuses_writes_here_and_at_the_database() {
    mysql_admin(
        "drop table if exists ro_my; create table ro_my (id int); insert into ro_my values (1)",
    );
    let (host, port) = support::mysql_host_and_port();
    let mut admin = Command::new("mariadb");
    admin.args(["-h", &host, "-P", &port, "-uroot", "--ssl=0", "-D", "test"]);
    let out = output_with_stdin(
        admin,
        "drop function if exists ro_my_writer;\n\
         delimiter //\n\
         create function ro_my_writer() returns int modifies sql data \
         begin insert into ro_my values (2); return 2; end//\n\
         delimiter ;\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let proctor = Proctor::start(&maria("maria", "read_only = true"));
    let token = proctor.add_identity("alice", &["dba"]);

    assert_eq!(
        proctor
            .mariadb_ok("alice", &token, "maria", "select count(*) from ro_my")
            .trim(),
        "1"
    );
    for write in [
        "INSERT INTO ro_my VALUES (3)",
        "CREATE TABLE ro_my_new (id int)",
        "SET SESSION TRANSACTION READ WRITE",
        "START TRANSACTION READ WRITE",
    ] {
        let out = proctor.mariadb("alice", &token, "maria", &["-e", write], "");
        let err = failed_with(&out, "ERROR 1227 (42000)");
        assert!(
            err.contains("guardrail \"read-only\" denied"),
            "{write}: {err}"
        );
    }
    // A SELECT that writes through a stored function passes the classifier; the target session,
    // read only, refuses it.
    let out = proctor.mariadb(
        "alice",
        &token,
        "maria",
        &["-e", "SELECT ro_my_writer()"],
        "",
    );
    let err = failed_with(&out, "ERROR 1792");
    assert!(err.contains("READ ONLY"), "{err}");
    assert_eq!(mysql_admin("select count(*) from ro_my"), "1");
}
