//! The ingest thread's scheduling priority.
//!
//! The store's copy of the commit log is on no statement's path: every event is durable in the log
//! before the store sees it. So, on Linux, the ingest thread runs at idle priority (`SCHED_IDLE`) once
//! it has caught up: it takes only the CPU time that the event loops, and the clients and targets that
//! share the machine, leave. If it falls more than a bound behind, the committing side puts it back at
//! normal priority until it catches up again, so that the store's lag stays bounded on a machine that is
//! never idle. A process that could not put the thread back (no `CAP_SYS_NICE` and an `RLIMIT_NICE`
//! below 20) leaves it at normal priority from the start. It owns nothing but the thread's policy.

use std::sync::atomic::{AtomicI32, Ordering};

/// Which thread runs at idle priority, if one does.
#[derive(Default)]
pub(crate) struct IngestPriority {
    /// The thread's id while it runs at idle priority; 0 while it runs at normal priority.
    lowered: AtomicI32,
}

impl IngestPriority {
    /// Whether the ingest thread runs at idle priority now.
    pub(crate) fn is_lowered(&self) -> bool {
        self.lowered.load(Ordering::Acquire) != 0
    }

    /// Whether this process may lower the ingest thread at all (see the module's doc).
    #[cfg(test)]
    pub(crate) fn is_available() -> bool {
        policy::may_return()
    }

    /// Puts the calling thread (the ingest thread) at idle priority, where the system lets it return.
    pub(crate) fn lower_calling_thread(&self) {
        if let Some(thread) = policy::lower_calling_thread() {
            self.lowered.store(thread, Ordering::Release);
        }
    }

    /// Puts the ingest thread back at normal priority; any thread may call it.
    pub(crate) fn restore(&self) {
        let thread = self.lowered.swap(0, Ordering::AcqRel);
        if thread != 0 {
            policy::restore(thread);
        }
    }
}

#[cfg(target_os = "linux")]
mod policy {
    use std::sync::OnceLock;

    fn set(thread: libc::pid_t, policy: libc::c_int) -> bool {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param for the call's duration; the call only changes the
        // scheduling policy of `thread` (0: the calling thread).
        unsafe { libc::sched_setscheduler(thread, policy, &param) == 0 }
    }

    /// Whether a thread of this process that lowers itself to idle may return to normal priority,
    /// tried once on a thread of its own.
    pub(super) fn may_return() -> bool {
        static MAY_RETURN: OnceLock<bool> = OnceLock::new();
        *MAY_RETURN.get_or_init(|| {
            std::thread::spawn(|| set(0, libc::SCHED_IDLE) && set(0, libc::SCHED_OTHER))
                .join()
                .unwrap_or(false)
        })
    }

    pub(super) fn lower_calling_thread() -> Option<libc::pid_t> {
        if !may_return() {
            return None;
        }
        // SAFETY: gettid has no preconditions.
        let thread = unsafe { libc::gettid() };
        set(0, libc::SCHED_IDLE).then_some(thread)
    }

    pub(super) fn restore(thread: libc::pid_t) {
        if !set(thread, libc::SCHED_OTHER) {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "could not put the ingest thread back at normal priority"
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod policy {
    #[cfg(test)]
    pub(super) fn may_return() -> bool {
        false
    }

    pub(super) fn lower_calling_thread() -> Option<i32> {
        None
    }

    pub(super) fn restore(_thread: i32) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc};

    fn calling_thread_policy() -> libc::c_int {
        // SAFETY: no preconditions; 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn the_thread_runs_idle_until_another_thread_restores_it() {
        let priority = Arc::new(IngestPriority::default());
        let (lowered_tx, lowered_rx) = mpsc::channel();
        let (restored_tx, restored_rx) = mpsc::channel::<()>();
        let thread = {
            let priority = priority.clone();
            std::thread::spawn(move || {
                priority.lower_calling_thread();
                lowered_tx.send(calling_thread_policy()).unwrap();
                restored_rx.recv().unwrap();
                calling_thread_policy()
            })
        };
        let policy_while_lowered = lowered_rx.recv().unwrap();
        if !policy::may_return() {
            // Without the right to return, the thread must never have been lowered.
            assert_eq!(policy_while_lowered, libc::SCHED_OTHER);
            assert!(!priority.is_lowered());
            restored_tx.send(()).unwrap();
            thread.join().unwrap();
            return;
        }
        assert_eq!(policy_while_lowered, libc::SCHED_IDLE);
        assert!(priority.is_lowered());
        priority.restore();
        assert!(!priority.is_lowered());
        restored_tx.send(()).unwrap();
        assert_eq!(thread.join().unwrap(), libc::SCHED_OTHER);
    }
}
