//! OpenID Connect flows driven by the `openidconnect` crate: discovery, the
//! authorization code flow with PKCE through the login and consent pages,
//! ID token verification (EdDSA and RS256), userinfo.

use grantd::domain::client::{GrantType, SigningAlg};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreUserInfoClaims};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse,
};

use crate::helpers::backends;
use crate::server::{Browser, TestApp, TestClient};

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client")
}

/// Follows a browser through /authorize, the login page and, when shown,
/// the consent page; returns the final redirect's query parameters.
pub async fn sign_in(app: &TestApp, browser: &Browser, authorize_url: &str, username: &str, password: &str) -> Vec<(String, String)> {
    let mut page = browser.get(authorize_url).await;
    if page.input("password").is_some() {
        assert_eq!(page.status, 200, "login page: {}", page.body);
        page = browser.submit(&app.address, &page, &[("username", username), ("password", password)]).await;
    }
    if page.body.contains("name=\"decision\"") {
        page = browser.submit(&app.address, &page, &[("decision", "approve")]).await;
    }
    assert_eq!(page.status, 303, "expected a redirect to the client: {}", page.body);
    let location = url::Url::parse(page.location.as_deref().expect("Location")).expect("absolute redirect");
    location.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[actix_web::test]
async fn authorization_code_flow_with_pkce_through_login_and_consent() {
    for tdb in backends().await {
        let app = TestApp::spawn(tdb).await;
        let http = http_client();
        for alg in [SigningAlg::EdDSA, SigningAlg::RS256] {
            let client: TestClient = app
                .register_client_with(
                    &format!("Shop {alg:?}"),
                    &[GrantType::AuthorizationCode, GrantType::RefreshToken],
                    &["openid", "profile", "email"],
                    true,
                    false,
                    alg,
                    "https://app.example/callback",
                )
                .await;
            let username = format!("alice{alg:?}").to_lowercase();
            let user_id = app.register_user(&username, "correct horse battery").await;

            let metadata =
                CoreProviderMetadata::discover_async(IssuerUrl::new(app.address.clone()).unwrap(), &http).await.expect("discovery");
            let oidc = CoreClient::from_provider_metadata(
                metadata,
                ClientId::new(client.client_id.clone()),
                client.client_secret.clone().map(ClientSecret::new),
            )
            .set_redirect_uri(RedirectUrl::new(client.redirect_uri.clone()).unwrap());
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            let (url, csrf, nonce) = oidc
                .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
                .add_scope(Scope::new("profile".into()))
                .add_scope(Scope::new("email".into()))
                .set_pkce_challenge(challenge)
                .url();

            let browser = Browser::new();
            let answer = sign_in(&app, &browser, url.as_str(), &username, "correct horse battery").await;
            assert_eq!(param(&answer, "state"), Some(csrf.secret().as_str()), "{}: state echoed", app.backend);
            assert_eq!(param(&answer, "iss"), Some(app.address.as_str()), "RFC 9207 iss");
            let code = param(&answer, "code").expect("code").to_string();

            let tokens = oidc
                .exchange_code(AuthorizationCode::new(code))
                .expect("token endpoint known")
                .set_pkce_verifier(verifier)
                .request_async(&http)
                .await
                .unwrap_or_else(|e| panic!("{}: code exchange failed: {e:?}", app.backend));
            assert!(tokens.refresh_token().is_some(), "refresh token for a client with the refresh_token grant");
            let expected_alg = match alg {
                SigningAlg::EdDSA => CoreJwsSigningAlgorithm::EdDsa,
                SigningAlg::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            };
            let verifier = oidc.id_token_verifier().set_allowed_algs(vec![expected_alg]);
            let id_token = tokens.id_token().expect("id_token for scope openid");
            let claims = id_token.claims(&verifier, &nonce).unwrap_or_else(|e| panic!("{} {alg:?}: id token: {e:?}", app.backend));
            assert_eq!(claims.subject().as_str(), user_id);
            assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some(username.as_str()));
            let at_hash = claims.access_token_hash().expect("at_hash");
            let computed = openidconnect::AccessTokenHash::from_token(
                tokens.access_token(),
                id_token.signing_alg().unwrap(),
                id_token.signing_key(&verifier).unwrap(),
            )
            .expect("hash");
            assert_eq!(at_hash, &computed);

            let userinfo: CoreUserInfoClaims = oidc
                .user_info(tokens.access_token().clone(), None)
                .expect("userinfo endpoint known")
                .request_async(&http)
                .await
                .unwrap_or_else(|e| panic!("{}: userinfo: {e:?}", app.backend));
            assert_eq!(userinfo.subject().as_str(), user_id);
            assert_eq!(userinfo.email().map(|e| e.as_str()), Some(format!("{username}@example.com").as_str()));
        }
        let types = app.event_types().await;
        for t in ["ConsentGranted", "AuthorizationCodeIssued", "AuthorizationCodeRedeemed", "AccessTokenIssued", "RefreshTokenIssued"] {
            assert!(types.iter().any(|x| x == t), "{}: {t} recorded", app.backend);
        }
    }
}
