//! NameClaim aggregate (`name-{kind}:{name}`): who holds a name that must be
//! unique — a username, an OAuth client_id. Claiming is appended in the same
//! atomic write as the registration, so two concurrent registrations of one
//! name cannot both succeed: the second append finds the claim stream moved.

use serde::{Deserialize, Serialize};

use super::{Aggregate, domain_events};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameClaimed {
    /// `username` or `client_id`.
    pub kind: String,
    pub name: String,
    /// The aggregate id of the holder.
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameReleased {
    pub kind: String,
    pub name: String,
    pub owner: String,
}

domain_events!(NameClaimEvent { NameClaimed = 1, NameReleased = 1 });

#[derive(Debug, Clone)]
pub enum NameClaimCommand {
    Claim { kind: String, name: String, owner: String },
    Release { owner: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameClaimError {
    #[error("{kind} {name:?} is already taken")]
    Taken { kind: String, name: String },
    #[error("the name is not held by this owner")]
    NotHolder,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameClaim {
    /// (kind, name, owner) while claimed.
    pub holder: Option<(String, String, String)>,
}

/// The claim id part for a unique name; names compare case-insensitively.
pub fn claim_id(kind: &str, name: &str) -> String {
    format!("{kind}:{}", name.to_lowercase())
}

impl Aggregate for NameClaim {
    type Command = NameClaimCommand;
    type Event = NameClaimEvent;
    type Error = NameClaimError;
    const STREAM_PREFIX: &'static str = "name";

    fn decide(&self, command: &NameClaimCommand) -> Result<Vec<NameClaimEvent>, NameClaimError> {
        match (command, &self.holder) {
            (NameClaimCommand::Claim { kind, name, owner }, Some((_, _, holder))) if holder != owner => {
                Err(NameClaimError::Taken { kind: kind.clone(), name: name.clone() })
            }
            (NameClaimCommand::Claim { .. }, Some(_)) => Ok(vec![]),
            (NameClaimCommand::Claim { kind, name, owner }, None) => {
                Ok(vec![NameClaimed { kind: kind.clone(), name: name.clone(), owner: owner.clone() }.into()])
            }
            (NameClaimCommand::Release { owner }, Some((kind, name, holder))) if holder == owner => {
                Ok(vec![NameReleased { kind: kind.clone(), name: name.clone(), owner: owner.clone() }.into()])
            }
            (NameClaimCommand::Release { .. }, _) => Err(NameClaimError::NotHolder),
        }
    }

    fn apply(&mut self, event: &NameClaimEvent) {
        match event {
            NameClaimEvent::NameClaimed(e) => self.holder = Some((e.kind.clone(), e.name.clone(), e.owner.clone())),
            NameClaimEvent::NameReleased(_) => self.holder = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(owner: &str) -> NameClaimCommand {
        NameClaimCommand::Claim { kind: "username".into(), name: "Alice".into(), owner: owner.into() }
    }

    #[test]
    fn a_name_has_one_holder_until_released() {
        let events = NameClaim::default().decide(&claim("u1")).unwrap();
        let mut state = NameClaim::default();
        state.apply(&events[0]);
        assert!(matches!(state.decide(&claim("u2")), Err(NameClaimError::Taken { .. })));
        assert_eq!(state.decide(&claim("u1")), Ok(vec![]), "claiming one's own name again is a no-op");
        assert_eq!(state.decide(&NameClaimCommand::Release { owner: "u2".into() }), Err(NameClaimError::NotHolder));
        let released = state.decide(&NameClaimCommand::Release { owner: "u1".into() }).unwrap();
        state.apply(&released[0]);
        assert!(state.decide(&claim("u2")).is_ok());
        assert_eq!(NameClaim::default().decide(&NameClaimCommand::Release { owner: "u1".into() }), Err(NameClaimError::NotHolder));
    }

    #[test]
    fn claim_ids_ignore_case() {
        assert_eq!(claim_id("username", "Alice"), claim_id("username", "alice"));
    }
}
