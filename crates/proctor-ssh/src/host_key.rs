//! Proctor's own SSH host key: generated on first start and kept in the data dir, readable by its
//! owner only, so that users' `known_hosts` entries for the gateway stay valid across restarts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;

/// The file in the data dir that holds the key, in OpenSSH format.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot read the SSH host key {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write the SSH host key {path}: {reason}")]
    Write { path: String, reason: String },
}

/// Loads the gateway's host key from `data_dir`, generating an Ed25519 key there on first start.
pub fn load_or_create(data_dir: &Path) -> Result<PrivateKey, HostKeyError> {
    let path = data_dir.join(HOST_KEY_FILE);
    let shown = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes()).map_err(|e| HostKeyError::Read {
            path: shown,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let write_error = |reason: String| HostKeyError::Write {
                path: shown.clone(),
                reason,
            };
            let seed: [u8; 32] = rand::random();
            let key = PrivateKey::new(
                KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)),
                "proctor",
            )
            .map_err(|e| write_error(e.to_string()))?;
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| write_error(e.to_string()))?;
            std::fs::create_dir_all(data_dir).map_err(|e| write_error(e.to_string()))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| write_error(e.to_string()))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| write_error(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(HostKeyError::Read {
            path: shown,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_key_is_made_once_readable_by_its_owner_only_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(HOST_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key(), again.public_key());
    }
}
