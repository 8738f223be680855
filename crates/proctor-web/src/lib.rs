//! Proctor's REST API under `/api/v1` and the web console at `/`, for analysts, auditors and
//! approvers: sessions and their events, verification, exports, replays, AI chains, approvals (live,
//! over server-sent events), identities and connections, and the log's checkpoint.
//!
//! Every route but the OpenAPI document and the console's files proves its caller with a bearer
//! token and checks the caller's role ([`caller`]). The OpenAPI document is generated from the
//! handlers' own annotations ([`openapi`]), so it cannot drift from the code. This crate reads the
//! store and decides through `proctor-core`; it never writes events itself, and it knows nothing of
//! the wire protocols.

mod admin;
mod approvals;
mod assets;
mod caller;
mod chains;
mod error;
mod openapi;
mod query;
mod sessions;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use proctor_core::Gate;

pub use error::ApiError;

/// The API's and the console's routes, to be merged into the gateway's HTTP server.
pub fn router(gate: Arc<Gate>) -> Router {
    let api = Router::new()
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/me", get(admin::me))
        .route("/api/v1/sessions", get(sessions::list))
        .route("/api/v1/sessions/{id}", get(sessions::show))
        .route("/api/v1/sessions/{id}/events", get(sessions::events))
        .route(
            "/api/v1/sessions/{id}/verification",
            get(sessions::verification),
        )
        .route("/api/v1/sessions/{id}/bundle", get(sessions::bundle))
        .route("/api/v1/sessions/{id}/asciicast", get(sessions::asciicast))
        .route("/api/v1/chains", get(chains::list))
        .route("/api/v1/chains/{id}", get(chains::show))
        .route("/api/v1/approvals", get(approvals::list))
        .route("/api/v1/approvals/stream", get(approvals::stream))
        .route("/api/v1/approvals/{id}", get(approvals::show))
        .route("/api/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/api/v1/approvals/{id}/deny", post(approvals::deny))
        .route(
            "/api/v1/identities",
            get(admin::identities).post(admin::add_identity),
        )
        .route("/api/v1/identities/{name}/tokens", post(admin::add_token))
        .route("/api/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/api/v1/connections", get(admin::connections))
        .route("/api/v1/log/checkpoint", get(admin::checkpoint))
        .route("/api/v1/{*rest}", axum::routing::any(unknown_route))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(server_timing))
        .with_state(gate);
    api.merge(assets::router())
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("no such API route; /api/v1/openapi.json lists them")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; /api/v1/openapi.json lists what it takes",
    )
}

/// Tells the caller how long the server spent on the request (`Server-Timing: app;dur=<ms>`), which
/// benchmarks read to leave the network and the client out.
async fn server_timing(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut response = next.run(request).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}
