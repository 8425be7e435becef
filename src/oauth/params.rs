//! Request parameters from `application/x-www-form-urlencoded` bodies and
//! query strings (OAuth 2.1 §3.1, §3.2; RFC 6749 Appendix B).
//!
//! Rules (R16):
//! - parameters without a value (`a=` or `a`) are treated as omitted;
//! - a name that appears more than once is refused with `invalid_request`.
//!   grantd counts repeats by **name, whatever the values**: `scope=&scope=x`
//!   is refused too. A repeated name is ambiguous (other components may take
//!   the first or the last occurrence), and grantd implements no extension
//!   whose parameters may repeat (such as RFC 8707 `resource`), so every
//!   repeat is refused, including repeats of names grantd otherwise ignores;
//! - names are case-sensitive; pairs with an empty name are ignored;
//! - `+` decodes to a space and `%XX` to a byte; a `%` not followed by two
//!   hex digits is refused (stricter than the lenient WHATWG parser), and the
//!   decoded bytes must be UTF-8: nothing is replaced lossily;
//! - limits: body or query ≤ [`MAX_BODY`] bytes, decoded name or value ≤
//!   [`MAX_VALUE`] bytes, at most [`MAX_PARAMS`] parameters.

use crate::oauth::error::OAuthError;

/// Largest accepted request body or query string, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest accepted decoded parameter name or value, in bytes.
pub const MAX_VALUE: usize = 8 * 1024;
/// Largest accepted number of parameters (empty-valued ones included).
pub const MAX_PARAMS: usize = 64;

/// The media type of form bodies (RFC 6749 Appendix B, OAuth 2.1 §3.2).
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Parsed parameters in request order. Holds only parameters with a
/// non-empty value, each name at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Builds parameters from already-decoded pairs under the same rules as
    /// the parsers (repeats refused, empty values dropped, limits).
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Params, OAuthError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut all: Vec<(String, String)> = Vec::new();
        for (k, v) in pairs {
            let (k, v) = (k.into(), v.into());
            if k.is_empty() {
                continue;
            }
            if all.len() >= MAX_PARAMS {
                return Err(OAuthError::invalid_request(format!("too many parameters (at most {MAX_PARAMS})")));
            }
            if k.len() > MAX_VALUE {
                return Err(OAuthError::invalid_request("parameter name too long"));
            }
            if v.len() > MAX_VALUE {
                return Err(OAuthError::invalid_request(format!("parameter {} too long (at most {MAX_VALUE} bytes)", shown(&k))));
            }
            if all.iter().any(|(seen, _)| *seen == k) {
                return Err(OAuthError::invalid_request(format!("parameter {} must not be repeated", shown(&k))));
            }
            all.push((k, v));
        }
        all.retain(|(_, v)| !v.is_empty());
        Ok(Params { pairs: all })
    }

    /// The value of `name`, or `None` when absent or sent empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or `invalid_request` naming it (RFC 6749 §4.1.2.1,
    /// §5.2: "missing a required parameter").
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| OAuthError::invalid_request(format!("missing required parameter {name}")))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The pairs in request order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Parses a request body. `content_type` must be
/// `application/x-www-form-urlencoded` (case-insensitive, parameters allowed;
/// a `charset` parameter must name UTF-8), else `invalid_request`.
pub fn parse_form(content_type: Option<&str>, body: &[u8]) -> Result<Params, OAuthError> {
    let content_type = content_type.ok_or_else(|| OAuthError::invalid_request(format!("content type must be {FORM_CONTENT_TYPE}")))?;
    if !is_form_content_type(content_type) {
        return Err(OAuthError::invalid_request(format!("content type must be {FORM_CONTENT_TYPE}")));
    }
    parse_bytes(body)
}

/// Parses a query string (without the leading `?`) under the same rules.
pub fn parse_query(query: &str) -> Result<Params, OAuthError> {
    parse_bytes(query.as_bytes())
}

/// What can be read unambiguously from input the strict parsers refused:
/// the pairs that decode, under names that appear exactly once (a repeated
/// or undecodable name is dropped whole). Only for deciding where an error
/// may be sent (RFC 6749 §4.1.2.1: a repeated parameter is an
/// `invalid_request` for the client once its redirect URI is established);
/// never for serving a request. Empty when over the limits.
pub fn parse_unambiguous(input: &[u8]) -> Params {
    if input.len() > MAX_BODY {
        return Params::default();
    }
    let mut seen: Vec<(Option<String>, Option<String>)> = Vec::new();
    for piece in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &[][..]),
        };
        seen.push((form_decode(name), form_decode(value).filter(|v| v.len() <= MAX_VALUE)));
    }
    let count = |name: &str| seen.iter().filter(|(n, _)| n.as_deref() == Some(name)).count();
    let pairs: Vec<(String, String)> = seen
        .iter()
        .filter_map(|(name, value)| match (name, value) {
            (Some(name), Some(value)) if count(name) == 1 && name.len() <= MAX_VALUE => Some((name.clone(), value.clone())),
            _ => None,
        })
        .collect();
    Params::from_pairs(pairs).unwrap_or_default()
}

