//! The GraphQL admin and compliance API at `/graphql`, over real HTTP and a
//! real WebSocket, on SQLite and PostgreSQL: the checked-in SDL, who may do
//! what, every mutation and query with its error codes, and the live feed.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{SinkExt, StreamExt};
use grantd::eventstore::RecordedEvent;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::backends;
use crate::oauth_support::{PASSWORD, assert_inactive, authorize_url, code_for, creds, introspect, jwt_parts, post_form};
use crate::server::{ADMIN_ID, ADMIN_SECRET, Browser, TestApp, TestClient};

pub const ADMIN: (&str, &str) = (ADMIN_ID, ADMIN_SECRET);
const REDIRECT: &str = "https://app.example/callback";

// ---------------------------------------------------------------- helpers

/// A client-credentials access token for `caller` with `scope`.
pub async fn token_for(app: &TestApp, caller: (&str, &str), scope: &str) -> String {
    let r = post_form(app, "/token", Some(caller), &[("grant_type", "client_credentials"), ("scope", scope)]).await;
    assert_eq!(r.status, 200, "{}: token for {} with scope {scope}: {}", app.backend, caller.0, r.text);
    r.json["access_token"].as_str().expect("access_token").to_string()
}

/// One `/graphql` answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The `code` extension of the first error.
    pub fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {} {}", self.status, self.body))
    }
}

/// POSTs a GraphQL operation with an optional `Authorization` header value.
pub async fn post_graphql(app: &TestApp, authorization: Option<&str>, query: &str, variables: Value) -> Answer {
    let mut request = reqwest::Client::new().post(app.url("/graphql")).json(&json!({"query": query, "variables": variables}));
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response = request.send().await.expect("POST /graphql");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{}: /graphql answered {status} with non-JSON {text:?}", app.backend));
    Answer { status, body }
}

/// A caller of the admin API holding one bearer token.
pub struct Api<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl<'a> Api<'a> {
    pub async fn admin(app: &'a TestApp) -> Api<'a> {
        Api { app, token: token_for(app, ADMIN, "admin").await }
    }

    pub async fn audit(app: &'a TestApp) -> Api<'a> {
        Api { app, token: token_for(app, ADMIN, "audit").await }
    }

    pub async fn run(&self, query: &str, variables: Value) -> Answer {
        post_graphql(self.app, Some(&format!("Bearer {}", self.token)), query, variables).await
    }

    /// Runs an operation that must succeed; returns its `data`.
    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        let a = self.run(query, variables).await;
        assert_eq!(a.status, 200, "{}: {query}: {}", self.app.backend, a.body);
        assert!(a.body.get("errors").is_none(), "{}: {query} failed: {}", self.app.backend, a.body);
        a.body["data"].clone()
    }

    /// Runs an operation that must fail with a GraphQL error; returns its code.
    pub async fn fails(&self, query: &str, variables: Value) -> String {
        let a = self.run(query, variables).await;
        assert_eq!(a.status, 200, "{}: {query}: {}", self.app.backend, a.body);
        let errors = a.body["errors"].as_array().unwrap_or_else(|| panic!("{}: {query} did not fail: {}", self.app.backend, a.body));
        assert!(!errors.is_empty());
        a.code().to_string()
    }
}

pub const REGISTER_CLIENT: &str = "mutation($input: RegisterClientInput!) { registerClient(input: $input) {
    client { id clientId name redirectUris grantTypes scopes confidential firstParty disabled } clientSecret } }";
pub const REGISTER_USER: &str = "mutation($input: RegisterUserInput!) { registerUser(input: $input) { id username email name disabled } }";

/// Registers a client through the API; returns it as a test client.
pub async fn api_client(api: &Api<'_>, name: &str, grant_types: &[&str], scopes: &[&str], confidential: bool) -> TestClient {
    let input = json!({
        "name": name, "redirectUris": [REDIRECT], "grantTypes": grant_types, "scopes": scopes,
        "confidential": confidential, "firstParty": false,
    });
    let data = api.ok(REGISTER_CLIENT, json!({"input": input})).await;
    let payload = &data["registerClient"];
    TestClient {
        client_id: payload["client"]["clientId"].as_str().expect("clientId").to_string(),
        client_secret: payload["clientSecret"].as_str().map(str::to_string),
        redirect_uri: REDIRECT.into(),
    }
}

/// Registers a user through the API with [`PASSWORD`]; returns its id.
pub async fn api_user(api: &Api<'_>, username: &str) -> String {
    let input = json!({"username": username, "password": PASSWORD, "email": format!("{username}@example.com"), "name": "Test User"});
    let data = api.ok(REGISTER_USER, json!({"input": input})).await;
    data["registerUser"]["id"].as_str().expect("id").to_string()
}

/// The whole log, in order.
pub async fn whole_log(app: &TestApp) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = app.store.read_all(after, 500).await.expect("read log");
        let Some(last) = page.last().map(|e| e.position) else { return out };
        out.extend(page);
        after = last;
    }
}

/// Which user and client each event of a log concerns, worked out from the
/// events themselves: a user's own stream, the consents and grants of a
/// user or client, and a client's own stream.
pub struct Concerns {
    grant_user: HashMap<String, String>,
    grant_client: HashMap<String, String>,
    client_of_aggregate: HashMap<String, String>,
}

impl Concerns {
    pub fn of(log: &[RecordedEvent]) -> Concerns {
        let mut c = Concerns { grant_user: HashMap::new(), grant_client: HashMap::new(), client_of_aggregate: HashMap::new() };
        for e in log {
            let text = |k: &str| e.payload.get(k).and_then(|v| v.as_str()).map(str::to_string);
            if let Some(grant) = e.stream_id.strip_prefix("grant-") {
                if let Some(user) = text("user_id") {
                    c.grant_user.entry(grant.to_string()).or_insert(user);
                }
                if let Some(client) = text("client_id") {
                    c.grant_client.entry(grant.to_string()).or_insert(client);
                }
            }
            if let (Some(aggregate), "ClientRegistered") = (e.stream_id.strip_prefix("client-"), e.event_type.as_str()) {
                c.client_of_aggregate.insert(aggregate.to_string(), text("client_id").expect("ClientRegistered names its client_id"));
            }
        }
        c
    }

    /// `consent-{36-character user id}-{client id}`.
    fn consent(stream: &str) -> Option<(&str, &str)> {
        let id = stream.strip_prefix("consent-")?;
        Some((id.get(..36)?, id.get(37..)?))
    }

    pub fn user(&self, e: &RecordedEvent) -> Option<String> {
        if let Some(user) = e.stream_id.strip_prefix("user-") {
            return Some(user.to_string());
        }
        if let Some((user, _)) = Self::consent(&e.stream_id) {
            return Some(user.to_string());
        }
        e.stream_id.strip_prefix("grant-").and_then(|g| self.grant_user.get(g).cloned())
    }

    pub fn client(&self, e: &RecordedEvent) -> Option<String> {
        if let Some(aggregate) = e.stream_id.strip_prefix("client-") {
            return self.client_of_aggregate.get(aggregate).cloned();
        }
        if let Some((_, client)) = Self::consent(&e.stream_id) {
            return Some(client.to_string());
        }
        e.stream_id.strip_prefix("grant-").and_then(|g| self.grant_client.get(g).cloned())
    }
}

/// RFC 3339 in UTC with microseconds: how the API writes instants.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|s| s.as_str().expect("a string").to_string()).collect()
}

