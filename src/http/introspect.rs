//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009). Both
//! authenticate the caller first; both read only memory: the access token's
//! own signature and claims, the revocation index, the refresh tokens in force.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde_json::{Value, json};

use crate::actors::CommandError;
use crate::app::AppState;
use crate::domain::Actor;
use crate::domain::grant::{GrantCommand, GrantError, RevocationReason};
use crate::eventstore::CommandContext;
use crate::http::responses::{no_store_json, oauth_error, settled, unavailable};
use crate::http::token::{authenticate_client, header_str, request_id};
use crate::issuance::{credential_grant, credential_hash};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::parse_form;
use crate::projections::live::ClientEntry;

/// A token grantd issued and still honours.
enum Known {
    Access { claims: Arc<Value>, grant_id: String, client_id: String },
    Refresh { grant_id: String, entry: crate::projections::live::RefreshEntry },
}

/// What `token` is, if it is a live token of ours. Expired, revoked,
/// forged, `alg: none` and unknown tokens are all `None`.
fn lookup(state: &AppState, token: &str) -> Option<Known> {
    let now = Utc::now();
    if token.contains('.') {
        let claims = state.access_token_claims(token)?;
        let grant_id = claims.get("grant_id")?.as_str()?.to_string();
        let client_id = claims.get("client_id")?.as_str()?.to_string();
        return Some(Known::Access { claims, grant_id, client_id });
    }
    let grant_id = credential_grant(token)?.to_string();
    let entry = state.live.refresh_token(&grant_id)?;
    let current = entry.token_hash == credential_hash(token) && entry.expires_at > now && !state.live.is_revoked(&grant_id);
    current.then_some(Known::Refresh { grant_id, entry })
}

fn may_see(state: &AppState, caller: &ClientEntry, owner: &str) -> bool {
    caller.client_id == owner || state.live.admin_client_id().is_some_and(|admin| admin == caller.client_id)
}

pub async fn introspect(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let authorization = header_str(&req, "authorization");
    let basic = authorization.is_some_and(|a| a.len() >= 6 && a[..6].eq_ignore_ascii_case("basic "));
    let result = (|| {
        let params = parse_form(header_str(&req, "content-type"), &body)?;
        let caller = authenticate_client(&state, authorization, &params)?;
        // RFC 7662 §2.1: only authenticated (confidential) callers, against token scanning.
        if !caller.confidential {
            return Err(OAuthError::new(ErrorCode::InvalidClient, "introspection needs client authentication"));
        }
        let token = params.require("token")?;
        let inactive = json!({"active": false});
        Ok(match lookup(&state, token) {
            Some(Known::Access { claims, client_id, .. }) if may_see(&state, &caller, &client_id) => {
                let mut body = json!({"active": true, "token_type": "Bearer"});
                for field in ["scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "grant_id"] {
                    if let Some(v) = claims.get(field) {
                        body[field] = v.clone();
                    }
                }
                if let Some(user) = claims.get("sub").and_then(|s| s.as_str()).and_then(|s| state.live.user(s)) {
                    body["username"] = json!(user.username);
                }
                body
            }
            Some(Known::Refresh { grant_id, entry }) if may_see(&state, &caller, &entry.client_id) => json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": entry.scopes.join(" "),
                "client_id": entry.client_id,
                "sub": entry.subject,
                "iss": state.issuer,
                "exp": entry.expires_at.timestamp(),
                "iat": entry.issued_at.timestamp(),
                "grant_id": grant_id,
            }),
            _ => inactive,
        })
    })();
    match result {
        Ok(body) => no_store_json(StatusCode::OK, &body),
        // RFC 7662 §2.3: a caller that failed to authenticate gets 401.
        Err(e) => oauth_error(&e, basic),
    }
}

pub async fn revoke(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let authorization = header_str(&req, "authorization");
    let basic = authorization.is_some_and(|a| a.len() >= 6 && a[..6].eq_ignore_ascii_case("basic "));
    let prepared = (|| {
        let params = parse_form(header_str(&req, "content-type"), &body)?;
        let caller: Arc<ClientEntry> = authenticate_client(&state, authorization, &params)?;
        let token = params.require("token")?.to_string();
        Ok::<_, OAuthError>((caller, token))
    })();
    let (caller, token) = match prepared {
        Ok(p) => p,
        Err(e) => return oauth_error(&e, basic),
    };
    // RFC 7009 §2.2: an invalid or unknown token is not an error. The
    // token_type_hint is only a hint: both kinds are always looked up.
    let (grant_id, owner) = match lookup(&state, &token) {
        Some(Known::Access { grant_id, client_id, .. }) => (grant_id, client_id),
        Some(Known::Refresh { grant_id, entry }) => (grant_id, entry.client_id),
        None => return no_store_json(StatusCode::OK, &json!({})),
    };
    if !may_see(&state, &caller, &owner) {
        let e = OAuthError::new(ErrorCode::UnauthorizedClient, "the token was not issued to this client");
        return oauth_error(&e, basic);
    }
    let context = CommandContext {
        actor: Actor::client(&caller.client_id),
        request_id: request_id(&req),
        source_address: req.peer_addr().map(|a| a.ip().to_string()),
        authentication: None,
    };
    // Revoking either token revokes the grant: its access and refresh tokens alike.
    match state.admin.grants.execute(&grant_id, GrantCommand::Revoke { reason: RevocationReason::RevokedByClient }, context).await {
        Ok(done) => {
            settled(&state, &done.recorded).await;
            no_store_json(StatusCode::OK, &json!({}))
        }
        Err(CommandError::Rejected(GrantError::NotFound)) => no_store_json(StatusCode::OK, &json!({})),
        Err(CommandError::Rejected(_)) => no_store_json(StatusCode::OK, &json!({})),
        Err(CommandError::Conflict(m)) => oauth_error(&unavailable(&crate::eventstore::StoreError::Unavailable(m)), basic),
        Err(CommandError::Storage(e)) => oauth_error(&unavailable(&e), basic),
    }
}
