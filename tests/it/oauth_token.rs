//! `POST /token` driven by the `oauth2` crate and by raw requests: every
//! grant, refresh-token rotation, code replay and the redemption race,
//! RFC 6749 §5.2 errors, the access token's shape, and an event store that
//! refuses writes.

use grantd::domain::client::GrantType;
use oauth2::{
    AuthType, AuthorizationCode, PkceCodeVerifier, RedirectUrl, RefreshToken, ResourceOwnerPassword, ResourceOwnerUsername, Scope,
    TokenResponse,
};

use crate::helpers::backends;
use crate::oauth_support::{
    PASSWORD, assert_inactive, code_for, creds, introspect, jwt_parts, oauth_client, oauth_error, post_form, post_raw, user,
};
use crate::oidc::http_client;
use crate::server::{ADMIN_ID, ADMIN_SECRET, Browser, TestApp, TestClient};

const ADMIN: (&str, &str) = (ADMIN_ID, ADMIN_SECRET);

fn count(types: &[String], wanted: &str) -> usize {
    types.iter().filter(|t| *t == wanted).count()
}

type Tokens = oauth2::basic::BasicTokenResponse;

async fn exchange(app: &TestApp, client: &TestClient, code: &str, verifier: &str) -> Result<Tokens, String> {
    let auth = if client.client_secret.is_some() { AuthType::BasicAuth } else { AuthType::RequestBody };
    oauth_client(app, client, auth)
        .set_redirect_uri(RedirectUrl::new(client.redirect_uri.clone()).unwrap())
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
        .request_async(&http_client())
        .await
        .map_err(oauth_error)
}

async fn refresh(app: &TestApp, client: &TestClient, token: &str, scope: Option<&str>) -> Result<Tokens, String> {
    let auth = if client.client_secret.is_some() { AuthType::BasicAuth } else { AuthType::RequestBody };
    let c = oauth_client(app, client, auth);
    let rt = RefreshToken::new(token.to_string());
    let mut request = c.exchange_refresh_token(&rt);
    if let Some(scope) = scope {
        request = request.add_scopes(scope.split(' ').map(|s| Scope::new(s.to_string())));
    }
    request.request_async(&http_client()).await.map_err(oauth_error)
}

fn scope_of(tokens: &Tokens) -> String {
    tokens.scopes().map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

/// A client with the code and refresh grants, and a user signed in through
/// the browser; returns a fresh code and its verifier.
async fn code_setup(app: &TestApp, confidential: bool, username: &str, scope: &str) -> (TestClient, String, String) {
    let client = app
        .register_client(
            "Shop",
            &[GrantType::AuthorizationCode, GrantType::RefreshToken],
            &["openid", "profile", "email"],
            confidential,
            false,
        )
        .await;
    user(app, username).await;
    let (code, verifier) = code_for(app, &Browser::new(), &client, username, scope).await;
    (client, code, verifier)
}

#[actix_web::test]
async fn client_credentials_with_basic_and_with_the_secret_in_the_body() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let client = app.register_client("Service", &[GrantType::ClientCredentials], &["api:read", "api:write"], true, false).await;
        let before = app.event_types().await.len();

        let basic = oauth_client(&app, &client, AuthType::BasicAuth)
            .exchange_client_credentials()
            .add_scope(Scope::new("api:read".into()))
            .request_async(&http_client())
            .await
            .unwrap_or_else(|e| panic!("{}: Basic: {e:?}", app.backend));
        assert_eq!(scope_of(&basic), "api:read");
        assert_eq!(basic.token_type(), &oauth2::basic::BasicTokenType::Bearer);
        assert!(basic.expires_in().is_some_and(|d| d.as_secs() > 0));
        assert!(basic.refresh_token().is_none(), "no refresh token for client credentials");

        let body = oauth_client(&app, &client, AuthType::RequestBody)
            .exchange_client_credentials()
            .request_async(&http_client())
            .await
            .unwrap_or_else(|e| panic!("{}: client_secret_post: {e:?}", app.backend));
        assert_eq!(scope_of(&body), "api:read api:write", "{}: the default is every registered scope", app.backend);

        // RFC 9068 access token.
        let token = basic.access_token().secret();
        let (header, claims) = jwt_parts(token);
        assert_eq!(header["typ"], "at+jwt", "{header}");
        assert_eq!(header["alg"], "EdDSA", "{header}");
        assert!(header["kid"].is_string());
        for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "grant_id"] {
            assert!(claims.get(claim).is_some_and(|v| !v.is_null()), "{}: claim {claim} missing from {claims}", app.backend);
        }
        assert_eq!(claims["iss"], app.address.as_str());
        assert_eq!(claims["sub"], client.client_id.as_str(), "{}: sub is the client for client credentials", app.backend);
        assert_eq!(claims["client_id"], client.client_id.as_str());
        assert_eq!(claims["scope"], "api:read");
        assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
        assert_ne!(jwt_parts(body.access_token().secret()).1["jti"], claims["jti"], "a fresh jti per token");
        let types = app.event_types().await;
        assert_eq!(types[before..].iter().filter(|t| *t == "AccessTokenIssued").count(), 2, "{}: {types:?}", app.backend);

        // Reserved and unregistered scopes.
        for scope in ["admin", "audit", "api:delete"] {
            let e = oauth_client(&app, &client, AuthType::BasicAuth)
                .exchange_client_credentials()
                .add_scope(Scope::new(scope.into()))
                .request_async(&http_client())
                .await
                .expect_err("refused");
            assert_eq!(oauth_error(e), "invalid_scope", "{} {scope}", app.backend);
        }
        // The admin client obtains the admin scope (the contract).
        let r = post_form(&app, "/token", Some(ADMIN), &[("grant_type", "client_credentials"), ("scope", "admin")]).await;
        assert_eq!(r.status, 200, "{}: {}", app.backend, r.text);
        assert_eq!(r.json["scope"], "admin");
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
}

