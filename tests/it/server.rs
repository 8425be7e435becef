//! The HTTP server in-process on a random port.

use grantd::app::Application;
use grantd::config::ServeConfig;
use grantd::keys::MasterKeySource;

use crate::helpers::{TestDb, backends};

/// A running grantd on port 0 with its own database.
pub struct TestApp {
    pub address: String,
    pub app_db: TestDb,
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
            admin_client_id: None,
            admin_client_secret: None,
            workers: 1,
        };
        let app = Application::build_with_listener(config, listener).await.expect("build app");
        assert!(app.init.is_some(), "a fresh database is initialised");
        actix_web::rt::spawn(app.into_server());
        TestApp { address, app_db: tdb }
    }

    pub async fn healthz(&self) -> reqwest::Response {
        reqwest::get(format!("{}/healthz", self.address)).await.expect("GET /healthz")
    }

    pub async fn readyz(&self) -> reqwest::Response {
        reqwest::get(format!("{}/readyz", self.address)).await.expect("GET /readyz")
    }
}

#[actix_web::test]
async fn health_and_readiness_on_every_backend() {
    for tdb in backends().await {
        let backend = tdb.backend;
        let app = TestApp::spawn(tdb).await;
        let health = app.healthz().await;
        assert_eq!(health.status(), 200, "{backend}");
        let ready = app.readyz().await;
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready");
        assert_eq!(body["log_head"], 4, "{backend}: init wrote its four events ({})", app.app_db.url.len());
    }
}
