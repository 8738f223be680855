//! The listener and the life of one MySQL client connection up to the relay: the greeting, TLS,
//! authentication with the identity's token, authorization, the login upstream, and the ending of
//! the session.
//!
//! Every connection attempt becomes a recorded session, so failed logins are in the journal too
//! (their reason, never the token). The recording itself (`session.start`, refusals, result limits,
//! guardrails) is `proctor_core::session`'s, shared with every protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use proctor_core::config::ConnectionKind;
use proctor_core::policy::Dialect;
use proctor_core::session::{self, off_the_loop, SessionStart};
use proctor_core::{AuthFailure, AuthzError, Gate, Identity, SessionRecorder};
use rand::Rng;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use crate::auth;
use crate::codec::{self, ClientHello, Greeting, HandshakeResponse};
use crate::errors::{self, MysqlError};
use crate::kills::{KillRegistry, KillRoute};
use crate::relay::{Relay, RelaySettings};
use crate::upstream::{self, CHARSET_UTF8MB4};
use proctor_net::tls::{GatewayTls, TlsError};
use proctor_net::BoxedStream;

/// A client has this long to get from connecting to an authenticated session.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The version Proctor's greeting announces (the target's own is in `session.start`).
const SERVER_VERSION: &str = "5.7.99-proctor";
/// Login packets are small: a greeting answer with attributes.
const MAX_LOGIN_PACKET: usize = 64 * 1024;

/// What Proctor offers clients. Not offered: compression (it would hide statements from the
/// gateway), session tracking and query attributes (their extra fields would need translating),
/// and MariaDB's extended capabilities (metadata caching would drop the column definitions that
/// result masking reads).
const OFFERED: u32 = codec::CLIENT_LONG_PASSWORD
    | codec::CLIENT_FOUND_ROWS
    | codec::CLIENT_LONG_FLAG
    | codec::CLIENT_CONNECT_WITH_DB
    | codec::CLIENT_LOCAL_FILES
    | codec::CLIENT_IGNORE_SPACE
    | codec::CLIENT_PROTOCOL_41
    | codec::CLIENT_INTERACTIVE
    | codec::CLIENT_SSL
    | codec::CLIENT_TRANSACTIONS
    | codec::CLIENT_SECURE_CONNECTION
    | codec::CLIENT_MULTI_STATEMENTS
    | codec::CLIENT_MULTI_RESULTS
    | codec::CLIENT_PS_MULTI_RESULTS
    | codec::CLIENT_PLUGIN_AUTH
    | codec::CLIENT_CONNECT_ATTRS
    | codec::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | codec::CLIENT_DEPRECATE_EOF;

/// What the client's choices are passed on upstream: those that change the format of answers.
const PASSED_ON: u32 = codec::CLIENT_FOUND_ROWS
    | codec::CLIENT_LONG_FLAG
    | codec::CLIENT_LOCAL_FILES
    | codec::CLIENT_IGNORE_SPACE
    | codec::CLIENT_INTERACTIVE
    | codec::CLIENT_TRANSACTIONS
    | codec::CLIENT_MULTI_STATEMENTS
    | codec::CLIENT_MULTI_RESULTS
    | codec::CLIENT_PS_MULTI_RESULTS
    | codec::CLIENT_DEPRECATE_EOF;

pub struct MysqlGateway {
    gate: Arc<Gate>,
    tls: GatewayTls,
    kills: Arc<KillRegistry>,
}

/// How a connection attempt failed before the relay started.
type Refusal = session::Refused<MysqlError>;

/// The client's side of the login: its stream, the sequence id of its next packet, and what it
/// said.
struct Client {
    stream: BoxedStream,
    seq: u8,
    tls: bool,
    connection_id: u32,
    nonce: [u8; 20],
}

impl Client {
    async fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        self.seq = codec::write_packet(&mut out, self.seq, payload);
        self.stream.write_all(&out).await
    }

    /// Reads one login packet, and not a byte past it: a client that asks for TLS starts its TLS
    /// handshake right after its SSLRequest, and those bytes belong to the TLS acceptor.
    async fn read(&mut self) -> Result<bytes::Bytes, MysqlError> {
        let mut header = [0u8; 4];
        self.stream
            .read_exact(&mut header)
            .await
            .map_err(|e| errors::handshake(format!("connection lost: {e}")))?;
        let len = codec::frame_length(&header);
        if len > MAX_LOGIN_PACKET {
            return Err(errors::handshake(format!(
                "a login packet of {len} bytes, more than {MAX_LOGIN_PACKET}"
            )));
        }
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .await
            .map_err(|e| errors::handshake(format!("connection lost: {e}")))?;
        self.seq = header[3].wrapping_add(1);
        Ok(payload.into())
    }
}

