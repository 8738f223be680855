//! The I/O of one authenticated MySQL session: it reads the client's commands and the target's
//! answers and writes them on, doing what [`Exchange`] decides for each packet. Everything a
//! command caused is committed to the journal before the command is forwarded.
//!
//! A command's answer is relayed packet by packet as it arrives, in writes of at most
//! [`FLUSH_BYTES`], so a large result streams through in bounded memory: the target is not read
//! faster than the client takes the rows.

use bytes::BytesMut;
use proctor_core::guard::Guardrails;
use proctor_core::{Fault, RecordError, SessionRecorder};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::codec::{self, Packet};
use crate::errors::{self, MysqlError};
use crate::exchange::{ClientStep, Exchange, UpstreamStep};
use crate::kills::KillRegistry;
use proctor_net::BoxedStream;

pub use crate::exchange::RelaySettings;

/// Bytes of answer gathered before they are written to the client.
const FLUSH_BYTES: usize = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;

pub struct Relay {
    pub client: BoxedStream,
    pub upstream: BoxedStream,
    pub recorder: SessionRecorder,
    pub guardrails: Guardrails,
    pub settings: RelaySettings,
    pub kills: std::sync::Arc<KillRegistry>,
    /// Kills of this session that other sessions forwarded.
    pub kill_notices: mpsc::Receiver<()>,
    pub shutdown: watch::Receiver<bool>,
}

/// Why the session stops.
struct End(String);

/// One side of the session: its stream and the bytes read from it but not yet handled.
struct Side {
    stream: BoxedStream,
    buf: BytesMut,
}

impl Side {
    /// The next packet; `Ok(None)` when the peer closed.
    async fn packet(&mut self, max: usize) -> Result<Option<Packet>, String> {
        loop {
            match codec::take_packet(&mut self.buf, max) {
                Ok(Some(packet)) => return Ok(Some(packet)),
                Ok(None) => {}
                Err(e) => return Err(e.0),
            }
            self.buf.reserve(READ_CHUNK);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(format!("connection lost: {e}")),
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| End(format!("connection lost: {e}")))
    }
}

impl Relay {
    /// Runs the session until either side leaves; returns the recorder and why it ended.
    pub async fn run(self) -> (SessionRecorder, String) {
        let Relay {
            client,
            upstream,
            mut recorder,
            guardrails,
            settings,
            kills,
            mut kill_notices,
            mut shutdown,
        } = self;
        let mut session = Session {
            client: Side {
                stream: client,
                buf: BytesMut::with_capacity(READ_CHUNK),
            },
            upstream: Side {
                stream: upstream,
                buf: BytesMut::with_capacity(READ_CHUNK),
            },
            out: BytesMut::with_capacity(FLUSH_BYTES),
            kills,
        };
        let mut exchange = Exchange::new(settings, guardrails);
        let max = exchange.settings().max_packet_bytes;
        let End(reason) = loop {
            let packet = tokio::select! {
                packet = session.client.packet(max) => packet,
                _ = shutdown.changed() => {
                    let _ = session.answer(0, &errors::shutting_down().packet()).await;
                    break End("Proctor stopped".into());
                }
                Some(()) = kill_notices.recv() => {
                    if let Err(e) = record_killed(&mut recorder).await {
                        break End(format!("journal failure: {e}"));
                    }
                    continue;
                }
                closed = session.upstream.stream.read_buf(&mut session.upstream.buf) => {
                    // The target speaks only to answer; unasked, it is saying goodbye (a timeout).
                    let _ = closed;
                    let _ = session.answer(0, &errors::unavailable(
                        &exchange.settings().connection,
                        "the database closed the connection",
                    ).packet()).await;
                    break End("the database closed the connection".into());
                }
            };
            let packet = match packet {
                Ok(Some(packet)) => packet,
                Ok(None) => break End("client disconnected".into()),
                Err(why) => break session.client_broke(&why, max, &mut recorder).await,
            };
            match session
                .command(&mut exchange, &packet, &mut recorder, &mut kill_notices)
                .await
            {
                Ok(()) => {}
                Err(end) => break end,
            }
        };
        let _ = session.client.stream.shutdown().await;
        (recorder, reason)
    }
}

/// A kill that another session forwarded for this one.
async fn record_killed(recorder: &mut SessionRecorder) -> Result<(), RecordError> {
    recorder
        .record_queued_masked("db.cancel", json!({"by": "KILL from another session"}))
        .await?;
    recorder.commit().await
}

