//! Test support for end-to-end tests: starts the real `proctor` binary on free ports with a temporary
//! data dir, runs its CLI, and talks to the test PostgreSQL as its administrator.
#![allow(dead_code)]

pub mod sshd;

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The PostgreSQL the tests run against, reached directly as its administrator `postgres` without a
/// password: `PROCTOR_TEST_PG` (host:port; `.ci/run` sets it to the cluster it prepares), else the
/// machine's on 127.0.0.1:5432.
pub fn pg_address() -> String {
    std::env::var("PROCTOR_TEST_PG").unwrap_or_else(|_| "127.0.0.1:5432".to_owned())
}

/// The test PostgreSQL's host and port, as psql's `-h` and `-p` take them.
pub fn pg_host_and_port() -> (String, String) {
    let address = pg_address();
    let (host, port) = address
        .rsplit_once(':')
        .expect("PROCTOR_TEST_PG is host:port");
    (host.to_owned(), port.to_owned())
}

pub const PG_DATABASE: &str = "test";

/// The MariaDB (or MySQL) server the tests run against, reached directly as `root` without a
/// password: `PROCTOR_TEST_MYSQL` (host:port; `.ci/run` sets it to the server it prepares), else
/// the machine's on 127.0.0.1:3306.
pub fn mysql_address() -> String {
    std::env::var("PROCTOR_TEST_MYSQL").unwrap_or_else(|_| "127.0.0.1:3306".to_owned())
}

/// The CA file that verifies the test MariaDB's certificate, if it has TLS.
pub fn mysql_ca() -> Option<String> {
    std::env::var("PROCTOR_TEST_MYSQL_CA").ok()
}

/// The test MariaDB's host and port, as the `mariadb` client's `-h` and `-P` take them.
pub fn mysql_host_and_port() -> (String, String) {
    let address = mysql_address();
    let (host, port) = address
        .rsplit_once(':')
        .expect("PROCTOR_TEST_MYSQL is host:port");
    (host.to_owned(), port.to_owned())
}

