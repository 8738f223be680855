//! `/api/v1/sessions`: the sessions list with its filters and cursor, a session's events page by
//! page, its verification (chain, seals, checkpoint), its export bundle and its replay as asciicast.
//!
//! Admins and auditors read every session; an approver reads only the sessions that asked for an
//! approval.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proctor_core::journal::bundle::verify_bundle;
use proctor_core::journal::note::NoteVerifier;
use proctor_core::journal::{Event, JournalError, SessionQuery, SessionRow, Store, VerifyOutcome};
use proctor_core::replay::{terminal_channels, Recording};
use proctor_core::Gate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::caller::{Caller, Role};
use crate::error::{ApiError, ErrorBody};
use crate::query::{blocking, parse_query, parse_time};

/// Sessions a list page holds at most.
const MAX_PAGE: usize = 500;
/// Events an events page holds at most.
const MAX_EVENTS_PAGE: usize = 10_000;

/// A session as lists show it: its header, how it ended, and counts of its events.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// `postgres`, `mysql`, `ssh`, `llm` or `mcp`.
    pub protocol: String,
    pub identity: String,
    pub connection: String,
    pub client_addr: String,
    /// UTC nanoseconds since the epoch.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub authenticated: bool,
    pub events: u64,
    pub queries: u64,
    pub errors: u64,
    /// Events in which a detector found a secret or PII (masked before storage).
    pub findings: u64,
    /// Statements and commands a guardrail refused.
    pub denials: u64,
}

impl From<SessionRow> for SessionView {
    fn from(s: SessionRow) -> Self {
        Self {
            id: s.id,
            protocol: s.protocol,
            identity: s.identity,
            connection: s.connection,
            client_addr: s.client_addr,
            started_at: s.started_at,
            ended_at: s.ended_at,
            end_reason: s.end_reason,
            authenticated: s.authenticated,
            events: s.events,
            queries: s.queries,
            errors: s.errors,
            findings: s.findings,
            denials: s.denials,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this identity's sessions.
    identity: Option<String>,
    /// Only sessions on this connection (or LLM provider).
    connection: Option<String>,
    /// Only this protocol: `postgres`, `mysql`, `ssh`, `llm`, `mcp`.
    protocol: Option<String>,
    /// Started at or after this time (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Started before this time (RFC 3339).
    #[param(format = DateTime)]
    to: Option<String>,
    /// A statement or command the session ran or tried contains this text (case-insensitive).
    text: Option<String>,
    /// Only sessions where a secret or PII was found.
    has_findings: Option<bool>,
    /// Only sessions where a guardrail refused something.
    has_denials: Option<bool>,
    /// The `next_cursor` of the page before.
    #[param(pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    cursor: Option<String>,
    /// Sessions per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(ListParams),
    responses((status = 200, body = SessionList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("token" = [])))]
pub async fn list(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<SessionList>, ApiError> {
    caller.require_reader()?;
    let params: ListParams = parse_query(raw.as_deref())?;
    let query = session_query(params)?;
    blocking(move || {
        let page = gate.store().session_page(&query).map_err(bad_cursor)?;
        Ok(Json(SessionList {
            sessions: page.sessions.into_iter().map(SessionView::from).collect(),
            next_cursor: page.next_cursor,
        }))
    })
    .await
}

/// The store's query for a list page's parameters.
pub(crate) fn session_query(params: ListParams) -> Result<SessionQuery, ApiError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
    Ok(SessionQuery {
        identity: non_empty(params.identity),
        connection: non_empty(params.connection),
        protocol: non_empty(params.protocol),
        started_from: params.from.map(|t| parse_time("from", &t)).transpose()?,
        started_to: params.to.map(|t| parse_time("to", &t)).transpose()?,
        text: non_empty(params.text),
        has_findings: params.has_findings.unwrap_or(false),
        has_denials: params.has_denials.unwrap_or(false),
        cursor: params.cursor,
        limit,
    })
}

/// A cursor the store cannot read is the caller's mistake.
pub(crate) fn bad_cursor(e: JournalError) -> ApiError {
    match e {
        JournalError::Malformed(message) => ApiError::bad_request(message),
        other => other.into(),
    }
}

/// The session `id`, if the caller may read it: admins and auditors read all, approvers the
/// sessions that asked for an approval.
fn readable_session(gate: &Gate, caller: &Caller, id: &str) -> Result<SessionRow, ApiError> {
    let session = exact_session(gate.store(), id)?;
    if caller.reads_everything() {
        return Ok(session);
    }
    if caller.has(Role::Approver)
        && gate
            .store()
            .list_approvals(false)?
            .iter()
            .any(|a| a.session_id == session.id)
    {
        return Ok(session);
    }
    Err(ApiError::forbidden(format!(
        "{} may not read this session: it needs an admin or auditor role, or an approver role and \
         an approval request from the session",
        caller.identity.name
    )))
}

/// A session by its full id (the API never guesses from a prefix).
fn exact_session(store: &Store, id: &str) -> Result<SessionRow, ApiError> {
    match store.find_session(id) {
        Ok(session) if session.id == id => Ok(session),
        Ok(_) | Err(JournalError::NotFound(_)) => {
            Err(ApiError::not_found(format!("no session {id:?}")))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionDetail {
    pub session: SessionView,
    /// SSH channels with a terminal to replay.
    pub terminal_channels: Vec<u32>,
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, body = SessionDetail), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn show(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    blocking(move || {
        let session = readable_session(&gate, &caller, &id)?;
        let terminal_channels = if session.protocol == "ssh" {
            terminal_channels(&gate.store().events(&session.id)?)
        } else {
            Vec::new()
        };
        Ok(Json(SessionDetail {
            session: session.into(),
            terminal_channels,
        }))
    })
    .await
}

/// An event as the journal holds it: its body and findings after masking.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    pub seq: u64,
    /// UTC nanoseconds since the epoch.
    pub at: i64,
    /// `session.start`, `db.query`, `db.result`, `policy.decision`, `ssh.exec`, `term.out`, ...
    pub kind: String,
    #[schema(value_type = Object)]
    pub body: Value,
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Value>,
    pub prev: String,
    pub hash: String,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            kind: e.kind,
            body: e.body,
            findings: e.findings,
            prev: e.prev,
            hash: e.hash,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Events after this sequence number (default 0: from the first).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Events per page, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/events", tag = "sessions",
    params(("id" = String, Path, description = "The session's id"), EventParams),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn events(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let params: EventParams = parse_query(raw.as_deref())?;
    let after = u64::try_from(params.after.unwrap_or(0))
        .map_err(|_| ApiError::bad_request("after is a sequence number: 0 or more"))?;
    let limit = params.limit.unwrap_or(1000);
    if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_EVENTS_PAGE}"
        )));
    }
    blocking(move || {
        let session = readable_session(&gate, &caller, &id)?;
        let (events, next_after) = gate.store().events_page(&session.id, after, limit)?;
        Ok(Json(EventPage {
            events: events.into_iter().map(EventView::from).collect(),
            next_after,
        }))
    })
    .await
}

