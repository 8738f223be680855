//! The SSH server side: one russh handler per user connection. It authenticates the user (a
//! Proctor token as password or keyboard-interactive answer, or a public key registered to the
//! identity), authorizes the connection named in the login (`identity%connection`), logs in to the
//! target, and hands each channel the user opens to its relay.
//!
//! A login that authenticated but cannot be served (not allowed, target unreachable, host key
//! mismatch) is accepted so that the user reads why: every channel they open gets the reason on
//! stderr and exit status 255, and the session's record says the same.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proctor_core::config::ConnectionKind;
use proctor_core::guard::Guardrails;
use proctor_core::session::{self, SessionStart};
use proctor_core::{AuthFailure, Gate, Identity, Target};
use russh::keys::PublicKey;
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodSet};
use serde_json::json;
use tokio::sync::{mpsc, Mutex};

use crate::channel::{self, ChannelContext};
use crate::forward;
use crate::journal::SessionJournal;
use crate::upstream::{self, Upstream};

/// What a connection can do once its user authenticated.
enum Login {
    /// Not yet authenticated.
    Pending,
    /// Authenticated, authorized and logged in upstream.
    Ready(Arc<Ready>),
    /// Authenticated, but the session cannot be served: why, as told to the user.
    Refused(String),
}

pub(crate) struct Ready {
    pub target: Arc<Target>,
    pub upstream: Upstream,
    pub guardrails: Arc<Mutex<Guardrails>>,
}

/// What the connection's task learns of its login: whether the user authenticated, and why the
/// session ended when something other than the user's leaving ended it.
#[derive(Default)]
pub struct Outcome {
    authenticated: AtomicBool,
    end_reason: std::sync::Mutex<Option<String>>,
}

