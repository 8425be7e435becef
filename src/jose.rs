//! A small, strict compact JWS (RFC 7515) / JWT (RFC 7519) implementation:
//! signing with our own Ed25519 or RSA keys, verifying our own EdDSA access
//! tokens (RFC 9068), the public JWK Set and OIDC `at_hash`.
//!
//! Verification is deliberately narrow: only EdDSA, only keys we know by
//! `kid`, no `crit`, strict unpadded base64url. It never looks at `exp`,
//! `iat` or `nbf`: the caller checks times with its own clock.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

pub use crate::domain::client::SigningAlg;

/// Unpadded base64url that also rejects padding and non-zero trailing bits,
/// so every value has exactly one accepted encoding.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Longest token [`JwsVerifier::verify`] looks at, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Length of an Ed25519 signature in unpadded base64url.
const ED25519_SIG_B64_LEN: usize = 86;

/// JWK members that hold private or symmetric key material (RFC 7518 §6).
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsupported or disallowed JWS algorithm")]
    UnsupportedAlg,
    #[error("wrong token type")]
    WrongType,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("critical header parameters are not supported")]
    CriticalHeader,
    #[error("bad signature")]
    BadSignature,
    #[error("claims are not a JSON object")]
    ClaimsNotObject,
}

// --- signing ---------------------------------------------------------------

#[allow(clippy::large_enum_variant)] // one per active key, never moved on the hot path
enum SignerKey {
    /// Signed by aws-lc-rs: 7 µs per access token where ed25519-dalek took
    /// 15 (the largest share of the token endpoint's CPU). Ed25519 is
    /// deterministic (RFC 8032 §5.1.6): the signature is the one dalek makes.
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
    /// PKCS#1 v1.5 with SHA-256, and the modulus size in bytes.
    Rsa(rsa::pkcs1v15::SigningKey<Sha256>, usize),
}

/// One of our signing keys with its `kid`.
pub struct JwsSigner {
    kid: String,
    key: SignerKey,
}

impl std::fmt::Debug for JwsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwsSigner").field("kid", &self.kid).field("alg", &self.alg()).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: SigningAlg,
    typ: &'a str,
    kid: &'a str,
}

impl JwsSigner {
    /// An EdDSA signer. aws-lc-rs checks that the public key belongs to
    /// the seed; it refuses nothing else.
    pub fn ed25519(kid: impl Into<String>, key: ed25519_dalek::SigningKey) -> Result<Self, aws_lc_rs::error::KeyRejected> {
        let seed = rsa::pkcs8::der::zeroize::Zeroizing::new(key.to_bytes());
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_and_public_key(&seed[..], key.verifying_key().as_bytes())?;
        Ok(JwsSigner { kid: kid.into(), key: SignerKey::Ed25519(pair) })
    }

    /// An RS256 signer. The key should be at least 2048 bits (RFC 7518 §3.3);
    /// [`crate::keys::generate_rsa`] makes 2048-bit keys.
    pub fn rsa(kid: impl Into<String>, key: rsa::PrivateKey) -> Self {
        let size = rsa::traits::PublicKeyParts::size(&key);
        JwsSigner { kid: kid.into(), key: SignerKey::Rsa(rsa::pkcs1v15::SigningKey::<Sha256>::new(key), size) }
    }

