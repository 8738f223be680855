//! `proctor identity` and `proctor token`: the administrator's commands over the identity store.

use std::process::ExitCode;

use clap::Subcommand;
use proctor_core::identity;
use proctor_core::journal::{now_ns, Store};
use proctor_core::Config;

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Create an identity and print its first token (shown once).
    Add {
        name: String,
        /// A group the identity belongs to; repeat for several.
        #[arg(long = "group", short = 'g')]
        groups: Vec<String>,
    },
    /// Register an SSH public key (an OpenSSH `.pub` file) the identity logs in with.
    AddKey {
        name: String,
        keyfile: std::path::PathBuf,
    },
    /// List identities, their groups and active tokens.
    List,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create another token for an identity and print it (shown once).
    Create { identity: String },
    /// Revoke a token by its id (`proctor identity list` shows ids).
    Revoke { id: String },
}

pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&config.server.data_dir, config.store.sync)?)
}

fn check_name(kind: &str, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        proctor_core::config::valid_name(name),
        "{kind} {name:?} is not valid: use 1-63 letters, digits, '-', '_', '.', '@'"
    );
    Ok(())
}

pub fn identity(config: Config, command: IdentityCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(&config)?;
    match command {
        IdentityCommand::Add { name, groups } => {
            check_name("identity", &name)?;
            for group in &groups {
                check_name("group", group)?;
            }
            let (token, row) = identity::add_identity(&store, &name, &groups)?;
            eprintln!(
                "identity {name} created; token {} (shown once, store it now):",
                row.id
            );
            println!("{}", token.expose());
        }
        IdentityCommand::AddKey { name, keyfile } => {
            let known =
                config.identity.iter().any(|i| i.name == name) || store.identity(&name)?.is_some();
            anyhow::ensure!(known, "identity {name:?} does not exist");
            let text = std::fs::read_to_string(&keyfile)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", keyfile.display()))?;
            let (public_key, fingerprint) = proctor_ssh::parse_public_key(&text).map_err(|e| {
                anyhow::anyhow!("{} is not an SSH public key: {e}", keyfile.display())
            })?;
            store.add_identity_key(&proctor_core::journal::IdentityKeyRow {
                identity: name.clone(),
                fingerprint: fingerprint.clone(),
                public_key,
                added_at: now_ns(),
            })?;
            println!("key {fingerprint} registered for {name}");
        }
        IdentityCommand::List => {
            let identities = store.list_identities()?;
            println!("{:<24} {:<24} TOKENS (active)", "IDENTITY", "GROUPS");
            for (identity, tokens) in identities {
                let active: Vec<&str> = tokens
                    .iter()
                    .filter(|t| t.revoked_at.is_none())
                    .map(|t| t.id.as_str())
                    .collect();
                println!(
                    "{:<24} {:<24} {}",
                    identity.name,
                    identity.groups.join(","),
                    active.join(" ")
                );
            }
            for configured in &config.identity {
                println!(
                    "{:<24} {:<24} (from config, token in ${})",
                    configured.name,
                    configured.groups.join(","),
                    configured.token_env
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn token(config: Config, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(&config)?;
    match command {
        TokenCommand::Create { identity: name } => {
            let (token, row) = identity::create_token(&store, &name)?;
            eprintln!(
                "token {} created for {name} (shown once, store it now):",
                row.id
            );
            println!("{}", token.expose());
        }
        TokenCommand::Revoke { id } => {
            let row = store.revoke_token(&id, now_ns())?;
            println!("token {} of {} revoked", row.id, row.identity);
        }
    }
    Ok(ExitCode::SUCCESS)
}
