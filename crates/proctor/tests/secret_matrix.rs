//! End to end, the whole promise: each kind of secret, through each path a byte can take through
//! Proctor (statement text, text and binary parameters of text, bytea and numeric types, text and
//! binary result cells, bytea results, errors, notices, notifications, COPY in and out, startup
//! parameters, the user and database fields, LLM prompts and answers, MCP tool arguments), reaches no
//! file of the data dir — in clear, in hex or in base64 — and `proctor search --secret` finds each one
//! given as it was pasted.

mod support;

use std::path::Path;
use std::process::Output;

use base64::Engine;
use serde_json::json;
use support::{admin_sql, python, search_secret, FixtureProvider, Proctor, APP_DB};
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

const CARD: &str = "4415 7118 1539 4971";
const CARD_DIGITS: &str = "4415711815394971";

/// A kind of secret: the text as a user pastes it, and the parts of it that must never be stored.
struct Secret {
    name: &'static str,
    pasted: String,
    never_stored: Vec<String>,
}

fn secrets(proctor_token: &str) -> Vec<Secret> {
    let key_lines = [
        "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDmTrxKeyLineOne",
        "QzR8vN3mXkL0pT7wYc2hJ5sD9fG1aB4eU6iO0rK8lM3nP2qS5tV7xW9yZ1aC3bEm",
    ];
    let token_secret = proctor_token.splitn(3, '_').nth(2).unwrap().to_owned();
    vec![
        Secret {
            name: "aws key pair",
            pasted: "aws_access_key_id = AKIAMATRIX7TEST0KEY1\n\
                     aws_secret_access_key = YxDhyk7iCghn/UEtRv1tKabKiPaBERK9g6kXTBgz"
                .into(),
            never_stored: vec![
                "AKIAMATRIX7TEST0KEY1".into(),
                "YxDhyk7iCghn/UEtRv1tKabKiPaBERK9g6kXTBgz".into(),
            ],
        },
        Secret {
            name: "github token",
            pasted: "ghp_KN0LLq60Pw1KK20SH2wSRFfqH6ASvVrO8g4C".into(),
            never_stored: vec!["ghp_KN0LLq60Pw1KK20SH2wSRFfqH6ASvVrO8g4C".into()],
        },
        Secret {
            name: "connection uri",
            pasted: "postgres://svc:Matrix-Pw-93jd8Q@db.internal:5432/prod".into(),
            never_stored: vec!["Matrix-Pw-93jd8Q".into()],
        },
        Secret {
            name: "private key",
            pasted: format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----\n",
                key_lines[0], key_lines[1]
            ),
            never_stored: key_lines.iter().map(|l| l.to_string()).collect(),
        },
        Secret {
            name: "card number",
            pasted: CARD.into(),
            never_stored: vec![CARD.into(), CARD_DIGITS.into()],
        },
        Secret {
            name: "proctor token",
            pasted: proctor_token.into(),
            never_stored: vec![proctor_token.into(), token_secret],
        },
    ]
}

/// A parameter sent in text format, whatever its type (tokio-postgres sends binary by default).
#[derive(Debug)]
struct InTextFormat(String);

impl ToSql for InTextFormat {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }
    to_sql_checked!();
}

/// The card number as a binary `numeric`: base-10000 digits.
#[derive(Debug)]
struct BinaryNumericCard;

impl ToSql for BinaryNumericCard {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        for word in [4u16, 3, 0, 0, 4415, 7118, 1539, 4971] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
    to_sql_checked!();
}

/// `text` as COPY's text format writes a field.
fn copy_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
}

