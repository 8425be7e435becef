//! Compliance queries on a large log: 10,000 users and about a million
//! events; measures `consentHistory` and `accessAt` for one user over HTTP
//! GraphQL, and the JSONL export rate.
//!
//!     cargo bench --bench compliance
//!
//! Environment: `COMPLIANCE_USERS` (10000), `COMPLIANCE_QUERIES` (200),
//! `GRANTD_BENCH_POSTGRES_URL` to run on PostgreSQL instead of SQLite.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use grantd::app::Application;
use grantd::config::ServeConfig;
use grantd::domain::client::GrantType;
use grantd::domain::consent::{ConsentEvent, ConsentGranted, ConsentRevoked, ConsentScopesExtended};
use grantd::domain::grant::{
    AccessTokenIssued, AuthorizationCodeIssued, AuthorizationCodeRedeemed, GrantEvent, GrantRevoked, RefreshTokenIssued,
    RefreshTokenRotated, RevocationReason,
};
use grantd::domain::user::{UserEvent, UserRegistered};
use grantd::domain::{Actor, DomainEvent};
use grantd::eventstore::{CommandContext, EventStore, ExpectedVersion, NewEvent, StreamWrite};
use grantd::keys::MasterKeySource;
use serde_json::{Value, json};
use uuid::Uuid;

const CLIENTS: usize = 10;
const GRANTS_PER_CONSENT: usize = 7;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn new_event<E: DomainEvent, T: Into<E>>(e: T, ctx: &CommandContext) -> NewEvent {
    NewEvent::from_domain(&e.into(), ctx)
}

fn hash(i: usize, j: usize, k: usize) -> String {
    format!("{:064x}", (i as u128) << 64 | (j as u128) << 32 | k as u128)
}

