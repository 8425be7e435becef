//! `/authorize` with its login and consent pages (OAuth 2.1 §4.1, OIDC Core
//! §3). Errors before the client and redirect URI are trusted get an HTML
//! 400 and never a redirect (R2); every later error redirects with `error`,
//! `state` and `iss` (RFC 9207).

use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{TimeZone, Utc};
use uuid::Uuid;

use crate::actors::execute_new;
use crate::app::AppState;
use crate::domain::client::GrantType;
use crate::domain::consent::{Consent, ConsentCommand, consent_id};
use crate::domain::grant::{Grant, GrantCommand, GrantEvent, NewAccessToken};
use crate::domain::{Actor, Aggregate};
use crate::eventstore::CommandContext;
use crate::http::pages;
use crate::http::session::{CSRF_COOKIE, SESSION_COOKIE, Session};
use crate::http::token::{header_str, request_id};
use crate::issuance::{self, IdTokenInput, credential_hash, grant_credential};
use crate::oauth::authorize::{AuthorizationRequest, AuthorizeError, ClientView, Prompt, ResponseType, validate_authorization_request};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::{Params, is_form_content_type, parse_form, parse_query, parse_unambiguous};
use crate::oauth::redirect::{ResponseMode, build_redirect};
use crate::projections::live::{ClientEntry, UserEntry};

const REQUEST_PURPOSE: &str = "authorize";
const SESSION_PURPOSE: &str = "session";

pub async fn authorize_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = parse_query(req.query_string());
    start(&req, &state, params, req.query_string().as_bytes()).await
}

pub async fn authorize_post(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let content_type = header_str(&req, "content-type");
    let params = parse_form(content_type, &body);
    let raw: &[u8] = if content_type.is_some_and(is_form_content_type) { &body } else { &[] };
    start(&req, &state, params, raw).await
}

async fn start(req: &HttpRequest, state: &AppState, params: Result<Params, OAuthError>, raw: &[u8]) -> HttpResponse {
    let params = match params {
        Ok(p) => p,
        Err(e) => return malformed(state, raw, &e),
    };
    let client = params.get("client_id").and_then(|id| state.live.client(id));
    let view = client.as_deref().map(client_view);
    match validate_authorization_request(&params, view) {
        Err(AuthorizeError::NoRedirect(message)) => error_page(StatusCode::BAD_REQUEST, "Invalid authorization request", &message),
        Err(AuthorizeError::Redirect { redirect_uri, response_mode, state: client_state, error }) => {
            redirect_error(state, &redirect_uri, response_mode, client_state.as_deref(), &error)
        }
        Ok(request) => match client {
            Some(client) => proceed(req, state, &client, request, session(req, state)).await,
            None => error_page(StatusCode::BAD_REQUEST, "Invalid authorization request", "unknown client"),
        },
    }
}

/// A request the parser refused (a repeated parameter, a bad encoding).
/// RFC 6749 §4.1.2.1 sends such an `invalid_request` to the client once its
/// `client_id` and `redirect_uri` are established: when both are present
/// once and registered, the error is redirected (with `state` if that was
/// unambiguous); otherwise it is an HTML 400, never a redirect (R2).
fn malformed(state: &AppState, raw: &[u8], e: &OAuthError) -> HttpResponse {
    let params = parse_unambiguous(raw);
    let client = params.get("client_id").and_then(|id| state.live.client(id));
    match validate_authorization_request(&params, client.as_deref().map(client_view)) {
        Ok(request) => redirect_error(state, &request.redirect_uri, request.response_mode, request.state.as_deref(), e),
        Err(AuthorizeError::Redirect { redirect_uri, response_mode, state: client_state, .. }) => {
            redirect_error(state, &redirect_uri, response_mode, client_state.as_deref(), e)
        }
        Err(AuthorizeError::NoRedirect(_)) => error_page(StatusCode::BAD_REQUEST, "Invalid request", &e.description),
    }
}

