//! The gateway's masker: the detectors `[masking]` configures and the key that fingerprints what
//! they find. Protocol crates mask through the [`crate::SessionRecorder`]; this module owns building
//! the scanner (built-in rules, then gitleaks rule files) and the fingerprint key in the data dir.

use std::borrow::Cow;
use std::path::Path;

use proctor_mask::columns::ColumnRule;
use proctor_mask::{fingerprint, gitleaks, Scanner};
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

/// The fingerprint of a suspected secret, with the data dir's key: what `proctor search` looks for.
pub fn fingerprint_in(data_dir: &Path, secret: &str) -> std::io::Result<String> {
    Ok(fingerprint(&fingerprint_key(data_dir)?, secret))
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
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(at.clone(), format!("cannot read {}: {e}", path.display()))
            })?;
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

    /// `text` masked, and a finding for each secret: detector, fingerprint, and `location`.
    pub fn mask<'t>(&self, text: &'t str, location: &str) -> (Cow<'t, str>, Vec<Value>) {
        let (masked, secrets) = self.scanner.mask(text);
        let findings = secrets
            .into_iter()
            .map(|(detector, secret)| {
                json!({"detector": detector, "fingerprint": self.fingerprint(secret), "location": location})
            })
            .collect();
        (masked, findings)
    }

    /// Masks every string inside `value`, in place; returns the findings.
    pub fn mask_value(&self, value: &mut Value, location: &str) -> Vec<Value> {
        let mut findings = Vec::new();
        self.mask_value_into(value, location, &mut findings);
        findings
    }

    fn mask_value_into(&self, value: &mut Value, location: &str, findings: &mut Vec<Value>) {
        match value {
            Value::String(text) => {
                let (masked, found) = self.mask(text, location);
                if let Cow::Owned(masked) = masked {
                    *text = masked;
                }
                findings.extend(found);
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
        let (masker, report) = Masker::from_config(&Config::default(), [7; 32]).unwrap();
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
