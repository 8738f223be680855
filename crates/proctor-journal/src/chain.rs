//! The per-session hash chain: how a session header and its events are hashed and linked.
//!
//! `hash = SHA-256("proctor/event/v1\0" || prev || canonical_json(event without hash))`, canonical JSON per
//! RFC 8785. In that canonical form `at` is an RFC 3339 UTC timestamp with nine fractional digits, because
//! JCS numbers are doubles and a nanosecond count does not fit in one exactly. The first event's `prev` is
//! the genesis hash, which commits to the session header. This module only computes; it stores nothing.
//!
//! Recording uses [`Chain::next_event`], which writes the canonical form directly; verification uses
//! [`event_hash`], which derives it independently from a parsed event with `serde_jcs`. Tests hold the two
//! equal.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::{hex_lower, write_str, write_u64, CanonicalJson, HexHash};
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

/// One journal event as read back from the store (and exported).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub session_id: String,
    pub seq: u64,
    /// UTC, nanoseconds since the Unix epoch.
    pub at: i64,
    pub kind: String,
    pub body: serde_json::Value,
    pub findings: Vec<serde_json::Value>,
    pub prev: String,
    pub hash: String,
}

/// An event on its way to the store: its body is final (already masked) and already canonical.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub session_id: Arc<str>,
    pub seq: u64,
    pub at: i64,
    pub kind: &'static str,
    pub body: CanonicalJson,
    pub findings: CanonicalJson,
    pub prev: HexHash,
    pub hash: HexHash,
}

/// A session header for tests: `id`, alice on app-db.
#[cfg(test)]
pub(crate) fn test_header(id: &str) -> SessionHeader {
    SessionHeader {
        session_id: id.into(),
        protocol: "postgres".into(),
        identity: "alice".into(),
        connection: "app-db".into(),
        client_addr: "127.0.0.1:1".into(),
        started_at: 5,
    }
}

/// The timestamp as it appears in the canonical form.
pub fn canonical_time(at_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(at_ns)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn canonical<T: Serialize>(value: &T) -> Result<Vec<u8>, JournalError> {
    serde_jcs::to_vec(value).map_err(|e| JournalError::Malformed(format!("canonical JSON: {e}")))
}

/// The hash that the first event of a session links to.
pub fn genesis_hash(header: &SessionHeader) -> Result<String, JournalError> {
    genesis(header).map(|hash| hash.to_string())
}

fn genesis(header: &SessionHeader) -> Result<HexHash, JournalError> {
    let mut hasher = Sha256::new();
    hasher.update(SESSION_DOMAIN);
    hasher.update(canonical(header)?);
    Ok(HexHash::of(&hasher.finalize().into()))
}

/// An event's fields but its hash, as they are hashed (canonical JSON sorts them).
#[derive(Serialize)]
struct Unhashed<'a> {
    session_id: &'a str,
    seq: u64,
    at: String,
    kind: &'a str,
    body: &'a serde_json::Value,
    findings: &'a [serde_json::Value],
    prev: &'a str,
}

/// The hash of a stored event, recomputed from its parsed fields (all but `hash`).
pub fn event_hash(event: &Event) -> Result<String, JournalError> {
    let unhashed = Unhashed {
        session_id: &event.session_id,
        seq: event.seq,
        at: canonical_time(event.at),
        kind: &event.kind,
        body: &event.body,
        findings: &event.findings,
        prev: &event.prev,
    };
    let mut hasher = Sha256::new();
    hasher.update(EVENT_DOMAIN);
    hasher.update(event.prev.as_bytes());
    hasher.update(canonical(&unhashed)?);
    Ok(hex_lower(&hasher.finalize()))
}

/// The result of recomputing a session's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    Intact { events: u64, head: String },
    Broken { seq: u64, reason: String },
}

/// Why a chain does not hold: the first event that fails, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainBreak {
    pub seq: u64,
    pub reason: String,
}

/// Recomputes a chain one event at a time, from its header: what [`verify_chain`] does over a slice,
/// for callers that read a chain in pieces (a whole store's worth of them) and never hold it whole.
#[derive(Debug)]
pub(crate) struct ChainVerifier {
    session_id: String,
    head: String,
    checked: u64,
}

impl ChainVerifier {
    pub(crate) fn new(header: &SessionHeader) -> Result<Self, JournalError> {
        Ok(Self {
            session_id: header.session_id.clone(),
            head: genesis_hash(header)?,
            checked: 0,
        })
    }

