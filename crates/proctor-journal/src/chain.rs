//! The per-session hash chain: how a session header and its events are hashed and linked.
//!
//! `hash = SHA-256("proctor/event/v1\0" || prev || canonical_json(event without hash))`, canonical JSON per
//! RFC 8785. The first event's `prev` is the genesis hash, which commits to the session header. This module
//! only computes; it stores nothing.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::JournalError;

const EVENT_DOMAIN: &[u8] = b"proctor/event/v1\0";
const SESSION_DOMAIN: &[u8] = b"proctor/session/v1\0";

/// What a session is: fixed when it opens, committed to by the first event of its chain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionHeader {
    pub session_id: String,
    pub protocol: String,
    /// The identity the client claimed; authenticated only if a `session.start` event follows.
    pub identity: String,
    pub connection: String,
    pub client_addr: String,
    pub started_at: i64,
}

/// One journal event, as stored and as exported. `body` is final (already masked) when it gets here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub session_id: String,
    pub seq: u64,
    pub at: i64,
    pub kind: String,
    pub body: serde_json::Value,
    pub findings: Vec<serde_json::Value>,
    pub prev: String,
    pub hash: String,
}

#[derive(Serialize)]
struct UnhashedEvent<'a> {
    session_id: &'a str,
    seq: u64,
    at: i64,
    kind: &'a str,
    body: &'a serde_json::Value,
    findings: &'a [serde_json::Value],
    prev: &'a str,
}

fn canonical<T: Serialize>(value: &T) -> Result<Vec<u8>, JournalError> {
    serde_jcs::to_vec(value).map_err(|e| JournalError::Malformed(format!("canonical JSON: {e}")))
}

/// The hash that the first event of a session links to.
pub fn genesis_hash(header: &SessionHeader) -> Result<String, JournalError> {
    let mut hasher = Sha256::new();
    hasher.update(SESSION_DOMAIN);
    hasher.update(canonical(header)?);
    Ok(hex::encode(hasher.finalize()))
}

/// The hash of an event, computed from every field but `hash` itself.
pub fn event_hash(event: &Event) -> Result<String, JournalError> {
    let unhashed = UnhashedEvent {
        session_id: &event.session_id,
        seq: event.seq,
        at: event.at,
        kind: &event.kind,
        body: &event.body,
        findings: &event.findings,
        prev: &event.prev,
    };
    let mut hasher = Sha256::new();
    hasher.update(EVENT_DOMAIN);
    hasher.update(event.prev.as_bytes());
    hasher.update(canonical(&unhashed)?);
    Ok(hex::encode(hasher.finalize()))
}

/// The head of one session's chain: hands out sequence numbers and links each new event to the last.
#[derive(Debug)]
pub struct Chain {
    session_id: String,
    next_seq: u64,
    head: String,
}

impl Chain {
    pub fn start(header: &SessionHeader) -> Result<Self, JournalError> {
        Ok(Self {
            session_id: header.session_id.clone(),
            next_seq: 1,
            head: genesis_hash(header)?,
        })
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Builds the next event of the chain and advances the head.
    pub fn next_event(
        &mut self,
        at: i64,
        kind: &str,
        body: serde_json::Value,
        findings: Vec<serde_json::Value>,
    ) -> Result<Event, JournalError> {
        let mut event = Event {
            session_id: self.session_id.clone(),
            seq: self.next_seq,
            at,
            kind: kind.to_owned(),
            body,
            findings,
            prev: std::mem::take(&mut self.head),
            hash: String::new(),
        };
        match event_hash(&event) {
            Ok(hash) => {
                event.hash = hash;
                self.head = event.hash.clone();
                self.next_seq += 1;
                Ok(event)
            }
            Err(e) => {
                self.head = std::mem::take(&mut event.prev);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header() -> SessionHeader {
        SessionHeader {
            session_id: "s1".into(),
            protocol: "postgres".into(),
            identity: "alice".into(),
            connection: "app-db".into(),
            client_addr: "127.0.0.1:5000".into(),
            started_at: 1,
        }
    }

    #[test]
    fn events_link_to_the_previous_hash_and_count_up() {
        let mut chain = Chain::start(&header()).unwrap();
        let first = chain
            .next_event(10, "session.start", json!({"a": 1}), vec![])
            .unwrap();
        let second = chain
            .next_event(11, "db.query", json!({"sql": "select 1"}), vec![])
            .unwrap();
        assert_eq!(first.prev, genesis_hash(&header()).unwrap());
        assert_eq!(second.prev, first.hash);
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(event_hash(&second).unwrap(), second.hash);
    }

    #[test]
    fn any_change_to_an_event_changes_its_hash() {
        let mut chain = Chain::start(&header()).unwrap();
        let event = chain
            .next_event(10, "db.query", json!({"sql": "select 1"}), vec![])
            .unwrap();
        let mut edited = event.clone();
        edited.body = json!({"sql": "select 2"});
        assert_ne!(event_hash(&edited).unwrap(), event.hash);
        let mut retimed = event.clone();
        retimed.at = 11;
        assert_ne!(event_hash(&retimed).unwrap(), event.hash);
    }

    #[test]
    fn hash_does_not_depend_on_key_order_in_the_body() {
        let mut a = Chain::start(&header()).unwrap();
        let mut b = Chain::start(&header()).unwrap();
        let x = a
            .next_event(1, "k", json!({"a": 1, "b": 2}), vec![])
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
        let y = b.next_event(1, "k", body, vec![]).unwrap();
        assert_eq!(x.hash, y.hash);
    }
}
