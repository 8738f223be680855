//! What every protocol front-end shares at the socket, below its protocol: the accept loop that
//! spreads sessions over the worker event loops, streams that are plain or TLS, and the TLS
//! configurations of both sides (the certificate Proctor presents, each connection's upstream
//! verification).
//!
//! The bounded [`cursor::Cursor`] every protocol's decoders read untrusted bytes with is here too.
//!
//! It knows no wire protocol: where TLS starts in an exchange, and what a session does with its
//! stream, are the protocol crates' (`proctor-pg`, `proctor-mysql`).

pub mod cursor;
mod listener;
pub mod tls;

pub use listener::{serve, SHUTDOWN_GRACE};

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a peer, plain or TLS.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}
pub type BoxedStream = Box<dyn AsyncStream>;

/// Bytes that break a protocol: what a decoder of untrusted bytes answers instead of panicking. The
/// message says what was wrong, for the client and the journal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl From<ProtocolError> for proctor_core::Fault<ProtocolError> {
    fn from(e: ProtocolError) -> Self {
        proctor_core::Fault::Protocol(e)
    }
}

/// Why Proctor could not open a connection to a target, below its protocol.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the database at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("TLS to the database failed: {0}")]
    Tls(String),
}

/// Opens a TCP connection to a target's `address` (host:port), with TCP_NODELAY: commands are
/// small and must not wait for the previous answer's acknowledgement.
pub async fn connect_tcp(address: &str) -> Result<tokio::net::TcpStream, ConnectError> {
    let tcp =
        tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| ConnectError::Unreachable {
                address: address.to_owned(),
                reason: e.to_string(),
            })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}
