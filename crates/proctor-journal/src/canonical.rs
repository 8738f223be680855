//! Canonical JSON (RFC 8785, JCS) written directly, for the events that sessions record.
//!
//! Hashing an event needs its canonical form. Building a `serde_json::Value` and canonicalizing it costs
//! more than the rest of forwarding a statement, so hot paths write bodies with [`Body`], whose fields go
//! in sorted order straight into one buffer. Strings are escaped as serde_json escapes them, which is
//! exactly what RFC 8785 requires; numbers are written as ECMAScript prints the double they denote.
//! [`write_value`] renders any `serde_json::Value` the same way. Tests check both against `serde_jcs`.

use std::borrow::Cow;

use serde_json::Value;

/// A canonical JSON object under construction. Fields must be added in canonical key order
/// (UTF-16 code unit order, which for the ASCII keys used here is byte order); debug builds check it.
pub struct Body {
    json: String,
    #[cfg(debug_assertions)]
    last_key: Option<&'static str>,
}

/// A finished canonical JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalJson(Cow<'static, str>);

impl CanonicalJson {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical form of any JSON value.
    pub fn of(value: &Value) -> Self {
        let mut json = String::new();
        write_value(value, &mut json);
        Self(Cow::Owned(json))
    }

    /// `[]`, which most events' findings are: held without an allocation.
    pub fn empty_array() -> Self {
        Self(Cow::Borrowed("[]"))
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::new()
    }
}

impl Body {
    pub fn new() -> Self {
        let mut json = String::with_capacity(128);
        json.push('{');
        Self {
            json,
            #[cfg(debug_assertions)]
            last_key: None,
        }
    }

    fn key(&mut self, key: &'static str) {
        #[cfg(debug_assertions)]
        {
            if let Some(last) = self.last_key {
                assert!(
                    last < key,
                    "body keys out of canonical order: {last:?} before {key:?}"
                );
            }
            self.last_key = Some(key);
        }
        if self.json.len() > 1 {
            self.json.push(',');
        }
        write_str(key, &mut self.json);
        self.json.push(':');
    }

    pub fn str(mut self, key: &'static str, value: &str) -> Self {
        self.key(key);
        write_str(value, &mut self.json);
        self
    }

    /// A string field, left out when `None`.
    pub fn opt_str(self, key: &'static str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self,
        }
    }

    pub fn int(mut self, key: &'static str, value: i64) -> Self {
        self.key(key);
        write_i64(value, &mut self.json);
        self
    }

    pub fn uint(mut self, key: &'static str, value: u64) -> Self {
        self.key(key);
        write_u64(value, &mut self.json);
        self
    }

    pub fn bool(mut self, key: &'static str, value: bool) -> Self {
        self.key(key);
        self.json.push_str(if value { "true" } else { "false" });
        self
    }

    /// An array of strings.
    pub fn strs<'v>(
        mut self,
        key: &'static str,
        values: impl IntoIterator<Item = &'v str>,
    ) -> Self {
        self.key(key);
        write_array(values, &mut self.json, write_str);
        self
    }

    pub fn value(mut self, key: &'static str, value: &Value) -> Self {
        self.key(key);
        write_value(value, &mut self.json);
        self
    }

    /// A nested canonical object or value.
    pub fn opt_json(self, key: &'static str, value: Option<&CanonicalJson>) -> Self {
        match value {
            Some(value) => self.json(key, value),
            None => self,
        }
    }

    pub fn json(mut self, key: &'static str, value: &CanonicalJson) -> Self {
        self.key(key);
        self.json.push_str(&value.0);
        self
    }

    pub fn finish(mut self) -> CanonicalJson {
        self.json.push('}');
        CanonicalJson(Cow::Owned(self.json))
    }
}

/// Largest integer magnitude that a double holds exactly; beyond it JCS prints the nearest double.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

pub(crate) fn write_str(value: &str, out: &mut String) {
    // RFC 8785 section 3.2.2.2, as serde_json also writes it: escape `"`, `\` and U+0000..U+001F, with
    // the short forms \b \t \n \f \r and lowercase \u00xx for the rest of the controls; nothing else.
    // Every event writes its SQL, hashes and names through here, and almost none need escaping: blocks
    // are tested whole (a test without an early exit, which the compiler vectorizes), and only a block
    // that holds a byte to escape is walked byte by byte.
    out.reserve(value.len() + 2);
    out.push('"');
    let bytes = value.as_bytes();
    let mut clean_from = 0;
    for (block_no, block) in bytes.chunks(ESCAPE_BLOCK).enumerate() {
        if !block
            .iter()
            .fold(false, |found, &byte| found | needs_escape(byte))
        {
            continue;
        }
        for (offset, &byte) in block.iter().enumerate() {
            let escaped = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                0x08 => "\\b",
                b'\t' => "\\t",
                b'\n' => "\\n",
                0x0c => "\\f",
                b'\r' => "\\r",
                0x00..=0x1f => "",
                _ => continue,
            };
            // An escaped byte is ASCII, so both ends of the clean run are character boundaries.
            let at = block_no * ESCAPE_BLOCK + offset;
            out.push_str(&value[clean_from..at]);
            if escaped.is_empty() {
                out.push_str("\\u00");
                out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
                out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
            } else {
                out.push_str(escaped);
            }
            clean_from = at + 1;
        }
    }
    out.push_str(&value[clean_from..]);
    out.push('"');
}

/// Bytes tested at once for something to escape.
const ESCAPE_BLOCK: usize = 32;

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hexadecimal, as hashes are written in the journal.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut hex = Vec::with_capacity(bytes.len() * 2);
    push_hex(bytes, &mut hex);
    String::from_utf8(hex).expect("hex digits are ASCII")
}

