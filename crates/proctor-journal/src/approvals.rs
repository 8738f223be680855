//! Approval requests in the store: statements held by a guardrail, waiting for an approver.
//!
//! The gateway that holds a statement writes the request; approvers decide from the CLI or the HTTP
//! API, possibly in another process, by changing its row; the gateway reads the row back. A request
//! leaves `pending` exactly once: every change is conditional on it still being pending, so an
//! approval racing a timeout or a withdrawal has one winner. Who may decide is the caller's check.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::store::Store;
use crate::JournalError;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    connection TEXT NOT NULL,
    statement TEXT NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    flags TEXT NOT NULL,
    approvers TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    reason TEXT,
    decided_at INTEGER
);
CREATE INDEX IF NOT EXISTS approvals_by_status ON approvals(status, requested_at);
"#;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    TimedOut,
    /// The client cancelled or left while it waited.
    Withdrawn,
}

impl ApprovalStatus {
    pub fn name(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::TimedOut => "timed_out",
            ApprovalStatus::Withdrawn => "withdrawn",
        }
    }

    fn from_name(name: &str) -> Result<Self, JournalError> {
        [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
            ApprovalStatus::TimedOut,
            ApprovalStatus::Withdrawn,
        ]
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| JournalError::Malformed(format!("approval status {name:?}")))
    }
}

/// One held statement. `statement` is the masked text, as the journal has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovalRow {
    pub id: String,
    pub session_id: String,
    pub identity: String,
    pub connection: String,
    pub statement: String,
    pub rule: String,
    pub kind: String,
    pub flags: Vec<String>,
    pub approvers: Vec<String>,
    /// UTC nanoseconds.
    pub requested_at: i64,
    pub expires_at: i64,
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub decided_at: Option<i64>,
}

const COLUMNS: &str =
    "id, session_id, identity, connection, statement, rule, kind, flags, approvers, \
     requested_at, expires_at, status, decided_by, reason, decided_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(ApprovalRow, String)> {
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    Ok((
        ApprovalRow {
            id: row.get(0)?,
            session_id: row.get(1)?,
            identity: row.get(2)?,
            connection: row.get(3)?,
            statement: row.get(4)?,
            rule: row.get(5)?,
            kind: row.get(6)?,
            flags: list(7)?,
            approvers: list(8)?,
            requested_at: row.get(9)?,
            expires_at: row.get(10)?,
            status: ApprovalStatus::Pending,
            decided_by: row.get(12)?,
            reason: row.get(13)?,
            decided_at: row.get(14)?,
        },
        row.get(11)?,
    ))
}

fn finish((mut row, status): (ApprovalRow, String)) -> Result<ApprovalRow, JournalError> {
    row.status = ApprovalStatus::from_name(&status)?;
    Ok(row)
}

