//! Secrets hidden in hex or base64: a bytea value (`\x4157…`), a hex literal, a base64 blob in a
//! JSON document. The journal keeps such text as it passed, so a secret inside would be one `xxd -r -p`
//! away from anyone who reads it. This module finds each long run of hex or base64 in a text, decodes
//! it, lets a [`Scanner`] look at the decoded bytes, and re-encodes the run with each secret replaced
//! by its mask, in the run's own encoding: the stored form keeps everything but the secret.
//!
//! One level deep: base64 inside hex is not unwrapped. Decoded bytes are seen one byte per
//! character: printable ASCII, tab and newlines as they are, every other byte as a control character
//! that no rule matches, so offsets in the view are offsets in the bytes. Pure: no I/O.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};

use crate::{byte_runs, Finding, Scanner};

/// The shortest run worth decoding: 12 bytes in hex, 18 in base64, shorter than any secret a
/// detector finds (a 13-digit card number is the shortest).
const MIN_HEX_RUN: usize = 24;
const MIN_BASE64_RUN: usize = 24;
/// What a byte that is not printable ASCII becomes in the decoded view.
const UNPRINTABLE: u8 = 0x01;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// How a run was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
    Base64Url,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
            Encoding::Base64Url => "base64url",
        }
    }

    fn decode(self, run: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex_decode(run),
            Encoding::Base64 => STANDARD.decode(run).ok(),
            Encoding::Base64Url => URL_SAFE.decode(run).ok(),
        }
    }

    /// `bytes` in this encoding; hex keeps the run's case, base64 its padding.
    fn encode(self, bytes: &[u8], upper: bool, padded: bool) -> String {
        match self {
            Encoding::Hex if upper => hex_encode(bytes).to_ascii_uppercase(),
            Encoding::Hex => hex_encode(bytes),
            Encoding::Base64 | Encoding::Base64Url => {
                let engine = if self == Encoding::Base64 {
                    &STANDARD
                } else {
                    &URL_SAFE
                };
                let mut text = engine.encode(bytes);
                if !padded {
                    text.truncate(text.trim_end_matches('=').len());
                }
                text
            }
        }
    }
}

/// A secret found inside an encoded run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedSecret {
    pub detector: String,
    pub encoding: Encoding,
    /// The secret as decoded.
    pub secret: String,
}

/// A run of `text` to replace: its byte range and what goes there instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    pub start: usize,
    pub end: usize,
    pub with: String,
}

/// Each encoded run of `text` that hides a secret, re-encoded with its secrets masked, and the secrets.
pub fn find(scanner: &Scanner, text: &str) -> (Vec<Replacement>, Vec<EncodedSecret>) {
    let mut replacements = Vec::new();
    let mut secrets = Vec::new();
    for (start, end) in runs(text.as_bytes()) {
        let Some((run_start, encoding)) = classify(text.as_bytes(), start, end) else {
            continue;
        };
        let run = &text[run_start..end];
        let Some(bytes) = encoding.decode(run) else {
            continue;
        };
        if !has_printable_stretch(&bytes) {
            continue;
        }
        let view = printable_view(&bytes);
        let found = scanner.find(&view);
        if found.is_empty() {
            continue;
        }
        let masked = masked_bytes(&bytes, &found);
        let upper = run.bytes().any(|b| b.is_ascii_uppercase());
        let padded_end = end + padding_after(text.as_bytes(), end, encoding);
        let padded = padded_end > end;
        replacements.push(Replacement {
            start: run_start,
            end: padded_end,
            with: encoding.encode(&masked, upper, padded),
        });
        secrets.extend(found.into_iter().map(|f| EncodedSecret {
            secret: view[f.start..f.end].to_owned(),
            detector: f.detector,
            encoding,
        }));
    }
    (replacements, secrets)
}

/// Whether a byte belongs to the base64 alphabets (standard and URL-safe), hex digits included.
fn is_run_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'-' | b'_')
}