fn set(v: &Value) -> BTreeSet<String> {
    strings(v).into_iter().collect()
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Exchanges a code at /token; returns (access token, refresh token).
async fn exchange(app: &TestApp, client: &TestClient, code: &str, verifier: &str) -> (String, String) {
    let r = post_form(
        app,
        "/token",
        Some(creds(client)),
        &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", &client.redirect_uri), ("code_verifier", verifier)],
    )
    .await;
    assert_eq!(r.status, 200, "{}: code exchange: {}", app.backend, r.text);
    (r.json["access_token"].as_str().unwrap().to_string(), r.json["refresh_token"].as_str().expect("refresh token").to_string())
}

async fn refresh(app: &TestApp, client: &TestClient, refresh_token: &str) -> (String, String) {
    let r = post_form(app, "/token", Some(creds(client)), &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await;
    assert_eq!(r.status, 200, "{}: refresh: {}", app.backend, r.text);
    (r.json["access_token"].as_str().unwrap().to_string(), r.json["refresh_token"].as_str().expect("refresh token").to_string())
}

fn grant_of(access_token: &str) -> String {
    jwt_parts(access_token).1["grant_id"].as_str().expect("grant_id claim").to_string()
}

/// What the browser gets when it submits the login form: 401 for refused
/// credentials; the consent page (200) or a redirect (303) once signed in.
async fn login_status(app: &TestApp, client: &TestClient, username: &str, password: &str) -> u16 {
    let browser = Browser::new();
    let url = authorize_url(app, &client.client_id, &client.redirect_uri, &crate::oauth_support::Pkce::new().challenge, &[]);
    let page = browser.get(&url).await;
    assert_eq!(page.status, 200, "{}: login page: {}", app.backend, page.body);
    assert!(page.input("password").is_some(), "{}: a login form", app.backend);
    let answer = browser.submit(&app.address, &page, &[("username", username), ("password", password)]).await;
    answer.status
}

/// A user who approved `client` in the browser and whose code was
/// exchanged: the tokens of that grant.
struct Signed {
    access: String,
    refresh: String,
    grant: String,
}

async fn browser_grant(app: &TestApp, client: &TestClient, username: &str, scope: &str) -> Signed {
    let (code, verifier) = code_for(app, &Browser::new(), client, username, scope).await;
    let (access, refresh) = exchange(app, client, &code, &verifier).await;
    let grant = grant_of(&access);
    Signed { access, refresh, grant }
}

// ---------------------------------------------------------------- tests

#[test]
fn checked_in_sdl_is_the_code_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/graphql/schema.graphql");
    let file = std::fs::read_to_string(path).expect("graphql/schema.graphql is checked in");
    let code = grantd::graphql::sdl();
    if file != code {
        let line =
            file.lines().zip(code.lines()).position(|(a, b)| a != b).unwrap_or_else(|| file.lines().count().min(code.lines().count()));
        panic!(
            "graphql/schema.graphql differs from grantd::graphql::sdl() at line {}: file {:?}, code {:?}; regenerate with `cargo run -q -- graphql-schema > graphql/schema.graphql`",
            line + 1,
            file.lines().nth(line),
            code.lines().nth(line)
        );
    }
    for name in [
        "registerClient(input: RegisterClientInput!): RegisterClientPayload!",
        "registerUser(input: RegisterUserInput!): User!",
        "revokeConsent(userId: ID!, clientId: String!): Consent!",
        "revokeGrant(grantId: ID!): Grant!",
        "disableClient(clientId: String!): Client!",
        "consentHistory(userId: ID!, clientId: String!): [ConsentEvent!]!",
    ] {
        assert!(code.contains(name), "the contract's {name} is in the schema");
    }
}

/// Every operation, with arguments naming real objects.
fn operations(client_id: &str, user_id: &str, grant_id: &str) -> Vec<(&'static str, &'static str, Value, bool)> {
    // (name, document, variables, may the audit scope run it)
    let c = json!({"c": client_id});
    let u = json!({"u": user_id});
    vec![
        ("clients", "{ clients { clientId } }", json!({}), false),
        ("client", "query($c: String!) { client(clientId: $c) { clientId } }", c.clone(), false),
        ("users", "{ users { id } }", json!({}), false),
        ("user", "query($u: ID!) { user(id: $u) { id } }", u.clone(), false),
        ("signingKeys", "{ signingKeys { kid } }", json!({}), false),
        ("consents", "query($u: ID!) { consents(userId: $u) { active } }", u.clone(), true),
        (
            "consentHistory",
            "query($u: ID!, $c: String!) { consentHistory(userId: $u, clientId: $c) { type } }",
            json!({"u": user_id, "c": client_id}),
            true,
        ),
        ("grants", "query($c: String!) { grants(clientId: $c) { id } }", c.clone(), true),
        ("grant", "query($g: ID!) { grant(id: $g) { id lineage { type } } }", json!({"g": grant_id}), true),
        ("auditEvents", "{ auditEvents(first: 5) { edges { cursor } pageInfo { hasNextPage } } }", json!({}), true),
        ("accessAt", "query($u: ID!) { accessAt(userId: $u, at: \"2020-01-01T00:00:00Z\") { clientId } }", u.clone(), true),
        (
            "registerClient",
            REGISTER_CLIENT,
            json!({"input": {"name": "Matrix", "grantTypes": ["client_credentials"], "scopes": ["api"]}}),
            false,
        ),
        ("updateClient", "mutation($c: String!) { updateClient(clientId: $c, input: {name: \"Renamed\"}) { name } }", c.clone(), false),
        ("rotateClientSecret", "mutation($c: String!) { rotateClientSecret(clientId: $c) { clientSecret } }", c.clone(), false),
        ("disableClient", "mutation($c: String!) { disableClient(clientId: $c) { disabled } }", c.clone(), false),
        ("enableClient", "mutation($c: String!) { enableClient(clientId: $c) { disabled } }", c.clone(), false),
        ("registerUser", REGISTER_USER, json!({"input": {"username": "matrix-user", "password": PASSWORD}}), false),
        ("updateUser", "mutation($u: ID!) { updateUser(id: $u, input: {name: \"Renamed\"}) { name } }", u.clone(), false),
        ("setUserPassword", "mutation($u: ID!) { setUserPassword(id: $u, password: \"another long password\") { id } }", u.clone(), false),
        ("disableUser", "mutation($u: ID!) { disableUser(id: $u) { disabled } }", u.clone(), false),
        ("enableUser", "mutation($u: ID!) { enableUser(id: $u) { disabled } }", u.clone(), false),
        (
            "revokeConsent",
            "mutation($u: ID!, $c: String!) { revokeConsent(userId: $u, clientId: $c) { active } }",
            json!({"u": user_id, "c": client_id}),
            false,
        ),
        ("revokeGrant", "mutation($g: ID!) { revokeGrant(grantId: $g) { active } }", json!({"g": grant_id}), false),
        ("rotateSigningKey", "mutation { rotateSigningKey { kid } }", json!({}), false),
    ]
}

/// How many of [`operations`] are queries; the rest are mutations.
const QUERIES: usize = 11;

const INTROSPECTION: &str = "{ __schema { types { name } } }";

#[actix_web::test]
async fn authorization_matrix_no_token_ordinary_token_audit_and_admin() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let audit = Api::audit(&app).await;
        let service = api_client(&admin, "Ordinary service", &["client_credentials"], &["api"], true).await;
        let user_id = api_user(&admin, "matrix-target").await;
        let ordinary = token_for(&app, creds(&service), "api").await;
        let grant_id = grant_of(&ordinary);
        let ops = operations(&service.client_id, &user_id, &grant_id);
        let head = app.store.head().await.unwrap();

        let refused: [(&str, Option<String>, u16, &str); 6] = [
            ("no token", None, 401, "UNAUTHENTICATED"),
            ("a garbage token", Some("Bearer not-a-token".into()), 401, "UNAUTHENTICATED"),
            ("an empty bearer", Some("Bearer ".into()), 401, "UNAUTHENTICATED"),
            (
                "the admin client's Basic credentials",
                Some(format!("Basic {}", base64_basic(ADMIN_ID, ADMIN_SECRET))),
                401,
                "UNAUTHENTICATED",
            ),
            ("a token with a forged signature", Some(format!("Bearer {}", forged_admin_token(&admin.token))), 401, "UNAUTHENTICATED"),
            ("an ordinary client's token", Some(format!("Bearer {ordinary}")), 403, "FORBIDDEN"),
        ];
        for (who, authorization, status, code) in &refused {
            let mut all: Vec<(&str, &str, Value)> = ops.iter().map(|(n, q, v, _)| (*n, *q, v.clone())).collect();
            all.push(("introspection", INTROSPECTION, json!({})));
            for (name, query, vars) in all {
                let a = post_graphql(&app, authorization.as_deref(), query, vars).await;
                assert_eq!(a.status, *status, "{}: {name} with {who}: {}", app.backend, a.body);
                assert_eq!(a.code(), *code, "{}: {name} with {who}", app.backend);
                assert!(a.body.get("data").is_none_or(Value::is_null), "{}: {name} with {who} leaks data: {}", app.backend, a.body);
            }
        }
        let unauthenticated = post_graphql(&app, None, INTROSPECTION, json!({})).await;
        assert!(
            unauthenticated.body.to_string().find("RegisterClientInput").is_none(),
            "{}: introspection reveals nothing without a token",
            app.backend
        );

        // The audit scope reads the consent history and the audit trail, nothing else.
        for (name, query, vars, audit_may) in &ops {
            let a = audit.run(query, vars.clone()).await;
            assert_eq!(a.status, 200, "{}: {name} as audit: {}", app.backend, a.body);
            if *audit_may {
                assert!(a.body.get("errors").is_none(), "{}: audit may run {name}: {}", app.backend, a.body);
                assert!(!a.body["data"][name].is_null(), "{}: {name} answered for audit: {}", app.backend, a.body);
            } else {
                assert_eq!(a.code(), "FORBIDDEN", "{}: audit may not run {name}: {}", app.backend, a.body);
                assert!(a.body["data"].is_null(), "{}: {name} gave audit no data: {}", app.backend, a.body);
            }
        }
        let types = audit.ok(INTROSPECTION, json!({})).await;
        assert!(types["__schema"]["types"].as_array().unwrap().iter().any(|t| t["name"] == "ConsentEvent"), "{}", app.backend);
        assert_eq!(app.store.head().await.unwrap(), head, "{}: refused operations wrote nothing", app.backend);

        // The admin scope runs every query...
        for (name, query, vars, _) in ops.iter().take(QUERIES) {
            let data = admin.ok(query, vars.clone()).await;
            assert!(!data[name].is_null(), "{}: admin ran {name}: {data}", app.backend);
        }
        assert!(admin.ok(INTROSPECTION, json!({})).await["__schema"]["types"].as_array().unwrap().len() > 20);
        // ... and every mutation; revoking a consent nobody gave is NOT_FOUND, not FORBIDDEN.
        for (name, query, vars, _) in ops.iter().skip(QUERIES) {
            if *name == "revokeConsent" {
                assert_eq!(admin.fails(query, vars.clone()).await, "NOT_FOUND", "{}", app.backend);
            } else {
                let data = admin.ok(query, vars.clone()).await;
                assert!(!data[name].is_null(), "{}: admin ran {name}: {data}", app.backend);
            }
        }

        // A revoked admin token is refused like no token.
        let r = post_form(&app, "/revoke", Some(ADMIN), &[("token", &audit.token)]).await;
        assert_eq!(r.status, 200, "{}", app.backend);
        let a = audit.run("{ auditEvents(first: 1) { edges { cursor } } }", json!({})).await;
        assert_eq!((a.status, a.code()), (401, "UNAUTHENTICATED"), "{}: a revoked token", app.backend);
    }
}

fn base64_basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

/// The admin token's header and claims with a signature that is not the server's.
fn forged_admin_token(token: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let sig = "A".repeat(parts[2].len());
    parts[2] = &sig;
    parts.join(".")
}