    pub fn alg(&self) -> SigningAlg {
        match self.key {
            SignerKey::Ed25519(_) => SigningAlg::EdDSA,
            SignerKey::Rsa(..) => SigningAlg::RS256,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Compact JWS of `claims` with header `{"alg","typ","kid"}`; `typ` is
    /// e.g. `at+jwt` for access tokens (RFC 9068) or `JWT` for ID tokens.
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        debug_assert!(claims.is_object(), "JWT claims must be a JSON object");
        self.sign_claims(typ, claims)
    }

    /// Like [`JwsSigner::sign`], for any claims type that serializes to a
    /// JSON object.
    ///
    /// # Panics
    /// If `claims` cannot be serialized to JSON (a map with non-string keys,
    /// a failing `Serialize` impl): a programming error.
    pub fn sign_claims<T: Serialize + ?Sized>(&self, typ: &str, claims: &T) -> String {
        // Three buffers: header JSON, payload JSON and the token itself,
        // which is sized up front so it never grows.
        let header = serde_json::to_vec(&HeaderOut { alg: self.alg(), typ, kid: &self.kid }).expect("JWS header serializes");
        let payload = serde_json::to_vec(claims).expect("JWT claims must serialize to JSON");
        let sig_len = match &self.key {
            SignerKey::Ed25519(_) => ed25519_dalek::SIGNATURE_LENGTH,
            SignerKey::Rsa(_, size) => *size,
        };
        let mut out = String::with_capacity(b64_len(header.len()) + b64_len(payload.len()) + b64_len(sig_len) + 2);
        B64.encode_string(&header, &mut out);
        out.push('.');
        B64.encode_string(&payload, &mut out);
        match &self.key {
            SignerKey::Ed25519(pair) => {
                let signature = pair.sign(out.as_bytes());
                out.push('.');
                B64.encode_string(signature.as_ref(), &mut out);
            }
            SignerKey::Rsa(key, _) => {
                use rsa::signature::{SignatureEncoding, Signer};
                let signature = key.sign(out.as_bytes()).to_vec();
                out.push('.');
                B64.encode_string(signature, &mut out);
            }
        }
        out
    }
}

fn b64_len(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

// --- verification ------------------------------------------------------------

/// Verifies our own EdDSA tokens against the Ed25519 keys it knows by `kid`.
#[derive(Debug, Clone, Default)]
pub struct JwsVerifier {
    keys: HashMap<String, ed25519_dalek::VerifyingKey>,
}

/// The header members verification looks at. serde rejects a duplicate
/// of any of them; other members are ignored.
#[derive(Deserialize)]
struct HeaderIn<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// Present at all, even as `null`.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

impl JwsVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The Ed25519 keys among public JWKs: `kty` `OKP`, `crv` `Ed25519`, a
    /// `kid`, and `alg` / `use` either absent or `EdDSA` / `sig`. Other
    /// keys, and keys that do not parse, are skipped.
    pub fn from_jwks(jwks: &[Value]) -> Self {
        let mut verifier = Self::new();
        for jwk in jwks {
            let member = |name: &str| jwk.get(name).and_then(Value::as_str);
            if member("kty") != Some("OKP")
                || member("crv") != Some("Ed25519")
                || !matches!(member("alg"), None | Some("EdDSA"))
                || !matches!(member("use"), None | Some("sig"))
            {
                continue;
            }
            let (Some(kid), Some(x)) = (member("kid"), member("x")) else { continue };
            let Some(x) = B64.decode(x).ok().and_then(|x| <[u8; 32]>::try_from(x).ok()) else { continue };
            if let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&x) {
                verifier.insert(kid, key);
            }
        }
        verifier
    }

    pub fn insert(&mut self, kid: impl Into<String>, key: ed25519_dalek::VerifyingKey) {
        self.keys.insert(kid.into(), key);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a compact JWS and returns its claims. Strict: at most
    /// [`MAX_TOKEN_LEN`] bytes, three parts of unpadded canonical
    /// base64url, a JSON-object header with `alg` exactly `EdDSA`, `typ`
    /// equal to `expected_typ` (ASCII case-insensitive, `application/`
    /// prefix optional), a known `kid` and no `crit`; the signature is
    /// checked with `verify_strict`; the claims must be a JSON object.
    ///
    /// Does not check `exp`, `nbf`, `iat`, `iss` or `aud`.
    pub fn verify(&self, token: &str, expected_typ: &str) -> Result<Value, JwsError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwsError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwsError::Malformed("a compact JWS has exactly three parts"));
        };

        let header = B64.decode(header_b64).map_err(|_| JwsError::Malformed("header is not base64url"))?;
        // A struct also deserializes from a JSON array; the header must be an object.
        if header.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(JwsError::Malformed("header is not a JSON object"));
        }
        let header: HeaderIn<'_> = serde_json::from_slice(&header).map_err(|_| JwsError::Malformed("header is not valid JSON"))?;
        // Pinned: never `none`, never an HMAC or RSA algorithm.
        if header.alg != "EdDSA" {
            return Err(JwsError::UnsupportedAlg);
        }
        if !header.typ.as_deref().is_some_and(|typ| typ_matches(typ, expected_typ)) {
            return Err(JwsError::WrongType);
        }
        if header.crit {
            return Err(JwsError::CriticalHeader);
        }
        let key = header.kid.as_deref().and_then(|kid| self.keys.get(kid)).ok_or(JwsError::UnknownKey)?;

        if sig_b64.len() != ED25519_SIG_B64_LEN {
            return Err(JwsError::Malformed("signature has the wrong length"));
        }
        let mut signature = [0u8; ed25519_dalek::SIGNATURE_LENGTH];
        match B64.decode_slice(sig_b64, &mut signature) {
            Ok(ed25519_dalek::SIGNATURE_LENGTH) => {}
            _ => return Err(JwsError::Malformed("signature is not base64url")),
        }
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        key.verify_strict(signing_input.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature))
            .map_err(|_| JwsError::BadSignature)?;

        let payload = B64.decode(payload_b64).map_err(|_| JwsError::Malformed("payload is not base64url"))?;
        let claims: Value = serde_json::from_slice(&payload).map_err(|_| JwsError::Malformed("payload is not valid JSON"))?;
        if !claims.is_object() {
            return Err(JwsError::ClaimsNotObject);
        }
        Ok(claims)
    }
}

