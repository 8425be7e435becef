//! SigningKey aggregate (`key-{kid}`): a JWS key whose private half is sealed
//! under the master key before it ever reaches an event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::SigningAlg;
use super::{Aggregate, domain_events};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyGenerated {
    pub kid: String,
    pub alg: SigningAlg,
    /// The public JWK, ready for `/jwks`.
    pub public_jwk: serde_json::Value,
    /// Base64url of nonce ‖ XChaCha20-Poly1305 ciphertext of the private key.
    pub sealed_private_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyActivated {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyRetired {
    /// Until when tokens it signed may still be verified with it.
    pub verify_until: DateTime<Utc>,
}

domain_events!(SigningKeyEvent {
    SigningKeyGenerated = 1,
    SigningKeyActivated = 1,
    SigningKeyRetired = 1,
});

#[derive(Debug, Clone)]
pub enum SigningKeyCommand {
    Generate { kid: String, alg: SigningAlg, public_jwk: serde_json::Value, sealed_private_key: String },
    Activate,
    Retire { verify_until: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    #[error("signing key already generated")]
    AlreadyGenerated,
    #[error("signing key not found")]
    NotFound,
    #[error("signing key is already active")]
    AlreadyActive,
    #[error("signing key is retired")]
    Retired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Generated,
    Active,
    Retired,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SigningKey {
    pub key: Option<KeyState>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub kid: String,
    pub alg: SigningAlg,
    pub public_jwk: serde_json::Value,
    pub sealed_private_key: String,
    pub status: KeyStatus,
    pub verify_until: Option<DateTime<Utc>>,
}

impl Aggregate for SigningKey {
    type Command = SigningKeyCommand;
    type Event = SigningKeyEvent;
    type Error = SigningKeyError;
    const STREAM_PREFIX: &'static str = "key";

    fn decide(&self, command: &SigningKeyCommand) -> Result<Vec<SigningKeyEvent>, SigningKeyError> {
        match (command, &self.key) {
            (SigningKeyCommand::Generate { .. }, Some(_)) => Err(SigningKeyError::AlreadyGenerated),
            (SigningKeyCommand::Generate { kid, alg, public_jwk, sealed_private_key }, None) => Ok(vec![
                SigningKeyGenerated {
                    kid: kid.clone(),
                    alg: *alg,
                    public_jwk: public_jwk.clone(),
                    sealed_private_key: sealed_private_key.clone(),
                }
                .into(),
            ]),
            (_, None) => Err(SigningKeyError::NotFound),
            (_, Some(k)) if k.status == KeyStatus::Retired => Err(SigningKeyError::Retired),
            (SigningKeyCommand::Activate, Some(k)) if k.status == KeyStatus::Active => Err(SigningKeyError::AlreadyActive),
            (SigningKeyCommand::Activate, Some(_)) => Ok(vec![SigningKeyActivated {}.into()]),
            (SigningKeyCommand::Retire { verify_until }, Some(_)) => Ok(vec![SigningKeyRetired { verify_until: *verify_until }.into()]),
        }
    }

    fn apply(&mut self, event: &SigningKeyEvent) {
        match event {
            SigningKeyEvent::SigningKeyGenerated(e) => {
                self.key = Some(KeyState {
                    kid: e.kid.clone(),
                    alg: e.alg,
                    public_jwk: e.public_jwk.clone(),
                    sealed_private_key: e.sealed_private_key.clone(),
                    status: KeyStatus::Generated,
                    verify_until: None,
                })
            }
            SigningKeyEvent::SigningKeyActivated(_) => {
                if let Some(k) = &mut self.key {
                    k.status = KeyStatus::Active;
                }
            }
            SigningKeyEvent::SigningKeyRetired(e) => {
                if let Some(k) = &mut self.key {
                    k.status = KeyStatus::Retired;
                    k.verify_until = Some(e.verify_until);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn generate() -> SigningKeyCommand {
        SigningKeyCommand::Generate {
            kid: "k1".into(),
            alg: SigningAlg::EdDSA,
            public_jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "abc"}),
            sealed_private_key: "sealed".into(),
        }
    }

    fn given(events: &[SigningKeyEvent]) -> SigningKey {
        let mut k = SigningKey::default();
        events.iter().for_each(|e| k.apply(e));
        k
    }

    #[test]
    fn lifecycle_generated_active_retired() {
        let generated = SigningKey::default().decide(&generate()).unwrap();
        assert!(matches!(&generated[0], SigningKeyEvent::SigningKeyGenerated(g) if g.kid == "k1"));
        let k = given(&generated);
        assert_eq!(k.decide(&generate()), Err(SigningKeyError::AlreadyGenerated));
        let activated = k.decide(&SigningKeyCommand::Activate).unwrap();
        let k = given(&[generated.clone(), activated.clone()].concat());
        assert_eq!(k.key.as_ref().unwrap().status, KeyStatus::Active);
        assert_eq!(k.decide(&SigningKeyCommand::Activate), Err(SigningKeyError::AlreadyActive));
        let until = Utc.timestamp_opt(1_900_000_000, 0).unwrap();
        let retired = k.decide(&SigningKeyCommand::Retire { verify_until: until }).unwrap();
        let k = given(&[generated, activated, retired].concat());
        assert_eq!(k.key.as_ref().unwrap().verify_until, Some(until));
        assert_eq!(k.decide(&SigningKeyCommand::Activate), Err(SigningKeyError::Retired));
    }

    #[test]
    fn unknown_key_is_not_found() {
        assert_eq!(SigningKey::default().decide(&SigningKeyCommand::Activate), Err(SigningKeyError::NotFound));
    }
}
