//! Browser state without server storage, so any node can serve any step:
//! the login session and the pending authorization request travel as
//! HMAC-signed values, and CSRF tokens are bound to a random cookie
//! (double submit, the token being an HMAC of the cookie).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const SESSION_COOKIE: &str = "grantd_session";
pub const CSRF_COOKIE: &str = "grantd_csrf";

/// Signs and checks values handed to the browser.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    /// What the value is for: a value signed for one purpose is refused for another.
    purpose: String,
    expires_at: i64,
    value: T,
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        Sealer { key }
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable_hmac());
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// `base64url(json).base64url(hmac)`, valid until `expires_at`.
    pub fn sign<T: Serialize>(&self, purpose: &str, value: &T, expires_at: DateTime<Utc>) -> String {
        let envelope = Envelope { purpose: purpose.to_string(), expires_at: expires_at.timestamp(), value };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&envelope).unwrap_or_default());
        let tag = URL_SAFE_NO_PAD.encode(self.mac(body.as_bytes()));
        format!("{body}.{tag}")
    }

    /// The value, if the signature holds, the purpose matches and it has not expired.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, signed: &str, now: DateTime<Utc>) -> Option<T> {
        if signed.len() > 16 * 1024 {
            return None;
        }
        let (body, tag) = signed.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).ok()?;
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).ok()?;
        let envelope: Envelope<T> = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (envelope.purpose == purpose && envelope.expires_at > now.timestamp()).then_some(envelope.value)
    }

    /// The CSRF token for a CSRF cookie value.
    pub fn csrf_token(&self, cookie: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(format!("csrf:{cookie}").as_bytes()))
    }

    /// Whether `token` is the CSRF token of `cookie` (constant time).
    pub fn csrf_matches(&self, cookie: Option<&str>, token: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        match (cookie, token) {
            (Some(c), Some(t)) if !c.is_empty() => self.csrf_token(c).as_bytes().ct_eq(t.as_bytes()).into(),
            _ => false,
        }
    }
}

fn unreachable_hmac() -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this is never reached.
    <Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 32]).expect("HMAC takes any key length")
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: String,
    pub auth_time: i64,
    /// How the user authenticated (`pwd`).
    pub amr: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn signed_values_round_trip_and_resist_tampering() {
        let sealer = Sealer::new([3; 32]);
        let now = Utc::now();
        let signed = sealer.sign("session", &Session { user_id: "u".into(), auth_time: 1, amr: "pwd".into() }, now + Duration::minutes(5));
        let opened: Session = sealer.open("session", &signed, now).expect("opens");
        assert_eq!(opened.user_id, "u");
        assert!(sealer.open::<Session>("request", &signed, now).is_none(), "purpose is bound");
        assert!(sealer.open::<Session>("session", &signed, now + Duration::minutes(6)).is_none(), "expires");
        let mut tampered = signed.clone();
        tampered.replace_range(0..1, if signed.starts_with('e') { "f" } else { "e" });
        assert!(sealer.open::<Session>("session", &tampered, now).is_none());
        assert!(Sealer::new([4; 32]).open::<Session>("session", &signed, now).is_none());
    }

    #[test]
    fn csrf_tokens_bind_to_their_cookie() {
        let sealer = Sealer::new([3; 32]);
        let token = sealer.csrf_token("cookie-a");
        assert!(sealer.csrf_matches(Some("cookie-a"), Some(&token)));
        assert!(!sealer.csrf_matches(Some("cookie-b"), Some(&token)));
        assert!(!sealer.csrf_matches(None, Some(&token)));
        assert!(!sealer.csrf_matches(Some("cookie-a"), None));
        assert!(!sealer.csrf_matches(Some(""), Some(&sealer.csrf_token(""))));
    }
}
