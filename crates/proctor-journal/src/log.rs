//! The commit log: where an event becomes durable before its statement is forwarded.
//!
//! A commit is one append of newline-terminated records to `journal.log` (a copy into its memory map,
//! see `appender`, plus an fsync with `sync = "full"`): cheap enough to make before every forwarded
//! statement, where a SQLite transaction is not. A background ingester copies the records into the
//! SQLite store in large transactions, and empties the log once the store has caught up. Ingestion is
//! idempotent (keyed by session number and sequence), so replaying records that were already copied,
//! after a crash at any point, changes nothing.
//!
//! The writer also hands each append's records to the ingester in memory ([`Handoff`]), so that in the
//! common case the ingester copies them without reading the log back and parsing it; the log is read
//! when the handoff does not continue where ingestion stands (at start, or after the handoff grew past
//! its bound while the store lagged). An event's record ends with the line that stores it in its
//! block, so a handed-over event is handed over as the appended bytes and where its line lies in
//! them: the ingester copies the line and encodes nothing again, and the event itself is freed by the
//! thread that committed it, not the ingester.
//!
//! Each record is `<crc32 of the JSON, 8 hex digits> <JSON>\n`. A record cut short (the gateway
//! stopped mid-append) lacks its newline, or runs into the zeros past the log's end, and ends the
//! replay: it was never acknowledged. A record with its newline that fails its checksum or does not
//! parse was damaged after it was written: ingestion stops there and copies nothing after it, so that
//! the store never holds a chain with a hole (see `recovery` for what becomes of the rest).
//! Hand-written because no maintained crate offers this small a write-ahead log with an idempotent
//! replay into SQLite.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::blocks::{self, Block, BlockEvent};
use crate::canonical::{push_hex, write_str};
use crate::chain::{NewEvent, SessionHeader};
use crate::tlog::{self, SealSchedule};
use crate::JournalError;

pub(crate) const LOG_FILE: &str = "journal.log";
/// The most the ingester reads from the log in one round.
const MAX_ROUND: u64 = 8 * 1024 * 1024;
/// The most log bytes whose records the handoff keeps in memory; beyond, the ingester reads the log.
const MAX_HANDOFF: u64 = 32 * 1024 * 1024;
/// How many block buffers the ingester keeps from one round to the next, and the largest it keeps:
/// enough for the busy sessions of a round, and at most 16 MiB held while idle.
const SPARE_BUFFERS: usize = 16;
const SPARE_BUFFER_BYTES: usize = 1024 * 1024;

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

/// A record the writer appended, handed to the ingester in memory. An event is handed over as where
/// its record lies in the log, since that record ends with the event's block line (see [`encode`]).
#[derive(Clone)]
pub(crate) enum Appended {
    Open {
        no: i64,
        header: SessionHeader,
    },
    Event {
        no: i64,
        seq: u64,
        kind: &'static str,
        /// The log's bytes of the event's block line, after its opening brace.
        line: Range<u64>,
        /// The log's bytes of the event's hash.
        hash: Range<u64>,
    },
    Close {
        no: i64,
        ended_at: i64,
        reason: String,
    },
}

/// Where an event's block line and its hash lie in the bytes that [`encode`] appended to.
pub(crate) struct EventSpans {
    pub(crate) line: Range<usize>,
    pub(crate) hash: Range<usize>,
}

impl Appended {
    /// `event`, which [`encode`] appended to bytes that go into the log at offset `base`.
    pub(crate) fn event(no: i64, event: &NewEvent, spans: EventSpans, base: u64) -> Self {
        let at = |span: Range<usize>| base + span.start as u64..base + span.end as u64;
        Appended::Event {
            no,
            seq: event.seq,
            kind: event.kind,
            line: at(spans.line),
            hash: at(spans.hash),
        }
    }

