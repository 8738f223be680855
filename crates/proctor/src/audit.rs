//! `proctor log`, `proctor export` and `proctor verify`: the auditor's commands over the tamper-evident
//! log — its key and checkpoints, consistency proofs, a check of the store against the log, session
//! bundles, and their offline verification (which needs no data dir, only a bundle and a key).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use clap::{Subcommand, ValueEnum};
use proctor_core::journal::bundle::{verify_bundle, Check};
use proctor_core::journal::note::NoteVerifier;
use proctor_core::journal::{AcknowledgedDamage, Store};
use proctor_core::Config;

#[derive(Subcommand)]
pub enum LogCommand {
    /// Print the log's verifier key (give it to auditors; the private key stays in the data dir).
    Key,
    /// Print the newest signed checkpoint (sealing what is unsealed first).
    Checkpoint,
    /// Start a new signing key; the change is recorded in the log and signed by both keys.
    RotateKey,
    /// Prove that the log at NEW_SIZE (default: now) extends the log at OLD_SIZE.
    Consistency {
        old_size: u64,
        new_size: Option<u64>,
    },
    /// Check the whole store: the leaves against the signed root, every stored event rehashed and
    /// linked to the one before it, every seal's chain head; exit 1 naming the first bad event.
    Check {
        /// Verifier key to check the checkpoint with (default: this data dir's own key).
        #[arg(long)]
        key: Option<String>,
    },
    /// Acknowledge a damaged commit log found at recovery (its tail was kept in the data dir): the
    /// acknowledgement is recorded in the log, and commands run again.
    AcknowledgeDamage,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// A self-contained, verifiable bundle (JSON).
    Bundle,
    /// One event per line, for a SIEM; not verifiable on its own.
    Jsonl,
}

fn print_checks(checks: &[Check]) -> ExitCode {
    for check in checks {
        println!(
            "{} {}",
            if check.holds { "ok  " } else { "FAIL" },
            check.line
        );
    }
    if checks.iter().all(|c| c.holds) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_acknowledged(acknowledged: &[AcknowledgedDamage]) {
    if acknowledged.is_empty() {
        println!("no damaged commit log to acknowledge");
    }
    for damage in acknowledged {
        println!(
            "acknowledged {} ({} bytes, sha256 {}): recorded in the log, kept in the data dir",
            damage.file, damage.bytes, damage.sha256
        );
    }
}

pub fn log(config: Config, command: LogCommand) -> anyhow::Result<ExitCode> {
    let store = match command {
        // The one command that runs while a damaged commit log is unacknowledged: it acknowledges it.
        LogCommand::AcknowledgeDamage => {
            Store::open_despite_damage(&config.server.data_dir, config.store.sync)?
        }
        _ => crate::admin::open_store(&config)?,
    };
    match command {
        LogCommand::Key => println!("{}", store.log_verifier_key()?),
        LogCommand::Checkpoint => {
            let (note, refused) = store.log_checkpoint()?;
            print!("{note}");
            for refused in &refused {
                eprintln!("FAIL {refused}; `proctor log check` names what is wrong");
            }
            if !refused.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        LogCommand::RotateKey => {
            let (old, new) = store.rotate_log_key()?;
            println!("old key: {old}\nnew key: {new}");
            println!(
                "bundles exported before now verify with the old key; new ones with the new key"
            );
        }
        LogCommand::Consistency { old_size, new_size } => {
            let proof = store.log_consistency(old_size, new_size)?;
            println!(
                "old: size {} root {}",
                proof.old_size,
                BASE64.encode(proof.old_root)
            );
            println!(
                "new: size {} root {}",
                proof.new_size,
                BASE64.encode(proof.new_root)
            );
            for hash in &proof.proof {
                println!("proof {}", BASE64.encode(hash));
            }
            if !proof.holds {
                println!(
                    "FAIL the log at {} does not extend the log at {}",
                    proof.new_size, proof.old_size
                );
                return Ok(ExitCode::from(1));
            }
            println!(
                "ok   the log at {} extends the log at {}",
                proof.new_size, proof.old_size
            );
        }
        LogCommand::Check { key } => {
            let key = match key {
                Some(key) => key,
                None => store.log_verifier_key()?,
            };
            let key = NoteVerifier::parse(&key).map_err(anyhow::Error::msg)?;
            return Ok(print_checks(&store.check_log(&key)?));
        }
        LogCommand::AcknowledgeDamage => print_acknowledged(&store.acknowledge_damage()?),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(
    config: Config,
    session: &str,
    output: &PathBuf,
    format: ExportFormat,
) -> anyhow::Result<ExitCode> {
    let store = crate::admin::open_store(&config)?;
    let session = store.find_session(session)?;
    let mut text = Vec::new();
    match format {
        ExportFormat::Bundle => {
            let bundle = store.export_bundle(&session)?;
            serde_json::to_writer_pretty(&mut text, &bundle)?;
            text.push(b'\n');
        }
        ExportFormat::Jsonl => {
            for event in store.events(&session.id)? {
                serde_json::to_writer(&mut text, &event)?;
                text.push(b'\n');
            }
        }
    }
    std::fs::File::create(output)
        .and_then(|mut file| file.write_all(&text))
        .with_context(|| format!("cannot write {}", output.display()))?;
    match format {
        ExportFormat::Bundle => eprintln!(
            "wrote {}: session {}, verifiable with `proctor verify {} --key <verifier key>`",
            output.display(),
            session.id,
            output.display()
        ),
        ExportFormat::Jsonl => eprintln!(
            "wrote {}: the events of session {}, one per line; this file alone proves nothing (export a bundle to verify)",
            output.display(),
            session.id
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify(bundle: &PathBuf, key: &str) -> anyhow::Result<ExitCode> {
    let key = NoteVerifier::parse(key).map_err(anyhow::Error::msg)?;
    let text = std::fs::read_to_string(bundle)
        .with_context(|| format!("cannot read {}", bundle.display()))?;
    Ok(print_checks(&verify_bundle(&text, &key)))
}
