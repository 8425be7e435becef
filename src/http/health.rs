//! `/healthz` (the process answers) and `/readyz` (the database answers and
//! the read models are being kept current).

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::app::AppState;

#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.head().await {
        Ok(head) => HttpResponse::Ok().json(json!({
            "status": "ready",
            "log_head": head,
            "published": state.store.published_position(),
            "live_view": state.live.position(),
        })),
        Err(e) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(json!({"status": "unavailable", "error": e.to_string()})),
    }
}
