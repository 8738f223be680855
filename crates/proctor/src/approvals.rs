//! `proctor approvals` and `/api/v1/approvals`: approvers list held statements and decide them.
//!
//! Both prove who the approver is with their Proctor token (`PROCTOR_TOKEN` for the CLI, a bearer token
//! over HTTP); whether that identity may decide is `proctor_core::approvals::decide`'s check.

use std::process::ExitCode;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::{Subcommand, ValueEnum};
use proctor_core::journal::{now_ns, ApprovalRow, ApprovalStatus, JournalError, Store};
use proctor_core::{approvals, Authenticator, Config, DecideError, Gate, Identity};
use serde::Deserialize;
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

/// A request as approvers see it: a pending one past its deadline shows as expired (its session
/// refuses it, or has gone).
fn shown_status(row: &ApprovalRow, now: i64) -> &'static str {
    match row.status {
        ApprovalStatus::Pending if now >= row.expires_at => "expired",
        status => status.name(),
    }
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

/// The HTTP API's approval routes.
pub fn router(gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/api/v1/approvals", get(list))
        .route("/api/v1/approvals/{id}", get(show))
        .route("/api/v1/approvals/{id}/approve", post(approve))
        .route("/api/v1/approvals/{id}/deny", post(deny))
        .with_state(gate)
}

type Reply = (StatusCode, Json<Value>);

fn problem(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    (status, Json(json!({"error": message.to_string()})))
}

/// The caller's identity, from `Authorization: Bearer <token>`.
fn caller(gate: &Gate, headers: &HeaderMap) -> Result<Identity, Reply> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            problem(
                StatusCode::UNAUTHORIZED,
                "send your Proctor token as Authorization: Bearer <token>",
            )
        })?;
    gate.authenticator()
        .identify_token(token.trim())
        .map_err(|_| problem(StatusCode::UNAUTHORIZED, "the token is not valid"))
}

/// Runs store work off the event loop.
async fn blocking(work: impl FnOnce() -> Reply + Send + 'static) -> Reply {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| problem(StatusCode::INTERNAL_SERVER_ERROR, "the request failed"))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list(
    State(gate): State<Arc<Gate>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Reply {
    blocking(move || {
        if let Err(reply) = caller(&gate, &headers) {
            return reply;
        }
        match gate.store().list_approvals(!query.all) {
            Ok(rows) => {
                let now = now_ns();
                let list: Vec<Value> = rows.iter().map(|r| as_json(r, now)).collect();
                (StatusCode::OK, Json(json!({"approvals": list})))
            }
            Err(e) => store_problem(e),
        }
    })
    .await
}

async fn show(State(gate): State<Arc<Gate>>, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    blocking(move || {
        if let Err(reply) = caller(&gate, &headers) {
            return reply;
        }
        match gate.store().approval(&id) {
            Ok(row) => (StatusCode::OK, Json(as_json(&row, now_ns()))),
            Err(e) => store_problem(e),
        }
    })
    .await
}

fn store_problem(e: JournalError) -> Reply {
    match e {
        JournalError::NotFound(message) => problem(StatusCode::NOT_FOUND, message),
        other => {
            tracing::error!(error = %other, "approval store failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the approval store failed",
            )
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    reason: Option<String>,
}

async fn approve(
    state: State<Arc<Gate>>,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Reply {
    decide_over_http(state, headers, id, body, true).await
}

async fn deny(state: State<Arc<Gate>>, headers: HeaderMap, id: Path<String>, body: Bytes) -> Reply {
    decide_over_http(state, headers, id, body, false).await
}

async fn decide_over_http(
    State(gate): State<Arc<Gate>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
    approve: bool,
) -> Reply {
    let decision: DecisionBody = if body.iter().all(u8::is_ascii_whitespace) {
        DecisionBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(decision) => decision,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("the body must be JSON like {{\"reason\": \"...\"}}: {e}"),
                )
            }
        }
    };
    blocking(move || {
        let approver = match caller(&gate, &headers) {
            Ok(approver) => approver,
            Err(reply) => return reply,
        };
        match approvals::decide(
            gate.store(),
            gate.masker(),
            &id,
            &approver,
            approve,
            decision.reason.as_deref(),
        ) {
            Ok(row) => (StatusCode::OK, Json(as_json(&row, now_ns()))),
            Err(DecideError::Store(e)) => store_problem(e),
            Err(e @ (DecideError::OwnRequest(_) | DecideError::NotAnApprover { .. })) => {
                problem(StatusCode::FORBIDDEN, e)
            }
            Err(e @ (DecideError::AlreadyDecided { .. } | DecideError::Expired(_))) => {
                problem(StatusCode::CONFLICT, e)
            }
        }
    })
    .await
}
