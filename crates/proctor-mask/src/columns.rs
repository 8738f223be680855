//! Column rules: mask a result column chosen by name (`table.column`, `*` and `?` wildcards,
//! case-insensitive like unquoted SQL names) with a strategy — `redact`, `partial` (keep the last four
//! characters) or `hash` (keyed and stable, so analysts can still join on it without seeing it).

use crate::fingerprint;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Redact,
    Partial,
    Hash,
}

#[derive(Clone, Debug)]
pub struct ColumnRule {
    /// As written: `table.column`.
    pub pattern: String,
    table: String,
    column: String,
    pub strategy: Strategy,
}

impl ColumnRule {
    /// Parses `table.column`; both parts are required (`*` for any table).
    pub fn new(pattern: &str, strategy: Strategy) -> Result<Self, String> {
        let (table, column) = pattern
            .split_once('.')
            .ok_or("write the column as table.column, with * for any table")?;
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '*' | '?'))
        };
        if !valid(table) || !valid(column) {
            return Err("names hold letters, digits, _, $ and the wildcards * and ?".into());
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            table: table.to_lowercase(),
            column: column.to_lowercase(),
            strategy,
        })
    }

    /// Whether the rule names a table rather than `*`.
    pub fn names_a_table(&self) -> bool {
        self.table != "*"
    }

    /// Whether the rule covers `column` of `table`. `table` is `None` when the result column comes
    /// from a table whose name is not known: then the column name decides alone (masking too much
    /// rather than too little).
    pub fn matches(&self, table: Option<&str>, column: &str) -> bool {
        glob(&self.column, &column.to_lowercase())
            && table.is_none_or(|table| glob(&self.table, &table.to_lowercase()))
    }

    /// The value as the rule shows it.
    pub fn apply(&self, value: &str, key: &[u8]) -> String {
        match self.strategy {
            Strategy::Redact => format!("[MASKED:{}]", self.pattern),
            Strategy::Partial => {
                let chars: Vec<char> = value.chars().collect();
                let keep = if chars.len() > 4 { 4 } else { 0 };
                let hidden = chars.len() - keep;
                "*".repeat(hidden) + &chars[hidden..].iter().collect::<String>()
            }
            Strategy::Hash => format!("[HASH:{}]", &fingerprint(key, value)[..16]),
        }
    }
}

/// Wildcard match: `*` any run of characters, `?` one. Linear in practice (one backtrack point).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_table_and_column_names() {
        let any_password = ColumnRule::new("*.password*", Strategy::Redact).unwrap();
        assert!(any_password.matches(Some("users"), "password_hash"));
        assert!(any_password.matches(None, "PASSWORD"));
        assert!(!any_password.matches(Some("users"), "pwd"));
        let email = ColumnRule::new("users.email", Strategy::Hash).unwrap();
        assert!(email.matches(Some("Users"), "email"));
        assert!(!email.matches(Some("orders"), "email"));
        assert!(
            email.matches(None, "email"),
            "an unknown table masks rather than leaks"
        );
        assert!(ColumnRule::new("email", Strategy::Redact).is_err());
        assert!(ColumnRule::new("users.e-mail", Strategy::Redact).is_err());
        assert!(glob("a*b?c", "axxbyc") && !glob("a*b?c", "axxbc") && glob("*", ""));
    }

    #[test]
    fn strategies() {
        let rule = |s| ColumnRule::new("t.c", s).unwrap();
        assert_eq!(rule(Strategy::Redact).apply("secret", b"k"), "[MASKED:t.c]");
        assert_eq!(
            rule(Strategy::Partial).apply("4111111111111111", b"k"),
            "************1111"
        );
        assert_eq!(rule(Strategy::Partial).apply("abc", b"k"), "***");
        let hashed = rule(Strategy::Hash).apply("alice@example.com", b"k");
        assert_eq!(
            hashed,
            rule(Strategy::Hash).apply("alice@example.com", b"k"),
            "stable"
        );
        assert_ne!(
            hashed,
            rule(Strategy::Hash).apply("alice@example.com", b"other key")
        );
        assert!(hashed.starts_with("[HASH:") && hashed.len() == 23);
    }
}
