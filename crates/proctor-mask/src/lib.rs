//! Proctor's masking: finds secrets (and, when asked, personal data) in text, replaces them with
//! `[MASKED:<detector>]`, and gives each finding a keyed fingerprint so that an investigator holding a
//! suspected credential can find where it passed without the journal ever holding it.
//!
//! Detectors are rules: a regex whose capture group is the secret, optional keywords that must occur
//! (case-insensitively) for the rule to run at all, an optional minimum Shannon entropy, optional
//! allowlists, and for some a checksum (Luhn for card numbers). The built-in rules are below;
//! gitleaks rule files load into the same form (see [`gitleaks`]). Clean text costs one Aho-Corasick
//! pass over the keywords plus the few rules without keywords; every regex is a finite automaton
//! (the `regex` crate), so no input can make matching slower than linear. Pure: no I/O.

mod byte_runs;
pub mod columns;
pub mod encoded;
pub mod gitleaks;

use std::borrow::Cow;
use std::ops::Range;

pub use encoded::Encoding;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};
use hmac::{Hmac, Mac};
use regex::{Regex, RegexBuilder};
use sha2::Sha256;

/// Compiled size limit of one rule's regex: rules beyond it are refused, never run slowly.
const REGEX_SIZE_LIMIT: usize = 32 * 1024 * 1024;
/// The most a rule's lazy DFA may cache, per thread that runs it. A cache grows only with the states a
/// regex meets, so most stay small; gitleaks' `generic-api-key` meets many on text dense with
/// secrets, and with the `regex` crate's default of 2 MiB it cleared its cache so often that it ran at
/// half the speed; 4 MiB is enough (8 and 16 MiB gave the same).
const DFA_CACHE_LIMIT: usize = 4 * 1024 * 1024;
/// The mask of a secret found by `detector`. Masks never match a rule, so masking is idempotent.
pub fn mask_of(detector: &str) -> String {
    format!("[MASKED:{detector}]")
}
const MASK_PREFIX: &str = "[MASKED:";

#[derive(Debug, thiserror::Error)]
#[error("rule {id}: {reason}")]
pub struct RuleError {
    pub id: String,
    pub reason: String,
}

/// What a rule finds: a secret, or personal data (off unless asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Secret,
    Pii,
}

/// A search of a text for a rule's matches, as byte ranges.
type Finder = fn(&str) -> Vec<Range<usize>>;

/// One detector.
pub struct Rule {
    pub id: String,
    pub category: Category,
    regex: Regex,
    /// The capture group that holds the secret; by default the first group that matched, or the
    /// whole match.
    secret_group: Option<usize>,
    keywords: Vec<String>,
    min_entropy: Option<f64>,
    /// A finding is not a secret when one of these matches its target (by default the secret).
    allow: Vec<(AllowTarget, Regex)>,
    /// A finding whose secret, lowercased, holds one of these words is not a secret.
    stopwords: Option<AhoCorasick>,
    check: Option<fn(&str) -> bool>,
    /// A cheap test of the whole text that must pass for a rule without keywords to run.
    worth_running: Option<fn(&str) -> bool>,
    /// A hand-written search that finds exactly the regex's matches, faster: the regex stays the
    /// rule's definition, and a property test holds the two to the same matches.
    finder: Option<Finder>,
    /// The rule came from a gitleaks rule file and takes its secret and entropy as gitleaks does
    /// (see [`Rule::read_as_gitleaks`]).
    gitleaks: bool,
}

impl Rule {
    pub fn new(id: &str, category: Category, pattern: &str) -> Result<Self, RuleError> {
        let regex = RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(DFA_CACHE_LIMIT)
            .build()
            .map_err(|e| RuleError {
                id: id.to_owned(),
                reason: first_line(&e.to_string()),
            })?;
        Ok(Self {
            id: id.to_owned(),
            category,
            regex,
            secret_group: None,
            keywords: Vec::new(),
            min_entropy: None,
            allow: Vec::new(),
            stopwords: None,
            check: None,
            worth_running: None,
            finder: None,
            gitleaks: false,
        })
    }

    /// Makes the rule read its matches as gitleaks (8.23 and later) does, which a gitleaks rule file
    /// expects:
    /// - newlines at either end of a match are no part of it;
    /// - the secret is taken from the regex run again on that match alone: the group `secretGroup`
    ///   (0 meaning none), else the first group that matched something (not merely the first that
    ///   matched: an empty group is passed over), else the whole match;
    /// - the entropy is Go's (characters counted, their frequencies taken over the secret's bytes),
    ///   and a secret must exceed the rule's minimum, not merely reach it.
    pub(crate) fn read_as_gitleaks(mut self) -> Self {
        self.gitleaks = true;
        if self.secret_group == Some(0) {
            self.secret_group = None;
        }
        self
    }

    pub fn keywords(mut self, keywords: &[&str]) -> Self {
        self.keywords = keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
        self
    }

    pub fn secret_group(mut self, group: usize) -> Self {
        self.secret_group = (!self.gitleaks || group > 0).then_some(group);
        self
    }

    pub fn min_entropy(mut self, entropy: f64) -> Self {
        self.min_entropy = Some(entropy);
        self
    }

    pub fn allow(mut self, allow: Vec<(AllowTarget, Regex)>, stopwords: Vec<String>) -> Self {
        self.allow = allow;
        let lowercase: Vec<String> = stopwords.iter().map(|s| s.to_lowercase()).collect();
        self.stopwords = (!lowercase.is_empty())
            .then(|| AhoCorasick::new(&lowercase).expect("stopwords are plain strings"));
        self
    }

    fn check(mut self, check: fn(&str) -> bool) -> Self {
        self.check = Some(check);
        self
    }

    fn worth_running(mut self, test: fn(&str) -> bool) -> Self {
        self.worth_running = Some(test);
        self
    }

    fn finder(mut self, finder: Finder) -> Self {
        self.finder = Some(finder);
        self
    }

    /// Each match as (secret, whole match), byte ranges of `text`. A rule whose secret is the whole
    /// match is searched without capture groups, which costs a fraction of a search with them.
    fn matches<'r, 't>(&'r self, text: &'t str) -> Matches<'r, 't> {
        if let Some(finder) = self.finder {
            Matches::Found(finder(text).into_iter())
        } else if self.gitleaks {
            Matches::Gitleaks {
                rule: self,
                found: self.regex.find_iter(text),
            }
        } else if self.secret_group == Some(0) || self.regex.captures_len() == 1 {
            Matches::Whole(self.regex.find_iter(text))
        } else {
            Matches::Groups(self.secret_group, self.regex.captures_iter(text))
        }
    }