fn client_view(c: &ClientEntry) -> ClientView<'_> {
    ClientView {
        client_id: &c.client_id,
        redirect_uris: &c.redirect_uris,
        grant_types: &c.grant_types,
        scopes: &c.scopes,
        confidential: c.confidential,
        disabled: c.disabled,
    }
}

fn session(req: &HttpRequest, state: &AppState) -> Option<Session> {
    let cookie = req.cookie(SESSION_COOKIE)?;
    state.sealer.open(SESSION_PURPOSE, cookie.value(), Utc::now())
}

/// Login, then consent, then the response: whichever the request still needs.
async fn proceed(
    req: &HttpRequest,
    state: &AppState,
    client: &ClientEntry,
    mut request: AuthorizationRequest,
    session: Option<Session>,
) -> HttpResponse {
    let now = Utc::now();
    let none = request.prompt.contains(&Prompt::None);
    let user = session.as_ref().and_then(|s| state.live.user(&s.user_id)).filter(|u| !u.disabled);
    let too_old = match (&session, request.max_age) {
        (Some(s), Some(max_age)) => now.timestamp() - s.auth_time > max_age as i64,
        _ => false,
    };
    let (Some(session), Some(user)) = (session, user) else {
        return login_or_error(req, state, client, request, none, None);
    };
    if too_old || request.prompt.contains(&Prompt::Login) {
        return login_or_error(req, state, client, request, none, Some(&user.username));
    }
    let consent = match load_consent(state, &user.id, &client.client_id).await {
        Ok(c) => c,
        Err(e) => return redirect_error(state, &request.redirect_uri, request.response_mode, request.state.as_deref(), &e),
    };
    if !consent.covers(&request.scopes) || request.prompt.contains(&Prompt::Consent) {
        if none {
            let e = OAuthError::new(ErrorCode::ConsentRequired, "the user has not consented to these scopes");
            return redirect_error(state, &request.redirect_uri, request.response_mode, request.state.as_deref(), &e);
        }
        request.prompt.retain(|p| *p != Prompt::Consent);
        return consent_page(req, state, client, &user, &request);
    }
    issue(req, state, client, &user, &session, &request).await
}

fn login_or_error(
    req: &HttpRequest,
    state: &AppState,
    client: &ClientEntry,
    mut request: AuthorizationRequest,
    none: bool,
    username: Option<&str>,
) -> HttpResponse {
    if none {
        let e = OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in");
        return redirect_error(state, &request.redirect_uri, request.response_mode, request.state.as_deref(), &e);
    }
    // Once the login page answers prompt=login, the flow must not ask again.
    request.prompt.retain(|p| *p != Prompt::Login);
    let hint = request.login_hint.clone();
    login_page(req, state, client, &request, username.or(hint.as_deref()).unwrap_or(""), None, StatusCode::OK)
}

async fn load_consent(state: &AppState, user_id: &str, client_id: &str) -> Result<Consent, OAuthError> {
    let stream = Consent::stream_id(&consent_id(user_id, client_id));
    let mut consent = Consent::default();
    let events = state.store.read_stream(&stream, 1).await.map_err(|e| crate::http::responses::unavailable(&e))?;
    for e in events {
        consent.apply(&e.decode().map_err(|e| crate::http::responses::unavailable(&e))?);
    }
    Ok(consent)
}

/// The CSRF cookie of this browser, set when missing.
fn csrf(req: &HttpRequest, state: &AppState) -> (String, Option<Cookie<'static>>) {
    match req.cookie(CSRF_COOKIE).filter(|c| c.value().len() >= 32) {
        Some(c) => (state.sealer.csrf_token(c.value()), None),
        None => {
            let value = crate::keys::random_token();
            let token = state.sealer.csrf_token(&value);
            (token, Some(cookie(state, CSRF_COOKIE, value, None)))
        }
    }
}