struct Session {
    client: Side,
    upstream: Side,
    /// Answer packets gathered for the client.
    out: BytesMut,
    kills: std::sync::Arc<KillRegistry>,
}

impl Session {
    /// Sends the client one packet of Proctor's own, with sequence id `seq`.
    async fn answer(&mut self, seq: u8, payload: &[u8]) -> Result<(), End> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        codec::write_packet(&mut out, seq, payload);
        self.client.write(&out).await
    }

    async fn flush(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.client.write(&out).await?;
            self.out = out;
            self.out.clear();
        }
        Ok(())
    }

    /// Handles one client command until its answer has been relayed.
    async fn command(
        &mut self,
        exchange: &mut Exchange,
        packet: &Packet,
        recorder: &mut SessionRecorder,
        kill_notices: &mut mpsc::Receiver<()>,
    ) -> Result<(), End> {
        let reply_seq = packet.last_seq.wrapping_add(1);
        let mut step = match exchange.on_client_packet(&packet.payload, recorder).await {
            Ok(step) => step,
            Err(e) => return self.journal_failed(reply_seq, e).await,
        };
        let step = loop {
            step = match step {
                ClientStep::Hold(held) => {
                    self.hold(exchange, held, recorder, kill_notices).await?;
                    match exchange.on_client_packet(&packet.payload, recorder).await {
                        Ok(step) => step,
                        Err(e) => return self.journal_failed(reply_seq, e).await,
                    }
                }
                ClientStep::Kill { id, query_only } => {
                    let settings = exchange.settings();
                    match self
                        .kills
                        .find(id, &settings.identity, &settings.connection)
                    {
                        Some(route) => {
                            let _ = route.notify.try_send(());
                            match exchange
                                .kill(id, route.upstream_thread, query_only, recorder)
                                .await
                            {
                                Ok(step) => step,
                                Err(e) => return self.journal_failed(reply_seq, e).await,
                            }
                        }
                        None => {
                            let error = errors::no_such_session(id);
                            if let Err(e) = exchange.record_error(&error, None, recorder).await {
                                return self.journal_failed(reply_seq, e).await;
                            }
                            ClientStep::Answer(error.packet())
                        }
                    }
                }
                other => break other,
            };
        };
        if let Err(e) = recorder.commit().await {
            return self.journal_failed(reply_seq, e).await;
        }
        match step {
            ClientStep::Forward => {
                self.upstream.write(&packet.raw).await?;
                self.relay_answer(exchange, recorder, kill_notices).await
            }
            ClientStep::Rewrite(payload) => {
                let mut out = BytesMut::with_capacity(payload.len() + 4);
                codec::write_packet(&mut out, packet.first_seq, &payload);
                self.upstream.write(&out).await?;
                self.relay_answer(exchange, recorder, kill_notices).await
            }
            ClientStep::ForwardQuietly => self.upstream.write(&packet.raw).await,
            ClientStep::Answer(payload) => self.answer(reply_seq, &payload).await,
            ClientStep::Quit => {
                let _ = self.upstream.write(&packet.raw).await;
                Err(End("client closed the session".into()))
            }
            ClientStep::Hold(..) | ClientStep::Kill { .. } => Ok(()),
        }
    }

    async fn journal_failed(&mut self, seq: u8, e: RecordError) -> Result<(), End> {
        tracing::error!(error = %e, "journal failure; ending the session");
        let _ = self.answer(seq, &errors::journal_failed().packet()).await;
        Err(End(format!("journal failure: {e}")))
    }

    /// Relays the target's answer to the command just forwarded, and the file a LOCAL INFILE
    /// sends. A kill of this session that arrives meanwhile is recorded as it arrives, before the
    /// answer it cuts short.
    async fn relay_answer(
        &mut self,
        exchange: &mut Exchange,
        recorder: &mut SessionRecorder,
        kill_notices: &mut mpsc::Receiver<()>,
    ) -> Result<(), End> {
        let max = exchange
            .settings()
            .max_packet_bytes
            .max(codec::MAX_FRAME_PAYLOAD * 4);
        while exchange.is_awaiting() {
            if exchange.takes_client_data() {
                self.flush().await?;
                self.relay_infile(exchange, recorder).await?;
                continue;
            }
            let packet = tokio::select! {
                biased;
                Some(()) = kill_notices.recv() => {
                    if let Err(e) = record_killed(recorder).await {
                        self.flush().await?;
                        return Err(End(format!("journal failure: {e}")));
                    }
                    continue;
                }
                packet = self.upstream.packet(max) => packet,
            };
            let packet = match packet {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    self.flush().await?;
                    return Err(End("the database closed the connection".into()));
                }
                Err(why) => return Err(self.upstream_broke(exchange, &why).await),
            };
            match exchange.on_upstream_packet(&packet.payload, recorder).await {
                Ok(UpstreamStep::Forward) => self.out.extend_from_slice(&packet.raw),
                Ok(UpstreamStep::Replace(payload)) => {
                    codec::write_packet(&mut self.out, packet.first_seq, &payload);
                }
                Err(Fault::Protocol(e)) => return Err(self.upstream_broke(exchange, &e.0).await),
                Err(Fault::Record(e)) => {
                    self.flush().await?;
                    tracing::error!(error = %e, "journal failure; ending the session");
                    return Err(End(format!("journal failure: {e}")));
                }
            }
            if self.out.len() >= FLUSH_BYTES || self.upstream.buf.is_empty() {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    /// Relays the client's file, packet by packet, up to the empty packet that ends it.
    async fn relay_infile(
        &mut self,
        exchange: &mut Exchange,
        recorder: &mut SessionRecorder,
    ) -> Result<(), End> {
        let max = exchange.settings().max_packet_bytes;
        while exchange.takes_client_data() {
            let packet = match self.client.packet(max).await {
                Ok(Some(packet)) => packet,
                Ok(None) => return Err(End("client disconnected".into())),
                Err(why) => return Err(self.client_broke(&why, max, recorder).await),
            };
            if let Err(e) = exchange.on_client_packet(&packet.payload, recorder).await {
                return Err(End(format!("journal failure: {e}")));
            }
            self.upstream.write(&packet.raw).await?;
        }
        Ok(())
    }

    /// The client broke the protocol (a packet too large, bad framing): it is recorded, the client
    /// is told, the session ends.
    async fn client_broke(&mut self, why: &str, max: usize, recorder: &mut SessionRecorder) -> End {
        let error = if why.starts_with(codec::TOO_LARGE) {
            errors::packet_too_large(max)
        } else {
            errors::malformed(why)
        };
        let _ = recorder
            .record_masked(
                "protocol.error",
                json!({"direction": "client", "message": why}),
            )
            .await;
        let _ = self.answer(0, &error.packet()).await;
        End(format!("protocol error: {}", error.message))
    }

    /// The target broke the protocol: the client is told, the session ends.
    async fn upstream_broke(&mut self, exchange: &Exchange, why: &str) -> End {
        let _ = self.flush().await;
        let error: MysqlError = errors::unavailable(
            &exchange.settings().connection,
            &format!("the database broke the protocol: {why}"),
        );
        let _ = self.answer(0, &error.packet()).await;
        End(format!("protocol error from the database: {why}"))
    }

    /// Waits for the held statement's approver (or its withdrawal), then records how it ended; the
    /// statement is handled again after, with the outcome.
    async fn hold(
        &mut self,
        exchange: &mut Exchange,
        held: proctor_core::guard::Held,
        recorder: &mut SessionRecorder,
        kill_notices: &mut mpsc::Receiver<()>,
    ) -> Result<(), End> {
        let (hold, _notice) = exchange
            .guardrails()
            .hold(held, recorder)
            .await
            .map_err(|e| End(format!("journal failure: {e}")))?;
        let outcome = exchange.guardrails().outcome(&hold);
        let mut client_left = false;
        let end = tokio::select! {
            end = outcome => end,
            Some(()) = kill_notices.recv() => {
                exchange.guardrails().withdraw(&hold, "the statement was killed").await
            }
            read = self.client.stream.read_buf(&mut self.client.buf) => {
                client_left = matches!(read, Ok(0) | Err(_));
                exchange.guardrails().withdraw(&hold, "the client left or sent another command while it waited").await
            }
        };
        exchange
            .guardrails()
            .resolve(hold, end, recorder)
            .await
            .map_err(|e| End(format!("journal failure: {e}")))?;
        if client_left {
            let _ = recorder.commit().await;
            return Err(End("client disconnected".into()));
        }
        Ok(())
    }
}
