//! OAuth error responses: the `error` codes of RFC 6749 §4.1.2.1, §4.2.2.1 and
//! §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1 and OpenID Connect Core §3.1.2.6, and
//! their JSON form for the token, revocation and introspection endpoints.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An OAuth `error` code, named after its wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// RFC 6749 §4.1.2.1, §5.2: a required parameter is missing, a value is
    /// unsupported or invalid, a parameter is repeated, or the request is
    /// otherwise malformed (also: more than one client authentication method,
    /// OAuth 2.1 §2.4; a `code_verifier` without a `code_challenge`, §4.1.3).
    InvalidRequest,
    /// RFC 6749 §5.2: client authentication failed (unknown client, no client
    /// authentication included, or unsupported authentication method).
    InvalidClient,
    /// RFC 6749 §5.2: the authorization grant or refresh token is invalid,
    /// expired, revoked, does not match the redirection URI, or was issued to
    /// another client.
    InvalidGrant,
    /// RFC 6749 §4.1.2.1, §5.2: the client is not authorized to use this
    /// authorization grant type / request an authorization code this way.
    UnauthorizedClient,
    /// RFC 6749 §5.2: the grant type is not supported by the server.
    UnsupportedGrantType,
    /// RFC 6749 §4.1.2.1, §5.2: the requested scope is invalid, unknown,
    /// malformed, or exceeds the scope granted by the resource owner.
    InvalidScope,
    /// RFC 6749 §4.1.2.1: the resource owner or authorization server denied
    /// the request.
    AccessDenied,
    /// RFC 6749 §4.1.2.1: the server does not support obtaining an
    /// authorization (code or token) using this `response_type`.
    UnsupportedResponseType,
    /// RFC 6749 §4.1.2.1: an unexpected condition prevented the server from
    /// fulfilling the request (the HTTP 500 that cannot travel in a redirect).
    ServerError,
    /// RFC 6749 §4.1.2.1: the server is temporarily overloaded or under
    /// maintenance (the HTTP 503 that cannot travel in a redirect).
    TemporarilyUnavailable,
    /// OIDC Core §3.1.2.6: `prompt=none` but the End-User is not authenticated.
    LoginRequired,
    /// OIDC Core §3.1.2.6: `prompt=none` but consent is required.
    ConsentRequired,
    /// OIDC Core §3.1.2.6: `prompt=none` but some user interaction is required.
    InteractionRequired,
    /// RFC 6750 §3.1: the access token is expired, revoked, malformed or
    /// invalid for other reasons.
    InvalidToken,
    /// RFC 6750 §3.1: the request requires higher privileges than the access
    /// token provides.
    InsufficientScope,
    /// RFC 7009 §2.2.1: the server does not support the revocation of the
    /// presented token type.
    UnsupportedTokenType,
    /// OIDC Core §3.1.2.6: the `request` parameter (request object) is not
    /// supported.
    RequestNotSupported,
    /// OIDC Core §3.1.2.6: the `request_uri` parameter is not supported.
    RequestUriNotSupported,
    /// OIDC Core §3.1.2.6: the `registration` parameter is not supported.
    RegistrationNotSupported,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::InvalidScope,
        ErrorCode::AccessDenied,
        ErrorCode::UnsupportedResponseType,
        ErrorCode::ServerError,
        ErrorCode::TemporarilyUnavailable,
        ErrorCode::LoginRequired,
        ErrorCode::ConsentRequired,
        ErrorCode::InteractionRequired,
        ErrorCode::InvalidToken,
        ErrorCode::InsufficientScope,
        ErrorCode::UnsupportedTokenType,
        ErrorCode::RequestNotSupported,
        ErrorCode::RequestUriNotSupported,
        ErrorCode::RegistrationNotSupported,
    ];

    /// The wire name carried in the `error` parameter / member.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::RegistrationNotSupported => "registration_not_supported",
        }
    }

    /// The code with this wire name, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// HTTP status of a JSON error response carrying this code.
    ///
    /// RFC 6749 §5.2: 400 unless specified otherwise; `invalid_client` is 401
    /// (MUST when the client tried the Authorization header, and grantd always
    /// answers 401 so clients see one behaviour). RFC 6750 §3.1:
    /// `invalid_token` is 401, `insufficient_scope` is 403. `server_error` and
    /// `temporarily_unavailable` exist in RFC 6749 §4.1.2.1 because a redirect
    /// cannot carry 500/503; in a direct JSON response grantd uses the status
    /// they stand for.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::InsufficientScope => 403,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error: a code plus a human-readable description.
