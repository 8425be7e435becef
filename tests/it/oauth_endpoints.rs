//! Discovery and JWKS, `/introspect` (RFC 7662), `/revoke` (RFC 7009) and
//! `/userinfo` (OIDC Core §5.3, RFC 6750), on every backend.

use grantd::domain::client::GrantType;
use openidconnect::IssuerUrl;
use openidconnect::core::CoreProviderMetadata;
use serde_json::{Value, json};

use crate::helpers::backends;
use crate::oauth_support::{PASSWORD, assert_inactive, creds, introspect, jwt_parts, post_form, unsigned_jwt, user};
use crate::oidc::http_client;
use crate::server::{ADMIN_ID, ADMIN_SECRET, TestApp, TestClient};

const ADMIN: (&str, &str) = (ADMIN_ID, ADMIN_SECRET);

/// Members a public JWK must never carry (RFC 7517/7518 private parts, `k` of symmetric keys).
const PRIVATE_MEMBERS: [&str; 9] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"];

/// A client-credentials access token for `client` (HTTP Basic).
async fn client_token(app: &TestApp, client: &TestClient) -> String {
    let r = post_form(app, "/token", Some(creds(client)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status, 200, "{}: client credentials: {}", app.backend, r.text);
    r.json["access_token"].as_str().expect("access_token").to_string()
}

/// A password-grant token response for a first-party `client`.
async fn password_tokens(app: &TestApp, client: &TestClient, username: &str, scope: &str) -> Value {
    let r = post_form(
        app,
        "/token",
        Some(creds(client)),
        &[("grant_type", "password"), ("username", username), ("password", PASSWORD), ("scope", scope)],
    )
    .await;
    assert_eq!(r.status, 200, "{}: password grant: {}", app.backend, r.text);
    r.json
}

#[actix_web::test]
async fn discovery_documents_and_jwks_advertise_what_is_supported() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let http = reqwest::Client::new();
        let mut jwks_uri = String::new();
        for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
            let r = http.get(app.url(path)).send().await.expect("GET discovery");
            assert_eq!(r.status(), 200, "{} {path}", app.backend);
            assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{path}");
            let doc: Value = r.json().await.expect("discovery JSON");
            assert_eq!(doc["issuer"], json!(app.address), "{} {path}: issuer is the server address", app.backend);
            assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]), "{path}: S256 only");
            assert_eq!(doc["authorization_response_iss_parameter_supported"], json!(true), "{path}: RFC 9207");
            let algs: Vec<&str> =
                doc["id_token_signing_alg_values_supported"].as_array().expect("algs").iter().filter_map(Value::as_str).collect();
            assert!(algs.contains(&"EdDSA") && algs.contains(&"RS256"), "{path}: {algs:?}");
            for (member, endpoint) in [
                ("authorization_endpoint", "/authorize"),
                ("token_endpoint", "/token"),
                ("jwks_uri", "/jwks"),
                ("introspection_endpoint", "/introspect"),
                ("revocation_endpoint", "/revoke"),
                ("userinfo_endpoint", "/userinfo"),
            ] {
                assert_eq!(doc[member], json!(app.url(endpoint)), "{path}: {member}");
            }
            let auth_methods: Vec<&str> =
                doc["token_endpoint_auth_methods_supported"].as_array().expect("auth methods").iter().filter_map(Value::as_str).collect();
            assert!(auth_methods.contains(&"client_secret_post") && auth_methods.contains(&"client_secret_basic"), "{auth_methods:?}");
            jwks_uri = doc["jwks_uri"].as_str().unwrap().to_string();
        }

        // A certified client library accepts the document (and its JWKS).
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.address.clone()).unwrap(), &http_client())
            .await
            .unwrap_or_else(|e| panic!("{}: openidconnect discovery: {e:?}", app.backend));

        let jwks: Value = http.get(&jwks_uri).send().await.unwrap().json().await.expect("JWKS JSON");
        let keys = jwks["keys"].as_array().expect("keys");
        let okp = keys.iter().find(|k| k["kty"] == "OKP").unwrap_or_else(|| panic!("{}: no OKP key in {jwks}", app.backend));
        assert_eq!(okp["crv"], "Ed25519");
        assert_eq!(okp["use"], "sig");
        assert_eq!(okp["alg"], "EdDSA");
        assert!(okp["kid"].as_str().is_some_and(|k| !k.is_empty()), "kid: {okp}");
        assert!(okp["x"].as_str().is_some_and(|x| x.len() == 43), "x: {okp}");
        let rsa = keys.iter().find(|k| k["kty"] == "RSA").unwrap_or_else(|| panic!("{}: no RSA key in {jwks}", app.backend));
        assert!(rsa["kid"].as_str().is_some_and(|k| !k.is_empty()) && rsa["n"].is_string() && rsa["e"].is_string(), "{rsa}");
        for key in keys {
            for member in PRIVATE_MEMBERS {
                assert!(key.get(member).is_none(), "{}: private member {member} published in {key}", app.backend);
            }
        }

        // The key that signs access tokens is the published one.
        let client = app.register_client("Jwks", &[GrantType::ClientCredentials], &["api:read"], true, false).await;
        let (header, _) = jwt_parts(&client_token(&app, &client).await);
        assert_eq!(header["kid"], okp["kid"], "{}: access tokens name the published Ed25519 key", app.backend);
    }
}

