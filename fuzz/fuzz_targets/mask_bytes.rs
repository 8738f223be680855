//! The masker over any bytes read as text the way the relay reads COPY data and non-UTF-8 cells
//! (lossily), with the built-in detectors and the shipped gitleaks rule set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_fuzz::every_detector;
use proctor_mask::normal_form;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (_, secrets) = every_detector().mask(&text);
    for secret in &secrets {
        let _ = normal_form(&secret.detector, &secret.value);
    }
});
