//! Group commit: how every session's events become durable.
//!
//! Sessions queue their events; a session that needs its events committed (before forwarding a command)
//! becomes the leader if no commit is running: it takes everything queued, by every session, appends it
//! to the commit log at once (see `appender`), hands its records to the ingester, and wakes the others.
//! If a commit is running, it waits for that one or the next. So the cost of a commit is shared by all
//! sessions waiting, and the common case needs no hand-off between threads. Events that nobody waits
//! for (results) ride along with the next commit, or with the periodic flush that `serve` runs. A
//! background thread copies the log into the SQLite store (see `log`) and seals the sessions' chains
//! into the tamper-evident log (see `tlog`), off the path of every statement.
//!
//! The queue is FIFO, so a session's events commit in the order they were submitted. A failed append
//! leaves the log as it was and is reported to every submitter in it through its session's `broken`
//! flag; that session's later events are refused, so the journal keeps a prefix of its chain and never a
//! chain with a hole.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::Notify;

use crate::appender::Appender;
use crate::chain::{NewEvent, SessionHeader};
use crate::log::{self, Appended, Handoff, Ingester, Record, LOG_FILE};
use crate::priority::IngestPriority;
use crate::recovery;
use crate::store::{open_connection, Store, SyncMode};
use crate::JournalError;

/// Queued requests beyond which a submitter commits before queueing more (backpressure).
const MAX_QUEUED: usize = 16_384;
/// How often the ingester copies the commit log into the store. Larger batches cost less CPU per
/// event (fewer rewrites of the same index pages); the store lags the log by at most this much.
const INGEST_INTERVAL: Duration = Duration::from_millis(250);
/// The log is emptied once the store has caught up and the log has grown past this.
const ROTATE_AT: u64 = 4 * 1024 * 1024;
/// Committed bytes the store may lag behind at idle priority; beyond them, the ingest thread returns to
/// normal priority until it has caught up (see `priority`). About a second of `pgbench -S` at full speed.
const LAG_BOUND: u64 = 8 * 1024 * 1024;

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

/// Requests waiting for the next commit. Their tickets are counted in `Shared::issued`.
#[derive(Default)]
struct Queue {
    requests: Vec<Request>,
}

