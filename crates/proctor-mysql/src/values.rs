//! Turns MySQL and MariaDB values into JSON for the journal: binary-protocol values (prepared
//! statements' parameters and rows) by column type, text-protocol cells as the text they are. It owns
//! only the decoding of one value's bytes; cutting values out of packets is [`crate::codec`]'s, and
//! masking and recording are the relay's.
//!
//! Written by hand for the reason the codec is: the client-oriented crates that decode these values
//! (`mysql_common`) come with a whole client. A value of the wrong length for its type is kept as
//! hex under "invalid", never a panic. Each string is cut at a caller-given size, so that a huge
//! cell never becomes a huge event.

use serde_json::{json, Value};

use crate::codec::{
    TYPE_BIT, TYPE_BLOB, TYPE_DATE, TYPE_DATETIME, TYPE_DECIMAL, TYPE_DOUBLE, TYPE_ENUM,
    TYPE_FLOAT, TYPE_GEOMETRY, TYPE_INT24, TYPE_JSON, TYPE_LONG, TYPE_LONGLONG, TYPE_LONG_BLOB,
    TYPE_MEDIUM_BLOB, TYPE_NEWDECIMAL, TYPE_NULL, TYPE_SET, TYPE_SHORT, TYPE_STRING, TYPE_TIME,
    TYPE_TIMESTAMP, TYPE_TINY, TYPE_TINY_BLOB, TYPE_VARCHAR, TYPE_VAR_STRING, TYPE_YEAR,
};

/// How many bytes of a malformed value are kept in hex.
const INVALID_SHOWN: usize = 64;

/// Decodes one binary-protocol value (as returned by `binary_row` / `parse_execute`): integers
/// (signed or unsigned by flag) as numbers, FLOAT/DOUBLE as numbers (non-finite ones as strings),
/// DECIMAL/NEWDECIMAL as strings, DATE as "YYYY-MM-DD", DATETIME/TIMESTAMP as
/// "YYYY-MM-DD HH:MM:SS[.ffffff]", TIME as "[-]HH:MM:SS[.ffffff]" with its days counted in the hours
/// (as MySQL prints it), YEAR as a number, strings/JSON/ENUM/SET as text, and BLOB/BIT/GEOMETRY and
/// binary-charset strings as text if valid UTF-8, else {"hex": ...}. Integers a double cannot hold
/// exactly are strings, so that the journal never rounds them. Strings are cut to `budget` bytes.
pub fn decode_binary(
    column_type: u8,
    unsigned: bool,
    binary_charset: bool,
    value: &[u8],
    budget: usize,
) -> Value {
    let decoded = match column_type {
        TYPE_NULL => Some(Value::Null),
        TYPE_TINY => {
            fixed::<1>(value).map(|[b]| integer(unsigned, u64::from(b), i64::from(b as i8)))
        }
        TYPE_SHORT => fixed(value).map(|b| {
            integer(
                unsigned,
                u64::from(u16::from_le_bytes(b)),
                i64::from(i16::from_le_bytes(b)),
            )
        }),
        TYPE_YEAR => fixed(value).map(|b| Value::from(u16::from_le_bytes(b))),
        TYPE_LONG | TYPE_INT24 => fixed(value).map(|b| {
            integer(
                unsigned,
                u64::from(u32::from_le_bytes(b)),
                i64::from(i32::from_le_bytes(b)),
            )
        }),
        TYPE_LONGLONG => {
            fixed(value).map(|b| integer(unsigned, u64::from_le_bytes(b), i64::from_le_bytes(b)))
        }
        TYPE_FLOAT => fixed(value).map(|b| float_f32(f32::from_le_bytes(b))),
        TYPE_DOUBLE => fixed(value).map(|b| float(f64::from_le_bytes(b))),
        TYPE_DATE => date_time(value, false),
        TYPE_DATETIME | TYPE_TIMESTAMP => date_time(value, true),
        TYPE_TIME => time(value),
        TYPE_BIT | TYPE_GEOMETRY => Some(utf8_or_hex(value, budget)),
        _ if binary_charset => Some(utf8_or_hex(value, budget)),
        _ => Some(text(value, budget)),
    };
    decoded.unwrap_or_else(|| invalid(value))
}

/// A text-protocol cell: the text as sent (numbers included), except that a binary-charset cell
/// that is not UTF-8 becomes {"hex": ...}. Cut to `budget` bytes like [`decode_binary`].
pub fn decode_text(binary_charset: bool, value: &[u8], budget: usize) -> Value {
    if binary_charset {
        utf8_or_hex(value, budget)
    } else {
        text(value, budget)
    }
}

/// Whether a binary value of this type is text that can be masked in place: its content bytes are
/// the text itself (strings, JSON, ENUM, SET, decimals, blobs).
pub fn is_text_type(column_type: u8) -> bool {
    matches!(
        column_type,
        TYPE_VARCHAR
            | TYPE_VAR_STRING
            | TYPE_STRING
            | TYPE_ENUM
            | TYPE_SET
            | TYPE_JSON
            | TYPE_DECIMAL
            | TYPE_NEWDECIMAL
            | TYPE_TINY_BLOB
            | TYPE_MEDIUM_BLOB
            | TYPE_LONG_BLOB
            | TYPE_BLOB
    )
}

