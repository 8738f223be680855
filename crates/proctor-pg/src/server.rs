//! The listener and the life of one client connection up to the relay: TLS negotiation, startup,
//! authentication, authorization, connecting to the target, and the ending of the session.
//!
//! Every connection attempt becomes a recorded session, so failed logins are in the journal too (their
//! reason, never the token).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use proctor_core::config::{ConnectionKind, PostgresAuth};
use proctor_core::{
    AuthFailure, AuthzError, Gate, Identity, LocalCaller, LocalSessions, SessionRecorder,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use crate::cancel::{CancelRegistry, CancelRoute};
use crate::codec::{self, ClientError, Reader, StartupPacket};
use crate::interruptions::Interruptions;
use crate::machine::Limits;
use crate::relay::{Ended, Relay};
use crate::scram::{self, ScramExchange};
use crate::upstream;
use proctor_core::policy::{Dialect, Policy};
use proctor_core::session::{self, off_the_loop, SessionStart};
use proctor_net::tls::{GatewayTls, TlsError};
use proctor_net::BoxedStream;

/// A client has this long to get from connecting to an authenticated session.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct PgGateway {
    gate: Arc<Gate>,
    tls: GatewayTls,
    cancels: CancelRegistry,
    /// Turns true when the gateway stops: in-process sessions end then, as network ones do.
    local_stop: watch::Sender<bool>,
}

/// What a client asked for in its startup, and how it came.
#[derive(Clone, Copy)]
struct SessionRequest<'a> {
    params: &'a [(String, String)],
    identity_name: &'a str,
    connection: &'a str,
    /// Whether the client's stream is TLS.
    tls: bool,
    /// The in-process caller, already authenticated, if the session is local.
    local: Option<&'a LocalCaller>,
}

/// How a connection attempt failed before the relay started.
type Refusal = session::Refused<ClientError>;

impl PgGateway {
    /// Prepares TLS on both sides; fails if a certificate or CA file cannot be used.
    pub fn new(gate: Arc<Gate>) -> Result<Arc<Self>, TlsError> {
        let tls = GatewayTls::new(gate.config())?;
        Ok(Arc::new(Self {
            gate,
            tls,
            cancels: CancelRegistry::default(),
            local_stop: watch::channel(false).0,
        }))
    }