/// The appending side of the commit log, held by the leader of a commit.
struct WriteSide {
    log: Appender,
    sync: SyncMode,
    failed: FailedSessions,
    /// Numbers of open sessions: events are stored by number, so that the events of the sessions active
    /// at one time sit together in the store's index. (Session ids are the gateway's own, so the map
    /// uses a fast hash with no key.)
    open: FxHashMap<String, i64>,
    last_no: i64,
    scratch: String,
    out: Vec<u8>,
    /// The queue's vector of the last commit, emptied: the queue takes it back for the next one, so
    /// that queueing does not allocate anew after every commit.
    spare: Vec<Request>,
    /// The last commit's records, handed to the ingester, and the requests it accepted; kept, like
    /// `spare`, for their capacity.
    appended: Vec<Appended>,
    accepted: Vec<(i64, Request, Option<Appended>)>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Tickets handed out and tickets committed (or failed): request number `n` is done once
    /// `done >= n`. `issued` changes only under the queue's lock, `done` only under the write side's;
    /// both are read without either, so that a session whose events are already committed takes no
    /// lock that the other event loops contend for.
    issued: AtomicU64,
    done: AtomicU64,
    writer: Mutex<WriteSide>,
    committed: Notify,
    /// Whether a commit ends with `fdatasync` (`sync = "full"`): then a leader commits on a blocking
    /// thread, so that the event loop it came from goes on serving its other sessions meanwhile.
    syncs: bool,
    /// What was appended since the ingester last looked, so that it need not read it back.
    handoff: Mutex<Handoff>,
    ingest_priority: IngestPriority,
    stop: AtomicBool,
    ingester: Mutex<Option<JoinHandle<()>>>,
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

fn io_error(what: &str, e: std::io::Error) -> JournalError {
    JournalError::CommitFailed(format!("{what}: {e}"))
}

impl Writer {
    /// Takes the commit log of `store`'s data dir (one gateway per data dir) and starts the thread that
    /// copies it into the store.
    pub fn start(store: &Store) -> Result<Self, JournalError> {
        let path = store.data_dir().join(LOG_FILE);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("opening the commit log", e))?;
        if log.try_lock().is_err() {
            return Err(JournalError::Conflict(format!(
                "{} is in use by another proctor serve; one gateway per data dir",
                path.display()
            )));
        }
        let damaged = recovery::unacknowledged_damage(store.data_dir())?;
        if !damaged.is_empty() {
            return Err(recovery::damage_error(store.data_dir(), &damaged));
        }
        let conn = open_connection(store.path(), store.sync_mode())?;
        let mut ingester = Ingester::open(conn, store.data_dir())?;
        let (ingested, mut len) = ingester.ingest_available()?;
        if let Some(at) = ingester.damaged_at() {
            let set_aside = recovery::set_aside_damaged_tail(&log, store.data_dir(), at)?;
            let name = set_aside
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            return Err(recovery::damage_error(
                store.data_dir(),
                &Vec::from_iter(name),
            ));
        }
        // Counted once the log's leftovers are in the store: a new session must not take the number
        // of one that a stopped gateway left in the log (it once did, and lost its events).
        let last_no = ingester.last_session_no()?;
        if ingested < len {
            // What follows the last complete record is a record cut short (the gateway or the machine
            // stopped mid-append) or the unused end of the log's reservation: never acknowledged.
            // Appending after a torn record would glue the next record to it.
            log.set_len(ingested)
                .map_err(|e| io_error("cutting a torn record off the commit log", e))?;
            len = ingested;
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            writer: Mutex::new(WriteSide {
                log: Appender::new(log, len),
                sync: store.sync_mode(),
                failed: FailedSessions::default(),
                open: FxHashMap::default(),
                last_no,
                scratch: String::with_capacity(1024),
                out: Vec::with_capacity(64 * 1024),
                spare: Vec::new(),
                appended: Vec::new(),
                accepted: Vec::new(),
            }),
            syncs: store.sync_mode() == SyncMode::Full,
            issued: AtomicU64::new(0),
            done: AtomicU64::new(0),
            committed: Notify::new(),
            handoff: Mutex::new(Handoff::default()),
            ingest_priority: IngestPriority::default(),
            stop: AtomicBool::new(false),
            ingester: Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        let handle = std::thread::Builder::new()
            .name("proctor-ingest".into())
            .spawn(move || run_ingester(ingester, weak))
            .map_err(|e| io_error("starting the ingest thread", e))?;
        *lock(&shared.ingester) = Some(handle);
        Ok(Self { shared })
    }

    fn submit(&self, op: Op, broken: Arc<AtomicBool>) -> (u64, bool) {
        let mut queue = lock(&self.shared.queue);
        queue.requests.push(Request { op, broken });
        let ticket = self.shared.issued.load(Ordering::Relaxed) + 1;
        self.shared.issued.store(ticket, Ordering::Release);
        (ticket, queue.requests.len() >= MAX_QUEUED)
    }

    fn is_done(&self, ticket: u64) -> bool {
        self.shared.done.load(Ordering::Acquire) >= ticket
    }

    /// Returns once request `ticket` is committed or has failed; commits it if nobody else is.
    async fn wait_for(&self, ticket: u64) {
        // A leader commits everything issued before it took the queue, `ticket` included.
        if self.is_done(ticket) || self.lead_if_free().await {
            return;
        }
        loop {
            // Registered before looking again, so that the commit running now cannot finish
            // unnoticed in between.
            let committed = self.shared.committed.notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            if self.is_done(ticket) || self.lead_if_free().await {
                return;
            }
            committed.await;
        }
    }

