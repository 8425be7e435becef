//! Administrative commands shared by the command line and the admin API:
//! each issues a domain command and returns what the caller must see once.

use uuid::Uuid;

use crate::actors::{CommandError, execute_new};
use crate::domain::client::{Client, ClientCommand, ClientError, ClientSettings};
use crate::domain::user::{User, UserCommand, UserError, UserProfile};
use crate::eventstore::{CommandContext, EventStore};
use crate::http::token::RESERVED_SCOPES;
use crate::keys::{random_token, sha256_hex};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Client(#[from] CommandError<ClientError>),
    #[error("{0}")]
    User(#[from] CommandError<UserError>),
}

pub struct RegisteredClient {
    /// The aggregate id (`client-{id}`).
    pub id: String,
    pub client_id: String,
    /// Shown once; `None` for public clients.
    pub client_secret: Option<String>,
}

/// Registers a client with a generated 256-bit secret (confidential clients).
pub async fn register_client(
    store: &EventStore,
    client_id: Option<String>,
    settings: ClientSettings,
    confidential: bool,
    context: &CommandContext,
) -> Result<RegisteredClient, AdminError> {
    if let Some(scope) = settings.scopes.iter().find(|s| RESERVED_SCOPES.contains(&s.as_str())) {
        return Err(AdminError::Invalid(format!("scope {scope} is reserved for the admin client")));
    }
    let id = Uuid::new_v4().to_string();
    let client_id = client_id.unwrap_or_else(|| id.clone());
    let secret = confidential.then(random_token);
    let command =
        ClientCommand::Register { client_id: client_id.clone(), settings, confidential, secret_hash: secret.as_deref().map(sha256_hex) };
    execute_new::<Client>(store, &id, &command, context).await?;
    Ok(RegisteredClient { id, client_id, client_secret: secret })
}

/// Registers a user; the password is hashed with Argon2id here.
pub async fn register_user(
    store: &EventStore,
    profile: UserProfile,
    password: &str,
    context: &CommandContext,
) -> Result<String, AdminError> {
    crate::passwords::acceptable(password).map_err(AdminError::Invalid)?;
    let password_hash = crate::passwords::hash(password).map_err(AdminError::Invalid)?;
    let id = Uuid::new_v4().to_string();
    execute_new::<User>(store, &id, &UserCommand::Register { profile, password_hash }, context).await?;
    Ok(id)
}