#[actix_web::test]
async fn token_errors_are_rfc6749_json_with_the_right_status() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let client = app.register_client("Service", &[GrantType::ClientCredentials], &["api:read"], true, false).await;
        let code_only = app.register_client("Web", &[GrantType::AuthorizationCode], &["openid"], true, false).await;
        let (id, secret) = creds(&client);
        let form = "application/x-www-form-urlencoded";
        let cc = b"grant_type=client_credentials".to_vec();

        let cases: Vec<(&str, crate::oauth_support::Reply, u16, &str)> = vec![
            (
                "duplicated parameter",
                post_raw(&app, "/token", Some((id, secret)), form, b"grant_type=client_credentials&grant_type=client_credentials".to_vec())
                    .await,
                400,
                "invalid_request",
            ),
            (
                "duplicated scope",
                post_raw(&app, "/token", Some((id, secret)), form, b"grant_type=client_credentials&scope=api:read&scope=api:read".to_vec())
                    .await,
                400,
                "invalid_request",
            ),
            (
                "JSON body",
                post_raw(&app, "/token", Some((id, secret)), "application/json", br#"{"grant_type":"client_credentials"}"#.to_vec()).await,
                400,
                "invalid_request",
            ),
            ("no content type", post_raw(&app, "/token", Some((id, secret)), "", cc.clone()).await, 400, "invalid_request"),
            (
                "invalid UTF-8",
                post_raw(&app, "/token", Some((id, secret)), form, b"grant_type=client_credentials&scope=%FF".to_vec()).await,
                400,
                "invalid_request",
            ),
            (
                "malformed percent-encoding",
                post_raw(&app, "/token", Some((id, secret)), form, b"grant_type=client%ZZcredentials".to_vec()).await,
                400,
                "invalid_request",
            ),
            (
                "oversized body",
                post_raw(
                    &app,
                    "/token",
                    Some((id, secret)),
                    form,
                    format!("grant_type=client_credentials&pad={}", "a".repeat(70 * 1024)).into_bytes(),
                )
                .await,
                400,
                "invalid_request",
            ),
            (
                "unknown grant_type",
                post_raw(&app, "/token", Some((id, secret)), form, b"grant_type=urn:example:magic".to_vec()).await,
                400,
                "unsupported_grant_type",
            ),
            (
                "implicit at the token endpoint",
                post_raw(&app, "/token", Some((id, secret)), form, b"grant_type=implicit".to_vec()).await,
                400,
                "unsupported_grant_type",
            ),
            ("no grant_type", post_raw(&app, "/token", Some((id, secret)), form, b"scope=api:read".to_vec()).await, 400, "invalid_request"),
            (
                "grant not registered",
                post_form(&app, "/token", Some(creds(&code_only)), &[("grant_type", "client_credentials")]).await,
                400,
                "unauthorized_client",
            ),
            (
                "bad secret in the body",
                post_form(&app, "/token", None, &[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", "wrong")])
                    .await,
                401,
                "invalid_client",
            ),
            (
                "unknown client",
                post_form(&app, "/token", Some(("nobody", "x")), &[("grant_type", "client_credentials")]).await,
                401,
                "invalid_client",
            ),
            (
                "no client authentication",
                post_form(&app, "/token", None, &[("grant_type", "client_credentials")]).await,
                401,
                "invalid_client",
            ),
            (
                "confidential client without its secret",
                post_form(&app, "/token", None, &[("grant_type", "client_credentials"), ("client_id", id)]).await,
                401,
                "invalid_client",
            ),
            (
                "Basic and client_secret in the body",
                post_form(&app, "/token", Some((id, secret)), &[("grant_type", "client_credentials"), ("client_secret", secret)]).await,
                400,
                "invalid_request",
            ),
        ];
        for (what, r, status, error) in &cases {
            assert_eq!((r.status, r.error()), (*status, *error), "{} {what}: {}", app.backend, r.text);
            assert_eq!(r.header("cache-control"), Some("no-store"), "{what}: Cache-Control");
            assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{what}: JSON");
            assert!(r.json.get("access_token").is_none(), "{what}");
            if let Some(d) = r.json["error_description"].as_str() {
                assert!(d.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)), "{what}: description charset: {d}");
            }
        }

        // A bad secret with HTTP Basic: 401 and a Basic challenge.
        let r = post_form(&app, "/token", Some((id, "wrong")), &[("grant_type", "client_credentials")]).await;
        assert_eq!((r.status, r.error()), (401, "invalid_client"), "{}: {}", app.backend, r.text);
        assert!(r.header("www-authenticate").is_some_and(|h| h.to_ascii_lowercase().starts_with("basic")), "{:?}", r.headers);
        assert_eq!(r.header("cache-control"), Some("no-store"));

        // POST only.
        let r = crate::oauth_support::reply(
            reqwest::Client::new().get(app.url("/token?grant_type=client_credentials")).basic_auth(id, Some(secret)).send().await.unwrap(),
        )
        .await;
        assert!(
            !(200..300).contains(&r.status) && r.json.get("access_token").is_none(),
            "{}: GET /token: {} {}",
            app.backend,
            r.status,
            r.text
        );

        let types = app.event_types().await;
        assert_eq!(count(&types, "AccessTokenIssued"), 0, "{}: nothing issued by failed requests", app.backend);
        // And the same client succeeds with a well-formed request.
        let r = post_raw(&app, "/token", Some((id, secret)), "application/x-www-form-urlencoded; charset=UTF-8", cc).await;
        assert_eq!(r.status, 200, "{}: {}", app.backend, r.text);
    }
}

