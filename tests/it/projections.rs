//! Projections: live read models, exactly-once across nodes, rebuild equal
//! to live, and the in-memory revocation index.

use std::time::Duration;

use chrono::Utc;
use grantd::actors::{Registry, execute_new};
use grantd::db::Db;
use grantd::domain::Actor;
use grantd::domain::client::GrantType;
use grantd::domain::consent::{Consent, ConsentCommand, consent_id};
use grantd::domain::grant::{Grant, GrantCommand, NewAccessToken, NewRefreshToken, RevocationReason};
use grantd::domain::user::{User, UserCommand, UserProfile};
use grantd::eventstore::{CommandContext, EventStore};
use grantd::keys::MasterKey;
use grantd::projections::live::LiveView;
use grantd::projections::runner::ProjectionRunner;

use crate::helpers::{backends, eventually};

/// Writes a small but complete history: init, a user, a consent granted,
/// extended and revoked, a client-credentials grant, a code grant revoked.
async fn history(store: &EventStore) -> (String, String) {
    let master = MasterKey::from_bytes([1; 32]);
    grantd::setup::initialize(store, &master, Some("admin".into()), Some("admin-secret-0123456789".into())).await.unwrap();
    let users = Registry::<User>::new(store.clone(), Duration::from_secs(60));
    let consents = Registry::<Consent>::new(store.clone(), Duration::from_secs(60));
    let grants = Registry::<Grant>::new(store.clone(), Duration::from_secs(60));
    let user_id = uuid::Uuid::new_v4().to_string();
    let by_user = CommandContext::by(Actor::user(&user_id));
    users
        .execute(
            &user_id,
            UserCommand::Register {
                profile: UserProfile { username: "bob".into(), email: None, name: Some("Bob".into()) },
                password_hash: "$argon2id$x".into(),
            },
            CommandContext::by(Actor::client("admin")),
        )
        .await
        .unwrap();
    let consent = consent_id(&user_id, "admin");
    for scopes in [vec!["openid"], vec!["openid", "email"]] {
        let cmd = ConsentCommand::Grant {
            user_id: user_id.clone(),
            client_id: "admin".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        consents.execute(&consent, cmd, by_user.clone()).await.unwrap();
    }
    consents.execute(&consent, ConsentCommand::Revoke, by_user.clone()).await.unwrap();
    let now = Utc::now();
    let cc_grant = uuid::Uuid::new_v4().to_string();
    execute_new::<Grant>(
        store,
        &cc_grant,
        &GrantCommand::IssueAccessToken {
            grant_type: GrantType::ClientCredentials,
            client_id: "admin".into(),
            subject: "admin".into(),
            user_id: None,
            scopes: vec!["admin".into()],
            access: NewAccessToken { jti: uuid::Uuid::new_v4().to_string(), expires_at: now + chrono::Duration::minutes(10) },
            refresh: Some(NewRefreshToken { token_hash: "ab".repeat(32), expires_at: now + chrono::Duration::days(1) }),
            now,
        },
        &CommandContext::by(Actor::client("admin")),
    )
    .await
    .unwrap();
    grants
        .execute(&cc_grant, GrantCommand::Revoke { reason: RevocationReason::RevokedByAdmin }, CommandContext::by(Actor::client("admin")))
        .await
        .unwrap();
    (user_id, cc_grant)
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    match db {
        Db::Sqlite { read_models, .. } => sqlx::query_scalar(sql).fetch_one(read_models).await.unwrap(),
        Db::Postgres { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

/// Waits until a spawned runner has projected the log up to `head`.
async fn wait_until_projected(runner: &ProjectionRunner, head: i64) {
    eventually("projections to reach the head", Duration::from_secs(10), || {
        let runner = runner.clone();
        async move { (runner.position().await.ok()? == head).then_some(()) }
    })
    .await;
}

#[actix_web::test]
async fn live_read_models_follow_the_log() {
    for tdb in backends().await {
        let (db, store) = tdb.store().await;
        let runner = ProjectionRunner::new(db.clone(), store.clone());
        runner.clone().spawn();
        let (_user, _grant) = history(&store).await;
        let head = store.head().await.unwrap();
        wait_until_projected(&runner, head).await;
        assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_trail").await, head, "{}: one audit row per event", tdb.backend);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM clients WHERE client_id = 'admin' AND disabled = FALSE").await, 1);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM users WHERE username = 'bob'").await, 1);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM consents WHERE active = FALSE AND revoked_at IS NOT NULL").await, 1);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM grants WHERE revocation_reason = 'revoked_by_admin'").await, 1);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM signing_keys WHERE status = 'active'").await, 2, "one EdDSA and one RS256 key");
        // The audit trail resolves who each grant event concerns, even
        // events whose payload does not name the client.
        assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_trail WHERE aggregate = 'grant' AND client_id = 'admin'").await, 3);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_trail WHERE aggregate = 'consent' AND actor_kind = 'USER'").await, 3);
    }
}

