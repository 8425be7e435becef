//! `POST /token` (RFC 6749 §3.2, OAuth 2.1 §3.2): client authentication,
//! then one grant type. Every issued token is an event appended before the
//! response, and the response is built from that event.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::actors::{execute_new, execute_new_then};
use crate::app::AppState;
use crate::domain::client::GrantType;
use crate::domain::grant::{Grant, GrantCommand, GrantError, GrantEvent, NewAccessToken, NewRefreshToken};
use crate::domain::{Actor, is_valid_scope_token, normalize_scopes};
use crate::eventstore::CommandContext;
use crate::http::responses::{command_failed, no_store_json, oauth_error, settled};
use crate::issuance::{self, IdTokenInput, credential_grant, credential_hash, grant_credential};
use crate::oauth::client_auth::{PresentedClient, presented_client, secret_matches};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::{Params, parse_form};
use crate::projections::live::ClientEntry;

/// Scopes only the admin client holds; never granted to anyone else.
pub const RESERVED_SCOPES: [&str; 2] = ["admin", "audit"];

pub async fn token(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let authorization = header_str(&req, "authorization");
    let basic_used = authorization.is_some_and(|a| a.len() >= 6 && a[..6].eq_ignore_ascii_case("basic "));
    match handle(&req, &body, &state, authorization).await {
        Ok(body) => no_store_json(StatusCode::OK, &body),
        Err(e) => oauth_error(&e, basic_used),
    }
}

async fn handle(req: &HttpRequest, body: &[u8], state: &AppState, authorization: Option<&str>) -> Result<Value, OAuthError> {
    let params = parse_form(header_str(req, "content-type"), body)?;
    let client = authenticate_client(state, authorization, &params)?;
    let context = CommandContext {
        actor: Actor::client(&client.client_id),
        request_id: request_id(req),
        source_address: req.peer_addr().map(|a| a.ip().to_string()),
        authentication: None,
    };
    let grant_type = params.require("grant_type")?;
    let Some(kind) = GrantType::parse(grant_type).filter(|g| *g != GrantType::Implicit) else {
        return Err(OAuthError::new(ErrorCode::UnsupportedGrantType, format!("grant_type {grant_type} is not supported")));
    };
    if !client.allows(kind) {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, format!("this client may not use the {grant_type} grant")));
    }
    match kind {
        GrantType::AuthorizationCode => authorization_code(state, &client, &params, context).await,
        GrantType::RefreshToken => refresh_token(state, &client, &params, context).await,
        GrantType::ClientCredentials => client_credentials(state, &client, &params, context).await,
        GrantType::Password => password(state, &client, &params, context).await,
        GrantType::Implicit => Err(OAuthError::new(ErrorCode::UnsupportedGrantType, "implicit is not a token endpoint grant")),
    }
}

pub fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn request_id(req: &HttpRequest) -> Option<String> {
    header_str(req, "x-request-id").filter(|v| v.len() <= 128).map(str::to_string).or_else(|| Some(Uuid::new_v4().to_string()))
}

/// Confidential clients authenticate with their secret (Basic or post);
/// public clients identify themselves with `client_id` alone (RFC 6749 §2.3,
/// OAuth 2.1 §2.4). Everything is checked in memory.
pub fn authenticate_client(state: &AppState, authorization: Option<&str>, params: &Params) -> Result<Arc<ClientEntry>, OAuthError> {
    let presented = presented_client(authorization, params)?;
    let (client_id, secret) = match &presented {
        PresentedClient::Basic { client_id, client_secret } | PresentedClient::Post { client_id, client_secret } => {
            (client_id.as_str(), Some(client_secret.as_str()))
        }
        PresentedClient::Public { client_id } => (client_id.as_str(), None),
    };
    let failed = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
    let client = state.live.client(client_id).ok_or_else(failed)?;
    if client.disabled {
        return Err(failed());
    }
    match (secret, client.confidential, &client.secret_hash) {
        (Some(secret), true, Some(hash)) if secret_matches(secret, hash) => Ok(client),
        (None, false, _) => Ok(client),
        _ => Err(failed()),
    }
}

/// The scopes asked for, or the default when `scope` is absent.
fn requested_scopes(params: &Params, default: &[String]) -> Result<Vec<String>, OAuthError> {
    match params.get("scope") {
        None => Ok(default.to_vec()),
        Some(scope) => {
            let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
            if scopes.iter().any(|s| !is_valid_scope_token(s)) {
                return Err(OAuthError::new(ErrorCode::InvalidScope, "scope is malformed"));
            }
            Ok(normalize_scopes(scopes))
        }
    }
}

