//! `grantd client create` and `grantd user create` as an operator runs
//! them, then `grantd serve` on that database accepting what they created.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use oauth2::{
    AuthType, AuthorizationCode, PkceCodeVerifier, RedirectUrl, ResourceOwnerPassword, ResourceOwnerUsername, Scope, TokenResponse,
};
use serde_json::Value;

use crate::helpers::{TestDb, backends, eventually};
use crate::oauth_support::{PASSWORD, Pkce, jwt_parts, oauth_client_at, oauth_error};
use crate::oidc::http_client;
use crate::server::{Browser, TestClient};

const MASTER_KEY: &str = "0001020304050607080910111213141516171819202122232425262728293031";

fn command(db: &TestDb) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grantd"));
    cmd.env("GRANTD_DATABASE_URL", &db.url).env_remove("DATABASE_URL").env("GRANTD_LOG", "warn");
    if db.backend == "postgres" {
        cmd.env("GRANTD_MASTER_KEY", MASTER_KEY);
    } else {
        cmd.env_remove("GRANTD_MASTER_KEY");
    }
    cmd
}

/// Runs `grantd args…`, feeding `stdin` when given.
fn grantd(db: &TestDb, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = command(db)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run grantd");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for grantd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed and print one JSON object.
fn json_of(db: &TestDb, args: &[&str], stdin: Option<&str>) -> Value {
    let out = grantd(db, args, stdin);
    assert!(out.status.success(), "{} {args:?}: {}", db.backend, text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{} {args:?} printed no JSON ({e}): {}", db.backend, text(&out.stdout)))
}

/// `grantd serve` as a child process, killed when dropped.
struct Served {
    child: Child,
    address: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(db: &TestDb) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = command(db)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start grantd serve");
    let served = Served { child, address: format!("http://127.0.0.1:{port}") };
    let http = reqwest::Client::new();
    let url = format!("{}/readyz", served.address);
    eventually("grantd serve to be ready", Duration::from_secs(30), || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(&url).send().await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    served
}

fn client_of(created: &Value, redirect_uri: &str) -> TestClient {
    TestClient {
        client_id: created["client_id"].as_str().expect("client_id").to_string(),
        client_secret: created["client_secret"].as_str().map(str::to_string),
        redirect_uri: redirect_uri.to_string(),
    }
}

#[actix_web::test]
async fn clients_and_users_created_on_the_command_line_work_against_the_server() {
    for tdb in backends().await {
        let init = grantd(&tdb, &["init"], None);
        assert!(init.status.success(), "{}: init: {}", tdb.backend, text(&init.stderr));

        let service = json_of(
            &tdb,
            &["client", "create", "--name", "Service", "--grant-type", "client_credentials", "--scope", "api:read api:write"],
            None,
        );
        let secret = service["client_secret"].as_str().unwrap_or_else(|| panic!("{}: a one-time secret: {service}", tdb.backend));
        assert!(secret.len() >= 43, "256-bit secret: {secret}");
        assert!(service["client_id"].as_str().is_some_and(|id| !id.is_empty()));
        let own = json_of(
            &tdb,
            &[
                "client",
                "create",
                "--name",
                "Own app",
                "--grant-type",
                "password",
                "--grant-type",
                "refresh_token",
                "--scope",
                "openid",
                "--scope",
                "profile",
                "--first-party",
                "--client-id",
                "own-app",
            ],
            None,
        );
        assert_eq!(own["client_id"], "own-app");
        let native = json_of(
            &tdb,
            &[
                "client",
                "create",
                "--name",
                "Native",
                "--public",
                "--redirect-uri",
                "http://127.0.0.1/cb",
                "--grant-type",
                "authorization_code",
                "--scope",
                "openid",
            ],
            None,
        );
        assert!(native["client_secret"].is_null(), "{}: no secret for a public client: {native}", tdb.backend);

        let created = json_of(
            &tdb,
            &["user", "create", "--username", "zoe", "--email", "zoe@example.com", "--name", "Zoe Example"],
            Some(&format!("{PASSWORD}\n")),
        );
        let user_id = created["id"].as_str().unwrap_or_else(|| panic!("{}: user id: {created}", tdb.backend)).to_string();
        assert!(uuid::Uuid::parse_str(&user_id).is_ok(), "{user_id}");

        // What an operator must not be able to do.
        for (what, args, stdin) in [
            ("unknown grant type", vec!["client", "create", "--name", "X", "--grant-type", "teleport"], None),
            ("reserved scope", vec!["client", "create", "--name", "X", "--grant-type", "client_credentials", "--scope", "admin"], None),
            ("short password", vec!["user", "create", "--username", "short"], Some("2short\n")),
        ] {
            let out = grantd(&tdb, &args, stdin);
            assert!(!out.status.success(), "{} {what}: {}", tdb.backend, text(&out.stdout));
            assert!(out.stdout.is_empty(), "{what}: prints nothing on stdout");
            assert!(!text(&out.stderr).trim().is_empty(), "{what}: says why");
        }

        if let grantd::db::Db::Postgres { pool, .. } = &tdb.open().await {
            // Commands that run once follow nobody: they leave no name for
            // serving nodes to announce their commits to.
            let names: i64 = sqlx::query_scalar("SELECT count(*) FROM grantd_listeners").fetch_one(pool).await.expect("count listeners");
            assert_eq!(names, 0, "the command line names no listener");
        }

        let server = serve(&tdb).await;
        let http = http_client();

        // The confidential client: client credentials.
        let svc = client_of(&service, "");
        let tokens = oauth_client_at(&server.address, &svc, AuthType::BasicAuth)
            .exchange_client_credentials()
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("{}: client credentials: {e:?}", tdb.backend));
        let claims = jwt_parts(tokens.access_token().secret()).1;
        assert_eq!(claims["sub"], svc.client_id.as_str());
        assert_eq!(claims["scope"], "api:read api:write");
        assert_eq!(claims["iss"], server.address.as_str());
        let mut wrong = svc.clone();
        wrong.client_secret = Some("not-the-secret".into());
        let e = oauth_client_at(&server.address, &wrong, AuthType::BasicAuth).exchange_client_credentials().request_async(&http).await;
        assert_eq!(oauth_error(e.unwrap_err()), "invalid_client", "{}", tdb.backend);

        // The first-party client and the user: the password grant and userinfo.
        let own = client_of(&own, "");
        let tokens = oauth_client_at(&server.address, &own, AuthType::RequestBody)
            .exchange_password(&ResourceOwnerUsername::new("zoe".into()), &ResourceOwnerPassword::new(PASSWORD.into()))
            .add_scope(Scope::new("openid".into()))
            .add_scope(Scope::new("profile".into()))
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("{}: password grant: {e:?}", tdb.backend));
        assert!(tokens.refresh_token().is_some());
        let me: Value = http
            .get(format!("{}/userinfo", server.address))
            .bearer_auth(tokens.access_token().secret())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["sub"], user_id.as_str(), "{}: {me}", tdb.backend);
        assert_eq!(me["preferred_username"], "zoe");
        assert_eq!(me["name"], "Zoe Example");

        // The public client: a code flow through the login and consent pages,
        // on a loopback port of its choosing.
        let redirect = "http://127.0.0.1:50123/cb";
        let native = client_of(&native, redirect);
        let pkce = Pkce::new();
        let mut url = url::Url::parse(&format!("{}/authorize", server.address)).unwrap();
        url.query_pairs_mut().extend_pairs([
            ("response_type", "code"),
            ("client_id", native.client_id.as_str()),
            ("redirect_uri", redirect),
            ("scope", "openid"),
            ("state", "cli-state"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        let browser = Browser::new();
        let login = browser.get(url.as_str()).await;
        assert!(login.input("password").is_some(), "{}: login page: {}", tdb.backend, login.body);
        let consent = browser.submit(&server.address, &login, &[("username", "zoe"), ("password", PASSWORD)]).await;
        assert!(consent.body.contains("name=\"decision\""), "{}: consent page: {}", tdb.backend, consent.body);
        let done = browser.submit(&server.address, &consent, &[("decision", "approve")]).await;
        assert_eq!(done.status, 303, "{}: {}", tdb.backend, done.body);
        let location = url::Url::parse(done.location.as_deref().unwrap()).unwrap();
        assert!(location.as_str().starts_with(redirect), "{location}");
        let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        let code = pairs.iter().find(|(k, _)| k == "code").map(|(_, v)| v.clone()).expect("code");
        let tokens = oauth_client_at(&server.address, &native, AuthType::RequestBody)
            .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap())
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce.verifier.clone()))
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("{}: public code exchange: {e:?}", tdb.backend));
        assert_eq!(jwt_parts(tokens.access_token().secret()).1["sub"], user_id.as_str());
        drop(server);
    }
}
