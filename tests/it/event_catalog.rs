//! The event catalog under `events/` and the events the code emits agree in
//! both directions:
//!
//! - every event the aggregates emit (produced here by deciding real commands)
//!   validates against `events/<aggregate>/<EventType>.v<version>.json`;
//! - every schema file belongs to an event type the code emits at that
//!   version, or is an older version whose examples upcast to the current
//!   version and validate there;
//! - every schema's own examples validate against it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use grantd::domain::client::{Client, ClientCommand, ClientEvent, ClientSettings, GrantType, SigningAlg};
use grantd::domain::consent::{Consent, ConsentCommand, ConsentEvent};
use grantd::domain::grant::{Grant, GrantCommand, GrantEvent, NewAccessToken, NewRefreshToken, RevocationReason};
use grantd::domain::installation::{Installation, InstallationCommand, InstallationEvent};
use grantd::domain::name_claim::{NameClaim, NameClaimCommand, NameClaimEvent};
use grantd::domain::signing_key::{SigningKey, SigningKeyCommand, SigningKeyEvent};
use grantd::domain::upcast::{all_event_types, upcast};
use grantd::domain::user::{User, UserCommand, UserEvent, UserProfile};
use grantd::domain::{Aggregate, DomainEvent};
use grantd::keys::{MasterKey, generate_ed25519, sha256_hex};

const SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";
const ID_BASE: &str = "https://grantd.dev/events";

/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

const ALICE: &str = "06cc007c-4898-459f-b8b2-bab6c5bc56cf";
const BOB: &str = "a8013884-8fde-4444-88bf-1b9d76850114";
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$wLCdi+G7JPV95gn16u9dxQ$bFqB7pPxssuHyInva9qzelUZFPOw1IEeearciGdHy6c";
const NEW_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$nUlJ3sS0+1NiQE005T5zHw$XKROHpiiPqyU2Vim4akGibOq+5zEcbShlCbMl74daw0";

/// One event as the code emitted it.
#[derive(Debug, Clone)]
struct Sample {
    aggregate: &'static str,
    event_type: &'static str,
    version: i32,
    payload: Value,
}

/// One schema file of the catalog.
#[derive(Debug)]
struct SchemaFile {
    path: PathBuf,
    aggregate: String,
    event_type: String,
    version: i32,
    schema: Value,
}

// ---------------------------------------------------------------- emitters

/// Given an empty aggregate, when each command is decided in turn (applying
/// its events before the next one), then these events were emitted.
fn given_when<A: Aggregate>(commands: Vec<A::Command>, samples: &mut Vec<Sample>) -> A {
    let mut state = A::default();
    for (i, command) in commands.iter().enumerate() {
        let events = state.decide(command).unwrap_or_else(|e| panic!("{}: command {i} was rejected: {e}", A::STREAM_PREFIX));
        assert!(!events.is_empty(), "{}: command {i} emitted nothing", A::STREAM_PREFIX);
        for event in &events {
            state.apply(event);
            let payload = event.to_payload();
            // What is written must read back as the same event.
            let decoded = A::Event::from_payload(event.event_type(), &payload)
                .unwrap_or_else(|e| panic!("{} does not decode its own payload: {e}", event.event_type()));
            assert_eq!(decoded.to_payload(), payload, "{} does not round-trip", event.event_type());
            samples.push(Sample { aggregate: A::STREAM_PREFIX, event_type: event.event_type(), version: event.schema_version(), payload });
        }
    }
    state
}

fn t(seconds: i64) -> DateTime<Utc> {
    let start = Utc.with_ymd_and_hms(2026, 3, 14, 9, 26, 41).single().expect("a valid time");
    start + Duration::seconds(seconds)
}

fn shop_settings() -> ClientSettings {
    ClientSettings {
        name: "Example Shop".into(),
        redirect_uris: vec!["https://shop.example.com/oauth/callback".into()],
        grant_types: vec![GrantType::RefreshToken, GrantType::AuthorizationCode],
        scopes: vec!["profile".into(), "openid".into(), "email".into()],
        first_party: false,
        id_token_signed_response_alg: SigningAlg::EdDSA,
    }
}

