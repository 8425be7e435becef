//! `/authorize` with its login and consent pages, driven by the HTML form
//! browser: errors that must not redirect and errors that must, loopback
//! redirect URIs, framing and referrer headers, CSRF, consent memory, single
//! sign-on, `prompt`, response modes and the implicit grant.

use std::str::FromStr;

use grantd::domain::client::{GrantType, SigningAlg};
use oauth2::{AuthType, AuthorizationCode, PkceCodeVerifier, RedirectUrl, TokenResponse as _};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata};
use openidconnect::{ClientId, CsrfToken, IssuerUrl, Nonce, Scope};

use crate::helpers::backends;
use crate::oauth_support::{PASSWORD, Pkce, STATE, authorize_url, code_for, oauth_client, redirect_of, user};
use crate::oidc::http_client;
use crate::server::{Browser, Page, TestApp, TestClient};

/// Clickjacking (R13) and referrer (R14) protection on a rendered page.
fn assert_protected_page(page: &Page, what: &str) {
    let header = |name: &str| page.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(header("x-frame-options"), "DENY", "{what}: X-Frame-Options");
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"), "{what}: CSP {}", header("content-security-policy"));
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}: Referrer-Policy");
    assert!(header("content-type").starts_with("text/html"), "{what}: an HTML page");
}

/// An HTML 400 that does not send the browser anywhere (R2).
fn assert_no_redirect(page: &Page, what: &str) {
    assert_eq!(page.status, 400, "{what}: {}", page.body);
    assert!(page.location.is_none(), "{what}: must never redirect, got {:?}", page.location);
    assert!(!page.body.contains("evil.example"), "{what}: the untrusted URI is not offered as a link");
    assert_protected_page(page, what);
}

fn is_login_page(page: &Page) -> bool {
    page.status == 200 && page.input("password").is_some() && page.input("csrf_token").is_some()
}

fn is_consent_page(page: &Page) -> bool {
    page.status == 200 && page.body.contains("name=\"decision\" value=\"approve\"") && page.input("csrf_token").is_some()
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn count(types: &[String], wanted: &str) -> usize {
    types.iter().filter(|t| *t == wanted).count()
}

async fn code_client(app: &TestApp, name: &str) -> TestClient {
    app.register_client(name, &[GrantType::AuthorizationCode, GrantType::RefreshToken], &["openid", "profile", "email"], true, false).await
}

/// Exchanges a code with the `oauth2` crate; returns the access token.
async fn redeem(app: &TestApp, client: &TestClient, redirect_uri: &str, code: &str, verifier: &str) -> String {
    let auth = if client.client_secret.is_some() { AuthType::BasicAuth } else { AuthType::RequestBody };
    let tokens = oauth_client(app, client, auth)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_string()).unwrap())
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
        .request_async(&http_client())
        .await
        .unwrap_or_else(|e| panic!("{}: code exchange: {e:?}", app.backend));
    tokens.access_token().secret().clone()
}

