//! Installation aggregate (stream `installation-grantd`): records that `init`
//! ran, in the same atomic append as the first key and the admin client, so
//! that two nodes starting on one empty database cannot both initialise it.

use serde::{Deserialize, Serialize};

use super::{Aggregate, domain_events};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallationInitialized {
    pub admin_client_id: String,
    pub signing_key_id: String,
}

domain_events!(InstallationEvent { InstallationInitialized = 1 });

#[derive(Debug, Clone)]
pub enum InstallationCommand {
    Initialize { admin_client_id: String, signing_key_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallationError {
    #[error("grantd is already initialised")]
    AlreadyInitialized,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Installation {
    pub initialized: Option<InstallationInitialized>,
}

/// The one installation stream's id part.
pub const INSTALLATION_ID: &str = "grantd";

impl Aggregate for Installation {
    type Command = InstallationCommand;
    type Event = InstallationEvent;
    type Error = InstallationError;
    const STREAM_PREFIX: &'static str = "installation";

    fn decide(&self, command: &InstallationCommand) -> Result<Vec<InstallationEvent>, InstallationError> {
        match command {
            InstallationCommand::Initialize { .. } if self.initialized.is_some() => Err(InstallationError::AlreadyInitialized),
            InstallationCommand::Initialize { admin_client_id, signing_key_id } => Ok(vec![
                InstallationInitialized { admin_client_id: admin_client_id.clone(), signing_key_id: signing_key_id.clone() }.into(),
            ]),
        }
    }

    fn apply(&mut self, event: &InstallationEvent) {
        let InstallationEvent::InstallationInitialized(e) = event;
        self.initialized = Some(e.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialises_once() {
        let cmd = InstallationCommand::Initialize { admin_client_id: "admin".into(), signing_key_id: "k1".into() };
        let events = Installation::default().decide(&cmd).unwrap();
        assert_eq!(events.len(), 1);
        let mut state = Installation::default();
        state.apply(&events[0]);
        assert_eq!(state.decide(&cmd), Err(InstallationError::AlreadyInitialized));
    }
}
