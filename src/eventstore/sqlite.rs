//! SQLite backend: appends are committed by one dedicated writer thread
//! with its own synchronous connection, `BEGIN IMMEDIATE` transactions (so
//! that a second process on the same file waits instead of failing), WAL
//! with `synchronous=FULL`. Reads go through the sqlx pool.
//!
//! The writer is a plain thread rather than a sqlx connection because sqlx
//! hands every statement to a worker thread and back: five hand-offs per
//! commit, each waiting for a core on a busy machine, made a 0.3 ms fsync
//! into a 2 ms commit that every caller of the batch waited for. For the
//! same reason the writer thread also runs the group commit: it takes the
//! appends straight from the store's queue and answers their callers
//! itself, instead of a tokio task gathering each batch and handing it over
//! (two wake-ups per batch and a gathering wait spent spinning on a core
//! that the token endpoint needed: 10–25 % more tokens per second at 32
//! connections on two cores).

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow};
use tokio::sync::{mpsc, oneshot};

use super::hash::{GENESIS, Hash};
use super::{
    AppendQueue, AppendResult, Backend, Committed, Landed, RawEvent, StoreError, StreamWrite, append_results, batch_time,
    group_commit_blocking, prepare_batch,
};

pub struct SqliteBackend {
    pool: SqlitePool,
    /// Hands the store's append queue to the writer thread, once.
    writer: std_mpsc::SyncSender<(AppendQueue, Committed)>,
}

const SELECT: &str =
    "SELECT position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash FROM events";

impl SqliteBackend {
    pub async fn open(pool: SqlitePool, options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let path = options.get_filename().to_path_buf();
        let (writer, queues) = std_mpsc::sync_channel::<(AppendQueue, Committed)>(1);
        let (opened, is_open) = oneshot::channel();
        std::thread::Builder::new()
            .name("grantd-sqlite-writer".into())
            .spawn(move || match open_writer(&path) {
                Ok(conn) => {
                    let _ = opened.send(Ok(()));
                    // Ends when the backend (the only sender) is dropped.
                    while let Ok((queue, committed)) = queues.recv() {
                        group_commit_blocking(queue, committed, |batch| commit(&conn, batch));
                    }
                }
                Err(e) => {
                    let _ = opened.send(Err(e));
                }
            })
            .map_err(StoreError::db)?;
        is_open.await.map_err(|_| writer_stopped())??;
        Ok(SqliteBackend { pool, writer })
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer thread stopped".into())
}

fn open_writer(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path).map_err(StoreError::db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(StoreError::db)?;
    // FULL: an acknowledged commit survives a power cut, also in WAL mode.
    // The automatic checkpoint runs inside the commit that crosses the
    // threshold, and every caller of that batch and the next waits for it:
    // at 256 pages (1 MiB; SQLite's default is 1,000) each such stall is a
    // quarter as long, which took the token endpoint's p99 down by 0.4–1.2
    // ms in 3 of 3 pairs (4,096 pages doubled it).
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 256;")
        .map_err(StoreError::db)?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// One batch in one transaction; a failed statement rolls all of it back.
fn commit(conn: &rusqlite::Connection, batch: Vec<Vec<StreamWrite>>) -> Result<Vec<AppendResult>, StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(StoreError::db)?;
    let landed = commit_in(conn, &batch).and_then(|landed| conn.execute_batch("COMMIT").map(|()| landed).map_err(StoreError::db));
    if landed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    landed.map(|landed| append_results(batch, landed))
}

fn commit_in(conn: &rusqlite::Connection, batch: &[Vec<StreamWrite>]) -> Result<Landed, StoreError> {
    let head: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")
        .and_then(|mut q| q.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(StoreError::db)?;
    let head = match head {
        Some((p, h)) => (p, to_hash(p, &h)?),
        None => (0, GENESIS),
    };
    let mut versions: HashMap<String, i64> = HashMap::new();
    {
        let mut version_of = conn.prepare_cached("SELECT MAX(stream_version) FROM events WHERE stream_id = ?1").map_err(StoreError::db)?;
        for write in batch.iter().flatten() {
            if versions.contains_key(&write.stream_id) {
                continue;
            }
            let version: Option<i64> = version_of.query_row([&write.stream_id], |r| r.get(0)).map_err(StoreError::db)?;
            if let Some(version) = version {
                versions.insert(write.stream_id.clone(), version);
            }
        }
    }
    let recorded_at = batch_time();
    let (rows, outcomes) = prepare_batch(batch, head, &versions, recorded_at);
    let stamp = format_time(recorded_at);
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO events (position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(StoreError::db)?;
    for r in &rows {
        insert
            .execute(rusqlite::params![
                r.position,
                r.stream_id,
                r.stream_version,
                r.event_type,
                r.schema_version,
                r.payload,
                r.metadata,
                stamp,
                &r.prev_hash[..],
                &r.hash[..],
            ])
            .map_err(StoreError::db)?;
    }
    Ok(Landed::new(&rows, outcomes, recorded_at))
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn read_stream(&self, stream_id: &str, from_version: i64) -> Result<Vec<RawEvent>, StoreError> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE stream_id = ?1 AND stream_version >= ?2 ORDER BY stream_version")))
                .bind(stream_id)
                .bind(from_version)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::db)?;
        rows.iter().map(raw_from_row).collect()
    }

    async fn read_all(&self, after: i64, limit: i64) -> Result<Vec<RawEvent>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE position > ?1 ORDER BY position LIMIT ?2")))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db)?;
        rows.iter().map(raw_from_row).collect()
    }

