//! The transparency log in the store: seals of session chains and records of identity and configuration
//! changes, appended as leaves of one Merkle tree, and the signed checkpoints that commit to it.
//!
//! Every append runs inside the caller's SQLite transaction and ends with a new signed checkpoint, so
//! the store never holds leaves that no checkpoint covers, whichever process appended them (the
//! gateway's ingester, or an administrative command). The tree's right edge (its frontier: the roots
//! of its perfect subtrees) is stored, so a root costs O(log n); proofs read the leaf hashes.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::FxHashMap;

use sha2::Digest;

use crate::blocks;
use crate::bundle::{encode_proof, Bundle, SealProof, BUNDLE_FORMAT};
use crate::canonical::{Body, CanonicalJson};
use crate::chain::canonical_time;
use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, LogKey};
use crate::store::{session_no, SessionRow, Store};
use crate::JournalError;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS log_leaves (
    idx INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    hash BLOB NOT NULL,
    session_no INTEGER
);
CREATE INDEX IF NOT EXISTS log_leaves_by_session ON log_leaves(session_no) WHERE session_no IS NOT NULL;
CREATE TABLE IF NOT EXISTS log_sealed (
    session_no INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_frontier (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    size INTEGER NOT NULL,
    nodes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL,
    rotation INTEGER NOT NULL DEFAULT 0
);
"#;

/// Checkpoints kept in the store, besides those of key rotations, counted in tree sizes back from the
/// newest.
const CHECKPOINTS_KEPT: i64 = 100_000;

/// A seal is due once a session has this many unsealed events...
pub(crate) const SEAL_EVERY_EVENTS: u64 = 1000;
/// ...or its oldest unsealed event is this old (so that, with the ingester's 250 ms rounds, no event
/// waits more than a second for its seal), or it ended.
pub(crate) const SEAL_EVERY: std::time::Duration = std::time::Duration::from_millis(750);

/// This machine's name, recorded in seals.
pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The log's key in `data_dir`, created on first use and named after this machine.
pub fn log_key(data_dir: &Path) -> Result<LogKey, JournalError> {
    LogKey::load_or_create(data_dir, &format!("proctor/{}", node_name()))
}

/// A leaf to append: its kind, its canonical JSON, and the session it seals, if any.
pub(crate) struct NewLeaf {
    pub kind: &'static str,
    pub data: String,
    pub session_no: Option<i64>,
}

/// The right edge of the tree: (height, hash) of each perfect subtree, largest first.
#[derive(Default)]
struct Frontier {
    size: u64,
    nodes: Vec<(u8, Hash)>,
}

impl Frontier {
    fn load(conn: &Connection) -> Result<Self, JournalError> {
        let row: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT size, nodes FROM log_frontier WHERE id = 0",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((size, blob)) = row else {
            return Ok(Self::default());
        };
        if blob.len() % 33 != 0 {
            return Err(JournalError::Malformed(
                "the log frontier is corrupt".into(),
            ));
        }
        let nodes = blob
            .chunks(33)
            .map(|node| {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&node[1..]);
                (node[0], hash)
            })
            .collect();
        Ok(Self {
            size: size as u64,
            nodes,
        })
    }

    fn save(&self, conn: &Connection) -> Result<(), JournalError> {
        let mut blob = Vec::with_capacity(self.nodes.len() * 33);
        for (height, hash) in &self.nodes {
            blob.push(*height);
            blob.extend_from_slice(hash);
        }
        conn.execute(
            "INSERT OR REPLACE INTO log_frontier (id, size, nodes) VALUES (0, ?1, ?2)",
            params![self.size as i64, blob],
        )?;
        Ok(())
    }

    fn push(&mut self, leaf: Hash) {
        self.nodes.push((0, leaf));
        self.size += 1;
        while let [.., (left_height, left), (right_height, right)] = self.nodes[..] {
            if left_height != right_height {
                break;
            }
            self.nodes.truncate(self.nodes.len() - 2);
            self.nodes
                .push((left_height + 1, merkle::node_hash(&left, &right)));
        }
    }

    fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some((_, last)) = nodes.next() else {
            return merkle::empty_root();
        };
        nodes.fold(*last, |acc, (_, left)| merkle::node_hash(left, &acc))
    }
}