    /// The secret of each match that is one, with the whole match: byte ranges of `text`.
    fn secrets<'t>(
        &'t self,
        text: &'t str,
    ) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + 't {
        self.matches(text).filter_map(move |(secret, whole)| {
            let value = &text[secret.clone()];
            let allowed = |target: AllowTarget| match target {
                AllowTarget::Secret => value,
                AllowTarget::Match => &text[whole.clone()],
                AllowTarget::Line => line_around(text, whole.start, whole.end),
            };
            let accepted = !value.is_empty()
                && !value.starts_with(MASK_PREFIX)
                && self.min_entropy.is_none_or(|min| {
                    if self.gitleaks {
                        go_entropy(value) > min
                    } else {
                        entropy(value) >= min
                    }
                })
                && self.check.is_none_or(|check| check(value))
                && !self
                    .allow
                    .iter()
                    .any(|(target, allow)| allow.is_match(allowed(*target)))
                && !self
                    .stopwords
                    .as_ref()
                    .is_some_and(|stopwords| stopwords.is_match(&value.to_lowercase()));
            accepted.then_some((secret, whole))
        })
    }
}

/// A rule's matches as (secret, whole match): found by its finder, by its regex whole, by its
/// regex's capture groups (the secret group, or the first group that matched), or as gitleaks reads
/// them (see [`Rule::read_as_gitleaks`]).
enum Matches<'r, 't> {
    Found(std::vec::IntoIter<Range<usize>>),
    Whole(regex::Matches<'r, 't>),
    Groups(Option<usize>, regex::CaptureMatches<'r, 't>),
    Gitleaks {
        rule: &'r Rule,
        found: regex::Matches<'r, 't>,
    },
}

impl Iterator for Matches<'_, '_> {
    type Item = (Range<usize>, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Matches::Found(found) => found.next().map(|m| (m.clone(), m)),
            Matches::Whole(found) => found.next().map(|m| (m.range(), m.range())),
            Matches::Groups(secret_group, found) => loop {
                let caps = found.next()?;
                let secret = match *secret_group {
                    Some(group) => caps.get(group),
                    None => (1..caps.len())
                        .find_map(|group| caps.get(group))
                        .or_else(|| caps.get(0)),
                };
                if let (Some(secret), Some(whole)) = (secret, caps.get(0)) {
                    return Some((secret.range(), whole.range()));
                }
            },
            Matches::Gitleaks { rule, found } => loop {
                let found = found.next()?;
                let trimmed = found.as_str().trim_matches('\n');
                let start = found.start() + found.as_str().len()
                    - found.as_str().trim_start_matches('\n').len();
                let whole = start..start + trimmed.len();
                if rule.regex.captures_len() == 1 {
                    return Some((whole.clone(), whole));
                }
                let Some(caps) = rule.regex.captures(trimmed) else {
                    // The match alone no longer matches (an assertion looked past its ends).
                    return Some((whole.clone(), whole));
                };
                let secret = match rule.secret_group {
                    // A group the regex does not have: gitleaks skips the match.
                    Some(group) if group >= caps.len() => continue,
                    Some(group) => caps.get(group).map_or(0..0, |g| g.range()),
                    None => (1..caps.len())
                        .find_map(|group| caps.get(group).filter(|g| !g.is_empty()))
                        .map_or(0..trimmed.len(), |g| g.range()),
                };
                let secret = secret.start + start..secret.end + start;
                return Some((secret, whole));
            },
        }
    }
}

/// What an allowlist regex is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowTarget {
    /// The secret (the capture group).
    Secret,
    /// The rule's whole match.
    Match,
    /// The line that holds the match.
    Line,
}

/// The line of `text` that holds `start..end` (all the lines it spans).
fn line_around(text: &str, start: usize, end: usize) -> &str {
    let from = text[..start].rfind('\n').map_or(0, |at| at + 1);
    let to = text[end..].find('\n').map_or(text.len(), |at| end + at);
    &text[from..to]
}

fn first_line(text: &str) -> String {
    text.lines()
        .rfind(|line| !line.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_owned()
}

/// Shannon entropy in bits per character.
pub fn entropy(text: &str) -> f64 {
    let mut counts = [0usize; 256];
    for byte in text.bytes() {
        counts[usize::from(byte)] += 1;
    }
    let len = text.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / len;
            -p * p.log2()
        })
        .sum()
}

/// Shannon entropy as gitleaks computes it (Go): each character (not byte) counted, its frequency
/// its count over the number of bytes. The same as [`entropy`] for ASCII; lower for other text.
pub fn go_entropy(text: &str) -> f64 {
    if text.is_empty() {
        return 0.0;
    }
    let mut ascii = [0usize; 128];
    let mut other: Vec<(char, usize)> = Vec::new();
    for c in text.chars() {
        if c.is_ascii() {
            ascii[c as usize] += 1;
        } else {
            match other.iter_mut().find(|(seen, _)| *seen == c) {
                Some((_, count)) => *count += 1,
                None => other.push((c, 1)),
            }
        }
    }
    let inverse_length = 1.0 / text.len() as f64;
    ascii
        .iter()
        .copied()
        .chain(other.iter().map(|&(_, count)| count))
        .filter(|&count| count > 0)
        .map(|count| {
            let frequency = count as f64 * inverse_length;
            -frequency * frequency.log2()
        })
        .sum()
}

/// The fewest digits the card-number regex matches, and so the fewest bytes of a match.
const MIN_CARD_DIGITS: usize = 12;

/// Whether a byte is a card byte: a digit, a space or a dash.
fn is_card_byte(byte: u8) -> bool {
    byte.is_ascii_digit() || byte == b' ' || byte == b'-'
}

/// The matches of the card-number regex, `(?-u:\b)(?:[0-9][ -]?){11,18}[0-9](?-u:\b)`, found without
/// the regex. A match lies in a run of at least 12 bytes of digits, spaces and dashes: such runs are
/// found 64 bytes at a time (see [`byte_runs`]), and only they are read byte by byte (see
/// [`card_candidates_in_run`]).
/// Traffic is full of digits (ids, order numbers, timestamps, hex), and a regex search costs about a
/// microsecond per long number.
fn card_candidates(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    // No match starts before `from`, and the byte before `from` is no card byte.
    let mut from = 0;
    while let Some(window) = byte_runs::next_window(bytes, from, MIN_CARD_DIGITS, is_card_byte) {
        let run = byte_runs::run_around(bytes, from, window, MIN_CARD_DIGITS, is_card_byte);
        from = run.end + 1;
        card_candidates_in_run(bytes, run, &mut found);
    }
    found
}

