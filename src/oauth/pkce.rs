//! PKCE (RFC 7636) with the `S256` method only; `plain` exposes the verifier.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len()) && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A `S256` challenge is the unpadded base64url of a SHA-256: 43 characters.
pub fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|b| b.len() == 32)
}

/// `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    if !is_valid_verifier(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_example_verifies() {
        assert!(verify_s256(VERIFIER, CHALLENGE));
        assert!(is_valid_s256_challenge(CHALLENGE));
    }

    #[test]
    fn wrong_or_malformed_verifier_fails() {
        assert!(!verify_s256(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!verify_s256("short", CHALLENGE));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}!", "a".repeat(43))));
        assert!(!is_valid_s256_challenge("plain-challenge"));
    }
}