fn cookie(state: &AppState, name: &'static str, value: String, max_age: Option<chrono::Duration>) -> Cookie<'static> {
    let mut c = Cookie::build(name, value).http_only(true).same_site(SameSite::Lax).secure(state.secure_cookies).path("/").finish();
    if let Some(age) = max_age {
        c.set_max_age(actix_web::cookie::time::Duration::seconds(age.num_seconds()));
    }
    c
}

fn sealed_request(state: &AppState, request: &AuthorizationRequest) -> String {
    state.sealer.sign(REQUEST_PURPOSE, request, Utc::now() + chrono::Duration::minutes(15))
}

fn login_page(
    req: &HttpRequest,
    state: &AppState,
    client: &ClientEntry,
    request: &AuthorizationRequest,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let (csrf_token, set_cookie) = csrf(req, state);
    let body = pages::login(&pages::LoginPage {
        client_name: &client.name,
        csrf_token: &csrf_token,
        request: &sealed_request(state, request),
        username,
        error,
    });
    let mut builder = HttpResponse::build(status);
    if let Some(c) = set_cookie {
        builder.cookie(c);
    }
    pages::page(builder, body)
}

fn consent_page(
    req: &HttpRequest,
    state: &AppState,
    client: &ClientEntry,
    user: &UserEntry,
    request: &AuthorizationRequest,
) -> HttpResponse {
    let (csrf_token, set_cookie) = csrf(req, state);
    let body = pages::consent(&pages::ConsentPage {
        client_name: &client.name,
        client_id: &client.client_id,
        username: &user.username,
        scopes: &request.scopes,
        csrf_token: &csrf_token,
        request: &sealed_request(state, request),
        access_lifetime_minutes: state.lifetimes.access.num_minutes(),
    });
    let mut builder = HttpResponse::Ok();
    if let Some(c) = set_cookie {
        builder.cookie(c);
    }
    pages::page(builder, body)
}

fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    pages::page(HttpResponse::build(status), pages::error(title, message))
}

/// A response to the client's redirect URI, in the requested mode. After a
/// form POST that may carry credentials this must be 303, never 307 (R12).
fn respond(redirect_uri: &str, mode: ResponseMode, params: &[(&str, &str)]) -> HttpResponse {
    match mode {
        ResponseMode::FormPost => pages::page(HttpResponse::Ok(), pages::form_post(redirect_uri, params)),
        mode => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, build_redirect(redirect_uri, params, mode)))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .finish(),
    }
}

fn redirect_error(state: &AppState, redirect_uri: &str, mode: ResponseMode, client_state: Option<&str>, e: &OAuthError) -> HttpResponse {
    let mut params = vec![("error", e.code.as_str()), ("error_description", e.description.as_str())];
    if let Some(s) = client_state {
        params.push(("state", s));
    }
    params.push(("iss", &state.issuer));
    respond(redirect_uri, mode, &params)
}

fn context(req: &HttpRequest, user: &UserEntry, session: &Session) -> CommandContext {
    CommandContext {
        actor: Actor::user(&user.id),
        request_id: request_id(req),
        source_address: req.peer_addr().map(|a| a.ip().to_string()),
        authentication: Some(session.amr.clone()),
    }
}