#[actix_web::test]
async fn introspection_answers_the_owner_and_the_admin_and_nobody_else() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let a = app.register_client("A", &[GrantType::ClientCredentials], &["api:read"], true, false).await;
        let b = app.register_client("B", &[GrantType::ClientCredentials], &["api:read"], true, false).await;
        let token = client_token(&app, &a).await;

        let own = introspect(&app, creds(&a), &token).await;
        assert_eq!(own["active"], true, "{}: {own}", app.backend);
        assert_eq!(own["client_id"], json!(a.client_id));
        assert_eq!(own["sub"], json!(a.client_id));
        assert_eq!(own["scope"], "api:read");
        assert_eq!(own["iss"], json!(app.address));
        assert_eq!(own["token_type"], "Bearer");
        for claim in ["exp", "iat", "jti", "grant_id"] {
            assert!(own.get(claim).is_some(), "{claim} in {own}");
        }
        let admin = introspect(&app, ADMIN, &token).await;
        assert_eq!(admin["active"], true, "{}: the admin client may introspect any token", app.backend);
        assert_eq!(admin["client_id"], json!(a.client_id));

        assert_inactive(&app, creds(&b), &token, "another client learns nothing").await;
        assert_inactive(&app, creds(&a), "garbage", "garbage").await;
        assert_inactive(&app, creds(&a), &"A".repeat(64), "an opaque string of the refresh token shape").await;

        // Tokens signed with the server's own key: a fresh one is active (the
        // control), an expired one is not.
        let keyring = app.live.keyring();
        let signer = keyring.eddsa.as_ref().expect("active EdDSA key");
        let (header, claims) = jwt_parts(&token);
        let now = chrono::Utc::now().timestamp();
        let mut fresh = claims.clone();
        fresh["jti"] = json!(uuid::Uuid::new_v4().to_string());
        assert_eq!(introspect(&app, creds(&a), &signer.sign("at+jwt", &fresh)).await["active"], true, "control: re-signed token");
        let mut expired = claims.clone();
        expired["iat"] = json!(now - 700);
        expired["exp"] = json!(now - 100);
        assert_inactive(&app, creds(&a), &signer.sign("at+jwt", &expired), "expired token").await;
        let mut foreign = claims.clone();
        foreign["iss"] = json!("https://evil.example");
        assert_inactive(&app, creds(&a), &signer.sign("at+jwt", &foreign), "another issuer").await;
        assert_inactive(&app, creds(&a), &signer.sign("JWT", &claims), "an ID-token typed JWT").await;

        // Forged: right kid, wrong key; and `alg: none`.
        let forger = grantd::jose::JwsSigner::ed25519(header["kid"].as_str().unwrap(), ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
            .expect("a valid key");
        assert_inactive(&app, creds(&a), &forger.sign("at+jwt", &claims), "forged signature").await;
        let none = unsigned_jwt(&json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]}), &claims);
        assert_inactive(&app, creds(&a), &none, "alg none").await;
        let mut tampered = token.rsplit_once('.').unwrap().0.to_string();
        tampered.push('.');
        assert_inactive(&app, creds(&a), &tampered, "signature stripped").await;

        // Revoked.
        let r = post_form(&app, "/revoke", Some(creds(&a)), &[("token", &token)]).await;
        assert_eq!(r.status, 200, "{}: {}", app.backend, r.text);
        assert_inactive(&app, creds(&a), &token, "revoked token").await;
        assert_inactive(&app, ADMIN, &token, "revoked token, admin").await;

        // Callers must authenticate (RFC 7662 §2.1): 401.
        let other = client_token(&app, &a).await;
        for (who, basic, extra) in [
            ("nobody", None, vec![]),
            ("wrong secret", Some((a.client_id.as_str(), "wrong")), vec![]),
            ("client_id alone", None, vec![("client_id", a.client_id.as_str())]),
        ] {
            let mut pairs = vec![("token", other.as_str())];
            pairs.extend(extra);
            let r = post_form(&app, "/introspect", basic, &pairs).await;
            assert_eq!(r.status, 401, "{}: {who}: {}", app.backend, r.text);
            assert_eq!(r.error(), "invalid_client");
            assert!(r.json.get("active").is_none(), "{who}: nothing about the token");
        }
        // A public client cannot introspect either.
        let public = app.register_client("Public", &[GrantType::AuthorizationCode], &["openid"], false, false).await;
        let r = post_form(&app, "/introspect", None, &[("token", &other), ("client_id", &public.client_id)]).await;
        assert_eq!(r.status, 401, "{}: public caller: {}", app.backend, r.text);
    }
}

