//! Server-rendered pages: login, consent, errors, and the form_post
//! response. Plain HTML, labelled fields, no JavaScript except the
//! auto-submit of form_post (with a button for browsers without it).

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The script that submits a form_post response; its hash is allowed by the CSP.
const AUTO_SUBMIT: &str = "document.forms[0].submit();";
const AUTO_SUBMIT_HASH: &str = "sha256-";

fn script_hash() -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    format!("{AUTO_SUBMIT_HASH}{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(AUTO_SUBMIT.as_bytes())))
}

/// Headers for every page: no framing (clickjacking, RFC 9700 §4.16), no
/// referrer (§4.2.4), no caching, no third-party anything.
pub fn page(mut builder: HttpResponseBuilder, body: String) -> HttpResponse {
    builder
        .content_type("text/html; charset=utf-8")
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; style-src 'unsafe-inline'; script-src '{}'; frame-ancestors 'none'; base-uri 'none'",
                script_hash()
            ),
        ))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1b1b1b}\
label{display:block;margin-top:1rem;font-weight:600}input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}\
button{margin-top:1.25rem;margin-right:.5rem;padding:.5rem 1.25rem;font-size:1rem}.error{color:#a40000;font-weight:600}ul{padding-left:1.25rem}";

fn document(title: &str, main: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>{main}</main></body></html>\n",
        title = escape(title)
    )
}

pub struct LoginPage<'a> {
    pub client_name: &'a str,
    pub csrf_token: &'a str,
    pub request: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

pub fn login(p: &LoginPage<'_>) -> String {
    let error = p.error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default();
    document(
        "Sign in",
        &format!(
            "<h1>Sign in</h1><p>to continue to <strong>{client}</strong></p>{error}\
             <form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\"><input type=\"hidden\" name=\"request\" value=\"{request}\">\
             <label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" required autofocus>\
             <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            client = escape(p.client_name),
            csrf = escape(p.csrf_token),
            request = escape(p.request),
            username = escape(p.username),
        ),
    )
}

/// A human description of a scope for the consent page.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Sign you in with your account (your user id)".into(),
        "profile" => "Your name and username".into(),
        "email" => "Your email address".into(),
        "offline_access" => "Keep access while you are away (refresh tokens)".into(),
        other => format!("Access to \u{201c}{other}\u{201d}"),
    }
}

pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub username: &'a str,
    pub scopes: &'a [String],
    pub csrf_token: &'a str,
    pub request: &'a str,
    pub access_lifetime_minutes: i64,
}

pub fn consent(p: &ConsentPage<'_>) -> String {
    let items: String =
        p.scopes.iter().map(|s| format!("<li><strong>{}</strong> — <code>{}</code></li>", escape(&describe_scope(s)), escape(s))).collect();
    document(
        "Allow access?",
        &format!(
            "<h1>Allow access?</h1><p><strong>{client}</strong> (client id <code>{client_id}</code>) asks to access your account \
             <strong>{user}</strong>:</p><ul>{items}</ul>\
             <p>Access tokens last {minutes} minutes; you can revoke this consent at any time.</p>\
             <form method=\"post\" action=\"/consent\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\"><input type=\"hidden\" name=\"request\" value=\"{request}\">\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            client = escape(p.client_name),
            client_id = escape(p.client_id),
            user = escape(p.username),
            minutes = p.access_lifetime_minutes,
            csrf = escape(p.csrf_token),
            request = escape(p.request),
        ),
    )
}

pub fn error(title: &str, message: &str) -> String {
    document(title, &format!("<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p>", escape(title), escape(message)))
}

/// OAuth 2.0 Form Post Response Mode: the parameters POSTed to the client.
pub fn form_post(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let inputs: String =
        params.iter().map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v))).collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Continue</title></head><body>\
         <form method=\"post\" action=\"{action}\">{inputs}<noscript><button type=\"submit\">Continue</button></noscript></form>\
         <script>{AUTO_SUBMIT}</script></body></html>\n",
        action = escape(redirect_uri)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn login_form_has_the_contract_fields() {
        let html = login(&LoginPage { client_name: "<Shop>", csrf_token: "tok", request: "req", username: "", error: Some("Wrong") });
        for needle in ["name=\"username\"", "name=\"password\"", "name=\"csrf_token\" value=\"tok\"", "&lt;Shop&gt;", "role=\"alert\""] {
            assert!(html.contains(needle), "{needle}");
        }
    }

    #[test]
    fn consent_form_has_both_decisions_and_every_scope() {
        let scopes = vec!["openid".to_string(), "api:read".to_string()];
        let html = consent(&ConsentPage {
            client_name: "Shop",
            client_id: "shop",
            username: "alice",
            scopes: &scopes,
            csrf_token: "tok",
            request: "req",
            access_lifetime_minutes: 10,
        });
        for needle in ["name=\"decision\" value=\"approve\"", "name=\"decision\" value=\"deny\"", "api:read", "csrf_token"] {
            assert!(html.contains(needle), "{needle}");
        }
    }
}