impl Outcome {
    pub fn authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    pub fn end_reason(&self) -> Option<String> {
        self.end_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// One user connection's handler.
pub struct Connection {
    gate: Arc<Gate>,
    peer: String,
    journal: SessionJournal,
    login: Login,
    outcome: Arc<Outcome>,
    /// Held by every channel task, so that the session's end waits for their last events.
    alive: mpsc::Sender<()>,
    open_channels: Arc<std::sync::atomic::AtomicUsize>,
}

/// The user's login: `identity%connection`, or `identity` alone.
fn parse_login(user: &str) -> (&str, Option<&str>) {
    match user.split_once('%') {
        Some((identity, connection)) => (identity, Some(connection)),
        None => (user, None),
    }
}

impl Connection {
    pub fn new(
        gate: Arc<Gate>,
        peer: String,
        journal: SessionJournal,
        outcome: Arc<Outcome>,
        alive: mpsc::Sender<()>,
    ) -> Self {
        Self {
            gate,
            peer,
            journal,
            login: Login::Pending,
            outcome,
            alive,
            open_channels: Arc::default(),
        }
    }

    /// Opens the session's record at the first login attempt.
    async fn open_record(&self, user: &str) {
        if self.journal.is_open().await {
            return;
        }
        let (identity, connection) = parse_login(user);
        match self
            .gate
            .open_session("ssh", identity, connection.unwrap_or("-"), &self.peer)
            .await
        {
            Ok(recorder) => self.journal.open(recorder).await,
            Err(e) => tracing::error!(error = %e, "an SSH session could not be recorded"),
        }
    }

    fn set_end_reason(&self, reason: &str) {
        *self
            .outcome
            .end_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }

    async fn failed(&self, method: &str, user: &str, reason: String) -> Auth {
        let _ = self
            .journal
            .queue(
                "auth.failure",
                json!({"method": method, "reason": reason, "user": user}),
            )
            .await;
        Auth::reject()
    }

    /// Checks a token for the identity the login names.
    async fn check_token(&mut self, method: &'static str, user: &str, token: &str) -> Auth {
        self.open_record(user).await;
        if !self.journal.is_open().await {
            return Auth::reject();
        }
        let (name, _) = parse_login(user);
        let gate = self.gate.clone();
        let (claimed, token_owned) = (name.to_owned(), token.to_owned());
        let verified =
            session::off_the_loop(move || gate.verify_token(&claimed, &token_owned)).await;
        match verified {
            Ok(identity) => {
                let token_id = proctor_core::token_id_of(token).unwrap_or_default();
                self.log_in(user, identity, method, &token_id).await;
                Auth::Accept
            }
            Err(failure) => self.failed(method, user, failure.to_string()).await,
        }
    }

    /// The identity a public key is registered to, if it is the one the login names.
    async fn key_identity(&self, user: &str, key: &PublicKey) -> Result<Identity, AuthFailure> {
        let (name, _) = parse_login(user);
        let fingerprint = upstream::fingerprint(key);
        let store = self.gate.store().clone();
        let row = session::off_the_loop(move || {
            store
                .identity_key(&fingerprint)
                .map_err(|e| AuthFailure::Store(e.to_string()))
        })
        .await?;
        match row {
            Some(row) if row.identity == name => {
                let gate = self.gate.clone();
                let name = name.to_owned();
                session::off_the_loop(move || {
                    gate.scram_credentials(&name)?
                        .identity
                        .ok_or(AuthFailure::UnknownIdentity)
                })
                .await
            }
            _ => Err(AuthFailure::WrongToken),
        }
    }

    /// The connection a login names, or the only SSH connection the identity may use.
    fn connection_of(&self, identity: &Identity, named: Option<&str>) -> Result<String, String> {
        if let Some(named) = named {
            return Ok(named.to_owned());
        }
        let ssh: Vec<String> = self
            .gate
            .connections_of(identity)
            .iter()
            .filter(|t| t.config.kind == ConnectionKind::Ssh)
            .map(|t| t.config.name.clone())
            .collect();
        match ssh.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(format!(
                "identity {:?} may use no SSH connection through Proctor",
                identity.name
            )),
            several => Err(format!(
                "name the connection in the login, as {}%CONNECTION (one of: {})",
                identity.name,
                several.join(", ")
            )),
        }
    }

    /// An authenticated user: authorizes the connection, logs in upstream, records the start.
    async fn log_in(&mut self, user: &str, identity: Identity, method: &str, credential: &str) {
        self.outcome.authenticated.store(true, Ordering::Release);
        let (_, named) = parse_login(user);
        let connection = match self.connection_of(&identity, named) {
            Ok(connection) => connection,
            Err(why) => return self.refuse(&identity, method, why, "not authorized").await,
        };
        let target = match self
            .gate
            .authorize_kind(&identity, &connection, ConnectionKind::Ssh)
        {
            Ok(target) => target,
            Err(e) => {
                return self
                    .refuse(&identity, method, e.to_string(), "not authorized")
                    .await
            }
        };
        let timeout = Duration::from_secs(self.gate.config().ssh.connect_timeout_secs);
        let (upstream, host_key) =
            upstream::connect(&target, self.gate.store().clone(), timeout).await;
        if let Some(host_key) = &host_key {
            let _ = self
                .journal
                .queue("ssh.host_key", host_key.record(&connection))
                .await;
        }
        let upstream = match upstream {
            Ok(upstream) => upstream,
            Err(e) => {
                let message = format!("connection {connection:?} is unavailable: {e}");
                let _ = self
                    .journal
                    .queue(
                        "ssh.error",
                        json!({"stage": "connect", "message": e.to_string()}),
                    )
                    .await;
                self.set_end_reason("target unavailable");
                self.login = Login::Refused(message);
                return;
            }
        };
        let started = {
            let mut recorder = self.journal.lock().await;
            match recorder.as_mut() {
                Some(recorder) => session::record_start(
                    recorder,
                    SessionStart {
                        identity: &identity,
                        connection: &connection,
                        tls: true,
                        method,
                        token_id: credential,
                        application_name: None,
                        policy: &target.policy,
                        target: &target.config,
                        upstream_tls: true,
                        server_version: None,
                        startup: json!({"login": user}),
                    },
                )
                .await
                .is_ok(),
                None => false,
            }
        };
        if !started {
            self.set_end_reason("journal failure");
            self.login =
                Login::Refused("Proctor cannot record this session, so it is not opened".into());
            return;
        }
        let guardrails =
            session::command_guardrails(&self.gate, target.policy.clone(), identity, &connection);
        self.login = Login::Ready(Arc::new(Ready {
            target,
            upstream,
            guardrails: Arc::new(Mutex::new(guardrails)),
        }));
    }

    async fn refuse(&mut self, identity: &Identity, method: &str, why: String, end: &str) {
        let _ = self
            .journal
            .queue(
                "auth.failure",
                json!({"method": method, "identity": identity.name, "reason": why, "stage": "authorize"}),
            )
            .await;
        self.set_end_reason(end);
        self.login = Login::Refused(why);
    }

    fn context(&self, ready: &Arc<Ready>, session: &Session) -> ChannelContext {
        ChannelContext {
            journal: self.journal.clone(),
            ready: ready.clone(),
            server: session.handle(),
            gate: self.gate.clone(),
            alive: self.alive.clone(),
        }
    }

    /// Whether another channel may open.
    fn channel_allowed(&self) -> bool {
        self.open_channels
            .load(std::sync::atomic::Ordering::Acquire)
            < self.gate.config().ssh.max_channels
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[
                    russh::MethodKind::PublicKey,
                    russh::MethodKind::Password,
                    russh::MethodKind::KeyboardInteractive,
                ][..],
            )),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.check_token("password", user, password).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let answer = response.and_then(|mut answers| answers.next());
        match answer {
            None => Ok(Auth::Partial {
                name: "Proctor".into(),
                instructions: "Log in with your Proctor token.".into(),
                prompts: vec![("Proctor token: ".into(), false)].into(),
            }),
            Some(answer) => {
                let token = String::from_utf8_lossy(&answer).into_owned();
                Ok(self.check_token("keyboard-interactive", user, &token).await)
            }
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        self.open_record(user).await;
        match self.key_identity(user, key).await {
            Ok(_) => Ok(Auth::Accept),
            Err(_) => Ok(Auth::reject()),
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        match self.key_identity(user, key).await {
            Ok(identity) => {
                let fingerprint = upstream::fingerprint(key);
                self.log_in(user, identity, "publickey", &fingerprint).await;
                Ok(Auth::Accept)
            }
            Err(failure) => Ok(self.failed("publickey", user, failure.to_string()).await),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let ready = match &self.login {
            Login::Ready(ready) => ready.clone(),
            Login::Refused(why) => {
                tokio::spawn(channel::refuse(channel, why.clone(), self.alive.clone()));
                return Ok(true);
            }
            Login::Pending => return Ok(false),
        };
        if !self.channel_allowed() {
            return Ok(false);
        }
        let Ok(upstream) = ready.upstream.channel_open_session().await else {
            return Ok(false);
        };
        let context = self.context(&ready, session);
        let open = self.open_channels.clone();
        open.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        tokio::spawn(async move {
            channel::relay(context, channel, upstream).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        });
        Ok(true)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator_address: &str,
        originator_port: u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Login::Ready(ready) = &self.login else {
            return Ok(false);
        };
        let ready = ready.clone();
        let request = forward::Request {
            host: host.to_owned(),
            port,
            originator: format!("{originator_address}:{originator_port}"),
        };
        if !ready.target.config.port_forwarding || !self.channel_allowed() {
            forward::record_denied(&self.journal, &request, channel.id()).await;
            return Ok(false);
        }
        let Ok(upstream) = ready
            .upstream
            .channel_open_direct_tcpip(host, port, originator_address, originator_port)
            .await
        else {
            return Ok(false);
        };
        let context = self.context(&ready, session);
        let open = self.open_channels.clone();
        open.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        tokio::spawn(async move {
            forward::relay(context, request, channel, upstream).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        });
        Ok(true)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let _ = self
            .journal
            .queue(
                "ssh.forward",
                json!({"action": "deny", "direction": "remote", "host": address, "port": *port,
                       "reason": "remote forwarding is not offered through Proctor"}),
            )
            .await;
        Ok(false)
    }

    /// Agent forwarding is not offered: a forwarded agent would let the target sign as the user.
    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let _ = self
            .journal
            .queue(
                "ssh.agent",
                json!({"action": "deny", "channel": channel::channel_number(channel),
                       "reason": "agent forwarding is not offered through Proctor"}),
            )
            .await;
        Ok(false)
    }
}
