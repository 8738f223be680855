//! How events sit in the SQLite store: in blocks, one row per session per ingest round, each holding
//! that session's events of the round as lines of JSON, with the counts that listing sessions needs and
//! the hash of its last event, which sealing needs.
//!
//! The counts are of events (all of them), queries (`db.query`), errors (`db.error`, `auth.failure`,
//! `protocol.error`), findings (events whose findings list is not empty) and denials: a statement or
//! command the guardrails refused (`policy.decision` with the action `deny`), and a held one that was
//! then refused (`approval` with the outcome `denied` or `timed_out`; one the client withdrew is not a
//! denial). A held statement that was approved counts nothing.
//!
//! With a row per event, the ingest thread executed about 28,000 instructions per `pgbench -S`
//! transaction (two B-tree inserts per event, on the cores the database and its clients share); with
//! a row per block, one insert per session per round, about 12,000 (`bench/instructions.sh`). Every
//! read of stored events goes through this module; what the events mean (chains, seals, sightings) is
//! for its callers.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Deserialize;

use crate::canonical::{write_str, write_u64};
use crate::chain::Event;
use crate::JournalError;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS event_blocks (
    id INTEGER PRIMARY KEY,
    session_no INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    head TEXT NOT NULL,
    events INTEGER NOT NULL,
    queries INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    started INTEGER NOT NULL,
    findings INTEGER NOT NULL DEFAULT 0,
    denials INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS event_blocks_by_session ON event_blocks(session_no, last_seq);
"#;

/// The blocks that hold a finding or a denial, by session. Few blocks do, so these cost the ingester
/// nothing for most blocks; they answer "has findings" and "has denials" without reading a block row,
/// and sum a session's findings and denials from them alone (a block outside holds none). In a store
/// whose blocks got these columns late (see [`add_counts`]) the columns lie after the block's data,
/// where reading them from the row would read the whole block.
const COUNT_INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS event_blocks_with_findings ON event_blocks(session_no, findings)
    WHERE findings > 0;
CREATE INDEX IF NOT EXISTS event_blocks_with_denials ON event_blocks(session_no, denials)
    WHERE denials > 0;
"#;

/// Events per block when a store of the older layout is moved into blocks.
const MIGRATED_BLOCK_EVENTS: u64 = 4096;

/// Kinds counted as errors when sessions are listed.
const ERROR_KINDS: [&str; 3] = ["db.error", "auth.failure", "protocol.error"];

/// One event as a block holds it (a line of the block's data).
#[derive(Deserialize)]
struct StoredEvent {
    seq: u64,
    at: i64,
    kind: String,
    body: serde_json::Value,
    findings: Vec<serde_json::Value>,
    prev: String,
    hash: String,
}

/// The events of one session in one round, on their way into one row.
#[derive(Default)]
pub(crate) struct Block {
    first_seq: u64,
    last_seq: u64,
    head: String,
    events: u64,
    queries: u64,
    errors: u64,
    started: bool,
    findings: u64,
    denials: u64,
    data: String,
}

/// One event to add to a block; `body` and `findings` are canonical JSON.
pub(crate) struct BlockEvent<'a> {
    pub seq: u64,
    pub at: i64,
    pub kind: &'a str,
    pub body: &'a str,
    pub findings: &'a str,
    pub prev: &'a str,
    pub hash: &'a str,
}

impl Block {
    /// An empty block that writes its lines into `buffer`, so that one buffer can serve a session
    /// round after round instead of growing anew each time.
    pub(crate) fn with_buffer(mut buffer: String) -> Self {
        buffer.clear();
        Self {
            data: buffer,
            ..Self::default()
        }
    }

    /// The block's buffer, for the next round's block.
    pub(crate) fn into_buffer(self) -> String {
        self.data
    }

    pub(crate) fn push(&mut self, event: &BlockEvent<'_>) {
        self.start_line(event.seq);
        let line = &mut self.data;
        line.push_str("{\"seq\":");
        write_u64(event.seq, line);
        line.push_str(",\"at\":");
        line.push_str(itoa::Buffer::new().format(event.at));
        line.push_str(",\"kind\":");
        write_str(event.kind, line);
        line.push_str(",\"body\":");
        line.push_str(event.body);
        line.push_str(",\"findings\":");
        line.push_str(event.findings);
        line.push_str(",\"prev\":");
        write_str(event.prev, line);
        line.push_str(",\"hash\":");
        write_str(event.hash, line);
        line.push('}');
        self.count(event.seq, event.kind, event.hash);
        self.findings += u64::from(event.findings != "[]");
        self.denials += u64::from(denies(event.kind, || Some(event.body)));
    }

