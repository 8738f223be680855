//! End to end: a newcomer's first run. The README's "Try it" block is run as written (`proctor init`,
//! `serve`, psql, `sessions show`) against the real binary and the test PostgreSQL, and it ends in
//! the recorded session; `init` keeps secrets out of its configuration and never overwrites one; a
//! gateway without connections says how to add one.

mod support;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{admin_sql, pg_address, stderr, stdout, Proctor};

const README: &str = include_str!("../../../README.md");

/// The shell lines of the README's "Try it" block.
fn try_it_lines() -> Vec<String> {
    let section = README
        .split_once("### Try it")
        .expect("the README has a \"Try it\" section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("\"Try it\" has a sh block")
        .1
        .split_once("```")
        .unwrap()
        .0;
    block.lines().map(str::to_owned).collect()
}

/// A README line as this test runs it: `cargo run --release --` is the binary under test, and the
/// machine's PostgreSQL is the test PostgreSQL.
fn as_tested(line: &str) -> String {
    line.replace(
        "cargo run --release --",
        &format!("'{}'", env!("CARGO_BIN_EXE_proctor")),
    )
    .replace("127.0.0.1:5432", &pg_address())
}

/// Runs one line in bash in `dir`, in a process group of its own (a background `serve` stays in it).
/// Its output goes to files: a background process keeps them open after the line is done.
fn run_line(dir: &Path, line: &str, env: &[(&str, &str)]) -> (Output, u32) {
    let out_path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let err_path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let mut child = Command::new("bash")
        .args(["-c", &as_tested(line)])
        .current_dir(dir)
        .env("USER", "first-run")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id();
    let status = child.wait().unwrap();
    let output = Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    };
    (output, group)
}

/// Ends a process group when the test ends, passed or not.
struct GroupGuard(Vec<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        for group in &self.0 {
            support::signal(-(*group as i32), libc::SIGTERM);
        }
    }
}

#[test]
fn the_readme_try_it_block_ends_in_the_recorded_session() {
    for port in [15432, 8080] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port}, a default of the README's gateway, is taken: stop what listens there"
        );
    }
    let lines = try_it_lines();
    assert_eq!(lines.len(), 5, "the README promises five lines: {lines:?}");
    assert!(lines[0].contains(" init "), "{}", lines[0]);
    assert!(lines[4].contains("sessions show"), "{}", lines[4]);
    let dir = tempfile::tempdir().unwrap();
    let mut groups = GroupGuard(Vec::new());

    let (init, _) = run_line(dir.path(), &lines[0], &[]);
    assert!(init.status.success(), "{}", stderr(&init));
    let token = stdout(&init).trim().to_owned();
    assert!(token.starts_with("prt_"), "init printed no token: {token}");
    let guidance = stderr(&init);
    assert!(
        guidance.contains("psql \"host=127.0.0.1 port=15432 user=first-run dbname=postgres\""),
        "init printed no psql line: {guidance}"
    );
    assert!(dir.path().join("proctor.toml").exists());

    let (serve, group) = run_line(dir.path(), &lines[1], &[]);
    groups.0.push(group);
    assert!(serve.status.success(), "{}", stderr(&serve));
    // The README's pause is for the release build; this debug build may take longer to start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", 15432)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The person types the token at psql's password prompt.
    let (psql, _) = run_line(dir.path(), &lines[2], &[("PGPASSWORD", &token)]);
    assert!(psql.status.success(), "{}", stderr(&psql));
    assert_eq!(
        stdout(&psql).lines().nth(2).map(str::trim),
        Some("postgres")
    );

    let (list, _) = run_line(dir.path(), &lines[3], &[]);
    assert!(list.status.success(), "{}", stderr(&list));

    // The store catches up with the commit log within a fraction of a second; a person reading the
    // list gives it that time.
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let (show, _) = run_line(dir.path(), &lines[4], &[]);
        let text = stdout(&show);
        if show.status.success() && text.contains("\nended ") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the session did not show: {text}{}",
            stderr(&show)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(shown.contains("first-run"), "{shown}");
    assert!(shown.contains("select current_user"), "{shown}");
    assert!(!shown.contains(&token), "the token is in the record");
}

