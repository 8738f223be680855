//! The masker over any text: the built-in detectors (personal data included) and the shipped gitleaks
//! rule set, as a gateway with every detector on scans statements, prompts and answers; then the
//! masked text again, as a value masked twice (a stored prompt sent back) is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_fuzz::every_detector;
use proctor_mask::normal_form;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (masked, secrets) = every_detector().mask(text);
    for secret in &secrets {
        let _ = normal_form(&secret.detector, &secret.value);
    }
    let _ = every_detector().find(&masked);
});
