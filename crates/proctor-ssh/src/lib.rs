//! The SSH gateway: an SSH server toward users (`ssh`, `scp`, `sftp`, `rsync`) and an SSH client
//! toward the target, with every channel recorded: shells as terminal streams, exec commands with
//! their exit status, sftp and scp file by file, port forwards with their bytes.
//!
//! `server` authenticates users and opens the target; `channel` relays and records session
//! channels, `forward` port forwards; `terminal`, `sftp` and `scp` turn passing bytes into records
//! and never touch a socket.

mod channel;
mod forward;
mod host_key;
mod journal;
pub mod scp;
mod server;
pub mod sftp;
pub mod terminal;
pub mod transfer;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proctor_core::Gate;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

pub use host_key::{HostKeyError, HOST_KEY_FILE};
pub use upstream::fingerprint;

/// An OpenSSH public key line (`ssh-ed25519 AAAA... comment`), as `proctor identity add-key` takes
/// it: the key without its comment, and its `SHA256:` fingerprint.
pub fn parse_public_key(text: &str) -> Result<(String, String), String> {
    let key = russh::keys::PublicKey::from_openssh(text.trim()).map_err(|e| e.to_string())?;
    let mut bare = key.clone();
    bare.set_comment("");
    let line = bare.to_openssh().map_err(|e| e.to_string())?;
    Ok((line.trim().to_owned(), fingerprint(&key)))
}

/// The ciphers Proctor speaks on both legs, AES-GCM first: with AES-NI it costs a fraction of
/// ChaCha20-Poly1305 (whose Poly1305 has no vectorized code in the crypto library russh uses here),
/// and every byte is deciphered and enciphered again in between. The target takes the first it
/// knows; a user's client picks by its own order among them.
pub(crate) const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// How long the end of a connection waits for its channels' last records.
const CHANNELS_GRACE: Duration = Duration::from_secs(10);

/// The SSH listener's sessions.
pub struct SshGateway {
    gate: Arc<Gate>,
    config: Arc<russh::server::Config>,
}

impl SshGateway {
    /// Loads (or makes, on first start) the gateway's host key from the data dir.
    pub fn new(gate: Arc<Gate>) -> Result<Arc<Self>, HostKeyError> {
        let key = host_key::load_or_create(&gate.config().server.data_dir)?;
        let config = russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-Proctor".into()),
            keys: vec![key],
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: None,
            nodelay: true,
            max_auth_attempts: 10,
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(CIPHERS),
                ..russh::Preferred::default()
            },
            ..russh::server::Config::default()
        };
        Ok(Arc::new(Self {
            gate,
            config: Arc::new(config),
        }))
    }

    /// The gateway's host key as a `known_hosts` entry would hold it.
    pub fn host_key(&self) -> String {
        self.config
            .keys
            .first()
            .and_then(|key| key.public_key().to_openssh().ok())
            .unwrap_or_default()
    }

    /// Accepts SSH clients until `shutdown` turns true.
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
            move |stream, peer, shutdown| self.clone().session(stream, peer, shutdown),
        )
        .await;
    }

    async fn session(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let journal = journal::SessionJournal::default();
        let outcome = Arc::new(server::Outcome::default());
        let (alive, mut channels_done) = mpsc::channel::<()>(1);
        let handler = server::Connection::new(
            self.gate.clone(),
            peer.to_string(),
            journal.clone(),
            outcome.clone(),
            alive,
        );
        let auth_deadline = tokio::time::sleep(Duration::from_secs(
            self.gate.config().ssh.auth_timeout_secs,
        ));
        tokio::pin!(auth_deadline);
        let started = tokio::time::timeout(
            Duration::from_secs(self.gate.config().ssh.auth_timeout_secs),
            russh::server::run_stream(self.config.clone(), stream, handler),
        )
        .await;
        let mut reason = match started {
            Err(_) => "no SSH handshake in time".to_owned(),
            Ok(Ok(running)) => {
                let handle = running.handle();
                tokio::pin!(running);
                let mut cut_short = None;
                let mut deadline_passed = false;
                loop {
                    tokio::select! {
                        ended = &mut running => break match (cut_short, ended) {
                            (Some(why), _) => why,
                            (None, Ok(())) => "client disconnected".to_owned(),
                            (None, Err(e)) => format!("connection failed: {e}"),
                        },
                        _ = shutdown.changed(), if cut_short.is_none() => {
                            cut_short = Some("gateway shutting down".to_owned());
                            let _ = handle
                                .disconnect(russh::Disconnect::ByApplication, "Proctor is shutting down".into(), "en".into())
                                .await;
                        }
                        _ = &mut auth_deadline, if !deadline_passed => {
                            deadline_passed = true;
                            if cut_short.is_none() && !outcome.authenticated() {
                                cut_short = Some("authentication timed out".to_owned());
                                let _ = handle
                                    .disconnect(russh::Disconnect::ByApplication, "authentication timed out".into(), "en".into())
                                    .await;
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => format!("handshake failed: {e}"),
        };
        let _ = tokio::time::timeout(CHANNELS_GRACE, channels_done.recv()).await;
        if let Some(why) = outcome.end_reason() {
            reason = why;
        }
        journal.end(&reason).await;
    }
}