#[actix_web::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_grant() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let (client, code, verifier) = code_setup(&app, true, "tom", "openid profile").await;
        let first = exchange(&app, &client, &code, &verifier).await.unwrap_or_else(|e| panic!("{}: {e}", app.backend));
        let rt0 = first.refresh_token().expect("refresh token").secret().clone();
        assert_eq!(scope_of(&first), "openid profile");

        let second = refresh(&app, &client, &rt0, None).await.unwrap_or_else(|e| panic!("{}: refresh: {e}", app.backend));
        let rt1 = second.refresh_token().expect("a new refresh token every use").secret().clone();
        assert_ne!(rt1, rt0, "rotation");
        assert_eq!(scope_of(&second), "openid profile");
        assert_ne!(second.access_token().secret(), first.access_token().secret());

        // Narrowing works; widening does not, and does not burn the token.
        let narrow = refresh(&app, &client, &rt1, Some("openid")).await.unwrap_or_else(|e| panic!("{}: narrowing: {e}", app.backend));
        assert_eq!(scope_of(&narrow), "openid");
        assert_eq!(jwt_parts(narrow.access_token().secret()).1["scope"], "openid");
        let rt2 = narrow.refresh_token().unwrap().secret().clone();
        assert_eq!(refresh(&app, &client, &rt2, Some("openid email")).await.unwrap_err(), "invalid_scope", "{}: widening", app.backend);
        assert_eq!(refresh(&app, &client, &rt2, Some("openid admin")).await.unwrap_err(), "invalid_scope", "{}: admin", app.backend);
        let latest = refresh(&app, &client, &rt2, None).await.unwrap_or_else(|e| panic!("{}: after a refused widening: {e}", app.backend));
        assert_eq!(scope_of(&latest), "openid profile", "{}: back to the whole grant", app.backend);
        let rt3 = latest.refresh_token().unwrap().secret().clone();
        let at3 = latest.access_token().secret().clone();
        assert_eq!(introspect(&app, creds(&client), &at3).await["active"], true, "control");

        // Another client cannot use it.
        let other = app.register_client("Other", &[GrantType::RefreshToken], &["openid"], true, false).await;
        assert_eq!(refresh(&app, &other, &rt3, None).await.unwrap_err(), "invalid_grant", "{}", app.backend);

        // Reuse of a rotated token: refused, and the whole grant dies.
        assert_eq!(refresh(&app, &client, &rt1, None).await.unwrap_err(), "invalid_grant", "{}: reuse", app.backend);
        assert_eq!(refresh(&app, &client, &rt3, None).await.unwrap_err(), "invalid_grant", "{}: the newest is dead too", app.backend);
        assert_inactive(&app, creds(&client), &at3, "the grant's access token after refresh-token reuse").await;
        assert_inactive(&app, ADMIN, first.access_token().secret(), "the first access token").await;
        let types = app.event_types().await;
        assert_eq!(count(&types, "RefreshTokenRotated"), 3, "{}: {types:?}", app.backend);
        assert_eq!(count(&types, "GrantRevoked"), 1, "{}: {types:?}", app.backend);
    }
}

