//! `GET /`: where a client starting from the bare address finds the rest.

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

/// The index: the service's name and version, and links to its documents.
#[derive(Serialize, ToSchema)]
pub struct Index {
    /// `skype-gateway`
    pub name: &'static str,
    pub version: &'static str,
    pub links: IndexLinks,
}

/// Paths on this gateway.
#[derive(Serialize, ToSchema)]
pub struct IndexLinks {
    /// The OpenAPI 3 document: `/openapi.json`.
    pub openapi: &'static str,
    /// The catalog of reports: `/reports`.
    pub reports: &'static str,
}

/// The index: links to the OpenAPI document and to the catalog of reports.
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "Links to the OpenAPI document and the catalog", body = Index,
        example = json!({"name": "skype-gateway", "version": "0.1.0",
            "links": {"openapi": "/openapi.json", "reports": "/reports"}}))))]
pub async fn index() -> HttpResponse {
    HttpResponse::Ok().json(Index {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        links: IndexLinks {
            openapi: "/openapi.json",
            reports: "/reports",
        },
    })
}