    /// Accepts clients until `shutdown` turns true, then gives open sessions a moment to end
    /// cleanly; in-process sessions are told to end as soon as it turns. Each session runs on one of
    /// `workers`, taken in turn.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        workers: Vec<Handle>,
        shutdown: watch::Receiver<bool>,
    ) {
        let mut stopping = shutdown.clone();
        let gateway = self.clone();
        let sessions = proctor_net::serve(
            listener,
            workers,
            shutdown,
            move |stream, peer, shutdown| {
                gateway
                    .clone()
                    .run_session(Box::new(stream), peer.to_string(), None, shutdown)
            },
        );
        let stop_local = async {
            let _ = stopping.changed().await;
            self.local_stop.send_replace(true);
        };
        tokio::join!(sessions, stop_local);
    }

    /// A session from its first byte to its end: a network client's, or an in-process caller's
    /// (`local`, already authenticated).
    async fn run_session(
        self: Arc<Self>,
        mut client: BoxedStream,
        peer: String,
        local: Option<LocalCaller>,
        shutdown: watch::Receiver<bool>,
    ) {
        let startup = tokio::time::timeout(STARTUP_TIMEOUT, self.negotiate(&mut client)).await;
        let (params, tls) = match startup {
            Ok(Ok(Some(negotiated))) => negotiated,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                if error.code != CONNECTION_LOST {
                    session::record_refused_startup(&self.gate, "postgres", &peer, &error.message)
                        .await;
                }
                let _ = client.write_all(&error.encode()).await;
                return;
            }
            Err(_) => return,
        };
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let Some(identity_name) = param("user").filter(|u| !u.is_empty()).map(str::to_owned) else {
            let error = ClientError::fatal("28000", "no user given")
                .hint("Connect with user=<your Proctor identity> dbname=<connection name>.");
            session::record_nameless_attempt(
                &self.gate,
                "postgres",
                &peer,
                param("database").unwrap_or("-"),
            )
            .await;
            let _ = client.write_all(&error.encode()).await;
            return;
        };
        let connection = param("database")
            .filter(|d| !d.is_empty())
            .unwrap_or(&identity_name)
            .to_owned();
        let mut recorder = match self
            .gate
            .open_session("postgres", &identity_name, &connection, &peer)
            .await
        {
            Ok(recorder) => recorder,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a new session; refusing it");
                let error = ClientError::fatal(
                    "58030",
                    "Proctor cannot record sessions right now, so it accepts none",
                )
                .hint("Tell the Proctor operators: the journal is failing.");
                let _ = client.write_all(&error.encode()).await;
                return;
            }
        };
        let outcome = tokio::time::timeout(
            STARTUP_TIMEOUT,
            self.establish(
                &mut client,
                &mut recorder,
                SessionRequest {
                    params: &params,
                    identity_name: &identity_name,
                    connection: &connection,
                    tls,
                    local: local.as_ref(),
                },
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Refusal::new(
                ClientError::fatal("08006", "authentication took too long"),
                "startup timed out",
            )
            .recorded("auth.failure", json!({"reason": "startup timed out"})))
        });
        let reason = match outcome {
            Ok(Established {
                upstream,
                route,
                pid,
                table_names,
                identity,
                policy,
            }) => {
                let guardrails = session::guardrails(
                    &self.gate,
                    policy,
                    Dialect::Postgres,
                    identity,
                    &connection,
                    local.map(|caller| caller.signals),
                );
                let mut limits = self.limits(&connection, table_names, &params);
                // Every statement names the chain: masked once here (its findings are those of the
                // startup parameter that carried it, in `session.start`).
                limits.chain = limits
                    .chain
                    .map(|chain| recorder.mask(&chain, "chain").0.into_owned());
                let relay = Relay {
                    client,
                    upstream,
                    recorder,
                    limits,
                    cancel_route: route.route,
                    interruptions: Interruptions::new(shutdown, route.notices),
                    guardrails,
                };
                let (returned, Ended(reason)) = relay.run().await;
                recorder = returned;
                self.cancels.unregister(pid);
                reason
            }
            Err(refusal) => {
                let mut refusal = refusal;
                refusal.record(&mut recorder).await;
                let _ = client.write_all(&refusal.error.encode()).await;
                let _ = client.shutdown().await;
                refusal.reason
            }
        };
        if let Err(e) = recorder.end(&reason).await {
            tracing::error!(error = %e, "could not record the end of a session");
        }
    }

    fn limits(
        &self,
        connection: &str,
        table_names: HashMap<u32, String>,
        params: &[(String, String)],
    ) -> Limits {
        let pg = self.gate.postgres();
        let application_name = params
            .iter()
            .find(|(k, _)| k == "application_name")
            .map(|(_, v)| v.as_str());
        Limits {
            max_message_bytes: pg.max_message_bytes,
            max_prepared_statements: pg.max_prepared_statements,
            results: session::result_limits(
                &self.gate,
                connection,
                pg.sample_rows,
                pg.sample_bytes,
            ),
            table_names,
            chain: session::chain_of(application_name),
        }
    }

    /// Reads the first packets: answers SSLRequest (switching `client` to TLS) and GSSENCRequest
    /// (declined), routes a CancelRequest, and returns the startup parameters and whether TLS is on.
    /// `None` means the connection was a cancel.
    async fn negotiate(
        &self,
        client: &mut BoxedStream,
    ) -> Result<Option<(Vec<(String, String)>, bool)>, ClientError> {
        let mut encrypted = false;
        loop {
            match read_startup_packet(client).await? {
                StartupPacket::SslRequest if !encrypted => {
                    client.write_all(b"S").await.map_err(lost)?;
                    let plain = std::mem::replace(client, Box::new(tokio::io::empty()));
                    let accepted = proctor_net::tls::accept(&self.tls.front, plain)
                        .await
                        .map_err(|e| {
                            ClientError::fatal("08P01", format!("TLS handshake failed: {e}"))
                        })?;
                    *client = accepted;
                    encrypted = true;
                }
                StartupPacket::SslRequest => {
                    return Err(ClientError::fatal("08P01", "SSLRequest sent twice"));
                }
                StartupPacket::GssEncRequest => {
                    client.write_all(b"N").await.map_err(lost)?;
                }
                StartupPacket::Cancel { pid, key } => {
                    self.forward_cancel(pid, key).await;
                    return Ok(None);
                }
                StartupPacket::Startup { minor, params, .. } => {
                    let replication = params.iter().any(|(k, v)| {
                        k == "replication" && !matches!(v.as_str(), "false" | "0" | "off" | "no")
                    });
                    if replication {
                        return Err(ClientError::fatal(
                            "0A000",
                            "replication connections are not supported through Proctor",
                        ));
                    }
                    if minor > 0 {
                        let unsupported: Vec<&str> = params
                            .iter()
                            .filter(|(k, _)| k.starts_with("_pq_."))
                            .map(|(k, _)| k.as_str())
                            .collect();
                        client
                            .write_all(&codec::negotiate_protocol_version(0, &unsupported))
                            .await
                            .map_err(lost)?;
                    }
                    let params = params
                        .into_iter()
                        .filter(|(k, _)| !k.starts_with("_pq_."))
                        .collect();
                    return Ok(Some((params, encrypted)));
                }
            }
        }
    }

    async fn forward_cancel(&self, pid: i32, key: i32) {
        let Some(route) = self.cancels.find(pid, key) else {
            tracing::debug!("cancel request with unknown key ignored");
            return;
        };
        // The session records the cancel before it is forwarded, so the record comes first even when
        // the cancelled statement's error reaches the client at once.
        let _ = route.notify.try_send(());
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            upstream::send_cancel(
                &route.target,
                route.tls.as_ref(),
                route.upstream_pid,
                route.upstream_key,
            ),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cancel could not be forwarded"),
            Err(_) => tracing::warn!("cancel forwarding timed out"),
        }
    }

    /// Authenticates, authorizes and connects upstream; on success the client has been told the session
    /// is ready.
    async fn establish(
        &self,
        client: &mut BoxedStream,
        recorder: &mut SessionRecorder,
        request: SessionRequest<'_>,
    ) -> Result<Established, Box<Refusal>> {
        let SessionRequest {
            params,
            identity_name,
            connection,
            tls,
            local,
        } = request;
        let use_cleartext = tls && self.gate.postgres().auth == PostgresAuth::Password;
        let method = match local {
            Some(caller) => caller.method.as_str(),
            None if use_cleartext => "password",
            None => "scram-sha-256",
        };
        let authenticated = match local {
            // An in-process caller was authenticated by its own front door, as this identity.
            Some(caller) if caller.identity.name == identity_name => Ok((
                caller.identity.clone(),
                caller.token_id.clone().unwrap_or_else(|| "-".into()),
                None,
            )),
            Some(_) => Err(AuthFailure::Store(
                "an in-process session named another identity".into(),
            )),
            None => {
                self.authenticate(client, identity_name, use_cleartext)
                    .await
            }
        };
        let (identity, token_id, server_final) = authenticated.map_err(|failure| {
                let message = format!("password authentication failed for identity \"{identity_name}\"");
                Refusal::new(
                    ClientError::fatal("28P01", message).hint(format!(
                        "Use your Proctor token as the password. An administrator can issue one with `proctor token create {identity_name}`."
                    )),
                    "authentication failed",
                )
                .recorded("auth.failure", json!({"method": method, "reason": failure.to_string()}))
            })?;
        let target = self
            .gate
            .authorize_kind(&identity, connection, ConnectionKind::Postgres)
            .map_err(|e| {
            let error = match &e {
                AuthzError::UnknownConnection(name) => ClientError::fatal(
                    "3D000",
                    format!("connection \"{name}\" does not exist in Proctor"),
                )
                .hint("Set dbname to the name of a Proctor connection; ask the Proctor operators which ones you may use."),
                AuthzError::NotAllowed { identity, connection } => ClientError::fatal(
                    "42501",
                    format!("identity \"{identity}\" may not use connection \"{connection}\""),
                )
                .hint("Ask the Proctor operators to add you (or one of your groups) to the connection's allow list."),
                AuthzError::OtherProtocol { connection, kind } => ClientError::fatal(
                    "3D000",
                    format!("connection \"{connection}\" is a {kind} connection, not a PostgreSQL one"),
                )
                .hint(format!("Connect to Proctor's {kind} port with a {kind} client.")),
            };
            Refusal::new(error, "not authorized").recorded(
                "auth.failure",
                json!({"method": method, "identity": identity.name, "reason": e.to_string(), "stage": "authorize"}),
            )
        })?;
        let read_only = target.policy.is_read_only();
        let mut forwarded: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "user" && k != "database" && k != "replication")
            // A read-only connection's target session is read-only too; the client cannot turn
            // that off from its startup packet.
            .filter(|(k, _)| {
                !read_only
                    || !matches!(
                        k.as_str(),
                        "options" | "default_transaction_read_only" | "transaction_read_only"
                    )
            })
            .cloned()
            .collect();
        if read_only {
            forwarded.push(("default_transaction_read_only".into(), "on".into()));
        }
        let upstream_tls = self.tls.upstream(connection);
        let mut upstream = upstream::connect(
            &target,
            upstream_tls.as_ref(),
            &forwarded,
            self.gate.postgres().connect_timeout_secs,
        )
        .await
        .map_err(|e| {
            Refusal::new(
                ClientError::fatal(
                    "08001",
                    format!("Proctor could not open connection \"{connection}\": {e}"),
                )
                .hint("The database behind this connection is down or refuses Proctor; tell the Proctor operators."),
                "database unavailable",
            )
            .recorded("db.error", json!({"stage": "connect", "message": e.to_string()}))
        })?;
        let names_tables = target
            .config
            .column_rules()
            .iter()
            .any(|r| r.names_a_table());
        let table_names = if names_tables {
            upstream::table_names(&mut upstream.stream)
                .await
                .map_err(|e| {
                    Refusal::new(
                        ClientError::fatal(
                            "08001",
                            format!("Proctor could not read the table names of \"{connection}\": {e}"),
                        )
                        .hint("Its column masking rules name tables; Proctor must be able to read pg_class."),
                        "database unavailable",
                    )
                    .recorded("db.error", json!({"stage": "connect", "message": e.to_string()}))
                })?
        } else {
            HashMap::new()
        };
        let (notify, notices) = mpsc::channel(8);
        let route = CancelRoute {
            target: target.clone(),
            tls: upstream_tls,
            upstream_pid: upstream.backend_pid,
            upstream_key: upstream.backend_key,
            notify,
        };
        let (pid, key) = self.cancels.register(route.clone());
        let server_version = upstream
            .parameters
            .iter()
            .find(|(k, _)| k == "server_version")
            .map(|(_, v)| v.clone());
        let application_name = params
            .iter()
            .find(|(k, _)| k == "application_name")
            .map(|(_, v)| v.as_str());
        let startup: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .filter(|(k, _)| k != "user" && k != "database")
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect();
        let started = session::record_start(
            recorder,
            SessionStart {
                identity: &identity,
                connection,
                tls,
                method,
                token_id: &token_id,
                application_name,
                policy: &target.policy,
                target: &target.config,
                upstream_tls: upstream.tls,
                server_version: server_version.as_deref(),
                startup: startup.into(),
            },
        )
        .await;
        if let Err(e) = started {
            self.cancels.unregister(pid);
            return Err(Refusal::new(
                ClientError::fatal(
                    "58030",
                    "Proctor cannot record this session, so it will not open it",
                )
                .hint("Tell the Proctor operators: the journal is failing."),
                format!("journal failure: {e}"),
            ));
        }
        let mut hello = BytesMut::new();
        if let Some(server_final) = server_final {
            hello.extend_from_slice(&codec::authentication(
                codec::AUTH_SASL_FINAL,
                server_final.as_bytes(),
            ));
        }
        hello.extend_from_slice(&codec::authentication(codec::AUTH_OK, &[]));
        for (name, value) in &upstream.parameters {
            hello.extend_from_slice(&codec::parameter_status(name, value));
        }
        for notice in &upstream.notices {
            hello.extend_from_slice(notice);
        }
        hello.extend_from_slice(&codec::backend_key_data(pid, key));
        hello.extend_from_slice(&codec::ready_for_query(upstream.transaction_status));
        if let Err(e) = client.write_all(&hello).await {
            self.cancels.unregister(pid);
            return Err(Refusal::new(
                ClientError::fatal("08006", "client left"),
                format!("client disconnected: {e}"),
            ));
        }
        Ok(Established {
            upstream: upstream.stream,
            route: RegisteredRoute { route, notices },
            pid,
            table_names,
            identity,
            policy: target.policy.clone(),
        })
    }

    /// Runs the authentication exchange. Returns the identity, the token used, and (for SCRAM) the
    /// server-final message to send once the session is ready.
    async fn authenticate(
        &self,
        client: &mut BoxedStream,
        name: &str,
        cleartext: bool,
    ) -> Result<(Identity, String, Option<String>), AuthFailure> {
        let gone = |_: std::io::Error| {
            AuthFailure::Store("client disconnected during authentication".into())
        };
        if cleartext {
            client
                .write_all(&codec::authentication(codec::AUTH_CLEARTEXT, &[]))
                .await
                .map_err(gone)?;
            let body = read_password_message(client)
                .await
                .map_err(|e| AuthFailure::Store(e.message))?;
            let token = Reader::new(&body)
                .cstr()
                .map_err(|e| AuthFailure::Store(e.0))?
                .to_owned();
            let (gate, name) = (self.gate.clone(), name.to_owned());
            let identity = off_the_loop(move || gate.verify_token(&name, &token)).await?;
            return Ok((identity, "cleartext".into(), None));
        }
        let (gate, claimed) = (self.gate.clone(), name.to_owned());
        let credentials = off_the_loop(move || gate.scram_credentials(&claimed)).await?;
        client
            .write_all(&codec::auth_sasl_mechanisms(&[scram::MECHANISM]))
            .await
            .map_err(gone)?;
        let initial = read_password_message(client)
            .await
            .map_err(|e| AuthFailure::Store(e.message))?;
        let mut r = Reader::new(&initial);
        let mechanism = r.cstr().map_err(|e| AuthFailure::Store(e.0))?;
        if mechanism != scram::MECHANISM {
            return Err(AuthFailure::Store(format!(
                "client chose unsupported mechanism {mechanism:?}"
            )));
        }
        let _len = r.i32().map_err(|e| AuthFailure::Store(e.0))?;
        let exchange = ScramExchange::start(r.rest(), &credentials)
            .map_err(|e| AuthFailure::Store(e.to_string()))?;
        client
            .write_all(&codec::authentication(
                codec::AUTH_SASL_CONTINUE,
                exchange.server_first().as_bytes(),
            ))
            .await
            .map_err(gone)?;
        let response = read_password_message(client)
            .await
            .map_err(|e| AuthFailure::Store(e.message))?;
        let identity = credentials.identity.clone();
        match exchange.finish(&response, &credentials.keys) {
            Ok((key, _)) if key.revoked => Err(AuthFailure::RevokedToken(key.token_id.clone())),
            Ok((key, server_final)) => {
                let identity = identity.ok_or(AuthFailure::UnknownIdentity)?;
                Ok((identity, key.token_id.clone(), Some(server_final)))
            }
            Err(scram::ScramError::NoMatch) if identity.is_none() => {
                Err(AuthFailure::UnknownIdentity)
            }
            Err(scram::ScramError::NoMatch) => Err(AuthFailure::WrongToken),
            Err(e) => Err(AuthFailure::Store(e.to_string())),
        }
    }
}

