//! The connection ids Proctor gives MySQL clients, and the upstream threads they stand for.
//!
//! A client never sees the target's thread id in the greeting: it gets an id Proctor issues, and
//! `KILL [QUERY] <id>` (sent by the client, usually from a second connection, as `mysql` does on
//! Ctrl-C) is turned into a `KILL` of the right upstream thread. Only the identity that owns a
//! session may kill it, and only through the same connection (the same target).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

/// What a kill of one session must reach.
#[derive(Clone)]
pub struct KillRoute {
    pub identity: String,
    pub connection: String,
    /// The upstream thread id, from the target's greeting.
    pub upstream_thread: u32,
    /// Tells the session that a kill arrived, so it records it (and withdraws a held statement).
    pub notify: mpsc::Sender<()>,
}

#[derive(Default)]
pub struct KillRegistry {
    next_id: AtomicU32,
    routes: Mutex<HashMap<u32, KillRoute>>,
}

impl KillRegistry {
    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<u32, KillRoute>> {
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh connection id for a greeting (never 0).
    pub fn issue_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id != 0 && !self.routes().contains_key(&id) {
                return id;
            }
        }
    }

    pub fn register(&self, id: u32, route: KillRoute) {
        self.routes().insert(id, route);
    }

    pub fn unregister(&self, id: u32) {
        self.routes().remove(&id);
    }

    /// The route of session `id`, if it is live and `identity` may kill it through `connection`.
    pub fn find(&self, id: u32, identity: &str, connection: &str) -> Option<KillRoute> {
        let routes = self.routes();
        let route = routes.get(&id)?;
        (route.identity == identity && route.connection == connection).then(|| route.clone())
    }
}

/// A client's `KILL [QUERY | CONNECTION] <id>`, if the statement is one.
pub fn parse_kill(sql: &str) -> Option<(u32, bool)> {
    let mut words = sql.trim().trim_end_matches(';').split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("kill") {
        return None;
    }
    let mut word = words.next()?;
    let mut query_only = false;
    if word.eq_ignore_ascii_case("query") {
        query_only = true;
        word = words.next()?;
    } else if word.eq_ignore_ascii_case("connection") {
        word = words.next()?;
    }
    let id = word.parse().ok()?;
    words.next().is_none().then_some((id, query_only))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_statements_are_recognised() {
        assert_eq!(parse_kill("KILL QUERY 42"), Some((42, true)));
        assert_eq!(parse_kill("kill 7;"), Some((7, false)));
        assert_eq!(parse_kill(" Kill Connection 9 "), Some((9, false)));
        assert_eq!(parse_kill("KILL QUERY 42 extra"), None);
        assert_eq!(parse_kill("KILL QUERY x"), None);
        assert_eq!(parse_kill("SELECT 1"), None);
    }

    #[test]
    fn only_the_owner_finds_a_session_through_its_connection() {
        let registry = KillRegistry::default();
        let id = registry.issue_id();
        let (notify, _) = mpsc::channel(1);
        registry.register(
            id,
            KillRoute {
                identity: "alice".into(),
                connection: "app".into(),
                upstream_thread: 77,
                notify,
            },
        );
        assert_eq!(
            registry.find(id, "alice", "app").unwrap().upstream_thread,
            77
        );
        assert!(registry.find(id, "mallory", "app").is_none());
        assert!(registry.find(id, "alice", "other").is_none());
        registry.unregister(id);
        assert!(registry.find(id, "alice", "app").is_none());
    }
}
