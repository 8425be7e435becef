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
    /// PostgreSQL: the admin URL to drop this database (named by `url`) with.
    dropped_with: Option<String>,
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
        TestDb { url, backend: "sqlite", appends_in_flight: 1, _dir: Some(dir), dropped_with: None }
    }

    pub async fn postgres(admin_url: &str) -> TestDb {
        let admin = sqlx::PgPool::connect(admin_url).await.expect("connect to the test PostgreSQL");
        SWEPT.get_or_init(|| sweep_databases_of_ended_runs(&admin)).await;
        let name = format!("{}{}_{}", *HOST_PREFIX, std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..16]);
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create test database");
        admin.close().await;
        let mut url = url::Url::parse(admin_url).expect("admin url");
        url.set_path(&name);
        TestDb { url: url.to_string(), backend: "postgres", appends_in_flight: 1, _dir: None, dropped_with: Some(admin_url.into()) }
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

/// A test's PostgreSQL database goes with it, as a SQLite one goes with its
/// temporary directory (a developer's server otherwise kept every test
/// database of every run). `WITH (FORCE)` ends the connections of a server
/// the test left running. The drop runs on a thread and runtime of its own
/// and nobody waits for it: blocking the test's runtime left that server's
/// connection attempts half-authenticated, and PostgreSQL's drop then waited
/// for them up to the 60 s authentication timeout. A drop that the end of
/// the process cuts short is done by the next run ([`SWEPT`]).
impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin_url) = self.dropped_with.take() else { return };
        let name = url::Url::parse(&self.url).map(|u| u.path().trim_start_matches('/').to_string()).unwrap_or_default();
        std::thread::spawn(move || {
            let dropped =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(sqlx::Error::from).and_then(|runtime| {
                    runtime.block_on(async {
                        use sqlx::Connection;
                        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                        drop_database(&mut admin, &name, true).await
                    })
                });
            if let Err(e) = dropped {
                eprintln!("could not drop the test database {name}: {e}");
            }
        });
    }
}

const TEST_DATABASE: &str = "grantd_test_";

/// Test databases are named `grantd_test_<host>_<pid>_<random>`, by the
/// host and process that created them; this is the part before the pid.
static HOST_PREFIX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    format!("{TEST_DATABASE}{host}_")
});

/// Once per test process: the databases of earlier runs on this host whose
/// process has ended (their drops were cut short), and those of versions
/// that did not drop their databases (`grantd_test_<32 hex>`, dropped only
/// if nobody is connected). Without /proc (not Linux) nothing tells an
/// ended run, and only the latter are swept.
static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

async fn sweep_databases_of_ended_runs(admin: &sqlx::PgPool) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'grantd\\_test\\_%'")
        .fetch_all(admin)
        .await
        .unwrap_or_default();
    let proc_fs = std::path::Path::new("/proc/self").exists();
    for name in names {
        let ended = proc_fs
            && name
                .strip_prefix(HOST_PREFIX.as_str())
                .and_then(|rest| rest.split('_').next()?.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        let legacy = name.strip_prefix(TEST_DATABASE).is_some_and(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()));
        if ended || legacy {
            // Another run's database still in use (legacy names) is left alone.
            let _ = drop_database(admin, &name, ended).await;
        }
    }
}

async fn drop_database<'c>(admin: impl sqlx::PgExecutor<'c>, name: &str, force: bool) -> Result<(), sqlx::Error> {
    let drop = format!("DROP DATABASE IF EXISTS {name}{}", if force { " WITH (FORCE)" } else { "" });
    sqlx::query(sqlx::AssertSqlSafe(drop)).execute(admin).await.map(|_| ())
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
        let mut pipelined = TestDb::postgres(&admin).await;
        (pipelined.appends_in_flight, pipelined.backend) = (2, "postgres, 2 appends in flight");
        dbs.push(pipelined);
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