fn init(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut init = Command::new(env!("CARGO_BIN_EXE_proctor"));
    init.arg("init")
        .args(args)
        .current_dir(dir)
        .env("USER", "first-run");
    support::output_with_stdin(init, stdin)
}

#[test]
fn init_never_overwrites_a_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let connection = format!("postgres://postgres@{}/test", pg_address());
    let first = init(dir.path(), &["--connection", &connection], "");
    assert!(first.status.success(), "{}", stderr(&first));
    let written = std::fs::read_to_string(dir.path().join("proctor.toml")).unwrap();

    let again = init(
        dir.path(),
        &["--connection", &connection, "--identity", "someone-else"],
        "",
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("never overwrites"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("proctor.toml")).unwrap(),
        written
    );
    assert!(stdout(&again).is_empty(), "a second token was printed");
}

#[test]
fn init_refuses_a_password_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = init(
        dir.path(),
        &[
            "--connection",
            "postgres://app:Argv-Pa55@127.0.0.1:5432/app",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("carries a password"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("Argv-Pa55"));
    assert!(!dir.path().join("proctor.toml").exists());
}

/// A password typed at init's prompt (here: its standard input) is kept beside the configuration,
/// readable by its owner only, and Proctor logs in with it to a target that demands it.
#[test]
fn a_password_given_to_init_is_kept_apart_and_used_upstream() {
    let password = "Init-Scram-Pa55";
    admin_sql(&format!(
        "set password_encryption = 'scram-sha-256'; \
         do $$ begin if not exists (select from pg_roles where rolname = 'proctor_scram') then \
         create role proctor_scram login; end if; end $$; \
         alter role proctor_scram password '{password}'"
    ));
    let dir = tempfile::tempdir().unwrap();
    let connection = format!("postgres://proctor_scram@{}/test", pg_address());
    let out = init(
        dir.path(),
        &["--connection", &connection, "--name", "scram-db"],
        &format!("{password}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    let config = std::fs::read_to_string(dir.path().join("proctor.toml")).unwrap();
    assert!(
        !config.contains(password),
        "the password is in proctor.toml"
    );
    assert!(config.contains("password_file"), "{config}");
    let kept = dir.path().join("secrets/scram-db.password");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), password);
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The configuration init wrote, on free ports, with its data dir where init made it.
    let extra = config
        .split_once("\n[[connection]]\n")
        .map(|(_, connection)| format!("[[connection]]\n{connection}"))
        .unwrap()
        .replace("secrets/", &format!("{}/secrets/", dir.path().display()));
    let proctor = Proctor::start(&extra);
    let token_here = proctor.add_identity("first-run", &["admin"]);
    let shown = proctor.psql_ok(
        "first-run",
        &token_here,
        "scram-db",
        &["-c", "select current_user"],
    );
    assert_eq!(shown.trim(), "proctor_scram");
    assert!(!proctor.data_dir_contains(password));
    assert!(!proctor.log().contains(password));
    assert!(token.starts_with("prt_"));
}

#[test]
fn init_with_password_env_names_the_variable_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = init(
        dir.path(),
        &[
            "--connection",
            "postgres://app@db.internal:6432/billing",
            "--password-env",
            "BILLING_DB_PASSWORD",
        ],
        "typed-by-mistake\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(dir.path().join("proctor.toml")).unwrap();
    assert!(
        config.contains("password_env = \"BILLING_DB_PASSWORD\""),
        "{config}"
    );
    assert!(
        config.contains("address = \"db.internal:6432\""),
        "{config}"
    );
    assert!(!config.contains("typed-by-mistake"));
    assert!(!dir.path().join("secrets").exists());
}

#[test]
fn a_gateway_without_connections_says_how_to_add_one_first() {
    let proctor = Proctor::start("");
    let first = proctor.log().lines().next().unwrap_or_default().to_owned();
    assert!(
        first.contains("no connection is configured") && first.contains("proctor init"),
        "{first}"
    );
}
