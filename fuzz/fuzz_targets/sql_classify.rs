//! The SQL classifier over any text, in both dialects. A classifier that has seen other statements
//! (and answers some from its memory, keyed with numbers blanked) must say what a fresh one says.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use proctor_policy::{Classifier, Dialect};

static WARM: Mutex<Option<[Classifier; 2]>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let mut warm = WARM.lock().unwrap_or_else(|p| p.into_inner());
    let warm = warm.get_or_insert_with(|| {
        [
            Classifier::new(Dialect::Postgres),
            Classifier::new(Dialect::MySql),
        ]
    });
    for (dialect, classifier) in [Dialect::Postgres, Dialect::MySql].into_iter().zip(warm) {
        let fresh = Classifier::new(dialect).classify(sql);
        let remembered = classifier.classify(sql);
        assert_eq!(
            fresh.statements, remembered.statements,
            "{dialect:?}: the classifier's memory answers otherwise than a fresh classifier"
        );
    }
});
