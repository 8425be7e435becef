//! The event store on both backends: appends, expectations, group commit,
//! reads, subscriptions, global order, the hash chain, upcasting.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use grantd::db::Db;
use grantd::domain::Actor;
use grantd::eventstore::verify::{ChainReport, verify_chain};
use grantd::eventstore::{CommandContext, EventStore, ExpectedVersion, NewEvent, StoreError, StreamWrite};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestDb, backends, backends_and_pipelined_postgres};

fn event(n: i64) -> NewEvent {
    NewEvent::new(
        Uuid::new_v4(),
        "ConsentScopesExtended",
        1,
        json!({"added": [format!("s{n}")], "scopes": [format!("s{n}")]}),
        CommandContext {
            actor: Actor::client("tester"),
            request_id: Some(format!("req-{n}")),
            source_address: Some("127.0.0.1".into()),
            authentication: None,
        },
    )
}

fn write(stream: &str, expected: ExpectedVersion, n: i64) -> StreamWrite {
    StreamWrite { stream_id: stream.into(), expected, events: vec![event(n)] }
}

async fn exec(db: &Db, sql: &str) {
    match db {
        Db::Sqlite { pool, .. } => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(pool).await.map(|_| ()),
        Db::Postgres { pool, .. } => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(pool).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[actix_web::test]
async fn append_assigns_versions_positions_and_metadata() {
    for tdb in backends().await {
        let (_db, store) = tdb.store().await;
        let a = store.append_to("consent-a", ExpectedVersion::NoStream, vec![event(1), event(2)]).await.unwrap();
        let b = store.append_to("consent-b", ExpectedVersion::NoStream, vec![event(3)]).await.unwrap();
        let a2 = store.append_to("consent-a", ExpectedVersion::Exact(2), vec![event(4)]).await.unwrap();
        assert_eq!(a.iter().map(|e| (e.position, e.stream_version)).collect::<Vec<_>>(), vec![(1, 1), (2, 2)], "{}", tdb.backend);
        assert_eq!((b[0].position, b[0].stream_version), (3, 1));
        assert_eq!((a2[0].position, a2[0].stream_version), (4, 3));

        let stream = store.read_stream("consent-a", 1).await.unwrap();
        assert_eq!(stream.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(store.read_stream("consent-a", 3).await.unwrap().len(), 1);
        let stored = &stream[0];
        assert_eq!(stored, &*a[0], "{}: a read returns what the append returned", tdb.backend);
        assert_eq!(stored.metadata.context.actor, Actor::client("tester"));
        assert_eq!(stored.metadata.context.request_id.as_deref(), Some("req-1"));
        assert_eq!(stored.metadata.recorded_at, stored.recorded_at);

        let all = store.read_all(0, 100).await.unwrap();
        assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(store.read_all(2, 1).await.unwrap()[0].position, 3, "paged from a position");
        assert_eq!(store.head().await.unwrap(), 4);
    }
}

#[actix_web::test]
async fn stale_expectations_conflict_and_never_overwrite() {
    for tdb in backends().await {
        let (_db, store) = tdb.store().await;
        store.append_to("s", ExpectedVersion::NoStream, vec![event(1)]).await.unwrap();
        let again = store.append_to("s", ExpectedVersion::NoStream, vec![event(2)]).await;
        assert!(matches!(again, Err(StoreError::Conflict { actual: 1, .. })), "{}: {again:?}", tdb.backend);
        let stale = store.append_to("s", ExpectedVersion::Exact(0), vec![event(3)]).await;
        assert!(matches!(stale, Err(StoreError::Conflict { .. })));
        let ahead = store.append_to("s", ExpectedVersion::Exact(5), vec![event(3)]).await;
        assert!(matches!(ahead, Err(StoreError::Conflict { .. })));
        store.append_to("s", ExpectedVersion::Any, vec![event(4)]).await.unwrap();
        let stream = store.read_stream("s", 1).await.unwrap();
        assert_eq!(stream.len(), 2);
        assert_eq!(stream[0].payload["added"], json!(["s1"]), "the first event is untouched");
        assert_eq!(stream[1].payload["added"], json!(["s4"]));
    }
}

#[actix_web::test]
async fn multi_stream_appends_are_all_or_nothing() {
    for tdb in backends().await {
        let (_db, store) = tdb.store().await;
        store.append_to("taken", ExpectedVersion::NoStream, vec![event(1)]).await.unwrap();
        let result = store.append(vec![write("fresh", ExpectedVersion::NoStream, 2), write("taken", ExpectedVersion::NoStream, 3)]).await;
        assert!(matches!(result, Err(StoreError::Conflict { ref stream_id, .. }) if stream_id == "taken"), "{}", tdb.backend);
        assert!(store.read_stream("fresh", 1).await.unwrap().is_empty(), "nothing of a failed append lands");
        let both = store.append(vec![write("fresh", ExpectedVersion::NoStream, 2), write("taken", ExpectedVersion::Exact(1), 3)]).await;
        assert_eq!(both.unwrap().len(), 2);
    }
}

#[actix_web::test]
async fn concurrent_appends_share_transactions_and_conflicts_stay_private() {
    for tdb in backends_and_pipelined_postgres().await {
        let (_db, store) = tdb.store().await;
        // 200 appends to distinct streams plus 20 racing to create one stream.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks
                .push(tokio::spawn(async move { store.append_to(&format!("grant-{i}"), ExpectedVersion::NoStream, vec![event(i)]).await }));
        }
        for i in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.append_to("grant-contended", ExpectedVersion::NoStream, vec![event(i)]).await }));
        }
        let mut ok = 0;
        let mut conflicts = 0;
        let mut stamps = HashSet::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(events) => {
                    ok += 1;
                    stamps.insert(events[0].recorded_at);
                }
                Err(StoreError::Conflict { .. }) if i >= 200 => conflicts += 1,
                Err(e) => panic!("{}: append {i} failed: {e}", tdb.backend),
            }
        }
        assert_eq!((ok, conflicts), (201, 19), "{}: every distinct append lands, one racer wins", tdb.backend);
        // Each transaction stamps one time: fewer stamps than appends means
        // appends were committed together.
        assert!(stamps.len() < 100, "{}: {} transactions for 201 appends", tdb.backend, stamps.len());
        let all = store.read_all(0, 1000).await.unwrap();
        assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=201).collect::<Vec<_>>());
    }
}

