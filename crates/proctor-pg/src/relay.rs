//! The I/O of one authenticated PostgreSQL session: it reads both sockets, feeds what arrives to
//! the session's [`State`] and writes what the state machine decides, and turns the outside world's
//! interruptions (Proctor stopping, a forwarded cancel, an approver's decision) into its inputs.
//!
//! Both directions run in one task, so the bookkeeping that links results to the statements that caused
//! them needs no locks. Bytes are forwarded as they arrive, never a whole result set at a time. Neither
//! direction waits on the other's writes: what a socket does not take at once waits in a bounded buffer
//! while both sides go on being read (see [`crate::peer`]), so a client that pipelines cannot stall the
//! session.

use std::future::Future;
use std::pin::Pin;

use bytes::BytesMut;
use proctor_core::guard::{Guardrails, HoldEnd};
use proctor_core::journal::Body;
use proctor_core::{RecordError, SessionRecorder};

use crate::cancel::CancelRoute;
use crate::codec::ClientError;
use crate::interruptions::{Interruption, Interruptions};
use crate::machine::{Flow, Limits, Pending, State, Wire};
use crate::peer::{self, Peer, Traffic};
use crate::upstream;
use proctor_net::BoxedStream;

const READ_CHUNK: usize = 64 * 1024;
/// How long what was accepted for either side may take to reach it once the session ends.
const FINISH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// The session's two sockets, as the state machine writes to them.
struct Sockets<'a> {
    client: &'a mut Peer,
    upstream: &'a mut Peer,
}

impl Wire for Sockets<'_> {
    fn to_client(&mut self, bytes: &[u8]) {
        self.client.send(bytes);
    }

    fn to_upstream(&mut self, bytes: &[u8]) {
        self.upstream.send(bytes);
    }

    fn discard_upstream(&mut self) {
        self.upstream.discard();
    }
}

/// Why a session ended, for `session.end`.
pub struct Ended(pub String);

pub struct Relay {
    pub client: BoxedStream,
    pub upstream: BoxedStream,
    pub recorder: SessionRecorder,
    pub limits: Limits,
    pub cancel_route: CancelRoute,
    pub interruptions: Interruptions,
    pub guardrails: Guardrails,
}

