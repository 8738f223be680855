//! `proctor approvals`: approvers list held statements and decide them from the command line (the
//! web API, `proctor-web`, does the same over HTTP).
//!
//! The approver proves who they are with their Proctor token (`PROCTOR_TOKEN`); whether that identity
//! may decide is `proctor_core::approvals::decide`'s check.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use proctor_core::approvals::{self, shown_status};
use proctor_core::journal::{now_ns, ApprovalRow, Store};
use proctor_core::{Authenticator, Config};
use serde_json::{json, Value};

use crate::sessions::time;

#[derive(Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests: pending ones, newest first.
    List {
        /// Decided and expired requests too.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Approve a held statement: it runs. Your token is read from PROCTOR_TOKEN.
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a held statement: its client gets an error. Your token is read from PROCTOR_TOKEN.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

fn as_json(row: &ApprovalRow, now: i64) -> Value {
    let mut value = serde_json::to_value(row).unwrap_or(Value::Null);
    value["status"] = json!(shown_status(row, now));
    value
}

pub fn run(config: Config, command: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    let store = Arc::new(crate::admin::open_store(&config)?);
    match command {
        ApprovalsCommand::List { all, format } => {
            let rows = store.list_approvals(!all)?;
            let now = now_ns();
            match format {
                ListFormat::Json => {
                    let list: Vec<Value> = rows.iter().map(|r| as_json(r, now)).collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                }
                ListFormat::Table => {
                    println!(
                        "{:<10}  {:<23}  {:<10}  {:<14} {:<14} {:<24} STATEMENT",
                        "REQUEST", "REQUESTED (UTC)", "STATUS", "IDENTITY", "CONNECTION", "RULE"
                    );
                    for row in &rows {
                        println!(
                            "{:<10}  {:<23}  {:<10}  {:<14} {:<14} {:<24} {}",
                            row.id,
                            time(row.requested_at),
                            shown_status(row, now),
                            row.identity,
                            row.connection,
                            row.rule,
                            row.statement
                                .split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" ")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve { id, reason } => {
            decide_from_cli(&config, store, &id, true, reason)
        }
        ApprovalsCommand::Deny { id, reason } => {
            decide_from_cli(&config, store, &id, false, reason)
        }
    }
}

fn decide_from_cli(
    config: &Config,
    store: Arc<Store>,
    id: &str,
    approve: bool,
    reason: Option<String>,
) -> anyhow::Result<ExitCode> {
    let token = std::env::var("PROCTOR_TOKEN").map_err(|_| {
        anyhow::anyhow!("set PROCTOR_TOKEN to your Proctor token: approvers prove who they are")
    })?;
    let authenticator =
        Authenticator::new(config, config.available_identity_tokens(), store.clone());
    let approver = authenticator
        .identify_token(&token)
        .map_err(|e| anyhow::anyhow!("PROCTOR_TOKEN is not a valid Proctor token ({e})"))?;
    let key = proctor_core::masking::fingerprint_key(&config.server.data_dir)?;
    let (masker, _) = proctor_core::Masker::from_config(config, key)?;
    match approvals::decide(&store, &masker, id, &approver, approve, reason.as_deref()) {
        Ok(row) => {
            println!(
                "request {} {} by {}",
                row.id,
                row.status.name(),
                approver.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("proctor: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
