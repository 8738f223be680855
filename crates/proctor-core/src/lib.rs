//! Proctor's core: the model (identities, connections, sessions), the configuration, and the Gate.
//!
//! Every protocol crate goes through the [`Gate`]: it authenticates a claimed identity, authorizes the use
//! of a connection, and hands back a [`SessionRecorder`] through which every event of the session is
//! recorded. This crate knows no wire protocol and does no network I/O of its own.

pub mod approvals;
pub mod chains;
pub mod config;
mod gate;
pub mod guard;
pub mod identity;
pub mod local;
pub mod masking;
pub mod proposals;
mod recorder;
pub mod replay;
pub mod results;
#[cfg(feature = "scratch")]
pub mod scratch;
pub mod session;

pub use approvals::{Approvals, DecideError, HoldRequest};
pub use config::{Config, ConfigError, ConnectionConfig, MaskResults, UpstreamTls};
pub use gate::{
    token_id_of, AuthFailure, Authenticator, AuthzError, Gate, Identity, NativePasswordCredentials,
    NativePasswordKey, ScramCredentials, ScramKey, Target,
};
pub use local::{LocalCaller, LocalSessions, SessionSignal};
pub use masking::Masker;
pub use proctor_journal as journal;
pub use proctor_mask as mask;
pub use proctor_policy as policy;
pub use recorder::{Fault, RecordError, SessionRecorder};

/// A secret value (a password, a token) whose `Debug` never shows it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}
