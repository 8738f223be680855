//! `proctor init`: a first configuration in one command. It writes a commented `proctor.toml` with the
//! one connection named on the command line (PostgreSQL or MySQL), creates the first identity (group
//! `admin`), prints its token once and the `psql` or `mariadb` line that reaches the database through
//! Proctor. It asks only for what it
//! cannot work out (the database password, at a prompt that does not echo), never takes a secret
//! from the command line, and never overwrites a configuration.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, ensure, Context};
use clap::Args;
use proctor_core::config::{valid_name, ConnectionKind};
use proctor_core::{identity, Config};

/// The file `init` writes and every command reads when no `--config` is given.
pub const DEFAULT_CONFIG: &str = "proctor.toml";

#[derive(Args)]
pub struct InitArgs {
    /// The database to reach through Proctor: postgres://USER@HOST[:PORT]/DATABASE or
    /// mysql://USER@HOST[:PORT]/DATABASE. No password in it: Proctor asks for it, or reads it from
    /// --password-env.
    #[arg(long)]
    connection: String,
    /// The variable that holds the database password when Proctor runs; `init` stores nothing then.
    /// Without it, `init` asks for the password (empty if the database needs none) and keeps it in
    /// secrets/NAME.password beside the configuration, readable by its owner only.
    #[arg(long)]
    password_env: Option<String>,
    /// The connection's name, what clients put as the database; default: the database's name.
    #[arg(long)]
    name: Option<String>,
    /// The first identity, in group `admin`; default: your login name.
    #[arg(long)]
    identity: Option<String>,
    /// Where to write the configuration.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

/// The target as `--connection` names it.
#[derive(Debug, PartialEq)]
struct Target {
    kind: ConnectionKind,
    user: String,
    host: String,
    port: u16,
    database: String,
}

fn parse_target(text: &str) -> anyhow::Result<Target> {
    let url = url::Url::parse(text).with_context(|| {
        format!("--connection {text:?} is not a URL like postgres://user@host:5432/db")
    })?;
    let (kind, default_port) = match url.scheme() {
        "postgres" | "postgresql" => (ConnectionKind::Postgres, 5432),
        "mysql" | "mariadb" => (ConnectionKind::Mysql, 3306),
        _ => bail!("--connection must start with postgres:// or mysql://"),
    };
    ensure!(
        url.password().is_none(),
        "--connection carries a password: leave it out, Proctor asks for it (or use --password-env), \
         so that it stays out of your shell history and the process list"
    );
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .context("--connection names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let user = match url.username() {
        "" => bail!(
            "--connection names no user: {}://USER@{host}/...",
            url.scheme()
        ),
        user => percent_decode(user)?,
    };
    let database = match url.path().trim_start_matches('/') {
        "" => user.clone(),
        database => percent_decode(database)?,
    };
    Ok(Target {
        kind,
        user,
        host,
        port: url.port().unwrap_or(default_port),
        database,
    })
}

fn percent_decode(text: &str) -> anyhow::Result<String> {
    Ok(percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .context("--connection: the user and database must be UTF-8")?
        .into_owned())
}

/// The login name of whoever runs `init`, if it makes a valid identity name.
fn login_name() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| valid_name(name))
}