/// The card-number regex's matches inside `run`, a whole run of card bytes of `bytes` (the bytes on
/// either side are none): from each digit that starts a word, the longest run of 12 to 19 digits (one
/// space or dash allowed between two) that ends a word; the search goes on after each match, as the
/// regex's does. Every match lies in such a run, and the regex's search in one run does not depend on
/// its matches in another: a search from the start of each run finds what one search of the whole
/// text finds.
fn card_candidates_in_run(bytes: &[u8], run: Range<usize>, found: &mut Vec<Range<usize>>) {
    let is_word = |at: usize| {
        bytes
            .get(at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    };
    let mut start = run.start;
    while start < run.end {
        let Some(digit) = bytes[start..run.end].iter().position(u8::is_ascii_digit) else {
            break;
        };
        start += digit;
        if start > 0 && is_word(start - 1) {
            // Inside a word: no match starts before the word ends.
            start += bytes[start..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .unwrap_or(bytes.len() - start);
            continue;
        }
        // Where each digit of the run from `start` ends, the first at `start + 1`.
        let mut ends = [0usize; 19];
        let (mut count, mut at) = (0, start);
        while count < ends.len() {
            ends[count] = at + 1;
            count += 1;
            at += 1;
            let next = match bytes.get(at) {
                Some(b' ' | b'-') if bytes.get(at + 1).is_some_and(u8::is_ascii_digit) => at + 1,
                Some(b) if b.is_ascii_digit() => at,
                _ => break,
            };
            at = next;
        }
        match (MIN_CARD_DIGITS..=count)
            .rev()
            .map(|n| ends[n - 1])
            .find(|&end| !is_word(end))
        {
            Some(end) => {
                found.push(start..end);
                start = end;
            }
            None => start += 1,
        }
    }
}

/// A card number: the Luhn checksum (spaces and dashes ignored), and a length its issuer uses.
fn is_card_number(text: &str) -> bool {
    // No issuer numbers cards beyond 19 digits: a longer run is no card, and the digits fit on the
    // stack.
    let mut all = [0u32; 19];
    let mut count = 0;
    for byte in text.bytes().filter(u8::is_ascii_digit) {
        // Every issuer's numbers start with a digit from 2 to 6: most long numbers in traffic (ids,
        // timestamps, order numbers) are no card at their first digit.
        if count == all.len() || (count == 0 && !(b'2'..=b'6').contains(&byte)) {
            return false;
        }
        all[count] = u32::from(byte - b'0');
        count += 1;
    }
    let digits = &all[..count];
    if !issuer_issues(digits) || !grouped_as_cards_are(text) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2, d * 2) {
            (0, _) => d,
            (_, doubled) if doubled > 9 => doubled - 9,
            (_, doubled) => doubled,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether a number written with separators is grouped as cards are printed: fours (the last group
/// shorter on a 13-, 15- or 19-digit card), or 4-6-5 and 4-6-4 (American Express, Diners Club). An id
/// grouped otherwise (`56406688-2572-4353`) is no card.
fn grouped_as_cards_are(text: &str) -> bool {
    if !text.contains([' ', '-']) {
        return true;
    }
    let mut groups = [0usize; 19];
    let mut count = 0;
    for group in text.split([' ', '-']) {
        if count == groups.len() {
            return false;
        }
        groups[count] = group.len();
        count += 1;
    }
    match &groups[..count] {
        [4, 6, 5] | [4, 6, 4] => true,
        [fours @ .., last] => fours.iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Whether an issuer numbers its cards with this prefix and length (the ISO/IEC 7812 ranges of the
/// networks in use: Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay, Maestro).
fn issuer_issues(digits: &[u32]) -> bool {
    let prefix = |n: usize| digits.iter().take(n).fold(0u32, |acc, d| acc * 10 + d);
    let length = digits.len();
    let (two, three, four) = (prefix(2), prefix(3), prefix(4));
    match digits.first() {
        Some(4) => matches!(length, 13 | 16 | 19),
        Some(5) if (51..=55).contains(&two) => length == 16,
        Some(2) if (2221..=2720).contains(&four) => length == 16,
        Some(3) if two == 34 || two == 37 => length == 15,
        Some(3) if (3528..=3589).contains(&four) => (16..=19).contains(&length),
        Some(3) if (300..=305).contains(&three) || two == 36 || two == 38 || two == 39 => {
            (14..=19).contains(&length)
        }
        Some(6) if four == 6011 || (644..=649).contains(&three) || two == 65 || two == 62 => {
            (16..=19).contains(&length)
        }
        // Maestro may number cards with 12 to 19 digits, but issues 16 to 19: the shorter lengths
        // would make cards of account numbers.
        Some(5 | 6) if two == 50 || (56..=69).contains(&two) => (16..=19).contains(&length),
        _ => false,
    }
}

/// The built-in rules. `pii` adds the personal-data rules (email, phone, IBAN).
pub fn builtin_rules(pii: bool) -> Vec<Rule> {
    use Category::*;
    let rule = |id: &str, category, pattern: &str| {
        Rule::new(id, category, pattern).expect("built-in rules compile")
    };
    let mut rules = vec![
        rule(
            "connection-uri-password",
            Secret,
            r#"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|jdbc:[a-z0-9]+)://[^\s:/@'"]*:([^\s@'"/]+)@"#,
        )
        .keywords(&["://"]),
        rule(
            "dsn-password",
            Secret,
            r#"(?i)\b(?:password|passwd|pwd)\s*=\s*(?:'([^']+)'|"([^"]+)"|([^\s;&'",)]+))"#,
        )
        .keywords(&["password", "passwd", "pwd"]),
        rule(
            "sql-password",
            Secret,
            r#"(?i)\b(?:password|identified\s+(?:with\s+\S+\s+)?by)\s*(?:=\s*)?(?:password\s*)?\(?\s*'((?:[^']|'')+)'"#,
        )
        .keywords(&["password", "identified"]),
        rule(
            "private-key",
            Secret,
            // A key cut short (a sample's budget ran out inside it) is masked to where its body ends.
            // Spaces in its label may come escaped (`\ `, as in libpq's options).
            r"-----BEGIN[ A-Z0-9\\]*PRIVATE[ \\]+KEY-----(?:[\s\S]*?-----END[ A-Z0-9\\]*PRIVATE[ \\]+KEY-----|[A-Za-z0-9+/=\s\\:,-]*)",
        )
        .secret_group(0)
        .keywords(&["private key", "private\\ key"]),
        rule(
            "jwt",
            Secret,
            r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",
        )
        .secret_group(0)
        // The second part's start, not the first's: base64 of any JSON object starts as `eyJ`, and
        // traffic is full of it.
        .keywords(&[".eyj"]),
        rule(
            "bearer-token",
            Secret,
            r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{16,}=*)",
        )
        .keywords(&["bearer"]),
        rule("aws-access-key-id", Secret, r"\b((?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})\b")
            .keywords(&["akia", "asia", "abia", "acca"]),
        rule(
            "aws-secret-access-key",
            Secret,
            r#"(?i)aws.{0,20}?(?:secret|key).{0,20}?['"=:\s]\s*['"]?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+]|$)"#,
        )
        .keywords(&["aws"])
        .min_entropy(3.5),
        rule("gcp-api-key", Secret, r"\b(AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)").keywords(&["aiza"]),
        rule(
            "gcp-service-account-key",
            Secret,
            r#""private_key_id"\s*:\s*"([a-f0-9]{40})""#,
        )
        .keywords(&["private_key_id"]),
        rule(
            "azure-storage-key",
            Secret,
            r"(?i)AccountKey=([A-Za-z0-9+/]{86}==)",
        )
        .keywords(&["accountkey"]),
        rule(
            "github-token",
            Secret,
            r"\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b",
        )
        .keywords(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
        rule("gitlab-token", Secret, r"\b(glpat-[A-Za-z0-9_-]{20})(?:[^A-Za-z0-9_-]|$)")
            .keywords(&["glpat-"]),
        rule("slack-token", Secret, r"\b(xox[baprs]-[A-Za-z0-9-]{10,})").keywords(&["xox"]),
        rule(
            "slack-webhook",
            Secret,
            r"(https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+)",
        )
        .keywords(&["hooks.slack.com"]),
        rule("stripe-key", Secret, r"\b((?:sk|rk)_(?:live|test)_[A-Za-z0-9]{24,})\b")
            .keywords(&["sk_live", "sk_test", "rk_live", "rk_test"]),
        rule(
            "proctor-token",
            Secret,
            r"\b(prt_[0-9a-f]{8}_[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)",
        )
        .keywords(&["prt_"]),
        // ASCII word boundaries on both sides: digits inside a hex id or a longer token are no card.
        rule("card-number", Secret, r"(?-u:\b)(?:[0-9][ -]?){11,18}[0-9](?-u:\b)")
            .secret_group(0)
            .finder(card_candidates)
            .check(is_card_number),
        rule(
            "generic-secret",
            Secret,
            r#"(?i)\b(?:secret|token|api[_-]?key|apikey|access[_-]?key|client[_-]?secret|credential)s?[\w.-]{0,20}["']?\s*[:=]\s*["']?([A-Za-z0-9+/_\-.=]{16,})"#,
        )
        .keywords(&["secret", "token", "key", "credential"])
        .min_entropy(3.5),
    ];
    if pii {
        rules.extend([
            rule(
                "email",
                Pii,
                r"\b([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})\b",
            )
            .keywords(&["@"]),
            // The number must end where its digits end: not glued to a letter or digit, nor followed by
            // a separator and more digits (else a prefix of a longer digit run would be a phone).
            rule(
                "phone",
                Pii,
                r"(?:^|[^0-9A-Za-z_+])(\+[1-9][0-9]{0,2}[ .-]?(?:\(?[0-9]{1,4}\)?[ .-]?){2,4}[0-9]{2,4})(?:$|[^0-9A-Za-z_ .-]|[ .-](?:$|[^0-9]))",
            )
            .keywords(&["+"]),
            rule(
                "iban",
                Pii,
                r"(?-u:\b)([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)(?-u:\b)",
            )
            .check(is_iban)
            .worth_running(|text| text.bytes().any(|b| b.is_ascii_uppercase())),
        ]);
    }
    rules
}

/// The countries that number accounts with IBANs, each with the length of its IBANs (ISO 13616
/// registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// An IBAN: a country that uses them, that country's length, and the ISO 13616 check digits
/// (mod 97 = 1).
fn is_iban(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let country_length = IBAN_LENGTHS
        .iter()
        .find(|(country, _)| compact.starts_with(country))
        .map(|&(_, length)| length);
    if country_length != Some(compact.len()) {
        return false;
    }
    let rearranged = compact[4..].chars().chain(compact[..4].chars());
    let mut remainder = 0u32;
    for c in rearranged {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        remainder = if value < 10 {
            (remainder * 10 + value) % 97
        } else {
            (remainder * 100 + value) % 97
        };
    }
    remainder == 1
}

/// A secret found in a text: which rule found it, and where it is (byte offsets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub detector: String,
    pub category: Category,
    pub start: usize,
    pub end: usize,
}

/// One rule's finding with the whole match it came from (see [`Scanner::find_each`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFinding {
    pub detector: String,
    /// The secret, a byte range of the text.
    pub secret: Range<usize>,
    /// The rule's whole match.
    pub whole: Range<usize>,
}

/// The earliest finding, then the longest, wins; sorted by start, none overlapping.
fn without_overlaps(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut kept: Vec<Finding> = Vec::with_capacity(findings.len());
    for finding in findings {
        if kept.last().is_none_or(|last| finding.start >= last.end) {
            kept.push(finding);
        }
    }
    kept
}

/// The largest folded copy of a text that a thread keeps between scans; a larger one is freed.
const MAX_KEPT_SCRATCH: usize = 1024 * 1024;

/// Up to this many keywords, the SIMD search of the `aho-corasick` crate finds them fastest; beyond,
/// a DFA pass is faster than restarting a search after each of the many occurrences.
const MAX_SIMD_KEYWORDS: usize = 64;

/// How a scanner finds the keywords a text holds.
enum KeywordSearch {
    /// A leftmost-first search of the text lowercased, which runs the SIMD prefilter; keywords
    /// inside other keywords are enabled with them.
    Few(AhoCorasick),
    /// One overlapping DFA pass over the text, ASCII case-insensitive: about a nanosecond per byte
    /// whatever the number of keywords (the gitleaks set has 244).
    Many(AhoCorasick),
}

/// A thread's buffers for [`Scanner::find`]: the text lowercased, and the rules to run. A rule is
/// listed once: it is marked with the number of the current search, which leaves nothing to clear
/// between searches, whatever scanner ran last.
#[derive(Default)]
struct Scratch {
    folded: Vec<u8>,
    marks: Vec<u32>,
    mark: u32,
    to_run: Vec<usize>,
}

impl Scratch {
    /// Readies the buffers for a search with `rules` rules.
    fn start(&mut self, rules: usize) {
        self.mark = self.mark.wrapping_add(1);
        if self.mark == 0 {
            self.marks.fill(0);
            self.mark = 1;
        }
        if self.marks.len() < rules {
            self.marks.resize(rules, 0);
        }
        self.to_run.clear();
    }
}

/// A set of rules with their keyword pre-filter.
pub struct Scanner {
    rules: Vec<Rule>,
    prefilter: KeywordSearch,
    /// For each pattern of the pre-filter, the rules it enables.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords: they always run.
    always: Vec<usize>,
}

impl Scanner {
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            if rule.keywords.is_empty() {
                always.push(index);
            }
            for keyword in &rule.keywords {
                match keywords.iter().position(|k| k == keyword) {
                    Some(at) => keyword_rules[at].push(index),
                    None => {
                        keywords.push(keyword.clone());
                        keyword_rules.push(vec![index]);
                    }
                }
            }
        }
        let prefilter = if keywords.len() <= MAX_SIMD_KEYWORDS {
            // A keyword occurrence contains an occurrence of every keyword that is a substring of
            // it: its rules are enabled with it, since a leftmost-first search reports only one
            // pattern per position.
            for (i, keyword) in keywords.iter().enumerate() {
                for (j, other) in keywords.iter().enumerate() {
                    if i != j && keyword.contains(other.as_str()) {
                        let contained = keyword_rules[j].clone();
                        keyword_rules[i].extend(contained);
                    }
                }
            }
            KeywordSearch::Few(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(&keywords)
                    .expect("keywords are plain strings"),
            )
        } else {
            KeywordSearch::Many(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .ascii_case_insensitive(true)
                    .build(&keywords)
                    .expect("keywords are plain strings"),
            )
        };
        Self {
            rules,
            prefilter,
            keyword_rules,
            always,
        }
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// Every secret in `text`, in order, without overlaps (the earliest, then the longest, wins).
    pub fn find(&self, text: &str) -> Vec<Finding> {
        // Every statement and result sample passes through here, and almost none holds a secret: the
        // folded copy and the rules to run live in per-thread buffers, so a clean text allocates
        // nothing.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = const {
                std::cell::RefCell::new(Scratch {
                    folded: Vec::new(),
                    marks: Vec::new(),
                    mark: 0,
                    to_run: Vec::new(),
                })
            };
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                let found = self.find_with(text, &mut scratch);
                if scratch.folded.capacity() > MAX_KEPT_SCRATCH {
                    scratch.folded = Vec::new();
                }
                found
            }
            Err(_) => self.find_with(text, &mut Scratch::default()),
        })
    }

    /// Lists in `scratch.to_run` the rules of every keyword that occurs in `text` (any ASCII case).
    fn enable_by_keywords(&self, text: &str, scratch: &mut Scratch) {
        if self.keyword_rules.is_empty() {
            // No rule has keywords: a search for none would still read every byte (an automaton
            // without patterns has no prefilter to skip with).
            return;
        }
        let Scratch {
            folded,
            marks,
            mark,
            to_run,
        } = scratch;
        let mut enable = |pattern: aho_corasick::PatternID| {
            for &index in &self.keyword_rules[pattern.as_usize()] {
                if marks[index] != *mark {
                    marks[index] = *mark;
                    to_run.push(index);
                }
            }
        };
        match &self.prefilter {
            KeywordSearch::Few(search) => {
                // Keywords are lowercase; a leftmost-first search restarted one byte after each
                // match start finds every keyword occurrence.
                folded.clear();
                folded.extend_from_slice(text.as_bytes());
                folded.make_ascii_lowercase();
                let mut from = 0;
                while let Some(found) = search.find(Input::new(folded.as_slice()).range(from..)) {
                    enable(found.pattern());
                    from = found.start() + 1;
                }
            }
            KeywordSearch::Many(search) => {
                for found in search.find_overlapping_iter(text) {
                    enable(found.pattern());
                }
            }
        }
    }

    fn find_with(&self, text: &str, scratch: &mut Scratch) -> Vec<Finding> {
        scratch.start(self.rules.len());
        for &index in &self.always {
            if self.rules[index]
                .worth_running
                .is_none_or(|test| test(text))
            {
                scratch.marks[index] = scratch.mark;
                scratch.to_run.push(index);
            }
        }
        self.enable_by_keywords(text, scratch);
        if scratch.to_run.is_empty() {
            return Vec::new();
        }
        // In the rules' order: of two findings with the same span, the earlier rule's is kept.
        scratch.to_run.sort_unstable();
        let mut findings: Vec<Finding> = Vec::new();
        for rule in scratch.to_run.iter().map(|&index| &self.rules[index]) {
            for (secret, _) in rule.secrets(text) {
                findings.push(Finding {
                    detector: rule.id.clone(),
                    category: rule.category,
                    start: secret.start,
                    end: secret.end,
                });
            }
        }
        if findings.is_empty() {
            return findings;
        }
        // Secrets first, then personal data where no secret is: a password in a URI is not an email.
        let (secrets, personal): (Vec<Finding>, Vec<Finding>) = findings
            .into_iter()
            .partition(|f| f.category == Category::Secret);
        let mut kept = without_overlaps(secrets);
        let personal: Vec<Finding> = without_overlaps(personal)
            .into_iter()
            .filter(|f| {
                // The kept secrets are sorted and disjoint: only the last one starting before `f`
                // ends can overlap it.
                let before = kept.partition_point(|k| k.start < f.end);
                before == 0 || kept[before - 1].end <= f.start
            })
            .collect();
        kept.extend(personal);
        kept.sort_by_key(|f| f.start);
        kept
    }

    /// Every rule's findings in `text`, each with the whole match it came from, rule by rule and
    /// overlaps kept: what a rule-by-rule comparison with another scanner needs. [`Scanner::find`]
    /// is what masking uses.
    pub fn find_each(&self, text: &str) -> Vec<RuleFinding> {
        let mut scratch = Scratch::default();
        scratch.start(self.rules.len());
        for &index in &self.always {
            if self.rules[index]
                .worth_running
                .is_none_or(|test| test(text))
            {
                scratch.marks[index] = scratch.mark;
                scratch.to_run.push(index);
            }
        }
        self.enable_by_keywords(text, &mut scratch);
        scratch.to_run.sort_unstable();
        scratch
            .to_run
            .iter()
            .flat_map(|&index| {
                let rule = &self.rules[index];
                rule.secrets(text).map(move |(secret, whole)| RuleFinding {
                    detector: rule.id.clone(),
                    secret,
                    whole,
                })
            })
            .collect()
    }

    /// `text` with every secret replaced by its mask, and what was found. Each long run of hex or
    /// base64 is decoded first, and a secret inside is masked in the run's own encoding (see
    /// [`encoded`]); then secrets in clear are masked, so that a mask never lands inside a run and
    /// hides the rest of it from decoding.
    pub fn mask<'t>(&self, text: &'t str) -> (Cow<'t, str>, Vec<Secret<'t>>) {
        let (replacements, hidden) = encoded::find(self, text);
        let mut secrets: Vec<Secret<'t>> = hidden
            .into_iter()
            .map(|h| Secret {
                detector: h.detector,
                value: Cow::Owned(h.secret),
                encoding: Some(h.encoding),
            })
            .collect();
        if replacements.is_empty() {
            let (masked, clear) = self.mask_clear(text);
            secrets.extend(clear);
            return (masked, secrets);
        }
        let mut rewritten = String::with_capacity(text.len());
        let mut from = 0;
        for replacement in replacements {
            rewritten.push_str(&text[from..replacement.start]);
            rewritten.push_str(&replacement.with);
            from = replacement.end;
        }
        rewritten.push_str(&text[from..]);
        let (masked, clear) = self.mask_clear(&rewritten);
        secrets.extend(clear.into_iter().map(|s| Secret {
            value: Cow::Owned(s.value.into_owned()),
            ..s
        }));
        (Cow::Owned(masked.into_owned()), secrets)
    }

    /// `text` with every secret in clear replaced by its mask, and the secrets.
    fn mask_clear<'t>(&self, text: &'t str) -> (Cow<'t, str>, Vec<Secret<'t>>) {
        let findings = self.find(text);
        if findings.is_empty() {
            return (Cow::Borrowed(text), Vec::new());
        }
        let mut secrets = Vec::with_capacity(findings.len());
        let mut masked = String::with_capacity(text.len());
        let mut from = 0;
        for finding in findings {
            masked.push_str(&text[from..finding.start]);
            masked.push_str(&mask_of(&finding.detector));
            secrets.push(Secret {
                value: Cow::Borrowed(&text[finding.start..finding.end]),
                detector: finding.detector,
                encoding: None,
            });
            from = finding.end;
        }
        masked.push_str(&text[from..]);
        (Cow::Owned(masked), secrets)
    }
}

