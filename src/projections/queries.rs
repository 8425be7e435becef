//! Reads of the read models for the admin API and the audit export. The
//! SQL is the same on both backends (`$N` placeholders); the dispatch macro
//! runs it on whichever pool is configured.

use chrono::{DateTime, Utc};

use super::{Arg, bind_args};
use crate::db::Db;
use crate::eventstore::StoreError;

macro_rules! fetch_all {
    ($db:expr, $ty:ty, $sql:expr, $args:expr) => {{
        let sql = sqlx::AssertSqlSafe($sql);
        let args: &[Arg] = $args;
        match $db {
            Db::Sqlite { read_models, .. } => bind_args!(sqlx::query_as::<_, $ty>(sql), args).fetch_all(read_models).await,
            Db::Postgres { pool, .. } => bind_args!(sqlx::query_as::<_, $ty>(sql), args).fetch_all(pool).await,
        }
        .map_err(StoreError::db)
    }};
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub redirect_uris: String,
    pub grant_types: String,
    pub scopes: String,
    pub confidential: bool,
    pub first_party: bool,
    pub id_token_alg: String,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsentRow {
    pub user_id: String,
    pub client_id: String,
    pub scopes: String,
    pub active: bool,
    pub granted_at: String,
    pub updated_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub grant_id: String,
    pub grant_type: String,
    pub client_id: String,
    pub subject: String,
    pub user_id: Option<String>,
    pub scopes: String,
    pub created_at: String,
    pub updated_at: String,
    pub revoked_at: Option<String>,
    pub revocation_reason: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub status: String,
    pub public_jwk: String,
    pub created_at: String,
    pub activated_at: Option<String>,
    pub retired_at: Option<String>,
    pub verify_until: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Position {
    position: i64,
}

/// A JSON array stored as text.
pub fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

pub async fn clients(db: &Db, first: i64, after: Option<&str>) -> Result<Vec<ClientRow>, StoreError> {
    fetch_all!(
        db,
        ClientRow,
        "SELECT id, client_id, name, redirect_uris, grant_types, scopes, confidential, first_party, id_token_alg, disabled, created_at, updated_at
         FROM clients WHERE client_id > $1 ORDER BY client_id LIMIT $2",
        &[Arg::Text(after.unwrap_or("").into()), Arg::Int(first)]
    )
}

pub async fn users(db: &Db, first: i64, after: Option<&str>) -> Result<Vec<UserRow>, StoreError> {
    fetch_all!(
        db,
        UserRow,
        "SELECT id, username, email, name, disabled, created_at, updated_at FROM users WHERE id > $1 ORDER BY id LIMIT $2",
        &[Arg::Text(after.unwrap_or("").into()), Arg::Int(first)]
    )
}

pub async fn consents(db: &Db, user_id: Option<&str>, client_id: Option<&str>, limit: i64) -> Result<Vec<ConsentRow>, StoreError> {
    fetch_all!(
        db,
        ConsentRow,
        "SELECT user_id, client_id, scopes, active, granted_at, updated_at, revoked_at FROM consents
         WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR client_id = $2) ORDER BY user_id, client_id LIMIT $3",
        &[Arg::OptText(user_id.map(str::to_string)), Arg::OptText(client_id.map(str::to_string)), Arg::Int(limit)]
    )
}

pub async fn grants(
    db: &Db,
    user_id: Option<&str>,
    client_id: Option<&str>,
    active: Option<bool>,
    limit: i64,
) -> Result<Vec<GrantRow>, StoreError> {
    let state = match active {
        None => "",
        Some(true) => " AND revoked_at IS NULL",
        Some(false) => " AND revoked_at IS NOT NULL",
    };
    fetch_all!(
        db,
        GrantRow,
        format!(
            "SELECT grant_id, grant_type, client_id, subject, user_id, scopes, created_at, updated_at, revoked_at, revocation_reason FROM grants
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR client_id = $2){state} ORDER BY created_at, grant_id LIMIT $3"
        ),
        &[Arg::OptText(user_id.map(str::to_string)), Arg::OptText(client_id.map(str::to_string)), Arg::Int(limit)]
    )
}

pub async fn signing_keys(db: &Db) -> Result<Vec<KeyRow>, StoreError> {
    fetch_all!(
        db,
        KeyRow,
        "SELECT kid, alg, status, public_jwk, created_at, activated_at, retired_at, verify_until FROM signing_keys ORDER BY created_at, kid",
        &[]
    )
}

/// Which events the audit trail holds for a filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub streams: Vec<String>,
    pub event_types: Vec<String>,
    pub actor_kind: Option<String>,
    pub actor_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub aggregates: Vec<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Positions of matching events after `after`, in order, at most `limit`.
pub async fn audit_positions(db: &Db, filter: &AuditFilter, after: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
    let mut sql = String::from("SELECT position FROM audit_trail WHERE position > $1");
    let mut args = vec![Arg::Int(after)];
    let mut push = |sql: &mut String, clause: &str, arg: Arg| {
        args.push(arg);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    let in_list = |sql: &mut String, column: &str, values: &[String], push: &mut dyn FnMut(&mut String, &str, Arg)| {
        if values.is_empty() {
            return;
        }
        sql.push_str(&format!(" AND {column} IN ("));
        for (i, v) in values.iter().enumerate() {
            push(sql, if i == 0 { "?" } else { ", ?" }, Arg::Text(v.clone()));
        }
        sql.push(')');
    };
    // PostgreSQL finds a stream's events through the log's own index on
    // (stream_id, stream_version) rather than one more index on the audit
    // trail, which every token paid for (migration 0011); SQLite keeps its
    // read models in a file of their own, apart from the log.
    if db.is_postgres() && !filter.streams.is_empty() {
        sql.push_str(" AND position IN (SELECT position FROM events WHERE TRUE");
        in_list(&mut sql, "stream_id", &filter.streams, &mut push);
        sql.push(')');
    } else {
        in_list(&mut sql, "stream_id", &filter.streams, &mut push);
    }
    in_list(&mut sql, "event_type", &filter.event_types, &mut push);
    in_list(&mut sql, "aggregate", &filter.aggregates, &mut push);
    if let Some(kind) = &filter.actor_kind {
        push(&mut sql, " AND actor_kind = ?", Arg::Text(kind.clone()));
    }
    if let Some(id) = &filter.actor_id {
        push(&mut sql, " AND actor_id = ?", Arg::Text(id.clone()));
    }
    if let Some(user) = &filter.user_id {
        push(&mut sql, " AND user_id = ?", Arg::Text(user.clone()));
    }
    if let Some(client) = &filter.client_id {
        push(&mut sql, " AND client_id = ?", Arg::Text(client.clone()));
    }
    if let Some(from) = filter.from {
        push(&mut sql, " AND recorded_at >= ?", Arg::Text(super::readmodels::time_text(from)));
    }
    if let Some(to) = filter.to {
        push(&mut sql, " AND recorded_at <= ?", Arg::Text(super::readmodels::time_text(to)));
    }
    push(&mut sql, " ORDER BY position LIMIT ?", Arg::Int(limit));
    Ok(fetch_all!(db, Position, sql, &args)?.into_iter().map(|p| p.position).collect())
}
