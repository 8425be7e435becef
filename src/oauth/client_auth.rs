//! Which client a back-channel request claims to be, and how it authenticates
//! (RFC 6749 §2.3.1; OAuth 2.1 §2.4, §3.2.1; R17). Checking the claim against
//! the registered client is the caller's job; [`secret_matches`] does the
//! secret comparison.

use std::fmt;

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::oauth::error::OAuthError;
use crate::oauth::params::{Params, form_decode};

/// Standard-alphabet base64 (RFC 7617 §2), padding optional.
const BASIC_BASE64: GeneralPurpose =
    GeneralPurpose::new(&STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// The client identification and credentials a request carries.
///
/// `Debug` never prints a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum PresentedClient {
    /// `client_secret_basic`: HTTP Basic (RFC 6749 §2.3.1, RFC 7617).
    Basic { client_id: String, client_secret: String },
    /// `client_secret_post`: `client_id` and `client_secret` in the body
    /// (RFC 6749 §2.3.1, OAuth 2.1 §2.4.1).
    Post { client_id: String, client_secret: String },
    /// No credentials, only `client_id` (public clients, RFC 6749 §3.2.1).
    Public { client_id: String },
}

impl PresentedClient {
    pub fn client_id(&self) -> &str {
        match self {
            PresentedClient::Basic { client_id, .. } | PresentedClient::Post { client_id, .. } | PresentedClient::Public { client_id } => {
                client_id
            }
        }
    }

    /// The presented secret; `None` for a public client.
    pub fn client_secret(&self) -> Option<&str> {
        match self {
            PresentedClient::Basic { client_secret, .. } | PresentedClient::Post { client_secret, .. } => Some(client_secret),
            PresentedClient::Public { .. } => None,
        }
    }

    /// The `token_endpoint_auth_method` name (RFC 7591 §2) of the method used.
    pub fn method(&self) -> &'static str {
        match self {
            PresentedClient::Basic { .. } => "client_secret_basic",
            PresentedClient::Post { .. } => "client_secret_post",
            PresentedClient::Public { .. } => "none",
        }
    }
}

impl fmt::Debug for PresentedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresentedClient::Basic { client_id, .. } => {
                f.debug_struct("Basic").field("client_id", client_id).field("client_secret", &"<redacted>").finish()
            }
            PresentedClient::Post { client_id, .. } => {
                f.debug_struct("Post").field("client_id", client_id).field("client_secret", &"<redacted>").finish()
            }
            PresentedClient::Public { client_id } => f.debug_struct("Public").field("client_id", client_id).finish(),
        }
    }
}

/// Reads the client a token, revocation or introspection request presents.
///
/// - `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`
///   (RFC 6749 §2.3.1: id and secret are form-urlencoded before base64, so
///   `+` decodes to a space and `%XX` to a byte). The scheme name is
///   case-insensitive (RFC 9110 §11.1). Invalid base64, invalid UTF-8, a
///   missing `:`, an empty client id or a malformed encoding → `invalid_client`.
///   An empty secret carries no credential (grantd never generates one), so
///   `Basic base64("id:")` presents the client as [`PresentedClient::Public`].
/// - Any other scheme (e.g. `Bearer`), or an empty header → `invalid_client`:
///   grantd supports no other method at these endpoints (RFC 6749 §5.2,
///   "unsupported authentication method").
/// - Basic together with a `client_secret` parameter, or with a `client_id`
///   parameter naming another client → `invalid_request` (OAuth 2.1 §2.4:
///   MUST NOT use more than one authentication method). Basic with an equal
///   `client_id` parameter is allowed (OAuth 2.1 §3.2.1 lets clients send it).
/// - Otherwise `client_id` + `client_secret` → `Post`, `client_id` alone →
///   `Public`, a `client_secret` without `client_id` or nothing at all →
///   `invalid_client` (RFC 6749 §5.2: "no client authentication included").
pub fn presented_client(authorization_header: Option<&str>, params: &Params) -> Result<PresentedClient, OAuthError> {
    let param_id = params.get("client_id");
    let param_secret = params.get("client_secret");
    if let Some(header) = authorization_header {
        let (client_id, client_secret) = parse_basic(header)?;
        if param_secret.is_some() {
            return Err(OAuthError::invalid_request("more than one client authentication method (HTTP Basic and client_secret)"));
        }
        if param_id.is_some_and(|id| id != client_id) {
            return Err(OAuthError::invalid_request("more than one client authentication method (client_id differs from HTTP Basic)"));
        }
        return Ok(if client_secret.is_empty() {
            PresentedClient::Public { client_id }
        } else {
            PresentedClient::Basic { client_id, client_secret }
        });
    }
    match (param_id, param_secret) {
        (Some(id), Some(secret)) => Ok(PresentedClient::Post { client_id: id.to_string(), client_secret: secret.to_string() }),
        (Some(id), None) => Ok(PresentedClient::Public { client_id: id.to_string() }),
        (None, Some(_)) => Err(OAuthError::invalid_client("client_secret without client_id")),
        (None, None) => Err(OAuthError::invalid_client("no client authentication included")),
    }
}