/// Appends `leaves` and signs a checkpoint over the new tree. Call inside a transaction.
pub(crate) fn append(
    conn: &Connection,
    key: &LogKey,
    leaves: &[NewLeaf],
) -> Result<Checkpoint, JournalError> {
    let mut frontier = Frontier::load(conn)?;
    {
        let mut insert = conn.prepare_cached(
            "INSERT INTO log_leaves (idx, kind, data, hash, session_no) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for leaf in leaves {
            let hash = merkle::leaf_hash(leaf.data.as_bytes());
            insert.execute(params![
                frontier.size as i64,
                leaf.kind,
                leaf.data,
                hash.as_slice(),
                leaf.session_no
            ])?;
            frontier.push(hash);
        }
    }
    frontier.save(conn)?;
    let checkpoint = Checkpoint {
        origin: key.name().to_owned(),
        size: frontier.size,
        root: frontier.root(),
    };
    conn.execute(
        "INSERT OR REPLACE INTO log_checkpoints (size, note) VALUES (?1, ?2)",
        params![checkpoint.size as i64, key.sign(&checkpoint.text())],
    )?;
    // Bundles carry their own checkpoint and monitors keep theirs: the store keeps the recent ones,
    // for consistency checks, and those that record a key rotation.
    conn.execute(
        "DELETE FROM log_checkpoints WHERE rotation = 0 AND size <= ?1 - ?2",
        params![checkpoint.size as i64, CHECKPOINTS_KEPT],
    )?;
    Ok(checkpoint)
}

/// A change to record as a leaf of the log: its kind and its fields. The fields must not hold `at`
/// or `kind`: they are added.
pub(crate) type Change = (&'static str, serde_json::Map<String, serde_json::Value>);

/// Makes an administrative change (identities, tokens, approvals, configuration) in one transaction:
/// `write` changes the rows and returns the leaves that record the change, which are appended with
/// their own checkpoint. The rows and their leaves land together or not at all, so the log never
/// misses a change the store holds.
pub(crate) fn change<T>(
    conn: &mut Connection,
    data_dir: &Path,
    write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(T, Vec<Change>), JournalError>,
) -> Result<T, JournalError> {
    let key = log_key(data_dir)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (made, changes) = write(&tx)?;
    let leaves: Vec<NewLeaf> = changes
        .into_iter()
        .map(|(kind, mut fields)| {
            fields.insert("at".into(), canonical_time(crate::now_ns()).into());
            fields.insert("kind".into(), kind.into());
            NewLeaf {
                kind,
                data: CanonicalJson::of(&serde_json::Value::Object(fields))
                    .as_str()
                    .to_owned(),
                session_no: None,
            }
        })
        .collect();
    if !leaves.is_empty() {
        append(&tx, &key, &leaves)?;
    }
    tx.commit()?;
    Ok(made)
}

/// Sessions with events not yet sealed, and how far their seals reach.
fn unsealed(conn: &Connection, only: Option<&[i64]>) -> Result<Vec<Seal>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.no, s.id, coalesce(l.last_seq, 0), b.last_seq, b.head \
         FROM sessions s LEFT JOIN log_sealed l ON l.session_no = s.no \
         JOIN event_blocks b ON b.session_no = s.no \
           AND b.last_seq = (SELECT max(last_seq) FROM event_blocks WHERE session_no = s.no) \
         WHERE (?1 IS NULL OR s.no = ?1) AND b.last_seq > coalesce(l.last_seq, 0)",
    )?;
    let read = |row: &rusqlite::Row<'_>| {
        Ok(Seal {
            session_no: row.get(0)?,
            session_id: row.get(1)?,
            first_seq: row.get::<_, i64>(2)? as u64 + 1,
            last_seq: row.get::<_, i64>(3)? as u64,
            chain_head: row.get(4)?,
        })
    };
    let mut seals = Vec::new();
    match only {
        None => {
            for seal in stmt.query_map([None::<i64>], read)? {
                seals.push(seal?);
            }
        }
        Some(sessions) => {
            for no in sessions {
                for seal in stmt.query_map([Some(*no)], read)? {
                    seals.push(seal?);
                }
            }
        }
    }
    Ok(seals)
}

