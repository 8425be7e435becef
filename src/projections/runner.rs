//! Feeds the projections from the log. Each batch is applied in one
//! transaction that also moves the checkpoints, under a lock that every node
//! takes, so an event is projected exactly once across crashes and nodes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use sqlx::Row;

use super::{Arg, Projection, Stmt, bind_args};
use crate::db::Db;
use crate::eventstore::{EventStore, RecordedEvent, StoreError};

const BATCH: i64 = 1000;
/// How long the runner lets new events gather before projecting them. The
/// batch it then projects is a burst of work in the database, and the
/// burst's length, not the number of bursts, sets how long the appends that
/// run beside it wait (PostgreSQL under client-credentials load, 64
/// connections: token p99 7.8–10.6 ms at 5 ms, 9.5–10.7 ms at 20 ms).
const COALESCE: Duration = Duration::from_millis(5);
/// Arbitrary constant naming the projections' lock on PostgreSQL.
const PROJECTION_LOCK: i64 = 0x6772_616e_7470;

#[derive(Clone)]
pub struct ProjectionRunner {
    db: Db,
    store: EventStore,
    projections: Arc<Vec<Box<dyn Projection>>>,
    /// The position every read model has reached, as this process knows it.
    reached: Arc<tokio::sync::watch::Sender<i64>>,
}

fn statement_failed(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("projection statement failed: {}", crate::db::one_line(&e)))
}

/// A transaction on either backend.
enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    async fn begin(db: &Db) -> Result<Tx, StoreError> {
        Ok(match db {
            // IMMEDIATE: take the write lock up front instead of failing on upgrade.
            Db::Sqlite { read_models, .. } => Tx::Sqlite(read_models.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::db)?),
            Db::Postgres { pool, .. } => {
                let mut tx = pool.begin().await.map_err(StoreError::db)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PROJECTION_LOCK).execute(&mut *tx).await.map_err(StoreError::db)?;
                Tx::Postgres(tx)
            }
        })
    }

    async fn exec(&mut self, stmt: &Stmt) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => bind_args!(sqlx::query(stmt.sql), &stmt.args).execute(&mut **tx).await.map(|_| ()),
            Tx::Postgres(tx) => bind_args!(sqlx::query(stmt.sql), &stmt.args).execute(&mut **tx).await.map(|_| ()),
        }
        .map_err(statement_failed)
    }

    async fn exec_sql(&mut self, sql: String, args: &[Arg]) -> Result<(), StoreError> {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            Tx::Sqlite(tx) => bind_args!(sqlx::query(sql), args).execute(&mut **tx).await.map(|_| ()),
            Tx::Postgres(tx) => bind_args!(sqlx::query(sql), args).execute(&mut **tx).await.map(|_| ()),
        }
        .map_err(statement_failed)
    }

    /// Runs `sql` with one array per column (PostgreSQL only).
    async fn exec_columns(&mut self, sql: String, columns: Vec<Column>) -> Result<(), StoreError> {
        let Tx::Postgres(tx) = self else {
            return Err(StoreError::Unavailable("array parameters are PostgreSQL's".into()));
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for column in columns {
            query = match column {
                Column::Text(values) => query.bind(values),
                Column::Int(values) => query.bind(values),
                Column::Bool(values) => query.bind(values),
            };
        }
        query.execute(&mut **tx).await.map(|_| ()).map_err(statement_failed)
    }

    async fn checkpoints(&mut self) -> Result<HashMap<String, i64>, StoreError> {
        let sql = "SELECT name, position FROM projection_checkpoints";
        let rows: Vec<(String, i64)> = match self {
            Tx::Sqlite(tx) => sqlx::query_as(sql).fetch_all(&mut **tx).await,
            Tx::Postgres(tx) => sqlx::query_as(sql).fetch_all(&mut **tx).await,
        }
        .map_err(StoreError::db)?;
        Ok(rows.into_iter().collect())
    }

    async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
        .map_err(StoreError::db)
    }
}

