//! The masker over any bytes read as text the way the relay reads COPY data and non-UTF-8 cells
//! (lossily), with the built-in detectors and the shipped gitleaks rule set.
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
    let text = String::from_utf8_lossy(data);
    let (_, secrets) = scanner().mask(&text);
    for secret in &secrets {
        let _ = normal_form(&secret.detector, &secret.value);
    }
});
