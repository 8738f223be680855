//! End to end: secrets that pass through Proctor — in results, in statements, in parameters — never
//! reach any file of the data dir, and `proctor search --secret` still finds where each one passed.

mod support;

use std::io::Write;
use std::process::Stdio;

use support::{admin_sql, of_kind, stdout, Proctor, APP_DB};
use tokio_postgres::NoTls;

const URI_PASSWORD: &str = "S3cr3tPassw0rd-e2e";
const AWS_KEY: &str = "AKIAE2EMASKTEST12345";
const KEY_BODY: &str = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2MoE2EmaskTestKeyMaterial";
const CARD: &str = "4111 1111 1111 1111";
const ROLE_PASSWORD: &str = "R0le-Pa55w0rd-e2e";
const PARAM_TOKEN: &str = "ghp_E2eMaskParamToken0123456789abcdefXYZ";

fn search(proctor: &Proctor, secret: &str) -> (bool, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_proctor"))
        .args(["search", "--secret", "--config"])
        .arg(&proctor.config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{secret}").unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), stdout(&out))
}

#[test]
fn secrets_are_masked_in_the_journal_and_found_by_fingerprint() {
    admin_sql(&format!(
        "drop table if exists e2e_secrets; create table e2e_secrets (name text, value text); \
         insert into e2e_secrets values \
         ('dsn', 'postgres://admin:{URI_PASSWORD}@db.internal:5432/prod'), \
         ('aws', '{AWS_KEY}'), \
         ('key', E'-----BEGIN RSA PRIVATE KEY-----\\n{KEY_BODY}\\n-----END RSA PRIVATE KEY-----'), \
         ('card', '{CARD}'); \
         drop role if exists e2e_masked_role; create role e2e_masked_role"
    ));
    let mut proctor = Proctor::start(APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let out = proctor.psql(
        "alice",
        &token,
        "app-db",
        "disable",
        &[
            "-c",
            "select name, value from e2e_secrets order by name",
            "-c",
            &format!("alter role e2e_masked_role password '{ROLE_PASSWORD}'"),
        ],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    let shown = stdout(&out);
    for secret in [URI_PASSWORD, AWS_KEY, KEY_BODY, CARD] {
        assert!(
            shown.contains(secret),
            "journal-only masking leaves the client's results whole"
        );
    }
    assert_eq!(
        admin_sql(
            "select rolpassword is not null from pg_authid where rolname = 'e2e_masked_role'"
        ),
        "t",
        "the ALTER ROLE ran"
    );

    // The extended protocol: a secret in a bound parameter.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&proctor.conninfo("alice", &token, "app-db"), NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one(
                "select length($1::text)",
                &[&format!("token = {PARAM_TOKEN}")],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0) as usize, PARAM_TOKEN.len() + 8);
    });

    let sessions = proctor.ended_sessions_of("alice", 2);
    let events = proctor.events(sessions[0]["id"].as_str().unwrap());
    let result = of_kind(&events, "db.result")[0];
    let sample = result["body"]["sample"].to_string();
    assert!(
        sample.contains("[MASKED:connection-uri-password]"),
        "{sample}"
    );
    assert!(sample.contains("[MASKED:aws-access-key-id]"), "{sample}");
    assert!(sample.contains("[MASKED:private-key]"), "{sample}");
    assert!(sample.contains("[MASKED:card-number]"), "{sample}");
    let detectors: Vec<_> = result["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["detector"].as_str().unwrap())
        .collect();
    assert_eq!(detectors.len(), 4, "{detectors:?}");
    let alter = &of_kind(&events, "db.query")[1];
    assert_eq!(
        alter["body"]["sql"],
        "alter role e2e_masked_role password '[MASKED:sql-password]'"
    );

    proctor.stop();
    for secret in [
        URI_PASSWORD,
        AWS_KEY,
        KEY_BODY,
        CARD,
        ROLE_PASSWORD,
        PARAM_TOKEN,
    ] {
        assert!(
            !proctor.data_dir_contains(secret),
            "{secret} is in a file of the data dir"
        );
    }

    for (secret, detector) in [
        (URI_PASSWORD, "connection-uri-password"),
        (AWS_KEY, "aws-access-key-id"),
        (CARD, "card-number"),
        (ROLE_PASSWORD, "sql-password"),
        (PARAM_TOKEN, "github-token"),
    ] {
        let (found, text) = search(&proctor, secret);
        assert!(found, "{secret}: {text}");
        assert!(text.contains("alice") && text.contains(detector), "{text}");
    }
    let (found, text) = search(&proctor, "a-password-that-never-passed");
    assert!(!found && text.contains("not found"), "{text}");
}

#[test]
fn gitleaks_rules_from_the_config_mask_what_the_built_in_rules_do_not_know() {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/gitleaks/gitleaks.toml");
    let proctor = Proctor::start(&format!(
        "[masking]\nrules_files = [{:?}]\n{APP_DB}",
        rules.display().to_string()
    ));
    let log = proctor.log();
    assert!(log.contains("a masking rule was refused"), "{log}");
    assert!(
        log.contains("pypi-upload-token") && log.contains("pkcs12-file"),
        "{log}"
    );
    let token = proctor.add_identity("alice", &["dba"]);
    let age_key = format!(
        "AGE-SECRET-KEY-1{}",
        "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L".repeat(2)[..58].to_owned()
    );
    let out = proctor.psql(
        "alice",
        &token,
        "app-db",
        "disable",
        &["-c", &format!("select '{age_key}'")],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    let session = &proctor.ended_sessions_of("alice", 1)[0];
    let events = proctor.events(session["id"].as_str().unwrap());
    let query = &of_kind(&events, "db.query")[0];
    assert_eq!(query["body"]["sql"], "select '[MASKED:age-secret-key]'");
    assert!(!proctor.data_dir_contains(&age_key));
}
