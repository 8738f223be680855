//! The `proctor` binary: the command line (clap), configuration loading, and the wiring of `serve`.
//! It stays thin: behaviour lives in the library crates.

mod admin;
mod approvals;
mod audit;
mod chains;
mod init;
mod search;
mod serve;
mod sessions;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use proctor_core::Config;

#[derive(Parser)]
#[command(
    name = "proctor",
    version,
    about = "The access gateway that records, attributes and guards every session."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Configuration file (TOML). Default: ./proctor.toml if there is one (`proctor init` writes
    /// it), else every default applies: data in ./proctor-data, listeners on loopback.
    #[arg(long, short = 'c', global = true, env = "PROCTOR_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Write a first proctor.toml for one database and create the first identity (group admin).
    Init(init::InitArgs),
    /// Run the gateway: PostgreSQL listener, HTTP listener, journal.
    Serve(ConfigArg),
    /// Manage identities (people and agents) and their first tokens.
    Identity {
        #[command(subcommand)]
        command: admin::IdentityCommand,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Create and revoke personal access tokens.
    Token {
        #[command(subcommand)]
        command: admin::TokenCommand,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List, read and verify recorded sessions.
    Sessions {
        #[command(subcommand)]
        command: sessions::SessionsCommand,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Statements held by guardrails: list them, approve or deny them.
    Approvals {
        #[command(subcommand)]
        command: approvals::ApprovalsCommand,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Conversations with models: who started them, what the AI proposed, which secrets passed.
    Chains {
        #[command(subcommand)]
        command: chains::ChainsCommand,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// MCP: `stdio` bridges a stdio-only MCP client to the gateway's /mcp endpoint.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The tamper-evident log: its key, checkpoints, consistency proofs and a check of the store.
    Log {
        #[command(subcommand)]
        command: audit::LogCommand,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write a session as a self-contained bundle that `proctor verify` checks offline.
    Export {
        /// The session's id or a unique prefix of it.
        session: String,
        #[arg(long, short = 'o')]
        output: PathBuf,
        #[arg(long, value_enum, default_value = "bundle")]
        format: audit::ExportFormat,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Find where a suspected secret passed (read from standard input, never from the command line).
    Search {
        /// Search for the secret given on standard input, by its keyed fingerprint.
        #[arg(long, required = true)]
        secret: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Verify an exported bundle with the log's verifier key; needs no data dir and no network.
    Verify {
        bundle: PathBuf,
        /// The verifier key, as `proctor log key` prints it.
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand)]
enum McpCommand {
    /// Speak MCP on stdin/stdout and forward to the gateway's /mcp endpoint as the identity whose
    /// token is in PROCTOR_TOKEN.
    Stdio {
        /// The endpoint; default: /mcp on the configured http_listen.
        #[arg(long)]
        url: Option<String>,
    },
}

fn mcp(config: Config, command: McpCommand) -> anyhow::Result<ExitCode> {
    let McpCommand::Stdio { url } = command;
    let url = url.unwrap_or_else(|| format!("http://{}/mcp", config.server.http_listen));
    let token = std::env::var("PROCTOR_TOKEN")
        .map_err(|_| anyhow::anyhow!("set PROCTOR_TOKEN to your Proctor token"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(proctor_mcp::stdio::bridge(&url, &token))?;
    Ok(ExitCode::SUCCESS)
}

fn load_config(arg: &ConfigArg) -> anyhow::Result<Config> {
    let default = std::path::Path::new(init::DEFAULT_CONFIG);
    Ok(match &arg.config {
        Some(path) => Config::load(path)?,
        None if default.exists() => Config::load(default)?,
        None => Config::default(),
    })
}

/// A command that prints to a pipe ends quietly when the reader goes away (`proctor sessions show ID |
/// head`), as Unix tools do. The Rust runtime ignores SIGPIPE, so `println!` would panic on the
/// broken pipe instead. The commands that hold network connections (`serve`, `mcp stdio`) keep
/// ignoring it: a peer that hangs up must cost them a failed write on that connection, never the
/// process.
fn end_quietly_on_broken_pipe() {
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Mcp { .. }) {
        end_quietly_on_broken_pipe();
    }
    let result = match cli.command {
        Command::Init(args) => init::run(args),
        Command::Serve(config) => load_config(&config).and_then(serve::run),
        Command::Identity { command, config } => {
            load_config(&config).and_then(|c| admin::identity(c, command))
        }
        Command::Token { command, config } => {
            load_config(&config).and_then(|c| admin::token(c, command))
        }
        Command::Sessions { command, config } => {
            load_config(&config).and_then(|c| sessions::run(c, command))
        }
        Command::Approvals { command, config } => {
            load_config(&config).and_then(|c| approvals::run(c, command))
        }
        Command::Chains { command, config } => {
            load_config(&config).and_then(|c| chains::run(c, command))
        }
        Command::Mcp { command, config } => load_config(&config).and_then(|c| mcp(c, command)),
        Command::Log { command, config } => {
            load_config(&config).and_then(|c| audit::log(c, command))
        }
        Command::Export {
            session,
            output,
            format,
            config,
        } => load_config(&config).and_then(|c| audit::export(c, &session, &output, format)),
        Command::Verify { bundle, key } => audit::verify(&bundle, &key),
        Command::Search { config, .. } => load_config(&config).and_then(search::run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("proctor: {e:#}");
            ExitCode::from(2)
        }
    }
}
