//! The SCRAM-SHA-256 exchange on the server side: a SASLInitialResponse body (mechanism, length,
//! client-first message), then, after the first line break, the client-final message. The
//! server's nonce is random, so `@NONCE@` in the client-final message stands for it, letting the
//! fuzzer reach the proof check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_core::{ScramCredentials, ScramKey};
use proctor_pg::codec::Reader;
use proctor_pg::scram::ScramExchange;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (initial, client_final) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let mut r = Reader::new(initial);
    if r.cstr().is_err() || r.i32().is_err() {
        return;
    }
    let credentials = ScramCredentials {
        identity: None,
        salt: b"fuzzing salt".to_vec(),
        iterations: 4096,
        keys: vec![ScramKey {
            token_id: "t1".into(),
            stored_key: vec![7; 32],
            server_key: vec![9; 32],
            revoked: false,
        }],
    };
    let Ok(exchange) = ScramExchange::start(r.rest(), &credentials) else {
        return;
    };
    let nonce = exchange
        .server_first()
        .strip_prefix("r=")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default()
        .as_bytes();
    let mut last = Vec::with_capacity(client_final.len() + nonce.len());
    let mut rest = client_final;
    while let Some(at) = rest.windows(7).position(|w| w == b"@NONCE@") {
        last.extend_from_slice(&rest[..at]);
        last.extend_from_slice(nonce);
        rest = &rest[at + 7..];
    }
    last.extend_from_slice(rest);
    let _ = exchange.finish(&last, &credentials.keys);
});
