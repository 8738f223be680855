//! Signed checkpoints: the C2SP tlog-checkpoint body inside a C2SP signed note, signed with Ed25519,
//! and the log's signing key as it is kept in the data dir.
//!
//! A checkpoint is `<origin>\n<tree size>\n<base64 root hash>\n`. A signed note is that text, an empty
//! line, and one line per signature: `— <key name> <base64(key id || signature)>\n`, where the key id is
//! the first four bytes of `SHA-256(<key name> "\n" 0x01 <public key>)` and the signature covers the text.
//! A verifier key is written `<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>`, the private
//! key `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>` (the formats of Go's sumdb note package, so
//! that existing tools read them). Hand-written: the formats are a few lines of text, and no maintained
//! Rust crate implements signed notes.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::canonical::hex_lower;
use crate::merkle::Hash;
use crate::JournalError;

/// The file in the data dir that holds the log's private key (mode 0600).
pub const KEY_FILE: &str = "log-key";
const ED25519: u8 = 0x01;
const SIGNATURE_PREFIX: &str = "\u{2014} ";

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(public);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// The log's private key.
pub struct LogKey {
    name: String,
    signing: SigningKey,
}

impl LogKey {
    pub fn generate(name: &str) -> Result<Self, JournalError> {
        if !valid_key_name(name) {
            return Err(JournalError::Malformed(format!(
                "log key name {name:?} must be non-empty, without spaces or '+'"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn id(&self) -> [u8; 4] {
        key_id(&self.name, self.signing.verifying_key().as_bytes())
    }

    /// The public half, in verifier-key form: what auditors are given.
    pub fn verifier_key(&self) -> String {
        let mut key = vec![ED25519];
        key.extend_from_slice(self.signing.verifying_key().as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex_lower(&self.id()),
            BASE64.encode(key)
        )
    }

    fn private_text(&self) -> String {
        let mut key = vec![ED25519];
        key.extend_from_slice(self.signing.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            hex_lower(&self.id()),
            BASE64.encode(key)
        )
    }

    fn parse_private(text: &str) -> Result<Self, JournalError> {
        let bad = || JournalError::Malformed("the log key file is not a PRIVATE+KEY line".into());
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(bad)?;
        // The name holds no '+' and the id is hex; the base64 key may hold '+'.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let key = BASE64.decode(key).map_err(|_| bad())?;
        let seed: [u8; 32] = match key.as_slice() {
            [ED25519, seed @ ..] => seed.try_into().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        let loaded = Self {
            name: name.to_owned(),
            signing: SigningKey::from_bytes(&seed),
        };
        if hex_lower(&loaded.id()) != id {
            return Err(JournalError::Malformed(
                "the log key file's key id does not match its key".into(),
            ));
        }
        Ok(loaded)
    }

    /// Reads the key from the data dir.
    pub fn load(data_dir: &Path) -> Result<Self, JournalError> {
        let path = data_dir.join(KEY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| JournalError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_private(&text)
    }

    /// Reads the key from the data dir, making one named `name` on first use.
    pub fn load_or_create(data_dir: &Path, name: &str) -> Result<Self, JournalError> {
        match Self::load(data_dir) {
            Err(JournalError::DataDir { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let key = Self::generate(name)?;
                key.save(data_dir)?;
                Ok(key)
            }
            other => other,
        }
    }

    /// Writes the key to the data dir, readable by its owner only, replacing any earlier key whole.
    pub fn save(&self, data_dir: &Path) -> Result<(), JournalError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join(KEY_FILE);
        let staged = data_dir.join(format!("{KEY_FILE}.new"));
        let io = |source| JournalError::DataDir {
            path: path.display().to_string(),
            source,
        };
        let _ = std::fs::remove_file(&staged);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)
            .map_err(io)?;
        file.write_all(self.private_text().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        std::fs::rename(&staged, &path).map_err(io)
    }

    /// The signature line this key adds to a note whose text is `text`.
    pub fn signature_line(&self, text: &str) -> String {
        let signature = self.signing.sign(text.as_bytes());
        let mut blob = self.id().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(blob))
    }

    /// `text` as a signed note, signed by this key.
    pub fn sign(&self, text: &str) -> String {
        format!("{text}\n{}", self.signature_line(text))
    }
}

/// A public key that checks signed notes.
#[derive(Clone, Debug)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses `<name>+<key id>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a verifier key is <name>+<key id>+<base64 key>".into());
        };
        if !valid_key_name(name) {
            return Err(format!("the key name {name:?} is not valid"));
        }
        let key = BASE64
            .decode(key)
            .map_err(|e| format!("the key is not base64: {e}"))?;
        let public: [u8; 32] = match key.as_slice() {
            [ED25519, public @ ..] => public
                .try_into()
                .map_err(|_| "an Ed25519 key is 32 bytes".to_string())?,
            _ => return Err("only Ed25519 keys (algorithm 1) are supported".into()),
        };
        let key = VerifyingKey::from_bytes(&public).map_err(|e| format!("bad Ed25519 key: {e}"))?;
        let expected = key_id(name, &public);
        if hex_lower(&expected) != id {
            return Err(format!(
                "the key id {id} does not match the key (expected {})",
                hex_lower(&expected)
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            id: expected,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that `note` carries a valid signature by this key; returns the signed text.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, String> {
        let split = note
            .rfind("\n\n")
            .ok_or("the note has no signature block (no empty line)")?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        let mut named_but_wrong = false;
        for line in signatures.lines() {
            let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
                return Err(format!("malformed signature line {line:?}"));
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(format!("malformed signature line {line:?}"));
            };
            if name != self.name {
                continue;
            }
            let blob = BASE64
                .decode(blob)
                .map_err(|_| format!("the signature by {name} is not base64"))?;
            if blob.len() != 68 || blob[..4] != self.id {
                named_but_wrong = true;
                continue;
            }
            let signature = Signature::from_slice(&blob[4..]).map_err(|e| e.to_string())?;
            return match self.key.verify(text.as_bytes(), &signature) {
                Ok(()) => Ok(text),
                Err(_) => Err(format!(
                    "the signature by {name}+{} does not match the note: it was altered or signed by another key",
                    hex_lower(&self.id)
                )),
            };
        }
        Err(if named_but_wrong {
            format!(
                "the note is signed by a different key named {}, not by {}+{}",
                self.name,
                self.name,
                hex_lower(&self.id)
            )
        } else {
            format!("the note carries no signature by {}", self.name)
        })
    }
}

/// A tlog checkpoint: the log's origin, its size and its root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body: the text that is signed.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or("no origin line")?;
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("the second line is not a tree size")?;
        let root = lines
            .next()
            .and_then(|r| BASE64.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
            .ok_or("the third line is not a base64 SHA-256 root hash")?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_is_caught() {
        let key = LogKey::generate("proctor/test").unwrap();
        let checkpoint = Checkpoint {
            origin: "proctor/test".into(),
            size: 7,
            root: [9u8; 32],
        };
        let note = key.sign(&checkpoint.text());
        let verifier = NoteVerifier::parse(&key.verifier_key()).unwrap();
        let text = verifier.verify(&note).unwrap();
        assert_eq!(Checkpoint::parse(text).unwrap(), checkpoint);
        let altered = note.replacen("\n7\n", "\n8\n", 1);
        assert!(verifier
            .verify(&altered)
            .unwrap_err()
            .contains("does not match"));
        let other = LogKey::generate("proctor/test").unwrap();
        let resigned = other.sign(&checkpoint.text());
        assert!(verifier
            .verify(&resigned)
            .unwrap_err()
            .contains("different key"));
    }

    #[test]
    fn the_key_survives_a_round_trip_through_its_file() {
        // Enough keys that some base64 holds '+', which must not be taken for a separator.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let key = LogKey::load_or_create(dir.path(), "proctor/test").unwrap();
            let again = LogKey::load_or_create(dir.path(), "ignored").unwrap();
            assert_eq!(key.verifier_key(), again.verifier_key());
            NoteVerifier::parse(&key.verifier_key()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        LogKey::load_or_create(dir.path(), "proctor/test").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_verifier_key_with_the_wrong_id_is_refused() {
        let key = LogKey::generate("proctor/test").unwrap();
        let verifier = key.verifier_key();
        let mut parts: Vec<&str> = verifier.split('+').collect();
        parts[1] = "00000000";
        assert!(NoteVerifier::parse(&parts.join("+")).is_err());
    }
}
