//! The group-commit writer: one thread that owns the journal's write connection.
//!
//! Every session hands its events to this thread through one bounded queue. The thread takes whatever is
//! waiting, writes it in a single transaction and only then acknowledges, so the cost of a commit is shared
//! by all sessions that were waiting for one. The queue is FIFO, so the events of a session commit in
//! the order they were submitted. A batch that fails is retried one request at a time, so one bad event
//! cannot fail another session's; each failure is reported to its submitter (the ones that wait get the
//! error, the others find their session's `broken` flag set), and that session's later events are
//! refused, so the journal keeps a prefix of its chain and never a chain with a hole.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use crate::chain::{Event, SessionHeader};
use crate::store::{open_connection, Store};
use crate::JournalError;

const QUEUE_CAPACITY: usize = 16_384;
const MAX_BATCH: usize = 4_096;

enum Op {
    OpenSession(SessionHeader),
    Append(Event),
    CloseSession {
        session_id: String,
        ended_at: i64,
        reason: String,
    },
    /// Writes nothing; acknowledged once everything queued before it has been committed.
    Barrier,
}

enum Ack {
    Wait(oneshot::Sender<Result<(), String>>),
    Flag(Arc<AtomicBool>),
}

struct Request {
    op: Op,
    ack: Ack,
}

/// A handle to the writer thread. Cloning is cheap; the thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer thread on its own connection to `store`'s database.
    pub fn start(store: &Store) -> Result<(Self, JoinHandle<()>), JournalError> {
        let conn = open_connection(store.path(), store.sync_mode())?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("proctor-journal".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| JournalError::CommitFailed(format!("cannot start writer thread: {e}")))?;
        Ok((Self { tx }, handle))
    }

    async fn submit_and_wait(&self, op: Op) -> Result<(), JournalError> {
        let (done, committed) = oneshot::channel();
        self.tx
            .send(Request {
                op,
                ack: Ack::Wait(done),
            })
            .await
            .map_err(|_| JournalError::WriterStopped)?;
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(JournalError::CommitFailed(reason)),
            Err(_) => Err(JournalError::WriterStopped),
        }
    }

    /// Records a new session's header; returns once it is committed.
    pub async fn open_session(&self, header: SessionHeader) -> Result<(), JournalError> {
        self.submit_and_wait(Op::OpenSession(header)).await
    }

    /// Appends an event and returns once it is committed: the caller may act on it now.
    pub async fn append(&self, event: Event) -> Result<(), JournalError> {
        self.submit_and_wait(Op::Append(event)).await
    }

    /// Queues an event without waiting for its commit. If the commit fails, `broken` is set, and since
    /// the queue is FIFO, the session's next waited append cannot succeed before this one was written.
    pub async fn append_queued(
        &self,
        event: Event,
        broken: Arc<AtomicBool>,
    ) -> Result<(), JournalError> {
        self.tx
            .send(Request {
                op: Op::Append(event),
                ack: Ack::Flag(broken),
            })
            .await
            .map_err(|_| JournalError::WriterStopped)
    }

    /// Returns once every event queued before this call has been committed (or has failed, setting its
    /// session's `broken` flag).
    pub async fn barrier(&self) -> Result<(), JournalError> {
        self.submit_and_wait(Op::Barrier).await
    }

    /// Marks a session as ended; returns once it is committed.
    pub async fn close_session(
        &self,
        session_id: String,
        ended_at: i64,
        reason: String,
    ) -> Result<(), JournalError> {
        self.submit_and_wait(Op::CloseSession {
            session_id,
            ended_at,
            reason,
        })
        .await
    }
}

/// Sessions with an event that failed to commit. Their later events are refused, so that what the
/// journal holds of a session is always a prefix of its chain, never a chain with a hole.
#[derive(Default)]
struct FailedSessions(HashSet<String>);

impl FailedSessions {
    fn refuses(&self, request: &Request) -> bool {
        matches!(&request.op, Op::Append(event) if self.0.contains(&event.session_id))
    }

    fn note(&mut self, request: &Request) {
        if let Op::Append(event) = &request.op {
            self.0.insert(event.session_id.clone());
        }
    }

    fn forget(&mut self, request: &Request) {
        if let Op::CloseSession { session_id, .. } = &request.op {
            self.0.remove(session_id);
        }
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut failed = FailedSessions::default();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if !failed.0.is_empty() {
            for request in batch.extract_if(.., |r| failed.refuses(r)) {
                acknowledge(request.ack, Err("an earlier event of this session was not committed".into()));
            }
        }
        if let Err(reason) = write_batch(&mut conn, batch.iter()) {
            tracing::warn!(%reason, events = batch.len(), "journal batch failed; committing one by one");
            for request in batch.drain(..) {
                let outcome = if failed.refuses(&request) {
                    Err(JournalError::CommitFailed("an earlier event of this session was not committed".into()))
                } else {
                    write_batch(&mut conn, std::iter::once(&request))
                };
                if let Err(reason) = &outcome {
                    tracing::error!(%reason, "journal event failed to commit");
                    failed.note(&request);
                }
                acknowledge(request.ack, outcome.map_err(|e| e.to_string()));
            }
        }
        for request in batch.drain(..) {
            failed.forget(&request);
            acknowledge(request.ack, Ok(()));
        }
    }
}