#[actix_web::test]
async fn register_client_returns_the_contract_payload_and_refuses_bad_input_without_writing() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;

        let input = json!({
            "name": "Billing", "redirectUris": ["https://billing.example/cb"],
            "grantTypes": ["authorization_code", "refresh_token", "client_credentials"], "scopes": ["openid", "api"],
            "confidential": true, "firstParty": true, "clientId": "billing-app",
        });
        let data = admin.ok(REGISTER_CLIENT, json!({"input": input})).await;
        let payload = &data["registerClient"];
        let client = &payload["client"];
        assert!(client["id"].as_str().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()), "{}: {client}", app.backend);
        assert_eq!(client["clientId"], "billing-app");
        assert_eq!(client["name"], "Billing");
        assert_eq!(strings(&client["redirectUris"]), vec!["https://billing.example/cb"]);
        assert_eq!(set(&client["grantTypes"]), set_of(&["authorization_code", "refresh_token", "client_credentials"]));
        assert_eq!(set(&client["scopes"]), set_of(&["openid", "api"]));
        assert_eq!(
            (client["confidential"].as_bool(), client["firstParty"].as_bool(), client["disabled"].as_bool()),
            (Some(true), Some(true), Some(false))
        );
        let secret = payload["clientSecret"].as_str().expect("a confidential client's secret is shown once");
        assert!(secret.len() >= 43, "{}: a 256-bit secret: {secret}", app.backend);

        // The secret works at /token at once; a wrong one does not.
        let r = post_form(&app, "/token", Some(("billing-app", secret)), &[("grant_type", "client_credentials"), ("scope", "api")]).await;
        assert_eq!(r.status, 200, "{}: the new secret works: {}", app.backend, r.text);
        assert_eq!(jwt_parts(r.json["access_token"].as_str().unwrap()).1["client_id"], "billing-app");
        let r = post_form(&app, "/token", Some(("billing-app", "wrong")), &[("grant_type", "client_credentials"), ("scope", "api")]).await;
        assert_eq!(r.status, 401, "{}", app.backend);

        // A public client has no secret.
        let public =
            json!({"name": "Mobile", "redirectUris": ["http://127.0.0.1/cb"], "grantTypes": ["authorization_code"], "confidential": false});
        let data = admin.ok(REGISTER_CLIENT, json!({"input": public})).await;
        assert!(data["registerClient"]["clientSecret"].is_null(), "{}: {data}", app.backend);
        assert_eq!(data["registerClient"]["client"]["confidential"], false);
        let generated = data["registerClient"]["client"]["clientId"].as_str().unwrap();
        assert!(!generated.is_empty(), "a client_id is generated");

        let head = app.store.head().await.unwrap();
        let valid = json!({"name": "Shop", "redirectUris": ["https://shop.example/cb"], "grantTypes": ["authorization_code"], "scopes": ["openid"]});
        let with = |k: &str, v: Value| {
            let mut i = valid.clone();
            i[k] = v;
            json!({"input": i})
        };
        let cases = [
            ("a relative redirect URI", with("redirectUris", json!(["/callback"])), "INVALID_INPUT"),
            ("a redirect URI that is no URI", with("redirectUris", json!(["not a uri"])), "INVALID_INPUT"),
            ("a redirect URI with a fragment", with("redirectUris", json!(["https://shop.example/cb#x"])), "INVALID_INPUT"),
            ("an unknown grant type", with("grantTypes", json!(["authorization_code", "magic"])), "INVALID_INPUT"),
            ("no grant type", with("grantTypes", json!([])), "INVALID_INPUT"),
            ("the reserved scope admin", with("scopes", json!(["openid", "admin"])), "INVALID_INPUT"),
            ("the reserved scope audit", with("scopes", json!(["audit"])), "INVALID_INPUT"),
            ("an empty name", with("name", json!(" ")), "INVALID_INPUT"),
            ("an unknown ID token algorithm", with("idTokenSignedResponseAlg", json!("HS256")), "INVALID_INPUT"),
            (
                "client credentials for a public client",
                json!({"input": {"name": "X", "grantTypes": ["client_credentials"], "confidential": false}}),
                "INVALID_INPUT",
            ),
            ("a taken client_id", with("clientId", json!("billing-app")), "DUPLICATE"),
            ("a taken client_id in other case", with("clientId", json!("BILLING-APP")), "DUPLICATE"),
            ("the admin client's client_id", with("clientId", json!(ADMIN_ID)), "DUPLICATE"),
        ];
        for (what, vars, code) in cases {
            let a = admin.run(REGISTER_CLIENT, vars).await;
            assert_eq!(a.code(), code, "{}: {what}: {}", app.backend, a.body);
            assert!(a.body["data"].is_null(), "{}: {what}: no payload: {}", app.backend, a.body);
            assert_eq!(app.store.head().await.unwrap(), head, "{}: {what} wrote nothing", app.backend);
        }
        let listed = admin.ok("{ clients { clientId name } }", json!({})).await;
        let names: Vec<&str> = listed["clients"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names.iter().filter(|n| **n == "Shop" || **n == "X").count(), 0, "{}: no partial client: {names:?}", app.backend);
        let billing = admin.ok("{ client(clientId: \"billing-app\") { name secretless: confidential } }", json!({})).await;
        assert_eq!(billing["client"]["name"], "Billing", "{}: the duplicate did not overwrite the first", app.backend);
    }
}

const CLIENT_FIELDS: &str = "id clientId name redirectUris grantTypes scopes confidential firstParty disabled";

async fn cc_status(app: &TestApp, id: &str, secret: &str, scope: &str) -> (u16, Value) {
    let r = post_form(app, "/token", Some((id, secret)), &[("grant_type", "client_credentials"), ("scope", scope)]).await;
    (r.status, r.json)
}

#[actix_web::test]
async fn update_rotate_disable_and_enable_a_client() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let service = api_client(&admin, "Reports", &["client_credentials"], &["api"], true).await;
        let (id, secret) = (service.client_id.as_str(), service.client_secret.clone().unwrap());
        assert_eq!(cc_status(&app, id, &secret, "reports").await.0, 400, "{}: no such scope yet", app.backend);

        let update =
            format!("mutation($c: String!, $i: UpdateClientInput!) {{ updateClient(clientId: $c, input: $i) {{ {CLIENT_FIELDS} }} }}");
        let data = admin.ok(&update, json!({"c": id, "i": {"name": "Reports v2", "scopes": ["api", "reports"]}})).await;
        let c = &data["updateClient"];
        assert_eq!(c["name"], "Reports v2", "{}", app.backend);
        assert_eq!(set(&c["scopes"]), set_of(&["api", "reports"]));
        assert_eq!(set(&c["grantTypes"]), set_of(&["client_credentials"]), "unchanged fields stay");
        assert_eq!(cc_status(&app, id, &secret, "reports").await.0, 200, "{}: the new scope is granted at once", app.backend);

        let head = app.store.head().await.unwrap();
        for (what, input, code) in [
            ("an invalid redirect URI", json!({"redirectUris": ["nope"]}), "INVALID_INPUT"),
            ("an unknown grant type", json!({"grantTypes": ["telepathy"]}), "INVALID_INPUT"),
            ("a reserved scope", json!({"scopes": ["api", "admin"]}), "INVALID_INPUT"),
        ] {
            assert_eq!(admin.fails(&update, json!({"c": id, "i": input})).await, code, "{}: {what}", app.backend);
        }
        assert_eq!(admin.fails(&update, json!({"c": "no-such-client", "i": {"name": "x"}})).await, "NOT_FOUND", "{}", app.backend);
        assert_eq!(app.store.head().await.unwrap(), head, "{}: refused updates wrote nothing", app.backend);

        // Rotation: the old secret stops working, the new one works.
        let rotate = "mutation($c: String!) { rotateClientSecret(clientId: $c) { client { clientId } clientSecret } }";
        let data = admin.ok(rotate, json!({"c": id})).await;
        let new_secret = data["rotateClientSecret"]["clientSecret"].as_str().expect("new secret").to_string();
        assert_eq!(data["rotateClientSecret"]["client"]["clientId"], id);
        assert_ne!(new_secret, secret);
        assert!(new_secret.len() >= 43);
        let (status, body) = cc_status(&app, id, &secret, "api").await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{}: the old secret is refused", app.backend);
        assert_eq!(cc_status(&app, id, &new_secret, "api").await.0, 200, "{}: the new secret works", app.backend);
        let public = api_client(&admin, "Public", &["authorization_code"], &["openid"], false).await;
        assert_eq!(
            admin.fails(rotate, json!({"c": public.client_id})).await,
            "INVALID_INPUT",
            "{}: a public client has no secret",
            app.backend
        );
        assert_eq!(admin.fails(rotate, json!({"c": "no-such-client"})).await, "NOT_FOUND");

        // Disabled: no more tokens; the disabled flag shows; enabling restores it.
        let disable = "mutation($c: String!) { disableClient(clientId: $c) { clientId disabled } }";
        let enable = "mutation($c: String!) { enableClient(clientId: $c) { clientId disabled } }";
        let data = admin.ok(disable, json!({"c": id})).await;
        assert_eq!(data["disableClient"]["disabled"], true, "{}", app.backend);
        let (status, body) = cc_status(&app, id, &new_secret, "api").await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{}: a disabled client gets no token", app.backend);
        let head = app.store.head().await.unwrap();
        assert_eq!(admin.ok(disable, json!({"c": id})).await["disableClient"]["disabled"], true, "disabling twice is harmless");
        assert_eq!(app.store.head().await.unwrap(), head, "{}: and records nothing", app.backend);
        let listed = admin.ok("query($c: String!) { client(clientId: $c) { disabled } }", json!({"c": id})).await;
        assert_eq!(listed["client"]["disabled"], true);
        // A disabled client is frozen: no new secret, no settings change, nothing recorded.
        let head = app.store.head().await.unwrap();
        assert_eq!(admin.fails(rotate, json!({"c": id})).await, "DISABLED", "{}", app.backend);
        let rename = "mutation($c: String!) { updateClient(clientId: $c, input: { name: \"Frozen\" }) { name } }";
        assert_eq!(admin.fails(rename, json!({"c": id})).await, "DISABLED", "{}", app.backend);
        assert_eq!(app.store.head().await.unwrap(), head, "{}: no partial write", app.backend);
        assert_eq!(admin.ok(enable, json!({"c": id})).await["enableClient"]["disabled"], false);
        assert_eq!(cc_status(&app, id, &new_secret, "api").await.0, 200, "{}: enabled again", app.backend);
        assert_eq!(admin.fails(disable, json!({"c": "no-such-client"})).await, "NOT_FOUND");
        assert_eq!(admin.fails(enable, json!({"c": "no-such-client"})).await, "NOT_FOUND");

        let history =
            admin.ok("query($c: String!) { client(clientId: $c) { history { type actor { kind id } } } }", json!({"c": id})).await;
        let types: Vec<&str> = history["client"]["history"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["ClientRegistered", "ClientUpdated", "ClientSecretRotated", "ClientDisabled", "ClientEnabled"],
            "{}",
            app.backend
        );
        for e in history["client"]["history"].as_array().unwrap() {
            assert_eq!(e["actor"], json!({"kind": "CLIENT", "id": ADMIN_ID}), "{}: the admin client did it", app.backend);
        }
    }
}

