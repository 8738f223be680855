//! Group commit: how every session's events reach the journal's write connection.
//!
//! Sessions queue their events; a session that needs its events committed (before forwarding a command)
//! becomes the leader if no commit is running: it takes everything queued, by every session, writes it in
//! one transaction, and wakes the others. If a commit is running, it waits for that one or the next. So
//! the cost of a commit is shared by all sessions waiting, and the common case needs no hand-off between
//! threads. Events that nobody waits for (results) ride along with the next commit, or with the periodic
//! flush that `serve` runs.
//!
//! The queue is FIFO, so a session's events commit in the order they were submitted. A batch that fails
//! is retried one request at a time, so one bad event cannot fail another session's; a failure sets the
//! submitting session's `broken` flag, and that session's later events are refused, so the journal keeps a
//! prefix of its chain and never a chain with a hole.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection};
use tokio::sync::Notify;

use crate::chain::{NewEvent, SessionHeader};
use crate::store::{open_connection, Store};
use crate::JournalError;

/// Queued requests beyond which a submitter commits before queueing more (backpressure).
const MAX_QUEUED: usize = 16_384;
/// How often the write-ahead log is copied back into the database, off the commit path.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

enum Op {
    OpenSession(SessionHeader),
    Append(NewEvent),
    CloseSession {
        session_id: String,
        ended_at: i64,
        reason: String,
    },
}

struct Request {
    op: Op,
    broken: Arc<AtomicBool>,
}

#[derive(Default)]
struct Queue {
    requests: Vec<Request>,
    /// Tickets handed out and tickets committed (or failed): request number `n` is done once
    /// `done >= n`.
    issued: u64,
    done: u64,
}

struct WriteSide {
    conn: Connection,
    failed: FailedSessions,
    /// Row numbers of open sessions: events are stored by number, so that the events of the sessions
    /// active at one time sit together in the index and a commit touches few pages.
    open: HashMap<String, i64>,
    last_no: i64,
}

struct Shared {
    queue: Mutex<Queue>,
    writer: Mutex<WriteSide>,
    committed: Notify,
}

