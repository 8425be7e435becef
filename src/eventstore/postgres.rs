//! PostgreSQL backend. Every append transaction first takes one global
//! advisory lock, then reads the head and assigns positions head+1…: commits
//! are therefore serialized in position order across every process sharing
//! the database, and a reader that has seen position N never later finds a
//! newly committed event below N. The lock is released only once the
//! transaction is visible, so the next writer always builds on it.
//!
//! The usual append takes one round trip: the writer remembers the head its
//! last batch produces and guesses the versions of the streams it writes
//! from what the appends expect, prepares the rows from that, and one
//! statement (`grantd_append_if_current`, outside a transaction block, so it
//! commits by itself) takes the lock, checks the guess and inserts — or
//! returns the actual head and versions to prepare again. Four round trips
//! per batch (begin, lock, insert, commit) had made the commit, not the
//! machine, the limit of the token endpoint.
//!
//! The appends go over connections of their own (one per batch in flight),
//! not the shared pool: one backend process that stays warm, instead of
//! whichever of sixteen the pool hands out (measured on two cores: 15–20 %
//! more tokens per second, a tenth less CPU in PostgreSQL per token), and
//! held directly, without the pool's ping before and after every commit. One
//! batch in flight is the default: on a machine that also runs PostgreSQL,
//! a second batch halves the batches without shortening any commit, and
//! every batch costs as much again in both processes. Where the database
//! is a network hop away, two hide the round trip: the second is prepared
//! on the head the first will produce and waits for it at the lock; if the
//! first fails, the second's check fails too.
//!
//! Tried and not kept (two cores, 32 connections, client credentials):
//! - Releasing the lock before the WAL flush. Each append committed with
//!   `synchronous_commit = off`, and a second, synchronous transaction on
//!   the same connection made it durable, so that the next batch could
//!   insert while the last one flushed. A transaction that only takes a
//!   transaction id does not flush: PostgreSQL flushes only for a commit
//!   that wrote WAL of its own. One that writes a transactional logical
//!   message (`pg_logical_emit_message(true, ...)`) does, and durable that
//!   way it was slower: 12.6k against 14.0k tokens/s with one batch in
//!   flight, 10.3k with two (medians of 4 interleaved rounds). Other
//!   readers would also see a batch before it is durable.
//! - `json` instead of `jsonb` for payload and metadata. The append
//!   statement takes ~40 µs less per 12-event batch (about 195 against
//!   236 µs, best of six runs of 1,000 calls), but the migration would have
//!   to rewrite every stored event under an exclusive lock, and end to end
//!   the difference was within the noise of interleaved runs.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::Shared;
use sqlx::Connection;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgRow};
use tokio::sync::{mpsc, oneshot};

use super::hash::{GENESIS, Hash};
use super::{
    AppendResult, Backend, ExpectedVersion, Landed, PreparedRow, RawEvent, StoreError, StreamWrite, append_results, batch_time,
    prepare_batch,
};
use crate::db::OwnPostgresConnections;

/// Arbitrary constant naming grantd's append lock ("grantd" in ASCII).
const APPEND_LOCK: i64 = 0x6772_616e_7464;
const CHANNEL: &str = "grantd_events";

const SELECT: &str = "SELECT position, stream_id, stream_version, event_type, schema_version, payload::text AS payload, metadata::text AS metadata, recorded_at, prev_hash, hash FROM events";

/// One-statement attempts before a batch falls back to the transaction
/// that cannot miss (other nodes appending all the time).
const GUESSES: usize = 3;

pub struct PostgresBackend {
    pool: PgPool,
    /// The appends' own connections, one per batch in flight.
    appends: OwnPostgresConnections,
    /// Where the next batch goes: after the last one prepared.
    chain: std::sync::Mutex<Chain>,
    /// Names this process in its commit announcements, which it need not
    /// read back: it publishes its own commits directly.
    origin: String,
}

