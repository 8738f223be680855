//! Proposals: the tool calls models proposed recently, by identity, so that an agent's tool call can
//! be linked to the model answer that proposed it (same identity, same tool, same arguments, recent).
//!
//! Kept in memory only: the journal holds both ends (`llm.response`, `mcp.call`); this index only
//! lets the second end name the first when it is recorded.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a proposal can be acted on and still be linked.
pub const PROPOSAL_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Proposals remembered at most (oldest forgotten first).
const MAX_PROPOSALS: usize = 10_000;

/// Where a tool call was proposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub identity: String,
    /// The conversation (its session id) and the `llm.response` event in it.
    pub chain: String,
    pub seq: u64,
    pub tool_call_id: String,
    pub tool: String,
    /// The arguments, as canonical JSON text when they are JSON.
    pub arguments: String,
    at: Instant,
}

#[derive(Default)]
pub struct Proposals {
    recent: Mutex<VecDeque<Proposal>>,
}

/// Arguments compare as JSON values when they are JSON, whatever their spacing or key order.
fn comparable(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .map(|v| proctor_journal::CanonicalJson::of(&v).as_str().to_owned())
        .unwrap_or_else(|_| arguments.to_owned())
}

impl Proposals {
    pub fn remember(
        &self,
        identity: &str,
        chain: &str,
        seq: u64,
        tool_call_id: &str,
        tool: &str,
        arguments: &str,
    ) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= MAX_PROPOSALS {
            recent.pop_front();
        }
        recent.push_back(Proposal {
            identity: identity.to_owned(),
            chain: chain.to_owned(),
            seq,
            tool_call_id: tool_call_id.to_owned(),
            tool: tool.to_owned(),
            arguments: comparable(arguments),
            at: Instant::now(),
        });
    }

    /// The newest proposal of `tool` with these arguments by a model talking to `identity`.
    pub fn find(&self, identity: &str, tool: &str, arguments: &Value) -> Option<Proposal> {
        let wanted = proctor_journal::CanonicalJson::of(arguments)
            .as_str()
            .to_owned();
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .rev()
            .take_while(|p| p.at.elapsed() < PROPOSAL_WINDOW)
            .find(|p| p.identity == identity && p.tool == tool && p.arguments == wanted)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_finds_the_proposal_with_its_arguments_whatever_their_spelling() {
        let proposals = Proposals::default();
        proposals.remember(
            "alice",
            "chain-1",
            7,
            "call_q",
            "query",
            "{\"sql\": \"select 1\", \"connection\": \"db\"}",
        );
        let found = proposals
            .find(
                "alice",
                "query",
                &json!({"connection": "db", "sql": "select 1"}),
            )
            .unwrap();
        assert_eq!((found.chain.as_str(), found.seq), ("chain-1", 7));
        assert!(proposals
            .find(
                "bob",
                "query",
                &json!({"connection": "db", "sql": "select 1"})
            )
            .is_none());
        assert!(proposals
            .find(
                "alice",
                "query",
                &json!({"connection": "db", "sql": "select 2"})
            )
            .is_none());
    }
}
