use actix_web::{HttpResponse, web};

use crate::{metrics::Metrics, service::ReportService};

/// Prometheus text format; the cache gauges are read from moka at scrape time.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub async fn metrics(
    metrics: web::Data<Metrics>,
    service: web::Data<ReportService>,
) -> HttpResponse {
    let (entries, bytes) = service.caches().report_usage().await;
    metrics
        .cache_entries
        .set(i64::try_from(entries).unwrap_or(i64::MAX));
    metrics
        .cache_bytes
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
