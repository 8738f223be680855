//! What the target database sends: a stream of messages, framed and decoded as the relay does, each
//! DataRow's cells decoded by the types and formats of the RowDescription before it, COPY data as
//! binary COPY tuples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_pg::codec::{self, frame};
use proctor_pg::values;

const MAX_MESSAGE: usize = 64 * 1024;
/// A small sample budget, so that cutting values is exercised too.
const SAMPLE_BYTES: usize = 256;

fuzz_target!(|data: &[u8]| {
    let mut columns: Vec<(u32, bool)> = Vec::new();
    let mut rest = data;
    while let Ok(Some((tag, len))) = frame(rest, MAX_MESSAGE) {
        let (message, after) = rest.split_at(len);
        let body = &message[5..];
        match tag {
            b'T' => {
                if let Ok(fields) = codec::row_description(body) {
                    columns = fields.iter().map(|f| (f.type_oid, f.format == 1)).collect();
                }
            }
            b'D' => {
                if let Ok(row) = codec::data_row(body) {
                    for (i, cell) in row.enumerate() {
                        let Ok(cell) = cell else { break };
                        let (type_oid, binary) = columns.get(i).copied().unwrap_or((0, false));
                        let mut value = values::decode(type_oid, binary, cell, SAMPLE_BYTES);
                        proctor_core::results::cut_strings(&mut value, SAMPLE_BYTES / 2);
                    }
                }
            }
            b't' => {
                let _ = codec::parameter_description(body);
            }
            b'C' => {
                let _ = codec::command_tag(body);
            }
            b'E' | b'N' => {
                let _ = codec::error_fields(body);
            }
            b'A' => {
                let _ = codec::notification(body);
            }
            b'd' => {
                let _ = values::binary_copy_tuples(body, SAMPLE_BYTES);
            }
            _ => {}
        }
        rest = after;
    }
});
