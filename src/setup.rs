//! `grantd init`: the first signing key, the admin client and the
//! installation record, appended atomically.

use uuid::Uuid;

use crate::domain::client::{Client, ClientCommand, ClientSettings, GrantType, SigningAlg};
use crate::domain::installation::{INSTALLATION_ID, Installation, InstallationCommand};
use crate::domain::name_claim::{NameClaim, NameClaimCommand, claim_id};
use crate::domain::signing_key::{SigningKey, SigningKeyCommand, SigningKeyEvent};
use crate::domain::{Actor, ActorKind, Aggregate, DomainEvent};
use crate::eventstore::{CommandContext, EventStore, ExpectedVersion, NewEvent, StoreError, StreamWrite};
use crate::keys::{GeneratedKey, MasterKey, generate_ed25519, generate_rsa, random_token, sha256_hex};

/// The admin client's id unless `--admin-client-id` says otherwise.
pub const DEFAULT_ADMIN_CLIENT_ID: &str = "grantd-admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    Initialized {
        admin_client_id: String,
        /// Present when grantd generated the secret: shown once, never stored.
        generated_secret: Option<String>,
        signing_key_id: String,
    },
    AlreadyInitialized {
        admin_client_id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("invalid admin client: {0}")]
    Invalid(String),
}

/// Whether `init` has run on this log.
pub async fn installation(store: &EventStore) -> Result<Option<String>, StoreError> {
    let stream = Installation::stream_id(INSTALLATION_ID);
    let mut state = Installation::default();
    for e in store.read_stream(&stream, 1).await? {
        state.apply(&e.decode()?);
    }
    Ok(state.initialized.map(|i| i.admin_client_id))
}

/// Initialises an empty log; on an initialised one changes nothing.
pub async fn initialize(
    store: &EventStore,
    master: &MasterKey,
    admin_client_id: Option<String>,
    admin_client_secret: Option<String>,
) -> Result<InitOutcome, SetupError> {
    if let Some(admin_client_id) = installation(store).await? {
        return Ok(InitOutcome::AlreadyInitialized { admin_client_id });
    }
    let admin_client_id = admin_client_id.unwrap_or_else(|| DEFAULT_ADMIN_CLIENT_ID.to_string());
    let generated_secret = admin_client_secret.is_none().then(random_token);
    let secret = admin_client_secret.or_else(|| generated_secret.clone()).unwrap_or_default();
    if secret.len() < 16 {
        return Err(SetupError::Invalid("the admin client secret must be at least 16 characters".into()));
    }
    let context = CommandContext::by(Actor { kind: ActorKind::System, id: "grantd init".into() });

    let key = generate_ed25519(master);
    let rsa = generate_rsa(master);

    let client_events = Client::default()
        .decide(&ClientCommand::Register {
            client_id: admin_client_id.clone(),
            settings: ClientSettings {
                name: "grantd admin".into(),
                redirect_uris: vec![],
                grant_types: vec![GrantType::ClientCredentials],
                scopes: vec!["admin".into(), "audit".into()],
                first_party: true,
                id_token_signed_response_alg: SigningAlg::EdDSA,
            },
            confidential: true,
            secret_hash: Some(sha256_hex(&secret)),
        })
        .map_err(|e| SetupError::Invalid(e.to_string()))?;

    let client_aggregate = Uuid::new_v4().to_string();
    let installation_events = Installation::default()
        .decide(&InstallationCommand::Initialize { admin_client_id: admin_client_id.clone(), signing_key_id: key.kid.clone() })
        .map_err(|e| SetupError::Invalid(e.to_string()))?;

    let claim = NameClaim::default()
        .decide(&NameClaimCommand::Claim { kind: "client_id".into(), name: admin_client_id.clone(), owner: client_aggregate.clone() })
        .map_err(|e| SetupError::Invalid(e.to_string()))?;
    let writes = vec![
        write(SigningKey::stream_id(&key.kid), &activated_key_events(&key, SigningAlg::EdDSA)?, &context),
        write(SigningKey::stream_id(&rsa.kid), &activated_key_events(&rsa, SigningAlg::RS256)?, &context),
        write(Client::stream_id(&client_aggregate), &client_events, &context),
        write(NameClaim::stream_id(&claim_id("client_id", &admin_client_id)), &claim, &context),
        write(Installation::stream_id(INSTALLATION_ID), &installation_events, &context),
    ];
    match store.append(writes).await {
        Ok(_) => Ok(InitOutcome::Initialized { admin_client_id, generated_secret, signing_key_id: key.kid }),
        // Another process initialised the same database at the same moment.
        Err(StoreError::Conflict { .. }) => match installation(store).await? {
            Some(admin_client_id) => Ok(InitOutcome::AlreadyInitialized { admin_client_id }),
            None => Err(SetupError::Store(StoreError::Unavailable("initialisation raced and lost".into()))),
        },
        Err(e) => Err(e.into()),
    }
}

/// The events of a key generated and activated at once.
pub(crate) fn activated_key_events(key: &GeneratedKey, alg: SigningAlg) -> Result<Vec<SigningKeyEvent>, SetupError> {
    let mut signing_key = SigningKey::default();
    let mut events = Vec::new();
    for command in [
        SigningKeyCommand::Generate {
            kid: key.kid.clone(),
            alg,
            public_jwk: key.public_jwk.clone(),
            sealed_private_key: key.sealed_private_key.clone(),
        },
        SigningKeyCommand::Activate,
    ] {
        for e in signing_key.decide(&command).map_err(|e| SetupError::Invalid(e.to_string()))? {
            signing_key.apply(&e);
            events.push(e);
        }
    }
    Ok(events)
}

fn write<E: DomainEvent>(stream_id: String, events: &[E], context: &CommandContext) -> StreamWrite {
    StreamWrite {
        stream_id,
        expected: ExpectedVersion::NoStream,
        events: events.iter().map(|e| NewEvent::from_domain(e, context)).collect(),
    }
}
