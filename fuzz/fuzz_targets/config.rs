//! A configuration file: parsed and validated as the gateway loads `proctor.toml`, then each
//! connection's guardrails and column rules built from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_core::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    for connection in &config.connection {
        let _ = connection.policy();
        let _ = connection.column_rules();
    }
});
