//! The admin API's object and input types.

use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Result, SimpleObject};

use crate::domain::ActorKind;
use crate::domain::client::{Client, GrantType};
use crate::domain::user::User;
use crate::eventstore::RecordedEvent;
use crate::projections::queries::{ClientRow, ConsentRow, GrantRow, KeyRow, UserRow, json_list};
use crate::projections::readmodels::time_text;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ActorKind", remote = "crate::domain::ActorKind")]
pub enum ActorKindGql {
    User,
    Client,
    System,
}

/// Who caused an event.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Actor")]
pub struct ActorObject {
    pub kind: ActorKindGql,
    pub id: String,
}

impl From<&crate::domain::Actor> for ActorObject {
    fn from(a: &crate::domain::Actor) -> Self {
        ActorObject { kind: a.kind.into(), id: a.id.clone() }
    }
}

/// One event of the log, with its provenance.
#[derive(SimpleObject, Clone, Debug)]
pub struct AuditEvent {
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    /// The event type name, e.g. `ConsentGranted`.
    #[graphql(name = "type")]
    pub event_type: String,
    pub schema_version: i32,
    /// RFC 3339, UTC.
    pub recorded_at: String,
    pub actor: ActorObject,
    pub request_id: Option<String>,
    pub source_address: Option<String>,
    /// How the acting user authenticated, where one did.
    pub authentication: Option<String>,
    /// The event's payload as JSON text (hashes only, never secrets).
    pub payload: String,
    /// Hex SHA-256 of the chain at this event.
    pub hash: String,
}

