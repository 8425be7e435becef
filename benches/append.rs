//! Durable append throughput: 64 concurrent tasks, each appending one event
//! at a time, on SQLite (WAL, synchronous=FULL) and, when
//! `GRANTD_BENCH_POSTGRES_URL` (or `GRANTD_TEST_POSTGRES_URL`) names a
//! server, on PostgreSQL (default synchronous_commit).
//!
//!     cargo bench --bench append
//!
//! Environment: `APPEND_TASKS` (64), `APPEND_PER_TASK` (500).

use std::time::Instant;

use grantd::db::Db;
use grantd::domain::Actor;
use grantd::eventstore::{CommandContext, EventStore, ExpectedVersion, NewEvent};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn run(label: &str, url: &str, tasks: usize, per_task: usize) {
    let db = Db::connect(url).await.expect("connect");
    db.migrate().await.expect("migrate");
    let store = EventStore::open(&db).await.expect("open store");
    let context = CommandContext::by(Actor::client("bench"));
    // Warm-up: connections, page cache, prepared statements.
    for i in 0..200 {
        store.append_to(&format!("warmup-{i}"), ExpectedVersion::NoStream, vec![event(&context)]).await.expect("warm-up append");
    }
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        let context = context.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let began = Instant::now();
                // A fresh grant stream per event, as the token path does.
                store.append_to(&format!("grant-{t}-{i}"), ExpectedVersion::NoStream, vec![event(&context)]).await.expect("append");
                latencies.push(began.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.expect("task"));
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let total = tasks * per_task;
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{label:<10} {total:>7} events  {tasks} tasks  {:>9.0} events/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        total as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    let head = store.head().await.expect("head");
    assert_eq!(head as usize, total + 200, "every acknowledged append is in the log");
    db.close().await;
}

fn event(context: &CommandContext) -> NewEvent {
    NewEvent::new(
        uuid::Uuid::new_v4(),
        "AccessTokenIssued",
        1,
        serde_json::json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "grant_type": "client_credentials",
            "client_id": "bench",
            "subject": "bench",
            "user_id": null,
            "scopes": ["api"],
            "issued_at": "2026-11-28T00:00:00Z",
            "expires_at": "2026-11-28T00:10:00Z",
        }),
        context.clone(),
    )
}

fn main() {
    let tasks = env_usize("APPEND_TASKS", 64);
    let per_task = env_usize("APPEND_PER_TASK", 500);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        run("sqlite", &url, tasks, per_task).await;
        let pg = std::env::var("GRANTD_BENCH_POSTGRES_URL").or_else(|_| std::env::var("GRANTD_TEST_POSTGRES_URL"));
        if let Ok(admin) = pg {
            let admin_pool = sqlx::PgPool::connect(&admin).await.expect("connect to PostgreSQL");
            let name = format!("grantd_bench_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin_pool).await.expect("create database");
            let mut url = url::Url::parse(&admin).expect("url");
            url.set_path(&name);
            run("postgres", url.as_str(), tasks, per_task).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&admin_pool).await.ok();
        } else {
            println!("postgres   skipped: set GRANTD_BENCH_POSTGRES_URL=postgres://user:pass@host/postgres");
        }
    });
}