#[actix_web::test]
async fn authorization_errors_redirect_only_to_registered_uris() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let client = app.register_client("Shop", &[GrantType::AuthorizationCode], &["openid", "profile"], true, false).await;
        let browser = Browser::new();
        let pkce = Pkce::new();
        let cb = client.redirect_uri.as_str();
        let url = |client_id: &str, redirect: &str, overrides: &[(&str, &str)]| {
            authorize_url(&app, client_id, redirect, &pkce.challenge, overrides)
        };

        // Never a redirect while the client and its redirect URI are not established.
        let no_redirect = [
            ("unknown client", url("no-such-client", "https://evil.example/cb", &[])),
            ("unknown client, registered URI", url("no-such-client", cb, &[])),
            ("no client_id", url("", cb, &[("client_id", "")])),
            ("foreign redirect_uri", url(&client.client_id, "https://evil.example/callback", &[])),
            ("redirect_uri with a suffix", url(&client.client_id, &format!("{cb}/"), &[])),
            ("redirect_uri with a query", url(&client.client_id, &format!("{cb}?next=https://evil.example"), &[])),
            ("no redirect_uri", url(&client.client_id, cb, &[("redirect_uri", "")])),
            ("foreign redirect_uri and a bad request", url(&client.client_id, "https://evil.example/cb", &[("response_type", "bogus")])),
        ];
        for (what, u) in &no_redirect {
            assert_no_redirect(&browser.get(u).await, &format!("{} {what}", app.backend));
        }
        // A repeated client_id or redirect_uri is ambiguous: no redirect either.
        for repeated in ["&redirect_uri=https%3A%2F%2Fevil.example%2Fcb", "&client_id=another", "&redirect_uri=%FF"] {
            let u = format!("{}{repeated}", url(&client.client_id, cb, &[]));
            assert_no_redirect(&browser.get(&u).await, &format!("{} repeated {repeated}", app.backend));
        }
        // POST /authorize too.
        let page = Browser::page(
            browser
                .client
                .post(app.url("/authorize"))
                .form(&[("client_id", "no-such-client"), ("redirect_uri", "https://evil.example/cb"), ("response_type", "code")])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_no_redirect(&page, "POST with an unknown client");

        // Every other error goes back to the client with error, state and iss.
        let redirected = [
            ("no code_challenge", vec![("code_challenge", "")], "invalid_request"),
            ("code_challenge_method=plain", vec![("code_challenge_method", "plain")], "invalid_request"),
            ("no code_challenge_method", vec![("code_challenge_method", "")], "invalid_request"),
            ("unsupported response_type", vec![("response_type", "code id_token")], "unsupported_response_type"),
            ("another unsupported response_type", vec![("response_type", "device_code")], "unsupported_response_type"),
            ("scope not registered", vec![("scope", "openid payments")], "invalid_scope"),
            ("admin scope", vec![("scope", "openid admin")], "invalid_scope"),
            ("audit scope", vec![("scope", "audit")], "invalid_scope"),
            ("repeated parameter", vec![], "invalid_request"),
        ];
        for (what, overrides, error) in redirected {
            let mut u = url(&client.client_id, cb, &overrides);
            if what == "repeated parameter" {
                u.push_str("&scope=profile");
            }
            let page = browser.get(&u).await;
            let r = redirect_of(&page);
            assert_eq!(r.base, cb, "{} {what}", app.backend);
            assert_eq!(get(&r.query, "error"), Some(error), "{} {what}: {:?}", app.backend, r.query);
            assert_eq!(get(&r.query, "state"), Some(STATE), "{what}: state echoed exactly");
            assert_eq!(get(&r.query, "iss"), Some(app.address.as_str()), "{what}: RFC 9207 iss");
            assert!(get(&r.query, "code").is_none());
        }

        // The implicit grant for a client without it: unauthorized_client, in the fragment.
        let page = browser.get(&url(&client.client_id, cb, &[("response_type", "token"), ("code_challenge", "")])).await;
        let r = redirect_of(&page);
        assert_eq!(get(&r.fragment, "error"), Some("unauthorized_client"), "{}: {:?}", app.backend, r.fragment);
        assert_eq!(get(&r.fragment, "state"), Some(STATE));
        assert_eq!(get(&r.fragment, "iss"), Some(app.address.as_str()));
        assert!(r.query.is_empty(), "{:?}", r.query);

        // No CORS at the authorization endpoint (R15).
        let response = browser.client.get(url(&client.client_id, cb, &[])).header("origin", "https://evil.example").send().await.unwrap();
        assert!(response.headers().get("access-control-allow-origin").is_none(), "{}: CORS at /authorize", app.backend);

        let types = app.event_types().await;
        assert_eq!(count(&types, "AuthorizationCodeIssued") + count(&types, "AccessTokenIssued"), 0, "{}: nothing issued", app.backend);
    }
}

