//! The first packet of a PostgreSQL connection (startup, SSL and GSS requests, cancel), as the
//! listener reads it: a body of at most the protocol's startup limit after the length word.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_pg::codec::{parse_startup, MAX_STARTUP_PACKET};

fuzz_target!(|data: &[u8]| {
    let _ = parse_startup(&data[..data.len().min(MAX_STARTUP_PACKET - 4)]);
});
