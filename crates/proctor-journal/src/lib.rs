//! Proctor's journal: where every session and event is kept, and the proof that it was kept whole.
//!
//! Owns the embedded SQLite store (schema, reads for the CLI, paged reads for browsing clients,
//! identity and token rows), the commit log and its group-commit writer that every session appends
//! through, the canonical JSON of events, the per-session hash chain, the recovery of a data dir whose
//! gateway died, and the tamper-evident log over them: seals in a Merkle tree, signed checkpoints, the
//! check of the whole store, export bundles and their offline verification. It knows nothing about
//! wire protocols, configuration files or masking: callers hand it events whose bodies are already
//! final.

mod appender;
mod approvals;
mod blocks;
pub mod bundle;
mod canonical;
mod chain;
mod check;
mod log;
pub mod merkle;
pub mod note;
mod pages;
mod priority;
mod recovery;
mod ssh_keys;
mod store;
mod tlog;
mod writer;

pub use approvals::{ApprovalRow, ApprovalStatus};
pub use canonical::{Body, CanonicalJson, HexHash};
pub use chain::{
    canonical_time, event_hash, genesis_hash, no_findings, verify_chain, Chain, Event, NewEvent,
    SessionHeader, VerifyOutcome,
};
pub use pages::{SessionPage, SessionQuery, MAX_PAGE_SESSIONS};
pub use recovery::{AcknowledgedDamage, CUT_SHORT};
pub use ssh_keys::{HostKeyRow, IdentityKeyRow};
pub use store::{IdentityRow, SessionFilter, SessionRow, Sighting, Store, SyncMode, TokenRow};
pub use tlog::{Consistency, RefusedSeal};
pub use writer::Writer;

/// Errors of the journal. They carry what the operator needs to act, never event bodies.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("journal data is malformed: {0}")]
    Malformed(String),
    #[error("journal commit failed: {0}")]
    CommitFailed(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The commit log was found damaged and an operator has not acknowledged it yet.
    #[error("{0}")]
    DamagedLog(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// Nanoseconds since the Unix epoch, UTC: the journal's one clock.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}
