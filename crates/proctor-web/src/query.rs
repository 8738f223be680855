//! Reading what a request carries — its query string, its JSON body, RFC 3339 times — into typed
//! values, with every mistake a 400 that names it; and running store work off the event loop.

use axum::body::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The query string as `T`; unknown parameters are refused by `T` itself (`deny_unknown_fields`).
pub fn parse_query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("bad query parameters: {e}")))
}

/// A JSON body as `T`, where the body is optional: an empty body or `null` is `T`'s default.
pub fn parse_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(parse_required_body::<Option<T>>(body)?.unwrap_or_default())
}

pub fn parse_required_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not what this route takes: {e}")))
}

/// An RFC 3339 time (`2026-12-07T10:00:00Z`) as UTC nanoseconds; a time outside what nanoseconds
/// reach (before 1677, after 2262) is the nearest that they do, which no session precedes or follows.
pub fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    let at = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
        ApiError::bad_request(format!(
            "{name} must be an RFC 3339 time such as 2026-12-07T10:00:00Z, not {text:?}"
        ))
    })?;
    Ok(at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    }))
}

/// Store work, off the event loop.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "an API request's store work failed");
        Err(ApiError::internal())
    })
}
