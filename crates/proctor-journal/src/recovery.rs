//! What becomes of a data dir whose gateway is gone, before anything reads it: the commit log it left
//! is copied into the store, a damaged tail of that log is set aside, and the sessions it left open are
//! ended.
//!
//! Only a process that holds the log's lock recovers, so never while a gateway runs: the sessions still
//! open in the store are then those of a gateway that died (`kill -9`, a crash, a power loss), and each
//! gets a `session.end` event with the reason [`CUT_SHORT`], timed at its last event, so that its chain
//! ends as a finished session's does and is sealed whole.
//!
//! A damaged record (one with its newline that fails its checksum or does not parse) stops ingestion
//! (see `log`). Recovery then moves the log from that record to its end into a file of the data dir,
//! `journal.log.damaged-<UTC time>`, which nothing deletes, and every command that opens the store
//! refuses to run (naming the file) until an operator acknowledges it with
//! [`Store::acknowledge_damage`]. The acknowledgement is a leaf of the log, naming the file, its size and
//! its SHA-256, and renames the file to `<name>.acknowledged`. Sessions are not ended while damage
//! is unacknowledged: their events may be in the damaged tail.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use sha2::Digest;

use crate::blocks::{self, Block, BlockEvent};
use crate::canonical::{hex_lower, Body};
use crate::chain::{genesis_hash, no_findings, Chain};
use crate::log::{Ingester, LOG_FILE};
use crate::store::{session_header, Store};
use crate::JournalError;

/// The reason recorded for a session whose gateway died under it.
pub const CUT_SHORT: &str = "gateway stopped unexpectedly";
/// How the files that hold a damaged log tail are named: this, then the time it was set aside.
const DAMAGED_PREFIX: &str = "journal.log.damaged-";
/// Added to such a file's name once an operator acknowledged it.
const ACKNOWLEDGED_SUFFIX: &str = ".acknowledged";

fn io_error(what: &str, path: &Path, e: std::io::Error) -> JournalError {
    JournalError::CommitFailed(format!("{what} {}: {e}", path.display()))
}

/// Copies what a stopped or crashed gateway left in the log into the store, sets a damaged tail aside,
/// ends the sessions the gateway left open and seals them, if no gateway holds the log now. Every
/// command that opens the store calls it, so that it sees every acknowledged event.
pub(crate) fn recover(conn: Connection, data_dir: &Path) -> Result<(), JournalError> {
    let path = data_dir.join(LOG_FILE);
    let Ok(log) = OpenOptions::new().read(true).write(true).open(&path) else {
        return Ok(());
    };
    if log.try_lock().is_err() {
        return Ok(());
    }
    let mut ingester = Ingester::open(conn, data_dir)?;
    let (offset, len) = ingester.ingest_available()?;
    if let Some(at) = ingester.damaged_at() {
        set_aside_damaged_tail(&log, data_dir, at)?;
    }
    if unacknowledged_damage(data_dir)?.is_empty() {
        end_cut_sessions(ingester.connection())?;
    }
    ingester.seal_due()?;
    if offset == len || ingester.damaged_at().is_some() {
        log.set_len(0)
            .map_err(|e| io_error("emptying the commit log", &path, e))?;
        ingester.restart()?;
    }
    Ok(())
}

/// Moves the log's bytes from offset `at` on (a damaged record and everything after it, without the
/// zeros of the log's unused reservation) into a new file of the data dir, and cuts the log at `at`.
/// Returns the new file.
pub(crate) fn set_aside_damaged_tail(
    log: &File,
    data_dir: &Path,
    at: u64,
) -> Result<PathBuf, JournalError> {
    let name = format!(
        "{DAMAGED_PREFIX}{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ")
    );
    let path = data_dir.join(&name);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io_error("creating", &path, e))?;
    let log_path = data_dir.join(LOG_FILE);
    let mut reader = log;
    reader
        .seek(SeekFrom::Start(at))
        .map_err(|e| io_error("reading", &log_path, e))?;
    let bytes = copy_without_trailing_zeros(&mut reader, &mut out)
        .map_err(|e| io_error("copying the damaged tail into", &path, e))?;
    out.sync_all()
        .and_then(|()| File::open(data_dir).and_then(|dir| dir.sync_all()))
        .map_err(|e| io_error("syncing", &path, e))?;
    log.set_len(at)
        .and_then(|()| log.sync_all())
        .map_err(|e| io_error("cutting the damaged tail off", &log_path, e))?;
    tracing::error!(
        file = %path.display(),
        offset = at,
        bytes,
        "the commit log is damaged: its records from offset {at} on were moved aside into {name} and \
         are not in the store; every command refuses to run until `proctor log acknowledge-damage`"
    );
    Ok(path)
}

