//! Helpers shared by the OAuth endpoint tests: authorization URLs, PKCE,
//! raw form posts to the back-channel endpoints, JWT inspection, and an
//! `oauth2` client for a registered test client.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, PkceCodeChallenge, RequestTokenError, TokenUrl};
use serde_json::Value;

use crate::oidc::{param, sign_in};
use crate::server::{Browser, Page, TestApp, TestClient};

/// The password of every user the OAuth tests register.
pub const PASSWORD: &str = "correct horse battery";
/// The `state` every authorization URL built here carries.
pub const STATE: &str = "st-4f1e&x=1";

/// A PKCE S256 pair.
pub struct Pkce {
    pub challenge: String,
    pub verifier: String,
}

impl Pkce {
    pub fn new() -> Self {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        Pkce { challenge: challenge.as_str().to_string(), verifier: verifier.secret().to_string() }
    }
}

/// A valid code request for `client_id` (response_type=code, PKCE S256,
/// scope `openid`, [`STATE`]); each override replaces or adds a parameter,
/// and an override with an empty value removes it.
pub fn authorize_url(app: &TestApp, client_id: &str, redirect_uri: &str, challenge: &str, overrides: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", "openid"),
        ("state", STATE),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in overrides {
        pairs.retain(|(n, _)| n != name);
        if !value.is_empty() {
            pairs.push((name, value));
        }
    }
    let mut url = url::Url::parse(&app.url("/authorize")).expect("authorize url");
    url.query_pairs_mut().extend_pairs(pairs);
    url.to_string()
}

/// The query and the fragment parameters of a redirect `Location`.
pub struct Redirect {
    pub base: String,
    pub query: Vec<(String, String)>,
    pub fragment: Vec<(String, String)>,
}

pub fn redirect_of(page: &Page) -> Redirect {
    assert_eq!(page.status, 303, "expected a 303 redirect to the client, got {}: {}", page.status, page.body);
    let location = page.location.as_deref().expect("Location header");
    let url = url::Url::parse(location).expect("absolute Location");
    let query = url.query_pairs().into_owned().collect();
    let fragment = url.fragment().map(|f| form_urlencoded::parse(f.as_bytes()).into_owned().collect()).unwrap_or_default();
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    Redirect { base: base.to_string(), query, fragment }
}

/// Registers a user (email `{username}@example.com`, name `{username} Example`)
/// with [`PASSWORD`].
pub async fn user(app: &TestApp, username: &str) -> String {
    app.register_user(username, PASSWORD).await
}

/// Runs a code flow in `browser` (login and consent as needed) for `scope`;
/// returns the code and its PKCE verifier.
pub async fn code_for(app: &TestApp, browser: &Browser, client: &TestClient, username: &str, scope: &str) -> (String, String) {
    let pkce = Pkce::new();
    let url = authorize_url(app, &client.client_id, &client.redirect_uri, &pkce.challenge, &[("scope", scope)]);
    let answer = sign_in(app, browser, &url, username, PASSWORD).await;
    assert_eq!(param(&answer, "state"), Some(STATE), "{}: state echoed", app.backend);
    assert_eq!(param(&answer, "iss"), Some(app.address.as_str()), "{}: iss", app.backend);
    let code = param(&answer, "code").unwrap_or_else(|| panic!("{}: no code in {answer:?}", app.backend)).to_string();
    (code, pkce.verifier)
}

/// A response of a back-channel endpoint.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error` member of an RFC 6749 §5.2 error body.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or_else(|| panic!("no error member in {} {}", self.status, self.text))
    }
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, text, json }
}

/// POSTs a form to `path`, with HTTP Basic credentials when given.
pub async fn post_form(app: &TestApp, path: &str, basic: Option<(&str, &str)>, pairs: &[(&str, &str)]) -> Reply {
    let mut request = reqwest::Client::new().post(app.url(path)).form(pairs);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    reply(request.send().await.expect("POST")).await
}

/// POSTs a raw body with the given content type to `path`.
pub async fn post_raw(app: &TestApp, path: &str, basic: Option<(&str, &str)>, content_type: &str, body: Vec<u8>) -> Reply {
    let mut request = reqwest::Client::new().post(app.url(path)).header("content-type", content_type).body(body);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    reply(request.send().await.expect("POST")).await
}

/// The credentials of a confidential test client.
pub fn creds(client: &TestClient) -> (&str, &str) {
    (client.client_id.as_str(), client.client_secret.as_deref().expect("a confidential client"))
}

/// Introspects `token` as `caller` (HTTP Basic); asserts 200 and returns the body.
pub async fn introspect(app: &TestApp, caller: (&str, &str), token: &str) -> Value {
    let r = post_form(app, "/introspect", Some(caller), &[("token", token)]).await;
    assert_eq!(r.status, 200, "{}: introspection: {}", app.backend, r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json
}

/// Asserts that `token` introspects as exactly `{"active": false}` for `caller`.
pub async fn assert_inactive(app: &TestApp, caller: (&str, &str), token: &str, what: &str) {
    let body = introspect(app, caller, token).await;
    assert_eq!(body, serde_json::json!({"active": false}), "{}: {what}", app.backend);
}

/// The decoded header and claims of a compact JWS.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = |what: &str| -> Value {
        let part = parts.next().unwrap_or_else(|| panic!("JWT without {what}"));
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap_or_else(|e| panic!("{what} is not base64url: {e}")))
            .unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
    };
    let header = decode("header");
    let claims = decode("claims");
    (header, claims)
}

/// An unsigned JWS (`alg: none`) with the given header and claims.
pub fn unsigned_jwt(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// An `oauth2` client with the token endpoint set.
pub type OAuthClient = BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// An `oauth2` client for `client`, authenticating with `auth`.
pub fn oauth_client(app: &TestApp, client: &TestClient, auth: AuthType) -> OAuthClient {
    oauth_client_at(&app.address, client, auth)
}

/// An `oauth2` client for `client` of the server at `address`.
pub fn oauth_client_at(address: &str, client: &TestClient, auth: AuthType) -> OAuthClient {
    let mut c = BasicClient::new(ClientId::new(client.client_id.clone()))
        .set_token_uri(TokenUrl::new(format!("{address}/token")).expect("token url"))
        .set_auth_type(auth);
    if let Some(secret) = &client.client_secret {
        c = c.set_client_secret(ClientSecret::new(secret.clone()));
    }
    c
}

/// The `error` code of a failed `oauth2` token request.
pub fn oauth_error<RE: std::error::Error + 'static>(e: RequestTokenError<RE, BasicErrorResponse>) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => r.error().to_string(),
        other => panic!("expected an OAuth error response, got {other:?}"),
    }
}
