//! Identities and personal access tokens: creation, hashing, and the SCRAM-SHA-256 verifiers that let
//! PostgreSQL clients authenticate without the token crossing the wire.
//!
//! A token is `prt_<id>_<secret>`: the id names it in listings and revocation, the secret is 32 random
//! bytes. The store keeps only its SHA-256 (for cleartext and API checks) and its SCRAM StoredKey and
//! ServerKey, derived with the identity's salt; the token itself is shown once and never kept.

use base64::Engine;
use hmac::{Hmac, Mac};
use proctor_journal::{now_ns, IdentityRow, JournalError, Store, TokenRow};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Secret;

/// PBKDF2 rounds for SCRAM verifiers: PostgreSQL's own default.
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The two keys a SCRAM-SHA-256 server needs, derived from a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramVerifier {
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Derives StoredKey and ServerKey as RFC 5802 and RFC 7677 define them.
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac_sha256(&salted, b"Client Key");
    ScramVerifier {
        stored_key: Sha256::digest(client_key).into(),
        server_key: hmac_sha256(&salted, b"Server Key"),
    }
}

/// Whether two secrets (tokens, proofs, keys, MACs) are equal, in time that depends on their lengths
/// only, never on where they first differ.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// SHA1(SHA1(token)): what MySQL's `mysql_native_password` stores. It checks a client's scramble
/// without holding the token, and the scramble proves knowledge of SHA1(token), which this does
/// not give.
pub fn mysql_native_hash(token: &str) -> [u8; 20] {
    use sha1::Digest as _;
    sha1::Sha1::digest(sha1::Sha1::digest(token.as_bytes())).into()
}

pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// Makes a new token for `identity` with `salt`; returns the token (to show once) and its stored row.
pub fn new_token(identity: &str, salt: &[u8]) -> (Secret, TokenRow) {
    let id = hex::encode(random_bytes::<4>());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let token = format!("prt_{id}_{secret}");
    let verifier = scram_verifier(&token, salt, SCRAM_ITERATIONS);
    let row = TokenRow {
        id,
        identity: identity.to_owned(),
        sha256: token_sha256(&token).to_vec(),
        scram_iterations: SCRAM_ITERATIONS,
        scram_stored_key: verifier.stored_key.to_vec(),
        scram_server_key: verifier.server_key.to_vec(),
        mysql_native_hash: Some(mysql_native_hash(&token).to_vec()),
        created_at: now_ns(),
        revoked_at: None,
    };
    (Secret::new(token), row)
}

/// Creates an identity in the store and its first token. Returns the token, to be shown once.
pub fn add_identity(
    store: &Store,
    name: &str,
    groups: &[String],
) -> Result<(Secret, TokenRow), JournalError> {
    let identity = IdentityRow {
        name: name.to_owned(),
        groups: groups.to_vec(),
        scram_salt: random_bytes::<16>().to_vec(),
        created_at: now_ns(),
    };
    let (token, row) = new_token(name, &identity.scram_salt);
    store.add_identity(&identity, &row)?;
    Ok((token, row))
}

/// Creates another token for an existing identity.
pub fn create_token(store: &Store, name: &str) -> Result<(Secret, TokenRow), JournalError> {
    let identity = store.identity(name)?.ok_or_else(|| {
        JournalError::NotFound(format!(
            "no identity {name:?}; create it with `proctor identity add {name}`"
        ))
    })?;
    let (token, row) = new_token(name, &identity.scram_salt);
    store.add_token(&row)?;
    Ok((token, row))
}

/// The stored identity an active token belongs to.
pub fn identity_of_token(store: &Store, token: &str) -> Result<String, crate::AuthFailure> {
    let store_error = |e: JournalError| crate::AuthFailure::Store(e.to_string());
    match store
        .active_token_by_hash(&token_sha256(token))
        .map_err(store_error)?
    {
        Some(row) => Ok(row.identity),
        None => Err(crate::AuthFailure::WrongToken),
    }
}

/// The salt used for an identity that exists only in the configuration file. It is public in SCRAM
/// anyway; deriving it from the name keeps it stable across restarts without storing anything.
pub fn config_identity_salt(name: &str) -> Vec<u8> {
    Sha256::digest(format!("proctor/config-identity-salt/{name}").as_bytes())[..16].to_vec()
}

/// The salt offered to a name that matches no identity, so that a failed exchange looks like any other.
pub fn unknown_identity_salt(name: &str) -> Vec<u8> {
    Sha256::digest(format!("proctor/unknown-identity-salt/{name}").as_bytes())[..16].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifier_matches_rfc7677_test_vector() {
        // RFC 7677 section 3's password, salt and iterations; the expected keys were computed
        // independently with Python's hashlib (pbkdf2_hmac, hmac, sha256).
        let salt = base64::engine::general_purpose::STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap();
        let verifier = scram_verifier("pencil", &salt, 4096);
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(
            b64.encode(verifier.stored_key),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
        assert_eq!(
            b64.encode(verifier.server_key),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn secrets_are_equal_only_byte_for_byte() {
        let token = b"prt_0123abcd_secret";
        assert!(secrets_equal(token, b"prt_0123abcd_secret"));
        assert!(!secrets_equal(token, b"prt_0123abcd_secreT"), "same length");
        assert!(!secrets_equal(token, b"Prt_0123abcd_secret"), "same length");
        assert!(!secrets_equal(token, b"prt_0123abcd_secre"), "a prefix");
        assert!(!secrets_equal(token, b"prt_0123abcd_secret!"), "longer");
        assert!(!secrets_equal(token, b""));
        assert!(secrets_equal(b"", b""));
    }

    #[test]
    fn tokens_are_stored_hashed_and_carry_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let (token, row) = add_identity(&store, "alice", &["dba".into()]).unwrap();
        assert!(token.expose().starts_with(&format!("prt_{}_", row.id)));
        let found = store
            .active_token_by_hash(&token_sha256(token.expose()))
            .unwrap()
            .unwrap();
        assert_eq!(found.identity, "alice");
        let raw = std::fs::read(store.path()).unwrap();
        let secret = token.expose().splitn(3, '_').nth(2).unwrap();
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
}