    /// Adds an event that the commit log already holds as a block line: `fields` is the line after
    /// its opening brace, which the log's record of the event ends with (see `log::encode`), so the
    /// event is not encoded a second time.
    ///
    /// This is the ingester's path for nearly every event, so what it counts it reads from where the
    /// encoding puts it rather than by parsing the line: the findings end the line but for the two
    /// hashes, of known length, and only the rare kinds that may deny look for their body.
    pub(crate) fn push_line(&mut self, seq: u64, kind: &str, fields: &str, hash: &str) {
        self.start_line(seq);
        self.data.push('{');
        self.data.push_str(fields);
        self.count(seq, kind, hash);
        self.findings += u64::from(!line_without_findings(fields, hash));
        self.denials += u64::from(denies(kind, || line_body(fields)));
    }

    fn start_line(&mut self, seq: u64) {
        if self.events == 0 {
            self.first_seq = seq;
        } else {
            self.data.push('\n');
        }
    }

    fn count(&mut self, seq: u64, kind: &str, hash: &str) {
        self.last_seq = seq;
        self.head.clear();
        self.head.push_str(hash);
        self.events += 1;
        match kind {
            "db.query" => self.queries += 1,
            "session.start" => self.started = true,
            kind if ERROR_KINDS.contains(&kind) => self.errors += 1,
            _ => {}
        }
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Stores the block as session `no`'s row; a block already stored (a replay) is left as it was.
    pub(crate) fn insert(&self, tx: &Transaction<'_>, no: i64) -> Result<(), JournalError> {
        if self.events == 0 {
            return Ok(());
        }
        tx.prepare_cached(
            "INSERT OR IGNORE INTO event_blocks \
             (session_no, first_seq, last_seq, head, events, queries, errors, started, findings, \
              denials, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            no,
            self.first_seq as i64,
            self.last_seq as i64,
            self.head,
            self.events as i64,
            self.queries as i64,
            self.errors as i64,
            self.started,
            self.findings as i64,
            self.denials as i64,
            self.data
        ])?;
        Ok(())
    }
}

