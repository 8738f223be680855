//! The configuration file (`proctor.toml`): its types, defaults and validation.
//!
//! Every key has a default, so Proctor runs with no file at all. A bad file is refused with the path of
//! the offending key and the reason. Secrets referenced by the file (`password_env`, `password_file`,
//! `token_env`) are resolved only by [`Config::resolve_secrets`], which `serve` calls; CLI commands that
//! only read the journal do not need them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proctor_journal::SyncMode;
use proctor_policy::{ActionName, Policy, PolicySpec, Preset, RuleError, RuleSpec};
use serde::{Deserialize, Serialize};

use crate::Secret;

/// A configuration error: which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("config error at `{path}`: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub postgres: PostgresConfig,
    pub mysql: MysqlConfig,
    pub ssh: SshConfig,
    pub identity: Vec<IdentityConfig>,
    pub connection: Vec<ConnectionConfig>,
    pub masking: MaskingConfig,
    pub llm: LlmConfig,
    pub web: WebConfig,
}

/// Who may do what in the web console and its API. Each role is an allow list: identities,
/// `group:NAME`, or `*`; an identity holds every role whose list admits it, and one that holds none
/// is refused everything but telling who it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Read everything, and add identities and tokens.
    pub admins: Vec<String>,
    /// Read everything, change nothing.
    pub auditors: Vec<String>,
    /// Decide held statements (each request's own approvers are checked as well), and read the
    /// sessions that asked. The approvers that connections and rules name hold this role too.
    pub approvers: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            admins: vec!["group:admin".into()],
            auditors: vec!["group:auditor".into()],
            approvers: vec!["group:approver".into()],
        }
    }
}

/// The LLM proxy: providers behind `/llm/<name>/...` and what is masked before them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Mask secrets in what clients send before it leaves for the provider.
    pub mask_prompts: bool,
    /// Largest request body accepted.
    pub max_request_bytes: usize,
    pub provider: Vec<LlmProviderConfig>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            mask_prompts: true,
            max_request_bytes: 8 * 1024 * 1024,
            provider: Vec::new(),
        }
    }
}

/// `[[llm.provider]]`: an OpenAI- or Anthropic-compatible API (any OpenAI-compatible server works).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LlmProviderConfig {
    /// The path segment clients use: `/llm/<name>/v1/...`.
    pub name: String,
    pub kind: LlmKind,
    /// Up to and excluding `/v1`, e.g. `https://api.openai.com`.
    pub base_url: String,
    /// The variable holding the provider's API key (absent: the provider needs none).
    pub api_key_env: Option<String>,
    /// Who may use the provider (and spend its key): identities, `group:NAME`, or `*`.
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmKind {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
}

/// What is masked. Secrets are always masked before they are stored; `pii` adds personal data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    /// gitleaks-format rule files, loaded after the built-in detectors: paths, or `"gitleaks"` for the
    /// gitleaks default set that ships with Proctor. By default that set alone; `[]` turns it off.
    pub rules_files: Vec<PathBuf>,
    /// Also mask email addresses, phone numbers and IBANs.
    pub pii: bool,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self {
            rules_files: vec![PathBuf::from(proctor_mask::gitleaks::EMBEDDED_NAME)],
            pii: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the journal, the TLS certificate and keys live. Relative paths are taken from the working
    /// directory.
    pub data_dir: PathBuf,
    pub postgres_listen: SocketAddr,
    /// Where MySQL and MariaDB clients connect. Default: 127.0.0.1:13306 when a connection is of
    /// kind `mysql`, no listener otherwise.
    pub mysql_listen: Option<SocketAddr>,
    /// Where SSH clients (`ssh`, `scp`, `sftp`, `rsync`) connect. Default: 127.0.0.1:2222 when a
    /// connection is of kind `ssh`, no listener otherwise.
    pub ssh_listen: Option<SocketAddr>,
    pub http_listen: SocketAddr,
    /// Front-end TLS certificate (PEM). Without one, a self-signed certificate is generated on first start
    /// and kept in the data dir.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Threads that carry sessions, each an event loop of its own; a session stays on one. Default: one
    /// per core. With a single loop, every session waits whenever the scheduler preempts that thread
    /// (as it does when a send wakes the client or the database on the same core), and the other
    /// cores can sit idle meanwhile.
    pub workers: usize,
}

