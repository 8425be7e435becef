//! Redirect URI matching (RFC 9700 §2.1, §4.1.3; OAuth 2.1 §4.1.1; RFC 8252
//! §7.3, §8.3) and building of authorization responses (RFC 6749 §4.1.2,
//! §4.2.2; OAuth 2.0 Multiple Response Type Encoding Practices §2; OAuth 2.0
//! Form Post Response Mode).

use serde::{Deserialize, Serialize};

/// How the authorization response travels back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// Parameters in the query component (RFC 6749 §4.1.2; the default for
    /// `response_type=code`). Never used for tokens (OAuth 2.1 §5, R9).
    Query,
    /// Parameters in the fragment component (RFC 6749 §4.2.2; the default for
    /// `token`, `id_token` and `id_token token`).
    Fragment,
    /// Parameters as an auto-submitted HTML form POSTed to the redirect URI
    /// (OAuth 2.0 Form Post Response Mode §2).
    FormPost,
}

impl ResponseMode {
    /// The `response_mode` wire value, or `None` when unknown.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "query" => ResponseMode::Query,
            "fragment" => ResponseMode::Fragment,
            "form_post" => ResponseMode::FormPost,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Query => "query",
            ResponseMode::Fragment => "fragment",
            ResponseMode::FormPost => "form_post",
        }
    }
}

/// Whether `requested` is one of the `registered` redirect URIs.
///
/// R1: simple string comparison (RFC 3986 §6.2.1), no normalisation of case,
/// percent-encoding, default ports or dot segments. Only exception (RFC 8252
/// §7.3): for a public (native) client, an `http` loopback URI on the literal
/// IP `127.0.0.1` or `[::1]` may differ from a registered one in its port
/// (present or absent) and nothing else. `localhost` gets no such freedom
/// (RFC 8252 §8.3: it may resolve elsewhere), and confidential clients get
/// none either.
pub fn redirect_uri_matches(registered: &[String], requested: &str, public_client: bool) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    if !public_client {
        return false;
    }
    let Some(req) = loopback_parts(requested) else { return false };
    registered.iter().filter_map(|r| loopback_parts(r)).any(|reg| reg == req)
}

/// For `http://127.0.0.1[:port]rest` or `http://[::1][:port]rest`, the host
/// and the part after the authority; `None` for anything else (other schemes,
/// hosts, userinfo, empty or non-numeric ports).
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let after_scheme = uri.strip_prefix("http://")?;
    let end = after_scheme.find(['/', '?', '#']).unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(end);
    let (host, port) = if let Some(port) = authority.strip_prefix("127.0.0.1") {
        ("127.0.0.1", port)
    } else if let Some(port) = authority.strip_prefix("[::1]") {
        ("[::1]", port)
    } else {
        return None;
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':')?;
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !(1..=65535).contains(&digits.parse::<u32>().ok()?) {
            return None;
        }
    }
    Some((host, rest))
}

/// The redirect URI carrying `params` for `Query` or `Fragment` mode (values
/// `application/x-www-form-urlencoded`, RFC 6749 §4.1.2, §4.2.2). `Query`
/// keeps an existing query and appends with `&` (RFC 6749 §3.1.2: the query
/// component MUST be retained). A fragment in `redirect_uri` (forbidden by
/// RFC 6749 §3.1.2, so never registered) is dropped. For `FormPost` the
/// parameters travel in an HTML form: the URI is returned unchanged as the
/// form's action and the caller posts `params` as fields.
pub fn build_redirect(redirect_uri: &str, params: &[(&str, &str)], mode: ResponseMode) -> String {
    let base = redirect_uri.split_once('#').map_or(redirect_uri, |(b, _)| b);
    if mode == ResponseMode::FormPost {
        return base.to_string();
    }
    let encoded = encode_params(params);
    let mut out = String::with_capacity(base.len() + encoded.len() + 1);
    out.push_str(base);
    if encoded.is_empty() {
        return out;
    }
    match mode {
        ResponseMode::Query => match base.find('?') {
            None => out.push('?'),
            Some(i) if i + 1 == base.len() || base.ends_with('&') => {}
            Some(_) => out.push('&'),
        },
        ResponseMode::Fragment => out.push('#'),
        ResponseMode::FormPost => unreachable!("handled above"),
    }
    out.push_str(&encoded);
    out
}