    /// Commits what is queued if no commit is running; returns whether it did. A commit that syncs
    /// to disk runs on a blocking thread: an `fdatasync` takes milliseconds.
    async fn lead_if_free(&self) -> bool {
        if !self.shared.syncs {
            return self.try_lead();
        }
        let writer = self.clone();
        tokio::task::spawn_blocking(move || writer.try_lead())
            .await
            .unwrap_or(false)
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

    /// Commits everything queued so far, holding the write side.
    fn lead(&self, mut writer: MutexGuard<'_, WriteSide>) {
        let mut batch = std::mem::take(&mut writer.spare);
        let last = {
            let mut queue = lock(&self.shared.queue);
            std::mem::swap(&mut queue.requests, &mut batch);
            self.shared.issued.load(Ordering::Acquire)
        };
        let mut spent = Vec::new();
        if !batch.is_empty() {
            let side = &mut *writer;
            let from = side.log.len();
            side.commit(&mut batch, &mut spent);
            let to = side.log.len();
            let lag = {
                let mut handoff = lock(&self.shared.handoff);
                handoff.push(from, to, side.appended.drain(..), &side.out);
                handoff.span()
            };
            if lag > LAG_BOUND && self.shared.ingest_priority.is_lowered() {
                self.shared.ingest_priority.restore();
            }
        }
        writer.spare = batch;
        self.shared.done.store(last, Ordering::Release);
        drop(writer);
        self.shared.committed.notify_waiters();
        // Freed once the other sessions may commit again: not while they wait for the write side.
        drop(spent);
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
        let ticket = self.shared.issued.load(Ordering::Acquire);
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
        self.submit_and_wait(op, broken).await
    }

    /// Commits queued events every `interval`, so that events nobody waits for are not held long.
    pub async fn flush_every(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let pending = !self.is_done(self.shared.issued.load(Ordering::Acquire));
            if pending {
                self.commit().await;
            }
        }
    }

    /// Stops the ingester once it has copied everything committed into the store. Call after the last
    /// commit.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(handle) = lock(&self.shared.ingester).take() {
            let _ = handle.join();
        }
    }
}

fn run_ingester(mut ingester: Ingester, shared: std::sync::Weak<Shared>) {
    let mut handoff = Handoff::default();
    loop {
        std::thread::sleep(INGEST_INTERVAL);
        let Some(shared) = shared.upgrade() else {
            let _ = ingester
                .ingest_available()
                .and_then(|_| ingester.seal_due());
            return;
        };
        std::mem::swap(&mut handoff, &mut *lock(&shared.handoff));
        let ingested = ingester.ingest_handoff(&handoff);
        handoff.clear();
        if let Err(e) = ingester.seal_due() {
            tracing::error!(error = %e, "sealing sessions into the log failed");
        }
        if matches!(ingested, Ok((offset, len)) if offset == len)
            && !shared.ingest_priority.is_lowered()
        {
            shared.ingest_priority.lower_calling_thread();
        }
        match ingested {
            Ok((offset, len)) if offset == len && len >= ROTATE_AT => {
                let mut writer = shared.hold_write_side();
                if writer.log.len() == offset {
                    match writer.log.empty() {
                        Ok(()) => {
                            *lock(&shared.handoff) = Handoff::default();
                            if let Err(e) = ingester.restart() {
                                tracing::warn!(error = %e, "could not record that the commit log was emptied");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "could not empty the commit log"),
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, offset = ingester.offset(), "ingesting the commit log failed")
            }
        }
        if shared.stop.load(Ordering::Acquire) {
            // The gateway waits for this last copy: it must not wait on other work.
            shared.ingest_priority.restore();
            if let Err(e) = ingester
                .ingest_available()
                .and_then(|_| ingester.seal_due())
            {
                tracing::error!(error = %e, "ingesting the commit log failed at shutdown");
            }
            return;
        }
    }
}

impl Shared {
    /// The write side, for work other than a commit. Sessions that found it busy wait for a commit's
    /// notification, so the guard sends one when it lets go (without it they once waited forever).
    fn hold_write_side(&self) -> HeldWriteSide<'_> {
        HeldWriteSide {
            guard: Some(lock(&self.writer)),
            committed: &self.committed,
        }
    }
}

struct HeldWriteSide<'a> {
    guard: Option<MutexGuard<'a, WriteSide>>,
    committed: &'a Notify,
}

