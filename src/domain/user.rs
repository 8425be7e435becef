//! User aggregate (`user-{uuid}`): a person who signs in. The user id is the
//! `sub` of that user's tokens.

use serde::{Deserialize, Serialize};

use super::{Aggregate, domain_events};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Argon2id PHC string; never the password.
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPasswordChanged {
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDisabled {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEnabled {}

domain_events!(UserEvent {
    UserRegistered = 1,
    UserUpdated = 1,
    UserPasswordChanged = 1,
    UserDisabled = 1,
    UserEnabled = 1,
});

#[derive(Debug, Clone, PartialEq)]
pub struct UserProfile {
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub enum UserCommand {
    Register { profile: UserProfile, password_hash: String },
    Update(UserProfile),
    ChangePassword { password_hash: String },
    Disable,
    Enable,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user already registered")]
    AlreadyRegistered,
    #[error("user not found")]
    NotFound,
    #[error("user is already disabled")]
    AlreadyDisabled,
    #[error("user is not disabled")]
    NotDisabled,
    #[error("user is disabled")]
    Disabled,
    #[error("invalid user: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct User {
    pub registered: Option<RegisteredUser>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredUser {
    pub profile: UserProfile,
    pub password_hash: String,
    pub disabled: bool,
}

impl Aggregate for User {
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    const STREAM_PREFIX: &'static str = "user";

    fn decide(&self, command: &UserCommand) -> Result<Vec<UserEvent>, UserError> {
        match (command, &self.registered) {
            (UserCommand::Register { .. }, Some(_)) => Err(UserError::AlreadyRegistered),
            (UserCommand::Register { profile, password_hash }, None) => {
                let profile = validate_profile(profile)?;
                Ok(vec![
                    UserRegistered {
                        username: profile.username,
                        email: profile.email,
                        name: profile.name,
                        password_hash: password_hash.clone(),
                    }
                    .into(),
                ])
            }
            (_, None) => Err(UserError::NotFound),
            // A disabled user is frozen until enabled again.
            (UserCommand::Update(_) | UserCommand::ChangePassword { .. }, Some(u)) if u.disabled => Err(UserError::Disabled),
            (UserCommand::Update(profile), Some(u)) => {
                let profile = validate_profile(profile)?;
                if profile == u.profile {
                    return Ok(vec![]);
                }
                Ok(vec![UserUpdated { username: profile.username, email: profile.email, name: profile.name }.into()])
            }
            (UserCommand::ChangePassword { password_hash }, Some(_)) => {
                Ok(vec![UserPasswordChanged { password_hash: password_hash.clone() }.into()])
            }
            (UserCommand::Disable, Some(u)) if u.disabled => Err(UserError::AlreadyDisabled),
            (UserCommand::Disable, Some(_)) => Ok(vec![UserDisabled {}.into()]),
            (UserCommand::Enable, Some(u)) if !u.disabled => Err(UserError::NotDisabled),
            (UserCommand::Enable, Some(_)) => Ok(vec![UserEnabled {}.into()]),
        }
    }

    fn apply(&mut self, event: &UserEvent) {
        match event {
            UserEvent::UserRegistered(e) => {
                self.registered = Some(RegisteredUser {
                    profile: UserProfile { username: e.username.clone(), email: e.email.clone(), name: e.name.clone() },
                    password_hash: e.password_hash.clone(),
                    disabled: false,
                })
            }
            UserEvent::UserUpdated(e) => {
                if let Some(u) = &mut self.registered {
                    u.profile = UserProfile { username: e.username.clone(), email: e.email.clone(), name: e.name.clone() };
                }
            }
            UserEvent::UserPasswordChanged(e) => {
                if let Some(u) = &mut self.registered {
                    u.password_hash = e.password_hash.clone();
                }
            }
            UserEvent::UserDisabled(_) => {
                if let Some(u) = &mut self.registered {
                    u.disabled = true;
                }
            }
            UserEvent::UserEnabled(_) => {
                if let Some(u) = &mut self.registered {
                    u.disabled = false;
                }
            }
        }
    }
}

fn validate_profile(profile: &UserProfile) -> Result<UserProfile, UserError> {
    let username = profile.username.trim();
    if username.is_empty() || username.len() > 128 || username.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UserError::Invalid("username must be 1 to 128 characters without spaces".into()));
    }
    let email = profile.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    if let Some(e) = email {
        let valid =
            e.len() <= 254 && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !e.contains(char::is_whitespace));
        if !valid {
            return Err(UserError::Invalid(format!("email {e:?} is not an address")));
        }
    }
    let name = profile.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    Ok(UserProfile { username: username.to_string(), email: email.map(str::to_string), name: name.map(str::to_string) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> UserProfile {
        UserProfile { username: "alice".into(), email: Some("alice@example.com".into()), name: Some("Alice".into()) }
    }

    fn given(events: &[UserEvent]) -> User {
        let mut u = User::default();
        events.iter().for_each(|e| u.apply(e));
        u
    }

    fn registered() -> UserEvent {
        User::default().decide(&UserCommand::Register { profile: profile(), password_hash: "$argon2id$x".into() }).unwrap().remove(0)
    }

    #[test]
    fn register_then_register_again_is_rejected() {
        let e = registered();
        assert!(matches!(&e, UserEvent::UserRegistered(r) if r.username == "alice"));
        let u = given(&[e]);
        assert_eq!(u.decide(&UserCommand::Register { profile: profile(), password_hash: "h".into() }), Err(UserError::AlreadyRegistered));
    }

    #[test]
    fn invalid_profiles_are_rejected() {
        for p in [
            UserProfile { username: "".into(), ..profile() },
            UserProfile { username: "a b".into(), ..profile() },
            UserProfile { email: Some("not-an-address".into()), ..profile() },
        ] {
            let r = User::default().decide(&UserCommand::Register { profile: p, password_hash: "h".into() });
            assert!(matches!(r, Err(UserError::Invalid(_))));
        }
    }

    #[test]
    fn unknown_user_is_not_found() {
        assert_eq!(User::default().decide(&UserCommand::Disable), Err(UserError::NotFound));
        assert_eq!(User::default().decide(&UserCommand::ChangePassword { password_hash: "h".into() }), Err(UserError::NotFound));
    }

    #[test]
    fn update_only_when_changed() {
        let u = given(&[registered()]);
        assert_eq!(u.decide(&UserCommand::Update(profile())), Ok(vec![]));
        let events = u.decide(&UserCommand::Update(UserProfile { name: Some("Alice B".into()), ..profile() })).unwrap();
        let u = given(&[registered(), events[0].clone()]);
        assert_eq!(u.registered.unwrap().profile.name.as_deref(), Some("Alice B"));
    }

    #[test]
    fn password_change_and_disable_enable() {
        let u = given(&[registered()]);
        let e = u.decide(&UserCommand::ChangePassword { password_hash: "new".into() }).unwrap().remove(0);
        let u = given(&[registered(), e.clone()]);
        assert_eq!(u.registered.as_ref().unwrap().password_hash, "new");
        assert_eq!(u.decide(&UserCommand::Enable), Err(UserError::NotDisabled));
        let d = u.decide(&UserCommand::Disable).unwrap().remove(0);
        let u = given(&[registered(), e, d]);
        assert_eq!(u.decide(&UserCommand::Disable), Err(UserError::AlreadyDisabled));
        assert_eq!(u.decide(&UserCommand::ChangePassword { password_hash: "h".into() }), Err(UserError::Disabled));
        assert_eq!(u.decide(&UserCommand::Update(profile())), Err(UserError::Disabled));
        assert_eq!(u.decide(&UserCommand::Enable), Ok(vec![UserEnabled {}.into()]));
    }
}
