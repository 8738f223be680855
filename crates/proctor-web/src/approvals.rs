//! `/api/v1/approvals`: statements and commands held by a guardrail, listed, streamed live to the
//! console (server-sent events), approved and denied. Whether a caller may decide a given request
//! (named by the rule, never its own) is `proctor_core::approvals::decide`'s check; this module
//! checks the role first.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream};
use proctor_core::approvals::{self, shown_status};
use proctor_core::journal::{now_ns, ApprovalRow};
use proctor_core::{DecideError, Gate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::query::{blocking, parse_body, parse_query};

/// How often the stream looks for a change: what a held client waits at most for its row to show.
const STREAM_POLL: Duration = Duration::from_millis(250);

/// An approval request.
#[derive(Serialize, ToSchema, PartialEq)]
pub struct ApprovalView {
    pub id: String,
    pub session_id: String,
    /// Who asked: the identity whose statement is held.
    pub identity: String,
    pub connection: String,
    /// The statement or command, masked as the journal holds it.
    pub statement: String,
    pub rule: String,
    pub kind: String,
    pub flags: Vec<String>,
    /// Who may decide: identities and `group:NAME`.
    pub approvers: Vec<String>,
    /// `pending`, `approved`, `denied`, `timed_out`, `withdrawn`, or `expired` (pending past its
    /// deadline).
    pub status: String,
    pub requested_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
}

impl ApprovalView {
    fn of(row: ApprovalRow, now: i64) -> Self {
        Self {
            status: shown_status(&row, now).to_owned(),
            id: row.id,
            session_id: row.session_id,
            identity: row.identity,
            connection: row.connection,
            statement: row.statement,
            rule: row.rule,
            kind: row.kind,
            flags: row.flags,
            approvers: row.approvers,
            requested_at: row.requested_at,
            expires_at: row.expires_at,
            decided_by: row.decided_by,
            decided_at: row.decided_at,
            reason: row.reason,
        }
    }
}

#[derive(Serialize, ToSchema, PartialEq)]
pub struct ApprovalList {
    /// Newest first.
    pub approvals: Vec<ApprovalView>,
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `pending` (the default: requests still waiting) or `all`.
    #[param(inline)]
    status: Option<StatusFilter>,
    /// `true`: the same as `status=all` (kept for the scripts written before `status`).
    all: Option<bool>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum StatusFilter {
    Pending,
    All,
}

/// The requests, newest first: only those still waiting (not past their deadline) when `pending`.
fn approval_list(gate: &Gate, pending: bool) -> Result<ApprovalList, ApiError> {
    let now = now_ns();
    let approvals = gate
        .store()
        .list_approvals(pending)?
        .into_iter()
        .map(|row| ApprovalView::of(row, now))
        .filter(|view| !pending || view.status == "pending")
        .collect();
    Ok(ApprovalList { approvals })
}

#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", params(ListParams),
    responses((status = 200, body = ApprovalList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("token" = [])))]
pub async fn list(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<ApprovalList>, ApiError> {
    caller.require_approvals_reader()?;
    let params: ListParams = parse_query(raw.as_deref())?;
    let pending = params.status.unwrap_or(StatusFilter::Pending) == StatusFilter::Pending
        && params.all != Some(true);
    blocking(move || Ok(Json(approval_list(&gate, pending)?))).await
}

#[utoipa::path(get, path = "/api/v1/approvals/{id}", tag = "approvals",
    params(("id" = String, Path, description = "The request's id")),
    responses((status = 200, body = ApprovalView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn show(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    blocking(move || {
        caller.require_approvals_reader()?;
        Ok(Json(ApprovalView::of(
            gate.store().approval(&id)?,
            now_ns(),
        )))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/approvals/stream", tag = "approvals",
    responses((status = 200, description = "Server-sent events: an `approvals` event with the \
            pending requests (an ApprovalList as JSON) at once, then each time they change",
            content_type = "text/event-stream", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("token" = [])))]
pub async fn stream(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    caller.require_approvals_reader()?;
    // The store is the meeting point of every process that decides (CLI, other gateways), so the
    // stream watches it rather than this process's own decisions.
    let updates = stream::unfold((gate, None), |(gate, last)| async move {
        let mut first = last.is_none();
        loop {
            if !first {
                tokio::time::sleep(STREAM_POLL).await;
            }
            first = false;
            let reader = gate.clone();
            let Ok(current) = blocking(move || approval_list(&reader, true)).await else {
                continue;
            };
            let text = serde_json::to_string(&current).unwrap_or_default();
            if last.as_ref() != Some(&text) {
                let event = SseEvent::default().event("approvals").data(text.clone());
                return Some((Ok(event), (gate, Some(text))));
            }
        }
    });
    Ok(Sse::new(updates).keep_alive(KeepAlive::default()))
}

/// What an approver may say with a decision.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Why, recorded with the decision.
    reason: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "approvals",
    params(("id" = String, Path, description = "The request's id")),
    request_body(content = Option<DecisionBody>, content_type = "application/json"),
    responses((status = 200, body = ApprovalView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("token" = [])))]
pub async fn approve(
    state: State<Arc<Gate>>,
    caller: Caller,
    id: Path<String>,
    body: Bytes,
) -> Result<Json<ApprovalView>, ApiError> {
    decide(state, caller, id, body, true).await
}

#[utoipa::path(post, path = "/api/v1/approvals/{id}/deny", tag = "approvals",
    params(("id" = String, Path, description = "The request's id")),
    request_body(content = Option<DecisionBody>, content_type = "application/json"),
    responses((status = 200, body = ApprovalView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("token" = [])))]
pub async fn deny(
    state: State<Arc<Gate>>,
    caller: Caller,
    id: Path<String>,
    body: Bytes,
) -> Result<Json<ApprovalView>, ApiError> {
    decide(state, caller, id, body, false).await
}

async fn decide(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
    approve: bool,
) -> Result<Json<ApprovalView>, ApiError> {
    let decision: DecisionBody = parse_body(&body)?;
    blocking(move || {
        caller.require_decider()?;
        match approvals::decide(
            gate.store(),
            gate.masker(),
            &id,
            &caller.identity,
            approve,
            decision.reason.as_deref(),
        ) {
            Ok(row) => Ok(Json(ApprovalView::of(row, now_ns()))),
            Err(DecideError::Store(e)) => Err(e.into()),
            Err(e @ (DecideError::OwnRequest(_) | DecideError::NotAnApprover { .. })) => {
                Err(ApiError::forbidden(e.to_string()))
            }
            Err(e @ (DecideError::AlreadyDecided { .. } | DecideError::Expired(_))) => {
                Err(ApiError::conflict(e.to_string()))
            }
        }
    })
    .await
}