impl std::ops::Deref for HeldWriteSide<'_> {
    type Target = WriteSide;
    fn deref(&self) -> &WriteSide {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for HeldWriteSide<'_> {
    fn deref_mut(&mut self) -> &mut WriteSide {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for HeldWriteSide<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.committed.notify_waiters();
    }
}

/// Sessions with an event that failed to commit. Their later events are refused.
#[derive(Default)]
struct FailedSessions(FxHashSet<String>);

impl FailedSessions {
    fn refuses(&self, request: &Request) -> bool {
        matches!(&request.op, Op::Append(event) if self.0.contains(&*event.session_id))
    }

    fn note(&mut self, request: &Request) {
        match &request.op {
            Op::Append(event) => {
                self.0.insert(event.session_id.to_string());
            }
            Op::CloseSession { session_id, .. } => {
                self.0.remove(session_id);
            }
            Op::OpenSession(_) => {}
        }
    }
}

impl WriteSide {
    fn session_no(&self, session_id: &str) -> Option<i64> {
        self.open.get(session_id).copied()
    }

    /// Appends a batch to the log in one write and leaves its records in `appended`; on failure cuts
    /// the log back, fails the batch and leaves none. The batch is left empty; the committed events go
    /// to `spent`, for the caller to free once it has let go of the write side.
    fn commit(&mut self, batch: &mut Vec<Request>, spent: &mut Vec<NewEvent>) {
        self.appended.clear();
        self.out.clear();
        // Where `out` goes in the log: the handed-over events are named by their place there.
        let base = self.log.len();
        let mut accepted = std::mem::take(&mut self.accepted);
        let mut opened = Vec::new();
        let mut closed = Vec::new();
        let mut next_no = self.last_no;
        for request in batch.drain(..) {
            let record = match &request.op {
                _ if self.failed.refuses(&request) => None,
                Op::OpenSession(header) => {
                    next_no += 1;
                    opened.push((header.session_id.clone(), next_no));
                    Some(Record::Open {
                        no: next_no,
                        header,
                    })
                }
                Op::Append(event) => {
                    let no = opened
                        .iter()
                        .rev()
                        .find(|(id, _)| **id == *event.session_id)
                        .map(|(_, no)| *no)
                        .or_else(|| self.session_no(&event.session_id));
                    no.map(|no| Record::Event { no, event })
                }
                Op::CloseSession {
                    session_id,
                    ended_at,
                    reason,
                } => self.session_no(session_id).map(|no| {
                    closed.push(session_id.clone());
                    Record::Close {
                        no,
                        ended_at: *ended_at,
                        reason,
                    }
                }),
            };
            match record {
                Some(record) => {
                    let spans = log::encode(&record, &mut self.scratch, &mut self.out);
                    let no = record.session_no();
                    let event = match (&request.op, spans) {
                        (Op::Append(event), Some(spans)) => {
                            Some(Appended::event(no, event, spans, base))
                        }
                        _ => None,
                    };
                    accepted.push((no, request, event));
                }
                None => {
                    self.failed.note(&request);
                    request.broken.store(true, Ordering::Release);
                }
            }
        }
        if let Err(e) = self.write_out() {
            tracing::error!(error = %e, events = accepted.len(), "the commit log refused a write");
            for (_, request, _) in &accepted {
                self.failed.note(request);
                request.broken.store(true, Ordering::Release);
            }
            accepted.clear();
            self.accepted = accepted;
            return;
        }
        self.last_no = next_no;
        self.open.extend(opened);
        for session_id in closed {
            self.open.remove(&session_id);
            self.failed.0.remove(&session_id);
        }
        for (no, request, handed) in accepted.drain(..) {
            match request.op {
                Op::OpenSession(header) => self.appended.push(Appended::Open { no, header }),
                Op::Append(event) => {
                    self.appended.extend(handed);
                    spent.push(event);
                }
                Op::CloseSession {
                    ended_at, reason, ..
                } => self.appended.push(Appended::Close {
                    no,
                    ended_at,
                    reason,
                }),
            }
        }
        self.accepted = accepted;
    }