/// Decodes `Basic <credentials>` into the client id and secret.
fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let header = header.trim();
    let (scheme, credentials) = header.split_once([' ', '\t']).unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("unsupported client authentication scheme (use HTTP Basic or client_secret_post)"));
    }
    let credentials = credentials.trim();
    if credentials.is_empty() {
        return Err(OAuthError::invalid_client("empty HTTP Basic credentials"));
    }
    let decoded =
        BASIC_BASE64.decode(credentials).map_err(|_| OAuthError::invalid_client("HTTP Basic credentials are not valid base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_client("HTTP Basic credentials are not UTF-8"))?;
    let (id, secret) = decoded.split_once(':').ok_or_else(|| OAuthError::invalid_client("HTTP Basic credentials lack a ':'"))?;
    let malformed = || OAuthError::invalid_client("HTTP Basic credentials are not form-urlencoded (RFC 6749 section 2.3.1)");
    let id = form_decode(id.as_bytes()).ok_or_else(malformed)?;
    let secret = form_decode(secret.as_bytes()).ok_or_else(malformed)?;
    if id.is_empty() {
        return Err(OAuthError::invalid_client("empty client_id in HTTP Basic credentials"));
    }
    Ok((id, secret))
}

/// Whether `presented` hashes to `stored_sha256_hex` (hex SHA-256, either
/// case), compared in constant time. A malformed stored hash never matches.
pub fn secret_matches(presented: &str, stored_sha256_hex: &str) -> bool {
    let Some(stored) = decode_hex32(stored_sha256_hex) else { return false };
    let computed = Sha256::digest(presented.as_bytes());
    computed.as_slice().ct_eq(&stored).into()
}

/// Hex SHA-256 of a secret, as stored for clients (DESIGN: secrets are kept
/// only as SHA-256).
pub fn secret_hash_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = ((hi << 4) | lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;
    use crate::oauth::params::parse_query;
    use base64::engine::general_purpose::STANDARD as B64;

    fn basic(raw: &str) -> String {
        format!("Basic {}", B64.encode(raw))
    }

    fn p(q: &str) -> Params {
        parse_query(q).unwrap()
    }

    fn code(r: Result<PresentedClient, OAuthError>) -> ErrorCode {
        r.expect_err("should fail").code
    }

    #[test]
    fn basic_credentials() {
        let c = presented_client(Some(&basic("shop:s3cret")), &p("grant_type=client_credentials")).unwrap();
        assert_eq!(c, PresentedClient::Basic { client_id: "shop".into(), client_secret: "s3cret".into() });
        assert_eq!(c.client_id(), "shop");
        assert_eq!(c.client_secret(), Some("s3cret"));
        assert_eq!(c.method(), "client_secret_basic");
    }

    #[test]
    fn basic_id_and_secret_are_form_urlencoded() {
        // RFC 6749 §2.3.1: "my client:p@ss+w%rd" encoded before base64
        let c = presented_client(Some(&basic("my+client:p%40ss%2Bw%25rd%3A")), &Params::default()).unwrap();
        assert_eq!(c, PresentedClient::Basic { client_id: "my client".into(), client_secret: "p@ss+w%rd:".into() });
        // only the first colon separates; an unencoded colon stays in the secret
        let c = presented_client(Some(&basic("a:b:c")), &Params::default()).unwrap();
        assert_eq!(c.client_secret(), Some("b:c"));
        // non-ASCII via percent-encoding
        let c = presented_client(Some(&basic("caf%C3%A9:x")), &Params::default()).unwrap();
        assert_eq!(c.client_id(), "café");
    }

    #[test]
    fn basic_scheme_is_case_insensitive_and_padding_optional() {
        let encoded = B64.encode("shop:s3cret");
        assert!(encoded.ends_with('='));
        for h in [format!("basic {encoded}"), format!("BASIC  {encoded}"), format!("Basic {}", encoded.trim_end_matches('='))] {
            let c = presented_client(Some(&h), &Params::default()).unwrap();
            assert_eq!(c.client_secret(), Some("s3cret"), "{h}");
        }
    }

    #[test]
    fn malformed_basic_is_invalid_client() {
        for h in [
            "Basic".to_string(),
            "Basic ".to_string(),
            "Basic !!!notbase64".to_string(),
            format!("Basic {}", B64.encode([0xff, 0xfe, b':', b'x'])),
            basic("no-colon"),
            basic(":secret"),
            basic("a%ZZ:secret"),
            basic("a:%"),
            basic("a:%FF"),
            String::new(),
            "   ".to_string(),
        ] {
            assert_eq!(code(presented_client(Some(&h), &Params::default())), ErrorCode::InvalidClient, "{h:?}");
        }
    }

    #[test]
    fn other_schemes_are_invalid_client() {
        for h in ["Bearer abc.def.ghi", "Digest username=x", "Basicx abc", "Negotiate"] {
            assert_eq!(code(presented_client(Some(h), &p("client_id=a"))), ErrorCode::InvalidClient, "{h}");
        }
    }

    #[test]
    fn empty_basic_secret_identifies_a_public_client() {
        let c = presented_client(Some(&basic("spa:")), &Params::default()).unwrap();
        assert_eq!(c, PresentedClient::Public { client_id: "spa".into() });
        assert_eq!(c.client_secret(), None);
        // still a second method when a client_secret parameter comes along
        assert_eq!(code(presented_client(Some(&basic("spa:")), &p("client_secret=x"))), ErrorCode::InvalidRequest);
    }

    #[test]
    fn client_secret_post() {
        let c = presented_client(None, &p("client_id=shop&client_secret=s3cret")).unwrap();
        assert_eq!(c, PresentedClient::Post { client_id: "shop".into(), client_secret: "s3cret".into() });
        assert_eq!(c.method(), "client_secret_post");
    }

    #[test]
    fn public_client() {
        let c = presented_client(None, &p("client_id=spa&code=x")).unwrap();
        assert_eq!(c, PresentedClient::Public { client_id: "spa".into() });
        assert_eq!(c.method(), "none");
        // an empty client_secret is an omitted one (R16)
        assert_eq!(presented_client(None, &p("client_id=spa&client_secret=")).unwrap(), c);
    }

    #[test]
    fn two_methods_are_refused() {
        let e = presented_client(Some(&basic("shop:s3cret")), &p("client_secret=s3cret")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("more than one client authentication method"));
        let e = presented_client(Some(&basic("shop:s3cret")), &p("client_id=other")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("more than one client authentication method"));
        assert_eq!(
            code(presented_client(Some(&basic("shop:s3cret")), &p("client_id=shop&client_secret=s3cret"))),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn basic_with_the_same_client_id_param_is_allowed() {
        let c = presented_client(Some(&basic("shop:s3cret")), &p("client_id=shop")).unwrap();
        assert_eq!(c, PresentedClient::Basic { client_id: "shop".into(), client_secret: "s3cret".into() });
        // compared after decoding on both sides
        let c = presented_client(Some(&basic("my+shop:s")), &p("client_id=my%20shop")).unwrap();
        assert_eq!(c.client_id(), "my shop");
    }

    #[test]
    fn no_client_is_invalid_client() {
        assert_eq!(code(presented_client(None, &Params::default())), ErrorCode::InvalidClient);
        assert_eq!(code(presented_client(None, &p("client_secret=x"))), ErrorCode::InvalidClient);
        assert_eq!(code(presented_client(None, &p("client_id="))), ErrorCode::InvalidClient);
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = PresentedClient::Basic { client_id: "shop".into(), client_secret: "TOPSECRET".into() };
        let d = format!("{c:?}");
        assert!(d.contains("shop") && !d.contains("TOPSECRET"), "{d}");
        let c = PresentedClient::Post { client_id: "shop".into(), client_secret: "TOPSECRET".into() };
        assert!(!format!("{c:?}").contains("TOPSECRET"));
        assert!(format!("{:?}", PresentedClient::Public { client_id: "spa".into() }).contains("spa"));
    }

    #[test]
    fn secret_hash_comparison() {
        // SHA-256("abc"), FIPS 180-2 test vector
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(secret_hash_hex("abc"), abc);
        assert!(secret_matches("abc", abc));
        assert!(secret_matches("abc", &abc.to_uppercase()));
        assert!(!secret_matches("abd", abc));
        assert!(!secret_matches("", abc));
        assert!(!secret_matches("abc", &abc[..63]));
        assert!(!secret_matches("abc", &format!("{abc}00")));
        assert!(!secret_matches("abc", &abc.replace('b', "g")));
        assert!(!secret_matches("abc", ""));
        let h = secret_hash_hex("generated-secret");
        assert!(secret_matches("generated-secret", &h));
    }
}
