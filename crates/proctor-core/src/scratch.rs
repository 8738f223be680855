//! A Gate and one recorded session over a journal in a temporary directory, for the unit tests of
//! the protocol crates' state machines: they feed scripted messages and read back what was stored.
//! Built only with the `scratch` feature, which only dev-dependencies enable.

use std::sync::Arc;

use proctor_journal::{Store, Writer};
use proctor_policy::Dialect;
use serde_json::Value;

use crate::config::Config;
use crate::guard::Guardrails;
use crate::results::ResultLimits;
use crate::{session, Gate, Identity, Masker, SessionRecorder};

/// The identity a scratch session belongs to.
pub const SCRATCH_IDENTITY: &str = "alice";

pub struct ScratchSession {
    _dir: tempfile::TempDir,
    pub gate: Arc<Gate>,
    pub store: Arc<Store>,
    writer: Writer,
    pub recorder: SessionRecorder,
    connection: String,
}

impl ScratchSession {
    /// A session of [`SCRATCH_IDENTITY`] through `protocol` on `connection`, which `config` (the
    /// text of a configuration file) declares.
    pub async fn start(config: &str, protocol: &str, connection: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config::parse(config).expect("a valid configuration");
        config.server.data_dir = dir.path().to_path_buf();
        let store = Arc::new(Store::open(dir.path(), Default::default()).expect("a store"));
        let writer = Writer::start(&store).expect("a writer");
        let (masker, _) = Masker::from_config(&config, [7; 32]).expect("the detectors");
        let secrets = config.resolve_secrets().expect("the secrets");
        let gate = Arc::new(Gate::new(
            config,
            secrets,
            store.clone(),
            writer.clone(),
            masker,
        ));
        let recorder = gate
            .open_session(protocol, SCRATCH_IDENTITY, connection, "scratch")
            .await
            .expect("a recorded session");
        Self {
            _dir: dir,
            gate,
            store,
            writer,
            recorder,
            connection: connection.to_owned(),
        }
    }

    /// The connection's guardrails for statements in `dialect`.
    pub fn guardrails(&self, dialect: Dialect) -> Guardrails {
        let identity = Identity {
            name: SCRATCH_IDENTITY.into(),
            groups: Vec::new(),
        };
        let target = self
            .gate
            .authorize(&identity, &self.connection)
            .expect("the connection allows the scratch identity");
        session::guardrails(
            &self.gate,
            target.policy.clone(),
            dialect,
            identity,
            &self.connection,
            None,
        )
    }

    /// Result limits of 20 rows and 64 KiB per sample.
    pub fn result_limits(&self) -> ResultLimits {
        session::result_limits(&self.gate, &self.connection, 20, 64 * 1024)
    }

    /// Ends the session and returns its events as stored: kind and body.
    pub async fn events(self) -> Vec<(String, Value)> {
        let id = self.recorder.header().session_id.clone();
        self.recorder
            .end("test over")
            .await
            .expect("the end recorded");
        self.writer.shutdown();
        self.store
            .events(&id)
            .expect("the stored events")
            .into_iter()
            .map(|e| (e.kind, e.body))
            .collect()
    }
}

/// The bodies of the events of `kind`, in order.
pub fn of_kind<'e>(events: &'e [(String, Value)], kind: &str) -> Vec<&'e Value> {
    events
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, body)| body)
        .collect()
}