/// The database password: from a prompt that does not echo when a person is there, else the first
/// line of standard input (for scripts); empty means the database asks none.
fn read_password(target: &Target) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let prompt = format!(
            "Password of {} at {}:{} (empty if it needs none): ",
            target.user, target.host, target.port
        );
        return Ok(rpassword::prompt_password(prompt)?);
    }
    let mut input = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)?;
    Ok(input.lines().next().unwrap_or_default().to_owned())
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The commented configuration: the defaults spelled out, and the one connection.
fn render_config(defaults: &Config, target: &Target, name: &str, secret_line: &str) -> String {
    let server = &defaults.server;
    format!(
        r#"# Proctor's configuration, written by `proctor init`. Every key is in the README's
# "Configuration reference"; what is commented out shows the default.

[server]
data_dir = {data_dir}       # the journal, identities, TLS certificate (relative to the working dir)
postgres_listen = "{postgres_listen}"  # where psql and drivers connect
{mysql_listen}http_listen = "{http_listen}"      # health, checkpoints, approvals, the LLM proxy, MCP

# [store]
# sync = "normal"     # "full" also fsyncs every commit, for power loss

# [masking]
# rules_files = ["gitleaks"]  # secret formats masked beside the built-in ones
# pii = false                 # also mask email addresses, phone numbers, IBANs

# The database, as clients name it (psql's dbname, mysql's database). Add a [[connection]] block
# per database.
[[connection]]
name = {name}
kind = {kind}
address = {address}
database = {database}
user = {user}
{secret_line}
tls = "disable"               # "require" to encrypt, "verify-full" to check its certificate too
allow = ["group:admin"]       # identities, "group:NAME", or "*"
mask_results = "journal_only" # "client_and_journal": the client sees masked values too
guardrails = "off"            # "recommended": deny or hold destructive statements
"#,
        data_dir = toml_string(&server.data_dir.display().to_string()),
        postgres_listen = server.postgres_listen,
        mysql_listen = match target.kind {
            ConnectionKind::Mysql =>
                "mysql_listen = \"127.0.0.1:13306\"  # where mysql, mariadb and drivers connect\n",
            ConnectionKind::Postgres | ConnectionKind::Ssh => "",
        },
        http_listen = server.http_listen,
        name = toml_string(name),
        kind = match target.kind {
            ConnectionKind::Postgres => "\"postgres\"",
            ConnectionKind::Mysql => "\"mysql\"",
            ConnectionKind::Ssh => "\"ssh\"",
        },
        address = toml_string(&format!("{}:{}", target.host, target.port)),
        database = toml_string(&target.database),
        user = toml_string(&target.user),
    )
}

