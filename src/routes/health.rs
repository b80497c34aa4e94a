use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use actix_web::{HttpResponse, web};

/// Whether the instance takes new traffic; turned off once shutdown begins.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new() -> Readiness {
        Readiness(Arc::new(AtomicBool::new(true)))
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub fn shutting_down(&self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

/// Liveness: the process serves.
#[utoipa::path(get, path = "/livez", tag = "health",
    responses((status = 200, description = "The process serves", body = inline(serde_json::Value), example = json!({"status": "ok"}))))]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Liveness, under the name some platforms expect.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process serves", body = inline(serde_json::Value), example = json!({"status": "ok"}))))]
pub async fn healthz() -> HttpResponse {
    livez().await
}

/// Readiness: 503 once shutdown has begun, so load balancers stop sending traffic.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready for traffic", body = inline(serde_json::Value), example = json!({"status": "ready"})),
    (status = 503, description = "Shutting down", body = inline(serde_json::Value), example = json!({"status": "shuttingDown"}))))]
pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    if readiness.is_ready() {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "shuttingDown"}))
    }
}
