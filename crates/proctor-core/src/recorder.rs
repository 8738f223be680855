//! The per-session recorder: the only way a protocol crate writes to the journal.
//!
//! It owns the session's chain head, so events are numbered and linked in the order the session produces
//! them. `record_masked` returns once the event is committed; `record_queued` only queues it, and
//! `commit` waits for everything queued so far. A protocol crate queues the commands of one read and
//! commits them before forwarding any (fail closed), and queues results, which are already on their way
//! to the client. Nothing reaches the journal unmasked: the header's identity and connection are masked
//! when the session opens, `record_masked` masks a whole body, and the statement path masks the fields
//! it fills and hands their findings to `record_queued_with`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proctor_journal::{
    no_findings, now_ns, Body, CanonicalJson, Chain, JournalError, NewEvent, SessionHeader, Writer,
};
use serde_json::Value;

use crate::Masker;

/// The journal could not take an event: the session must stop forwarding.
#[derive(Debug, thiserror::Error)]
#[error("the journal could not record this session's events: {0}")]
pub struct RecordError(#[from] pub JournalError);

/// What stops a protocol's state machine on a message: the journal failed (the session must stop
/// forwarding), or the bytes broke the protocol (`E`, the protocol's own error).
#[derive(Debug)]
pub enum Fault<E> {
    Record(RecordError),
    Protocol(E),
}

impl<E> From<RecordError> for Fault<E> {
    fn from(e: RecordError) -> Self {
        Fault::Record(e)
    }
}

pub struct SessionRecorder {
    header: SessionHeader,
    chain: Chain,
    writer: Writer,
    broken: Arc<AtomicBool>,
    masker: Arc<Masker>,
    /// Findings of masking the header (a token typed as the user name), recorded with the first event.
    header_findings: Vec<Value>,
}

impl SessionRecorder {
    /// Opens the session whose header the client filled as `header`: its identity, connection and
    /// client address (an HTTP header for MCP) are masked like any other text before it is stored.
    pub(crate) async fn open(
        writer: Writer,
        mut header: SessionHeader,
        masker: Arc<Masker>,
    ) -> Result<Self, RecordError> {
        let mut header_findings = Vec::new();
        for (field, location) in [
            (&mut header.identity, "identity"),
            (&mut header.connection, "connection"),
            (&mut header.client_addr, "client_addr"),
        ] {
            let (masked, findings) = masker.mask(field, location);
            if let Cow::Owned(masked) = masked {
                *field = masked;
            }
            header_findings.extend(findings);
        }
        let chain = Chain::start(&header)?;
        let broken = Arc::new(AtomicBool::new(false));
        writer.open_session(header.clone(), &broken).await?;
        Ok(Self {
            header,
            chain,
            writer,
            broken,
            masker,
            header_findings,
        })
    }

    pub fn header(&self) -> &SessionHeader {
        &self.header
    }

    fn check_intact(&self) -> Result<(), RecordError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(RecordError(JournalError::CommitFailed(
                "an earlier event of this session was not committed".into(),
            )));
        }
        Ok(())
    }

    /// `text` with its secrets masked, and the findings to record with the event that stores it.
    /// Everything a protocol crate stores of what passes through goes through here first.
    pub fn mask<'t>(&self, text: &'t str, location: &str) -> (Cow<'t, str>, Vec<Value>) {
        self.masker.mask(text, location)
    }

    /// `value` as a column rule shows it, with its finding.
    pub fn mask_column(
        &self,
        rule: &proctor_mask::columns::ColumnRule,
        value: &str,
        location: &str,
    ) -> (String, Value) {
        self.masker.mask_column(rule, value, location)
    }

    /// Masks every string inside `value`; returns the findings.
    pub fn mask_value(&self, value: &mut Value, location: &str) -> Vec<Value> {
        self.masker.mask_value(value, location)
    }

    fn next_event(
        &mut self,
        kind: &'static str,
        body: CanonicalJson,
        findings: Vec<Value>,
    ) -> Result<NewEvent, RecordError> {
        self.check_intact()?;
        let mut findings = findings;
        if !self.header_findings.is_empty() {
            findings.append(&mut self.header_findings);
        }
        let findings = if findings.is_empty() {
            no_findings()
        } else {
            CanonicalJson::of(&Value::Array(findings))
        };
        Ok(self.chain.next_event(now_ns(), kind, body, findings))
    }

    /// Records an event built of what the client or the target sent, outside the statement path
    /// (startup, refusals, protocol errors): every string and long number in it is masked first.
    pub async fn record_masked(
        &mut self,
        kind: &'static str,
        mut body: Value,
    ) -> Result<u64, RecordError> {
        let findings = self.masker.mask_value(&mut body, kind);
        self.record_with(kind, CanonicalJson::of(&body), findings)
            .await
    }

    /// Records an event with the findings of masking what its body holds, and waits for its commit.
    /// Returns the event's sequence number.
    async fn record_with(
        &mut self,
        kind: &'static str,
        body: CanonicalJson,
        findings: Vec<Value>,
    ) -> Result<u64, RecordError> {
        let event = self.next_event(kind, body, findings)?;
        let seq = event.seq;
        self.writer.append(event, &self.broken).await?;
        self.check_intact()?;
        Ok(seq)
    }

    /// [`Self::record_masked`], queued without waiting for its commit.
    pub async fn record_queued_masked(
        &mut self,
        kind: &'static str,
        mut body: Value,
    ) -> Result<u64, RecordError> {
        let findings = self.masker.mask_value(&mut body, kind);
        self.record_queued_with(kind, CanonicalJson::of(&body), findings)
            .await
    }

    /// Queues an event without waiting for its commit. A failed commit breaks the session: the next
    /// call to `record_masked` or `record_queued` reports it.
    pub async fn record_queued(
        &mut self,
        kind: &'static str,
        body: CanonicalJson,
    ) -> Result<u64, RecordError> {
        self.record_queued_with(kind, body, Vec::new()).await
    }

    /// [`Self::record_queued`], with the findings of masking what the body holds.
    pub async fn record_queued_with(
        &mut self,
        kind: &'static str,
        body: CanonicalJson,
        findings: Vec<Value>,
    ) -> Result<u64, RecordError> {
        let event = self.next_event(kind, body, findings)?;
        let seq = event.seq;
        self.writer.append_queued(event, &self.broken).await;
        Ok(seq)
    }

    /// Returns once every event recorded so far is committed: call it before forwarding a command whose
    /// event was queued with `record_queued`.
    pub async fn commit(&self) -> Result<(), RecordError> {
        self.check_intact()?;
        self.writer.commit().await;
        self.check_intact()
    }

    /// Records `session.end` with its reason and marks the session ended. After a journal failure the
    /// chain cannot grow, so only the session row is marked, with the reason.
    pub async fn end(mut self, reason: &str) -> Result<(), RecordError> {
        let (reason, findings) = self.masker.mask(reason, "reason");
        let reason = reason.into_owned();
        let recorded = if self.check_intact().is_ok() {
            self.record_with(
                "session.end",
                Body::new().str("reason", &reason).finish(),
                findings,
            )
            .await
            .map(|_| ())
        } else {
            Ok(())
        };
        self.writer
            .close_session(
                self.header.session_id.clone(),
                now_ns(),
                reason,
                &self.broken,
            )
            .await?;
        recorded
    }
}