    fn write_out(&mut self) -> Result<(), JournalError> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.log
            .append(&self.out, self.sync == SyncMode::Full)
            .map_err(|e| io_error("appending to the commit log", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::CanonicalJson;
    use crate::chain::VerifyOutcome;
    use crate::chain::{no_findings, test_header as header, Chain};
    use crate::store::SessionFilter;
    use crate::SyncMode;
    use serde_json::json;
    use std::fs::File;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sessions_commit_complete_verifiable_chains() {
        concurrent_sessions(SyncMode::Normal).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sessions_commit_complete_verifiable_chains_with_fsync() {
        concurrent_sessions(SyncMode::Full).await;
    }

    async fn concurrent_sessions(sync: SyncMode) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), sync).unwrap();
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
        writer.shutdown();
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

    /// Once the store has caught up past `ROTATE_AT`, the log is emptied under the writer, which
    /// reserves and maps it again: the events committed before and after are all stored, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_emptied_once_stored_and_appends_go_on_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let writer = Writer::start(&store).unwrap();
        let broken = Arc::new(AtomicBool::new(false));
        let header = header("long");
        let mut chain = Chain::start(&header).unwrap();
        writer.open_session(header, &broken).await.unwrap();
        let text = "y".repeat(64 * 1024);
        let log_len = || std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        let mut emptied = false;
        for i in 0..200 {
            let body = CanonicalJson::of(&json!({"i": i, "text": text}));
            let event = chain.next_event(i, "db.query", body, no_findings());
            writer.append(event, &broken).await.unwrap();
            if i == 99 {
                // 6.4 MB committed: past ROTATE_AT, once the ingester has stored it.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while log_len() >= ROTATE_AT {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the log was never emptied"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                emptied = true;
            }
        }
        assert!(emptied);
        writer.shutdown();
        let session = store.find_session("long").unwrap();
        assert_eq!(session.events, 200);
        assert!(matches!(
            store.verify_session(&session).unwrap(),
            VerifyOutcome::Intact { events: 200, .. }
        ));
    }

    /// The store's copy yields to other work once it has caught up, and returns to normal priority
    /// as soon as it falls more than `LAG_BOUND` behind, so that its lag stays bounded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ingester_runs_idle_once_caught_up_and_not_when_far_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let writer = Writer::start(&store).unwrap();
        let priority = &writer.shared.ingest_priority;
        let broken = Arc::new(AtomicBool::new(false));
        let header = header("bulk");
        let mut chain = Chain::start(&header).unwrap();
        writer.open_session(header, &broken).await.unwrap();
        if !IngestPriority::is_available() {
            // Without the right to return to normal priority, the ingester never leaves it.
            writer.shutdown();
            assert!(!priority.is_lowered());
            return;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !priority.is_lowered() {
            assert!(
                std::time::Instant::now() < deadline,
                "the ingester never went to idle priority"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = "z".repeat(64 * 1024);
        for i in 0..(LAG_BOUND / (64 * 1024) + 8) as i64 {
            let body = CanonicalJson::of(&json!({"i": i, "text": text}));
            writer
                .append_queued(
                    chain.next_event(i, "db.query", body, no_findings()),
                    &broken,
                )
                .await;
        }
        // One commit of more than LAG_BOUND: the ingester cannot have caught up with it yet.
        writer.commit().await;
        assert!(!priority.is_lowered());
        writer.shutdown();
        assert_eq!(
            store.find_session("bulk").unwrap().events,
            LAG_BOUND / (64 * 1024) + 8
        );
    }

    /// Emptying the log holds the write side without committing; a session that found it busy must be
    /// woken when it is let go, or it waits forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_waiting_on_a_held_write_side_is_woken_when_it_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let writer = Writer::start(&store).unwrap();
        let held = writer.shared.hold_write_side();
        let session = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let broken = Arc::new(AtomicBool::new(false));
                writer.open_session(header("w"), &broken).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !session.is_finished(),
            "the commit cannot happen while the write side is held"
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .expect("the waiting session was never woken")
            .unwrap()
            .unwrap();
    }

    /// A record cut short by a power loss is cut off at start: the next record appended must not be
    /// glued to it (it once was, and the store lost it).
    #[tokio::test]
    async fn a_torn_record_left_in_the_log_does_not_swallow_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        std::fs::write(dir.path().join(LOG_FILE), b"0badc0de {\"op\":\"ev").unwrap();
        let writer = Writer::start(&store).unwrap();
        let broken = Arc::new(AtomicBool::new(false));
        writer.open_session(header("after"), &broken).await.unwrap();
        writer.shutdown();
        assert!(store.find_session("after").is_ok());
    }

