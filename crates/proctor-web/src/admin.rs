//! Who the caller is (`/api/v1/me`), identities and their tokens (read; admins add identities and
//! tokens and revoke tokens, each change a leaf of the signed log as from the CLI), connections as
//! configured (never their secrets, only where they come from), and the log's newest checkpoint.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use proctor_core::config::valid_name;
use proctor_core::journal::{now_ns, TokenRow};
use proctor_core::{identity, Gate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::caller::{Caller, Role};
use crate::error::{ApiError, ErrorBody};
use crate::query::{blocking, parse_required_body};

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub identity: String,
    pub groups: Vec<String>,
    /// What the console and the API let this identity do; none means nothing but this route.
    pub roles: Vec<Role>,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "identities",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        identity: caller.identity.name,
        groups: caller.identity.groups,
        roles: caller.roles,
    })
}

/// A token as listed: never the token itself, which is shown once when made.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub identity: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<TokenRow> for TokenView {
    fn from(t: TokenRow) -> Self {
        Self {
            id: t.id,
            identity: t.identity,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IdentityView {
    pub name: String,
    pub groups: Vec<String>,
    pub created_at: i64,
    pub tokens: Vec<TokenView>,
}

#[derive(Serialize, ToSchema)]
pub struct IdentityList {
    pub identities: Vec<IdentityView>,
}

#[utoipa::path(get, path = "/api/v1/identities", tag = "identities",
    responses((status = 200, body = IdentityList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("token" = [])))]
pub async fn identities(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
) -> Result<Json<IdentityList>, ApiError> {
    blocking(move || {
        caller.require_reader()?;
        let identities = gate
            .store()
            .list_identities()?
            .into_iter()
            .map(|(identity, tokens)| IdentityView {
                name: identity.name,
                groups: identity.groups,
                created_at: identity.created_at,
                tokens: tokens.into_iter().map(TokenView::from).collect(),
            })
            .collect();
        Ok(Json(IdentityList { identities }))
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIdentity {
    /// 1-63 letters, digits, '-', '_', '.', '@'.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,63}$")]
    name: String,
    /// Group names, each like an identity's name.
    #[serde(default)]
    #[schema(schema_with = group_names)]
    groups: Vec<String>,
}

/// A list of names as [`valid_name`] takes them.
fn group_names() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9_.@-]{1,63}$")),
        )
        .build()
}

#[derive(Serialize, ToSchema)]
pub struct CreatedIdentity {
    pub identity: IdentityView,
    /// The identity's first token: shown this once, only its hashes are kept.
    pub token: String,
}

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} {name:?} is not valid: use 1-63 letters, digits, '-', '_', '.', '@'"
        )))
    }
}

#[utoipa::path(post, path = "/api/v1/identities", tag = "identities",
    request_body = NewIdentity,
    responses((status = 201, body = CreatedIdentity), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("token" = [])))]
pub async fn add_identity(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedIdentity>), ApiError> {
    caller.require_admin()?;
    let new: NewIdentity = parse_required_body(&body)?;
    check_name("identity", &new.name)?;
    for group in &new.groups {
        check_name("group", group)?;
    }
    blocking(move || {
        let store = gate.store();
        if store.identity(&new.name)?.is_some()
            || gate.config().identity.iter().any(|i| i.name == new.name)
        {
            return Err(ApiError::conflict(format!(
                "identity {:?} exists already",
                new.name
            )));
        }
        let (token, row) = identity::add_identity(store, &new.name, &new.groups)?;
        let created_at = store
            .identity(&new.name)?
            .map_or_else(now_ns, |identity| identity.created_at);
        Ok((
            StatusCode::CREATED,
            Json(CreatedIdentity {
                identity: IdentityView {
                    name: new.name,
                    groups: new.groups,
                    created_at,
                    tokens: vec![row.into()],
                },
                token: token.expose().to_owned(),
            }),
        ))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub token_id: String,
    /// Shown this once; only its hashes are kept.
    pub token: String,
}

#[utoipa::path(post, path = "/api/v1/identities/{name}/tokens", tag = "identities",
    params(("name" = String, Path, description = "The identity")),
    responses((status = 201, body = CreatedToken), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn add_token(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    blocking(move || {
        caller.require_admin()?;
        let (token, row) = identity::create_token(gate.store(), &name)?;
        Ok((
            StatusCode::CREATED,
            Json(CreatedToken {
                token_id: row.id,
                token: token.expose().to_owned(),
            }),
        ))
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "identities",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 200, body = TokenView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("token" = [])))]
pub async fn revoke_token(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    blocking(move || {
        caller.require_admin()?;
        Ok(Json(gate.store().revoke_token(&id, now_ns())?.into()))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    /// As configured: name, kind, address, who may use it, guardrails, masking, and where its
    /// secrets come from (a variable's or a file's name), never the secrets.
    #[schema(value_type = Vec<Object>)]
    pub connections: Vec<Value>,
}

#[utoipa::path(get, path = "/api/v1/connections", tag = "connections",
    responses((status = 200, body = ConnectionList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("token" = [])))]
pub async fn connections(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
) -> Result<Json<ConnectionList>, ApiError> {
    blocking(move || {
        caller.require_reader()?;
        let connections = gate
            .config()
            .connection
            .iter()
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
            .collect();
        Ok(Json(ConnectionList { connections }))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct CheckpointView {
    /// The signed note (C2SP tlog-checkpoint) of the newest checkpoint.
    pub checkpoint: String,
    pub tree_size: u64,
    /// The key that verifies it (`proctor verify --key`).
    pub verifier_key: String,
}

#[utoipa::path(get, path = "/api/v1/log/checkpoint", tag = "log",
    responses((status = 200, body = CheckpointView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn checkpoint(
    State(gate): State<Arc<Gate>>,
    caller: Caller,
) -> Result<Json<CheckpointView>, ApiError> {
    blocking(move || {
        if !caller.reads_everything() {
            caller.require_decider()?;
        }
        let store = gate.store();
        let note = store
            .newest_log_checkpoint()?
            .ok_or_else(|| ApiError::not_found("the log has no checkpoint yet"))?;
        // The note's body: origin, tree size, root hash, then a blank line and the signatures.
        let tree_size = note
            .lines()
            .nth(1)
            .and_then(|size| size.parse().ok())
            .unwrap_or_default();
        Ok(Json(CheckpointView {
            checkpoint: note,
            tree_size,
            verifier_key: store.log_verifier_key()?,
        }))
    })
    .await
}