#[actix_web::test]
async fn password_grant_only_for_first_party_clients() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let grants = [GrantType::Password, GrantType::RefreshToken];
        let first = app.register_client("Own app", &grants, &["openid", "profile"], true, true).await;
        let third = app.register_client("Partner", &grants, &["openid", "profile"], true, false).await;
        let service = app.register_client("Service", &[GrantType::ClientCredentials], &["openid"], true, true).await;
        let user_id = user(&app, "uma").await;
        let (username, password) = (ResourceOwnerUsername::new("uma".into()), ResourceOwnerPassword::new(PASSWORD.into()));

        let tokens = oauth_client(&app, &first, AuthType::BasicAuth)
            .exchange_password(&username, &password)
            .add_scope(Scope::new("openid".into()))
            .request_async(&http_client())
            .await
            .unwrap_or_else(|e| panic!("{}: password grant: {e:?}", app.backend));
        assert_eq!(scope_of(&tokens), "openid");
        assert!(tokens.refresh_token().is_some(), "refresh token with the refresh_token grant");
        let claims = jwt_parts(tokens.access_token().secret()).1;
        assert_eq!(claims["sub"], user_id.as_str(), "{}: sub is the user", app.backend);
        assert_eq!(claims["client_id"], first.client_id.as_str());
        assert!(refresh(&app, &first, tokens.refresh_token().unwrap().secret(), None).await.is_ok(), "{}", app.backend);

        let wrong = ResourceOwnerPassword::new("not the password".into());
        let e = oauth_client(&app, &first, AuthType::RequestBody).exchange_password(&username, &wrong).request_async(&http_client()).await;
        assert_eq!(oauth_error(e.unwrap_err()), "invalid_grant", "{}: wrong password", app.backend);

        for (what, client) in [("third party with the password grant", &third), ("first party without the password grant", &service)] {
            let e =
                oauth_client(&app, client, AuthType::BasicAuth).exchange_password(&username, &password).request_async(&http_client()).await;
            assert_eq!(oauth_error(e.unwrap_err()), "unauthorized_client", "{} {what}", app.backend);
        }
        let types = app.event_types().await;
        assert_eq!(count(&types, "AccessTokenIssued"), 2, "{}: {types:?}", app.backend);
    }
}

