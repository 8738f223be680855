//! The password exchanges of MySQL and MariaDB authentication plugins: computing a client's answer to
//! a server's nonce (Proctor logging in upstream) and checking a client's answer (Proctor as the
//! server). It owns only the arithmetic; which plugin to run, and the packets that carry the answers,
//! are the server's and [`crate::codec`]'s.
//!
//! Written by hand because the arithmetic is a few hashes, which the client-oriented crates
//! (`mysql_common`) bury in a whole client. A nonce is used for its first 20 bytes, as servers send
//! it with a trailing NUL.

use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";
pub const CLEAR_PASSWORD: &str = "mysql_clear_password";

/// caching_sha2_password, client to server: send the server's RSA public key.
pub const REQUEST_PUBLIC_KEY: u8 = 0x02;
/// caching_sha2_password, server to client after the scramble: the cached hash matched, an OK follows.
pub const FAST_AUTH_OK: u8 = 0x03;
/// caching_sha2_password, server to client after the scramble: send the password itself (over TLS).
pub const PERFORM_FULL_AUTH: u8 = 0x04;

/// The bytes of a nonce that the hashes use.
const NONCE_LEN: usize = 20;

fn nonce_part(nonce: &[u8]) -> &[u8] {
    &nonce[..nonce.len().min(NONCE_LEN)]
}

fn xor<const N: usize>(left: [u8; N], right: [u8; N]) -> [u8; N] {
    let mut out = left;
    out.iter_mut().zip(right).for_each(|(l, r)| *l ^= r);
    out
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    parts.iter().for_each(|part| hasher.update(part));
    hasher.finalize().into()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    parts.iter().for_each(|part| hasher.update(part));
    hasher.finalize().into()
}

/// mysql_native_password: SHA1(password) XOR SHA1(nonce[..20] + SHA1(SHA1(password))). An empty
/// password is an empty response.
pub fn native_password_response(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = sha1(&[password]);
    let stage2 = sha1(&[&stage1]);
    xor(stage1, sha1(&[nonce_part(nonce), &stage2])).to_vec()
}

/// The verifier a server stores: SHA1(SHA1(password)).
pub fn native_password_hash(password: &[u8]) -> [u8; 20] {
    sha1(&[&sha1(&[password])])
}

/// Checks a client's mysql_native_password response against the stored hash, in constant time: the
/// response XOR SHA1(nonce + hash) must be a value whose SHA1 is the hash. A response that is not 20
/// bytes (an empty one included: an account without a password has no hash) does not match.
pub fn native_password_verify(stored_hash: &[u8; 20], nonce: &[u8], response: &[u8]) -> bool {
    let Ok(response) = <[u8; 20]>::try_from(response) else {
        return false;
    };
    let stage1 = xor(response, sha1(&[nonce_part(nonce), stored_hash]));
    sha1(&[&stage1]).ct_eq(stored_hash).into()
}

/// caching_sha2_password's scramble: XOR(SHA256(password), SHA256(SHA256(SHA256(password)) + nonce)).
/// An empty password is an empty response.
pub fn caching_sha2_response(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let hashed = sha256(&[password]);
    let double = sha256(&[&hashed]);
    xor(hashed, sha256(&[&double, nonce_part(nonce)])).to_vec()
}

/// What mysql_clear_password (and caching_sha2_password's full authentication) sends: the password
/// and a NUL.
pub fn clear_password_response(password: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(password.len() + 1);
    out.extend_from_slice(password);
    out.push(0);
    out
}

/// The password in a client's clear-text answer: up to its NUL, or all of it without one.
pub fn parse_clear_password(response: &[u8]) -> &[u8] {
    response.split(|&b| b == 0).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nonce of the vectors below: bytes 1 to 20.
    fn nonce() -> Vec<u8> {
        (1..=20).collect()
    }

    // Expected bytes computed with Python's hashlib:
    //   s1 = sha1(b"secret"); s2 = sha1(s1)
    //   native = s1 XOR sha1(bytes(range(1, 21)) + s2)
    //   h1 = sha256(b"secret"); sha2 = h1 XOR sha256(sha256(h1) + bytes(range(1, 21)))
    // s2 is also the well-known `*14E65567...` hash of "secret" in mysql.user.
    const SECRET_NATIVE: &str = "b32bb3a583e1340c0a1108d58b1be49781ad8c2f";
    const SECRET_HASH: &str = "14e65567abdb5135d0cfd9a70b3032c179a49ee7";
    const SECRET_SHA2: &str = "746ebe205d56a0707acb3e796e834e0dd7b1d61743b26bd5202c7a623230c7c9";

    #[test]
    fn native_password_matches_the_known_vector() {
        assert_eq!(
            hex::encode(native_password_response(b"secret", &nonce())),
            SECRET_NATIVE
        );
        assert_eq!(hex::encode(native_password_hash(b"secret")), SECRET_HASH);
    }

    #[test]
    fn a_trailing_nul_of_the_nonce_is_ignored() {
        let mut with_nul = nonce();
        with_nul.push(0);
        assert_eq!(
            native_password_response(b"secret", &with_nul),
            native_password_response(b"secret", &nonce())
        );
        assert_eq!(
            caching_sha2_response(b"secret", &with_nul),
            caching_sha2_response(b"secret", &nonce())
        );
    }

    #[test]
    fn empty_passwords_give_empty_responses() {
        assert!(native_password_response(b"", &nonce()).is_empty());
        assert!(caching_sha2_response(b"", &nonce()).is_empty());
    }

    #[test]
    fn native_password_verifies_the_right_response_only() {
        let hash = native_password_hash(b"secret");
        let response = native_password_response(b"secret", &nonce());
        assert!(native_password_verify(&hash, &nonce(), &response));
        let wrong = native_password_response(b"Secret", &nonce());
        assert!(!native_password_verify(&hash, &nonce(), &wrong));
        let other_nonce: Vec<u8> = (2..=21).collect();
        assert!(!native_password_verify(&hash, &other_nonce, &response));
        assert!(!native_password_verify(&hash, &nonce(), &response[..19]));
        assert!(!native_password_verify(&hash, &nonce(), b""));
    }

    #[test]
    fn caching_sha2_matches_the_known_vector() {
        assert_eq!(
            hex::encode(caching_sha2_response(b"secret", &nonce())),
            SECRET_SHA2
        );
    }

    #[test]
    fn clear_passwords_round_trip() {
        let sent = clear_password_response(b"pa ss");
        assert_eq!(sent, b"pa ss\0");
        assert_eq!(parse_clear_password(&sent), b"pa ss");
        assert_eq!(parse_clear_password(b"no-nul"), b"no-nul");
        assert_eq!(parse_clear_password(b""), b"");
    }
}
