//! SSH keys in the store: the public keys identities log in with, and the host keys of SSH targets
//! pinned on first use.
//!
//! Both are administrative facts, so every change is recorded in the log like identities and
//! tokens are. Keys are stored as OpenSSH public key lines; parsing them is the SSH crate's business.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::store::Store;
use crate::JournalError;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS identity_keys (
    fingerprint TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    public_key TEXT NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS identity_keys_by_identity ON identity_keys(identity);
CREATE TABLE IF NOT EXISTS ssh_host_keys (
    connection TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    public_key TEXT NOT NULL,
    pinned_at INTEGER NOT NULL
);
"#;

/// A public key an identity logs in with.
#[derive(Clone, Debug, Serialize)]
pub struct IdentityKeyRow {
    pub identity: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The OpenSSH public key line (algorithm and base64 key).
    pub public_key: String,
    pub added_at: i64,
}

/// A target's host key, pinned on first use.
#[derive(Clone, Debug, Serialize)]
pub struct HostKeyRow {
    pub connection: String,
    pub fingerprint: String,
    pub public_key: String,
    pub pinned_at: i64,
}

fn host_key_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<HostKeyRow> {
    Ok(HostKeyRow {
        connection: row.get(0)?,
        fingerprint: row.get(1)?,
        public_key: row.get(2)?,
        pinned_at: row.get(3)?,
    })
}

impl Store {
    /// Registers a public key for an identity, and records it in the log. A key belongs to one
    /// identity only.
    pub fn add_identity_key(&self, key: &IdentityKeyRow) -> Result<(), JournalError> {
        self.change(|tx| {
            let inserted = tx.execute(
                "INSERT INTO identity_keys (fingerprint, identity, public_key, added_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT(fingerprint) DO NOTHING",
                params![key.fingerprint, key.identity, key.public_key, key.added_at],
            )?;
            if inserted == 0 {
                return Err(JournalError::Conflict(format!(
                    "the key {} is already registered",
                    key.fingerprint
                )));
            }
            let mut fields = serde_json::Map::new();
            fields.insert("fingerprint".into(), key.fingerprint.clone().into());
            fields.insert("identity".into(), key.identity.clone().into());
            Ok(((), vec![("identity.key_added", fields)]))
        })
    }

    /// The identity a public key (by fingerprint) belongs to.
    pub fn identity_key(&self, fingerprint: &str) -> Result<Option<IdentityKeyRow>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT identity, fingerprint, public_key, added_at FROM identity_keys \
             WHERE fingerprint = ?1",
        )?;
        Ok(stmt
            .query_row([fingerprint], |row| {
                Ok(IdentityKeyRow {
                    identity: row.get(0)?,
                    fingerprint: row.get(1)?,
                    public_key: row.get(2)?,
                    added_at: row.get(3)?,
                })
            })
            .optional()?)
    }

    /// The host key pinned for an SSH connection, if any.
    pub fn pinned_host_key(&self, connection: &str) -> Result<Option<HostKeyRow>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT connection, fingerprint, public_key, pinned_at FROM ssh_host_keys \
             WHERE connection = ?1",
        )?;
        Ok(stmt.query_row([connection], host_key_row).optional()?)
    }

    /// Pins a connection's host key as first seen, and records it in the log. Returns the key that
    /// is pinned: the one given, or the one another session pinned first.
    pub fn pin_host_key(&self, key: &HostKeyRow) -> Result<HostKeyRow, JournalError> {
        self.change(|tx| {
            let inserted = tx.execute(
                "INSERT INTO ssh_host_keys (connection, fingerprint, public_key, pinned_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT(connection) DO NOTHING",
                params![
                    key.connection,
                    key.fingerprint,
                    key.public_key,
                    key.pinned_at
                ],
            )?;
            if inserted == 0 {
                let pinned = tx.query_row(
                    "SELECT connection, fingerprint, public_key, pinned_at FROM ssh_host_keys \
                     WHERE connection = ?1",
                    [&key.connection],
                    host_key_row,
                )?;
                return Ok((pinned, Vec::new()));
            }
            let mut fields = serde_json::Map::new();
            fields.insert("connection".into(), key.connection.clone().into());
            fields.insert("fingerprint".into(), key.fingerprint.clone().into());
            Ok((key.clone(), vec![("ssh.host_key_pinned", fields)]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_key_is_pinned_once_and_a_key_belongs_to_one_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let first = HostKeyRow {
            connection: "box".into(),
            fingerprint: "SHA256:first".into(),
            public_key: "ssh-ed25519 AAAAfirst".into(),
            pinned_at: 1,
        };
        let second = HostKeyRow {
            fingerprint: "SHA256:second".into(),
            public_key: "ssh-ed25519 AAAAsecond".into(),
            ..first.clone()
        };
        assert_eq!(
            store.pin_host_key(&first).unwrap().fingerprint,
            "SHA256:first"
        );
        assert_eq!(
            store.pin_host_key(&second).unwrap().fingerprint,
            "SHA256:first"
        );
        assert_eq!(
            store.pinned_host_key("box").unwrap().unwrap().public_key,
            "ssh-ed25519 AAAAfirst"
        );
        let key = IdentityKeyRow {
            identity: "alice".into(),
            fingerprint: "SHA256:k".into(),
            public_key: "ssh-ed25519 AAAAk".into(),
            added_at: 1,
        };
        store.add_identity_key(&key).unwrap();
        let taken = IdentityKeyRow {
            identity: "bob".into(),
            ..key
        };
        assert!(matches!(
            store.add_identity_key(&taken),
            Err(JournalError::Conflict(_))
        ));
        assert_eq!(
            store.identity_key("SHA256:k").unwrap().unwrap().identity,
            "alice"
        );
    }
}
