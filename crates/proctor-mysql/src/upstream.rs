//! The connection from Proctor to a target MySQL or MariaDB server: TCP, optional TLS, and the
//! login with the credentials Proctor holds (`mysql_native_password`, `caching_sha2_password` with
//! its fast path or, over TLS, its full authentication, and `mysql_clear_password` over TLS).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use proctor_core::Target;
use proctor_net::{BoxedStream, ConnectError};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth;
use crate::codec::{self, AuthReply, Greeting, HandshakeResponse, Packet, ProtocolError};

/// Packets of the login exchange are small; anything larger is not MySQL.
const MAX_LOGIN_PACKET: usize = 64 * 1024;
/// utf8mb4_general_ci.
pub const CHARSET_UTF8MB4: u8 = 45;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the database refused Proctor's login (error {code}): {message}")]
    Rejected { code: u16, message: String },
    #[error("the database spoke unexpectedly during login: {0}")]
    Protocol(String),
    #[error("the database did not answer within {0} s")]
    Timeout(u64),
}

impl From<ProtocolError> for UpstreamError {
    fn from(e: ProtocolError) -> Self {
        UpstreamError::Protocol(e.0)
    }
}

fn lost(e: std::io::Error) -> UpstreamError {
    UpstreamError::Protocol(format!("connection lost: {e}"))
}

/// A logged-in upstream session, ready for commands.
pub struct Upstream {
    pub stream: BoxedStream,
    /// The target's own id for this connection, for `KILL`.
    pub thread_id: u32,
    pub server_version: String,
    /// The capabilities both sides agreed.
    pub capabilities: u32,
    pub tls: bool,
}

