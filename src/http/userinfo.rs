//! `GET|POST /userinfo` (OIDC Core §5.3) with RFC 6750 bearer errors.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::app::AppState;
use crate::http::token::header_str;
use crate::issuance::user_claims;

fn bearer_error(status: actix_web::http::StatusCode, error: &str, description: &str) -> HttpResponse {
    let challenge = if error.is_empty() {
        "Bearer realm=\"grantd\"".to_string()
    } else {
        format!("Bearer realm=\"grantd\", error=\"{error}\", error_description=\"{description}\"")
    };
    let mut builder = HttpResponse::build(status);
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Ok(v) = header::HeaderValue::from_str(&challenge) {
        builder.insert_header((header::WWW_AUTHENTICATE, v));
    }
    if error.is_empty() { builder.finish() } else { builder.json(serde_json::json!({"error": error, "error_description": description})) }
}

pub async fn userinfo(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    // RFC 6750 §2.1 only: tokens never travel in the query (R9).
    let Some(authorization) = header_str(&req, "authorization") else {
        return bearer_error(StatusCode::UNAUTHORIZED, "", "");
    };
    let token = match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
        _ => return bearer_error(StatusCode::BAD_REQUEST, "invalid_request", "use the Bearer authorization scheme"),
    };
    let Some(claims) = state.access_token_claims(token) else {
        return bearer_error(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is not valid, expired or was revoked");
    };
    let scopes: Vec<String> = claims.get("scope").and_then(Value::as_str).unwrap_or("").split(' ').map(str::to_string).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return bearer_error(StatusCode::FORBIDDEN, "insufficient_scope", "the openid scope is required");
    }
    let user = claims.get("sub").and_then(Value::as_str).and_then(|sub| state.live.user(sub));
    match user.filter(|u| !u.disabled) {
        Some(user) => {
            HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(Value::Object(user_claims(&user, &scopes)))
        }
        None => bearer_error(StatusCode::UNAUTHORIZED, "invalid_token", "the token's user no longer exists"),
    }
}
