//! The two sockets of a relayed session and the bytes waiting to be written to each.
//!
//! A driver that pipelines (psycopg's pipeline mode, JDBC and pgx batches, tokio-postgres with many
//! queries in flight) goes on sending while the database answers, and the database stops reading while
//! its answers are not read. A relay that waited on a write to one side without reading the other
//! would stall both. So what the relay hands a [`Peer`] is written at once as far as its socket takes
//! it, and the rest waits in that peer's buffer, written as the socket drains, while [`traffic`] goes
//! on reading both sides.
//!
//! The buffers are bounded: a side is read only while the buffer its bytes go to holds less than
//! [`MAX_PENDING`], so a peer that does not read holds back the other one, as it would talking to
//! PostgreSQL directly, instead of filling Proctor's memory.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use proctor_net::BoxedStream;

/// Bytes waiting for one peer beyond which the other peer is not read.
pub const MAX_PENDING: usize = 4 * 1024 * 1024;
/// A drained buffer that grew larger than this is let go, so that a burst does not keep its memory
/// for the rest of the session.
const KEPT_CAPACITY: usize = 256 * 1024;

/// One end of a session: its socket, and the bytes accepted for it that the socket has not taken yet.
pub struct Peer {
    stream: BoxedStream,
    pending: BytesMut,
    /// `pending` grew past [`KEPT_CAPACITY`]: its memory is let go once it is written.
    grown: bool,
    /// Bytes were written since the last flush (a TLS stream may hold some back until flushed).
    unflushed: bool,
    /// Why a write failed, until [`traffic`] reports it.
    failure: Option<io::Error>,
}

/// What the sockets did.
pub enum Traffic {
    /// Bytes read from the client into its buffer; none when it closed the connection.
    FromClient(io::Result<usize>),
    /// Bytes read from the database into its buffer; none when it closed the connection.
    FromUpstream(io::Result<usize>),
    ToClientFailed(io::Error),
    ToUpstreamFailed(io::Error),
}

impl Peer {
    pub fn new(stream: BoxedStream) -> Self {
        Self {
            stream,
            pending: BytesMut::new(),
            grown: false,
            unflushed: false,
            failure: None,
        }
    }

    /// Writes `bytes` after those still pending: as far as the socket takes them now, the rest as it
    /// drains. A failure is reported by [`traffic`]; what is sent after it is dropped.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.failure.is_some() {
            return;
        }
        let rest = if self.pending.is_empty() {
            match self.write_now(bytes) {
                Ok(written) => &bytes[written..],
                Err(e) => {
                    self.failure = Some(e);
                    return;
                }
            }
        } else {
            bytes
        };
        self.pending.extend_from_slice(rest);
        self.grown |= self.pending.capacity() > KEPT_CAPACITY;
    }

    /// Writes as much of `bytes` as the socket takes without waiting, and flushes if that was all.
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // Polled once, never waited on: the session's next look at its sockets registers its waker.
        let mut now = Context::from_waker(Waker::noop());
        let mut written = 0;
        while written < bytes.len() {
            match Pin::new(&mut self.stream).poll_write(&mut now, &bytes[written..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    written += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(written),
            }
        }
        match self.poll_flush(&mut now) {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(written),
        }
    }

    /// Bytes accepted for this peer and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Drops what is pending, and its memory (when the client is gone, none of its statements that
    /// still wait are to run).
    pub fn discard(&mut self) {
        self.pending = BytesMut::new();
        self.grown = false;
    }

    /// Writes and flushes what is pending, waiting as long as it takes.
    pub async fn finish(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.pending).await?;
        self.pending.clear();
        self.stream.flush().await
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.unflushed = false;
        }
        flushed
    }

    /// Writes what is pending as far as the socket takes it, then flushes. Ready only with an error:
    /// progress alone is no news for the session.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if let Some(e) = self.failure.take() {
            return Poll::Ready(e);
        }
        while !self.pending.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.pending.advance(n);
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.grown {
            self.discard();
        }
        match self.poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(e),
            _ => Poll::Pending,
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, into: &mut BytesMut) -> Poll<io::Result<usize>> {
        pin!(self.stream.read_buf(into)).poll(cx)
    }
}

