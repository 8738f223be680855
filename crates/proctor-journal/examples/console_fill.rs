//! A journal the size a console browses, for `bench/console.sh`: fills a fresh data dir with
//! 1,000,000 events through the group-commit writer and the chain, so that the store is what a gateway
//! makes. Sessions of many identities, connections and protocols, about 99 events each (PostgreSQL
//! and MySQL statements with their results, some with findings, some refused by a guardrail or held
//! and then refused; SSH shell lines with their output; MCP calls), and one session of exactly
//! 10,000 events. Then times the store's paged reads on it, as the API makes them.
//!
//!     cargo run --release -p proctor-journal --example console_fill -- DATA_DIR [--no-fill]
//!
//! `--no-fill` times the reads of a data dir filled before. Prints `long-session: ID`, the id of the
//! 10,000-event session, and `identity: NAME`, a busy identity, for the script.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor_journal::{
    no_findings, now_ns, CanonicalJson, Chain, SessionHeader, SessionQuery, Store, SyncMode, Writer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const EVENTS: u64 = 1_000_000;
const LONG_SESSION_EVENTS: u64 = 10_000;
/// Sessions written at once, each committing its statements one by one as a gateway does.
const WRITERS: usize = 64;
/// Reads are timed this many times each.
const RUNS: usize = 20;
/// The text only one session ran, to time a search that reads the whole store.
const RARE_TEXT: &str = "legacy_payroll_2019";
const DAY_NS: i64 = 86_400_000_000_000;

const IDENTITIES: usize = 40;
const DATABASES: [&str; 6] = [
    "orders-db",
    "billing-db",
    "analytics",
    "crm-db",
    "inventory",
    "auth-db",
];
const HOSTS: [&str; 3] = ["web-1", "web-2", "bastion"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, fill) = match args.as_slice() {
        [_, dir] => (dir, true),
        [_, dir, flag] if flag == "--no-fill" => (dir, false),
        _ => {
            eprintln!("usage: console_fill DATA_DIR [--no-fill]");
            std::process::exit(2);
        }
    };
    let dir = std::path::Path::new(dir);
    let store = Store::open(dir, SyncMode::Normal).expect("open the store");
    let long_id = if fill {
        fill_store(&store)
    } else {
        // The long session is the one with the most events.
        let all = store
            .list_sessions(&Default::default())
            .expect("list the sessions");
        all.into_iter()
            .max_by_key(|s| s.events)
            .expect("a filled store")
            .id
    };
    println!("long-session: {long_id}");
    println!("identity: {}", identity_name(0));
    time_reads(&store, &long_id);
}

/// The name of identity `n`: identity 0 is the busiest.
fn identity_name(n: usize) -> String {
    match n {
        0 => "ana".into(),
        1 => "ci-bot".into(),
        2 => "etl".into(),
        n => format!("user-{n:02}"),
    }
}

/// What one session is: its header's fields, and how its events are made.
#[derive(Clone, Copy)]
enum Shape {
    /// PostgreSQL or MySQL: statements and their results.
    Database {
        mysql: bool,
        statements: u64,
        finding: bool,
        denied: bool,
        held_and_refused: bool,
        rare: bool,
    },
    Ssh {
        lines: u64,
    },
    Mcp,
    /// The one long session: statements until it holds exactly this many events.
    Long,
}

struct Planned {
    header: SessionHeader,
    shape: Shape,
    seed: u64,
}

