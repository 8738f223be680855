//! The masker over any text: the built-in detectors (personal data included) and the shipped gitleaks
//! rule set, as a gateway with every detector on scans statements, prompts and answers; then the
//! masked text again, as a value masked twice (a stored prompt sent back) is.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use proctor_mask::{builtin_rules, gitleaks, normal_form, Scanner};

fn scanner() -> &'static Scanner {
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (masked, secrets) = scanner().mask(text);
    for secret in &secrets {
        let _ = normal_form(&secret.detector, &secret.value);
    }
    let _ = scanner().find(&masked);
});