/// The byte ranges of the runs of base64 (standard or URL-safe) alphabet, hex included, that are long
/// enough to decode, found 64 bytes at a time (see [`byte_runs`]).
fn runs(bytes: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    const SHORTEST: usize = if MIN_HEX_RUN < MIN_BASE64_RUN {
        MIN_HEX_RUN
    } else {
        MIN_BASE64_RUN
    };
    let mut from = 0;
    std::iter::from_fn(move || {
        let window = byte_runs::next_window(bytes, from, SHORTEST, is_run_byte)?;
        let run = byte_runs::run_around(bytes, from, window, SHORTEST, is_run_byte);
        from = run.end + 1;
        Some((run.start, run.end))
    })
}

/// Where the encoded data of a run starts and how it is encoded: hex (whole, or after a `\x` or `0x`
/// prefix), else base64 in the alphabet its characters fit.
fn classify(bytes: &[u8], start: usize, end: usize) -> Option<(usize, Encoding)> {
    let run = &bytes[start..end];
    let hex_from = match run {
        [b'x' | b'X', ..] if start > 0 && bytes[start - 1] == b'\\' => 1,
        [b'0', b'x' | b'X', ..] => 2,
        _ => 0,
    };
    let digits = &run[hex_from..];
    if every(digits, u8::is_ascii_hexdigit) {
        return (digits.len() >= MIN_HEX_RUN && digits.len().is_multiple_of(2))
            .then_some((start + hex_from, Encoding::Hex));
    }
    if run.len() < MIN_BASE64_RUN || run.len() % 4 == 1 {
        return None;
    }
    // Hex digits and dashes alone are a UUID or a hex id, not base64.
    if every(run, |b| b.is_ascii_hexdigit() | (*b == b'-')) {
        return None;
    }
    let standard = some(run, |b| matches!(b, b'+' | b'/'));
    let url_safe = some(run, |b| matches!(b, b'-' | b'_'));
    match (standard, url_safe) {
        (true, true) => None,
        (_, false) => Some((start, Encoding::Base64)),
        (false, true) => Some((start, Encoding::Base64Url)),
    }
}

/// Whether every byte passes `test`, all bytes tested without a branch between them: a hex id is a
/// random mix of digits and letters, on which a branch per byte is mispredicted half the time.
fn every(bytes: &[u8], test: impl Fn(&u8) -> bool) -> bool {
    bytes.iter().fold(true, |all, b| all & test(b))
}

/// Whether some byte passes `test`, all bytes tested as [`every`] tests them.
fn some(bytes: &[u8], test: impl Fn(&u8) -> bool) -> bool {
    bytes.iter().fold(false, |any, b| any | test(b))
}

/// Whether decoded bytes hold a stretch of printable text as long as the shortest secret: random bytes
/// (a hash in hex, a UUID read as base64) almost never do, and are not scanned.
fn has_printable_stretch(bytes: &[u8]) -> bool {
    const SHORTEST_SECRET: usize = 8;
    let mut stretch = 0;
    for &b in bytes {
        if b.is_ascii_graphic() || b == b' ' {
            stretch += 1;
            if stretch >= SHORTEST_SECRET {
                return true;
            }
        } else {
            stretch = 0;
        }
    }
    false
}

/// How many `=` of base64 padding follow the run.
fn padding_after(bytes: &[u8], end: usize, encoding: Encoding) -> usize {
    if encoding == Encoding::Hex {
        return 0;
    }
    bytes[end..]
        .iter()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count()
}

/// The decoded bytes one character each: printable ASCII and whitespace as they are, other bytes as
/// [`UNPRINTABLE`], so that a finding's offsets are offsets in `bytes`.
fn printable_view(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                char::from(b)
            } else {
                char::from(UNPRINTABLE)
            }
        })
        .collect()
}