impl Relay {
    /// Runs the session until either side leaves; returns the reason for `session.end`.
    pub async fn run(self) -> (SessionRecorder, Ended) {
        let Relay {
            client,
            upstream,
            mut recorder,
            limits,
            cancel_route,
            mut interruptions,
            guardrails,
        } = self;
        let mut state = State::new(limits, guardrails);
        // The wait for an approver's decision on the held statement, kept across turns of the loop.
        let mut decision: Option<Pin<Box<dyn Future<Output = HoldEnd> + Send>>> = None;
        let mut from_client = BytesMut::with_capacity(READ_CHUNK);
        let mut from_upstream = BytesMut::with_capacity(READ_CHUNK);
        let mut client = Peer::new(client);
        let mut upstream = Peer::new(upstream);
        let mut upstream_first = false;
        let reason = loop {
            from_client.reserve(READ_CHUNK);
            from_upstream.reserve(READ_CHUNK);
            // While a statement waits for an approver, what the client sends after it is only kept.
            let read_client =
                state.hold.is_none() || from_client.len() < state.limits.max_message_bytes;
            upstream_first = !upstream_first;
            let flow = tokio::select! {
                biased;
                interruption = interruptions.next() => match interruption {
                    Interruption::Shutdown => {
                        let notice = ClientError::fatal("57P01", "Proctor is shutting down; reconnect in a moment");
                        client.send(&notice.encode());
                        Flow::End("gateway shutting down".into())
                    }
                    Interruption::Cancel => match record_cancel(&mut recorder).await {
                        Ok(()) => match state.hold.take() {
                            Some(hold) => {
                                decision = None;
                                let end = state.guardrails.withdraw(&hold, "the client cancelled the statement").await;
                                state.end_hold(hold, end, &mut from_client, &mut Sockets { client: &mut client, upstream: &mut upstream }, &mut recorder).await
                            }
                            None => Flow::Continue,
                        },
                        Err(e) => Flow::End(e.to_string()),
                    },
                },
                end = wait_for(&mut decision), if decision.is_some() => {
                    decision = None;
                    match state.hold.take() {
                        Some(hold) => state.end_hold(hold, end, &mut from_client, &mut Sockets { client: &mut client, upstream: &mut upstream }, &mut recorder).await,
                        None => Flow::Continue,
                    }
                }
                traffic = peer::traffic(&mut client, &mut from_client, read_client, &mut upstream, &mut from_upstream, upstream_first) => match traffic {
                    Traffic::FromClient(Ok(0) | Err(_)) => {
                        state.client_left(&mut Sockets { client: &mut client, upstream: &mut upstream }, &mut recorder, "the client disconnected").await;
                        client_gone(&state, &cancel_route).await
                    }
                    Traffic::ToClientFailed(e) => {
                        state.client_left(&mut Sockets { client: &mut client, upstream: &mut upstream }, &mut recorder, "the client left").await;
                        end_with(format!("writing to the client failed: {e}"))
                    }
                    Traffic::FromClient(Ok(_)) if state.hold.is_some() => Flow::Continue,
                    Traffic::FromClient(Ok(_)) => state.on_client_bytes(&mut from_client, &mut Sockets { client: &mut client, upstream: &mut upstream }, &mut recorder).await,
                    Traffic::FromUpstream(Ok(0) | Err(_)) => {
                        let error = ClientError::fatal("08006", "the database closed the connection")
                            .hint("Reconnect; if it keeps happening, the database or its network is failing.");
                        client.send(&error.encode());
                        Flow::End("database closed the connection".into())
                    }
                    Traffic::FromUpstream(Ok(_)) => state.on_upstream_bytes(&mut from_upstream, &mut Sockets { client: &mut client, upstream: &mut upstream }, &mut recorder).await,
                    Traffic::ToUpstreamFailed(e) => end_with(format!("writing to the database failed: {e}")),
                },
            };
            if let Flow::End(reason) = flow {
                break reason;
            }
            if let (Some(hold), None) = (&state.hold, &decision) {
                decision = Some(Box::pin(state.guardrails.outcome(hold)));
            }
        };
        while interruptions.try_cancel() {
            let _ = record_cancel(&mut recorder).await;
        }
        let _ = tokio::time::timeout(FINISH_PATIENCE, async {
            let _ = tokio::join!(client.finish(), upstream.finish());
            let _ = client.shutdown().await;
        })
        .await;
        (recorder, Ended(reason))
    }
}

/// Waits for the approver's decision, if a statement is held.
async fn wait_for(decision: &mut Option<Pin<Box<dyn Future<Output = HoldEnd> + Send>>>) -> HoldEnd {
    match decision {
        Some(waiting) => waiting.await,
        None => std::future::pending().await,
    }
}

async fn record_cancel(recorder: &mut SessionRecorder) -> Result<(), RecordError> {
    let body = Body::new().str("requested_by", "client").finish();
    recorder.record_queued("db.cancel", body).await.map(|_| ())
}

/// The client left. If a statement was still running, the target is asked to cancel it, so it does not
/// run on unattended.
async fn client_gone(state: &State, route: &CancelRoute) -> Flow {
    let running = state.pending.iter().any(|p| matches!(p, Pending::Unit(_)));
    if !running {
        return Flow::End("client disconnected".into());
    }
    let cancel = upstream::send_cancel(
        &route.target,
        route.tls.as_ref(),
        route.upstream_pid,
        route.upstream_key,
    );
    match tokio::time::timeout(std::time::Duration::from_secs(5), cancel).await {
        Ok(Ok(())) => {
            Flow::End("client disconnected mid-query; the running statement was cancelled".into())
        }
        _ => Flow::End(
            "client disconnected mid-query; cancelling the running statement failed".into(),
        ),
    }
}

fn end_with(reason: impl std::fmt::Display) -> Flow {
    Flow::End(reason.to_string())
}
