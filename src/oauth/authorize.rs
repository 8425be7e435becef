//! Validation of an authorization request (RFC 6749 §4.1.1, §4.2.1; OAuth 2.1
//! §4.1.1; OpenID Connect Core §3.1.2.1, §3.2.2.1) against the client it
//! names.
//!
//! Errors come in two kinds (RFC 6749 §4.1.2.1, OAuth 2.1 §4.1.2.1, R2):
//! while the client and its redirect URI are not both established, nothing
//! may redirect ([`AuthorizeError::NoRedirect`], shown as an HTML 400 page);
//! afterwards errors go back to the client ([`AuthorizeError::Redirect`],
//! carrying `error`, `error_description`, `state` and `iss`, R10/RFC 9207).
//!
//! Choices grantd makes where the standards leave room:
//! - `redirect_uri` is required on every request, even for a client with a
//!   single registered URI (OAuth 2.1 §4.1.1 lets that one be omitted);
//! - `response_type=code` requires PKCE with `code_challenge_method=S256`
//!   for every client; a missing method is refused rather than defaulted to
//!   `plain` (RFC 7636 §4.3 default), `plain` is refused (R3/R4);
//! - `scope` is required: there is no default scope (RFC 6749 §3.3 allows a
//!   server to refuse a request without one with `invalid_scope`);
//! - `admin` and `audit` are never grantable at /authorize, whatever the
//!   client registered: they are obtained only by client credentials;
//! - response types containing `id_token` need the `openid` scope
//!   (OIDC Core §3.1.2.1: without it the behaviour is unspecified) and a
//!   `nonce` (OIDC Core §3.2.2.1);
//! - `response_mode=query` with a token-bearing response type is refused
//!   (tokens never travel in a query, R9); the error goes back in the fragment;
//! - `prompt=select_account` is read as `login` (grantd keeps one account per
//!   session; re-authentication is how another account is chosen); other
//!   unknown `prompt` values are refused with `invalid_request`;
//! - a `code_challenge` sent with an implicit response type is ignored (no
//!   code is issued); `nonce` with `code` is kept for the ID token.

use serde::{Deserialize, Serialize};

use crate::domain::client::GrantType;
use crate::domain::{is_valid_scope_token, normalize_scopes};
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::pkce::is_valid_s256_challenge;
use crate::oauth::redirect::{ResponseMode, build_redirect, redirect_uri_matches};

/// Scopes that /authorize never grants (they belong to the admin API).
pub const NON_GRANTABLE_SCOPES: [&str; 2] = ["admin", "audit"];

/// What the authorization endpoint needs to know about the named client.
#[derive(Debug, Clone, Copy)]
pub struct ClientView<'a> {
    pub client_id: &'a str,
    pub redirect_uris: &'a [String],
    pub grant_types: &'a [GrantType],
    pub scopes: &'a [String],
    pub confidential: bool,
    pub disabled: bool,
}

/// The supported `response_type` values (RFC 6749 §3.1.1, OAuth 2.0 Multiple
/// Response Type Encoding Practices §5). Hybrid types (`code id_token`, …)
/// and `none` are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResponseType {
    #[serde(rename = "code")]
    Code,
    #[serde(rename = "token")]
    Token,
    #[serde(rename = "id_token")]
    IdToken,
    #[serde(rename = "id_token token")]
    IdTokenToken,
}

impl ResponseType {
    /// Parses the space-delimited set; the order of its members does not
    /// matter (RFC 6749 §3.1.1), repeats are not allowed.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts: Vec<&str> = s.split(' ').filter(|p| !p.is_empty()).collect();
        parts.sort_unstable();
        Some(match parts.as_slice() {
            ["code"] => ResponseType::Code,
            ["token"] => ResponseType::Token,
            ["id_token"] => ResponseType::IdToken,
            ["id_token", "token"] => ResponseType::IdTokenToken,
            _ => return None,
        })
    }

    /// The canonical wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseType::Code => "code",
            ResponseType::Token => "token",
            ResponseType::IdToken => "id_token",
            ResponseType::IdTokenToken => "id_token token",
        }
    }

    /// Whether an ID token is returned from the authorization endpoint.
    pub fn includes_id_token(self) -> bool {
        matches!(self, ResponseType::IdToken | ResponseType::IdTokenToken)
    }

    /// Whether an access token is returned from the authorization endpoint.
    pub fn includes_access_token(self) -> bool {
        matches!(self, ResponseType::Token | ResponseType::IdTokenToken)
    }

    /// The implicit flow: tokens straight from the authorization endpoint.
    pub fn is_implicit(self) -> bool {
        self != ResponseType::Code
    }

    /// The grant type a client needs for this response type.
    pub fn grant_type(self) -> GrantType {
        if self.is_implicit() { GrantType::Implicit } else { GrantType::AuthorizationCode }
    }

    /// Default response mode (OAuth 2.0 Multiple Response Type Encoding
    /// Practices §2.1, §3): query for `code`, fragment for the rest.
    pub fn default_response_mode(self) -> ResponseMode {
        if self.is_implicit() { ResponseMode::Fragment } else { ResponseMode::Query }
    }
}

