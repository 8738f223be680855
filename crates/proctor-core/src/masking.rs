//! The gateway's masker: the detectors `[masking]` configures and the key that fingerprints what
//! they find. Protocol crates mask through the [`crate::SessionRecorder`]; this module owns building
//! the scanner (built-in rules, then gitleaks rule files) and the fingerprint key in the data dir.

use std::borrow::Cow;
use std::path::Path;

use proctor_mask::columns::ColumnRule;
use proctor_mask::{fingerprint, gitleaks, normal_form, Scanner};
use serde_json::{json, Value};

use crate::config::{Config, ConfigError};

/// The file in the data dir that holds the fingerprint key (mode 0600).
pub const FINGERPRINT_KEY_FILE: &str = "fingerprint-key";

pub struct Masker {
    scanner: Scanner,
    key: [u8; 32],
}

/// What building the masker found worth telling the operator: rules refused, with their reasons.
pub struct MaskerReport {
    pub rules: usize,
    pub refused: Vec<String>,
}

/// Reads the fingerprint key from the data dir, making one on first use.
pub fn fingerprint_key(data_dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = data_dir.join(FINGERPRINT_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            bytes.try_into().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a 32-byte key", path.display()),
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::create_dir_all(data_dir)?;
            let key: [u8; 32] = rand::random();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(hex::encode(key).as_bytes())?;
            file.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

impl Masker {
    /// Builds the scanner from the built-in rules and the configured rule files.
    pub fn from_config(
        config: &Config,
        key: [u8; 32],
    ) -> Result<(Self, MaskerReport), ConfigError> {
        let mut rules = proctor_mask::builtin_rules(config.masking.pii);
        let mut refused = Vec::new();
        for (i, path) in config.masking.rules_files.iter().enumerate() {
            let at = format!("masking.rules_files[{i}]");
            // A bare name that is a shipped rule set loads it; anything else is a file.
            let shipped = path.to_str().and_then(gitleaks::embedded);
            let text = match shipped {
                Some(text) => Cow::Borrowed(text),
                None => Cow::Owned(std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(at.clone(), format!("cannot read {}: {e}", path.display()))
                })?),
            };
            let loaded = gitleaks::load(&text).map_err(|e| {
                ConfigError::new(at.clone(), format!("not a gitleaks rule file: {e}"))
            })?;
            refused.extend(
                loaded
                    .refused
                    .iter()
                    .map(|r| format!("{}: {r}", path.display())),
            );
            rules.extend(loaded.rules);
        }
        let report = MaskerReport {
            rules: rules.len(),
            refused,
        };
        Ok((
            Self {
                scanner: Scanner::new(rules),
                key,
            },
            report,
        ))
    }

    /// The keyed fingerprint of a secret.
    pub fn fingerprint(&self, secret: &str) -> String {
        fingerprint(&self.key, secret)
    }

    /// `value` as a column rule shows it, and the finding that records it.
    pub fn mask_column(&self, rule: &ColumnRule, value: &str, location: &str) -> (String, Value) {
        let finding = json!({"detector": format!("column:{}", rule.pattern),
                             "fingerprint": self.fingerprint(value), "location": location});
        (rule.apply(value, &self.key), finding)
    }

    /// `text` masked, and a finding for each secret: detector, fingerprint (of the secret's normal
    /// form, see [`normal_form`]), `location`, and the encoding it was found in when it was not clear.
    pub fn mask<'t>(&self, text: &'t str, location: &str) -> (Cow<'t, str>, Vec<Value>) {
        let (masked, secrets) = self.scanner.mask(text);
        let findings = secrets
            .into_iter()
            .map(|secret| {
                let fingerprint = self.fingerprint(&normal_form(&secret.detector, &secret.value));
                let mut finding = json!({"detector": secret.detector, "fingerprint": fingerprint,
                                         "location": location});
                if let Some(encoding) = secret.encoding {
                    finding["encoding"] = Value::from(encoding.name());
                }
                finding
            })
            .collect();
        (masked, findings)
    }

    /// The fingerprints under which a suspected secret, pasted as an investigator holds it, would have
    /// been recorded: each secret the detectors find in it (a URI's password, a PEM block as it sits
    /// in a file), and the text itself, whole and word by word, for a secret no detector knows alone.
    pub fn fingerprints_of(&self, suspect: &str) -> Vec<String> {
        /// Beyond this many words, the text is not one secret or a pair, and its words are not tried.
        const MAX_WORDS: usize = 32;
        let trimmed = suspect.trim();
        let mut forms: Vec<Cow<'_, str>> = vec![Cow::Borrowed(trimmed)];
        let (_, secrets) = self.scanner.mask(trimmed);
        for secret in &secrets {
            forms.push(Cow::Owned(
                normal_form(&secret.detector, &secret.value).into_owned(),
            ));
        }
        let words: Vec<&str> = trimmed
            .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';'))
            .filter(|w| !w.is_empty())
            .collect();
        if words.len() > 1 && words.len() <= MAX_WORDS {
            forms.extend(words.into_iter().map(Cow::Borrowed));
        }
        let mut fingerprints: Vec<String> = forms
            .iter()
            .filter(|form| !form.is_empty())
            .map(|form| self.fingerprint(form))
            .collect();
        fingerprints.sort();
        fingerprints.dedup();
        fingerprints
    }

    /// Masks every string inside `value`, and every number long enough to be a secret (a card number
    /// bound as an `int8`), in place; returns the findings. A number that holds a secret becomes the
    /// secret's mask, a string.
    pub fn mask_value(&self, value: &mut Value, location: &str) -> Vec<Value> {
        let mut findings = Vec::new();
        self.mask_value_into(value, location, &mut findings);
        findings
    }

    fn mask_value_into(&self, value: &mut Value, location: &str, findings: &mut Vec<Value>) {
        /// Numbers shorter than this hold no secret a detector knows (the shortest card has 13 digits).
        const MIN_SECRET_DIGITS: usize = 12;
        const SMALLEST_LONG: u64 = 100_000_000_000;
        match value {
            Value::String(text) => {
                let (masked, found) = self.mask(text, location);
                if let Cow::Owned(masked) = masked {
                    *text = masked;
                }
                findings.extend(found);
            }
            Value::Number(number) => {
                // Most numbers are small: they are told apart without writing them out.
                let small = number
                    .as_u64()
                    .map(|n| n < SMALLEST_LONG)
                    .or_else(|| number.as_i64().map(|n| n.unsigned_abs() < SMALLEST_LONG))
                    .unwrap_or(false);
                if small {
                    return;
                }
                let text = number.to_string();
                if text.bytes().filter(u8::is_ascii_digit).count() < MIN_SECRET_DIGITS {
                    return;
                }
                let (masked, found) = self.mask(&text, location);
                if !found.is_empty() {
                    *value = Value::String(masked.into_owned());
                    findings.extend(found);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.mask_value_into(item, location, findings);
                }
            }
            Value::Object(fields) => {
                for item in fields.values_mut() {
                    self.mask_value_into(item, location, findings);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_inside_values_are_masked_and_fingerprinted() {
        let mut config = Config::default();
        config.masking.rules_files.clear();
        let (masker, report) = Masker::from_config(&config, [7; 32]).unwrap();
        assert!(report.refused.is_empty() && report.rules > 10);
        let mut sample = json!([["alice", "postgres://admin:S3cr3t-pw@db/prod"], [42, null]]);
        let findings = masker.mask_value(&mut sample, "sample");
        assert_eq!(
            sample[0][1],
            "postgres://admin:[MASKED:connection-uri-password]@db/prod"
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0]["fingerprint"], masker.fingerprint("S3cr3t-pw"));
        assert_eq!(findings[0]["location"], "sample");
    }

    #[test]
    fn the_shipped_gitleaks_set_loads_by_default_by_name_and_rule_files_by_path() {
        let (_, report) = Masker::from_config(&Config::default(), [7; 32]).unwrap();
        assert!(report.rules > 200, "{} rules by default", report.rules);
        let mut config: Config = toml::from_str("[masking]\nrules_files = []").unwrap();
        let (_, report) = Masker::from_config(&config, [7; 32]).unwrap();
        assert!(
            report.rules < 30,
            "{} rules with the set turned off",
            report.rules
        );

        config.masking.rules_files = vec!["gitleaks".into()];
        let (masker, report) = Masker::from_config(&config, [7; 32]).unwrap();
        assert!(report.rules > 200, "{} rules", report.rules);
        assert_eq!(report.refused.len(), 1, "{:?}", report.refused);
        let (masked, _) = masker.mask(
            "sendgrid 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",
            "x",
        );
        assert!(masked.contains("[MASKED:sendgrid-api-token]"), "{masked}");

        config.masking.rules_files = vec!["./gitleaks".into()];
        let error = Masker::from_config(&config, [7; 32]).err().unwrap();
        assert!(
            error.to_string().contains("cannot read ./gitleaks"),
            "{error}"
        );
    }

    #[test]
    fn numbers_and_encoded_bytes_are_masked_like_text() {
        let (masker, _) = Masker::from_config(&Config::default(), [7; 32]).unwrap();
        let mut params = json!([
            4415711815394971u64,
            42,
            "\\x414b49414a4b4c4d4e4f50515253545556575859"
        ]);
        let findings = masker.mask_value(&mut params, "params");
        assert_eq!(params[0], "[MASKED:card-number]");
        assert_eq!(params[1], 42);
        assert!(!params[2].as_str().unwrap().contains("414b4941"));
        assert_eq!(findings.len(), 2);
        assert_eq!(
            findings[0]["fingerprint"],
            masker.fingerprint("4415711815394971")
        );
        assert_eq!(findings[1]["encoding"], "hex");
        assert_eq!(
            findings[1]["fingerprint"],
            masker.fingerprint("AKIAJKLMNOPQRSTUVWXY")
        );
    }

    #[test]
    fn a_secret_is_found_in_the_form_an_investigator_holds_it() {
        let (masker, _) = Masker::from_config(&Config::default(), [7; 32]).unwrap();
        let (_, recorded) = masker.mask(
            "card 4415-7118-1539-4971 and postgres://u:Pw-12345@db/app",
            "sql",
        );
        for (pasted, index) in [
            ("4415 7118 1539 4971\n", 0),
            ("  postgres://u:Pw-12345@db/app\n", 1),
            ("Pw-12345", 1),
        ] {
            assert!(
                masker
                    .fingerprints_of(pasted)
                    .contains(&recorded[index]["fingerprint"].as_str().unwrap().to_owned()),
                "{pasted:?}"
            );
        }
    }

    #[test]
    fn the_fingerprint_key_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = fingerprint_key(dir.path()).unwrap();
        assert_eq!(key, fingerprint_key(dir.path()).unwrap());
        let mode = std::fs::metadata(dir.path().join(FINGERPRINT_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_bad_rules_file_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "[[rules]]\nid = 1\n").unwrap();
        let config = Config::parse(&format!("[masking]\nrules_files = [{:?}]\n", path)).unwrap();
        let err = Masker::from_config(&config, [0; 32]).err().unwrap();
        assert_eq!(err.path, "masking.rules_files[0]");
    }
}
