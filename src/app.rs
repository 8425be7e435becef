//! Builds the running server: database, event store, projections, the live
//! view and the HTTP app, on a listener bound before the app is built (port
//! 0 in tests, so the issuer URL is known up front).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};

use crate::admin::Admin;
use crate::config::ServeConfig;
use crate::db::{Db, DbError};
use crate::eventstore::{EventStore, StoreError};
use crate::http::session::Sealer;
use crate::issuance::Lifetimes;
use crate::keys::{KeyError, MasterKey};
use crate::projections::live::LiveView;
use crate::projections::runner::ProjectionRunner;
use crate::setup::{self, InitOutcome, SetupError};

/// Shared by every request handler.
pub struct AppState {
    pub db: Db,
    pub store: EventStore,
    pub live: LiveView,
    pub issuer: String,
    /// The discovery document, serialized once.
    pub discovery: String,
    pub sealer: Sealer,
    pub secure_cookies: bool,
    pub lifetimes: Lifetimes,
    /// The aggregate actors (grants, consents, …) every command goes through.
    pub admin: Admin,
    pub runner: ProjectionRunner,
    pub master: MasterKey,
    pub login_throttle: crate::http::throttle::LoginThrottle,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    /// What `init` did when `serve` found an empty database.
    pub init: Option<InitOutcome>,
    pub store: EventStore,
    pub db: Db,
    /// The in-memory view the handlers read.
    pub live: LiveView,
}

/// Connects and migrates, ready for the log, for a command that runs once
/// and exits: it does not listen for other nodes' commits
/// ([`EventStore::open_for_one_command`]).
pub async fn open(database_url: &str) -> Result<(Db, EventStore), AppError> {
    let db = connect_and_migrate(database_url).await?;
    let store = EventStore::open_for_one_command(&db).await?;
    Ok((db, store))
}

async fn connect_and_migrate(database_url: &str) -> Result<Db, AppError> {
    let db = Db::connect(database_url).await?;
    db.migrate().await?;
    Ok(db)
}

impl AppState {
    /// The claims of a live access token of this issuer: a valid signature
    /// from one of our keys (`typ: at+jwt`), not expired, issued here, its
    /// grant not revoked. Everything is checked in memory.
    pub fn access_token_claims(&self, token: &str) -> Option<Arc<serde_json::Value>> {
        let claims = self.live.keyring().verify_access_token(token).ok()?;
        let exp = claims.get("exp")?.as_i64()?;
        let grant = claims.get("grant_id")?.as_str()?;
        let fresh = exp > chrono::Utc::now().timestamp();
        let ours = claims.get("iss").and_then(|v| v.as_str()) == Some(self.issuer.as_str());
        (fresh && ours && !self.live.is_revoked(grant)).then_some(claims)
    }
}

impl Application {
    pub async fn build(config: ServeConfig) -> Result<Application, AppError> {
        let listener = TcpListener::bind(&config.bind).map_err(|e| AppError::Bind { addr: config.bind.clone(), reason: e.to_string() })?;
        Self::build_with_listener(config, listener).await
    }

    pub async fn build_with_listener(config: ServeConfig, listener: TcpListener) -> Result<Application, AppError> {
        let db = connect_and_migrate(&config.database_url).await?;
        let store = EventStore::open_pipelined(&db, config.appends_in_flight).await?;
        let master = MasterKey::load(&config.master_key)?;
        let init = match setup::installation(&store).await? {
            Some(_) => None,
            None => Some(setup::initialize(&store, &master, config.admin_client_id.clone(), config.admin_client_secret.clone()).await?),
        };
        let runner = ProjectionRunner::new(db.clone(), store.clone());
        runner.catch_up(|_| {}).await?;
        runner.clone().spawn();
        let live = LiveView::follow(&store, Some(master.clone())).await?;
        if live.keyring().eddsa.is_none() {
            return Err(AppError::Invalid(
                "no active EdDSA signing key could be unsealed: is this the master key the keys were sealed with?".into(),
            ));
        }

        let port = listener.local_addr().map_err(|e| AppError::Bind { addr: config.bind.clone(), reason: e.to_string() })?.port();
        let issuer = config.issuer.trim_end_matches('/').to_string();
        let admin = Admin::new(store.clone());
        let state = web::Data::new(AppState {
            db: db.clone(),
            store: store.clone(),
            live: live.clone(),
            discovery: crate::http::discovery::metadata(&issuer).to_string(),
            secure_cookies: issuer.starts_with("https://"),
            issuer,
            sealer: Sealer::new(master.derive("grantd browser state v1")),
            lifetimes: config.lifetimes,
            admin,
            runner,
            master,
            login_throttle: Default::default(),
        });
        let schema = web::Data::new(crate::graphql::schema(state.clone()));
        let server = HttpServer::new(move || {
            use crate::http::*;
            App::new()
                .app_data(state.clone())
                .app_data(schema.clone())
                .app_data(web::PayloadConfig::new(1024 * 1024))
                .service(health::healthz)
                .service(health::readyz)
                .route("/.well-known/openid-configuration", web::get().to(discovery::openid_configuration))
                .route("/.well-known/oauth-authorization-server", web::get().to(discovery::openid_configuration))
                .route("/jwks", web::get().to(discovery::jwks))
                .route("/authorize", web::get().to(authorize::authorize_get))
                .route("/authorize", web::post().to(authorize::authorize_post))
                .route("/login", web::post().to(authorize::login))
                .route("/consent", web::post().to(authorize::consent))
                .route("/token", web::post().to(token::token))
                .route("/introspect", web::post().to(introspect::introspect))
                .route("/revoke", web::post().to(introspect::revoke))
                .route("/userinfo", web::get().to(userinfo::userinfo))
                .route("/userinfo", web::post().to(userinfo::userinfo))
                .route("/graphql", web::post().to(crate::graphql::graphql_post))
                .route("/audit/export", web::get().to(crate::export::http_export))
                .route("/graphql", web::get().guard(actix_web::guard::Header("upgrade", "websocket")).to(crate::graphql::graphql_ws))
                .route("/graphql", web::get().to(crate::graphql::graphiql))
        })
        .workers(config.workers.max(1))
        .listen(listener)
        .map_err(|e| AppError::Bind { addr: config.bind.clone(), reason: e.to_string() })?
        .run();
        Ok(Application { port, server, init, store, db, live })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// The server future, for tests that spawn it.
    pub fn into_server(self) -> actix_web::dev::Server {
        self.server
    }
}