    /// The record as the store takes it; `bytes` are the log's bytes from offset `from` on.
    fn entry<'a>(&'a self, bytes: &'a [u8], from: u64) -> Result<Entry<'a>, JournalError> {
        let text = |span: &Range<u64>| {
            span.start
                .checked_sub(from)
                .zip(span.end.checked_sub(from))
                .and_then(|(start, end)| bytes.get(start as usize..end as usize))
                .and_then(|slice| std::str::from_utf8(slice).ok())
                .ok_or_else(|| {
                    JournalError::Malformed("a handed-over event lies outside its bytes".into())
                })
        };
        Ok(match self {
            Appended::Open { no, header } => Entry::Open {
                no: *no,
                id: &header.session_id,
                protocol: &header.protocol,
                identity: &header.identity,
                connection: &header.connection,
                client_addr: &header.client_addr,
                started_at: header.started_at,
            },
            Appended::Event {
                no,
                seq,
                kind,
                line,
                hash,
            } => Entry::Event {
                no: *no,
                event: EventEntry::Line {
                    seq: *seq,
                    kind,
                    fields: text(line)?,
                    hash: text(hash)?,
                },
            },
            Appended::Close {
                no,
                ended_at,
                reason,
            } => Entry::Close {
                no: *no,
                ended_at: *ended_at,
                reason,
            },
        })
    }
}

/// The records appended to the log since the ingester last took them: the log's bytes `from..to`.
#[derive(Default)]
pub(crate) struct Handoff {
    from: u64,
    to: u64,
    records: Vec<Appended>,
    /// The log's bytes `from..to`, which the events' lines are read from.
    bytes: Vec<u8>,
    /// Whether `records` holds every record of `from..to`; false once they outgrew [`MAX_HANDOFF`].
    dropped: bool,
}

impl Handoff {
    /// Adds the records of one append, whose `bytes` were written at `from..to`.
    pub(crate) fn push(
        &mut self,
        from: u64,
        to: u64,
        records: impl IntoIterator<Item = Appended>,
        bytes: &[u8],
    ) {
        if from == to {
            return;
        }
        if self.from == self.to {
            self.from = from;
        } else if from != self.to {
            self.dropped = true;
        }
        self.to = to;
        if self.dropped || to - self.from > MAX_HANDOFF {
            self.dropped = true;
            self.records = Vec::new();
            self.bytes = Vec::new();
        } else {
            self.records.extend(records);
            self.bytes.extend_from_slice(bytes);
        }
    }

    /// How many bytes of the log it spans: what the store has yet to take in.
    pub(crate) fn span(&self) -> u64 {
        self.to - self.from
    }

    /// Empties the handoff and keeps its buffers: the writer and the ingester swap two handoffs
    /// round after round, so that a round does not allocate them anew.
    pub(crate) fn clear(&mut self) {
        self.from = 0;
        self.to = 0;
        self.records.clear();
        self.bytes.clear();
        self.dropped = false;
    }
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

/// Appends one record, with its checksum and newline, to `out`. An event's record ends with the
/// line that stores it in a block (its fields from `seq` on, in the block's order); for an event,
/// returns where that line and the event's hash lie in `out`.
pub(crate) fn encode(
    record: &Record<'_>,
    scratch: &mut String,
    out: &mut Vec<u8>,
) -> Option<EventSpans> {
    let json = scratch;
    json.clear();
    let mut spans = None;
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
            let line = json.len() + 1;
            push_int(json, "seq", event.seq as i64);
            push_int(json, "at", event.at);
            push_str(json, "kind", event.kind);
            json.push_str(",\"body\":");
            json.push_str(event.body.as_str());
            json.push_str(",\"findings\":");
            json.push_str(event.findings.as_str());
            push_str(json, "prev", &event.prev);
            push_str(json, "hash", &event.hash);
            // The hash is hex, written without escapes between its quotes.
            let hash = json.len() - 1 - event.hash.len()..json.len() - 1;
            spans = Some((line, hash));
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
    push_hex(&crc.to_be_bytes(), out);
    out.push(b' ');
    let at = out.len();
    out.extend_from_slice(json.as_bytes());
    out.push(b'\n');
    spans.map(|(line, hash)| EventSpans {
        line: at + line..at + json.len(),
        hash: at + hash.start..at + hash.end,
    })
}

impl<'a> Record<'a> {
    pub(crate) fn session_no(&self) -> i64 {
        match *self {
            Record::Open { no, .. } | Record::Event { no, .. } | Record::Close { no, .. } => no,
        }
    }
}

/// A record as the store takes it, read back from the log or handed over in memory.
enum Entry<'a> {
    Open {
        no: i64,
        id: &'a str,
        protocol: &'a str,
        identity: &'a str,
        connection: &'a str,
        client_addr: &'a str,
        started_at: i64,
    },
    Event {
        no: i64,
        event: EventEntry<'a>,
    },
    Close {
        no: i64,
        ended_at: i64,
        reason: &'a str,
    },
}

