//! SQLite backend: one dedicated writer connection, `BEGIN IMMEDIATE`
//! transactions (so that a second process on the same file waits instead of
//! failing), WAL with `synchronous=FULL`.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{Mutex, mpsc};

use super::hash::{GENESIS, Hash};
use super::{AppendResult, Backend, RawEvent, StoreError, StreamWrite, batch_time, prepare_batch, recorded_from_prepared};

pub struct SqliteBackend {
    pool: SqlitePool,
    writer: Mutex<SqliteConnection>,
}

/// SQLite allows 32766 bound values per statement; 10 per row.
const ROWS_PER_INSERT: usize = 1000;

const SELECT: &str =
    "SELECT position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash FROM events";

impl SqliteBackend {
    pub async fn open(pool: SqlitePool, options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let writer = SqliteConnection::connect_with(&options).await.map_err(StoreError::db)?;
        Ok(SqliteBackend { pool, writer: Mutex::new(writer) })
    }

    async fn commit_in(conn: &mut SqliteConnection, batch: &[Vec<StreamWrite>]) -> Result<Vec<AppendResult>, StoreError> {
        let head: Option<(i64, Vec<u8>)> = sqlx::query_as("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(StoreError::db)?;
        let head = match head {
            Some((p, h)) => (p, to_hash(p, &h)?),
            None => (0, GENESIS),
        };
        let streams: Vec<&str> = batch.iter().flatten().map(|w| w.stream_id.as_str()).collect();
        let streams = serde_json::to_string(&streams).map_err(StoreError::db)?;
        let versions: HashMap<String, i64> = sqlx::query_as(
            "SELECT stream_id, MAX(stream_version) FROM events WHERE stream_id IN (SELECT value FROM json_each(?1)) GROUP BY stream_id",
        )
        .bind(streams)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::db)?
        .into_iter()
        .collect();
        let recorded_at = batch_time();
        let (rows, outcomes) = prepare_batch(batch, head, &versions, recorded_at);
        let stamp = format_time(recorded_at);
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO events (position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.position)
                    .push_bind(r.stream_id.as_str())
                    .push_bind(r.stream_version)
                    .push_bind(r.event_type.as_str())
                    .push_bind(r.schema_version)
                    .push_bind(r.payload.as_str())
                    .push_bind(r.metadata.as_str())
                    .push_bind(stamp.as_str())
                    .push_bind(&r.prev_hash[..])
                    .push_bind(&r.hash[..]);
            });
            q.build().execute(&mut *conn).await.map_err(StoreError::db)?;
        }
        let recorded = recorded_from_prepared(&rows, recorded_at);
        Ok(outcomes.into_iter().map(|o| o.map(|range| recorded[range].to_vec())).collect())
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn commit(&self, batch: Vec<Vec<StreamWrite>>) -> Result<Vec<AppendResult>, StoreError> {
        let mut conn = self.writer.lock().await;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(StoreError::db)?;
        match Self::commit_in(&mut conn, &batch).await {
            Ok(results) => {
                if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    return Err(StoreError::db(e));
                }
                Ok(results)
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }

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
