//! `/api/v1/chains`: conversations with models, as `proctor_core::chains` reads them — listed, and
//! one at a time with the commands they led to and the answers to an auditor's four questions.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use proctor_core::chains::{chain_view, summary};
use proctor_core::journal::{JournalError, SessionQuery};
use proctor_core::Gate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::query::{blocking, parse_query};
use crate::sessions::bad_cursor;

/// Chains a list page holds at most: each is summarised from its events.
const MAX_PAGE: usize = 100;

#[derive(Serialize, ToSchema)]
pub struct ChainList {
    /// Newest first: `{chain, started, identity, provider, turns, proposals, secrets, ended}`.
    #[schema(value_type = Vec<Object>)]
    pub chains: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only chains this identity started.
    identity: Option<String>,
    /// The `next_cursor` of the page before.
    #[param(pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    cursor: Option<String>,
    /// Chains per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/chains", tag = "chains", params(ListParams),
    responses((status = 200, body = ChainList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("token" = [])))]
pub async fn list(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<ChainList>, ApiError> {
    caller.require_reader()?;
    let params: ListParams = parse_query(raw.as_deref())?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let query = SessionQuery {
        identity: params.identity.filter(|i| !i.is_empty()),
        protocol: Some("llm".into()),
        cursor: params.cursor,
        limit,
        ..SessionQuery::default()
    };
    blocking(move || {
        let store = gate.store();
        let page = store.session_page(&query).map_err(bad_cursor)?;
        let chains = page
            .sessions
            .iter()
            .map(|session| summary(store, session))
            .collect::<Result<_, JournalError>>()?;
        Ok(Json(ChainList {
            chains,
            next_cursor: page.next_cursor,
        }))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/chains/{id}", tag = "chains",
    params(("id" = String, Path, description = "The chain's id: its LLM session's id")),
    responses((status = 200, description = "The chain: `turns`, `proposals`, `secrets`, the \
            `commands` it led to, and `answers` (started_by, proposed with the replies, ran, \
            stopped, secrets)", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn show(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        caller.require_reader()?;
        let store = gate.store();
        let session = match store.find_session(&id) {
            Ok(session) if session.id == id && session.protocol == "llm" => session,
            Ok(_) | Err(JournalError::NotFound(_)) => {
                return Err(ApiError::not_found(format!("no chain {id:?}")))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Json(chain_view(store, &session)?))
    })
    .await
}