/// A handle to the journal's write side. Cloning is cheap.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Writer {
    /// Opens the write connection to `store`'s database, and starts the thread that checkpoints its
    /// write-ahead log, so that no commit waits for a checkpoint's fsync.
    pub fn start(store: &Store) -> Result<Self, JournalError> {
        let conn = open_connection(store.path(), store.sync_mode())?;
        let last_no = conn.query_row("SELECT coalesce(max(no), 0) FROM sessions", [], |row| {
            row.get(0)
        })?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            writer: Mutex::new(WriteSide {
                conn,
                failed: FailedSessions::default(),
                open: HashMap::new(),
                last_no,
            }),
            committed: Notify::new(),
        });
        let checkpointer = open_connection(store.path(), store.sync_mode())?;
        let alive = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("proctor-checkpoint".into())
            .spawn(move || {
                while alive.strong_count() > 0 {
                    std::thread::sleep(CHECKPOINT_INTERVAL);
                    if let Err(e) =
                        checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "journal checkpoint failed");
                    }
                }
            })
            .map_err(|e| {
                JournalError::CommitFailed(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Self { shared })
    }

    fn submit(&self, op: Op, broken: Arc<AtomicBool>) -> (u64, bool) {
        let mut queue = lock(&self.shared.queue);
        queue.requests.push(Request { op, broken });
        queue.issued += 1;
        (queue.issued, queue.requests.len() >= MAX_QUEUED)
    }

    /// Returns once request `ticket` is committed or has failed; commits it if nobody else is.
    async fn wait_for(&self, ticket: u64) {
        loop {
            let committed = self.shared.committed.notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            if lock(&self.shared.queue).done >= ticket {
                return;
            }
            if !self.try_lead() {
                committed.await;
            }
        }
    }

    /// Commits what is queued if no commit is running; returns whether it did.
    fn try_lead(&self) -> bool {
        let writer = match self.shared.writer.try_lock() {
            Ok(writer) => writer,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        self.lead(writer);
        true
    }

    /// Commits everything queued so far, holding the write connection.
    fn lead(&self, mut writer: MutexGuard<'_, WriteSide>) {
        let (batch, last) = {
            let mut queue = lock(&self.shared.queue);
            (std::mem::take(&mut queue.requests), queue.issued)
        };
        if !batch.is_empty() {
            writer.commit(batch);
        }
        lock(&self.shared.queue).done = last;
        drop(writer);
        self.shared.committed.notify_waiters();
    }

    async fn submit_and_wait(&self, op: Op, broken: &Arc<AtomicBool>) -> Result<(), JournalError> {
        let (ticket, _) = self.submit(op, broken.clone());
        self.wait_for(ticket).await;
        if broken.load(Ordering::Acquire) {
            return Err(JournalError::CommitFailed(
                "the event could not be committed (see the gateway log)".into(),
            ));
        }
        Ok(())
    }

    /// Records a new session's header; returns once it is committed.
    pub async fn open_session(
        &self,
        header: SessionHeader,
        broken: &Arc<AtomicBool>,
    ) -> Result<(), JournalError> {
        self.submit_and_wait(Op::OpenSession(header), broken).await
    }

    /// Appends an event and returns once it is committed: the caller may act on it now.
    pub async fn append(
        &self,
        event: NewEvent,
        broken: &Arc<AtomicBool>,
    ) -> Result<(), JournalError> {
        self.submit_and_wait(Op::Append(event), broken).await
    }

    /// Queues an event without waiting for its commit. If the commit fails, `broken` is set.
    pub async fn append_queued(&self, event: NewEvent, broken: &Arc<AtomicBool>) {
        let (ticket, full) = self.submit(Op::Append(event), broken.clone());
        if full {
            self.wait_for(ticket).await;
        }
    }

    /// Returns once everything queued before this call has been committed (or has failed, setting its
    /// session's `broken` flag).
    pub async fn commit(&self) {
        let ticket = lock(&self.shared.queue).issued;
        self.wait_for(ticket).await;
    }

    /// Marks a session as ended; returns once it is committed.
    pub async fn close_session(
        &self,
        session_id: String,
        ended_at: i64,
        reason: String,
        broken: &Arc<AtomicBool>,
    ) -> Result<(), JournalError> {
        let op = Op::CloseSession {
            session_id,
            ended_at,
            reason,
        };
        let (ticket, _) = self.submit(op, broken.clone());
        self.wait_for(ticket).await;
        Ok(())
    }

    /// Commits queued events every `interval`, so that events nobody waits for are not held long.
    pub async fn flush_every(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let pending = {
                let queue = lock(&self.shared.queue);
                queue.done < queue.issued
            };
            if pending {
                self.commit().await;
            }
        }
    }
}

/// Sessions with an event that failed to commit. Their later events are refused.
#[derive(Default)]
struct FailedSessions(HashSet<String>);

impl FailedSessions {
    fn refuses(&self, request: &Request) -> bool {
        matches!(&request.op, Op::Append(event) if self.0.contains(&*event.session_id))
    }

    fn note(&mut self, request: &Request) {
        if let Op::Append(event) = &request.op {
            self.0.insert(event.session_id.to_string());
        }
    }

    fn forget(&mut self, request: &Request) {
        if let Op::CloseSession { session_id, .. } = &request.op {
            self.0.remove(session_id);
        }
    }
}

impl WriteSide {
    fn commit(&mut self, mut batch: Vec<Request>) {
        if !self.failed.0.is_empty() {
            for refused in batch.extract_if(.., |r| self.failed.refuses(r)) {
                refused.broken.store(true, Ordering::Release);
            }
        }
        match self.write_batch(batch.iter()) {
            Ok(()) => batch.iter().for_each(|r| self.failed.forget(r)),
            Err(reason) => {
                tracing::warn!(%reason, events = batch.len(), "journal batch failed; committing one by one");
                for request in &batch {
                    let outcome = if self.failed.refuses(request) {
                        Err(JournalError::CommitFailed(
                            "an earlier event of this session failed".into(),
                        ))
                    } else {
                        self.write_batch(std::iter::once(request))
                    };
                    match outcome {
                        Ok(()) => self.failed.forget(request),
                        Err(reason) => {
                            tracing::error!(%reason, "journal event failed to commit");
                            self.failed.note(request);
                            request.broken.store(true, Ordering::Release);
                        }
                    }
                }
            }
        }
    }
}

