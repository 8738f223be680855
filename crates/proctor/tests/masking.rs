//! End to end: secrets that pass through Proctor — in results, in statements, in parameters — never
//! reach any file of the data dir, and `proctor search --secret` still finds where each one passed.

mod support;

use support::{admin_sql, of_kind, search_secret, stdout, Proctor, APP_DB};
use tokio_postgres::NoTls;

const URI_PASSWORD: &str = "S3cr3tPassw0rd-e2e";
const AWS_KEY: &str = "AKIAE2EMASKTEST12345";
const KEY_BODY: &str = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2MoE2EmaskTestKeyMaterial";
const CARD: &str = "4111 1111 1111 1111";
const ROLE_PASSWORD: &str = "R0le-Pa55w0rd-e2e";
const PARAM_TOKEN: &str = "ghp_E2eMaskParamToken0123456789abcdefXYZ";

/// A tokio-postgres client through Proctor (it asks for results in binary format).
async fn connect(proctor: &Proctor, token: &str, connection: &str) -> tokio_postgres::Client {
    let (client, driver) =
        tokio_postgres::connect(&proctor.conninfo("alice", token, connection), NoTls)
            .await
            .unwrap();
    tokio::spawn(driver);
    client
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
    let mut proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let shown = proctor.psql_ok(
        "alice",
        &token,
        "app-db",
        &[
            "-c",
            "select name, value from e2e_secrets order by name",
            "-c",
            &format!("alter role e2e_masked_role password '{ROLE_PASSWORD}'"),
        ],
    );
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
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = connect(&proctor, &token, "app-db").await;
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
        let (found, text) = search_secret(&proctor, secret);
        assert!(found, "{secret}: {text}");
        assert!(text.contains("alice") && text.contains(detector), "{text}");
    }
    let (found, text) = search_secret(&proctor, "a-password-that-never-passed");
    assert!(!found && text.contains("not found"), "{text}");
}

#[test]
fn gitleaks_rules_from_the_config_mask_what_the_built_in_rules_do_not_know() {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../proctor-mask/rules/gitleaks.toml");
    let proctor = Proctor::start(&format!(
        "[masking]\nrules_files = [{:?}]\n{APP_DB}",
        rules.display().to_string()
    ));
    let log = proctor.log();
    assert!(log.contains("a masking rule was refused"), "{log}");
    // The one rule refused matches file names only; pypi-upload-token loads since its `\w` is read
    // as Go reads it (ASCII), which keeps its regex within the size limit.
    assert!(
        log.contains("pkcs12-file") && !log.contains("pypi-upload-token"),
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

/// The test database again, with results masked for the client too.
fn masked_db() -> String {
    APP_DB.replace("app-db", "masked-db") + "mask_results = \"client_and_journal\"\n"
}

#[test]
fn with_client_and_journal_masking_the_client_sees_masks_too() {
    let password = "Cl1ent-Side-Pa55";
    let card: i64 = 4_111_111_111_111_111;
    admin_sql(&format!(
        "drop table if exists e2e_client_masked; create table e2e_client_masked (id int, dsn text, card int8); \
         insert into e2e_client_masked select g, 'postgres://app:{password}@db/prod', {card} \
         from generate_series(1, 30) g"
    ));
    let aws_key = "AKIAE2ECLIENTMASK123";
    let key_body = "MIIEpAIBAAKCAQEAclientSideMaskedKeyMaterial";
    admin_sql(&format!(
        "drop table if exists e2e_client_secrets; create table e2e_client_secrets (value text); \
         insert into e2e_client_secrets values ('{aws_key}'), \
         (E'-----BEGIN PRIVATE KEY-----\\n{key_body}\\n-----END PRIVATE KEY-----')"
    ));
    let mut proctor = Proctor::start(&format!("{APP_DB}{}", masked_db()));
    let token = proctor.add_identity("alice", &["dba"]);
    let out = proctor.psql(
        "alice",
        &token,
        "masked-db",
        "disable",
        &["-c", "select value from e2e_client_secrets"],
    );
    assert_eq!(
        stdout(&out).trim(),
        "[MASKED:aws-access-key-id]\n[MASKED:private-key]"
    );

    // psql: text format, and more rows than the journal samples.
    let shown = proctor.psql_ok(
        "alice",
        &token,
        "masked-db",
        &[
            "-c",
            "select id, dsn, card from e2e_client_masked order by id",
        ],
    );
    assert!(
        !shown.contains(password) && !shown.contains(&card.to_string()),
        "{shown}"
    );
    assert_eq!(
        shown.lines().next().unwrap(),
        "1|postgres://app:[MASKED:connection-uri-password]@db/prod|[MASKED:card-number]"
    );
    assert_eq!(shown.lines().count(), 30);
    let copied = proctor.psql(
        "alice",
        &token,
        "masked-db",
        "disable",
        &[
            "-c",
            "copy (select dsn from e2e_client_masked where id = 1) to stdout",
        ],
    );
    assert_eq!(
        stdout(&copied).trim(),
        "postgres://app:[MASKED:connection-uri-password]@db/prod"
    );

    // tokio-postgres: binary format. Text masks in place; an int8 holding a card number cannot, so
    // it arrives as NULL, and the event says so.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = connect(&proctor, &token, "masked-db").await;
        let row = client
            .query_one(
                "select dsn, card, id from e2e_client_masked where id = $1",
                &[&7i32],
            )
            .await
            .unwrap();
        assert_eq!(
            row.get::<_, String>(0),
            "postgres://app:[MASKED:connection-uri-password]@db/prod"
        );
        assert_eq!(row.get::<_, Option<i64>>(1), None);
        assert_eq!(row.get::<_, i32>(2), 7);
    });

    // The same statements through the journal-only connection reach the client whole.
    let out = proctor.psql(
        "alice",
        &token,
        "app-db",
        "disable",
        &["-c", "select dsn from e2e_client_masked where id = 1"],
    );
    assert!(stdout(&out).contains(password));

    let sessions = proctor.ended_sessions_of("alice", 5);
    let binary = proctor.events(sessions[3]["id"].as_str().unwrap());
    let result = of_kind(&binary, "db.result")
        .into_iter()
        .find(|e| e["body"]["client_masked"].is_object())
        .expect("a result masked for the client");
    assert_eq!(result["body"]["client_masked"]["cells"], 2);
    assert_eq!(result["body"]["client_masked"]["nulled"], 1);
    let text = proctor.events(sessions[1]["id"].as_str().unwrap());
    assert_eq!(
        of_kind(&text, "db.result")[0]["body"]["client_masked"]["cells"],
        60
    );
    proctor.stop();
    for secret in [aws_key, key_body, password] {
        assert!(
            !proctor.data_dir_contains(secret),
            "{secret} is in the data dir"
        );
    }
}