#[actix_web::test]
async fn public_client_code_flow_with_pkce_and_no_secret() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let (client, code, verifier) = code_setup(&app, false, "vera", "openid").await;
        assert!(client.client_secret.is_none());

        // An invalid redemption (wrong verifier, no verifier, wrong redirect
        // URI) is refused and does not burn the code (R6: no DoS).
        let wrong = crate::oauth_support::Pkce::new().verifier;
        assert_eq!(exchange(&app, &client, &code, &wrong).await.unwrap_err(), "invalid_grant", "{}: wrong verifier", app.backend);
        let r = post_form(
            &app,
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &client.redirect_uri),
                ("client_id", &client.client_id),
            ],
        )
        .await;
        assert_eq!((r.status, r.error()), (400, "invalid_request"), "{}: no code_verifier: {}", app.backend, r.text);
        let r = post_form(
            &app,
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "https://app.example/other"),
                ("client_id", &client.client_id),
                ("code_verifier", &verifier),
            ],
        )
        .await;
        assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}: wrong redirect_uri: {}", app.backend, r.text);

        let tokens = exchange(&app, &client, &code, &verifier).await.unwrap_or_else(|e| panic!("{}: public exchange: {e}", app.backend));
        let at = tokens.access_token().secret().clone();
        let rt = tokens.refresh_token().expect("refresh token").secret().clone();
        assert_eq!(jwt_parts(&at).1["client_id"], client.client_id.as_str());

        // An invalid replay does not revoke either.
        assert_eq!(exchange(&app, &client, &code, &wrong).await.unwrap_err(), "invalid_grant");
        assert_eq!(introspect(&app, ADMIN, &at).await["active"], true, "{}: an invalid replay revokes nothing", app.backend);

        // The public client refreshes with its client_id alone.
        let next = refresh(&app, &client, &rt, None).await.unwrap_or_else(|e| panic!("{}: public refresh: {e}", app.backend));
        assert_ne!(next.refresh_token().unwrap().secret(), &rt);
    }
}

#[actix_web::test]
async fn a_replayed_code_is_refused_and_revokes_the_first_tokens() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let (client, code, verifier) = code_setup(&app, true, "wendy", "openid profile").await;
        let first = exchange(&app, &client, &code, &verifier).await.unwrap_or_else(|e| panic!("{}: {e}", app.backend));
        let at = first.access_token().secret().clone();
        let rt = first.refresh_token().unwrap().secret().clone();
        assert_eq!(introspect(&app, creds(&client), &at).await["active"], true, "control");

        assert_eq!(exchange(&app, &client, &code, &verifier).await.unwrap_err(), "invalid_grant", "{}: replay", app.backend);
        assert_inactive(&app, creds(&client), &at, "access token of a replayed code").await;
        assert_inactive(&app, creds(&client), &rt, "refresh token of a replayed code").await;
        assert_eq!(refresh(&app, &client, &rt, None).await.unwrap_err(), "invalid_grant", "{}", app.backend);
        let types = app.event_types().await;
        assert_eq!(count(&types, "AuthorizationCodeRedeemed"), 1);
        assert_eq!(count(&types, "GrantRevoked"), 1, "{}: {types:?}", app.backend);
    }
}