/// A `prompt` value (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// No user interface at all; fail with `login_required` etc. instead.
    None,
    /// Re-authenticate the End-User.
    Login,
    /// Ask for consent even if it was given before.
    Consent,
}

impl Prompt {
    pub fn as_str(self) -> &'static str {
        match self {
            Prompt::None => "none",
            Prompt::Login => "login",
            Prompt::Consent => "consent",
        }
    }

    /// Parses the space-delimited `prompt` list, de-duplicated in order of
    /// first appearance. `none` with any other value is an `invalid_request`
    /// (OIDC Core §3.1.2.1); `select_account` is read as `login`; unknown
    /// values are an `invalid_request`.
    pub fn parse_list(s: &str) -> Result<Vec<Prompt>, OAuthError> {
        let mut out: Vec<Prompt> = Vec::new();
        for word in s.split(' ').filter(|w| !w.is_empty()) {
            let prompt = match word {
                "none" => Prompt::None,
                "login" | "select_account" => Prompt::Login,
                "consent" => Prompt::Consent,
                _ => return Err(OAuthError::invalid_request("unsupported prompt value")),
            };
            if !out.contains(&prompt) {
                out.push(prompt);
            }
        }
        if out.contains(&Prompt::None) && out.len() > 1 {
            return Err(OAuthError::invalid_request("prompt=none must not be combined with other values"));
        }
        Ok(out)
    }
}

/// A validated authorization request, carried between the login and consent
/// pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_type: ResponseType,
    pub response_mode: ResponseMode,
    /// Normalized: sorted, de-duplicated, never empty.
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Vec<Prompt>,
    pub max_age: Option<u64>,
    /// The S256 challenge; always `Some` for `response_type=code`.
    pub code_challenge: Option<String>,
    pub login_hint: Option<String>,
}

impl AuthorizationRequest {
    pub fn has_prompt(&self, prompt: Prompt) -> bool {
        self.prompt.contains(&prompt)
    }

    /// An OpenID Connect request (`openid` scope).
    pub fn is_openid(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }

    /// The scopes as a space-delimited `scope` value.
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }
}

/// Why an authorization request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeError {
    /// Client or redirect URI not established: show this message on an HTML
    /// error page (400) and never redirect (RFC 6749 §4.1.2.1, R2).
    NoRedirect(String),
    /// Send `error` back to the client's (validated) redirect URI.
    Redirect { redirect_uri: String, response_mode: ResponseMode, state: Option<String>, error: OAuthError },
}

impl AuthorizeError {
    /// The response parameters of a redirecting error (RFC 6749 §4.1.2.1,
    /// RFC 9207 §2): `error`, `error_description`, `state` when the request
    /// had one, and `iss`. Empty for `NoRedirect`.
    pub fn response_params(&self, issuer: &str) -> Vec<(&'static str, String)> {
        match self {
            AuthorizeError::NoRedirect(_) => Vec::new(),
            AuthorizeError::Redirect { state, error, .. } => error_response_params(error, state.as_deref(), issuer),
        }
    }

