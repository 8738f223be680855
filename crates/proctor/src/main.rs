//! The `proctor` binary: the command line (clap), configuration loading, and the wiring of `serve`.
//! It stays thin: behaviour lives in the library crates.

mod admin;
mod approvals;
mod audit;
mod chains;
mod init;
mod replay;
mod search;
mod serve;
mod sessions;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// Write a session as a self-contained bundle that `proctor verify` checks offline, or an SSH
    /// session's terminal as an asciicast recording.
    Export {
        /// The session's id or a unique prefix of it.
        session: String,
        /// The file to write (asciicast: standard output without it).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "bundle")]
        format: ExportFormat,
        /// asciicast: the SSH channel to export (default: the first with terminal output).
        #[arg(long)]
        channel: Option<u32>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Play an SSH session's terminal here, with its timing.
    Replay {
        /// The session's id or a unique prefix of it.
        session: String,
        /// Play this many times faster.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Cut pauses longer than this many seconds to it.
        #[arg(long, value_name = "S")]
        idle_limit: Option<f64>,
        /// The SSH channel to play (default: the first with terminal output).
        #[arg(long)]
        channel: Option<u32>,
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

/// What `proctor export` writes: one of the journal's formats, or a terminal recording.
#[derive(Clone, Copy)]
enum ExportFormat {
    Journal(audit::ExportFormat),
    Asciicast,
}

impl ValueEnum for ExportFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Self::Journal(audit::ExportFormat::Bundle),
            Self::Journal(audit::ExportFormat::Jsonl),
            Self::Asciicast,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            Self::Journal(format) => format.to_possible_value(),
            Self::Asciicast => Some(
                PossibleValue::new("asciicast")
                    .help("An SSH session's terminal as asciicast v2, for asciinema"),
            ),
        }
    }
}

fn export(
    config: Config,
    session: &str,
    output: Option<PathBuf>,
    format: ExportFormat,
    channel: Option<u32>,
) -> anyhow::Result<ExitCode> {
    match format {
        ExportFormat::Journal(format) => {
            anyhow::ensure!(channel.is_none(), "--channel is for --format asciicast");
            let output =
                output.ok_or_else(|| anyhow::anyhow!("give the file to write: -o FILE"))?;
            audit::export(config, session, &output, format)
        }
        ExportFormat::Asciicast => replay::export(config, session, channel, output.as_deref()),
    }
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
            channel,
            config,
        } => load_config(&config).and_then(|c| export(c, &session, output, format, channel)),
        Command::Replay {
            session,
            speed,
            idle_limit,
            channel,
            config,
        } => load_config(&config)
            .and_then(|c| replay::replay(c, &session, speed, idle_limit, channel)),
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