///
/// The constructors sanitize the description to the character set RFC 6749
/// §5.2 allows for `error_description`; [`OAuthError::to_json`] sanitizes again
/// in case the public field was changed afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
}

macro_rules! constructors {
    ($($name:ident => $code:ident),+ $(,)?) => {
        $(
            #[doc = concat!("An `", stringify!($name), "` error (see [`ErrorCode::", stringify!($code), "`]).")]
            pub fn $name(description: impl Into<String>) -> Self {
                Self::new(ErrorCode::$code, description)
            }
        )+
    };
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError { code, description: sanitize_description(&description.into()) }
    }

    constructors! {
        invalid_request => InvalidRequest,
        invalid_client => InvalidClient,
        invalid_grant => InvalidGrant,
        unauthorized_client => UnauthorizedClient,
        unsupported_grant_type => UnsupportedGrantType,
        invalid_scope => InvalidScope,
        access_denied => AccessDenied,
        unsupported_response_type => UnsupportedResponseType,
        server_error => ServerError,
        temporarily_unavailable => TemporarilyUnavailable,
        login_required => LoginRequired,
        consent_required => ConsentRequired,
        interaction_required => InteractionRequired,
        invalid_token => InvalidToken,
        insufficient_scope => InsufficientScope,
        unsupported_token_type => UnsupportedTokenType,
        request_not_supported => RequestNotSupported,
        request_uri_not_supported => RequestUriNotSupported,
        registration_not_supported => RegistrationNotSupported,
    }

    /// HTTP status for the JSON response (see [`ErrorCode::status`]).
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The description as it may go on the wire (RFC 6749 §5.2 charset).
    pub fn wire_description(&self) -> String {
        sanitize_description(&self.description)
    }

    /// RFC 6749 §5.2 JSON body: `{"error": …, "error_description": …}`.
    /// `error_description` is OPTIONAL and left out when empty.
    pub fn to_json(&self) -> Value {
        let description = self.wire_description();
        if description.is_empty() {
            json!({ "error": self.code.as_str() })
        } else {
            json!({ "error": self.code.as_str(), "error_description": description })
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.description.is_empty() { write!(f, "{}", self.code) } else { write!(f, "{}: {}", self.code, self.description) }
    }
}

impl std::error::Error for OAuthError {}

/// Maps a text onto the `error_description` charset of RFC 6749 §5.2
/// (`%x20-21 / %x23-5B / %x5D-7E`): `"` becomes `'`, `\` becomes `/`, any
/// whitespace or control character becomes a space, and every other
/// character outside printable ASCII becomes `?`.
pub fn sanitize_description(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            c if c.is_whitespace() || c.is_control() => ' ',
            _ => '?',
        })
        .collect()
}