impl Store {
    pub fn add_approval(&self, request: &ApprovalRow) -> Result<(), JournalError> {
        let to_json = |list: &[String]| serde_json::to_string(list).unwrap_or_default();
        self.conn().execute(
            &format!("INSERT INTO approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
            params![
                request.id,
                request.session_id,
                request.identity,
                request.connection,
                request.statement,
                request.rule,
                request.kind,
                to_json(&request.flags),
                to_json(&request.approvers),
                request.requested_at,
                request.expires_at,
                request.status.name(),
                request.decided_by,
                request.reason,
                request.decided_at,
            ],
        )?;
        Ok(())
    }

    pub fn approval(&self, id: &str) -> Result<ApprovalRow, JournalError> {
        approval_in(&self.conn(), id)
    }

    /// Requests, newest first: the pending ones only, or all of them.
    pub fn list_approvals(&self, pending_only: bool) -> Result<Vec<ApprovalRow>, JournalError> {
        let conn = self.conn();
        let filter = if pending_only {
            "WHERE status = 'pending'"
        } else {
            ""
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM approvals {filter} ORDER BY requested_at DESC LIMIT 1000"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        rows.map(|row| finish(row?)).collect()
    }

    /// Moves a pending request to `status`. If it is no longer pending, nothing changes; either way
    /// the request as it now stands is returned, so the caller learns who won.
    pub fn settle_approval(
        &self,
        id: &str,
        status: ApprovalStatus,
        by: Option<&str>,
        reason: Option<&str>,
        at: i64,
    ) -> Result<ApprovalRow, JournalError> {
        let conn = self.conn();
        settle_in(&conn, id, status, by, reason, at)?;
        approval_in(&conn, id)
    }

    /// An approver's decision on a pending request: moves it to `status` and records the decision as
    /// a leaf of the log, in one transaction, so that the store never holds a decision the log
    /// misses. If the request is no longer pending, nothing changes and nothing is recorded; either
    /// way the request as it now stands is returned, so the caller learns who won.
    pub fn decide_approval(
        &self,
        id: &str,
        status: ApprovalStatus,
        by: &str,
        reason: Option<&str>,
        at: i64,
    ) -> Result<ApprovalRow, JournalError> {
        self.change(|tx| {
            let moved = settle_in(tx, id, status, Some(by), reason, at)?;
            let request = approval_in(tx, id)?;
            if !moved {
                return Ok((request, Vec::new()));
            }
            let mut fields = serde_json::Map::new();
            fields.insert("approval".into(), id.into());
            fields.insert("decision".into(), status.name().into());
            fields.insert("by".into(), by.into());
            fields.insert("reason".into(), reason.into());
            fields.insert("session_id".into(), request.session_id.clone().into());
            Ok((request, vec![("approval.decided", fields)]))
        })
    }

    /// Withdraws every request still pending, with `reason`; returns how many. For a gateway that
    /// starts on this data dir: a request pending now belongs to a session of a gateway that
    /// stopped (or crashed) while it held the statement, so nobody waits for it any more and its
    /// statement was never run.
    pub fn withdraw_pending_approvals(&self, reason: &str, at: i64) -> Result<usize, JournalError> {
        Ok(self.conn().execute(
            "UPDATE approvals SET status = 'withdrawn', reason = ?1, decided_at = ?2 \
             WHERE status = 'pending'",
            params![reason, at],
        )?)
    }
}

/// Moves request `id` to `status` if it is still pending; returns whether it did.
fn settle_in(
    conn: &Connection,
    id: &str,
    status: ApprovalStatus,
    by: Option<&str>,
    reason: Option<&str>,
    at: i64,
) -> Result<bool, JournalError> {
    let moved = conn.execute(
        "UPDATE approvals SET status = ?2, decided_by = ?3, reason = ?4, decided_at = ?5 \
         WHERE id = ?1 AND status = 'pending'",
        params![id, status.name(), by, reason, at],
    )?;
    Ok(moved == 1)
}

fn approval_in(conn: &Connection, id: &str) -> Result<ApprovalRow, JournalError> {
    let found = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?;
    match found {
        Some(row) => finish(row),
        None => Err(JournalError::NotFound(format!(
            "no approval request {id:?}; `proctor approvals list` shows them"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{leaves_of, refuse_leaves};
    use crate::SyncMode;

    fn request(id: &str) -> ApprovalRow {
        ApprovalRow {
            id: id.into(),
            session_id: "s".into(),
            identity: "alice".into(),
            connection: "app-db".into(),
            statement: "ALTER TABLE t ADD c int".into(),
            rule: "recommended/hold-ddl".into(),
            kind: "ddl".into(),
            flags: vec!["alter".into()],
            approvers: vec!["group:dba".into()],
            requested_at: 1,
            expires_at: 2,
            status: ApprovalStatus::Pending,
            decided_by: None,
            reason: None,
            decided_at: None,
        }
    }

    #[test]
    fn a_request_leaves_pending_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        store.add_approval(&request("a1")).unwrap();
        assert_eq!(store.list_approvals(true).unwrap(), [request("a1")]);
        let approved = store
            .settle_approval("a1", ApprovalStatus::Approved, Some("bob"), Some("ok"), 5)
            .unwrap();
        assert_eq!(approved.status, ApprovalStatus::Approved);
        let late = store
            .settle_approval("a1", ApprovalStatus::TimedOut, None, None, 6)
            .unwrap();
        assert_eq!(
            late.status,
            ApprovalStatus::Approved,
            "the first decision stands"
        );
        assert_eq!(late.decided_by.as_deref(), Some("bob"));
        assert!(store.list_approvals(true).unwrap().is_empty());
        assert_eq!(store.list_approvals(false).unwrap().len(), 1);
        assert!(matches!(
            store.approval("nope"),
            Err(JournalError::NotFound(_))
        ));
    }

    #[test]
    fn a_decision_that_the_log_cannot_record_leaves_the_request_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        store.add_approval(&request("a1")).unwrap();
        store.add_approval(&request("a2")).unwrap();
        let approved = store
            .decide_approval("a1", ApprovalStatus::Approved, "bob", Some("ok"), 5)
            .unwrap();
        assert_eq!(approved.decided_by.as_deref(), Some("bob"));
        let leaves = |store: &Store| leaves_of(store, "approval.decided");
        assert_eq!(leaves(&store), 1);
        // A decision that loses the race changes nothing and records nothing.
        let late = store
            .decide_approval("a1", ApprovalStatus::Denied, "carol", None, 6)
            .unwrap();
        assert_eq!(late.decided_by.as_deref(), Some("bob"));
        assert_eq!(leaves(&store), 1);

        refuse_leaves(&store);
        assert!(store
            .decide_approval("a2", ApprovalStatus::Denied, "bob", None, 7)
            .is_err());
        assert_eq!(
            store.approval("a2").unwrap().status,
            ApprovalStatus::Pending
        );
    }
}