#[actix_web::test]
async fn rebuilt_read_models_equal_the_live_ones_row_for_row() {
    for tdb in backends().await {
        let (db, store) = tdb.store().await;
        let runner = ProjectionRunner::new(db.clone(), store.clone());
        history(&store).await;
        runner.catch_up(|_| {}).await.unwrap();
        let live = runner.dump().await.unwrap();
        for table in ["clients", "users", "consents", "grants", "signing_keys", "audit_trail"] {
            assert!(!live[table].is_empty(), "{}: {table} has rows to compare", tdb.backend);
        }
        let mut progress = Vec::new();
        let reached = runner.rebuild(|p| progress.push(p)).await.unwrap();
        assert_eq!(reached, store.head().await.unwrap());
        assert!(!progress.is_empty());
        assert_eq!(runner.dump().await.unwrap(), live, "{}", tdb.backend);
    }
}

/// Every read-model table and the checkpoints.
const READ_MODEL_TABLES: [&str; 7] = ["projection_checkpoints", "clients", "users", "consents", "grants", "signing_keys", "audit_trail"];

#[actix_web::test]
async fn read_models_emptied_by_a_crash_are_replayed_from_the_log() {
    for tdb in backends().await {
        let (db, store) = tdb.store().await;
        let runner = ProjectionRunner::new(db.clone(), store.clone());
        runner.clone().spawn();
        history(&store).await;
        let head = store.head().await.unwrap();
        wait_until_projected(&runner, head).await;
        assert!(runner.wait_for(head, Duration::from_millis(10)).await);
        let before = runner.dump().await.unwrap();
        // What PostgreSQL's crash recovery does to unlogged tables: all of
        // them empty at once, checkpoints included.
        match &db {
            Db::Sqlite { read_models, .. } => {
                let mut tx = read_models.begin().await.unwrap();
                for table in READ_MODEL_TABLES {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
            Db::Postgres { pool, .. } => {
                let unlogged: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM pg_class WHERE relname = ANY($1) AND relkind = 'r' AND relpersistence = 'u'")
                        .bind(READ_MODEL_TABLES)
                        .fetch_one(pool)
                        .await
                        .unwrap();
                assert_eq!(unlogged, 7, "every read-model table is unlogged");
                let logged: String =
                    sqlx::query_scalar("SELECT relpersistence::text FROM pg_class WHERE relname = 'events'").fetch_one(pool).await.unwrap();
                assert_eq!(logged, "p", "the log is written to the WAL");
                sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {}", READ_MODEL_TABLES.join(", ")))).execute(pool).await.unwrap();
            }
        }
        // The next event wakes the runner, which finds no checkpoint.
        let users = Registry::<User>::new(store.clone(), Duration::from_secs(60));
        let user_id = uuid::Uuid::new_v4().to_string();
        let register = UserCommand::Register {
            profile: UserProfile { username: "carol".into(), email: None, name: None },
            password_hash: "$argon2id$y".into(),
        };
        users.execute(&user_id, register, CommandContext::by(Actor::client("admin"))).await.unwrap();
        let head = store.head().await.unwrap();
        wait_until_projected(&runner, head).await;
        assert!(runner.wait_for(head, Duration::from_secs(1)).await);
        let after = runner.dump().await.unwrap();
        assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_trail").await, head, "{}: one audit row per event", tdb.backend);
        for (table, rows) in &before {
            for row in rows {
                assert!(after[table].contains(row), "{}: {table} lost {row:?}", tdb.backend);
            }
        }
        assert_eq!(count(&db, "SELECT COUNT(*) FROM users WHERE username = 'carol'").await, 1);
        runner.rebuild(|_| {}).await.unwrap();
        assert_eq!(runner.dump().await.unwrap(), after, "{}: replayed equals rebuilt", tdb.backend);
    }
}

#[actix_web::test]
async fn two_nodes_project_every_event_exactly_once() {
    for tdb in backends().await {
        let (db1, store1) = tdb.store().await;
        let (db2, store2) = tdb.store().await;
        history(&store1).await;
        let a = ProjectionRunner::new(db1.clone(), store1.clone());
        let b = ProjectionRunner::new(db2, store2);
        let (ra, rb) = tokio::join!(a.catch_up(|_| {}), b.catch_up(|_| {}));
        ra.unwrap();
        rb.unwrap();
        assert_eq!(count(&db1, "SELECT COUNT(*) FROM audit_trail").await, store1.head().await.unwrap(), "{}", tdb.backend);
    }
}

#[actix_web::test]
async fn revocations_reach_the_live_view_of_every_node() {
    for tdb in backends().await {
        let (_d1, node1) = tdb.store().await;
        let (_d2, node2) = tdb.store().await;
        let index1 = LiveView::follow(&node1, None).await.unwrap();
        let index2 = LiveView::follow(&node2, None).await.unwrap();
        let (_user, grant) = history(&node1).await;
        for index in [&index1, &index2] {
            let index = index.clone();
            let grant = grant.clone();
            eventually("the revocation to reach the index", Duration::from_secs(3), move || {
                let index = index.clone();
                let grant = grant.clone();
                async move { index.is_revoked(&grant).then_some(()) }
            })
            .await;
        }
        assert!(!index1.is_revoked("some-other-grant"));
        // A node started later rebuilds the same index from the log.
        let late = LiveView::follow(&node2, None).await.unwrap();
        assert!(late.is_revoked(&grant), "{}", tdb.backend);
        assert_eq!(late.revoked_count(), 1);
    }
}
