//! The master key and signing-key material. The private half of every
//! signing key is sealed with XChaCha20-Poly1305 under the master key
//! before it enters an event; the key id is the associated data, so a
//! sealed blob cannot be moved to another key's stream.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key: {0}")]
    Master(String),
    #[error("cannot unseal signing key {0}: wrong master key or altered blob")]
    Unseal(String),
    #[error("signing key {0} is refused by the signer: {1}")]
    Refused(String, String),
}

/// 256-bit key that seals signing keys.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// The key itself (`GRANTD_MASTER_KEY`), hex or base64.
    Value(String),
    /// A file holding it (`--master-key-file`).
    File(PathBuf),
    /// A file created on first use beside the SQLite database.
    Generated(PathBuf),
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// Parses 32 bytes written as hex (64 characters) or base64.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| STANDARD.decode(text).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
            .ok_or_else(|| KeyError::Master("not hex or base64".into()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Master("must be exactly 32 bytes".into()))?;
        Ok(MasterKey(bytes))
    }

    /// Loads the key; a `Generated` source is created (mode 0600) when absent.
    pub fn load(source: &MasterKeySource) -> Result<Self, KeyError> {
        match source {
            MasterKeySource::Value(v) => Self::parse(v),
            MasterKeySource::File(path) => Self::read_file(path),
            MasterKeySource::Generated(path) if path.exists() => Self::read_file(path),
            MasterKeySource::Generated(path) => {
                let key = MasterKey(rand::random());
                write_private_file(path, &hex::encode(key.0))
                    .map_err(|e| KeyError::Master(format!("cannot create {}: {e}", path.display())))?;
                tracing::warn!(
                    path = %path.display(),
                    "generated a master key file beside the database; keep it safe and back it up, or pass --master-key-file / GRANTD_MASTER_KEY"
                );
                Ok(key)
            }
        }
    }

    fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Master(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// A key for another purpose, derived so that it reveals nothing of this one.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"grantd master key derivation\0");
        h.update(label.as_bytes());
        h.update([0]);
        h.update(self.0);
        h.finalize().into()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }

    /// Seals `secret` for key `kid`: base64url(nonce ‖ ciphertext).
    pub fn seal(&self, kid: &str, secret: &[u8]) -> String {
        let nonce: [u8; 24] = rand::random();
        let sealed = self
            .cipher()
            .encrypt(&nonce.into(), Payload { msg: secret, aad: kid.as_bytes() })
            // Encryption fails only for messages beyond 256 GiB.
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn unseal(&self, kid: &str, sealed: &str) -> Result<Vec<u8>, KeyError> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| KeyError::Unseal(kid.into()))?;
        if bytes.len() < 24 {
            return Err(KeyError::Unseal(kid.into()));
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| KeyError::Unseal(kid.into()))?;
        self.cipher().decrypt(&nonce.into(), Payload { msg: ciphertext, aad: kid.as_bytes() }).map_err(|_| KeyError::Unseal(kid.into()))
    }
}

/// Writes a file readable by its owner only.
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// A freshly generated Ed25519 key: its id, public JWK and sealed private half.
pub struct GeneratedKey {
    pub kid: String,
    pub public_jwk: serde_json::Value,
    pub sealed_private_key: String,
}

pub fn generate_ed25519(master: &MasterKey) -> GeneratedKey {
    let secret: [u8; 32] = rand::random();
    let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
    let public = signing.verifying_key().to_bytes();
    let kid = format!("ed25519-{}", &URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>()));
    let public_jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(public),
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
    });
    let sealed_private_key = master.seal(&kid, &secret);
    GeneratedKey { kid, public_jwk, sealed_private_key }
}

/// Opens a sealed Ed25519 key.
pub fn open_ed25519(master: &MasterKey, kid: &str, sealed: &str) -> Result<ed25519_dalek::SigningKey, KeyError> {
    let secret = master.unseal(kid, sealed)?;
    let secret: [u8; 32] = secret.try_into().map_err(|_| KeyError::Unseal(kid.into()))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&secret))
}