#[actix_web::test]
async fn loopback_redirect_ports_are_free_for_public_clients_only() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let grants = [GrantType::AuthorizationCode];
        let public = app.register_client_with("Native", &grants, &["openid"], false, false, SigningAlg::EdDSA, "http://127.0.0.1/cb").await;
        let confidential =
            app.register_client_with("Web", &grants, &["openid"], true, false, SigningAlg::EdDSA, "http://127.0.0.1/cb").await;
        user(&app, "lena").await;
        let browser = Browser::new();
        let pkce = Pkce::new();
        let with_port = "http://127.0.0.1:53123/cb";

        // Public client: any port, then the code is bound to that exact URI.
        let u = authorize_url(&app, &public.client_id, with_port, &pkce.challenge, &[]);
        let answer = crate::oidc::sign_in(&app, &browser, &u, "lena", PASSWORD).await;
        let code = get(&answer, "code").expect("code").to_string();
        let page = browser.get(&u).await;
        assert!(
            page.location.as_deref().is_some_and(|l| l.starts_with("http://127.0.0.1:53123/cb?")),
            "{}: {:?}",
            app.backend,
            page.location
        );
        let at = redeem(&app, &public, with_port, &code, &pkce.verifier).await;
        assert!(!at.is_empty());

        // Only the port is free, never the path or the host.
        for bad in ["http://127.0.0.1:53123/other", "http://localhost:53123/cb", "https://127.0.0.1:53123/cb"] {
            let page = browser.get(&authorize_url(&app, &public.client_id, bad, &pkce.challenge, &[])).await;
            assert_no_redirect(&page, &format!("{} public {bad}", app.backend));
        }
        // Confidential client: exact match only.
        let page = browser.get(&authorize_url(&app, &confidential.client_id, with_port, &pkce.challenge, &[])).await;
        assert_no_redirect(&page, &format!("{} confidential client with a loopback port", app.backend));
        let page = browser.get(&authorize_url(&app, &confidential.client_id, "http://127.0.0.1/cb", &pkce.challenge, &[])).await;
        assert!(is_consent_page(&page), "{}: the registered URI is accepted: {}", app.backend, page.body);
    }
}

