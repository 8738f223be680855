//! Sessions opened inside the gateway for a caller that it has already authenticated (MCP's tool
//! calls). Such a session runs the very code a network client's runs, over an in-memory stream, with
//! no listener, address or token in between, and tells its caller what the gate decided as typed
//! [`SessionSignal`]s rather than in protocol text. The protocol crate that serves these sessions
//! implements [`LocalSessions`]; the caller holds it as a trait object and imports no protocol crate.

use std::sync::Arc;

use tokio::io::DuplexStream;
use tokio::sync::mpsc::UnboundedSender;

use crate::Identity;

/// What the gate decided about a local session's statement, as it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionSignal {
    /// A guardrail holds the statement for approval; it runs if `request` is approved.
    Held { request: String },
}

/// The caller of a local session: who it is (already authenticated), how, and where signals go.
pub struct LocalCaller {
    pub identity: Identity,
    /// How the caller authenticated, as `session.start` records it (e.g. `mcp`).
    pub method: String,
    /// The id of the token it authenticated with, if it had Proctor's shape.
    pub token_id: Option<String>,
    /// Where the caller comes from, as its own front door saw it.
    pub client_addr: String,
    pub signals: UnboundedSender<SessionSignal>,
}

/// A protocol's sessions, opened in-process.
pub trait LocalSessions: Send + Sync {
    /// Starts a session for `caller` and returns the client's end of its stream: the caller speaks
    /// the protocol's client side on it, naming the connection in its startup, and is asked for no
    /// credentials. The connection's authorization, guardrails, masking and recording all apply.
    fn open_local(self: Arc<Self>, caller: LocalCaller) -> DuplexStream;
}