fn acknowledge(ack: Ack, outcome: Result<(), String>) {
    match ack {
        Ack::Wait(done) => {
            let _ = done.send(outcome);
        }
        Ack::Flag(broken) => {
            if outcome.is_err() {
                broken.store(true, Ordering::Release);
            }
        }
    }
}

/// Writes `requests` in one transaction: all of them commit, or none does.
fn write_batch<'a>(
    conn: &mut Connection,
    requests: impl Iterator<Item = &'a Request>,
) -> Result<(), JournalError> {
    let tx = conn.transaction()?;
    {
        let mut insert_session = tx.prepare_cached(
            "INSERT INTO sessions (id, protocol, identity, connection, client_addr, started_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut insert_event = tx.prepare_cached(
            "INSERT INTO events (session_id, seq, at, kind, body, findings, prev, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut close_session =
            tx.prepare_cached("UPDATE sessions SET ended_at = ?2, end_reason = ?3 WHERE id = ?1")?;
        for request in requests {
            match &request.op {
                Op::OpenSession(header) => {
                    insert_session.execute(params![
                        header.session_id,
                        header.protocol,
                        header.identity,
                        header.connection,
                        header.client_addr,
                        header.started_at
                    ])?;
                }
                Op::Append(event) => {
                    let body = serde_json::to_string(&event.body)
                        .map_err(|e| JournalError::Malformed(e.to_string()))?;
                    let findings = serde_json::to_string(&event.findings)
                        .map_err(|e| JournalError::Malformed(e.to_string()))?;
                    insert_event.execute(params![
                        event.session_id,
                        event.seq,
                        event.at,
                        event.kind,
                        body,
                        findings,
                        event.prev,
                        event.hash
                    ])?;
                }
                Op::CloseSession {
                    session_id,
                    ended_at,
                    reason,
                } => {
                    close_session.execute(params![session_id, ended_at, reason])?;
                }
                Op::Barrier => {}
            }
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::store::{SessionFilter, VerifyOutcome};
    use crate::SyncMode;
    use serde_json::json;

    fn header(id: &str) -> SessionHeader {
        SessionHeader {
            session_id: id.into(),
            protocol: "postgres".into(),
            identity: "alice".into(),
            connection: "app-db".into(),
            client_addr: "127.0.0.1:1".into(),
            started_at: 5,
        }
    }

    #[tokio::test]
    async fn concurrent_sessions_commit_complete_verifiable_chains() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let (writer, thread) = Writer::start(&store).unwrap();
        let mut tasks = Vec::new();
        for n in 0..8 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                let header = header(&format!("s{n}"));
                let mut chain = Chain::start(&header).unwrap();
                writer.open_session(header).await.unwrap();
                let broken = Arc::new(AtomicBool::new(false));
                for i in 0..50 {
                    let event = chain.next_event(i, "db.query", json!({"i": i}), vec![]).unwrap();
                    if i % 2 == 0 {
                        writer.append(event).await.unwrap();
                    } else {
                        writer.append_queued(event, broken.clone()).await.unwrap();
                    }
                }
                writer.close_session(chain.session_id().into(), 99, "done".into()).await.unwrap();
                assert!(!broken.load(Ordering::Acquire));
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        drop(writer);
        thread.join().unwrap();
        let sessions = store.list_sessions(&SessionFilter::default()).unwrap();
        assert_eq!(sessions.len(), 8);
        for session in sessions {
            assert_eq!(session.events, 50);
            assert_eq!(session.end_reason.as_deref(), Some("done"));
            assert!(matches!(
                store.verify_session(&session).unwrap(),
                VerifyOutcome::Intact { events: 50, .. }
            ));
        }
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_to_its_submitters_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let (writer, _thread) = Writer::start(&store).unwrap();
        let header = header("dup");
        let mut chain = Chain::start(&header).unwrap();
        writer.open_session(header).await.unwrap();
        let event = chain.next_event(1, "db.query", json!({}), vec![]).unwrap();
        writer.append(event.clone()).await.unwrap();
        let broken = Arc::new(AtomicBool::new(false));
        writer.append_queued(event.clone(), broken.clone()).await.unwrap();
        assert!(matches!(
            writer.append(event).await,
            Err(JournalError::CommitFailed(_))
        ));
        assert!(broken.load(Ordering::Acquire));

        let other = super::tests::header("other");
        let mut other_chain = Chain::start(&other).unwrap();
        writer.open_session(other).await.unwrap();
        let healthy = other_chain.next_event(1, "db.query", json!({}), vec![]).unwrap();
        let duplicate = chain.next_event(2, "db.query", json!({}), vec![]).unwrap();
        let mut replayed = duplicate.clone();
        replayed.hash = "x".into();
        writer.append(duplicate).await.unwrap();
        let (bad, good) = tokio::join!(writer.append(replayed), writer.append(healthy));
        assert!(bad.is_err());
        good.unwrap();
    }
}
