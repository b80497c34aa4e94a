//! The HTTP routes; each file is one group. Handlers translate between HTTP and the service.

pub mod headers;
pub mod health;
pub mod index;
pub mod metrics;
pub mod openapi;
pub mod reports;

use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, web};

use crate::{error::ApiError, telemetry::RouteTemplate};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_only("/", index::index))
        .service(get_only("/livez", health::livez))
        .service(get_only("/healthz", health::healthz))
        .service(get_only("/readyz", health::readyz))
        .service(get_only("/metrics", metrics::metrics))
        .service(get_only("/openapi.json", openapi::openapi_json))
        .service(get_only("/reports", reports::catalog_json))
        // Last: any three segments are a catalog report's route, or a 404.
        .service(
            web::resource(reports::REPORT_ROUTE)
                .app_data(RouteTemplate(reports::REPORT_ROUTE))
                .route(web::get().to(reports::activity_counts))
                .route(web::head().to(reports::activity_counts))
                .default_service(web::to(reports::other_method)),
        );
}

/// A resource that answers GET and HEAD, and a JSON 405 to any other method. HEAD runs the GET
/// handler: actix-http sends its status and headers, `Content-Length` of the body included,
/// and drops the body. It carries its path as the route template that metrics and the access
/// log name it by.
fn get_only<F, Args>(path: &'static str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .app_data(RouteTemplate(path))
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(method_not_allowed))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