#[actix_web::test]
async fn refresh_tokens_introspect_as_refresh_tokens() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let fp =
            app.register_client("First party", &[GrantType::Password, GrantType::RefreshToken], &["openid", "profile"], true, true).await;
        let other = app.register_client("Other", &[GrantType::ClientCredentials], &["api:read"], true, false).await;
        let user_id = user(&app, "ivy").await;
        let tokens = password_tokens(&app, &fp, "ivy", "openid profile").await;
        let rt = tokens["refresh_token"].as_str().expect("refresh token for a client with the refresh_token grant");

        let body = introspect(&app, creds(&fp), rt).await;
        assert_eq!(body["active"], true, "{}: {body}", app.backend);
        assert_eq!(body["token_type"], "refresh_token");
        assert_eq!(body["client_id"], json!(fp.client_id));
        assert_eq!(body["sub"], json!(user_id));
        assert_eq!(body["scope"], "openid profile");
        assert!(body["exp"].as_i64().is_some_and(|exp| exp > chrono::Utc::now().timestamp()));
        assert_eq!(introspect(&app, ADMIN, rt).await["active"], true);
        assert_inactive(&app, creds(&other), rt, "another client's refresh token").await;

        // After rotation the old one is dead and the new one alive.
        let r = post_form(&app, "/token", Some(creds(&fp)), &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let next = r.json["refresh_token"].as_str().unwrap();
        assert_inactive(&app, creds(&fp), rt, "rotated refresh token").await;
        assert_eq!(introspect(&app, creds(&fp), next).await["active"], true, "{}: the new refresh token", app.backend);
    }
}

#[actix_web::test]
async fn revocation_follows_rfc7009() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let cc = app.register_client("Service", &[GrantType::ClientCredentials], &["api:read"], true, false).await;
        let fp =
            app.register_client("First party", &[GrantType::Password, GrantType::RefreshToken], &["openid", "profile"], true, true).await;
        user(&app, "jack").await;

        // Unknown and invalid tokens: 200 (RFC 7009 §2.2).
        for token in ["unknown-token", "eyJhbGciOiJub25lIn0.e30.", &"B".repeat(64)] {
            let r = post_form(&app, "/revoke", Some(creds(&cc)), &[("token", token)]).await;
            assert_eq!(r.status, 200, "{}: {token}: {}", app.backend, r.text);
        }
        let before = app.event_types().await.iter().filter(|t| *t == "GrantRevoked").count();
        assert_eq!(before, 0, "{}: revoking unknown tokens records nothing", app.backend);

        // Revoking a refresh token revokes its grant: the access token too.
        let tokens = password_tokens(&app, &fp, "jack", "openid").await;
        let (at, rt) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
        assert_eq!(introspect(&app, creds(&fp), at).await["active"], true, "control");
        let r = post_form(&app, "/revoke", Some(creds(&fp)), &[("token", rt), ("token_type_hint", "refresh_token")]).await;
        assert_eq!(r.status, 200, "{}: {}", app.backend, r.text);
        assert_inactive(&app, creds(&fp), at, "access token of a revoked refresh token's grant").await;
        assert_inactive(&app, creds(&fp), rt, "revoked refresh token").await;
        let r = post_form(&app, "/token", Some(creds(&fp)), &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
        assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}: a revoked refresh token is refused", app.backend);
        let types = app.event_types().await;
        assert_eq!(types.iter().filter(|t| *t == "GrantRevoked").count(), 1, "{}: {types:?}", app.backend);

        // A token of another client: refused, and it stays active.
        let theirs = client_token(&app, &cc).await;
        let r = post_form(&app, "/revoke", Some(creds(&fp)), &[("token", &theirs)]).await;
        assert!(
            (400..500).contains(&r.status),
            "{}: revoking another client's token must be refused: {} {}",
            app.backend,
            r.status,
            r.text
        );
        assert!(r.json["error"].is_string(), "{}", r.text);
        assert_eq!(introspect(&app, creds(&cc), &theirs).await["active"], true, "{}: still active", app.backend);

        // A wrong token_type_hint still finds the token.
        let r = post_form(&app, "/revoke", Some(creds(&cc)), &[("token", &theirs), ("token_type_hint", "refresh_token")]).await;
        assert_eq!(r.status, 200, "{}: {}", app.backend, r.text);
        assert_inactive(&app, creds(&cc), &theirs, "revoked despite a wrong hint").await;
        let tokens = password_tokens(&app, &fp, "jack", "openid").await;
        let (at, rt) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
        let r = post_form(&app, "/revoke", Some(creds(&fp)), &[("token", rt), ("token_type_hint", "access_token")]).await;
        assert_eq!(r.status, 200);
        assert_inactive(&app, creds(&fp), at, "refresh token revoked with an access_token hint").await;

        // The caller must authenticate.
        let fresh = client_token(&app, &cc).await;
        let r = post_form(&app, "/revoke", None, &[("token", &fresh)]).await;
        assert_eq!((r.status, r.error()), (401, "invalid_client"), "{}: {}", app.backend, r.text);
        let r = post_form(&app, "/revoke", Some((&cc.client_id, "wrong")), &[("token", &fresh)]).await;
        assert_eq!(r.status, 401, "{}", r.text);
        assert!(r.header("www-authenticate").is_some_and(|h| h.starts_with("Basic")), "{:?}", r.headers);
        assert_eq!(introspect(&app, creds(&cc), &fresh).await["active"], true, "an unauthenticated revocation changes nothing");
    }
}

