use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

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

/// A liveness answer: `{"status":"ok"}`.
#[derive(Serialize, ToSchema)]
pub struct Liveness {
    pub status: LivenessStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum LivenessStatus {
    Ok,
}

/// A readiness answer: `{"status":"ready"}`, or `{"status":"shuttingDown"}` with a 503.
#[derive(Serialize, ToSchema)]
pub struct ReadinessBody {
    pub status: ReadinessStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReadinessStatus {
    Ready,
    ShuttingDown,
}

/// Liveness: the process serves.
#[utoipa::path(get, path = "/livez", tag = "health",
    responses((status = 200, description = "The process serves", body = Liveness, example = json!({"status": "ok"}))))]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(Liveness {
        status: LivenessStatus::Ok,
    })
}

/// Liveness, under the name some platforms expect.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process serves", body = Liveness, example = json!({"status": "ok"}))))]
pub async fn healthz() -> HttpResponse {
    livez().await
}

/// Readiness: 503 once shutdown has begun, so load balancers stop sending traffic.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready for traffic", body = ReadinessBody, example = json!({"status": "ready"})),
    (status = 503, description = "Shutting down", body = ReadinessBody, example = json!({"status": "shuttingDown"}))))]
pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    if readiness.is_ready() {
        HttpResponse::Ok().json(ReadinessBody {
            status: ReadinessStatus::Ready,
        })
    } else {
        HttpResponse::ServiceUnavailable().json(ReadinessBody {
            status: ReadinessStatus::ShuttingDown,
        })
    }
}
