//! The connection from Proctor to a target PostgreSQL server: TCP, optional TLS, startup, and
//! authentication with the credentials Proctor holds (SCRAM-SHA-256, md5, cleartext or trust).
//!
//! Message encoding and the SCRAM client come from `postgres-protocol`; this module drives them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use proctor_core::Target;
use proctor_net::{BoxedStream, ConnectError};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::codec::{self, error_fields, Reader};

/// Startup-phase messages from the server are small; anything larger is not PostgreSQL.
const MAX_STARTUP_MESSAGE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the database refused Proctor's login ({sqlstate}): {message}")]
    Rejected { sqlstate: String, message: String },
    #[error("the database asked for a password, but connection {0:?} has none configured")]
    NoPassword(String),
    #[error("the database spoke unexpectedly during startup: {0}")]
    Protocol(String),
    #[error("the database did not answer within {0} s")]
    Timeout(u64),
}

impl From<codec::ProtocolError> for UpstreamError {
    fn from(e: codec::ProtocolError) -> Self {
        UpstreamError::Protocol(e.0)
    }
}

fn io_error(e: std::io::Error) -> UpstreamError {
    UpstreamError::Protocol(format!("connection lost: {e}"))
}

/// An authenticated upstream session, ready for queries.
pub struct Upstream {
    pub stream: BoxedStream,
    pub parameters: Vec<(String, String)>,
    pub backend_pid: i32,
    pub backend_key: i32,
    pub transaction_status: u8,
    /// NoticeResponse messages received during startup, to pass on as they are.
    pub notices: Vec<BytesMut>,
    pub tls: bool,
}

async fn open_stream(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(BoxedStream, bool), UpstreamError> {
    let mut tcp = proctor_net::connect_tcp(&target.config.address).await?;
    let Some(tls) = tls else {
        return Ok((Box::new(tcp), false));
    };
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await.map_err(io_error)?;
    let answer = tcp.read_u8().await.map_err(io_error)?;
    if answer != b'S' {
        return Err(UpstreamError::Connect(ConnectError::Tls(
            "the server does not accept TLS, but the connection requires it".into(),
        )));
    }
    let stream = proctor_net::tls::connect(tls, &target.config, Box::new(tcp)).await?;
    Ok((stream, true))
}

/// Reads one whole message into `buf`, returning its tag and body.
async fn read_message(
    stream: &mut BoxedStream,
    buf: &mut BytesMut,
) -> Result<(u8, BytesMut), UpstreamError> {
    loop {
        if let Some((tag, len)) = codec::frame(buf, MAX_STARTUP_MESSAGE)? {
            let mut message = buf.split_to(len);
            let body = message.split_off(5);
            return Ok((tag, body));
        }
        if stream.read_buf(buf).await.map_err(io_error)? == 0 {
            return Err(UpstreamError::Protocol(
                "the server closed the connection".into(),
            ));
        }
    }
}

fn rejected(body: &[u8]) -> UpstreamError {
    match error_fields(body) {
        Ok(fields) => {
            let get = |code: u8| {
                fields
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            };
            UpstreamError::Rejected {
                sqlstate: get(b'C'),
                message: get(b'M'),
            }
        }
        Err(e) => e.into(),
    }
}

/// Connects and logs in to the target with the connection's credentials. `client_params` are the
/// client's startup parameters other than user and database (application_name, client_encoding...).
pub async fn connect(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    client_params: &[(String, String)],
    timeout_secs: u64,
) -> Result<Upstream, UpstreamError> {
    tokio::time::timeout(
        Duration::from_secs(timeout_secs),
        connect_inner(target, tls, client_params),
    )
    .await
    .map_err(|_| UpstreamError::Timeout(timeout_secs))?
}

async fn connect_inner(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    client_params: &[(String, String)],
) -> Result<Upstream, UpstreamError> {
    let (mut stream, tls_used) = open_stream(target, tls).await?;
    let mut out = BytesMut::new();
    let params = [
        ("user", target.config.user.as_str()),
        ("database", target.config.database.as_str()),
    ]
    .into_iter()
    .chain(client_params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    frontend::startup_message(params, &mut out).map_err(io_error)?;
    stream.write_all(&out).await.map_err(io_error)?;

    let password = || {
        target
            .password
            .as_ref()
            .map(|p| p.expose().as_bytes())
            .ok_or_else(|| UpstreamError::NoPassword(target.config.name.clone()))
    };
    let mut buf = BytesMut::with_capacity(4096);
    let mut scram: Option<ScramSha256> = None;
    let mut upstream = Upstream {
        stream: Box::new(tokio::io::empty()),
        parameters: Vec::new(),
        backend_pid: 0,
        backend_key: 0,
        transaction_status: b'I',
        notices: Vec::new(),
        tls: tls_used,
    };
    loop {
        let (tag, body) = read_message(&mut stream, &mut buf).await?;
        let mut r = Reader::new(&body);
        out.clear();
        match tag {
            b'R' => match r.i32()? {
                0 => {}
                3 => frontend::password_message(password()?, &mut out).map_err(io_error)?,
                5 => {
                    let salt: [u8; 4] = r.bytes(4)?.try_into().map_err(|_| {
                        UpstreamError::Protocol("md5 salt has the wrong length".into())
                    })?;
                    let hashed = postgres_protocol::authentication::md5_hash(
                        target.config.user.as_bytes(),
                        password()?,
                        salt,
                    );
                    frontend::password_message(hashed.as_bytes(), &mut out).map_err(io_error)?;
                }
                10 => {
                    let mut offered = Vec::new();
                    loop {
                        let mechanism = r.cstr()?;
                        if mechanism.is_empty() {
                            break;
                        }
                        offered.push(mechanism.to_owned());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(UpstreamError::Protocol(format!(
                            "the server offers only {offered:?}; Proctor speaks SCRAM-SHA-256"
                        )));
                    }
                    let client = ScramSha256::new(password()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, client.message(), &mut out)
                        .map_err(io_error)?;
                    scram = Some(client);
                }
                11 => {
                    let mut client = scram.take().ok_or_else(|| {
                        UpstreamError::Protocol("SASL continue without SASL".into())
                    })?;
                    // Salting the password takes the server's iteration count of HMACs
                    // (milliseconds): off the event loop, so other sessions are not held up.
                    let challenge = r.rest().to_vec();
                    let client = tokio::task::spawn_blocking(move || {
                        client.update(&challenge).map(|()| client)
                    })
                    .await
                    .map_err(|e| UpstreamError::Protocol(format!("SCRAM: {e}")))?
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                    frontend::sasl_response(client.message(), &mut out).map_err(io_error)?;
                    scram = Some(client);
                }
                12 => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| UpstreamError::Protocol("SASL final without SASL".into()))?;
                    client
                        .finish(r.rest())
                        .map_err(|e| UpstreamError::Protocol(format!("server signature: {e}")))?;
                }
                other => {
                    return Err(UpstreamError::Protocol(format!(
                        "authentication method {other} is not supported"
                    )))
                }
            },
            b'E' => return Err(rejected(&body)),
            b'S' => {
                let name = r.cstr()?.to_owned();
                let value = r.cstr()?.to_owned();
                upstream.parameters.push((name, value));
            }
            b'K' => {
                upstream.backend_pid = r.i32()?;
                upstream.backend_key = r.i32()?;
            }
            b'N' => {
                let mut notice = BytesMut::with_capacity(body.len() + 5);
                notice.extend_from_slice(b"N");
                notice.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
                notice.extend_from_slice(&body);
                upstream.notices.push(notice);
            }
            b'v' => {}
            b'Z' => {
                upstream.transaction_status = r.u8()?;
                upstream.stream = stream;
                return Ok(upstream);
            }
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message {} during startup",
                    codec::printable_tag(other)
                )))
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(io_error)?;
        }
    }
}

