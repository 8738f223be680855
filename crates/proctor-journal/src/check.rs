//! The check behind `proctor log check`: the whole store against the signed log and against itself.
//!
//! The stored leaves must hash to the newest checkpoint's root, which the log's key signed. Every
//! stored event must hash, from its fields and its predecessor's hash (the first event's from its
//! session's header), to the hash it carries, in an unbroken run of sequence numbers from 1. Every
//! seal's chain head must still be the hash of the event it names. Events are read a block at a time
//! (see `blocks`), so what the check holds in memory does not grow with the store.

use rusqlite::Connection;

use crate::blocks;
use crate::bundle::Check;
use crate::chain::{ChainBreak, ChainVerifier};
use crate::merkle;
use crate::note::{Checkpoint, NoteVerifier};
use crate::store::{session_header, session_no, Store};
use crate::tlog::{leaf_hashes, newest_checkpoint};
use crate::JournalError;

fn holds(line: String) -> Check {
    Check { holds: true, line }
}

fn fails(line: String) -> Check {
    Check { holds: false, line }
}

impl Store {
    /// Checks the store against the log and every stored chain against its events: the leaves hash
    /// to the newest checkpoint, which `key` signed; every event rehashes and links to the one before
    /// it; every seal names a chain head that the store still holds. A failing check names the first
    /// leaf, session and event where it fails.
    pub fn check_log(&self, key: &NoteVerifier) -> Result<Vec<Check>, JournalError> {
        let conn = self.conn();
        let mut checks = Vec::new();
        let tree_holds = check_tree(&conn, key, &mut checks)?;
        check_chains(&conn, &mut checks)?;
        if tree_holds {
            check_seals(&conn, &mut checks)?;
        }
        Ok(checks)
    }
}

/// The leaves against the newest checkpoint; whether the seals among them can be trusted.
fn check_tree(
    conn: &Connection,
    key: &NoteVerifier,
    checks: &mut Vec<Check>,
) -> Result<bool, JournalError> {
    let Some((size, note)) = newest_checkpoint(conn)? else {
        checks.push(holds("log: empty, nothing sealed yet".into()));
        return Ok(false);
    };
    let checkpoint = match key.verify(&note).and_then(Checkpoint::parse) {
        Ok(checkpoint) => checkpoint,
        Err(e) => {
            checks.push(fails(format!("checkpoint: {e}")));
            return Ok(false);
        }
    };
    let root_holds = match leaf_hashes(conn, size) {
        Ok(leaves) => merkle::root(&leaves) == checkpoint.root,
        Err(e) => {
            checks.push(fails(format!("tree: {e}")));
            return Ok(false);
        }
    };
    checks.push(if root_holds {
        holds(format!(
            "tree: the {size} stored leaves hash to the signed root"
        ))
    } else {
        fails(format!("tree: the {size} stored leaves do not hash to the signed root: a leaf was altered or removed"))
    });
    Ok(root_holds)
}

/// A session's chain as the check walks it, block after block.
struct ChainWalk {
    session_no: i64,
    session_id: String,
    /// `None` once the chain broke (its first bad event is reported) or if it has no session.
    verifier: Option<ChainVerifier>,
}

/// Every stored event, rehashed in order: one failing line per broken chain, naming its first bad
/// event, and one line for all that hold.
fn check_chains(conn: &Connection, checks: &mut Vec<Check>) -> Result<(), JournalError> {
    let (mut sessions, mut events, mut broken) = (0u64, 0u64, 0u64);
    let mut walk: Option<ChainWalk> = None;
    blocks::for_each_block(conn, |no, data| {
        if walk.as_ref().is_none_or(|walk| walk.session_no != no) {
            sessions += 1;
            walk = Some(match session_header(conn, no)? {
                Some(header) => ChainWalk {
                    session_no: no,
                    verifier: Some(ChainVerifier::new(&header)?),
                    session_id: header.session_id,
                },
                None => {
                    broken += 1;
                    checks.push(fails(format!(
                        "chain: events of session number {no} are stored, but not the session: its row was deleted"
                    )));
                    ChainWalk {
                        session_no: no,
                        session_id: String::new(),
                        verifier: None,
                    }
                }
            });
        }
        let Some(walk) = walk.as_mut() else {
            return Ok(());
        };
        let Some(verifier) = walk.verifier.as_mut() else {
            return Ok(());
        };
        for line in blocks::lines(data) {
            let outcome = match blocks::parse_line(&walk.session_id, line) {
                Ok(event) => verifier.check(&event)?,
                Err(JournalError::Malformed(reason)) => Some(ChainBreak {
                    seq: verifier.next_seq(),
                    reason,
                }),
                Err(e) => return Err(e),
            };
            if let Some(ChainBreak { seq, reason }) = outcome {
                broken += 1;
                checks.push(fails(format!(
                    "chain: session {} event {seq}: {reason}",
                    walk.session_id
                )));
                walk.verifier = None;
                break;
            }
            events += 1;
        }
        Ok(())
    })?;
    if broken == 0 {
        checks.push(holds(format!(
            "chains: {events} events of {sessions} sessions rehashed, each linked to the one before it and the first to its session's header"
        )));
    }
    Ok(())
}