/// A secret that masking found: which detector, the secret as it passed (decoded, if it was found
/// inside an encoded run), and that encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret<'t> {
    pub detector: String,
    pub value: Cow<'t, str>,
    pub encoding: Option<Encoding>,
}

/// The one form in which a detector's secret is fingerprinted, so that the same secret written another
/// way (a card number with or without spaces, a private key with newlines or with `\n` escapes as COPY
/// and JSON write them) has one fingerprint, and the form an investigator pastes finds it.
pub fn normal_form<'s>(detector: &str, secret: &'s str) -> Cow<'s, str> {
    let trimmed = secret.trim();
    if detector == "card-number" {
        return Cow::Owned(trimmed.chars().filter(char::is_ascii_digit).collect());
    }
    if detector.contains("private-key") {
        let mut normal = String::with_capacity(trimmed.len());
        let mut chars = trimmed.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                // An escaped line break or tab, however many times escaped: a key body holds no
                // backslash of its own.
                while chars.next_if_eq(&'\\').is_some() {}
                chars.next_if(|c| matches!(c, 'n' | 'r' | 't'));
            } else if !c.is_whitespace() {
                normal.push(c);
            }
        }
        return Cow::Owned(normal);
    }
    Cow::Borrowed(trimmed)
}

/// The keyed fingerprint of a secret: `hex(HMAC-SHA256(key, secret))`.
pub fn fingerprint(key: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(secret.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> &'static Scanner {
        static SCANNER: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
        SCANNER.get_or_init(|| Scanner::new(builtin_rules(true)))
    }

    fn card_rule() -> Rule {
        builtin_rules(false)
            .into_iter()
            .find(|r| r.id == "card-number")
            .expect("the card rule")
    }

    /// Where the card rule's regex alone matches: what the byte-wise card finder must find.
    fn card_regex_matches(text: &str) -> Vec<Range<usize>> {
        static CARD: std::sync::OnceLock<Rule> = std::sync::OnceLock::new();
        CARD.get_or_init(card_rule)
            .regex
            .find_iter(text)
            .map(|m| m.range())
            .collect()
    }

    /// The secrets `text` yields, as (detector, secret).
    fn found(text: &str) -> Vec<(String, String)> {
        let (_, secrets) = scanner().mask(text);
        secrets
            .into_iter()
            .map(|s| (s.detector, s.value.into_owned()))
            .collect()
    }

    fn finds(text: &str, detector: &str, secret: &str) {
        let found = found(text);
        assert!(
            found.iter().any(|(d, s)| d == detector && s == secret),
            "{detector} should find {secret:?} in {text:?}; found {found:?}"
        );
    }

    fn misses(text: &str, detector: &str) {
        let found = found(text);
        assert!(
            found.iter().all(|(d, _)| d != detector),
            "{detector} should find nothing in {text:?}; found {found:?}"
        );
    }

    #[test]
    fn connection_uris_yield_their_password_only() {
        for (uri, password) in [
            (
                "postgres://admin:S3cr3t-pw@db.internal:5432/prod",
                "S3cr3t-pw",
            ),
            (
                "postgresql://app:hunter2hunter2@10.0.0.1/app",
                "hunter2hunter2",
            ),
            ("mysql://root:toor-pass@localhost/mysql", "toor-pass"),
            (
                "mongodb+srv://svc:m0ng0-pw@cluster0.example.net/db",
                "m0ng0-pw",
            ),
            ("redis://:r3dis-pw@cache:6379/0", "r3dis-pw"),
            ("amqp://guest:rabbit-pw@mq:5672/", "rabbit-pw"),
            ("jdbc:postgresql://u:jdbc-pw@db/app", "jdbc-pw"),
        ] {
            finds(
                &format!("connect with {uri} please"),
                "connection-uri-password",
                password,
            );
        }
        misses(
            "postgres://db.internal:5432/prod",
            "connection-uri-password",
        );
        misses("https://example.com/a:b@c", "connection-uri-password");
    }

    #[test]
    fn dsn_and_sql_passwords() {
        finds(
            "host=db user=app password=Sup3rS3cret dbname=app",
            "dsn-password",
            "Sup3rS3cret",
        );
        finds(
            "Server=db;User Id=sa;Pwd='quoted pw';",
            "dsn-password",
            "quoted pw",
        );
        finds(
            "jdbc:postgresql://db/app?user=u&password=q-pw-1",
            "dsn-password",
            "q-pw-1",
        );
        finds(
            "ALTER ROLE app PASSWORD 'n3w-pa55'",
            "sql-password",
            "n3w-pa55",
        );
        finds(
            "create user bob with encrypted password 'it''s-me'",
            "sql-password",
            "it''s-me",
        );
        finds(
            "CREATE USER 'u'@'%' IDENTIFIED BY 'my-sql-pw'",
            "sql-password",
            "my-sql-pw",
        );
        finds(
            "ALTER USER u IDENTIFIED WITH mysql_native_password BY 'native'",
            "sql-password",
            "native",
        );
        finds(
            "SET PASSWORD = PASSWORD('old-style')",
            "sql-password",
            "old-style",
        );
        misses("ALTER ROLE app PASSWORD NULL", "sql-password");
        misses("select password_hash from users", "sql-password");
    }

    #[test]
    fn keys_and_tokens() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd\n-----END RSA PRIVATE KEY-----";
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let gh = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
        let cases = [
            (format!("key: {key} end"), "private-key", key),
            (format!("token {jwt}"), "jwt", jwt),
            (
                "Authorization: Bearer abcDEF123456ghiJKL789".into(),
                "bearer-token",
                "abcDEF123456ghiJKL789",
            ),
            (
                "id AKIAIOSFODNN7EXAMPLE here".into(),
                "aws-access-key-id",
                "AKIAIOSFODNN7EXAMPLE",
            ),
            (
                format!("aws_secret_access_key = {aws_secret}"),
                "aws-secret-access-key",
                aws_secret,
            ),
            (
                "key=AIzaSyD-1234567890abcdefghijklmnopqrstu".into(),
                "gcp-api-key",
                "AIzaSyD-1234567890abcdefghijklmnopqrstu",
            ),
            (format!("GITHUB_TOKEN={gh}"), "github-token", gh),
            (
                "glpat-abcdefghij0123456789 x".into(),
                "gitlab-token",
                "glpat-abcdefghij0123456789",
            ),
            (
                "xoxb-123456789012-abcdefABCDEF".into(),
                "slack-token",
                "xoxb-123456789012-abcdefABCDEF",
            ),
            (
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc".into(),
                "stripe-key",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            ),
            (
                "client_secret: 'q8Zr3Lm0Xv7TgB2nW5yK'".into(),
                "generic-secret",
                "q8Zr3Lm0Xv7TgB2nW5yK",
            ),
        ];
        for (text, detector, secret) in &cases {
            finds(text, detector, secret);
        }
        misses(
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
            "private-key",
        );
        let escaped = "-----BEGIN\\ PRIVATE\\ KEY-----\\ MIIEvQ\\ -----END\\ PRIVATE\\ KEY-----";
        finds(&format!("-c x={escaped}"), "private-key", escaped);
        let cut = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC";
        finds(&format!("{cut}…[2048 bytes]"), "private-key", cut);
        misses("token = aaaaaaaaaaaaaaaaaaaa", "generic-secret");
        misses("the AKIA prefix alone", "aws-access-key-id");
    }

    #[test]
    fn card_numbers_must_pass_luhn() {
        finds(
            "card 4111 1111 1111 1111 exp",
            "card-number",
            "4111 1111 1111 1111",
        );
        finds("5500-0000-0000-0004", "card-number", "5500-0000-0000-0004");
        misses("order 4111 1111 1111 1112", "card-number");
        misses("id 1234567890123", "card-number");
        finds(
            "4415711815394971,5425233430109903",
            "card-number",
            "5425233430109903",
        );
        finds(
            "cards 4111111111111111 4415711815394971",
            "card-number",
            "4415711815394971",
        );
        finds("amex 378282246310005.", "card-number", "378282246310005");
        finds("amex 3782 822463 10005", "card-number", "3782 822463 10005");
        finds("visa 4222-2222-2222-2", "card-number", "4222-2222-2222-2");
    }

    #[test]
    fn the_card_finder_agrees_with_the_card_regex_on_runs_around_the_limits() {
        for text in [
            "411111111111",
            "41111111111",
            "4111111111111111111",
            "41111111111111111111",
            "4111 1111 1111 1111 2222",
            "4111  1111 1111 1111",
            "x4111111111111111 4111-1111-1111-1111-",
            "-4111-1111-1111-1111-9",
            "1111111111111111111111111 22222222222222",
            "é4111111111111111é",
            "12345678901234567890123_4111111111111111",
        ] {
            assert_eq!(card_candidates(text), card_regex_matches(text), "{text:?}");
        }
        // Runs of card bytes as short as a match, and a little longer, at every offset across the
        // 64-byte chunks the finder reads.
        for offset in 0..140 {
            for run in [
                "411111111111",
                "4111-1111-1111",
                "4111 1111 1111 1",
                " 41111111111111 ",
            ] {
                let text = format!("{}{run}.", ".".repeat(offset));
                assert_eq!(
                    card_candidates(&text),
                    card_regex_matches(&text),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn card_numbers_inside_longer_identifiers_are_no_cards() {
        for text in [
            "select 'trace_id=9f4111111111111111ab order=77'",
            "sha 0a4111111111111111",
            "4111111111111111ff",
            "v4111111111111111",
            // Luhn-valid, but no issuer numbers cards so: a 16-digit order number starting with 1.
            "order 1000000000000008",
            // An issuer's prefix with a length it does not use (Amex is 15 digits).
            "id 3782822463100052",
            // Luhn-valid, an issuer's prefix and length, but grouped as no card is printed.
            "ref 56406688-2572-4353",
            // A Maestro prefix with a length Maestro does not issue: an account number.
            "account 561234567890",
        ] {
            misses(text, "card-number");
        }
    }

    #[test]
    fn personal_data_only_when_asked() {
        finds("mail alice@example.com now", "email", "alice@example.com");
        finds(
            "IBAN DE89 3704 0044 0532 0130 00",
            "iban",
            "DE89 3704 0044 0532 0130 00",
        );
        misses("IBAN DE00 3704 0044 0532 0130 00", "iban");
        finds("call +44 20 7946 0958 today", "phone", "+44 20 7946 0958");
        let secrets_only = Scanner::new(builtin_rules(false));
        assert!(secrets_only.find("mail alice@example.com").is_empty());
    }

    #[test]
    fn phones_ibans_and_generic_secrets_inside_longer_identifiers_are_not_found() {
        for (alone, glued, detector, value) in [
            (
                "call +44 20 7946 0958 today",
                "ref=x+44 20 7946 0958 today",
                "phone",
                "+44 20 7946 0958",
            ),
            (
                "call +44 20 7946 0958.",
                "call +44 20 7946 0958abc",
                "phone",
                "+44 20 7946 0958",
            ),
            (
                "tel: +1 415 555 0132, fax",
                "build +1 415 555 0132 7788 9900 1122",
                "phone",
                "+1 415 555 0132",
            ),
            (
                "IBAN DE89370400440532013000 ok",
                "ref XDE89370400440532013000 ok",
                "iban",
                "DE89370400440532013000",
            ),
            (
                "pay to GB82 WEST 1234 5698 7654 32.",
                "pay to GB82 WEST 1234 5698 7654 32ab",
                "iban",
                "GB82 WEST 1234 5698 7654 32",
            ),
            (
                "token: 'q8Zr3Lm0Xv7TgB2nW5yK'",
                "detokenizer: 'q8Zr3Lm0Xv7TgB2nW5yK'",
                "generic-secret",
                "q8Zr3Lm0Xv7TgB2nW5yK",
            ),
        ] {
            finds(alone, detector, value);
            misses(glued, detector);
        }
        // Check digits right, but no country numbers its IBANs so, or at that length.
        misses("ref ZZ80539007547034 ok", "iban");
        misses("ref DE41370400440532013 ok", "iban");
    }

    #[test]
    fn masking_replaces_the_secret_and_keeps_the_rest() {
        let (masked, secrets) =
            scanner().mask("psql postgres://admin:S3cr3t@db/prod -c 'select 1'");
        assert_eq!(
            masked,
            "psql postgres://admin:[MASKED:connection-uri-password]@db/prod -c 'select 1'"
        );
        assert_eq!(secrets.len(), 1);
        assert_eq!(
            (secrets[0].detector.as_str(), &*secrets[0].value),
            ("connection-uri-password", "S3cr3t")
        );
        let (clean, none) = scanner().mask("select * from accounts where id = 42");
        assert!(matches!(clean, Cow::Borrowed(_)) && none.is_empty());
    }

    #[test]
    fn keywords_hidden_inside_or_across_other_keywords_still_enable_their_rules() {
        let rule = |id: &str, pattern: &str, keywords: &[&str]| {
            Rule::new(id, Category::Secret, pattern)
                .unwrap()
                .keywords(keywords)
        };
        let scanner = Scanner::new(vec![
            rule("inner", r"INNER-(\d+)", &["key"]),
            rule("outer", r"OUTER-(\d+)", &["monkeys"]),
            rule("across", r"ACROSS-(\d+)", &["eyso"]),
        ]);
        // "monkeys" holds "key"; "monkeysoup" holds "eyso" across the end of "monkeys".
        let found: Vec<String> = scanner
            .find("MonKeySoup INNER-1 OUTER-2 ACROSS-3")
            .into_iter()
            .map(|f| f.detector)
            .collect();
        assert_eq!(found, ["inner", "outer", "across"]);

        // The same with more keywords than the SIMD search takes, as a gitleaks set has.
        let mut rules = vec![
            rule("inner", r"INNER-(\d+)", &["key"]),
            rule("outer", r"OUTER-(\d+)", &["monkeys"]),
            rule("across", r"ACROSS-(\d+)", &["eyso"]),
        ];
        let fillers: Vec<String> = (0..MAX_SIMD_KEYWORDS)
            .map(|i| format!("filler{i}"))
            .collect();
        for filler in &fillers {
            rules.push(rule(filler, "FILLER", &[filler.as_str()]));
        }
        let scanner = Scanner::new(rules);
        assert!(matches!(scanner.prefilter, KeywordSearch::Many(_)));
        let found: Vec<String> = scanner
            .find("MonKeySoup INNER-1 OUTER-2 ACROSS-3")
            .into_iter()
            .map(|f| f.detector)
            .collect();
        assert_eq!(found, ["inner", "outer", "across"]);
    }

    #[test]
    fn a_scanner_whose_rules_have_no_keywords_runs_them_all() {
        let scanner = Scanner::new(vec![card_rule()]);
        let found = scanner.find("card 4111 1111 1111 1111 exp");
        assert_eq!((found.len(), found[0].start, found[0].end), (1, 5, 24));
        assert!(Scanner::new(Vec::new())
            .find("card 4111 1111 1111 1111")
            .is_empty());
    }

    #[test]
    fn proctor_tokens_are_secrets_wherever_they_are_typed() {
        let token = "prt_0a1b2c3d_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE";
        for text in [
            token.to_owned(),
            format!("user={token} dbname=app"),
            format!("select '{token}'"),
        ] {
            finds(&text, "proctor-token", token);
        }
        misses("prt_0a1b2c3d_short", "proctor-token");
    }

    #[test]
    fn a_secret_has_one_normal_form_however_it_was_written() {
        assert_eq!(
            normal_form("card-number", " 4111-1111 1111-1111\n"),
            "4111111111111111"
        );
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQ\nAbc=\n-----END PRIVATE KEY-----\n";
        let escaped = key.replace('\n', "\\n");
        let double_escaped = key.replace('\n', "\\\\n");
        let crlf = key.replace('\n', "\r\n");
        let normal = normal_form("private-key", key);
        assert_eq!(
            normal,
            "-----BEGINPRIVATEKEY-----MIIEvQAbc=-----ENDPRIVATEKEY-----"
        );
        for other in [&escaped, &double_escaped, &crlf] {
            assert_eq!(normal_form("private-key", other), normal, "{other:?}");
        }
        assert_eq!(
            normal_form("aws-access-key-id", " AKIAIOSFODNN7EXAMPLE\n"),
            "AKIAIOSFODNN7EXAMPLE"
        );
    }

    #[test]
    fn fingerprints_are_keyed_and_stable() {
        assert_eq!(fingerprint(b"k", "s"), fingerprint(b"k", "s"));
        assert_ne!(fingerprint(b"k", "s"), fingerprint(b"other", "s"));
        assert_eq!(fingerprint(b"k", "s").len(), 64);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn the_card_finder_finds_exactly_what_the_card_regex_finds(
                text in "[0-9 \\-a_.é]{0,80}",
            ) {
                prop_assert_eq!(card_candidates(&text), card_regex_matches(&text));
            }

            #[test]
            fn the_card_finder_finds_what_the_card_regex_finds_across_long_texts(
                pieces in prop::collection::vec(
                    (
                        "[0-9]{1,20}",
                        prop::sample::select(vec![" ", "-", "  ", "--", " -", "a", "_", ".", "é", "x "]),
                    ),
                    0..40,
                ),
            ) {
                let text: String = pieces.iter().map(|(digits, separator)| format!("{digits}{separator}")).collect();
                prop_assert_eq!(card_candidates(&text), card_regex_matches(&text));
            }

            #[test]
            fn masking_never_panics_and_is_idempotent(text in ".{0,300}") {
                let scanner = scanner();
                let (once, _) = scanner.mask(&text);
                let (twice, again) = scanner.mask(&once);
                prop_assert_eq!(&once, &twice);
                prop_assert!(again.is_empty());
            }

            #[test]
            fn masking_secret_laden_text_is_idempotent(
                prefix in "[ a-z=:'\"]{0,20}",
                secret in prop::sample::select(vec![
                    "postgres://u:pw-123456@h/db", "password=hunter22", "ALTER ROLE x PASSWORD 'y'",
                    "AKIAIOSFODNN7EXAMPLE", "4111 1111 1111 1111", "token: q8Zr3Lm0Xv7TgB2nW5yK",
                ]),
                suffix in "[ a-z=:'\"]{0,20}",
            ) {
                let text = format!("{prefix} {secret} {suffix}");
                let scanner = scanner();
                let (once, found) = scanner.mask(&text);
                prop_assert!(!found.is_empty(), "{text:?}");
                let (twice, again) = scanner.mask(&once);
                prop_assert_eq!(&once, &twice);
                prop_assert!(again.is_empty(), "{:?} -> {:?}", once, again);
            }
        }
    }
}
