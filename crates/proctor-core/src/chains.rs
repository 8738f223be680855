//! AI chains as data: a conversation with a model (an `llm` session), the AI's proposals, the
//! secrets that passed, and the tool calls and statements it led to on other sessions. The CLI
//! prints it and the web API serves it; neither re-reads events to answer an analyst's questions.

use proctor_journal::{Event, JournalError, SessionFilter, SessionRow, Store};
use serde_json::{json, Value};

/// A time as analysts read it: UTC, to the millisecond.
pub fn utc_time(ns: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// One line of a chains list: who started it, with what, and how much it holds.
pub fn summary(store: &Store, session: &SessionRow) -> Result<Value, JournalError> {
    let events = store.events(&session.id)?;
    let chain = chain_json(session, &events);
    Ok(json!({
        "chain": session.id,
        "started": utc_time(session.started_at),
        "identity": session.identity,
        "provider": session.connection,
        "turns": chain["turns"].as_array().map_or(0, Vec::len),
        "proposals": chain["proposals"].as_array().map_or(0, Vec::len),
        "secrets": chain["secrets"].as_array().map_or(0, Vec::len),
        "ended": session.end_reason,
    }))
}

/// What a message says, in one line: its text, or what its blocks are.
pub fn message_text(message: &Value) -> String {
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
pub fn chain_json(session: &SessionRow, events: &[Event]) -> Value {
    let mut turns = Vec::new();
    let mut proposals = Vec::new();
    let mut secrets = Vec::new();
    for event in events {
        for finding in &event.findings {
            secrets.push(json!({
                "at": utc_time(event.at),
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
                "at": utc_time(event.at),
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
                        json!({"at": utc_time(event.at), "seq": event.seq, "tool": call["name"],
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
        "started": utc_time(session.started_at),
        "ended": session.end_reason,
        "turns": turns,
        "proposals": proposals,
        "secrets": secrets,
    })
}

/// The tool calls made for a chain and what each did on its target: `mcp.call` events naming the
/// chain, and the database sessions those calls opened (their `application_name` names the call).
pub fn commands_of(store: &Store, chain: &SessionRow) -> Result<Vec<Value>, JournalError> {
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
            "at": utc_time(call.at),
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

/// A chain with the commands it led to and the answers to an auditor's four questions: who started
/// it, what the AI proposed and how the human replied, what ran, and which secrets passed and
/// whether they were masked.
pub fn chain_view(store: &Store, session: &SessionRow) -> Result<Value, JournalError> {
    let events = store.events(&session.id)?;
    let mut chain = chain_json(session, &events);
    chain["commands"] = Value::Array(commands_of(store, session)?);
    chain["answers"] = answers(&chain);
    Ok(chain)
}

/// The four questions, answered from a chain's data (see [`chain_view`]).
fn answers(chain: &Value) -> Value {
    let turns = chain["turns"].as_array().cloned().unwrap_or_default();
    // What answered the AI after it spoke: the messages of the turns that followed, from the
    // human or from the tools the human's client ran.
    let replies_after = |seq: u64| -> Vec<Value> {
        turns
            .iter()
            .filter(|turn| turn["seq"].as_u64().is_some_and(|s| s > seq))
            .take(1)
            .flat_map(|turn| {
                let at = turn["at"].clone();
                let turn_seq = turn["seq"].clone();
                turn["new_messages"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|m| m["role"] == "user" || m["role"] == "tool")
                    .map(move |m| json!({"at": at, "seq": turn_seq, "role": m["role"], "text": m["text"]}))
            })
            .collect()
    };
    let proposed: Vec<Value> = chain["proposals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut p = p.clone();
            p["replies"] = Value::Array(replies_after(p["seq"].as_u64().unwrap_or(u64::MAX)));
            p
        })
        .collect();
    let mut ran = Vec::new();
    let mut stopped = Vec::new();
    for command in chain["commands"].as_array().into_iter().flatten() {
        for statement in command["statements"].as_array().into_iter().flatten() {
            let entry = json!({
                "at": command["at"], "tool": command["tool"], "connection": command["connection"],
                "identity": command["identity"], "sql": statement["sql"],
                "outcome": statement["outcome"], "guardrail": statement["guardrail"],
            });
            if statement["reached_target"] == true {
                ran.push(entry);
            } else {
                stopped.push(entry);
            }
        }
    }
    let secrets = chain["secrets"].clone();
    let reached_provider = secrets
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["masked_before_provider"] == false)
        .count();
    json!({
        "started_by": {"identity": chain["identity"], "client": chain["client"], "at": chain["started"]},
        "proposed": proposed,
        "ran": ran,
        "stopped": stopped,
        "secrets": secrets,
        "secrets_reaching_provider": reached_provider,
    })
}