/// An event as the store takes it.
enum EventEntry<'a> {
    /// Read back from the log: its fields, encoded into its block.
    Fields(BlockEvent<'a>),
    /// Handed over: the block line that its log record ends with (see [`Block::push_line`]).
    Line {
        seq: u64,
        kind: &'a str,
        fields: &'a str,
        hash: &'a str,
    },
}

impl EventEntry<'_> {
    fn seq(&self) -> u64 {
        match self {
            EventEntry::Fields(event) => event.seq,
            EventEntry::Line { seq, .. } => *seq,
        }
    }

    fn push_to(&self, block: &mut Block) {
        match self {
            EventEntry::Fields(event) => block.push(event),
            EventEntry::Line {
                seq,
                kind,
                fields,
                hash,
            } => block.push_line(*seq, kind, fields, hash),
        }
    }
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
    seq: Option<u64>,
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

fn required<'a>(value: &'a Option<Cow<'_, str>>, field: &str) -> Result<&'a str, JournalError> {
    value.as_deref().ok_or_else(|| missing(field))
}

impl Line<'_> {
    fn entry(&self) -> Result<Entry<'_>, JournalError> {
        let no = self.no;
        Ok(match self.op.as_ref() {
            "open" => Entry::Open {
                no,
                id: required(&self.id, "id")?,
                protocol: required(&self.protocol, "protocol")?,
                identity: required(&self.identity, "identity")?,
                connection: required(&self.connection, "connection")?,
                client_addr: required(&self.client_addr, "client_addr")?,
                started_at: self.started_at.ok_or_else(|| missing("started_at"))?,
            },
            "event" => Entry::Event {
                no,
                event: EventEntry::Fields(BlockEvent {
                    seq: self.seq.ok_or_else(|| missing("seq"))?,
                    at: self.at.ok_or_else(|| missing("at"))?,
                    kind: required(&self.kind, "kind")?,
                    body: self.body.ok_or_else(|| missing("body"))?.get(),
                    findings: self.findings.ok_or_else(|| missing("findings"))?.get(),
                    prev: required(&self.prev, "prev")?,
                    hash: required(&self.hash, "hash")?,
                }),
            },
            "close" => Entry::Close {
                no,
                ended_at: self.ended_at.ok_or_else(|| missing("ended_at"))?,
                reason: required(&self.reason, "reason")?,
            },
            other => {
                return Err(JournalError::Malformed(format!(
                    "unknown log record {other:?}"
                )))
            }
        })
    }
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
    /// The end of the last handoff: where the writer's records end, as far as the ingester knows.
    handed_to: u64,
    /// The last sequence number stored, per session seen since the ingester started and not ended.
    /// (Maps keyed by session numbers, which the gateway assigns, use a fast hash with no key.)
    stored_seq: FxHashMap<i64, u64>,
    /// The buffers of the last round's blocks, emptied, for this round's (see [`SPARE_BUFFERS`]).
    spare_buffers: Vec<String>,
    /// Where the first damaged record of the log starts, once one was met: ingestion stops there.
    damaged_at: Option<u64>,
}

/// Bytes of WAL after which SQLite copies it into the store (a checkpoint).
const WAL_BEFORE_CHECKPOINT: i64 = 64 * 1024 * 1024;