/// Tokens a [`JwsVerifier`] accepted, with their claims, so that a token
/// seen again is not verified again: resource servers introspect the same
/// access token on every request they serve, and the Ed25519 verification
/// was most of the CPU time of each introspection (~60 % measured).
///
/// Only an exact byte match is served (the full token is the key, so a
/// token differing anywhere, signature included, is verified afresh), only
/// for the `typ` it was verified with, and only while the verifier's key
/// set lasts: one belongs to each key ring and is dropped with it. Times and
/// revocation are the caller's to check on every use, as with `verify`.
///
/// Bounded: two generations of at most `capacity / 2` tokens; when the
/// newer fills, the older is dropped, and a hit in the older moves the
/// token to the newer, so tokens in use stay.
#[derive(Debug)]
pub struct VerifiedTokens {
    generations: Mutex<Generations>,
    half: usize,
}

type Verified = HashMap<Box<str>, (Box<str>, Arc<Value>)>;

#[derive(Debug, Default)]
struct Generations {
    newer: Verified,
    older: Verified,
}

impl VerifiedTokens {
    /// Tokens kept at most; 4,096 by default (a few MB).
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens { generations: Default::default(), half: (capacity / 2).max(1) }
    }

    /// [`JwsVerifier::verify`], remembered.
    pub fn verify(&self, verifier: &JwsVerifier, token: &str, expected_typ: &str) -> Result<Arc<Value>, JwsError> {
        if let Some(claims) = self.recall(token, expected_typ) {
            return Ok(claims);
        }
        let claims = Arc::new(verifier.verify(token, expected_typ)?);
        self.remember(token, expected_typ, claims.clone());
        Ok(claims)
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.newer.len() + g.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Generations> {
        // A panic elsewhere cannot leave a half-made entry: use the map as it is.
        self.generations.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recall(&self, token: &str, expected_typ: &str) -> Option<Arc<Value>> {
        let mut g = self.lock();
        if let Some((typ, claims)) = g.newer.get(token) {
            return (**typ == *expected_typ).then(|| claims.clone());
        }
        let (key, (typ, claims)) = g.older.remove_entry(token)?;
        let hit = (*typ == *expected_typ).then(|| claims.clone());
        g.insert(key, typ, claims, self.half);
        hit
    }

    fn remember(&self, token: &str, expected_typ: &str, claims: Arc<Value>) {
        self.lock().insert(token.into(), expected_typ.into(), claims, self.half);
    }
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl Generations {
    fn insert(&mut self, token: Box<str>, typ: Box<str>, claims: Arc<Value>, half: usize) {
        if self.newer.len() >= half {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(token, (typ, claims));
    }
}

/// Media-type comparison for `typ` (RFC 7515 §4.1.9): ASCII
/// case-insensitive, with the `application/` prefix optional on either side.
fn typ_matches(typ: &str, expected: &str) -> bool {
    fn bare(media_type: &str) -> &str {
        const PREFIX: &str = "application/";
        match media_type.get(..PREFIX.len()) {
            Some(prefix) if prefix.eq_ignore_ascii_case(PREFIX) => &media_type[PREFIX.len()..],
            _ => media_type,
        }
    }
    bare(typ).eq_ignore_ascii_case(bare(expected))
}

// --- JWKS and hashes ---------------------------------------------------------

/// `{"keys": [...]}` from public JWKs. Any private or symmetric member is
/// dropped defensively; entries that are not JSON objects are skipped.
pub fn jwks(keys: &[Value]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .filter_map(Value::as_object)
        .map(|jwk| {
            let mut jwk = jwk.clone();
            for member in PRIVATE_JWK_MEMBERS {
                jwk.remove(member);
            }
            Value::Object(jwk)
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

/// OIDC Core §3.1.3.6 `at_hash` for an ID token signed with `alg`: the
/// left-most half of the hash of the ASCII access token, base64url.
///
/// The hash is the one of the ID token's JWS algorithm: SHA-256 for RS256,
/// and for EdDSA with Ed25519 SHA-512 (left-most 32 bytes), the hash
/// Ed25519 itself uses. That is what the `openidconnect` 4.1 crate checks:
/// `CoreJsonWebKey::hash_bytes` (src/core/jwk/mod.rs) hashes with `Sha512`
/// for `EdDsa` + `Ed25519`, and `AccessTokenHash::from_token`
/// (src/types/mod.rs) keeps `hash[0..hash.len() / 2]`. The same rule gives
/// `c_hash` for an authorization code.
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    match alg {
        SigningAlg::RS256 => B64.encode(&Sha256::digest(access_token.as_bytes())[..16]),
        SigningAlg::EdDSA => B64.encode(&Sha512::digest(access_token.as_bytes())[..32]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;
    use serde_json::json;

    fn ed_key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    fn signer_and_verifier() -> (JwsSigner, JwsVerifier) {
        let key = ed_key(1);
        let mut verifier = JwsVerifier::new();
        verifier.insert("k1", key.verifying_key());
        (JwsSigner::ed25519("k1", key).expect("a valid key"), verifier)
    }

    fn claims() -> Value {
        json!({"iss": "https://issuer.example", "sub": "alice", "exp": 2_000_000_000, "scope": "openid"})
    }

    /// A token with any header and payload, signed with `key`.
    fn forge(key: &ed25519_dalek::SigningKey, header: &Value, payload: &Value) -> String {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(payload.to_string()));
        let signature = key.sign(input.as_bytes()).to_bytes();
        format!("{input}.{}", B64.encode(signature))
    }

    fn parts(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let (signer, verifier) = signer_and_verifier();
        assert_eq!((signer.alg(), signer.kid()), (SigningAlg::EdDSA, "k1"));
        let token = signer.sign("at+jwt", &claims());
        let p = parts(&token);
        assert_eq!(p.len(), 3);
        let header: Value = serde_json::from_slice(&B64.decode(&p[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}));
        assert_eq!(verifier.verify(&token, "at+jwt"), Ok(claims()));
        // typ is a media type: case-insensitive, `application/` optional.
        assert_eq!(verifier.verify(&token, "AT+JWT"), Ok(claims()));
        assert_eq!(verifier.verify(&token, "application/at+jwt"), Ok(claims()));
        let token = signer.sign("application/AT+jwt", &claims());
        assert_eq!(verifier.verify(&token, "at+jwt"), Ok(claims()));

        #[derive(Serialize)]
        struct Claims<'a> {
            sub: &'a str,
            exp: i64,
        }
        let token = signer.sign_claims("JWT", &Claims { sub: "bob", exp: 5 });
        assert_eq!(verifier.verify(&token, "JWT"), Ok(json!({"sub": "bob", "exp": 5})));
    }

    /// The fast signer (aws-lc-rs) makes exactly the signature dalek makes
    /// for the same key and input (deterministic Ed25519, RFC 8032).
    #[test]
    fn aws_lc_signatures_are_dalek_signatures() {
        for seed in [1u8, 2, 200] {
            let key = ed_key(seed);
            let signer = JwsSigner::ed25519("k", key.clone()).expect("aws-lc-rs accepts a 32-byte seed");
            let token = signer.sign("at+jwt", &claims());
            let (input, signature) = token.rsplit_once('.').unwrap();
            assert_eq!(signature, B64.encode(key.sign(input.as_bytes()).to_bytes()));
        }
    }

    #[test]
    fn ed25519_tokens_verify_with_openidconnect() {
        use openidconnect::JsonWebKey;
        use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
        let key = ed_key(3);
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(key.verifying_key().to_bytes()), "kid": "k", "use": "sig", "alg": "EdDSA"});
        let token = JwsSigner::ed25519("k", key).expect("a valid key").sign("JWT", &claims());
        let (input, signature) = token.rsplit_once('.').unwrap();
        let jwk: CoreJsonWebKey = serde_json::from_value(jwk).unwrap();
        jwk.verify_signature(&CoreJwsSigningAlgorithm::EdDsa, input.as_bytes(), &B64.decode(signature).unwrap()).unwrap();
    }

    #[test]
    fn tampered_payload_or_signature_is_rejected() {
        let (signer, verifier) = signer_and_verifier();
        let token = signer.sign("at+jwt", &claims());
        let p = parts(&token);

        let mut other = claims();
        other["sub"] = json!("mallory");
        let swapped = format!("{}.{}.{}", p[0], B64.encode(other.to_string()), p[2]);
        assert_eq!(verifier.verify(&swapped, "at+jwt"), Err(JwsError::BadSignature));

        let mut sig = B64.decode(&p[2]).unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", p[0], p[1], B64.encode(&sig));
        assert_eq!(verifier.verify(&flipped, "at+jwt"), Err(JwsError::BadSignature));

        // A valid signature by another key under our kid.
        let forged = forge(&ed_key(2), &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}), &claims());
        assert_eq!(verifier.verify(&forged, "at+jwt"), Err(JwsError::BadSignature));

        // Three parts exactly.
        assert!(matches!(verifier.verify(&format!("{token}.x"), "at+jwt"), Err(JwsError::Malformed(_))));
        assert!(matches!(verifier.verify(&format!("{}.{}", p[0], p[1]), "at+jwt"), Err(JwsError::Malformed(_))));
        assert!(matches!(verifier.verify(&format!("{}.{}.", p[0], p[1]), "at+jwt"), Err(JwsError::Malformed(_))));
        assert!(matches!(verifier.verify("", "at+jwt"), Err(JwsError::Malformed(_))));
    }

    #[test]
    fn verified_tokens_serve_only_exact_tokens_verified_with_the_same_typ() {
        let (signer, verifier) = signer_and_verifier();
        let cache = VerifiedTokens::new(8);
        let token = signer.sign("at+jwt", &claims());
        assert_eq!(*cache.verify(&verifier, &token, "at+jwt").unwrap(), claims());
        // Served from memory now: an empty verifier would reject it.
        assert_eq!(*cache.verify(&JwsVerifier::new(), &token, "at+jwt").unwrap(), claims());
        assert_eq!(cache.len(), 1);
        // Another typ is verified afresh (and fails).
        assert_eq!(cache.verify(&verifier, &token, "JWT"), Err(JwsError::WrongType));
        // A token one bit away from a remembered one is not it.
        let p = parts(&token);
        let mut sig = B64.decode(&p[2]).unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", p[0], p[1], B64.encode(&sig));
        assert_eq!(cache.verify(&verifier, &flipped, "at+jwt"), Err(JwsError::BadSignature));
        // Rejections are not remembered.
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn verified_tokens_stay_bounded_and_keep_tokens_in_use() {
        let (signer, verifier) = signer_and_verifier();
        let cache = VerifiedTokens::new(4);
        let token = |n: i64| signer.sign("at+jwt", &json!({"sub": "alice", "n": n}));
        let in_use = token(0);
        cache.verify(&verifier, &in_use, "at+jwt").unwrap();
        for n in 1..50 {
            cache.verify(&verifier, &token(n), "at+jwt").unwrap();
            cache.verify(&verifier, &in_use, "at+jwt").unwrap();
            assert!(cache.len() <= 4, "{} tokens remembered", cache.len());
        }
        // Still remembered: an empty verifier would reject it.
        assert!(cache.verify(&JwsVerifier::new(), &in_use, "at+jwt").is_ok());
        // One not used since is gone.
        assert_eq!(cache.verify(&JwsVerifier::new(), &token(1), "at+jwt"), Err(JwsError::UnknownKey));
    }

    #[test]
    fn other_algorithms_are_rejected() {
        let (signer, verifier) = signer_and_verifier();
        let p = parts(&signer.sign("at+jwt", &claims()));
        for alg in ["none", "None", "NONE", "HS256", "RS256", "ES256", "eddsa", "Ed25519"] {
            let header = B64.encode(json!({"alg": alg, "typ": "at+jwt", "kid": "k1"}).to_string());
            // Unsigned, and with our (valid-looking) signature kept.
            assert_eq!(verifier.verify(&format!("{header}.{}.", p[1]), "at+jwt"), Err(JwsError::UnsupportedAlg), "{alg}");
            assert_eq!(verifier.verify(&format!("{header}.{}.{}", p[1], p[2]), "at+jwt"), Err(JwsError::UnsupportedAlg), "{alg}");
        }
        let no_alg = B64.encode(json!({"typ": "at+jwt", "kid": "k1"}).to_string());
        assert!(matches!(verifier.verify(&format!("{no_alg}.{}.{}", p[1], p[2]), "at+jwt"), Err(JwsError::Malformed(_))));
        // A duplicate `alg` is not resolved in either direction.
        let dup = B64.encode(r#"{"alg":"none","alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#);
        assert!(matches!(verifier.verify(&format!("{dup}.{}.{}", p[1], p[2]), "at+jwt"), Err(JwsError::Malformed(_))));
        // The header must be an object, not an array that a struct would accept.
        let array = B64.encode(r#"["EdDSA","at+jwt","k1"]"#);
        assert!(matches!(verifier.verify(&format!("{array}.{}.{}", p[1], p[2]), "at+jwt"), Err(JwsError::Malformed(_))));
    }

    #[test]
    fn wrong_or_missing_typ_is_rejected() {
        let (signer, verifier) = signer_and_verifier();
        let key = ed_key(1);
        assert_eq!(verifier.verify(&signer.sign("JWT", &claims()), "at+jwt"), Err(JwsError::WrongType));
        assert_eq!(verifier.verify(&signer.sign("at+jwt", &claims()), "JWT"), Err(JwsError::WrongType));
        assert_eq!(verifier.verify(&signer.sign("xapplication/at+jwt", &claims()), "at+jwt"), Err(JwsError::WrongType));
        let untyped = forge(&key, &json!({"alg": "EdDSA", "kid": "k1"}), &claims());
        assert_eq!(verifier.verify(&untyped, "at+jwt"), Err(JwsError::WrongType));
        // Non-ASCII near the prefix boundary must not panic.
        assert_eq!(verifier.verify(&signer.sign("applicationé/at+jwt", &claims()), "at+jwt"), Err(JwsError::WrongType));
    }

    #[test]
    fn unknown_or_missing_kid_is_rejected() {
        let (_, verifier) = signer_and_verifier();
        let key = ed_key(1);
        let other = JwsSigner::ed25519("k2", key.clone()).expect("a valid key").sign("at+jwt", &claims());
        assert_eq!(verifier.verify(&other, "at+jwt"), Err(JwsError::UnknownKey));
        let no_kid = forge(&key, &json!({"alg": "EdDSA", "typ": "at+jwt"}), &claims());
        assert_eq!(verifier.verify(&no_kid, "at+jwt"), Err(JwsError::UnknownKey));
        assert_eq!(JwsVerifier::default().verify(&other, "at+jwt"), Err(JwsError::UnknownKey));
    }

    #[test]
    fn crit_is_rejected() {
        let (_, verifier) = signer_and_verifier();
        let key = ed_key(1);
        for crit in [json!(["exp"]), json!([]), Value::Null] {
            let token = forge(&key, &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "crit": crit, "exp": 1}), &claims());
            assert_eq!(verifier.verify(&token, "at+jwt"), Err(JwsError::CriticalHeader), "{crit}");
        }
        // Other unknown header members are ignored.
        let token = forge(&key, &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "x-extra": 1}), &claims());
        assert_eq!(verifier.verify(&token, "at+jwt"), Ok(claims()));
    }

    #[test]
    fn padded_or_non_canonical_base64_is_rejected() {
        let (signer, verifier) = signer_and_verifier();
        let token = signer.sign("at+jwt", &claims());
        let p = parts(&token);
        // The header's length is not a multiple of 3, so its encoding ends in a partial group.
        let header = B64.decode(&p[0]).unwrap();
        assert_ne!(header.len() % 3, 0);

        // Padding on the header; the signature is over the padded text so only the encoding is at fault.
        let padded = base64::engine::general_purpose::URL_SAFE.encode(&header);
        assert!(padded.ends_with('='));
        let key = ed_key(1);
        let input = format!("{padded}.{}", p[1]);
        let sig = B64.encode(key.sign(input.as_bytes()).to_bytes());
        assert!(matches!(verifier.verify(&format!("{input}.{sig}"), "at+jwt"), Err(JwsError::Malformed(_))));

        // Non-zero trailing bits: same bytes, different text.
        let canonical = &p[0];
        let last = canonical.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.find(last).unwrap();
        let tweaked_last = alphabet.as_bytes()[index ^ 1] as char;
        let tweaked = format!("{}{tweaked_last}", &canonical[..canonical.len() - 1]);
        assert!(
            base64::engine::general_purpose::GeneralPurpose::new(
                &alphabet::URL_SAFE,
                GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireNone).with_decode_allow_trailing_bits(true)
            )
            .decode(&tweaked)
            .is_ok_and(|bytes| bytes == header)
        );
        let input = format!("{tweaked}.{}", p[1]);
        let sig = B64.encode(key.sign(input.as_bytes()).to_bytes());
        assert!(matches!(verifier.verify(&format!("{input}.{sig}"), "at+jwt"), Err(JwsError::Malformed(_))));

        // Standard alphabet and whitespace.
        let plus = format!("{}.{}.{}", p[0].replace('-', "+").replace('_', "/"), p[1], p[2]);
        if plus != token {
            assert!(verifier.verify(&plus, "at+jwt").is_err());
        }
        assert!(matches!(
            verifier.verify(&format!("{}.{} .{}", p[0], p[1], p[2]), "at+jwt"),
            Err(JwsError::Malformed(_) | JwsError::BadSignature)
        ));
        // Padded signature.
        assert!(matches!(verifier.verify(&format!("{token}=="), "at+jwt"), Err(JwsError::Malformed(_))));
        // Signature with a flipped trailing bit (86 chars, 2 spare bits).
        let s = &p[2];
        let last = s.chars().last().unwrap();
        let index = alphabet.find(last).unwrap();
        let tweaked = format!("{}.{}.{}{}", p[0], p[1], &s[..s.len() - 1], alphabet.as_bytes()[index ^ 1] as char);
        assert!(matches!(verifier.verify(&tweaked, "at+jwt"), Err(JwsError::Malformed(_))));
    }

    #[test]
    fn oversized_token_is_rejected_before_parsing() {
        let (signer, verifier) = signer_and_verifier();
        let mut big = claims();
        big["pad"] = json!("x".repeat(MAX_TOKEN_LEN));
        let token = signer.sign("at+jwt", &big);
        assert_eq!(verifier.verify(&token, "at+jwt"), Err(JwsError::TooLarge));
        assert_eq!(verifier.verify(&"a".repeat(MAX_TOKEN_LEN + 1), "at+jwt"), Err(JwsError::TooLarge));
        // Just under the cap still verifies.
        let mut fits = claims();
        fits["pad"] = json!("");
        let base = signer.sign("at+jwt", &fits).len();
        fits["pad"] = json!("x".repeat((MAX_TOKEN_LEN - base) * 3 / 4));
        let token = signer.sign("at+jwt", &fits);
        assert!(token.len() <= MAX_TOKEN_LEN && token.len() > MAX_TOKEN_LEN - 8, "{}", token.len());
        assert_eq!(verifier.verify(&token, "at+jwt"), Ok(fits));
    }

    #[test]
    fn claims_must_be_an_object() {
        let (_, verifier) = signer_and_verifier();
        let key = ed_key(1);
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"});
        assert_eq!(verifier.verify(&forge(&key, &header, &json!(["sub"])), "at+jwt"), Err(JwsError::ClaimsNotObject));
        assert_eq!(verifier.verify(&forge(&key, &header, &json!("alice")), "at+jwt"), Err(JwsError::ClaimsNotObject));
    }

    #[test]
    fn from_jwks_takes_only_ed25519_signing_keys() {
        let ed = ed_key(1).verifying_key().to_bytes();
        let x = B64.encode(ed);
        let verifier = JwsVerifier::from_jwks(&[
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ok", "use": "sig", "alg": "EdDSA"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "bare"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "enc", "use": "enc"}),
            json!({"kty": "OKP", "crv": "X25519", "x": x, "kid": "x25519"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": format!("{x}="), "kid": "padded"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode([1u8; 31]), "kid": "short"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa", "alg": "RS256"}),
            json!("not a key"),
        ]);
        let mut kids: Vec<&str> = verifier.keys.keys().map(String::as_str).collect();
        kids.sort();
        assert_eq!(kids, ["bare", "ok"]);
        let token = JwsSigner::ed25519("ok", ed_key(1)).expect("a valid key").sign("at+jwt", &claims());
        assert_eq!(verifier.verify(&token, "at+jwt"), Ok(claims()));
    }

    /// A 2048-bit test-only key (openssl genpkey, PKCS#1 PEM).
    const TEST_RSA_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAwoLTmsU1JAPpjW8uRBafLRaZXox0OsV+TQBJDIsC4CoB9mLS