fn client_events(samples: &mut Vec<Sample>) {
    // A confidential web client through its whole life.
    given_when::<Client>(
        vec![
            ClientCommand::Register {
                client_id: "shop-web".into(),
                settings: shop_settings(),
                confidential: true,
                secret_hash: Some(sha256_hex("first client secret")),
            },
            ClientCommand::Update(ClientSettings {
                redirect_uris: vec!["https://shop.example.com/oauth/callback".into(), "https://shop.example.com/oauth/callback2".into()],
                scopes: vec!["openid".into(), "profile".into(), "email".into(), "offline_access".into()],
                id_token_signed_response_alg: SigningAlg::RS256,
                ..shop_settings()
            }),
            ClientCommand::RotateSecret { secret_hash: sha256_hex("second client secret") },
            ClientCommand::Disable,
            ClientCommand::Enable,
        ],
        samples,
    );
    // A public client: no secret, so a null hash.
    given_when::<Client>(
        vec![ClientCommand::Register {
            client_id: "shop-spa".into(),
            settings: ClientSettings {
                name: "Example Shop (browser)".into(),
                redirect_uris: vec!["https://shop.example.com/spa/callback".into()],
                grant_types: vec![GrantType::AuthorizationCode],
                scopes: vec!["openid".into()],
                first_party: true,
                id_token_signed_response_alg: SigningAlg::EdDSA,
            },
            confidential: false,
            secret_hash: None,
        }],
        samples,
    );
    // A service client as `grantd init` registers it.
    given_when::<Client>(
        vec![ClientCommand::Register {
            client_id: "grantd-admin".into(),
            settings: ClientSettings {
                name: "grantd admin".into(),
                redirect_uris: vec![],
                grant_types: vec![GrantType::ClientCredentials],
                scopes: vec!["admin".into(), "audit".into()],
                first_party: true,
                id_token_signed_response_alg: SigningAlg::EdDSA,
            },
            confidential: true,
            secret_hash: Some(sha256_hex("an admin secret of enough length")),
        }],
        samples,
    );
}

fn user_events(samples: &mut Vec<Sample>) {
    let alice = UserProfile { username: "alice".into(), email: Some("alice@example.com".into()), name: Some("Alice Martin".into()) };
    given_when::<User>(
        vec![
            UserCommand::Register { profile: alice.clone(), password_hash: PASSWORD_HASH.into() },
            UserCommand::Update(UserProfile { email: Some("alice.martin@example.com".into()), ..alice }),
            UserCommand::ChangePassword { password_hash: NEW_PASSWORD_HASH.into() },
            UserCommand::Disable,
            UserCommand::Enable,
        ],
        samples,
    );
    // Without e-mail and name: nulls.
    given_when::<User>(
        vec![
            UserCommand::Register {
                profile: UserProfile { username: "bob".into(), email: None, name: None },
                password_hash: PASSWORD_HASH.into(),
            },
            UserCommand::Update(UserProfile { username: "bob".into(), email: None, name: Some("Bob".into()) }),
        ],
        samples,
    );
}