    /// Checks the next event in stored order: its place (`seq` one past the last, so no event is
    /// missing, repeated or moved), its link to the last one (to the header for the first), and its
    /// hash, recomputed from its fields.
    pub(crate) fn check(&mut self, event: &Event) -> Result<Option<ChainBreak>, JournalError> {
        let expected_seq = self.checked + 1;
        let broken = |seq, reason| Ok(Some(ChainBreak { seq, reason }));
        if event.seq > expected_seq {
            return broken(
                expected_seq,
                format!("event {expected_seq} is missing (found {} next)", event.seq),
            );
        }
        if event.seq < expected_seq {
            return broken(
                expected_seq,
                format!(
                    "event {} comes again where event {expected_seq} belongs: repeated or out of order",
                    event.seq
                ),
            );
        }
        if event.session_id != self.session_id {
            return broken(event.seq, "event names another session".into());
        }
        if event.prev != self.head {
            let reason = if event.seq == 1 {
                "does not link to the session header: the header was altered".to_string()
            } else {
                format!("does not link to event {}", event.seq - 1)
            };
            return broken(event.seq, reason);
        }
        let recomputed = event_hash(event)?;
        if recomputed != event.hash {
            return broken(
                event.seq,
                format!(
                    "content does not match its hash (stored {}, recomputed {recomputed})",
                    event.hash
                ),
            );
        }
        self.head = recomputed;
        self.checked = event.seq;
        Ok(None)
    }

    /// The sequence number the next event must have.
    pub(crate) fn next_seq(&self) -> u64 {
        self.checked + 1
    }

    /// How many events held, and the hash of the last (the header's genesis hash if none).
    pub(crate) fn intact(self) -> VerifyOutcome {
        VerifyOutcome::Intact {
            events: self.checked,
            head: self.head,
        }
    }
}

/// Recomputes a session's chain from its header and events (in stored order); names the first event
/// that fails.
pub fn verify_chain(
    header: &SessionHeader,
    events: &[Event],
) -> Result<VerifyOutcome, JournalError> {
    let mut verifier = ChainVerifier::new(header)?;
    for event in events {
        if let Some(ChainBreak { seq, reason }) = verifier.check(event)? {
            return Ok(VerifyOutcome::Broken { seq, reason });
        }
    }
    Ok(verifier.intact())
}

/// The head of one session's chain: hands out sequence numbers and links each new event to the last.
#[derive(Debug)]
pub struct Chain {
    session_id: Arc<str>,
    next_seq: u64,
    head: HexHash,
    scratch: String,
    clock: TimeText,
}

/// Writes [`canonical_time`] quoted, formatting the date and time of day once per second: events of a
/// busy session mostly share their second.
#[derive(Debug, Default)]
struct TimeText {
    second: Option<i64>,
    /// `"YYYY-MM-DDTHH:MM:SS.` of that second.
    prefix: String,
}

impl TimeText {
    fn write(&mut self, at_ns: i64, out: &mut String) {
        let second = at_ns.div_euclid(1_000_000_000);
        if self.second != Some(second) {
            let whole = canonical_time(second * 1_000_000_000);
            self.prefix.clear();
            self.prefix.push('"');
            self.prefix
                .push_str(whole.strip_suffix("000000000Z").unwrap_or(&whole));
            self.second = Some(second);
        }
        out.push_str(&self.prefix);
        let nanos = at_ns.rem_euclid(1_000_000_000);
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(nanos);
        out.extend(std::iter::repeat_n('0', 9 - digits.len()));
        out.push_str(digits);
        out.push_str("Z\"");
    }
}

impl Chain {
    pub fn start(header: &SessionHeader) -> Result<Self, JournalError> {
        Ok(Self {
            session_id: Arc::from(header.session_id.as_str()),
            next_seq: 1,
            head: genesis(header)?,
            scratch: String::with_capacity(512),
            clock: TimeText::default(),
        })
    }

