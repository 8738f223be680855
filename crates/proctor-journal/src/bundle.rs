//! Export bundles and their offline verification.
//!
//! A bundle is one JSON document that proves a session complete and unaltered with nothing but the
//! log's public key: the session header, every event, the seals of its chain with their inclusion
//! proofs, and the signed checkpoint those proofs lead to. The format is specified in
//! `docs/journal-format.md`. Verification is pure: it reads no store and no network.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::chain::{verify_chain, Event, SessionHeader, VerifyOutcome};
use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, NoteVerifier};

pub const BUNDLE_FORMAT: &str = "proctor-bundle/v1";

#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub session: SessionHeader,
    pub events: Vec<Event>,
    pub seals: Vec<SealProof>,
    /// The signed note of the checkpoint the proofs lead to.
    pub checkpoint: String,
}

/// One seal: its leaf exactly as hashed into the log, its index, and its inclusion proof (base64).
#[derive(Debug, Serialize, Deserialize)]
pub struct SealProof {
    pub index: u64,
    pub leaf: String,
    pub proof: Vec<String>,
}

#[derive(Deserialize)]
struct SealLeaf {
    kind: String,
    session_id: String,
    first_seq: u64,
    last_seq: u64,
    chain_head: String,
}

/// One verification step: whether it held, and what was checked or what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub holds: bool,
    pub line: String,
}

fn holds(line: impl Into<String>) -> Check {
    Check {
        holds: true,
        line: line.into(),
    }
}

fn fails(line: impl Into<String>) -> Check {
    Check {
        holds: false,
        line: line.into(),
    }
}

/// Verifies a bundle with the log's verifier key. Returns one line per check, in order; the checks
/// stop at the first that fails, which is then the last line.
pub fn verify_bundle(text: &str, key: &NoteVerifier) -> Vec<Check> {
    let mut checks = Vec::new();
    let bundle: Bundle = match serde_json::from_str(text) {
        Ok(bundle) => bundle,
        Err(e) => return vec![fails(format!("bundle: not a Proctor bundle: {e}"))],
    };
    if bundle.format != BUNDLE_FORMAT {
        return vec![fails(format!(
            "bundle: format {:?} is not {BUNDLE_FORMAT}",
            bundle.format
        ))];
    }
    let checkpoint = match key.verify(&bundle.checkpoint).and_then(Checkpoint::parse) {
        Ok(checkpoint) => checkpoint,
        Err(e) => {
            checks.push(fails(format!("checkpoint: {e}")));
            return checks;
        }
    };
    checks.push(holds(format!(
        "checkpoint: signed by {}, tree of {} leaves",
        key.name(),
        checkpoint.size
    )));
    let (count, session) = (bundle.events.len(), &bundle.session.session_id);
    match verify_chain(&bundle.session, &bundle.events) {
        Ok(VerifyOutcome::Intact { .. }) => checks.push(holds(format!(
            "chain: {count} events of session {session} link to its header and to each other, every hash recomputed"
        ))),
        Ok(VerifyOutcome::Broken { seq, reason }) => {
            checks.push(fails(format!("chain: event {seq}: {reason}")));
            return checks;
        }
        Err(e) => {
            checks.push(fails(format!("chain: {e}")));
            return checks;
        }
    }
    match check_seals(&bundle) {
        Ok(line) => checks.push(holds(line)),
        Err(line) => {
            checks.push(fails(line));
            return checks;
        }
    }
    for seal in &bundle.seals {
        if let Err(line) = check_inclusion(seal, &checkpoint) {
            checks.push(fails(line));
            return checks;
        }
    }
    checks.push(holds(format!(
        "inclusion: {} seals are leaves of the signed tree of {} leaves",
        bundle.seals.len(),
        checkpoint.size
    )));
    checks.push(holds(match bundle.events.last().map(|e| e.kind.as_str()) {
        Some("session.end") => "complete: the session ends with session.end, sealed".to_string(),
        _ => "complete up to the export: the session was still open, every event so far is sealed"
            .to_string(),
    }));
    checks
}

/// The seals must cover events 1..=n exactly, in order, each naming the chain head at its end.
fn check_seals(bundle: &Bundle) -> Result<String, String> {
    let events = &bundle.events;
    let mut next = 1u64;
    for seal in &bundle.seals {
        let leaf: SealLeaf = serde_json::from_str(&seal.leaf)
            .map_err(|e| format!("seals: leaf {} is not a seal: {e}", seal.index))?;
        if leaf.kind != "seal" || leaf.session_id != bundle.session.session_id {
            return Err(format!(
                "seals: leaf {} seals another session ({}), not this one",
                seal.index, leaf.session_id
            ));
        }
        if leaf.first_seq != next || leaf.last_seq < leaf.first_seq {
            return Err(format!(
                "seals: leaf {} covers events {}..{}, but the next unsealed event is {next}",
                seal.index, leaf.first_seq, leaf.last_seq
            ));
        }
        let Some(event) = events.get(leaf.last_seq as usize - 1) else {
            return Err(format!(
                "seals: the session was sealed up to event {}, but the bundle holds only {}: events were removed from its end",
                leaf.last_seq,
                events.len()
            ));
        };
        if event.hash != leaf.chain_head {
            return Err(format!(
                "seals: leaf {} sealed event {} with chain head {}, but the bundle's event {} hashes to {}: the chain was rewritten",
                seal.index, leaf.last_seq, leaf.chain_head, leaf.last_seq, event.hash
            ));
        }
        next = leaf.last_seq + 1;
    }
    if next != events.len() as u64 + 1 {
        return Err(format!(
            "seals: events {next}..{} are in no seal",
            events.len()
        ));
    }
    Ok(format!(
        "seals: {} seals cover events 1..{} and name their chain heads",
        bundle.seals.len(),
        events.len()
    ))
}

fn check_inclusion(seal: &SealProof, checkpoint: &Checkpoint) -> Result<(), String> {
    let proof = seal
        .proof
        .iter()
        .map(|p| {
            BASE64
                .decode(p)
                .ok()
                .and_then(|h| <Hash>::try_from(h.as_slice()).ok())
        })
        .collect::<Option<Vec<Hash>>>()
        .ok_or_else(|| {
            format!(
                "inclusion: the proof of leaf {} is not base64 hashes",
                seal.index
            )
        })?;
    let leaf = merkle::leaf_hash(seal.leaf.as_bytes());
    if merkle::verify_inclusion(&leaf, seal.index, checkpoint.size, &proof, &checkpoint.root) {
        Ok(())
    } else {
        Err(format!(
            "inclusion: leaf {} is not in the signed tree of {} leaves (its content or proof was altered)",
            seal.index, checkpoint.size
        ))
    }
}

/// Encodes proof hashes for a bundle.
pub fn encode_proof(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(|h| BASE64.encode(h)).collect()
}
