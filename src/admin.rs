//! Administrative commands shared by the command line and the admin API.
//! Each issues domain commands (through the aggregate's actor where one
//! exists) and returns the aggregate as it now is, with anything the caller
//! must see once (a generated secret).

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::actors::{CommandError, Executed, Registry, load};
use crate::domain::client::{Client, ClientCommand, ClientError, ClientSettings, SigningAlg};
use crate::domain::consent::{Consent, ConsentCommand, ConsentError, consent_id};
use crate::domain::grant::{Grant, GrantCommand, GrantError, RevocationReason};
use crate::domain::name_claim::{NameClaim, NameClaimCommand, claim_id};
use crate::domain::signing_key::{SigningKey, SigningKeyCommand};
use crate::domain::user::{User, UserCommand, UserError, UserProfile};
use crate::domain::{Aggregate, DomainEvent};
use crate::eventstore::{CommandContext, EventStore, ExpectedVersion, NewEvent, StoreError, StreamWrite};
use crate::http::token::RESERVED_SCOPES;
use crate::keys::{MasterKey, random_token, sha256_hex};

/// Errors with a stable code for API clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Duplicate(String),
    #[error("{0}")]
    Disabled(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
}

impl AdminError {
    /// The `code` extension of a GraphQL error.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Invalid(_) => "INVALID_INPUT",
            AdminError::NotFound(_) => "NOT_FOUND",
            AdminError::Duplicate(_) => "DUPLICATE",
            AdminError::Disabled(_) => "DISABLED",
            AdminError::Conflict(_) => "CONFLICT",
            AdminError::Unavailable(_) => "UNAVAILABLE",
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { stream_id, .. } => AdminError::Conflict(format!("{stream_id} changed concurrently; retry")),
            other => AdminError::Unavailable(other.to_string()),
        }
    }
}

fn failed<E: std::error::Error>(e: CommandError<E>, rejected: impl FnOnce(E) -> AdminError) -> AdminError {
    match e {
        CommandError::Rejected(e) => rejected(e),
        CommandError::Conflict(m) => AdminError::Conflict(m),
        CommandError::Storage(e) => e.into(),
    }
}

fn client_error(e: ClientError) -> AdminError {
    match e {
        ClientError::NotFound => AdminError::NotFound("no such client".into()),
        ClientError::Invalid(m) => AdminError::Invalid(m),
        ClientError::Disabled | ClientError::AlreadyDisabled => AdminError::Disabled("the client is disabled: enable it first".into()),
        other => AdminError::Invalid(other.to_string()),
    }
}

fn user_error(e: UserError) -> AdminError {
    match e {
        UserError::NotFound => AdminError::NotFound("no such user".into()),
        UserError::Invalid(m) => AdminError::Invalid(m),
        UserError::AlreadyDisabled => AdminError::Disabled("the user is already disabled".into()),
        UserError::Disabled => AdminError::Disabled("the user is disabled: enable it first".into()),
        other => AdminError::Invalid(other.to_string()),
    }
}

/// The actors the admin commands go through.
#[derive(Clone)]
pub struct Admin {
    pub store: EventStore,
    pub clients: Registry<Client>,
    pub users: Registry<User>,
    pub consents: Registry<Consent>,
    pub grants: Registry<Grant>,
}

pub struct RegisteredClient {
    /// The aggregate id (`client-{id}`).
    pub id: String,
    pub client_id: String,
    /// Shown once; `None` for public clients.
    pub client_secret: Option<String>,
    pub client: Client,
}

/// How long an aggregate's actor outlives its last command. Most grants
/// see one command per token lifetime: a long stay only holds memory.
const IDLE: Duration = Duration::from_secs(10);

impl Admin {
    pub fn new(store: EventStore) -> Self {
        Admin {
            clients: Registry::new(store.clone(), IDLE),
            users: Registry::new(store.clone(), IDLE),
            consents: Registry::new(store.clone(), IDLE),
            grants: Registry::new(store.clone(), IDLE),
            store,
        }
    }

    pub async fn update_client(&self, id: &str, settings: ClientSettings, ctx: CommandContext) -> Result<Executed<Client>, AdminError> {
        reject_reserved(&settings)?;
        self.clients.execute(id, ClientCommand::Update(settings), ctx).await.map_err(|e| failed(e, client_error))
    }

