//! Turns parameter and result values into JSON for the journal, by type OID and wire format.
//!
//! Text-format values are kept as text. Binary values of the common types are decoded with
//! `postgres-protocol`; anything else is kept as hex with its type OID, so nothing is silently dropped.
//! Each value is cut at a caller-given size, so a huge cell never becomes a huge event.

use postgres_protocol::types as pg;
use serde_json::{json, Value};

pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const NAME: u32 = 19;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const JSON: u32 = 114;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const BPCHAR: u32 = 1042;
pub const VARCHAR: u32 = 1043;
pub const DATE: u32 = 1082;
pub const TIMESTAMP: u32 = 1114;
pub const TIMESTAMPTZ: u32 = 1184;
pub const UUID: u32 = 2950;
pub const JSONB: u32 = 3802;

/// Types whose binary format is the text itself (UTF-8), so a cell can be masked in place.
pub fn is_text_type(type_oid: u32) -> bool {
    matches!(type_oid, TEXT | VARCHAR | BPCHAR | NAME | JSON)
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

fn cut_text(text: &str, max: usize) -> Value {
    if text.len() <= max {
        return Value::String(text.to_owned());
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Value::String(format!("{}…[{} bytes]", &text[..end], text.len()))
}

fn as_hex(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max / 2)];
    if shown.len() == bytes.len() {
        format!("\\x{}", hex::encode(shown))
    } else {
        format!("\\x{}…[{} bytes]", hex::encode(shown), bytes.len())
    }
}

fn timestamp_text(micros: i64, zone: &str) -> Option<String> {
    let unix = micros.checked_add(PG_EPOCH_OFFSET_US)?;
    let dt = chrono::DateTime::from_timestamp_micros(unix)?;
    let format = if unix % 1_000_000 == 0 {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%Y-%m-%d %H:%M:%S%.6f"
    };
    Some(format!("{}{zone}", dt.format(format)))
}

/// An integer as a JSON number when a double holds it exactly, else as a string: canonical JSON numbers
/// are doubles, and the journal must not round a recorded value.
fn exact_integer(value: i64) -> Value {
    if value.unsigned_abs() < 1 << 53 {
        Value::from(value)
    } else {
        Value::String(value.to_string())
    }
}

/// Decodes one value. `None` is SQL NULL.
pub fn decode(type_oid: u32, binary: bool, value: Option<&[u8]>, max: usize) -> Value {
    let Some(bytes) = value else {
        return Value::Null;
    };
    if !binary {
        return match std::str::from_utf8(bytes) {
            Ok(text) => cut_text(text, max),
            Err(_) => Value::String(as_hex(bytes, max)),
        };
    }
    let decoded = match type_oid {
        BOOL => pg::bool_from_sql(bytes).ok().map(Value::from),
        INT2 => pg::int2_from_sql(bytes).ok().map(Value::from),
        INT4 => pg::int4_from_sql(bytes).ok().map(Value::from),
        INT8 => pg::int8_from_sql(bytes).ok().map(exact_integer),
        OID => pg::oid_from_sql(bytes).ok().map(Value::from),
        FLOAT4 => pg::float4_from_sql(bytes).ok().map(|f| json!(f)),
        FLOAT8 => pg::float8_from_sql(bytes).ok().map(|f| json!(f)),
        TEXT | VARCHAR | BPCHAR | NAME | JSON => {
            pg::text_from_sql(bytes).ok().map(|t| cut_text(t, max))
        }
        JSONB => bytes
            .split_first()
            .filter(|(version, _)| **version == 1)
            .and_then(|(_, rest)| std::str::from_utf8(rest).ok())
            .map(|t| cut_text(t, max)),
        BYTEA => Some(Value::String(as_hex(pg::bytea_from_sql(bytes), max))),
        UUID => pg::uuid_from_sql(bytes).ok().map(|u| {
            let h = hex::encode(u);
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }),
        DATE => pg::date_from_sql(bytes).ok().and_then(|days| {
            let micros = i64::from(days).checked_mul(86_400_000_000)?;
            timestamp_text(micros, "").map(|t| Value::String(t[..10].to_owned()))
        }),
        TIMESTAMP => pg::timestamp_from_sql(bytes)
            .ok()
            .and_then(|us| timestamp_text(us, ""))
            .map(Value::String),
        TIMESTAMPTZ => pg::timestamp_from_sql(bytes)
            .ok()
            .and_then(|us| timestamp_text(us, "+00"))
            .map(Value::String),
        _ => None,
    };
    decoded.unwrap_or_else(|| json!({"type_oid": type_oid, "binary": as_hex(bytes, max)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_binary_types_decode() {
        assert_eq!(decode(INT4, true, Some(&7i32.to_be_bytes()), 100), json!(7));
        assert_eq!(
            decode(INT8, true, Some(&(-5i64).to_be_bytes()), 100),
            json!(-5)
        );
        assert_eq!(decode(BOOL, true, Some(&[1]), 100), json!(true));
        assert_eq!(decode(TEXT, true, Some(b"hi"), 100), json!("hi"));
        assert_eq!(
            decode(FLOAT8, true, Some(&1.5f64.to_be_bytes()), 100),
            json!(1.5)
        );
        assert_eq!(
            decode(BYTEA, true, Some(&[0xde, 0xad]), 100),
            json!("\\xdead")
        );
        assert_eq!(
            decode(JSONB, true, Some(b"\x01{\"a\":1}"), 100),
            json!("{\"a\":1}")
        );
        assert_eq!(
            decode(TIMESTAMPTZ, true, Some(&0i64.to_be_bytes()), 100),
            json!("2000-01-01 00:00:00+00")
        );
        assert_eq!(
            decode(
                TIMESTAMP,
                true,
                Some(&(86_400_000_000i64 * 366 + 1_500_000).to_be_bytes()),
                100
            ),
            json!("2001-01-01 00:00:01.500000")
        );
        assert_eq!(
            decode(DATE, true, Some(&(-1i32).to_be_bytes()), 100),
            json!("1999-12-31")
        );
        assert_eq!(
            decode(UUID, true, Some(&[0x11; 16]), 100),
            json!("11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(decode(INT4, true, None, 100), Value::Null);
    }

    #[test]
    fn unknown_or_malformed_binary_values_are_kept_as_hex() {
        assert_eq!(
            decode(INT4, true, Some(&[1, 2]), 100),
            json!({"type_oid": INT4, "binary": "\\x0102"})
        );
        assert_eq!(
            decode(600, true, Some(&[9]), 100),
            json!({"type_oid": 600, "binary": "\\x09"})
        );
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let text = "é".repeat(10);
        assert_eq!(
            decode(TEXT, false, Some(text.as_bytes()), 5),
            json!("éé…[20 bytes]")
        );
    }
}
