//! Consent aggregate (`consent-{user}-{client}`): what a user allowed a client.

use serde::{Deserialize, Serialize};

use super::{Aggregate, domain_events, normalize_scopes};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentGranted {
    pub user_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentScopesExtended {
    /// The scopes this consent did not cover before.
    pub added: Vec<String>,
    /// Every scope the consent covers now.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentRevoked {
    /// The scopes that were withdrawn.
    pub scopes: Vec<String>,
}

domain_events!(ConsentEvent {
    ConsentGranted = 1,
    ConsentScopesExtended = 1,
    ConsentRevoked = 1,
});

#[derive(Debug, Clone)]
pub enum ConsentCommand {
    /// The user approved these scopes for the client.
    Grant {
        user_id: String,
        client_id: String,
        scopes: Vec<String>,
    },
    Revoke,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("no consent is in force")]
    NotGranted,
    #[error("a consent needs at least one scope")]
    NoScopes,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consent {
    /// The scopes in force; `None` when never granted or revoked.
    pub scopes: Option<Vec<String>>,
}

impl Consent {
    /// Whether the consent in force covers every one of `scopes`.
    pub fn covers(&self, scopes: &[String]) -> bool {
        self.scopes.as_ref().is_some_and(|have| scopes.iter().all(|s| have.contains(s)))
    }
}

impl Aggregate for Consent {
    type Command = ConsentCommand;
    type Event = ConsentEvent;
    type Error = ConsentError;
    const STREAM_PREFIX: &'static str = "consent";

    fn decide(&self, command: &ConsentCommand) -> Result<Vec<ConsentEvent>, ConsentError> {
        match command {
            ConsentCommand::Grant { user_id, client_id, scopes } => {
                let scopes = normalize_scopes(scopes);
                if scopes.is_empty() {
                    return Err(ConsentError::NoScopes);
                }
                match &self.scopes {
                    None => Ok(vec![ConsentGranted { user_id: user_id.clone(), client_id: client_id.clone(), scopes }.into()]),
                    Some(have) => {
                        let added: Vec<String> = scopes.iter().filter(|s| !have.contains(s)).cloned().collect();
                        if added.is_empty() {
                            return Ok(vec![]);
                        }
                        let all = normalize_scopes(have.iter().chain(added.iter()));
                        Ok(vec![ConsentScopesExtended { added, scopes: all }.into()])
                    }
                }
            }
            ConsentCommand::Revoke => match &self.scopes {
                None => Err(ConsentError::NotGranted),
                Some(have) => Ok(vec![ConsentRevoked { scopes: have.clone() }.into()]),
            },
        }
    }

    fn apply(&mut self, event: &ConsentEvent) {
        match event {
            ConsentEvent::ConsentGranted(e) => self.scopes = Some(e.scopes.clone()),
            ConsentEvent::ConsentScopesExtended(e) => self.scopes = Some(e.scopes.clone()),
            ConsentEvent::ConsentRevoked(_) => self.scopes = None,
        }
    }
}

/// The stream id part for a user and client pair. User ids are hyphenated
/// UUIDs (36 characters), so the pair splits back unambiguously even when the
/// client id contains hyphens.
pub fn consent_id(user_id: &str, client_id: &str) -> String {
    format!("{user_id}-{client_id}")
}

/// Splits a consent id back into (user id, client id).
pub fn parse_consent_id(id: &str) -> Option<(&str, &str)> {
    let user = id.get(..36)?;
    let client = id.get(36..)?.strip_prefix('-')?;
    (uuid::Uuid::parse_str(user).is_ok() && !client.is_empty()).then_some((user, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(scopes: &[&str]) -> ConsentCommand {
        ConsentCommand::Grant { user_id: "u1".into(), client_id: "c1".into(), scopes: scopes.iter().map(|s| s.to_string()).collect() }
    }

    fn given(events: &[ConsentEvent]) -> Consent {
        let mut c = Consent::default();
        events.iter().for_each(|e| c.apply(e));
        c
    }

    #[test]
    fn first_grant_records_consent() {
        let events = Consent::default().decide(&grant(&["profile", "openid"])).unwrap();
        assert_eq!(
            events,
            vec![ConsentGranted { user_id: "u1".into(), client_id: "c1".into(), scopes: vec!["openid".into(), "profile".into()] }.into()]
        );
    }

    #[test]
    fn grant_without_scopes_is_rejected() {
        assert_eq!(Consent::default().decide(&grant(&[])), Err(ConsentError::NoScopes));
    }

    #[test]
    fn asking_no_new_scope_records_nothing() {
        let c = given(&Consent::default().decide(&grant(&["openid", "profile"])).unwrap());
        assert_eq!(c.decide(&grant(&["openid"])), Ok(vec![]));
        assert!(c.covers(&["openid".into()]));
        assert!(!c.covers(&["email".into()]));
    }

    #[test]
    fn new_scope_extends() {
        let first = Consent::default().decide(&grant(&["openid"])).unwrap();
        let c = given(&first);
        let events = c.decide(&grant(&["openid", "email"])).unwrap();
        assert_eq!(
            events,
            vec![ConsentScopesExtended { added: vec!["email".into()], scopes: vec!["email".into(), "openid".into()] }.into()]
        );
    }

    #[test]
    fn revoke_then_grant_again() {
        let first = Consent::default().decide(&grant(&["openid"])).unwrap();
        let c = given(&first);
        let revoked = c.decide(&ConsentCommand::Revoke).unwrap();
        assert_eq!(revoked, vec![ConsentRevoked { scopes: vec!["openid".into()] }.into()]);
        let c = given(&[first, revoked].concat());
        assert_eq!(c.decide(&ConsentCommand::Revoke), Err(ConsentError::NotGranted));
        assert!(matches!(c.decide(&grant(&["openid"])).unwrap()[0], ConsentEvent::ConsentGranted(_)));
    }

    #[test]
    fn consent_ids_split_back_into_user_and_client() {
        let user = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
        assert_eq!(parse_consent_id(&consent_id(user, "my-app")), Some((user, "my-app")));
        assert_eq!(parse_consent_id("not-a-uuid-at-all-but-long-enough-xx-app"), None);
    }

    #[test]
    fn revoke_without_consent_is_rejected() {
        assert_eq!(Consent::default().decide(&ConsentCommand::Revoke), Err(ConsentError::NotGranted));
    }
}