/// `application/x-www-form-urlencoded` serialization of `params`, in order.
pub fn encode_params(params: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(uris: &[&str]) -> Vec<String> {
        uris.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_match_only() {
        let r = reg(&["https://app.example/cb", "https://app.example/cb2?x=1"]);
        for public in [false, true] {
            assert!(redirect_uri_matches(&r, "https://app.example/cb", public));
            assert!(redirect_uri_matches(&r, "https://app.example/cb2?x=1", public));
            for bad in [
                "https://app.example/cb/",
                "https://app.example/CB",
                "HTTPS://app.example/cb",
                "https://APP.example/cb",
                "https://app.example:443/cb",
                "https://app.example/cb?",
                "https://app.example/cb?x=1",
                "https://app.example/cb#",
                "https://app.example/%63b",
                "https://app.example/x/../cb",
                "https://app.example/cb2",
                "https://app.example/cb2?x=1&y=2",
                "https://app.example.evil/cb",
                "https://app.example/cb ",
                "",
            ] {
                assert!(!redirect_uri_matches(&r, bad, public), "{bad} public={public}");
            }
        }
        assert!(!redirect_uri_matches(&[], "https://app.example/cb", true));
    }

    #[test]
    fn loopback_port_is_free_for_public_clients() {
        let r = reg(&["http://127.0.0.1/callback", "http://[::1]:8080/cb?x=1"]);
        assert!(redirect_uri_matches(&r, "http://127.0.0.1:51004/callback", true));
        assert!(redirect_uri_matches(&r, "http://127.0.0.1:1/callback", true));
        assert!(redirect_uri_matches(&r, "http://127.0.0.1:65535/callback", true));
        assert!(redirect_uri_matches(&r, "http://[::1]/cb?x=1", true));
        assert!(redirect_uri_matches(&r, "http://[::1]:3000/cb?x=1", true));
        // a registered port does not pin the port either
        let r2 = reg(&["http://127.0.0.1:8080/cb"]);
        assert!(redirect_uri_matches(&r2, "http://127.0.0.1:9999/cb", true));
        assert!(redirect_uri_matches(&r2, "http://127.0.0.1/cb", true));
    }

    #[test]
    fn loopback_port_freedom_is_only_for_the_port() {
        let r = reg(&["http://127.0.0.1/callback", "http://[::1]/cb"]);
        for bad in [
            "http://127.0.0.1:51004/callback/",
            "http://127.0.0.1:51004/Callback",
            "http://127.0.0.1:51004/callback?x=1",
            "http://127.0.0.1:51004/callback#f",
            "http://127.0.0.1:51004",
            "https://127.0.0.1:51004/callback",
            "HTTP://127.0.0.1:51004/callback",
            "http://127.0.0.2:51004/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:0/callback",
            "http://127.0.0.1:65536/callback",
            "http://127.0.0.1:123456/callback",
            "http://127.0.0.1:+80/callback",
            "http://127.0.0.1:80x/callback",
            "http://127.0.0.1.evil.example/callback",
            "http://127.0.0.1:80@evil.example/callback",
            "http://user@127.0.0.1:80/callback",
            "http://[::1]:80/callback",
            "http://[0:0:0:0:0:0:0:1]:80/cb",
            "http://localhost:80/callback",
        ] {
            assert!(!redirect_uri_matches(&r, bad, true), "{bad}");
        }
        // the host must be the registered one: 127.0.0.1 and [::1] are distinct
        assert!(!redirect_uri_matches(&reg(&["http://127.0.0.1/cb"]), "http://[::1]:80/cb", true));
    }

    #[test]
    fn no_loopback_freedom_for_confidential_clients_or_localhost() {
        let r = reg(&["http://127.0.0.1/callback"]);
        assert!(redirect_uri_matches(&r, "http://127.0.0.1/callback", false));
        assert!(!redirect_uri_matches(&r, "http://127.0.0.1:8080/callback", false));
        let l = reg(&["http://localhost/callback"]);
        assert!(redirect_uri_matches(&l, "http://localhost/callback", true));
        assert!(!redirect_uri_matches(&l, "http://localhost:8080/callback", true));
    }

    #[test]
    fn response_mode_parse() {
        for m in [ResponseMode::Query, ResponseMode::Fragment, ResponseMode::FormPost] {
            assert_eq!(ResponseMode::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::Value::String(m.as_str().into()));
        }
        assert_eq!(ResponseMode::parse("Query"), None);
        assert_eq!(ResponseMode::parse("web_message"), None);
        assert_eq!(ResponseMode::parse(""), None);
    }

    #[test]
    fn query_mode_appends_correctly() {
        let p = [("code", "abc"), ("state", "s 1&x=y"), ("iss", "https://as.example")];
        assert_eq!(
            build_redirect("https://app.example/cb", &p, ResponseMode::Query),
            "https://app.example/cb?code=abc&state=s+1%26x%3Dy&iss=https%3A%2F%2Fas.example"
        );
        assert_eq!(build_redirect("https://app.example/cb?a=1", &p[..1], ResponseMode::Query), "https://app.example/cb?a=1&code=abc");
        assert_eq!(build_redirect("https://app.example/cb?", &p[..1], ResponseMode::Query), "https://app.example/cb?code=abc");
        assert_eq!(build_redirect("https://app.example/cb?a=1&", &p[..1], ResponseMode::Query), "https://app.example/cb?a=1&code=abc");
        assert_eq!(build_redirect("https://app.example/cb", &[], ResponseMode::Query), "https://app.example/cb");
        assert_eq!(
            build_redirect("com.example.app:/oauth2redirect", &p[..1], ResponseMode::Query),
            "com.example.app:/oauth2redirect?code=abc"
        );
    }

    #[test]
    fn fragment_mode() {
        let p = [("access_token", "t/+="), ("token_type", "Bearer")];
        assert_eq!(
            build_redirect("https://app.example/cb?a=1", &p, ResponseMode::Fragment),
            "https://app.example/cb?a=1#access_token=t%2F%2B%3D&token_type=Bearer"
        );
        // a stray fragment is replaced, never doubled
        assert_eq!(
            build_redirect("https://app.example/cb#old", &p[1..], ResponseMode::Fragment),
            "https://app.example/cb#token_type=Bearer"
        );
        assert_eq!(build_redirect("https://app.example/cb#old", &p[1..], ResponseMode::Query), "https://app.example/cb?token_type=Bearer");
    }

    #[test]
    fn form_post_returns_the_action() {
        assert_eq!(build_redirect("https://app.example/cb?a=1", &[("code", "x")], ResponseMode::FormPost), "https://app.example/cb?a=1");
    }

    #[test]
    fn built_urls_parse_back() {
        let p = [("state", "ünï cødé &=#?"), ("error_description", "a b")];
        let u = url::Url::parse(&build_redirect("https://app.example/cb?keep=1", &p, ResponseMode::Query)).unwrap();
        let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![("keep".into(), "1".into()), ("state".into(), "ünï cødé &=#?".into()), ("error_description".into(), "a b".into())]
        );
        let u = url::Url::parse(&build_redirect("https://app.example/cb", &p, ResponseMode::Fragment)).unwrap();
        let frag: Vec<(String, String)> = form_urlencoded::parse(u.fragment().unwrap().as_bytes()).into_owned().collect();
        assert_eq!(frag[0].1, "ünï cødé &=#?");
        assert_eq!(u.query(), None);
    }
}
