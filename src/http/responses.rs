//! Rendering OAuth errors and token responses with the headers the RFCs ask for.

use actix_web::HttpResponse;
use actix_web::http::{StatusCode, header};
use serde_json::Value;

use crate::actors::CommandError;
use crate::app::AppState;
use crate::eventstore::{RecordedEvent, StoreError};
use crate::oauth::error::{ErrorCode, OAuthError};

/// A JSON body that must not be cached (tokens, token errors: OAuth 2.1 §3.2.3, R19).
pub fn no_store_json(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .content_type("application/json")
        // Written straight into the body: a `Value`'s `Display` goes
        // through a formatter, a write call per token of JSON.
        .body(serde_json::to_vec(body).unwrap_or_default())
}

/// RFC 6749 §5.2: `invalid_client` is a 401, with `WWW-Authenticate` when
/// the client tried HTTP Basic.
pub fn oauth_error(err: &OAuthError, basic_used: bool) -> HttpResponse {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = no_store_json(status, &err.to_json());
    if err.code == ErrorCode::InvalidClient {
        let challenge = if basic_used { "Basic realm=\"grantd\", charset=\"UTF-8\"" } else { "Basic realm=\"grantd\"" };
        if let Ok(value) = header::HeaderValue::from_str(challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
    }
    if err.code == ErrorCode::TemporarilyUnavailable {
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// The event store could not take the append: nothing was issued.
pub fn unavailable(e: &StoreError) -> OAuthError {
    tracing::warn!(error = %e, "event store unavailable; request refused");
    OAuthError::new(ErrorCode::TemporarilyUnavailable, "the event store is unavailable; nothing was issued, retry shortly")
}

/// Maps a failed command: the domain's refusal via `rejected`, the rest to 503.
pub fn command_failed<E: std::error::Error>(e: CommandError<E>, rejected: impl FnOnce(E) -> OAuthError) -> OAuthError {
    match e {
        CommandError::Rejected(e) => rejected(e),
        CommandError::Conflict(msg) => unavailable(&StoreError::Unavailable(msg)),
        CommandError::Storage(e) => unavailable(&e),
    }
}

/// How long a handler waits for this node's live view to fold in its own events.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Read-your-writes for the in-memory live view: waits until it has folded
/// in the events a command just recorded (a rotated refresh token, a revoked
/// grant), so that the client's next request to this node sees them.
pub async fn settled(state: &AppState, recorded: &[std::sync::Arc<RecordedEvent>]) {
    if let Some(last) = recorded.last()
        && !state.live.caught_up(last.position, SETTLE_TIMEOUT).await
    {
        tracing::warn!(position = last.position, "the live view did not reach a just-recorded event in time");
    }
}
