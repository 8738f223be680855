//! The Gate: authentication, authorization and the opening of recorded sessions, for every protocol.
//!
//! It holds the validated configuration, the connection secrets and the journal handles. Protocol crates
//! ask it who a client is, whether that identity may use a connection, and for a [`SessionRecorder`];
//! they never read the store or the configuration's secrets themselves.

use std::collections::HashMap;
use std::sync::Arc;

use proctor_journal::{now_ns, JournalError, SessionHeader, Store, Writer};
use proctor_policy::Policy;

use crate::approvals::Approvals;
use crate::config::{Config, ConnectionConfig, ConnectionKind, PostgresConfig, ResolvedSecrets};
use crate::identity::{
    config_identity_salt, mysql_native_hash, scram_verifier, secrets_equal, token_sha256,
    unknown_identity_salt, SCRAM_ITERATIONS,
};
use crate::proposals::Proposals;
use crate::recorder::{RecordError, SessionRecorder};
use crate::{Masker, Secret};

/// An authenticated identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
}

/// A connection that an identity was authorized to use, with the credentials Proctor injects.
#[derive(Debug)]
pub struct Target {
    pub config: ConnectionConfig,
    pub password: Option<Secret>,
    /// SSH: the private key Proctor logs in to the target with (OpenSSH format).
    pub private_key: Option<Secret>,
    /// The connection's guardrails.
    pub policy: Arc<Policy>,
}

/// One token's SCRAM keys.
#[derive(Clone, Debug)]
pub struct ScramKey {
    pub token_id: String,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub revoked: bool,
}

/// What a SCRAM server needs for a claimed identity. For an unknown name the salt is still stable and
/// `keys` is empty, so the exchange runs to the end and fails like a wrong token would.
#[derive(Clone, Debug)]
pub struct ScramCredentials {
    pub identity: Option<Identity>,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub keys: Vec<ScramKey>,
}

/// One token's `mysql_native_password` verifier, SHA1(SHA1(token)).
#[derive(Clone, Debug)]
pub struct NativePasswordKey {
    pub token_id: String,
    pub hash: [u8; 20],
    pub revoked: bool,
}

/// What a MySQL server needs to check a `mysql_native_password` scramble for a claimed identity;
/// for an unknown name `identity` is `None` and `keys` empty.
#[derive(Clone, Debug)]
pub struct NativePasswordCredentials {
    pub identity: Option<Identity>,
    pub keys: Vec<NativePasswordKey>,
}

/// Why authentication failed. The client is told only that it failed; the journal gets the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("unknown identity")]
    UnknownIdentity,
    #[error("wrong token")]
    WrongToken,
    #[error("token {0} is revoked")]
    RevokedToken(String),
    #[error("the identity's credentials could not be read: {0}")]
    Store(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    #[error("connection {0:?} does not exist")]
    UnknownConnection(String),
    #[error("identity {identity:?} may not use connection {connection:?}")]
    NotAllowed {
        identity: String,
        connection: String,
    },
    #[error("connection {connection:?} is a {kind} connection")]
    OtherProtocol {
        connection: String,
        kind: &'static str,
    },
}

struct ConfigIdentity {
    groups: Vec<String>,
    token: Secret,
    /// The token's SCRAM keys, derived once at start: a derivation is 4,096 PBKDF2 rounds, too slow
    /// to repeat on an event loop at every login.
    scram: ScramKey,
    /// SHA1(SHA1(token)), for MySQL clients.
    mysql_native_hash: [u8; 20],
}

/// Checks who a client is: the stored identities and tokens, and those the configuration declares.
pub struct Authenticator {
    store: Arc<Store>,
    config_identities: HashMap<String, ConfigIdentity>,
}

pub struct Gate {
    config: Config,
    store: Arc<Store>,
    writer: Writer,
    masker: Arc<Masker>,
    authenticator: Authenticator,
    targets: HashMap<String, Arc<Target>>,
    approvals: Approvals,
    proposals: Proposals,
}