fn check_allowed(scopes: &[String], client: &ClientEntry, admin_client: bool) -> Result<(), OAuthError> {
    for scope in scopes {
        let reserved = RESERVED_SCOPES.contains(&scope.as_str()) && !admin_client;
        if reserved || !client.scopes.contains(scope) {
            return Err(OAuthError::new(ErrorCode::InvalidScope, format!("scope {scope} is not available to this client")));
        }
    }
    Ok(())
}

/// Token and grant ids are UUIDv7 (time-ordered): every one of them keys
/// rows in the log's and the read models' indexes, and ids that grow with
/// time make each commit append to a few index pages instead of dirtying
/// one random page per id (which multiplied the bytes written per token).
fn new_access(state: &AppState) -> NewAccessToken {
    NewAccessToken { jti: Uuid::now_v7().to_string(), expires_at: Utc::now() + state.lifetimes.access }
}

fn grant_error(e: GrantError) -> OAuthError {
    match e {
        GrantError::InvalidScope => OAuthError::new(ErrorCode::InvalidScope, "requested scope exceeds the grant"),
        GrantError::InvalidRequest(m) => OAuthError::new(ErrorCode::InvalidRequest, m),
        GrantError::InvalidGrant(m) => OAuthError::new(ErrorCode::InvalidGrant, m),
        GrantError::NotFound => OAuthError::new(ErrorCode::InvalidGrant, "unknown grant"),
        GrantError::AlreadyExists => OAuthError::new(ErrorCode::InvalidGrant, "grant already exists"),
    }
}

/// The token response for the events a command recorded.
fn token_response(
    state: &AppState,
    grant_id: &str,
    events: &[GrantEvent],
    refresh_token: Option<&str>,
) -> Result<(Value, Option<String>), OAuthError> {
    let Some(access) = events.iter().find_map(|e| match e {
        GrantEvent::AccessTokenIssued(a) => Some(a),
        _ => None,
    }) else {
        return Err(OAuthError::new(ErrorCode::ServerError, "no access token was recorded"));
    };
    let keyring = state.live.keyring();
    let signer = keyring.eddsa.as_ref().ok_or_else(|| OAuthError::new(ErrorCode::ServerError, "no active signing key"))?;
    let access_token = issuance::access_token(signer, &state.issuer, grant_id, access);
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": (access.expires_at - access.issued_at).num_seconds(),
        "scope": access.scopes.join(" "),
    });
    let issued_refresh = events.iter().any(|e| matches!(e, GrantEvent::RefreshTokenIssued(_) | GrantEvent::RefreshTokenRotated(_)));
    if let (true, Some(rt)) = (issued_refresh, refresh_token) {
        body["refresh_token"] = json!(rt);
    }
    Ok((body, Some(access_token)))
}

async fn authorization_code(state: &AppState, client: &ClientEntry, params: &Params, context: CommandContext) -> Result<Value, OAuthError> {
    let code = params.require("code")?;
    let redirect_uri = params.require("redirect_uri")?;
    // OAuth 2.1 §4.1.3: every grantd code carries a challenge, so a verifier is required.
    let verifier = params.get("code_verifier").ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "code_verifier is required"))?;
    let grant_id = credential_grant(code).ok_or_else(|| OAuthError::new(ErrorCode::InvalidGrant, "unknown code"))?;
    let refresh_token = client.allows(GrantType::RefreshToken).then(|| grant_credential(grant_id));
    let now = Utc::now();
    let command = GrantCommand::RedeemAuthorizationCode {
        code_hash: credential_hash(code),
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        code_verifier: verifier.to_string(),
        access: new_access(state),
        refresh: refresh_token
            .as_ref()
            .map(|rt| NewRefreshToken { token_hash: credential_hash(rt), expires_at: now + state.lifetimes.refresh }),
        now,
    };
    let grant_key = grant_id.to_string();
    let done = state.admin.grants.execute(&grant_key, command, context).await.map_err(|e| command_failed(e, grant_error))?;
    settled(state, &done.recorded).await;
    if done.events.iter().any(|e| matches!(e, GrantEvent::GrantRevoked(_))) {
        return Err(OAuthError::new(ErrorCode::InvalidGrant, "code already used: every token of its grant is revoked"));
    }
    let (mut body, access_token) = token_response(state, &grant_key, &done.events, refresh_token.as_deref())?;
    let grant = done.state.state.as_ref().ok_or_else(|| OAuthError::new(ErrorCode::ServerError, "grant has no state"))?;
    if grant.scopes.iter().any(|s| s == "openid") {
        let user = grant.user_id.as_deref().and_then(|id| state.live.user(id));
        let user = user.ok_or_else(|| OAuthError::new(ErrorCode::InvalidGrant, "the user of this grant no longer exists"))?;
        let keyring = state.live.keyring();
        let signer = keyring
            .signer(client.id_token_alg)
            .ok_or_else(|| OAuthError::new(ErrorCode::ServerError, "no active key for the client's ID token algorithm"))?;
        let code_state = grant.code.as_ref();
        body["id_token"] = json!(issuance::id_token(
            signer,
            &IdTokenInput {
                issuer: &state.issuer,
                client_id: &client.client_id,
                user: &user,
                scopes: &grant.scopes,
                nonce: code_state.and_then(|c| c.nonce.as_deref()),
                auth_time: code_state.map_or(now, |c| c.auth_time),
                access_token: access_token.as_deref(),
                now,
                lifetime: state.lifetimes.id_token,
            }
        ));
    }
    Ok(body)
}

