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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{binary_row, encode_binary_row, TYPE_NEWDATE};

    const BUDGET: usize = 1024;

    fn binary(column_type: u8, unsigned: bool, value: &[u8]) -> Value {
        decode_binary(column_type, unsigned, false, value, BUDGET)
    }

    #[test]
    fn integers_follow_their_sign_flag() {
        assert_eq!(binary(TYPE_TINY, false, &[0xff]), json!(-1));
        assert_eq!(binary(TYPE_TINY, true, &[0xff]), json!(255));
        assert_eq!(binary(TYPE_SHORT, false, &[0x00, 0x80]), json!(-32768));
        assert_eq!(binary(TYPE_SHORT, true, &[0x00, 0x80]), json!(32768));
        assert_eq!(binary(TYPE_LONG, false, &(-5i32).to_le_bytes()), json!(-5));
        assert_eq!(
            binary(TYPE_INT24, true, &[0xff, 0xff, 0xff, 0]),
            json!(0xff_ffff)
        );
        assert_eq!(
            binary(TYPE_LONGLONG, true, &u64::MAX.to_le_bytes()),
            json!("18446744073709551615")
        );
        assert_eq!(
            binary(TYPE_LONGLONG, false, &i64::MIN.to_le_bytes()),
            json!("-9223372036854775808")
        );
        assert_eq!(
            binary(TYPE_LONGLONG, false, &(1i64 << 53).to_le_bytes()),
            json!(1u64 << 53)
        );
        assert_eq!(binary(TYPE_YEAR, false, &[0xe8, 0x07]), json!(2024));
    }

    #[test]
    fn floats_are_numbers_unless_not_finite() {
        assert_eq!(binary(TYPE_FLOAT, false, &1.1f32.to_le_bytes()), json!(1.1));
        assert_eq!(
            binary(TYPE_DOUBLE, false, &(-2.5f64).to_le_bytes()),
            json!(-2.5)
        );
        assert_eq!(
            binary(TYPE_DOUBLE, false, &f64::NAN.to_le_bytes()),
            json!("NaN")
        );
        assert_eq!(
            binary(TYPE_FLOAT, false, &f32::NEG_INFINITY.to_le_bytes()),
            json!("-inf")
        );
    }

    #[test]
    fn dates_and_times_print_as_mysql_prints_them() {
        // The documentation's examples: DATETIME 2010-10-17 19:27:30.000001, TIME -120d 19:27:30.000001.
        let datetime = [
            0xda, 0x07, 0x0a, 0x11, 0x13, 0x1b, 0x1e, 0x01, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            binary(TYPE_DATETIME, false, &datetime),
            json!("2010-10-17 19:27:30.000001")
        );
        assert_eq!(
            binary(TYPE_TIMESTAMP, false, &datetime[..7]),
            json!("2010-10-17 19:27:30")
        );
        assert_eq!(
            binary(TYPE_DATETIME, false, &datetime[..4]),
            json!("2010-10-17 00:00:00")
        );
        assert_eq!(
            binary(TYPE_DATE, false, &datetime[..4]),
            json!("2010-10-17")
        );
        assert_eq!(binary(TYPE_DATE, false, &[]), json!("0000-00-00"));
        assert_eq!(
            binary(TYPE_DATETIME, false, &[]),
            json!("0000-00-00 00:00:00")
        );
        let time = [
            0x01, 0x78, 0x00, 0x00, 0x00, 0x13, 0x1b, 0x1e, 0x01, 0x00, 0x00, 0x00,
        ];
        assert_eq!(binary(TYPE_TIME, false, &time), json!("-2899:27:30.000001"));
        assert_eq!(
            binary(TYPE_TIME, false, &[0, 0, 0, 0, 0, 8, 5, 9]),
            json!("08:05:09")
        );
        assert_eq!(binary(TYPE_TIME, false, &[]), json!("00:00:00"));
        let max_days = [0, 0xff, 0xff, 0xff, 0xff, 23, 59, 59];
        assert_eq!(
            binary(TYPE_TIME, false, &max_days),
            json!("103079215103:59:59")
        );
    }

    #[test]
    fn values_of_the_wrong_length_are_kept_as_invalid_hex() {
        assert_eq!(
            binary(TYPE_LONG, false, &[1, 2, 3]),
            json!({"invalid": "010203"})
        );
        assert_eq!(
            binary(TYPE_DATE, false, &[1, 2, 3]),
            json!({"invalid": "010203"})
        );
        assert_eq!(
            binary(TYPE_DATETIME, false, &[0; 5]),
            json!({"invalid": "0000000000"})
        );
        assert_eq!(
            binary(TYPE_TIME, false, &[0; 9]),
            json!({"invalid": "000000000000000000"})
        );
        let long = binary(TYPE_DOUBLE, false, &[0xab; 100]);
        assert_eq!(long["invalid"].as_str().unwrap().len(), 128);
    }

    #[test]
    fn strings_are_text_and_binary_strings_hex_unless_utf8() {
        assert_eq!(
            binary(TYPE_VAR_STRING, false, "héllo".as_bytes()),
            json!("héllo")
        );
        assert_eq!(binary(TYPE_NEWDECIMAL, false, b"-12.50"), json!("-12.50"));
        assert_eq!(binary(TYPE_JSON, false, br#"{"a":1}"#), json!(r#"{"a":1}"#));
        assert_eq!(binary(TYPE_ENUM, false, b"red"), json!("red"));
        assert_eq!(binary(TYPE_STRING, false, b"a\xffb"), json!("a\u{fffd}b"));
        assert_eq!(
            decode_binary(TYPE_BLOB, false, true, b"\x00\xff", BUDGET),
            json!({"hex": "00ff"})
        );
        assert_eq!(
            decode_binary(TYPE_BLOB, false, true, b"plain", BUDGET),
            json!("plain")
        );
        assert_eq!(
            decode_binary(TYPE_VAR_STRING, false, true, b"\xfe\xed", BUDGET),
            json!({"hex": "feed"})
        );
        assert_eq!(
            binary(TYPE_BIT, false, &[0x80, 0x01]),
            json!({"hex": "8001"})
        );
        assert_eq!(binary(TYPE_GEOMETRY, false, &[0xff]), json!({"hex": "ff"}));
        assert_eq!(binary(TYPE_NULL, false, &[]), Value::Null);
    }

    #[test]
    fn strings_are_cut_to_the_budget_on_a_character_boundary() {
        assert_eq!(
            decode_binary(TYPE_VARCHAR, false, false, "aébc".as_bytes(), 2),
            json!("a…[5 bytes]")
        );
        assert_eq!(decode_text(false, b"abcdef", 3), json!("abc…[6 bytes]"));
        assert_eq!(decode_text(false, b"abc", 3), json!("abc"));
        assert_eq!(
            decode_text(false, b"\xff\xff\xff", 3),
            json!("\u{fffd}…[3 bytes]")
        );
        assert_eq!(
            decode_text(true, b"\xff\x00\x01\x02", 4),
            json!({"hex": "ff00…[4 bytes]"})
        );
        assert_eq!(decode_text(false, b"anything", 0), json!("…[8 bytes]"));
    }

    #[test]
    fn text_cells_stay_text() {
        assert_eq!(decode_text(false, b"42", BUDGET), json!("42"));
        assert_eq!(decode_text(true, b"42", BUDGET), json!("42"));
        assert_eq!(
            decode_text(true, b"\x89PNG", BUDGET),
            json!({"hex": "89504e47"})
        );
    }

    #[test]
    fn only_text_types_are_masked_in_place() {
        for text_type in [
            TYPE_VAR_STRING,
            TYPE_STRING,
            TYPE_BLOB,
            TYPE_JSON,
            TYPE_NEWDECIMAL,
        ] {
            assert!(is_text_type(text_type));
        }
        for other in [
            TYPE_LONG,
            TYPE_DATETIME,
            TYPE_BIT,
            TYPE_GEOMETRY,
            TYPE_NEWDATE,
        ] {
            assert!(!is_text_type(other));
            assert_eq!(encode_masked_text(other, "x"), None);
        }
    }

    #[test]
    fn masked_text_goes_back_into_a_binary_row() {
        let types = [TYPE_LONG, TYPE_VAR_STRING];
        let row = encode_binary_row(&[Some(&[7, 0, 0, 0]), Some(b"4111111111111111")], &types);
        let cells = binary_row(&row, &types).unwrap();
        let masked = encode_masked_text(TYPE_VAR_STRING, "[MASKED:card]").unwrap();
        let rewritten = encode_binary_row(&[cells[0], Some(&masked)], &types);
        let cells = binary_row(&rewritten, &types).unwrap();
        assert_eq!(binary(types[0], false, cells[0].unwrap()), json!(7));
        assert_eq!(
            binary(types[1], false, cells[1].unwrap()),
            json!("[MASKED:card]")
        );
    }
}
