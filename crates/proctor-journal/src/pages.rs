//! The reads of a client that browses the journal a page at a time: sessions filtered and listed
//! newest first, behind an opaque cursor, with a search of what each session ran or tried; and a
//! session's events, a page at a time.
//!
//! Pages are cut by key, not by offset: a cursor names the last session of its page (its start and
//! number, which order sessions totally), so a page is as cheap at the end of the list as at its
//! start, and sessions that start meanwhile neither shift nor repeat the pages that follow.
//!
//! The text search reads block data: no index of statements is kept, since keeping one would cost
//! every ingested event. Each block of a candidate session is searched at memory speed for the text
//! as a block stores it (see [`TextSearch`]), and only the lines that hold it are parsed, to confirm
//! that it is in a statement or command and not in a result, a key or a kind.

use std::borrow::Cow;

use base64::Engine;
use rusqlite::types::Value as SqlValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blocks;
use crate::chain::Event;
use crate::store::{session_from_row, session_no, SessionRow, SESSION_COLUMNS};
use crate::{JournalError, Store};

/// The most sessions a page holds; a query asking for more gets this many.
pub const MAX_PAGE_SESSIONS: usize = 500;

/// Which sessions a page lists, and from where. Times are nanoseconds since the epoch; every filter
/// given must hold.
#[derive(Clone, Debug, Default)]
pub struct SessionQuery {
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub protocol: Option<String>,
    /// Sessions that started at or after this time.
    pub started_from: Option<i64>,
    /// Sessions that started before this time.
    pub started_to: Option<i64>,
    /// Sessions that ran or tried a statement or command holding this text, whatever its case: the
    /// SQL of `db.query` and `policy.decision`, the command of `policy.decision`, `ssh.exec` and
    /// `ssh.command` (a typed shell line), and the arguments of `mcp.call` but its connection's name.
    /// An empty text filters nothing.
    pub text: Option<String>,
    /// Sessions with at least one event with findings.
    pub has_findings: bool,
    /// Sessions with at least one denial (see [`SessionRow::denials`]).
    pub has_denials: bool,
    /// The `next_cursor` of the page before; none for the first page.
    pub cursor: Option<String>,
    /// Sessions per page, 1 to [`MAX_PAGE_SESSIONS`] (a value outside is brought inside).
    pub limit: usize,
}

/// One page of sessions, newest first, and the cursor of the next page if there is one.
#[derive(Clone, Debug, Serialize)]
pub struct SessionPage {
    pub sessions: Vec<SessionRow>,
    pub next_cursor: Option<String>,
}

/// Where a page of sessions ends: the start and number of its last session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    started_at: i64,
    no: i64,
}

impl Cursor {
    /// The cursor as a client holds it: its two numbers, base64url. Opaque to clients, who only
    /// hand it back.
    fn encode(self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.started_at.to_be_bytes());
        bytes[8..].copy_from_slice(&self.no.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(text: &str) -> Result<Self, JournalError> {
        let malformed = || {
            JournalError::Malformed(format!(
                "the cursor {text:?} is not one that a page of sessions gave; \
                 start again from the first page"
            ))
        };
        let bytes: [u8; 16] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| malformed())?
            .try_into()
            .map_err(|_| malformed())?;
        let (started_at, no) = bytes.split_at(8);
        Ok(Self {
            started_at: i64::from_be_bytes(started_at.try_into().map_err(|_| malformed())?),
            no: i64::from_be_bytes(no.try_into().map_err(|_| malformed())?),
        })
    }
}