/// Bytes an in-process session's stream buffers each way.
const LOCAL_STREAM_BYTES: usize = 64 * 1024;

impl LocalSessions for PgGateway {
    fn open_local(self: Arc<Self>, caller: LocalCaller) -> tokio::io::DuplexStream {
        let (client_end, session_end) = tokio::io::duplex(LOCAL_STREAM_BYTES);
        let shutdown = self.local_stop.subscribe();
        let peer = caller.client_addr.clone();
        tokio::spawn(self.run_session(Box::new(session_end), peer, Some(caller), shutdown));
        client_end
    }
}

/// A session ready to relay: the target's stream and what the relay needs to know about it.
struct Established {
    upstream: BoxedStream,
    route: RegisteredRoute,
    pid: i32,
    table_names: HashMap<u32, String>,
    identity: Identity,
    policy: Arc<Policy>,
}

/// A registered cancel route and the channel on which the session hears of forwarded cancels.
struct RegisteredRoute {
    route: CancelRoute,
    notices: mpsc::Receiver<()>,
}

const CONNECTION_LOST: &str = "08006";

fn lost(e: std::io::Error) -> ClientError {
    ClientError::fatal(CONNECTION_LOST, format!("connection lost: {e}"))
}

async fn read_startup_packet(stream: &mut BoxedStream) -> Result<StartupPacket, ClientError> {
    let len = stream.read_i32().await.map_err(lost)?;
    let len = usize::try_from(len).unwrap_or(0);
    if !(8..=codec::MAX_STARTUP_PACKET).contains(&len) {
        return Err(ClientError::fatal(
            "08P01",
            format!("invalid startup packet length {len}"),
        ));
    }
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).await.map_err(lost)?;
    codec::parse_startup(&body).map_err(|e| ClientError::fatal("08P01", e.0))
}

/// Reads one 'p' message (password, SASL) during authentication.
async fn read_password_message(stream: &mut BoxedStream) -> Result<BytesMut, ClientError> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match codec::frame(&buf, codec::MAX_STARTUP_PACKET) {
            Ok(Some((b'p', len))) => {
                let mut message = buf.split_to(len);
                message.advance(5);
                return Ok(message);
            }
            Ok(Some((tag, _))) => {
                return Err(ClientError::fatal(
                    "08P01",
                    format!(
                        "expected a password message, got {}",
                        codec::printable_tag(tag)
                    ),
                ))
            }
            Ok(None) => {}
            Err(e) => return Err(ClientError::fatal("08P01", e.0)),
        }
        if stream.read_buf(&mut buf).await.map_err(lost)? == 0 {
            return Err(ClientError::fatal(
                "08006",
                "client disconnected during authentication",
            ));
        }
    }
}