/// Appends `bytes` in lowercase hex to `out`.
pub(crate) fn push_hex(bytes: &[u8], out: &mut Vec<u8>) {
    for byte in bytes {
        out.push(HEX_DIGITS[usize::from(byte >> 4)]);
        out.push(HEX_DIGITS[usize::from(byte & 0x0f)]);
    }
}

/// A SHA-256 hash as the journal writes it, 64 lowercase hex digits, held inline: every event carries
/// its own hash and its link to the last one, and neither costs an allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexHash([u8; 64]);

impl HexHash {
    pub fn of(digest: &[u8; 32]) -> Self {
        let mut hex = [0; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        }
        Self(hex)
    }

    /// A hash written as 64 lowercase hex digits, as the journal writes them.
    pub fn parse(hex: &str) -> Option<Self> {
        let digits: [u8; 64] = hex.as_bytes().try_into().ok()?;
        digits
            .iter()
            .all(|&d| d.is_ascii_digit() || (b'a'..=b'f').contains(&d))
            .then_some(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The hex digits as bytes, without the UTF-8 check that [`Self::as_str`] makes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for HexHash {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for HexHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for HexHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn write_u64(value: u64, out: &mut String) {
    if value <= MAX_SAFE_INTEGER {
        out.push_str(itoa::Buffer::new().format(value));
    } else {
        out.push_str(ryu_js::Buffer::new().format(value as f64));
    }
}

pub(crate) fn write_i64(value: i64, out: &mut String) {
    if value < 0 {
        if value.unsigned_abs() <= MAX_SAFE_INTEGER {
            out.push('-');
            write_u64(value.unsigned_abs(), out);
        } else {
            out.push_str(ryu_js::Buffer::new().format(value as f64));
        }
    } else {
        write_u64(value as u64, out);
    }
}

/// Writes any JSON value in canonical form: object keys sorted by UTF-16 code units, no whitespace.
pub fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_u64(u, out);
            } else if let Some(i) = n.as_i64() {
                write_i64(i, out);
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                out.push_str(ryu_js::Buffer::new().format_finite(f));
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => write_array(items, out, write_value),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

fn write_array<T>(
    items: impl IntoIterator<Item = T>,
    out: &mut String,
    write_item: impl Fn(T, &mut String),
) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_item(item, out);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jcs(value: &Value) -> String {
        serde_jcs::to_string(value).unwrap()
    }

    #[test]
    fn an_inline_hash_reads_as_its_hex_digits() {
        for digest in [
            [0u8; 32],
            [0xff; 32],
            std::array::from_fn(|i| (i * 37) as u8),
        ] {
            let hash = HexHash::of(&digest);
            assert_eq!(hash.as_str(), hex_lower(&digest));
            assert_eq!(format!("{hash}"), hex_lower(&digest));
        }
    }

    #[test]
    fn values_render_exactly_as_serde_jcs_does() {
        let cases = [
            json!(null),
            json!({"b": 1, "a": [true, false, null], "é": "x", "\u{e000}": 1, "\u{1f600}": 2}),
            json!({"s": "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} del \u{7f} é 😀"}),
            json!([
                0,
                -0.0,
                1.5,
                -2.25,
                1e21,
                1e-7,
                123456789012345678u64,
                -9007199254740993i64,
                9007199254740991u64
            ]),
            json!({"nested": {"z": {"y": [1, {"b": 2, "a": 1}]}}, "empty": {}, "list": []}),
            json!(f64::MAX),
            json!(5e-324),
        ];
        for case in cases {
            assert_eq!(CanonicalJson::of(&case).as_str(), jcs(&case), "{case}");
        }
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_jcs_does() {
        let every_control: String = (0u8..0x20).map(char::from).collect();
        for text in [
            every_control.as_str(),
            "a\u{1f}b\"c\\d\u{7f}\u{2028}é",
            "",
            "plain",
        ] {
            let mut out = String::new();
            write_str(text, &mut out);
            assert_eq!(out, jcs(&json!(text)), "{text:?}");
        }
    }

    #[test]
    fn escapes_are_found_wherever_they_fall_in_a_long_string() {
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
            for at in 0..3 * ESCAPE_BLOCK + 1 {
                let mut text: String = "é".repeat(at / 2) + &"a".repeat(at % 2);
                text.push(special);
                text.push_str("tail ☃ and more clean text after it");
                let mut out = String::new();
                write_str(&text, &mut out);
                assert_eq!(out, jcs(&json!(text)), "{text:?}");
            }
        }
    }

    #[test]
    fn hashes_are_lowercase_hex() {
        assert_eq!(
            hex_lower(&[0x00, 0x0f, 0xa5, 0xff]),
            hex::encode([0x00, 0x0f, 0xa5, 0xff])
        );
    }

    #[test]
    fn the_body_builder_matches_serde_jcs() {
        let body = Body::new()
            .bool("a", true)
            .int("b", -5)
            .json("c", &CanonicalJson::of(&json!({"y": 2, "x": 1})))
            .opt_str("d", None)
            .str("e", "line\nbreak \"quoted\"")
            .uint("f", u64::MAX)
            .value("g", &json!([1.5, "two"]))
            .strs("h", ["id", "na\"me", "é"])
            .strs("i", [])
            .finish();
        let expected = json!({"a": true, "b": -5, "c": {"x": 1, "y": 2}, "e": "line\nbreak \"quoted\"",
                              "f": u64::MAX, "g": [1.5, "two"], "h": ["id", "na\"me", "é"], "i": []});
        assert_eq!(body.as_str(), jcs(&expected));
    }

    #[test]
    #[should_panic(expected = "out of canonical order")]
    fn keys_out_of_order_are_caught_in_debug_builds() {
        let _ = Body::new().str("sql", "x").str("protocol", "simple");
    }
}