/// A session ready to relay.
struct Established {
    upstream: upstream::Upstream,
    identity: Identity,
    policy: Arc<proctor_core::policy::Policy>,
    chain: Option<String>,
    /// The database the connection names, the only one `USE` may choose.
    database: String,
}

impl MysqlGateway {
    /// Prepares TLS on both sides; fails if a certificate or CA file cannot be used.
    pub fn new(gate: Arc<Gate>) -> Result<Arc<Self>, TlsError> {
        let tls = GatewayTls::new(gate.config())?;
        Ok(Arc::new(Self {
            gate,
            tls,
            kills: Arc::default(),
        }))
    }

    /// Accepts clients until `shutdown` turns true, then gives open sessions a moment to end
    /// cleanly. Each session runs on one of `workers`, taken in turn.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        workers: Vec<Handle>,
        shutdown: watch::Receiver<bool>,
    ) {
        proctor_net::serve(
            listener,
            workers,
            shutdown,
            move |stream, peer, shutdown| {
                self.clone().run_session(Box::new(stream), peer, shutdown)
            },
        )
        .await;
    }

    async fn run_session(
        self: Arc<Self>,
        stream: BoxedStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) {
        let peer = peer.to_string();
        let mut client = Client {
            stream,
            seq: 0,
            tls: false,
            connection_id: self.kills.issue_id(),
            nonce: nonce(),
        };
        let hello = tokio::time::timeout(STARTUP_TIMEOUT, self.greet(&mut client)).await;
        let hello = match hello {
            Ok(Ok(hello)) => hello,
            Ok(Err(error)) => {
                session::record_refused_startup(&self.gate, "mysql", &peer, &error.message).await;
                let _ = client.send(&error.packet()).await;
                return;
            }
            Err(_) => return,
        };
        if hello.user.is_empty() {
            session::record_nameless_attempt(
                &self.gate,
                "mysql",
                &peer,
                hello.database.as_deref().unwrap_or("-"),
            )
            .await;
            let error = errors::access_denied(
                "no user given: connect with your Proctor identity as the user and a connection as the database",
            );
            let _ = client.send(&error.packet()).await;
            return;
        }
        let connection = hello
            .database
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| hello.user.clone());
        let mut recorder = match self
            .gate
            .open_session("mysql", &hello.user, &connection, &peer)
            .await
        {
            Ok(recorder) => recorder,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a new session; refusing it");
                let _ = client.send(&errors::journal_failed().packet()).await;
                return;
            }
        };
        let outcome = tokio::time::timeout(
            STARTUP_TIMEOUT,
            self.establish(&mut client, &mut recorder, &hello, &connection),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Refusal::new(
                errors::handshake("authentication took too long".into()),
                "startup timed out",
            )
            .recorded("auth.failure", json!({"reason": "startup timed out"})))
        });
        let reason = match outcome {
            Ok(established) => {
                let (notify, kills) = mpsc::channel(4);
                self.kills.register(
                    client.connection_id,
                    KillRoute {
                        identity: established.identity.name.clone(),
                        connection: connection.clone(),
                        upstream_thread: established.upstream.thread_id,
                        notify,
                    },
                );
                let guardrails = session::guardrails(
                    &self.gate,
                    established.policy,
                    Dialect::MySql,
                    established.identity.clone(),
                    &connection,
                    None,
                );
                let my = &self.gate.config().mysql;
                let relay = Relay {
                    client: client.stream,
                    upstream: established.upstream.stream,
                    recorder,
                    guardrails,
                    settings: RelaySettings {
                        max_packet_bytes: my.max_packet_bytes,
                        max_prepared_statements: my.max_prepared_statements,
                        results: session::result_limits(
                            &self.gate,
                            &connection,
                            my.sample_rows,
                            my.sample_bytes,
                        ),
                        deprecate_eof: established.upstream.capabilities
                            & codec::CLIENT_DEPRECATE_EOF
                            != 0,
                        chain: established.chain,
                        identity: established.identity.name,
                        connection: connection.clone(),
                        database: established.database,
                    },
                    kills: self.kills.clone(),
                    kill_notices: kills,
                    shutdown,
                };
                let (returned, reason) = relay.run().await;
                recorder = returned;
                self.kills.unregister(client.connection_id);
                reason
            }
            Err(refusal) => {
                let mut refusal = refusal;
                refusal.record(&mut recorder).await;
                let _ = client.send(&refusal.error.packet()).await;
                let _ = client.stream.shutdown().await;
                refusal.reason
            }
        };
        if let Err(e) = recorder.end(&reason).await {
            tracing::error!(error = %e, "could not record the end of a session");
        }
    }

    /// Sends the greeting and reads the client's answer, switching to TLS when it asks.
    async fn greet(&self, client: &mut Client) -> Result<HandshakeResponse, MysqlError> {
        let greeting = Greeting {
            server_version: SERVER_VERSION.into(),
            connection_id: client.connection_id,
            nonce: client.nonce,
            capabilities: OFFERED,
            charset: CHARSET_UTF8MB4,
            status: codec::SERVER_STATUS_AUTOCOMMIT,
            auth_plugin: auth::NATIVE_PASSWORD.into(),
        };
        client
            .send(&greeting.encode())
            .await
            .map_err(|e| errors::handshake(e.to_string()))?;
        loop {
            let payload = client.read().await?;
            let hello = codec::parse_client_hello(&payload).map_err(|e| errors::handshake(e.0))?;
            match hello {
                ClientHello::SslRequest { .. } if !client.tls => {
                    let plain = std::mem::replace(&mut client.stream, Box::new(tokio::io::empty()));
                    let accepted = proctor_net::tls::accept(&self.tls.front, plain)
                        .await
                        .map_err(|e| errors::handshake(format!("TLS handshake failed: {e}")))?;
                    client.stream = accepted;
                    client.tls = true;
                }
                ClientHello::SslRequest { .. } => {
                    return Err(errors::handshake("SSL requested twice".into()))
                }
                ClientHello::Response(response) => {
                    if response.capabilities
                        & (codec::CLIENT_COMPRESS | codec::CLIENT_ZSTD_COMPRESSION)
                        != 0
                    {
                        return Err(errors::not_supported(
                            "the compression protocol is not supported through Proctor: connect without compression",
                        ));
                    }
                    return Ok(response);
                }
            }
        }
    }

    /// Authenticates, authorizes and logs in upstream; on success the client has been told the
    /// session is ready.
    async fn establish(
        &self,
        client: &mut Client,
        recorder: &mut SessionRecorder,
        hello: &HandshakeResponse,
        connection: &str,
    ) -> Result<Established, Box<Refusal>> {
        let name = hello.user.clone();
        let (identity, token_id, method) = self
            .authenticate(client, hello)
            .await
            .map_err(|(failure, method)| {
                Refusal::new(
                    errors::access_denied(&format!(
                        "Access denied for identity '{name}': use your Proctor token as the password (an administrator issues one with `proctor token create {name}`)"
                    )),
                    "authentication failed",
                )
                .recorded(
                    "auth.failure",
                    json!({"method": method, "reason": failure.to_string()}),
                )
            })?;
        let target = self
            .gate
            .authorize_kind(&identity, connection, ConnectionKind::Mysql)
            .map_err(|e| {
                let error = match &e {
                    AuthzError::UnknownConnection(name) => errors::unknown_connection(name),
                    AuthzError::NotAllowed { identity, connection } => errors::not_allowed(identity, connection),
                    AuthzError::OtherProtocol { connection, kind } => errors::other_protocol(connection, kind),
                };
                Refusal::new(error, "not authorized").recorded(
                    "auth.failure",
                    json!({"method": method, "identity": identity.name, "reason": e.to_string(), "stage": "authorize"}),
                )
            })?;
        let program = hello
            .attributes
            .iter()
            .find(|(k, _)| k == "program_name")
            .map(|(_, v)| v.as_str());
        let mut attributes = vec![("_client_name".to_owned(), "proctor".to_owned())];
        if let Some(program) = program {
            attributes.push(("program_name".into(), program.to_owned()));
        }
        let upstream_tls = self.tls.upstream(connection);
        let upstream = upstream::connect(
            &target,
            upstream_tls.as_ref(),
            hello.capabilities & PASSED_ON,
            &attributes,
            target.policy.is_read_only(),
            self.gate.config().mysql.connect_timeout_secs,
        )
        .await
        .map_err(|e| {
            Refusal::new(
                errors::unavailable(connection, &e.to_string()),
                "database unavailable",
            )
            .recorded(
                "db.error",
                json!({"stage": "connect", "message": e.to_string()}),
            )
        })?;
        if (hello.capabilities ^ upstream.capabilities) & codec::CLIENT_DEPRECATE_EOF != 0 {
            return Err(Refusal::new(
                errors::unavailable(
                    connection,
                    "the database and the client disagree on CLIENT_DEPRECATE_EOF",
                ),
                "database unavailable",
            ));
        }
        let startup: serde_json::Map<String, serde_json::Value> = hello
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect();
        session::record_start(
            recorder,
            SessionStart {
                identity: &identity,
                connection,
                tls: client.tls,
                method,
                token_id: &token_id,
                application_name: program,
                policy: &target.policy,
                target: &target.config,
                upstream_tls: upstream.tls,
                server_version: Some(&upstream.server_version),
                startup: startup.into(),
            },
        )
        .await
        .map_err(|e| Refusal::new(errors::journal_failed(), format!("journal failure: {e}")))?;
        client
            .send(&codec::ok_packet(0, 0, codec::SERVER_STATUS_AUTOCOMMIT, 0))
            .await
            .map_err(|e| {
                Refusal::new(
                    errors::handshake("client left".into()),
                    format!("client disconnected: {e}"),
                )
            })?;
        let chain = session::chain_of(program);
        Ok(Established {
            upstream,
            identity,
            policy: target.policy.clone(),
            chain,
            database: target.config.database.clone(),
        })
    }

    /// Runs the client's authentication: `mysql_native_password` against the token's stored
    /// verifier, or the token itself over TLS (`caching_sha2_password`'s full authentication, or
    /// `mysql_clear_password`). A client that starts with another plugin is switched to one of
    /// these. Returns the identity, the token's id and the method.
    async fn authenticate(
        &self,
        client: &mut Client,
        hello: &HandshakeResponse,
    ) -> Result<(Identity, String, &'static str), (AuthFailure, &'static str)> {
        let gone = |e: MysqlError| AuthFailure::Store(e.message);
        let plugin = hello
            .auth_plugin
            .as_deref()
            .unwrap_or(auth::NATIVE_PASSWORD);
        let mut response = hello.auth_response.clone();
        let mut method = match plugin {
            auth::NATIVE_PASSWORD => auth::NATIVE_PASSWORD,
            auth::CACHING_SHA2 if client.tls => auth::CACHING_SHA2,
            _ => {
                // Any other plugin: the native one works over every connection.
                client
                    .send(&codec::auth_switch_request(
                        auth::NATIVE_PASSWORD,
                        &with_nul(&client.nonce),
                    ))
                    .await
                    .map_err(|e| (AuthFailure::Store(e.to_string()), auth::NATIVE_PASSWORD))?;
                response = client
                    .read()
                    .await
                    .map_err(|e| (gone(e), auth::NATIVE_PASSWORD))?
                    .to_vec();
                auth::NATIVE_PASSWORD
            }
        };
        let name = hello.user.clone();
        if method == auth::CACHING_SHA2 {
            if response.is_empty() {
                // The client kept the greeting's nonce from its plugin, which the greeting did not
                // name (libmysqlclient does): a switch to the same plugin hands it the nonce, and
                // its scramble is read and set aside, as full authentication follows.
                client
                    .send(&codec::auth_switch_request(
                        auth::CACHING_SHA2,
                        &with_nul(&client.nonce),
                    ))
                    .await
                    .map_err(|e| (AuthFailure::Store(e.to_string()), method))?;
                client.read().await.map_err(|e| (gone(e), method))?;
            }
            // Full authentication: the token comes in clear, inside TLS.
            client
                .send(&codec::auth_more_data(&[auth::PERFORM_FULL_AUTH]))
                .await
                .map_err(|e| (AuthFailure::Store(e.to_string()), method))?;
            let token = client.read().await.map_err(|e| (gone(e), method))?;
            let token = String::from_utf8_lossy(auth::parse_clear_password(&token)).into_owned();
            let gate = self.gate.clone();
            let identity = off_the_loop(move || gate.verify_token(&name, &token))
                .await
                .map_err(|f| (f, method))?;
            return Ok((identity, "cleartext".into(), method));
        }
        method = auth::NATIVE_PASSWORD;
        let gate = self.gate.clone();
        let claimed = name.clone();
        let credentials =
            off_the_loop(move || gate.authenticator().native_password_credentials(&claimed))
                .await
                .map_err(|f| (f, method))?;
        let matched = credentials
            .keys
            .iter()
            .find(|key| auth::native_password_verify(&key.hash, &client.nonce, &response));
        match (matched, credentials.identity) {
            (Some(key), _) if key.revoked => {
                Err((AuthFailure::RevokedToken(key.token_id.clone()), method))
            }
            (Some(key), Some(identity)) => Ok((identity, key.token_id.clone(), method)),
            (_, None) => Err((AuthFailure::UnknownIdentity, method)),
            (None, Some(_)) => Err((AuthFailure::WrongToken, method)),
        }
    }
}

/// A nonce for the greeting: 20 printable bytes (clients treat the scramble as a C string).
fn nonce() -> [u8; 20] {
    let mut rng = rand::thread_rng();
    let mut nonce = [0u8; 20];
    for byte in &mut nonce {
        *byte = rng.gen_range(0x21..0x7f);
    }
    nonce
}

fn with_nul(nonce: &[u8]) -> Vec<u8> {
    let mut data = nonce.to_vec();
    data.push(0);
    data
}