/// The id of a token shaped like Proctor's (`prt_<id>_<secret>`): what a record may name of it.
pub fn token_id_of(token: &str) -> Option<String> {
    let id = token.strip_prefix("prt_")?.split('_').next()?;
    (id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

impl Authenticator {
    /// `identity_tokens`: the tokens of configured identities, by name (those missing are skipped).
    pub fn new(config: &Config, identity_tokens: Vec<(String, Secret)>, store: Arc<Store>) -> Self {
        let config_identities = identity_tokens
            .into_iter()
            .filter_map(|(name, token)| {
                let declared = config.identity.iter().find(|i| i.name == name)?;
                let verifier = scram_verifier(
                    token.expose(),
                    &config_identity_salt(&name),
                    SCRAM_ITERATIONS,
                );
                let scram = ScramKey {
                    token_id: "config".into(),
                    stored_key: verifier.stored_key.to_vec(),
                    server_key: verifier.server_key.to_vec(),
                    revoked: false,
                };
                Some((
                    name,
                    ConfigIdentity {
                        groups: declared.groups.clone(),
                        mysql_native_hash: mysql_native_hash(token.expose()),
                        token,
                        scram,
                    },
                ))
            })
            .collect();
        Self {
            store,
            config_identities,
        }
    }

    /// The SCRAM material for a claimed identity name: every token of a stored identity (revoked ones
    /// marked, so the journal can say a revoked token was tried) and the token of a configured one.
    pub fn scram_credentials(&self, name: &str) -> Result<ScramCredentials, AuthFailure> {
        let stored = self
            .store
            .identity(name)
            .map_err(|e| AuthFailure::Store(e.to_string()))?;
        let configured = self.config_identities.get(name);
        let salt = match (&stored, configured) {
            (Some(row), _) => row.scram_salt.clone(),
            (None, Some(_)) => config_identity_salt(name),
            (None, None) => {
                return Ok(ScramCredentials {
                    identity: None,
                    salt: unknown_identity_salt(name),
                    iterations: SCRAM_ITERATIONS,
                    keys: Vec::new(),
                })
            }
        };
        let mut keys = Vec::new();
        let mut groups = Vec::new();
        if let Some(row) = &stored {
            groups.extend(row.groups.iter().cloned());
            let tokens = self
                .store
                .tokens_of(name, true)
                .map_err(|e| AuthFailure::Store(e.to_string()))?;
            keys.extend(
                tokens
                    .into_iter()
                    .filter(|t| t.scram_iterations == SCRAM_ITERATIONS)
                    .map(|t| ScramKey {
                        token_id: t.id,
                        stored_key: t.scram_stored_key,
                        server_key: t.scram_server_key,
                        revoked: t.revoked_at.is_some(),
                    }),
            );
        }
        if let Some(configured) = configured {
            groups.extend(configured.groups.iter().cloned());
            if stored.is_none() {
                keys.push(configured.scram.clone());
            } else {
                // Stored under the same name too: the stored identity's salt applies (rare, so
                // derived here rather than at start).
                let verifier = scram_verifier(configured.token.expose(), &salt, SCRAM_ITERATIONS);
                keys.push(ScramKey {
                    stored_key: verifier.stored_key.to_vec(),
                    server_key: verifier.server_key.to_vec(),
                    ..configured.scram.clone()
                });
            }
        }
        groups.sort();
        groups.dedup();
        Ok(ScramCredentials {
            identity: Some(Identity {
                name: name.to_owned(),
                groups,
            }),
            salt,
            iterations: SCRAM_ITERATIONS,
            keys,
        })
    }

    /// The `mysql_native_password` verifiers of a claimed identity's tokens: stored ones (revoked
    /// ones marked, so the journal can say a revoked token was tried; tokens older than the column
    /// have none) and the token of a configured identity.
    pub fn native_password_credentials(
        &self,
        name: &str,
    ) -> Result<NativePasswordCredentials, AuthFailure> {
        let store_error = |e: JournalError| AuthFailure::Store(e.to_string());
        let stored = self.store.identity(name).map_err(store_error)?;
        let configured = self.config_identities.get(name);
        if stored.is_none() && configured.is_none() {
            return Ok(NativePasswordCredentials {
                identity: None,
                keys: Vec::new(),
            });
        }
        let mut keys = Vec::new();
        let mut groups = Vec::new();
        if let Some(row) = &stored {
            groups.extend(row.groups.iter().cloned());
            for token in self.store.tokens_of(name, true).map_err(store_error)? {
                let Some(hash) = token
                    .mysql_native_hash
                    .as_deref()
                    .and_then(|h| <[u8; 20]>::try_from(h).ok())
                else {
                    continue;
                };
                keys.push(NativePasswordKey {
                    token_id: token.id,
                    hash,
                    revoked: token.revoked_at.is_some(),
                });
            }
        }
        if let Some(configured) = configured {
            groups.extend(configured.groups.iter().cloned());
            keys.push(NativePasswordKey {
                token_id: "config".into(),
                hash: configured.mysql_native_hash,
                revoked: false,
            });
        }
        groups.sort();
        groups.dedup();
        Ok(NativePasswordCredentials {
            identity: Some(Identity {
                name: name.to_owned(),
                groups,
            }),
            keys,
        })
    }

    /// Checks a token sent in clear (over TLS) for a claimed identity.
    pub fn verify_token(&self, name: &str, token: &str) -> Result<Identity, AuthFailure> {
        let credentials = self.scram_credentials(name)?;
        let identity = credentials.identity.ok_or(AuthFailure::UnknownIdentity)?;
        if let Some(configured) = self.config_identities.get(name) {
            if secrets_equal(configured.token.expose().as_bytes(), token.as_bytes()) {
                return Ok(identity);
            }
        }
        let digest = token_sha256(token);
        let found = self
            .store
            .active_token_by_hash(&digest)
            .map_err(|e| AuthFailure::Store(e.to_string()))?;
        match found {
            Some(row) if row.identity == name => Ok(identity),
            _ => {
                let revoked = self
                    .store
                    .tokens_of(name, true)
                    .map_err(|e| AuthFailure::Store(e.to_string()))?
                    .into_iter()
                    .find(|t| t.revoked_at.is_some() && secrets_equal(&t.sha256, &digest));
                Err(match revoked {
                    Some(t) => AuthFailure::RevokedToken(t.id),
                    None => AuthFailure::WrongToken,
                })
            }
        }
    }

    /// The identity a token belongs to (an API caller's bearer token): a configured identity's
    /// token, or an active stored one; a revoked or unknown token is refused. It is on the path of
    /// every HTTP request, so it reads the store twice at most: the token, then its identity.
    pub fn identify_token(&self, token: &str) -> Result<Identity, AuthFailure> {
        let configured = self
            .config_identities
            .iter()
            .find(|(_, c)| secrets_equal(c.token.expose().as_bytes(), token.as_bytes()))
            .map(|(name, _)| name.clone());
        let name = match configured {
            Some(name) => name,
            None => crate::identity::identity_of_token(&self.store, token)?,
        };
        self.identity_named(&name)
    }

    /// An identity by name with its groups: those of the stored identity and of the configured one.
    fn identity_named(&self, name: &str) -> Result<Identity, AuthFailure> {
        let stored = self
            .store
            .identity(name)
            .map_err(|e| AuthFailure::Store(e.to_string()))?;
        let configured = self.config_identities.get(name);
        if stored.is_none() && configured.is_none() {
            return Err(AuthFailure::UnknownIdentity);
        }
        let mut groups: Vec<String> = stored
            .into_iter()
            .flat_map(|row| row.groups)
            .chain(
                configured
                    .into_iter()
                    .flat_map(|c| c.groups.iter().cloned()),
            )
            .collect();
        groups.sort();
        groups.dedup();
        Ok(Identity {
            name: name.to_owned(),
            groups,
        })
    }
}

impl Gate {
    pub fn new(
        config: Config,
        secrets: ResolvedSecrets,
        store: Arc<Store>,
        writer: Writer,
        masker: Masker,
    ) -> Self {
        let authenticator = Authenticator::new(&config, secrets.identity_tokens, store.clone());
        let targets = config
            .connection
            .iter()
            .zip(secrets.connection_passwords)
            .zip(secrets.connection_private_keys)
            .map(|((connection, (_, password)), (_, private_key))| {
                (
                    connection.name.clone(),
                    Arc::new(Target {
                        config: connection.clone(),
                        password,
                        private_key,
                        // `Config` validation refuses rules that do not compile; refusing everything is
                        // only the fail-closed backstop.
                        policy: Arc::new(
                            connection.policy().unwrap_or_else(|_| Policy::deny_all()),
                        ),
                    }),
                )
            })
            .collect();
        Self {
            config,
            approvals: Approvals::new(store.clone()),
            proposals: Proposals::default(),
            store,
            writer,
            masker: Arc::new(masker),
            authenticator,
            targets,
        }
    }

    /// Tool calls models proposed recently, for linking the calls agents make.
    pub fn proposals(&self) -> &Proposals {
        &self.proposals
    }

    /// The connections an identity may use.
    pub fn connections_of(&self, identity: &Identity) -> Vec<Arc<Target>> {
        let mut names: Vec<&String> = self.targets.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| self.authorize(identity, name).ok())
            .collect()
    }

    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }

    /// The detectors and fingerprint key, for what is stored outside a session's events.
    pub fn masker(&self) -> &Arc<Masker> {
        &self.masker
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn postgres(&self) -> &PostgresConfig {
        &self.config.postgres
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    pub fn scram_credentials(&self, name: &str) -> Result<ScramCredentials, AuthFailure> {
        self.authenticator.scram_credentials(name)
    }

    pub fn verify_token(&self, name: &str, token: &str) -> Result<Identity, AuthFailure> {
        self.authenticator.verify_token(name, token)
    }

    /// May `identity` use the connection named `connection`?
    pub fn authorize(
        &self,
        identity: &Identity,
        connection: &str,
    ) -> Result<Arc<Target>, AuthzError> {
        let target = self
            .targets
            .get(connection)
            .ok_or_else(|| AuthzError::UnknownConnection(connection.to_owned()))?;
        if crate::config::allows(&target.config.allow, &identity.name, &identity.groups) {
            Ok(target.clone())
        } else {
            Err(AuthzError::NotAllowed {
                identity: identity.name.clone(),
                connection: connection.to_owned(),
            })
        }
    }

    /// May `identity` use `connection` through a client of the protocol `kind`? A connection is
    /// served by the listener of its kind only.
    pub fn authorize_kind(
        &self,
        identity: &Identity,
        connection: &str,
        kind: ConnectionKind,
    ) -> Result<Arc<Target>, AuthzError> {
        let target = self.authorize(identity, connection)?;
        if target.config.kind != kind {
            return Err(AuthzError::OtherProtocol {
                connection: connection.to_owned(),
                kind: target.config.kind.name(),
            });
        }
        Ok(target)
    }

    /// Records an HTTP request (LLM proxy, MCP) refused because its token is missing or no valid
    /// one: a session of its own, under the identity `-`, whose `auth.failure` names at most the
    /// token's id, never the token. A journal that cannot record it changes nothing for the refusal.
    pub async fn record_refused_token(
        &self,
        protocol: &str,
        target: &str,
        client_addr: &str,
        token: Option<&str>,
    ) {
        let reason = if token.is_some() {
            "not a valid Proctor token"
        } else {
            "no token given"
        };
        let failure = serde_json::json!({"method": "token", "reason": reason,
            "token_id": token.and_then(token_id_of)});
        self.record_refusal(
            protocol,
            "-",
            target,
            client_addr,
            failure,
            "authentication failed",
        )
        .await;
    }

    /// Records a request refused because `identity` is not on the allow list of `target` (an HTTP
    /// service such as an LLM provider): a session of its own whose `auth.failure` says so.
    pub async fn record_not_allowed(
        &self,
        protocol: &str,
        identity: &Identity,
        target: &str,
        client_addr: &str,
    ) {
        let reason = format!("identity {:?} may not use {target:?}", identity.name);
        let failure = serde_json::json!({"method": "token", "identity": identity.name,
            "reason": reason, "stage": "authorize"});
        self.record_refusal(
            protocol,
            &identity.name,
            target,
            client_addr,
            failure,
            "not authorized",
        )
        .await;
    }

    /// A refused request as a session of its own: its `auth.failure` (masked), then its end.
    async fn record_refusal(
        &self,
        protocol: &str,
        identity: &str,
        target: &str,
        client_addr: &str,
        failure: serde_json::Value,
        end_reason: &str,
    ) {
        let Ok(mut recorder) = self
            .open_session(protocol, identity, target, client_addr)
            .await
        else {
            return;
        };
        let _ = recorder.record_masked("auth.failure", failure).await;
        let _ = recorder.end(end_reason).await;
    }

    /// Opens a recorded session for a connection attempt. Every attempt is a session, so that failed
    /// ones are in the journal too.
    pub async fn open_session(
        &self,
        protocol: &str,
        claimed_identity: &str,
        connection: &str,
        client_addr: &str,
    ) -> Result<SessionRecorder, RecordError> {
        let header = SessionHeader {
            session_id: uuid::Uuid::now_v7().to_string(),
            protocol: protocol.to_owned(),
            identity: claimed_identity.to_owned(),
            connection: connection.to_owned(),
            client_addr: client_addr.to_owned(),
            started_at: now_ns(),
        };
        SessionRecorder::open(self.writer.clone(), header, self.masker.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IdentityConfig;
    use crate::identity::add_identity;

    const CONFIGURED: &str = "prt_c0ffee00_configured-identity-token";

    fn authenticator(dir: &std::path::Path) -> (Authenticator, Secret) {
        let store = Arc::new(Store::open(dir, Default::default()).unwrap());
        let (stored, _) = add_identity(&store, "alice", &["dba".into()]).unwrap();
        let config = Config {
            identity: vec![IdentityConfig {
                name: "ci-bot".into(),
                groups: vec!["dba".into()],
                token_env: "PROCTOR_CI_TOKEN".into(),
            }],
            ..Config::default()
        };
        let tokens = vec![("ci-bot".into(), Secret::new(CONFIGURED.into()))];
        (Authenticator::new(&config, tokens, store), stored)
    }

    /// The same token with its last character changed, and cut short by one.
    fn wrong_ones(token: &str) -> [String; 3] {
        let mut changed = token[..token.len() - 1].to_owned();
        changed.push(if token.ends_with('x') { 'y' } else { 'x' });
        [
            changed,
            token[..token.len() - 1].to_owned(),
            format!("{token}x"),
        ]
    }

    #[test]
    fn a_bearer_token_names_its_identity_and_groups_until_it_is_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, stored) = authenticator(dir.path());
        let alice = auth.identify_token(stored.expose()).unwrap();
        assert_eq!(alice.groups, ["dba"]);
        assert_eq!(auth.identify_token(CONFIGURED).unwrap().groups, ["dba"]);
        let id = token_id_of(stored.expose()).unwrap();
        auth.store.revoke_token(&id, now_ns()).unwrap();
        assert_eq!(
            auth.identify_token(stored.expose()).unwrap_err(),
            AuthFailure::WrongToken
        );
        assert!(auth.verify_token("alice", stored.expose()).is_err());
    }

    #[test]
    fn tokens_are_accepted_exactly_and_refused_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, stored) = authenticator(dir.path());
        for (name, token) in [("ci-bot", CONFIGURED), ("alice", stored.expose())] {
            assert_eq!(auth.verify_token(name, token).unwrap().name, name);
            assert_eq!(auth.identify_token(token).unwrap().name, name);
            for wrong in wrong_ones(token) {
                assert_eq!(
                    auth.verify_token(name, &wrong).unwrap_err(),
                    AuthFailure::WrongToken,
                    "{wrong}"
                );
                assert!(auth.identify_token(&wrong).is_err(), "{wrong}");
            }
        }
    }
}