/// Sends `secret` through every PostgreSQL path.
fn through_postgres(proctor: &Proctor, token: &str, secret: &Secret) {
    let s = &secret.pasted;
    let one_line = s.trim_end().replace('\n', " ");
    let quoted = format!("$q${s}$q$");
    let run = |env: &[(&str, &str)], args: &[&str], stdin: &str| {
        proctor.psql_as("alice", token, "app-db", env, args, stdin)
    };
    let ok = |out: Output, what: &str| {
        assert!(
            out.status.success(),
            "{}: {what}: {}",
            secret.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Statement text, a text result cell, a bytea result in hex, an error, a notice, a notification.
    let shown = ok(
        run(
            &[],
            &[
                "-c",
                &format!("select {quoted} as v, convert_to({quoted}, 'UTF8') as b"),
            ],
            "",
        ),
        "query",
    );
    assert!(
        shown.contains(s.trim_end()),
        "the client sees its own data: {shown}"
    );
    let failed = run(&[], &["-c", &format!("select {quoted}::int")], "");
    assert!(!failed.status.success());
    ok(
        run(
            &[],
            &[
                "-c",
                &format!("do $d$ begin raise notice '%', {quoted}; end $d$"),
            ],
            "",
        ),
        "notice",
    );
    ok(
        run(
            &[],
            &[
                "-c",
                "listen matrix",
                "-c",
                &format!("select pg_notify('matrix', {quoted})"),
            ],
            "",
        ),
        "notification",
    );
    // COPY in (text), and out in text, CSV and binary.
    ok(
        run(
            &[],
            &["-c", "copy matrix_copy (v) from stdin"],
            &format!("{}\n", copy_escaped(s)),
        ),
        "copy in",
    );
    for format in ["text", "csv", "binary"] {
        ok(
            run(
                &[],
                &[
                    "-c",
                    &format!("copy matrix_copy (v) to stdout (format {format})"),
                ],
                "",
            ),
            "copy out",
        );
    }
    ok(run(&[], &["-c", "truncate matrix_copy"], ""), "truncate");
    // Startup parameters.
    let options = format!("-c matrix.secret={}", one_line.replace(' ', "\\ "));
    ok(
        run(
            &[("PGAPPNAME", &one_line), ("PGOPTIONS", &options)],
            &["-c", "select 1"],
            "",
        ),
        "startup",
    );
    if secret.name == "card number" {
        // A chain named in the application name is recorded with every statement.
        let chain = format!("chain={CARD_DIGITS}");
        ok(
            run(&[("PGAPPNAME", &chain)], &["-c", "select 1"], ""),
            "chain",
        );
    }
    // The user and database fields (a token typed there is a common slip): refused, recorded.
    for (user, database) in [(s.as_str(), "app-db"), ("alice", s.as_str())] {
        let refused = proctor.psql_as(user, token, database, &[], &["-c", "select 1"], "");
        assert!(
            !refused.status.success(),
            "{}: a wrong user or database is refused",
            secret.name
        );
    }
    // The extended protocol: parameters in text and binary format, results in binary format.
    let (runtime, client) = proctor.tokio_client("alice", token, "app-db");
    runtime.block_on(async {
        let hex = format!("\\x{}", hex::encode(s.as_bytes()));
        let text = InTextFormat(s.clone());
        let bytea_text = InTextFormat(hex);
        let bytes = s.as_bytes().to_vec();
        client.query("select $1::text", &[&text]).await.unwrap();
        client.query("select $1::text", &[s]).await.unwrap();
        client.query("select $1::bytea", &[&bytes]).await.unwrap();
        client
            .query("select $1::bytea", &[&bytea_text])
            .await
            .unwrap();
        client
            .query("select array[$1::text, 'x']", &[s])
            .await
            .unwrap();
        if secret.name == "card number" {
            let digits = InTextFormat(CARD_DIGITS.into());
            let number: i64 = CARD_DIGITS.parse().unwrap();
            client
                .query("select $1::numeric", &[&digits])
                .await
                .unwrap();
            client
                .query("select $1::numeric", &[&BinaryNumericCard])
                .await
                .unwrap();
            client.query("select $1::int8", &[&number]).await.unwrap();
            client
                .query("select $1::int8 + 0", &[&digits])
                .await
                .unwrap();
            client
                .query("select array[$1::int8]", &[&number])
                .await
                .unwrap();
        }
    });
}

/// The prompt and the answer through the LLM proxy (the fixture's model "echo" answers with the
/// prompt), and a tool call's arguments through MCP.
fn through_ai(proctor: &Proctor, token: &str, secret: &Secret) {
    let port = proctor.http_port.to_string();
    let answered = python("llm_clients.py", &["echo", &port, token, &secret.pasted]);
    assert_eq!(
        answered["answers"].as_array().unwrap().len(),
        2,
        "{answered}"
    );
    let calls = json!([["query", {"connection": "app-db", "sql": format!("select $q${}$q$ as v", secret.pasted)}]]);
    let ran = python("mcp_client.py", &[&port, token, &calls.to_string()]);
    assert_eq!(ran["results"][0]["error"], false, "{}: {ran}", secret.name);
}

/// Every way `needle` could sit in a file: in clear, in hex (either case), in base64 (standard and
/// URL-safe, at each of the three alignments).
fn encodings(needle: &str) -> Vec<Vec<u8>> {
    let mut forms = vec![
        needle.as_bytes().to_vec(),
        hex::encode(needle).into_bytes(),
        hex::encode_upper(needle).into_bytes(),
    ];
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        for shift in 0..3 {
            let mut shifted = vec![b'.'; shift];
            shifted.extend_from_slice(needle.as_bytes());
            let encoded = engine.encode(&shifted);
            let skip = if shift == 0 { 0 } else { 4 };
            forms.push(encoded.as_bytes()[skip..encoded.len() - 4].to_vec());
        }
    }
    forms
}

/// The files under `dir` that hold `form`.
fn files_holding(dir: &Path, form: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_holding(&path, form));
        } else if std::fs::read(&path)
            .unwrap_or_default()
            .windows(form.len())
            .any(|w| w == form)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn no_secret_reaches_the_data_dir_by_any_path_and_each_is_found_as_pasted() {
    admin_sql("drop table if exists matrix_copy; create table matrix_copy (v text)");
    let provider = FixtureProvider::start();
    let mut proctor = Proctor::start(&format!(
        "{APP_DB}\n[[llm.provider]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}\"\nallow = [\"group:dba\"]\n",
        provider.port
    ));
    let token = proctor.add_identity("alice", &["dba"]);
    let leaked_token = proctor.add_identity("bob", &["dba"]);
    let secrets = secrets(&leaked_token);
    for secret in &secrets {
        through_postgres(&proctor, &token, secret);
        through_ai(&proctor, &token, secret);
    }
    // A secret across the end of what a result's sample keeps (64 KiB): masked whole, not kept in
    // part.
    let github = &secrets[1].pasted;
    let across = format!("select repeat('x', 65515) || ' {github}'");
    let out = proctor.psql_as("alice", &token, "app-db", &[], &["-c", &across], "");
    assert!(out.status.success());
    proctor.stop();
    assert!(
        files_holding(&proctor.data_dir(), &github.as_bytes()[..20]).is_empty(),
        "the part of a secret before a sample's cut is not stored"
    );

    let mut stored = Vec::new();
    for secret in &secrets {
        for needle in &secret.never_stored {
            for form in encodings(needle) {
                for file in files_holding(&proctor.data_dir(), &form) {
                    stored.push(format!(
                        "{}: {:?} in {file}",
                        secret.name,
                        String::from_utf8_lossy(&form)
                    ));
                }
            }
        }
    }
    assert!(
        stored.is_empty(),
        "secrets reached the data dir:\n{}",
        stored.join("\n")
    );

    for secret in &secrets {
        let (found, listing) = search_secret(&proctor, &secret.pasted);
        assert!(
            found,
            "search --secret finds the {} as pasted: {listing}",
            secret.name
        );
        for location in ["sql", "identity", "connection"] {
            assert!(
                listing.contains(location),
                "the {} is found where it was typed ({location}): {listing}",
                secret.name
            );
        }
    }
    let (found, listing) = search_secret(&proctor, "YxDhyk7iCghn/UEtRv1tKabKiPaBERK9g6kXTBgz");
    assert!(found, "the AWS secret key alone is found too: {listing}");
}
