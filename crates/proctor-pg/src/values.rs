//! Turns parameter and result values into JSON for the journal, by type OID and wire format.
//!
//! Text-format values are kept as text. Binary values of the common types (arrays of them included)
//! are decoded with `postgres-protocol`, and `numeric` by hand (the crate has no decoder for it);
//! anything else is kept as hex with its type OID, so nothing is silently dropped. A decoded value is
//! what masking scans, so a card number bound as an `int8` or a `numeric` is found like one in text.
//! Each value is cut at a caller-given size, so a huge cell never becomes a huge event.

use postgres_protocol::types as pg;
use proctor_core::results::cut_text;
use serde_json::{json, Value};

pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const NAME: u32 = 19;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const NUMERIC: u32 = 1700;
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
        NUMERIC => numeric_text(bytes).map(|t| cut_text(&t, max)),
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
        array if element_of_array(array).is_some() => array_elements(array, bytes, max),
        // A composite type has an OID of its own, which says nothing here: any value laid out
        // exactly as a record is read as one, so that a secret in a field is not hidden by the
        // lengths around it.
        _ => record_fields(bytes, max, MAX_RECORD_DEPTH),
    };
    decoded.unwrap_or_else(|| json!({"type_oid": type_oid, "binary": as_hex(bytes, max)}))
}

/// How deep records inside records are read; deeper ones are kept as hex.
const MAX_RECORD_DEPTH: usize = 4;
/// The most columns a PostgreSQL row can have.
const MAX_COLUMNS: usize = 1664;

/// A binary record (`record` or a composite type): its fields, each decoded by its type OID; `None`
/// unless the bytes are exactly a record's layout (a count, then each field's type, length and bytes).
fn record_fields(bytes: &[u8], max: usize, depth: usize) -> Option<Value> {
    let depth = depth.checked_sub(1)?;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let count = usize::try_from(word(0)?)
        .ok()
        .filter(|n| *n <= MAX_COLUMNS)?;
    let mut at = 4;
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let type_oid = word(at)?;
        let length = word(at + 4)? as i32;
        at += 8;
        let value = match usize::try_from(length) {
            Ok(length) => {
                let value = bytes.get(at..at.checked_add(length)?)?;
                at += length;
                Some(value)
            }
            Err(_) if length == -1 => None,
            Err(_) => return None,
        };
        fields.push(match value {
            Some(value) if element_of_array(type_oid).is_none() && !is_known(type_oid) => {
                record_fields(value, max, depth)
                    .unwrap_or_else(|| decode(BYTEA, true, Some(value), max))
            }
            value => decode(type_oid, true, value, max),
        });
    }
    (at == bytes.len()).then_some(Value::Array(fields))
}

/// Whether this module decodes the binary format of `type_oid` by its type.
fn is_known(type_oid: u32) -> bool {
    matches!(
        type_oid,
        BOOL | BYTEA
            | NAME
            | INT8
            | INT2
            | INT4
            | TEXT
            | OID
            | JSON
            | FLOAT4
            | FLOAT8
            | BPCHAR
            | VARCHAR
            | DATE
            | TIMESTAMP
            | TIMESTAMPTZ
            | UUID
            | JSONB
            | NUMERIC
    )
}

/// The tuples of a binary COPY data message (the header, when it opens the data, skipped), each as
/// its fields in hex: binary COPY says nothing of types. `None` unless the message is exactly whole
/// tuples (the server sends one per message; a client may cut its data anywhere).
pub fn binary_copy_tuples(data: &[u8], max: usize) -> Option<Vec<Value>> {
    const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
    let mut at = 0;
    if data.starts_with(SIGNATURE) {
        let extension = data.get(15..19)?;
        at = 19 + u32::from_be_bytes(extension.try_into().ok()?) as usize;
    }
    let mut tuples = Vec::new();
    let mut left = max;
    while at < data.len() {
        let count = i16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        if count == -1 {
            break;
        }
        // Each field takes at least its 4-byte length: a count the bytes cannot hold reserves nothing.
        let count = usize::try_from(count).ok()?;
        let mut fields = Vec::with_capacity(count.min((data.len() - at) / 4));
        for _ in 0..count {
            let length = i32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?);
            at += 4;
            let value = match usize::try_from(length) {
                Ok(length) => {
                    let value = data.get(at..at.checked_add(length)?)?;
                    at += length;
                    Some(value)
                }
                Err(_) => None,
            };
            left = left.saturating_sub(value.map_or(4, <[u8]>::len));
            fields.push(decode(BYTEA, true, value, left.max(16)));
        }
        tuples.push(Value::Array(fields));
    }
    (at == data.len()).then_some(tuples)
}

/// The element type of the array types whose elements this module decodes.
fn element_of_array(type_oid: u32) -> Option<u32> {
    Some(match type_oid {
        1000 => BOOL,
        1001 => BYTEA,
        1003 => NAME,
        1005 => INT2,
        1007 => INT4,
        1009 => TEXT,
        1014 => BPCHAR,
        1015 => VARCHAR,
        1016 => INT8,
        1021 => FLOAT4,
        1022 => FLOAT8,
        1028 => OID,
        199 => JSON,
        1115 => TIMESTAMP,
        1182 => DATE,
        1185 => TIMESTAMPTZ,
        1231 => NUMERIC,
        2951 => UUID,
        3807 => JSONB,
        _ => return None,
    })
}