/// RFC 6749 §5.2: whether `text` is a valid `error_description` value.
pub fn is_valid_description(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            // serde uses the same names
            assert_eq!(serde_json::to_value(code).unwrap(), Value::String(code.as_str().into()));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
        assert_eq!(ErrorCode::InvalidRequest.as_str(), "invalid_request");
        assert_eq!(ErrorCode::UnsupportedResponseType.as_str(), "unsupported_response_type");
        assert_eq!(ErrorCode::RequestUriNotSupported.as_str(), "request_uri_not_supported");
    }

    #[test]
    fn constructors_set_the_code() {
        assert_eq!(OAuthError::invalid_request("x").code, ErrorCode::InvalidRequest);
        assert_eq!(OAuthError::invalid_client("x").code, ErrorCode::InvalidClient);
        assert_eq!(OAuthError::invalid_grant("x").code, ErrorCode::InvalidGrant);
        assert_eq!(OAuthError::unauthorized_client("x").code, ErrorCode::UnauthorizedClient);
        assert_eq!(OAuthError::unsupported_grant_type("x").code, ErrorCode::UnsupportedGrantType);
        assert_eq!(OAuthError::invalid_scope("x").code, ErrorCode::InvalidScope);
        assert_eq!(OAuthError::access_denied("x").code, ErrorCode::AccessDenied);
        assert_eq!(OAuthError::unsupported_response_type("x").code, ErrorCode::UnsupportedResponseType);
        assert_eq!(OAuthError::server_error("x").code, ErrorCode::ServerError);
        assert_eq!(OAuthError::temporarily_unavailable("x").code, ErrorCode::TemporarilyUnavailable);
        assert_eq!(OAuthError::login_required("x").code, ErrorCode::LoginRequired);
        assert_eq!(OAuthError::consent_required("x").code, ErrorCode::ConsentRequired);
        assert_eq!(OAuthError::interaction_required("x").code, ErrorCode::InteractionRequired);
        assert_eq!(OAuthError::invalid_token("x").code, ErrorCode::InvalidToken);
        assert_eq!(OAuthError::insufficient_scope("x").code, ErrorCode::InsufficientScope);
        assert_eq!(OAuthError::unsupported_token_type("x").code, ErrorCode::UnsupportedTokenType);
        assert_eq!(OAuthError::request_not_supported("x").code, ErrorCode::RequestNotSupported);
        assert_eq!(OAuthError::request_uri_not_supported("x").code, ErrorCode::RequestUriNotSupported);
        assert_eq!(OAuthError::registration_not_supported("x").code, ErrorCode::RegistrationNotSupported);
    }

    #[test]
    fn statuses_follow_rfc6749_and_rfc6750() {
        assert_eq!(OAuthError::invalid_request("x").status(), 400);
        assert_eq!(OAuthError::invalid_grant("x").status(), 400);
        assert_eq!(OAuthError::invalid_scope("x").status(), 400);
        assert_eq!(OAuthError::unsupported_grant_type("x").status(), 400);
        assert_eq!(OAuthError::unauthorized_client("x").status(), 400);
        assert_eq!(OAuthError::unsupported_token_type("x").status(), 400);
        assert_eq!(OAuthError::invalid_client("x").status(), 401);
        assert_eq!(OAuthError::invalid_token("x").status(), 401);
        assert_eq!(OAuthError::insufficient_scope("x").status(), 403);
        assert_eq!(OAuthError::server_error("x").status(), 500);
        assert_eq!(OAuthError::temporarily_unavailable("x").status(), 503);
    }

    #[test]
    fn json_body_has_error_and_description() {
        let e = OAuthError::invalid_grant("authorization code expired");
        assert_eq!(e.to_json(), json!({"error": "invalid_grant", "error_description": "authorization code expired"}));
        let e = OAuthError::invalid_client("");
        assert_eq!(e.to_json(), json!({"error": "invalid_client"}));
    }

    #[test]
    fn descriptions_are_sanitized() {
        let e = OAuthError::invalid_request("bad \"value\" \\ é\n\ttab\u{0}");
        assert!(is_valid_description(&e.description), "{:?}", e.description);
        assert_eq!(e.description, "bad 'value' / ?  tab ");
        // a description set directly on the public field is sanitized on output
        let mut e = OAuthError::invalid_request("ok");
        e.description = "quote\" ünï".into();
        let json = e.to_json();
        let out = json["error_description"].as_str().unwrap();
        assert!(is_valid_description(out));
        assert_eq!(out, "quote' ?n?");
    }

    #[test]
    fn allowed_charset_is_exactly_rfc6749() {
        for b in 0u8..=0x7f {
            let s = (b as char).to_string();
            let allowed = matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E);
            assert_eq!(is_valid_description(&s), allowed, "byte {b:#x}");
            assert!(is_valid_description(&sanitize_description(&s)));
            if allowed {
                assert_eq!(sanitize_description(&s), s);
            }
        }
    }

    #[test]
    fn display_and_error_trait() {
        let e = OAuthError::invalid_scope("scope admin is not grantable");
        assert_eq!(e.to_string(), "invalid_scope: scope admin is not grantable");
        assert_eq!(OAuthError::server_error("").to_string(), "server_error");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().starts_with("invalid_scope"));
    }
}
