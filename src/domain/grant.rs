//! Grant aggregate (`grant-{uuid}`): one authorization and every token issued
//! under it, from the code to the last refresh, until it is revoked.
//!
//! Codes and refresh tokens appear only as hex SHA-256 hashes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::GrantType;
use super::{Aggregate, domain_events};
use crate::oauth::pkce;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationCodeIssued {
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub code_hash: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub code_challenge_method: String,
    pub nonce: Option<String>,
    pub auth_time: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationCodeRedeemed {
    pub code_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenIssued {
    pub jti: String,
    pub grant_type: GrantType,
    pub client_id: String,
    /// The token's `sub`: the user id, or the client id for client credentials.
    pub subject: String,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenIssued {
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    /// Whom the refresh token belongs to, so that the event alone says it.
    pub client_id: String,
    pub subject: String,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenRotated {
    pub previous_hash: String,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// A redeemed authorization code was presented again (OAuth 2.1 §4.1.3).
    CodeReplayed,
    /// A rotated refresh token was presented again (RFC 9700 §4.14.2).
    RefreshTokenReused,
    /// The client revoked a token (RFC 7009).
    RevokedByClient,
    /// An administrator revoked the grant.
    RevokedByAdmin,
    /// The user's consent for the client was revoked.
    ConsentRevoked,
}

impl RevocationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::CodeReplayed => "code_replayed",
            RevocationReason::RefreshTokenReused => "refresh_token_reused",
            RevocationReason::RevokedByClient => "revoked_by_client",
            RevocationReason::RevokedByAdmin => "revoked_by_admin",
            RevocationReason::ConsentRevoked => "consent_revoked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRevoked {
    pub reason: RevocationReason,
}

domain_events!(GrantEvent {
    AuthorizationCodeIssued = 1,
    AuthorizationCodeRedeemed = 1,
    AccessTokenIssued = 1,
    RefreshTokenIssued = 1,
    RefreshTokenRotated = 1,
    GrantRevoked = 1,
});

/// A fresh access token chosen by the caller (ids and times come from outside).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAccessToken {
    pub jti: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRefreshToken {
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum GrantCommand {
    IssueAuthorizationCode {
        client_id: String,
        user_id: String,
        scopes: Vec<String>,
        code_hash: String,
        redirect_uri: String,
        code_challenge: String,
        nonce: Option<String>,
        auth_time: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    /// Redeems a code. A valid request for a code already redeemed decides
    /// `GrantRevoked(CodeReplayed)`: the caller answers `invalid_grant`.
    RedeemAuthorizationCode {
        code_hash: String,
        client_id: String,
        redirect_uri: String,
        code_verifier: String,
        access: NewAccessToken,
        refresh: Option<NewRefreshToken>,
        now: DateTime<Utc>,
    },
    /// Opens a grant with an access token directly (client credentials,
    /// password, implicit).
    IssueAccessToken {
        grant_type: GrantType,
        client_id: String,
        subject: String,
        user_id: Option<String>,
        scopes: Vec<String>,
        access: NewAccessToken,
        refresh: Option<NewRefreshToken>,
        now: DateTime<Utc>,
    },
    /// Rotates a refresh token. Presenting a rotated token decides
    /// `GrantRevoked(RefreshTokenReused)`: the caller answers `invalid_grant`.
    RotateRefreshToken {
        token_hash: String,
        client_id: String,
        /// Narrower scopes requested, if any (RFC 6749 §6).
        scopes: Option<Vec<String>>,
        access: NewAccessToken,
        refresh: NewRefreshToken,
        now: DateTime<Utc>,
    },
    Revoke {
        reason: RevocationReason,
    },
}

/// Errors named after the RFC 6749 §5.2 codes they become.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("grant not found")]
    NotFound,
    #[error("grant already exists")]
    AlreadyExists,
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    #[error("invalid_scope: requested scope exceeds the grant")]
    InvalidScope,
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    pub state: Option<GrantState>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GrantState {
    pub grant_type: GrantType,
    pub client_id: String,
    pub subject: String,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    pub code: Option<CodeState>,
    pub refresh: Option<RefreshState>,
    pub rotated_refresh_hashes: Vec<String>,
    pub access_tokens: Vec<NewAccessToken>,
    pub revoked: Option<RevocationReason>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CodeState {
    pub code_hash: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub auth_time: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub redeemed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefreshState {
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

impl Aggregate for Grant {
    type Command = GrantCommand;
    type Event = GrantEvent;
    type Error = GrantError;
    const STREAM_PREFIX: &'static str = "grant";

    fn decide(&self, command: &GrantCommand) -> Result<Vec<GrantEvent>, GrantError> {
        match command {
            GrantCommand::IssueAuthorizationCode {
                client_id,
                user_id,
                scopes,
                code_hash,
                redirect_uri,
                code_challenge,
                nonce,
                auth_time,
                expires_at,
            } => {
                if self.state.is_some() {
                    return Err(GrantError::AlreadyExists);
                }
                if !pkce::is_valid_s256_challenge(code_challenge) {
                    return Err(GrantError::InvalidRequest("code_challenge must be a S256 challenge"));
                }
                Ok(vec![
                    AuthorizationCodeIssued {
                        client_id: client_id.clone(),
                        user_id: user_id.clone(),
                        scopes: scopes.clone(),
                        code_hash: code_hash.clone(),
                        redirect_uri: redirect_uri.clone(),
                        code_challenge: code_challenge.clone(),
                        code_challenge_method: "S256".into(),
                        nonce: nonce.clone(),
                        auth_time: *auth_time,
                        expires_at: *expires_at,
                    }
                    .into(),
                ])
            }
            GrantCommand::RedeemAuthorizationCode { code_hash, client_id, redirect_uri, code_verifier, access, refresh, now } => {
                let state = self.state.as_ref().ok_or(GrantError::InvalidGrant("unknown code"))?;
                let code = state.code.as_ref().ok_or(GrantError::InvalidGrant("unknown code"))?;
                // Every check that makes the request invalid comes before the
                // replay check: an invalid replay must not revoke (RFC 9700 §4.5 DoS note).
                if &code.code_hash != code_hash || &state.client_id != client_id {
                    return Err(GrantError::InvalidGrant("code was not issued to this client"));
                }
                if &code.redirect_uri != redirect_uri {
                    return Err(GrantError::InvalidGrant("redirect_uri does not match the authorization request"));
                }
                if !pkce::verify_s256(code_verifier, &code.code_challenge) {
                    return Err(GrantError::InvalidGrant("code_verifier does not match the code_challenge"));
                }
                if *now >= code.expires_at {
                    return Err(GrantError::InvalidGrant("code expired"));
                }
                if state.revoked.is_some() {
                    return Err(GrantError::InvalidGrant("grant revoked"));
                }
                if code.redeemed {
                    return Ok(vec![GrantRevoked { reason: RevocationReason::CodeReplayed }.into()]);
                }
                let mut events: Vec<GrantEvent> = vec![
                    AuthorizationCodeRedeemed { code_hash: code_hash.clone() }.into(),
                    access_issued(state.grant_type, state, &state.scopes, access, *now).into(),
                ];
                if let Some(r) = refresh {
                    events.push(refresh_issued(r, &state.client_id, &state.subject, &state.user_id, &state.scopes).into());
                }
                Ok(events)
            }
            GrantCommand::IssueAccessToken { grant_type, client_id, subject, user_id, scopes, access, refresh, now } => {
                if self.state.is_some() {
                    return Err(GrantError::AlreadyExists);
                }
                let mut events: Vec<GrantEvent> = vec![
                    AccessTokenIssued {
                        jti: access.jti.clone(),
                        grant_type: *grant_type,
                        client_id: client_id.clone(),
                        subject: subject.clone(),
                        user_id: user_id.clone(),
                        scopes: scopes.clone(),
                        issued_at: *now,
                        expires_at: access.expires_at,
                    }
                    .into(),
                ];
                if let Some(r) = refresh {
                    events.push(refresh_issued(r, client_id, subject, user_id, scopes).into());
                }
                Ok(events)
            }
            GrantCommand::RotateRefreshToken { token_hash, client_id, scopes, access, refresh, now } => {
                let state = self.state.as_ref().ok_or(GrantError::InvalidGrant("unknown refresh token"))?;
                if &state.client_id != client_id {
                    return Err(GrantError::InvalidGrant("refresh token was not issued to this client"));
                }
                if state.revoked.is_some() {
                    return Err(GrantError::InvalidGrant("grant revoked"));
                }
                if state.rotated_refresh_hashes.contains(token_hash) {
                    return Ok(vec![GrantRevoked { reason: RevocationReason::RefreshTokenReused }.into()]);
                }
                let current = state.refresh.as_ref().filter(|r| &r.token_hash == token_hash);
                let current = current.ok_or(GrantError::InvalidGrant("unknown refresh token"))?;
                if *now >= current.expires_at {
                    return Err(GrantError::InvalidGrant("refresh token expired"));
                }
                let narrowed = match scopes {
                    None => state.scopes.clone(),
                    Some(requested) if requested.iter().all(|s| state.scopes.contains(s)) => requested.clone(),
                    Some(_) => return Err(GrantError::InvalidScope),
                };
                Ok(vec![
                    RefreshTokenRotated {
                        previous_hash: token_hash.clone(),
                        token_hash: refresh.token_hash.clone(),
                        expires_at: refresh.expires_at,
                    }
                    .into(),
                    access_issued(GrantType::RefreshToken, state, &narrowed, access, *now).into(),
                ])
            }
            GrantCommand::Revoke { reason } => match &self.state {
                None => Err(GrantError::NotFound),
                Some(s) if s.revoked.is_some() => Ok(vec![]),
                Some(_) => Ok(vec![GrantRevoked { reason: *reason }.into()]),
            },
        }
    }

    fn apply(&mut self, event: &GrantEvent) {
        match event {
            GrantEvent::AuthorizationCodeIssued(e) => {
                self.state = Some(GrantState {
                    grant_type: GrantType::AuthorizationCode,
                    client_id: e.client_id.clone(),
                    subject: e.user_id.clone(),
                    user_id: Some(e.user_id.clone()),
                    scopes: e.scopes.clone(),
                    code: Some(CodeState {
                        code_hash: e.code_hash.clone(),
                        redirect_uri: e.redirect_uri.clone(),
                        code_challenge: e.code_challenge.clone(),
                        nonce: e.nonce.clone(),
                        auth_time: e.auth_time,
                        expires_at: e.expires_at,
                        redeemed: false,
                    }),
                    refresh: None,
                    rotated_refresh_hashes: vec![],
                    access_tokens: vec![],
                    revoked: None,
                })
            }
            GrantEvent::AuthorizationCodeRedeemed(_) => {
                if let Some(code) = self.state.as_mut().and_then(|s| s.code.as_mut()) {
                    code.redeemed = true;
                }
            }
            GrantEvent::AccessTokenIssued(e) => {
                let state = self.state.get_or_insert_with(|| GrantState {
                    grant_type: e.grant_type,
                    client_id: e.client_id.clone(),
                    subject: e.subject.clone(),
                    user_id: e.user_id.clone(),
                    scopes: e.scopes.clone(),
                    code: None,
                    refresh: None,
                    rotated_refresh_hashes: vec![],
                    access_tokens: vec![],
                    revoked: None,
                });
                state.access_tokens.push(NewAccessToken { jti: e.jti.clone(), expires_at: e.expires_at });
            }
            GrantEvent::RefreshTokenIssued(e) => {
                if let Some(s) = &mut self.state {
                    s.refresh = Some(RefreshState { token_hash: e.token_hash.clone(), expires_at: e.expires_at });
                }
            }
            GrantEvent::RefreshTokenRotated(e) => {
                if let Some(s) = &mut self.state {
                    s.rotated_refresh_hashes.push(e.previous_hash.clone());
                    s.refresh = Some(RefreshState { token_hash: e.token_hash.clone(), expires_at: e.expires_at });
                }
            }
            GrantEvent::GrantRevoked(e) => {
                if let Some(s) = &mut self.state {
                    s.revoked = Some(e.reason);
                }
            }
        }
    }
}

fn refresh_issued(r: &NewRefreshToken, client_id: &str, subject: &str, user_id: &Option<String>, scopes: &[String]) -> RefreshTokenIssued {
    RefreshTokenIssued {
        token_hash: r.token_hash.clone(),
        expires_at: r.expires_at,
        client_id: client_id.to_string(),
        subject: subject.to_string(),
        user_id: user_id.clone(),
        scopes: scopes.to_vec(),
    }
}

fn access_issued(
    grant_type: GrantType,
    state: &GrantState,
    scopes: &[String],
    access: &NewAccessToken,
    now: DateTime<Utc>,
) -> AccessTokenIssued {
    AccessTokenIssued {
        jti: access.jti.clone(),
        grant_type,
        client_id: state.client_id.clone(),
        subject: state.subject.clone(),
        user_id: state.user_id.clone(),
        scopes: scopes.to_vec(),
        issued_at: now,
        expires_at: access.expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).single().expect("valid time")
    }

    fn given(events: &[GrantEvent]) -> Grant {
        let mut g = Grant::default();
        events.iter().for_each(|e| g.apply(e));
        g
    }

    fn code_issued() -> GrantEvent {
        Grant::default()
            .decide(&GrantCommand::IssueAuthorizationCode {
                client_id: "c1".into(),
                user_id: "u1".into(),
                scopes: vec!["openid".into(), "profile".into()],
                code_hash: "code-hash".into(),
                redirect_uri: "https://app.example/cb".into(),
                code_challenge: CHALLENGE.into(),
                nonce: Some("n".into()),
                auth_time: t(0),
                expires_at: t(60),
            })
            .unwrap()
            .remove(0)
    }

    fn redeem(verifier: &str, at: i64) -> GrantCommand {
        GrantCommand::RedeemAuthorizationCode {
            code_hash: "code-hash".into(),
            client_id: "c1".into(),
            redirect_uri: "https://app.example/cb".into(),
            code_verifier: verifier.into(),
            access: NewAccessToken { jti: "at1".into(), expires_at: t(at + 600) },
            refresh: Some(NewRefreshToken { token_hash: "rt1".into(), expires_at: t(at + 86_400) }),
            now: t(at),
        }
    }

    fn rotate(presented: &str, new: &str, scopes: Option<Vec<String>>) -> GrantCommand {
        GrantCommand::RotateRefreshToken {
            token_hash: presented.into(),
            client_id: "c1".into(),
            scopes,
            access: NewAccessToken { jti: format!("at-{new}"), expires_at: t(1200) },
            refresh: NewRefreshToken { token_hash: new.into(), expires_at: t(90_000) },
            now: t(100),
        }
    }

    fn redeemed_history() -> Vec<GrantEvent> {
        let mut history = vec![code_issued()];
        history.extend(given(&history).decide(&redeem(VERIFIER, 10)).unwrap());
        history
    }

    #[test]
    fn code_needs_s256_challenge() {
        let cmd = GrantCommand::IssueAuthorizationCode {
            client_id: "c1".into(),
            user_id: "u1".into(),
            scopes: vec![],
            code_hash: "h".into(),
            redirect_uri: "https://app.example/cb".into(),
            code_challenge: "plain".into(),
            nonce: None,
            auth_time: t(0),
            expires_at: t(60),
        };
        assert!(matches!(Grant::default().decide(&cmd), Err(GrantError::InvalidRequest(_))));
        assert_eq!(given(&[code_issued()]).decide(&redeem(VERIFIER, 1)).map(|e| e.len()), Ok(3));
    }

    #[test]
    fn redeem_issues_access_and_refresh_tokens() {
        let events = given(&[code_issued()]).decide(&redeem(VERIFIER, 10)).unwrap();
        assert!(matches!(&events[0], GrantEvent::AuthorizationCodeRedeemed(_)));
        let GrantEvent::AccessTokenIssued(at) = &events[1] else { panic!("expected AccessTokenIssued") };
        assert_eq!((at.subject.as_str(), at.user_id.as_deref(), at.grant_type), ("u1", Some("u1"), GrantType::AuthorizationCode));
        assert_eq!(at.scopes, vec!["openid", "profile"]);
        assert!(matches!(&events[2], GrantEvent::RefreshTokenIssued(r) if r.token_hash == "rt1"));
    }

    #[test]
    fn invalid_redemptions_are_rejected_without_revoking() {
        let g = given(&redeemed_history());
        // A replay with a wrong verifier is invalid: no revocation (DoS vector).
        assert!(matches!(g.decide(&redeem(&VERIFIER.replace('d', "x"), 20)), Err(GrantError::InvalidGrant(_))));
        let g = given(&[code_issued()]);
        assert!(matches!(g.decide(&redeem(VERIFIER, 61)), Err(GrantError::InvalidGrant("code expired"))));
        let wrong_client = GrantCommand::RedeemAuthorizationCode {
            code_hash: "code-hash".into(),
            client_id: "other".into(),
            redirect_uri: "https://app.example/cb".into(),
            code_verifier: VERIFIER.into(),
            access: NewAccessToken { jti: "x".into(), expires_at: t(600) },
            refresh: None,
            now: t(1),
        };
        assert!(matches!(g.decide(&wrong_client), Err(GrantError::InvalidGrant(_))));
        let wrong_redirect = match redeem(VERIFIER, 1) {
            GrantCommand::RedeemAuthorizationCode { code_hash, client_id, code_verifier, access, refresh, now, .. } => {
                GrantCommand::RedeemAuthorizationCode {
                    code_hash,
                    client_id,
                    redirect_uri: "https://evil.example/cb".into(),
                    code_verifier,
                    access,
                    refresh,
                    now,
                }
            }
            other => other,
        };
        assert!(matches!(g.decide(&wrong_redirect), Err(GrantError::InvalidGrant(_))));
        assert!(matches!(Grant::default().decide(&redeem(VERIFIER, 1)), Err(GrantError::InvalidGrant(_))));
    }

    #[test]
    fn valid_replay_revokes_the_grant() {
        let g = given(&redeemed_history());
        assert_eq!(g.decide(&redeem(VERIFIER, 20)), Ok(vec![GrantRevoked { reason: RevocationReason::CodeReplayed }.into()]));
    }

    #[test]
    fn refresh_rotates_and_narrows_scope() {
        let history = redeemed_history();
        let events = given(&history).decide(&rotate("rt1", "rt2", Some(vec!["openid".into()]))).unwrap();
        assert!(matches!(&events[0], GrantEvent::RefreshTokenRotated(r) if r.previous_hash == "rt1" && r.token_hash == "rt2"));
        assert!(
            matches!(&events[1], GrantEvent::AccessTokenIssued(a) if a.scopes == vec!["openid"] && a.grant_type == GrantType::RefreshToken)
        );
        let g = given(&[history.clone(), events].concat());
        // The grant keeps its full scope: a later refresh may ask for all of it.
        assert!(g.decide(&rotate("rt2", "rt3", None)).is_ok());
        assert_eq!(given(&history).decide(&rotate("rt1", "rt2", Some(vec!["admin".into()]))), Err(GrantError::InvalidScope));
    }

    #[test]
    fn reused_refresh_token_revokes_the_grant() {
        let mut history = redeemed_history();
        history.extend(given(&history).decide(&rotate("rt1", "rt2", None)).unwrap());
        let g = given(&history);
        assert_eq!(g.decide(&rotate("rt1", "rt3", None)), Ok(vec![GrantRevoked { reason: RevocationReason::RefreshTokenReused }.into()]));
        history.push(GrantRevoked { reason: RevocationReason::RefreshTokenReused }.into());
        // After revocation even the newest refresh token is dead.
        assert!(matches!(given(&history).decide(&rotate("rt2", "rt3", None)), Err(GrantError::InvalidGrant("grant revoked"))));
    }

    #[test]
    fn unknown_or_foreign_refresh_tokens_are_invalid() {
        let g = given(&redeemed_history());
        assert!(matches!(g.decide(&rotate("nope", "rt2", None)), Err(GrantError::InvalidGrant(_))));
        let foreign = match rotate("rt1", "rt2", None) {
            GrantCommand::RotateRefreshToken { token_hash, scopes, access, refresh, now, .. } => {
                GrantCommand::RotateRefreshToken { token_hash, client_id: "c2".into(), scopes, access, refresh, now }
            }
            other => other,
        };
        assert!(matches!(g.decide(&foreign), Err(GrantError::InvalidGrant(_))));
    }

    #[test]
    fn client_credentials_open_a_grant_once() {
        let cmd = GrantCommand::IssueAccessToken {
            grant_type: GrantType::ClientCredentials,
            client_id: "svc".into(),
            subject: "svc".into(),
            user_id: None,
            scopes: vec!["api".into()],
            access: NewAccessToken { jti: "j".into(), expires_at: t(600) },
            refresh: None,
            now: t(0),
        };
        let events = Grant::default().decide(&cmd).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(given(&events).decide(&cmd), Err(GrantError::AlreadyExists));
    }

    #[test]
    fn revoke_is_idempotent() {
        let g = given(&redeemed_history());
        let events = g.decide(&GrantCommand::Revoke { reason: RevocationReason::RevokedByAdmin }).unwrap();
        assert_eq!(events.len(), 1);
        let g = given(&[redeemed_history(), events].concat());
        assert_eq!(g.decide(&GrantCommand::Revoke { reason: RevocationReason::RevokedByAdmin }), Ok(vec![]));
        assert_eq!(Grant::default().decide(&GrantCommand::Revoke { reason: RevocationReason::RevokedByAdmin }), Err(GrantError::NotFound));
    }
}