    /// The `Location` of a redirecting error for the `query` and `fragment`
    /// modes; `None` for `NoRedirect` and for `form_post` (render a form
    /// POSTing [`AuthorizeError::response_params`] to the redirect URI).
    pub fn location(&self, issuer: &str) -> Option<String> {
        match self {
            AuthorizeError::Redirect { redirect_uri, response_mode, .. } if *response_mode != ResponseMode::FormPost => {
                let params = self.response_params(issuer);
                let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
                Some(build_redirect(redirect_uri, &pairs, *response_mode))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for AuthorizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthorizeError::NoRedirect(message) => f.write_str(message),
            AuthorizeError::Redirect { error, .. } => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for AuthorizeError {}

/// Error response parameters for an authorization error: `error`,
/// `error_description` (when not empty), `state` (when given) and `iss`.
/// Also usable for errors found later (e.g. `access_denied`, `login_required`).
pub fn error_response_params(error: &OAuthError, state: Option<&str>, issuer: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![("error", error.code.as_str().to_string())];
    let description = error.wire_description();
    if !description.is_empty() {
        out.push(("error_description", description));
    }
    if let Some(state) = state {
        out.push(("state", state.to_string()));
    }
    out.push(("iss", issuer.to_string()));
    out
}

/// Validates an authorization request. `client` is the client named by the
/// `client_id` parameter as the caller looked it up, `None` when unknown.
///
/// Order of checks: `client_id` present, client known and enabled, then
/// `redirect_uri` present and registered (all `NoRedirect`); then, as
/// redirects: `response_type`, `response_mode`, `request` / `request_uri` /
/// `registration`, the client's grant type, PKCE, `scope`, `nonce`,
/// `prompt`, `max_age`.
pub fn validate_authorization_request(params: &Params, client: Option<ClientView<'_>>) -> Result<AuthorizationRequest, AuthorizeError> {
    // RFC 6749 §4.1.2.1: "If the request fails due to a missing, invalid, or
    // mismatching redirection URI, or if the client identifier is missing or
    // invalid, the authorization server SHOULD inform the resource owner of
    // the error and MUST NOT automatically redirect".
    let client_id = params.get("client_id").ok_or_else(|| AuthorizeError::NoRedirect("The request has no client_id.".into()))?;
    let client = match client {
        Some(c) if c.client_id == client_id => c,
        _ => return Err(AuthorizeError::NoRedirect("The application (client_id) is unknown.".into())),
    };
    if client.disabled {
        return Err(AuthorizeError::NoRedirect("The application (client_id) is disabled.".into()));
    }
    let redirect_uri = params.get("redirect_uri").ok_or_else(|| AuthorizeError::NoRedirect("The request has no redirect_uri.".into()))?;
    if !redirect_uri_matches(client.redirect_uris, redirect_uri, !client.confidential) {
        return Err(AuthorizeError::NoRedirect("The redirect_uri is not registered for this application.".into()));
    }

    // From here on the redirect URI is trusted: errors go back to the client.
    let state = params.get("state").map(str::to_string);
    let response_type = params.get("response_type").map(ResponseType::parse);
    let requested_mode = params.get("response_mode").map(ResponseMode::parse);
    // The mode errors travel in: the requested one when usable, else the
    // default of the response type (query if that is unknown too). Never the
    // query for a token-bearing response type.
    let error_mode = {
        let default = response_type.flatten().map_or(ResponseMode::Query, ResponseType::default_response_mode);
        match requested_mode.flatten() {
            Some(ResponseMode::Query) if response_type.flatten().is_some_and(ResponseType::is_implicit) => default,
            Some(mode) => mode,
            None => default,
        }
    };
    let fail = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_string(),
        response_mode: error_mode,
        state: state.clone(),
        error,
    };

    // RFC 6749 §4.1.1 / §4.2.1: response_type is REQUIRED; §4.1.2.1:
    // unsupported_response_type for values the server does not support.
    let response_type = match response_type {
        None => return Err(fail(OAuthError::invalid_request("missing required parameter response_type"))),
        Some(None) => {
            return Err(fail(OAuthError::unsupported_response_type("supported response types: code, token, id_token, id_token token")));
        }
        Some(Some(rt)) => rt,
    };

    // OAuth 2.0 Multiple Response Type Encoding Practices §2.1 / Form Post
    // Response Mode §2; OAuth 2.1 §5 and RFC 9700 §4.3.2: no tokens in a query.
    let response_mode = match requested_mode {
        None => response_type.default_response_mode(),
        Some(None) => return Err(fail(OAuthError::invalid_request("unsupported response_mode"))),
        Some(Some(ResponseMode::Query)) if response_type.is_implicit() => {
            return Err(fail(OAuthError::invalid_request("response_mode=query cannot carry tokens")));
        }
        Some(Some(mode)) => mode,
    };

    // OIDC Core §3.1.2.6, §6: request objects and dynamic registration by
    // parameter are not supported.
    if params.contains("request") {
        return Err(fail(OAuthError::request_not_supported("the request parameter is not supported")));
    }
    if params.contains("request_uri") {
        return Err(fail(OAuthError::request_uri_not_supported("the request_uri parameter is not supported")));
    }
    if params.contains("registration") {
        return Err(fail(OAuthError::registration_not_supported("the registration parameter is not supported")));
    }

    // RFC 6749 §4.1.2.1: unauthorized_client; R8, ASVS 10.4.4: implicit is a
    // per-client opt-in.
    if !client.grant_types.contains(&response_type.grant_type()) {
        let message = match response_type {
            ResponseType::Code => "the client is not allowed the authorization_code grant",
            _ => "the client is not allowed the implicit grant",
        };
        return Err(fail(OAuthError::unauthorized_client(message)));
    }

    // OAuth 2.1 §4.1.1, §4.1.2.1; RFC 7636 §4.3, §4.4.1; R3/R4.
    let code_challenge = if response_type == ResponseType::Code {
        let challenge = params.get("code_challenge").ok_or_else(|| fail(OAuthError::invalid_request("code_challenge required")))?;
        match params.get("code_challenge_method") {
            None => return Err(fail(OAuthError::invalid_request("code_challenge_method required (S256)"))),
            Some("S256") => {}
            Some(_) => return Err(fail(OAuthError::invalid_request("code_challenge_method must be S256"))),
        }
        if !is_valid_s256_challenge(challenge) {
            return Err(fail(OAuthError::invalid_request("code_challenge is not a valid S256 challenge")));
        }
        Some(challenge.to_string())
    } else {
        None
    };

    // RFC 6749 §3.3 (scope-token syntax), §4.1.2.1 invalid_scope.
    let raw_scope = params.get("scope").ok_or_else(|| fail(OAuthError::invalid_scope("scope required")))?;
    let requested: Vec<&str> = raw_scope.split(' ').filter(|s| !s.is_empty()).collect();
    if requested.is_empty() {
        return Err(fail(OAuthError::invalid_scope("scope required")));
    }
    for scope in &requested {
        if !is_valid_scope_token(scope) {
            return Err(fail(OAuthError::invalid_scope("malformed scope")));
        }
        if NON_GRANTABLE_SCOPES.contains(scope) {
            return Err(fail(OAuthError::invalid_scope(format!("scope {scope} cannot be requested here"))));
        }
        if !client.scopes.iter().any(|s| s == scope) {
            return Err(fail(OAuthError::invalid_scope(format!("scope {} is not allowed for this client", shown(scope)))));
        }
    }
    let scopes = normalize_scopes(&requested);

    // OIDC Core §3.2.2.1: nonce REQUIRED for the implicit flow; an ID token
    // is only issued for the openid scope (§3.1.2.1).
    let nonce = params.get("nonce").map(str::to_string);
    if response_type.includes_id_token() {
        if !scopes.iter().any(|s| s == "openid") {
            return Err(fail(OAuthError::invalid_scope("response_type id_token requires the openid scope")));
        }
        if nonce.is_none() {
            return Err(fail(OAuthError::invalid_request("nonce required for response_type id_token")));
        }
    }

    // OIDC Core §3.1.2.1: prompt, max_age.
    let prompt = match params.get("prompt") {
        Some(p) => Prompt::parse_list(p).map_err(&fail)?,
        None => Vec::new(),
    };
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            Some(v.parse::<u64>().map_err(|_| fail(OAuthError::invalid_request("max_age out of range")))?)
        }
        Some(_) => return Err(fail(OAuthError::invalid_request("max_age must be a non-negative integer"))),
    };

    Ok(AuthorizationRequest {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        response_type,
        response_mode,
        scopes,
        state,
        nonce,
        prompt,
        max_age,
        code_challenge,
        login_hint: params.get("login_hint").map(str::to_string),
    })
}

/// A client-chosen value as it may appear in an error description: bounded.
fn shown(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX { value.to_string() } else { format!("{}...", value.chars().take(MAX).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;

    // RFC 7636 Appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const CB: &str = "https://shop.example/cb";

    struct Fixture {
        redirect_uris: Vec<String>,
        grant_types: Vec<GrantType>,
        scopes: Vec<String>,
        confidential: bool,
        disabled: bool,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                redirect_uris: vec![CB.into(), "http://127.0.0.1/native".into()],
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                scopes: ["openid", "profile", "email", "admin", "audit"].map(String::from).to_vec(),
                confidential: true,
                disabled: false,
            }
        }
        fn implicit() -> Self {
            Fixture { grant_types: vec![GrantType::AuthorizationCode, GrantType::Implicit], ..Fixture::new() }
        }
        fn view(&self) -> ClientView<'_> {
            ClientView {
                client_id: "shop",
                redirect_uris: &self.redirect_uris,
                grant_types: &self.grant_types,
                scopes: &self.scopes,
                confidential: self.confidential,
                disabled: self.disabled,
            }
        }
    }

