//! Runs of bytes of one class in a text (the digits, spaces and dashes a card number is written with;
//! the base64 alphabet an encoded run is written in), found 64 bytes at a time: the bytes are tested
//! in a loop the compiler turns into vector compares, their flags gathered into a 64-bit mask, and a
//! few shifts of the mask tell where enough flagged bytes in a row start. The detectors then read
//! byte by byte only inside the runs long enough to hold what they look for: clean text is mostly
//! runs too short. Pure: no I/O.

use std::ops::Range;

/// How many bytes one mask covers.
const CHUNK: usize = 64;

/// One bit per byte of `chunk` (bit `i` for byte `i`), set where the byte passes `test`.
#[inline(always)]
fn flags(chunk: &[u8; CHUNK], test: impl Fn(u8) -> bool) -> u64 {
    let mut high_bits = [0u8; CHUNK];
    for (flag, &byte) in high_bits.iter_mut().zip(chunk) {
        *flag = u8::from(test(byte)) << 7;
    }
    high_bits
        .chunks_exact(8)
        .enumerate()
        .fold(0, |bits, (i, word)| {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            // The eight high bits into the top byte, byte `j`'s at bit `56 + j`.
            let gathered = (word >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
            bits | gathered << (8 * i)
        })
}

/// The 64 bytes of `bytes` from `at` with one bit each (bit `i` for byte `at + i`), set where the byte
/// passes `test`; bytes past the end of the text are not set.
#[inline(always)]
fn flags_at(bytes: &[u8], at: usize, test: impl Fn(u8) -> bool) -> u64 {
    match bytes.get(at..at + CHUNK) {
        Some(chunk) => flags(chunk.try_into().expect("64 bytes"), test),
        None => {
            let in_text = bytes.len().saturating_sub(at);
            let mut last = [0u8; CHUNK];
            last[..in_text].copy_from_slice(&bytes[bytes.len() - in_text..]);
            flags(&last, test) & ((1u64 << in_text) - 1)
        }
    }
}

/// Where the first `len` bytes in a row that pass `test` start, at `from` or after; `len` is 1 to 64.
#[inline(always)]
pub(crate) fn next_window(
    bytes: &[u8],
    from: usize,
    len: usize,
    test: impl Fn(u8) -> bool + Copy,
) -> Option<usize> {
    assert!((1..=CHUNK).contains(&len), "windows of 1 to 64 bytes");
    let mut at = from;
    while at + len <= bytes.len() {
        // Bit `i` set where bytes `at + i..at + i + covered` all pass, `covered` doubling up to `len`.
        let (mut windows, mut covered) = (flags_at(bytes, at, test), 1);
        while covered < len {
            let step = covered.min(len - covered);
            windows &= windows >> step;
            covered += step;
        }
        if windows != 0 {
            return Some(at + windows.trailing_zeros() as usize);
        }
        // A window starting in the last `len - 1` bytes of these 64 ends beyond them: read next.
        at += CHUNK - (len - 1);
    }
    None
}

/// The run of bytes that pass `test` around the window found at `window`, `len` bytes long: it starts
/// no earlier than `from` (the byte before `from` fails the test, or `from` is 0). The window is the
/// first at `from` or after, so the run starts at most `len - 1` bytes before it; it may go on for
/// long (a base64 blob), and its end is looked for 64 bytes at a time.
#[inline(always)]
pub(crate) fn run_around(
    bytes: &[u8],
    from: usize,
    window: usize,
    len: usize,
    test: impl Fn(u8) -> bool + Copy,
) -> Range<usize> {
    let start = bytes[from..window]
        .iter()
        .rposition(|&b| !test(b))
        .map_or(from, |at| from + at + 1);
    let mut end = window + len;
    loop {
        let failing = !flags_at(bytes, end, test);
        end += failing.trailing_zeros() as usize;
        if failing != 0 {
            return start..end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_digit(byte: u8) -> bool {
        byte.is_ascii_digit()
    }

    #[test]
    fn bytes_are_flagged_one_bit_per_byte_in_order() {
        for byte in 0..=u8::MAX {
            let expected = if is_digit(byte) { u64::MAX } else { 0 };
            assert_eq!(flags(&[byte; CHUNK], is_digit), expected, "{byte:#04x}");
        }
        let mut chunk = [b'x'; CHUNK];
        let mut expected = 0u64;
        for at in (0..CHUNK).step_by(3) {
            chunk[at] = b'0' + (at % 10) as u8;
            expected |= 1 << at;
        }
        assert_eq!(flags(&chunk, is_digit), expected);
    }

    /// Every run of at least `len` digits, by reading every byte.
    fn runs_byte_by_byte(bytes: &[u8], len: usize) -> Vec<Range<usize>> {
        let mut runs = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let end = bytes[at..]
                .iter()
                .position(|&b| !is_digit(b))
                .map_or(bytes.len(), |n| at + n);
            if end - at >= len {
                runs.push(at..end);
            }
            at = end + 1;
        }
        runs
    }

    fn runs_by_window(bytes: &[u8], len: usize) -> Vec<Range<usize>> {
        let mut runs = Vec::new();
        let mut from = 0;
        while let Some(window) = next_window(bytes, from, len, is_digit) {
            let run = run_around(bytes, from, window, len, is_digit);
            from = run.end + 1;
            runs.push(run);
        }
        runs
    }

    #[test]
    fn every_run_long_enough_is_found_wherever_it_lies() {
        for len in [1, 2, 5, 12, 24, 63, 64] {
            for offset in 0..150 {
                for extra in [0, 1, 7, 70] {
                    for tail in ["", "x", "x1"] {
                        let text =
                            format!("{}{}{tail}", "x".repeat(offset), "7".repeat(len + extra));
                        let shorter = format!("{}{}x", "x".repeat(offset), "7".repeat(len - 1));
                        for text in [text, shorter] {
                            assert_eq!(
                                runs_by_window(text.as_bytes(), len),
                                runs_byte_by_byte(text.as_bytes(), len),
                                "{len} {text:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
