//! The OpenAPI 3.1 document at `/api/v1/openapi.json`, generated from the handlers' annotations and
//! the response types, so that what it describes is what the code does.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, approvals, chains, error, sessions};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Proctor API",
        description = "Sessions, events, verification, replays, AI chains, approvals, identities \
            and connections of a Proctor gateway. Every route but this document takes a Proctor \
            token as `Authorization: Bearer <token>`; roles (admin, auditor, approver) come from \
            the `[web]` section of the configuration. Errors are JSON: \
            `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        admin::me,
        sessions::list,
        sessions::show,
        sessions::events,
        sessions::verification,
        sessions::bundle,
        sessions::asciicast,
        chains::list,
        chains::show,
        approvals::list,
        approvals::stream,
        approvals::show,
        approvals::approve,
        approvals::deny,
        admin::identities,
        admin::add_identity,
        admin::add_token,
        admin::revoke_token,
        admin::connections,
        admin::checkpoint,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerToken)
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("A Proctor token (`proctor token create`)."))
                        .build(),
                ),
            );
        }
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_describes_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/api/v1/me", &["get"][..]),
            ("/api/v1/sessions", &["get"]),
            ("/api/v1/sessions/{id}", &["get"]),
            ("/api/v1/sessions/{id}/events", &["get"]),
            ("/api/v1/sessions/{id}/verification", &["get"]),
            ("/api/v1/sessions/{id}/bundle", &["get"]),
            ("/api/v1/sessions/{id}/asciicast", &["get"]),
            ("/api/v1/chains", &["get"]),
            ("/api/v1/chains/{id}", &["get"]),
            ("/api/v1/approvals", &["get"]),
            ("/api/v1/approvals/stream", &["get"]),
            ("/api/v1/approvals/{id}", &["get"]),
            ("/api/v1/approvals/{id}/approve", &["post"]),
            ("/api/v1/approvals/{id}/deny", &["post"]),
            ("/api/v1/identities", &["get", "post"]),
            ("/api/v1/identities/{name}/tokens", &["post"]),
            ("/api/v1/tokens/{id}", &["delete"]),
            ("/api/v1/connections", &["get"]),
            ("/api/v1/log/checkpoint", &["get"]),
        ] {
            for method in methods {
                assert!(
                    paths[path][method].is_object(),
                    "{method} {path} is not in the document"
                );
            }
        }
        assert_eq!(paths.len(), 19, "{:?}", paths.keys().collect::<Vec<_>>());
    }
}
