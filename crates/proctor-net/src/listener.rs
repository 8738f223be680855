//! The accept loop of a protocol's listener.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long sessions get to say goodbye when Proctor stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts clients until `shutdown` turns true, then gives open sessions [`SHUTDOWN_GRACE`] to end
/// cleanly. Each session runs `session(stream, peer, shutdown)` on one of `workers`, taken in turn:
/// its socket joins the event loop of the worker that polls it. Sockets have TCP_NODELAY set.
pub async fn serve<S, F>(
    listener: TcpListener,
    workers: Vec<Handle>,
    mut shutdown: watch::Receiver<bool>,
    session: S,
) where
    S: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut sessions = JoinSet::new();
    let mut next_worker = (0..workers.len()).cycle();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted.and_then(|(stream, peer)| Ok((stream.into_std()?, peer))) {
                Ok((stream, peer)) => {
                    let worker = next_worker.next().map_or_else(Handle::current, |n| workers[n].clone());
                    let shutdown = shutdown.clone();
                    let _guard = worker.enter();
                    match TcpStream::from_std(stream) {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            sessions.spawn_on(session(stream, peer, shutdown), &worker);
                        }
                        Err(e) => tracing::warn!(error = %e, "could not take over an accepted connection"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
}