/// Writes `contents` to a new file readable by its owner only; fails if the file exists.
fn write_new_private(path: &Path, contents: &str) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(file)
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    ensure!(
        !args.config.exists(),
        "{} exists; init never overwrites a configuration (edit it, or pass --config NEW_FILE)",
        args.config.display()
    );
    let target = parse_target(&args.connection)?;
    let name = args.name.unwrap_or_else(|| target.database.clone());
    ensure!(
        valid_name(&name),
        "connection name {name:?} is not valid: pass --name with 1-63 letters, digits, '-', '_', '.', '@'"
    );
    let identity_name = match args.identity.or_else(login_name) {
        Some(identity) => identity,
        None => bail!("pass --identity NAME: your login name cannot name an identity"),
    };
    ensure!(
        valid_name(&identity_name),
        "identity {identity_name:?} is not valid: use 1-63 letters, digits, '-', '_', '.', '@'"
    );
    if let Some(var) = &args.password_env {
        ensure!(
            !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "--password-env takes the name of an environment variable, not a password"
        );
    }

    let defaults = Config::default();
    let secret_line = match &args.password_env {
        Some(var) => {
            if std::env::var_os(var).is_none() {
                eprintln!("note: {var} is not set here; set it where `proctor serve` runs");
            }
            format!("password_env = {}", toml_string(var))
        }
        None => match read_password(&target)? {
            password if password.is_empty() => {
                "# password_env = \"DB_PASSWORD\"  # none given: the database must trust Proctor"
                    .to_owned()
            }
            password => {
                let secrets = args
                    .config
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("secrets");
                fs::create_dir_all(&secrets)?;
                fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700))?;
                let file = secrets.join(format!("{name}.password"));
                write_new_private(&file, &password).with_context(|| {
                    format!("could not keep the password in {}", file.display())
                })?;
                format!(
                    "password_file = {}  # readable by its owner only",
                    toml_string(&file.display().to_string())
                )
            }
        },
    };
    write_new_private(
        &args.config,
        &render_config(&defaults, &target, &name, &secret_line),
    )
    .with_context(|| format!("could not write {}", args.config.display()))?;
    let config = Config::load(&args.config)?;
    let store = crate::admin::open_store(&config)?;
    let (token, row) = identity::add_identity(&store, &identity_name, &["admin".to_owned()])
        .with_context(|| format!("could not create identity {identity_name}"))?;

    eprintln!(
        "wrote {}: connection {name} -> {}:{}/{}",
        args.config.display(),
        target.host,
        target.port,
        target.database
    );
    eprintln!(
        "identity {identity_name} (group admin) created; its token {} is shown once, store it now:",
        row.id
    );
    println!("{}", token.expose());
    eprintln!();
    eprintln!("start the gateway:   proctor serve");
    match config.mysql_listen().filter(|_| target.kind == ConnectionKind::Mysql) {
        Some(mysql) => eprintln!(
            "then connect:        mariadb -h {} -P {} -u {identity_name} -p -D {name}   (password: the token)",
            mysql.ip(),
            mysql.port(),
        ),
        None => eprintln!(
            "then connect:        psql \"host={} port={} user={identity_name} dbname={name}\"   (password: the token)",
            config.server.postgres_listen.ip(),
            config.server.postgres_listen.port(),
        ),
    }
    eprintln!("and read it back:    proctor sessions show --last");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_url_gives_user_host_port_and_database() {
        assert_eq!(
            parse_target("postgres://app_owner@db.internal:6432/billing").unwrap(),
            Target {
                kind: ConnectionKind::Postgres,
                user: "app_owner".into(),
                host: "db.internal".into(),
                port: 6432,
                database: "billing".into(),
            }
        );
        let defaults = parse_target("postgresql://postgres@127.0.0.1").unwrap();
        assert_eq!(
            (defaults.port, defaults.database.as_str()),
            (5432, "postgres")
        );
        let ipv6 = parse_target("postgres://me@[::1]:5433/x%20y").unwrap();
        assert_eq!((ipv6.host.as_str(), ipv6.database.as_str()), ("::1", "x y"));
    }

    #[test]
    fn a_password_on_the_command_line_is_refused_without_being_repeated() {
        let error = parse_target("postgres://app:S3cret-pw@db:5432/app")
            .unwrap_err()
            .to_string();
        assert!(error.contains("carries a password"), "{error}");
        assert!(!error.contains("S3cret-pw"), "{error}");
    }

    #[test]
    fn urls_init_cannot_set_up_are_refused_with_the_reason() {
        for (url, reason) in [
            ("redis://root@db/app", "postgres:// or mysql://"),
            ("mysql://db/app", "mysql://USER@db"),
            ("postgres://db:5432/app", "no user"),
            ("db:5432", "postgres:// or mysql://"),
        ] {
            let error = parse_target(url).unwrap_err().to_string();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }

    #[test]
    fn the_written_configuration_loads_and_holds_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proctor.toml");
        let target = parse_target("postgres://app_owner@db.internal:6432/billing").unwrap();
        let text = render_config(
            &Config::default(),
            &target,
            "billing",
            "password_env = \"BILLING_PASSWORD\"",
        );
        fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        let connection = &config.connection[0];
        assert_eq!(connection.name, "billing");
        assert_eq!(connection.address, "db.internal:6432");
        assert_eq!(connection.user, "app_owner");
        assert_eq!(connection.password_env.as_deref(), Some("BILLING_PASSWORD"));
        assert_eq!(connection.allow, ["group:admin"]);
        assert_eq!(connection.kind, ConnectionKind::Postgres);
        assert_eq!(config.mysql_listen(), None);
    }

    #[test]
    fn a_mysql_connection_gets_the_mysql_listener_and_its_default_port() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proctor.toml");
        let target = parse_target("mysql://app@db.internal/shop").unwrap();
        assert_eq!(target.port, 3306);
        fs::write(
            &path,
            render_config(&Config::default(), &target, "shop", ""),
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.connection[0].kind, ConnectionKind::Mysql);
        assert_eq!(config.connection[0].address, "db.internal:3306");
        assert_eq!(
            config.server.mysql_listen,
            Some("127.0.0.1:13306".parse().unwrap())
        );
    }
}