fn consent_events(samples: &mut Vec<Sample>) {
    let grant = |scopes: &[&str]| ConsentCommand::Grant {
        user_id: ALICE.into(),
        client_id: "shop-web".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    given_when::<Consent>(
        vec![grant(&["openid", "profile", "email"]), grant(&["openid", "offline_access"]), ConsentCommand::Revoke, grant(&["openid"])],
        samples,
    );
}

fn access(jti: &str, at: i64) -> NewAccessToken {
    NewAccessToken { jti: jti.into(), expires_at: t(at + 600) }
}

fn refresh(token: &str, at: i64) -> NewRefreshToken {
    NewRefreshToken { token_hash: sha256_hex(token), expires_at: t(at + 30 * 86_400) }
}

fn issue_code(code: &str) -> GrantCommand {
    GrantCommand::IssueAuthorizationCode {
        client_id: "shop-web".into(),
        user_id: ALICE.into(),
        scopes: vec!["email".into(), "openid".into(), "profile".into()],
        code_hash: sha256_hex(code),
        redirect_uri: "https://shop.example.com/oauth/callback".into(),
        code_challenge: CHALLENGE.into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: t(0),
        expires_at: t(72),
    }
}

fn redeem(code: &str, at: i64, refresh_token: Option<&str>) -> GrantCommand {
    GrantCommand::RedeemAuthorizationCode {
        code_hash: sha256_hex(code),
        client_id: "shop-web".into(),
        redirect_uri: "https://shop.example.com/oauth/callback".into(),
        code_verifier: VERIFIER.into(),
        access: access(&format!("at-{at}"), at),
        refresh: refresh_token.map(|r| refresh(r, at)),
        // Sub-second times serialise with their fraction.
        now: t(at) + Duration::nanoseconds(123_456_789),
    }
}

fn rotate(presented: &str, new: &str, at: i64, scopes: Option<Vec<String>>) -> GrantCommand {
    GrantCommand::RotateRefreshToken {
        token_hash: sha256_hex(presented),
        client_id: "shop-web".into(),
        scopes,
        access: access(&format!("at-{at}"), at),
        refresh: refresh(new, at),
        now: t(at),
    }
}

fn grant_events(samples: &mut Vec<Sample>) {
    // Authorization code with refresh, rotation, then reuse of the old refresh token.
    given_when::<Grant>(
        vec![
            issue_code("code-1"),
            redeem("code-1", 12, Some("refresh-1")),
            rotate("refresh-1", "refresh-2", 3600, Some(vec!["openid".into()])),
            rotate("refresh-1", "refresh-3", 7200, None),
        ],
        samples,
    );
    // A redeemed code presented again.
    given_when::<Grant>(vec![issue_code("code-2"), redeem("code-2", 5, None), redeem("code-2", 9, None)], samples);
    // Client credentials, revoked by the client.
    given_when::<Grant>(
        vec![
            GrantCommand::IssueAccessToken {
                grant_type: GrantType::ClientCredentials,
                client_id: "grantd-admin".into(),
                subject: "grantd-admin".into(),
                user_id: None,
                scopes: vec!["admin".into()],
                access: access("at-cc", 0),
                refresh: None,
                now: t(0),
            },
            GrantCommand::Revoke { reason: RevocationReason::RevokedByClient },
        ],
        samples,
    );
    // Password grant with a refresh token; revoked when the consent is withdrawn,
    // and by an administrator for another grant.
    for reason in [RevocationReason::ConsentRevoked, RevocationReason::RevokedByAdmin] {
        given_when::<Grant>(
            vec![
                GrantCommand::IssueAccessToken {
                    grant_type: GrantType::Password,
                    client_id: "shop-web".into(),
                    subject: BOB.into(),
                    user_id: Some(BOB.into()),
                    scopes: vec!["openid".into(), "profile".into()],
                    access: access("at-pw", 0),
                    refresh: Some(refresh("refresh-pw", 0)),
                    now: t(0),
                },
                GrantCommand::Revoke { reason },
            ],
            samples,
        );
    }
}

fn signing_key_events(samples: &mut Vec<Sample>) -> String {
    let key = generate_ed25519(&MasterKey::from_bytes([7; 32]));
    given_when::<SigningKey>(
        vec![
            SigningKeyCommand::Generate {
                kid: key.kid.clone(),
                alg: SigningAlg::EdDSA,
                public_jwk: key.public_jwk.clone(),
                sealed_private_key: key.sealed_private_key.clone(),
            },
            SigningKeyCommand::Activate,
            SigningKeyCommand::Retire { verify_until: t(90 * 86_400) },
        ],
        samples,
    );
    key.kid
}

fn installation_events(samples: &mut Vec<Sample>, kid: String) {
    given_when::<Installation>(
        vec![InstallationCommand::Initialize { admin_client_id: "grantd-admin".into(), signing_key_id: kid }],
        samples,
    );
}

fn name_claim_events(samples: &mut Vec<Sample>) {
    let owner = "7d444840-9dc0-11d1-b245-5ffdce74fad2".to_string();
    given_when::<NameClaim>(
        vec![
            NameClaimCommand::Claim { kind: "username".into(), name: "alice".into(), owner: owner.clone() },
            NameClaimCommand::Release { owner },
        ],
        samples,
    );
}

/// Every event of every aggregate, emitted by deciding real commands.
fn emitted() -> Vec<Sample> {
    let mut samples = Vec::new();
    client_events(&mut samples);
    user_events(&mut samples);
    consent_events(&mut samples);
    grant_events(&mut samples);
    let kid = signing_key_events(&mut samples);
    installation_events(&mut samples, kid);
    name_claim_events(&mut samples);
    samples
}

/// Decodes a current-version payload with the aggregate's event type and
/// encodes it again.
fn decode(aggregate: &str, event_type: &str, payload: &Value) -> Result<Value, String> {
    fn via<E: DomainEvent>(event_type: &str, payload: &Value) -> Result<Value, String> {
        E::from_payload(event_type, payload).map(|e| e.to_payload()).map_err(|e| e.to_string())
    }
    match aggregate {
        "client" => via::<ClientEvent>(event_type, payload),
        "user" => via::<UserEvent>(event_type, payload),
        "consent" => via::<ConsentEvent>(event_type, payload),
        "grant" => via::<GrantEvent>(event_type, payload),
        "key" => via::<SigningKeyEvent>(event_type, payload),
        "installation" => via::<InstallationEvent>(event_type, payload),
        "name" => via::<NameClaimEvent>(event_type, payload),
        other => Err(format!("unknown aggregate {other}")),
    }
}

// ----------------------------------------------------------------- catalog

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

fn schema_path(aggregate: &str, event_type: &str, version: i32) -> PathBuf {
    events_dir().join(aggregate).join(format!("{event_type}.v{version}.json"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every schema file: `events/<aggregate>/<EventType>.v<N>.json`. Anything
/// else under `events/` but the README fails the test.
fn catalog() -> Vec<SchemaFile> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(events_dir()).expect("events/ exists").map(|e| e.expect("readable").path()).collect();
    entries.sort();
    for dir in entries {
        if dir.is_file() {
            assert_eq!(dir.file_name().and_then(|n| n.to_str()), Some("README.md"), "stray file {}", dir.display());
            continue;
        }
        let aggregate = dir.file_name().and_then(|n| n.to_str()).expect("UTF-8 directory name").to_string();
        let mut paths: Vec<_> = std::fs::read_dir(&dir).expect("readable").map(|e| e.expect("readable").path()).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().and_then(|n| n.to_str()).expect("UTF-8 file name");
            let parsed =
                name.strip_suffix(".json").and_then(|stem| stem.rsplit_once(".v")).and_then(|(t, v)| Some((t, v.parse::<i32>().ok()?)));
            let Some((event_type, version)) = parsed else { panic!("{} is not named <EventType>.v<N>.json", path.display()) };
            files.push(SchemaFile {
                schema: read_json(&path),
                aggregate: aggregate.clone(),
                event_type: event_type.to_string(),
                version,
                path,
            });
        }
    }
    assert!(!files.is_empty(), "no schema under {}", events_dir().display());
    files
}

fn validator(schema: &Value, path: &Path) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", path.display()))
}

/// The validation errors of `instance`, one line each.
fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("  at {:?}: {e}", e.instance_path().as_str())).collect()
}