#[actix_web::test]
async fn login_page_errors_and_csrf() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let client = code_client(&app, "Shop").await;
        user(&app, "mona").await;
        let pkce = Pkce::new();
        let u = authorize_url(&app, &client.client_id, &client.redirect_uri, &pkce.challenge, &[]);

        let browser = Browser::new();
        let login = browser.get(&u).await;
        assert!(is_login_page(&login), "{}: {}", app.backend, login.body);
        assert_protected_page(&login, "login page");
        assert!(login.body.contains("name=\"username\""));

        // A wrong password: the form again, with an error and no session.
        let again = browser.submit(&app.address, &login, &[("username", "mona"), ("password", "wrong password")]).await;
        assert!(matches!(again.status, 200 | 401), "{}: {}", app.backend, again.status);
        assert!(again.input("password").is_some(), "{}: the login form again", app.backend);
        assert!(again.body.contains("role=\"alert\""), "{}: an error message: {}", app.backend, again.body);
        assert!(again.location.is_none());
        assert_protected_page(&again, "login page with an error");
        assert!(is_login_page(&browser.get(&u).await), "no session after a wrong password");
        let unknown = browser.submit(&app.address, &again, &[("username", "nobody"), ("password", PASSWORD)]).await;
        assert!(unknown.input("password").is_some() && unknown.body.contains("role=\"alert\""), "unknown user: same answer");

        // CSRF: a login POST without the token, with a wrong one, or with another browser's.
        let page = browser.get(&u).await;
        let request = page.input("request").expect("request field");
        let other = Browser::new();
        let others_token = other.get(&u).await.input("csrf_token").expect("csrf token");
        let mut attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("no csrf_token", vec![]),
            ("wrong csrf_token", vec![("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]),
            ("another browser's csrf_token", vec![("csrf_token", &others_token)]),
        ];
        for (what, fields) in attempts.iter_mut() {
            fields.extend([("request", request.as_str()), ("username", "mona"), ("password", PASSWORD)]);
            let refused = Browser::page(browser.client.post(app.url("/login")).form(&*fields).send().await.unwrap()).await;
            assert_eq!(refused.status, 403, "{} {what}: {}", app.backend, refused.body);
            assert!(refused.location.is_none() && refused.input("password").is_none(), "{what}");
            assert!(
                refused.headers.get("set-cookie").is_none_or(|c| !c.to_str().unwrap().contains("grantd_session")),
                "{what}: no session"
            );
        }
        assert!(is_login_page(&browser.get(&u).await), "{}: still signed out", app.backend);

        // The consent form checks its token too.
        let consent = browser.submit(&app.address, &page, &[("username", "mona"), ("password", PASSWORD)]).await;
        assert!(is_consent_page(&consent), "{}: {}", app.backend, consent.body);
        assert_protected_page(&consent, "consent page");
        let request = consent.input("request").unwrap();
        let refused = Browser::page(
            browser.client.post(app.url("/consent")).form(&[("request", request.as_str()), ("decision", "approve")]).send().await.unwrap(),
        )
        .await;
        assert_eq!(refused.status, 403, "{}: consent without csrf_token", app.backend);
        let refused = Browser::page(
            browser
                .client
                .post(app.url("/consent"))
                .form(&[("request", request.as_str()), ("decision", "approve"), ("csrf_token", others_token.as_str())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(refused.status, 403, "{}: consent with another browser's csrf_token", app.backend);

        let types = app.event_types().await;
        for t in ["ConsentGranted", "AuthorizationCodeIssued", "AccessTokenIssued"] {
            assert_eq!(count(&types, t), 0, "{}: {t} after refused forms", app.backend);
        }
        // And the genuine form still works.
        let done = browser.submit(&app.address, &consent, &[("decision", "approve")]).await;
        assert!(get(&redirect_of(&done).query, "code").is_some(), "{}", app.backend);
    }
}

#[actix_web::test]
async fn denying_consent_returns_access_denied() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let client = code_client(&app, "Shop <&> Co").await;
        user(&app, "nina").await;
        let pkce = Pkce::new();
        let browser = Browser::new();
        let u = authorize_url(&app, &client.client_id, &client.redirect_uri, &pkce.challenge, &[("scope", "openid email")]);
        let login = browser.get(&u).await;
        let consent = browser.submit(&app.address, &login, &[("username", "nina"), ("password", PASSWORD)]).await;
        assert!(is_consent_page(&consent), "{}: {}", app.backend, consent.body);
        assert!(consent.body.contains("Shop &lt;&amp;&gt; Co"), "the client name, escaped");
        assert!(consent.body.contains(&client.client_id) && consent.body.contains("email"), "client id and scopes shown");

        let denied = browser.submit(&app.address, &consent, &[("decision", "deny")]).await;
        let r = redirect_of(&denied);
        assert_eq!(r.base, client.redirect_uri);
        assert_eq!(get(&r.query, "error"), Some("access_denied"), "{}: {:?}", app.backend, r.query);
        assert_eq!(get(&r.query, "state"), Some(STATE));
        assert_eq!(get(&r.query, "iss"), Some(app.address.as_str()));
        assert!(get(&r.query, "code").is_none());
        let types = app.event_types().await;
        assert_eq!(count(&types, "ConsentGranted") + count(&types, "AuthorizationCodeIssued"), 0, "{}: {types:?}", app.backend);
        // Denying remembers nothing: the next authorization asks again.
        assert!(is_consent_page(&browser.get(&u).await), "{}", app.backend);
    }
}

#[actix_web::test]
async fn consent_is_remembered_and_extended_and_sign_on_is_single() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let a = code_client(&app, "App A").await;
        let b = code_client(&app, "App B").await;
        user(&app, "olga").await;
        let pkce = Pkce::new();
        let url = |c: &TestClient, scope: &str| authorize_url(&app, &c.client_id, &c.redirect_uri, &pkce.challenge, &[("scope", scope)]);

        // First time: login page, consent page, redirect.
        let browser = Browser::new();
        let login = browser.get(&url(&a, "openid profile")).await;
        assert!(is_login_page(&login), "{}", app.backend);
        let consent = browser.submit(&app.address, &login, &[("username", "olga"), ("password", PASSWORD)]).await;
        assert!(is_consent_page(&consent), "{}", app.backend);
        let done = browser.submit(&app.address, &consent, &[("decision", "approve")]).await;
        assert!(get(&redirect_of(&done).query, "code").is_some());

        // Same browser, same scopes (or fewer): straight back with a code.
        for scope in ["openid profile", "profile openid", "openid"] {
            let page = browser.get(&url(&a, scope)).await;
            assert!(get(&redirect_of(&page).query, "code").is_some(), "{} {scope}: no page at all", app.backend);
        }
        // A new browser: the login page only, no consent page.
        let fresh = Browser::new();
        let login = fresh.get(&url(&a, "openid profile")).await;
        assert!(is_login_page(&login));
        let page = fresh.submit(&app.address, &login, &[("username", "olga"), ("password", PASSWORD)]).await;
        assert!(get(&redirect_of(&page).query, "code").is_some(), "{}: consent remembered: {}", app.backend, page.body);

        // A new scope: consent again, recorded as an extension.
        let consent = fresh.get(&url(&a, "openid profile email")).await;
        assert!(is_consent_page(&consent), "{}: a new scope needs consent: {}", app.backend, consent.body);
        let page = fresh.submit(&app.address, &consent, &[("decision", "approve")]).await;
        let (code, verifier) = (get(&redirect_of(&page).query, "code").unwrap().to_string(), pkce.verifier.clone());
        let at = redeem(&app, &a, &a.redirect_uri, &code, &verifier).await;
        assert_eq!(crate::oauth_support::jwt_parts(&at).1["scope"], "email openid profile", "{}", app.backend);
        let types = app.event_types().await;
        assert_eq!(count(&types, "ConsentGranted"), 1, "{}: {types:?}", app.backend);
        assert_eq!(count(&types, "ConsentScopesExtended"), 1, "{}: {types:?}", app.backend);
        let page = fresh.get(&url(&a, "email")).await;
        assert!(get(&redirect_of(&page).query, "code").is_some(), "{}: the extended consent covers email", app.backend);

        // Single sign-on: client B needs no login, only its own consent.
        let consent = browser.get(&url(&b, "openid")).await;
        assert!(is_consent_page(&consent), "{}: SSO goes straight to consent: {}", app.backend, consent.body);
        assert!(consent.input("password").is_none());
        let page = browser.submit(&app.address, &consent, &[("decision", "approve")]).await;
        let code = get(&redirect_of(&page).query, "code").expect("code for B").to_string();
        let at = redeem(&app, &b, &b.redirect_uri, &code, &pkce.verifier).await;
        assert_eq!(crate::oauth_support::jwt_parts(&at).1["client_id"], b.client_id.as_str());
        assert_eq!(count(&app.event_types().await, "ConsentGranted"), 2, "{}: one consent per client", app.backend);
    }
}

