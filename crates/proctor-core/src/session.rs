//! The life of a session that every protocol shares: the records of attempts refused before they
//! named an identity, the `session.start` event, the guardrails and result limits a session runs
//! with, and running the Gate's blocking lookups off a session's event loop.
//!
//! A protocol crate drives the exchange with its client (its handshake, its authentication
//! messages, its error form) and calls these at each step, so that a session through any protocol
//! is recorded the same way. Nothing here speaks a wire protocol.

use std::sync::Arc;

use proctor_journal::{Body, CanonicalJson};
use proctor_policy::{Dialect, Guard, Policy, RequestKind};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::guard::Guardrails;
use crate::recorder::{RecordError, SessionRecorder};
use crate::results::ResultLimits;
use crate::{AuthFailure, Gate, Identity, MaskResults, SessionSignal};

/// Runs a lookup of identities and tokens (SQLite reads, hashing) on a blocking thread, so that the
/// event loop it came from goes on serving its other sessions meanwhile.
pub async fn off_the_loop<T: Send + 'static>(
    lookup: impl FnOnce() -> Result<T, AuthFailure> + Send + 'static,
) -> Result<T, AuthFailure> {
    tokio::task::spawn_blocking(lookup)
        .await
        .unwrap_or_else(|e| {
            Err(AuthFailure::Store(format!(
                "the identity lookup failed: {e}"
            )))
        })
}

/// How a connection attempt failed before its relay started: what the client is told, in its
/// protocol's error form `E`; the event recorded for it, if any; and the reason `session.end` gives.
pub struct Refused<E> {
    pub error: E,
    event: Option<(&'static str, Value)>,
    pub reason: String,
}

impl<E> Refused<E> {
    pub fn new(error: E, reason: impl Into<String>) -> Box<Self> {
        Box::new(Self {
            error,
            event: None,
            reason: reason.into(),
        })
    }

    /// The refusal with the event that records it (masked when it is recorded).
    pub fn recorded(mut self: Box<Self>, kind: &'static str, body: Value) -> Box<Self> {
        self.event = Some((kind, body));
        self
    }

    /// Queues the refusal's event; the session's end commits it.
    pub async fn record(&mut self, recorder: &mut SessionRecorder) {
        if let Some((kind, body)) = self.event.take() {
            let _ = recorder.record_queued_masked(kind, body).await;
        }
    }
}

/// Records a connection refused before it named an identity (a bad first packet, failed TLS): a
/// session of its own under the identity `-`, whose `protocol.error` says what was wrong.
pub async fn record_refused_startup(gate: &Gate, protocol: &str, peer: &str, message: &str) {
    let Ok(mut recorder) = gate.open_session(protocol, "-", "-", peer).await else {
        return;
    };
    let _ = recorder
        .record_queued_masked(
            "protocol.error",
            json!({"direction": "client", "stage": "startup", "message": message}),
        )
        .await;
    let _ = recorder.end("refused at startup").await;
}

/// Records a login that named no identity: a failed authentication like any other, under the
/// identity `-`.
pub async fn record_nameless_attempt(gate: &Gate, protocol: &str, peer: &str, connection: &str) {
    let Ok(mut recorder) = gate.open_session(protocol, "-", connection, peer).await else {
        return;
    };
    let _ = recorder
        .record_queued_masked("auth.failure", json!({"reason": "no user given"}))
        .await;
    let _ = recorder.end("authentication failed").await;
}

/// The connection's guardrails as `session.start` records them; a statement that carries no `policy`
/// note was allowed by their default.
pub fn guardrails_record(policy: &Policy) -> Value {
    if !policy.is_guarded() {
        return Value::Null;
    }
    let (read_only, rules, default_action) = policy.summary();
    json!({"default_action": default_action, "read_only": read_only, "rules": rules})
}

/// The guardrails of one session of `identity` on `connection`, whose statements are in `dialect`.
/// An in-process caller hears of holds through `signals`.
pub fn guardrails(
    gate: &Gate,
    policy: Arc<Policy>,
    dialect: Dialect,
    identity: Identity,
    connection: &str,
    signals: Option<UnboundedSender<SessionSignal>>,
) -> Guardrails {
    Guardrails::new(
        Guard::new(policy, dialect),
        RequestKind::Sql(dialect),
        identity,
        connection.to_owned(),
        gate.approvals().clone(),
        signals,
    )
}

/// The guardrails of one SSH session of `identity` on `connection`: shell commands judged by the
/// connection's rules (commands are not classified, so rules match them by `regex` and identity).
pub fn command_guardrails(
    gate: &Gate,
    policy: Arc<Policy>,
    identity: Identity,
    connection: &str,
) -> Guardrails {
    Guardrails::new(
        // The dialect only serves the SQL classifier, which commands never reach.
        Guard::new(policy, Dialect::Postgres),
        RequestKind::Command,
        identity,
        connection.to_owned(),
        gate.approvals().clone(),
        None,
    )
}

/// What the sessions of `connection` keep of results (`sample_rows` and `sample_bytes` of each, as
/// the protocol's settings say), and whether they mask the client's copy.
pub fn result_limits(
    gate: &Gate,
    connection: &str,
    sample_rows: usize,
    sample_bytes: usize,
) -> ResultLimits {
    let config = gate
        .config()
        .connection
        .iter()
        .find(|c| c.name == connection);
    ResultLimits {
        sample_rows,
        sample_bytes,
        mask_client: config.is_some_and(|c| c.mask_results == MaskResults::ClientAndJournal),
        column_rules: config.map(|c| c.column_rules()).unwrap_or_default(),
    }
}

/// The conversation with a model a session says it serves: `chain=<id>` in its application name
/// (set by Proctor's MCP server for the statements of a tool call).
pub fn chain_of(application_name: Option<&str>) -> Option<String> {
    let chain = application_name?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("chain="))?;
    let valid = !chain.is_empty()
        && chain.len() <= 64
        && chain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| chain.to_owned())
}