/// One event loop per core the gateway may run on, within the bound `validate` enforces.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get().min(MAX_WORKERS))
}

const MAX_WORKERS: usize = 256;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./proctor-data"),
            postgres_listen: SocketAddr::from(([127, 0, 0, 1], 15432)),
            mysql_listen: None,
            ssh_listen: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert_file: None,
            tls_key_file: None,
            workers: default_workers(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub sync: SyncMode,
}

/// How PostgreSQL clients prove who they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum PostgresAuth {
    /// SCRAM-SHA-256 on every connection: the token never crosses the wire.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// Cleartext password, accepted only over TLS; plaintext connections still use SCRAM.
    #[serde(rename = "password")]
    Password,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    pub auth: PostgresAuth,
    /// The largest message a client may send; larger ones end the session with a protocol error.
    pub max_message_bytes: usize,
    /// Rows of each result kept as a sample in the journal.
    pub sample_rows: usize,
    /// Bytes of each result kept as a sample in the journal.
    pub sample_bytes: usize,
    /// How long to wait for the upstream server to accept and authenticate.
    pub connect_timeout_secs: u64,
    /// How many named prepared statements a session may keep open.
    pub max_prepared_statements: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            auth: PostgresAuth::default(),
            max_message_bytes: 64 * 1024 * 1024,
            sample_rows: 20,
            sample_bytes: 64 * 1024,
            connect_timeout_secs: 10,
            max_prepared_statements: 10_000,
        }
    }
}

/// MySQL and MariaDB sessions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlConfig {
    /// The largest packet a client may send (a statement, a row of `LOAD DATA`, a long parameter);
    /// larger ones get error 1153 and end the session.
    pub max_packet_bytes: usize,
    /// Rows of each result kept as a sample in the journal.
    pub sample_rows: usize,
    /// Bytes of each result kept as a sample in the journal.
    pub sample_bytes: usize,
    /// How long to wait for the upstream server to accept and authenticate.
    pub connect_timeout_secs: u64,
    /// How many prepared statements a session may keep open.
    pub max_prepared_statements: usize,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        Self {
            max_packet_bytes: 64 * 1024 * 1024,
            sample_rows: 20,
            sample_bytes: 64 * 1024,
            connect_timeout_secs: 10,
            max_prepared_statements: 10_000,
        }
    }
}

/// SSH sessions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// How long to wait for the target to accept, show its host key and authenticate Proctor.
    pub connect_timeout_secs: u64,
    /// How long a user has to authenticate before the connection is dropped.
    pub auth_timeout_secs: u64,
    /// Largest sftp packet a client or target may send (OpenSSH's limit is 256 KiB).
    pub max_sftp_packet_bytes: usize,
    /// Channels one SSH connection may have open at once.
    pub max_channels: usize,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 10,
            auth_timeout_secs: 60,
            max_sftp_packet_bytes: 256 * 1024 + 1024,
            max_channels: 64,
        }
    }
}

/// An identity declared in the file, whose token comes from the environment (automation, tests).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub token_env: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionKind {
    Postgres,
    Mysql,
    Ssh,
}

impl ConnectionKind {
    /// The name clients and messages use for it.
    pub fn name(self) -> &'static str {
        match self {
            ConnectionKind::Postgres => "PostgreSQL",
            ConnectionKind::Mysql => "MySQL",
            ConnectionKind::Ssh => "SSH",
        }
    }
}

/// TLS towards the target, with libpq's meanings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    #[default]
    Disable,
    /// Encrypt, but do not check the server's certificate.
    Require,
    /// Encrypt and check the certificate chain and the host name.
    VerifyFull,
}