/// The statement that lists the sessions `query` asks for, newest first, and its parameters. Only
/// the filters given are in it, so that SQLite can pick an index for them. With a text, it lists the
/// sessions that may hold it (see [`TextSearch`]), whose blocks are then searched.
fn session_statement(
    query: &SessionQuery,
    after: Option<Cursor>,
    search: Option<&TextSearch>,
) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {SESSION_COLUMNS}, s.no FROM sessions s WHERE 1");
    let mut values = Vec::new();
    let mut term = |sql: &mut String, condition: &str, value: SqlValue| {
        values.push(value);
        sql.push_str(&condition.replace('?', &format!("?{}", values.len())));
    };
    for (column, value) in [
        ("identity", &query.identity),
        ("connection", &query.connection),
        ("protocol", &query.protocol),
    ] {
        if let Some(value) = value {
            term(
                &mut sql,
                &format!(" AND s.{column} = ?"),
                SqlValue::Text(value.clone()),
            );
        }
    }
    if let Some(from) = query.started_from {
        term(&mut sql, " AND s.started_at >= ?", SqlValue::Integer(from));
    }
    if let Some(to) = query.started_to {
        term(&mut sql, " AND s.started_at < ?", SqlValue::Integer(to));
    }
    if let Some(after) = after {
        term(
            &mut sql,
            " AND (s.started_at, s.no) < (?",
            SqlValue::Integer(after.started_at),
        );
        term(&mut sql, ", ?)", SqlValue::Integer(after.no));
    }
    // The `> 0` terms are those of the blocks' partial indexes, which SQLite then reads alone.
    if query.has_findings {
        sql.push_str(
            " AND EXISTS(SELECT 1 FROM event_blocks b WHERE b.session_no = s.no AND b.findings > 0)",
        );
    }
    if query.has_denials {
        sql.push_str(
            " AND EXISTS(SELECT 1 FROM event_blocks b WHERE b.session_no = s.no AND b.denials > 0)",
        );
    }
    if let Some(pattern) = search.and_then(|search| search.like.as_ref()) {
        term(
            &mut sql,
            " AND EXISTS(SELECT 1 FROM event_blocks b WHERE b.session_no = s.no \
             AND b.data LIKE ? ESCAPE '\\')",
            SqlValue::Text(pattern.clone()),
        );
    }
    sql.push_str(" ORDER BY s.started_at DESC, s.no DESC");
    (sql, values)
}