/// 256 bits from the OS generator, base64url: for client secrets, codes and
/// refresh tokens.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Hex SHA-256, the only form in which secrets and tokens are stored.
pub fn sha256_hex(value: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_the_kid() {
        let master = MasterKey::from_bytes([7; 32]);
        let key = generate_ed25519(&master);
        assert!(key.public_jwk.get("d").is_none(), "public JWK must not hold the private key");
        let opened = open_ed25519(&master, &key.kid, &key.sealed_private_key).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(opened.verifying_key().to_bytes()), key.public_jwk["x"].as_str().unwrap());
        assert!(open_ed25519(&master, "other-kid", &key.sealed_private_key).is_err());
        assert!(open_ed25519(&MasterKey::from_bytes([8; 32]), &key.kid, &key.sealed_private_key).is_err());
    }

    #[test]
    fn master_key_parses_hex_and_base64_of_32_bytes() {
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::parse(&STANDARD.encode([1u8; 32])).is_ok());
        assert!(MasterKey::parse("short").is_err());
        assert!(MasterKey::parse(&"ab".repeat(31)).is_err());
    }

    #[test]
    fn generated_master_key_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = MasterKey::load(&MasterKeySource::Generated(path.clone())).unwrap();
        let again = MasterKey::load(&MasterKeySource::Generated(path.clone())).unwrap();
        assert_eq!(first.0, again.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}

/// Generates an RSA 2048 key for RS256 ID tokens (for clients that cannot
/// verify EdDSA). The private key is sealed as PKCS#8 DER.
pub fn generate_rsa(master: &MasterKey) -> GeneratedKey {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    // `SysRng` is the OS generator; rand 0.10 and rsa 0.10 share rand_core 0.10.
    // Generation fails only when the OS generator does, which the rest of
    // the server (`rand::random`) treats as fatal too.
    let key = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 2048).expect("RSA key generation (OS random generator failed)");
    let kid = format!("rsa-{}", &URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>()));
    // `n_bytes`/`e_bytes` are big-endian without leading zero bytes (RFC 7518 §6.3.1).
    let public_jwk = json!({
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(key.n_bytes()),
        "e": URL_SAFE_NO_PAD.encode(key.e_bytes()),
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
    });
    let der = key.to_pkcs8_der().expect("PKCS#8 encoding of a generated RSA key");
    let sealed_private_key = master.seal(&kid, der.as_bytes());
    GeneratedKey { kid, public_jwk, sealed_private_key }
}

/// Opens a sealed RSA key (PKCS#8 DER under the master key).
pub fn open_rsa(master: &MasterKey, kid: &str, sealed: &str) -> Result<rsa::PrivateKey, KeyError> {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::pkcs8::der::zeroize::Zeroizing;
    let der = Zeroizing::new(master.unseal(kid, sealed)?);
    rsa::PrivateKey::from_pkcs8_der(&der).map_err(|_| KeyError::Unseal(kid.into()))
}

#[cfg(test)]
mod rsa_tests {
    use super::*;
    use rsa::traits::PublicKeyParts;

    #[test]
    fn rsa_seal_round_trips_and_binds_the_kid() {
        let master = MasterKey::from_bytes([7; 32]);
        let started = std::time::Instant::now();
        let key = generate_rsa(&master);
        eprintln!("RSA 2048 keygen took {:?}", started.elapsed());
        assert!(key.kid.starts_with("rsa-"));
        let jwk = &key.public_jwk;
        assert_eq!((jwk["kty"].as_str(), jwk["alg"].as_str(), jwk["use"].as_str()), (Some("RSA"), Some("RS256"), Some("sig")));
        assert_eq!(jwk["kid"].as_str(), Some(key.kid.as_str()));
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(jwk.get(private).is_none(), "public JWK must not hold {private}");
        }
        assert_eq!(jwk["e"].as_str(), Some("AQAB"));
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256, "2048-bit modulus without a leading zero byte");
        assert_ne!(n[0], 0);

        let opened = open_rsa(&master, &key.kid, &key.sealed_private_key).unwrap();
        assert_eq!(&*opened.n_bytes(), &n[..]);
        assert!(open_rsa(&master, "other-kid", &key.sealed_private_key).is_err());
        assert!(open_rsa(&MasterKey::from_bytes([8; 32]), &key.kid, &key.sealed_private_key).is_err());
        // An Ed25519 blob under the right kid is not an RSA key.
        let sealed_ed = master.seal(&key.kid, &[1; 32]);
        assert!(open_rsa(&master, &key.kid, &sealed_ed).is_err());
    }
}