/// Serialized, it is what the log records of a connection: it holds where secrets come from, never
/// the secrets.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub name: String,
    pub kind: ConnectionKind,
    /// `host:port` of the target.
    pub address: String,
    /// The database sessions use (PostgreSQL, MySQL); SSH connections have none.
    #[serde(default)]
    pub database: String,
    pub user: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// SSH: the private key (OpenSSH format) Proctor logs in to the target with, from a variable
    /// or a file; a password otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    /// SSH: the target's host key (an OpenSSH public key line, as in `known_hosts` without the
    /// host). Without it the key seen first is trusted, recorded and pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// SSH: whether users may forward local ports (`ssh -L`) through the target.
    #[serde(default)]
    pub port_forwarding: bool,
    #[serde(default)]
    pub tls: UpstreamTls,
    /// CA bundle (PEM) for `tls = "verify-full"`; the public web roots otherwise.
    pub tls_ca_file: Option<PathBuf>,
    /// Name to verify the certificate against; the host part of `address` otherwise.
    pub tls_server_name: Option<String>,
    /// Who may use it: identity names, `group:NAME`, or `*` for every identity.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Whether results are masked for the client too, or only in the journal (always masked).
    #[serde(default)]
    pub mask_results: MaskResults,
    /// Result columns masked by name, whatever they hold.
    #[serde(default)]
    pub mask_columns: Vec<ColumnRuleConfig>,
    /// A ready-made rule set: `off` or `recommended`.
    #[serde(default)]
    pub guardrails: Preset,
    /// Refuse anything but reads, and open the target session with `default_transaction_read_only`.
    #[serde(default)]
    pub read_only: bool,
    /// Guardrail rules, judged before the preset's; first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSpec>,
    /// Who approves statements held by rules that name no approvers (default `group:dba`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// How long a held statement waits for a decision, unless its rule says (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_secs: Option<u64>,
    /// What happens when no rule matches: `allow` (default) or `deny`.
    #[serde(default)]
    pub default_action: ActionName,
}

/// `{ column = "users.email", strategy = "hash" }`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRuleConfig {
    pub column: String,
    pub strategy: ColumnStrategy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnStrategy {
    Redact,
    Partial,
    Hash,
}

impl ConnectionConfig {
    /// The connection's column rules, compiled (validated at start).
    pub fn column_rules(&self) -> Vec<proctor_mask::columns::ColumnRule> {
        self.mask_columns
            .iter()
            .filter_map(|rule| rule.compile().ok())
            .collect()
    }
}

impl ConnectionConfig {
    /// The connection's guardrails, compiled (validated at start).
    pub fn policy(&self) -> Result<Policy, RuleError> {
        Policy::new(&PolicySpec {
            preset: self.guardrails,
            read_only: self.read_only,
            rules: self.rules.clone(),
            approvers: self.approvers.clone(),
            approval_timeout: self.approval_timeout_secs.map(Duration::from_secs),
            default_action: self.default_action,
        })
    }
}

impl ColumnRuleConfig {
    fn compile(&self) -> Result<proctor_mask::columns::ColumnRule, String> {
        use proctor_mask::columns::{ColumnRule, Strategy};
        let strategy = match self.strategy {
            ColumnStrategy::Redact => Strategy::Redact,
            ColumnStrategy::Partial => Strategy::Partial,
            ColumnStrategy::Hash => Strategy::Hash,
        };
        ColumnRule::new(&self.column, strategy)
    }
}

/// Where results are masked: the journal always; the client's copy too with `client_and_journal`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskResults {
    #[default]
    JournalOnly,
    ClientAndJournal,
}

impl ConnectionConfig {
    pub fn host(&self) -> &str {
        match self.address.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => &self.address,
        }
    }
}