#[actix_web::test]
async fn userinfo_releases_claims_by_scope_to_bearer_tokens_only() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let fp = app.register_client("First party", &[GrantType::Password], &["openid", "profile", "email"], true, true).await;
        let user_id = user(&app, "kate").await;
        let http = reqwest::Client::new();
        let userinfo = |token: String, post: bool| {
            let request = if post { http.post(app.url("/userinfo")) } else { http.get(app.url("/userinfo")) };
            async move { crate::oauth_support::reply(request.bearer_auth(token).send().await.expect("userinfo")).await }
        };

        let expected = [
            ("openid", json!({"sub": user_id})),
            ("openid profile", json!({"sub": user_id, "name": "kate Example", "preferred_username": "kate"})),
            ("openid email", json!({"sub": user_id, "email": "kate@example.com", "email_verified": false})),
        ];
        for (scope, claims) in expected {
            let token = password_tokens(&app, &fp, "kate", scope).await["access_token"].as_str().unwrap().to_string();
            for post in [false, true] {
                let r = userinfo(token.clone(), post).await;
                assert_eq!(r.status, 200, "{} {scope} post={post}: {}", app.backend, r.text);
                assert_eq!(r.json, claims, "{} {scope} post={post}", app.backend);
            }
        }

        // No token: 401 with a bare Bearer challenge.
        let r = crate::oauth_support::reply(http.get(app.url("/userinfo")).send().await.unwrap()).await;
        assert_eq!(r.status, 401, "{}", app.backend);
        let challenge = r.header("www-authenticate").expect("WWW-Authenticate");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert!(!challenge.contains("error="), "RFC 6750 §3.1: no error code without credentials: {challenge}");

        // An invalid token: 401 invalid_token.
        for bad in ["garbage".to_string(), unsigned_jwt(&json!({"alg": "none", "typ": "at+jwt"}), &json!({"sub": user_id}))] {
            let r = userinfo(bad, false).await;
            assert_eq!(r.status, 401, "{}", app.backend);
            assert!(r.header("www-authenticate").is_some_and(|h| h.contains("error=\"invalid_token\"")), "{:?}", r.headers);
        }

        // Without the openid scope: 403 insufficient_scope.
        let profile_only = password_tokens(&app, &fp, "kate", "profile").await["access_token"].as_str().unwrap().to_string();
        let r = userinfo(profile_only, false).await;
        assert_eq!(r.status, 403, "{}: {}", app.backend, r.text);
        assert!(r.header("www-authenticate").is_some_and(|h| h.contains("error=\"insufficient_scope\"")), "{:?}", r.headers);

        // A token in the query string is not accepted (R9), in either method.
        let token = password_tokens(&app, &fp, "kate", "openid").await["access_token"].as_str().unwrap().to_string();
        let r = crate::oauth_support::reply(http.get(app.url("/userinfo")).query(&[("access_token", &token)]).send().await.unwrap()).await;
        assert_eq!(r.status, 401, "{}: access token in the query: {}", app.backend, r.text);
        assert!(r.json.get("sub").is_none());
        let r = crate::oauth_support::reply(http.post(app.url("/userinfo")).query(&[("access_token", &token)]).send().await.unwrap()).await;
        assert_eq!(r.status, 401, "{}: access token in the query of a POST: {}", app.backend, r.text);

        // A revoked token stops working.
        let r = post_form(&app, "/revoke", Some(creds(&fp)), &[("token", &token)]).await;
        assert_eq!(r.status, 200);
        let r = userinfo(token, false).await;
        assert_eq!(r.status, 401, "{}: revoked token at userinfo", app.backend);
        assert!(r.header("www-authenticate").is_some_and(|h| h.contains("invalid_token")));
    }
}