/// Fills the store; returns the id of the long session.
fn fill_store(store: &Store) -> String {
    let started = Instant::now();
    let plan = plan();
    let long_id = plan
        .iter()
        .find(|p| matches!(p.shape, Shape::Long))
        .map(|p| p.header.session_id.clone())
        .unwrap();
    let writer = Writer::start(store).expect("start the writer");
    let committed = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let (writer, committed, plan, next) = (
                writer.clone(),
                committed.clone(),
                plan.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(planned) = plan.get(n) else { break };
                    let events = write_session(&writer, planned).await;
                    committed.fetch_add(events, Ordering::Relaxed);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    writer.shutdown();
    let events = committed.load(Ordering::Relaxed);
    assert_eq!(events, EVENTS, "the plan adds up");
    let size = std::fs::metadata(store.path()).map_or(0, |m| m.len());
    println!(
        "fill: {} sessions, {events} events written and stored in {:.1} s; journal.db {:.0} MiB",
        plan.len(),
        started.elapsed().as_secs_f64(),
        size as f64 / 1_048_576.0
    );
    long_id
}

/// The sessions to write, in the order they are handed to the writers: the long one first, so that
/// it is written alongside the others, in many blocks, as a busy session is.
fn plan() -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(23);
    let now = now_ns();
    let first = now - 30 * DAY_NS;
    let mut planned = vec![Planned {
        header: header(
            &mut rng,
            "postgres",
            identity_name(2),
            "analytics",
            now - DAY_NS,
        ),
        shape: Shape::Long,
        seed: 0,
    }];
    let mut budget = EVENTS - LONG_SESSION_EVENTS;
    let mut rare_placed = false;
    while budget > 0 {
        // Identities: a few busy ones, a long tail of occasional ones.
        let identity = identity_name((rng.gen::<f64>().powi(3) * IDENTITIES as f64) as usize);
        let started_at = first + rng.gen_range(0..30 * DAY_NS);
        let roll = rng.gen_range(0..100);
        let (protocol, connection, shape) = if roll < 2 {
            ("mcp", DATABASES[0].to_owned(), Shape::Mcp)
        } else if roll < 12 {
            let lines = rng.gen_range(40..=52);
            let host = HOSTS[rng.gen_range(0..HOSTS.len())];
            ("ssh", host.to_owned(), Shape::Ssh { lines })
        } else {
            let mysql = roll >= 82;
            let database = DATABASES[rng.gen_range(0..DATABASES.len())];
            let denied = rng.gen_bool(0.04);
            let held_and_refused = rng.gen_bool(0.01);
            let statements = rng.gen_range(30..=68);
            let rare = !rare_placed && started_at < first + DAY_NS;
            rare_placed |= rare;
            (
                if mysql { "mysql" } else { "postgres" },
                database.to_owned(),
                Shape::Database {
                    mysql,
                    statements,
                    finding: rng.gen_bool(0.10),
                    denied,
                    held_and_refused,
                    rare,
                },
            )
        };
        let mut session = Planned {
            header: header(&mut rng, protocol, identity, &connection, started_at),
            shape,
            seed: rng.gen(),
        };
        let mut events = event_count(session.shape);
        if events + 2 > budget {
            // The last session takes what is left (never less than a session.start and a
            // session.end), as statements and their results (an odd number left gets a refusal).
            session.header.protocol = "postgres".into();
            session.header.connection = DATABASES[0].into();
            session.shape = Shape::Database {
                mysql: false,
                statements: (budget - 2) / 2,
                finding: false,
                denied: budget % 2 == 1,
                held_and_refused: false,
                rare: false,
            };
            events = event_count(session.shape);
        }
        budget -= events;
        planned.push(session);
    }
    planned
}

fn header(
    rng: &mut StdRng,
    protocol: &str,
    identity: String,
    connection: &str,
    started_at: i64,
) -> SessionHeader {
    let id: u128 = rng.gen();
    // Laid out as the gateway's ids are (UUIDv7): the start's milliseconds first.
    let ms = (started_at / 1_000_000) as u128;
    let id = (ms << 80) | (0x7 << 76) | (id & ((1 << 76) - 1));
    let hex = format!("{id:032x}");
    SessionHeader {
        session_id: format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        ),
        protocol: protocol.into(),
        identity,
        connection: connection.into(),
        client_addr: format!(
            "10.0.{}.{}:{}",
            rng.gen_range(0..8),
            rng.gen_range(2..250),
            rng.gen_range(40000..60000)
        ),
        started_at,
    }
}

fn event_count(shape: Shape) -> u64 {
    match shape {
        Shape::Database {
            statements,
            denied,
            held_and_refused,
            ..
        } => 2 + 2 * statements + u64::from(denied) + 2 * u64::from(held_and_refused),
        Shape::Ssh { lines } => 5 + 2 * lines,
        Shape::Mcp => 3,
        Shape::Long => LONG_SESSION_EVENTS,
    }
}

