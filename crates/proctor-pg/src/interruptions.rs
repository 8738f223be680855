//! What can interrupt a session from outside its two sockets: a cancel that another connection
//! forwarded, or the gateway shutting down.
//!
//! The relay waits for these in the same `select!` as its sockets, and a `select!` polls every branch
//! each time any of them wakes the task: about twice per statement. Polling the shutdown watch and
//! the cancel channel every time cost more instructions per statement than their checks are worth,
//! so they are polled only after one of them has asked to be woken since the last look (they are
//! handed a waker of their own that notes the wake-up before passing it on to the task). Between
//! wake-ups, a look costs one atomic swap and keeping the task's waker.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio::sync::{mpsc, watch};

/// Why the session was interrupted.
#[derive(Debug, PartialEq)]
pub enum Interruption {
    /// The gateway is shutting down.
    Shutdown,
    /// The client's cancel key arrived on another connection and was forwarded to the database.
    Cancel,
}

type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct Interruptions {
    shutdown: Option<ShutdownSignal>,
    cancels: mpsc::Receiver<()>,
    woken: Arc<Woken>,
    /// Whether the sources have been polled once, so that they hold the waker that reports to us.
    armed: bool,
}

/// The waker the sources are given: it notes that they woke us, then wakes the task.
#[derive(Default)]
struct Woken {
    flag: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Interruptions {
    pub fn new(mut shutdown: watch::Receiver<bool>, cancels: mpsc::Receiver<()>) -> Self {
        let shutdown: ShutdownSignal = Box::pin(async move {
            // A sender dropped without a word means the gateway is gone too.
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        });
        Self {
            shutdown: Some(shutdown),
            cancels,
            woken: Arc::default(),
            armed: false,
        }
    }

    /// Waits for the next interruption. Cancel-safe: nothing is lost if the wait is dropped.
    pub async fn next(&mut self) -> Interruption {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// A cancel that arrived and was not taken yet, without waiting.
    pub fn try_cancel(&mut self) -> bool {
        self.cancels.try_recv().is_ok()
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Interruption> {
        self.woken.task.register(cx.waker());
        if self.armed && !self.woken.flag.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        self.armed = true;
        let waker = Waker::from(self.woken.clone());
        let mut sources = Context::from_waker(&waker);
        if let Some(shutdown) = self.shutdown.as_mut() {
            if shutdown.as_mut().poll(&mut sources).is_ready() {
                self.shutdown = None;
                return Poll::Ready(Interruption::Shutdown);
            }
        }
        match self.cancels.poll_recv(&mut sources) {
            Poll::Ready(Some(())) => {
                // Another cancel may be queued behind this one: look again on the next call.
                self.woken.flag.store(true, Ordering::Release);
                Poll::Ready(Interruption::Cancel)
            }
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A session's interruptions, with the senders that stand for the gateway and its cancel
    /// registry; none has arrived yet.
    async fn quiet() -> (watch::Sender<bool>, mpsc::Sender<()>, Interruptions) {
        let (stop, stopping) = watch::channel(false);
        let (cancel, cancels) = mpsc::channel(8);
        let mut interruptions = Interruptions::new(stopping, cancels);
        assert_eq!(within(&mut interruptions).await, None);
        (stop, cancel, interruptions)
    }

    async fn within(interruptions: &mut Interruptions) -> Option<Interruption> {
        tokio::time::timeout(Duration::from_millis(200), interruptions.next())
            .await
            .ok()
    }

    #[tokio::test]
    async fn each_forwarded_cancel_and_the_shutdown_are_heard_once() {
        let (stop, cancel, mut interruptions) = quiet().await;
        cancel.send(()).await.unwrap();
        cancel.send(()).await.unwrap();
        assert_eq!(within(&mut interruptions).await, Some(Interruption::Cancel));
        assert_eq!(within(&mut interruptions).await, Some(Interruption::Cancel));
        assert_eq!(within(&mut interruptions).await, None);

        // A wait that is dropped before its cancel arrives loses nothing.
        let early = tokio::time::timeout(Duration::from_millis(50), interruptions.next()).await;
        assert!(early.is_err());
        cancel.send(()).await.unwrap();
        assert_eq!(within(&mut interruptions).await, Some(Interruption::Cancel));

        stop.send(true).unwrap();
        assert_eq!(
            within(&mut interruptions).await,
            Some(Interruption::Shutdown)
        );
        assert_eq!(within(&mut interruptions).await, None);
    }

    #[tokio::test]
    async fn a_cancel_sent_from_another_thread_wakes_the_waiting_session() {
        let (_stop, cancel, mut interruptions) = quiet().await;
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            cancel.blocking_send(()).unwrap();
        });
        let heard = tokio::time::timeout(Duration::from_secs(5), interruptions.next()).await;
        sender.join().unwrap();
        assert_eq!(heard.ok(), Some(Interruption::Cancel));
    }
}