/// The authorization response: a code, or for implicit clients the tokens
/// themselves (in the fragment or a form post, never the query).
async fn issue(
    req: &HttpRequest,
    state: &AppState,
    client: &ClientEntry,
    user: &UserEntry,
    session: &Session,
    request: &AuthorizationRequest,
) -> HttpResponse {
    let now = Utc::now();
    let grant_id = Uuid::now_v7();
    let auth_time = Utc.timestamp_opt(session.auth_time, 0).single().unwrap_or(now);
    let fail = |e: OAuthError| redirect_error(state, &request.redirect_uri, request.response_mode, request.state.as_deref(), &e);
    let context = context(req, user, session);
    let mut out: Vec<(&str, String)> = Vec::new();
    match request.response_type {
        ResponseType::Code => {
            let code = grant_credential(grant_id);
            let command = GrantCommand::IssueAuthorizationCode {
                client_id: client.client_id.clone(),
                user_id: user.id.clone(),
                scopes: request.scopes.clone(),
                code_hash: credential_hash(&code),
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone().unwrap_or_default(),
                nonce: request.nonce.clone(),
                auth_time,
                expires_at: now + state.lifetimes.code,
            };
            if let Err(e) = execute_new::<Grant>(&state.store, &grant_id.to_string(), &command, &context).await {
                return fail(crate::http::responses::command_failed(e, |e| OAuthError::new(ErrorCode::InvalidRequest, e.to_string())));
            }
            out.push(("code", code));
        }
        ResponseType::Token | ResponseType::IdToken | ResponseType::IdTokenToken => {
            if !client.allows(GrantType::Implicit) {
                return fail(OAuthError::new(ErrorCode::UnauthorizedClient, "this client may not use the implicit grant"));
            }
            let keyring = state.live.keyring();
            let mut access_token = None;
            if matches!(request.response_type, ResponseType::Token | ResponseType::IdTokenToken) {
                let command = GrantCommand::IssueAccessToken {
                    grant_type: GrantType::Implicit,
                    client_id: client.client_id.clone(),
                    subject: user.id.clone(),
                    user_id: Some(user.id.clone()),
                    scopes: request.scopes.clone(),
                    access: NewAccessToken { jti: Uuid::now_v7().to_string(), expires_at: now + state.lifetimes.access },
                    refresh: None,
                    now,
                };
                let done = match execute_new::<Grant>(&state.store, &grant_id.to_string(), &command, &context).await {
                    Ok(done) => done,
                    Err(e) => {
                        return fail(crate::http::responses::command_failed(e, |e| {
                            OAuthError::new(ErrorCode::InvalidRequest, e.to_string())
                        }));
                    }
                };
                let Some(issued) = done.events.iter().find_map(|e| match e {
                    GrantEvent::AccessTokenIssued(a) => Some(a),
                    _ => None,
                }) else {
                    return fail(OAuthError::new(ErrorCode::ServerError, "no access token was recorded"));
                };
                let Some(signer) = keyring.eddsa.as_ref() else {
                    return fail(OAuthError::new(ErrorCode::ServerError, "no active signing key"));
                };
                let token = issuance::access_token(signer, &state.issuer, &grant_id.to_string(), issued);
                out.push(("access_token", token.clone()));
                out.push(("token_type", "Bearer".into()));
                out.push(("expires_in", state.lifetimes.access.num_seconds().to_string()));
                out.push(("scope", request.scopes.join(" ")));
                access_token = Some(token);
            }
            if matches!(request.response_type, ResponseType::IdToken | ResponseType::IdTokenToken) {
                let Some(signer) = keyring.signer(client.id_token_alg) else {
                    return fail(OAuthError::new(ErrorCode::ServerError, "no active key for the client's ID token algorithm"));
                };
                out.push((
                    "id_token",
                    issuance::id_token(
                        signer,
                        &IdTokenInput {
                            issuer: &state.issuer,
                            client_id: &client.client_id,
                            user,
                            scopes: &request.scopes,
                            nonce: request.nonce.as_deref(),
                            auth_time,
                            access_token: access_token.as_deref(),
                            now,
                            lifetime: state.lifetimes.id_token,
                        },
                    ),
                ));
            }
        }
    }
    if let Some(s) = &request.state {
        out.push(("state", s.clone()));
    }
    out.push(("iss", state.issuer.clone()));
    let pairs: Vec<(&str, &str)> = out.iter().map(|(k, v)| (*k, v.as_str())).collect();
    respond(&request.redirect_uri, request.response_mode, &pairs)
}

