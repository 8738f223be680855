//! An export bundle, verified as `proctor audit verify` does: as given, and again with its checkpoint
//! signed by the key the verifier trusts, so that the fuzzer gets past the signature to the chain,
//! the seals and the inclusion proofs. Verifier keys and checkpoints are parsed from the same text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use proctor_journal::bundle::verify_bundle;
use proctor_journal::note::{Checkpoint, LogKey, NoteVerifier};
use serde_json::Value;

fn keys() -> &'static (LogKey, NoteVerifier) {
    static KEYS: OnceLock<(LogKey, NoteVerifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = LogKey::generate("proctor/fuzz").expect("a valid key name");
        let verifier = NoteVerifier::parse(&key.verifier_key()).expect("its own verifier key");
        (key, verifier)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (key, verifier) = keys();
    let _ = verify_bundle(text, verifier);
    let _ = NoteVerifier::parse(text);
    let _ = Checkpoint::parse(text);
    let Ok(mut bundle) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let Some(note) = bundle.get("checkpoint").and_then(Value::as_str) else {
        return;
    };
    // The signed text of a note ends with a newline; the signature block follows an empty line.
    let mut text = note
        .rfind("\n\n")
        .map_or(note, |at| &note[..at + 1])
        .to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    bundle["checkpoint"] = Value::String(key.sign(&text));
    let checks = verify_bundle(&bundle.to_string(), verifier);
    assert!(
        !checks
            .iter()
            .any(|c| !c.holds && c.line.starts_with("checkpoint:") && c.line.contains("signature")),
        "a checkpoint signed by the trusted key is refused: {checks:?}"
    );
});
