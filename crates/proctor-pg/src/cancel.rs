//! Cancel keys: the ones Proctor issues to clients, and the upstream backends they stand for.
//!
//! A client never sees the target's backend key. It gets a random pair from Proctor; a CancelRequest
//! bearing that pair is sent on to the right target with the real key, and the session is told so it can
//! record the cancel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
        let same = (expected ^ key) == 0;
        same.then(|| route.clone())
    }
}
