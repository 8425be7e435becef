//! Shared test fixtures: a fresh database per test on every backend.

use std::future::Future;
use std::time::{Duration, Instant};

use grantd::db::Db;
use grantd::eventstore::EventStore;

/// One database for one test.
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    /// Append batches committing at once (PostgreSQL; see `EventStore::open_pipelined`).
    pub appends_in_flight: usize,
    _dir: Option<tempfile::TempDir>,
}

/// The PostgreSQL server for tests, as an admin URL (any database).
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("GRANTD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but GRANTD_TEST_POSTGRES_URL is not set: the PostgreSQL suite must not be skipped in CI");
            }
            None
        }
    }
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("grantd.db").display());
        TestDb { url, backend: "sqlite", appends_in_flight: 1, _dir: Some(dir) }
    }

    pub async fn postgres(admin_url: &str) -> TestDb {
        let name = format!("grantd_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(admin_url).await.expect("connect to the test PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create test database");
        admin.close().await;
        let mut url = url::Url::parse(admin_url).expect("admin url");
        url.set_path(&name);
        TestDb { url: url.to_string(), backend: "postgres", appends_in_flight: 1, _dir: None }
    }

    /// A connected, migrated database.
    pub async fn open(&self) -> Db {
        let db = Db::connect(&self.url).await.expect("connect");
        db.migrate().await.expect("migrate");
        db
    }

    pub async fn store(&self) -> (Db, EventStore) {
        let db = self.open().await;
        let store = EventStore::open_pipelined(&db, self.appends_in_flight).await.expect("open store");
        (db, store)
    }
}

/// SQLite always; PostgreSQL when `GRANTD_TEST_POSTGRES_URL` is set (and
/// required when `CI=true`).
pub async fn backends() -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite().await];
    if let Some(admin) = postgres_admin_url() {
        dbs.push(TestDb::postgres(&admin).await);
    }
    dbs
}

/// [`backends`], plus PostgreSQL again with two append batches in flight,
/// the setting for a database a network hop away (named apart in failures).
pub async fn backends_and_pipelined_postgres() -> Vec<TestDb> {
    let mut dbs = backends().await;
    if let Some(admin) = postgres_admin_url() {
        dbs.push(TestDb { appends_in_flight: 2, backend: "postgres, 2 appends in flight", ..TestDb::postgres(&admin).await });
    }
    dbs
}

/// Polls `check` until it yields `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
