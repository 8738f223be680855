//! `proctor sessions`: the analyst's view of the journal — list sessions, read one as a timeline,
//! verify its hash chain.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use proctor_core::journal::{Event, SessionFilter, SessionRow, VerifyOutcome};
use proctor_core::Config;
use serde_json::Value;

#[derive(Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ShowFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List sessions, oldest first.
    List {
        /// Only sessions of this identity.
        #[arg(long)]
        identity: Option<String>,
        /// Only sessions on this connection.
        #[arg(long)]
        connection: Option<String>,
        /// Only sessions started at or after this time (RFC 3339, e.g. 2026-11-24T10:00:00Z, or a
        /// duration ago: 30m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Show one session as a timeline (its id or a unique prefix of it, or --last).
    Show {
        #[arg(required_unless_present = "last")]
        id: Option<String>,
        /// The session that started last.
        #[arg(long, conflicts_with = "id")]
        last: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: ShowFormat,
    },
    /// Recompute a session's hash chain; exit 1 naming the first bad event if it does not hold.
    Verify { id: String },
}

pub fn run(config: Config, command: SessionsCommand) -> anyhow::Result<ExitCode> {
    let store = crate::admin::open_store(&config)?;
    match command {
        SessionsCommand::List {
            identity,
            connection,
            since,
            format,
        } => {
            let since_ns = since.as_deref().map(parse_since).transpose()?;
            let sessions = store.list_sessions(&SessionFilter {
                identity,
                connection,
                since_ns,
            })?;
            match format {
                ListFormat::Json => println!("{}", serde_json::to_string_pretty(&sessions)?),
                ListFormat::Table => print_table(&sessions),
            }
        }
        SessionsCommand::Show {
            id,
            last: _,
            format,
        } => {
            let session = match id {
                Some(id) => store.find_session(&id)?,
                None => store
                    .last_session()?
                    .ok_or_else(|| anyhow::anyhow!("no session is recorded yet"))?,
            };
            let events = store.events(&session.id)?;
            match format {
                ShowFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"session": session, "events": events})
                    )?
                ),
                ShowFormat::Text => print_timeline(&session, &events),
            }
        }
        SessionsCommand::Verify { id } => {
            let session = store.find_session(&id)?;
            match store.verify_session(&session)? {
                VerifyOutcome::Intact { events, head } => {
                    println!(
                        "session {}: chain intact, {events} events, head {head}",
                        session.id
                    );
                }
                VerifyOutcome::Broken { seq, reason } => {
                    println!(
                        "session {}: chain BROKEN at event {seq}: {reason}",
                        session.id
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn parse_since(text: &str) -> anyhow::Result<i64> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return at
            .timestamp_nanos_opt()
            .ok_or_else(|| anyhow::anyhow!("--since {text:?} is out of range"));
    }
    let (number, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let amount: i64 = number.parse().map_err(|_| {
        anyhow::anyhow!("--since {text:?} is neither an RFC 3339 time nor a duration like 30m")
    })?;
    let seconds = match unit {
        "s" => amount,
        "m" => amount * 60,
        "h" => amount * 3600,
        "d" => amount * 86_400,
        _ => anyhow::bail!("--since {text:?}: use s, m, h or d as the unit"),
    };
    Ok(proctor_core::journal::now_ns() - seconds * 1_000_000_000)
}

pub(crate) use proctor_core::chains::utc_time as time;

pub(crate) fn clock(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns)
        .format("%H:%M:%S%.3f")
        .to_string()
}

fn print_table(sessions: &[SessionRow]) {
    println!(
        "{:<36}  {:<23}  {:<16} {:<16} {:>7} {:>6}  OUTCOME",
        "SESSION", "STARTED (UTC)", "IDENTITY", "CONNECTION", "QUERIES", "ERRORS"
    );
    for s in sessions {
        let outcome = match (&s.end_reason, s.authenticated) {
            (Some(reason), _) => reason.clone(),
            (None, true) => "open".into(),
            (None, false) => "connecting".into(),
        };
        println!(
            "{:<36}  {:<23}  {:<16} {:<16} {:>7} {:>6}  {}",
            s.id,
            time(s.started_at),
            s.identity,
            s.connection,
            s.queries,
            s.errors,
            outcome
        );
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn print_timeline(session: &SessionRow, events: &[Event]) {
    println!("session     {}", session.id);
    println!("identity    {}", session.identity);
    println!("connection  {}", session.connection);
    println!("client      {}", session.client_addr);
    println!("started     {} UTC", time(session.started_at));
    if let Some(ended) = session.ended_at {
        println!(
            "ended       {} UTC ({})",
            time(ended),
            session.end_reason.as_deref().unwrap_or("")
        );
    }
    println!();
    for event in events {
        let b = &event.body;
        let line = match event.kind.as_str() {
            "session.start" => format!(
                "session start: {} via {} (tls {}), upstream {}@{}",
                text(&b["identity"]),
                text(&b["auth"]["method"]),
                b["tls"],
                text(&b["upstream"]["user"]),
                text(&b["upstream"]["address"])
            ),
            "db.query" => {
                let mut line = format!("#{} query  {}", event.seq, one_line(&text(&b["sql"])));
                if let Some(params) = b["params"].as_array().filter(|p| !p.is_empty()) {
                    line.push_str(&format!("  params {}", Value::Array(params.clone())));
                }
                if let Some(approval) = b["policy"]["approval"].as_str() {
                    line.push_str(&format!(
                        "  (approved by {}, request {approval})",
                        text(&b["policy"]["approved_by"])
                    ));
                } else if b["policy"]["rule"].as_str().is_some_and(|r| r != "default") {
                    line.push_str(&format!(
                        "  (allowed by rule {})",
                        text(&b["policy"]["rule"])
                    ));
                }
                line
            }
            "policy.decision" => {
                let flags = b["flags"]
                    .as_array()
                    .filter(|f| !f.is_empty())
                    .map(|f| format!(", {}", f.iter().map(text).collect::<Vec<_>>().join(" ")))
                    .unwrap_or_default();
                let verdict = match b["action"].as_str() {
                    Some("deny") => "DENIED".to_string(),
                    Some("require_approval") => {
                        format!("HELD for approval (request {})", text(&b["approval"]))
                    }
                    _ => text(&b["action"]),
                };
                format!(
                    "#{} guardrail {verdict} by rule {} ({}{flags})  {}",
                    event.seq,
                    text(&b["rule"]),
                    text(&b["kind"]),
                    one_line(&text(if b["command"].is_string() {
                        &b["command"]
                    } else {
                        &b["sql"]
                    }))
                )
            }
            "approval" => {
                let reason = b["reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                match b["by"].as_str() {
                    Some(by) => format!(
                        "  approval {} {} by {by}{reason} after {} ms",
                        text(&b["approval"]),
                        text(&b["outcome"]),
                        b["waited_ms"]
                    ),
                    None => format!(
                        "  approval {} {}{reason} after {} ms",
                        text(&b["approval"]),
                        text(&b["outcome"]),
                        b["waited_ms"]
                    ),
                }
            }
            "db.result" if b["outcome"] == "skipped" => {
                format!("  -> #{} skipped: {}", b["query"], text(&b["reason"]))
            }
            "db.result" => format!(
                "  -> #{} {} ({} rows, {} bytes, {:.3} ms)",
                b["query"],
                text(&b["tag"]),
                b["rows"],
                b["bytes"],
                b["duration_us"].as_f64().unwrap_or(0.0) / 1000.0
            ),
            "db.error" => format!(
                "  -> #{} ERROR {} {}",
                text(&b["query"]),
                text(&b["sqlstate"]),
                text(&b["message"])
            ),
            "db.cancel" => "cancel requested by the client".into(),
            "db.notification" => format!(
                "notification on {}: {}",
                text(&b["channel"]),
                text(&b["payload"])
            ),
            "db.notice" => format!("notice: {}", text(&b["message"])),
            "auth.failure" => format!("authentication refused: {}", text(&b["reason"])),
            "protocol.error" => format!(
                "protocol error ({}): {}",
                text(&b["direction"]),
                text(&b["message"])
            ),
            "session.end" => format!("session end: {}", text(&b["reason"])),
            _ => format!("{} {}", event.kind, b),
        };
        println!("{}  {line}", clock(event.at));
    }
}