#[actix_web::test]
async fn register_user_refuses_duplicates_and_one_of_ten_concurrent_registrations_wins() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let input = json!({"username": "alice", "password": PASSWORD, "email": "alice@example.com", "name": "Alice A"});
        let data = admin.ok(REGISTER_USER, json!({"input": input})).await;
        let user = &data["registerUser"];
        assert!(user["id"].as_str().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()), "{}: {user}", app.backend);
        assert_eq!(
            (&user["username"], &user["email"], &user["name"], &user["disabled"]),
            (&json!("alice"), &json!("alice@example.com"), &json!("Alice A"), &json!(false))
        );

        let head = app.store.head().await.unwrap();
        for (what, input, code) in [
            ("a taken username", json!({"username": "alice", "password": PASSWORD}), "DUPLICATE"),
            ("a taken username in other case", json!({"username": "ALICE", "password": PASSWORD}), "DUPLICATE"),
            ("a username with a space", json!({"username": "al ice", "password": PASSWORD}), "INVALID_INPUT"),
            ("a short password", json!({"username": "carol", "password": "short"}), "INVALID_INPUT"),
            ("an invalid email", json!({"username": "carol", "password": PASSWORD, "email": "no-at-sign"}), "INVALID_INPUT"),
        ] {
            let a = admin.run(REGISTER_USER, json!({"input": input})).await;
            assert_eq!(a.code(), code, "{}: {what}: {}", app.backend, a.body);
            assert!(a.body["data"].is_null(), "{}: {what}", app.backend);
        }
        assert_eq!(app.store.head().await.unwrap(), head, "{}: refused registrations wrote nothing", app.backend);

        // Ten registrations of one username at once: exactly one lands.
        let attempts = (0..10).map(|i| {
            let input = json!({"username": "contested", "password": PASSWORD, "name": format!("attempt {i}")});
            admin.run(REGISTER_USER, json!({"input": input}))
        });
        let answers = futures::future::join_all(attempts).await;
        let winners: Vec<&Answer> = answers.iter().filter(|a| a.body.get("errors").is_none()).collect();
        assert_eq!(winners.len(), 1, "{}: exactly one registration wins: {answers:?}", app.backend);
        for a in answers.iter().filter(|a| a.body.get("errors").is_some()) {
            assert_eq!(a.code(), "DUPLICATE", "{}: the losers learn the name is taken: {}", app.backend, a.body);
        }
        let log = whole_log(&app).await;
        let registered: Vec<&RecordedEvent> =
            log.iter().filter(|e| e.event_type == "UserRegistered" && e.payload["username"] == "contested").collect();
        assert_eq!(registered.len(), 1, "{}: one UserRegistered for the contested name", app.backend);
        assert_eq!(registered[0].stream_id, format!("user-{}", winners[0].body["data"]["registerUser"]["id"].as_str().unwrap()));
        let users = admin.ok("{ users(first: 200) { username } }", json!({})).await;
        let contested = users["users"].as_array().unwrap().iter().filter(|u| u["username"] == "contested").count();
        assert_eq!(contested, 1, "{}", app.backend);
    }
}

#[actix_web::test]
async fn update_user_set_password_and_disable_user_change_what_the_login_page_accepts() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let web = api_client(&admin, "Web", &["authorization_code"], &["openid"], true).await;
        let alice = api_user(&admin, "alice").await;
        let bob = api_user(&admin, "bob").await;
        assert_eq!(login_status(&app, &web, "alice", PASSWORD).await, 200, "{}: alice signs in", app.backend);

        let update = "mutation($u: ID!, $i: UpdateUserInput!) { updateUser(id: $u, input: $i) { id username email name disabled } }";
        let data = admin.ok(update, json!({"u": alice, "i": {"username": "alice2", "name": "Alice Two"}})).await;
        assert_eq!(data["updateUser"]["username"], "alice2", "{}", app.backend);
        assert_eq!(data["updateUser"]["name"], "Alice Two");
        assert_eq!(data["updateUser"]["email"], "alice@example.com", "unchanged fields stay");
        assert_eq!(login_status(&app, &web, "alice2", PASSWORD).await, 200, "{}: the new name signs in", app.backend);
        assert_eq!(login_status(&app, &web, "alice", PASSWORD).await, 401, "{}: the old name no longer does", app.backend);

        let head = app.store.head().await.unwrap();
        assert_eq!(admin.fails(update, json!({"u": bob, "i": {"username": "alice2"}})).await, "DUPLICATE", "{}", app.backend);
        assert_eq!(admin.fails(update, json!({"u": bob, "i": {"username": "ALICE2"}})).await, "DUPLICATE", "{}", app.backend);
        assert_eq!(admin.fails(update, json!({"u": bob, "i": {"email": "not-an-email"}})).await, "INVALID_INPUT");
        let unknown = uuid::Uuid::new_v4().to_string();
        assert_eq!(admin.fails(update, json!({"u": unknown, "i": {"name": "x"}})).await, "NOT_FOUND");
        assert_eq!(app.store.head().await.unwrap(), head, "{}: refused updates wrote nothing", app.backend);
        let bob_now = admin.ok("query($u: ID!) { user(id: $u) { username } }", json!({"u": bob})).await;
        assert_eq!(bob_now["user"]["username"], "bob", "{}: bob keeps his name", app.backend);
        // The released name is free again.
        api_user(&admin, "alice").await;

        let set_password = "mutation($u: ID!, $p: String!) { setUserPassword(id: $u, password: $p) { id disabled } }";
        let data = admin.ok(set_password, json!({"u": bob, "p": "a brand new passphrase"})).await;
        assert_eq!(data["setUserPassword"]["id"], json!(bob));
        assert_eq!(login_status(&app, &web, "bob", "a brand new passphrase").await, 200, "{}: the new password works", app.backend);
        assert_eq!(login_status(&app, &web, "bob", PASSWORD).await, 401, "{}: the old one does not", app.backend);
        assert_eq!(admin.fails(set_password, json!({"u": bob, "p": "short"})).await, "INVALID_INPUT");
        assert_eq!(admin.fails(set_password, json!({"u": unknown, "p": "a brand new passphrase"})).await, "NOT_FOUND");

        let disable = "mutation($u: ID!) { disableUser(id: $u) { disabled } }";
        let enable = "mutation($u: ID!) { enableUser(id: $u) { disabled } }";
        assert_eq!(admin.ok(disable, json!({"u": bob})).await["disableUser"]["disabled"], true);
        assert_eq!(login_status(&app, &web, "bob", "a brand new passphrase").await, 401, "{}: a disabled user cannot sign in", app.backend);
        assert_eq!(admin.ok("query($u: ID!) { user(id: $u) { disabled } }", json!({"u": bob})).await["user"]["disabled"], true);
        let head = app.store.head().await.unwrap();
        assert_eq!(admin.fails(set_password, json!({"u": bob, "p": "yet another passphrase"})).await, "DISABLED", "{}", app.backend);
        assert_eq!(app.store.head().await.unwrap(), head, "{}: a disabled user is frozen", app.backend);
        assert_eq!(admin.ok(enable, json!({"u": bob})).await["enableUser"]["disabled"], false);
        assert_eq!(login_status(&app, &web, "bob", "a brand new passphrase").await, 200, "{}: enabled again", app.backend);
        assert_eq!(admin.fails(disable, json!({"u": unknown})).await, "NOT_FOUND");
        assert_eq!(admin.fails(enable, json!({"u": unknown})).await, "NOT_FOUND");

        let log = whole_log(&app).await;
        let bob_types: Vec<&str> = log.iter().filter(|e| e.stream_id == format!("user-{bob}")).map(|e| e.event_type.as_str()).collect();
        assert_eq!(bob_types[0], "UserRegistered", "{}", app.backend);
        assert!(bob_types.contains(&"UserPasswordChanged") && bob_types.contains(&"UserDisabled"), "{}: {bob_types:?}", app.backend);
    }
}

const HISTORY: &str = "query($u: ID!, $c: String!) { consentHistory(userId: $u, clientId: $c) {
    type scopes scopesBefore scopesAfter recordedAt actor { kind id } requestId sourceAddress authentication position } }";

