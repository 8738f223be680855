//! What a MySQL or MariaDB client sends: a stream of packets, framed as the listener frames them,
//! the first read as the handshake response and the others as commands; a COM_STMT_EXECUTE is read
//! for a parameter count (at most 100), previous types and long-data flags taken from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_mysql::codec::{
    parse_client_hello, parse_execute, parse_send_long_data, take_packet, COM_STMT_EXECUTE,
    COM_STMT_SEND_LONG_DATA,
};

const MAX_PAYLOAD: usize = 64 * 1024;
const MAX_PARAMS: usize = 100;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, stream)) = data.split_first() else {
        return;
    };
    let param_count = usize::from(shape) % (MAX_PARAMS + 1);
    let previous_types: Vec<(u8, bool)> = (0..param_count)
        .map(|i| (stream.get(i).copied().unwrap_or(0), i % 2 == 0))
        .collect();
    let long_data: Vec<bool> = (0..param_count)
        .map(|i| i % 7 == usize::from(shape % 7))
        .collect();
    let mut buf = bytes::BytesMut::from(stream);
    let mut first = true;
    while let Ok(Some(packet)) = take_packet(&mut buf, MAX_PAYLOAD) {
        let payload = &packet.payload[..];
        if first {
            let _ = parse_client_hello(payload);
            first = false;
            continue;
        }
        match payload.first() {
            Some(&COM_STMT_EXECUTE) => {
                let _ = parse_execute(payload, param_count, &previous_types, &long_data);
                let _ = parse_execute(payload, param_count, &[], &[]);
            }
            Some(&COM_STMT_SEND_LONG_DATA) => {
                let _ = parse_send_long_data(payload);
            }
            _ => {
                let _ = parse_client_hello(payload);
            }
        }
    }
});