/// Whether a `Content-Type` value denotes a UTF-8 form body.
pub fn is_form_content_type(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(FORM_CONTENT_TYPE) {
        return false;
    }
    parts.all(|param| {
        let Some((name, value)) = param.split_once('=') else {
            // an empty parameter (trailing `;`) is harmless; anything else is malformed
            return param.trim().is_empty();
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            return true;
        }
        let value = value.trim().trim_matches('"');
        value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
    })
}

fn parse_bytes(input: &[u8]) -> Result<Params, OAuthError> {
    if input.len() > MAX_BODY {
        return Err(OAuthError::invalid_request(format!("request too large (at most {MAX_BODY} bytes)")));
    }
    let mut pairs = Vec::new();
    for piece in input.split(|&b| b == b'&') {
        if piece.is_empty() {
            continue;
        }
        if pairs.len() >= MAX_PARAMS {
            return Err(OAuthError::invalid_request(format!("too many parameters (at most {MAX_PARAMS})")));
        }
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &[][..]),
        };
        let name = form_decode(name).ok_or_else(|| OAuthError::invalid_request("malformed parameter name encoding"))?;
        let value =
            form_decode(value).ok_or_else(|| OAuthError::invalid_request(format!("malformed encoding of parameter {}", shown(&name))))?;
        pairs.push((name, value));
    }
    Params::from_pairs(pairs)
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space,
/// `%XX` a byte. `None` when a `%` is not followed by two hex digits or the
/// result is not UTF-8.
pub fn form_decode(input: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_value(*input.get(i + 1)?)?;
                let lo = hex_value(*input.get(i + 2)?)?;
                out.push((hi << 4) | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A client-chosen name as it may appear in an error description: bounded.
fn shown(name: &str) -> String {
    const MAX: usize = 64;
    if name.chars().count() <= MAX { name.to_string() } else { format!("{}...", name.chars().take(MAX).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;

    #[test]
    fn unambiguous_parse_drops_repeated_and_undecodable_names() {
        let p = parse_unambiguous(b"client_id=shop&scope=a&scope=b&state=%FF&redirect_uri=https%3A%2F%2Fx&bad%ZZ=1&empty=");
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![("client_id", "shop"), ("redirect_uri", "https://x")]);
        assert!(parse_unambiguous(&vec![b'a'; MAX_BODY + 1]).is_empty());
        assert!(parse_query("client_id=shop&scope=a&scope=b").is_err(), "the strict parser still refuses");
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn err(r: Result<Params, OAuthError>) -> OAuthError {
        r.expect_err("should be refused")
    }

    #[test]
    fn parses_pairs_in_order() {
        let p = parse_form(FORM, b"grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fa.example%2Fcb").unwrap();
        assert_eq!(p.get("grant_type"), Some("authorization_code"));
        assert_eq!(p.get("redirect_uri"), Some("https://a.example/cb"));
        assert_eq!(p.iter().map(|(k, _)| k).collect::<Vec<_>>(), vec!["grant_type", "code", "redirect_uri"]);
        assert_eq!(p.len(), 3);
        assert!(!p.is_empty());
        assert!(p.contains("code"));
        assert_eq!(p.get("missing"), None);
    }

    #[test]
    fn plus_and_percent_decode() {
        let p = parse_query("scope=openid+profile%20email&state=a%2Bb&x%3Dy=%C3%A9").unwrap();
        assert_eq!(p.get("scope"), Some("openid profile email"));
        assert_eq!(p.get("state"), Some("a+b"));
        assert_eq!(p.get("x=y"), Some("é"));
        // only the first `=` splits
        assert_eq!(parse_query("a=b=c").unwrap().get("a"), Some("b=c"));
    }

    #[test]
    fn content_type_is_checked() {
        assert!(parse_form(Some("application/x-www-form-urlencoded; charset=UTF-8"), b"a=b").is_ok());
        assert!(parse_form(Some("Application/X-WWW-Form-URLEncoded;charset=\"utf-8\""), b"a=b").is_ok());
        assert!(parse_form(Some("application/x-www-form-urlencoded; foo=bar"), b"a=b").is_ok());
        assert!(parse_form(Some(" application/x-www-form-urlencoded ;"), b"a=b").is_ok());
        for ct in [
            None,
            Some("application/json"),
            Some("text/plain"),
            Some("multipart/form-data; boundary=x"),
            Some("application/x-www-form-urlencoded-extra"),
            Some("application/x-www-form-urlencoded; charset=ISO-8859-1"),
            Some("application/x-www-form-urlencoded; garbage"),
            Some(""),
        ] {
            let e = err(parse_form(ct, b"a=b"));
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{ct:?}");
        }
    }

    #[test]
    fn empty_values_are_omitted() {
        let p = parse_query("a=&b&c=1&&").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("1"));
        assert_eq!(p.len(), 1);
        assert!(p.require("a").is_err());
        assert!(parse_query("").unwrap().is_empty());
        assert!(parse_form(FORM, b"").unwrap().is_empty());
    }

    #[test]
    fn empty_names_are_ignored() {
        let p = parse_query("=x&=y&a=1").unwrap();
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![("a", "1")]);
    }

    #[test]
    fn repeated_parameters_are_refused_by_name() {
        let e = err(parse_query("scope=a&scope=b"));
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("scope"), "{}", e.description);
        // even when one of them is empty (documented choice)
        assert!(parse_query("scope=&scope=b").is_err());
        assert!(parse_query("scope&scope").is_err());
        // and when the values are equal
        assert!(parse_query("state=x&state=x").is_err());
        // names are case-sensitive: these are two different parameters
        let p = parse_query("state=x&State=y").unwrap();
        assert_eq!(p.get("state"), Some("x"));
        assert_eq!(p.get("State"), Some("y"));
        // encoded and raw forms of the same name are the same name
        assert!(parse_query("client_id=a&client%5Fid=b").is_err());
    }

    #[test]
    fn require_names_the_missing_parameter() {
        let p = parse_query("a=1").unwrap();
        assert_eq!(p.require("a"), Ok("1"));
        let e = p.require("code").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("code"));
    }

    #[test]
    fn invalid_utf8_is_refused_not_replaced() {
        assert!(parse_query("a=%FF").is_err());
        assert!(parse_query("a=%C3").is_err());
        assert!(parse_query("%FF=a").is_err());
        assert!(parse_form(FORM, b"a=\xff").is_err());
        assert!(parse_form(FORM, &[b'a', b'=', 0xC3, 0xA9]).is_ok());
    }

    #[test]
    fn malformed_percent_encoding_is_refused() {
        for q in ["a=%", "a=%4", "a=%GG", "a=100%", "%zz=1"] {
            assert_eq!(err(parse_query(q)).code, ErrorCode::InvalidRequest, "{q}");
        }
        assert_eq!(parse_query("a=%4a%4A").unwrap().get("a"), Some("JJ"));
    }

    #[test]
    fn limits() {
        // body size
        let big = format!("a={}", "x".repeat(MAX_BODY));
        assert!(parse_form(FORM, big.as_bytes()).is_err());
        assert!(parse_query(&big).is_err());
        // value size: exactly MAX_VALUE is fine, one more is not
        assert!(parse_query(&format!("a={}", "x".repeat(MAX_VALUE))).is_ok());
        assert!(parse_query(&format!("a={}", "x".repeat(MAX_VALUE + 1))).is_err());
        // the limit applies to the decoded value
        assert!(parse_query(&format!("a={}", "%41".repeat(MAX_VALUE))).is_ok());
        // name size
        assert!(parse_query(&format!("{}=1", "n".repeat(MAX_VALUE + 1))).is_err());
        // parameter count
        let many = |n: usize| (0..n).map(|i| format!("p{i}=v")).collect::<Vec<_>>().join("&");
        assert_eq!(parse_query(&many(MAX_PARAMS)).unwrap().len(), MAX_PARAMS);
        assert!(parse_query(&many(MAX_PARAMS + 1)).is_err());
        // empty-valued parameters count too
        let empties = (0..=MAX_PARAMS).map(|i| format!("e{i}=")).collect::<Vec<_>>().join("&");
        assert!(parse_query(&empties).is_err());
    }

    #[test]
    fn long_names_are_truncated_in_descriptions() {
        let name = "n".repeat(500);
        let e = err(parse_query(&format!("{name}=1&{name}=2")));
        assert!(e.description.len() < 200);
    }

    #[test]
    fn from_pairs_applies_the_same_rules() {
        let p = Params::from_pairs([("a", "1"), ("b", ""), ("", "x")]).unwrap();
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![("a", "1")]);
        assert!(Params::from_pairs([("a", "1"), ("a", "2")]).is_err());
        assert!(Params::from_pairs([("a".to_string(), "x".repeat(MAX_VALUE + 1))]).is_err());
    }

    #[test]
    fn form_decode_component() {
        assert_eq!(form_decode(b"a+b%2B%20c").as_deref(), Some("a b+ c"));
        assert_eq!(form_decode(b""), Some(String::new()));
        assert_eq!(form_decode(b"%"), None);
        assert_eq!(form_decode(b"%e9"), None);
    }
}
