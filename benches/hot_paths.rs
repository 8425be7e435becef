//! Micro-benchmarks of the functions on grantd's hot paths (criterion):
//!
//! - `jwt/sign`, `jwt/verify`: an RFC 9068 access token with
//!   `JwsSigner::sign_claims` and `JwsVerifier::verify` (Ed25519);
//! - `client_auth/basic`, `client_auth/post`: `presented_client` plus
//!   `secret_matches`, as `/token` and `/introspect` authenticate callers;
//! - `prepare_batch/N`: positions, versions and the hash chain for a group
//!   commit of N one-event appends (the token path's shape);
//! - `revocation/hit`, `revocation/miss`, `revocation/miss_fresh_id`:
//!   `LiveView::is_revoked` with 100,000 revoked grants applied.
//!
//! Run them with:
//!
//! ```text
//! cargo bench --bench hot_paths                  # all
//! cargo bench --bench hot_paths -- jwt           # a filter
//! cargo bench --bench hot_paths -- --quick       # fewer samples
//! ```

use std::collections::HashMap;
use std::hint::black_box;

use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use grantd::domain::Actor;
use grantd::domain::grant::{GrantEvent, GrantRevoked, RevocationReason};
use grantd::eventstore::{CommandContext, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, StreamWrite, batch_time, prepare_batch};
use grantd::issuance::AccessClaims;
use grantd::jose::{JwsSigner, JwsVerifier};
use grantd::oauth::client_auth::{presented_client, secret_hash_hex, secret_matches};
use grantd::oauth::params::{Params, parse_form};
use grantd::projections::live::LiveView;
use uuid::Uuid;

const ISSUER: &str = "http://127.0.0.1:8080";
const KID: &str = "ed25519-bench";

fn signer_and_verifier() -> (JwsSigner, JwsVerifier) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut verifier = JwsVerifier::new();
    verifier.insert(KID, key.verifying_key());
    (JwsSigner::ed25519(KID, key).expect("a valid key"), verifier)
}

fn access_claims<'a>(jti: &'a str, grant_id: &'a str) -> AccessClaims<'a> {
    let now = Utc::now().timestamp();
    AccessClaims {
        iss: ISSUER,
        sub: "bench",
        aud: ISSUER,
        exp: now + 600,
        iat: now,
        jti,
        client_id: "bench",
        scope: "api".into(),
        grant_id,
    }
}

fn jwt(c: &mut Criterion) {
    let (signer, verifier) = signer_and_verifier();
    let jti = Uuid::new_v4().to_string();
    let grant_id = Uuid::new_v4().to_string();
    let mut group = c.benchmark_group("jwt");
    group.bench_function("sign", |b| b.iter(|| signer.sign_claims(black_box("at+jwt"), black_box(&access_claims(&jti, &grant_id)))));
    let token = signer.sign_claims("at+jwt", &access_claims(&jti, &grant_id));
    assert!(verifier.verify(&token, "at+jwt").is_ok());
    group.bench_function("verify", |b| b.iter(|| verifier.verify(black_box(&token), black_box("at+jwt")).expect("valid token")));
    group.finish();
}

fn client_auth(c: &mut Criterion) {
    let secret = "yF3q8Jm1sZp0k2Qw9XvR4tLb7NcD6eHa5gUi3oPjKlM";
    let stored = secret_hash_hex(secret);
    let basic = format!("Basic {}", base64_standard(&format!("bench:{secret}")));
    let basic_body: Params = parse_form(Some("application/x-www-form-urlencoded"), b"grant_type=client_credentials&scope=api").unwrap();
    let post_body = format!("grant_type=client_credentials&scope=api&client_id=bench&client_secret={secret}");
    let post_params: Params = parse_form(Some("application/x-www-form-urlencoded"), post_body.as_bytes()).unwrap();

    let mut group = c.benchmark_group("client_auth");
    group.bench_function("basic", |b| {
        b.iter(|| {
            let presented = presented_client(black_box(Some(basic.as_str())), black_box(&basic_body)).expect("presented");
            assert!(secret_matches(presented.client_secret().unwrap_or_default(), black_box(&stored)));
        })
    });
    group.bench_function("post", |b| {
        b.iter(|| {
            let presented = presented_client(black_box(None), black_box(&post_params)).expect("presented");
            assert!(secret_matches(presented.client_secret().unwrap_or_default(), black_box(&stored)));
        })
    });
    group.finish();
}

