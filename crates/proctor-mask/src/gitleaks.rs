//! gitleaks-compatible rule files: `[[rules]]` with `id`, `regex`, `secretGroup`, `entropy`,
//! `keywords` and allowlists (`regexes`, `stopwords`), plus the file's global `[allowlist]`.
//!
//! A rule that cannot run here is refused with its reason, never dropped in silence: a regex the
//! `regex` crate cannot compile (look-around, back-references), one beyond the size limit, or a rule
//! that matches file paths only (Proctor scans traffic, not files). Allowlist regexes are applied to
//! the secret whatever their `regexTarget`.

use regex::Regex;
use serde::Deserialize;

use crate::{Category, Rule, RuleError};

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

fn compile_all(patterns: &[String], id: &str) -> Result<Vec<Regex>, RuleError> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(&go_braces(p)).map_err(|e| RuleError {
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
    let mut rule = Rule::new(&def.id, Category::Secret, &go_braces(pattern))?;
    let keywords: Vec<&str> = def.keywords.iter().map(String::as_str).collect();
    rule = rule.keywords(&keywords);
    if let Some(group) = def.secret_group {
        rule = rule.secret_group(group);
    }
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
    for list in lists {
        regexes.extend(compile_all(&list.regexes, &def.id)?);
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
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/gitleaks/gitleaks.toml"
        );
        let text = std::fs::read_to_string(path).expect("../shared/data/gitleaks/gitleaks.toml");
        let loaded = load(&text).unwrap();
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
        assert!(loaded.rules.len() >= 200, "most rules compile");
        let scanner = Scanner::new(loaded.rules);
        let found = scanner.find("export GITHUB_TOKEN=ghp_Zq3x9LmT0vB7nW2yK5rJ8pH4dF6sA1cE9gU0");
        assert!(!found.is_empty(), "the github-pat rule finds a token");
        assert!(scanner
            .find("select * from accounts where id = 42")
            .is_empty());
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