/// A binary array's elements, in order, as one flat list; `None` if it is malformed or its elements
/// are not of the array's type. Elements past `max` bytes are left out, and a note says how many.
fn array_elements(type_oid: u32, bytes: &[u8], max: usize) -> Option<Value> {
    use fallible_iterator::FallibleIterator;
    let array = pg::array_from_sql(bytes).ok()?;
    if Some(array.element_type()) != element_of_array(type_oid) {
        return None;
    }
    let mut elements = Vec::new();
    let mut left = max;
    let mut values = array.values();
    let mut skipped = 0usize;
    while let Some(value) = values.next().ok()? {
        if left == 0 {
            skipped += 1;
            continue;
        }
        left = left.saturating_sub(value.map_or(4, <[u8]>::len));
        elements.push(decode(array.element_type(), true, value, max));
    }
    if skipped > 0 {
        elements.push(Value::String(format!("…[{skipped} more elements]")));
    }
    Some(Value::Array(elements))
}

/// The most base-10000 digits before the point that a `numeric` is written out with (40,000 decimal
/// digits); a larger one is kept as hex.
const MAX_NUMERIC_WEIGHT: i16 = 10_000;

/// A binary `numeric` in decimal, as PostgreSQL writes it: `ndigits`, `weight`, `sign`, `dscale`,
/// then base-10000 digits, the first of which is worth 10000^weight.
fn numeric_text(bytes: &[u8]) -> Option<String> {
    let word = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    let ndigits = usize::from(word(0)?);
    let weight = word(2)? as i16;
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    if bytes.len() != 8 + 2 * ndigits || weight > MAX_NUMERIC_WEIGHT {
        return None;
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| word(8 + 2 * i).filter(|d| *d < 10_000))
        .collect::<Option<_>>()?;
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    };
    let digit = |index: i32| -> u16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if negative {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        text.push_str(&digit(0).to_string());
        for index in 1..=i32::from(weight) {
            text.push_str(&format!("{:04}", digit(index)));
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut index = i32::from(weight) + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(index)));
            index += 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_core::results::cut_strings;

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

    /// A binary `numeric` from its parts.
    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [digits.len() as u16, weight as u16, sign, dscale] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        for d in digits {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn binary_numerics_decode_to_their_decimal_text() {
        let card = numeric(3, 0, 0, &[4415, 7118, 1539, 4971]);
        assert_eq!(
            decode(NUMERIC, true, Some(&card), 100),
            json!("4415711815394971")
        );
        let small = numeric(-1, 0x4000, 5, &[120]);
        assert_eq!(decode(NUMERIC, true, Some(&small), 100), json!("-0.01200"));
        let mixed = numeric(1, 0, 2, &[12, 3400, 5000]);
        assert_eq!(decode(NUMERIC, true, Some(&mixed), 100), json!("123400.50"));
        let zero = numeric(0, 0, 0, &[]);
        assert_eq!(decode(NUMERIC, true, Some(&zero), 100), json!("0"));
        let nan = numeric(0, 0xC000, 0, &[]);
        assert_eq!(decode(NUMERIC, true, Some(&nan), 100), json!("NaN"));
        let bad = numeric(0, 0, 0, &[10_000]);
        assert_eq!(decode(NUMERIC, true, Some(&bad), 100)["type_oid"], NUMERIC);
    }

    #[test]
    fn binary_arrays_decode_element_by_element() {
        let mut array = Vec::new();
        for word in [1i32, 1, INT8 as i32, 3, 1] {
            array.extend_from_slice(&word.to_be_bytes());
        }
        for element in [Some(4415711815394971i64), None, Some(7)] {
            match element {
                Some(v) => {
                    array.extend_from_slice(&8i32.to_be_bytes());
                    array.extend_from_slice(&v.to_be_bytes());
                }
                None => array.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        assert_eq!(
            decode(1016, true, Some(&array), 100),
            json!([4415711815394971i64, null, 7])
        );
        assert_eq!(decode(1007, true, Some(&array), 100)["type_oid"], 1007);
    }

    #[test]
    fn records_and_binary_copy_tuples_are_read_field_by_field() {
        let mut record = Vec::new();
        record.extend_from_slice(&2u32.to_be_bytes());
        record.extend_from_slice(&TEXT.to_be_bytes());
        record.extend_from_slice(&3i32.to_be_bytes());
        record.extend_from_slice(b"abc");
        record.extend_from_slice(&INT4.to_be_bytes());
        record.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(decode(2249, true, Some(&record), 100), json!(["abc", null]));
        assert_eq!(
            decode(2249, true, Some(&record[..record.len() - 1]), 100)["type_oid"],
            2249
        );

        let mut copy = b"PGCOPY\n\xff\r\n\0".to_vec();
        copy.extend_from_slice(&[0; 8]);
        copy.extend_from_slice(&1i16.to_be_bytes());
        copy.extend_from_slice(&2i32.to_be_bytes());
        copy.extend_from_slice(b"hi");
        assert_eq!(
            binary_copy_tuples(&copy, 100),
            Some(vec![json!(["\\x6869"])])
        );
        assert_eq!(binary_copy_tuples(&copy[..copy.len() - 1], 100), None);
        assert_eq!(
            binary_copy_tuples(&(-1i16).to_be_bytes(), 100),
            Some(vec![])
        );
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
    fn values_are_cut_after_masking_never_inside_a_mask() {
        let mut value = json!(["x".repeat(10) + "[MASKED:github-token] tail", "short"]);
        cut_strings(&mut value, 12);
        assert_eq!(
            value,
            json!(["xxxxxxxxxx[MASKED:github-token]…[36 bytes]", "short"])
        );
        let mut noted = decode(TEXT, false, Some("abcdefghij".as_bytes()), 8);
        cut_strings(&mut noted, 4);
        assert_eq!(noted, json!("abcd…[10 bytes]"));
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