/// A batch like the token path's: `n` new grant streams, one
/// AccessTokenIssued event each.
fn token_batch(n: usize) -> Vec<Vec<StreamWrite>> {
    let context = CommandContext {
        actor: Actor::client("bench"),
        request_id: Some(Uuid::new_v4().to_string()),
        source_address: Some("127.0.0.1".into()),
        authentication: None,
    };
    (0..n)
        .map(|_| {
            let event = NewEvent::new(
                Uuid::new_v4(),
                "AccessTokenIssued",
                1,
                serde_json::json!({
                    "jti": Uuid::new_v4().to_string(),
                    "grant_type": "client_credentials",
                    "client_id": "bench",
                    "subject": "bench",
                    "user_id": null,
                    "scopes": ["api"],
                    "issued_at": "2026-11-28T00:00:00Z",
                    "expires_at": "2026-11-28T00:10:00Z",
                }),
                context.clone(),
            );
            vec![StreamWrite { stream_id: format!("grant-{}", Uuid::new_v4()), expected: ExpectedVersion::NoStream, events: vec![event] }]
        })
        .collect()
}

fn prepare(c: &mut Criterion) {
    let mut group = c.benchmark_group("prepare_batch");
    for n in [1usize, 16, 64, 256] {
        let batch = token_batch(n);
        let versions: HashMap<String, i64> = HashMap::new();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(n.to_string(), |b| {
            b.iter(|| {
                let (rows, outcomes) = prepare_batch(black_box(&batch), (1000, [3u8; 32]), black_box(&versions), batch_time());
                assert_eq!((rows.len(), outcomes.len()), (n, n));
                rows
            })
        });
    }
    group.finish();
}

fn revocation(c: &mut Criterion) {
    const REVOKED: usize = 100_000;
    let view = LiveView::new(None);
    let context = CommandContext::by(Actor::client("bench"));
    let recorded_at = Utc::now();
    let mut grants = Vec::with_capacity(REVOKED);
    for i in 0..REVOKED {
        let grant_id = Uuid::new_v4().to_string();
        let event: GrantEvent = GrantRevoked { reason: RevocationReason::RevokedByClient }.into();
        let new = NewEvent::from_domain(&event, &context);
        let payload = new.payload().clone();
        view.apply(&RecordedEvent {
            position: i as i64 + 1,
            stream_id: format!("grant-{grant_id}"),
            stream_version: 1,
            event_type: new.event_type,
            schema_version: new.schema_version,
            payload,
            metadata: EventMetadata { event_id: new.event_id, recorded_at, context: new.context },
            recorded_at,
            prev_hash: [0; 32],
            hash: [0; 32],
        });
        grants.push(grant_id);
    }
    assert_eq!(view.revoked_count(), REVOKED);
    let revoked = grants[REVOKED / 2].clone();
    let live = Uuid::new_v4().to_string();

    let mut group = c.benchmark_group("revocation");
    group.bench_function("hit", |b| b.iter(|| assert!(view.is_revoked(black_box(&revoked)))));
    group.bench_function("miss", |b| b.iter(|| assert!(!view.is_revoked(black_box(&live)))));
    group.bench_function("miss_fresh_id", |b| {
        b.iter_batched(|| Uuid::new_v4().to_string(), |id| view.is_revoked(&id), BatchSize::SmallInput)
    });
    group.finish();
}

fn base64_standard(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

criterion_group!(benches, jwt, client_auth, prepare, revocation);
criterion_main!(benches);