#[actix_web::test]
async fn revoke_consent_after_a_browser_consent_revokes_its_tokens_and_is_on_record() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let audit = Api::audit(&app).await;
        let shop = api_client(&admin, "Shop", &["authorization_code", "refresh_token"], &["openid", "profile", "email"], true).await;
        let other = api_client(&admin, "Other", &["authorization_code", "refresh_token"], &["openid"], true).await;
        let user_id = api_user(&admin, "alice").await;
        let before_consent = Utc::now();
        tokio::time::sleep(Duration::from_millis(30)).await;

        let first = browser_grant(&app, &shop, "alice", "openid profile").await;
        let second = browser_grant(&app, &shop, "alice", "openid profile email").await;
        let (rotated_access, rotated_refresh) = refresh(&app, &shop, &first.refresh).await;
        let kept = browser_grant(&app, &other, "alice", "openid").await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let consented = Utc::now();
        tokio::time::sleep(Duration::from_millis(30)).await;

        let vars = json!({"u": user_id, "c": shop.client_id});
        let history = audit.ok(HISTORY, vars.clone()).await["consentHistory"].clone();
        let events = history.as_array().unwrap();
        assert_eq!(events.len(), 2, "{}: {history}", app.backend);
        assert_eq!(events[0]["type"], "ConsentGranted");
        assert_eq!(set(&events[0]["scopes"]), set_of(&["openid", "profile"]));
        assert_eq!(strings(&events[0]["scopesBefore"]), Vec::<String>::new());
        assert_eq!(set(&events[0]["scopesAfter"]), set_of(&["openid", "profile"]));
        assert_eq!(events[1]["type"], "ConsentScopesExtended");
        assert_eq!(set(&events[1]["scopes"]), set_of(&["email"]), "{}: the scope added", app.backend);
        assert_eq!(set(&events[1]["scopesBefore"]), set_of(&["openid", "profile"]));
        assert_eq!(set(&events[1]["scopesAfter"]), set_of(&["openid", "profile", "email"]));
        for e in events {
            assert_eq!(e["actor"], json!({"kind": "USER", "id": user_id}), "{}: the user consented", app.backend);
            assert!(e["requestId"].as_str().is_some_and(|r| !r.is_empty()), "{}: request id: {e}", app.backend);
            assert_eq!(e["sourceAddress"], "127.0.0.1", "{}", app.backend);
            assert_eq!(e["authentication"], "pwd", "{}: how the user signed in", app.backend);
        }
        let times: Vec<DateTime<chrono::FixedOffset>> = events
            .iter()
            .map(|e| {
                let t = e["recordedAt"].as_str().unwrap();
                assert!(t.ends_with('Z') || t[t.len() - 6..].starts_with(['+', '-']), "{}: {t} carries a zone", app.backend);
                DateTime::parse_from_rfc3339(t).unwrap_or_else(|_| panic!("{t} is RFC 3339"))
            })
            .collect();
        assert!(times[0] <= times[1] && events[0]["position"].as_i64() < events[1]["position"].as_i64(), "oldest first");
        assert!(times[0] > before_consent && times[1] < consented, "{}: recorded when it happened", app.backend);

        let consents = audit
            .ok("query($u: ID!) { consents(userId: $u) { userId clientId scopes active grantedAt revokedAt } }", json!({"u": user_id}))
            .await;
        let list = consents["consents"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{}: {consents}", app.backend);
        let shop_consent = list.iter().find(|c| c["clientId"] == json!(shop.client_id)).expect("the shop's consent");
        assert_eq!((shop_consent["active"].as_bool(), shop_consent["userId"].as_str()), (Some(true), Some(user_id.as_str())));
        assert_eq!(set(&shop_consent["scopes"]), set_of(&["openid", "profile", "email"]));
        assert!(shop_consent["revokedAt"].is_null());
        let by_client = audit.ok("query($c: String!) { consents(clientId: $c) { userId } }", json!({"c": shop.client_id})).await;
        assert_eq!(by_client["consents"], json!([{"userId": user_id}]), "{}", app.backend);
        assert_eq!(audit.fails("{ consents { active } }", json!({})).await, "INVALID_INPUT", "consents needs a user or a client");

        // accessAt before the consent: nothing; after: the client, its scopes and the grants in force.
        let access_at =
            "query($u: ID!, $at: String!) { accessAt(userId: $u, at: $at) { clientId consentedScopes grants { grantId scopes } } }";
        let none = audit.ok(access_at, json!({"u": user_id, "at": rfc3339(before_consent)})).await;
        assert_eq!(none["accessAt"], json!([]), "{}: no access before the consent", app.backend);
        let then = audit.ok(access_at, json!({"u": user_id, "at": rfc3339(consented)})).await;
        let shop_access = then["accessAt"].as_array().unwrap().iter().find(|a| a["clientId"] == json!(shop.client_id)).cloned();
        let shop_access = shop_access.unwrap_or_else(|| panic!("{}: the shop had access: {then}", app.backend));
        assert_eq!(set(&shop_access["consentedScopes"]), set_of(&["openid", "profile", "email"]));
        let grants: BTreeSet<String> =
            shop_access["grants"].as_array().unwrap().iter().map(|g| g["grantId"].as_str().unwrap().to_string()).collect();
        assert_eq!(grants, [first.grant.clone(), second.grant.clone()].into_iter().collect(), "{}: both active grants", app.backend);
        assert_eq!(audit.fails(access_at, json!({"u": user_id, "at": "yesterday"})).await, "INVALID_INPUT");

        // The revocation.
        let revoke = "mutation($u: ID!, $c: String!) { revokeConsent(userId: $u, clientId: $c) { userId clientId active scopes } }";
        let data = admin.ok(revoke, vars.clone()).await;
        assert_eq!(data["revokeConsent"]["active"], false, "{}", app.backend);
        assert_eq!(data["revokeConsent"]["clientId"], json!(shop.client_id));
        assert_eq!(data["revokeConsent"]["scopes"], json!([]));
        let revoked_at = Utc::now();
        for (token, what) in [
            (&first.access, "the first access token"),
            (&first.refresh, "the first, rotated refresh token"),
            (&rotated_access, "the access token from the refresh"),
            (&rotated_refresh, "the current refresh token"),
            (&second.access, "the second grant's access token"),
            (&second.refresh, "the second grant's refresh token"),
        ] {
            assert_inactive(&app, creds(&shop), token, what).await;
            assert_inactive(&app, ADMIN, token, what).await;
        }
        let still = introspect(&app, creds(&other), &kept.access).await;
        assert_eq!(still["active"], true, "{}: the other client's grant stays", app.backend);
        let r =
            post_form(&app, "/token", Some(creds(&shop)), &[("grant_type", "refresh_token"), ("refresh_token", &rotated_refresh)]).await;
        assert_eq!((r.status, r.json["error"].as_str()), (400, Some("invalid_grant")), "{}", app.backend);

        let history = audit.ok(HISTORY, vars.clone()).await["consentHistory"].clone();
        let last = history.as_array().unwrap().last().unwrap().clone();
        assert_eq!(history.as_array().unwrap().len(), 3);
        assert_eq!(last["type"], "ConsentRevoked", "{}", app.backend);
        assert_eq!(last["actor"], json!({"kind": "CLIENT", "id": ADMIN_ID}), "{}: the admin client revoked it", app.backend);
        assert_eq!(set(&last["scopesBefore"]), set_of(&["openid", "profile", "email"]));
        assert_eq!(last["scopesAfter"], json!([]));
        assert_eq!(set(&last["scopes"]), set_of(&["openid", "profile", "email"]), "{}: the scopes withdrawn", app.backend);
        assert!(last["requestId"].as_str().is_some_and(|r| !r.is_empty()), "{}: {last}", app.backend);

        let consents =
            audit.ok("query($u: ID!, $c: String!) { consents(userId: $u, clientId: $c) { active scopes revokedAt } }", vars.clone()).await;
        assert_eq!(consents["consents"][0]["active"], false, "{}", app.backend);
        assert!(consents["consents"][0]["revokedAt"].as_str().is_some());
        let grants = "query($u: ID!, $c: String!, $a: Boolean) { grants(userId: $u, clientId: $c, active: $a) { id active revocationReason revokedAt } }";
        let active = audit.ok(grants, json!({"u": user_id, "c": shop.client_id, "a": true})).await;
        assert_eq!(active["grants"], json!([]), "{}: no active grant is left", app.backend);
        let revoked = audit.ok(grants, json!({"u": user_id, "c": shop.client_id, "a": false})).await;
        let revoked = revoked["grants"].as_array().unwrap();
        assert_eq!(revoked.len(), 2, "{}", app.backend);
        for g in revoked {
            assert_eq!((g["active"].as_bool(), g["revocationReason"].as_str()), (Some(false), Some("consent_revoked")), "{}", app.backend);
        }
        let all = audit.ok("query($u: ID!) { grants(userId: $u) { id } }", json!({"u": user_id})).await;
        assert_eq!(all["grants"].as_array().unwrap().len(), 3, "{}: two revoked and the other client's", app.backend);

        let after = audit.ok(access_at, json!({"u": user_id, "at": rfc3339(revoked_at + chrono::Duration::milliseconds(1))})).await;
        assert!(
            !after["accessAt"].as_array().unwrap().iter().any(|a| a["clientId"] == json!(shop.client_id)),
            "{}: no access after the revocation: {after}",
            app.backend
        );
        let past = audit.ok(access_at, json!({"u": user_id, "at": rfc3339(consented)})).await;
        assert_eq!(past, then, "{}: the past stays as it was", app.backend);

        let head = app.store.head().await.unwrap();
        assert_eq!(admin.fails(revoke, vars).await, "NOT_FOUND", "{}: no consent in force any more", app.backend);
        let nobody = json!({"u": uuid::Uuid::new_v4().to_string(), "c": shop.client_id});
        assert_eq!(admin.fails(revoke, nobody).await, "NOT_FOUND");
        assert_eq!(app.store.head().await.unwrap(), head, "{}", app.backend);
    }
}

