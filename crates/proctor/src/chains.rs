//! `proctor chains`: conversations with models, read back for an analyst — who started each, what the
//! AI proposed and how the human answered, and which secrets passed and where they were masked.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use proctor_core::chains::{self, message_text};
use proctor_core::journal::{Event, SessionFilter, SessionRow};
use proctor_core::Config;
use serde_json::Value;

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
                .map(|s| chains::summary(&store, &s))
                .collect::<Result<_, _>>()?;
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
            let chain = chains::chain_view(&store, &session)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&chain)?),
                Format::Text => print_chain(&session, &events, &chain),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
