//! `GET /healthz` (liveness: the process serves) and `GET /readyz`
//! (readiness: storage and the search index answer), for load balancers,
//! Kubernetes probes and the container's `HEALTHCHECK`. Neither needs a
//! login: a probe has none, and neither tells more than up or down.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::registry::{health, AppState};

/// Where each is served.
pub const LIVENESS_PATH: &str = "/healthz";
pub const READINESS_PATH: &str = "/readyz";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(LIVENESS_PATH)
            .route(web::get().to(liveness))
            .route(web::head().to(liveness)),
    )
    .service(
        web::resource(READINESS_PATH)
            .route(web::get().to(readiness))
            .route(web::head().to(readiness)),
    );
}

async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when both answer, else 503 naming the one that did not (the
/// reason itself goes to the log: it may show hosts and paths).
async fn readiness(state: web::Data<AppState>) -> HttpResponse {
    let readiness = health::readiness(&state).await;
    let word = |failed: &Option<String>, what: &str| match failed {
        None => "ok",
        Some(why) => {
            log::warn!("readiness: {what} failed: {why}");
            "failed"
        }
    };
    let body = json!({
        "status": if readiness.ready() { "ok" } else { "failed" },
        "storage": word(&readiness.storage, "storage"),
        "search": word(&readiness.search, "search index"),
    });
    if readiness.ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