#[actix_web::test]
async fn revoke_grant_and_the_lineage_of_a_grant() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let audit = Api::audit(&app).await;
        let shop = api_client(&admin, "Shop", &["authorization_code", "refresh_token"], &["openid", "profile"], true).await;
        let user_id = api_user(&admin, "alice").await;
        let signed = browser_grant(&app, &shop, "alice", "openid profile").await;
        let (access2, refresh2) = refresh(&app, &shop, &signed.refresh).await;
        let other = browser_grant(&app, &shop, "alice", "openid").await;

        let grants = "query($c: String!, $a: Boolean) { grants(clientId: $c, active: $a) { id grantType clientId subject userId scopes active createdAt } }";
        let active = audit.ok(grants, json!({"c": shop.client_id, "a": true})).await;
        let ids: BTreeSet<&str> = active["grants"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [signed.grant.as_str(), other.grant.as_str()].into_iter().collect(), "{}", app.backend);
        let g = active["grants"].as_array().unwrap().iter().find(|g| g["id"] == json!(signed.grant)).unwrap();
        assert_eq!(
            (g["grantType"].as_str(), g["userId"].as_str(), g["subject"].as_str()),
            (Some("authorization_code"), Some(user_id.as_str()), Some(user_id.as_str()))
        );
        assert_eq!(set(&g["scopes"]), set_of(&["openid", "profile"]));

        let revoke = "mutation($g: ID!) { revokeGrant(grantId: $g) { id active revocationReason } }";
        let data = admin.ok(revoke, json!({"g": signed.grant})).await;
        assert_eq!(
            data["revokeGrant"],
            json!({"id": signed.grant, "active": false, "revocationReason": "revoked_by_admin"}),
            "{}",
            app.backend
        );
        assert_inactive(&app, creds(&shop), &access2, "the grant's access token").await;
        assert_inactive(&app, creds(&shop), &refresh2, "the grant's refresh token").await;
        assert_eq!(introspect(&app, creds(&shop), &other.access).await["active"], true, "{}: the other grant stays", app.backend);
        let head = app.store.head().await.unwrap();
        assert_eq!(admin.ok(revoke, json!({"g": signed.grant})).await["revokeGrant"]["active"], false, "revoking twice is harmless");
        assert_eq!(app.store.head().await.unwrap(), head, "{}: and records nothing", app.backend);
        assert_eq!(admin.fails(revoke, json!({"g": uuid::Uuid::new_v4().to_string()})).await, "NOT_FOUND", "{}", app.backend);

        let active = audit.ok(grants, json!({"c": shop.client_id, "a": true})).await;
        assert_eq!(active["grants"].as_array().unwrap().len(), 1);
        assert_eq!(active["grants"][0]["id"], json!(other.grant));
        let revoked = audit.ok(grants, json!({"c": shop.client_id, "a": false})).await;
        assert_eq!(revoked["grants"].as_array().unwrap().iter().map(|g| g["id"].clone()).collect::<Vec<_>>(), vec![json!(signed.grant)]);

        let one = "query($g: ID!) { grant(id: $g) { id active revocationReason clientId userId lineage { position type recordedAt actor { kind id } jti expiresAt scopes reason } } }";
        let data = audit.ok(one, json!({"g": signed.grant})).await;
        let grant = &data["grant"];
        assert_eq!(
            (grant["active"].as_bool(), grant["revocationReason"].as_str()),
            (Some(false), Some("revoked_by_admin")),
            "{}",
            app.backend
        );
        let lineage = grant["lineage"].as_array().unwrap();
        let types: Vec<&str> = lineage.iter().map(|s| s["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "AuthorizationCodeIssued",
                "AuthorizationCodeRedeemed",
                "AccessTokenIssued",
                "RefreshTokenIssued",
                "RefreshTokenRotated",
                "AccessTokenIssued",
                "GrantRevoked"
            ],
            "{}",
            app.backend
        );
        let positions: Vec<i64> = lineage.iter().map(|s| s["position"].as_i64().unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "oldest first");
        assert_eq!(lineage[0]["actor"], json!({"kind": "USER", "id": user_id}), "{}: the user's approval issued the code", app.backend);
        assert_eq!(lineage[1]["actor"], json!({"kind": "CLIENT", "id": shop.client_id}), "{}: the client redeemed it", app.backend);
        assert_eq!(lineage[2]["jti"], jwt_parts(&signed.access).1["jti"], "{}: the access token's id", app.backend);
        assert_eq!(lineage[5]["jti"], jwt_parts(&access2).1["jti"]);
        assert!(lineage[2]["expiresAt"].as_str().is_some());
        assert_eq!(set(&lineage[0]["scopes"]), set_of(&["openid", "profile"]));
        assert_eq!(lineage[6]["reason"], "revoked_by_admin");
        assert_eq!(lineage[6]["actor"], json!({"kind": "CLIENT", "id": ADMIN_ID}));
        assert!(lineage[..6].iter().all(|s| s["reason"].is_null()));
        assert!(audit.ok(one, json!({"g": uuid::Uuid::new_v4().to_string()})).await["grant"].is_null(), "an unknown grant is null");
    }
}

#[actix_web::test]
async fn rotate_signing_key_publishes_both_keys_and_signs_with_the_new_one() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let old_kid = jwt_parts(&admin.token).0["kid"].as_str().expect("kid").to_string();
        let jwks = |app: &TestApp| {
            let url = app.url("/jwks");
            async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() }
        };
        let okp_kids = |jwks: &Value| -> BTreeSet<String> {
            jwks["keys"].as_array().unwrap().iter().filter(|k| k["kty"] == "OKP").map(|k| k["kid"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(okp_kids(&jwks(&app).await), set_of(&[&old_kid]), "{}", app.backend);
        let keys = admin.ok("{ signingKeys { kid alg status publicJwk createdAt activatedAt retiredAt verifyUntil } }", json!({})).await;
        let old = keys["signingKeys"].as_array().unwrap().iter().find(|k| k["kid"] == json!(old_kid)).cloned().expect("the old key listed");
        assert_eq!((old["alg"].as_str(), old["status"].as_str()), (Some("EdDSA"), Some("active")), "{}", app.backend);

        let rotate = "mutation($alg: String) { rotateSigningKey(alg: $alg) { kid alg status publicJwk activatedAt } }";
        let data = admin.ok(rotate, json!({})).await;
        let new = &data["rotateSigningKey"];
        let new_kid = new["kid"].as_str().unwrap().to_string();
        assert_ne!(new_kid, old_kid);
        assert_eq!((new["alg"].as_str(), new["status"].as_str()), (Some("EdDSA"), Some("active")), "{}", app.backend);
        let jwk: Value = serde_json::from_str(new["publicJwk"].as_str().unwrap()).expect("a JWK");
        assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str(), jwk["kid"].as_str()), (Some("OKP"), Some("Ed25519"), Some(new_kid.as_str())));

        assert_eq!(okp_kids(&jwks(&app).await), set_of(&[&old_kid, &new_kid]), "{}: both keys published", app.backend);
        let keys = admin.ok("{ signingKeys { kid status retiredAt verifyUntil } }", json!({})).await;
        let old = keys["signingKeys"].as_array().unwrap().iter().find(|k| k["kid"] == json!(old_kid)).cloned().unwrap();
        assert_eq!(old["status"], "retired", "{}", app.backend);
        assert!(old["retiredAt"].as_str().is_some() && old["verifyUntil"].as_str().is_some());

        let fresh = token_for(&app, ADMIN, "admin").await;
        assert_eq!(jwt_parts(&fresh).0["kid"], json!(new_kid), "{}: new tokens carry the new kid", app.backend);
        assert_eq!(
            introspect(&app, ADMIN, &admin.token).await["active"],
            true,
            "{}: tokens signed by the old key still verify",
            app.backend
        );
        let still = admin.ok("{ signingKeys { kid } }", json!({})).await;
        assert!(still["signingKeys"].as_array().unwrap().len() >= 3, "the old token still works on /graphql");

        let rs = admin.ok(rotate, json!({"alg": "RS256"})).await;
        assert_eq!(rs["rotateSigningKey"]["alg"], "RS256", "{}", app.backend);
        let rsa_kids: Vec<String> = jwks(&app).await["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kty"] == "RSA")
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect();
        assert!(rsa_kids.contains(&rs["rotateSigningKey"]["kid"].as_str().unwrap().to_string()), "{}: {rsa_kids:?}", app.backend);
        let head = app.store.head().await.unwrap();
        assert_eq!(admin.fails(rotate, json!({"alg": "HS256"})).await, "INVALID_INPUT", "{}", app.backend);
        assert_eq!(app.store.head().await.unwrap(), head);
    }
}

#[actix_web::test]
async fn clients_and_users_queries_page_and_show_history() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let mut made = Vec::new();
        for name in ["c-one", "c-two", "c-three"] {
            let input = json!({"name": name, "grantTypes": ["client_credentials"], "scopes": ["api"], "clientId": name});
            admin.ok(REGISTER_CLIENT, json!({"input": input})).await;
            made.push(name.to_string());
        }
        let all = admin.ok(&format!("{{ clients(first: 200) {{ {CLIENT_FIELDS} }} }}"), json!({})).await;
        let ids: Vec<String> = all["clients"].as_array().unwrap().iter().map(|c| c["clientId"].as_str().unwrap().to_string()).collect();
        let mut expected: Vec<String> = made.clone();
        expected.push(ADMIN_ID.to_string());
        expected.sort();
        assert_eq!(ids, expected, "{}: every client, ordered by client_id", app.backend);
        let admin_client = all["clients"].as_array().unwrap().iter().find(|c| c["clientId"] == ADMIN_ID).unwrap();
        assert_eq!(set(&admin_client["scopes"]), set_of(&["admin", "audit"]), "{}", app.backend);

        // Pages of two.
        let page = "query($after: String) { clients(first: 2, after: $after) { clientId } }";
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let data = admin.ok(page, json!({"after": after})).await;
            let batch: Vec<String> =
                data["clients"].as_array().unwrap().iter().map(|c| c["clientId"].as_str().unwrap().to_string()).collect();
            assert!(batch.len() <= 2);
            if batch.is_empty() {
                break;
            }
            after = batch.last().cloned();
            seen.extend(batch);
        }
        assert_eq!(seen, expected, "{}: pages cover every client once", app.backend);
        assert_eq!(admin.fails("{ clients(first: 0) { clientId } }", json!({})).await, "INVALID_INPUT");
        assert_eq!(admin.fails("{ clients(first: 201) { clientId } }", json!({})).await, "INVALID_INPUT");

        let one = format!(
            "query($c: String!) {{ client(clientId: $c) {{ {CLIENT_FIELDS} history {{ type streamId streamVersion actor {{ kind id }} recordedAt }} }} }}"
        );
        admin.ok("mutation { updateClient(clientId: \"c-two\", input: {name: \"C Two\"}) { name } }", json!({})).await;
        let data = admin.ok(&one, json!({"c": "c-two"})).await;
        let c = &data["client"];
        assert_eq!((c["name"].as_str(), c["clientId"].as_str()), (Some("C Two"), Some("c-two")), "{}", app.backend);
        let history = c["history"].as_array().unwrap();
        assert_eq!(history.iter().map(|e| e["type"].as_str().unwrap()).collect::<Vec<_>>(), ["ClientRegistered", "ClientUpdated"]);
        assert_eq!(history[1]["streamVersion"], 2);
        assert_eq!(history[0]["streamId"], json!(format!("client-{}", c["id"].as_str().unwrap())));
        assert!(admin.ok(&one, json!({"c": "nobody"})).await["client"].is_null(), "{}: an unknown client is null", app.backend);

        let mut users = Vec::new();
        for name in ["ulla", "ugo", "uma"] {
            users.push(api_user(&admin, name).await);
        }
        users.sort();
        let listed = admin.ok("{ users { id username email name disabled } }", json!({})).await;
        let ids: Vec<String> = listed["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids, users, "{}: users ordered by id", app.backend);
        let first = admin.ok("query($a: String) { users(first: 1, after: $a) { id } }", json!({"a": users[0]})).await;
        assert_eq!(first["users"], json!([{"id": users[1]}]), "{}", app.backend);
        let one = admin.ok("query($u: ID!) { user(id: $u) { id username email name disabled } }", json!({"u": users[2]})).await;
        assert_eq!(one["user"]["id"], json!(users[2]));
        assert_eq!(one["user"]["email"], json!(format!("{}@example.com", one["user"]["username"].as_str().unwrap())));
        assert!(admin.ok("query($u: ID!) { user(id: $u) { id } }", json!({"u": uuid::Uuid::new_v4().to_string()})).await["user"].is_null());
        assert!(admin.ok("{ user(id: \"not-a-uuid\") { id } }", json!({})).await["user"].is_null());
        assert_eq!(admin.fails("{ users(first: 500) { id } }", json!({})).await, "INVALID_INPUT");
    }
}