/// The pending request and client behind a login or consent form, with the
/// CSRF check (R11): the form's `csrf_token` must be the HMAC of this
/// browser's CSRF cookie.
#[allow(clippy::type_complexity)]
fn form_context(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(Params, AuthorizationRequest, Arc<ClientEntry>), Box<HttpResponse>> {
    let params = parse_form(header_str(req, "content-type"), body)
        .map_err(|e| Box::new(error_page(StatusCode::BAD_REQUEST, "Invalid form", &e.description)))?;
    let cookie = req.cookie(CSRF_COOKIE);
    if !state.sealer.csrf_matches(cookie.as_ref().map(|c| c.value()), params.get("csrf_token")) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "The form was missing its CSRF token or it did not match. Go back to the application and start again.",
        )));
    }
    let request: AuthorizationRequest =
        params.get("request").and_then(|r| state.sealer.open(REQUEST_PURPOSE, r, Utc::now())).ok_or_else(|| {
            Box::new(error_page(
                StatusCode::BAD_REQUEST,
                "Request expired",
                "The sign-in took too long. Go back to the application and start again.",
            ))
        })?;
    match state.live.client(&request.client_id).filter(|c| !c.disabled) {
        Some(client) => Ok((params, request, client)),
        None => Err(Box::new(error_page(StatusCode::BAD_REQUEST, "Invalid authorization request", "unknown client"))),
    }
}

/// Looks up a user by username and checks the password (Argon2id, off the
/// request threads); `None` for any failure, in the same time.
pub async fn verify_password(state: &AppState, username: &str, password: String) -> Option<Arc<UserEntry>> {
    let now = std::time::Instant::now();
    if !state.login_throttle.allows(username, now) {
        return None;
    }
    let user = state.live.user_by_username(username).filter(|u| !u.disabled);
    let hash = user.as_ref().map_or_else(|| crate::passwords::decoy().to_string(), |u| u.password_hash.clone());
    let ok = crate::passwords::verify_off_thread(password, hash).await;
    state.login_throttle.record(username, ok && user.is_some(), now);
    user.filter(|_| ok)
}

pub async fn login(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let (params, request, client) = match form_context(&req, &state, &body) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let username = params.get("username").unwrap_or("");
    let password = params.get("password").unwrap_or("").to_string();
    let Some(user) = verify_password(&state, username, password).await else {
        let page = login_page(&req, &state, &client, &request, username, Some("Wrong username or password."), StatusCode::UNAUTHORIZED);
        return page;
    };
    let now = Utc::now();
    let session = Session { user_id: user.id.clone(), auth_time: now.timestamp(), amr: "pwd".into() };
    let signed = state.sealer.sign(SESSION_PURPOSE, &session, now + state.lifetimes.session);
    let mut response = proceed(&req, &state, &client, request, Some(session)).await;
    let _ = response.add_cookie(&cookie(&state, SESSION_COOKIE, signed, Some(state.lifetimes.session)));
    response
}

pub async fn consent(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let (params, request, client) = match form_context(&req, &state, &body) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let session = session(&req, &state);
    let Some((session, user)) = session.and_then(|s| state.live.user(&s.user_id).filter(|u| !u.disabled).map(|u| (s, u))) else {
        return login_page(&req, &state, &client, &request, "", Some("Please sign in again."), StatusCode::OK);
    };
    match params.get("decision") {
        Some("approve") => {
            let command =
                ConsentCommand::Grant { user_id: user.id.clone(), client_id: client.client_id.clone(), scopes: request.scopes.clone() };
            let id = consent_id(&user.id, &client.client_id);
            if let Err(e) = state.admin.consents.execute(&id, command, context(&req, &user, &session)).await {
                let e = crate::http::responses::command_failed(e, |e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()));
                return redirect_error(&state, &request.redirect_uri, request.response_mode, request.state.as_deref(), &e);
            }
            issue(&req, &state, &client, &user, &session, &request).await
        }
        Some("deny") => {
            let e = OAuthError::new(ErrorCode::AccessDenied, "the user denied the request");
            redirect_error(&state, &request.redirect_uri, request.response_mode, request.state.as_deref(), &e)
        }
        _ => error_page(StatusCode::BAD_REQUEST, "Invalid form", "decision must be approve or deny"),
    }
}
