//! Connecting to the configured database and applying migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// How long a caller waits for a pooled connection, or for one of its own
/// to open, before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// PostgreSQL connections of their own on the database of a pool, held
/// directly rather than in a sqlx pool, for work that should keep the same
/// backend process warm instead of taking whichever connection the shared
/// pool hands out. Not a sqlx pool because one pings a connection when it
/// hands it out and again when it takes it back: two more round trips
/// through a busy machine around every statement.
pub(crate) struct OwnPostgresConnections {
    options: PgConnectOptions,
    slots: Vec<tokio::sync::Mutex<Option<PgConnection>>>,
}

/// A connection taken out of its slot while in use: unless
/// [`HeldConnection::kept`], it is closed when dropped, so that one left in
/// an unknown state (an error, or a future dropped mid-statement) is never
/// used again; the slot opens a new one on its next use.
pub(crate) struct HeldConnection<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<PgConnection>>,
    pub connection: PgConnection,
}

impl HeldConnection<'_> {
    /// Puts the connection back for the next use of its slot.
    pub fn kept(mut self) {
        *self.slot = Some(self.connection);
    }
}

impl OwnPostgresConnections {
    /// `connections` (at least one) on the database of `pool`, opened on first use.
    /// Their statements keep the server's default plan caching: the pool's
    /// connections plan every statement anew (see [`Db::connect`]), which
    /// statements that only call a function do not need (planning the append
    /// took 15 µs of every commit).
    pub fn new(pool: &PgPool, connections: usize) -> Self {
        let slots = (0..connections.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect();
        let options = (*pool.connect_options()).clone().options([("plan_cache_mode", "auto")]);
        OwnPostgresConnections { options, slots }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// A free connection (waiting for the first slot if none is), opened if
    /// its slot has none.
    pub async fn take(&self) -> Result<HeldConnection<'_>, sqlx::Error> {
        let mut slot = match self.slots.iter().find_map(|slot| slot.try_lock().ok()) {
            Some(slot) => slot,
            None => self.slots[0].lock().await,
        };
        let connection = match slot.take() {
            Some(connection) => connection,
            None => tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&self.options))
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??,
        };
        Ok(HeldConnection { slot, connection })
    }
}

/// A connection pool to one of the two supported backends.
///
/// On SQLite the read models live in a second file beside the log
/// (`<database>.readmodels`): SQLite has one writer per file, and projecting
/// must never make an append wait.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite { pool: SqlitePool, read_models: SqlitePool, options: Box<SqliteConnectOptions>, url: String },
    Postgres { pool: PgPool, url: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("unsupported database URL {0} (use sqlite://… or postgres://…)")]
    Scheme(String),
    #[error("migrating database {url} failed: {reason}")]
    Migrate { url: String, reason: String },
}

impl Db {
    /// Opens (and for SQLite creates) the database behind `url`.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let shown = redact_url(url);
        let fail = |e: &dyn std::fmt::Display| DbError::Connect { url: shown.clone(), reason: one_line(e) };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| fail(&e))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: an acknowledged commit survives a power cut, also in WAL mode.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options.clone())
                .await
                .map_err(|e| fail(&e))?;
            let mut read_models_file = options.get_filename().as_os_str().to_os_string();
            read_models_file.push(".readmodels");
            // Derived data: rebuilt from the log after a crash, so NORMAL sync suffices.
            let read_options = options.clone().filename(read_models_file).synchronous(SqliteSynchronous::Normal);
            let read_models = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(read_options)
                .await
                .map_err(|e| fail(&e))?;
            Ok(Db::Sqlite { pool, read_models, options: Box::new(options), url: shown })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // Plans cached while the log was small (a sequential scan of an
            // empty table) would stay in use as it grows: plan every time.
            let options = PgConnectOptions::from_str(url).map_err(|e| fail(&e))?.options([("plan_cache_mode", "force_custom_plan")]);
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|e| fail(&e))?;
            Ok(Db::Postgres { pool, url: shown })
        } else {
            Err(DbError::Scheme(shown))
        }
    }

    /// Applies the embedded migrations; running them twice is a no-op.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let result = match self {
            Db::Sqlite { pool, read_models, .. } => match sqlx::migrate!("migrations/sqlite").run(pool).await {
                Ok(()) => sqlx::migrate!("migrations/sqlite-readmodels").run(read_models).await,
                Err(e) => Err(e),
            },
            Db::Postgres { pool, .. } => sqlx::migrate!("migrations/postgres").run(pool).await,
        };
        result.map_err(|e| DbError::Migrate { url: self.url().to_string(), reason: one_line(&e) })
    }

    /// The URL with any password replaced by `***`.
    pub fn url(&self) -> &str {
        match self {
            Db::Sqlite { url, .. } | Db::Postgres { url, .. } => url,
        }
    }

    /// This database with read-model connections of the calling thread's
    /// own: SQLite's connections work on threads they start, which inherit
    /// the CPU priority of the thread that opens them (the projection
    /// runner's, lowered); PostgreSQL's one connection belongs to the
    /// calling runtime, and its backend stays warm for the one user.
    pub async fn with_own_read_model_connections(&self) -> Result<Db, DbError> {
        match self {
            Db::Sqlite { pool, read_models, options, url } => {
                let read_models = one_connection_like(read_models, url).await?;
                Ok(Db::Sqlite { pool: pool.clone(), read_models, options: options.clone(), url: url.clone() })
            }
            Db::Postgres { pool, url } => Ok(Db::Postgres { pool: one_connection_like(pool, url).await?, url: url.clone() }),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres { .. })
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { pool, read_models, .. } => {
                pool.close().await;
                read_models.close().await;
            }
            Db::Postgres { pool, .. } => pool.close().await,
        }
    }
}

/// A pool of one connection, opened now, with the options of `pool`.
async fn one_connection_like<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, url: &str) -> Result<sqlx::Pool<DB>, DbError> {
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with((*pool.connect_options()).clone())
        .await
        .map_err(|e| DbError::Connect { url: url.to_string(), reason: one_line(&e) })
}

/// Replaces the password of a URL so that it can be logged.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

pub(crate) fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("sqlite://grantd.db"), "sqlite://grantd.db");
    }
}
