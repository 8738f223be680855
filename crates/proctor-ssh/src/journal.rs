//! One SSH connection's recorder, shared by its channels: each channel runs its own tasks, and
//! every event they record goes through this one chain, in the order they take the lock.

use std::sync::Arc;

use proctor_core::journal::CanonicalJson;
use proctor_core::{RecordError, SessionRecorder};
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

/// The session's recorder, opened at the first login attempt and ended when the connection ends.
#[derive(Clone, Default)]
pub struct SessionJournal(Arc<Mutex<Option<SessionRecorder>>>);

fn not_open() -> RecordError {
    RecordError(proctor_core::journal::JournalError::CommitFailed(
        "the session's record is not open".into(),
    ))
}

impl SessionJournal {
    pub async fn is_open(&self) -> bool {
        self.0.lock().await.is_some()
    }

    pub async fn open(&self, recorder: SessionRecorder) {
        *self.0.lock().await = Some(recorder);
    }

    /// The recorder itself, for the guardrails that record their decisions.
    pub async fn lock(&self) -> MutexGuard<'_, Option<SessionRecorder>> {
        self.0.lock().await
    }

    /// Queues an event built of what passed through (masked here).
    pub async fn queue(&self, kind: &'static str, body: Value) -> Result<(), RecordError> {
        let mut recorder = self.0.lock().await;
        let recorder = recorder.as_mut().ok_or_else(not_open)?;
        recorder.record_queued_masked(kind, body).await.map(|_| ())
    }

    /// Records an event built of what passed through (masked here) and waits for its commit.
    pub async fn commit_event(&self, kind: &'static str, body: Value) -> Result<u64, RecordError> {
        let mut recorder = self.0.lock().await;
        let recorder = recorder.as_mut().ok_or_else(not_open)?;
        recorder.record_masked(kind, body).await
    }

    /// Records an event whose body is already masked, with the findings of masking it, committed.
    pub async fn commit_masked(
        &self,
        kind: &'static str,
        body: CanonicalJson,
        findings: Vec<Value>,
    ) -> Result<u64, RecordError> {
        let mut recorder = self.0.lock().await;
        let recorder = recorder.as_mut().ok_or_else(not_open)?;
        let seq = recorder.record_queued_with(kind, body, findings).await?;
        recorder.commit().await?;
        Ok(seq)
    }

    /// Waits until every event recorded so far is committed.
    pub async fn commit(&self) -> Result<(), RecordError> {
        let recorder = self.0.lock().await;
        recorder.as_ref().ok_or_else(not_open)?.commit().await
    }

    /// Ends the session's record, if it was opened.
    pub async fn end(&self, reason: &str) {
        if let Some(recorder) = self.0.lock().await.take() {
            if let Err(e) = recorder.end(reason).await {
                tracing::error!(error = %e, "the end of an SSH session could not be recorded");
            }
        }
    }
}
