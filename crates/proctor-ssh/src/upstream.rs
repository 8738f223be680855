//! The SSH client side: Proctor's connection to the target, with the target's host key checked
//! against its pin and the credentials Proctor holds (a private key or a password) that users
//! never see.
//!
//! A target's host key is pinned in the connection's configuration (`host_key`), or trusted on
//! first use: the first key seen is pinned in the store (and the log), and from then on any other
//! key refuses the session. What was decided is returned with the connection, for the session's
//! record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proctor_core::journal::{now_ns, HostKeyRow, Store};
use proctor_core::Target;
use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use serde_json::{json, Value};

/// The SSH connection to a target, logged in as the connection's user.
pub type Upstream = client::Handle<TargetKeyCheck>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("the target did not answer within {0} s")]
    Timeout(u64),
    #[error(
        "the host key of connection {connection:?} ({seen}) does not match its pinned key ({pinned}): \
         the session was refused; if the target's key changed on purpose, an administrator sets the new one as the connection's host_key"
    )]
    HostKeyMismatch {
        connection: String,
        seen: String,
        pinned: String,
    },
    #[error("the host key of connection {0:?} could not be checked: {1}")]
    HostKeyCheck(String, String),
    #[error("the target refused Proctor's credentials for user {0:?}")]
    Refused(String),
    #[error("the connection's private key cannot be used: {0}")]
    BadKey(String),
    #[error("the connection has no credentials to log in with")]
    NoCredentials,
}

/// How the target's host key was trusted, for `ssh.host_key`.
#[derive(Clone, Debug)]
pub struct HostKeyOutcome {
    pub fingerprint: String,
    /// `configured`, `pinned` (on an earlier first use) or `first_use` (pinned now); `mismatch`
    /// when the session was refused.
    pub trust: &'static str,
    pub expected: Option<String>,
}

impl HostKeyOutcome {
    pub fn record(&self, connection: &str) -> Value {
        json!({"connection": connection, "expected": self.expected, "fingerprint": self.fingerprint,
               "trust": self.trust})
    }
}

/// The russh client handler: checks the target's host key, and refuses any channel the target
/// tries to open toward Proctor.
pub struct TargetKeyCheck {
    connection: String,
    configured: Option<PublicKey>,
    store: Arc<Store>,
    outcome: Arc<Mutex<Option<HostKeyOutcome>>>,
}

pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl client::Handler for TargetKeyCheck {
    type Error = UpstreamError;

    async fn check_server_key(&mut self, seen: &PublicKey) -> Result<bool, Self::Error> {
        let seen_fingerprint = fingerprint(seen);
        let (trust, expected) = match &self.configured {
            Some(configured) => ("configured", configured.key_data().clone()),
            None => {
                let store = self.store.clone();
                let row = HostKeyRow {
                    connection: self.connection.clone(),
                    fingerprint: seen_fingerprint.clone(),
                    public_key: seen.to_openssh().map_err(|e| {
                        UpstreamError::HostKeyCheck(self.connection.clone(), e.to_string())
                    })?,
                    pinned_at: now_ns(),
                };
                let connection = self.connection.clone();
                let pinned = tokio::task::spawn_blocking(move || {
                    match store.pinned_host_key(&row.connection)? {
                        Some(pinned) => Ok((pinned, "pinned")),
                        None => store.pin_host_key(&row).map(|pinned| {
                            let trust = if pinned.fingerprint == row.fingerprint {
                                "first_use"
                            } else {
                                "pinned"
                            };
                            (pinned, trust)
                        }),
                    }
                })
                .await
                .map_err(|e| UpstreamError::HostKeyCheck(connection.clone(), e.to_string()))?
                .map_err(|e| UpstreamError::HostKeyCheck(connection.clone(), e.to_string()))?;
                let key = PublicKey::from_openssh(&pinned.0.public_key)
                    .map_err(|e| UpstreamError::HostKeyCheck(connection, e.to_string()))?;
                (pinned.1, key.key_data().clone())
            }
        };
        let expected_fingerprint =
            PublicKey::new(expected.clone(), "").fingerprint(HashAlg::Sha256);
        let matches = &expected == seen.key_data();
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(HostKeyOutcome {
            fingerprint: seen_fingerprint.clone(),
            trust: if matches { trust } else { "mismatch" },
            expected: (!matches).then(|| expected_fingerprint.to_string()),
        });
        if matches {
            Ok(true)
        } else {
            Err(UpstreamError::HostKeyMismatch {
                connection: self.connection.clone(),
                seen: seen_fingerprint,
                pinned: expected_fingerprint.to_string(),
            })
        }
    }
}

impl From<russh::Error> for UpstreamError {
    fn from(e: russh::Error) -> Self {
        UpstreamError::Connect {
            address: "the target".into(),
            reason: e.to_string(),
        }
    }
}

/// Connects to the target, checks its host key and logs in with the connection's credentials.
/// The host key outcome is returned even when the connection failed after the check.
pub async fn connect(
    target: &Target,
    store: Arc<Store>,
    timeout: Duration,
) -> (Result<Upstream, UpstreamError>, Option<HostKeyOutcome>) {
    let outcome = Arc::new(Mutex::new(None));
    let connected = tokio::time::timeout(timeout, login(target, store, outcome.clone())).await;
    let outcome = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
    let connected = connected.unwrap_or(Err(UpstreamError::Timeout(timeout.as_secs())));
    (connected, outcome)
}

async fn login(
    target: &Target,
    store: Arc<Store>,
    outcome: Arc<Mutex<Option<HostKeyOutcome>>>,
) -> Result<Upstream, UpstreamError> {
    let config = &target.config;
    let configured = config
        .host_key
        .as_deref()
        .map(PublicKey::from_openssh)
        .transpose()
        .map_err(|e| UpstreamError::HostKeyCheck(config.name.clone(), e.to_string()))?;
    let private_key = target
        .private_key
        .as_ref()
        .map(|key| PrivateKey::from_openssh(key.expose().as_bytes()))
        .transpose()
        .map_err(|e| UpstreamError::BadKey(e.to_string()))?;
    let socket = tokio::net::TcpStream::connect(&config.address)
        .await
        .map_err(|e| UpstreamError::Connect {
            address: config.address.clone(),
            reason: e.to_string(),
        })?;
    let _ = socket.set_nodelay(true);
    let client_config = Arc::new(client::Config {
        inactivity_timeout: None,
        nodelay: true,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(crate::CIPHERS),
            ..russh::Preferred::default()
        },
        ..client::Config::default()
    });
    let handler = TargetKeyCheck {
        connection: config.name.clone(),
        configured,
        store,
        outcome,
    };
    let mut handle = client::connect_stream(client_config, socket, handler).await?;
    let authenticated = match (private_key, &target.password) {
        (Some(key), _) => {
            let hash = handle.best_supported_rsa_hash().await?.flatten();
            handle
                .authenticate_publickey(
                    &config.user,
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await?
        }
        (None, Some(password)) => {
            handle
                .authenticate_password(&config.user, password.expose())
                .await?
        }
        (None, None) => return Err(UpstreamError::NoCredentials),
    };
    if authenticated.success() {
        Ok(handle)
    } else {
        Err(UpstreamError::Refused(config.user.clone()))
    }
}
