//! The HTTP server in-process on a random port, and a browser that fills in
//! its forms.

use std::time::Duration;

use grantd::app::Application;
use grantd::config::ServeConfig;
use grantd::db::Db;
use grantd::domain::Actor;
use grantd::domain::client::{ClientSettings, GrantType, SigningAlg};
use grantd::domain::user::UserProfile;
use grantd::eventstore::{CommandContext, EventStore};
use grantd::keys::MasterKeySource;
use grantd::projections::live::LiveView;

use crate::helpers::{TestDb, backends, eventually};

pub const ADMIN_ID: &str = "admin";
pub const ADMIN_SECRET: &str = "admin-secret-for-tests-0123456789";

/// A running grantd on port 0 with its own database.
pub struct TestApp {
    pub address: String,
    pub backend: &'static str,
    pub store: EventStore,
    pub db: Db,
    pub live: LiveView,
    _db: TestDb,
}

/// A client registered for a test.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_uri: String,
}

impl TestApp {
    pub async fn spawn(tdb: TestDb) -> TestApp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = listener.local_addr().unwrap().port();
        let address = format!("http://127.0.0.1:{port}");
        let config = ServeConfig {
            database_url: tdb.url.clone(),
            bind: format!("127.0.0.1:{port}"),
            issuer: address.clone(),
            master_key: MasterKeySource::Value("11".repeat(32)),
            admin_client_id: Some(ADMIN_ID.into()),
            admin_client_secret: Some(ADMIN_SECRET.into()),
            workers: 2,
            appends_in_flight: 1,
            lifetimes: Default::default(),
        };
        let app = Application::build_with_listener(config, listener).await.expect("build app");
        assert!(app.init.is_some(), "a fresh database is initialised");
        let (store, db, live) = (app.store.clone(), app.db.clone(), app.live.clone());
        actix_web::rt::spawn(app.into_server());
        TestApp { address, backend: tdb.backend, store, db, live, _db: tdb }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Registers a client as an operator would and waits until the server sees it.
    pub async fn register_client(
        &self,
        name: &str,
        grant_types: &[GrantType],
        scopes: &[&str],
        confidential: bool,
        first_party: bool,
    ) -> TestClient {
        self.register_client_with(name, grant_types, scopes, confidential, first_party, SigningAlg::EdDSA, "https://app.example/callback")
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn register_client_with(
        &self,
        name: &str,
        grant_types: &[GrantType],
        scopes: &[&str],
        confidential: bool,
        first_party: bool,
        alg: SigningAlg,
        redirect_uri: &str,
    ) -> TestClient {
        let settings = ClientSettings {
            name: name.into(),
            redirect_uris: vec![redirect_uri.into()],
            grant_types: grant_types.to_vec(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            first_party,
            id_token_signed_response_alg: alg,
        };
        let registered =
            grantd::admin::register_client(&self.store, None, settings, confidential, &CommandContext::by(Actor::client(ADMIN_ID)))
                .await
                .expect("register client");
        let live = self.live.clone();
        let id = registered.client_id.clone();
        eventually("the server to see the client", Duration::from_secs(5), || {
            let found = live.client(&id).is_some();
            async move { found.then_some(()) }
        })
        .await;
        TestClient { client_id: registered.client_id, client_secret: registered.client_secret, redirect_uri: redirect_uri.into() }
    }

    /// Registers a user and waits until the server sees it; returns the user id.
    pub async fn register_user(&self, username: &str, password: &str) -> String {
        let profile = UserProfile {
            username: username.into(),
            email: Some(format!("{username}@example.com")),
            name: Some(format!("{username} Example")),
        };
        let id = grantd::admin::register_user(&self.store, profile, password, &CommandContext::by(Actor::client(ADMIN_ID)))
            .await
            .expect("register user");
        let live = self.live.clone();
        let wanted = id.clone();
        eventually("the server to see the user", Duration::from_secs(5), || {
            let found = live.user(&wanted).is_some();
            async move { found.then_some(()) }
        })
        .await;
        id
    }

    pub async fn healthz(&self) -> reqwest::Response {
        reqwest::get(self.url("/healthz")).await.expect("GET /healthz")
    }

    pub async fn readyz(&self) -> reqwest::Response {
        reqwest::get(self.url("/readyz")).await.expect("GET /readyz")
    }

    /// Every event type recorded in the log, in order.
    pub async fn event_types(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store.read_all(after, 1000).await.expect("read log");
            let Some(last) = page.last().map(|e| e.position) else { return out };
            out.extend(page.into_iter().map(|e| e.event_type));
            after = last;
        }
    }
}

/// A page the browser received.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the hidden or text input `name` in the page's form.
    pub fn input(&self, name: &str) -> Option<String> {
        inputs(&self.body).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A cookie-keeping HTTP client that does not follow redirects, so each
/// step of a flow can be checked.
pub struct Browser {
    pub client: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let client = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser { client }
    }

    pub async fn page(response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let location = headers.get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = response.text().await.unwrap_or_default();
        Page { status, location, headers, body }
    }

    pub async fn get(&self, url: &str) -> Page {
        Self::page(self.client.get(url).send().await.expect("GET")).await
    }

    /// Submits the page's form to `base` + its action: every input of the
    /// form, overridden or extended by `fields`.
    pub async fn submit(&self, base: &str, page: &Page, fields: &[(&str, &str)]) -> Page {
        let action = attribute(form_tag(&page.body).expect("page has a form"), "action").expect("form has an action");
        let mut pairs: Vec<(String, String)> =
            inputs(&page.body).into_iter().filter(|(n, _)| !fields.iter().any(|(f, _)| f == n)).collect();
        pairs.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let url = if action.starts_with("http") { action } else { format!("{base}{action}") };
        Self::page(self.client.post(url).form(&pairs).send().await.expect("POST form")).await
    }
}

fn form_tag(html: &str) -> Option<&str> {
    let start = html.find("<form")?;
    let end = html[start..].find('>')? + start;
    Some(&html[start..end])
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// The named `<input>` fields of a page with their values.
fn inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<input") {
        let end = rest[start..].find('>').map_or(rest.len(), |e| e + start);
        let tag = &rest[start..end];
        if let Some(name) = attribute(tag, "name") {
            out.push((name, attribute(tag, "value").unwrap_or_default()));
        }
        rest = &rest[end..];
    }
    out
}

#[actix_web::test]
async fn health_and_readiness_on_every_backend() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let health = app.healthz().await;
        assert_eq!(health.status(), 200, "{}", app.backend);
        let ready = app.readyz().await;
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready");
        assert_eq!(body["log_head"], 7, "{}: init wrote its seven events", app.backend);
    }
}