    /// A valid code request, with `overrides` replacing (or, with an empty
    /// value, removing) parameters.
    fn params(overrides: &[(&str, &str)]) -> Params {
        let mut pairs: Vec<(String, String)> = [
            ("response_type", "code"),
            ("client_id", "shop"),
            ("redirect_uri", CB),
            ("scope", "openid profile"),
            ("state", "xyz"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in overrides {
            match pairs.iter_mut().find(|(name, _)| name == k) {
                Some(pair) => pair.1 = v.to_string(),
                None => pairs.push((k.to_string(), v.to_string())),
            }
        }
        Params::from_pairs(pairs).unwrap()
    }

    fn implicit_params(response_type: &str, overrides: &[(&str, &str)]) -> Params {
        let mut all = vec![("response_type", response_type), ("code_challenge", ""), ("code_challenge_method", ""), ("nonce", "n-0S6")];
        all.extend_from_slice(overrides);
        params(&all)
    }

    fn validate(p: &Params, f: &Fixture) -> Result<AuthorizationRequest, AuthorizeError> {
        validate_authorization_request(p, Some(f.view()))
    }

    fn no_redirect(r: Result<AuthorizationRequest, AuthorizeError>) -> String {
        match r {
            Err(AuthorizeError::NoRedirect(m)) => m,
            other => panic!("expected NoRedirect, got {other:?}"),
        }
    }

    /// The redirected error, checking it goes to the request's redirect URI
    /// and echoes the request's state.
    fn redirected(r: Result<AuthorizationRequest, AuthorizeError>) -> (ErrorCode, String, ResponseMode, Option<String>) {
        match r {
            Err(AuthorizeError::Redirect { redirect_uri, response_mode, state, error }) => {
                assert_eq!(redirect_uri, CB);
                (error.code, error.description, response_mode, state)
            }
            other => panic!("expected Redirect, got {other:?}"),
        }
    }

    fn code_of(r: Result<AuthorizationRequest, AuthorizeError>) -> ErrorCode {
        redirected(r).0
    }

    #[test]
    fn valid_code_request() {
        let f = Fixture::new();
        let r = validate(&params(&[("scope", "profile openid profile"), ("nonce", "n1"), ("login_hint", "alice")]), &f).unwrap();
        assert_eq!(
            r,
            AuthorizationRequest {
                client_id: "shop".into(),
                redirect_uri: CB.into(),
                response_type: ResponseType::Code,
                response_mode: ResponseMode::Query,
                scopes: vec!["openid".into(), "profile".into()],
                state: Some("xyz".into()),
                nonce: Some("n1".into()),
                prompt: vec![],
                max_age: None,
                code_challenge: Some(CHALLENGE.into()),
                login_hint: Some("alice".into()),
            }
        );
        assert!(r.is_openid());
        assert_eq!(r.scope_string(), "openid profile");
        // state is optional
        let r = validate(&params(&[("state", "")]), &f).unwrap();
        assert_eq!(r.state, None);
        // unknown parameters are ignored (R16)
        assert!(validate(&params(&[("foo", "bar"), ("ui_locales", "de")]), &f).is_ok());
    }

    #[test]
    fn request_round_trips_through_serde() {
        let f = Fixture::implicit();
        let r = validate(&implicit_params("token id_token", &[("prompt", "login consent"), ("max_age", "60")]), &f).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"id_token token\""), "{json}");
        let back: AuthorizationRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn client_problems_never_redirect() {
        let f = Fixture::new();
        assert!(no_redirect(validate(&params(&[("client_id", "")]), &f)).contains("client_id"));
        assert!(no_redirect(validate_authorization_request(&params(&[]), None)).contains("unknown"));
        // a view of another client than the one named is treated as unknown
        assert!(no_redirect(validate(&params(&[("client_id", "other")]), &f)).contains("unknown"));
        let disabled = Fixture { disabled: true, ..Fixture::new() };
        assert!(no_redirect(validate(&params(&[]), &disabled)).contains("disabled"));
        // even when every other parameter is broken too
        let broken = params(&[("client_id", ""), ("response_type", "nope"), ("scope", "")]);
        no_redirect(validate(&broken, &f));
    }

    #[test]
    fn redirect_uri_problems_never_redirect() {
        let f = Fixture::new();
        assert!(no_redirect(validate(&params(&[("redirect_uri", "")]), &f)).contains("redirect_uri"));
        for bad in ["https://evil.example/cb", "https://shop.example/cb/", "https://shop.example/cb?x=1", "https://shop.example/CB"] {
            let m = no_redirect(validate(&params(&[("redirect_uri", bad), ("response_type", "nope")]), &f));
            assert!(m.contains("redirect_uri"), "{bad}: {m}");
        }
    }

    #[test]
    fn loopback_ports_only_for_public_clients() {
        let confidential = Fixture::new();
        let p = params(&[("redirect_uri", "http://127.0.0.1:49152/native")]);
        no_redirect(validate(&p, &confidential));
        let public = Fixture { confidential: false, ..Fixture::new() };
        let r = validate(&p, &public).unwrap();
        assert_eq!(r.redirect_uri, "http://127.0.0.1:49152/native");
    }

    #[test]
    fn response_type_errors_redirect() {
        let f = Fixture::implicit();
        let (code, _, mode, state) = redirected(validate(&params(&[("response_type", "")]), &f));
        assert_eq!((code, mode, state.as_deref()), (ErrorCode::InvalidRequest, ResponseMode::Query, Some("xyz")));
        for rt in ["code id_token", "code token", "id_token code", "none", "CODE", "code code", "token token", "device_code"] {
            let (code, _, mode, _) = redirected(validate(&params(&[("response_type", rt)]), &f));
            assert_eq!(code, ErrorCode::UnsupportedResponseType, "{rt}");
            assert_eq!(mode, ResponseMode::Query, "{rt}");
        }
        // an explicit, valid response_mode carries the error
        let (_, _, mode, _) = redirected(validate(&params(&[("response_type", "none"), ("response_mode", "fragment")]), &f));
        assert_eq!(mode, ResponseMode::Fragment);
    }

    #[test]
    fn response_type_parsing_is_order_insensitive() {
        assert_eq!(ResponseType::parse("token id_token"), Some(ResponseType::IdTokenToken));
        assert_eq!(ResponseType::parse("id_token token"), Some(ResponseType::IdTokenToken));
        assert_eq!(ResponseType::parse("  code "), Some(ResponseType::Code));
        assert_eq!(ResponseType::parse("token"), Some(ResponseType::Token));
        assert_eq!(ResponseType::parse("id_token"), Some(ResponseType::IdToken));
        assert_eq!(ResponseType::parse(""), None);
        assert_eq!(ResponseType::parse("code\tid_token"), None);
        for rt in [ResponseType::Code, ResponseType::Token, ResponseType::IdToken, ResponseType::IdTokenToken] {
            assert_eq!(ResponseType::parse(rt.as_str()), Some(rt));
        }
        assert!(ResponseType::IdTokenToken.includes_access_token() && ResponseType::IdTokenToken.includes_id_token());
        assert!(!ResponseType::Code.includes_access_token() && !ResponseType::Token.includes_id_token());
    }

    #[test]
    fn grant_types_gate_response_types() {
        let code_only = Fixture::new();
        for rt in ["token", "id_token", "id_token token"] {
            let (code, _, mode, _) = redirected(validate(&implicit_params(rt, &[]), &code_only));
            assert_eq!(code, ErrorCode::UnauthorizedClient, "{rt}");
            assert_eq!(mode, ResponseMode::Fragment, "{rt}");
        }
        let implicit_only = Fixture { grant_types: vec![GrantType::Implicit], ..Fixture::new() };
        assert_eq!(code_of(validate(&params(&[]), &implicit_only)), ErrorCode::UnauthorizedClient);
        let cc_only = Fixture { grant_types: vec![GrantType::ClientCredentials], ..Fixture::new() };
        assert_eq!(code_of(validate(&params(&[]), &cc_only)), ErrorCode::UnauthorizedClient);
    }

    #[test]
    fn implicit_requests() {
        let f = Fixture::implicit();
        let r = validate(&implicit_params("token", &[]), &f).unwrap();
        assert_eq!((r.response_type, r.response_mode), (ResponseType::Token, ResponseMode::Fragment));
        assert_eq!(r.code_challenge, None);
        let r = validate(&implicit_params("id_token", &[]), &f).unwrap();
        assert_eq!(r.response_type, ResponseType::IdToken);
        assert_eq!(r.nonce.as_deref(), Some("n-0S6"));
        let r = validate(&implicit_params("token id_token", &[("response_mode", "form_post")]), &f).unwrap();
        assert_eq!((r.response_type, r.response_mode), (ResponseType::IdTokenToken, ResponseMode::FormPost));
        // a code_challenge is ignored for implicit response types
        let r = validate(&implicit_params("token", &[("code_challenge", CHALLENGE), ("code_challenge_method", "plain")]), &f).unwrap();
        assert_eq!(r.code_challenge, None);
    }

    #[test]
    fn response_modes() {
        let f = Fixture::implicit();
        assert_eq!(validate(&params(&[("response_mode", "query")]), &f).unwrap().response_mode, ResponseMode::Query);
        assert_eq!(validate(&params(&[("response_mode", "fragment")]), &f).unwrap().response_mode, ResponseMode::Fragment);
        assert_eq!(validate(&params(&[("response_mode", "form_post")]), &f).unwrap().response_mode, ResponseMode::FormPost);
        assert_eq!(
            validate(&implicit_params("token", &[("response_mode", "fragment")]), &f).unwrap().response_mode,
            ResponseMode::Fragment
        );
        // unknown mode
        let (code, _, mode, _) = redirected(validate(&params(&[("response_mode", "web_message")]), &f));
        assert_eq!((code, mode), (ErrorCode::InvalidRequest, ResponseMode::Query));
        let (_, _, mode, _) = redirected(validate(&implicit_params("token", &[("response_mode", "jwt")]), &f));
        assert_eq!(mode, ResponseMode::Fragment);
        // tokens never in the query (R9): refused, and the error itself goes in the fragment
        for rt in ["token", "id_token", "id_token token"] {
            let (code, _, mode, state) = redirected(validate(&implicit_params(rt, &[("response_mode", "query")]), &f));
            assert_eq!((code, mode), (ErrorCode::InvalidRequest, ResponseMode::Fragment), "{rt}");
            assert_eq!(state.as_deref(), Some("xyz"));
        }
    }

    #[test]
    fn pkce_is_required_with_s256() {
        let f = Fixture::new();
        let (code, desc, _, _) = redirected(validate(&params(&[("code_challenge", "")]), &f));
        assert_eq!(code, ErrorCode::InvalidRequest);
        assert_eq!(desc, "code_challenge required");
        // public clients too
        let public = Fixture { confidential: false, ..Fixture::new() };
        assert_eq!(code_of(validate(&params(&[("code_challenge", "")]), &public)), ErrorCode::InvalidRequest);
        // method missing: no plain default
        let (code, desc, _, _) = redirected(validate(&params(&[("code_challenge_method", "")]), &f));
        assert_eq!(code, ErrorCode::InvalidRequest);
        assert!(desc.contains("code_challenge_method"));
        for method in ["plain", "s256", "S512", "sha256"] {
            assert_eq!(code_of(validate(&params(&[("code_challenge_method", method)]), &f)), ErrorCode::InvalidRequest, "{method}");
        }
        for challenge in ["short", &CHALLENGE[..42], &format!("{CHALLENGE}A"), &CHALLENGE.replace('-', "+"), &"!".repeat(43)] {
            assert_eq!(code_of(validate(&params(&[("code_challenge", challenge)]), &f)), ErrorCode::InvalidRequest, "{challenge}");
        }
    }

    #[test]
    fn scope_rules() {
        let f = Fixture::new();
        let (code, desc, _, _) = redirected(validate(&params(&[("scope", "")]), &f));
        assert_eq!((code, desc.as_str()), (ErrorCode::InvalidScope, "scope required"));
        assert_eq!(code_of(validate(&params(&[("scope", "   ")]), &f)), ErrorCode::InvalidScope);
        assert_eq!(code_of(validate(&params(&[("scope", "openid payments")]), &f)), ErrorCode::InvalidScope);
        assert_eq!(code_of(validate(&params(&[("scope", "openid pro\"file")]), &f)), ErrorCode::InvalidScope);
        assert_eq!(code_of(validate(&params(&[("scope", "openid\tprofile")]), &f)), ErrorCode::InvalidScope);
        assert_eq!(code_of(validate(&params(&[("scope", "Openid")]), &f)), ErrorCode::InvalidScope);
        // admin and audit: never, even when registered for the client
        for s in ["admin", "audit", "openid admin", "audit profile"] {
            let (code, desc, _, _) = redirected(validate(&params(&[("scope", s)]), &f));
            assert_eq!(code, ErrorCode::InvalidScope, "{s}");
            assert!(desc.contains("cannot be requested"), "{desc}");
        }
        // extra spaces are tolerated, scopes normalized
        let r = validate(&params(&[("scope", " email  openid email ")]), &f).unwrap();
        assert_eq!(r.scopes, vec!["email", "openid"]);
        // no openid needed for a plain OAuth code request
        let r = validate(&params(&[("scope", "profile")]), &f).unwrap();
        assert!(!r.is_openid());
    }

    #[test]
    fn long_scope_in_description_is_bounded() {
        let f = Fixture::new();
        let (_, desc, _, _) = redirected(validate(&params(&[("scope", &"x".repeat(4000))]), &f));
        assert!(desc.len() < 200);
    }

    #[test]
    fn id_token_needs_openid_and_nonce() {
        let f = Fixture::implicit();
        for rt in ["id_token", "id_token token"] {
            let (code, desc, _, _) = redirected(validate(&implicit_params(rt, &[("nonce", "")]), &f));
            assert_eq!(code, ErrorCode::InvalidRequest, "{rt}");
            assert!(desc.contains("nonce"));
            assert_eq!(code_of(validate(&implicit_params(rt, &[("scope", "profile")]), &f)), ErrorCode::InvalidScope, "{rt}");
        }
        // token alone and code need no nonce
        assert!(validate(&implicit_params("token", &[("nonce", ""), ("scope", "profile")]), &f).is_ok());
        assert_eq!(validate(&params(&[]), &f).unwrap().nonce, None);
    }

    #[test]
    fn unsupported_oidc_parameters() {
        let f = Fixture::new();
        assert_eq!(code_of(validate(&params(&[("request", "eyJ.x.y")]), &f)), ErrorCode::RequestNotSupported);
        assert_eq!(code_of(validate(&params(&[("request_uri", "https://x.example/r")]), &f)), ErrorCode::RequestUriNotSupported);
        assert_eq!(code_of(validate(&params(&[("registration", "{}")]), &f)), ErrorCode::RegistrationNotSupported);
    }

    #[test]
    fn prompt_values() {
        let f = Fixture::new();
        let r = validate(&params(&[("prompt", "none")]), &f).unwrap();
        assert_eq!(r.prompt, vec![Prompt::None]);
        assert!(r.has_prompt(Prompt::None));
        let r = validate(&params(&[("prompt", "consent login consent")]), &f).unwrap();
        assert_eq!(r.prompt, vec![Prompt::Consent, Prompt::Login]);
        assert_eq!(validate(&params(&[("prompt", "select_account")]), &f).unwrap().prompt, vec![Prompt::Login]);
        assert_eq!(validate(&params(&[("prompt", "none none")]), &f).unwrap().prompt, vec![Prompt::None]);
        for bad in ["none login", "consent none", "none select_account", "bogus", "Login"] {
            assert_eq!(code_of(validate(&params(&[("prompt", bad)]), &f)), ErrorCode::InvalidRequest, "{bad}");
        }
        assert_eq!(Prompt::parse_list("login"), Ok(vec![Prompt::Login]));
        assert_eq!(Prompt::Consent.as_str(), "consent");
    }

    #[test]
    fn max_age_values() {
        let f = Fixture::new();
        assert_eq!(validate(&params(&[("max_age", "0")]), &f).unwrap().max_age, Some(0));
        assert_eq!(validate(&params(&[("max_age", "3600")]), &f).unwrap().max_age, Some(3600));
        for bad in ["-1", "+5", "1.5", "abc", " 5", "99999999999999999999999"] {
            assert_eq!(code_of(validate(&params(&[("max_age", bad)]), &f)), ErrorCode::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn error_redirects_carry_error_state_and_iss() {
        let f = Fixture::new();
        let err = validate(&params(&[("scope", "payments"), ("state", "a b&c")]), &f).unwrap_err();
        let rp = err.response_params("https://as.example");
        let names: Vec<&str> = rp.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, vec!["error", "error_description", "state", "iss"]);
        let loc = err.location("https://as.example").unwrap();
        let url = url::Url::parse(&loc).unwrap();
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["error"], "invalid_scope");
        assert_eq!(q["state"], "a b&c");
        assert_eq!(q["iss"], "https://as.example");
        assert!(loc.starts_with("https://shop.example/cb?"));
        // without state, no state parameter
        let err = validate(&params_without_state(), &f).unwrap_err();
        assert!(!err.response_params("https://as.example").iter().any(|(k, _)| *k == "state"));
        // fragment mode
        let fi = Fixture::implicit();
        let err = validate(&implicit_params("token", &[("scope", "payments")]), &fi).unwrap_err();
        assert!(err.location("https://as.example").unwrap().starts_with("https://shop.example/cb#error=invalid_scope"));
        // form_post: the caller renders the form
        let err = validate(&params(&[("scope", "payments"), ("response_mode", "form_post")]), &f).unwrap_err();
        assert_eq!(err.location("https://as.example"), None);
        assert_eq!(err.response_params("https://as.example")[0], ("error", "invalid_scope".to_string()));
        // no redirect: nothing
        let err = validate_authorization_request(&params(&[]), None).unwrap_err();
        assert_eq!(err.location("https://as.example"), None);
        assert!(err.response_params("https://as.example").is_empty());
        assert!(err.to_string().contains("unknown"));
    }

    fn params_without_state() -> Params {
        params(&[("state", ""), ("scope", "payments")])
    }

    #[test]
    fn check_order() {
        let f = Fixture::new();
        // response_type before everything after the redirect URI
        let p = params(&[("response_type", "nope"), ("scope", ""), ("code_challenge", ""), ("request", "x")]);
        assert_eq!(code_of(validate(&p, &f)), ErrorCode::UnsupportedResponseType);
        // unauthorized_client before PKCE and scope
        let p = implicit_params("token", &[("scope", "")]);
        assert_eq!(code_of(validate(&p, &f)), ErrorCode::UnauthorizedClient);
        // PKCE before scope
        let p = params(&[("code_challenge", ""), ("scope", "")]);
        assert_eq!(code_of(validate(&p, &f)), ErrorCode::InvalidRequest);
    }

    #[test]
    fn error_params_helper() {
        let e = OAuthError::access_denied("the user denied the request");
        let p = error_response_params(&e, Some("s"), "https://as.example");
        assert_eq!(
            p,
            vec![
                ("error", "access_denied".to_string()),
                ("error_description", "the user denied the request".to_string()),
                ("state", "s".to_string()),
                ("iss", "https://as.example".to_string())
            ]
        );
        let p = error_response_params(&OAuthError::login_required(""), None, "https://as.example");
        assert_eq!(p, vec![("error", "login_required".to_string()), ("iss", "https://as.example".to_string())]);
    }
}
