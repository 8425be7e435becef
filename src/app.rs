//! Builds the running server: database, event store, projections, the
//! revocation index and the HTTP app, on a listener bound before the app is
//! built (port 0 in tests, so the issuer URL is known up front).

use std::net::TcpListener;

use actix_web::{App, HttpServer, web};

use crate::config::ServeConfig;
use crate::db::{Db, DbError};
use crate::eventstore::{EventStore, StoreError};
use crate::keys::{KeyError, MasterKey};
use crate::projections::revocation::RevocationIndex;
use crate::projections::runner::ProjectionRunner;
use crate::setup::{self, InitOutcome, SetupError};

/// Shared by every request handler.
pub struct AppState {
    pub db: Db,
    pub store: EventStore,
    pub revocations: RevocationIndex,
    pub issuer: String,
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
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    /// What `init` did when `serve` found an empty database.
    pub init: Option<InitOutcome>,
    pub store: EventStore,
    pub db: Db,
}

/// Connects and migrates, ready for the log.
pub async fn open(database_url: &str) -> Result<(Db, EventStore), AppError> {
    let db = Db::connect(database_url).await?;
    db.migrate().await?;
    let store = EventStore::open(&db).await?;
    Ok((db, store))
}

impl Application {
    pub async fn build(config: ServeConfig) -> Result<Application, AppError> {
        let listener = TcpListener::bind(&config.bind).map_err(|e| AppError::Bind { addr: config.bind.clone(), reason: e.to_string() })?;
        Self::build_with_listener(config, listener).await
    }

    pub async fn build_with_listener(config: ServeConfig, listener: TcpListener) -> Result<Application, AppError> {
        let (db, store) = open(&config.database_url).await?;
        let init = match setup::installation(&store).await? {
            Some(_) => None,
            None => {
                let master = MasterKey::load(&config.master_key)?;
                Some(setup::initialize(&store, &master, config.admin_client_id.clone(), config.admin_client_secret.clone()).await?)
            }
        };
        let runner = ProjectionRunner::new(db.clone(), store.clone());
        runner.catch_up(|_| {}).await?;
        runner.spawn();
        let revocations = RevocationIndex::follow(&store).await?;

        let port = listener.local_addr().map_err(|e| AppError::Bind { addr: config.bind.clone(), reason: e.to_string() })?.port();
        let state = web::Data::new(AppState { db: db.clone(), store: store.clone(), revocations, issuer: config.issuer.clone() });
        let server = HttpServer::new(move || {
            App::new().app_data(state.clone()).service(crate::http::health::healthz).service(crate::http::health::readyz)
        })
        .workers(config.workers.max(1))
        .listen(listener)
        .map_err(|e| AppError::Bind { addr: config.bind.clone(), reason: e.to_string() })?
        .run();
        Ok(Application { port, server, init, store, db })
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
