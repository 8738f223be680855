//! The embedded SQLite store: schema, pragmas, and every read and administrative write.
//!
//! Session events reach it only through the commit log (`crate::Writer` appends, `log` ingests); this
//! module owns the schema they land in, the identity and token rows, and the queries the CLI runs. It never
//! interprets event bodies beyond what listing sessions needs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::blocks;
use crate::chain::{verify_chain, Event, SessionHeader, VerifyOutcome};
use crate::recovery;
use crate::JournalError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS identities (
    name TEXT PRIMARY KEY,
    groups TEXT NOT NULL,
    scram_salt BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    identity TEXT NOT NULL REFERENCES identities(name),
    sha256 BLOB NOT NULL UNIQUE,
    scram_iterations INTEGER NOT NULL,
    scram_stored_key BLOB NOT NULL,
    scram_server_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    mysql_native_hash BLOB
);
CREATE INDEX IF NOT EXISTS tokens_by_identity ON tokens(identity);
CREATE TABLE IF NOT EXISTS sessions (
    no INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    protocol TEXT NOT NULL,
    identity TEXT NOT NULL,
    connection TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions(started_at);
-- A page of sessions filtered by identity, connection or protocol, newest first (see `pages`), reads
-- only its own rows through these, where by start alone it reads every session between: among 10,600
-- sessions, a rare identity's first page took 6-8 ms by start and 0.5 ms by identity, a rare
-- protocol's 3 ms and 0.5 ms (`bench/console.sh`). Each costs an insert per session, not per event.
CREATE INDEX IF NOT EXISTS sessions_by_identity ON sessions(identity, started_at);
CREATE INDEX IF NOT EXISTS sessions_by_connection ON sessions(connection, started_at);
CREATE INDEX IF NOT EXISTS sessions_by_protocol ON sessions(protocol, started_at);
CREATE TABLE IF NOT EXISTS journal_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#;

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// WAL with `synchronous=NORMAL`: a committed event survives a crash of Proctor (`kill -9`); the last
    /// commits may be lost if the whole machine loses power.
    #[default]
    Normal,
    /// WAL with `synchronous=FULL`: every commit is fsynced, surviving power loss too, at a higher cost.
    Full,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdentityRow {
    pub name: String,
    pub groups: Vec<String>,
    #[serde(skip)]
    pub scram_salt: Vec<u8>,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TokenRow {
    pub id: String,
    pub identity: String,
    #[serde(skip)]
    pub sha256: Vec<u8>,
    #[serde(skip)]
    pub scram_iterations: u32,
    #[serde(skip)]
    pub scram_stored_key: Vec<u8>,
    #[serde(skip)]
    pub scram_server_key: Vec<u8>,
    /// SHA1(SHA1(token)), what MySQL's `mysql_native_password` checks a scramble against; absent
    /// for tokens made before Proctor spoke MySQL.
    #[serde(skip)]
    pub mysql_native_hash: Option<Vec<u8>>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A session as the CLI lists it: its header, how it ended, and counts derived from its events.
#[derive(Clone, Debug, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub protocol: String,
    pub identity: String,
    pub connection: String,
    pub client_addr: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub authenticated: bool,
    pub events: u64,
    pub queries: u64,
    pub errors: u64,
    /// Events whose findings list is not empty.
    pub findings: u64,
    /// Statements and commands the guardrails refused, held ones refused included (see `blocks`).
    pub denials: u64,
}

impl SessionRow {
    pub fn header(&self) -> SessionHeader {
        SessionHeader {
            session_id: self.id.clone(),
            protocol: self.protocol.clone(),
            identity: self.identity.clone(),
            connection: self.connection.clone(),
            client_addr: self.client_addr.clone(),
            started_at: self.started_at,
        }
    }
}

/// One event where a fingerprinted secret passed.
#[derive(Clone, Debug, Serialize)]
pub struct Sighting {
    pub session_id: String,
    pub identity: String,
    pub connection: String,
    pub seq: u64,
    pub at: i64,
    pub kind: String,
    pub detector: String,
    pub location: String,
}

#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub since_ns: Option<i64>,
}

/// The journal's SQLite database. Reads and administrative writes share one connection behind a mutex;
/// session events go through the [`crate::Writer`], which opens its own.
pub struct Store {
    path: PathBuf,
    data_dir: PathBuf,
    sync: SyncMode,
    conn: Mutex<Connection>,
}

/// A session's columns as [`session_from_row`] reads them. Findings and denials are summed over the
/// blocks the partial indexes name (the `> 0` terms let SQLite use them; see `blocks`): the others
/// hold none.
pub(crate) const SESSION_COLUMNS: &str =
    "s.id, s.protocol, s.identity, s.connection, s.client_addr, s.started_at, \
     s.ended_at, s.end_reason, \
     EXISTS(SELECT 1 FROM event_blocks b WHERE b.session_no = s.no AND b.started), \
     (SELECT coalesce(sum(b.events), 0) FROM event_blocks b WHERE b.session_no = s.no), \
     (SELECT coalesce(sum(b.queries), 0) FROM event_blocks b WHERE b.session_no = s.no), \
     (SELECT coalesce(sum(b.errors), 0) FROM event_blocks b WHERE b.session_no = s.no), \
     (SELECT coalesce(sum(b.findings), 0) FROM event_blocks b \
      WHERE b.session_no = s.no AND b.findings > 0), \
     (SELECT coalesce(sum(b.denials), 0) FROM event_blocks b \
      WHERE b.session_no = s.no AND b.denials > 0)";

pub(crate) fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: row.get(0)?,
        protocol: row.get(1)?,
        identity: row.get(2)?,
        connection: row.get(3)?,
        client_addr: row.get(4)?,
        started_at: row.get(5)?,
        ended_at: row.get(6)?,
        end_reason: row.get(7)?,
        authenticated: row.get(8)?,
        events: row.get(9)?,
        queries: row.get(10)?,
        errors: row.get(11)?,
        findings: row.get(12)?,
        denials: row.get(13)?,
    })
}