#[actix_web::test]
async fn subscription_catches_up_then_follows_without_gap_or_duplicate() {
    for tdb in backends().await {
        let (_db, store) = tdb.store().await;
        for i in 0..50 {
            store.append_to(&format!("s-{i}"), ExpectedVersion::NoStream, vec![event(i)]).await.unwrap();
        }
        let sub = store.subscribe(10);
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for i in 50..450 {
                    let store = store.clone();
                    tasks.push(tokio::spawn(
                        async move { store.append_to(&format!("s-{i}"), ExpectedVersion::NoStream, vec![event(i)]).await },
                    ));
                }
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
            })
        };
        let got: Vec<i64> = tokio::time::timeout(Duration::from_secs(30), sub.take(440).map(|e| e.unwrap().position).collect())
            .await
            .expect("subscription delivers");
        writer.await.unwrap();
        assert_eq!(got, (11..=450).collect::<Vec<_>>(), "{}", tdb.backend);
    }
}

#[actix_web::test]
async fn readers_never_see_a_position_appear_below_one_they_saw() {
    for tdb in backends_and_pipelined_postgres().await {
        // Two stores on one database: two nodes (or processes) writing at once.
        let (_db1, node1) = tdb.store().await;
        let (_db2, node2) = tdb.store().await;
        let mut writers = Vec::new();
        for (n, store) in [node1.clone(), node2.clone()].into_iter().enumerate() {
            for w in 0..16 {
                let store = store.clone();
                writers.push(tokio::spawn(async move {
                    for i in 0..25 {
                        store.append_to(&format!("n{n}-w{w}-{i}"), ExpectedVersion::NoStream, vec![event(i)]).await.unwrap();
                    }
                }));
            }
        }
        let total = 2 * 16 * 25;
        let mut last = 0;
        while last < total {
            let page = node1.read_all(last, 50).await.unwrap();
            if let Some(first) = page.first() {
                assert_eq!(first.position, last + 1, "{}: a reader at {last} found {} next", tdb.backend, first.position);
                for pair in page.windows(2) {
                    assert_eq!(pair[1].position, pair[0].position + 1);
                }
                last = page.last().map(|e| e.position).unwrap_or(last);
            } else {
                tokio::task::yield_now().await;
            }
        }
        for w in writers {
            w.await.unwrap();
        }
        // Node 2's subscription sees node 1's events too (polling/LISTEN).
        let seen: Vec<i64> =
            tokio::time::timeout(Duration::from_secs(10), node2.subscribe(0).take(total as usize).map(|e| e.unwrap().position).collect())
                .await
                .expect("node 2 follows the shared log");
        assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    }
}

