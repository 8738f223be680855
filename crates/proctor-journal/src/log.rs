//! The commit log: where an event becomes durable before its statement is forwarded.
//!
//! A commit is one `write` of newline-terminated records to `journal.log` (plus an fsync with
//! `sync = "full"`): cheap enough to make before every forwarded statement, where a SQLite transaction is
//! not. A background ingester copies the records into the SQLite store in large transactions, and empties
//! the log once the store has caught up. Ingestion is idempotent (keyed by session number and sequence),
//! so replaying records that were already copied, after a crash at any point, changes nothing.
//!
//! Each record is `<crc32 of the JSON, 8 hex digits> <JSON>\n`. A record cut short (the machine lost
//! power mid-write) fails its checksum or lacks its newline, and ends the replay: it was never
//! acknowledged. Hand-written because no maintained crate offers this small a write-ahead log with an
//! idempotent replay into SQLite.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::canonical::{hex_lower, write_str};
use crate::chain::{NewEvent, SessionHeader};
use crate::tlog::{self, SealSchedule};
use crate::JournalError;

pub(crate) const LOG_FILE: &str = "journal.log";
/// The most the ingester reads from the log in one round.
const MAX_ROUND: u64 = 8 * 1024 * 1024;

/// One record of the log.
pub(crate) enum Record<'a> {
    Open {
        no: i64,
        header: &'a SessionHeader,
    },
    Event {
        no: i64,
        event: &'a NewEvent,
    },
    Close {
        no: i64,
        ended_at: i64,
        reason: &'a str,
    },
}

fn push_int(json: &mut String, key: &str, value: i64) {
    json.push_str(",\"");
    json.push_str(key);
    json.push_str("\":");
    json.push_str(itoa::Buffer::new().format(value));
}

fn push_str(json: &mut String, key: &str, value: &str) {
    json.push_str(",\"");
    json.push_str(key);
    json.push_str("\":");
    write_str(value, json);
}