/// Inserts a token's row; returns the change that records it.
fn insert_token(
    tx: &rusqlite::Transaction<'_>,
    token: &TokenRow,
) -> Result<crate::tlog::Change, JournalError> {
    tx.execute(
        "INSERT INTO tokens (id, identity, sha256, scram_iterations, scram_stored_key, scram_server_key, \
         created_at, revoked_at, mysql_native_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)",
        params![
            token.id,
            token.identity,
            token.sha256,
            token.scram_iterations,
            token.scram_stored_key,
            token.scram_server_key,
            token.created_at,
            token.mysql_native_hash
        ],
    )?;
    let mut fields = serde_json::Map::new();
    fields.insert("identity".into(), token.identity.clone().into());
    fields.insert("token_id".into(), token.id.clone().into());
    Ok(("token.created", fields))
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: row.get(0)?,
        identity: row.get(1)?,
        sha256: row.get(2)?,
        scram_iterations: row.get(3)?,
        scram_stored_key: row.get(4)?,
        scram_server_key: row.get(5)?,
        created_at: row.get(6)?,
        revoked_at: row.get(7)?,
        mysql_native_hash: row.get(8)?,
    })
}

const TOKEN_COLUMNS: &str =
    "id, identity, sha256, scram_iterations, scram_stored_key, scram_server_key, \
     created_at, revoked_at, mysql_native_hash";

/// Gives a store made before Proctor spoke MySQL the tokens' `mysql_native_hash` column (empty for
/// the tokens it holds: they log in to MySQL connections over TLS only).
fn add_mysql_native_hash(conn: &Connection) -> Result<(), JournalError> {
    let present: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('tokens') WHERE name = 'mysql_native_hash'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !present {
        conn.execute_batch("ALTER TABLE tokens ADD COLUMN mysql_native_hash BLOB")?;
    }
    Ok(())
}

/// The page size of a new store. The ingester stores a session's events as one block of text per
/// round, up to hundreds of KiB, which SQLite writes to its WAL a page at a time (two writes per
/// page): larger pages take a block in fewer writes, but leave more unused at the end of its last
/// page. Through `pgbench -S`, 16 KiB made 3.5 times fewer writes than SQLite's default of 4 KiB, for
/// a store 2.5 % larger than the events it holds (0.9 % with 4 KiB, 8.5 % with 64 KiB). An existing
/// store keeps the size it was made with.
const PAGE_SIZE: u32 = 16_384;