struct Seal {
    session_no: i64,
    session_id: String,
    first_seq: u64,
    last_seq: u64,
    chain_head: String,
}

/// Cuts seals longer than [`SEAL_EVERY_EVENTS`] into seals of that many events each, so that no
/// seal covers more events than the log promises.
fn split_long(conn: &Connection, seals: Vec<Seal>) -> Result<Vec<Seal>, JournalError> {
    let mut split = Vec::with_capacity(seals.len());
    for seal in seals {
        let mut first = seal.first_seq;
        while seal.last_seq - first + 1 > SEAL_EVERY_EVENTS {
            let last = first + SEAL_EVERY_EVENTS - 1;
            split.push(Seal {
                session_no: seal.session_no,
                session_id: seal.session_id.clone(),
                first_seq: first,
                last_seq: last,
                chain_head: blocks::hash_at(conn, seal.session_no, last)?.ok_or_else(|| {
                    JournalError::Malformed(format!(
                        "event {last} of session {} is not in the store",
                        seal.session_id
                    ))
                })?,
            });
            first = last + 1;
        }
        split.push(Seal {
            first_seq: first,
            ..seal
        });
    }
    Ok(split)
}

/// A session that was not sealed because its stored events miss one before the head a seal would
/// name: a seal never covers a chain with a hole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedSeal {
    pub session_id: String,
    /// The first event that the store does not hold exactly once.
    pub missing_seq: u64,
}

impl std::fmt::Display for RefusedSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "session {} is not sealed: the store does not hold its event {} exactly once",
            self.session_id, self.missing_seq
        )
    }
}

/// Seals the given sessions (all sessions with unsealed events if `None`) and signs a checkpoint.
/// Call inside a transaction. A session whose stored events do not run without a gap from its last
/// seal to its newest event is not sealed: returns those sessions, and seals the others.
pub(crate) fn seal(
    conn: &Connection,
    key: &LogKey,
    node: &str,
    sessions: Option<&[i64]>,
) -> Result<Vec<RefusedSeal>, JournalError> {
    let mut refused = Vec::new();
    let mut due = Vec::new();
    for seal in unsealed(conn, sessions)? {
        match blocks::first_missing_seq(conn, seal.session_no, seal.first_seq, seal.last_seq)? {
            Some(missing_seq) => refused.push(RefusedSeal {
                session_id: seal.session_id,
                missing_seq,
            }),
            None => due.push(seal),
        }
    }
    if due.is_empty() {
        return Ok(refused);
    }
    let due = split_long(conn, due)?;
    let at = canonical_time(crate::now_ns());
    let leaves: Vec<NewLeaf> = due
        .iter()
        .map(|seal| NewLeaf {
            kind: "seal",
            data: Body::new()
                .str("at", &at)
                .str("chain_head", &seal.chain_head)
                .uint("first_seq", seal.first_seq)
                .str("kind", "seal")
                .uint("last_seq", seal.last_seq)
                .str("node", node)
                .str("session_id", &seal.session_id)
                .finish()
                .as_str()
                .to_owned(),
            session_no: Some(seal.session_no),
        })
        .collect();
    append(conn, key, &leaves)?;
    let mut sealed = conn.prepare_cached(
        "INSERT OR REPLACE INTO log_sealed (session_no, last_seq) VALUES (?1, ?2)",
    )?;
    for seal in &due {
        sealed.execute(params![seal.session_no, seal.last_seq as i64])?;
    }
    Ok(refused)
}