#[actix_web::test]
async fn hash_chain_verifies_and_names_the_first_altered_event() {
    for tdb in backends().await {
        let (db, store) = tdb.store().await;
        for i in 0..30 {
            store.append_to(&format!("s-{}", i % 4), ExpectedVersion::Any, vec![event(i)]).await.unwrap();
        }
        match verify_chain(&store, |_| {}).await.unwrap() {
            ChainReport::Intact { events, .. } => assert_eq!(events, 30),
            broken => panic!("{}: fresh log reported {broken:?}", tdb.backend),
        }
        // Someone with database access alters event 17 (and must first
        // remove the immutability trigger to do so).
        let tamper = match db {
            Db::Sqlite { .. } => {
                "DROP TRIGGER events_are_immutable_update; UPDATE events SET payload = '{\"added\":[\"admin\"],\"scopes\":[\"admin\"]}' WHERE position = 17"
            }
            Db::Postgres { .. } => {
                "DROP TRIGGER events_are_immutable ON events; UPDATE events SET payload = '{\"added\":[\"admin\"],\"scopes\":[\"admin\"]}' WHERE position = 17"
            }
        };
        exec(&db, tamper).await;
        match verify_chain(&store, |_| {}).await.unwrap() {
            ChainReport::Broken { position, reason } => {
                assert_eq!(position, 17, "{}", tdb.backend);
                assert!(reason.contains("altered"), "{reason}");
            }
            intact => panic!("{}: tampering went unnoticed: {intact:?}", tdb.backend),
        }
    }
}