/// Appends one record, with its checksum and newline, to `out`.
pub(crate) fn encode(record: &Record<'_>, scratch: &mut String, out: &mut Vec<u8>) {
    let json = scratch;
    json.clear();
    match record {
        Record::Open { no, header } => {
            json.push_str("{\"op\":\"open\"");
            push_int(json, "no", *no);
            push_str(json, "id", &header.session_id);
            push_str(json, "protocol", &header.protocol);
            push_str(json, "identity", &header.identity);
            push_str(json, "connection", &header.connection);
            push_str(json, "client_addr", &header.client_addr);
            push_int(json, "started_at", header.started_at);
        }
        Record::Event { no, event } => {
            json.push_str("{\"op\":\"event\"");
            push_int(json, "no", *no);
            push_int(json, "seq", event.seq as i64);
            push_int(json, "at", event.at);
            push_str(json, "kind", event.kind);
            json.push_str(",\"body\":");
            json.push_str(event.body.as_str());
            json.push_str(",\"findings\":");
            json.push_str(event.findings.as_str());
            push_str(json, "prev", &event.prev);
            push_str(json, "hash", &event.hash);
        }
        Record::Close {
            no,
            ended_at,
            reason,
        } => {
            json.push_str("{\"op\":\"close\"");
            push_int(json, "no", *no);
            push_int(json, "ended_at", *ended_at);
            push_str(json, "reason", reason);
        }
    }
    json.push('}');
    let crc = crc32fast::hash(json.as_bytes());
    out.extend_from_slice(hex_lower(&crc.to_be_bytes()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(json.as_bytes());
    out.push(b'\n');
}

/// A record as read back; strings borrow from the log where they hold no escapes.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    no: i64,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    protocol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    identity: Option<Cow<'a, str>>,
    #[serde(borrow)]
    connection: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client_addr: Option<Cow<'a, str>>,
    started_at: Option<i64>,
    seq: Option<i64>,
    at: Option<i64>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
    #[serde(borrow)]
    findings: Option<&'a RawValue>,
    #[serde(borrow)]
    prev: Option<Cow<'a, str>>,
    #[serde(borrow)]
    hash: Option<Cow<'a, str>>,
    ended_at: Option<i64>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

fn missing(field: &str) -> JournalError {
    JournalError::Malformed(format!("log record lacks {field}"))
}

/// Copies the commit log into the SQLite store.
pub(crate) struct Ingester {
    conn: Connection,
    log: File,
    offset: u64,
    buf: Vec<u8>,
    data_dir: PathBuf,
    node: String,
    seals: SealSchedule,
    /// Set until the first seal pass, which seals whatever an earlier run left unsealed.
    seal_everything: bool,
}

impl Ingester {
    /// Opens the log for reading, resuming where the store says ingestion stopped.
    pub(crate) fn open(conn: Connection, data_dir: &Path) -> Result<Self, JournalError> {
        // Ingestion rewrites the same index and tail pages batch after batch: a larger WAL between
        // checkpoints (and a cache that holds those pages) writes each of them to the database once.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        conn.pragma_update(None, "cache_size", -32_768)?;
        let log = File::open(data_dir.join(LOG_FILE)).map_err(|source| JournalError::DataDir {
            path: data_dir.join(LOG_FILE).display().to_string(),
            source,
        })?;
        let saved: Option<i64> = conn
            .query_row(
                "SELECT value FROM journal_state WHERE key = 'log_offset'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        let len = log.metadata().map(|m| m.len()).unwrap_or(0);
        let offset = saved.map_or(0, |o| o as u64);
        Ok(Self {
            conn,
            log,
            offset: if offset > len { 0 } else { offset },
            buf: Vec::new(),
            data_dir: data_dir.to_path_buf(),
            node: tlog::node_name(),
            seals: SealSchedule::default(),
            seal_everything: true,
        })
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Ingests every complete record available now. Returns the offset reached and the log's length.
    pub(crate) fn ingest_available(&mut self) -> Result<(u64, u64), JournalError> {
        loop {
            let len = self
                .log
                .metadata()
                .map_err(|e| JournalError::CommitFailed(e.to_string()))?
                .len();
            if len < self.offset {
                self.offset = 0;
            }
            if len == self.offset {
                return Ok((self.offset, len));
            }
            let want = (len - self.offset).min(MAX_ROUND);
            self.buf.clear();
            self.log
                .seek(SeekFrom::Start(self.offset))
                .and_then(|_| (&mut self.log).take(want).read_to_end(&mut self.buf))
                .map_err(|e| JournalError::CommitFailed(format!("reading the commit log: {e}")))?;
            let complete = match self.buf.iter().rposition(|&b| b == b'\n') {
                Some(last) => last + 1,
                None => return Ok((self.offset, len)),
            };
            let buf = std::mem::take(&mut self.buf);
            let applied = self.apply(&buf[..complete]);
            self.buf = buf;
            applied?;
            self.offset += complete as u64;
        }
    }

    /// Seals the sessions whose seal is due (see `tlog`), and signs a checkpoint over them. The key is
    /// read each time, so a rotated key takes effect at once.
    pub(crate) fn seal_due(&mut self) -> Result<(), JournalError> {
        let due = self.seals.take_due();
        if due.is_empty() && !self.seal_everything {
            return Ok(());
        }
        let sessions = (!self.seal_everything).then_some(due.as_slice());
        let sealed = tlog::log_key(&self.data_dir).and_then(|key| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tlog::seal(&tx, &key, &self.node, sessions)?;
            Ok(tx.commit()?)
        });
        // The sessions taken from the schedule must not be forgotten: after a failure, the next pass
        // seals everything unsealed.
        self.seal_everything = sealed.is_err();
        sealed
    }

    fn apply(&mut self, lines: &[u8]) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        {
            let mut open = tx.prepare_cached(
                "INSERT OR IGNORE INTO sessions (no, id, protocol, identity, connection, client_addr, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut event = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (session_no, seq, at, kind, body, findings, prev, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut close = tx.prepare_cached(
                "UPDATE sessions SET ended_at = ?2, end_reason = ?3 WHERE no = ?1",
            )?;
            for raw in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let Some(line) = checked(raw) else {
                    tracing::error!("a commit log record fails its checksum; skipping it");
                    continue;
                };
                match line.op.as_ref() {
                    "open" => {
                        open.execute(params![
                            line.no,
                            line.id.ok_or_else(|| missing("id"))?,
                            line.protocol.ok_or_else(|| missing("protocol"))?,
                            line.identity.ok_or_else(|| missing("identity"))?,
                            line.connection.ok_or_else(|| missing("connection"))?,
                            line.client_addr.ok_or_else(|| missing("client_addr"))?,
                            line.started_at.ok_or_else(|| missing("started_at"))?,
                        ])?;
                    }
                    "event" => {
                        self.seals.event(line.no);
                        event.execute(params![
                            line.no,
                            line.seq.ok_or_else(|| missing("seq"))?,
                            line.at.ok_or_else(|| missing("at"))?,
                            line.kind.ok_or_else(|| missing("kind"))?,
                            line.body.ok_or_else(|| missing("body"))?.get(),
                            line.findings.ok_or_else(|| missing("findings"))?.get(),
                            line.prev.ok_or_else(|| missing("prev"))?,
                            line.hash.ok_or_else(|| missing("hash"))?,
                        ])?;
                    }
                    "close" => {
                        self.seals.ended(line.no);
                        close.execute(params![
                            line.no,
                            line.ended_at.ok_or_else(|| missing("ended_at"))?,
                            line.reason.ok_or_else(|| missing("reason"))?,
                        ])?;
                    }
                    other => {
                        return Err(JournalError::Malformed(format!(
                            "unknown log record {other:?}"
                        )))
                    }
                }
            }
            let end = self.offset + lines.len() as u64;
            tx.execute(
                "INSERT OR REPLACE INTO journal_state (key, value) VALUES ('log_offset', ?1)",
                [end as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records that the log was emptied.
    pub(crate) fn restart(&mut self) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO journal_state (key, value) VALUES ('log_offset', 0)",
            [],
        )?;
        self.offset = 0;
        Ok(())
    }
}

/// Parses a record whose checksum holds.
fn checked(raw: &[u8]) -> Option<Line<'_>> {
    let (crc, json) = raw.split_at_checked(9)?;
    let crc = u32::from_str_radix(std::str::from_utf8(&crc[..8]).ok()?, 16).ok()?;
    if crc32fast::hash(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// Copies what a stopped or crashed gateway left in the log into the store, if no gateway holds the log
/// now. The analyst's commands call it, so that they see every acknowledged event.
pub(crate) fn recover(conn: Connection, data_dir: &Path) -> Result<(), JournalError> {
    let path = data_dir.join(LOG_FILE);
    let Ok(log) = std::fs::OpenOptions::new().write(true).open(&path) else {
        return Ok(());
    };
    if log.try_lock().is_err() {
        return Ok(());
    }
    let mut ingester = Ingester::open(conn, data_dir)?;
    let (offset, len) = ingester.ingest_available()?;
    ingester.seal_due()?;
    if offset == len {
        log.set_len(0)
            .map_err(|e| JournalError::CommitFailed(format!("emptying the commit log: {e}")))?;
        ingester.restart()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::CanonicalJson;
    use crate::chain::VerifyOutcome;
    use crate::chain::{no_findings, Chain};
    use crate::store::{open_connection, Store, SyncMode};
    use serde_json::json;

    #[test]
    fn recovery_replays_complete_records_once_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let header = SessionHeader {
            session_id: "s1".into(),
            protocol: "postgres".into(),
            identity: "alice".into(),
            connection: "app-db".into(),
            client_addr: "127.0.0.1:1".into(),
            started_at: 1,
        };
        let mut chain = Chain::start(&header).unwrap();
        let mut scratch = String::new();
        let mut out = Vec::new();
        encode(
            &Record::Open {
                no: 7,
                header: &header,
            },
            &mut scratch,
            &mut out,
        );
        for i in 0..3 {
            let event = chain.next_event(
                10 + i,
                "db.query",
                CanonicalJson::of(&json!({"i": i})),
                no_findings(),
            );
            encode(
                &Record::Event {
                    no: 7,
                    event: &event,
                },
                &mut scratch,
                &mut out,
            );
        }
        let torn = chain.next_event(
            20,
            "db.query",
            CanonicalJson::of(&json!({"i": 9})),
            no_findings(),
        );
        let mut tail = Vec::new();
        encode(
            &Record::Event {
                no: 7,
                event: &torn,
            },
            &mut scratch,
            &mut tail,
        );
        out.extend_from_slice(&tail[..tail.len() / 2]);
        std::fs::write(dir.path().join(LOG_FILE), &out).unwrap();

        for _ in 0..2 {
            std::fs::write(dir.path().join(LOG_FILE), &out).unwrap();
            recover(
                open_connection(store.path(), SyncMode::Normal).unwrap(),
                dir.path(),
            )
            .unwrap();
            let session = store.find_session("s1").unwrap();
            assert_eq!(session.events, 3);
            assert!(matches!(
                store.verify_session(&session).unwrap(),
                VerifyOutcome::Intact { events: 3, .. }
            ));
        }

        let mut corrupt = out.clone();
        let flip = corrupt.iter().position(|&b| b == b'q').unwrap();
        corrupt[flip] = b'Q';
        assert!(checked(corrupt.split(|&b| b == b'\n').next().unwrap()).is_some());
        let second_line = corrupt.split(|&b| b == b'\n').nth(1).unwrap();
        assert!(
            checked(second_line).is_none(),
            "a changed byte fails the checksum"
        );
    }
}
