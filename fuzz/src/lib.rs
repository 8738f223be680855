//! What several fuzz targets share: the scanner with every detector on.

use std::sync::OnceLock;

use proctor_mask::{builtin_rules, gitleaks, Scanner};

/// The built-in detectors (personal data included) and the shipped gitleaks rule set, built once.
pub fn every_detector() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| {
        let mut rules = builtin_rules(true);
        rules.extend(
            gitleaks::load(gitleaks::EMBEDDED)
                .expect("the shipped rules load")
                .rules,
        );
        Scanner::new(rules)
    })
}