#[actix_web::test]
async fn prompt_values_are_honoured() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let client = code_client(&app, "Shop").await;
        user(&app, "pia").await;
        let pkce = Pkce::new();
        let url = |extra: &[(&str, &str)]| authorize_url(&app, &client.client_id, &client.redirect_uri, &pkce.challenge, extra);

        // prompt=none without a session: login_required, no page.
        let browser = Browser::new();
        let r = redirect_of(&browser.get(&url(&[("prompt", "none")])).await);
        assert_eq!(get(&r.query, "error"), Some("login_required"), "{}: {:?}", app.backend, r.query);
        assert_eq!(get(&r.query, "state"), Some(STATE));
        assert_eq!(get(&r.query, "iss"), Some(app.address.as_str()));

        code_for(&app, &browser, &client, "pia", "openid").await;
        // prompt=none with a session and a consent: a code, silently.
        let r = redirect_of(&browser.get(&url(&[("prompt", "none")])).await);
        assert!(get(&r.query, "code").is_some(), "{}: {:?}", app.backend, r.query);
        // prompt=none when consent is missing: consent_required.
        let r = redirect_of(&browser.get(&url(&[("prompt", "none"), ("scope", "openid email")])).await);
        assert_eq!(get(&r.query, "error"), Some("consent_required"), "{}: {:?}", app.backend, r.query);

        // prompt=login with a session: the login page, then the code.
        let login = browser.get(&url(&[("prompt", "login")])).await;
        assert!(is_login_page(&login), "{}: prompt=login shows the login page: {}", app.backend, login.body);
        assert_eq!(login.input("username").as_deref(), Some("pia"), "the signed-in user is offered");
        let page = browser.submit(&app.address, &login, &[("password", PASSWORD)]).await;
        assert!(get(&redirect_of(&page).query, "code").is_some(), "{}: {}", app.backend, page.body);

        // prompt=consent: the consent page again, although consent was given.
        let consent = browser.get(&url(&[("prompt", "consent")])).await;
        assert!(is_consent_page(&consent), "{}: prompt=consent: {}", app.backend, consent.body);
        let page = browser.submit(&app.address, &consent, &[("decision", "approve")]).await;
        assert!(get(&redirect_of(&page).query, "code").is_some(), "{}", app.backend);
        assert_eq!(count(&app.event_types().await, "ConsentScopesExtended"), 0, "re-approving the same scopes extends nothing");
    }
}