#[test]
fn column_rules_redact_keep_the_last_four_or_hash_by_table_and_column_name() {
    admin_sql(
        "drop table if exists e2e_people, e2e_contacts; \
         create table e2e_people (id int, email text, password_digest text, card text); \
         insert into e2e_people values (1, 'ann@example.org', 'x1', '5500000000000004'), \
                                       (2, 'ann@example.org', 'x2', '340000000000009'); \
         create table e2e_contacts (email text); insert into e2e_contacts values ('bob@example.org')",
    );
    let proctor = Proctor::start(&format!(
        "{}mask_columns = [\
           {{ column = \"e2e_people.email\", strategy = \"hash\" }}, \
           {{ column = \"*.password*\", strategy = \"redact\" }}, \
           {{ column = \"e2e_people.card\", strategy = \"partial\" }}]\n",
        masked_db()
    ));
    let token = proctor.add_identity("alice", &["dba"]);
    let shown = proctor.psql_ok(
        "alice",
        &token,
        "masked-db",
        &[
            "-c",
            "select email, password_digest, card from e2e_people order by id",
            "-c",
            "select email from e2e_contacts",
        ],
    );
    let lines: Vec<&str> = shown.lines().collect();
    let first: Vec<&str> = lines[0].split('|').collect();
    let second: Vec<&str> = lines[1].split('|').collect();
    assert!(first[0].starts_with("[HASH:"), "{shown}");
    assert_eq!(
        first[0], second[0],
        "the same email hashes the same, so analysts can join"
    );
    assert_eq!(first[1], "[MASKED:*.password*]");
    assert_eq!(first[2], "************0004");
    assert_eq!(second[2], "***********0009");
    assert_eq!(
        lines[2], "bob@example.org",
        "a rule naming another table leaves this one"
    );

    let session = &proctor.ended_sessions_of("alice", 1)[0];
    let events = proctor.events(session["id"].as_str().unwrap());
    let result = of_kind(&events, "db.result")[0];
    assert_eq!(result["body"]["sample"][0][0], first[0]);
    assert_eq!(result["body"]["sample"][0][2], "************0004");
    assert!(!proctor.data_dir_contains("ann@example.org"));
    assert!(!proctor.data_dir_contains("5500000000000004"));
}