    /// Continues a chain whose last stored event is `last_seq`, of hash `head`: for an event appended
    /// after the gateway that recorded the others is gone.
    pub(crate) fn resume(
        session_id: &str,
        last_seq: u64,
        head: &str,
    ) -> Result<Self, JournalError> {
        let head = HexHash::parse(head).ok_or_else(|| {
            JournalError::Malformed(format!(
                "event {last_seq} of session {session_id} has no valid hash"
            ))
        })?;
        Ok(Self {
            session_id: Arc::from(session_id),
            next_seq: last_seq + 1,
            head,
            scratch: String::with_capacity(512),
            clock: TimeText::default(),
        })
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Builds the next event of the chain and advances the head.
    pub fn next_event(
        &mut self,
        at: i64,
        kind: &'static str,
        body: CanonicalJson,
        findings: CanonicalJson,
    ) -> NewEvent {
        let seq = self.next_seq;
        let json = &mut self.scratch;
        json.clear();
        json.push_str("{\"at\":");
        self.clock.write(at, json);
        json.push_str(",\"body\":");
        json.push_str(body.as_str());
        json.push_str(",\"findings\":");
        json.push_str(findings.as_str());
        json.push_str(",\"kind\":");
        write_str(kind, json);
        json.push_str(",\"prev\":");
        write_str(&self.head, json);
        json.push_str(",\"seq\":");
        write_u64(seq, json);
        json.push_str(",\"session_id\":");
        write_str(&self.session_id, json);
        json.push('}');
        let mut hasher = Sha256::new();
        hasher.update(EVENT_DOMAIN);
        hasher.update(self.head.as_bytes());
        hasher.update(json.as_bytes());
        let hash = HexHash::of(&hasher.finalize().into());
        let prev = std::mem::replace(&mut self.head, hash);
        self.next_seq += 1;
        NewEvent {
            session_id: self.session_id.clone(),
            seq,
            at,
            kind,
            body,
            findings,
            prev,
            hash,
        }
    }
}

/// An empty findings list, for events with nothing to report.
pub fn no_findings() -> CanonicalJson {
    CanonicalJson::empty_array()
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

    fn stored(event: &NewEvent) -> Event {
        Event {
            session_id: event.session_id.to_string(),
            seq: event.seq,
            at: event.at,
            kind: event.kind.to_owned(),
            body: serde_json::from_str(event.body.as_str()).unwrap(),
            findings: serde_json::from_str(event.findings.as_str()).unwrap(),
            prev: event.prev.to_string(),
            hash: event.hash.to_string(),
        }
    }

    const NOW: i64 = 1_795_000_000_123_456_789;

    #[test]
    fn recorded_hashes_match_an_independent_recomputation() {
        let mut chain = Chain::start(&header()).unwrap();
        let bodies = [
            json!({"sql": "select 1", "protocol": "simple"}),
            json!({"params": [1, -2.5, "x\n\"y\"", null, 9007199254740993u64], "sql": "é 😀"}),
            json!({"sample": [[{"z": 1, "a": 2}]], "rows": 18446744073709551615u64}),
        ];
        // The same second, a whole second (no fraction), then the next second with a short fraction.
        let times = [NOW, NOW - 123_456_789, NOW + 876_543_211 + 5];
        for (at, body) in times.into_iter().zip(&bodies) {
            let event = chain.next_event(at, "db.query", CanonicalJson::of(body), no_findings());
            assert_eq!(
                event_hash(&stored(&event)).unwrap(),
                event.hash.as_str(),
                "{body}"
            );
        }
    }

    #[test]
    fn events_link_to_the_previous_hash_and_count_up() {
        let mut chain = Chain::start(&header()).unwrap();
        let first = chain.next_event(
            NOW,
            "session.start",
            CanonicalJson::of(&json!({"a": 1})),
            no_findings(),
        );
        let second = chain.next_event(
            NOW,
            "db.query",
            CanonicalJson::of(&json!({})),
            no_findings(),
        );
        assert_eq!(first.prev.as_str(), genesis_hash(&header()).unwrap());
        assert_eq!(second.prev, first.hash);
        assert_eq!((first.seq, second.seq), (1, 2));
    }

    #[test]
    fn a_resumed_chain_continues_as_the_chain_would_have() {
        let mut chain = Chain::start(&header()).unwrap();
        let body = || CanonicalJson::of(&json!({"n": 1}));
        let first = chain.next_event(NOW, "db.query", body(), no_findings());
        let second = chain.next_event(NOW + 1, "db.query", body(), no_findings());
        let mut resumed = Chain::resume("s1", 1, &first.hash).unwrap();
        let again = resumed.next_event(NOW + 1, "db.query", body(), no_findings());
        assert_eq!(
            (again.seq, again.prev, again.hash),
            (2, first.hash, second.hash)
        );
        assert!(Chain::resume("s1", 1, "not a hash").is_err());
        assert!(Chain::resume("s1", 1, &first.hash.to_uppercase()).is_err());
    }

    #[test]
    fn a_repeated_event_is_named_where_the_next_belongs() {
        let mut chain = Chain::start(&header()).unwrap();
        let events: Vec<Event> = (0..3)
            .map(|i| {
                stored(&chain.next_event(
                    NOW + i,
                    "db.query",
                    CanonicalJson::of(&json!({})),
                    no_findings(),
                ))
            })
            .collect();
        let repeated = [&events[..2], &events[1..2], &events[2..]].concat();
        assert_eq!(
            verify_chain(&header(), &repeated).unwrap(),
            VerifyOutcome::Broken {
                seq: 3,
                reason: "event 2 comes again where event 3 belongs: repeated or out of order"
                    .into()
            }
        );
        assert!(matches!(
            verify_chain(&header(), &events).unwrap(),
            VerifyOutcome::Intact { events: 3, .. }
        ));
    }

    #[test]
    fn any_change_to_an_event_changes_its_hash_even_one_nanosecond() {
        let mut chain = Chain::start(&header()).unwrap();
        let event = stored(&chain.next_event(
            NOW,
            "db.query",
            CanonicalJson::of(&json!({"sql": "select 1"})),
            no_findings(),
        ));
        let mut edited = event.clone();
        edited.body = json!({"sql": "select 2"});
        assert_ne!(event_hash(&edited).unwrap(), event.hash);
        let mut retimed = event.clone();
        retimed.at += 1;
        assert_ne!(event_hash(&retimed).unwrap(), event.hash);
        let mut renamed = event;
        renamed.kind = "db.result".into();
        assert_ne!(event_hash(&renamed).unwrap(), renamed.hash);
    }
}