/// Whether an event of `kind` is a denial (see the module's doc), given its body in canonical JSON
/// (possibly followed by the rest of its block line), which is looked for only for the kinds that
/// may deny.
fn denies<'a>(kind: &str, body: impl FnOnce() -> Option<&'a str>) -> bool {
    match kind {
        // Canonical JSON sorts keys, and `action` sorts before every other key of a decision.
        "policy.decision" => body().is_some_and(|body| body.starts_with(r#"{"action":"deny""#)),
        // An approval's body is flat, with the gateway's own keys: `"outcome":"` can only be that key,
        // since a quote inside a string is escaped.
        "approval" => body().is_some_and(|body| {
            body.contains(r#""outcome":"denied""#) || body.contains(r#""outcome":"timed_out""#)
        }),
        _ => false,
    }
}

/// The body of a block line's `fields` and what follows it. The fields before it are numbers and a
/// kind without escapes, so the first `,"body":` is the body's key.
fn line_body(fields: &str) -> Option<&str> {
    fields
        .find(r#","body":"#)
        .map(|at| &fields[at + r#","body":"#.len()..])
}

/// Whether a block line's `fields` hold an empty findings list. The line ends with the findings,
/// then `prev` and `hash`, two hex hashes of the same length (see `log::encode`): the findings end
/// at a fixed distance from the line's end.
fn line_without_findings(fields: &str, hash: &str) -> bool {
    const AFTER_FINDINGS: usize = r#","prev":"","hash":""}"#.len();
    fields
        .len()
        .checked_sub(AFTER_FINDINGS + 2 * hash.len())
        .and_then(|end| fields.get(..end))
        .is_some_and(|before| before.ends_with(r#""findings":[]"#))
}

/// Gives the blocks of a store made before blocks counted findings and denials their two columns,
/// counted from the blocks' events, once. Only blocks that hold either are rewritten: the others
/// read the columns' default, zero.
fn add_counts(conn: &mut Connection) -> Result<(), JournalError> {
    let present: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('event_blocks') WHERE name = 'findings'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if present {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute_batch(
        "ALTER TABLE event_blocks ADD COLUMN findings INTEGER NOT NULL DEFAULT 0; \
         ALTER TABLE event_blocks ADD COLUMN denials INTEGER NOT NULL DEFAULT 0;",
    )?;
    let mut counted = Vec::new();
    {
        let mut stmt = tx.prepare("SELECT id, data FROM event_blocks")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let data = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let (mut findings, mut denials) = (0i64, 0i64);
            for line in lines(data) {
                let event: CountedEvent<'_> = serde_json::from_str(line).map_err(|e| {
                    JournalError::Malformed(format!("a stored event is not JSON: {e}"))
                })?;
                findings += i64::from(!event.findings.is_empty());
                denials += i64::from(denies(&event.kind, || Some(event.body.get())));
            }
            if findings > 0 || denials > 0 {
                counted.push((row.get::<_, i64>(0)?, findings, denials));
            }
        }
    }
    // Rows are rewritten once the scan is over: rewriting a row makes it longer, which may move
    // rows under a scan still running.
    let mut update =
        tx.prepare("UPDATE event_blocks SET findings = ?2, denials = ?3 WHERE id = ?1")?;
    for (id, findings, denials) in counted {
        update.execute(params![id, findings, denials])?;
    }
    drop(update);
    tx.commit()?;
    Ok(())
}

/// What counting a stored event reads of it.
#[derive(Deserialize)]
struct CountedEvent<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
    findings: Vec<serde::de::IgnoredAny>,
}

/// Creates the blocks' table and indexes, bringing a store of an older layout up to date.
pub(crate) fn create(conn: &mut Connection) -> Result<(), JournalError> {
    conn.execute_batch(SCHEMA)?;
    add_counts(conn)?;
    conn.execute_batch(COUNT_INDEXES)?;
    migrate_event_rows(conn)
}

/// The highest sequence number stored for session `no` (0 if none).
pub(crate) fn last_stored_seq(conn: &Connection, no: i64) -> Result<u64, JournalError> {
    let seq: i64 = conn
        .prepare_cached(
            "SELECT coalesce(max(last_seq), 0) FROM event_blocks WHERE session_no = ?1",
        )?
        .query_row([no], |row| row.get(0))?;
    Ok(seq as u64)
}

/// One line of a block's data: an event of session `session_id`.
pub(crate) fn parse_line(session_id: &str, line: &str) -> Result<Event, JournalError> {
    let stored: StoredEvent = serde_json::from_str(line)
        .map_err(|e| JournalError::Malformed(format!("a stored event is not JSON: {e}")))?;
    Ok(Event {
        session_id: session_id.to_owned(),
        seq: stored.seq,
        at: stored.at,
        kind: stored.kind,
        body: stored.body,
        findings: stored.findings,
        prev: stored.prev,
        hash: stored.hash,
    })
}

/// The lines of a block's data, one event each.
pub(crate) fn lines(data: &str) -> impl Iterator<Item = &str> {
    data.split('\n').filter(|line| !line.is_empty())
}

/// The events of one block's data, in order.
fn parse(session_id: &str, data: &str) -> Result<Vec<Event>, JournalError> {
    lines(data)
        .map(|line| parse_line(session_id, line))
        .collect()
}

/// The first sequence number that the lines of a block of events `first..=last` do not hold in
/// its place, if any.
fn first_out_of_place(data: &str, first: u64, last: u64) -> Result<Option<u64>, JournalError> {
    let mut next = first;
    for line in lines(data) {
        if parse_line("", line)?.seq != next {
            return Ok(Some(next));
        }
        next += 1;
    }
    Ok((next != last + 1).then_some(next))
}

/// Hands `each` every block of the store, as its session's number and its data: session by session
/// in number order, each session's blocks in sequence order. One block is in memory at a time.
pub(crate) fn for_each_block(
    conn: &Connection,
    mut each: impl FnMut(i64, &str) -> Result<(), JournalError>,
) -> Result<(), JournalError> {
    let mut stmt =
        conn.prepare("SELECT session_no, data FROM event_blocks ORDER BY session_no, last_seq")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let data = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        each(row.get(0)?, data)?;
    }
    Ok(())
}

/// The last stored event of session `no` (whose id is `session_id`), if it has any.
pub(crate) fn last_event(
    conn: &Connection,
    no: i64,
    session_id: &str,
) -> Result<Option<Event>, JournalError> {
    let data: Option<String> = conn
        .prepare_cached(
            "SELECT data FROM event_blocks WHERE session_no = ?1 ORDER BY last_seq DESC LIMIT 1",
        )?
        .query_row([no], |row| row.get(0))
        .optional()?;
    data.as_deref()
        .and_then(|data| lines(data).last())
        .map(|line| parse_line(session_id, line))
        .transpose()
}

/// The first of events `from..=to` of session `no` that its blocks do not hold exactly once, if
/// any: the blocks that reach past `from` must follow each other without a gap or an overlap, each
/// holding as many events as its sequence numbers span. Judged from the blocks' columns, which the
/// ingester writes from the events it stores, so that sealing reads no event; a block whose count
/// disagrees is read line by line.
pub(crate) fn first_missing_seq(
    conn: &Connection,
    no: i64,
    from: u64,
    to: u64,
) -> Result<Option<u64>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT first_seq, last_seq, events, id FROM event_blocks \
         WHERE session_no = ?1 AND last_seq >= ?2 ORDER BY last_seq",
    )?;
    let mut rows = stmt.query(params![no, from as i64])?;
    let mut expected = from;
    while let Some(row) = rows.next()? {
        if expected > to {
            break;
        }
        let (first, last, events) = (
            row.get::<_, i64>(0)? as u64,
            row.get::<_, i64>(1)? as u64,
            row.get::<_, i64>(2)? as u64,
        );
        if first > expected {
            return Ok(Some(expected));
        }
        if first < expected && expected != from {
            // Overlaps the block before: the events it repeats are held twice.
            return Ok(Some(first));
        }
        if first > last || events != last - first + 1 {
            let data: String = conn
                .prepare_cached("SELECT data FROM event_blocks WHERE id = ?1")?
                .query_row([row.get::<_, i64>(3)?], |row| row.get(0))?;
            if let Some(seq) = first_out_of_place(&data, first, last)? {
                return Ok(Some(seq.max(from)));
            }
        }
        expected = last + 1;
    }
    Ok((expected <= to).then_some(expected))
}

/// Every stored event of session `no` (whose id is `session_id`), in sequence order.
pub(crate) fn session_events(
    conn: &Connection,
    no: i64,
    session_id: &str,
) -> Result<Vec<Event>, JournalError> {
    let mut stmt = conn
        .prepare_cached("SELECT data FROM event_blocks WHERE session_no = ?1 ORDER BY last_seq")?;
    let mut events = Vec::new();
    for data in stmt.query_map([no], |row| row.get::<_, String>(0))? {
        events.extend(parse(session_id, &data?)?);
    }
    Ok(events)
}

/// Up to `limit` stored events of session `no` (whose id is `session_id`) that follow event
/// `after`, in sequence order, and whether more follow them. Reads only the blocks that reach past
/// `after`, and parses no line before it that is laid out as the ingester writes it.
pub(crate) fn events_after(
    conn: &Connection,
    no: i64,
    session_id: &str,
    after: u64,
    limit: usize,
) -> Result<(Vec<Event>, bool), JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT data FROM event_blocks WHERE session_no = ?1 AND last_seq > ?2 ORDER BY last_seq",
    )?;
    let mut rows = stmt.query(params![no, after as i64])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let data = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        for line in lines(data) {
            if line_seq(line).is_some_and(|seq| seq <= after) {
                continue;
            }
            let event = parse_line(session_id, line)?;
            if event.seq <= after {
                continue;
            }
            events.push(event);
            if events.len() == limit {
                // Whether more follow is the blocks' columns' to say: the next block, if any, is
                // not read.
                let last = events.last().map_or(after, |event| event.seq);
                return Ok((events, last_stored_seq(conn, no)? > last));
            }
        }
    }
    Ok((events, false))
}