#[derive(Default)]
struct Chain {
    /// The head the last prepared batch produces once committed; `None` when
    /// unknown (at start, or after a failed commit). Only a guess: the
    /// append checks it under the lock.
    head: Option<(i64, Hash)>,
    /// Resolves when the last batch to start has finished, either way.
    finished: Option<Shared<oneshot::Receiver<()>>>,
}

/// Rows of `grantd_lock_and_read_heads` and `grantd_append_if_current`.
type Verdict = Vec<(Option<String>, i64, Option<Vec<u8>>)>;
/// The head of the log and the version of each stream of a batch.
type LogState = ((i64, Hash), HashMap<String, i64>);

impl PostgresBackend {
    /// `in_flight`: batches committing at once (see the module documentation).
    pub fn new(pool: PgPool, in_flight: usize) -> Self {
        let appends = OwnPostgresConnections::new(&pool, in_flight);
        PostgresBackend { pool, appends, chain: Default::default(), origin: uuid::Uuid::new_v4().simple().to_string() }
    }

    fn remember_head(&self, head: Option<(i64, Hash)>) {
        if let Ok(mut chain) = self.chain.lock() {
            chain.head = head;
        }
    }

    /// The batch in one statement, built on the head the batch before it
    /// produces (see the module documentation).
    async fn commit_guessing(&self, connection: &mut PgConnection, batch: &[Vec<StreamWrite>]) -> Result<Landed, StoreError> {
        // Dropped (the batch finished, either way) when this returns.
        let (_finished, finished) = oneshot::channel::<()>();
        let (mut head, mut before) = match self.chain.lock() {
            Ok(mut chain) => (chain.head.unwrap_or((0, GENESIS)), chain.finished.replace(finished.shared())),
            Err(_) => ((0, GENESIS), None),
        };
        // A stream's version as its first append in the batch expects it.
        let mut versions: HashMap<String, i64> = HashMap::new();
        for write in batch.iter().flatten() {
            let guess = match write.expected {
                ExpectedVersion::Exact(v) => v,
                ExpectedVersion::NoStream | ExpectedVersion::Any => 0,
            };
            versions.entry(write.stream_id.clone()).or_insert(guess);
        }
        for _ in 0..GUESSES {
            let recorded_at = batch_time();
            let (rows, outcomes) = prepare_batch(batch, head, &versions, recorded_at);
            // The next batch builds on this one, even before it lands.
            self.remember_head(Some(rows.last().map_or(head, |r| (r.position, r.hash))));
            match append_if_current(&mut *connection, head, &versions, &rows, recorded_at, &self.origin).await? {
                Attempt::Appended => return Ok(Landed::new(&rows, outcomes, recorded_at)),
                // Overtook the batch it builds on at the lock: wait for that
                // one and try the same guess again.
                Attempt::Moved((actual_head, _)) if actual_head.0 < head.0 && before.is_some() => {
                    if let Some(before) = before.take() {
                        let _ = before.await;
                    }
                }
                Attempt::Moved((actual_head, actual_versions)) => {
                    tracing::trace!(guessed = head.0, actual = actual_head.0, "append guess missed");
                    head = actual_head;
                    versions = actual_versions;
                }
                // Which append it was, and whether the others may land,
                // only the versions read under the lock tell.
                Attempt::StreamExists => break,
            }
        }
        self.commit_locked(connection, batch).await
    }

    /// The batch in a transaction that reads the head and the versions under
    /// the lock first: it cannot miss, at four round trips.
    async fn commit_locked(&self, connection: &mut PgConnection, batch: &[Vec<StreamWrite>]) -> Result<Landed, StoreError> {
        let mut streams: Vec<&str> = batch.iter().flatten().map(|w| w.stream_id.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        let mut tx = connection.begin().await.map_err(StoreError::db)?;
        let heads: Verdict = sqlx::query_as("SELECT * FROM grantd_lock_and_read_heads($1, $2)")
            .bind(APPEND_LOCK)
            .bind(&streams)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::db)?;
        let (head, versions) = head_and_versions(heads)?;
        let recorded_at = batch_time();
        let (rows, outcomes) = prepare_batch(batch, head, &versions, recorded_at);
        // Under the lock already taken the check cannot fail.
        if !matches!(append_if_current(&mut *tx, head, &versions, &rows, recorded_at, &self.origin).await?, Attempt::Appended) {
            return Err(StoreError::Unavailable("the log moved under the append lock".into()));
        }
        tx.commit().await.map_err(StoreError::db)?;
        self.remember_head(Some(rows.last().map_or(head, |r| (r.position, r.hash))));
        Ok(Landed::new(&rows, outcomes, recorded_at))
    }
}