/// One event to write: its kind, body and findings.
type Made = (&'static str, Value, Value);

/// Writes one session through the writer, each statement committed before the next as the gateway
/// does; returns how many events it wrote.
async fn write_session(writer: &Writer, planned: &Planned) -> u64 {
    let broken = Arc::new(AtomicBool::new(false));
    let header = planned.header.clone();
    let mut chain = Chain::start(&header).unwrap();
    writer.open_session(header.clone(), &broken).await.unwrap();
    let mut rng = StdRng::seed_from_u64(planned.seed);
    let mut at = header.started_at;
    let mut written = 0;
    let events = session_events(planned, &mut rng);
    for (i, (kind, body, findings)) in events.into_iter().enumerate() {
        at += rng.gen_range(1_000_000..3_000_000_000);
        let findings = if findings.as_array().is_some_and(Vec::is_empty) {
            no_findings()
        } else {
            CanonicalJson::of(&findings)
        };
        let event = chain.next_event(at, kind, CanonicalJson::of(&body), findings);
        writer.append_queued(event, &broken).await;
        // A statement is committed before it is forwarded; its result rides the next commit.
        if kind != "db.result" && kind != "term.out" {
            writer.commit().await;
        }
        written += 1;
        if i % 64 == 63 {
            tokio::task::yield_now().await;
        }
    }
    writer
        .close_session(
            header.session_id.clone(),
            at,
            "client closed".into(),
            &broken,
        )
        .await
        .unwrap();
    assert!(!broken.load(Ordering::Acquire), "a commit failed");
    written
}

fn session_events(planned: &Planned, rng: &mut StdRng) -> Vec<Made> {
    let header = &planned.header;
    let start = (
        "session.start",
        json!({
            "application_name": "psql",
            "client": header.client_addr,
            "connection": header.connection,
            "guardrails": ["no-ddl", "approve-deletes"],
            "identity": header.identity,
            "upstream": format!("{}.internal:5432", header.connection),
        }),
        json!([]),
    );
    let end = ("session.end", json!({"reason": "client closed"}), json!([]));
    let mut events = vec![start];
    match planned.shape {
        Shape::Database {
            mysql,
            statements,
            finding,
            denied,
            held_and_refused,
            rare,
        } => {
            let finding_at = finding.then(|| rng.gen_range(0..statements.max(1)));
            let rare_at = rare.then(|| rng.gen_range(0..statements.max(1)));
            for n in 0..statements {
                let seq = events.len() as u64 + 1;
                let (sql, findings) = if rare_at == Some(n) {
                    (
                        format!("SELECT * FROM {RARE_TEXT} WHERE employee_id = 4711"),
                        json!([]),
                    )
                } else if finding_at == Some(n) {
                    (
                        "UPDATE integrations SET api_key = '[MASKED:aws-access-key:3f9a1c]' \
                         WHERE name = 'billing-export'"
                            .to_owned(),
                        json!([{"detector": "aws-access-key", "fingerprint": "3f9a1c0d5e7b2a48",
                                "location": "sql"}]),
                    )
                } else {
                    (statement(rng), json!([]))
                };
                events.push((
                    "db.query",
                    json!({"protocol": if mysql { "text" } else { "extended" }, "sql": sql}),
                    findings,
                ));
                events.push(("db.result", result(rng, seq, &sql), json!([])));
            }
            if denied {
                events.push((
                    "policy.decision",
                    json!({"action": "deny", "flags": ["drop"], "kind": "ddl",
                           "message": "DDL is not allowed on this connection", "rule": "no-ddl",
                           "sql": "DROP TABLE order_items", "tables": ["order_items"]}),
                    json!([]),
                ));
            }
            if held_and_refused {
                events.push((
                    "policy.decision",
                    json!({"action": "require_approval", "approval": "apr-1", "flags": ["delete_without_where"],
                           "kind": "write", "rule": "approve-deletes", "sql": "DELETE FROM customers",
                           "tables": ["customers"]}),
                    json!([]),
                ));
                events.push((
                    "approval",
                    json!({"approval": "apr-1", "by": "dba-on-call", "outcome": "denied",
                           "reason": "not during business hours", "rule": "approve-deletes",
                           "waited_ms": 48_213}),
                    json!([]),
                ));
            }
        }
        Shape::Ssh { lines } => {
            events.push(("ssh.shell", json!({"channel": 0, "pty": true}), json!([])));
            for _ in 0..lines {
                let (command, output) = shell_line(rng);
                events.push((
                    "ssh.command",
                    json!({"channel": 0, "command": command, "exact": true}),
                    json!([]),
                ));
                events.push((
                    "term.out",
                    json!({"channel": 0, "data": output, "ms": rng.gen_range(1..900)}),
                    json!([]),
                ));
            }
            events.push(("ssh.exit", json!({"channel": 0, "status": 0}), json!([])));
            events.push(("ssh.close", json!({"channel": 0}), json!([])));
        }
        Shape::Mcp => {
            let sql = statement(rng);
            events.push((
                "mcp.call",
                json!({"arguments": {"connection": header.connection, "sql": sql}, "call": 1,
                       "chain": null, "connection": header.connection,
                       "database_session": {"application_name": "proctor-mcp call=1"},
                       "proposed_by": null, "tool": "query"}),
                json!([]),
            ));
        }
        Shape::Long => {
            for _ in 0..(LONG_SESSION_EVENTS - 2) / 2 {
                let seq = events.len() as u64 + 1;
                let sql = statement(rng);
                events.push((
                    "db.query",
                    json!({"protocol": "extended", "sql": sql}),
                    json!([]),
                ));
                events.push(("db.result", result(rng, seq, &sql), json!([])));
            }
        }
    }
    events.push(end);
    events
}

/// A statement as an application or an analyst runs them.
fn statement(rng: &mut StdRng) -> String {
    let id = rng.gen_range(1..2_000_000);
    match rng.gen_range(0..10) {
        0 => format!(
            "SELECT o.id, o.status, o.total_cents, c.email FROM orders o JOIN customers c ON \
             c.id = o.customer_id WHERE o.customer_id = {id} ORDER BY o.created_at DESC LIMIT 20"
        ),
        1 => format!("SELECT id, email, full_name, created_at FROM customers WHERE id = {id}"),
        2 => format!(
            "UPDATE inventory SET quantity = quantity - 1, updated_at = now() WHERE sku = 'SKU-{id}'"
        ),
        3 => format!(
            "INSERT INTO audit_log (actor, action, subject_id, at) VALUES ('svc-orders', \
             'order.paid', {id}, now())"
        ),
        4 => "SELECT count(*) FROM invoices WHERE status = 'open' AND due_at < now()".into(),
        5 => format!(
            "SELECT date_trunc('day', created_at) AS day, sum(total_cents) FROM orders WHERE \
             created_at > now() - interval '{} days' GROUP BY 1 ORDER BY 1",
            id % 90
        ),
        6 => format!("SELECT * FROM order_items WHERE order_id = {id}"),
        7 => format!(
            "UPDATE orders SET status = 'shipped', shipped_at = now() WHERE id = {id} AND \
             status = 'paid'"
        ),
        8 => "BEGIN".into(),
        _ => format!(
            "SELECT p.sku, p.name, p.price_cents FROM products p WHERE p.category_id = {} \
             ORDER BY p.name LIMIT 50",
            id % 400
        ),
    }
}

/// The result of `sql`, the statement of event `query`: its tag and a small sample.
fn result(rng: &mut StdRng, query: u64, sql: &str) -> Value {
    if sql.starts_with("SELECT") {
        let rows = rng.gen_range(0..20u64);
        let sample: Vec<Value> = (0..rows.min(3))
            .map(|i| {
                let status = ["paid", "shipped", "open"][i as usize % 3];
                let email = format!("customer{}@example.com", rng.gen_range(1..100_000));
                json!([(query * 10 + i).to_string(), status, email])
            })
            .collect();
        json!({"bytes": 120 + rows * 64, "columns": ["id", "status", "email"], "query": query,
               "rows": rows, "sample": sample, "tag": format!("SELECT {rows}")})
    } else if sql.starts_with("INSERT") {
        json!({"bytes": 0, "query": query, "rows": 1, "tag": "INSERT 0 1"})
    } else if sql == "BEGIN" {
        json!({"bytes": 0, "query": query, "rows": 0, "tag": "BEGIN"})
    } else {
        let rows = rng.gen_range(0..2);
        json!({"bytes": 0, "query": query, "rows": rows, "tag": format!("UPDATE {rows}")})
    }
}

/// A shell line and its output.
fn shell_line(rng: &mut StdRng) -> (String, String) {
    match rng.gen_range(0..6) {
        0 => (
            "ls -la /var/log/app".into(),
            "total 2048\r\n-rw-r----- 1 app app 1048576 app.log\r\n".into(),
        ),
        1 => (
            "tail -n 50 /var/log/app/app.log".into(),
            "2026-01-01T10:00:00Z INFO request served in 12 ms\r\n".repeat(4),
        ),
        2 => (
            "systemctl status app".into(),
            "● app.service - App\r\n   Active: active (running)\r\n".into(),
        ),
        3 => (
            "df -h /".into(),
            "Filesystem Size Used Avail Use% Mounted on\r\n/dev/sda1 50G 21G 29G 42% /\r\n".into(),
        ),
        4 => (
            format!("grep -c ERROR /var/log/app/app.log.{}", rng.gen_range(1..9)),
            format!("{}\r\n", rng.gen_range(0..40)),
        ),
        _ => (
            "uptime".into(),
            " 10:00:00 up 41 days,  3:12,  1 user,  load average: 0.21, 0.30, 0.28\r\n".into(),
        ),
    }
}

/// The median and the slowest of `RUNS` runs of `read`, in milliseconds.
fn timed<T>(mut read: impl FnMut() -> T) -> (f64, f64, T) {
    let mut times = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        last = Some(read());
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(times[RUNS / 2]), ms(times[RUNS - 1]), last.unwrap())
}

