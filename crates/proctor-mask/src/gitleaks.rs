//! gitleaks-compatible rule files: `[[rules]]` with `id`, `regex`, `secretGroup`, `entropy`,
//! `keywords` and allowlists (`regexes`, `stopwords`), plus the file's global `[allowlist]`.
//!
//! A rule that cannot run here is refused with its reason, never dropped in silence: a regex the
//! `regex` crate cannot compile (look-around, back-references), one beyond the size limit, or a rule
//! that matches file paths only (Proctor scans traffic, not files). Allowlist regexes are applied to
//! the secret, the whole match or its line as their `regexTarget` says; a list that also needs a file
//! path to match never holds. Patterns are Go regexps, rewritten to mean in the `regex`
//! crate what they mean in Go ([`go_regex`]). A match is read as gitleaks (8.23 and later) reads it:
//! newlines trimmed off its ends, the secret the rule's `secretGroup` or else the first capture group
//! that is not empty, Go's entropy, which must exceed the rule's `entropy`. Where gitleaks runs a rule
//! only on files whose path matches its `path`, Proctor runs it on all text. The gitleaks default set
//! ships embedded ([`EMBEDDED`]); `bench/gitleaks-compare.sh` compares its findings with gitleaks'.

use regex::Regex;
use serde::Deserialize;

use crate::{AllowTarget, Category, Rule, RuleError};

#[derive(Deserialize)]
struct RuleFile {
    #[serde(default)]
    allowlist: Option<Allowlist>,
    #[serde(default)]
    rules: Vec<RuleDef>,
}

#[derive(Default, Deserialize)]
struct Allowlist {
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(rename = "regexTarget")]
    regex_target: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    condition: Option<String>,
}

impl Allowlist {
    /// Whether this list can hold for text that has no file path: one whose paths must match too
    /// (`condition = "AND"`) never does.
    fn applies_without_paths(&self) -> bool {
        self.paths.is_empty()
            || !self
                .condition
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("and"))
    }

    fn target(&self) -> AllowTarget {
        match self.regex_target.as_deref() {
            Some("match") => AllowTarget::Match,
            Some("line") => AllowTarget::Line,
            _ => AllowTarget::Secret,
        }
    }
}

#[derive(Deserialize)]
struct RuleDef {
    id: String,
    regex: Option<String>,
    #[serde(rename = "secretGroup")]
    secret_group: Option<usize>,
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    allowlists: Vec<Allowlist>,
    allowlist: Option<Allowlist>,
}

/// The gitleaks default rule set (gitleaks 8, MIT: `rules/LICENSE-gitleaks`), shipped with Proctor
/// and loaded by the name [`EMBEDDED_NAME`].
pub const EMBEDDED: &str = include_str!("../rules/gitleaks.toml");
/// The name under which `[masking] rules_files` loads [`EMBEDDED`].
pub const EMBEDDED_NAME: &str = "gitleaks";

/// The embedded rule set of that name, if there is one.
pub fn embedded(name: &str) -> Option<&'static str> {
    (name == EMBEDDED_NAME).then_some(EMBEDDED)
}

/// The rules of a file that compiled, and those refused with their reasons.
pub struct Loaded {
    pub rules: Vec<Rule>,
    pub refused: Vec<RuleError>,
}