#[actix_web::test]
async fn form_post_and_fragment_response_modes() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let client = code_client(&app, "Shop").await;
        user(&app, "rita").await;
        let browser = Browser::new();
        code_for(&app, &browser, &client, "rita", "openid").await;

        // form_post: an HTML form POSTing code, state and iss to the redirect URI.
        let pkce = Pkce::new();
        let u = authorize_url(&app, &client.client_id, &client.redirect_uri, &pkce.challenge, &[("response_mode", "form_post")]);
        let page = browser.get(&u).await;
        assert_eq!(page.status, 200, "{}: {}", app.backend, page.body);
        assert!(page.location.is_none());
        assert!(page.body.contains(&format!("<form method=\"post\" action=\"{}\"", client.redirect_uri)), "{}", page.body);
        assert_eq!(page.input("state").as_deref(), Some(STATE), "{}", page.body);
        assert_eq!(page.input("iss").as_deref(), Some(app.address.as_str()));
        let code = page.input("code").expect("code field");
        assert_protected_page(&page, "form_post page");
        redeem(&app, &client, &client.redirect_uri, &code, &pkce.verifier).await;

        // form_post errors travel the same way.
        let page = browser
            .get(&authorize_url(
                &app,
                &client.client_id,
                &client.redirect_uri,
                &pkce.challenge,
                &[("response_mode", "form_post"), ("scope", "nope")],
            ))
            .await;
        assert_eq!(page.status, 200);
        assert_eq!(page.input("error").as_deref(), Some("invalid_scope"), "{}", page.body);
        assert_eq!(page.input("state").as_deref(), Some(STATE));
        assert!(page.input("code").is_none());

        // fragment: everything after '#', nothing in the query.
        let pkce = Pkce::new();
        let u = authorize_url(&app, &client.client_id, &client.redirect_uri, &pkce.challenge, &[("response_mode", "fragment")]);
        let r = redirect_of(&browser.get(&u).await);
        assert!(r.query.is_empty(), "{}: {:?}", app.backend, r.query);
        assert_eq!(get(&r.fragment, "state"), Some(STATE));
        assert_eq!(get(&r.fragment, "iss"), Some(app.address.as_str()));
        let code = get(&r.fragment, "code").expect("code in the fragment").to_string();
        redeem(&app, &client, &client.redirect_uri, &code, &pkce.verifier).await;
    }
}