/// Reads one packet of the login exchange.
async fn read_packet(
    stream: &mut BoxedStream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Packet, UpstreamError> {
    loop {
        if let Some(packet) = codec::take_packet(buf, max)? {
            return Ok(packet);
        }
        if stream.read_buf(buf).await.map_err(lost)? == 0 {
            return Err(UpstreamError::Protocol(
                "the database closed the connection".into(),
            ));
        }
    }
}

async fn send(stream: &mut BoxedStream, seq: u8, payload: &[u8]) -> Result<u8, UpstreamError> {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    let next = codec::write_packet(&mut out, seq, payload);
    stream.write_all(&out).await.map_err(lost)?;
    Ok(next)
}

/// Connects and logs in as the connection's user, asking for `capabilities` (those the client and
/// Proctor agreed), within the configured time. A `read_only` session is made read-only before
/// the client gets it.
pub async fn connect(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    capabilities: u32,
    attributes: &[(String, String)],
    read_only: bool,
    timeout_secs: u64,
) -> Result<Upstream, UpstreamError> {
    tokio::time::timeout(Duration::from_secs(timeout_secs), async {
        let mut upstream = login(target, tls, capabilities, attributes).await?;
        if read_only {
            run(&mut upstream.stream, "SET SESSION TRANSACTION READ ONLY").await?;
        }
        Ok(upstream)
    })
    .await
    .unwrap_or(Err(UpstreamError::Timeout(timeout_secs)))
}

/// Runs one statement that answers OK (a setting), before the client has the session.
async fn run(stream: &mut BoxedStream, sql: &str) -> Result<(), UpstreamError> {
    let mut command = vec![codec::COM_QUERY];
    command.extend_from_slice(sql.as_bytes());
    send(stream, 0, &command).await?;
    let mut buf = BytesMut::new();
    let answer = read_packet(stream, &mut buf, MAX_LOGIN_PACKET).await?;
    match answer.payload.first() {
        Some(0x00) => Ok(()),
        Some(0xFF) => {
            let error = codec::parse_err(&answer.payload)?;
            Err(UpstreamError::Rejected {
                code: error.code,
                message: format!("{sql}: {}", error.message),
            })
        }
        _ => Err(UpstreamError::Protocol(format!("{sql} did not answer OK"))),
    }
}

async fn login(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    wanted: u32,
    attributes: &[(String, String)],
) -> Result<Upstream, UpstreamError> {
    let address = &target.config.address;
    let tcp = proctor_net::connect_tcp(address).await?;
    let mut stream: BoxedStream = Box::new(tcp);
    let mut buf = BytesMut::with_capacity(1024);
    let greeting_packet = read_packet(&mut stream, &mut buf, MAX_LOGIN_PACKET).await?;
    if greeting_packet.payload.first() == Some(&0xFF) {
        let error = codec::parse_err(&greeting_packet.payload)?;
        return Err(UpstreamError::Rejected {
            code: error.code,
            message: error.message,
        });
    }
    let greeting = Greeting::parse(&greeting_packet.payload)?;
    let mut capabilities = (wanted & greeting.capabilities)
        | codec::CLIENT_PROTOCOL_41
        | codec::CLIENT_SECURE_CONNECTION
        | codec::CLIENT_PLUGIN_AUTH
        | codec::CLIENT_CONNECT_WITH_DB
        | codec::CLIENT_LONG_PASSWORD;
    capabilities &= !(codec::CLIENT_SSL | codec::CLIENT_COMPRESS | codec::CLIENT_ZSTD_COMPRESSION);
    if greeting.capabilities & codec::CLIENT_CONNECT_ATTRS != 0 {
        capabilities |= codec::CLIENT_CONNECT_ATTRS;
    } else {
        capabilities &= !codec::CLIENT_CONNECT_ATTRS;
    }
    let mut seq = greeting_packet.last_seq.wrapping_add(1);
    let mut encrypted = false;
    if let Some(config) = tls {
        if greeting.capabilities & codec::CLIENT_SSL == 0 {
            return Err(UpstreamError::Connect(ConnectError::Tls(
                "the database does not offer TLS, and the connection requires it".into(),
            )));
        }
        capabilities |= codec::CLIENT_SSL;
        seq = send(
            &mut stream,
            seq,
            &codec::ssl_request(capabilities, MAX_LOGIN_PACKET as u32, CHARSET_UTF8MB4),
        )
        .await?;
        stream = proctor_net::tls::connect(config, &target.config, stream).await?;
        encrypted = true;
    }
    let password = target
        .password
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec())
        .unwrap_or_default();
    let mut plugin = greeting.auth_plugin.clone();
    let mut nonce = greeting.nonce.to_vec();
    let response = HandshakeResponse {
        capabilities,
        max_packet: 1 << 30,
        charset: CHARSET_UTF8MB4,
        user: target.config.user.clone(),
        auth_response: scramble(&plugin, &password, &nonce, encrypted)?,
        database: Some(target.config.database.clone()),
        auth_plugin: Some(plugin.clone()),
        attributes: attributes.to_vec(),
    };
    send(&mut stream, seq, &response.encode()).await?;
    loop {
        let packet = read_packet(&mut stream, &mut buf, MAX_LOGIN_PACKET).await?;
        seq = packet.last_seq.wrapping_add(1);
        match codec::parse_auth_reply(&packet.payload)? {
            AuthReply::Ok => break,
            AuthReply::Err(error) => {
                return Err(UpstreamError::Rejected {
                    code: error.code,
                    message: error.message,
                })
            }
            AuthReply::Switch { plugin: next, data } => {
                plugin = next;
                nonce = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
                let answer = scramble(&plugin, &password, &nonce, encrypted)?;
                send(&mut stream, seq, &answer).await?;
            }
            AuthReply::MoreData(data) if plugin == auth::CACHING_SHA2 => match data.first() {
                Some(&auth::FAST_AUTH_OK) => {}
                Some(&auth::PERFORM_FULL_AUTH) if encrypted => {
                    send(&mut stream, seq, &auth::clear_password_response(&password)).await?;
                }
                _ => {
                    return Err(UpstreamError::Protocol(
                        "the database wants caching_sha2_password's full authentication, which Proctor sends over TLS only: set tls on the connection".into(),
                    ))
                }
            },
            AuthReply::MoreData(_) => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected authentication data for {plugin}"
                )))
            }
        }
    }
    Ok(Upstream {
        stream,
        thread_id: greeting.connection_id,
        server_version: greeting.server_version,
        capabilities,
        tls: encrypted,
    })
}

/// The answer to a server's challenge for `plugin`.
fn scramble(
    plugin: &str,
    password: &[u8],
    nonce: &[u8],
    encrypted: bool,
) -> Result<Vec<u8>, UpstreamError> {
    match plugin {
        auth::NATIVE_PASSWORD => Ok(auth::native_password_response(password, nonce)),
        auth::CACHING_SHA2 => Ok(auth::caching_sha2_response(password, nonce)),
        auth::CLEAR_PASSWORD if encrypted => Ok(auth::clear_password_response(password)),
        other => Err(UpstreamError::Protocol(format!(
            "the database asks for the authentication plugin {other:?}, which Proctor does not speak{}",
            if other == auth::CLEAR_PASSWORD { " without TLS" } else { "" }
        ))),
    }
}
