//! The console's files, embedded in the binary at build time so that the gateway serves its console
//! with nothing to install and nothing fetched from elsewhere: `/` is the console's page and
//! `/console/<file>` its scripts, styles and the vendored terminal player (with its licence).
//!
//! Every answer carries a Content-Security-Policy that allows only the gateway's own origin (and
//! WebAssembly, which the terminal player runs), so that a recorded value shown in the console can
//! never load or run anything.

use axum::extract::Path;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Each embedded file: its path under `/console/`, its type, its bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/app.css"),
    ),
    (
        "vendor/asciinema-player/asciinema-player.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/asciinema-player/asciinema-player.min.js"),
    ),
    (
        "vendor/asciinema-player/asciinema-player.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/vendor/asciinema-player/asciinema-player.css"),
    ),
    (
        "vendor/asciinema-player/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../console/vendor/asciinema-player/LICENSE"),
    ),
    (
        "vendor/asciinema-player/README.md",
        "text/plain; charset=utf-8",
        include_bytes!("../console/vendor/asciinema-player/README.md"),
    ),
];

pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>| async move { file(&path) }),
        )
}

fn file(path: &str) -> Response {
    let security = [
        (
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY.to_owned(),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (
            HeaderName::from_static("referrer-policy"),
            "no-referrer".to_owned(),
        ),
    ];
    match FILES.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, bytes)) => {
            (security, [(header::CONTENT_TYPE, *content_type)], *bytes).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            security,
            "no such file in the console\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_names_no_other_origin() {
        for (name, _, bytes) in FILES
            .iter()
            .filter(|(name, _, _)| !name.contains("vendor/"))
        {
            let text = String::from_utf8_lossy(bytes);
            for outside in ["http://", "https://", "//cdn", "<script>"] {
                assert!(!text.contains(outside), "{name} contains {outside:?}");
            }
        }
    }
}