/// The sequence number of a block line laid out as the ingester writes it (`{"seq":N,...`).
fn line_seq(line: &str) -> Option<u64> {
    let rest = line.strip_prefix(r#"{"seq":"#)?;
    let digits = rest.find(',')?;
    rest[..digits].parse().ok()
}

/// The kind of a block line laid out as the ingester writes it (`{"seq":N,"at":N,"kind":"K",...`),
/// read without parsing the line; `None` for a line laid out otherwise.
pub(crate) fn line_kind(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix(r#"{"seq":"#)?
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix(r#","at":"#)?
        .trim_start_matches(|c: char| c == '-' || c.is_ascii_digit())
        .strip_prefix(r#","kind":""#)?;
    rest.split_once('"').map(|(kind, _)| kind)
}

/// Whether `test` holds for the data of any stored block of session `no` whose data is `LIKE`
/// `pattern` (escaped with `\`); stops at the first for which it does. SQLite's `LIKE` ignores the
/// case of ASCII letters and skips a block at the speed it reads it, faster than copying it out. One
/// block is in memory at a time, borrowed from SQLite.
pub(crate) fn any_block_like(
    conn: &Connection,
    no: i64,
    pattern: &str,
    mut test: impl FnMut(&str) -> Result<bool, JournalError>,
) -> Result<bool, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT data FROM event_blocks WHERE session_no = ?1 AND data LIKE ?2 ESCAPE '\\'",
    )?;
    let mut rows = stmt.query(params![no, pattern])?;
    while let Some(row) = rows.next()? {
        if test(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The stored hash of event `seq` of session `no`, if that event is stored.
pub(crate) fn hash_at(
    conn: &Connection,
    no: i64,
    seq: u64,
) -> Result<Option<String>, JournalError> {
    let data: Option<String> = conn
        .prepare_cached(
            "SELECT data FROM event_blocks WHERE session_no = ?1 AND last_seq >= ?2 \
             ORDER BY last_seq LIMIT 1",
        )?
        .query_row(params![no, seq as i64], |row| row.get(0))
        .optional()?;
    let Some(data) = data else {
        return Ok(None);
    };
    // Sealing asks for the hash at a seal's end, inside blocks of thousands of events: only the line
    // that starts with this sequence number, as the ingester writes it, is parsed. A line written
    // otherwise (its keys in another order) is still found, by parsing them all.
    let mut prefix = String::from("{\"seq\":");
    write_u64(seq, &mut prefix);
    prefix.push(',');
    let events = match lines(&data).find(|line| line.starts_with(&prefix)) {
        Some(line) => parse("", line)?,
        None => parse("", &data)?,
    };
    Ok(events
        .into_iter()
        .find(|event| event.seq == seq)
        .map(|event| event.hash))
}

/// The events, of every session, that mention any of `needles` anywhere, with their session's
/// number: one pass over the store, however many needles.
pub(crate) fn events_mentioning(
    conn: &Connection,
    needles: &[String],
) -> Result<Vec<(i64, Event)>, JournalError> {
    if needles.is_empty() {
        return Ok(Vec::new());
    }
    let any = (1..=needles.len())
        .map(|i| format!("instr(data, ?{i}) > 0"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut stmt = conn.prepare(&format!(
        "SELECT session_no, data FROM event_blocks WHERE {any} ORDER BY id"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(needles), |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut found = Vec::new();
    for row in rows {
        let (no, data) = row?;
        for line in data
            .split('\n')
            .filter(|line| needles.iter().any(|needle| line.contains(needle.as_str())))
        {
            found.extend(parse("", line)?.into_iter().map(|event| (no, event)));
        }
    }
    Ok(found)
}

/// Moves events stored one row each (the store's layout before blocks) into blocks, one per session,
/// and drops the old table. Runs once, when a store of that layout is opened.
fn migrate_event_rows(conn: &mut Connection) -> Result<(), JournalError> {
    let old: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events')",
        [],
        |row| row.get(0),
    )?;
    if !old {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        // Rows come in session and sequence order: each session's events are cut into blocks of a
        // bounded size as they stream by, so a long session never sits in memory whole.
        let mut current: Option<(i64, Block)> = None;
        let mut stmt = tx.prepare(
            "SELECT session_no, seq, at, kind, body, findings, prev, hash FROM events \
             ORDER BY session_no, seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let no: i64 = row.get(0)?;
            if let Some((full_no, full)) =
                current.take_if(|(at, block)| *at != no || block.events >= MIGRATED_BLOCK_EVENTS)
            {
                full.insert(&tx, full_no)?;
            }
            let (kind, body, findings, prev, hash): (String, String, String, String, String) = (
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
            );
            let (_, block) = current.get_or_insert_with(|| (no, Block::default()));
            block.push(&BlockEvent {
                seq: row.get::<_, i64>(1)? as u64,
                at: row.get(2)?,
                kind: &kind,
                body: &body,
                findings: &findings,
                prev: &prev,
                hash: &hash,
            });
        }
        drop(rows);
        drop(stmt);
        if let Some((no, block)) = current {
            block.insert(&tx, no)?;
        }
        tx.execute_batch("DROP TABLE events")?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(seq: u64, kind: &'a str, body: &'a str, hash: &'a str) -> BlockEvent<'a> {
        BlockEvent {
            seq,
            at: 1_700_000_000_000_000_000 + seq as i64,
            kind,
            body,
            findings: "[]",
            prev: "p",
            hash,
        }
    }

    #[test]
    fn a_block_gives_back_its_events_and_counts_them() {
        let mut block = Block::default();
        block.push(&event(1, "session.start", r#"{"client":"a\nb"}"#, "h1"));
        block.push(&event(2, "db.query", r#"{"sql":"select \"x\""}"#, "h2"));
        block.push(&event(3, "db.error", "{}", "h3"));
        let events = parse("s", &block.data).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].body["client"], "a\nb");
        assert_eq!(events[1].body["sql"], "select \"x\"");
        assert_eq!(events[2].hash, "h3");
        assert_eq!(events[2].at, 1_700_000_000_000_000_003);
        assert_eq!(
            (block.first_seq, block.last_seq, block.head.as_str()),
            (1, 3, "h3")
        );
        assert_eq!((block.events, block.queries, block.errors), (3, 1, 1));
        assert!(block.started);
    }

    /// A hash as the chain writes one: 64 hex digits.
    fn hex(n: u64) -> String {
        format!("{n:064x}")
    }

    /// Events that count as findings or denials, or look as if they might, with whether each is a
    /// finding and whether it is a denial.
    fn counted_events() -> Vec<(&'static str, &'static str, &'static str, bool, bool)> {
        vec![
            ("db.query", r#"{"sql":"select 1"}"#, "[]", false, false),
            (
                "db.query",
                r#"{"sql":"select 'AKIA…'"}"#,
                r#"[{"detector":"aws","fingerprint":"ab","location":"sql"}]"#,
                true,
                false,
            ),
            (
                "policy.decision",
                r#"{"action":"deny","flags":[],"kind":"ddl","rule":"r","sql":"drop table t","tables":[]}"#,
                "[]",
                false,
                true,
            ),
            (
                "policy.decision",
                r#"{"action":"allow","flags":[],"kind":"read","rule":"r","sql":"select 'deny'","tables":[]}"#,
                "[]",
                false,
                false,
            ),
            (
                "policy.decision",
                r#"{"action":"require_approval","approval":"a1","flags":[],"kind":"write","rule":"r","sql":"delete from t","tables":[]}"#,
                "[]",
                false,
                false,
            ),
            (
                "approval",
                r#"{"approval":"a1","by":"bob","outcome":"denied","reason":"no","rule":"r","waited_ms":5}"#,
                "[]",
                false,
                true,
            ),
            (
                "approval",
                r#"{"approval":"a2","by":null,"outcome":"timed_out","reason":"late","rule":"r","waited_ms":5}"#,
                "[]",
                false,
                true,
            ),
            (
                "approval",
                r#"{"approval":"a3","by":"bob","outcome":"approved","reason":"\"outcome\":\"denied\"","rule":"r","waited_ms":5}"#,
                "[]",
                false,
                false,
            ),
            (
                "approval",
                r#"{"approval":"a4","by":null,"outcome":"withdrawn","reason":"cancelled","rule":"r","waited_ms":5}"#,
                r#"[{"detector":"x","fingerprint":"cd","location":"reason"}]"#,
                true,
                false,
            ),
            (
                "db.result",
                r#"{"query":1,"rows":1,"sample":[["{\"action\":\"deny\"}","\"findings\":[]"]]}"#,
                "[]",
                false,
                false,
            ),
        ]
    }

    #[test]
    fn a_block_counts_findings_and_denials_from_its_events_and_from_log_lines_alike() {
        let events = counted_events();
        let hashes: Vec<String> = (0..=events.len() as u64).map(hex).collect();
        let mut encoded = Block::default();
        let mut handed = Block::default();
        for (i, (kind, body, findings, has_findings, denies)) in events.iter().enumerate() {
            let seq = i as u64 + 1;
            let event = BlockEvent {
                seq,
                at: 7,
                kind,
                body,
                findings,
                prev: &hashes[i],
                hash: &hashes[i + 1],
            };
            let mut alone = Block::default();
            alone.push(&event);
            assert_eq!(
                (alone.findings > 0, alone.denials > 0),
                (*has_findings, *denies),
                "{kind} {body}"
            );
            // The log's record of an event ends with its block line but for the opening brace.
            let fields = &alone.data[1..];
            let mut line = Block::default();
            line.push_line(seq, kind, fields, &hashes[i + 1]);
            assert_eq!(
                (line.findings, line.denials),
                (alone.findings, alone.denials),
                "{kind} {body}"
            );
            encoded.push(&event);
            handed.push_line(seq, kind, fields, &hashes[i + 1]);
        }
        assert_eq!((encoded.findings, encoded.denials), (2, 3));
        assert_eq!((handed.findings, handed.denials), (2, 3));
        assert_eq!(encoded.data, handed.data);
    }

    #[test]
    fn a_store_whose_blocks_did_not_count_findings_and_denials_gets_them_counted_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        // The blocks' table as it was before these counts.
        conn.execute_batch(
            "CREATE TABLE event_blocks (id INTEGER PRIMARY KEY, session_no INTEGER NOT NULL, \
             first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, head TEXT NOT NULL, \
             events INTEGER NOT NULL, queries INTEGER NOT NULL, errors INTEGER NOT NULL, \
             started INTEGER NOT NULL, data TEXT NOT NULL); \
             CREATE UNIQUE INDEX event_blocks_by_session ON event_blocks(session_no, last_seq);",
        )
        .unwrap();
        let events = counted_events();
        let mut lines = Vec::new();
        for (i, (kind, body, findings, _, _)) in events.iter().enumerate() {
            let mut block = Block::default();
            block.push(&BlockEvent {
                seq: i as u64 + 1,
                at: 7,
                kind,
                body,
                findings,
                prev: "p",
                hash: "h",
            });
            lines.push(block.data);
        }
        // Session 1 holds them all in two blocks, session 2 only events that count nothing.
        for (no, first, last) in [(1, 1, 5), (1, 6, 10), (2, 1, 1), (2, 4, 4)] {
            conn.execute(
                "INSERT INTO event_blocks (session_no, first_seq, last_seq, head, events, queries, \
                 errors, started, data) VALUES (?1, ?2, ?3, 'h', ?4, 0, 0, 0, ?5)",
                params![no, first, last, last - first + 1, lines[first as usize - 1..last as usize].join("\n")],
            )
            .unwrap();
        }
        create(&mut conn).unwrap();
        let counts = |conn: &Connection| -> Vec<(i64, i64, i64)> {
            conn.prepare("SELECT session_no, findings, denials FROM event_blocks ORDER BY id")
                .unwrap()
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let expected = vec![(1, 1, 1), (1, 1, 2), (2, 0, 0), (2, 0, 0)];
        assert_eq!(counts(&conn), expected);
        // Opened again, nothing is counted twice.
        create(&mut conn).unwrap();
        assert_eq!(counts(&conn), expected);
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' \
                 AND name IN ('event_blocks_with_findings', 'event_blocks_with_denials')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 2);
    }

    #[test]
    fn events_after_a_sequence_number_come_from_the_blocks_that_hold_them() {
        let mut conn = Connection::open_in_memory().unwrap();
        create(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        for seqs in [1..=4u64, 5..=9, 10..=10] {
            let mut block = Block::default();
            for seq in seqs {
                block.push(&event(seq, "db.query", "{}", "h"));
            }
            block.insert(&tx, 3).unwrap();
        }
        tx.commit().unwrap();
        let page = |after, limit| {
            let (events, more) = events_after(&conn, 3, "s", after, limit).unwrap();
            (events.iter().map(|e| e.seq).collect::<Vec<_>>(), more)
        };
        assert_eq!(page(0, 3), (vec![1, 2, 3], true));
        assert_eq!(page(3, 3), (vec![4, 5, 6], true), "across blocks");
        assert_eq!(
            page(6, 3),
            (vec![7, 8, 9], true),
            "a page that ends a block"
        );
        assert_eq!(page(9, 3), (vec![10], false));
        assert_eq!(page(0, 10), ((1..=10).collect(), false), "exactly all");
        assert_eq!(page(0, 100), ((1..=10).collect(), false));
        assert_eq!(page(10, 5), (vec![], false));
        assert_eq!(page(0, 5).0.len(), 5);
        assert_eq!(events_after(&conn, 4, "s", 0, 5).unwrap().0.len(), 0);
    }

    #[test]
    fn a_lines_kind_and_seq_are_read_from_where_the_ingester_writes_them() {
        let mut block = Block::default();
        block.push(&event(12, "db.query", r#"{"kind":"other"}"#, "h"));
        assert_eq!(line_kind(&block.data), Some("db.query"));
        assert_eq!(line_seq(&block.data), Some(12));
        let reordered = r#"{"at":1,"body":{},"kind":"db.query","seq":3}"#;
        assert_eq!(line_kind(reordered), None);
        assert_eq!(line_seq(reordered), None);
        assert_eq!(
            line_kind(r#"{"seq":1,"at":-5,"kind":"x.y","body":{}}"#),
            Some("x.y")
        );
    }

    #[test]
    fn the_hash_at_a_sequence_number_is_found_in_its_block_and_no_other() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let hashes: Vec<String> = (1..=25).map(|seq| format!("h{seq}")).collect();
        let tx = conn.transaction().unwrap();
        for seqs in [1..=12u64, 13..=25] {
            let mut block = Block::default();
            for seq in seqs {
                block.push(&event(seq, "db.query", "{}", &hashes[seq as usize - 1]));
            }
            block.insert(&tx, 7).unwrap();
        }
        tx.commit().unwrap();
        for seq in [1, 2, 11, 12, 13, 21, 25] {
            let expected = format!("h{seq}");
            assert_eq!(hash_at(&conn, 7, seq).unwrap(), Some(expected));
        }
        assert_eq!(hash_at(&conn, 7, 26).unwrap(), None);
        // A block whose lines put their keys in another order, as an editor of the store might.
        conn.execute(
            "UPDATE event_blocks SET data = ?1 WHERE session_no = 7 AND last_seq = 25",
            [r#"{"at":1,"body":{},"findings":[],"hash":"x13","kind":"db.query","prev":"p","seq":13}"#],
        )
        .unwrap();
        assert_eq!(hash_at(&conn, 7, 13).unwrap().as_deref(), Some("x13"));
        assert_eq!(hash_at(&conn, 8, 1).unwrap(), None);
    }

    #[test]
    fn the_first_missing_seq_is_where_blocks_leave_a_gap_overlap_or_skip_one() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let tx = conn.transaction().unwrap();
        let store = |no: i64, seqs: &[u64]| {
            let mut block = Block::default();
            for &seq in seqs {
                block.push(&event(seq, "db.query", "{}", "h"));
            }
            block.insert(&tx, no).unwrap();
        };
        store(1, &[1, 2, 3, 4, 5]);
        store(1, &[6, 7, 8, 9]);
        store(2, &[1, 2, 3]);
        store(2, &[5, 6]);
        store(3, &[1, 2, 4]);
        store(4, &[1, 2, 3]);
        store(4, &[3, 4, 5]);
        tx.commit().unwrap();
        let missing = |no, from, to| first_missing_seq(&conn, no, from, to).unwrap();
        assert_eq!(missing(1, 1, 9), None);
        assert_eq!(missing(1, 4, 9), None, "from inside a block");
        assert_eq!(missing(1, 1, 12), Some(10), "events past the newest");
        assert_eq!(missing(2, 1, 6), Some(4), "a gap between blocks");
        assert_eq!(
            missing(2, 5, 6),
            None,
            "a gap before `from` was judged before"
        );
        assert_eq!(missing(3, 1, 4), Some(3), "a gap inside a block");
        assert_eq!(missing(4, 1, 5), Some(3), "blocks that overlap");
    }

    #[test]
    fn event_rows_of_an_older_store_are_moved_into_blocks() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, session_no INTEGER NOT NULL, \
             seq INTEGER NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, \
             findings TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL)",
        )
        .unwrap();
        for (no, seq) in [(1, 1), (2, 1), (1, 2), (1, 3)] {
            conn.execute(
                "INSERT INTO events (session_no, seq, at, kind, body, findings, prev, hash) \
                 VALUES (?1, ?2, 5, 'db.query', '{\"n\":1}', '[]', 'p', ?3)",
                params![no, seq, format!("h{no}.{seq}")],
            )
            .unwrap();
        }
        migrate_event_rows(&mut conn).unwrap();
        let seqs = |no| -> Vec<u64> {
            session_events(&conn, no, "s")
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(seqs(1), [1, 2, 3]);
        assert_eq!(seqs(2), [1]);
        assert_eq!(hash_at(&conn, 1, 2).unwrap().as_deref(), Some("h1.2"));
        assert_eq!(last_stored_seq(&conn, 1).unwrap(), 3);
        let old: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(old, 0);
    }
}
