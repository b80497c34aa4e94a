//! The OpenAPI 3 document, generated from the handlers' annotations so it cannot drift.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::{health, metrics, reports};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "skype-gateway",
        description = "Microsoft Graph's Skype for Business activity-count report as cached JSON."
    ),
    paths(
        reports::activity_counts,
        health::livez,
        health::healthz,
        health::readyz,
        metrics::metrics,
        openapi_json
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "reports", description = "Graph usage reports"),
        (name = "health", description = "Probes"),
        (name = "operations", description = "Metrics and this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A Microsoft Graph access token with Reports.Read.All; forwarded to Graph",
                    ))
                    .build(),
            ),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", body = inline(serde_json::Value))))]
pub async fn openapi_json() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.as_str())
}