/// What one statement of [`append_if_current`] did.
enum Attempt {
    /// The guess held: the rows are in (committed with the statement, outside
    /// a transaction block).
    Appended,
    /// The head or a stream's version was not as guessed: the actual ones.
    Moved(LogState),
    /// A stream guessed to be new exists: the unique index on stream and
    /// version refused its first event, and nothing was appended.
    StreamExists,
}

/// PostgreSQL's `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// Appends with the guessed head and versions.
///
/// Streams guessed to be new are left out of the function's version check:
/// the unique index on `(stream_id, stream_version)` refuses a first event
/// of a stream that exists anyway, and every client-credentials token is a
/// new stream, so the check would look each one up twice (its share of
/// the statement was about an eighth).
async fn append_if_current<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    head: (i64, Hash),
    versions: &HashMap<String, i64>,
    rows: &[PreparedRow<'_>],
    recorded_at: DateTime<Utc>,
    origin: &str,
) -> Result<Attempt, StoreError> {
    let (streams, expected): (Vec<&str>, Vec<i64>) = versions.iter().filter(|(_, v)| **v > 0).map(|(s, v)| (s.as_str(), *v)).unzip();
    let verdict: Result<Verdict, sqlx::Error> = sqlx::query_as(
        "SELECT * FROM grantd_append_if_current($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(APPEND_LOCK)
    .bind(head.0)
    // An empty log has no head hash.
    .bind((head.0 > 0).then_some(&head.1[..]))
    .bind(streams)
    .bind(expected)
    .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.stream_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.stream_version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_type).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.schema_version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.payload).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.metadata.as_str()).collect::<Vec<_>>())
    .bind(recorded_at)
    .bind(rows.iter().map(|r| &r.prev_hash[..]).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| &r.hash[..]).collect::<Vec<_>>())
    .bind(CHANNEL)
    .bind(origin)
    .fetch_all(executor)
    .await;
    match verdict {
        Ok(verdict) if verdict.is_empty() => Ok(Attempt::Appended),
        Ok(verdict) => head_and_versions(verdict).map(Attempt::Moved),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNIQUE_VIOLATION) => Ok(Attempt::StreamExists),
        Err(e) => Err(StoreError::db(e)),
    }
}

/// Reads the rows both append functions return: the head (stream NULL; no
/// row or no hash for an empty log) and the version of each stream.
fn head_and_versions(rows: Verdict) -> Result<LogState, StoreError> {
    let mut head = (0, GENESIS);
    let mut versions = HashMap::new();
    for (stream, version, hash) in rows {
        match (stream, hash) {
            (Some(stream), _) => {
                versions.insert(stream, version);
            }
            (None, Some(hash)) => head = (version, to_hash(version, &hash)?),
            (None, None) => {}
        }
    }
    Ok((head, versions))
}

#[async_trait]
impl Backend for PostgresBackend {
    async fn commit(&self, batch: Vec<Vec<StreamWrite>>) -> Result<Vec<AppendResult>, StoreError> {
        let landed = async {
            let mut held = self.appends.take().await.map_err(StoreError::db)?;
            let landed = self.commit_guessing(&mut held.connection, &batch).await?;
            held.kept();
            Ok(landed)
        }
        .await;
        let result = landed.map(|landed| append_results(batch, landed));
        if result.is_err() {
            // The outcome may be unknown: guess nothing from it.
            self.remember_head(None);
        }
        result
    }