pub(crate) fn open_connection(path: &Path, sync: SyncMode) -> Result<Connection, JournalError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match sync {
        SyncMode::Normal => "NORMAL",
        SyncMode::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// The number the store files session `session_id` under, if it holds that session.
pub(crate) fn session_no(conn: &Connection, session_id: &str) -> Result<Option<i64>, JournalError> {
    Ok(conn
        .query_row(
            "SELECT no FROM sessions WHERE id = ?1",
            [session_id],
            |row| row.get(0),
        )
        .optional()?)
}

/// The header of session number `no`, if the store holds that session.
pub(crate) fn session_header(
    conn: &Connection,
    no: i64,
) -> Result<Option<SessionHeader>, JournalError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, protocol, identity, connection, client_addr, started_at FROM sessions \
             WHERE no = ?1",
        )?
        .query_row([no], |row| {
            Ok(SessionHeader {
                session_id: row.get(0)?,
                protocol: row.get(1)?,
                identity: row.get(2)?,
                connection: row.get(3)?,
                client_addr: row.get(4)?,
                started_at: row.get(5)?,
            })
        })
        .optional()?)
}

impl Store {
    /// Opens (creating if needed) `journal.db` in `data_dir`, in WAL mode, first recovering what a
    /// stopped gateway left (see `recovery`). Refuses while a damaged commit log tail that an operator
    /// has not acknowledged lies in the data dir.
    pub fn open(data_dir: &Path, sync: SyncMode) -> Result<Self, JournalError> {
        let store = Self::open_despite_damage(data_dir, sync)?;
        let damaged = recovery::unacknowledged_damage(data_dir)?;
        if !damaged.is_empty() {
            return Err(recovery::damage_error(data_dir, &damaged));
        }
        Ok(store)
    }