36ylA3e6+YFi9SKbv/aHd2dGbRkPsjkxGUbkE09YhpkES33rHEJaMVVFMYu4FEdS
nqmNtP9DUMpy0VfB6vO/pI0gEomMzWgC/VNOsUynqYUKpwNCYDpOZnc3XlsmXZ15
dDbCAFHpIBdkt2jriaGma29LMV18kezjuXrp3oasuABOaJFdI3Dy/Cs2g78OsjAI
SZKSe6ftCv5yf+JLOlHwezhSmVcWcJVXmJW5zzu6TXEGz2ElK1FH4NEThQhq2bN8
Hcq2k5H/9SZLcApBW5IdTqKwxUm0H9deAksT/QIDAQABAoIBAApiRumm8tn5W36G
xkbcQ6MkkbYlHroEe7mgn5sL0MYmzUlZ/T1I+jDf3htzzNSerwc7IgA92ISlJzFc
hu0n26/W4eL4SEJqISMLvRo6cyHcqPcW16eguu/usKlKJYGyLagIBd3DAEinudyS
sOt/3F5FZANTbD4o7mI0uqVoYoxRjtoxJEebx2GG3NoJb+eDIeaK6XRDPPCZKneP
Ysa/SYAcHnc68HK3pzel/evaNm2pRKed2i0kl1PlLMsHmdX7clbObMVjOnv1rmoS
q2Jg6atTFDtOhgoXgtGILOsY0l4FOE5VcahkCBTI+g5nmaCvZvmeZJquiWSjTIb8
ZgTHQAECgYEA7lP84YumiXOM/FhkpH3ux8JXLYhBN2CTsDxvUFIJpoJMu2rteV2x
ec4HVcHIMOsSU+u1qVI0E+1QjlVJlauTO1DHuI9QT8shl7IVMGk0rrd7BHIFgFcc
rLTqRhZ82QXs7hmyrK+Egr0QT4LW9ZTBcF8XLmMtYWzoQout+Gke3y0CgYEA0O8X
VuDBE0ia5bCam9zEYLqlZjdTEAXOD8sDdCBEXfDjaaQwtZqsCgTWFa2xryql7Q1R
p4cRre9gr3mte3H4mYDmDeLuQ6U4o3Hu+Sg8QmR6f7s36iHQA4IV8xykBhfrBj7/
P/q8aW/Lh7YXVUAWTfwWYWCxG/2yI47TX0SwihECgYAB3KYdHPowGLcBQa+HmXRE
G0CTGn1n8Vk2B0LXXcy1gE8ZJ7yzNggs628jPGBUAYIjJbRFnl7JyRDYC9KHWM/N
ptPonTYDaZLZnIqN1kSTGNvdLQbd+dA/iSpLYeGX0HQJaCn9L2HZo6B8/oivYnog
Zp3Hvv6bxD4MRwsU5b1YAQKBgCLM8DJEVWSE32gKtnXnm74Q2KPh6y/sB5qR0g1x
onGTQg3Cj2pwTN+OVqpduA7ZJ7IIWeVxlfxGtvADcGXzYdkPo0IE3nLd/kUbIRbX
INJeMhk8cd/JqgArlsRbrOZm7Xqo25MojGFzgY8lQVWtywlKR+AIXveulhFeJM7l
fhJBAoGAeTTNhSPE7dkjB1p65+yenjhBuGMEPWL8YE+kcp3OPWKunc6VFF7bj1DA
sKiArnvFPzZuYAx9/zGMVT4EXDQg6gD5zCp1IoeSpnhz6SpGG+Bkp7GYZIlhcxiS
zN2y4MMbNuPws9xXlcKD3kDWtldHwJM9JwHjxtail4ekSi11AnA=
-----END RSA PRIVATE KEY-----
";

    #[test]
    fn rs256_matches_an_independent_implementation() {
        use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
        use openidconnect::{JsonWebKey, PrivateSigningKey};
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;

        let key = rsa::PrivateKey::from_pkcs1_pem(TEST_RSA_PEM).unwrap();
        let jwk = json!({"kty": "RSA", "n": B64.encode(key.n_bytes()), "e": B64.encode(key.e_bytes()), "kid": "r1", "use": "sig", "alg": "RS256"});
        let signer = JwsSigner::rsa("r1", key);
        assert_eq!((signer.alg(), signer.kid()), (SigningAlg::RS256, "r1"));
        let started = std::time::Instant::now();
        let token = signer.sign("JWT", &claims());
        eprintln!("RS256 sign took {:?}", started.elapsed());
        let p = parts(&token);
        let header: Value = serde_json::from_slice(&B64.decode(&p[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "r1"}));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = B64.decode(signature).unwrap();
        assert_eq!(signature.len(), 256);

        // openidconnect verifies with `rsa` 0.9's PKCS#1 v1.5 (the `rsa` 0.10
        // here is built without its `pkcs1v15` feature).
        let public: CoreJsonWebKey = serde_json::from_value(jwk).unwrap();
        public.verify_signature(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input.as_bytes(), &signature).unwrap();
        assert!(public.verify_signature(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, b"other", &signature).is_err());
        // PKCS#1 v1.5 is deterministic: byte-for-byte the same signature.
        let reference = CoreRsaPrivateSigningKey::from_pem(TEST_RSA_PEM, None).unwrap();
        assert_eq!(reference.sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input.as_bytes()).unwrap(), signature);

        // Our verifier never accepts RS256, even for a known kid.
        let mut verifier = JwsVerifier::new();
        verifier.insert("r1", ed_key(1).verifying_key());
        assert_eq!(verifier.verify(&token, "JWT"), Err(JwsError::UnsupportedAlg));
    }

    #[test]
    fn jwks_never_publishes_private_members() {
        let set = jwks(&[
            json!({"kty": "OKP", "crv": "Ed25519", "x": "abc", "d": "secret", "kid": "a"}),
            json!({"kty": "RSA", "n": "n", "e": "AQAB", "d": "s", "p": "s", "q": "s", "dp": "s", "dq": "s", "qi": "s", "oth": [], "kid": "b"}),
            json!({"kty": "oct", "k": "secret", "kid": "c"}),
            json!(42),
        ]);
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0], json!({"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "a"}));
        assert_eq!(keys[1], json!({"kty": "RSA", "n": "n", "e": "AQAB", "kid": "b"}));
        assert_eq!(keys[2], json!({"kty": "oct", "kid": "c"}));
        assert!(!set.to_string().contains("secret"));
        assert_eq!(jwks(&[]), json!({"keys": []}));
    }

    #[test]
    fn at_hash_known_vectors() {
        // OpenID Connect Core 1.0, Appendix A.3 (RS256).
        assert_eq!(at_hash(SigningAlg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
        // Ed25519: left half of SHA-512 (openssl dgst -sha512 | head -c 32).
        assert_eq!(
            at_hash(SigningAlg::EdDSA, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "q7nS86GgvvFaZkzALLWqJYaJIKw2wCDAVfCAsm5CrBM"
        );
    }

    #[test]
    fn at_hash_matches_openidconnect() {
        use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
        use openidconnect::{AccessToken, AccessTokenHash};
        let token = AccessToken::new("some.access.token".into());
        let ed: CoreJsonWebKey =
            serde_json::from_value(json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(ed_key(1).verifying_key().to_bytes())})).unwrap();
        let expected = AccessTokenHash::from_token(&token, &CoreJwsSigningAlgorithm::EdDsa, &ed).unwrap();
        assert_eq!(&at_hash(SigningAlg::EdDSA, token.secret()), expected.as_str());
        let rsa = CoreJsonWebKey::new_rsa(vec![0xc1; 256], vec![1, 0, 1], None);
        let expected = AccessTokenHash::from_token(&token, &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, &rsa).unwrap();
        assert_eq!(&at_hash(SigningAlg::RS256, token.secret()), expected.as_str());
    }
}
