//! The audit export (`GET /audit/export`, `grantd audit export`): a known
//! log, exported as JSON lines and CSV with and without filters, compared
//! line by line with lines built here from the events themselves.

use std::process::Command;

use grantd::eventstore::RecordedEvent;
use serde_json::{Value, json};

use crate::graphql::{ADMIN, Api, Concerns, api_client, api_user, rfc3339, token_for, whole_log};
use crate::helpers::backends;
use crate::oauth_support::{PASSWORD, code_for, creds, post_form};
use crate::server::{Browser, TestApp, TestClient};

fn text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap()
}

/// The JSON line of one event: fields in this order, instants RFC 3339 UTC
/// with microseconds, hashes in hex.
fn jsonl_line(e: &RecordedEvent) -> String {
    let ctx = &e.metadata.context;
    format!(
        "{{\"position\":{},\"recorded_at\":{},\"stream_id\":{},\"stream_version\":{},\"event_type\":{},\"schema_version\":{},\"actor\":{{\"kind\":{},\"id\":{}}},\"request_id\":{},\"source_address\":{},\"authentication\":{},\"payload\":{},\"prev_hash\":\"{}\",\"hash\":\"{}\"}}",
        e.position,
        text(&rfc3339(e.recorded_at)),
        text(&e.stream_id),
        e.stream_version,
        text(&e.event_type),
        e.schema_version,
        text(&ctx.actor.kind.as_str()),
        text(&ctx.actor.id),
        text(&ctx.request_id),
        text(&ctx.source_address),
        text(&ctx.authentication),
        text(&e.payload),
        hex::encode(e.prev_hash),
        hex::encode(e.hash),
    )
}

const CSV_HEADER: &str = "position,recorded_at,stream_id,stream_version,event_type,schema_version,actor_kind,actor_id,request_id,source_address,authentication,payload,prev_hash,hash";