    /// A new 256-bit secret; the old one stops working at once.
    pub async fn rotate_client_secret(&self, id: &str, ctx: CommandContext) -> Result<(Executed<Client>, String), AdminError> {
        let secret = random_token();
        let done = self
            .clients
            .execute(id, ClientCommand::RotateSecret { secret_hash: sha256_hex(&secret) }, ctx)
            .await
            .map_err(|e| failed(e, client_error))?;
        Ok((done, secret))
    }

    pub async fn set_client_disabled(&self, id: &str, disabled: bool, ctx: CommandContext) -> Result<Executed<Client>, AdminError> {
        let command = if disabled { ClientCommand::Disable } else { ClientCommand::Enable };
        match self.clients.execute(id, command, ctx).await {
            // Disabling a disabled client (or enabling an enabled one) changes nothing.
            Err(CommandError::Rejected(ClientError::AlreadyDisabled | ClientError::NotDisabled)) => {
                let (state, version) = load::<Client>(&self.store, &Client::stream_id(id), Client::default(), 0).await?;
                Ok(Executed { events: vec![], recorded: vec![], state, version })
            }
            other => other.map_err(|e| failed(e, client_error)),
        }
    }

    pub async fn set_user_password(&self, id: &str, password: &str, ctx: CommandContext) -> Result<Executed<User>, AdminError> {
        crate::passwords::acceptable(password).map_err(AdminError::Invalid)?;
        let password_hash = hash_off_thread(password).await?;
        self.users.execute(id, UserCommand::ChangePassword { password_hash }, ctx).await.map_err(|e| failed(e, user_error))
    }

    pub async fn set_user_disabled(&self, id: &str, disabled: bool, ctx: CommandContext) -> Result<Executed<User>, AdminError> {
        let command = if disabled { UserCommand::Disable } else { UserCommand::Enable };
        match self.users.execute(id, command, ctx).await {
            Err(CommandError::Rejected(UserError::AlreadyDisabled | UserError::NotDisabled)) => {
                let (state, version) = load::<User>(&self.store, &User::stream_id(id), User::default(), 0).await?;
                Ok(Executed { events: vec![], recorded: vec![], state, version })
            }
            other => other.map_err(|e| failed(e, user_error)),
        }
    }