/// Runs SQL on the test MariaDB as `root`, directly; returns what it printed (tab-separated rows).
pub fn mysql_admin(sql: &str) -> String {
    let (host, port) = mysql_host_and_port();
    let out = Command::new("mariadb")
        .args([
            "-h", &host, "-P", &port, "-uroot", "--ssl=0", "-N", "-B", "-D", "test", "-e", sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "MariaDB admin SQL failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A MySQL connection to the test MariaDB's `test` database as `root`, for group `dba`.
pub static MARIA_DB: TestConfig = TestConfig(LazyLock::new(|| {
    format!(
        r#"
[[connection]]
name = "maria"
kind = "mysql"
address = "{}"
database = "test"
user = "root"
allow = ["group:dba"]
"#,
        mysql_address()
    )
}));

/// A piece of configuration that names the test PostgreSQL, written on first use (the address is
/// only known at run time); it reads as a `&str` and formats as one.
pub struct TestConfig(LazyLock<String>);

impl Deref for TestConfig {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

/// The connection most tests use: the test database as its administrator, for group `dba`.
pub static APP_DB: TestConfig = TestConfig(LazyLock::new(|| {
    format!(
        r#"
[[connection]]
name = "app-db"
kind = "postgres"
address = "{}"
database = "test"
user = "postgres"
allow = ["group:dba"]
"#,
        pg_address()
    )
}));

/// Runs `command` with `stdin` as its input and collects what it printed.
pub fn output_with_stdin(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Sends `signal` to a process (a negative `pid`: to a process group); a process already gone is no
/// error.
pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes any pid and signal number and only reports errors.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The ports in `serve`'s ready line (`proctor is ready postgres=ADDR mysql=ADDR|off http=ADDR
/// ...`), once logged.
/// The ports the ready line names: PostgreSQL, HTTP, and MySQL and SSH when they listen.
struct ReadyPorts {
    pg: u16,
    http: u16,
    mysql: Option<u16>,
    ssh: Option<u16>,
}

fn ready_ports(log: &str) -> Option<ReadyPorts> {
    let line = log.lines().find(|line| line.contains("proctor is ready"))?;
    let port_of = |key: &str| {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix(key))
            .and_then(|address| address.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
    };
    Some(ReadyPorts {
        pg: port_of("postgres=")?,
        http: port_of("http=")?,
        mysql: port_of("mysql="),
        ssh: port_of("ssh="),
    })
}

/// A port nothing listens on now (for a target that is down).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs SQL on the test PostgreSQL directly, as its administrator; panics if it fails.
pub fn admin_sql(sql: &str) -> String {
    let (host, port) = pg_host_and_port();
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &host,
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            PG_DATABASE,
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin SQL failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub struct Proctor {
    pub dir: tempfile::TempDir,
    pub pg_port: u16,
    pub http_port: u16,
    /// The MySQL listener's port; 0 when the configuration has none.
    pub mysql_port: u16,
    /// The SSH listener's port; 0 when the configuration has none.
    pub ssh_port: u16,
    pub config_path: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Proctor {
    /// Starts `proctor serve` with `extra` appended to a config that sets free ports and a temp dir.
    pub fn start(extra: &str) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// The listeners bind port 0: the system picks free ports and `serve` reports them in its ready
    /// line, so no other process can take a port between its choice and its use. A restart binds the
    /// same ports again.
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("proctor.toml");
        let config = format!(
            "[server]\ndata_dir = \"{}\"\npostgres_listen = \"127.0.0.1:0\"\n{}{}http_listen = \"127.0.0.1:0\"\n{extra}",
            dir.path().join("data").display(),
            if extra.contains("kind = \"mysql\"") {
                "mysql_listen = \"127.0.0.1:0\"\n"
            } else {
                ""
            },
            if extra.contains("kind = \"ssh\"") {
                "ssh_listen = \"127.0.0.1:0\"\n"
            } else {
                ""
            }
        );
        std::fs::write(&config_path, config).unwrap();
        let mut proctor = Self {
            dir,
            pg_port: 0,
            http_port: 0,
            mysql_port: 0,
            ssh_port: 0,
            config_path,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        proctor.spawn();
        proctor
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or restarts) the server and waits until it is ready: its ready line names the
    /// addresses it listens on.
    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_proctor"))
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("proctor exited during start ({status}): {}", self.log());
            }
            if let Some(ports) = ready_ports(&self.log()) {
                let (pg_port, http_port, mysql_port) = (ports.pg, ports.http, ports.mysql);
                if self.pg_port == 0 {
                    let config = std::fs::read_to_string(&self.config_path).unwrap();
                    let config = config
                        .replacen(
                            "postgres_listen = \"127.0.0.1:0\"",
                            &format!("postgres_listen = \"127.0.0.1:{pg_port}\""),
                            1,
                        )
                        .replacen(
                            "http_listen = \"127.0.0.1:0\"",
                            &format!("http_listen = \"127.0.0.1:{http_port}\""),
                            1,
                        )
                        .replacen(
                            "mysql_listen = \"127.0.0.1:0\"",
                            &format!("mysql_listen = \"127.0.0.1:{}\"", mysql_port.unwrap_or(0)),
                            1,
                        )
                        .replacen(
                            "ssh_listen = \"127.0.0.1:0\"",
                            &format!("ssh_listen = \"127.0.0.1:{}\"", ports.ssh.unwrap_or(0)),
                            1,
                        );
                    std::fs::write(&self.config_path, config).unwrap();
                }
                (self.pg_port, self.http_port) = (pg_port, http_port);
                self.mysql_port = mysql_port.unwrap_or(0);
                self.ssh_port = ports.ssh.unwrap_or(0);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "proctor did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("proctor is running").id()
    }

    /// Whether `needle` occurs in any file of the data dir (journal, commit log, keys...).
    pub fn data_dir_contains(&self, needle: &str) -> bool {
        std::fs::read_dir(self.data_dir()).unwrap().any(|entry| {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("proctor is running");
        signal(child.id() as i32, libc::SIGTERM);
        child.wait().unwrap()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_proctor"))
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .output()
            .unwrap()
    }

    /// Runs the CLI; it must succeed. Returns what it printed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// A tokio-postgres client through Proctor, on a runtime of its own that drives the connection.
    pub fn tokio_client(
        &self,
        identity: &str,
        token: &str,
        connection: &str,
    ) -> (tokio::runtime::Runtime, tokio_postgres::Client) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let conninfo = self.conninfo(identity, token, connection);
        let (client, driver) = runtime
            .block_on(tokio_postgres::connect(&conninfo, tokio_postgres::NoTls))
            .unwrap();
        runtime.spawn(driver);
        (runtime, client)
    }

    /// Runs the CLI with extra environment variables.
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_proctor"))
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// One HTTP/1.1 request to the HTTP listener: the status code and the body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let (status, _, body) = self.http_with_head(method, path, bearer, body);
        (status, body)
    }

    /// One HTTP/1.1 request to the HTTP listener: the status code, the head (status line and
    /// headers, as sent) and the body.
    pub fn http_with_head(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &str,
    ) -> (u16, String, String) {
        use std::io::Read;
        let mut stream = TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        let auth = bearer
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_owned(), body.to_owned())
    }

    /// Creates an identity with the CLI and returns its token.
    pub fn add_identity(&self, name: &str, groups: &[&str]) -> String {
        let mut args = vec!["identity", "add", name];
        for group in groups {
            args.extend(["--group", group]);
        }
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A libpq/tokio-postgres connection string through Proctor.
    pub fn conninfo(&self, identity: &str, token: &str, connection: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={identity} password={token} dbname={connection} sslmode=disable",
            self.pg_port
        )
    }

    /// Runs psql through Proctor with `args` after the connection string.
    pub fn psql(
        &self,
        identity: &str,
        token: &str,
        connection: &str,
        sslmode: &str,
        args: &[&str],
    ) -> Output {
        self.psql_with_stdin(identity, token, connection, sslmode, args, "")
    }

    /// Runs `sql` with psql through Proctor without TLS, in a thread: for statements that wait
    /// (held for approval) while the test goes on. Join the handle for what psql printed.
    pub fn psql_in_background(
        &self,
        identity: &str,
        token: &str,
        connection: &str,
        sql: &str,
    ) -> std::thread::JoinHandle<Output> {
        let mut psql = Command::new("psql");
        psql.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(self.conninfo(identity, token, connection));
        std::thread::spawn(move || psql.output().unwrap())
    }

    /// Runs psql through Proctor without TLS; it must succeed. Returns what it printed.
    pub fn psql_ok(&self, identity: &str, token: &str, connection: &str, args: &[&str]) -> String {
        let out = self.psql(identity, token, connection, "disable", args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    }

    pub fn psql_with_stdin(
        &self,
        identity: &str,
        token: &str,
        connection: &str,
        sslmode: &str,
        args: &[&str],
        stdin: &str,
    ) -> Output {
        self.psql_as(
            identity,
            token,
            connection,
            &[("PGSSLMODE", sslmode)],
            args,
            stdin,
        )
    }

    /// Runs psql through Proctor with libpq's environment: `user` and `database` exactly as given (no
    /// connection string to quote them in), `env` for the rest (`PGAPPNAME`, `PGOPTIONS`...), `stdin`
    /// as its input.
    pub fn psql_as(
        &self,
        user: &str,
        token: &str,
        database: &str,
        env: &[(&str, &str)],
        args: &[&str],
        stdin: &str,
    ) -> Output {
        let mut psql = Command::new("psql");
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t"])
            .args(args)
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.pg_port.to_string())
            .env("PGUSER", user)
            .env("PGDATABASE", database)
            .env("PGPASSWORD", token)
            .env("PGSSLMODE", "disable")
            .envs(env.iter().copied());
        output_with_stdin(psql, stdin)
    }

    /// Runs the `mariadb` command-line client through Proctor's MySQL listener, without TLS unless
    /// `args` ask for it, with `stdin` as its input.
    pub fn mariadb(
        &self,
        identity: &str,
        token: &str,
        connection: &str,
        args: &[&str],
        stdin: &str,
    ) -> Output {
        let mut mariadb = Command::new("mariadb");
        mariadb
            .args(["-h", "127.0.0.1", "-P", &self.mysql_port.to_string()])
            .arg(format!("-u{identity}"))
            .arg(format!("-p{token}"))
            .args(["-D", connection, "-N", "-B"])
            .args(args);
        if !args.iter().any(|a| a.starts_with("--ssl")) {
            mariadb.arg("--ssl=0");
        }
        output_with_stdin(mariadb, stdin)
    }

    /// [`Self::mariadb`] with `-e sql`; it must succeed. Returns what it printed.
    pub fn mariadb_ok(&self, identity: &str, token: &str, connection: &str, sql: &str) -> String {
        let out = self.mariadb(identity, token, connection, &["-e", sql], "");
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
        stdout(&out)
    }

    /// A `mysql_async` connection URL through Proctor.
    pub fn mysql_url(&self, identity: &str, token: &str, connection: &str) -> String {
        format!(
            "mysql://{identity}:{token}@127.0.0.1:{}/{connection}",
            self.mysql_port
        )
    }

    /// The events of `count` sessions of `identity`, once they all ended, oldest session first.
    pub fn events_of(&self, identity: &str, count: usize) -> Vec<Value> {
        self.ended_sessions_of(identity, count)
            .iter()
            .flat_map(|s| self.events(s["id"].as_str().unwrap()))
            .collect()
    }

    /// Waits until `count` approval requests are pending, and returns them (newest first).
    pub fn pending_approvals(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cli(&["approvals", "list", "--format", "json"]);
            assert!(out.status.success(), "{}", stderr(&out));
            let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
            if list.len() >= count {
                return list;
            }
            assert!(Instant::now() < deadline, "no pending request: {list:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sessions as `proctor sessions list --format json` prints them.
    pub fn sessions(&self, filter: &[&str]) -> Vec<Value> {
        let mut args = vec!["sessions", "list", "--format", "json"];
        args.extend_from_slice(filter);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// The events of a session, from `proctor sessions show --format json`.
    pub fn events(&self, session_id: &str) -> Vec<Value> {
        let out = self.cli(&["sessions", "show", session_id, "--format", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        shown["events"].as_array().unwrap().clone()
    }

    /// The only session of `identity`, once it has ended (sessions end asynchronously after a client
    /// leaves).
    pub fn ended_sessions_of(&self, identity: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sessions = self.sessions(&["--identity", identity]);
            if sessions.len() >= count && sessions.iter().all(|s| !s["end_reason"].is_null()) {
                return sessions;
            }
            assert!(
                Instant::now() < deadline,
                "sessions of {identity} did not end: {sessions:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proctor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `proctor serve` on a config file holding `text`; it must refuse to start.
pub fn refused_config(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    stderr(&out)
}

/// Events of one kind.
/// How each `approval` event says a hold ended, and who decided (`-`: nobody), in order.
pub fn approval_outcomes(events: &[Value]) -> Vec<(&str, &str)> {
    of_kind(events, "approval")
        .iter()
        .map(|a| {
            (
                a["body"]["outcome"].as_str().unwrap(),
                a["body"]["by"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `proctor search --secret` with the secret on stdin: whether it was found, and what was printed.
pub fn search_secret(proctor: &Proctor, secret: &str) -> (bool, String) {
    let mut search = Command::new(env!("CARGO_BIN_EXE_proctor"));
    search
        .args(["search", "--secret", "--config"])
        .arg(&proctor.config_path);
    let out = output_with_stdin(search, &format!("{secret}\n"));
    (out.status.success(), stdout(&out))
}

/// The Python helpers of the tests (fixture provider, SDK clients).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs a Python helper of `tests/fixtures` and parses the JSON it prints.
pub fn python(script: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(fixtures().join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The local stand-in for the LLM providers (`tests/fixtures/llm_provider.py`), on a free port,
/// logging every request it receives.
pub struct FixtureProvider {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl FixtureProvider {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("provider.jsonl");
        let mut child = Command::new("python3")
            .arg(fixtures().join("llm_provider.py"))
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            child,
            port: line.trim().parse().unwrap(),
            log,
            dir,
        }
    }

    /// What it received, one JSON object per request (and per stream's last event).
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for FixtureProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the soft file size limit (RLIMIT_FSIZE) of a running process with util-linux's prlimit.
pub fn limit_file_size(pid: u32, limit: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Edits a session's events where the store keeps them, as someone with write access to `journal.db`
/// could: the events of session number `session_no` (its blocks' lines of JSON, in order) pass through
/// `edit` and are written back as one block whose columns agree with them.
pub fn edit_stored_events(
    db: &rusqlite::Connection,
    session_no: i64,
    edit: impl FnOnce(&mut Vec<Value>),
) {
    let mut events: Vec<Value> = Vec::new();
    {
        let mut stmt = db
            .prepare("SELECT data FROM event_blocks WHERE session_no = ?1 ORDER BY last_seq")
            .unwrap();
        for data in stmt
            .query_map([session_no], |row| row.get::<_, String>(0))
            .unwrap()
        {
            for line in data.unwrap().split('\n') {
                events.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    edit(&mut events);
    db.execute(
        "DELETE FROM event_blocks WHERE session_no = ?1",
        [session_no],
    )
    .unwrap();
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return;
    };
    let count = |kinds: &[&str]| {
        events
            .iter()
            .filter(|e| kinds.contains(&e["kind"].as_str().unwrap()))
            .count() as i64
    };
    let data: Vec<String> = events.iter().map(Value::to_string).collect();
    db.execute(
        "INSERT INTO event_blocks \
         (session_no, first_seq, last_seq, head, events, queries, errors, started, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        rusqlite::params![
            session_no,
            first["seq"].as_i64().unwrap(),
            last["seq"].as_i64().unwrap(),
            last["hash"].as_str().unwrap(),
            events.len() as i64,
            count(&["db.query"]),
            count(&["db.error", "auth.failure", "protocol.error"]),
            count(&["session.start"]) > 0,
            data.join("\n"),
        ],
    )
    .unwrap();
}