const AUDIT_EVENTS: &str = "query($f: AuditEventFilter, $first: Int, $after: String) { auditEvents(filter: $f, first: $first, after: $after) {
    edges { cursor node { position streamId streamVersion type schemaVersion recordedAt actor { kind id } requestId sourceAddress authentication payload hash } }
    pageInfo { hasNextPage endCursor } } }";

/// Every position `auditEvents` returns for a filter, page by page.
async fn audit_positions(api: &Api<'_>, filter: Value, page_size: i64) -> Vec<i64> {
    let mut positions = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let data = api.ok(AUDIT_EVENTS, json!({"f": filter, "first": page_size, "after": after})).await;
        let conn = &data["auditEvents"];
        let edges = conn["edges"].as_array().unwrap();
        assert!(edges.len() as i64 <= page_size, "a page holds at most `first` events");
        positions.extend(edges.iter().map(|e| e["node"]["position"].as_i64().unwrap()));
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            if let Some(last) = edges.last() {
                assert_eq!(conn["pageInfo"]["endCursor"], last["cursor"]);
            }
            return positions;
        }
        assert_eq!(edges.len() as i64, page_size, "a page before the last is full");
        after = Some(conn["pageInfo"]["endCursor"].as_str().expect("endCursor").to_string());
    }
    panic!("auditEvents never reached its last page");
}

#[actix_web::test]
async fn audit_events_filter_and_page_through_the_log() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let audit = Api::audit(&app).await;
        let shop = api_client(&admin, "Shop", &["authorization_code", "refresh_token"], &["openid", "profile"], true).await;
        let service = api_client(&admin, "Service", &["client_credentials"], &["api"], true).await;
        let alice = api_user(&admin, "alice").await;
        let bob = api_user(&admin, "bob").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let a = browser_grant(&app, &shop, "alice", "openid profile").await;
        refresh(&app, &shop, &a.refresh).await;
        browser_grant(&app, &shop, "bob", "openid").await;
        token_for(&app, creds(&service), "api").await;
        admin
            .ok(
                "mutation($u: ID!, $c: String!) { revokeConsent(userId: $u, clientId: $c) { active } }",
                json!({"u": alice, "c": shop.client_id}),
            )
            .await;
        let log = whole_log(&app).await;
        let concerns = Concerns::of(&log);
        let all: Vec<i64> = log.iter().map(|e| e.position).collect();
        assert!(all.len() > 25, "{}: a log of some size ({})", app.backend, all.len());

        // Every event, in pages of 7: no duplicate, no gap.
        assert_eq!(audit_positions(&audit, json!(null), 7).await, all, "{}: pages of 7", app.backend);
        assert_eq!(audit_positions(&audit, json!(null), 200).await, all, "{}: one page", app.backend);
        // The nodes are the log's events.
        let data = audit.ok(AUDIT_EVENTS, json!({"first": 200})).await;
        for (edge, e) in data["auditEvents"]["edges"].as_array().unwrap().iter().zip(&log) {
            let n = &edge["node"];
            let ctx = &e.metadata.context;
            assert_eq!(n["position"], e.position);
            assert_eq!(n["streamId"], json!(e.stream_id));
            assert_eq!(n["streamVersion"], e.stream_version);
            assert_eq!(n["type"], json!(e.event_type));
            assert_eq!(n["schemaVersion"], e.schema_version);
            assert_eq!(n["recordedAt"], json!(rfc3339(e.recorded_at)), "{}", app.backend);
            assert_eq!(n["actor"], json!({"kind": ctx.actor.kind.as_str(), "id": ctx.actor.id}));
            assert_eq!(n["requestId"], json!(ctx.request_id));
            assert_eq!(n["sourceAddress"], json!(ctx.source_address));
            assert_eq!(n["authentication"], json!(ctx.authentication));
            assert_eq!(serde_json::from_str::<Value>(n["payload"].as_str().unwrap()).unwrap(), e.payload);
            assert_eq!(n["hash"], json!(hex::encode(e.hash)));
        }
        for secret in [shop.client_secret.as_deref().unwrap(), service.client_secret.as_deref().unwrap(), PASSWORD] {
            assert!(!data.to_string().contains(secret), "{}: no secret in the audit trail", app.backend);
        }

        let expect = |keep: &dyn Fn(&RecordedEvent) -> bool| -> Vec<i64> { log.iter().filter(|e| keep(e)).map(|e| e.position).collect() };
        let consent_stream = format!("consent-{alice}-{}", shop.client_id);
        let cases: Vec<(&str, Value, Vec<i64>)> = vec![
            (
                "streams",
                json!({"streams": [consent_stream, format!("user-{bob}")]}),
                expect(&|e| e.stream_id == consent_stream || e.stream_id == format!("user-{bob}")),
            ),
            (
                "eventTypes",
                json!({"eventTypes": ["ConsentGranted", "GrantRevoked"]}),
                expect(&|e| e.event_type == "ConsentGranted" || e.event_type == "GrantRevoked"),
            ),
            ("actor kind", json!({"actor": {"kind": "USER"}}), expect(&|e| e.metadata.context.actor.kind.as_str() == "USER")),
            (
                "actor",
                json!({"actor": {"kind": "USER", "id": bob}}),
                expect(&|e| e.metadata.context.actor.kind.as_str() == "USER" && e.metadata.context.actor.id == bob),
            ),
            ("system actor", json!({"actor": {"kind": "SYSTEM"}}), expect(&|e| e.metadata.context.actor.kind.as_str() == "SYSTEM")),
            (
                "admin actor",
                json!({"actor": {"kind": "CLIENT", "id": ADMIN_ID}}),
                expect(&|e| e.metadata.context.actor.kind.as_str() == "CLIENT" && e.metadata.context.actor.id == ADMIN_ID),
            ),
            ("userId", json!({"userId": alice}), expect(&|e| concerns.user(e).as_deref() == Some(alice.as_str()))),
            ("clientId", json!({"clientId": shop.client_id}), expect(&|e| concerns.client(e).as_deref() == Some(shop.client_id.as_str()))),
            (
                "service clientId",
                json!({"clientId": service.client_id}),
                expect(&|e| concerns.client(e).as_deref() == Some(service.client_id.as_str())),
            ),
            (
                "userId and eventTypes",
                json!({"userId": bob, "eventTypes": ["AccessTokenIssued"]}),
                expect(&|e| concerns.user(e).as_deref() == Some(bob.as_str()) && e.event_type == "AccessTokenIssued"),
            ),
        ];
        for (what, filter, expected) in cases {
            assert!(!expected.is_empty(), "{what}: the scenario has such events");
            assert!(expected.len() < all.len(), "{what}: the filter narrows");
            assert_eq!(audit_positions(&audit, filter, 3).await, expected, "{}: filter by {what}", app.backend);
        }
        let alice_events = expect(&|e| concerns.user(e).as_deref() == Some(alice.as_str()));
        for t in ["UserRegistered", "ConsentGranted", "AuthorizationCodeIssued", "RefreshTokenRotated", "ConsentRevoked", "GrantRevoked"] {
            assert!(log.iter().any(|e| e.event_type == t && alice_events.contains(&e.position)), "{}: alice's trail has {t}", app.backend);
        }

        // A time window, inclusive at both ends.
        let (lo, hi) = (&log[log.len() / 3], &log[2 * log.len() / 3]);
        let (from, to) = (rfc3339(lo.recorded_at), rfc3339(hi.recorded_at));
        let window = expect(&|e| rfc3339(e.recorded_at) >= from && rfc3339(e.recorded_at) <= to);
        assert!(window.contains(&lo.position) && window.contains(&hi.position) && window.len() < all.len());
        assert_eq!(audit_positions(&audit, json!({"from": from, "to": to}), 4).await, window, "{}: from/to", app.backend);
        let zoned =
            lo.recorded_at.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap()).to_rfc3339_opts(SecondsFormat::Micros, false);
        let since = expect(&|e| rfc3339(e.recorded_at) >= from);
        assert_eq!(audit_positions(&audit, json!({"from": zoned}), 50).await, since, "{}: from in another zone", app.backend);
        let window_user = expect(&|e| {
            rfc3339(e.recorded_at) >= from && rfc3339(e.recorded_at) <= to && concerns.user(e).as_deref() == Some(alice.as_str())
        });
        assert_eq!(audit_positions(&audit, json!({"from": from, "to": to, "userId": alice}), 2).await, window_user, "{}", app.backend);

        // A cursor past the end, bad cursors, bad sizes.
        let data = audit.ok(AUDIT_EVENTS, json!({"first": 200})).await;
        let end = data["auditEvents"]["pageInfo"]["endCursor"].as_str().unwrap().to_string();
        let past = audit.ok(AUDIT_EVENTS, json!({"after": end})).await;
        assert_eq!(past["auditEvents"]["edges"], json!([]), "{}", app.backend);
        assert_eq!(past["auditEvents"]["pageInfo"]["hasNextPage"], false);
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for cursor in ["garbage", "", &b64("pos:-1"), &b64("pos:x"), &b64("position:3")] {
            let a = audit.run(AUDIT_EVENTS, json!({"after": cursor})).await;
            assert_eq!(a.code(), "INVALID_CURSOR", "{}: cursor {cursor:?}: {}", app.backend, a.body);
            assert!(a.body["data"].is_null());
        }
        for first in [0, -1, 201, 100_000] {
            assert_eq!(audit.fails(AUDIT_EVENTS, json!({"first": first})).await, "INVALID_INPUT", "{}: first {first}", app.backend);
        }
        assert_eq!(audit.fails(AUDIT_EVENTS, json!({"f": {"from": "last tuesday"}})).await, "INVALID_INPUT");
        assert_eq!(audit.fails(AUDIT_EVENTS, json!({"f": {"to": "2024-01-01T00:00:00"}})).await, "INVALID_INPUT", "a time without zone");
    }
}