    /// Renames and edits a user; a new username is claimed and the old one
    /// released in the same atomic append.
    pub async fn update_user(&self, id: &str, profile: UserProfile, ctx: CommandContext) -> Result<User, AdminError> {
        for _ in 0..5 {
            let stream = User::stream_id(id);
            let (user, version) = load::<User>(&self.store, &stream, User::default(), 0).await?;
            let Some(current) = user.registered.as_ref() else { return Err(AdminError::NotFound("no such user".into())) };
            let events = user.decide(&UserCommand::Update(profile.clone())).map_err(user_error)?;
            if events.is_empty() {
                return Ok(user);
            }
            let mut writes = vec![write(stream, ExpectedVersion::Exact(version), &events, &ctx)];
            let renamed = !current.profile.username.eq_ignore_ascii_case(profile.username.trim());
            if renamed {
                writes.push(
                    self.claim_write("username", &current.profile.username, id, NameClaimCommand::Release { owner: id.into() }, &ctx)
                        .await?,
                );
                writes.push(
                    self.claim_write(
                        "username",
                        profile.username.trim(),
                        id,
                        NameClaimCommand::Claim { kind: "username".into(), name: profile.username.trim().into(), owner: id.into() },
                        &ctx,
                    )
                    .await?,
                );
            }
            match self.store.append(writes).await {
                Ok(_) => {
                    let mut user = user;
                    events.iter().for_each(|e| user.apply(e));
                    return Ok(user);
                }
                Err(StoreError::Conflict { stream_id, .. }) if stream_id.starts_with("name-") && renamed => {
                    return Err(AdminError::Duplicate(format!("username {:?} is already taken", profile.username.trim())));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AdminError::Conflict("the user kept changing; retry".into()))
    }

    /// The write that applies `command` to the claim on `name`, expecting
    /// the claim stream as it is now.
    async fn claim_write(
        &self,
        kind: &str,
        name: &str,
        owner: &str,
        command: NameClaimCommand,
        ctx: &CommandContext,
    ) -> Result<StreamWrite, AdminError> {
        let stream = NameClaim::stream_id(&claim_id(kind, name));
        let (claim, version) = load::<NameClaim>(&self.store, &stream, NameClaim::default(), 0).await?;
        let events = claim.decide(&command).map_err(|e| match e {
            crate::domain::name_claim::NameClaimError::Taken { .. } => AdminError::Duplicate(format!("{kind} {name:?} is already taken")),
            other => AdminError::Invalid(format!("{other} ({owner})")),
        })?;
        Ok(write(stream, ExpectedVersion::from_loaded(version), &events, ctx))
    }

    /// Registers a client with a generated 256-bit secret (confidential
    /// clients), claiming its client_id in the same append.
    pub async fn register_client(
        &self,
        client_id: Option<String>,
        settings: ClientSettings,
        confidential: bool,
        ctx: &CommandContext,
    ) -> Result<RegisteredClient, AdminError> {
        register_client(&self.store, client_id, settings, confidential, ctx).await
    }

    pub async fn register_user(&self, profile: UserProfile, password: &str, ctx: &CommandContext) -> Result<(String, User), AdminError> {
        register_user_with_state(&self.store, profile, password, ctx).await
    }

    /// Revokes the consent and every grant of that user for that client.
    pub async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        grants_of: impl AsyncFnOnce() -> Result<Vec<String>, AdminError>,
        ctx: CommandContext,
    ) -> Result<Consent, AdminError> {
        let done = self.consents.execute(&consent_id(user_id, client_id), ConsentCommand::Revoke, ctx.clone()).await.map_err(|e| {
            failed(e, |e| match e {
                ConsentError::NotGranted => AdminError::NotFound("no consent is in force for this user and client".into()),
                other => AdminError::Invalid(other.to_string()),
            })
        })?;
        for grant_id in grants_of().await? {
            self.revoke_grant(&grant_id, RevocationReason::ConsentRevoked, ctx.clone()).await?;
        }
        Ok(done.state)
    }

    pub async fn revoke_grant(&self, grant_id: &str, reason: RevocationReason, ctx: CommandContext) -> Result<Grant, AdminError> {
        let done = self.grants.execute(grant_id, GrantCommand::Revoke { reason }, ctx).await.map_err(|e| {
            failed(e, |e| match e {
                GrantError::NotFound => AdminError::NotFound("no such grant".into()),
                other => AdminError::Invalid(other.to_string()),
            })
        })?;
        Ok(done.state)
    }

    /// Generates and activates a new key for `alg`; the key it replaces is
    /// retired but stays published until the tokens it signed have expired.
    pub async fn rotate_signing_key(
        &self,
        master: &MasterKey,
        alg: SigningAlg,
        active_kid: Option<String>,
        verify_for: chrono::Duration,
        ctx: &CommandContext,
    ) -> Result<(String, SigningKey), AdminError> {
        let generated = match alg {
            SigningAlg::EdDSA => crate::keys::generate_ed25519(master),
            SigningAlg::RS256 => crate::keys::generate_rsa(master),
        };
        let events = crate::setup::activated_key_events(&generated, alg).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let mut key = SigningKey::default();
        events.iter().for_each(|e| key.apply(e));
        let mut writes = vec![write(SigningKey::stream_id(&generated.kid), ExpectedVersion::NoStream, &events, ctx)];
        if let Some(old) = active_kid {
            let stream = SigningKey::stream_id(&old);
            let (state, version) = load::<SigningKey>(&self.store, &stream, SigningKey::default(), 0).await?;
            let retire = state
                .decide(&SigningKeyCommand::Retire { verify_until: Utc::now() + verify_for })
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            writes.push(write(stream, ExpectedVersion::Exact(version), &retire, ctx));
        }
        self.store.append(writes).await?;
        Ok((generated.kid, key))
    }
}

/// Argon2id takes tens of milliseconds: never on a request thread.
async fn hash_off_thread(password: &str) -> Result<String, AdminError> {
    crate::passwords::hash_off_thread(password.to_string()).await.map_err(AdminError::Invalid)
}

fn reject_reserved(settings: &ClientSettings) -> Result<(), AdminError> {
    match settings.scopes.iter().find(|s| RESERVED_SCOPES.contains(&s.as_str())) {
        Some(scope) => Err(AdminError::Invalid(format!("scope {scope} is reserved for the admin client"))),
        None => Ok(()),
    }
}

fn write<E: DomainEvent>(stream_id: String, expected: ExpectedVersion, events: &[E], ctx: &CommandContext) -> StreamWrite {
    StreamWrite { stream_id, expected, events: events.iter().map(|e| NewEvent::from_domain(e, ctx)).collect() }
}

/// Decides a registration on a fresh aggregate and appends it together with
/// the claim on its unique name: both land or neither does.
async fn register_with_claim<A: Aggregate>(
    store: &EventStore,
    id: &str,
    command: &A::Command,
    kind: &str,
    name: &str,
    ctx: &CommandContext,
) -> Result<A, AdminError>
where
    A::Error: Into<AdminError>,
{
    let state = A::default();
    let events = state.decide(command).map_err(Into::into)?;
    let claim_stream = NameClaim::stream_id(&claim_id(kind, name));
    for _ in 0..5 {
        let (claim, version) = load::<NameClaim>(store, &claim_stream, NameClaim::default(), 0).await?;
        let claimed = claim
            .decide(&NameClaimCommand::Claim { kind: kind.into(), name: name.into(), owner: id.into() })
            .map_err(|_| AdminError::Duplicate(format!("{kind} {name:?} is already taken")))?;
        let writes = vec![
            write(A::stream_id(id), ExpectedVersion::NoStream, &events, ctx),
            write(claim_stream.clone(), ExpectedVersion::from_loaded(version), &claimed, ctx),
        ];
        match store.append(writes).await {
            Ok(_) => {
                let mut state = state;
                events.iter().for_each(|e| state.apply(e));
                return Ok(state);
            }
            // Someone claimed or released the name meanwhile: decide again.
            Err(StoreError::Conflict { stream_id, .. }) if stream_id == claim_stream => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AdminError::Conflict(format!("{kind} {name:?} kept changing; retry")))
}

impl From<ClientError> for AdminError {
    fn from(e: ClientError) -> Self {
        client_error(e)
    }
}

impl From<UserError> for AdminError {
    fn from(e: UserError) -> Self {
        user_error(e)
    }
}

/// Registers a client (see [`Admin::register_client`]).
pub async fn register_client(
    store: &EventStore,
    client_id: Option<String>,
    settings: ClientSettings,
    confidential: bool,
    ctx: &CommandContext,
) -> Result<RegisteredClient, AdminError> {
    reject_reserved(&settings)?;
    let id = Uuid::new_v4().to_string();
    let client_id = client_id.unwrap_or_else(|| id.clone());
    // `init` registers the admin client without a name claim: its client_id
    // is taken all the same.
    if crate::setup::installation(store).await?.is_some_and(|admin| admin.to_lowercase() == client_id.trim().to_lowercase()) {
        return Err(AdminError::Duplicate(format!("client_id {client_id:?} is already taken")));
    }
    let secret = confidential.then(random_token);
    let command =
        ClientCommand::Register { client_id: client_id.clone(), settings, confidential, secret_hash: secret.as_deref().map(sha256_hex) };
    let client = register_with_claim::<Client>(store, &id, &command, "client_id", &client_id, ctx).await?;
    Ok(RegisteredClient { id, client_id, client_secret: secret, client })
}

/// Registers a user, claiming the username in the same append; the
/// password is hashed with Argon2id here.
pub async fn register_user(store: &EventStore, profile: UserProfile, password: &str, ctx: &CommandContext) -> Result<String, AdminError> {
    Ok(register_user_with_state(store, profile, password, ctx).await?.0)
}

async fn register_user_with_state(
    store: &EventStore,
    profile: UserProfile,
    password: &str,
    ctx: &CommandContext,
) -> Result<(String, User), AdminError> {
    crate::passwords::acceptable(password).map_err(AdminError::Invalid)?;
    let password_hash = hash_off_thread(password).await?;
    let id = Uuid::new_v4().to_string();
    let username = profile.username.trim().to_string();
    let command = UserCommand::Register { profile, password_hash };
    let user = register_with_claim::<User>(store, &id, &command, "username", &username, ctx).await?;
    Ok((id, user))
}