    async fn read_positions(&self, positions: &[i64]) -> Result<Vec<RawEvent>, StoreError> {
        let list = serde_json::to_string(positions).map_err(StoreError::db)?;
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE position IN (SELECT value FROM json_each(?1)) ORDER BY position")))
                .bind(list)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::db)?;
        rows.iter().map(raw_from_row).collect()
    }

    async fn head(&self) -> Result<i64, StoreError> {
        let head: Option<i64> =
            sqlx::query_scalar("SELECT MAX(position) FROM events").fetch_one(&self.pool).await.map_err(StoreError::db)?;
        Ok(head.unwrap_or(0))
    }

    async fn listen(&self) -> Option<mpsc::Receiver<i64>> {
        None
    }

    fn commit_on_own_thread(&self, queue: AppendQueue, committed: Committed) -> Result<(), (AppendQueue, Committed)> {
        // The writer thread runs the group commit instead of a tokio task
        // that hands each batch to it: two thread wake-ups fewer per batch.
        // A writer thread that is gone drops the queue with the message:
        // every append then fails as closed, as `commit` would fail.
        let _ = self.writer.send((queue, committed));
        Ok(())
    }
}

fn to_hash(position: i64, bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt { position, reason: "hash is not 32 bytes".into() })
}

/// RFC 3339 with microseconds, UTC: sorts as text and reads back exactly.
fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn raw_from_row(row: &SqliteRow) -> Result<RawEvent, StoreError> {
    let position: i64 = row.try_get("position").map_err(StoreError::db)?;
    let corrupt = |what: &str, e: sqlx::Error| StoreError::Corrupt { position, reason: format!("{what}: {e}") };
    let recorded_at: String = row.try_get("recorded_at").map_err(|e| corrupt("recorded_at", e))?;
    let recorded_at = DateTime::parse_from_rfc3339(&recorded_at)
        .map_err(|e| StoreError::Corrupt { position, reason: format!("recorded_at: {e}") })?
        .with_timezone(&Utc);
    Ok(RawEvent {
        position,
        stream_id: row.try_get("stream_id").map_err(|e| corrupt("stream_id", e))?,
        stream_version: row.try_get("stream_version").map_err(|e| corrupt("stream_version", e))?,
        event_type: row.try_get("event_type").map_err(|e| corrupt("event_type", e))?,
        schema_version: row.try_get("schema_version").map_err(|e| corrupt("schema_version", e))?,
        payload: row.try_get("payload").map_err(|e| corrupt("payload", e))?,
        metadata: row.try_get("metadata").map_err(|e| corrupt("metadata", e))?,
        recorded_at,
        prev_hash: row.try_get("prev_hash").map_err(|e| corrupt("prev_hash", e))?,
        hash: row.try_get("hash").map_err(|e| corrupt("hash", e))?,
    })
}