    /// [`Self::open`], even while a damaged commit log tail is unacknowledged: for acknowledging it.
    pub fn open_despite_damage(data_dir: &Path, sync: SyncMode) -> Result<Self, JournalError> {
        std::fs::create_dir_all(data_dir).map_err(|source| JournalError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join("journal.db");
        let mut conn = open_connection(&path, sync)?;
        conn.execute_batch(SCHEMA)?;
        add_mysql_native_hash(&conn)?;
        blocks::create(&mut conn)?;
        conn.execute_batch(crate::tlog::SCHEMA)?;
        conn.execute_batch(crate::approvals::SCHEMA)?;
        conn.execute_batch(crate::ssh_keys::SCHEMA)?;
        recovery::recover(open_connection(&path, sync)?, data_dir)?;
        Ok(Self {
            path,
            data_dir: data_dir.to_path_buf(),
            sync,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates an identity with its first token, and records both in the log, in one transaction.
    pub fn add_identity(
        &self,
        identity: &IdentityRow,
        first_token: &TokenRow,
    ) -> Result<(), JournalError> {
        let groups = serde_json::to_string(&identity.groups)
            .map_err(|e| JournalError::Malformed(e.to_string()))?;
        self.change(|tx| {
            let inserted = tx.execute(
                "INSERT INTO identities (name, groups, scram_salt, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(name) DO NOTHING",
                params![identity.name, groups, identity.scram_salt, identity.created_at],
            )?;
            if inserted == 0 {
                return Err(JournalError::Conflict(format!(
                    "identity {:?} already exists; use `proctor token create {}` for a new token",
                    identity.name, identity.name
                )));
            }
            let mut fields = serde_json::Map::new();
            fields.insert("groups".into(), identity.groups.clone().into());
            fields.insert("identity".into(), identity.name.clone().into());
            let token = insert_token(tx, first_token)?;
            Ok(((), vec![("identity.added", fields), token]))
        })
    }

    pub fn identity(&self, name: &str) -> Result<Option<IdentityRow>, JournalError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, groups, scram_salt, created_at FROM identities WHERE name = ?1",
                [name],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(name, groups, scram_salt, created_at)| {
            Ok(IdentityRow {
                name,
                groups: serde_json::from_str(&groups)
                    .map_err(|e| JournalError::Malformed(format!("groups of identity: {e}")))?,
                scram_salt,
                created_at,
            })
        })
        .transpose()
    }

    pub fn list_identities(&self) -> Result<Vec<(IdentityRow, Vec<TokenRow>)>, JournalError> {
        let names: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT name FROM identities ORDER BY name")?;
            let names = stmt
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            names
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(identity) = self.identity(&name)? {
                let tokens = self.tokens_of(&name, true)?;
                out.push((identity, tokens));
            }
        }
        Ok(out)
    }

    /// Adds a token and records it in the log, in one transaction.
    pub fn add_token(&self, token: &TokenRow) -> Result<(), JournalError> {
        self.change(|tx| Ok(((), vec![insert_token(tx, token)?])))
    }

    /// Tokens of an identity; revoked ones only if `include_revoked`.
    pub fn tokens_of(
        &self,
        identity: &str,
        include_revoked: bool,
    ) -> Result<Vec<TokenRow>, JournalError> {
        let conn = self.conn();
        let sql = if include_revoked {
            format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE identity = ?1 ORDER BY created_at")
        } else {
            format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE identity = ?1 AND revoked_at IS NULL \
                 ORDER BY created_at"
            )
        };
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([identity], token_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The active token whose SHA-256 is `sha256`, if any.
    pub fn active_token_by_hash(&self, sha256: &[u8]) -> Result<Option<TokenRow>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE sha256 = ?1 AND revoked_at IS NULL"
        ))?;
        Ok(stmt.query_row([sha256], token_from_row).optional()?)
    }

    /// Revokes a token by id, and records it in the log, in one transaction. Revoking twice is an
    /// error that says so.
    pub fn revoke_token(&self, id: &str, at: i64) -> Result<TokenRow, JournalError> {
        self.change(|tx| {
            let existing = tx
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                    [id],
                    token_from_row,
                )
                .optional()?
                .ok_or_else(|| {
                    JournalError::NotFound(format!(
                        "no token with id {id:?}; `proctor identity list` shows token ids"
                    ))
                })?;
            if existing.revoked_at.is_some() {
                return Err(JournalError::Conflict(format!(
                    "token {id} is already revoked"
                )));
            }
            tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
                params![id, at],
            )?;
            let mut fields = serde_json::Map::new();
            fields.insert("identity".into(), existing.identity.clone().into());
            fields.insert("token_id".into(), id.into());
            let revoked = TokenRow {
                revoked_at: Some(at),
                ..existing
            };
            Ok((revoked, vec![("token.revoked", fields)]))
        })
    }

    pub fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRow>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s \
             WHERE (?1 IS NULL OR s.identity = ?1) AND (?2 IS NULL OR s.connection = ?2) \
             AND (?3 IS NULL OR s.started_at >= ?3) ORDER BY s.started_at, s.id"
        ))?;
        let rows = stmt
            .query_map(
                params![filter.identity, filter.connection, filter.since_ns],
                session_from_row,
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Finds a session by its full id or by a unique prefix of it.
    /// The session that started last, if any.
    pub fn last_session(&self) -> Result<Option<SessionRow>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s ORDER BY s.started_at DESC, s.id DESC LIMIT 1"
        ))?;
        let last = stmt.query_map([], session_from_row)?.next().transpose()?;
        Ok(last)
    }

    pub fn find_session(&self, id_or_prefix: &str) -> Result<SessionRow, JournalError> {
        let conn = self.conn();
        let escaped = id_or_prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let mut stmt = conn.prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = ?1 OR s.id LIKE ?2 ESCAPE '\\' \
             ORDER BY s.id = ?1 DESC LIMIT 2"
        ))?;
        let rows: Vec<SessionRow> = stmt
            .query_map(
                params![id_or_prefix, format!("{escaped}%")],
                session_from_row,
            )?
            .collect::<Result<_, _>>()?;
        match rows.as_slice() {
            [] => Err(JournalError::NotFound(format!(
                "no session {id_or_prefix:?}; `proctor sessions list` shows session ids"
            ))),
            [only] => Ok(only.clone()),
            [first, _] if first.id == id_or_prefix => Ok(first.clone()),
            _ => Err(JournalError::NotFound(format!(
                "{id_or_prefix:?} matches more than one session; give more of the id"
            ))),
        }
    }

    /// Every event of a session, in sequence order, as stored.
    pub fn events(&self, session_id: &str) -> Result<Vec<Event>, JournalError> {
        let conn = self.conn();
        match session_no(&conn, session_id)? {
            Some(no) => blocks::session_events(&conn, no, session_id),
            None => Ok(Vec::new()),
        }
    }

    /// Every event whose findings carry one of `fingerprints` (the forms a suspected secret may have
    /// been recorded under): where it passed, when, and by whom, each finding once.
    pub fn find_fingerprints(
        &self,
        fingerprints: &[String],
    ) -> Result<Vec<Sighting>, JournalError> {
        if fingerprints
            .iter()
            .any(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(JournalError::Malformed(
                "a fingerprint is hexadecimal".into(),
            ));
        }
        let conn = self.conn();
        let mut sessions =
            conn.prepare_cached("SELECT id, identity, connection FROM sessions WHERE no = ?1")?;
        let mut sightings = Vec::new();
        for (no, event) in blocks::events_mentioning(&conn, fingerprints)? {
            let (session_id, identity, connection): (String, String, String) =
                sessions.query_row([no], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            for finding in event.findings.iter().filter(|f| {
                fingerprints
                    .iter()
                    .any(|fingerprint| f["fingerprint"] == fingerprint.as_str())
            }) {
                sightings.push(Sighting {
                    session_id: session_id.clone(),
                    identity: identity.clone(),
                    connection: connection.clone(),
                    seq: event.seq,
                    at: event.at,
                    kind: event.kind.clone(),
                    detector: finding["detector"].as_str().unwrap_or_default().to_owned(),
                    location: finding["location"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
        sightings.sort_by_key(|s| s.at);
        Ok(sightings)
    }

    /// Recomputes a session's chain from its header and stored events; names the first event that fails.
    pub fn verify_session(&self, session: &SessionRow) -> Result<VerifyOutcome, JournalError> {
        let events = match self.events(&session.id) {
            Ok(events) => events,
            Err(JournalError::Malformed(reason)) => {
                return Ok(VerifyOutcome::Broken { seq: 0, reason })
            }
            Err(e) => return Err(e),
        };
        verify_chain(&session.header(), &events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{leaves_of, refuse_leaves};

    fn identity(name: &str) -> IdentityRow {
        IdentityRow {
            name: name.into(),
            groups: vec!["dba".into()],
            scram_salt: vec![1; 16],
            created_at: 1,
        }
    }

    fn token(id: &str, identity: &str) -> TokenRow {
        TokenRow {
            id: id.into(),
            identity: identity.into(),
            sha256: id.as_bytes().to_vec(),
            scram_iterations: 4096,
            scram_stored_key: vec![2; 32],
            scram_server_key: vec![3; 32],
            mysql_native_hash: None,
            created_at: 1,
            revoked_at: None,
        }
    }

    #[test]
    fn an_identity_change_that_the_log_cannot_record_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        store
            .add_identity(&identity("alice"), &token("t1", "alice"))
            .unwrap();
        let leaves =
            |store: &Store| leaves_of(store, "identity.added") + leaves_of(store, "token.created");
        assert_eq!(leaves(&store), 2);
        refuse_leaves(&store);

        assert!(store
            .add_identity(&identity("bob"), &token("t2", "bob"))
            .is_err());
        assert!(store.identity("bob").unwrap().is_none());
        assert!(store.tokens_of("bob", true).unwrap().is_empty());

        assert!(store.add_token(&token("t3", "alice")).is_err());
        assert!(store.revoke_token("t1", 5).is_err());
        let tokens = store.tokens_of("alice", true).unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].revoked_at, None);
        assert_eq!(leaves(&store), 2);
    }
}
