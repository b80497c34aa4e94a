use actix_web::{HttpResponse, web};

use crate::{metrics::Metrics, service::Reports};

/// Prometheus text format; the cache gauges are read from the caches at scrape time.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub async fn metrics(metrics: web::Data<Metrics>, reports: web::Data<Reports>) -> HttpResponse {
    reports.update_gauges().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