/// Table names by OID, for column rules that name tables: RowDescription identifies a column's table
/// only by OID. Asked once, right after login and before the client's first message; tables made later
/// in the session are unknown to it (column rules then go by the column name alone).
pub async fn table_names(stream: &mut BoxedStream) -> Result<HashMap<u32, String>, UpstreamError> {
    const MAX_TABLES: usize = 1_000_000;
    let mut out = BytesMut::new();
    frontend::query(
        "SELECT c.oid::int8::text, c.relname FROM pg_catalog.pg_class c \
         WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')",
        &mut out,
    )
    .map_err(io_error)?;
    stream.write_all(&out).await.map_err(io_error)?;
    let mut names = HashMap::new();
    let mut failure = None;
    loop {
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await.map_err(io_error)?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|len| (4..=1024 * 1024).contains(len))
            .ok_or_else(|| UpstreamError::Protocol("a bad message length".into()))?;
        let mut body = vec![0u8; len - 4];
        stream.read_exact(&mut body).await.map_err(io_error)?;
        let mut r = Reader::new(&body);
        match head[0] {
            b'D' if names.len() < MAX_TABLES => {
                r.count16(4)?;
                let oid = r
                    .nullable()?
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                let name = r
                    .nullable()?
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                if let (Some(oid), Some(name)) = (oid, name) {
                    names.insert(oid, name);
                }
            }
            b'E' => failure = Some(rejected(&body)),
            b'Z' => return failure.map_or(Ok(names), Err),
            _ => {}
        }
    }
}

/// Asks the target to cancel the query running on backend `pid`.
pub async fn send_cancel(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    pid: i32,
    key: i32,
) -> Result<(), UpstreamError> {
    let (mut stream, _) = open_stream(target, tls).await?;
    let mut out = BytesMut::new();
    frontend::cancel_request(pid, key, &mut out);
    stream.write_all(&out).await.map_err(io_error)?;
    stream.flush().await.map_err(io_error)?;
    let mut sink = [0u8; 1];
    let _ = stream.read(&mut sink).await;
    Ok(())
}