impl Ingester {
    /// Opens the log for reading, resuming where the store says ingestion stopped.
    pub(crate) fn open(conn: Connection, data_dir: &Path) -> Result<Self, JournalError> {
        // Ingestion rewrites the same index and tail pages batch after batch: a larger WAL between
        // checkpoints (and a cache that holds those pages) writes each of them to the database once.
        // SQLite counts the WAL in pages, whose size depends on the version that made the store.
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            WAL_BEFORE_CHECKPOINT / page_size,
        )?;
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
            handed_to: 0,
            stored_seq: FxHashMap::default(),
            spare_buffers: Vec::new(),
            damaged_at: None,
        })
    }

    /// The highest session number in the store.
    pub(crate) fn last_session_no(&self) -> Result<i64, JournalError> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(no), 0) FROM sessions", [], |row| {
                row.get(0)
            })?)
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the log's first damaged record starts, if ingestion met one: nothing from there on is
    /// in the store.
    pub(crate) fn damaged_at(&self) -> Option<u64> {
        self.damaged_at
    }

    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Ingests every complete record available now. Returns the offset reached and the log's length.
    pub(crate) fn ingest_available(&mut self) -> Result<(u64, u64), JournalError> {
        self.ingest_log_until(u64::MAX)
    }

    /// Ingests what the writer handed over: from memory if it continues where ingestion stands,
    /// otherwise from the log, up to where the handoff ends, so that the next one continues from there.
    /// An empty handoff retries what an earlier round failed to store. Returns the offset reached and
    /// the end of the handed-over records.
    pub(crate) fn ingest_handoff(&mut self, handoff: &Handoff) -> Result<(u64, u64), JournalError> {
        if self.damaged_at.is_some() {
            self.handed_to = self.handed_to.max(handoff.to);
            return Ok((self.offset, self.handed_to));
        }
        if handoff.from == handoff.to {
            if self.offset >= self.handed_to {
                return Ok((self.offset, self.handed_to));
            }
            return self.ingest_log_until(self.handed_to);
        }
        self.handed_to = handoff.to;
        if handoff.dropped || handoff.from != self.offset {
            return self.ingest_log_until(handoff.to);
        }
        let entries = handoff
            .records
            .iter()
            .map(|record| record.entry(&handoff.bytes, handoff.from));
        self.apply(entries, handoff.to)?;
        self.offset = handoff.to;
        Ok((self.offset, handoff.to))
    }

    fn log_len(&self) -> Result<u64, JournalError> {
        self.log
            .metadata()
            .map(|m| m.len())
            .map_err(|e| JournalError::CommitFailed(e.to_string()))
    }

    /// Reads the log from the ingested offset up to `limit` (or its end) and ingests its complete
    /// records. Returns the offset reached and where the log's records end (its length, with no limit).
    /// The records end at the first zero byte: past it is the unused part of the log's reservation
    /// (see `appender`), or a record the gateway stopped copying, never acknowledged. Ingestion stops
    /// for good at a damaged record (see [`Self::damaged_at`]).
    fn ingest_log_until(&mut self, limit: u64) -> Result<(u64, u64), JournalError> {
        loop {
            let len = self.log_len()?;
            if len < self.offset {
                self.offset = 0;
            }
            let end = len.min(limit);
            if end <= self.offset || self.damaged_at.is_some() {
                return Ok((self.offset, end));
            }
            let mut want = (end - self.offset).min(MAX_ROUND);
            let complete = loop {
                self.buf.clear();
                self.log
                    .seek(SeekFrom::Start(self.offset))
                    .and_then(|_| (&mut self.log).take(want).read_to_end(&mut self.buf))
                    .map_err(|e| {
                        JournalError::CommitFailed(format!("reading the commit log: {e}"))
                    })?;
                let zero = memchr::memchr(0, &self.buf);
                let records = &self.buf[..zero.unwrap_or(self.buf.len())];
                if let Some(last) = memchr::memrchr(b'\n', records) {
                    break last + 1;
                }
                if zero.is_some() || self.offset + want >= end {
                    // A record cut short: it was never acknowledged.
                    return Ok((self.offset, end));
                }
                // One record larger than a round: read on to its end.
                want = (want * 2).min(end - self.offset);
            };
            let buf = std::mem::take(&mut self.buf);
            let (lines, sound) = sound_records(&buf[..complete]);
            let applied = self.apply(lines.iter().map(Line::entry), self.offset + sound as u64);
            drop(lines);
            self.buf = buf;
            applied?;
            self.offset += sound as u64;
            if sound < complete {
                self.damaged_at = Some(self.offset);
                tracing::error!(
                    offset = self.offset,
                    "a complete record of the commit log fails its checksum or does not parse: it \
                     was damaged after it was written. Nothing from it on is copied into the store; \
                     the commit log keeps it until recovery, when the gateway next starts, sets it aside"
                );
                return Ok((self.offset, end));
            }
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
            let refused = tlog::seal(&tx, &key, &self.node, sessions)?;
            tx.commit()?;
            Ok(refused)
        });
        // The sessions taken from the schedule must not be forgotten: after a failure, the next pass
        // seals everything unsealed.
        self.seal_everything = sealed.is_err();
        for refused in sealed? {
            tracing::error!(
                session = %refused.session_id,
                missing_seq = refused.missing_seq,
                "{refused}: a seal never covers a chain with a hole; `proctor log check` names what is wrong"
            );
        }
        Ok(())
    }

    /// Copies `entries` into the store in one transaction, with `end`, the log offset they reach. Each
    /// session's events go into one block (see `blocks`); events already stored (a replay) are skipped.
    fn apply<'e>(
        &mut self,
        entries: impl Iterator<Item = Result<Entry<'e>, JournalError>>,
        end: u64,
    ) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        let mut blocks: FxHashMap<i64, Block> = FxHashMap::default();
        let mut ended = Vec::new();
        {
            let mut open = tx.prepare_cached(
                "INSERT OR IGNORE INTO sessions (no, id, protocol, identity, connection, client_addr, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut close = tx.prepare_cached(
                "UPDATE sessions SET ended_at = ?2, end_reason = ?3 WHERE no = ?1",
            )?;
            for entry in entries {
                match entry? {
                    Entry::Open {
                        no,
                        id,
                        protocol,
                        identity,
                        connection,
                        client_addr,
                        started_at,
                    } => {
                        open.execute(params![
                            no,
                            id,
                            protocol,
                            identity,
                            connection,
                            client_addr,
                            started_at
                        ])?;
                    }
                    Entry::Event { no, event } => {
                        let block = blocks.entry(no).or_insert_with(|| {
                            Block::with_buffer(self.spare_buffers.pop().unwrap_or_default())
                        });
                        let stored = match self.stored_seq.get(&no) {
                            Some(&stored) => stored,
                            None => {
                                let stored = blocks::last_stored_seq(&tx, no)?;
                                self.stored_seq.insert(no, stored);
                                stored
                            }
                        };
                        if event.seq() <= stored.max(block.last_seq()) {
                            continue;
                        }
                        self.seals.event(no);
                        event.push_to(block);
                    }
                    Entry::Close {
                        no,
                        ended_at,
                        reason,
                    } => {
                        self.seals.ended(no);
                        ended.push(no);
                        close.execute(params![no, ended_at, reason])?;
                    }
                }
            }
            for (no, block) in &blocks {
                block.insert(&tx, *no)?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO journal_state (key, value) VALUES ('log_offset', ?1)",
                [end as i64],
            )?;
        }
        tx.commit()?;
        for (no, block) in blocks {
            if block.last_seq() > 0 {
                self.stored_seq.insert(no, block.last_seq());
            }
            let buffer = block.into_buffer();
            if self.spare_buffers.len() < SPARE_BUFFERS && buffer.capacity() <= SPARE_BUFFER_BYTES {
                self.spare_buffers.push(buffer);
            }
        }
        for no in ended {
            self.stored_seq.remove(&no);
        }
        Ok(())
    }

    /// Records that the log was emptied.
    pub(crate) fn restart(&mut self) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO journal_state (key, value) VALUES ('log_offset', 0)",
            [],
        )?;
        self.offset = 0;
        self.handed_to = 0;
        Ok(())
    }
}

