//! The threads that carry sessions. Each runs a single-threaded tokio event loop of its own, and the
//! listener places each new session on one of them in turn; a session never moves to another thread.
//!
//! Relaying a statement then wakes no other thread: with a work-stealing scheduler, idle workers are
//! woken and parked again around every message, which on a loaded machine measurably costs CPU per
//! statement (compare `server.workers` settings with `bench/pgbench.sh`).

use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

pub struct Workers {
    handles: Vec<Handle>,
    running: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Workers {
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(count);
        let mut running = Vec::with_capacity(count);
        for n in 0..count {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("proctor-worker-{n}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    })
                })?;
            running.push((stop, thread));
        }
        Ok(Self { handles, running })
    }

    /// Where sessions run: hand each new one to the next of these.
    pub fn handles(&self) -> Vec<Handle> {
        self.handles.clone()
    }

    /// Stops the event loops; a session still running on one is dropped, which closes its sockets.
    pub fn stop(self) {
        for (stop, thread) in self.running {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}
