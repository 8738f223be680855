//! `proctor search --secret`: where a suspected secret passed through Proctor — which sessions and
//! events, who, when — found by its keyed fingerprint, since the journal never holds the secret. The
//! secret is read from standard input only, so it lands in no shell history, process list or log.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use proctor_core::masking::fingerprint_key;
use proctor_core::{Config, Masker};

pub fn run(config: Config) -> anyhow::Result<ExitCode> {
    let mut secret = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut secret)
        .context("reading the suspected secret from standard input")?;
    anyhow::ensure!(
        !secret.trim().is_empty(),
        "give the suspected secret on standard input"
    );
    let store = crate::admin::open_store(&config)?;
    let key = fingerprint_key(&config.server.data_dir)?;
    let (masker, _) = Masker::from_config(&config, key)?;
    let sightings = store.find_fingerprints(&masker.fingerprints_of(&secret))?;
    if sightings.is_empty() {
        println!("not found: the secret did not pass through Proctor in any recorded event");
        return Ok(ExitCode::from(1));
    }
    println!(
        "{:<31} {:<37} {:<16} {:<16} {:<20} {:<26} WHERE",
        "TIME (UTC)", "SESSION", "IDENTITY", "CONNECTION", "EVENT", "DETECTOR"
    );
    for s in &sightings {
        println!(
            "{:<31} {:<37} {:<16} {:<16} {:<20} {:<26} {}",
            proctor_core::journal::canonical_time(s.at),
            s.session_id,
            s.identity,
            s.connection,
            format!("{} {}", s.seq, s.kind),
            s.detector,
            s.location
        );
    }
    Ok(ExitCode::SUCCESS)
}