/// The records of `complete` (newline-terminated records) up to the first damaged one, parsed, and
/// how many bytes they take: all of `complete` unless a record fails its checksum or does not parse.
fn sound_records(complete: &[u8]) -> (Vec<Line<'_>>, usize) {
    let mut lines = Vec::new();
    let mut sound = 0;
    for raw in complete.split_inclusive(|&b| b == b'\n') {
        let record = raw.strip_suffix(b"\n").unwrap_or(raw);
        if !record.is_empty() {
            match checked(record).filter(|line| line.entry().is_ok()) {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        sound += raw.len();
    }
    (lines, sound)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::canonical::CanonicalJson;
    use crate::chain::VerifyOutcome;
    use crate::chain::{no_findings, test_header as header, Chain};
    use crate::recovery::recover;
    use crate::store::{open_connection, Store, SyncMode};
    use serde_json::json;

    /// A log that opens session `no`, and the scratch string to encode more records with.
    fn opened_log(no: i64, header: &SessionHeader) -> (String, Vec<u8>) {
        let (mut scratch, mut log) = (String::new(), Vec::new());
        encode(&Record::Open { no, header }, &mut scratch, &mut log);
        (scratch, log)
    }

    /// A session of `events` events as the writer appends it at log offset `at`: the bytes it
    /// writes, and the records it hands the ingester.
    pub(crate) fn session_log(
        id: &str,
        no: i64,
        events: usize,
        at: u64,
    ) -> (Vec<u8>, Vec<Appended>) {
        let header = header(id);
        let mut chain = Chain::start(&header).unwrap();
        let (mut scratch, mut out) = opened_log(no, &header);
        let mut records = vec![Appended::Open { no, header }];
        for i in 0..events {
            let event = chain.next_event(
                10 + i as i64,
                "db.query",
                CanonicalJson::of(&json!({"i": i})),
                no_findings(),
            );
            let spans = encode(&Record::Event { no, event: &event }, &mut scratch, &mut out);
            records.push(Appended::event(no, &event, spans.unwrap(), at));
        }
        (out, records)
    }

    fn events_of(store: &Store, id: &str) -> usize {
        store.find_session(id).map_or(0, |s| s.events as usize)
    }

    #[test]
    fn handed_over_records_are_stored_and_a_broken_handoff_falls_back_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let (a, first) = session_log("s1", 1, 3, 0);
        let (b, second) = session_log("s2", 2, 4, a.len() as u64);
        let (c, third) = session_log("s3", 3, 2, (a.len() + b.len()) as u64);
        let log = [a.as_slice(), b.as_slice(), c.as_slice()].concat();
        std::fs::write(dir.path().join(LOG_FILE), &log).unwrap();
        let conn = open_connection(store.path(), SyncMode::Normal).unwrap();
        let mut ingester = Ingester::open(conn, dir.path()).unwrap();

        let mut handoff = Handoff::default();
        handoff.push(0, a.len() as u64, first, &a);
        let (offset, _) = ingester.ingest_handoff(&handoff).unwrap();
        assert_eq!(offset, a.len() as u64);
        assert_eq!(events_of(&store, "s1"), 3);

        // Records that outgrew the handoff are read from the log, and only up to where it ends.
        let mut dropped = Handoff::default();
        let end_of_b = (a.len() + b.len()) as u64;
        dropped.push(a.len() as u64, end_of_b, second, &b);
        dropped.dropped = true;
        dropped.records.clear();
        let (offset, _) = ingester.ingest_handoff(&dropped).unwrap();
        assert_eq!(offset, end_of_b, "the log is read up to the handoff's end");
        assert_eq!(events_of(&store, "s2"), 4);
        assert_eq!(events_of(&store, "s3"), 0);

        // A handoff that does not start where ingestion stands is not trusted either.
        let mut elsewhere = Handoff::default();
        elsewhere.push(end_of_b + 1, log.len() as u64, third, &c);
        ingester.ingest_handoff(&elsewhere).unwrap();
        assert_eq!(events_of(&store, "s3"), 2);
    }

    /// The ingester of the store in `dir`, with an empty log.
    fn ingester_of(dir: &Path) -> Ingester {
        let store = Store::open(dir, SyncMode::Normal).unwrap();
        std::fs::write(dir.join(LOG_FILE), b"").unwrap();
        let conn = open_connection(store.path(), SyncMode::Normal).unwrap();
        Ingester::open(conn, dir).unwrap()
    }

    fn pragma(ingester: &Ingester, name: &str) -> i64 {
        ingester
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .unwrap()
    }

    /// The WAL bytes after which the ingester's connection checkpoints.
    fn checkpoint_bytes(ingester: &Ingester) -> i64 {
        pragma(ingester, "wal_autocheckpoint") * pragma(ingester, "page_size")
    }

    #[test]
    fn the_wal_is_checkpointed_at_the_same_size_whatever_the_stores_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let ingester = ingester_of(dir.path());
        assert_eq!(checkpoint_bytes(&ingester), WAL_BEFORE_CHECKPOINT);

        // A store made with SQLite's default page size, as stores made before large pages were.
        let old = tempfile::tempdir().unwrap();
        rusqlite::Connection::open(old.path().join("journal.db"))
            .unwrap()
            .execute_batch("PRAGMA page_size = 4096; CREATE TABLE made_before (x);")
            .unwrap();
        let ingester = ingester_of(old.path());
        assert_eq!(
            pragma(&ingester, "page_size"),
            4096,
            "an existing store keeps its page size"
        );
        assert_eq!(checkpoint_bytes(&ingester), WAL_BEFORE_CHECKPOINT);
    }

    /// The rows of `event_blocks`, every column, in order.
    fn stored_blocks(store: &Store) -> Vec<Vec<rusqlite::types::Value>> {
        let conn = open_connection(store.path(), SyncMode::Normal).unwrap();
        let mut stmt = conn
            .prepare("SELECT * FROM event_blocks ORDER BY id")
            .unwrap();
        let columns = stmt.column_count();
        stmt.query_map([], |row| (0..columns).map(|i| row.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn a_handed_over_event_is_stored_as_the_log_read_back_stores_it() {
        let header = header("s1");
        let mut chain = Chain::start(&header).unwrap();
        let (mut scratch, mut log) = opened_log(1, &header);
        let mut records = vec![Appended::Open {
            no: 1,
            header: header.clone(),
        }];
        let bodies = [
            json!({"sql": "SELECT '\"quoted\"\\ é 😀\u{1}'", "rows": 1}),
            json!({}),
            json!({"message": "line\nbreak", "n": -5}),
            json!({"action": "deny", "rule": "no-ddl", "sql": "DROP TABLE t"}),
            json!({"approval": "a1", "by": "bob", "outcome": "denied", "rule": "r"}),
        ];
        for (i, (kind, body)) in [
            "db.query",
            "db.result",
            "db.error",
            "policy.decision",
            "approval",
        ]
        .iter()
        .zip(bodies)
        .enumerate()
        {
            let findings = if i == 0 {
                CanonicalJson::of(&json!([{"detector": "aws", "location": "sql"}]))
            } else {
                no_findings()
            };
            let event = chain.next_event(-7 + i as i64, kind, CanonicalJson::of(&body), findings);
            let spans = encode(
                &Record::Event {
                    no: 1,
                    event: &event,
                },
                &mut scratch,
                &mut log,
            );
            records.push(Appended::event(1, &event, spans.unwrap(), 0));
        }

        let stored = |handed: bool| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
            std::fs::write(dir.path().join(LOG_FILE), &log).unwrap();
            let conn = open_connection(store.path(), SyncMode::Normal).unwrap();
            let mut ingester = Ingester::open(conn, dir.path()).unwrap();
            if handed {
                let mut handoff = Handoff::default();
                handoff.push(0, log.len() as u64, records.clone(), &log);
                ingester.ingest_handoff(&handoff).unwrap();
            } else {
                ingester.ingest_available().unwrap();
            }
            let session = store.find_session("s1").unwrap();
            assert!(matches!(
                store.verify_session(&session).unwrap(),
                VerifyOutcome::Intact { events: 5, .. }
            ));
            assert_eq!((session.findings, session.denials), (1, 2));
            stored_blocks(&store)
        };
        let from_memory = stored(true);
        assert_eq!(from_memory.len(), 1);
        assert_eq!(from_memory, stored(false));
    }

    #[test]
    fn a_handoff_keeps_its_records_up_to_its_bound() {
        let mut handoff = Handoff::default();
        let (bytes, records) = session_log("s1", 1, 1, 100);
        handoff.push(100, 200, records, &bytes);
        let (bytes, records) = session_log("s2", 2, 1, 200);
        handoff.push(200, 300, records, &bytes);
        assert_eq!(
            (handoff.from, handoff.to, handoff.records.len()),
            (100, 300, 4)
        );
        assert!(!handoff.dropped);
        let (bytes, records) = session_log("s3", 3, 1, 300);
        handoff.push(300, 300 + MAX_HANDOFF, records, &bytes);
        assert!(handoff.dropped && handoff.records.is_empty() && handoff.bytes.is_empty());
        assert_eq!(handoff.to, 300 + MAX_HANDOFF);
    }

    #[test]
    fn a_record_larger_than_a_read_round_is_ingested() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let header = header("big");
        let mut chain = Chain::start(&header).unwrap();
        let large = "x".repeat(MAX_ROUND as usize + 1024);
        let event = chain.next_event(
            5,
            "llm.request",
            CanonicalJson::of(&json!({"text": large})),
            no_findings(),
        );
        let (mut scratch, mut log) = opened_log(1, &header);
        encode(
            &Record::Event {
                no: 1,
                event: &event,
            },
            &mut scratch,
            &mut log,
        );
        std::fs::write(dir.path().join(LOG_FILE), &log).unwrap();
        let conn = open_connection(store.path(), SyncMode::Normal).unwrap();
        let mut ingester = Ingester::open(conn, dir.path()).unwrap();
        assert_eq!(ingester.ingest_available().unwrap().0, log.len() as u64);
        assert_eq!(events_of(&store, "big"), 1);
    }

    /// Session `s1`'s three events then session `s2`'s two, with one byte of `s1`'s second event
    /// changed: the log, and where the damaged record starts.
    pub(crate) fn log_damaged_in_the_middle() -> (Vec<u8>, u64) {
        let (mut log, _) = session_log("s1", 1, 3, 0);
        let (second, _) = session_log("s2", 2, 2, log.len() as u64);
        log.extend_from_slice(&second);
        let starts: Vec<usize> = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', &log).map(|at| at + 1))
            .collect();
        // Records: open s1, its events 1..3, open s2, its events 1..2.
        let damaged = starts[2];
        let flip = damaged + log[damaged..].iter().position(|&b| b == b'{').unwrap() + 3;
        log[flip] ^= 0x20;
        (log, damaged as u64)
    }

    #[test]
    fn ingestion_stops_at_a_damaged_record_and_copies_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let (log, damaged) = log_damaged_in_the_middle();
        std::fs::write(dir.path().join(LOG_FILE), &log).unwrap();
        let conn = open_connection(store.path(), SyncMode::Normal).unwrap();
        let mut ingester = Ingester::open(conn, dir.path()).unwrap();
        for _ in 0..2 {
            assert_eq!(
                ingester.ingest_available().unwrap(),
                (damaged, log.len() as u64)
            );
            assert_eq!(ingester.damaged_at(), Some(damaged));
            assert_eq!(
                events_of(&store, "s1"),
                1,
                "only the event before the damage"
            );
            assert!(store.find_session("s2").is_err(), "nothing after it");
        }
        // Records handed over in memory wait too: they come after the damaged one.
        let (bytes, records) = session_log("s3", 3, 1, log.len() as u64);
        let mut handoff = Handoff::default();
        let end = log.len() as u64 + bytes.len() as u64;
        handoff.push(log.len() as u64, end, records, &bytes);
        assert_eq!(ingester.ingest_handoff(&handoff).unwrap(), (damaged, end));
        assert!(store.find_session("s3").is_err());
    }

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
            // The three complete events, and the `session.end` that recovery gave the session its
            // gateway left open.
            let session = store.find_session("s1").unwrap();
            assert_eq!(session.events, 4);
            assert_eq!(session.end_reason.as_deref(), Some(crate::CUT_SHORT));
            assert!(matches!(
                store.verify_session(&session).unwrap(),
                VerifyOutcome::Intact { events: 4, .. }
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