/// `bytes` with each finding replaced by its mask.
fn masked_bytes(bytes: &[u8], findings: &[Finding]) -> Vec<u8> {
    let mut masked = Vec::with_capacity(bytes.len());
    let mut from = 0;
    for finding in findings {
        masked.extend_from_slice(&bytes[from..finding.start]);
        masked.extend_from_slice(crate::mask_of(&finding.detector).as_bytes());
        from = finding.end;
    }
    masked.extend_from_slice(&bytes[from..]);
    masked
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin_rules;

    fn scanner() -> &'static Scanner {
        static SCANNER: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
        SCANNER.get_or_init(|| Scanner::new(builtin_rules(false)))
    }

    fn apply(text: &str) -> (String, Vec<EncodedSecret>) {
        let (replacements, secrets) = find(scanner(), text);
        let mut out = String::new();
        let mut from = 0;
        for r in replacements {
            out.push_str(&text[from..r.start]);
            out.push_str(&r.with);
            from = r.end;
        }
        out.push_str(&text[from..]);
        (out, secrets)
    }

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    #[test]
    fn a_secret_in_a_bytea_value_is_masked_in_its_hex() {
        let bytea = format!("\\x{}", hex_encode(format!("id={KEY};").as_bytes()));
        let (masked, secrets) = apply(&format!("[\"{bytea}\"]"));
        let expected = format!("[\"\\x{}\"]", hex_encode(b"id=[MASKED:aws-access-key-id];"));
        assert_eq!(masked, expected);
        assert_eq!(secrets[0].secret, KEY);
        assert_eq!(secrets[0].encoding, Encoding::Hex);
        assert!(!masked.to_lowercase().contains(&hex_encode(KEY.as_bytes())));
    }

    #[test]
    fn upper_case_and_0x_hex_and_base64_are_decoded_too() {
        let upper = format!("0x{}", hex_encode(KEY.as_bytes()).to_uppercase());
        let (masked, _) = apply(&upper);
        assert_eq!(
            masked,
            format!(
                "0x{}",
                hex_encode(b"[MASKED:aws-access-key-id]").to_uppercase()
            )
        );
        for engine in [&STANDARD, &URL_SAFE] {
            let wrapped = format!("key: {}", engine.encode(format!("aws {KEY} x").as_bytes()));
            let (masked, secrets) = apply(&wrapped);
            assert_eq!(secrets.len(), 1, "{wrapped}");
            let decoded = engine.decode(masked.trim_start_matches("key: ")).unwrap();
            assert_eq!(decoded, b"aws [MASKED:aws-access-key-id] x");
        }
    }

    #[test]
    fn binary_bytes_around_a_secret_do_not_hide_it() {
        let mut bytes = vec![0, 0, 0, 1, 0xff, 0x10];
        bytes.extend_from_slice(b"4111111111111111");
        bytes.extend_from_slice(&[0, 0x80]);
        let (masked, secrets) = apply(&format!("\\x{}", hex_encode(&bytes)));
        assert_eq!(secrets[0].detector, "card-number");
        assert!(!masked.contains(&hex_encode(b"4111111111111111")));
    }

    #[test]
    fn every_long_run_is_found_wherever_it_starts() {
        let run = "a".repeat(MIN_HEX_RUN);
        for prefix in 0..30 {
            for suffix in ["", " tail", "x"] {
                let text = format!(
                    "{} {run}{suffix} {}",
                    "w ".repeat(prefix),
                    "z".repeat(prefix % 7)
                );
                let found: Vec<&str> = runs(text.as_bytes()).map(|(s, e)| &text[s..e]).collect();
                let expected = format!("{run}{}", if suffix == "x" { "x" } else { "" });
                assert_eq!(found, [expected.as_str()], "{text:?}");
            }
        }
        assert_eq!(runs("a".repeat(MIN_HEX_RUN - 1).as_bytes()).count(), 0);
        assert_eq!(runs(run.as_bytes()).collect::<Vec<_>>(), [(0, MIN_HEX_RUN)]);
    }

    #[test]
    fn clean_encoded_runs_and_identifiers_are_left_alone() {
        for text in [
            "select * from customer_orders_archive_2024 where id = 1",
            "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "aGVsbG8gd29ybGQsIG5vdGhpbmcgdG8gc2VlIGhlcmU=",
            "id 550e8400-e29b-41d4-a716-446655440000",
        ] {
            let (masked, secrets) = apply(text);
            assert_eq!(masked, text);
            assert!(secrets.is_empty());
        }
    }
}
