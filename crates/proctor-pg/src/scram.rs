//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL clients speak it.
//!
//! Written by hand: the maintained PostgreSQL crates implement only the client side, and the server side
//! is a few lines over `hmac` and `sha2`. Channel binding is not offered (no `-PLUS` mechanism), so a
//! client's `y` flag is accepted and `p` is refused, as RFC 5802 requires.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use proctor_core::identity::{hmac_sha256, secrets_equal};
use proctor_core::{ScramCredentials, ScramKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const MECHANISM: &str = "SCRAM-SHA-256";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding was requested but is not offered")]
    ChannelBinding,
    #[error("the proof matches no token of this identity")]
    NoMatch,
}

/// One exchange, after the client's first message.
pub struct ScramExchange {
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramExchange {
    /// Reads the client-first message and returns the exchange with the server-first message to send.
    pub fn start(client_first: &[u8], credentials: &ScramCredentials) -> Result<Self, ScramError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("unknown channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(ScramError::Malformed("bad authorization identity"));
        }
        let client_nonce = bare
            .split(',')
            .find_map(|attr| attr.strip_prefix("r="))
            .filter(|nonce| {
                !nonce.is_empty()
                    && nonce
                        .bytes()
                        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
            })
            .ok_or(ScramError::Malformed("no client nonce"))?;
        let mut random = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut random);
        let nonce = format!("{client_nonce}{}", B64.encode(random));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credentials.salt),
            credentials.iterations
        );
        Ok(Self {
            gs2_header: format!("{flag},{authzid},"),
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
        })
    }

    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks the client-final message against every key; returns the matching key and the
    /// server-final message that proves Proctor knew the verifier.
    pub fn finish<'k>(
        &self,
        client_final: &[u8],
        keys: &'k [ScramKey],
    ) -> Result<(&'k ScramKey, String), ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let binding = binding.ok_or(ScramError::Malformed("no channel binding attribute"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::Malformed(
                "channel binding attribute does not match",
            ));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed("proof has the wrong length"));
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        for key in keys {
            let signature = hmac_sha256(&key.stored_key, auth_message.as_bytes());
            let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
            if secrets_equal(&Sha256::digest(&client_key), &key.stored_key) {
                let server_signature = hmac_sha256(&key.server_key, auth_message.as_bytes());
                return Ok((key, format!("v={}", B64.encode(server_signature))));
            }
        }
        Err(ScramError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_core::identity::scram_verifier;

    fn credentials(password: &str, salt_b64: &str) -> ScramCredentials {
        let salt = B64.decode(salt_b64).unwrap();
        let verifier = scram_verifier(password, &salt, 4096);
        ScramCredentials {
            identity: None,
            salt,
            iterations: 4096,
            keys: vec![
                ScramKey {
                    token_id: "other".into(),
                    stored_key: vec![0; 32],
                    server_key: vec![0; 32],
                    revoked: false,
                },
                ScramKey {
                    token_id: "t1".into(),
                    stored_key: verifier.stored_key.to_vec(),
                    server_key: verifier.server_key.to_vec(),
                    revoked: false,
                },
            ],
        }
    }

    /// RFC 7677 section 3's exchange, with the server nonce the RFC used.
    #[test]
    fn rfc7677_exchange_verifies_and_signs() {
        let creds = credentials("pencil", "W22ZaJ0SNY7soEsUEjb6gQ==");
        let mut exchange =
            ScramExchange::start(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &creds).unwrap();
        exchange.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        exchange.server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into();
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (key, server_final) = exchange.finish(client_final, &creds.keys).unwrap();
        assert_eq!(key.token_id, "t1");
        assert_eq!(
            server_final,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let (without_proof, proof) = std::str::from_utf8(client_final)
            .unwrap()
            .rsplit_once(",p=")
            .unwrap();
        let mut altered = B64.decode(proof).unwrap();
        altered[31] ^= 1;
        let altered = format!("{without_proof},p={}", B64.encode(&altered));
        assert!(matches!(
            exchange.finish(altered.as_bytes(), &creds.keys),
            Err(ScramError::NoMatch)
        ));
        let short = format!("{without_proof},p={}", B64.encode([0u8; 31]));
        assert!(matches!(
            exchange.finish(short.as_bytes(), &creds.keys),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn a_wrong_proof_or_nonce_fails() {
        let creds = credentials("pencil", "W22ZaJ0SNY7soEsUEjb6gQ==");
        let exchange = ScramExchange::start(b"n,,n=,r=abc", &creds).unwrap();
        let nonce = exchange.nonce.clone();
        let zero_proof = B64.encode([0u8; 32]);
        let wrong = format!("c=biws,r={nonce},p={zero_proof}");
        assert!(matches!(
            exchange.finish(wrong.as_bytes(), &creds.keys[1..]),
            Err(ScramError::NoMatch)
        ));
        let stale = format!("c=biws,r=abc,p={zero_proof}");
        assert!(matches!(
            exchange.finish(stale.as_bytes(), &creds.keys),
            Err(ScramError::Malformed(_))
        ));
        assert_eq!(
            ScramExchange::start(b"p=tls-server-end-point,,n=,r=abc", &creds).err(),
            Some(ScramError::ChannelBinding)
        );
        assert!(ScramExchange::start(b"garbage", &creds).is_err());
    }
}