/// What the ingester knows of sessions with unsealed events: when the oldest arrived and how many.
#[derive(Default)]
pub(crate) struct SealSchedule {
    pending: FxHashMap<i64, (std::time::Instant, u64)>,
    ended: Vec<i64>,
}

impl SealSchedule {
    pub fn event(&mut self, session_no: i64) {
        self.pending
            .entry(session_no)
            .or_insert_with(|| (std::time::Instant::now(), 0))
            .1 += 1;
    }

    pub fn ended(&mut self, session_no: i64) {
        self.ended.push(session_no);
    }

    /// The sessions whose seal is due now; they leave the schedule.
    pub fn take_due(&mut self) -> Vec<i64> {
        let mut due = std::mem::take(&mut self.ended);
        self.pending.retain(|no, (since, count)| {
            let is_due =
                due.contains(no) || *count >= SEAL_EVERY_EVENTS || since.elapsed() >= SEAL_EVERY;
            if is_due && !due.contains(no) {
                due.push(*no);
            }
            !is_due
        });
        due
    }
}

/// The newest signed checkpoint, if any.
pub fn newest_checkpoint(conn: &Connection) -> Result<Option<(u64, String)>, JournalError> {
    Ok(conn
        .query_row(
            "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
            [],
            |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)),
        )
        .optional()?)
}

/// The hashes of the first `size` leaves, recomputed from their stored data.
pub fn leaf_hashes(conn: &Connection, size: u64) -> Result<Vec<Hash>, JournalError> {
    let mut stmt = conn.prepare("SELECT idx, data FROM log_leaves WHERE idx < ?1 ORDER BY idx")?;
    let mut hashes = Vec::with_capacity(size as usize);
    for row in stmt.query_map([size as i64], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })? {
        let (idx, data) = row?;
        if idx as usize != hashes.len() {
            return Err(JournalError::Malformed(format!(
                "log leaf {} is missing",
                hashes.len()
            )));
        }
        hashes.push(merkle::leaf_hash(data.as_bytes()));
    }
    if hashes.len() as u64 != size {
        return Err(JournalError::Malformed(format!(
            "the log holds {} leaves, fewer than the {size} its checkpoint covers",
            hashes.len()
        )));
    }
    Ok(hashes)
}