#[actix_web::test]
async fn events_cannot_be_updated_or_deleted_through_sql() {
    for tdb in backends().await {
        let (db, store) = tdb.store().await;
        store.append_to("s", ExpectedVersion::NoStream, vec![event(1)]).await.unwrap();
        for sql in ["UPDATE events SET event_type = 'X'", "DELETE FROM events"] {
            let result = match &db {
                Db::Sqlite { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
                Db::Postgres { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
            };
            let err = result.expect_err("the log must refuse rewrites").to_string();
            assert!(err.contains("immutable"), "{}: {err}", tdb.backend);
        }
    }
}

#[actix_web::test]
async fn a_corrupt_row_fails_its_read_with_its_position() {
    let tdb = TestDb::sqlite().await;
    let (db, store) = tdb.store().await;
    for i in 0..5 {
        store.append_to("s", ExpectedVersion::Any, vec![event(i)]).await.unwrap();
    }
    exec(&db, "DROP TRIGGER events_are_immutable_update; UPDATE events SET payload = 'garbage{' WHERE position = 3").await;
    let err = store.read_all(0, 10).await.expect_err("corrupt row");
    assert!(matches!(err, StoreError::Corrupt { position: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("position 3"));
    assert!(matches!(verify_chain(&store, |_| {}).await.unwrap(), ChainReport::Broken { position: 3, .. }));
}

#[actix_web::test]
async fn old_schema_versions_are_upcast_on_read_and_never_rewritten() {
    for tdb in backends().await {
        let (_db, store) = tdb.store().await;
        let v1 = NewEvent::new(
            Uuid::new_v4(),
            "ClientRegistered",
            1,
            json!({"client_id": "legacy", "name": "Legacy", "redirect_uris": [], "grant_types": ["client_credentials"],
                   "scopes": ["api"], "confidential": true, "first_party": false, "secret_hash": "00".repeat(32)}),
            CommandContext::system(),
        );
        store.append_to("client-legacy", ExpectedVersion::NoStream, vec![v1]).await.unwrap();
        let read = &store.read_stream("client-legacy", 1).await.unwrap()[0];
        assert_eq!(read.schema_version, 2, "{}", tdb.backend);
        assert_eq!(read.payload["id_token_signed_response_alg"], "EdDSA");
        let decoded: grantd::domain::client::ClientEvent = read.decode().unwrap();
        assert!(matches!(decoded, grantd::domain::client::ClientEvent::ClientRegistered(_)));
        let raw = &store.read_raw(0, 1).await.unwrap()[0];
        assert_eq!(raw.schema_version, 1, "the stored row keeps its version");
        assert!(!raw.payload.contains("id_token_signed_response_alg"));
        assert!(matches!(verify_chain(&store, |_| {}).await.unwrap(), ChainReport::Intact { events: 1, .. }));
    }
}

#[actix_web::test]
async fn sqlite_is_durable_wal_with_full_sync_and_migrations_rerun_cleanly() {
    let tdb = TestDb::sqlite().await;
    let db = tdb.open().await;
    db.migrate().await.expect("second migration run is a no-op");
    let Db::Sqlite { pool, .. } = &db else { unreachable!() };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
    assert_eq!((mode.as_str(), sync), ("wal", 2), "WAL with synchronous=FULL (2)");
}

#[actix_web::test]
async fn unreachable_databases_fail_with_the_url_but_not_the_password() {
    let err = Db::connect("postgres://grantd:hunter2@127.0.0.1:1/nowhere").await.expect_err("nothing listens on port 1");
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1") && !msg.contains("hunter2") && !msg.contains('\n'), "{msg}");
    let err = Db::connect("sqlite:///nonexistent-dir/sub/grantd.db").await.expect_err("missing directory");
    assert!(err.to_string().contains("nonexistent-dir"), "{err}");
    assert!(Db::connect("mysql://x").await.is_err());
}

#[actix_web::test]
async fn two_stores_on_one_log_continue_the_same_chain() {
    for tdb in backends_and_pipelined_postgres().await {
        let (_d1, a) = tdb.store().await;
        let (_d2, b) = tdb.store().await;
        for i in 0..10 {
            let store: &EventStore = if i % 2 == 0 { &a } else { &b };
            store.append_to(&format!("s{i}"), ExpectedVersion::NoStream, vec![event(i)]).await.unwrap();
        }
        assert!(matches!(verify_chain(&a, |_| {}).await.unwrap(), ChainReport::Intact { events: 10, .. }), "{}", tdb.backend);
    }
}

/// A store decides from what it last knew (on PostgreSQL it guesses the head
/// and the stream versions from its own commits): when another node has
/// moved on, the expectations are still judged against the actual log.
#[actix_web::test]
async fn expectations_are_judged_against_appends_of_another_store() {
    for tdb in backends_and_pipelined_postgres().await {
        let (_d1, a) = tdb.store().await;
        let (_d2, b) = tdb.store().await;
        a.append_to("shared", ExpectedVersion::NoStream, vec![event(1)]).await.unwrap();
        // b never wrote "shared" and has a stale head: both are corrected.
        let lost = b.append_to("shared", ExpectedVersion::NoStream, vec![event(2)]).await;
        assert!(matches!(lost, Err(StoreError::Conflict { actual: 1, .. })), "{}: {lost:?}", tdb.backend);
        let stale = a.append_to("shared", ExpectedVersion::Exact(2), vec![event(3)]).await;
        assert!(matches!(stale, Err(StoreError::Conflict { actual: 1, .. })), "{}: {stale:?}", tdb.backend);
        b.append_to("shared", ExpectedVersion::Exact(1), vec![event(4)]).await.unwrap();
        // a's remembered head is now behind b's append.
        let recorded = a.append_to("shared", ExpectedVersion::Exact(2), vec![event(5)]).await.unwrap();
        assert_eq!((recorded[0].position, recorded[0].stream_version), (3, 3), "{}", tdb.backend);
        assert!(matches!(verify_chain(&b, |_| {}).await.unwrap(), ChainReport::Intact { events: 3, .. }), "{}", tdb.backend);
    }
}

/// On PostgreSQL a writer may prepare a batch on the head of one still in
/// flight; should that one fail, another node's events can reach the same
/// head position. The append checks the head's hash too, so rows chained
/// to a head that never landed are refused, not inserted.
#[actix_web::test]
async fn an_append_built_on_a_head_that_never_landed_is_refused_by_either_version() {
    for tdb in backends().await.into_iter().filter(|t| t.backend == "postgres") {
        let (db, store) = tdb.store().await;
        let recorded = store.append_to("landed", ExpectedVersion::NoStream, vec![event(1), event(2)]).await.unwrap();
        let Db::Postgres { pool, .. } = &db else { unreachable!("a PostgreSQL test database") };
        let imagined_head = [7u8; 32];
        let verdict: Vec<(Option<String>, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT * FROM grantd_append_if_current(1, 2, $1, ARRAY['next'], ARRAY[0::BIGINT], ARRAY[3::BIGINT], ARRAY['next'], \
             ARRAY[1::BIGINT], ARRAY['ConsentScopesExtended'], ARRAY[1], ARRAY['{}'], ARRAY['{}'], now(), $2, $3, 'grantd_events', 'test')",
        )
        .bind(&imagined_head[..])
        .bind(vec![&imagined_head[..]])
        .bind(vec![&[9u8; 32][..]])
        .fetch_all(pool)
        .await
        .unwrap();
        // Refused: the actual head (position 2, its real hash) comes back.
        assert!(verdict.contains(&(None, 2, Some(recorded[1].hash.to_vec()))), "{verdict:?}");
        // Version 1 stays callable for nodes not yet upgraded, and still
        // refuses a stale head position.
        let old_verdict: Vec<(Option<String>, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT * FROM grantd_append_if_current(1, 1, ARRAY['next'], ARRAY[0::BIGINT], ARRAY[2::BIGINT], ARRAY['next'], \
             ARRAY[1::BIGINT], ARRAY['ConsentScopesExtended'], ARRAY[1], ARRAY['{}'], ARRAY['{}'], now(), $1, $2, 'grantd_events')",
        )
        .bind(vec![&imagined_head[..]])
        .bind(vec![&[9u8; 32][..]])
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(old_verdict.contains(&(None, 2, Some(recorded[1].hash.to_vec()))), "{old_verdict:?}");
        assert_eq!(store.head().await.unwrap(), 2);
        assert!(matches!(verify_chain(&store, |_| {}).await.unwrap(), ChainReport::Intact { events: 2, .. }));
    }
}

/// On PostgreSQL a node announces its commits (NOTIFY) only while another
/// node listens: alone on its database it would only wake its own listener
/// for every batch. Here an outside session listens on the channel all
/// along; the node's first commit, made while it is the only node, is not
/// announced, the one after a second node has started is.
#[actix_web::test]
async fn commits_are_announced_only_while_another_node_listens() {
    for tdb in backends().await.into_iter().filter(|t| t.backend == "postgres") {
        let (db, node1) = tdb.store().await;
        let Db::Postgres { pool, .. } = &db else { unreachable!("a PostgreSQL test database") };
        let mut outsider = sqlx::postgres::PgListener::connect_with(pool).await.unwrap();
        outsider.listen("grantd_events").await.unwrap();
        let listening_nodes = || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM grantd_listeners").fetch_one(pool).await.unwrap();
            n
        };
        crate::helpers::eventually("node 1 names itself a listener", Duration::from_secs(10), || async {
            (listening_nodes().await == 1).then_some(())
        })
        .await;
        node1.append_to("alone", ExpectedVersion::NoStream, vec![event(1)]).await.unwrap();

        let (_db2, node2) = tdb.store().await;
        crate::helpers::eventually("node 2 names itself a listener", Duration::from_secs(10), || async {
            (listening_nodes().await == 2).then_some(())
        })
        .await;
        node1.append_to("watched", ExpectedVersion::NoStream, vec![event(2)]).await.unwrap();
        // The outsider has listened since before the first commit: had that
        // been announced, its announcement would come first.
        let first = tokio::time::timeout(Duration::from_secs(10), outsider.recv()).await.expect("an announcement").unwrap();
        assert_eq!(first.payload().split_once(' ').map(|(position, _)| position), Some("2"), "{}", first.payload());

        // A node that stops takes its name away.
        drop(node2);
        crate::helpers::eventually("node 2's name is gone", Duration::from_secs(10), || async {
            (listening_nodes().await == 1).then_some(())
        })
        .await;
    }
}
