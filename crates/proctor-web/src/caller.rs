//! Who is calling and what their roles let them do. The token is a Proctor token (`Authorization:
//! Bearer <token>`); roles come from the `[web]` allow lists of the configuration, matched against
//! the identity's name and groups. The approvers a connection or one of its rules names hold the
//! approver role as well: the configuration already says they decide holds.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use proctor_core::config::allows;
use proctor_core::policy::DEFAULT_APPROVERS;
use proctor_core::{Gate, Identity};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::query::blocking;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything and adds identities and tokens.
    Admin,
    /// Reads everything, changes nothing.
    Auditor,
    /// Decides held statements and reads the sessions that asked.
    Approver,
}

pub struct Caller {
    pub identity: Identity,
    pub roles: Vec<Role>,
}

/// Every route that takes a caller proves it first, before reading anything else of the request:
/// without a valid token, the answer is 401 whatever else is wrong.
impl FromRequestParts<Arc<Gate>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gate: &Arc<Gate>) -> Result<Self, ApiError> {
        let (gate, headers) = (gate.clone(), parts.headers.clone());
        blocking(move || Caller::of(&gate, &headers)).await
    }
}

impl Caller {
    /// The identity behind the request's bearer token, with its roles.
    pub fn of(gate: &Gate, headers: &HeaderMap) -> Result<Self, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("send your Proctor token as Authorization: Bearer <token>")
            })?;
        let identity = gate
            .authenticator()
            .identify_token(token.trim())
            .map_err(|_| ApiError::unauthorized("the token is not valid"))?;
        let config = gate.config();
        let admitted = |allow: &[String]| allows(allow, &identity.name, &identity.groups);
        let mut roles = Vec::new();
        if admitted(&config.web.admins) {
            roles.push(Role::Admin);
        }
        if admitted(&config.web.auditors) {
            roles.push(Role::Auditor);
        }
        // Whoever a connection or a rule names as an approver decides its holds, as from the CLI;
        // a connection that names none has the default approvers.
        let default_approvers = [DEFAULT_APPROVERS.to_owned()];
        let named_approver = config.connection.iter().any(|connection| {
            let approvers = match connection.approvers.as_slice() {
                [] => &default_approvers[..],
                named => named,
            };
            admitted(approvers)
                || connection
                    .rules
                    .iter()
                    .any(|rule| admitted(&rule.approvers))
        });
        if admitted(&config.web.approvers) || named_approver {
            roles.push(Role::Approver);
        }
        Ok(Self { identity, roles })
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Admins and auditors read the whole journal.
    pub fn reads_everything(&self) -> bool {
        self.has(Role::Admin) || self.has(Role::Auditor)
    }

    pub fn require_reader(&self) -> Result<(), ApiError> {
        if self.reads_everything() {
            Ok(())
        } else {
            Err(self.refused("an admin or auditor role"))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.has(Role::Admin) {
            Ok(())
        } else {
            Err(self.refused("the admin role"))
        }
    }

    /// Approvers decide held statements; so may admins (a rule's own approvers are checked too).
    pub fn require_decider(&self) -> Result<(), ApiError> {
        if self.has(Role::Approver) || self.has(Role::Admin) {
            Ok(())
        } else {
            Err(self.refused("the approver role"))
        }
    }

    /// Approval requests are read by those who decide them and by those who read everything.
    pub fn require_approvals_reader(&self) -> Result<(), ApiError> {
        if self.has(Role::Approver) || self.reads_everything() {
            Ok(())
        } else {
            Err(self.refused("an approver, admin or auditor role"))
        }
    }

    fn refused(&self, needed: &str) -> ApiError {
        ApiError::forbidden(format!(
            "{} needs {needed} for this; roles come from the [web] section of the configuration",
            self.identity.name
        ))
    }
}