/// RFC 4180: a field with a comma, a quote or a line break is quoted, its quotes doubled.
fn csv_field(value: &str) -> String {
    if value.contains(',') || value.contains('"') || value.contains('\n') || value.contains('\r') {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv_line(e: &RecordedEvent) -> String {
    let ctx = &e.metadata.context;
    let fields = [
        e.position.to_string(),
        rfc3339(e.recorded_at),
        e.stream_id.clone(),
        e.stream_version.to_string(),
        e.event_type.clone(),
        e.schema_version.to_string(),
        ctx.actor.kind.as_str().to_string(),
        ctx.actor.id.clone(),
        ctx.request_id.clone().unwrap_or_default(),
        ctx.source_address.clone().unwrap_or_default(),
        ctx.authentication.clone().unwrap_or_default(),
        e.payload.to_string(),
        hex::encode(e.prev_hash),
        hex::encode(e.hash),
    ];
    fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",")
}

/// The export a format should produce for these events.
fn expected(format: &str, events: &[&RecordedEvent]) -> Vec<String> {
    match format {
        "jsonl" => events.iter().map(|e| jsonl_line(e)).collect(),
        "csv" => std::iter::once(CSV_HEADER.to_string()).chain(events.iter().map(|e| csv_line(e))).collect(),
        other => panic!("no format {other}"),
    }
}

/// Asserts that `body` is exactly `lines`, each ended by a newline.
fn assert_lines(backend: &str, what: &str, body: &str, lines: &[String]) {
    assert!(body.is_empty() || body.ends_with('\n'), "{backend}: {what}: the export ends with a newline");
    let got: Vec<&str> = body.lines().collect();
    for (i, (g, e)) in got.iter().zip(lines).enumerate() {
        assert_eq!(g, e, "{backend}: {what}: line {}", i + 1);
    }
    assert_eq!(got.len(), lines.len(), "{backend}: {what}: number of lines");
}

struct Export {
    status: u16,
    content_type: String,
    body: String,
}

async fn http_export(app: &TestApp, token: Option<&str>, query: &[(&str, &str)]) -> Export {
    let mut request = reqwest::Client::new().get(app.url("/audit/export")).query(query);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("GET /audit/export");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = response.text().await.expect("body");
    Export { status, content_type, body }
}

/// A log with two clients, two users, browser consents, refreshed and
/// client-credentials tokens, a revoked consent, and names that need CSV
/// quoting.
struct Scenario {
    shop: TestClient,
    service: TestClient,
    alice: String,
    bob: String,
}

async fn scenario(app: &TestApp, admin: &Api<'_>) -> Scenario {
    let shop = api_client(admin, "Shop, \"Deluxe\"", &["authorization_code", "refresh_token"], &["openid", "profile"], true).await;
    let service = api_client(admin, "Service", &["client_credentials"], &["api"], true).await;
    let alice = api_user(admin, "alice").await;
    admin.ok("mutation($u: ID!) { updateUser(id: $u, input: {name: \"Smith, Alice \\\"Al\\\"\"}) { name } }", json!({"u": alice})).await;
    let bob = api_user(admin, "bob").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for (user, scope) in [("alice", "openid profile"), ("bob", "openid")] {
        let (code, verifier) = code_for(app, &Browser::new(), &shop, user, scope).await;
        let r = post_form(
            app,
            "/token",
            Some(creds(&shop)),
            &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", &shop.redirect_uri), ("code_verifier", &verifier)],
        )
        .await;
        assert_eq!(r.status, 200, "{}: {}", app.backend, r.text);
        let refresh = r.json["refresh_token"].as_str().unwrap();
        let r = post_form(app, "/token", Some(creds(&shop)), &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
        assert_eq!(r.status, 200, "{}: {}", app.backend, r.text);
    }
    token_for(app, creds(&service), "api").await;
    admin
        .ok(
            "mutation($u: ID!, $c: String!) { revokeConsent(userId: $u, clientId: $c) { active } }",
            json!({"u": alice, "c": shop.client_id}),
        )
        .await;
    Scenario { shop, service, alice, bob }
}

/// (description, query parameters, which events belong)
type Case<'a> = (String, Vec<(&'static str, String)>, Box<dyn Fn(&RecordedEvent) -> bool + 'a>);

fn cases<'a>(s: &'a Scenario, log: &'a [RecordedEvent], concerns: &'a Concerns) -> Vec<Case<'a>> {
    let (lo, hi) = (&log[log.len() / 4], &log[3 * log.len() / 4]);
    let (from, to) = (rfc3339(lo.recorded_at), rfc3339(hi.recorded_at));
    let in_window = {
        let (from, to) = (from.clone(), to.clone());
        move |e: &RecordedEvent| rfc3339(e.recorded_at) >= from && rfc3339(e.recorded_at) <= to
    };
    let user = move |id: &'a str| move |e: &RecordedEvent| concerns.user(e).as_deref() == Some(id);
    let client = move |id: &'a str| move |e: &RecordedEvent| concerns.client(e).as_deref() == Some(id);
    let w1 = in_window.clone();
    let w2 = in_window.clone();
    vec![
        ("everything".into(), vec![], Box::new(|_: &RecordedEvent| true)),
        ("alice".into(), vec![("userId", s.alice.clone())], Box::new(user(&s.alice))),
        ("bob".into(), vec![("userId", s.bob.clone())], Box::new(user(&s.bob))),
        ("the shop".into(), vec![("clientId", s.shop.client_id.clone())], Box::new(client(&s.shop.client_id))),
        ("the service".into(), vec![("clientId", s.service.client_id.clone())], Box::new(client(&s.service.client_id))),
        (
            "alice at the shop".into(),
            vec![("userId", s.alice.clone()), ("clientId", s.shop.client_id.clone())],
            Box::new(move |e: &RecordedEvent| user(&s.alice)(e) && client(&s.shop.client_id)(e)),
        ),
        ("a time window".into(), vec![("from", from.clone()), ("to", to.clone())], Box::new(in_window)),
        ("since".into(), vec![("from", from.clone())], Box::new(move |e: &RecordedEvent| rfc3339(e.recorded_at) >= from)),
        ("until".into(), vec![("to", to.clone())], Box::new(move |e: &RecordedEvent| rfc3339(e.recorded_at) <= to)),
        (
            "bob in a time window".into(),
            vec![("userId", s.bob.clone()), ("from", rfc3339(lo.recorded_at)), ("to", rfc3339(hi.recorded_at))],
            Box::new(move |e: &RecordedEvent| user(&s.bob)(e) && w1(e)),
        ),
        (
            "the shop in a time window".into(),
            vec![("clientId", s.shop.client_id.clone()), ("from", rfc3339(lo.recorded_at)), ("to", rfc3339(hi.recorded_at))],
            Box::new(move |e: &RecordedEvent| client(&s.shop.client_id)(e) && w2(e)),
        ),
    ]
}

