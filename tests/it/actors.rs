//! Aggregate actors: serialized commands, idle eviction, several nodes.

use std::time::Duration;

use grantd::actors::{CommandError, Registry};
use grantd::domain::Actor;
use grantd::domain::user::{User, UserCommand, UserError, UserProfile};
use grantd::eventstore::CommandContext;

use crate::helpers::{backends, eventually};

fn register() -> UserCommand {
    UserCommand::Register {
        profile: UserProfile { username: "alice".into(), email: Some("alice@example.com".into()), name: None },
        password_hash: "$argon2id$v=19$initial".into(),
    }
}

fn ctx() -> CommandContext {
    CommandContext::by(Actor::client("admin"))
}

#[actix_web::test]
async fn a_hundred_concurrent_commands_on_one_aggregate_all_land_in_order() {
    for tdb in backends().await {
        let (_db, store) = tdb.store().await;
        let users = Registry::<User>::new(store.clone(), Duration::from_secs(60));
        let id = uuid::Uuid::new_v4().to_string();
        users.execute(&id, register(), ctx()).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let users = users.clone();
            let id = id.clone();
            tasks.push(actix_web::rt::spawn(async move {
                users.execute(&id, UserCommand::ChangePassword { password_hash: format!("hash-{i}") }, ctx()).await
            }));
        }
        let mut versions = Vec::new();
        for t in tasks {
            let done = t.await.unwrap().unwrap_or_else(|e| panic!("{}: no conflict may reach a caller: {e}", tdb.backend));
            versions.push(done.version);
        }
        versions.sort();
        assert_eq!(versions, (2..=101).collect::<Vec<_>>(), "{}: one version per command", tdb.backend);
        assert_eq!(store.read_stream(&format!("user-{id}"), 1).await.unwrap().len(), 101);
        assert_eq!(users.live_actors(), 1);
    }
}

#[actix_web::test]
async fn idle_actors_stop_and_come_back_from_their_stream() {
    for tdb in backends().await {
        let (_db, store) = tdb.store().await;
        let users = Registry::<User>::new(store.clone(), Duration::from_secs(2));
        let ids: Vec<String> = (0..50).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let mut tasks = Vec::new();
        for id in ids.clone() {
            let users = users.clone();
            tasks.push(actix_web::rt::spawn(async move {
                users.execute(&id, register(), ctx()).await.unwrap();
                users.execute(&id, UserCommand::Disable, ctx()).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // How many are still alive depends on the machine's speed; that they
        // all go once idle does not.
        assert!(users.live_actors() > 0, "{}: actors were started", tdb.backend);
        eventually("idle actors to stop", Duration::from_secs(30), || async { (users.live_actors() == 0).then_some(()) }).await;
        // A fresh actor rebuilds the state from the stream: the user is disabled.
        let again = users.execute(&ids[7], UserCommand::Disable, ctx()).await;
        assert!(matches!(again, Err(CommandError::Rejected(UserError::AlreadyDisabled))), "{}: {again:?}", tdb.backend);
        let enabled = users.execute(&ids[7], UserCommand::Enable, ctx()).await.unwrap();
        assert_eq!(enabled.version, 3);
    }
}

#[actix_web::test]
async fn two_nodes_on_one_database_converge() {
    for tdb in backends().await {
        let (_d1, store1) = tdb.store().await;
        let (_d2, store2) = tdb.store().await;
        let node1 = Registry::<User>::new(store1.clone(), Duration::from_secs(60));
        let node2 = Registry::<User>::new(store2.clone(), Duration::from_secs(60));
        let id = uuid::Uuid::new_v4().to_string();
        node1.execute(&id, register(), ctx()).await.unwrap();
        // Both nodes have the aggregate loaded; then both write concurrently:
        // every loser reloads the winner's events and decides again.
        node2.execute(&id, UserCommand::ChangePassword { password_hash: "warm".into() }, ctx()).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let node = if i % 2 == 0 { node1.clone() } else { node2.clone() };
            let id = id.clone();
            tasks.push(actix_web::rt::spawn(async move {
                node.execute(&id, UserCommand::ChangePassword { password_hash: format!("h{i}") }, ctx()).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap_or_else(|e| panic!("{}: {e}", tdb.backend));
        }
        let stream = store1.read_stream(&format!("user-{id}"), 1).await.unwrap();
        assert_eq!(stream.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=42).collect::<Vec<_>>());
        // Both nodes now decide on the same state: a disable on one is seen by the other.
        node1.execute(&id, UserCommand::Disable, ctx()).await.unwrap();
        let on_other = node2.execute(&id, UserCommand::Disable, ctx()).await;
        assert!(matches!(on_other, Err(CommandError::Rejected(UserError::AlreadyDisabled))), "{}: {on_other:?}", tdb.backend);
    }
}