    fn commits_in_flight(&self) -> usize {
        self.appends.len()
    }

    async fn read_stream(&self, stream_id: &str, from_version: i64) -> Result<Vec<RawEvent>, StoreError> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version")))
                .bind(stream_id)
                .bind(from_version)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::db)?;
        rows.iter().map(raw_from_row).collect()
    }

    async fn read_all(&self, after: i64, limit: i64) -> Result<Vec<RawEvent>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE position > $1 ORDER BY position LIMIT $2")))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db)?;
        rows.iter().map(raw_from_row).collect()
    }

    async fn read_positions(&self, positions: &[i64]) -> Result<Vec<RawEvent>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE position = ANY($1) ORDER BY position")))
            .bind(positions)
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
        let pool = self.pool.clone();
        let origin = self.origin.clone();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if listener.listen(CHANNEL).await.is_ok() {
                            // Named only once listening: every batch whose
                            // append sees the name is announced to us.
                            let _naming = NamedListener::start(pool.clone(), origin.clone());
                            loop {
                                let notification = tokio::select! {
                                    notification = listener.recv() => notification,
                                    // The store is gone: so is this node's name.
                                    () = tx.closed() => return,
                                };
                                let Ok(notification) = notification else { break };
                                let (position, from) = notification.payload().split_once(' ').unwrap_or((notification.payload(), ""));
                                if from == origin {
                                    continue;
                                }
                                let announced = position.parse().unwrap_or(i64::MAX);
                                // A full channel already holds a wake-up.
                                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(announced) {
                                    return;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "LISTEN connection failed; polling meanwhile"),
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Some(rx)
    }
}

/// How often a listening node renews its row in `grantd_listeners`; appends
/// announce their commits to rows seen in the last minute.
const LISTENER_HEARTBEAT: Duration = Duration::from_secs(10);

/// This node's row in `grantd_listeners` while its listener runs: other
/// nodes' appends announce their commits only while it is fresh (migration
/// 0010). Dropping it stops the renewals and removes the row.
struct NamedListener {
    renewals: tokio::task::JoinHandle<()>,
    pool: PgPool,
    node: String,
}

impl NamedListener {
    fn start(pool: PgPool, node: String) -> Self {
        let renewals = tokio::spawn({
            let (pool, node) = (pool.clone(), node.clone());
            async move {
                let mut heartbeat = tokio::time::interval(LISTENER_HEARTBEAT);
                loop {
                    heartbeat.tick().await;
                    let named = sqlx::query(
                        "INSERT INTO grantd_listeners (node, seen_at) VALUES ($1, now()) ON CONFLICT (node) DO UPDATE SET seen_at = now()",
                    )
                    .bind(&node)
                    .execute(&pool)
                    .await;
                    if let Err(e) = named {
                        tracing::debug!(error = %crate::db::one_line(&e), "cannot name this node a listener; other nodes' commits reach it by polling");
                    }
                }
            }
        });
        NamedListener { renewals, pool, node }
    }
}

impl Drop for NamedListener {
    fn drop(&mut self) {
        self.renewals.abort();
        let (pool, node) = (self.pool.clone(), std::mem::take(&mut self.node));
        // Best effort (the runtime may be going away): a row left behind only
        // makes other nodes announce to nobody for up to a minute.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = sqlx::query("DELETE FROM grantd_listeners WHERE node = $1").bind(node).execute(&pool).await;
            });
        }
    }
}

fn to_hash(position: i64, bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt { position, reason: "hash is not 32 bytes".into() })
}

fn raw_from_row(row: &PgRow) -> Result<RawEvent, StoreError> {
    let position: i64 = row.try_get("position").map_err(StoreError::db)?;
    let corrupt = |what: &str, e: sqlx::Error| StoreError::Corrupt { position, reason: format!("{what}: {e}") };
    let recorded_at: DateTime<Utc> = row.try_get("recorded_at").map_err(|e| corrupt("recorded_at", e))?;
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
