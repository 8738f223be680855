//! What a MySQL or MariaDB server sends, as the relay reads it: a stream of packets, framed, each
//! read as an authentication reply, OK, ERR, EOF, greeting, prepare answer and column definition;
//! column definitions set the types by which the following rows are read, in text and in binary, and
//! each binary cell is decoded to JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_mysql::codec::{
    binary_row, eof_status, parse_auth_reply, parse_column_count, parse_column_definition,
    parse_err, parse_local_infile_request, parse_ok, parse_ok_with, parse_prepare_ok, take_packet,
    text_row, Greeting, BINARY_CHARSET, UNSIGNED_FLAG,
};
use proctor_mysql::values::{decode_binary, decode_text};

const MAX_PAYLOAD: usize = 64 * 1024;
/// A small sample budget, so that cutting values is exercised too.
const SAMPLE_BYTES: usize = 256;
const MAX_COLUMNS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let mut columns: Vec<(u8, bool, bool)> = Vec::new();
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(packet)) = take_packet(&mut buf, MAX_PAYLOAD) {
        let payload = &packet.payload[..];
        let _ = parse_auth_reply(payload);
        let _ = parse_ok(payload);
        let _ = parse_ok_with(payload, true);
        let _ = parse_err(payload);
        let _ = eof_status(payload);
        let _ = Greeting::parse(payload);
        let _ = parse_prepare_ok(payload);
        let _ = parse_column_count(payload);
        let _ = parse_local_infile_request(payload);
        if let Ok(column) = parse_column_definition(payload) {
            if columns.len() == MAX_COLUMNS {
                columns.clear();
            }
            columns.push((
                column.column_type,
                column.flags & UNSIGNED_FLAG != 0,
                column.charset == BINARY_CHARSET,
            ));
        }
        if let Ok(cells) = text_row(payload, columns.len()) {
            for (cell, &(_, _, binary)) in cells.iter().zip(&columns) {
                if let Some(cell) = cell {
                    let _ = decode_text(binary, cell, SAMPLE_BYTES);
                }
            }
        }
        let types: Vec<u8> = columns
            .iter()
            .map(|&(column_type, _, _)| column_type)
            .collect();
        if let Ok(cells) = binary_row(payload, &types) {
            for (cell, &(column_type, unsigned, binary)) in cells.iter().zip(&columns) {
                if let Some(cell) = cell {
                    let _ = decode_binary(column_type, unsigned, binary, cell, SAMPLE_BYTES);
                }
            }
        }
        if let Some((&count, types)) = payload.split_first() {
            let types = &types[..types.len().min(usize::from(count))];
            if let Ok(cells) = binary_row(payload, types) {
                for (cell, &column_type) in cells.iter().zip(types) {
                    if let Some(cell) = cell {
                        let _ = decode_binary(column_type, false, false, cell, SAMPLE_BYTES);
                    }
                }
            }
        }
    }
});