#[actix_web::test]
async fn over_deep_and_malformed_queries_get_an_error_code() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let mut deep = String::from("name");
        for _ in 0..14 {
            deep = format!("ofType {{ {deep} }}");
        }
        let query = format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}");
        let a = admin.run(&query, json!({})).await;
        assert!(a.body["errors"].as_array().is_some_and(|e| !e.is_empty()), "{}: refused: {}", app.backend, a.body);
        assert!(a.body["data"].is_null(), "{}: {}", app.backend, a.body);
        assert_eq!(a.code(), "QUERY_TOO_DEEP", "{}: a stable code for an over-deep query", app.backend);

        let shallow = admin.run("{ __schema { types { fields { type { ofType { name } } } } } }", json!({})).await;
        assert!(shallow.body.get("errors").is_none(), "{}: a reasonable query passes: {}", app.backend, shallow.body);

        let a = admin.run("{ clients { noSuchField } }", json!({})).await;
        assert_eq!(a.code(), "GRAPHQL_VALIDATION_FAILED", "{}: an unknown field: {}", app.backend, a.body);
        let a = admin.run("query($n: Int) { auditEvents(first: $n) { edges { cursor } } }", json!({"n": "ten"})).await;
        assert_eq!(a.code(), "GRAPHQL_VALIDATION_FAILED", "{}: a variable of the wrong type: {}", app.backend, a.body);
        let a = admin.run("{ clients {", json!({})).await;
        assert_eq!(a.code(), "GRAPHQL_PARSE_FAILED", "{}: a syntax error: {}", app.backend, a.body);
    }
}

// ---------------------------------------------------------------- subscriptions

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(app: &TestApp) -> Ws {
    let mut request = format!("{}/graphql", app.address.replace("http://", "ws://")).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("WebSocket handshake");
    assert_eq!(response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some("graphql-transport-ws"));
    ws
}

async fn ws_send(ws: &mut Ws, message: Value) {
    ws.send(Message::Text(message.to_string().into())).await.expect("send");
}

/// The next protocol message, answering pings; `None` once the server closed.
async fn ws_recv(ws: &mut Ws) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message within 10 s");
        match frame {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(Message::Text(text))) => {
                let v: Value = serde_json::from_str(&text).expect("JSON message");
                if v["type"] == "ping" {
                    ws_send(ws, json!({"type": "pong"})).await;
                    continue;
                }
                return Some(v);
            }
            Some(Ok(_)) => continue,
        }
    }
}

async fn ws_init(app: &TestApp, token: &str) -> Ws {
    let mut ws = ws_connect(app).await;
    ws_send(&mut ws, json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}})).await;
    let ack = ws_recv(&mut ws).await.expect("an answer to connection_init");
    assert_eq!(ack["type"], "connection_ack", "{}: {ack}", app.backend);
    ws
}

const EVENTS: &str = "subscription($from: Int, $f: AuditEventFilter) { events(fromPosition: $from, filter: $f) {
    position streamId type actor { kind id } payload } }";

/// The next `next` payload of subscription `id`.
async fn next_event(app: &TestApp, ws: &mut Ws, id: &str) -> Value {
    let m = ws_recv(ws).await.unwrap_or_else(|| panic!("{}: the subscription ended", app.backend));
    assert_eq!(m["type"], "next", "{}: {m}", app.backend);
    assert_eq!(m["id"], id);
    assert!(m["payload"].get("errors").is_none(), "{}: {m}", app.backend);
    m["payload"]["data"]["events"].clone()
}

#[actix_web::test]
async fn subscription_replays_the_log_then_delivers_live_events() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let audit_token = token_for(&app, ADMIN, "audit").await;
        let service = api_client(&admin, "Service", &["client_credentials"], &["api"], true).await;
        let ordinary = token_for(&app, creds(&service), "api").await;
        api_user(&admin, "early").await;
        let log = whole_log(&app).await;
        let head = log.last().unwrap().position;

        // Everything from the start, then what happens next.
        let mut ws = ws_init(&app, &admin.token).await;
        ws_send(&mut ws, json!({"id": "1", "type": "subscribe", "payload": {"query": EVENTS, "variables": {"from": 0}}})).await;
        for e in &log {
            let got = next_event(&app, &mut ws, "1").await;
            assert_eq!(got["position"], e.position, "{}: replayed in order", app.backend);
            assert_eq!(got["type"], json!(e.event_type));
            assert_eq!(got["streamId"], json!(e.stream_id));
        }
        // From a position: what came after it.
        let mut audit_ws = ws_init(&app, &audit_token).await;
        let filtered = json!({"from": 3, "f": {"eventTypes": ["UserRegistered"]}});
        ws_send(&mut audit_ws, json!({"id": "a", "type": "subscribe", "payload": {"query": EVENTS, "variables": filtered}})).await;
        let early = next_event(&app, &mut audit_ws, "a").await;
        assert_eq!(early["type"], "UserRegistered", "{}: the audit scope may subscribe, filtered", app.backend);
        assert_eq!(serde_json::from_str::<Value>(early["payload"].as_str().unwrap()).unwrap()["username"], "early");
        let mut tail_ws = ws_init(&app, &admin.token).await;
        ws_send(&mut tail_ws, json!({"id": "t", "type": "subscribe", "payload": {"query": EVENTS, "variables": {"from": head - 2}}})).await;
        for p in head - 1..=head {
            assert_eq!(next_event(&app, &mut tail_ws, "t").await["position"], p, "{}: from {} on", app.backend, head - 2);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;

        // A live event appended after the subscriptions started.
        let late = api_user(&admin, "late").await;
        let mut position = head;
        loop {
            let got = next_event(&app, &mut ws, "1").await;
            position += 1;
            assert_eq!(got["position"], position, "{}: live events follow without a gap", app.backend);
            if got["type"] == "UserRegistered" {
                assert_eq!(got["streamId"], json!(format!("user-{late}")));
                assert_eq!(got["actor"], json!({"kind": "CLIENT", "id": ADMIN_ID}), "{}", app.backend);
                break;
            }
            assert!(position < head + 10, "{}: no UserRegistered arrived", app.backend);
        }
        let live = next_event(&app, &mut audit_ws, "a").await;
        assert_eq!(live["streamId"], json!(format!("user-{late}")), "{}: the filtered feed gets the live one only", app.backend);
        assert_eq!(next_event(&app, &mut tail_ws, "t").await["position"], head + 1, "{}", app.backend);

        // Completing one subscription; an invalid one is an error for its id.
        ws_send(&mut ws, json!({"id": "1", "type": "complete"})).await;
        ws_send(&mut ws, json!({"id": "2", "type": "subscribe", "payload": {"query": EVENTS, "variables": {"f": {"userId": late}}}})).await;
        // Events of subscription 1 already on their way may still arrive.
        let mut m = ws_recv(&mut ws).await.expect("an answer");
        while m["id"] == "1" {
            m = ws_recv(&mut ws).await.expect("an answer");
        }
        let errors = if m["type"] == "error" { m["payload"].clone() } else { m["payload"]["errors"].clone() };
        assert_eq!(m["id"], "2", "{}: {m}", app.backend);
        assert_eq!(errors[0]["extensions"]["code"], "INVALID_INPUT", "{}: {m}", app.backend);

        // No valid admin or audit token: no connection.
        for (who, payload) in [
            ("an ordinary token", json!({"Authorization": format!("Bearer {ordinary}")})),
            ("a garbage token", json!({"Authorization": "Bearer nonsense"})),
            ("no token", json!({})),
        ] {
            let mut ws = ws_connect(&app).await;
            ws_send(&mut ws, json!({"type": "connection_init", "payload": payload})).await;
            let answer = ws_recv(&mut ws).await;
            assert!(
                answer.is_none() || answer.as_ref().is_some_and(|m| m["type"] != "connection_ack"),
                "{}: {who} refused: {answer:?}",
                app.backend
            );
            let _ = ws.send(Message::Text(json!({"id": "x", "type": "subscribe", "payload": {"query": EVENTS}}).to_string().into())).await;
            let m = ws_recv(&mut ws).await;
            assert!(m.as_ref().is_none_or(|m| m["type"] != "next"), "{}: {who} receives no event: {m:?}", app.backend);
        }
    }
}