#[actix_web::test]
async fn twenty_concurrent_redemptions_of_one_code_yield_one_token() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let (client, code, verifier) = code_setup(&app, true, "xena", "openid").await;
        let http = reqwest::Client::new();
        let (id, secret) = creds(&client);
        let attempts = (0..20).map(|_| {
            let request = http.post(app.url("/token")).basic_auth(id, Some(secret)).form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", client.redirect_uri.as_str()),
                ("code_verifier", verifier.as_str()),
            ]);
            async move { crate::oauth_support::reply(request.send().await.expect("POST /token")).await }
        });
        let replies = futures::future::join_all(attempts).await;
        let winners: Vec<&crate::oauth_support::Reply> = replies.iter().filter(|r| r.status == 200).collect();
        assert_eq!(
            winners.len(),
            1,
            "{}: exactly one redemption wins: {:?}",
            app.backend,
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        for r in &replies {
            assert_eq!(r.header("cache-control"), Some("no-store"), "{}: {} response", app.backend, r.status);
        }
        for r in replies.iter().filter(|r| r.status != 200) {
            assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}: {}", app.backend, r.text);
        }
        let types = app.event_types().await;
        assert_eq!(count(&types, "AuthorizationCodeRedeemed"), 1, "{}: {types:?}", app.backend);
        assert_eq!(count(&types, "AccessTokenIssued"), 1, "{}: one token only", app.backend);
        // The losers were valid replays: the winner's tokens are revoked (R6).
        let at = winners[0].json["access_token"].as_str().expect("access token");
        assert_inactive(&app, creds(&client), at, "the winner's token after concurrent replays").await;
    }
}

/// Makes every insert into `events` fail, or lets them through again.
async fn break_event_store(app: &TestApp, broken: bool) {
    match &app.db {
        grantd::db::Db::Sqlite { pool, .. } => {
            let sql = if broken {
                "CREATE TRIGGER grantd_test_disk_full BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END;"
            } else {
                "DROP TRIGGER grantd_test_disk_full;"
            };
            sqlx::raw_sql(sql).execute(pool).await.expect("trigger");
        }
        grantd::db::Db::Postgres { pool, .. } => {
            let sql = if broken {
                "CREATE FUNCTION grantd_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
                 CREATE TRIGGER grantd_test_disk_full BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION grantd_test_disk_full();"
            } else {
                "DROP TRIGGER grantd_test_disk_full ON events; DROP FUNCTION grantd_test_disk_full();"
            };
            sqlx::raw_sql(sql).execute(pool).await.expect("trigger");
        }
    }
}

#[actix_web::test]
async fn an_event_store_that_refuses_writes_gives_503_and_no_token() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let client = app.register_client("Service", &[GrantType::ClientCredentials], &["api:read"], true, false).await;
        let (code_client, code, verifier) = code_setup(&app, true, "yara", "openid").await;
        let cc = [("grant_type", "client_credentials")];
        assert_eq!(post_form(&app, "/token", Some(creds(&client)), &cc).await.status, 200, "control");
        let before = app.event_types().await;

        break_event_store(&app, true).await;
        let r = post_form(&app, "/token", Some(creds(&client)), &cc).await;
        assert_eq!(r.status, 503, "{}: {}", app.backend, r.text);
        assert_eq!(r.error(), "temporarily_unavailable");
        assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()), "{}: Retry-After: {:?}", app.backend, r.headers);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r.json.get("access_token").is_none(), "{}: no token without its event", app.backend);
        // The code redemption too: no token, and the code is not burnt.
        let r = post_form(
            &app,
            "/token",
            Some(creds(&code_client)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &code_client.redirect_uri),
                ("code_verifier", &verifier),
            ],
        )
        .await;
        assert_eq!(r.status, 503, "{}: code redemption: {}", app.backend, r.text);
        assert!(r.json.get("access_token").is_none());
        assert_eq!(app.event_types().await, before, "{}: nothing was recorded", app.backend);

        // Once the store takes writes again, so does the server.
        break_event_store(&app, false).await;
        let r = post_form(&app, "/token", Some(creds(&client)), &cc).await;
        assert_eq!(r.status, 200, "{}: after recovery: {}", app.backend, r.text);
        let tokens =
            exchange(&app, &code_client, &code, &verifier).await.unwrap_or_else(|e| panic!("{}: code after recovery: {e}", app.backend));
        assert_eq!(introspect(&app, creds(&code_client), tokens.access_token().secret()).await["active"], true);
    }
}