/// Copies `from` into `to` up to its last byte that is not zero; returns how many bytes it copied.
fn copy_without_trailing_zeros(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<u64> {
    let mut chunk = vec![0u8; 1024 * 1024];
    let (mut copied, mut held_zeros) = (0u64, 0u64);
    loop {
        let read = from.read(&mut chunk)?;
        if read == 0 {
            return Ok(copied);
        }
        let chunk = &chunk[..read];
        match chunk.iter().rposition(|&b| b != 0) {
            None => held_zeros += read as u64,
            Some(last) => {
                std::io::copy(&mut std::io::repeat(0).take(held_zeros), to)?;
                to.write_all(&chunk[..=last])?;
                copied += held_zeros + last as u64 + 1;
                held_zeros = (read - last - 1) as u64;
            }
        }
    }
}

/// The names of the files holding a damaged log tail that no operator acknowledged yet, oldest first.
pub(crate) fn unacknowledged_damage(data_dir: &Path) -> Result<Vec<String>, JournalError> {
    let entries = std::fs::read_dir(data_dir).map_err(|source| JournalError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| JournalError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(DAMAGED_PREFIX) && !name.ends_with(ACKNOWLEDGED_SUFFIX) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The error every command meets while damage is unacknowledged.
pub(crate) fn damage_error(data_dir: &Path, files: &[String]) -> JournalError {
    JournalError::DamagedLog(format!(
        "the commit log was found damaged: {} in {} holds the records from the damaged one on, which \
         are not in the store. Keep a copy, then run `proctor log acknowledge-damage`",
        files.join(", "),
        data_dir.display()
    ))
}

/// Ends every session still open in the store with a `session.end` event (or, if its last event is
/// one already, with the reason that event gives): call only while holding the log's lock, when no
/// gateway runs. A session whose last stored event cannot be read is left open, for `proctor log
/// check` to name.
fn end_cut_sessions(conn: &mut Connection) -> Result<(), JournalError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let open: Vec<i64> = tx
        .prepare("SELECT no FROM sessions WHERE ended_at IS NULL ORDER BY no")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for no in open {
        let Some(header) = session_header(&tx, no)? else {
            continue;
        };
        let last = match blocks::last_event(&tx, no, &header.session_id) {
            Ok(last) => last,
            Err(e) => {
                tracing::error!(session = %header.session_id, error = %e, "cannot read the last event of a session left open");
                continue;
            }
        };
        let (ended_at, reason) = match last {
            Some(event) if event.kind == "session.end" => {
                let reason = event.body["reason"]
                    .as_str()
                    .unwrap_or(CUT_SHORT)
                    .to_owned();
                (event.at, reason)
            }
            last => {
                let (seq, head, at) = match last {
                    Some(event) => (event.seq, event.hash, event.at),
                    None => (0, genesis_hash(&header)?, header.started_at),
                };
                let mut chain = Chain::resume(&header.session_id, seq, &head)?;
                let body = Body::new().str("reason", CUT_SHORT).finish();
                let event = chain.next_event(at, "session.end", body, no_findings());
                let mut block = Block::default();
                block.push(&BlockEvent {
                    seq: event.seq,
                    at: event.at,
                    kind: event.kind,
                    body: event.body.as_str(),
                    findings: event.findings.as_str(),
                    prev: &event.prev,
                    hash: &event.hash,
                });
                block.insert(&tx, no)?;
                (at, CUT_SHORT.to_owned())
            }
        };
        tx.execute(
            "UPDATE sessions SET ended_at = ?2, end_reason = ?3 WHERE no = ?1",
            rusqlite::params![no, ended_at, reason],
        )?;
        tracing::warn!(session = %header.session_id, "ended a session that a gateway left open when it stopped unexpectedly");
    }
    tx.commit()?;
    Ok(())
}

/// A damaged log tail that an operator acknowledged.
#[derive(Clone, Debug)]
pub struct AcknowledgedDamage {
    /// The file's name once acknowledged.
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Store {
    /// Acknowledges every damaged log tail set aside so far: each is recorded as a leaf of the log
    /// (`log.damage_acknowledged`: its file's name, size and SHA-256) and its file is renamed to
    /// `<name>.acknowledged`, kept. Commands run again afterwards.
    pub fn acknowledge_damage(&self) -> Result<Vec<AcknowledgedDamage>, JournalError> {
        let mut acknowledged = Vec::new();
        for name in unacknowledged_damage(self.data_dir())? {
            let path = self.data_dir().join(&name);
            let mut file = File::open(&path).map_err(|e| io_error("reading", &path, e))?;
            let mut hasher = sha2::Sha256::new();
            let bytes =
                std::io::copy(&mut file, &mut hasher).map_err(|e| io_error("reading", &path, e))?;
            let sha256 = hex_lower(&hasher.finalize());
            let mut fields = serde_json::Map::new();
            fields.insert("bytes".into(), bytes.into());
            fields.insert("file".into(), name.clone().into());
            fields.insert("sha256".into(), sha256.clone().into());
            self.change(|_| Ok(((), vec![("log.damage_acknowledged", fields)])))?;
            let renamed = format!("{name}{ACKNOWLEDGED_SUFFIX}");
            std::fs::rename(&path, self.data_dir().join(&renamed))
                .map_err(|e| io_error("renaming", &path, e))?;
            acknowledged.push(AcknowledgedDamage {
                file: renamed,
                bytes,
                sha256,
            });
        }
        Ok(acknowledged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{test_header, VerifyOutcome};
    use crate::log::tests::{log_damaged_in_the_middle, session_log};
    use crate::store::SyncMode;
    use crate::tlog::leaves_of;

    fn intact_events(store: &Store, id: &str) -> u64 {
        let session = store.find_session(id).unwrap();
        match store.verify_session(&session).unwrap() {
            VerifyOutcome::Intact { events, .. } => events,
            broken => panic!("{id}: {broken:?}"),
        }
    }

    fn sealed_up_to(store: &Store, id: &str) -> Option<i64> {
        store
            .conn()
            .query_row(
                "SELECT l.last_seq FROM log_sealed l JOIN sessions s ON s.no = l.session_no \
                 WHERE s.id = ?1",
                [id],
                |row| row.get(0),
            )
            .ok()
    }

    #[test]
    fn a_session_left_open_ends_at_its_last_event_and_its_chain_holds_and_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        std::fs::write(dir.path().join(LOG_FILE), session_log("cut", 1, 3, 0).0).unwrap();
        let store = {
            drop(store);
            Store::open(dir.path(), SyncMode::Normal).unwrap()
        };
        let session = store.find_session("cut").unwrap();
        assert_eq!(session.end_reason.as_deref(), Some(CUT_SHORT));
        let events = store.events("cut").unwrap();
        let (last, end) = (&events[2], &events[3]);
        assert_eq!((end.seq, end.kind.as_str()), (4, "session.end"));
        assert_eq!(end.body["reason"], CUT_SHORT);
        assert_eq!(end.at, last.at, "timed at the last event it recorded");
        assert_eq!(session.ended_at, Some(last.at));
        assert_eq!(intact_events(&store, "cut"), 4);
        assert_eq!(sealed_up_to(&store, "cut"), Some(4));
    }

    #[test]
    fn a_session_with_no_event_or_already_ended_is_closed_without_a_second_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let mut conn = store.conn();
        for (no, id) in [(1, "empty"), (2, "ended")] {
            let header = test_header(id);
            conn.execute(
                "INSERT INTO sessions (no, id, protocol, identity, connection, client_addr, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![no, id, header.protocol, header.identity, header.connection, header.client_addr, header.started_at],
            )
            .unwrap();
        }
        let mut chain = Chain::start(&test_header("ended")).unwrap();
        let body = Body::new().str("reason", "client closed").finish();
        let end = chain.next_event(42, "session.end", body, no_findings());
        let tx = conn.transaction().unwrap();
        let mut block = Block::default();
        block.push(&BlockEvent {
            seq: end.seq,
            at: end.at,
            kind: end.kind,
            body: end.body.as_str(),
            findings: end.findings.as_str(),
            prev: &end.prev,
            hash: &end.hash,
        });
        block.insert(&tx, 2).unwrap();
        tx.commit().unwrap();
        end_cut_sessions(&mut conn).unwrap();
        drop(conn);

        let empty = store.find_session("empty").unwrap();
        assert_eq!(empty.end_reason.as_deref(), Some(CUT_SHORT));
        assert_eq!(empty.ended_at, Some(test_header("empty").started_at));
        assert_eq!(intact_events(&store, "empty"), 1);
        let ended = store.find_session("ended").unwrap();
        assert_eq!(
            (ended.end_reason.as_deref(), ended.ended_at),
            (Some("client closed"), Some(42))
        );
        assert_eq!(intact_events(&store, "ended"), 1, "no second session.end");
    }

    #[test]
    fn a_damaged_log_is_set_aside_and_every_open_refuses_until_it_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), SyncMode::Normal).unwrap());
        let (log, damaged) = log_damaged_in_the_middle();
        let mut reserved = log.clone();
        reserved.resize(log.len() + 4096, 0);
        std::fs::write(dir.path().join(LOG_FILE), &reserved).unwrap();

        for _ in 0..2 {
            let refused = Store::open(dir.path(), SyncMode::Normal).err().unwrap();
            assert!(matches!(refused, JournalError::DamagedLog(_)));
            assert!(
                refused
                    .to_string()
                    .contains("proctor log acknowledge-damage"),
                "{refused}"
            );
        }
        let files = unacknowledged_damage(dir.path()).unwrap();
        assert_eq!(files.len(), 1, "set aside once: {files:?}");
        assert!(refused_names(dir.path(), &files));
        let kept = std::fs::read(dir.path().join(&files[0])).unwrap();
        assert_eq!(kept, log[damaged as usize..], "the tail, without the zeros");
        assert_eq!(
            std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(),
            0
        );

        let store = Store::open_despite_damage(dir.path(), SyncMode::Normal).unwrap();
        let s1 = store.find_session("s1").unwrap();
        assert_eq!(s1.events, 1, "only what came before the damaged record");
        assert_eq!(
            s1.end_reason, None,
            "not ended while its events may lie in the tail"
        );
        assert_eq!(sealed_up_to(&store, "s1"), Some(1));
        assert!(store.find_session("s2").is_err());

        let acknowledged = store.acknowledge_damage().unwrap();
        assert_eq!(acknowledged.len(), 1);
        assert_eq!(acknowledged[0].bytes, kept.len() as u64);
        assert_eq!(
            acknowledged[0].sha256,
            hex_lower(&sha2::Sha256::digest(&kept))
        );
        assert_eq!(leaves_of(&store, "log.damage_acknowledged"), 1);
        assert!(dir.path().join(&acknowledged[0].file).exists(), "kept");
        drop(store);

        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let s1 = store.find_session("s1").unwrap();
        assert_eq!(s1.end_reason.as_deref(), Some(CUT_SHORT));
        assert_eq!(intact_events(&store, "s1"), 2);
        assert!(store.acknowledge_damage().unwrap().is_empty());
    }

    /// Whether the refusal names every file.
    fn refused_names(data_dir: &Path, files: &[String]) -> bool {
        let refused = Store::open(data_dir, SyncMode::Normal)
            .err()
            .unwrap()
            .to_string();
        files.iter().all(|file| refused.contains(file.as_str()))
    }

    #[tokio::test]
    async fn the_sessions_of_a_running_gateway_are_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let writer = crate::Writer::start(&store).unwrap();
        let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let header = test_header("live");
        let mut chain = Chain::start(&header).unwrap();
        writer.open_session(header, &broken).await.unwrap();
        let body = Body::new().str("sql", "select 1").finish();
        let event = chain.next_event(7, "db.query", body, no_findings());
        writer.append(event, &broken).await.unwrap();
        // A command run meanwhile, as `proctor sessions list` is.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let seen = loop {
            let command = Store::open(dir.path(), SyncMode::Normal).unwrap();
            if let Ok(session) = command.find_session("live") {
                if session.events == 1 {
                    break session;
                }
            }
            assert!(std::time::Instant::now() < deadline, "never ingested");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(
            seen.end_reason, None,
            "the gateway holding the log is alive"
        );
        writer.shutdown();
    }

    #[test]
    fn a_tail_is_copied_without_the_zeros_that_end_it() {
        let mut tail = b"ab\0\0cd".to_vec();
        tail.resize(3 * 1024 * 1024, 0);
        let mut out = Vec::new();
        let copied = copy_without_trailing_zeros(&mut tail.as_slice(), &mut out).unwrap();
        assert_eq!((copied, out.as_slice()), (6, &b"ab\0\0cd"[..]));
        let mut spread = vec![0u8; 2 * 1024 * 1024 + 5];
        spread[0] = 1;
        spread[2 * 1024 * 1024] = 2;
        out.clear();
        copy_without_trailing_zeros(&mut spread.as_slice(), &mut out).unwrap();
        assert_eq!(out, spread[..=2 * 1024 * 1024]);
    }
}