impl From<&RecordedEvent> for AuditEvent {
    fn from(e: &RecordedEvent) -> Self {
        let ctx = &e.metadata.context;
        AuditEvent {
            position: e.position,
            stream_id: e.stream_id.clone(),
            stream_version: e.stream_version,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            recorded_at: time_text(e.recorded_at),
            actor: (&ctx.actor).into(),
            request_id: ctx.request_id.clone(),
            source_address: ctx.source_address.clone(),
            authentication: ctx.authentication.clone(),
            payload: e.payload.to_string(),
            hash: hex::encode(e.hash),
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct AuditEventEdge {
    pub cursor: String,
    pub node: AuditEvent,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct AuditEventConnection {
    pub edges: Vec<AuditEventEdge>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex, name = "Client")]
pub struct ClientObject {
    /// The aggregate id.
    pub id: ID,
    /// The OAuth `client_id`: what every other operation takes.
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// OAuth wire names.
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub confidential: bool,
    pub first_party: bool,
    pub disabled: bool,
    pub id_token_signed_response_alg: String,
}

#[ComplexObject]
impl ClientObject {
    /// Every change to this client, oldest first.
    async fn history(&self, ctx: &Context<'_>) -> Result<Vec<AuditEvent>> {
        let state = super::state(ctx)?;
        let events = state.store.read_stream(&format!("client-{}", self.id.as_str()), 1).await.map_err(super::store_error)?;
        Ok(events.iter().map(AuditEvent::from).collect())
    }
}

fn grant_names(types: &[GrantType]) -> Vec<String> {
    types.iter().map(|g| g.as_str().to_string()).collect()
}

impl ClientObject {
    pub fn from_state(id: &str, client: &Client) -> Option<Self> {
        let c = client.registered.as_ref()?;
        Some(ClientObject {
            id: ID(id.to_string()),
            client_id: c.client_id.clone(),
            name: c.settings.name.clone(),
            redirect_uris: c.settings.redirect_uris.clone(),
            grant_types: grant_names(&c.settings.grant_types),
            scopes: c.settings.scopes.clone(),
            confidential: c.confidential,
            first_party: c.settings.first_party,
            disabled: c.disabled,
            id_token_signed_response_alg: format!("{:?}", c.settings.id_token_signed_response_alg),
        })
    }
}

impl From<ClientRow> for ClientObject {
    fn from(r: ClientRow) -> Self {
        ClientObject {
            id: ID(r.id),
            client_id: r.client_id,
            name: r.name,
            redirect_uris: json_list(&r.redirect_uris),
            grant_types: json_list(&r.grant_types),
            scopes: json_list(&r.scopes),
            confidential: r.confidential,
            first_party: r.first_party,
            disabled: r.disabled,
            id_token_signed_response_alg: r.id_token_alg,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct RegisterClientPayload {
    pub client: ClientObject,
    /// Shown once; null for public clients.
    pub client_secret: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct RotateClientSecretPayload {
    pub client: ClientObject,
    /// The new secret, shown once.
    pub client_secret: String,
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "User")]
pub struct UserObject {
    /// The `sub` of this user's tokens.
    pub id: ID,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub disabled: bool,
}

impl UserObject {
    pub fn from_state(id: &str, user: &User) -> Option<Self> {
        let u = user.registered.as_ref()?;
        Some(UserObject {
            id: ID(id.to_string()),
            username: u.profile.username.clone(),
            email: u.profile.email.clone(),
            name: u.profile.name.clone(),
            disabled: u.disabled,
        })
    }
}

impl From<UserRow> for UserObject {
    fn from(r: UserRow) -> Self {
        UserObject { id: ID(r.id), username: r.username, email: r.email, name: r.name, disabled: r.disabled }
    }
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Consent")]
pub struct ConsentObject {
    pub user_id: ID,
    pub client_id: String,
    /// The scopes in force (empty once revoked).
    pub scopes: Vec<String>,
    pub active: bool,
    pub granted_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<ConsentRow> for ConsentObject {
    fn from(r: ConsentRow) -> Self {
        ConsentObject {
            user_id: ID(r.user_id),
            client_id: r.client_id,
            scopes: json_list(&r.scopes),
            active: r.active,
            granted_at: Some(r.granted_at),
            revoked_at: r.revoked_at,
        }
    }
}

/// One event in a consent's history, with its provenance.
#[derive(SimpleObject, Clone, Debug)]
pub struct ConsentEvent {
    /// `ConsentGranted`, `ConsentScopesExtended` or `ConsentRevoked`.
    #[graphql(name = "type")]
    pub event_type: String,
    /// The scopes this event granted, added or withdrew.
    pub scopes: Vec<String>,
    pub scopes_before: Vec<String>,
    pub scopes_after: Vec<String>,
    pub recorded_at: String,
    pub actor: ActorObject,
    pub request_id: Option<String>,
    pub source_address: Option<String>,
    pub authentication: Option<String>,
    pub position: i64,
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex, name = "Grant")]
pub struct GrantObject {
    pub id: ID,
    pub grant_type: String,
    pub client_id: String,
    pub subject: String,
    pub user_id: Option<ID>,
    pub scopes: Vec<String>,
    pub active: bool,
    pub created_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revocation_reason: Option<String>,
}

/// A step of a grant's life: code issued, redeemed, tokens, rotations, revocation.
#[derive(SimpleObject, Clone, Debug)]
pub struct LineageStep {
    pub position: i64,
    #[graphql(name = "type")]
    pub event_type: String,
    pub recorded_at: String,
    pub actor: ActorObject,
    /// Access token id, where the step issued one.
    pub jti: Option<String>,
    pub expires_at: Option<String>,
    pub scopes: Option<Vec<String>>,
    /// Why the grant was revoked, on `GrantRevoked`.
    pub reason: Option<String>,
}

impl From<&RecordedEvent> for LineageStep {
    fn from(e: &RecordedEvent) -> Self {
        let field = |k: &str| e.payload.get(k).and_then(|v| v.as_str()).map(str::to_string);
        LineageStep {
            position: e.position,
            event_type: e.event_type.clone(),
            recorded_at: time_text(e.recorded_at),
            actor: (&e.metadata.context.actor).into(),
            jti: field("jti"),
            expires_at: field("expires_at"),
            scopes: e.payload.get("scopes").and_then(|v| serde_json::from_value(v.clone()).ok()),
            reason: field("reason"),
        }
    }
}

#[ComplexObject]
impl GrantObject {
    /// Everything that happened to this grant, oldest first.
    async fn lineage(&self, ctx: &Context<'_>) -> Result<Vec<LineageStep>> {
        let state = super::state(ctx)?;
        let events = state.store.read_stream(&format!("grant-{}", self.id.as_str()), 1).await.map_err(super::store_error)?;
        Ok(events.iter().map(LineageStep::from).collect())
    }
}

impl GrantObject {
    pub fn from_state(id: &str, grant: &crate::domain::grant::Grant) -> Option<Self> {
        let g = grant.state.as_ref()?;
        Some(GrantObject {
            id: ID(id.to_string()),
            grant_type: g.grant_type.as_str().into(),
            client_id: g.client_id.clone(),
            subject: g.subject.clone(),
            user_id: g.user_id.clone().map(ID),
            scopes: g.scopes.clone(),
            active: g.revoked.is_none(),
            created_at: None,
            revoked_at: None,
            revocation_reason: g.revoked.map(|r| r.as_str().to_string()),
        })
    }
}

impl From<GrantRow> for GrantObject {
    fn from(r: GrantRow) -> Self {
        GrantObject {
            id: ID(r.grant_id),
            grant_type: r.grant_type,
            client_id: r.client_id,
            subject: r.subject,
            user_id: r.user_id.map(ID),
            scopes: json_list(&r.scopes),
            active: r.revoked_at.is_none(),
            created_at: Some(r.created_at),
            revoked_at: r.revoked_at,
            revocation_reason: r.revocation_reason,
        }
    }
}

/// What one client held for a user at an instant.
#[derive(SimpleObject, Clone, Debug)]
pub struct ClientAccess {
    pub client_id: String,
    /// Scopes the user's consent covered then.
    pub consented_scopes: Vec<String>,
    /// Grants in force then (issued, not yet revoked, a token not yet expired).
    pub grants: Vec<GrantAccess>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct GrantAccess {
    pub grant_id: ID,
    pub scopes: Vec<String>,
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "SigningKey")]
pub struct SigningKeyObject {
    pub kid: ID,
    pub alg: String,
    /// `generated`, `active` or `retired`.
    pub status: String,
    pub public_jwk: String,
    pub created_at: String,
    pub activated_at: Option<String>,
    pub retired_at: Option<String>,
    pub verify_until: Option<String>,
}

impl From<KeyRow> for SigningKeyObject {
    fn from(r: KeyRow) -> Self {
        SigningKeyObject {
            kid: ID(r.kid),
            alg: r.alg,
            status: r.status,
            public_jwk: r.public_jwk,
            created_at: r.created_at,
            activated_at: r.activated_at,
            retired_at: r.retired_at,
            verify_until: r.verify_until,
        }
    }
}

#[derive(InputObject, Clone, Debug)]
pub struct RegisterClientInput {
    pub name: String,
    #[graphql(default)]
    pub redirect_uris: Vec<String>,
    /// OAuth wire names: authorization_code, refresh_token, client_credentials, password, implicit.
    pub grant_types: Vec<String>,
    #[graphql(default)]
    pub scopes: Vec<String>,
    /// Default true; a public client has no secret and must use PKCE.
    pub confidential: Option<bool>,
    /// Default false; only first-party clients may use the password grant.
    pub first_party: Option<bool>,
    /// `EdDSA` (default) or `RS256`.
    pub id_token_signed_response_alg: Option<String>,
    /// The OAuth client_id (default: generated).
    pub client_id: Option<String>,
}

#[derive(InputObject, Clone, Debug, Default)]
pub struct UpdateClientInput {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub first_party: Option<bool>,
    pub id_token_signed_response_alg: Option<String>,
}

#[derive(InputObject, Clone, Debug)]
pub struct RegisterUserInput {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(InputObject, Clone, Debug, Default)]
pub struct UpdateUserInput {
    pub username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(InputObject, Clone, Debug)]
pub struct ActorInput {
    pub kind: ActorKindGql,
    pub id: Option<String>,
}

/// Which events to return; every given criterion must hold.
#[derive(InputObject, Clone, Debug, Default)]
pub struct AuditEventFilter {
    /// Stream ids, e.g. `consent-{user}-{client}`.
    pub streams: Option<Vec<String>>,
    pub event_types: Option<Vec<String>>,
    pub actor: Option<ActorInput>,
    pub user_id: Option<ID>,
    pub client_id: Option<String>,
    /// RFC 3339; inclusive.
    pub from: Option<String>,
    /// RFC 3339; inclusive.
    pub to: Option<String>,
}

pub fn actor_kind_str(kind: ActorKindGql) -> &'static str {
    ActorKind::from(kind).as_str()
}