/// Go's regexp takes a `{` that opens no valid repetition (`{n}`, `{n,}`, `{n,m}`) as a literal;
/// the `regex` crate refuses it. Escapes such braces, outside character classes, so that the pattern
/// means what it means to gitleaks.
pub fn go_braces(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let (mut i, mut in_class, mut open_literal) = (0, false, 0usize);
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(c);
            if let Some(&next) = chars.get(i + 1) {
                out.push(next);
            }
            i += 2;
            // `\p{Greek}`, `\x{263a}`: the braces belong to the escape.
            let braced =
                matches!(chars.get(i - 1), Some('p' | 'P' | 'x')) && chars.get(i) == Some(&'{');
            if braced {
                if let Some(end) = chars[i..].iter().position(|&c| c == '}') {
                    out.extend(&chars[i..=i + end]);
                    i += end + 1;
                }
            }
            continue;
        }
        match c {
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => {
                let close = chars[i..].iter().position(|&c| c == '}').map(|p| i + p);
                let repetition = close.is_some_and(|end| {
                    let inner: String = chars[i + 1..end].iter().collect();
                    let mut parts = inner.splitn(2, ',');
                    let first = parts.next().unwrap_or_default();
                    !first.is_empty()
                        && first.chars().all(|c| c.is_ascii_digit())
                        && parts
                            .next()
                            .is_none_or(|second| second.chars().all(|c| c.is_ascii_digit()))
                });
                if !repetition {
                    out.push_str("\\{");
                    open_literal += 1;
                    i += 1;
                    continue;
                }
            }
            '}' if !in_class && open_literal > 0 => {
                out.push_str("\\}");
                open_literal -= 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

/// ASCII classes as Go's regexp reads `\d`, `\w` and `\s`, outside a bracketed class and inside one.
const GO_DIGIT: (&str, &str) = ("[0-9]", "0-9");
const GO_WORD: (&str, &str) = ("[0-9A-Za-z_]", "0-9A-Za-z_");
const GO_SPACE: (&str, &str) = ("[\\t\\n\\f\\r ]", "\\t\\n\\f\\r ");

/// A pattern written for Go's regexp, rewritten so that the `regex` crate reads it as Go does.
///
/// - `\d \w \s \b` and their negations are ASCII in Go whatever the flags; in the `regex` crate they
///   are Unicode. They become explicit ASCII classes and `(?-u:\b)`, which is also what makes the
///   busiest rules fast: `[\w.-]{0,50}` is a few states, not thousands. A negated class (`\W`,
///   `[^\d]`) still matches any non-ASCII character, as in Go. Case folding (`(?i)`) stays Unicode
///   simple folding in both.
/// - Braces that open no repetition are literal (see [`go_braces`]).
/// - `\Q...\E` quotes a literal; octal escapes (`\0`, `\012`, `\141`) are characters; `\<` and
///   `\>` are the characters `<` and `>` (word boundaries in the `regex` crate).
/// - Inside a bracketed class, `[`, `&&`, `--` and `~~` are literal in Go and set syntax in the
///   `regex` crate: they are escaped.
pub fn go_regex(pattern: &str) -> String {
    let chars: Vec<char> = go_braces(pattern).chars().collect();
    let mut out = String::with_capacity(chars.len() + 32);
    let mut i = 0;
    // Where the current bracketed class's items start (after `[` and a `^`), if inside one.
    let mut class_start: Option<usize> = None;
    while i < chars.len() {
        let c = chars[i];
        let inside = class_start.is_some();
        if c == '\\' {
            let Some(&next) = chars.get(i + 1) else {
                out.push(c);
                break;
            };
            let pick = |(outside, within): (&'static str, &'static str)| {
                if inside {
                    within
                } else {
                    outside
                }
            };
            match next {
                'd' => out.push_str(pick(GO_DIGIT)),
                'w' => out.push_str(pick(GO_WORD)),
                's' => out.push_str(pick(GO_SPACE)),
                'D' | 'W' | 'S' => {
                    let set = match next {
                        'D' => GO_DIGIT.1,
                        'W' => GO_WORD.1,
                        _ => GO_SPACE.1,
                    };
                    // A negated class nested in a class is a union in the `regex` crate.
                    out.push_str(&format!("[^{set}]"));
                }
                'b' | 'B' if !inside => out.push_str(&format!("(?-u:\\{next})")),
                '<' | '>' => out.push(next),
                'Q' => {
                    let rest: String = chars[i + 2..].iter().collect();
                    let (quoted, after) = match rest.find("\\E") {
                        Some(end) => (&rest[..end], end + 2),
                        None => (rest.as_str(), rest.len()),
                    };
                    if inside {
                        quoted
                            .chars()
                            .for_each(|q| out.push_str(&regex::escape(&q.to_string())));
                    } else {
                        out.push_str(&regex::escape(quoted));
                    }
                    i += 2 + quoted.chars().count() + (after - quoted.len());
                    continue;
                }
                '0'..='7' => {
                    // Go: `\0` and up to two more octal digits, or `\1`-`\7` with one or two more (a lone
                    // `\1` is a back-reference, refused by both).
                    let digits: String = chars[i + 1..]
                        .iter()
                        .take(3)
                        .take_while(|d| ('0'..='7').contains(d))
                        .collect();
                    if next != '0' && digits.len() < 2 {
                        out.push('\\');
                        out.push(next);
                    } else {
                        let code = u32::from_str_radix(&digits, 8).unwrap_or_default();
                        out.push_str(&format!("\\x{{{code:X}}}"));
                        i += 1 + digits.len();
                        continue;
                    }
                }
                _ => {
                    out.push(c);
                    out.push(next);
                }
            }
            i += 2;
            continue;
        }
        match (c, class_start) {
            ('[', None) => {
                out.push(c);
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                class_start = Some(i);
                continue;
            }
            ('[', Some(_)) if chars.get(i + 1) == Some(&':') => {
                // A POSIX class, `[:alpha:]`: ASCII in both.
                let rest: String = chars[i..].iter().collect();
                let end = rest.find(":]").map_or(rest.len(), |at| at + 2);
                out.push_str(&rest[..end]);
                i += rest[..end].chars().count();
                continue;
            }
            (']', Some(start)) if i == start => out.push_str("\\]"),
            (']', Some(_)) => {
                out.push(c);
                class_start = None;
            }
            ('[' | '&' | '~', Some(_)) => {
                out.push('\\');
                out.push(c);
            }
            ('-', Some(_)) if chars.get(i + 1) == Some(&'-') => out.push_str("-\\"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

fn compile_all(list: &Allowlist, id: &str) -> Result<Vec<(AllowTarget, Regex)>, RuleError> {
    list.regexes
        .iter()
        .map(|p| {
            Regex::new(&go_regex(p))
                .map(|regex| (list.target(), regex))
                .map_err(|e| RuleError {
                    id: id.to_owned(),
                    reason: format!("allowlist regex: {}", crate::first_line(&e.to_string())),
                })
        })
        .collect()
}

/// Reads a gitleaks rule file (TOML).
pub fn load(text: &str) -> Result<Loaded, String> {
    let file: RuleFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let global = file.allowlist.unwrap_or_default();
    let mut loaded = Loaded {
        rules: Vec::new(),
        refused: Vec::new(),
    };
    for def in file.rules {
        match build(def, &global) {
            Ok(rule) => loaded.rules.push(rule),
            Err(e) => loaded.refused.push(e),
        }
    }
    Ok(loaded)
}

fn build(def: RuleDef, global: &Allowlist) -> Result<Rule, RuleError> {
    let Some(pattern) = def.regex.as_deref() else {
        return Err(RuleError {
            id: def.id,
            reason: "matches file paths only; Proctor scans traffic, not files".into(),
        });
    };
    let mut rule = Rule::new(&def.id, Category::Secret, &go_regex(pattern))?.read_as_gitleaks();
    let keywords: Vec<&str> = def.keywords.iter().map(String::as_str).collect();
    rule = rule.keywords(&keywords);
    if let Some(group) = def.secret_group {
        rule = rule.secret_group(group);
    }
    // gitleaks before 8.23 also asked the secret of a rule whose id starts with `generic` for a
    // digit; 8.23 dropped that for the allowlists the rule file now gives `generic-api-key` (a secret
    // of letters, dots, dashes and underscores alone is no secret).
    if let Some(entropy) = def.entropy {
        rule = rule.min_entropy(entropy);
    }
    let lists = def
        .allowlists
        .iter()
        .chain(def.allowlist.as_ref())
        .chain([global]);
    let mut regexes = Vec::new();
    let mut stopwords = Vec::new();
    for list in lists.filter(|list| list.applies_without_paths()) {
        regexes.extend(compile_all(list, &def.id)?);
        stopwords.extend(list.stopwords.iter().cloned());
    }
    Ok(rule.allow(regexes, stopwords))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scanner;

    #[test]
    fn the_gitleaks_rule_set_loads_and_every_refusal_has_a_reason() {
        let loaded = load(EMBEDDED).unwrap();
        let total = loaded.rules.len() + loaded.refused.len();
        println!(
            "gitleaks.toml: {total} rules, {} compile, {} refused",
            loaded.rules.len(),
            loaded.refused.len()
        );
        for refused in &loaded.refused {
            println!("  refused {refused}");
            assert!(!refused.reason.is_empty());
        }
        assert_eq!(total, 222);
        let refused: Vec<&str> = loaded.refused.iter().map(|r| r.id.as_str()).collect();
        // The one refusal: a rule that matches file names only.
        assert_eq!(refused, ["pkcs12-file"]);
        let scanner = Scanner::new(loaded.rules);
        let found = scanner.find("export GITHUB_TOKEN=ghp_Zq3x9LmT0vB7nW2yK5rJ8pH4dF6sA1cE9gU0");
        assert!(!found.is_empty(), "the github-pat rule finds a token");
        assert!(scanner
            .find("select * from accounts where id = 42")
            .is_empty());
    }

    fn go(pattern: &str) -> Regex {
        Regex::new(&go_regex(pattern)).unwrap()
    }

    #[test]
    fn perl_classes_and_word_boundaries_are_ascii_as_in_go() {
        assert!(go(r"^\w+$").is_match("key_9"));
        assert!(
            !go(r"^\w+$").is_match("clé"),
            "é is no word character in Go"
        );
        assert!(
            !go(r"^\d+$").is_match("١٢٣"),
            "Arabic-Indic digits are no digits in Go"
        );
        assert!(
            !go(r"^\s$").is_match("\u{a0}"),
            "a no-break space is no space in Go"
        );
        assert!(
            !go(r"^\s$").is_match("\u{b}"),
            "nor, in Go, is a vertical tab"
        );
        assert!(
            go(r"^\W$").is_match("é"),
            "a negated class still matches non-ASCII"
        );
        assert!(go(r"^[\W]$").is_match("é") && !go(r"^[\W]$").is_match("a"));
        assert!(go(r"^[^\d]$").is_match("é") && !go(r"^[^\d]$").is_match("7"));
        assert!(go(r"^[\S]+$").is_match("é1") && !go(r"^[\S]+$").is_match("a b"));
        // `é` is no word character in Go: there is a word boundary between it and `key`.
        assert!(go(r"\bkey\b").is_match("clékey"));
        assert!(!Regex::new(r"\bkey\b").unwrap().is_match("clékey"));
        assert!(go(r"a\Bb").is_match("ab") && !go(r"a\Bb").is_match("a b"));
        // Case folding stays Unicode simple folding, as in Go: the Kelvin sign folds to k.
        assert!(go(r"(?i)^key$").is_match("\u{212a}EY"));
        assert!(go(r"(?i)^[a-z]+$").is_match("KEY"));
    }

    #[test]
    fn escapes_and_class_syntax_that_go_reads_differently_are_rewritten() {
        assert!(go(r"^\Qa.b*\E+$").is_match("a.b**"));
        assert!(!go(r"^\Qa.b*\E$").is_match("axb"));
        assert!(go(r"^\Q(unclosed$").is_match("(unclosed$"));
        assert!(go(r"^\141\0$").is_match("a\0"), "octal escapes");
        assert!(go(r"^\x{41}\z").is_match("A"));
        assert!(go(r"^\x{263a}\p{Greek}\P{Greek}$").is_match("☺λa"));
        assert_eq!(go_braces(r"\x{263a}{2}\p{L}"), r"\x{263a}{2}\p{L}");
        assert!(go(r"^\<b\>$").is_match("<b>"), "\\< is a literal in Go");
        assert!(
            go(r"^[[]$").is_match("["),
            "[ inside a class is literal in Go"
        );
        assert!(
            go(r"^[a&&b]+$").is_match("a&&b"),
            "&& is no intersection in Go"
        );
        assert!(go(r"^[a~~b]+$").is_match("~"));
        assert!(go(r"^[+--]+$").is_match(",-"), "a range from + to -");
        assert!(
            go(r"^[]a]+$").is_match("]a"),
            "] first in a class is literal"
        );
        assert!(go(r"^[[:alnum:]_]+$").is_match("a_1") && !go(r"^[[:alnum:]]$").is_match("é"));
        assert!(
            go(r"^\${x}$").is_match("${x}"),
            "braces still as in go_braces"
        );
    }

    /// The rule set, compiled once, and each rule alone in a scanner of its own.
    fn gitleaks_rules() -> &'static std::collections::HashMap<String, Scanner> {
        static RULES: std::sync::OnceLock<std::collections::HashMap<String, Scanner>> =
            std::sync::OnceLock::new();
        RULES.get_or_init(|| {
            load(EMBEDDED)
                .unwrap()
                .rules
                .into_iter()
                .map(|rule| (rule.id.clone(), Scanner::new(vec![rule])))
                .collect()
        })
    }

    /// The secrets rule `id` finds in `text`.
    fn secrets_of(id: &str, text: &str) -> Vec<String> {
        let scanner = &gitleaks_rules()[id];
        scanner
            .find(text)
            .into_iter()
            .map(|f| text[f.start..f.end].to_owned())
            .collect()
    }

    #[test]
    fn the_busiest_gitleaks_rules_find_what_they_claim_and_no_more() {
        let found = [
            (
                "generic-api-key",
                "config.api_key = \"Zq3x9LmT0vB7nW2yK5rJ\"\n",
                "Zq3x9LmT0vB7nW2yK5rJ",
            ),
            (
                "generic-api-key",
                "{\"client_secret\": \"8f2kLq0Zx7Rt5Vn1Wm4Y\"}",
                "8f2kLq0Zx7Rt5Vn1Wm4Y",
            ),
            (
                "generic-api-key",
                "export DB_PASSWORD=Xk29fjQ0pLm3Zt7w\n",
                "Xk29fjQ0pLm3Zt7w",
            ),
            (
                "aws-access-token",
                "aws_access_key_id = AKIA2OGYBAH6QWERTY7Z",
                "AKIA2OGYBAH6QWERTY7Z",
            ),
            (
                "github-pat",
                "GITHUB_TOKEN=ghp_Zq3x9LmT0vB7nW2yK5rJ8pH4dF6sA1cE9gU0",
                "ghp_Zq3x9LmT0vB7nW2yK5rJ8pH4dF6sA1cE9gU0",
            ),
            (
                "gitlab-pat",
                "token: glpat-Zq3x9LmT0vB7nW2yK5rJ",
                "glpat-Zq3x9LmT0vB7nW2yK5rJ",
            ),
            (
                "slack-bot-token",
                "SLACK=xoxb-1234567890-1234567890123-Zq3x9LmT0vB7nW2yK5rJ8pH4",
                "xoxb-1234567890-1234567890123-Zq3x9LmT0vB7nW2yK5rJ8pH4",
            ),
            (
                "stripe-access-token",
                "stripe.api_key = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            ),
            (
                "jwt",
                "Authorization: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c ok",
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            ),
            (
                "pypi-upload-token",
                "password: pypi-AgEIcHlwaS5vcmcCJDk5ZjQxZmM3LWE0MjktNDE3Yi05Zjg2LTBlYjA1ZGJlZDhlMwACKlszLCJkZWYiXQ",
                "pypi-AgEIcHlwaS5vcmcCJDk5ZjQxZmM3LWE0MjktNDE3Yi05Zjg2LTBlYjA1ZGJlZDhlMwACKlszLCJkZWYiXQ",
            ),
        ];
        for (id, text, secret) in found {
            assert_eq!(secrets_of(id, text), [secret], "{id} in {text:?}");
        }
        let clean = [
            // A word of letters alone after a keyword: the rule's allowlist (`^[a-zA-Z_.-]+$`).
            ("generic-api-key", "password: CorrectHorseBatteryStaple\n"),
            // Allowlisted on the whole match (`regexTarget = "match"`): a primary key is no secret.
            ("generic-api-key", "primary_key = 4c9e1f7a2b8d6e3f\n"),
            (
                "generic-api-key",
                "token_url = https://auth.example.com/oauth2/token\n",
            ),
            ("generic-api-key", "api_version = 2024-06-01\n"),
            // The AWS key alphabet is base32: digits 0, 1, 8, 9 make it no key.
            ("aws-access-token", "id AKIA0000111188889999 x"),
            ("aws-access-token", "xAKIA2OGYBAH6QWERTY7Z"),
            ("github-pat", "ghp_short"),
            ("stripe-access-token", "sk_live_short"),
            ("jwt", "eyJhbGciOiJIUzI1NiJ9"),
        ];
        for (id, text) in clean {
            assert!(secrets_of(id, text).is_empty(), "{id} in {text:?}");
        }
    }

    /// The secrets the rules of `file` find in `text`.
    fn secrets_in(file: &str, text: &str) -> Vec<String> {
        Scanner::new(load(file).unwrap().rules)
            .find(text)
            .into_iter()
            .map(|f| text[f.start..f.end].to_owned())
            .collect()
    }

    // What gitleaks 8.26 reports for each case below was checked with gitleaks itself (see
    // `bench/gitleaks-compare.sh`).

    #[test]
    fn a_secret_must_exceed_the_entropy_minimum_not_reach_it() {
        // Four characters twice and eight once: 3.5 bits exactly, generic-api-key's minimum.
        let secret = "q7q7xzxzmwrtypkv";
        assert_eq!(crate::go_entropy(secret), 3.5);
        let text = format!("config: api_key = \"{secret}\" loaded");
        assert!(secrets_of("generic-api-key", &text).is_empty());
        let text = "config: api_key = \"q7q7xzxzmwrtypkvb\" loaded";
        assert_eq!(secrets_of("generic-api-key", text), ["q7q7xzxzmwrtypkvb"]);
    }

    #[test]
    fn entropy_is_gos_characters_over_bytes() {
        // One character of two bytes: frequency 1/2 for Go, two bytes of 1/2 each byte-wise.
        assert_eq!(crate::go_entropy("é"), 0.5);
        assert_eq!(crate::entropy("é"), 1.0);
        assert_eq!(crate::go_entropy("éé"), 0.5);
        for ascii in ["", "a", "abcd", "Zq3x9LmT0vB7nW2yK5rJ", "aabbbc"] {
            assert!((crate::go_entropy(ascii) - crate::entropy(ascii)).abs() < 1e-12);
        }
    }

    #[test]
    fn a_generic_secret_needs_no_digit_read_as_gitleaks_8_23_and_later() {
        let text = "config: auth_token = \"Zq+xLmT/vBnWyKrJpHdF\" loaded";
        assert_eq!(
            secrets_of("generic-api-key", text),
            ["Zq+xLmT/vBnWyKrJpHdF"]
        );
        // A word of letters alone is still none: the rule's allowlist says so.
        assert!(secrets_of("generic-api-key", "password: CorrectHorseBatteryStaple\n").is_empty());
    }

    #[test]
    fn the_secret_is_the_first_group_that_matched_something() {
        let file = r#"
[[rules]]
id = "tok"
regex = '''tok(-?)([a-z0-9]{12})'''
"#;
        assert_eq!(secrets_in(file, "x tokabcdef123456 y"), ["abcdef123456"]);
        assert_eq!(secrets_in(file, "x tok-abcdef123456 y"), ["-"]);
    }

    #[test]
    fn secret_group_0_is_no_secret_group() {
        let file = r#"
[[rules]]
id = "key"
regex = '''key_([a-z0-9]{12})'''
secretGroup = 0
"#;
        assert_eq!(secrets_in(file, "z key_abcdef123456"), ["abcdef123456"]);
    }

    #[test]
    fn newlines_at_either_end_of_a_match_are_no_part_of_it() {
        let file = r#"
[[rules]]
id = "pat"
regex = '''\npat_[a-z0-9]{12}\s'''
[[rules]]
id = "zed"
regex = '''\nzed_[a-z0-9]{12}\s'''
[[rules.allowlists]]
regexTarget = "match"
regexes = ['''^zed_[a-z0-9]{12}$''']
"#;
        let text = "w\npat_abcdef123456\nq\nzed_abcdef123456\nend";
        assert_eq!(secrets_in(file, text), ["pat_abcdef123456"]);
    }

    #[test]
    fn an_allowlist_that_needs_a_file_path_never_holds() {
        let text = r#"
[[rules]]
id = "tok"
regex = '''tok_([a-z0-9]{12})'''
[[rules.allowlists]]
condition = "AND"
paths = ['''\.bb$''']
regexes = ['''^abc''']
[[rules.allowlists]]
regexTarget = "line"
regexes = ['''^# example''']
"#;
        let scanner = Scanner::new(load(text).unwrap().rules);
        assert_eq!(scanner.find("tok_abcdef123456").len(), 1);
        assert!(scanner.find("# example: tok_abcdef123456").is_empty());
        assert_eq!(scanner.find("# example\ntok_abcdef123456").len(), 1);
    }

    #[test]
    fn braces_that_open_no_repetition_are_literal_as_in_go() {
        assert_eq!(go_braces(r"^\${(?:[A-Z_]+)}$"), r"^\$\{(?:[A-Z_]+)\}$");
        assert_eq!(go_braces(r"a{2,3}[{]b{4}"), r"a{2,3}[{]b{4}");
        assert_eq!(go_braces(r"^\{\{x}}$"), r"^\{\{x}}$");
        assert!(Regex::new(&go_braces(r"^\{\d{0,2}}$"))
            .unwrap()
            .is_match("{12}"));
    }

    #[test]
    fn a_rule_that_cannot_compile_is_refused_with_its_reason() {
        let text = r#"
[[rules]]
id = "look-behind"
regex = '''(?<=key=)\w+'''

[[rules]]
id = "path-only"
path = '''\.pem$'''

[[rules]]
id = "fine"
regex = '''tok_([a-z0-9]{12})'''
keywords = ["tok_"]
[[rules.allowlists]]
stopwords = ["example"]
"#;
        let loaded = load(text).unwrap();
        assert_eq!(loaded.rules.len(), 1);
        let reasons: Vec<_> = loaded
            .refused
            .iter()
            .map(|r| (r.id.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(reasons[0].0, "look-behind");
        assert!(
            reasons[0].1.contains("look-around") || reasons[0].1.contains("not supported"),
            "{reasons:?}"
        );
        assert_eq!(reasons[1].0, "path-only");
        let scanner = Scanner::new(loaded.rules);
        assert_eq!(scanner.find("tok_abcdef123456").len(), 1);
        assert!(scanner.find("tok_example12345").is_empty(), "stopword");
    }
}