/// Writes what is pending for either peer and waits until one of them has sent something or failed.
/// The client is read only if `read_client` and the database is not owed [`MAX_PENDING`] bytes; the
/// database only if the client is not owed as much. `upstream_first` says which is read first when
/// both have sent something, so that neither keeps the other waiting.
pub async fn traffic(
    client: &mut Peer,
    from_client: &mut BytesMut,
    read_client: bool,
    upstream: &mut Peer,
    from_upstream: &mut BytesMut,
    upstream_first: bool,
) -> Traffic {
    poll_fn(|cx| {
        if let Poll::Ready(e) = client.poll_drain(cx) {
            return Poll::Ready(Traffic::ToClientFailed(e));
        }
        if let Poll::Ready(e) = upstream.poll_drain(cx) {
            return Poll::Ready(Traffic::ToUpstreamFailed(e));
        }
        let read_client = read_client && upstream.pending() < MAX_PENDING;
        let read_upstream = client.pending() < MAX_PENDING;
        for upstream_turn in [upstream_first, !upstream_first] {
            if upstream_turn && read_upstream {
                if let Poll::Ready(read) = upstream.poll_read(cx, from_upstream) {
                    return Poll::Ready(Traffic::FromUpstream(read));
                }
            } else if !upstream_turn && read_client {
                if let Poll::Ready(read) = client.poll_read(cx, from_client) {
                    return Poll::Ready(Traffic::FromClient(read));
                }
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// What the in-memory sockets of these tests hold.
    const SOCKET: usize = 64 * 1024;

    /// A peer, and the other end of its socket.
    fn peer() -> (Peer, DuplexStream) {
        let (ours, theirs) = duplex(SOCKET);
        (Peer::new(Box::new(ours)), theirs)
    }

    /// Writes into `stream` until it takes no more, numbering the bytes from `*next`.
    fn fill(stream: &mut DuplexStream, next: &mut u8) {
        loop {
            let chunk: Vec<u8> = (0..4096).map(|i| next.wrapping_add(i as u8)).collect();
            match stream.write(&chunk).now_or_never() {
                Some(Ok(n)) => *next = next.wrapping_add(n as u8),
                _ => return,
            }
        }
    }

    /// Reads what `stream` holds now.
    fn drain(stream: &mut DuplexStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Some(Ok(n @ 1..)) = stream.read(&mut chunk).now_or_never() {
            out.extend_from_slice(&chunk[..n]);
        }
        out
    }

    struct Session {
        client: Peer,
        upstream: Peer,
        from_client: BytesMut,
        from_upstream: BytesMut,
        upstream_first: bool,
    }

    impl Session {
        /// The relay's loop without the protocol: what one side sends is handed to the other, as long
        /// as the sockets have anything ready. Returns what happened, in order.
        fn run(&mut self) -> Vec<&'static str> {
            let mut happened = Vec::new();
            loop {
                self.from_client.reserve(SOCKET);
                self.from_upstream.reserve(SOCKET);
                self.upstream_first = !self.upstream_first;
                let ready = traffic(
                    &mut self.client,
                    &mut self.from_client,
                    true,
                    &mut self.upstream,
                    &mut self.from_upstream,
                    self.upstream_first,
                )
                .now_or_never();
                match ready {
                    None => return happened,
                    Some(Traffic::FromUpstream(Ok(n))) if n > 0 => {
                        self.client.send(&self.from_upstream.split());
                        happened.push("from upstream");
                    }
                    Some(Traffic::FromClient(Ok(n))) if n > 0 => {
                        self.upstream.send(&self.from_client.split());
                        happened.push("from client");
                    }
                    Some(_) => panic!("a socket failed or closed"),
                }
            }
        }
    }

    fn session() -> (Session, DuplexStream, DuplexStream) {
        let (client, app) = peer();
        let (upstream, database) = peer();
        let session = Session {
            client,
            upstream,
            from_client: BytesMut::new(),
            from_upstream: BytesMut::new(),
            upstream_first: false,
        };
        (session, app, database)
    }

    #[test]
    fn what_a_socket_does_not_take_waits_and_follows_in_order() {
        let (mut client, mut app) = peer();
        let message: Vec<u8> = (0..3 * SOCKET).map(|i| i as u8).collect();
        client.send(&message[..SOCKET / 2]);
        assert_eq!(client.pending(), 0, "the socket took it at once");
        client.send(&message[SOCKET / 2..]);
        assert_eq!(client.pending(), 2 * SOCKET);
        let (mut upstream, _database) = peer();
        let (mut from_client, mut from_upstream) = (BytesMut::new(), BytesMut::new());
        let mut received = Vec::new();
        while received.len() < message.len() {
            received.extend(drain(&mut app));
            let ready = traffic(
                &mut client,
                &mut from_client,
                false,
                &mut upstream,
                &mut from_upstream,
                false,
            )
            .now_or_never();
            assert!(ready.is_none(), "writing is no news");
        }
        assert_eq!(received, message);
        assert_eq!(client.pending(), 0);
    }

    #[test]
    fn a_client_that_does_not_read_holds_back_the_database_not_the_memory_nor_itself() {
        let (mut session, mut app, mut database) = session();
        let mut next = 0;
        // The database answers without end; the client reads nothing.
        let mut turns = 0;
        loop {
            fill(&mut database, &mut next);
            if session.run().is_empty() {
                break;
            }
            turns += 1;
            assert!(turns < 10_000, "the database was read without end");
        }
        let owed = session.client.pending();
        assert!(
            (MAX_PENDING..MAX_PENDING + SOCKET).contains(&owed),
            "{owed} bytes held for the client"
        );

        // The client's next statement still reaches the database.
        app.write_all(b"Q statement")
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(session.run(), ["from client"]);
        assert_eq!(drain(&mut database), b"Q statement");

        // Once the client reads, the database is read again, and the client gets every byte in order.
        let mut received = Vec::new();
        while received.len() < 2 * MAX_PENDING {
            received.extend(drain(&mut app));
            fill(&mut database, &mut next);
            session.run();
        }
        assert!(received
            .iter()
            .zip(received.iter().skip(1))
            .all(|(a, b)| b.wrapping_sub(*a) == 1));
    }
}