fn time_reads(store: &Store, long_id: &str) {
    let page = |query: SessionQuery| {
        move || {
            store
                .session_page(&SessionQuery {
                    limit: 50,
                    ..query.clone()
                })
                .expect("a page")
        }
    };
    let first = store
        .session_page(&SessionQuery {
            limit: 50,
            ..Default::default()
        })
        .unwrap();
    let cursor = first.next_cursor.clone();
    let rarest = (0..IDENTITIES)
        .rev()
        .map(identity_name)
        .find(|name| {
            !store
                .session_page(&SessionQuery {
                    identity: Some(name.clone()),
                    limit: 1,
                    ..Default::default()
                })
                .unwrap()
                .sessions
                .is_empty()
        })
        .unwrap();
    let reads: Vec<(String, SessionQuery)> = vec![
        ("first page".into(), SessionQuery::default()),
        (
            format!("identity={}", identity_name(0)),
            SessionQuery {
                identity: Some(identity_name(0)),
                ..Default::default()
            },
        ),
        (
            format!("identity={rarest} (rarest)"),
            SessionQuery {
                identity: Some(rarest.clone()),
                ..Default::default()
            },
        ),
        (
            "connection=crm-db".into(),
            SessionQuery {
                connection: Some("crm-db".into()),
                ..Default::default()
            },
        ),
        (
            "protocol=mcp".into(),
            SessionQuery {
                protocol: Some("mcp".into()),
                ..Default::default()
            },
        ),
        (
            "from 10 days ago to 9".into(),
            SessionQuery {
                started_from: Some(now_ns() - 10 * DAY_NS),
                started_to: Some(now_ns() - 9 * DAY_NS),
                ..Default::default()
            },
        ),
        (
            "has_findings".into(),
            SessionQuery {
                has_findings: true,
                ..Default::default()
            },
        ),
        (
            "has_denials".into(),
            SessionQuery {
                has_denials: true,
                ..Default::default()
            },
        ),
        (
            "identity + has_denials".into(),
            SessionQuery {
                identity: Some(identity_name(3)),
                has_denials: true,
                ..Default::default()
            },
        ),
        (
            "text=order_items".into(),
            SessionQuery {
                text: Some("order_items".into()),
                ..Default::default()
            },
        ),
        (
            format!("text={RARE_TEXT} (one session)"),
            SessionQuery {
                text: Some(RARE_TEXT.into()),
                ..Default::default()
            },
        ),
        (
            "page 2 via cursor".into(),
            SessionQuery {
                cursor,
                ..Default::default()
            },
        ),
    ];
    println!("store reads, {RUNS} runs each: median / max ms");
    for (name, query) in reads {
        let (median, max, page) = timed(page(query));
        println!(
            "  sessions {name:<36} {median:8.2} {max:8.2}   ({} sessions{})",
            page.sessions.len(),
            if page.next_cursor.is_some() {
                ", more"
            } else {
                ""
            }
        );
    }
    let (median, max, session) = timed(|| store.find_session(long_id).unwrap());
    println!(
        "  {:<45} {median:8.2} {max:8.2}   ({} events)",
        "the long session", session.events
    );
    let (median, max, (events, next)) = timed(|| store.events_page(long_id, 0, 10_000).unwrap());
    println!(
        "  {:<45} {median:8.2} {max:8.2}   ({} events, next {next:?})",
        "its events, limit 10000",
        events.len()
    );
    let (median, max, _) = timed(|| store.events_page(long_id, 9_000, 1_000).unwrap());
    println!(
        "  {:<45} {median:8.2} {max:8.2}",
        "its last 1000 events, after 9000"
    );
    let (median, max, outcome) = timed(|| store.verify_session(&session).unwrap());
    println!(
        "  {:<45} {median:8.2} {max:8.2}   ({outcome:?})",
        "its chain verified"
    );
}