/// The session's hash chain, recomputed from the store.
#[derive(Serialize, ToSchema)]
pub struct ChainCheck {
    pub intact: bool,
    pub events: u64,
    /// The hash of the last event, when intact.
    pub head: Option<String>,
    /// The first event that does not hold, when broken.
    pub broken_at: Option<u64>,
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CheckLine {
    pub ok: bool,
    pub detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct Verification {
    pub session: String,
    /// The chain holds and the session's export bundle verifies: checkpoint signature, chain,
    /// seals and their inclusion in the signed log.
    pub verified: bool,
    pub chain: ChainCheck,
    /// What `proctor verify` says of the session's bundle, check by check.
    pub checks: Vec<CheckLine>,
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/verification", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, body = Verification), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn verification(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Verification>, ApiError> {
    blocking(move || {
        let session = readable_session(&gate, &caller, &id)?;
        let store = gate.store();
        let chain = match store.verify_session(&session)? {
            VerifyOutcome::Intact { events, head } => ChainCheck {
                intact: true,
                events,
                head: Some(head),
                broken_at: None,
                reason: None,
            },
            VerifyOutcome::Broken { seq, reason } => ChainCheck {
                intact: false,
                events: session.events,
                head: None,
                broken_at: Some(seq),
                reason: Some(reason),
            },
        };
        let checks = bundle_checks(store, &session);
        let verified = chain.intact && !checks.is_empty() && checks.iter().all(|c| c.ok);
        Ok(Json(Verification {
            session: session.id,
            verified,
            chain,
            checks,
        }))
    })
    .await
}

/// The checks `proctor verify` makes of the session's export bundle, with the log's own key.
fn bundle_checks(store: &Store, session: &SessionRow) -> Vec<CheckLine> {
    let failed = |detail: String| vec![CheckLine { ok: false, detail }];
    let bundle = match store.export_bundle(session) {
        Ok(bundle) => bundle,
        Err(e) => return failed(format!("bundle: {e}")),
    };
    let key = match store
        .log_verifier_key()
        .map_err(|e| e.to_string())
        .and_then(|key| NoteVerifier::parse(&key).map_err(|e| e.to_string()))
    {
        Ok(key) => key,
        Err(e) => return failed(format!("the log's verifier key: {e}")),
    };
    let text = match serde_json::to_string(&bundle) {
        Ok(text) => text,
        Err(e) => return failed(format!("bundle: {e}")),
    };
    verify_bundle(&text, &key)
        .into_iter()
        .map(|check| CheckLine {
            ok: check.holds,
            detail: check.line,
        })
        .collect()
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/bundle", tag = "sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, description = "The session's export bundle, as `proctor export` writes it",
            content_type = "application/json", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("token" = [])))]
pub async fn bundle(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let session = readable_session(&gate, &caller, &id)?;
        let bundle = gate.store().export_bundle(&session)?;
        let disposition = format!(
            "attachment; filename=\"proctor-{}.bundle.json\"",
            session.id
        );
        Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(bundle)).into_response())
    })
    .await
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsciicastParams {
    /// The SSH channel to play (default: the first with terminal output).
    channel: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/asciicast", tag = "sessions",
    params(("id" = String, Path, description = "The session's id"), AsciicastParams),
    responses((status = 200, description = "asciicast v2: an SSH channel's terminal, or a database \
            client's screen drawn from the journal, with the recorded timing",
            content_type = "application/x-asciicast", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn asciicast(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params: AsciicastParams = parse_query(raw.as_deref())?;
    blocking(move || {
        let session = readable_session(&gate, &caller, &id)?;
        let events = gate.store().events(&session.id)?;
        let recording = Recording::of_session(&session, &events, params.channel)
            .map_err(|e| ApiError::not_found(e.to_string()))?;
        Ok((
            [(header::CONTENT_TYPE, "application/x-asciicast")],
            recording.asciicast(&session),
        )
            .into_response())
    })
    .await
}
