//! Chains: one conversation with a model, recognised by its message prefix or named by the client
//! (`X-Proctor-Chain`), and recorded as one session of the identity that holds it.
//!
//! Every request re-sends the whole conversation. After each turn the chain learns two prefixes: the
//! request's messages, and those followed by the model's answer in normal form (as the client will
//! send it back). A request continues the chain whose learned prefix is its longest; its messages past
//! that prefix are the turn's new ones. Only whole turns are learned, so two conversations that merely
//! open with the same system prompt stay apart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proctor_core::journal::CanonicalJson;
use proctor_core::{Gate, Identity, RecordError, SessionRecorder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::wire::normal_form;

/// Conversations a gateway keeps open at once; the least recently used is ended beyond this.
const MAX_OPEN_CHAINS: usize = 10_000;

/// One open conversation.
pub struct Chain {
    id: String,
    identity: Identity,
    pub recorder: SessionRecorder,
}

impl Chain {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub async fn end(self, reason: &str) {
        if let Err(e) = self.recorder.end(reason).await {
            tracing::error!(error = %e, "could not record the end of a conversation");
        }
    }
}

/// A chain as requests share it; `None` once it has ended (a request that finds it so starts over).
pub type Shared = Arc<tokio::sync::Mutex<Option<Chain>>>;

#[derive(Default)]
struct Known {
    /// (identity, prefix hash) -> chain id.
    prefixes: HashMap<(String, Vec<u8>), String>,
    /// (identity, the client's name) -> chain id.
    names: HashMap<(String, String), String>,
    /// (identity, a provider's answer id) -> chain id (Responses API `previous_response_id`).
    answers: HashMap<(String, String), String>,
    open: HashMap<String, (Shared, Instant)>,
}

/// What places a turn in a chain: who sends it where, the chain's name or the answer it continues if
/// the client gives them, and the conversation as sent.
pub struct Placing<'a> {
    pub identity: &'a Identity,
    pub provider: &'a str,
    pub client_addr: &'a str,
    pub name: Option<&'a str>,
    pub previous_answer: Option<&'a str>,
    pub messages: &'a [Value],
}

#[derive(Default)]
pub struct Chains {
    known: Mutex<Known>,
}

/// The content address of a message: SHA-256 of its normal form's canonical JSON, in hex.
pub fn message_hash(message: &Value) -> String {
    normal_hash(&normal_form(message))
}

fn normal_hash(normal: &Value) -> String {
    hex::encode(Sha256::digest(CanonicalJson::of(normal).as_str()))
}

/// Where every conversation's prefix hash starts.
fn seed() -> Vec<u8> {
    Sha256::digest(b"proctor/chain/v1").to_vec()
}

/// The hash of a prefix one message longer: `running` covers the messages before `normal`.
fn extend(running: &[u8], normal: &Value) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(running);
    hasher.update(normal_hash(normal).as_bytes());
    hasher.finalize().to_vec()
}

/// The hash of each prefix of a conversation given in normal form: `h[k]` covers its first `k + 1`
/// messages.
fn prefix_hashes(normals: &[Value]) -> Vec<Vec<u8>> {
    let mut running = seed();
    normals
        .iter()
        .map(|normal| {
            running = extend(&running, normal);
            running.clone()
        })
        .collect()
}

/// Where a turn was placed: its chain, how many of its messages the chain had seen, and the hash of
/// the whole request's prefix, from which the chain learns the turn once it is answered.
pub struct Placed {
    pub chain: Shared,
    pub seen: usize,
    pub asked: Option<Vec<u8>>,
}