fn examples(file: &SchemaFile) -> &Vec<Value> {
    let examples = file.schema["examples"].as_array().unwrap_or_else(|| panic!("{} has no examples array", file.path.display()));
    assert!(!examples.is_empty(), "{} has an empty examples array", file.path.display());
    examples
}

// ------------------------------------------------------------------- tests

#[test]
fn every_emitted_event_validates_against_its_schema() {
    let mut failures = Vec::new();
    for sample in emitted() {
        let path = schema_path(sample.aggregate, sample.event_type, sample.version);
        if !path.exists() {
            failures.push(format!("{} v{} has no schema at {}", sample.event_type, sample.version, path.display()));
            continue;
        }
        let errors = errors(&validator(&read_json(&path), &path), &sample.payload);
        if !errors.is_empty() {
            failures.push(format!(
                "{} v{} does not validate against {}:\n{}\n  payload: {}",
                sample.event_type,
                sample.version,
                path.display(),
                errors.join("\n"),
                sample.payload
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_event_type_is_emitted() {
    let declared: BTreeSet<(String, i32)> = all_event_types().into_iter().map(|(t, v)| (t.to_string(), v)).collect();
    let emitted: BTreeSet<(String, i32)> = emitted().into_iter().map(|s| (s.event_type.to_string(), s.version)).collect();
    assert_eq!(declared.len(), all_event_types().len(), "an event type is declared twice");
    assert_eq!(emitted, declared, "the samples must emit exactly the declared event types");
}

#[test]
fn every_schema_has_an_emitter() {
    let current: BTreeMap<&str, i32> = all_event_types().into_iter().collect();
    let samples = emitted();
    let emitted: BTreeMap<(&str, i32), &str> = samples.iter().map(|s| ((s.event_type, s.version), s.aggregate)).collect();
    let mut failures = Vec::new();
    for file in catalog() {
        let shown = file.path.display();
        let Some(&current_version) = current.get(file.event_type.as_str()) else {
            failures.push(format!("{shown}: the code emits no {}", file.event_type));
            continue;
        };
        let Some(&aggregate) = emitted.get(&(file.event_type.as_str(), current_version)) else {
            failures.push(format!("{shown}: no sample emitted {} v{current_version}", file.event_type));
            continue;
        };
        if file.aggregate != aggregate {
            failures.push(format!("{shown}: {} is emitted by the {aggregate} aggregate", file.event_type));
        }
        if file.version == current_version {
            continue;
        }
        if file.version > current_version {
            failures.push(format!("{shown}: version {} is newer than the current {current_version}", file.version));
            continue;
        }
        // An older version: its examples must upcast to the current version
        // and be valid there.
        let current_path = schema_path(aggregate, &file.event_type, current_version);
        let current_validator = validator(&read_json(&current_path), &current_path);
        for (i, example) in examples(&file).iter().enumerate() {
            match upcast(&file.event_type, file.version, example.clone()) {
                Some((version, lifted)) if version == current_version => {
                    let errors = errors(&current_validator, &lifted);
                    if !errors.is_empty() {
                        failures.push(format!("{shown}: example {i} upcast is invalid under v{current_version}:\n{}", errors.join("\n")));
                    }
                    if let Err(e) = decode(aggregate, &file.event_type, &lifted) {
                        failures.push(format!("{shown}: example {i} upcast does not decode: {e}"));
                    }
                }
                other => failures.push(format!("{shown}: example {i} does not upcast to v{current_version}: {other:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_schema_is_complete_and_its_examples_validate() {
    let current: BTreeMap<&str, i32> = all_event_types().into_iter().collect();
    let mut failures = Vec::new();
    for file in catalog() {
        let shown = file.path.display();
        let s = &file.schema;
        let id = format!("{ID_BASE}/{}/{}.v{}.json", file.aggregate, file.event_type, file.version);
        let expect = [
            ("$schema", json!(SCHEMA_DIALECT)),
            ("$id", json!(id)),
            ("title", json!(file.event_type)),
            ("type", json!("object")),
            ("additionalProperties", json!(false)),
        ];
        for (key, want) in expect {
            if s[key] != want {
                failures.push(format!("{shown}: {key} is {} instead of {want}", s[key]));
            }
        }
        if s["description"].as_str().is_none_or(|d| d.trim().is_empty()) {
            failures.push(format!("{shown}: no description"));
        }
        let Some(properties) = s["properties"].as_object() else {
            failures.push(format!("{shown}: no properties object"));
            continue;
        };
        for (name, property) in properties {
            if property["description"].as_str().is_none_or(|d| d.trim().is_empty()) {
                failures.push(format!("{shown}: property {name} has no description"));
            }
        }
        let required: BTreeSet<&str> = s["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let declared: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        if required != declared {
            failures.push(format!("{shown}: required {required:?} does not list every property {declared:?}"));
        }
        let validator = validator(s, &file.path);
        for (i, example) in examples(&file).iter().enumerate() {
            let errors = errors(&validator, example);
            if !errors.is_empty() {
                failures.push(format!("{shown}: example {i} is invalid:\n{}", errors.join("\n")));
            }
            // Examples of the current version are payloads the code reads.
            if current.get(file.event_type.as_str()) == Some(&file.version) {
                match decode(&file.aggregate, &file.event_type, example) {
                    Ok(reencoded) if &reencoded == example => {}
                    Ok(reencoded) => failures.push(format!("{shown}: example {i} re-encodes as {reencoded}")),
                    Err(e) => failures.push(format!("{shown}: example {i} does not decode: {e}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