    /// A gateway killed mid-append leaves its records, maybe one cut short, then the zeros of the
    /// log's reservation: the records are kept, and appends go on after them, in a session numbered
    /// after the left ones.
    #[tokio::test]
    async fn a_log_left_with_its_reservation_keeps_its_records_and_grows_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let (mut log, _) = log::tests::session_log("before", 1, 4, 0);
        let last = log[..log.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        log.truncate(last + (log.len() - last) / 2);
        log.resize(log.len() + 64 * 1024, 0);
        std::fs::write(dir.path().join(LOG_FILE), &log).unwrap();

        let writer = Writer::start(&store).unwrap();
        let broken = Arc::new(AtomicBool::new(false));
        writer.open_session(header("after"), &broken).await.unwrap();
        writer.shutdown();
        assert_eq!(store.find_session("before").unwrap().events, 3);
        assert!(store.find_session("after").is_ok());
    }

    /// The log a gateway would take over is damaged in the middle (recovery did not see it: the
    /// store was opened before): the gateway sets the tail aside and does not start.
    #[test]
    fn a_gateway_does_not_start_on_a_damaged_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let (log, damaged) = log::tests::log_damaged_in_the_middle();
        std::fs::write(dir.path().join(LOG_FILE), &log).unwrap();
        for _ in 0..2 {
            let refused = Writer::start(&store).err().unwrap();
            assert!(matches!(refused, JournalError::DamagedLog(_)), "{refused}");
        }
        assert_eq!(
            std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(),
            damaged
        );
        assert_eq!(
            recovery::unacknowledged_damage(dir.path()).unwrap().len(),
            1
        );
        assert_eq!(store.find_session("s1").unwrap().events, 1);
    }

    #[tokio::test]
    async fn a_failed_write_breaks_its_sessions_and_refuses_their_later_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let read_only = File::open(store.path()).unwrap();
        let mut side = WriteSide {
            log: Appender::new(read_only, 0),
            sync: SyncMode::Normal,
            failed: FailedSessions::default(),
            open: FxHashMap::from_iter([("s1".to_string(), 1)]),
            last_no: 1,
            scratch: String::new(),
            out: Vec::new(),
            spare: Vec::new(),
            appended: Vec::new(),
            accepted: Vec::new(),
        };
        let header = header("s1");
        let mut chain = Chain::start(&header).unwrap();
        let broken = Arc::new(AtomicBool::new(false));
        let request = |event| Request {
            op: Op::Append(event),
            broken: broken.clone(),
        };
        let first = chain.next_event(1, "db.query", CanonicalJson::of(&json!({})), no_findings());
        side.commit(&mut vec![request(first)], &mut Vec::new());
        assert!(
            broken.load(Ordering::Acquire),
            "a write the log refused is reported"
        );

        let writable = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("other.log"))
            .or_else(|_| File::create(dir.path().join("other.log")))
            .unwrap();
        side.log = Appender::new(writable, 0);
        broken.store(false, Ordering::Release);
        let second = chain.next_event(2, "db.query", CanonicalJson::of(&json!({})), no_findings());
        side.commit(&mut vec![request(second)], &mut Vec::new());
        assert!(
            broken.load(Ordering::Acquire),
            "later events of a failed session are refused"
        );
        assert_eq!(
            side.log.len(),
            0,
            "nothing of the failed session reached the log"
        );
    }
}
