//! Cancel keys: the ones Proctor issues to clients, and the upstream backends they stand for.
//!
//! A client never sees the target's backend key. It gets a random pair from Proctor; a CancelRequest
//! bearing that pair is sent on to the right target with the real key, and the session is told so it can
//! record the cancel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use proctor_core::identity::secrets_equal;
use proctor_core::Target;
use rand::Rng;
use rustls::ClientConfig;
use tokio::sync::mpsc;

/// Where a cancel for one client session must go.
#[derive(Clone)]
pub struct CancelRoute {
    pub target: Arc<Target>,
    pub tls: Option<Arc<ClientConfig>>,
    pub upstream_pid: i32,
    pub upstream_key: i32,
    /// Tells the session that a cancel arrived, so it records it.
    pub notify: mpsc::Sender<()>,
}

#[derive(Default)]
pub struct CancelRegistry {
    routes: Mutex<HashMap<i32, (i32, CancelRoute)>>,
}

impl CancelRegistry {
    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<i32, (i32, CancelRoute)>> {
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Issues a fresh (pid, key) pair for a session.
    pub fn register(&self, route: CancelRoute) -> (i32, i32) {
        let mut rng = rand::thread_rng();
        let mut routes = self.routes();
        loop {
            let pid = rng.gen_range(1..i32::MAX);
            if let std::collections::hash_map::Entry::Vacant(slot) = routes.entry(pid) {
                let key = rng.gen::<i32>();
                slot.insert((key, route));
                return (pid, key);
            }
        }
    }

    pub fn unregister(&self, pid: i32) {
        self.routes().remove(&pid);
    }

    /// The route for a (pid, key) pair, if both match a live session.
    pub fn find(&self, pid: i32, key: i32) -> Option<CancelRoute> {
        let routes = self.routes();
        let (expected, route) = routes.get(&pid)?;
        secrets_equal(&expected.to_be_bytes(), &key.to_be_bytes()).then(|| route.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_core::policy::Policy;

    fn route() -> CancelRoute {
        let config = serde_json::from_value(serde_json::json!({
            "name": "app-db", "kind": "postgres", "address": "127.0.0.1:5432",
            "database": "app", "user": "app",
        }))
        .unwrap();
        CancelRoute {
            target: Arc::new(Target {
                config,
                password: None,
                private_key: None,
                policy: Arc::new(Policy::deny_all()),
            }),
            tls: None,
            upstream_pid: 7,
            upstream_key: 8,
            notify: mpsc::channel(1).0,
        }
    }

    #[test]
    fn a_cancel_is_routed_only_with_the_issued_key() {
        let registry = CancelRegistry::default();
        let (pid, key) = registry.register(route());
        assert_eq!(registry.find(pid, key).unwrap().upstream_pid, 7);
        assert!(registry.find(pid, key ^ 1).is_none());
        assert!(registry.find(pid, key ^ i32::MIN).is_none());
        assert!(registry.find(pid ^ 1, key).is_none());
        registry.unregister(pid);
        assert!(registry.find(pid, key).is_none());
    }
}