/// Secrets named by the configuration, read from the environment and files.
#[derive(Debug, Default)]
pub struct ResolvedSecrets {
    /// Password of each connection, by connection name (absent: the target trusts the user).
    pub connection_passwords: Vec<(String, Option<Secret>)>,
    /// SSH private key of each connection, by connection name.
    pub connection_private_keys: Vec<(String, Option<Secret>)>,
    /// Token of each configured identity, by identity name.
    pub identity_tokens: Vec<(String, Secret)>,
    /// API key of each LLM provider, by provider name.
    pub llm_keys: Vec<(String, Option<Secret>)>,
}

/// Names of identities, groups and connections: 1-63 letters, digits, '-', '_', '.', '@'.
/// An allow list names someone, and each entry is an identity, `group:NAME` or `*`.
fn check_allow(allow: &[String], at: &str, what: &str) -> Result<(), ConfigError> {
    if allow.is_empty() {
        return Err(ConfigError::new(
            at,
            format!("nobody may use this {what}; list identities, \"group:NAME\" or \"*\""),
        ));
    }
    for (a, entry) in allow.iter().enumerate() {
        let name = entry.strip_prefix("group:").unwrap_or(entry);
        if entry != "*" && !valid_name(name) {
            return Err(ConfigError::new(
                format!("{at}[{a}]"),
                format!("{entry:?} is neither an identity, \"group:NAME\" nor \"*\""),
            ));
        }
    }
    Ok(())
}

