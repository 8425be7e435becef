//! Typed configuration, resolved from flags and the environment.

use std::path::PathBuf;
use std::str::FromStr;

use crate::keys::MasterKeySource;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://grantd.db";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database_url: String,
    pub bind: String,
    pub issuer: String,
    pub master_key: MasterKeySource,
    pub admin_client_id: Option<String>,
    pub admin_client_secret: Option<String>,
    /// HTTP worker threads (default: one per core).
    pub workers: usize,
    /// PostgreSQL: append batches committing at once (default 1).
    pub appends_in_flight: usize,
    pub lifetimes: crate::issuance::Lifetimes,
}

/// `--database-url`, else `GRANTD_DATABASE_URL` (read by clap), else
/// `DATABASE_URL`, else the embedded default.
pub fn database_url(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty())).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
}

/// `GRANTD_MASTER_KEY` (the key itself) wins over `--master-key-file`; with
/// neither, a SQLite database gets a key file created beside it. PostgreSQL
/// serves several nodes, which must share one key: it must be given.
pub fn master_key_source(file: Option<PathBuf>, database_url: &str) -> Result<MasterKeySource, String> {
    if let Some(value) = std::env::var("GRANTD_MASTER_KEY").ok().filter(|s| !s.is_empty()) {
        return Ok(MasterKeySource::Value(value));
    }
    if let Some(path) = file {
        return Ok(MasterKeySource::File(path));
    }
    if database_url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(database_url).map_err(|e| e.to_string())?;
        let db_path = options.get_filename().to_path_buf();
        let mut name = db_path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "grantd.db".into());
        name.push(".master-key");
        return Ok(MasterKeySource::Generated(db_path.with_file_name(name)));
    }
    Err("a PostgreSQL deployment needs its master key: pass --master-key-file or set GRANTD_MASTER_KEY".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_master_key_lives_beside_the_database() {
        if std::env::var("GRANTD_MASTER_KEY").is_ok() {
            return;
        }
        match master_key_source(None, "sqlite:///var/lib/grantd/main.db").unwrap() {
            MasterKeySource::Generated(p) => assert_eq!(p, PathBuf::from("/var/lib/grantd/main.db.master-key")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(master_key_source(None, "postgres://h/db").is_err());
        assert!(matches!(master_key_source(Some("k".into()), "postgres://h/db"), Ok(MasterKeySource::File(_))));
    }
}