/// The content bytes that carry a masked text value of a text type in a binary row or parameter
/// (`encode_binary_row` adds the length), or None for a type whose value is not text.
pub fn encode_masked_text(column_type: u8, masked: &str) -> Option<Vec<u8>> {
    is_text_type(column_type).then(|| masked.as_bytes().to_vec())
}

fn fixed<const N: usize>(value: &[u8]) -> Option<[u8; N]> {
    value.try_into().ok()
}

/// The largest integer a double holds exactly.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

fn integer(unsigned: bool, as_unsigned: u64, as_signed: i64) -> Value {
    if unsigned {
        if as_unsigned <= MAX_EXACT_INTEGER {
            Value::from(as_unsigned)
        } else {
            Value::String(as_unsigned.to_string())
        }
    } else if as_signed.unsigned_abs() <= MAX_EXACT_INTEGER {
        Value::from(as_signed)
    } else {
        Value::String(as_signed.to_string())
    }
}

fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map_or_else(|| Value::String(value.to_string()), Value::Number)
}

/// A FLOAT as the shortest decimal that reads back as the same f32 (1.1, not 1.100000023841858).
fn float_f32(value: f32) -> Value {
    match value.to_string().parse::<f64>() {
        Ok(widened) if value.is_finite() => float(widened),
        _ => Value::String(value.to_string()),
    }
}

fn fraction(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    }
}

fn le_u16(bytes: &[u8]) -> Option<u16> {
    fixed(bytes).map(u16::from_le_bytes)
}

fn le_u32(bytes: &[u8]) -> Option<u32> {
    fixed(bytes).map(u32::from_le_bytes)
}

/// DATE, DATETIME, TIMESTAMP: 0, 4 (date), 7 (and time) or 11 (and microseconds) bytes.
fn date_time(value: &[u8], with_time: bool) -> Option<Value> {
    let (year, month, day) = match value.len() {
        0 => (0, 0, 0),
        4 | 7 | 11 => (le_u16(value.get(..2)?)?, *value.get(2)?, *value.get(3)?),
        _ => return None,
    };
    let date = format!("{year:04}-{month:02}-{day:02}");
    if !with_time {
        return Some(Value::String(date));
    }
    let (hour, minute, second) = match value.get(4..7) {
        Some(&[h, m, s]) => (h, m, s),
        _ => (0, 0, 0),
    };
    let micros = match value.get(7..11) {
        Some(bytes) => le_u32(bytes)?,
        None => 0,
    };
    Some(Value::String(format!(
        "{date} {hour:02}:{minute:02}:{second:02}{}",
        fraction(micros)
    )))
}

/// TIME: 0, 8 (sign, days, hours, minutes, seconds) or 12 (and microseconds) bytes, printed with the
/// days counted in the hours, as MySQL prints "838:59:59".
fn time(value: &[u8]) -> Option<Value> {
    if value.is_empty() {
        return Some(Value::String("00:00:00".to_owned()));
    }
    if value.len() != 8 && value.len() != 12 {
        return None;
    }
    let negative = *value.first()? == 1;
    let days = u64::from(le_u32(value.get(1..5)?)?);
    let hours = days * 24 + u64::from(*value.get(5)?);
    let (minute, second) = (*value.get(6)?, *value.get(7)?);
    let micros = match value.get(8..12) {
        Some(bytes) => le_u32(bytes)?,
        None => 0,
    };
    let sign = if negative { "-" } else { "" };
    Some(Value::String(format!(
        "{sign}{hours:02}:{minute:02}:{second:02}{}",
        fraction(micros)
    )))
}

/// The note that ends a cut value: how long it was.
fn cut_note(total: usize) -> String {
    format!("…[{total} bytes]")
}

/// Text, invalid UTF-8 replaced, cut to `budget` bytes on a character boundary.
fn text(value: &[u8], budget: usize) -> Value {
    if value.len() <= budget {
        if let Ok(whole) = std::str::from_utf8(value) {
            return Value::String(whole.to_owned());
        }
    }
    let mut shown = &value[..value.len().min(budget)];
    if shown.len() < value.len() {
        if let Err(error) = std::str::from_utf8(shown) {
            if error.error_len().is_none() {
                shown = &shown[..error.valid_up_to()];
            }
        }
    }
    let decoded = String::from_utf8_lossy(shown);
    let mut end = decoded.len().min(budget);
    while !decoded.is_char_boundary(end) {
        end -= 1;
    }
    let mut kept = decoded[..end].to_owned();
    if shown.len() < value.len() || end < decoded.len() {
        kept.push_str(&cut_note(value.len()));
    }
    Value::String(kept)
}

/// Text if the whole value is UTF-8, else its bytes in hex, both cut to `budget` (in hex, half as
/// many bytes, so that the text stays within it).
fn utf8_or_hex(value: &[u8], budget: usize) -> Value {
    if std::str::from_utf8(value).is_ok() {
        return text(value, budget);
    }
    let shown = &value[..value.len().min(budget / 2)];
    let mut hex = hex::encode(shown);
    if shown.len() < value.len() {
        hex.push_str(&cut_note(value.len()));
    }
    json!({ "hex": hex })
}

fn invalid(value: &[u8]) -> Value {
    json!({ "invalid": hex::encode(&value[..value.len().min(INVALID_SHOWN)]) })
}