/// The seal leaves of a session: (index, data), in order.
pub fn seals_of(conn: &Connection, session_no: i64) -> Result<Vec<(u64, String)>, JournalError> {
    let mut stmt =
        conn.prepare("SELECT idx, data FROM log_leaves WHERE session_no = ?1 ORDER BY idx")?;
    let rows = stmt.query_map([session_no], |row| {
        Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A consistency proof between two sizes of the log, and whether it holds.
pub struct Consistency {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: Hash,
    pub new_root: Hash,
    pub proof: Vec<Hash>,
    pub holds: bool,
}

impl Store {
    /// Records an identity or configuration change as a leaf of the log.
    pub fn record_change(
        &self,
        kind: &'static str,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), JournalError> {
        self.change(|_| Ok(((), vec![(kind, fields)])))
    }

    /// Changes rows and records the change in the log, in one transaction (see [`change`]).
    pub(crate) fn change<T>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(T, Vec<Change>), JournalError>,
    ) -> Result<T, JournalError> {
        change(&mut self.conn(), self.data_dir(), write)
    }

    /// Records the connections' configuration (`description`, holding no secrets) if it differs from
    /// the one recorded last.
    pub fn record_configuration(
        &self,
        description: &serde_json::Value,
    ) -> Result<(), JournalError> {
        let digest = crate::canonical::hex_lower(&sha2::Sha256::digest(
            CanonicalJson::of(description).as_str().as_bytes(),
        ));
        let last: Option<String> = self
            .conn()
            .query_row(
                "SELECT data FROM log_leaves WHERE kind = 'config.connections' ORDER BY idx DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?;
        let unchanged = last
            .and_then(|data| serde_json::from_str::<serde_json::Value>(&data).ok())
            .is_some_and(|leaf| leaf["sha256"] == digest.as_str());
        if unchanged {
            return Ok(());
        }
        let mut fields = serde_json::Map::new();
        fields.insert("connections".into(), description.clone());
        fields.insert("sha256".into(), digest.into());
        self.record_change("config.connections", fields)
    }

    /// The log's verifier key (its key is made on first use).
    pub fn log_verifier_key(&self) -> Result<String, JournalError> {
        Ok(log_key(self.data_dir())?.verifier_key())
    }

    /// The newest signed checkpoint as it is stored, if the log has one.
    pub fn newest_log_checkpoint(&self) -> Result<Option<String>, JournalError> {
        Ok(newest_checkpoint(&self.conn())?.map(|(_, note)| note))
    }

    /// The newest signed checkpoint, after sealing whatever is unsealed, and the sessions that could
    /// not be sealed because the store misses some of their events.
    pub fn log_checkpoint(&self) -> Result<(String, Vec<RefusedSeal>), JournalError> {
        let refused = self.seal_unsealed(None)?;
        let conn = self.conn();
        if let Some((_, note)) = newest_checkpoint(&conn)? {
            return Ok((note, refused));
        }
        drop(conn);
        // An empty log still has a checkpoint: size 0.
        let key = log_key(self.data_dir())?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        append(&tx, &key, &[])?;
        tx.commit()?;
        let note = newest_checkpoint(&conn)?
            .map(|(_, note)| note)
            .unwrap_or_default();
        Ok((note, refused))
    }

    /// Seals the unsealed events of one session (of every session if `None`); returns the sessions
    /// it refused to seal.
    fn seal_unsealed(&self, session_no: Option<i64>) -> Result<Vec<RefusedSeal>, JournalError> {
        let key = log_key(self.data_dir())?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let only = session_no.map(|no| [no]);
        let refused = seal(&tx, &key, &node_name(), only.as_ref().map(|s| &s[..]))?;
        tx.commit()?;
        Ok(refused)
    }

    /// Starts a new log key. The change is a leaf of the log, in a checkpoint signed by both keys, so
    /// the new key is vouched for by the old; bundles signed before stay verifiable with the old key.
    /// Returns the old and the new verifier keys.
    pub fn rotate_log_key(&self) -> Result<(String, String), JournalError> {
        let old = log_key(self.data_dir())?;
        let new = LogKey::generate(old.name())?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let data = Body::new()
            .str("at", &canonical_time(crate::now_ns()))
            .str("kind", "key.rotated")
            .str("new_key", &new.verifier_key())
            .str("old_key", &old.verifier_key())
            .finish();
        let checkpoint = append(
            &tx,
            &new,
            &[NewLeaf {
                kind: "key.rotated",
                data: data.as_str().to_owned(),
                session_no: None,
            }],
        )?;
        let both = format!(
            "{}{}",
            new.sign(&checkpoint.text()),
            old.signature_line(&checkpoint.text())
        );
        tx.execute(
            "UPDATE log_checkpoints SET note = ?2, rotation = 1 WHERE size = ?1",
            params![checkpoint.size as i64, both],
        )?;
        new.save(self.data_dir())?;
        tx.commit()?;
        Ok((old.verifier_key(), new.verifier_key()))
    }

    /// Proves that the log of `new_size` leaves (default: the newest checkpoint's) extends the log of
    /// `old_size` leaves, and checks the proof against the signed checkpoints of both sizes.
    pub fn log_consistency(
        &self,
        old_size: u64,
        new_size: Option<u64>,
    ) -> Result<Consistency, JournalError> {
        let conn = self.conn();
        let newest = newest_checkpoint(&conn)?.map_or(0, |(size, _)| size);
        let new_size = new_size.unwrap_or(newest);
        if old_size == 0 || old_size > new_size || new_size > newest {
            return Err(JournalError::NotFound(format!(
                "sizes must satisfy 1 <= OLD <= NEW <= {newest} (the newest checkpoint)"
            )));
        }
        let leaves = leaf_hashes(&conn, new_size)?;
        let proof = merkle::consistency_proof(&leaves, old_size as usize).unwrap_or_default();
        let old_root = merkle::root(&leaves[..old_size as usize]);
        let new_root = merkle::root(&leaves);
        let signed_root = |size: u64| -> Result<Option<Hash>, JournalError> {
            let note: Option<String> = conn
                .query_row(
                    "SELECT note FROM log_checkpoints WHERE size = ?1",
                    [size as i64],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(note
                .and_then(|note| Checkpoint::parse(&note).ok())
                .map(|c| c.root))
        };
        let matches_signed = |size: u64, root: &Hash| -> Result<bool, JournalError> {
            Ok(signed_root(size)?.is_none_or(|signed| signed == *root))
        };
        let holds = merkle::verify_consistency(old_size, new_size, &proof, &old_root, &new_root)
            && matches_signed(old_size, &old_root)?
            && matches_signed(new_size, &new_root)?;
        Ok(Consistency {
            old_size,
            new_size,
            old_root,
            new_root,
            proof,
            holds,
        })
    }

    /// A bundle proving one session: its events, its seals with inclusion proofs, and the newest
    /// checkpoint. Unsealed events are sealed first.
    pub fn export_bundle(&self, session: &SessionRow) -> Result<Bundle, JournalError> {
        let no = session_no(&self.conn(), &session.id)?.ok_or_else(|| {
            JournalError::NotFound(format!("no session {} in the store", session.id))
        })?;
        if let Some(refused) = self.seal_unsealed(Some(no))?.pop() {
            return Err(JournalError::Conflict(format!(
                "{refused}; `proctor log check` names what is wrong"
            )));
        }
        let events = self.events(&session.id)?;
        let conn = self.conn();
        let (size, note) = newest_checkpoint(&conn)?
            .ok_or_else(|| JournalError::NotFound("the log has no checkpoint yet".into()))?;
        let leaves = leaf_hashes(&conn, size)?;
        let seals = seals_of(&conn, no)?
            .into_iter()
            .filter(|(index, _)| *index < size)
            .map(|(index, leaf)| SealProof {
                proof: encode_proof(
                    &merkle::inclusion_proof(&leaves, index as usize).unwrap_or_default(),
                ),
                index,
                leaf,
            })
            .collect();
        Ok(Bundle {
            format: BUNDLE_FORMAT.into(),
            session: session.header(),
            events,
            seals,
            checkpoint: note,
        })
    }
}

/// From now on, every leaf fails to append, as on a full disk: for tests of what a failed change
/// leaves behind.
#[cfg(test)]
pub(crate) fn refuse_leaves(store: &Store) {
    store
        .conn()
        .execute_batch(
            "CREATE TRIGGER refuse_leaves BEFORE INSERT ON log_leaves \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
}

/// How many leaves of `kind` the log holds.
#[cfg(test)]
pub(crate) fn leaves_of(store: &Store, kind: &str) -> i64 {
    store
        .conn()
        .query_row(
            "SELECT count(*) FROM log_leaves WHERE kind = ?1",
            [kind],
            |row| row.get(0),
        )
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{Block, BlockEvent};
    use crate::store::SyncMode;
    use serde_json::Value;

    /// A block of bare events numbered `seqs`, each hashed `hash-<seq>`.
    fn block_of(seqs: impl IntoIterator<Item = u64>) -> Block {
        let mut block = Block::default();
        for seq in seqs {
            let hash = format!("hash-{seq}");
            block.push(&BlockEvent {
                seq,
                at: 0,
                kind: "db.query",
                body: "{}",
                findings: "[]",
                prev: "",
                hash: &hash,
            });
        }
        block
    }

    #[test]
    fn a_long_run_of_events_is_sealed_a_thousand_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let mut conn = store.conn();
        conn.execute(
            "INSERT INTO sessions (no, id, protocol, identity, connection, client_addr, started_at) \
             VALUES (1, 's1', 'postgres', 'alice', 'db', '127.0.0.1:1', 0)",
            [],
        )
        .unwrap();
        // Two ingest rounds' blocks, so that a seal's head can lie inside either.
        let tx = conn.transaction().unwrap();
        for seqs in [1..=1200u64, 1201..=2500] {
            block_of(seqs).insert(&tx, 1).unwrap();
        }
        tx.commit().unwrap();
        let key = LogKey::generate("proctor/test").unwrap();
        let tx = conn.transaction().unwrap();
        assert!(seal(&tx, &key, "node", None).unwrap().is_empty());
        assert_eq!(seals_of(&tx, 1).unwrap().len(), 3);
        assert!(seal(&tx, &key, "node", None).unwrap().is_empty());
        assert_eq!(seals_of(&tx, 1).unwrap().len(), 3, "nothing left unsealed");
        tx.commit().unwrap();
        let seals: Vec<Value> = seals_of(&conn, 1)
            .unwrap()
            .iter()
            .map(|(_, data)| serde_json::from_str(data).unwrap())
            .collect();
        let ranges: Vec<_> = seals
            .iter()
            .map(|s| {
                (
                    s["first_seq"].as_u64().unwrap(),
                    s["last_seq"].as_u64().unwrap(),
                    s["chain_head"].clone(),
                )
            })
            .collect();
        assert_eq!(
            ranges,
            [
                (1, 1000, Value::from("hash-1000")),
                (1001, 2000, Value::from("hash-2000")),
                (2001, 2500, Value::from("hash-2500"))
            ]
        );
    }

    #[test]
    fn a_session_whose_stored_events_have_a_gap_is_not_sealed_and_the_others_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let mut conn = store.conn();
        let tx = conn.transaction().unwrap();
        for (no, id, blocks) in [
            (1, "whole", vec![1..=3u64]),
            (2, "holed", vec![1..=2, 4..=5]),
        ] {
            tx.execute(
                "INSERT INTO sessions (no, id, protocol, identity, connection, client_addr, started_at) \
                 VALUES (?1, ?2, 'postgres', 'alice', 'db', '127.0.0.1:1', 0)",
                params![no, id],
            )
            .unwrap();
            for seqs in blocks {
                block_of(seqs).insert(&tx, no).unwrap();
            }
        }
        let key = LogKey::generate("proctor/test").unwrap();
        let refused = seal(&tx, &key, "node", None).unwrap();
        assert_eq!(
            refused,
            [RefusedSeal {
                session_id: "holed".into(),
                missing_seq: 3
            }]
        );
        assert_eq!(seals_of(&tx, 1).unwrap().len(), 1);
        assert!(
            seals_of(&tx, 2).unwrap().is_empty(),
            "no seal over the hole"
        );
        assert_eq!(
            seal(&tx, &key, "node", None).unwrap(),
            refused,
            "refused again"
        );
    }

    #[test]
    fn the_frontier_root_equals_the_tree_root() {
        let mut frontier = Frontier::default();
        let mut leaves = Vec::new();
        assert_eq!(frontier.root(), merkle::root(&leaves));
        for i in 0..70u32 {
            let leaf = merkle::leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            frontier.push(leaf);
            assert_eq!(frontier.root(), merkle::root(&leaves), "{} leaves", i + 1);
        }
    }
}