/// About a hundred events for one user: registration, three consents
/// (granted, extended, one revoked), seven code grants per consent with
/// tokens and a rotation, revocations.
fn user_history(i: usize) -> (String, Vec<StreamWrite>) {
    let user = Uuid::new_v4().to_string();
    let by_user = CommandContext {
        actor: Actor::user(&user),
        request_id: Some(format!("req-{i}")),
        source_address: Some("127.0.0.1".into()),
        authentication: Some("pwd".into()),
    };
    let t0 = Utc.timestamp_opt(1_790_000_000 + i as i64 * 60, 0).single().expect("time");
    let mut writes = vec![StreamWrite {
        stream_id: format!("user-{user}"),
        expected: ExpectedVersion::NoStream,
        events: vec![new_event::<UserEvent, _>(
            UserRegistered {
                username: format!("user{i}"),
                email: Some(format!("user{i}@example.com")),
                name: None,
                password_hash: "$argon2id$bench".into(),
            },
            &CommandContext::by(Actor::client("grantd-admin")),
        )],
    }];
    for c in 0..3 {
        let client = format!("client-{}", (i + c) % CLIENTS);
        let mut consent = vec![
            new_event::<ConsentEvent, _>(
                ConsentGranted { user_id: user.clone(), client_id: client.clone(), scopes: vec!["openid".into()] },
                &by_user,
            ),
            new_event::<ConsentEvent, _>(
                ConsentScopesExtended { added: vec!["profile".into()], scopes: vec!["openid".into(), "profile".into()] },
                &by_user,
            ),
        ];
        let revoke = c == 2;
        if revoke {
            consent.push(new_event::<ConsentEvent, _>(ConsentRevoked { scopes: vec!["openid".into(), "profile".into()] }, &by_user));
        }
        writes.push(StreamWrite { stream_id: format!("consent-{user}-{client}"), expected: ExpectedVersion::NoStream, events: consent });
        for g in 0..GRANTS_PER_CONSENT {
            let by_client = CommandContext::by(Actor::client(&client));
            let scopes = vec!["openid".to_string(), "profile".to_string()];
            let issued = t0 + chrono::Duration::seconds((c * 10 + g) as i64);
            let mut events = vec![
                new_event::<GrantEvent, _>(
                    AuthorizationCodeIssued {
                        client_id: client.clone(),
                        user_id: user.clone(),
                        scopes: scopes.clone(),
                        code_hash: hash(i, c, g),
                        redirect_uri: "https://app.example/cb".into(),
                        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
                        code_challenge_method: "S256".into(),
                        nonce: None,
                        auth_time: issued,
                        expires_at: issued + chrono::Duration::seconds(60),
                    },
                    &by_user,
                ),
                new_event::<GrantEvent, _>(AuthorizationCodeRedeemed { code_hash: hash(i, c, g) }, &by_client),
                new_event::<GrantEvent, _>(
                    AccessTokenIssued {
                        jti: Uuid::new_v4().to_string(),
                        grant_type: GrantType::AuthorizationCode,
                        client_id: client.clone(),
                        subject: user.clone(),
                        user_id: Some(user.clone()),
                        scopes: scopes.clone(),
                        issued_at: issued,
                        expires_at: issued + chrono::Duration::minutes(10),
                    },
                    &by_client,
                ),
                new_event::<GrantEvent, _>(
                    RefreshTokenIssued {
                        token_hash: hash(i, c, g + 100),
                        expires_at: issued + chrono::Duration::days(14),
                        client_id: client.clone(),
                        subject: user.clone(),
                        user_id: Some(user.clone()),
                        scopes: scopes.clone(),
                    },
                    &by_client,
                ),
            ];
            if g == 0 {
                events.push(new_event::<GrantEvent, _>(
                    RefreshTokenRotated {
                        previous_hash: hash(i, c, g + 100),
                        token_hash: hash(i, c, g + 200),
                        expires_at: issued + chrono::Duration::days(14),
                    },
                    &by_client,
                ));
                events.push(new_event::<GrantEvent, _>(
                    AccessTokenIssued {
                        jti: Uuid::new_v4().to_string(),
                        grant_type: GrantType::RefreshToken,
                        client_id: client.clone(),
                        subject: user.clone(),
                        user_id: Some(user.clone()),
                        scopes,
                        issued_at: issued + chrono::Duration::minutes(5),
                        expires_at: issued + chrono::Duration::minutes(15),
                    },
                    &by_client,
                ));
            }
            if revoke {
                events.push(new_event::<GrantEvent, _>(
                    GrantRevoked { reason: RevocationReason::ConsentRevoked },
                    &CommandContext::by(Actor::client("grantd-admin")),
                ));
            }
            writes.push(StreamWrite { stream_id: format!("grant-{}", Uuid::new_v4()), expected: ExpectedVersion::NoStream, events });
        }
    }
    (user, writes)
}

async fn build_log(store: &EventStore, users: usize) -> Vec<(String, String)> {
    let started = Instant::now();
    let mut handles = Vec::new();
    let workers = 32;
    for w in 0..workers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in (w..users).step_by(workers) {
                let (user, writes) = user_history(i);
                store.append(writes).await.expect("append history");
                mine.push((user, format!("client-{}", i % CLIENTS)));
            }
            mine
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.extend(h.await.expect("writer"));
    }
    let head = store.head().await.expect("head");
    eprintln!("log: {head} events for {users} users written in {:.1?}", started.elapsed());
    out
}

async fn graphql(client: &reqwest::Client, url: &str, token: &str, query: &str, variables: Value) -> Value {
    let response =
        client.post(url).bearer_auth(token).json(&json!({"query": query, "variables": variables})).send().await.expect("POST /graphql");
    let body: Value = response.json().await.expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    body
}

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3;
    println!("{label:<16} {:>5} queries  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms", samples.len(), pct(0.5), pct(0.99), pct(1.0));
}