#[actix_web::test]
async fn http_export_matches_the_log_line_by_line() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let audit = token_for(&app, ADMIN, "audit").await;
        let s = scenario(&app, &admin).await;
        let log = whole_log(&app).await;
        let concerns = Concerns::of(&log);
        assert!(log.len() > 30, "{}: a log of some size", app.backend);

        for (what, params, keep) in cases(&s, &log, &concerns) {
            let events: Vec<&RecordedEvent> = log.iter().filter(|e| keep(e)).collect();
            assert!(!events.is_empty(), "{what}: the scenario has such events");
            if what != "everything" {
                assert!(events.len() < log.len(), "{what}: the filter narrows");
            }
            for format in ["jsonl", "csv"] {
                let mut query: Vec<(&str, &str)> = vec![("format", format)];
                query.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
                let export = http_export(&app, Some(&audit), &query).await;
                assert_eq!(export.status, 200, "{}: {what} {format}: {}", app.backend, export.body);
                let lines = expected(format, &events);
                assert_lines(app.backend, &format!("{what} as {format}"), &export.body, &lines);
                if format == "jsonl" {
                    assert!(export.content_type.contains("json"), "{}: {}", app.backend, export.content_type);
                    for line in export.body.lines() {
                        let v: Value = serde_json::from_str(line).expect("each line is JSON");
                        assert!(v["payload"].is_object());
                    }
                } else {
                    assert!(export.content_type.starts_with("text/csv"), "{}: {}", app.backend, export.content_type);
                }
            }
        }
        // Names with commas and quotes really went through the CSV quoting.
        let csv = http_export(&app, Some(&audit), &[("format", "csv"), ("clientId", &s.shop.client_id)]).await.body;
        assert!(csv.contains(r#"""name"":""Shop, \""Deluxe\"""""#), "{}: {csv}", app.backend);
        // jsonl is the default; the hash chain links line to line.
        let default = http_export(&app, Some(&audit), &[]).await;
        assert_lines(app.backend, "the default format", &default.body, &expected("jsonl", &log.iter().collect::<Vec<_>>()));
        let lines: Vec<Value> = default.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for pair in lines.windows(2) {
            assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "{}: the chain links", app.backend);
        }
        for secret in [s.shop.client_secret.as_deref().unwrap(), s.service.client_secret.as_deref().unwrap(), PASSWORD] {
            assert!(!default.body.contains(secret), "{}: no secret in the export", app.backend);
        }
        // Nothing matches: an empty export (CSV: the header alone).
        let nobody = uuid::Uuid::new_v4().to_string();
        assert_eq!(http_export(&app, Some(&audit), &[("userId", &nobody)]).await.body, "", "{}", app.backend);
        assert_eq!(http_export(&app, Some(&audit), &[("format", "csv"), ("userId", &nobody)]).await.body, format!("{CSV_HEADER}\n"));
        // The admin scope may export too.
        let by_admin = http_export(&app, Some(&admin.token), &[("format", "csv"), ("userId", &s.alice)]).await;
        assert_eq!(by_admin.status, 200, "{}", app.backend);
    }
}

