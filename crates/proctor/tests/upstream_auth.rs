//! End to end: Proctor logs in to the target with the credentials it holds — SCRAM-SHA-256, md5, and
//! SCRAM over TLS — from an environment variable or a file; the client never sees them.
//!
//! The roles' pg_hba rules are those of the tests' cluster (`.ci/postgres-setup.sh`); each test first
//! proves that the target really demands the password, so it cannot pass against a target that
//! trusts everyone.

mod support;

use support::{admin_sql, of_kind, stderr, stdout, Proctor};

fn create_role(role: &str, password: &str, encryption: &str) {
    admin_sql(&format!(
        "set password_encryption = '{encryption}'; \
         do $$ begin if not exists (select from pg_roles where rolname = '{role}') then \
         create role {role} login; end if; end $$; \
         alter role {role} password '{password}'"
    ));
}

/// Connects directly to the target with a wrong password; it must be refused.
fn assert_target_demands_a_password(role: &str, sslmode: &str) {
    let (host, port) = support::pg_host_and_port();
    let out = std::process::Command::new("psql")
        .args(["-X", "-At", "-c", "select 1"])
        .arg(format!(
            "host={host} port={port} user={role} dbname=test sslmode={sslmode}"
        ))
        .env("PGPASSWORD", "definitely-wrong")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the target accepted {role} with a wrong password: run the tests with .ci/run, or against the \
         cluster of .ci/postgres-setup.sh (PROCTOR_TEST_PG), whose pg_hba rules demand it"
    );
}

fn connection(name: &str, role: &str, secret: &str, tls: &str) -> String {
    format!(
        "\n[[connection]]\nname = \"{name}\"\nkind = \"postgres\"\naddress = \"{}\"\ndatabase = \"test\"\n\
         user = \"{role}\"\n{secret}\ntls = \"{tls}\"\nallow = [\"alice\"]\n",
        support::pg_address()
    )
}

#[test]
fn proctor_logs_in_upstream_with_scram_md5_and_tls_using_credentials_it_holds() {
    create_role("proctor_scram", "scram-Pa55", "scram-sha-256");
    create_role("proctor_md5", "md5-Pa55", "md5");
    create_role("proctor_tls", "tls-Pa55", "scram-sha-256");
    assert_target_demands_a_password("proctor_scram", "disable");
    assert_target_demands_a_password("proctor_md5", "disable");
    assert_target_demands_a_password("proctor_tls", "require");

    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("md5-password");
    std::fs::write(&password_file, "md5-Pa55\n").unwrap();
    let config = [
        connection(
            "scram-db",
            "proctor_scram",
            "password_env = \"SCRAM_DB_PASSWORD\"",
            "disable",
        ),
        connection(
            "md5-db",
            "proctor_md5",
            &format!("password_file = \"{}\"", password_file.display()),
            "disable",
        ),
        connection(
            "tls-db",
            "proctor_tls",
            "password_env = \"TLS_DB_PASSWORD\"",
            "require",
        ),
        connection(
            "wrong-db",
            "proctor_scram",
            "password_env = \"WRONG_DB_PASSWORD\"",
            "disable",
        ),
    ]
    .concat();
    let proctor = Proctor::start_with_env(
        &config,
        &[
            ("SCRAM_DB_PASSWORD", "scram-Pa55"),
            ("TLS_DB_PASSWORD", "tls-Pa55"),
            ("WRONG_DB_PASSWORD", "nope"),
        ],
    );
    let token = proctor.add_identity("alice", &[]);
    for (connection, role) in [
        ("scram-db", "proctor_scram"),
        ("md5-db", "proctor_md5"),
        ("tls-db", "proctor_tls"),
    ] {
        let out = proctor.psql(
            "alice",
            &token,
            connection,
            "disable",
            &["-c", "select current_user"],
        );
        assert!(out.status.success(), "{connection}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), role);
    }
    let wrong = proctor.psql("alice", &token, "wrong-db", "disable", &["-c", "select 1"]);
    assert!(
        stderr(&wrong).contains("Proctor could not open connection \"wrong-db\""),
        "{}",
        stderr(&wrong)
    );
    assert!(
        stderr(&wrong).contains("28P01"),
        "the target's refusal is passed on: {}",
        stderr(&wrong)
    );

    let sessions = proctor.ended_sessions_of("alice", 4);
    let tls_session = sessions
        .iter()
        .find(|s| s["connection"] == "tls-db")
        .unwrap();
    let events = proctor.events(tls_session["id"].as_str().unwrap());
    assert_eq!(
        of_kind(&events, "session.start")[0]["body"]["upstream"]["tls"],
        true
    );
    for password in ["scram-Pa55", "md5-Pa55", "tls-Pa55"] {
        assert!(
            !proctor.data_dir_contains(password),
            "{password} is in the data dir"
        );
    }
    assert!(!proctor.log().contains("Pa55"), "a password is in the log");
}

/// The test PostgreSQL's self-signed certificate, issued to localhost: `PROCTOR_TEST_PG_CA` (`.ci/run`
/// sets it to its cluster's), else Debian's "snakeoil" one, which the machine's PostgreSQL serves.
fn server_cert() -> String {
    std::env::var("PROCTOR_TEST_PG_CA")
        .unwrap_or_else(|_| "/etc/ssl/certs/ssl-cert-snakeoil.pem".to_owned())
}

#[test]
fn verify_full_checks_the_target_certificate_and_its_name() {
    create_role("proctor_tls", "tls-Pa55", "scram-sha-256");
    let verified = |name: &str, server_name: &str| {
        connection(
            name,
            "proctor_tls",
            "password_env = \"TLS_DB_PASSWORD\"",
            "verify-full",
        ) + &format!(
            "tls_ca_file = \"{}\"\ntls_server_name = \"{server_name}\"\n",
            server_cert()
        )
    };
    let config = verified("right-name", "localhost") + &verified("wrong-name", "db.example.com");
    let proctor = Proctor::start_with_env(&config, &[("TLS_DB_PASSWORD", "tls-Pa55")]);
    let token = proctor.add_identity("alice", &[]);

    let ok = proctor.psql(
        "alice",
        &token,
        "right-name",
        "disable",
        &["-c", "select current_user"],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(stdout(&ok).trim(), "proctor_tls");

    let refused = proctor.psql(
        "alice",
        &token,
        "wrong-name",
        "disable",
        &["-c", "select 1"],
    );
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("Proctor could not open connection \"wrong-name\""),
        "{message}"
    );
    assert!(message.contains("TLS to the database failed"), "{message}");
    assert!(message.contains("not valid for name"), "{message}");
}
