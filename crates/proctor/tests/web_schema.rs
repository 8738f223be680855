//! The API against its own OpenAPI document, by `schemathesis` (from PyPI): thousands of requests
//! generated from the document, valid and invalid, against the real gateway with recorded sessions.
//! No answer may be a 5xx, break the schema it is documented with, or accept what the document
//! says is invalid.

mod support;

use std::process::Command;

use support::{stderr, stdout, Proctor, APP_DB};

#[test]
fn the_api_keeps_to_its_openapi_document_under_generated_requests() {
    let proctor = Proctor::start(&APP_DB);
    let ana = proctor.add_identity("ana", &["admin", "dba"]);
    proctor.psql_ok(
        "ana",
        &ana,
        "app-db",
        &["-c", "select 1 as one", "-c", "select 2"],
    );
    proctor.ended_sessions_of("ana", 1);
    let document = format!("http://127.0.0.1:{}/api/v1/openapi.json", proctor.http_port);
    let out = Command::new("schemathesis")
        .args(["run", &document, "--checks", "all", "--max-examples", "25"])
        .args(["--request-timeout", "10", "--no-color"])
        .args(["-H", &format!("Authorization: Bearer {ana}")])
        // The stream never ends: `web_api` reads it.
        .args(["--exclude-path", "/api/v1/approvals/stream"])
        // Revoking tokens would revoke the one the run goes on with: `web_api` revokes one.
        .args(["--exclude-path", "/api/v1/tokens/{id}"])
        .current_dir(proctor.dir.path())
        .output()
        .expect("schemathesis runs (.ci/run installs it from .ci/python-requirements.txt)");
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}{}",
        stderr(&out)
    );
    assert!(report.contains(" passed"), "{report}");
}