/// Queues the `db.query` of a statement sent as text: the conversation with a model it belongs to,
/// the guardrails' note, how it was sent (`protocol`) and its text as recorded (masked, with the
/// findings of masking it). Returns the event's sequence number, which its results name.
pub async fn record_query(
    recorder: &mut SessionRecorder,
    chain: Option<&str>,
    policy: Option<&CanonicalJson>,
    protocol: &str,
    sql: &str,
    findings: Vec<Value>,
) -> Result<u64, RecordError> {
    recorder
        .record_queued_with(
            "db.query",
            Body::new()
                .opt_str("chain", chain)
                .opt_json("policy", policy)
                .str("protocol", protocol)
                .str("sql", sql)
                .finish(),
            findings,
        )
        .await
}

/// What `session.start` records of a session that passed authentication and authorization and is
/// logged in upstream.
pub struct SessionStart<'a> {
    pub identity: &'a Identity,
    pub connection: &'a str,
    /// Whether the client's connection is encrypted.
    pub tls: bool,
    /// How the client authenticated, and the id of the token it used.
    pub method: &'a str,
    pub token_id: &'a str,
    pub application_name: Option<&'a str>,
    pub policy: &'a Policy,
    pub target: &'a crate::ConnectionConfig,
    /// Whether the upstream connection is encrypted, and the server's version.
    pub upstream_tls: bool,
    pub server_version: Option<&'a str>,
    /// What else the client said at startup (parameters, connection attributes), masked here.
    pub startup: Value,
}

/// Records `session.start`, committed: a session that cannot be recorded is not opened.
pub async fn record_start(
    recorder: &mut SessionRecorder,
    start: SessionStart<'_>,
) -> Result<(), RecordError> {
    let client_addr = recorder.header().client_addr.clone();
    recorder
        .record_masked(
            "session.start",
            json!({
                "identity": start.identity.name,
                "groups": start.identity.groups,
                "connection": start.connection,
                "client_addr": client_addr,
                "tls": start.tls,
                "auth": {"method": start.method, "token_id": start.token_id},
                "application_name": start.application_name,
                "guardrails": guardrails_record(start.policy),
                "upstream": {
                    "address": start.target.address,
                    "database": start.target.database,
                    "user": start.target.user,
                    "tls": start.upstream_tls,
                    "server_version": start.server_version,
                },
                "startup": start.startup,
            }),
        )
        .await
        .map(|_| ())
}