impl WriteSide {
    /// Writes `requests` in one transaction: all of them commit, or none does.
    fn write_batch<'a>(
        &mut self,
        requests: impl Iterator<Item = &'a Request>,
    ) -> Result<(), JournalError> {
        let mut opened: Vec<(String, i64)> = Vec::new();
        let mut closed: Vec<&str> = Vec::new();
        let tx = self.conn.transaction()?;
        {
            let mut insert_session = tx.prepare_cached(
                "INSERT INTO sessions (no, id, protocol, identity, connection, client_addr, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut insert_event = tx.prepare_cached(
                "INSERT INTO events (session_no, seq, at, kind, body, findings, prev, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut close_session = tx.prepare_cached(
                "UPDATE sessions SET ended_at = ?2, end_reason = ?3 WHERE id = ?1",
            )?;
            let mut next_no = self.last_no;
            for request in requests {
                match &request.op {
                    Op::OpenSession(header) => {
                        next_no += 1;
                        insert_session.execute(params![
                            next_no,
                            header.session_id,
                            header.protocol,
                            header.identity,
                            header.connection,
                            header.client_addr,
                            header.started_at
                        ])?;
                        opened.push((header.session_id.clone(), next_no));
                    }
                    Op::Append(event) => {
                        let no = opened
                            .iter()
                            .rev()
                            .find(|(id, _)| **id == *event.session_id)
                            .map(|(_, no)| *no)
                            .or_else(|| self.open.get(&*event.session_id).copied())
                            .ok_or_else(|| {
                                JournalError::NotFound(format!(
                                    "session {} is not open",
                                    event.session_id
                                ))
                            })?;
                        insert_event.execute(params![
                            no,
                            event.seq,
                            event.at,
                            event.kind,
                            event.body.as_str(),
                            event.findings.as_str(),
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
                        closed.push(session_id);
                    }
                }
            }
            self.last_no = next_no;
        }
        tx.commit()?;
        self.open.extend(opened);
        for session_id in closed {
            self.open.remove(session_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::CanonicalJson;
    use crate::chain::{no_findings, Chain};
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sessions_commit_complete_verifiable_chains() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let writer = Writer::start(&store).unwrap();
        let mut tasks = Vec::new();
        for n in 0..8 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                let header = header(&format!("s{n}"));
                let broken = Arc::new(AtomicBool::new(false));
                let mut chain = Chain::start(&header).unwrap();
                writer.open_session(header, &broken).await.unwrap();
                for i in 0..50 {
                    let event = chain.next_event(
                        i,
                        "db.query",
                        CanonicalJson::of(&json!({"i": i})),
                        no_findings(),
                    );
                    if i % 2 == 0 {
                        writer.append(event, &broken).await.unwrap();
                    } else {
                        writer.append_queued(event, &broken).await;
                    }
                }
                writer
                    .close_session(chain.session_id().into(), 99, "done".into(), &broken)
                    .await
                    .unwrap();
                assert!(!broken.load(Ordering::Acquire));
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
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
    async fn a_failed_commit_breaks_its_session_only_and_keeps_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let writer = Writer::start(&store).unwrap();
        let broken = Arc::new(AtomicBool::new(false));
        let header = header("dup");
        let mut chain = Chain::start(&header).unwrap();
        writer.open_session(header, &broken).await.unwrap();
        let first = chain.next_event(1, "db.query", CanonicalJson::of(&json!({})), no_findings());
        writer.append(first.clone(), &broken).await.unwrap();

        let other_broken = Arc::new(AtomicBool::new(false));
        let other = super::tests::header("other");
        let mut other_chain = Chain::start(&other).unwrap();
        writer.open_session(other, &other_broken).await.unwrap();

        writer.append_queued(first, &broken).await;
        let healthy =
            other_chain.next_event(1, "db.query", CanonicalJson::of(&json!({})), no_findings());
        writer.append(healthy, &other_broken).await.unwrap();
        assert!(broken.load(Ordering::Acquire), "the duplicate failed");
        assert!(
            !other_broken.load(Ordering::Acquire),
            "the other session is unharmed"
        );

        let next = chain.next_event(2, "db.query", CanonicalJson::of(&json!({})), no_findings());
        let fresh = Arc::new(AtomicBool::new(false));
        assert!(
            writer.append(next, &fresh).await.is_err(),
            "later events of a failed session are refused"
        );
        let session = store.find_session("dup").unwrap();
        assert!(matches!(
            store.verify_session(&session).unwrap(),
            VerifyOutcome::Intact { events: 1, .. }
        ));
    }
}
