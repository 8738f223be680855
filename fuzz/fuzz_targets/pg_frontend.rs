//! What a client sends once its session is up: a stream of messages, framed and decoded as the relay
//! does, until the bytes run out or a frame is refused. The password-phase messages (cleartext and
//! SASL) are read the way the listener reads them, from the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_pg::codec::{frame, parse_frontend, Reader};

/// The smallest `postgres.max_message_bytes` worth testing: fuzz inputs are smaller still.
const MAX_MESSAGE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((tag, len))) = frame(rest, MAX_MESSAGE) {
        let (message, after) = rest.split_at(len);
        let _ = parse_frontend(message);
        if tag == b'p' {
            let mut r = Reader::new(&message[5..]);
            if r.cstr().is_ok() {
                let _ = r.i32();
                let _ = r.rest();
            }
        }
        rest = after;
    }
    let _ = parse_frontend(data);
});