/// Every seal's chain head against the event it names; stops at the first that fails.
fn check_seals(conn: &Connection, checks: &mut Vec<Check>) -> Result<(), JournalError> {
    let mut stmt =
        conn.prepare("SELECT idx, data FROM log_leaves WHERE kind = 'seal' ORDER BY idx")?;
    let mut rows = stmt.query([])?;
    let mut seals = 0u64;
    let mut sealed_sessions = std::collections::HashSet::new();
    while let Some(row) = rows.next()? {
        let (idx, data): (i64, String) = (row.get(0)?, row.get(1)?);
        let leaf: serde_json::Value = serde_json::from_str(&data)
            .map_err(|e| JournalError::Malformed(format!("seal leaf {idx}: {e}")))?;
        let session_id = leaf["session_id"].as_str().unwrap_or_default();
        let last_seq = leaf["last_seq"].as_u64().unwrap_or_default();
        let stored = match session_no(conn, session_id)? {
            Some(no) => blocks::hash_at(conn, no, last_seq)?,
            None => None,
        };
        let problem = match stored {
            None => Some(format!(
                "seal leaf {idx}: session {session_id} event {last_seq} is not in the store: the session or its events were deleted"
            )),
            Some(hash) if leaf["chain_head"] != hash.as_str() => Some(format!(
                "seal leaf {idx}: session {session_id} event {last_seq} hashes to {hash}, not the sealed chain head: the chain was rewritten"
            )),
            Some(_) => None,
        };
        if let Some(line) = problem {
            checks.push(fails(line));
            return Ok(());
        }
        seals += 1;
        sealed_sessions.insert(session_id.to_owned());
    }
    checks.push(holds(format!(
        "seals: {seals} seals of {} sessions match the chains in the store",
        sealed_sessions.len()
    )));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::session_log;
    use crate::store::SyncMode;

    fn lines(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .map(|c| format!("{} {}", if c.holds { "ok" } else { "FAIL" }, c.line))
            .collect()
    }

    #[test]
    fn an_unreadable_event_and_events_without_their_session_are_named() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), SyncMode::Normal).unwrap());
        let (mut log, _) = session_log("s1", 1, 3, 0);
        log.extend_from_slice(&session_log("s2", 2, 2, log.len() as u64).0);
        std::fs::write(dir.path().join(crate::log::LOG_FILE), &log).unwrap();
        // Recovery takes the log in and ends both sessions, sealed.
        let store = Store::open(dir.path(), SyncMode::Normal).unwrap();
        let key = NoteVerifier::parse(&store.log_verifier_key().unwrap()).unwrap();
        let checks = lines(&store.check_log(&key).unwrap());
        assert!(checks.iter().all(|l| l.starts_with("ok")), "{checks:?}");
        assert!(
            checks.contains(&"ok chains: 7 events of 2 sessions rehashed, each linked to the one before it and the first to its session's header".to_string()),
            "{checks:?}"
        );

        let conn = store.conn();
        conn.execute(
            "UPDATE event_blocks SET data = replace(data, '{\"i\":1}', '{\"i\":1,}') \
             WHERE session_no = 1",
            [],
        )
        .unwrap();
        conn.execute("DELETE FROM sessions WHERE no = 2", [])
            .unwrap();
        drop(conn);
        let checks = lines(&store.check_log(&key).unwrap());
        assert!(
            checks[1].starts_with("FAIL chain: session s1 event 2: a stored event is not JSON"),
            "{checks:?}"
        );
        assert_eq!(
            checks[2],
            "FAIL chain: events of session number 2 are stored, but not the session: its row was deleted"
        );
    }
}