#[actix_web::test]
async fn export_needs_an_audit_or_admin_token_and_valid_parameters() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let service = api_client(&admin, "Service", &["client_credentials"], &["api"], true).await;
        let ordinary = token_for(&app, creds(&service), "api").await;
        let audit = token_for(&app, ADMIN, "audit").await;
        for (who, token, status) in [
            ("no token", None, 401),
            ("a garbage token", Some("garbage"), 401),
            ("an ordinary client's token", Some(ordinary.as_str()), 403),
        ] {
            for format in ["jsonl", "csv"] {
                let export = http_export(&app, token, &[("format", format)]).await;
                assert_eq!(export.status, status, "{}: {who}: {}", app.backend, export.body);
                assert!(!export.body.contains("ClientRegistered"), "{}: {who} sees no event", app.backend);
                let body: Value = serde_json::from_str(&export.body).expect("a JSON error");
                let code = if status == 401 { "UNAUTHENTICATED" } else { "FORBIDDEN" };
                assert_eq!(body["errors"][0]["extensions"]["code"], code, "{}: {who}", app.backend);
            }
        }
        for token in [&audit, &admin.token] {
            let export = http_export(&app, Some(token), &[("format", "jsonl")]).await;
            assert_eq!(export.status, 200, "{}", app.backend);
            assert!(export.body.contains("ClientRegistered"));
        }
        for (what, query) in [
            ("an unknown format", vec![("format", "xml")]),
            ("a from that is no time", vec![("from", "yesterday")]),
            ("a to without zone", vec![("to", "2024-01-01T00:00:00")]),
        ] {
            let export = http_export(&app, Some(&audit), &query).await;
            assert_eq!(export.status, 400, "{}: {what}: {}", app.backend, export.body);
        }
    }
}

/// Runs `grantd audit export ARGS` against the database at `url`. The
/// binary runs off this thread: the in-process server's projection runner
/// lives on the test's runtime, and a CLI waiting for the projections' lock
/// while that runtime is blocked would wait forever.
async fn cli_export(url: &str, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_grantd"));
    command
        .args(["audit", "export"])
        .args(args)
        .env("GRANTD_DATABASE_URL", url)
        .env_remove("DATABASE_URL")
        .env_remove("GRANTD_MASTER_KEY")
        .env("GRANTD_LOG", "warn");
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = command.spawn().expect("run grantd audit export");
    let pid = child.id();
    let run = tokio::task::spawn_blocking(move || child.wait_with_output().expect("grantd audit export output"));
    match tokio::time::timeout(std::time::Duration::from_secs(60), run).await {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("grantd audit export {args:?} did not finish within 60 s");
        }
    }
}

#[actix_web::test]
async fn cli_export_equals_the_http_export() {
    for tdb in backends().await {
        let url = tdb.url.clone();
        let app = TestApp::spawn(tdb).await;
        let admin = Api::admin(&app).await;
        let audit = token_for(&app, ADMIN, "audit").await;
        let s = scenario(&app, &admin).await;
        let log = whole_log(&app).await;
        let concerns = Concerns::of(&log);
        for (what, params, keep) in cases(&s, &log, &concerns) {
            for format in ["jsonl", "csv"] {
                let mut query: Vec<(&str, &str)> = vec![("format", format)];
                query.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
                let http = http_export(&app, Some(&audit), &query).await;
                assert_eq!(http.status, 200, "{}: {what}", app.backend);
                let mut args: Vec<String> = vec!["--format".into(), format.into()];
                for (k, v) in &params {
                    let flag = match *k {
                        "userId" => "--user-id",
                        "clientId" => "--client-id",
                        "from" => "--from",
                        "to" => "--to",
                        other => panic!("no flag for {other}"),
                    };
                    args.push(flag.into());
                    args.push(v.clone());
                }
                let out = cli_export(&url, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
                assert!(out.status.success(), "{}: {what} {format}: {}", app.backend, String::from_utf8_lossy(&out.stderr));
                let stdout = String::from_utf8(out.stdout).expect("UTF-8");
                assert_eq!(stdout, http.body, "{}: `grantd audit export` for {what} as {format} equals the HTTP export", app.backend);
                let events: Vec<&RecordedEvent> = log.iter().filter(|e| keep(e)).collect();
                assert_lines(app.backend, &format!("CLI {what} as {format}"), &stdout, &expected(format, &events));
            }
        }
        let bad = cli_export(&url, &["--format", "xml"]).await;
        assert!(!bad.status.success(), "{}: an unknown format fails", app.backend);
        assert!(bad.stdout.is_empty());
    }
}