fn main() {
    let users = env_usize("COMPLIANCE_USERS", 10_000);
    let queries = env_usize("COMPLIANCE_QUERIES", 200);
    let runtime = actix_web::rt::System::new();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = match std::env::var("GRANTD_BENCH_POSTGRES_URL") {
            Ok(admin) => {
                let pool = sqlx::PgPool::connect(&admin).await.expect("connect");
                let name = format!("grantd_bench_{}", Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.expect("create db");
                let mut url = url::Url::parse(&admin).expect("url");
                url.set_path(&name);
                url.to_string()
            }
            Err(_) => format!("sqlite://{}", dir.path().join("compliance.db").display()),
        };
        let (db, store) = grantd::app::open(&url).await.expect("open");
        let master = grantd::keys::MasterKey::from_bytes([9; 32]);
        grantd::setup::initialize(&store, &master, Some("grantd-admin".into()), Some("bench-admin-secret-0123456789".into()))
            .await
            .expect("init");
        let pairs = build_log(&store, users).await;
        let started = Instant::now();
        let runner = grantd::projections::runner::ProjectionRunner::new(db.clone(), store.clone());
        runner.catch_up(|_| {}).await.expect("project");
        eprintln!("read models built in {:.1?}", started.elapsed());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let base = format!("http://127.0.0.1:{port}");
        let config = ServeConfig {
            database_url: url.clone(),
            bind: format!("127.0.0.1:{port}"),
            issuer: base.clone(),
            master_key: MasterKeySource::Value(hex::encode([9u8; 32])),
            admin_client_id: None,
            admin_client_secret: None,
            workers: 2,
            appends_in_flight: 1,
            lifetimes: Default::default(),
        };
        let app = Application::build_with_listener(config, listener).await.expect("app");
        actix_web::rt::spawn(app.into_server());
        let http = reqwest::Client::new();
        let token: Value = http
            .post(format!("{base}/token"))
            .basic_auth("grantd-admin", Some("bench-admin-secret-0123456789"))
            .form(&[("grant_type", "client_credentials"), ("scope", "admin")])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        let token = token["access_token"].as_str().expect("admin token").to_string();
        let endpoint = format!("{base}/graphql");

        let history =
            "query($u: ID!, $c: String!) { consentHistory(userId: $u, clientId: $c) { type scopes recordedAt actor { kind id } } }";
        let access =
            "query($u: ID!, $at: String!) { accessAt(userId: $u, at: $at) { clientId consentedScopes grants { grantId scopes } } }";
        let at = Utc.timestamp_opt(1_790_000_000 + users as i64 * 30, 0).single().expect("time").to_rfc3339();
        let mut history_times = Vec::new();
        let mut access_times = Vec::new();
        for q in 0..queries {
            let (user, client) = &pairs[(q * 7919) % pairs.len()];
            let started = Instant::now();
            let body = graphql(&http, &endpoint, &token, history, json!({"u": user, "c": client})).await;
            history_times.push(started.elapsed());
            assert!(!body["data"]["consentHistory"].as_array().expect("list").is_empty());
            let started = Instant::now();
            graphql(&http, &endpoint, &token, access, json!({"u": user, "at": at})).await;
            access_times.push(started.elapsed());
        }
        let head = store.head().await.expect("head");
        println!("log        {head} events, {users} users, backend {}", if url.starts_with("sqlite") { "sqlite" } else { "postgres" });
        summary("consentHistory", history_times);
        summary("accessAt", access_times);

        let started = Instant::now();
        let mut export = http.get(format!("{base}/audit/export?format=jsonl")).bearer_auth(&token).send().await.expect("export");
        let (mut lines, mut bytes) = (0usize, 0usize);
        while let Some(chunk) = export.chunk().await.expect("chunk") {
            lines += chunk.iter().filter(|b| **b == b'\n').count();
            bytes += chunk.len();
        }
        let elapsed = started.elapsed();
        assert_eq!(lines as i64, head, "every event exported");
        println!(
            "export jsonl     {lines} events  {:.1} MB  {:.1?}  {:.0} events/s",
            bytes as f64 / 1e6,
            elapsed,
            lines as f64 / elapsed.as_secs_f64()
        );
        let _ = db;
    });
}
