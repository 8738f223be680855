//! Approvals: a statement held by a guardrail waits here until an approver decides, it times out, or
//! its client withdraws it; and approvers decide here, from the CLI or the HTTP API.
//!
//! Requests live in the store, so an approver's command in another process reaches the gateway that
//! holds the statement: the holding session reads its request back every [`POLL_INTERVAL`]. Who may
//! decide is checked here: an approver named by the rule (by identity or group), never the requester.

use std::sync::Arc;
use std::time::Duration;

use proctor_journal::{now_ns, ApprovalRow, ApprovalStatus, JournalError, Store};
use proctor_policy::may_approve;
use rand::Rng;

use crate::gate::Identity;
use crate::Masker;

/// How often a holding session looks for a decision.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// What a session asks approvers for.
pub struct HoldRequest {
    pub session_id: String,
    pub identity: String,
    pub connection: String,
    /// The statement as the journal has it: masked.
    pub statement: String,
    pub rule: String,
    pub kind: String,
    pub flags: Vec<String>,
    pub approvers: Vec<String>,
    pub timeout: Duration,
}

/// Why an approver's decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error(transparent)]
    Store(#[from] JournalError),
    #[error("request {id} is already {status}")]
    AlreadyDecided { id: String, status: &'static str },
    #[error("request {0} has expired; its statement was refused")]
    Expired(String),
    #[error("{0} asked for this approval and cannot approve or deny it; another approver must")]
    OwnRequest(String),
    #[error("{identity} is not among the approvers of request {id} ({approvers})")]
    NotAnApprover {
        identity: String,
        id: String,
        approvers: String,
    },
}

/// A request as approvers see it: a pending one past its deadline shows as `expired` (its session
/// refuses it, or has gone).
pub fn shown_status(row: &ApprovalRow, now: i64) -> &'static str {
    match row.status {
        ApprovalStatus::Pending if now >= row.expires_at => "expired",
        status => status.name(),
    }
}

/// The gateway's handle on approval requests.
#[derive(Clone)]
pub struct Approvals {
    store: Arc<Store>,
}

fn new_id() -> String {
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| char::from(ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())]))
        .collect()
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| JournalError::CommitFailed(format!("approval store task failed: {e}")))?
}

impl Approvals {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Stores a new pending request and returns it.
    pub async fn open(&self, request: HoldRequest) -> Result<ApprovalRow, JournalError> {
        let requested_at = now_ns();
        let row = ApprovalRow {
            id: new_id(),
            session_id: request.session_id,
            identity: request.identity,
            connection: request.connection,
            statement: request.statement,
            rule: request.rule,
            kind: request.kind,
            flags: request.flags,
            approvers: request.approvers,
            requested_at,
            expires_at: requested_at.saturating_add(request.timeout.as_nanos() as i64),
            status: ApprovalStatus::Pending,
            decided_by: None,
            reason: None,
            decided_at: None,
        };
        let store = self.store.clone();
        let stored = row.clone();
        blocking(move || store.add_approval(&stored)).await?;
        Ok(row)
    }

    /// The request as it stands now.
    pub async fn current(&self, id: &str) -> Result<ApprovalRow, JournalError> {
        let store = self.store.clone();
        let id = id.to_owned();
        blocking(move || store.approval(&id)).await
    }

    /// Ends a pending request without an approver (timed out, withdrawn). If an approver decided first,
    /// that decision is returned and stands.
    pub async fn settle(
        &self,
        id: &str,
        status: ApprovalStatus,
        reason: &str,
    ) -> Result<ApprovalRow, JournalError> {
        let store = self.store.clone();
        let (id, reason) = (id.to_owned(), reason.to_owned());
        blocking(move || store.settle_approval(&id, status, None, Some(&reason), now_ns())).await
    }
}

/// An approver's decision on a pending request. The decision is also a leaf of the tamper-evident
/// log; the holding session records it in its own chain when it picks it up. The approver's reason is
/// stored masked, like anything typed by a person.
pub fn decide(
    store: &Store,
    masker: &Masker,
    id: &str,
    approver: &Identity,
    approve: bool,
    reason: Option<&str>,
) -> Result<ApprovalRow, DecideError> {
    let reason = reason.map(|reason| masker.mask(reason, "reason").0);
    let reason = reason.as_deref();
    let request = store.approval(id)?;
    if request.status != ApprovalStatus::Pending {
        return Err(DecideError::AlreadyDecided {
            id: id.to_owned(),
            status: request.status.name(),
        });
    }
    if now_ns() >= request.expires_at {
        return Err(DecideError::Expired(id.to_owned()));
    }
    if request.identity == approver.name {
        return Err(DecideError::OwnRequest(approver.name.clone()));
    }
    if !may_approve(&request.approvers, &approver.name, &approver.groups) {
        return Err(DecideError::NotAnApprover {
            identity: approver.name.clone(),
            id: id.to_owned(),
            approvers: request.approvers.join(", "),
        });
    }
    let status = if approve {
        ApprovalStatus::Approved
    } else {
        ApprovalStatus::Denied
    };
    let settled = store.decide_approval(id, status, &approver.name, reason, now_ns())?;
    if settled.status != status || settled.decided_by.as_deref() != Some(approver.name.as_str()) {
        return Err(DecideError::AlreadyDecided {
            id: id.to_owned(),
            status: settled.status.name(),
        });
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_journal::SyncMode;

    fn who(name: &str, groups: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn approvers_decide_once_and_never_their_own_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), SyncMode::Normal).unwrap());
        let approvals = Approvals::new(store.clone());
        let hold = |identity: &str| HoldRequest {
            session_id: "s1".into(),
            identity: identity.into(),
            connection: "app-db".into(),
            statement: "ALTER TABLE t ADD c int".into(),
            rule: "recommended/hold-ddl".into(),
            kind: "ddl".into(),
            flags: vec!["alter".into()],
            approvers: vec!["group:dba".into()],
            timeout: Duration::from_secs(60),
        };
        let request = approvals.open(hold("bob")).await.unwrap();
        let (masker, _) = Masker::from_config(&crate::Config::default(), [3; 32]).unwrap();
        let own = decide(
            &store,
            &masker,
            &request.id,
            &who("bob", &["dba"]),
            true,
            None,
        );
        assert!(matches!(own, Err(DecideError::OwnRequest(_))), "{own:?}");
        let outsider = decide(
            &store,
            &masker,
            &request.id,
            &who("eve", &["dev"]),
            true,
            None,
        );
        assert!(matches!(outsider, Err(DecideError::NotAnApprover { .. })));
        let approved = decide(
            &store,
            &masker,
            &request.id,
            &who("carol", &["dba"]),
            true,
            Some("planned with ghp_KN0LLq60Pw1KK20SH2wSRFfqH6ASvVrO8g4C"),
        )
        .unwrap();
        assert_eq!(approved.status, ApprovalStatus::Approved);
        assert_eq!(
            approved.reason.as_deref(),
            Some("planned with [MASKED:github-token]"),
            "an approver's reason is stored masked"
        );
        let again = decide(
            &store,
            &masker,
            &request.id,
            &who("dan", &["dba"]),
            false,
            None,
        );
        assert!(matches!(again, Err(DecideError::AlreadyDecided { .. })));
        let late = approvals
            .settle(&request.id, ApprovalStatus::TimedOut, "timeout")
            .await
            .unwrap();
        assert_eq!(late.status, ApprovalStatus::Approved, "the approval stands");
        assert_eq!(
            approvals
                .current(&request.id)
                .await
                .unwrap()
                .reason
                .as_deref(),
            Some("planned with [MASKED:github-token]")
        );
    }
}