/// Whether an allow list (identities, `group:NAME`, `*`) admits `identity`.
pub fn allows(allow: &[String], identity: &str, groups: &[String]) -> bool {
    allow.iter().any(|entry| {
        entry == "*"
            || entry == identity
            || entry
                .strip_prefix("group:")
                .is_some_and(|group| groups.iter().any(|g| g == group))
    })
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("<file>", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::parse(&text)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let reason = inner.message().to_string();
            let location = inner
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            ConfigError::new(
                if path == "." { "<root>".into() } else { path },
                format!("{reason}{location}"),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (role, allow) in [
            ("admins", &self.web.admins),
            ("auditors", &self.web.auditors),
            ("approvers", &self.web.approvers),
        ] {
            if !allow.is_empty() {
                check_allow(allow, &format!("web.{role}"), "role")?;
            }
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            return Err(ConfigError::new(
                "server.tls_cert_file",
                "set both tls_cert_file and tls_key_file, or neither (a self-signed one is made)",
            ));
        }
        if !(1..=MAX_WORKERS).contains(&self.server.workers) {
            return Err(ConfigError::new(
                "server.workers",
                format!("must be between 1 and {MAX_WORKERS}"),
            ));
        }
        let pg = &self.postgres;
        if !(1024..=1024 * 1024 * 1024).contains(&pg.max_message_bytes) {
            return Err(ConfigError::new(
                "postgres.max_message_bytes",
                "must be between 1024 and 1073741824",
            ));
        }
        if pg.sample_rows > 10_000 {
            return Err(ConfigError::new(
                "postgres.sample_rows",
                "must be at most 10000",
            ));
        }
        if pg.sample_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError::new(
                "postgres.sample_bytes",
                "must be at most 16777216",
            ));
        }
        if pg.connect_timeout_secs == 0 {
            return Err(ConfigError::new(
                "postgres.connect_timeout_secs",
                "must be at least 1",
            ));
        }
        let my = &self.mysql;
        if !(1024..=1024 * 1024 * 1024).contains(&my.max_packet_bytes) {
            return Err(ConfigError::new(
                "mysql.max_packet_bytes",
                "must be between 1024 and 1073741824",
            ));
        }
        if my.sample_rows > 10_000 {
            return Err(ConfigError::new(
                "mysql.sample_rows",
                "must be at most 10000",
            ));
        }
        if my.sample_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError::new(
                "mysql.sample_bytes",
                "must be at most 16777216",
            ));
        }
        if my.connect_timeout_secs == 0 {
            return Err(ConfigError::new(
                "mysql.connect_timeout_secs",
                "must be at least 1",
            ));
        }
        let mut identities = HashSet::new();
        for (i, identity) in self.identity.iter().enumerate() {
            let at = |key: &str| format!("identity[{i}].{key}");
            if !valid_name(&identity.name) {
                return Err(ConfigError::new(
                    at("name"),
                    "use 1-63 letters, digits, '-', '_', '.', '@'",
                ));
            }
            if !identities.insert(identity.name.as_str()) {
                return Err(ConfigError::new(at("name"), "declared twice"));
            }
            for (g, group) in identity.groups.iter().enumerate() {
                if !valid_name(group) {
                    return Err(ConfigError::new(
                        format!("identity[{i}].groups[{g}]"),
                        "use 1-63 letters, digits, '-', '_', '.', '@'",
                    ));
                }
            }
            if identity.token_env.is_empty() {
                return Err(ConfigError::new(
                    at("token_env"),
                    "name an environment variable",
                ));
            }
        }
        let mut providers = HashSet::new();
        for (i, provider) in self.llm.provider.iter().enumerate() {
            let at = |key: &str| format!("llm.provider[{i}].{key}");
            if !valid_name(&provider.name) || !providers.insert(provider.name.as_str()) {
                return Err(ConfigError::new(
                    at("name"),
                    "use a unique name of 1-63 letters, digits, '-', '_', '.', '@'",
                ));
            }
            if !(provider.base_url.starts_with("http://")
                || provider.base_url.starts_with("https://"))
            {
                return Err(ConfigError::new(
                    at("base_url"),
                    "use an http:// or https:// URL",
                ));
            }
            check_allow(&provider.allow, &at("allow"), "provider")?;
        }
        let mut connections = HashSet::new();
        for (i, connection) in self.connection.iter().enumerate() {
            let at = |key: &str| format!("connection[{i}].{key}");
            connection
                .policy()
                .map_err(|e| ConfigError::new(at(&e.field), e.reason))?;
            for (j, rule) in connection.mask_columns.iter().enumerate() {
                rule.compile().map_err(|reason| {
                    ConfigError::new(at(&format!("mask_columns[{j}].column")), reason)
                })?;
            }
            if !valid_name(&connection.name) {
                return Err(ConfigError::new(
                    at("name"),
                    "use 1-63 letters, digits, '-', '_', '.', '@'",
                ));
            }
            if !connections.insert(connection.name.as_str()) {
                return Err(ConfigError::new(
                    at("name"),
                    format!("connection {:?} is declared twice", connection.name),
                ));
            }
            match connection.address.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => {
                    return Err(ConfigError::new(
                        at("address"),
                        format!("{:?} is not host:port", connection.address),
                    ))
                }
            }
            if connection.database.is_empty() && connection.kind != ConnectionKind::Ssh {
                return Err(ConfigError::new(at("database"), "must not be empty"));
            }
            let key_given =
                connection.private_key_env.is_some() || connection.private_key_file.is_some();
            if connection.kind != ConnectionKind::Ssh {
                let ssh_only = [
                    ("private_key_env", connection.private_key_env.is_some()),
                    ("private_key_file", connection.private_key_file.is_some()),
                    ("host_key", connection.host_key.is_some()),
                    ("port_forwarding", connection.port_forwarding),
                ];
                if let Some((key, _)) = ssh_only.iter().find(|(_, set)| *set) {
                    return Err(ConfigError::new(at(key), "only used by kind = \"ssh\""));
                }
            } else if connection.private_key_env.is_some() && connection.private_key_file.is_some()
            {
                return Err(ConfigError::new(
                    at("private_key_env"),
                    "set private_key_env or private_key_file, not both",
                ));
            } else if !key_given
                && connection.password_env.is_none()
                && connection.password_file.is_none()
            {
                return Err(ConfigError::new(
                    at("private_key_file"),
                    "an SSH connection needs a private key or a password to log in to the target",
                ));
            }
            if connection.user.is_empty() {
                return Err(ConfigError::new(at("user"), "must not be empty"));
            }
            if connection.password_env.is_some() && connection.password_file.is_some() {
                return Err(ConfigError::new(
                    at("password_env"),
                    "set password_env or password_file, not both",
                ));
            }
            if connection.tls_ca_file.is_some() && connection.tls != UpstreamTls::VerifyFull {
                return Err(ConfigError::new(
                    at("tls_ca_file"),
                    "only used with tls = \"verify-full\"",
                ));
            }
            check_allow(&connection.allow, &at("allow"), "connection")?;
        }
        Ok(())
    }

    /// Where the MySQL listener listens, if there is one: as configured, or the default port when a
    /// connection needs it.
    pub fn mysql_listen(&self) -> Option<SocketAddr> {
        self.server.mysql_listen.or_else(|| {
            self.connection
                .iter()
                .any(|c| c.kind == ConnectionKind::Mysql)
                .then(|| SocketAddr::from(([127, 0, 0, 1], 13306)))
        })
    }

    /// Where the SSH listener listens, if there is one: as configured, or the default port when a
    /// connection needs it.
    pub fn ssh_listen(&self) -> Option<SocketAddr> {
        self.server.ssh_listen.or_else(|| {
            self.connection
                .iter()
                .any(|c| c.kind == ConnectionKind::Ssh)
                .then(|| SocketAddr::from(([127, 0, 0, 1], 2222)))
        })
    }

    /// The tokens of configured identities whose variable is set in this process (for CLI commands
    /// that authenticate an approver).
    pub fn available_identity_tokens(&self) -> Vec<(String, Secret)> {
        self.identity
            .iter()
            .filter_map(|i| {
                let token = std::env::var(&i.token_env).ok()?;
                Some((i.name.clone(), Secret::new(token)))
            })
            .collect()
    }

    /// Reads every secret the configuration names; a missing variable or unreadable file is an error
    /// naming the key, never the value.
    pub fn resolve_secrets(&self) -> Result<ResolvedSecrets, ConfigError> {
        let mut resolved = ResolvedSecrets::default();
        for (i, connection) in self.connection.iter().enumerate() {
            let password = if let Some(var) = &connection.password_env {
                Some(read_env(var, format!("connection[{i}].password_env"))?)
            } else if let Some(file) = &connection.password_file {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    ConfigError::new(
                        format!("connection[{i}].password_file"),
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                Some(Secret::new(text.trim_end_matches(['\r', '\n']).to_owned()))
            } else {
                None
            };
            resolved
                .connection_passwords
                .push((connection.name.clone(), password));
            let private_key = if let Some(var) = &connection.private_key_env {
                Some(read_env(var, format!("connection[{i}].private_key_env"))?)
            } else if let Some(file) = &connection.private_key_file {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    ConfigError::new(
                        format!("connection[{i}].private_key_file"),
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                Some(Secret::new(text))
            } else {
                None
            };
            resolved
                .connection_private_keys
                .push((connection.name.clone(), private_key));
        }
        for (i, provider) in self.llm.provider.iter().enumerate() {
            let key = provider
                .api_key_env
                .as_ref()
                .map(|var| read_env(var, format!("llm.provider[{i}].api_key_env")))
                .transpose()?;
            resolved.llm_keys.push((provider.name.clone(), key));
        }
        for (i, identity) in self.identity.iter().enumerate() {
            let token = read_env(&identity.token_env, format!("identity[{i}].token_env"))?;
            resolved
                .identity_tokens
                .push((identity.name.clone(), token));
        }
        Ok(resolved)
    }
}

fn read_env(var: &str, path: String) -> Result<Secret, ConfigError> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
        Ok(_) => Err(ConfigError::new(
            path,
            format!("environment variable {var} is empty"),
        )),
        Err(_) => Err(ConfigError::new(
            path,
            format!("environment variable {var} is not set"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
data_dir = "./d"
postgres_listen = "127.0.0.1:15432"

[[connection]]
name = "app-db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "app"
user = "app_owner"
password_env = "APP_DB_PASSWORD"
allow = ["group:dba", "alice"]
"#;

    #[test]
    fn no_file_means_loopback_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.server.postgres_listen.to_string(), "127.0.0.1:15432");
        assert_eq!(config.server.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.data_dir, PathBuf::from("./proctor-data"));
        assert_eq!(config.postgres.sample_rows, 20);
        assert_eq!(config.postgres.sample_bytes, 65536);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config.server.workers, cores.min(256));
    }

    #[test]
    fn the_documented_shape_parses() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.connection[0].host(), "127.0.0.1");
        assert_eq!(config.connection[0].allow, vec!["group:dba", "alice"]);
    }

    #[test]
    fn errors_name_the_key_path() {
        let cases = [
            (GOOD.replace("127.0.0.1:5432", "nowhere"), "connection[0].address"),
            (GOOD.replace("kind = \"postgres\"", "kind = \"oracle\""), "connection[0].kind"),
            (GOOD.replace("user = ", "usr = "), "connection[0].usr"),
            (GOOD.replace("127.0.0.1:15432", "not an address"), "server.postgres_listen"),
            (GOOD.replace("[server]", "[server]\nworkers = 0"), "server.workers"),
            (format!("{GOOD}mask_columns = [{{ column = \"email\", strategy = \"hash\" }}]\n"), "connection[0].mask_columns[0].column"),
            (format!("{GOOD}rules = [{{ name = \"r\", kinds = [\"reed\"], action = \"deny\" }}]\n"), "connection[0].rules[0].kinds[0]"),
            (format!("{GOOD}guardrails = \"strict\"\n"), "connection[0].guardrails"),
            (GOOD.replace("[\"group:dba\", \"alice\"]", "[]"), "connection[0].allow"),
            (format!("{GOOD}\n[postgres]\nsample_rows = \"ten\"\n"), "postgres.sample_rows"),
            (format!("{GOOD}\n[[connection]]\nname = \"app-db\"\nkind = \"postgres\"\naddress = \"h:1\"\ndatabase = \"d\"\nuser = \"u\"\nallow = [\"*\"]\n"), "connection[1].name"),
            (format!("{GOOD}\n[[llm.provider]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"https://api.openai.com\"\n"), "llm.provider[0].allow"),
            (format!("{GOOD}\n[[llm.provider]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"https://api.openai.com\"\nallow = [\"group:\"]\n"), "llm.provider[0].allow[0]"),
        ];
        for (text, path) in cases {
            let err = Config::parse(&text).unwrap_err();
            assert_eq!(err.path, path, "{err}");
        }
    }

    #[test]
    fn an_ssh_connection_needs_credentials_and_no_database() {
        let ssh = "[[connection]]\nname = \"web1\"\nkind = \"ssh\"\naddress = \"10.0.0.12:22\"\nuser = \"deploy\"\nallow = [\"*\"]\n";
        let keyed = format!("{ssh}private_key_file = \"/run/secrets/web1\"\n");
        let config = Config::parse(&keyed).unwrap();
        assert_eq!(
            config.ssh_listen().map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:2222")
        );
        let cases = [
            (ssh.to_owned(), "connection[0].private_key_file"),
            (
                format!("{keyed}private_key_env = \"WEB1_KEY\"\n"),
                "connection[0].private_key_env",
            ),
            (
                format!("{GOOD}host_key = \"ssh-ed25519 AAAA\"\n"),
                "connection[0].host_key",
            ),
            (
                format!("{GOOD}port_forwarding = true\n"),
                "connection[0].port_forwarding",
            ),
        ];
        for (text, path) in cases {
            let err = Config::parse(&text).unwrap_err();
            assert_eq!(err.path, path, "{err}");
        }
        assert!(Config::parse(GOOD).unwrap().ssh_listen().is_none());
    }

    #[test]
    fn a_missing_secret_names_the_key_and_the_variable_only() {
        let config =
            Config::parse(&GOOD.replace("APP_DB_PASSWORD", "PROCTOR_TEST_UNSET_VAR")).unwrap();
        let err = config.resolve_secrets().unwrap_err();
        assert_eq!(err.path, "connection[0].password_env");
        assert!(err.reason.contains("PROCTOR_TEST_UNSET_VAR"));
    }
}
