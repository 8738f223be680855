//! `proctor chains`: conversations with models, read back for an analyst — who started each, what the
//! AI proposed and how the human answered, and which secrets passed and where they were masked.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use proctor_core::journal::{Event, SessionFilter, SessionRow, Store};
use proctor_core::Config;
use serde_json::{json, Value};

use crate::sessions::{clock, parse_since, time};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum ChainsCommand {
    /// List conversations with models, oldest first.
    List {
        #[arg(long)]
        identity: Option<String>,
        /// Only chains started after this time (RFC 3339) or this long ago (30m, 2h, 1d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One chain as a timeline (its id or a unique prefix of it).
    Show {
        id: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

pub fn run(config: Config, command: ChainsCommand) -> anyhow::Result<ExitCode> {
    let store = crate::admin::open_store(&config)?;
    match command {
        ChainsCommand::List {
            identity,
            since,
            format,
        } => {
            let since_ns = since.as_deref().map(parse_since).transpose()?;
            let chains: Vec<Value> = store
                .list_sessions(&SessionFilter {
                    identity,
                    connection: None,
                    since_ns,
                })?
                .into_iter()
                .filter(|s| s.protocol == "llm")
                .map(|s| summary(&store, &s))
                .collect::<anyhow::Result<_>>()?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&chains)?),
                Format::Text => {
                    println!(
                        "{:<36}  {:<23}  {:<16} {:<12} {:>5} {:>9} {:>7}",
                        "CHAIN",
                        "STARTED (UTC)",
                        "IDENTITY",
                        "PROVIDER",
                        "TURNS",
                        "PROPOSALS",
                        "SECRETS"
                    );
                    for c in &chains {
                        println!(
                            "{:<36}  {:<23}  {:<16} {:<12} {:>5} {:>9} {:>7}",
                            c["chain"].as_str().unwrap_or_default(),
                            c["started"].as_str().unwrap_or_default(),
                            c["identity"].as_str().unwrap_or_default(),
                            c["provider"].as_str().unwrap_or_default(),
                            c["turns"],
                            c["proposals"],
                            c["secrets"]
                        );
                    }
                }
            }
        }
        ChainsCommand::Show { id, format } => {
            let session = store.find_session(&id)?;
            anyhow::ensure!(
                session.protocol == "llm",
                "session {} is a {} session, not a conversation with a model; `proctor sessions show` reads it",
                session.id,
                session.protocol
            );
            let events = store.events(&session.id)?;
            let commands = commands_of(&store, &session)?;
            let mut chain = chain_json(&session, &events);
            chain["commands"] = Value::Array(commands);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&chain)?),
                Format::Text => print_chain(&session, &events, &chain),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(store: &Store, session: &SessionRow) -> anyhow::Result<Value> {
    let events = store.events(&session.id)?;
    let chain = chain_json(session, &events);
    Ok(json!({
        "chain": session.id,
        "started": time(session.started_at),
        "identity": session.identity,
        "provider": session.connection,
        "turns": chain["turns"].as_array().map_or(0, Vec::len),
        "proposals": chain["proposals"].as_array().map_or(0, Vec::len),
        "secrets": chain["secrets"].as_array().map_or(0, Vec::len),
        "ended": session.end_reason,
    }))
}

/// What a message says, in one line: its text, or what its blocks are.
fn message_text(message: &Value) -> String {
    let blocks = match &message["content"] {
        Value::String(text) => return text.clone(),
        Value::Array(blocks) => blocks,
        _ => {
            let calls: Vec<String> = message["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "[tool call {} {}]",
                        c["function"]["name"], c["function"]["arguments"]
                    )
                })
                .collect();
            return calls.join(" ");
        }
    };
    blocks
        .iter()
        .map(|b| match b["type"].as_str() {
            Some("text") => b["text"].as_str().unwrap_or_default().to_owned(),
            Some("tool_result") => format!("[tool result {}: {}]", b["tool_use_id"], b["content"]),
            Some("tool_use") => format!("[tool call {} {}]", b["name"], b["input"]),
            Some("thinking") => "[thinking]".to_owned(),
            other => format!("[{}]", other.unwrap_or("?")),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The chain as data: turns (new messages, answer), the AI's proposals, and the secrets seen.
fn chain_json(session: &SessionRow, events: &[Event]) -> Value {
    let mut turns = Vec::new();
    let mut proposals = Vec::new();
    let mut secrets = Vec::new();
    for event in events {
        for finding in &event.findings {
            secrets.push(json!({
                "at": time(event.at),
                "event": event.kind,
                "seq": event.seq,
                "detector": finding["detector"],
                "fingerprint": finding["fingerprint"],
                "where": finding["location"],
                "masked_before_storage": true,
                "masked_before_provider": match event.kind.as_str() {
                    "llm.request" => finding["masked_before_provider"].clone(),
                    _ => Value::Null,
                },
            }));
        }
        let b = &event.body;
        match event.kind.as_str() {
            "llm.request" => turns.push(json!({
                "at": time(event.at),
                "seq": event.seq,
                "model": b["model"],
                "new_messages": b["new_messages"].as_array().into_iter().flatten().map(|m| json!({
                    "role": m["message"]["role"],
                    "text": message_text(&m["message"]),
                })).collect::<Vec<_>>(),
            })),
            "llm.response" => {
                for call in b["tool_calls"].as_array().into_iter().flatten() {
                    proposals.push(
                        json!({"at": time(event.at), "seq": event.seq, "tool": call["name"],
                        "id": call["id"], "arguments": call["arguments"]}),
                    );
                }
                if let Some(turn) = turns.last_mut() {
                    turn["answer"] = json!({
                        "seq": event.seq,
                        "status": b["status"],
                        "text": b["text"],
                        "tool_calls": b["tool_calls"],
                        "stop_reason": b["stop_reason"],
                        "error": b["error"],
                    });
                }
            }
            _ => {}
        }
    }
    json!({
        "chain": session.id,
        "identity": session.identity,
        "provider": session.connection,
        "client": session.client_addr,
        "started": time(session.started_at),
        "ended": session.end_reason,
        "turns": turns,
        "proposals": proposals,
        "secrets": secrets,
    })
}

/// The tool calls made for a chain and what each did on its target: `mcp.call` events naming the
/// chain, and the database sessions those calls opened (their `application_name` names the call).
fn commands_of(store: &Store, chain: &SessionRow) -> anyhow::Result<Vec<Value>> {
    let later = store.list_sessions(&SessionFilter {
        identity: None,
        connection: None,
        since_ns: Some(chain.started_at),
    })?;
    let mut database: Vec<(String, Vec<Event>)> = Vec::new();
    let mut calls = Vec::new();
    for session in &later {
        match session.protocol.as_str() {
            "postgres" => {
                let events = store.events(&session.id)?;
                let application = events
                    .first()
                    .and_then(|e| e.body["application_name"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                if application.contains(&format!("chain={}", chain.id)) {
                    database.push((application, events));
                }
            }
            "mcp" => {
                let events = store.events(&session.id)?;
                if events
                    .iter()
                    .any(|e| e.kind == "mcp.call" && e.body["chain"] == chain.id.as_str())
                {
                    calls.push((session.clone(), events));
                }
            }
            _ => {}
        }
    }
    let mut commands = Vec::new();
    for (session, events) in calls {
        let Some(call) = events.iter().find(|e| e.kind == "mcp.call") else {
            continue;
        };
        let result = events.iter().find(|e| e.kind == "mcp.result");
        let id = call.body["call"].as_str().unwrap_or_default();
        let statements: Vec<Value> = database
            .iter()
            .filter(|(application, _)| application.contains(&format!("call={id}")))
            .flat_map(|(_, events)| statements_of(events))
            .collect();
        commands.push(json!({
            "at": time(call.at),
            "identity": session.identity,
            "connection": session.connection,
            "tool": call.body["tool"],
            "arguments": call.body["arguments"],
            "proposed_by": call.body["proposed_by"],
            "outcome": result.map(|r| r.body.clone()),
            "statements": statements,
        }));
    }
    Ok(commands)
}

/// What a database session did: each statement, run (with its outcome) or stopped by a guardrail.
fn statements_of(events: &[Event]) -> Vec<Value> {
    let mut statements = Vec::new();
    for event in events {
        let b = &event.body;
        match event.kind.as_str() {
            "db.query" => {
                statements.push(json!({"seq": event.seq, "sql": b["sql"], "reached_target": true}))
            }
            "policy.decision" => statements.push(json!({
                "seq": event.seq, "sql": b["sql"], "reached_target": false,
                "guardrail": {"action": b["action"], "rule": b["rule"], "approval": b["approval"]},
            })),
            "db.result" | "db.error" => {
                if let Some(statement) =
                    statements.iter_mut().rev().find(|s| s["seq"] == b["query"])
                {
                    statement["outcome"] = if event.kind == "db.result" {
                        json!({"tag": b["tag"], "rows": b["rows"]})
                    } else {
                        json!({"error": b["message"], "sqlstate": b["sqlstate"]})
                    };
                }
            }
            _ => {}
        }
    }
    statements
}

fn print_chain(session: &SessionRow, events: &[Event], chain: &Value) {
    println!("chain       {}", session.id);
    println!(
        "started by  {} (from {}) at {} UTC",
        session.identity,
        session.client_addr,
        time(session.started_at)
    );
    println!("provider    {}", session.connection);
    println!();
    for event in events {
        let b = &event.body;
        match event.kind.as_str() {
            "llm.request" => {
                println!(
                    "{}  #{} turn to {} ({} messages already in the chain)",
                    clock(event.at),
                    event.seq,
                    b["model"],
                    b["context"]
                );
                for m in b["new_messages"].as_array().into_iter().flatten() {
                    let role = m["message"]["role"].as_str().unwrap_or("?");
                    let who = match role {
                        "user" => "human",
                        "tool" => "tool result",
                        other => other,
                    };
                    println!("              {who}: {}", message_text(&m["message"]));
                }
            }
            "llm.response" => {
                let text = b["text"].as_str().unwrap_or_default();
                if !text.is_empty() {
                    println!("{}  #{} AI: {text}", clock(event.at), event.seq);
                }
                for call in b["tool_calls"].as_array().into_iter().flatten() {
                    println!(
                        "{}  #{} AI proposed: {} {}",
                        clock(event.at),
                        event.seq,
                        call["name"].as_str().unwrap_or("?"),
                        call["arguments"].as_str().unwrap_or_default()
                    );
                }
                if !b["error"].is_null() {
                    println!(
                        "{}  #{} provider error ({}): {}",
                        clock(event.at),
                        event.seq,
                        b["status"],
                        b["error"]
                    );
                }
            }
            _ => {}
        }
    }
    println!();
    let commands = chain["commands"].as_array().cloned().unwrap_or_default();
    if commands.is_empty() {
        println!("commands    none: no tool call of this chain reached a target");
    }
    for c in &commands {
        let proposed = match c["proposed_by"]["seq"].as_u64() {
            Some(seq) => format!("proposed by the AI in #{seq}"),
            None => "not proposed in this chain".to_owned(),
        };
        println!(
            "command     {} {} on {} by {} ({proposed})",
            c["at"].as_str().unwrap_or_default(),
            c["tool"].as_str().unwrap_or("?"),
            c["connection"].as_str().unwrap_or("?"),
            c["identity"].as_str().unwrap_or("?"),
        );
        for s in c["statements"].as_array().into_iter().flatten() {
            let sql = s["sql"].as_str().unwrap_or_default();
            if s["reached_target"] == true {
                let outcome = match (&s["outcome"]["tag"], &s["outcome"]["error"]) {
                    (Value::String(tag), _) => format!("ran: {tag}"),
                    (_, Value::String(error)) => format!("failed: {error}"),
                    _ => "sent".to_owned(),
                };
                println!("              {sql} -> {outcome}");
            } else {
                let verdict = match s["guardrail"]["action"].as_str() {
                    Some("require_approval") => format!(
                        "HELD for approval (request {})",
                        s["guardrail"]["approval"].as_str().unwrap_or("?")
                    ),
                    _ => "BLOCKED".to_owned(),
                };
                println!(
                    "              {sql} -> {verdict} by rule {}",
                    s["guardrail"]["rule"].as_str().unwrap_or("?")
                );
            }
        }
    }
    let secrets = chain["secrets"].as_array().cloned().unwrap_or_default();
    if secrets.is_empty() {
        println!("secrets     none found");
    }
    for s in secrets {
        let provider = match s["masked_before_provider"].as_bool() {
            Some(true) => "masked before the provider",
            Some(false) => "REACHED the provider",
            None => "from the model",
        };
        println!(
            "secret      {} in {} #{} ({}): masked before storage, {provider}; fingerprint {}",
            s["detector"].as_str().unwrap_or("?"),
            s["event"].as_str().unwrap_or("?"),
            s["seq"],
            s["where"].as_str().unwrap_or("?"),
            s["fingerprint"].as_str().unwrap_or("?")
        );
    }
}