async fn refresh_token(state: &AppState, client: &ClientEntry, params: &Params, context: CommandContext) -> Result<Value, OAuthError> {
    let presented = params.require("refresh_token")?;
    let grant_id = credential_grant(presented).ok_or_else(|| OAuthError::new(ErrorCode::InvalidGrant, "unknown refresh token"))?;
    let scopes = match params.get("scope") {
        Some(_) => Some(requested_scopes(params, &[])?),
        None => None,
    };
    let next = grant_credential(grant_id);
    let now = Utc::now();
    let command = GrantCommand::RotateRefreshToken {
        token_hash: credential_hash(presented),
        client_id: client.client_id.clone(),
        scopes,
        access: new_access(state),
        refresh: NewRefreshToken { token_hash: credential_hash(&next), expires_at: now + state.lifetimes.refresh },
        now,
    };
    let grant_key = grant_id.to_string();
    let done = state.admin.grants.execute(&grant_key, command, context).await.map_err(|e| command_failed(e, grant_error))?;
    settled(state, &done.recorded).await;
    if done.events.iter().any(|e| matches!(e, GrantEvent::GrantRevoked(_))) {
        return Err(OAuthError::new(ErrorCode::InvalidGrant, "refresh token already used: the whole grant is revoked"));
    }
    Ok(token_response(state, &grant_key, &done.events, Some(&next))?.0)
}

async fn client_credentials(state: &AppState, client: &ClientEntry, params: &Params, context: CommandContext) -> Result<Value, OAuthError> {
    let admin = state.live.admin_client_id().is_some_and(|id| id == client.client_id);
    let default: Vec<String> = client.scopes.iter().filter(|s| admin || !RESERVED_SCOPES.contains(&s.as_str())).cloned().collect();
    let scopes = requested_scopes(params, &default)?;
    check_allowed(&scopes, client, admin)?;
    let grant_id = Uuid::now_v7().to_string();
    let command = GrantCommand::IssueAccessToken {
        grant_type: GrantType::ClientCredentials,
        client_id: client.client_id.clone(),
        subject: client.client_id.clone(),
        user_id: None,
        scopes,
        access: new_access(state),
        refresh: None,
        now: Utc::now(),
    };
    // Signed while the append waits for its batch, from the same decided
    // events; handed out only once they are recorded.
    let (_, response) =
        execute_new_then::<Grant, _>(&state.store, &grant_id, &command, &context, |events| token_response(state, &grant_id, events, None))
            .await
            .map_err(|e| command_failed(e, grant_error))?;
    Ok(response?.0)
}

async fn password(state: &AppState, client: &ClientEntry, params: &Params, context: CommandContext) -> Result<Value, OAuthError> {
    // RFC 9700 §2.4: the password grant is only for the operator's own clients.
    if !client.first_party {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "the password grant is only for first-party clients"));
    }
    let username = params.require("username")?;
    let password = params.require("password")?.to_string();
    let default: Vec<String> = client.scopes.iter().filter(|s| !RESERVED_SCOPES.contains(&s.as_str())).cloned().collect();
    let scopes = requested_scopes(params, &default)?;
    check_allowed(&scopes, client, false)?;
    let user = crate::http::authorize::verify_password(state, username, password)
        .await
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidGrant, "wrong username or password"))?;
    let grant_id = Uuid::now_v7();
    let refresh_token = client.allows(GrantType::RefreshToken).then(|| grant_credential(grant_id));
    let now = Utc::now();
    let command = GrantCommand::IssueAccessToken {
        grant_type: GrantType::Password,
        client_id: client.client_id.clone(),
        subject: user.id.clone(),
        user_id: Some(user.id.clone()),
        scopes,
        access: new_access(state),
        refresh: refresh_token
            .as_ref()
            .map(|rt| NewRefreshToken { token_hash: credential_hash(rt), expires_at: now + state.lifetimes.refresh }),
        now,
    };
    let context = CommandContext { authentication: Some("pwd".into()), ..context };
    let grant_key = grant_id.to_string();
    let done = execute_new::<Grant>(&state.store, &grant_key, &command, &context).await.map_err(|e| command_failed(e, grant_error))?;
    if refresh_token.is_some() {
        settled(state, &done.recorded).await;
    }
    Ok(token_response(state, &grant_key, &done.events, refresh_token.as_deref())?.0)
}