impl Chains {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chain a request belongs to, and how many of its messages the chain has seen; a new chain
    /// (and session) when none fits.
    pub async fn place(&self, gate: &Gate, turn: Placing<'_>) -> Result<Placed, RecordError> {
        let Placing {
            identity,
            provider,
            client_addr,
            name,
            previous_answer,
            messages,
        } = turn;
        let normals: Vec<Value> = messages.iter().map(normal_form).collect();
        let hashes = prefix_hashes(&normals);
        let asked = hashes.last().cloned();
        {
            let mut known = self.lock();
            let named = name.and_then(|n| {
                known
                    .names
                    .get(&(identity.name.clone(), n.to_owned()))
                    .cloned()
            });
            let mut found = None;
            for (k, hash) in hashes.iter().enumerate().rev() {
                if let Some(id) = known.prefixes.get(&(identity.name.clone(), hash.clone())) {
                    if named.as_ref().is_none_or(|n| n == id) && known.open.contains_key(id) {
                        found = Some((id.clone(), k + 1));
                        break;
                    }
                }
            }
            let continued = previous_answer.and_then(|a| {
                known
                    .answers
                    .get(&(identity.name.clone(), a.to_owned()))
                    .cloned()
            });
            let found = found
                .or_else(|| {
                    continued
                        .filter(|id| known.open.contains_key(id))
                        .map(|id| (id, 0))
                })
                .or_else(|| {
                    named
                        .filter(|id| known.open.contains_key(id))
                        .map(|id| (id, 0))
                });
            if let Some((id, seen)) = found {
                if let Some((chain, used)) = known.open.get_mut(&id) {
                    *used = Instant::now();
                    return Ok(Placed {
                        chain: chain.clone(),
                        seen,
                        asked,
                    });
                }
            }
        }
        let mut recorder = gate
            .open_session("llm", &identity.name, provider, client_addr)
            .await?;
        let id = recorder.header().session_id.clone();
        recorder
            .record_masked(
                "session.start",
                json!({
                    "chain": id,
                    "chain_name": name,
                    "client_addr": client_addr,
                    "groups": identity.groups,
                    "identity": identity.name,
                    "provider": provider,
                }),
            )
            .await?;
        let chain: Shared = Arc::new(tokio::sync::Mutex::new(Some(Chain {
            id: id.clone(),
            identity: identity.clone(),
            recorder,
        })));
        let evicted = {
            let mut known = self.lock();
            if let Some(name) = name {
                known
                    .names
                    .insert((identity.name.clone(), name.to_owned()), id.clone());
            }
            known.open.insert(id, (chain.clone(), Instant::now()));
            (known.open.len() > MAX_OPEN_CHAINS)
                .then(|| {
                    let oldest = known
                        .open
                        .iter()
                        .min_by_key(|(_, (_, used))| *used)
                        .map(|(id, _)| id.clone())?;
                    Self::forget(&mut known, &oldest)
                })
                .flatten()
        };
        if let Some(evicted) = evicted {
            tokio::spawn(end(evicted, "too many open conversations"));
        }
        Ok(Placed {
            chain,
            seen: 0,
            asked,
        })
    }

    /// After a turn: the request (its prefix hash, from [`Placed`]) and the request followed by the
    /// answer (in normal form) lead to `chain`.
    pub fn learn(
        &self,
        chain: &Chain,
        asked: Option<&[u8]>,
        answer: &[Value],
        answer_id: Option<&str>,
    ) {
        let identity = chain.identity.name.clone();
        let answered = answer.iter().fold(
            asked.map_or_else(seed, <[u8]>::to_vec),
            |running, normal| extend(&running, normal),
        );
        let mut known = self.lock();
        for hash in asked.map(<[u8]>::to_vec).into_iter().chain([answered]) {
            known
                .prefixes
                .insert((identity.clone(), hash), chain.id.clone());
        }
        if let Some(answer_id) = answer_id {
            known
                .answers
                .insert((identity, answer_id.to_owned()), chain.id.clone());
        }
    }

    fn forget(known: &mut Known, id: &str) -> Option<Shared> {
        let (chain, _) = known.open.remove(id)?;
        known.prefixes.retain(|_, chain_id| chain_id != id);
        known.names.retain(|_, chain_id| chain_id != id);
        known.answers.retain(|_, chain_id| chain_id != id);
        Some(chain)
    }

    /// Removes and returns the chains unused for `idle`.
    pub fn take_idle(&self, idle: Duration) -> Vec<Shared> {
        let mut known = self.lock();
        let stale: Vec<String> = known
            .open
            .iter()
            .filter(|(_, (_, used))| used.elapsed() >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        stale
            .iter()
            .filter_map(|id| Self::forget(&mut known, id))
            .collect()
    }
}

/// Ends a chain's session once no request holds it.
pub async fn end(chain: Shared, reason: &'static str) {
    if let Some(chain) = chain.lock_owned().await.take() {
        chain.end(reason).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_grow_with_the_conversation() {
        let first = [
            json!({"role": "system", "content": "be brief"}),
            json!({"role": "user", "content": "hi"}),
        ];
        let mut second = first.to_vec();
        second.push(json!({"role": "assistant", "content": [{"type": "text", "text": "hello"}]}));
        second.push(json!({"role": "user", "content": "more"}));
        let normal = |messages: &[Value]| {
            prefix_hashes(&messages.iter().map(normal_form).collect::<Vec<_>>())
        };
        let a = normal(&first);
        let b = normal(&second);
        assert_eq!(
            a,
            b[..2],
            "a longer conversation extends the shorter one's prefixes"
        );
        let other = [
            json!({"role": "system", "content": "be brief"}),
            json!({"role": "user", "content": "bye"}),
        ];
        assert_eq!(normal(&other)[0], a[0]);
        assert_ne!(normal(&other)[1], a[1]);
        assert_eq!(
            message_hash(&json!({"role": "user", "content": "hi"})),
            message_hash(&json!({"role": "user", "content": [{"type": "text", "text": "hi"}]})),
            "a string and a text block are the same message"
        );
    }
}