#[actix_web::test]
async fn implicit_grant_returns_tokens_in_the_fragment_only() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let client = app.register_client("SPA", &[GrantType::Implicit], &["openid", "profile"], false, false).await;
        let user_id = user(&app, "sara").await;
        let browser = Browser::new();

        // response_type=token
        let mut u = url::Url::parse(&app.url("/authorize")).unwrap();
        u.query_pairs_mut().extend_pairs([
            ("response_type", "token"),
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("scope", "openid profile"),
            ("state", STATE),
        ]);
        let login = browser.get(u.as_str()).await;
        assert!(is_login_page(&login), "{}: {}", app.backend, login.body);
        let consent = browser.submit(&app.address, &login, &[("username", "sara"), ("password", PASSWORD)]).await;
        let page = browser.submit(&app.address, &consent, &[("decision", "approve")]).await;
        let location = page.location.clone().unwrap_or_default();
        assert!(!location.split('#').next().unwrap().contains("access_token"), "{}: never in the query: {location}", app.backend);
        let r = redirect_of(&page);
        assert!(r.query.is_empty(), "{:?}", r.query);
        let at = get(&r.fragment, "access_token").unwrap_or_else(|| panic!("{}: {:?}", app.backend, r.fragment)).to_string();
        assert_eq!(get(&r.fragment, "token_type"), Some("Bearer"));
        assert_eq!(get(&r.fragment, "state"), Some(STATE));
        assert_eq!(get(&r.fragment, "iss"), Some(app.address.as_str()));
        assert!(get(&r.fragment, "code").is_none() && get(&r.fragment, "refresh_token").is_none());
        let me: serde_json::Value =
            reqwest::Client::new().get(app.url("/userinfo")).bearer_auth(&at).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["sub"], user_id.as_str(), "{}: the implicit access token works", app.backend);

        // response_type=id_token token through the openidconnect crate.
        let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(app.address.clone()).unwrap(), &http_client()).await.unwrap();
        let oidc = CoreClient::from_provider_metadata(metadata, ClientId::new(client.client_id.clone()), None)
            .set_redirect_uri(openidconnect::RedirectUrl::new(client.redirect_uri.clone()).unwrap());
        let (url, csrf, nonce) = oidc
            .authorize_url(CoreAuthenticationFlow::Implicit(true), CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("profile".into()))
            .url();
        let r = redirect_of(&browser.get(url.as_str()).await);
        assert!(r.query.is_empty(), "{}: {:?}", app.backend, r.query);
        assert_eq!(get(&r.fragment, "state"), Some(csrf.secret().as_str()));
        assert_eq!(get(&r.fragment, "iss"), Some(app.address.as_str()));
        let access = get(&r.fragment, "access_token").expect("access_token");
        let id_token = CoreIdToken::from_str(get(&r.fragment, "id_token").expect("id_token")).expect("an ID token");
        let verifier = oidc.id_token_verifier();
        let claims = id_token.claims(&verifier, &nonce).unwrap_or_else(|e| panic!("{}: ID token: {e:?}", app.backend));
        assert_eq!(claims.subject().as_str(), user_id);
        assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("sara"));
        let expected_hash = openidconnect::AccessTokenHash::from_token(
            &openidconnect::AccessToken::new(access.to_string()),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(claims.access_token_hash(), Some(&expected_hash), "at_hash binds the access token");
        assert!(id_token.claims(&verifier, &Nonce::new("another nonce".into())).is_err(), "the nonce is checked");

        // A nonce is required for ID tokens; tokens never go in the query.
        for (what, overrides) in [
            ("no nonce", vec![("response_type", "id_token token")]),
            ("response_mode=query", vec![("response_type", "token"), ("response_mode", "query")]),
        ] {
            let mut u = url::Url::parse(&app.url("/authorize")).unwrap();
            u.query_pairs_mut().extend_pairs([
                ("client_id", client.client_id.as_str()),
                ("redirect_uri", client.redirect_uri.as_str()),
                ("scope", "openid"),
                ("state", STATE),
            ]);
            u.query_pairs_mut().extend_pairs(overrides);
            let r = redirect_of(&browser.get(u.as_str()).await);
            assert_eq!(get(&r.fragment, "error"), Some("invalid_request"), "{} {what}: {:?} {:?}", app.backend, r.fragment, r.query);
            assert!(get(&r.fragment, "access_token").is_none() && r.query.is_empty(), "{what}");
        }
        let types = app.event_types().await;
        assert_eq!(count(&types, "AuthorizationCodeIssued"), 0, "{}: implicit issues no code", app.backend);
        assert_eq!(count(&types, "AccessTokenIssued"), 2, "{}: {types:?}", app.backend);
    }
}