impl Store {
    /// A page of the sessions `query` asks for, newest first (by start, then by the order the store
    /// took them in), and the cursor of the page after it if more sessions match. A cursor that no
    /// page gave is [`JournalError::Malformed`].
    pub fn session_page(&self, query: &SessionQuery) -> Result<SessionPage, JournalError> {
        let limit = query.limit.clamp(1, MAX_PAGE_SESSIONS);
        let after = query.cursor.as_deref().map(Cursor::decode).transpose()?;
        let search = query
            .text
            .as_deref()
            .filter(|text| !text.is_empty())
            .map(TextSearch::new);
        let (mut sql, values) = session_statement(query, after, search.as_ref());
        // The blocks searched: those that hold the key, or all of them.
        let mut search = search.map(|search| {
            let pattern = search.like.clone().unwrap_or_else(|| "%".into());
            (search, pattern)
        });
        if search.is_none() {
            // One more than a page: whether it comes says whether a next page does.
            sql.push_str(&format!(" LIMIT {}", limit + 1));
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        let mut sessions = Vec::with_capacity(limit);
        let mut last = None;
        let mut more = false;
        // With a text, sessions that may hold it stream in until a page and one more do: the
        // others are dropped, and the statement stops where the page does.
        while let Some(row) = rows.next()? {
            let no: i64 = row.get(SESSION_NO_COLUMN)?;
            if let Some((search, pattern)) = &mut search {
                if !blocks::any_block_like(&conn, no, pattern, |data| search.block_holds(data))? {
                    continue;
                }
            }
            if sessions.len() == limit {
                more = true;
                break;
            }
            let session = session_from_row(row)?;
            last = Some(Cursor {
                started_at: session.started_at,
                no,
            });
            sessions.push(session);
        }
        Ok(SessionPage {
            sessions,
            next_cursor: last.filter(|_| more).map(Cursor::encode),
        })
    }

    /// Up to `limit` (at least one) events of session `session_id` after its event `after_seq`, in
    /// sequence order, and the `after_seq` of the next page if more events follow. Reads only the
    /// blocks that hold them. An unknown session is [`JournalError::NotFound`].
    pub fn events_page(
        &self,
        session_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<(Vec<Event>, Option<u64>), JournalError> {
        let conn = self.conn();
        let no = session_no(&conn, session_id)?.ok_or_else(|| {
            JournalError::NotFound(format!(
                "no session {session_id:?}; `proctor sessions list` shows session ids"
            ))
        })?;
        let (events, more) = blocks::events_after(&conn, no, session_id, after_seq, limit.max(1))?;
        let next = events.last().map(|event| event.seq).filter(|_| more);
        Ok((events, next))
    }
}

/// Where [`session_statement`] puts the session's number: after [`SESSION_COLUMNS`].
const SESSION_NO_COLUMN: usize = 14;

/// A case-insensitive search for a text among the statements and commands of stored events.
///
/// A block's lines are JSON, where the text stands escaped as in a JSON string. The longest run of
/// ASCII of the text so escaped is the key: a block or a line without it, whatever the case of its
/// ASCII letters, cannot hold the text (but for the few non-ASCII letters whose case pairs with an
/// ASCII one, such as the Kelvin sign). SQLite's `LIKE` (which ignores the case of ASCII letters)
/// picks the blocks that hold the key; in them, the key is looked for in the block lowercased in ASCII
/// (which keeps every byte where it was), and only the lines that hold it are parsed. A line holds
/// the text if one of its statements or commands, lowercased, contains the text lowercased. A text
/// with no ASCII at all is looked for in every line of a searched kind.
struct TextSearch {
    /// The text, lowercased.
    lowered: String,
    /// The key, lowercased.
    key: memchr::memmem::Finder<'static>,
    /// The `LIKE` pattern of the blocks that hold the key; none if the key is empty.
    like: Option<String>,
    /// A block's data, lowercased in ASCII; kept from one block to the next.
    buffer: Vec<u8>,
}

/// What the search reads of a line it parses.
#[derive(Deserialize)]
struct SearchedLine<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    body: Value,
}

impl TextSearch {
    fn new(text: &str) -> Self {
        let mut stored = String::new();
        crate::canonical::write_str(text, &mut stored);
        let escaped = &stored[1..stored.len() - 1];
        let key = escaped
            .split(|c: char| !c.is_ascii())
            .max_by_key(|run| run.len())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let like = (!key.is_empty()).then(|| {
            let escaped = key
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        Self {
            lowered: text.to_lowercase(),
            key: memchr::memmem::Finder::new(key.as_bytes()).into_owned(),
            like,
            buffer: Vec::new(),
        }
    }

    /// Whether a line of block `data` holds the text in a statement or command.
    fn block_holds(&mut self, data: &str) -> Result<bool, JournalError> {
        if self.key.needle().is_empty() {
            for line in blocks::lines(data) {
                if self.line_holds(line)? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        self.buffer.clear();
        self.buffer
            .extend(data.bytes().map(|byte| byte.to_ascii_lowercase()));
        let mut searched_to = 0;
        for at in self.key.find_iter(&self.buffer) {
            if at < searched_to {
                continue;
            }
            let start = memchr::memrchr(b'\n', &self.buffer[..at]).map_or(0, |i| i + 1);
            let end = memchr::memchr(b'\n', &self.buffer[at..]).map_or(data.len(), |i| at + i);
            // Both ends are at a newline or an end of `data`, so at character boundaries.
            if self.line_holds(&data[start..end])? {
                return Ok(true);
            }
            searched_to = end;
        }
        Ok(false)
    }

    /// Whether one block line holds the text in a statement or command. The kind is read first,
    /// so that a result or an output that holds the text is not parsed.
    fn line_holds(&self, line: &str) -> Result<bool, JournalError> {
        if blocks::line_kind(line).is_some_and(|kind| !SEARCHED_KINDS.contains(&kind)) {
            return Ok(false);
        }
        let line: SearchedLine<'_> = serde_json::from_str(line)
            .map_err(|e| JournalError::Malformed(format!("a stored event is not JSON: {e}")))?;
        let body = &line.body;
        let holds = |value: &Value| {
            value
                .as_str()
                .is_some_and(|text| text.to_lowercase().contains(&self.lowered))
        };
        Ok(match line.kind.as_ref() {
            "db.query" => holds(&body["sql"]),
            "policy.decision" => holds(&body["sql"]) || holds(&body["command"]),
            "ssh.exec" | "ssh.command" => holds(&body["command"]),
            "mcp.call" => body["arguments"].as_object().is_some_and(|arguments| {
                arguments
                    .iter()
                    .any(|(key, value)| key != "connection" && holds(value))
            }),
            _ => false,
        })
    }
}

/// The kinds of events whose statements or commands the text search reads.
const SEARCHED_KINDS: [&str; 5] = [
    "db.query",
    "policy.decision",
    "ssh.exec",
    "ssh.command",
    "mcp.call",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{Block, BlockEvent};
    use crate::SyncMode;
    use rusqlite::params;
    use serde_json::json;

    /// A session to store: its header's fields and its events (kind, body, whether with findings).
    struct Stored {
        identity: &'static str,
        connection: &'static str,
        protocol: &'static str,
        started_at: i64,
        events: Vec<(&'static str, Value, bool)>,
    }

    fn session(identity: &'static str, started_at: i64) -> Stored {
        Stored {
            identity,
            connection: "app-db",
            protocol: "postgres",
            started_at,
            events: vec![("session.start", json!({}), false)],
        }
    }

    impl Stored {
        fn on(mut self, connection: &'static str, protocol: &'static str) -> Self {
            self.connection = connection;
            self.protocol = protocol;
            self
        }

        fn event(mut self, kind: &'static str, body: Value) -> Self {
            self.events.push((kind, body, false));
            self
        }

        fn finding(mut self) -> Self {
            self.events
                .push(("db.query", json!({"sql": "select '[MASKED:aws]'"}), true));
            self
        }

        fn denial(self) -> Self {
            self.event(
                "policy.decision",
                json!({"action": "deny", "rule": "no-ddl", "sql": "DROP TABLE t"}),
            )
        }
    }

    /// A store holding `sessions`, numbered from 1 in order, named `s1`, `s2`...; each session's
    /// events in two blocks, so that searches and sums cross blocks.
    fn store_of(sessions: Vec<Stored>) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        {
            let mut conn = store.conn();
            let tx = conn.transaction().unwrap();
            for (i, session) in sessions.iter().enumerate() {
                let no = i as i64 + 1;
                tx.execute(
                    "INSERT INTO sessions (no, id, protocol, identity, connection, client_addr, \
                     started_at) VALUES (?1, ?2, ?3, ?4, ?5, '127.0.0.1:1', ?6)",
                    params![
                        no,
                        format!("s{no}"),
                        session.protocol,
                        session.identity,
                        session.connection,
                        session.started_at
                    ],
                )
                .unwrap();
                let half = session.events.len().div_ceil(2);
                for part in session.events.chunks(half) {
                    let mut block = Block::default();
                    for (kind, body, findings) in part {
                        let seq = block
                            .last_seq()
                            .max(crate::blocks::last_stored_seq(&tx, no).unwrap())
                            + 1;
                        let body = crate::CanonicalJson::of(body);
                        let findings = if *findings {
                            r#"[{"detector":"aws","fingerprint":"ab","location":"sql"}]"#
                        } else {
                            "[]"
                        };
                        block.push(&BlockEvent {
                            seq,
                            at: session.started_at + seq as i64,
                            kind,
                            body: body.as_str(),
                            findings,
                            prev: "p",
                            hash: "h",
                        });
                    }
                    block.insert(&tx, no).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        (dir, store)
    }

    fn ids(page: &SessionPage) -> Vec<&str> {
        page.sessions.iter().map(|s| s.id.as_str()).collect()
    }

    fn query() -> SessionQuery {
        SessionQuery {
            limit: 50,
            ..SessionQuery::default()
        }
    }

    fn listed(store: &Store, query: SessionQuery) -> Vec<String> {
        let page = store.session_page(&query).unwrap();
        assert_eq!(page.next_cursor, None);
        page.sessions.into_iter().map(|s| s.id).collect()
    }

    #[test]
    fn each_filter_lists_the_sessions_it_names_newest_first() {
        let (_dir, store) = store_of(vec![
            session("alice", 100),
            session("bob", 200).on("reports", "mysql").finding(),
            session("alice", 300).on("web", "ssh").denial(),
            session("carol", 300).finding().denial(),
            session("alice", 400).on("reports", "postgres"),
        ]);
        assert_eq!(listed(&store, query()), ["s5", "s4", "s3", "s2", "s1"]);
        let by = |change: fn(&mut SessionQuery)| {
            let mut query = query();
            change(&mut query);
            listed(&store, query)
        };
        assert_eq!(
            by(|q| q.identity = Some("alice".into())),
            ["s5", "s3", "s1"]
        );
        assert_eq!(by(|q| q.connection = Some("reports".into())), ["s5", "s2"]);
        assert_eq!(by(|q| q.protocol = Some("mysql".into())), ["s2"]);
        assert_eq!(
            by(|q| q.protocol = Some("llm".into())),
            Vec::<String>::new()
        );
        assert_eq!(by(|q| q.started_from = Some(300)), ["s5", "s4", "s3"]);
        assert_eq!(by(|q| q.started_to = Some(300)), ["s2", "s1"]);
        assert_eq!(
            by(|q| (q.started_from, q.started_to) = (Some(200), Some(301))),
            ["s4", "s3", "s2"]
        );
        assert_eq!(by(|q| q.has_findings = true), ["s4", "s2"]);
        assert_eq!(by(|q| q.has_denials = true), ["s4", "s3"]);
        assert_eq!(
            by(|q| (q.has_findings, q.has_denials) = (true, true)),
            ["s4"]
        );
        assert_eq!(
            by(|q| {
                q.identity = Some("alice".into());
                q.has_denials = true;
                q.started_to = Some(1000);
            }),
            ["s3"]
        );
        assert_eq!(
            by(|q| {
                q.identity = Some("alice".into());
                q.connection = Some("reports".into());
                q.protocol = Some("postgres".into());
                q.text = Some("masked".into());
            }),
            Vec::<String>::new()
        );
        let s4 = &store.session_page(&query()).unwrap().sessions[1];
        assert_eq!((s4.id.as_str(), s4.findings, s4.denials), ("s4", 1, 1));
        assert_eq!(s4.events, 3);
    }

    #[test]
    fn the_text_is_found_in_what_a_session_ran_or_tried_and_nowhere_else() {
        let (_dir, store) = store_of(vec![
            session("a", 1).event("db.query", json!({"sql": "SELECT * FROM Orders"})),
            session("a", 2)
                .event("db.query", json!({"sql": "select 1"}))
                .event("db.result", json!({"query": 2, "sample": [["orders"]]})),
            session("a", 3).denial(),
            session("a", 4).on("web", "ssh").event(
                "ssh.exec",
                json!({"channel": 0, "command": "cat /etc/Passwd", "pty": false}),
            ),
            session("a", 5).on("web", "ssh").event(
                "ssh.command",
                json!({"channel": 0, "command": "sudo su - orders", "exact": true}),
            ),
            session("a", 6).on("orders-db", "mcp").event(
                "mcp.call",
                json!({"arguments": {"connection": "orders-db", "sql": "select 2"}, "tool": "query"}),
            ),
            session("a", 7).on("app-db", "mcp").event(
                "mcp.call",
                json!({"arguments": {"connection": "app-db", "sql": "select * from ORDERS_archive"}}),
            ),
            session("a", 8).event(
                "db.query",
                json!({"sql": "select name from t where name = \"Élodie\" -- ünïcode"}),
            ),
            session("a", 9)
                .on("web", "ssh")
                .event("term.out", json!({"channel": 0, "data": "cat /etc/passwd"})),
            session("a", 10).event(
                "policy.decision",
                json!({"action": "deny", "command": "rm -rf /", "rule": "r"}),
            ),
        ]);
        let text = |text: &str| {
            listed(
                &store,
                SessionQuery {
                    text: Some(text.into()),
                    ..query()
                },
            )
        };
        assert_eq!(
            text("orders"),
            ["s7", "s5", "s1"],
            "not a result, not a connection"
        );
        assert_eq!(text("drop TABLE"), ["s3"]);
        assert_eq!(text("/etc/passwd"), ["s4"], "not a terminal's output");
        assert_eq!(text("RM -RF"), ["s10"]);
        assert_eq!(text("db.query"), Vec::<String>::new(), "not a kind");
        assert_eq!(text("sql"), Vec::<String>::new(), "not a key");
        assert_eq!(text("\"élodie\""), ["s8"], "quotes and non-ASCII letters");
        assert_eq!(text("ÜNÏCODE"), ["s8"], "no ASCII at all");
        assert_eq!(text("select 2"), ["s6"]);
        assert_eq!(text("").len(), 10, "an empty text filters nothing");
        assert_eq!(text("%"), Vec::<String>::new());
    }

    #[test]
    fn a_cursor_walks_every_page_once_without_a_gap() {
        // Sessions that share their start are ordered by the order the store took them in.
        let sessions: Vec<Stored> = (0..23)
            .map(|i| {
                let started = session(["ana", "ben"][i % 2], 1000 + (i as i64 / 3));
                if i % 4 == 0 {
                    started.event("db.query", json!({"sql": "select 'needle'"}))
                } else {
                    started
                }
            })
            .collect();
        let (_dir, store) = store_of(sessions);
        let everything = listed(
            &store,
            SessionQuery {
                limit: 500,
                ..query()
            },
        );
        assert_eq!(everything.len(), 23);
        for filter in [
            query(),
            SessionQuery {
                identity: Some("ben".into()),
                ..query()
            },
            SessionQuery {
                text: Some("NEEDLE".into()),
                ..query()
            },
        ] {
            let expected = listed(&store, filter.clone());
            for limit in [1, 2, 5, 6, 23, 24] {
                let mut walked = Vec::new();
                let mut cursor = None;
                loop {
                    let page = store
                        .session_page(&SessionQuery {
                            cursor: cursor.clone(),
                            limit,
                            ..filter.clone()
                        })
                        .unwrap();
                    assert!(page.sessions.len() <= limit);
                    walked.extend(page.sessions.iter().map(|s| s.id.clone()));
                    match page.next_cursor {
                        Some(next) => {
                            assert_eq!(page.sessions.len(), limit, "only a last page is short");
                            cursor = Some(next);
                        }
                        None => break,
                    }
                }
                assert_eq!(walked, expected, "limit {limit}");
            }
        }
        let ben = listed(
            &store,
            SessionQuery {
                identity: Some("ben".into()),
                ..query()
            },
        );
        assert_eq!(ben.len(), 11);
        assert_eq!(ids(&store.session_page(&query()).unwrap())[0], "s23");
    }

    #[test]
    fn a_cursor_that_no_page_gave_is_malformed() {
        let (_dir, store) = store_of(vec![session("a", 1), session("a", 2)]);
        let first = store
            .session_page(&SessionQuery {
                limit: 1,
                ..query()
            })
            .unwrap();
        let good = first.next_cursor.unwrap();
        let long = format!("{good}AA");
        for bad in [
            "",
            "not a cursor",
            "AAAA",
            &good[..good.len() - 1],
            &long,
            "+/+/+/+/+/+/+/+/+/+/+/",
        ] {
            let result = store.session_page(&SessionQuery {
                cursor: Some(bad.into()),
                ..query()
            });
            match result {
                Err(JournalError::Malformed(message)) => {
                    assert!(message.contains("cursor"), "{message}")
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let second = store
            .session_page(&SessionQuery {
                cursor: Some(good),
                limit: 1,
                ..query()
            })
            .unwrap();
        assert_eq!(ids(&second), ["s1"]);
        assert_eq!(second.next_cursor, None);
    }

    #[test]
    fn the_limit_is_brought_between_one_and_the_most_a_page_holds() {
        let (_dir, store) = store_of((0..3).map(|i| session("a", i)).collect());
        let page = |limit| {
            store
                .session_page(&SessionQuery { limit, ..query() })
                .unwrap()
        };
        assert_eq!(page(0).sessions.len(), 1);
        assert!(page(0).next_cursor.is_some());
        assert_eq!(page(usize::MAX).sessions.len(), 3);
    }

    #[test]
    fn a_sessions_events_come_a_page_at_a_time() {
        let mut long = session("a", 1);
        for i in 0..9 {
            long = long.event("db.query", json!({"sql": format!("select {i}")}));
        }
        let (_dir, store) = store_of(vec![long, session("b", 2)]);
        let mut walked = Vec::new();
        let mut after = 0;
        loop {
            let (events, next) = store.events_page("s1", after, 4).unwrap();
            assert!(events.iter().all(|e| e.session_id == "s1"));
            walked.extend(events.iter().map(|e| e.seq));
            match next {
                Some(next) => {
                    assert_eq!(Some(next), walked.last().copied());
                    after = next;
                }
                None => break,
            }
        }
        assert_eq!(walked, (1..=10).collect::<Vec<u64>>());
        let (events, next) = store.events_page("s1", 0, 10_000).unwrap();
        assert_eq!((events.len(), next), (10, None));
        assert_eq!(events[3].body["sql"], "select 2");
        assert_eq!(store.events_page("s1", 10, 5).unwrap(), (vec![], None));
        assert_eq!(store.events_page("s1", 0, 0).unwrap().0.len(), 1);
        assert_eq!(store.events_page("s2", 0, 5).unwrap().0.len(), 1);
        assert!(matches!(
            store.events_page("s3", 0, 5),
            Err(JournalError::NotFound(_))
        ));
    }

    #[test]
    fn a_cursor_reads_back_as_the_numbers_it_was_made_of() {
        for cursor in [
            Cursor {
                started_at: 0,
                no: 1,
            },
            Cursor {
                started_at: 1_767_225_600_123_456_789,
                no: i64::MAX,
            },
            Cursor {
                started_at: -5,
                no: 7,
            },
        ] {
            let text = cursor.encode();
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(Cursor::decode(&text).unwrap(), cursor);
        }
    }
}