impl ProjectionRunner {
    pub fn new(db: Db, store: EventStore) -> Self {
        ProjectionRunner { db, store, projections: Arc::new(super::all()), reached: Arc::new(tokio::sync::watch::channel(0).0) }
    }

    /// Waits until the read models include `position` (read-your-writes for
    /// the admin API); false after `timeout`.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> bool {
        let mut reached = self.reached.subscribe();
        tokio::time::timeout(timeout, reached.wait_for(|p| *p >= position)).await.is_ok_and(|r| r.is_ok())
    }

    /// The lowest checkpoint: every projection has seen the log up to it.
    pub async fn position(&self) -> Result<i64, StoreError> {
        let mut tx = Tx::begin(&self.db).await?;
        let checkpoints = tx.checkpoints().await?;
        tx.commit().await?;
        Ok(self.projections.iter().map(|p| checkpoints.get(p.name()).copied().unwrap_or(0)).min().unwrap_or(0))
    }

    /// Checkpoint of one projection.
    pub async fn checkpoint(&self, name: &str) -> Result<i64, StoreError> {
        let mut tx = Tx::begin(&self.db).await?;
        let checkpoints = tx.checkpoints().await?;
        tx.commit().await?;
        Ok(checkpoints.get(name).copied().unwrap_or(0))
    }

    /// Projects every event not yet projected; returns the position reached.
    /// `progress` is told the position after each batch.
    pub async fn catch_up(&self, progress: impl FnMut(i64)) -> Result<i64, StoreError> {
        self.catch_up_with(Vec::new(), progress).await
    }

    /// [`Self::catch_up`], taking the events the subscription delivered
    /// (`ready`) instead of reading them back when they continue the
    /// checkpoints; anything else comes from the log. Given events, it stops
    /// once they are projected: what was committed after them arrives by the
    /// same subscription, and reading it back here would parse it twice.
    async fn catch_up_with(&self, mut ready: Vec<Arc<RecordedEvent>>, mut progress: impl FnMut(i64)) -> Result<i64, StoreError> {
        let live = !ready.is_empty();
        loop {
            let mut tx = Tx::begin(&self.db).await?;
            let checkpoints = tx.checkpoints().await?;
            let of = |p: &dyn Projection| checkpoints.get(p.name()).copied().unwrap_or(0);
            let from = self.projections.iter().map(|p| of(p.as_ref())).min().unwrap_or(0);
            // Checkpoints behind what this process saw reached: the read
            // models were emptied (PostgreSQL resets its unlogged tables
            // after a crash) and are being replayed; until they are back,
            // nobody waiting for a position may take them as current.
            self.reached.send_if_modified(|p| from < std::mem::replace(p, (*p).min(from)));
            ready.retain(|e| e.position > from);
            let contiguous = ready.iter().enumerate().take_while(|(i, e)| e.position == from + 1 + *i as i64).count();
            let events: Vec<Arc<RecordedEvent>> = if contiguous > 0 {
                ready.drain(..contiguous.min(BATCH as usize)).collect()
            } else {
                self.store.read_all(from, BATCH).await?.into_iter().map(Arc::new).collect()
            };
            let Some(last) = events.last().map(|e| e.position) else {
                tx.commit().await?;
                self.reached.send_if_modified(|p| std::mem::replace(p, (*p).max(from)) < from);
                return Ok(from);
            };
            // Decoding a batch into statements is milliseconds of CPU in one
            // go: on a blocking thread, not on a runtime worker that the
            // event store's writer may be waiting for.
            let seen: Vec<i64> = self.projections.iter().map(|p| of(p.as_ref())).collect();
            let (projections, batch, seen_by_each) = (self.projections.clone(), events.clone(), seen.clone());
            let planned = tokio::task::spawn_blocking(move || {
                projections
                    .iter()
                    .zip(seen_by_each)
                    .map(|(p, seen)| {
                        let mut stmts = Vec::new();
                        for event in batch.iter().filter(|e| e.position > seen) {
                            stmts.extend(p.project(event)?);
                        }
                        Ok(stmts)
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("projecting a batch stopped: {e}")))??;
            let mut moved = Vec::with_capacity(2 * seen.len());
            for ((p, stmts), seen) in self.projections.iter().zip(planned).zip(seen) {
                exec_batched(&mut tx, stmts).await?;
                moved.extend([Arg::Text(p.name().into()), Arg::Int(last.max(seen))]);
            }
            // Every checkpoint in one statement: one round trip per batch,
            // not one per projection.
            tx.exec_sql(checkpoints_upsert(self.projections.len()), &moved).await?;
            tx.commit().await?;
            let reached = self.projections.iter().map(|p| of(p.as_ref()).max(last)).min().unwrap_or(last);
            self.reached.send_if_modified(|p| std::mem::replace(p, (*p).max(reached)) < reached);
            progress(last);
            if live && ready.is_empty() {
                return Ok(reached);
            }
        }
    }

    /// Keeps the read models current: wakes on every committed event (of
    /// this node or another) and catches up from the checkpoints.
    ///
    /// It runs on a thread of its own at a lower CPU priority, with its own
    /// read-model connection: projecting a batch is a burst of work in this
    /// process that otherwise took a core from the token endpoint every few
    /// tens of milliseconds, and that can wait a little. On PostgreSQL too,
    /// where the statements are the server's work but building and sending
    /// them is ours: client credentials over 6 interleaved rounds, 18.1k ->
    /// 20.2k and 20.9k -> 21.9k tokens/s at 32 connections, 22.5k -> 25.1k at
    /// 64 (4 rounds), against the runner on the shared runtime and pool. It
    /// stops with the runtime that spawned it, or when the returned task is
    /// aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let (keep, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = std::thread::Builder::new().name("grantd-projections".into()).spawn(move || {
            lower_this_threads_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return tracing::error!(error = %e, "the projection runner cannot start a runtime"),
            };
            runtime.block_on(async move {
                tokio::select! {
                    () = self.run() => {}
                    _ = stopped => {}
                }
            });
        });
        if let Err(e) = started {
            tracing::error!(error = %e, "the projection runner cannot start a thread");
        }
        tokio::spawn(async move {
            let _keep = keep;
            std::future::pending::<()>().await
        })
    }

    async fn run(self) {
        let runner = loop {
            match self.db.with_own_read_model_connections().await {
                Ok(db) => break ProjectionRunner { db, ..self },
                Err(e) => {
                    tracing::warn!(error = %e, "projection runner: cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        loop {
            let start = match runner.catch_up(|_| {}).await {
                Ok(position) => position,
                Err(e) => {
                    tracing::warn!(error = %e, "projecting failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut wakeups = Box::pin(runner.store.subscribe(start).ready_chunks(BATCH as usize));
            while let Some(mut batch) = wakeups.next().await {
                // Under load, let events gather so that one transaction
                // projects many.
                tokio::time::sleep(COALESCE).await;
                // Unconstrained: under tokio's cooperative budget the
                // subscription reports "not ready" after ~128 events,
                // which held the runner below the rate of the token
                // endpoint until it lagged and read everything back.
                while let Some(Some(more)) = tokio::task::unconstrained(wakeups.next()).now_or_never() {
                    batch.extend(more);
                }
                let Ok(ready) = batch.into_iter().collect::<Result<Vec<_>, _>>() else { break };
                if let Err(e) = runner.catch_up_with(ready, |_| {}).await {
                    tracing::warn!(error = %e, "projecting failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }

    /// Empties every read model and replays the whole log into it.
    pub async fn rebuild(&self, progress: impl FnMut(i64)) -> Result<i64, StoreError> {
        let mut tx = Tx::begin(&self.db).await?;
        for p in self.projections.iter() {
            for table in p.tables() {
                tx.exec(&Stmt::new(delete_sql(table), vec![])).await?;
            }
        }
        tx.exec(&Stmt::new("DELETE FROM projection_checkpoints", vec![])).await?;
        tx.commit().await?;
        self.catch_up(progress).await
    }

    /// Every read-model row as text, table by table in key order: two equal
    /// dumps mean two identical read models.
    pub async fn dump(&self) -> Result<BTreeMap<String, Vec<Vec<Option<String>>>>, StoreError> {
        let mut out = BTreeMap::new();
        for p in self.projections.iter() {
            for table in p.tables() {
                let sql = format!("SELECT * FROM {table} ORDER BY 1, 2");
                let rows = match &self.db {
                    Db::Sqlite { read_models, .. } => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .fetch_all(read_models)
                        .await
                        .map_err(StoreError::db)?
                        .iter()
                        .map(|r| (0..r.columns().len()).map(|i| cell_sqlite(r, i)).collect())
                        .collect(),
                    Db::Postgres { pool, .. } => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .fetch_all(pool)
                        .await
                        .map_err(StoreError::db)?
                        .iter()
                        .map(|r| (0..r.columns().len()).map(|i| cell_postgres(r, i)).collect())
                        .collect(),
                };
                out.insert(table.to_string(), rows);
            }
        }
        Ok(out)
    }
}

/// Lowers the calling thread's CPU priority (Linux: nice is per thread)
/// so that the latency-bound endpoints win a contended core; elsewhere a
/// no-op.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscall on the calling thread; failure only leaves
        // the priority as it was.
        let lowered = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        if lowered != 0 {
            tracing::debug!("could not lower the projection runner's priority");
        }
    }
}

/// Most bound values in one statement (SQLite allows 32766, PostgreSQL 65535).
const MAX_BOUND: usize = 30_000;
/// Most rows in one multi-row INSERT: with power-of-two chunks that is at
/// most nine shapes per INSERT, all of which fit the statement cache.
const MAX_ROWS: usize = 256;

/// A plain `INSERT … VALUES (row)`: its prefix up to `VALUES`, the row
/// template, and how many parameters one row binds.
fn insert_template(sql: &str) -> Option<(&str, &str, usize)> {
    if !sql.trim_start().starts_with("INSERT INTO") || sql.contains("ON CONFLICT") {
        return None;
    }
    let at = sql.find(" VALUES (")? + " VALUES".len();
    let (prefix, row) = (&sql[..at], sql[at..].trim());
    if !row.ends_with(')') {
        return None;
    }
    let mut max = 0;
    let bytes = row.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits: String = row[i + 1..].chars().take_while(char::is_ascii_digit).collect();
            max = max.max(digits.parse().unwrap_or(0));
            i += digits.len();
        }
        i += 1;
    }
    Some((prefix, row, max))
}

/// How a multi-row INSERT writes its placeholders.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placeholders {
    /// `$N` shifted by the row's offset (PostgreSQL).
    Numbered,
    /// Anonymous `?`, one bound value per occurrence (SQLite): SQLite looks
    /// a numbered parameter's name up in a linear list, so binding n of
    /// them costs O(n²) — it was a third of the server's CPU under load.
    Anonymous,
}

/// Appends `row` to `out` with its placeholders written as `style` asks,
/// `$N` standing for the row's `offset + N`-th value, and returns the
/// 1-based parameter numbers in the order of their occurrence.
fn renumber(row: &str, offset: usize, style: Placeholders, out: &mut String) -> Vec<usize> {
    let mut order = Vec::new();
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let n: usize = digits.parse().unwrap_or(0);
        order.push(n);
        match style {
            Placeholders::Numbered => {
                out.push('$');
                out.push_str(&(n + offset).to_string());
            }
            Placeholders::Anonymous => out.push('?'),
        }
    }
    order
}

/// Moves `count` checkpoints (name, position pairs as arguments) at once.
fn checkpoints_upsert(count: usize) -> String {
    let rows: Vec<String> = (0..count).map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
    format!(
        "INSERT INTO projection_checkpoints (name, position) VALUES {} ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        rows.join(", ")
    )
}

/// Runs a projection's statements in order, merging the rows of identical
/// plain INSERTs into multi-row INSERTs: a batch of tokens becomes one
/// statement per table instead of one per event. Rows only move ahead of
/// other INSERTs; every other statement first flushes what is pending.
async fn exec_batched(tx: &mut Tx, stmts: Vec<Stmt>) -> Result<(), StoreError> {
    let mut pending: Vec<(&'static str, Vec<Vec<Arg>>)> = Vec::new();
    for stmt in stmts {
        // Statements come from a few literals: the text is read once per
        // batch, not once per row (which had been a third of this loop).
        if let Some((_, rows)) = pending.iter_mut().find(|(sql, _)| std::ptr::eq(*sql, stmt.sql) || *sql == stmt.sql) {
            rows.push(stmt.args);
        } else if insert_template(stmt.sql).is_some() {
            pending.push((stmt.sql, vec![stmt.args]));
        } else {
            flush(tx, &mut pending).await?;
            tx.exec(&stmt).await?;
        }
    }
    flush(tx, &mut pending).await
}

/// Splits `rows` into chunks whose lengths are powers of two (at most
/// `max`), largest first. A multi-row statement then has one of a few
/// shapes, each prepared once and kept in the connection's statement cache,
/// instead of a new text to parse for every batch size.
fn power_of_two_chunks<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let cap = if max <= 1 { 1 } else { 1 << (usize::BITS - 1 - max.leading_zeros()) };
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = rest.len().min(cap);
        let size = 1 << (usize::BITS - 1 - len.leading_zeros());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

async fn flush(tx: &mut Tx, pending: &mut Vec<(&'static str, Vec<Vec<Arg>>)>) -> Result<(), StoreError> {
    for (sql, rows) in pending.drain(..) {
        let Some((prefix, row, per_row)) = insert_template(sql) else { continue };
        match tx {
            Tx::Postgres(_) => match unnest_insert(prefix, row, per_row, rows) {
                Ok((text, columns)) => tx.exec_columns(text, columns).await?,
                Err(rows) => insert_values(tx, prefix, row, per_row, Placeholders::Numbered, &rows).await?,
            },
            Tx::Sqlite(_) => insert_values(tx, prefix, row, per_row, Placeholders::Anonymous, &rows).await?,
        }
    }
    Ok(())
}

/// The rows as multi-row `INSERT … VALUES (…), (…)` statements.
async fn insert_values(
    tx: &mut Tx,
    prefix: &str,
    row: &str,
    per_row: usize,
    style: Placeholders,
    rows: &[Vec<Arg>],
) -> Result<(), StoreError> {
    let order = renumber(row, 0, style, &mut String::new());
    let bound_per_row = if style == Placeholders::Anonymous { order.len() } else { per_row };
    for chunk in power_of_two_chunks(rows, MAX_ROWS.min(MAX_BOUND / bound_per_row.max(1))) {
        let mut text = String::with_capacity(prefix.len() + chunk.len() * (row.len() + 8));
        text.push_str(prefix);
        let mut args: Vec<Arg> = Vec::with_capacity(chunk.len() * bound_per_row);
        for (i, values) in chunk.iter().enumerate() {
            text.push_str(if i == 0 { " " } else { ", " });
            renumber(row, i * per_row, style, &mut text);
            match style {
                Placeholders::Numbered => args.extend(values.iter().cloned()),
                Placeholders::Anonymous => {
                    for n in &order {
                        let value = values.get(n.wrapping_sub(1)).ok_or_else(|| {
                            StoreError::Unavailable(format!("projection statement binds ${n} but has {} values", values.len()))
                        })?;
                        args.push(value.clone());
                    }
                }
            }
        }
        tx.exec_sql(text, &args).await?;
    }
    Ok(())
}

/// One parameter of every row, bound as a PostgreSQL array.
#[derive(Debug, PartialEq)]
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
}

impl Column {
    /// An empty column for values like `arg`.
    fn like(arg: &Arg, capacity: usize) -> Column {
        match arg {
            Arg::Text(_) | Arg::OptText(_) => Column::Text(Vec::with_capacity(capacity)),
            Arg::Int(_) => Column::Int(Vec::with_capacity(capacity)),
            Arg::Bool(_) => Column::Bool(Vec::with_capacity(capacity)),
        }
    }

    fn accepts(&self, arg: &Arg) -> bool {
        matches!(
            (self, arg),
            (Column::Text(_), Arg::Text(_) | Arg::OptText(_)) | (Column::Int(_), Arg::Int(_)) | (Column::Bool(_), Arg::Bool(_))
        )
    }

    fn push(&mut self, arg: Arg) {
        match (self, arg) {
            (Column::Text(c), Arg::Text(s)) => c.push(Some(s)),
            (Column::Text(c), Arg::OptText(s)) => c.push(s),
            (Column::Int(c), Arg::Int(i)) => c.push(i),
            (Column::Bool(c), Arg::Bool(b)) => c.push(b),
            _ => {} // callers check `accepts` first
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Column::Text(_) => "text",
            Column::Int(_) => "bigint",
            Column::Bool(_) => "boolean",
        }
    }
}

/// The rows as one `INSERT … SELECT … FROM UNNEST($1::text[], …)` on
/// PostgreSQL: one parameter per column whatever the number of rows, so the
/// statement has a single shape and a plan of a few nodes. A multi-row
/// VALUES list was planned anew for every batch (the pool plans every
/// statement), copying hundreds of expressions each time. The rows come
/// back untouched when they do not bind the same kinds of values.
fn unnest_insert(prefix: &str, row: &str, per_row: usize, rows: Vec<Vec<Arg>>) -> Result<(String, Vec<Column>), Vec<Vec<Arg>>> {
    let mut columns: Vec<Column> = match rows.first() {
        Some(first) => first.iter().map(|arg| Column::like(arg, rows.len())).collect(),
        None => return Err(rows),
    };
    let select = row.strip_prefix('(').and_then(|r| r.strip_suffix(')'));
    let (Some(table), Some(select)) = (prefix.strip_suffix("VALUES"), select) else { return Err(rows) };
    let fits = |values: &Vec<Arg>| values.len() == per_row && columns.iter().zip(values).all(|(c, v)| c.accepts(v));
    if columns.len() != per_row || !rows.iter().all(fits) {
        return Err(rows);
    }
    for values in rows {
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
    }
    // `$N` → `u.cN`; the longer numbers first, so that `$1` does not eat `$12`.
    let mut select = select.to_string();
    for n in (1..=per_row).rev() {
        select = select.replace(&format!("${n}"), &format!("u.c{n}"));
    }
    let arrays: Vec<String> = columns.iter().enumerate().map(|(i, c)| format!("${}::{}[]", i + 1, c.sql_type())).collect();
    let names: Vec<String> = (1..=per_row).map(|n| format!("c{n}")).collect();
    let text = format!("{table}SELECT {select} FROM UNNEST({}) AS u({})", arrays.join(", "), names.join(", "));
    Ok((text, columns))
}

fn delete_sql(table: &str) -> &'static str {
    match table {
        "clients" => "DELETE FROM clients",
        "users" => "DELETE FROM users",
        "consents" => "DELETE FROM consents",
        "grants" => "DELETE FROM grants",
        "signing_keys" => "DELETE FROM signing_keys",
        "audit_trail" => "DELETE FROM audit_trail",
        _ => "SELECT 1",
    }
}

macro_rules! cell {
    ($row:expr, $i:expr) => {{
        let row = $row;
        if let Ok(v) = row.try_get::<Option<String>, _>($i) {
            v
        } else if let Ok(v) = row.try_get::<Option<i64>, _>($i) {
            v.map(|v| v.to_string())
        } else if let Ok(v) = row.try_get::<Option<bool>, _>($i) {
            v.map(|v| v.to_string())
        } else {
            Some("<unreadable>".to_string())
        }
    }};
}

fn cell_sqlite(row: &sqlx::sqlite::SqliteRow, i: usize) -> Option<String> {
    cell!(row, i)
}

fn cell_postgres(row: &sqlx::postgres::PgRow, i: usize) -> Option<String> {
    cell!(row, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_inserts_become_multi_row_templates() {
        let sql = "INSERT INTO t (a, b, c) VALUES ($1, $2, COALESCE($3, (SELECT x FROM u WHERE y = $2)))";
        let (prefix, row, n) = insert_template(sql).expect("a plain insert");
        assert_eq!((prefix, n), ("INSERT INTO t (a, b, c) VALUES", 3));
        let mut out = String::new();
        assert_eq!(renumber(row, 3, Placeholders::Numbered, &mut out), [1, 2, 3, 2]);
        assert_eq!(out, "($4, $5, COALESCE($6, (SELECT x FROM u WHERE y = $5)))");
        let mut out = String::new();
        assert_eq!(renumber(row, 3, Placeholders::Anonymous, &mut out), [1, 2, 3, 2]);
        assert_eq!(out, "(?, ?, COALESCE(?, (SELECT x FROM u WHERE y = ?)))");
        assert!(insert_template("INSERT INTO t (a) VALUES ($1) ON CONFLICT (a) DO NOTHING").is_none());
        assert!(insert_template("UPDATE t SET a = $1").is_none());
    }

    #[test]
    fn plain_inserts_become_one_unnest_per_table_on_postgres() {
        let sql = "INSERT INTO t (a, b, c, d) VALUES ($1, $2, COALESCE($3, (SELECT x FROM u WHERE y = $1)), $12)";
        let (prefix, row, n) = insert_template(sql).expect("a plain insert");
        let row_of = |i: i64| {
            let mut values = vec![Arg::Int(i), Arg::Bool(i % 2 == 0), Arg::OptText(None)];
            values.extend((4..=12).map(|k| Arg::Text(format!("{k}-{i}"))));
            values
        };
        let (text, columns) = unnest_insert(prefix, row, n, vec![row_of(1), row_of(2)]).expect("same kinds");
        assert_eq!(
            text,
            "INSERT INTO t (a, b, c, d) SELECT u.c1, u.c2, COALESCE(u.c3, (SELECT x FROM u WHERE y = u.c1)), u.c12 \
             FROM UNNEST($1::bigint[], $2::boolean[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
             $9::text[], $10::text[], $11::text[], $12::text[]) AS u(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12)"
        );
        assert_eq!(columns[0], Column::Int(vec![1, 2]));
        assert_eq!(columns[1], Column::Bool(vec![false, true]));
        assert_eq!(columns[2], Column::Text(vec![None, None]));
        assert_eq!(columns[11], Column::Text(vec![Some("12-1".into()), Some("12-2".into())]));
        // Rows that bind different kinds at one place go back as they were.
        let mut odd = row_of(3);
        odd[0] = Arg::Text("3".into());
        let rows = vec![row_of(1), odd];
        assert_eq!(unnest_insert(prefix, row, n, rows.clone()).err(), Some(rows));
    }

    #[test]
    fn chunks_are_powers_of_two_up_to_the_cap() {
        let rows: Vec<u32> = (0..300).collect();
        let sizes: Vec<usize> = power_of_two_chunks(&rows, 100).map(<[u32]>::len).collect();
        assert_eq!(sizes, [64, 64, 64, 64, 32, 8, 4]);
        let joined: Vec<u32> = power_of_two_chunks(&rows, 100).flatten().copied().collect();
        assert_eq!(joined, rows);
        assert_eq!(power_of_two_chunks(&rows[..3], 0).count(), 3);
        assert_eq!(power_of_two_chunks::<u32>(&[], 8).count(), 0);
    }
}
