//! Turns recorded grant events into the tokens a client receives: the
//! response is built from the events, never beside them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::grant::AccessTokenIssued;
use crate::jose::JwsSigner;
use crate::keys::sha256_hex;
use crate::projections::live::UserEntry;

/// Token lifetimes (configurable, short by default).
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub access: Duration,
    pub code: Duration,
    pub refresh: Duration,
    pub id_token: Duration,
    pub session: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            access: Duration::minutes(10),
            code: Duration::seconds(60),
            refresh: Duration::days(14),
            id_token: Duration::minutes(10),
            session: Duration::hours(12),
        }
    }
}

/// RFC 9068 access token claims.
#[derive(Debug, Serialize)]
pub struct AccessClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub jti: &'a str,
    pub client_id: &'a str,
    pub scope: String,
    pub grant_id: &'a str,
}

/// Signs the access token an `AccessTokenIssued` event describes.
pub fn access_token(signer: &JwsSigner, issuer: &str, grant_id: &str, e: &AccessTokenIssued) -> String {
    let claims = AccessClaims {
        iss: issuer,
        sub: &e.subject,
        aud: issuer,
        exp: e.expires_at.timestamp(),
        iat: e.issued_at.timestamp(),
        jti: &e.jti,
        client_id: &e.client_id,
        scope: e.scopes.join(" "),
        grant_id,
    };
    signer.sign_claims("at+jwt", &claims)
}

/// What an ID token says beyond the subject.
pub struct IdTokenInput<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub user: &'a UserEntry,
    pub scopes: &'a [String],
    pub nonce: Option<&'a str>,
    pub auth_time: DateTime<Utc>,
    pub access_token: Option<&'a str>,
    pub now: DateTime<Utc>,
    pub lifetime: Duration,
}

/// An OpenID Connect ID token (Core §2), with claims by scope.
pub fn id_token(signer: &JwsSigner, input: &IdTokenInput<'_>) -> String {
    let mut claims = json!({
        "iss": input.issuer,
        "sub": input.user.id,
        "aud": input.client_id,
        "azp": input.client_id,
        "exp": (input.now + input.lifetime).timestamp(),
        "iat": input.now.timestamp(),
        "auth_time": input.auth_time.timestamp(),
    });
    if let Some(nonce) = input.nonce {
        claims["nonce"] = json!(nonce);
    }
    if let Some(at) = input.access_token {
        claims["at_hash"] = json!(crate::jose::at_hash(signer.alg(), at));
    }
    if let Value::Object(map) = &mut claims {
        map.extend(user_claims(input.user, input.scopes));
    }
    signer.sign("JWT", &claims)
}

/// The user's claims that `scopes` release (OIDC Core §5.4).
pub fn user_claims(user: &UserEntry, scopes: &[String]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), json!(user.id));
    if scopes.iter().any(|s| s == "profile") {
        out.insert("preferred_username".into(), json!(user.username));
        if let Some(name) = &user.name {
            out.insert("name".into(), json!(name));
        }
    }
    if let Some(email) = user.email.as_ref().filter(|_| scopes.iter().any(|s| s == "email")) {
        out.insert("email".into(), json!(email));
        // grantd does not verify addresses.
        out.insert("email_verified".into(), json!(false));
    }
    out
}

/// An opaque credential (authorization code or refresh token) that names
/// its grant: base64url(grant id ‖ 256 random bits). The grant id is not
/// secret; the random part is what makes it unguessable (R18), and only the
/// SHA-256 of the whole string is ever stored.
pub fn grant_credential(grant_id: Uuid) -> String {
    let mut bytes = [0u8; 48];
    bytes[..16].copy_from_slice(grant_id.as_bytes());
    bytes[16..].copy_from_slice(&rand::random::<[u8; 32]>());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The grant a credential names, if it has the shape of one.
pub fn credential_grant(credential: &str) -> Option<Uuid> {
    if credential.len() != 64 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(credential).ok()?;
    let id: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    Some(Uuid::from_bytes(id))
}

/// The stored form of a credential.
pub fn credential_hash(credential: &str) -> String {
    sha256_hex(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_name_their_grant_and_differ_every_time() {
        let grant = Uuid::now_v7();
        let a = grant_credential(grant);
        let b = grant_credential(grant);
        assert_ne!(a, b);
        assert_eq!(credential_grant(&a), Some(grant));
        assert_eq!(credential_grant("short"), None);
        assert_eq!(credential_grant(&"!".repeat(64)), None);
    }

    #[test]
    fn claims_follow_the_scopes() {
        let user = UserEntry {
            id: "u1".into(),
            username: "alice".into(),
            email: Some("a@example.com".into()),
            name: Some("Alice".into()),
            password_hash: "h".into(),
            disabled: false,
        };
        let only_openid = user_claims(&user, &["openid".into()]);
        assert_eq!(only_openid.len(), 1);
        let all = user_claims(&user, &["openid".into(), "profile".into(), "email".into()]);
        assert_eq!(all["preferred_username"], "alice");
        assert_eq!(all["email"], "a@example.com");
        assert_eq!(all["email_verified"], false);
    }
}
