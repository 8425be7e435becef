//! Mutations: each issues a command to the aggregate's actor, with the
//! calling admin client recorded as the actor of the events.

use std::time::Duration;

use async_graphql::{Context, ID, Object, Result};

use super::types::*;
use super::{Caller, admin_error, error, require_admin, state, store_error};
use crate::admin::AdminError;
use crate::domain::Actor;
use crate::domain::client::{ClientSettings, GrantType, SigningAlg};
use crate::domain::grant::RevocationReason;
use crate::domain::user::UserProfile;
use crate::eventstore::CommandContext;

pub struct Mutation;

/// How long a mutation waits for the read models and the live view to
/// include its events, so that a request right after it sees them.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

fn context(ctx: &Context<'_>, caller: &Caller) -> CommandContext {
    let request = ctx.data_opt::<RequestInfo>();
    CommandContext {
        actor: Actor::client(&caller.client_id),
        request_id: request.and_then(|r| r.request_id.clone()),
        source_address: request.and_then(|r| r.source_address.clone()),
        authentication: None,
    }
}

/// The HTTP request behind a GraphQL operation.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub request_id: Option<String>,
    pub source_address: Option<String>,
}

fn grant_types(names: &[String]) -> Result<Vec<GrantType>> {
    names.iter().map(|n| GrantType::parse(n).ok_or_else(|| error("INVALID_INPUT", format!("unknown grant type {n:?}")))).collect()
}

fn alg(name: Option<&str>) -> Result<SigningAlg> {
    match name {
        None | Some("EdDSA") => Ok(SigningAlg::EdDSA),
        Some("RS256") => Ok(SigningAlg::RS256),
        Some(other) => Err(error("INVALID_INPUT", format!("unknown ID token algorithm {other:?} (EdDSA or RS256)"))),
    }
}

/// The aggregate id behind an OAuth client_id.
fn client_aggregate(ctx: &Context<'_>, client_id: &str) -> Result<String> {
    state(ctx)?.live.client(client_id).map(|c| c.id.clone()).ok_or_else(|| error("NOT_FOUND", format!("no client {client_id:?}")))
}

async fn settle(ctx: &Context<'_>) -> Result<()> {
    let state = state(ctx)?;
    let head = state.store.head().await.map_err(store_error)?;
    state.runner.wait_for(head, READ_YOUR_WRITES).await;
    // ... and for the in-memory view that /token, /authorize and
    // /introspect read: a secret just rotated or a client just registered
    // works there as soon as the mutation answers.
    state.live.caught_up(head, READ_YOUR_WRITES).await;
    Ok(())
}

#[Object]
impl Mutation {
    async fn register_client(&self, ctx: &Context<'_>, input: RegisterClientInput) -> Result<RegisterClientPayload> {
        let caller = require_admin(ctx)?;
        let state = state(ctx)?;
        let settings = ClientSettings {
            name: input.name,
            redirect_uris: input.redirect_uris,
            grant_types: grant_types(&input.grant_types)?,
            scopes: input.scopes,
            first_party: input.first_party.unwrap_or(false),
            id_token_signed_response_alg: alg(input.id_token_signed_response_alg.as_deref())?,
        };
        let registered = state
            .admin
            .register_client(input.client_id, settings, input.confidential.unwrap_or(true), &context(ctx, &caller))
            .await
            .map_err(admin_error)?;
        settle(ctx).await?;
        let client =
            ClientObject::from_state(&registered.id, &registered.client).ok_or_else(|| error("INTERNAL", "client not registered"))?;
        Ok(RegisterClientPayload { client, client_secret: registered.client_secret })
    }

    async fn update_client(&self, ctx: &Context<'_>, client_id: String, input: UpdateClientInput) -> Result<ClientObject> {
        let caller = require_admin(ctx)?;
        let state = state(ctx)?;
        let id = client_aggregate(ctx, &client_id)?;
        let current = state.live.client(&client_id).ok_or_else(|| error("NOT_FOUND", "no such client"))?;
        let settings = ClientSettings {
            name: input.name.unwrap_or_else(|| current.name.clone()),
            redirect_uris: input.redirect_uris.unwrap_or_else(|| current.redirect_uris.clone()),
            grant_types: match input.grant_types {
                Some(names) => grant_types(&names)?,
                None => current.grant_types.clone(),
            },
            scopes: input.scopes.unwrap_or_else(|| current.scopes.clone()),
            first_party: input.first_party.unwrap_or(current.first_party),
            id_token_signed_response_alg: match input.id_token_signed_response_alg {
                Some(a) => alg(Some(&a))?,
                None => current.id_token_alg,
            },
        };
        let done = state.admin.update_client(&id, settings, context(ctx, &caller)).await.map_err(admin_error)?;
        settle(ctx).await?;
        ClientObject::from_state(&id, &done.state).ok_or_else(|| error("NOT_FOUND", "no such client"))
    }

    /// Replaces the client's secret; the new one is shown once.
    async fn rotate_client_secret(&self, ctx: &Context<'_>, client_id: String) -> Result<RotateClientSecretPayload> {
        let caller = require_admin(ctx)?;
        let id = client_aggregate(ctx, &client_id)?;
        let (done, secret) = state(ctx)?.admin.rotate_client_secret(&id, context(ctx, &caller)).await.map_err(admin_error)?;
        settle(ctx).await?;
        let client = ClientObject::from_state(&id, &done.state).ok_or_else(|| error("NOT_FOUND", "no such client"))?;
        Ok(RotateClientSecretPayload { client, client_secret: secret })
    }

    async fn disable_client(&self, ctx: &Context<'_>, client_id: String) -> Result<ClientObject> {
        set_client_disabled(ctx, client_id, true).await
    }

    async fn enable_client(&self, ctx: &Context<'_>, client_id: String) -> Result<ClientObject> {
        set_client_disabled(ctx, client_id, false).await
    }

    async fn register_user(&self, ctx: &Context<'_>, input: RegisterUserInput) -> Result<UserObject> {
        let caller = require_admin(ctx)?;
        let profile = UserProfile { username: input.username, email: input.email, name: input.name };
        let (id, user) = state(ctx)?.admin.register_user(profile, &input.password, &context(ctx, &caller)).await.map_err(admin_error)?;
        settle(ctx).await?;
        UserObject::from_state(&id, &user).ok_or_else(|| error("INTERNAL", "user not registered"))
    }

    async fn update_user(&self, ctx: &Context<'_>, id: ID, input: UpdateUserInput) -> Result<UserObject> {
        let caller = require_admin(ctx)?;
        let state = state(ctx)?;
        let current = state.live.user(&id).ok_or_else(|| error("NOT_FOUND", "no such user"))?;
        let profile = UserProfile {
            username: input.username.unwrap_or_else(|| current.username.clone()),
            email: input.email.or_else(|| current.email.clone()),
            name: input.name.or_else(|| current.name.clone()),
        };
        let user = state.admin.update_user(&id, profile, context(ctx, &caller)).await.map_err(admin_error)?;
        settle(ctx).await?;
        UserObject::from_state(&id, &user).ok_or_else(|| error("NOT_FOUND", "no such user"))
    }

    async fn set_user_password(&self, ctx: &Context<'_>, id: ID, password: String) -> Result<UserObject> {
        let caller = require_admin(ctx)?;
        let done = state(ctx)?.admin.set_user_password(&id, &password, context(ctx, &caller)).await.map_err(admin_error)?;
        settle(ctx).await?;
        UserObject::from_state(&id, &done.state).ok_or_else(|| error("NOT_FOUND", "no such user"))
    }

    async fn disable_user(&self, ctx: &Context<'_>, id: ID) -> Result<UserObject> {
        set_user_disabled(ctx, id, true).await
    }

    async fn enable_user(&self, ctx: &Context<'_>, id: ID) -> Result<UserObject> {
        set_user_disabled(ctx, id, false).await
    }

    /// Revokes the user's consent for the client and every grant of that
    /// user for that client.
    async fn revoke_consent(&self, ctx: &Context<'_>, user_id: ID, client_id: String) -> Result<ConsentObject> {
        let caller = require_admin(ctx)?;
        let state = state(ctx)?;
        let db = state.db.clone();
        let (user, client) = (user_id.to_string(), client_id.clone());
        let grants_of = async || -> Result<Vec<String>, AdminError> {
            // The grants table must include every grant issued before the revocation.
            let head = state.store.head().await?;
            state.runner.wait_for(head, READ_YOUR_WRITES).await;
            let rows = crate::projections::queries::grants(&db, Some(&user), Some(&client), Some(true), i64::MAX).await?;
            Ok(rows.into_iter().map(|r| r.grant_id).collect())
        };
        state.admin.revoke_consent(&user_id, &client_id, grants_of, context(ctx, &caller)).await.map_err(admin_error)?;
        settle(ctx).await?;
        Ok(ConsentObject { user_id, client_id, scopes: vec![], active: false, granted_at: None, revoked_at: None })
    }

    async fn revoke_grant(&self, ctx: &Context<'_>, grant_id: ID) -> Result<GrantObject> {
        let caller = require_admin(ctx)?;
        let grant = state(ctx)?
            .admin
            .revoke_grant(&grant_id, RevocationReason::RevokedByAdmin, context(ctx, &caller))
            .await
            .map_err(admin_error)?;
        settle(ctx).await?;
        GrantObject::from_state(&grant_id, &grant).ok_or_else(|| error("NOT_FOUND", "no such grant"))
    }

    /// A new active signing key for `alg` (default EdDSA); the key it
    /// replaces stays in the JWKS until the tokens it signed have expired.
    async fn rotate_signing_key(&self, ctx: &Context<'_>, alg: Option<String>) -> Result<SigningKeyObject> {
        let caller = require_admin(ctx)?;
        let state = state(ctx)?;
        let alg = self::alg(alg.as_deref())?;
        let active = state.live.keyring().signer(alg).map(|s| s.kid().to_string());
        let verify_for = state.lifetimes.access.max(state.lifetimes.id_token) + chrono::Duration::minutes(1);
        let (kid, _) =
            state.admin.rotate_signing_key(&state.master, alg, active, verify_for, &context(ctx, &caller)).await.map_err(admin_error)?;
        settle(ctx).await?;
        let rows = crate::projections::queries::signing_keys(&state.db).await.map_err(store_error)?;
        rows.into_iter()
            .find(|k| k.kid == kid)
            .map(SigningKeyObject::from)
            .ok_or_else(|| error("INTERNAL", "the new key is not projected yet"))
    }
}

async fn set_client_disabled(ctx: &Context<'_>, client_id: String, disabled: bool) -> Result<ClientObject> {
    let caller = require_admin(ctx)?;
    let id = client_aggregate(ctx, &client_id)?;
    let done = state(ctx)?.admin.set_client_disabled(&id, disabled, context(ctx, &caller)).await.map_err(admin_error)?;
    settle(ctx).await?;
    ClientObject::from_state(&id, &done.state).ok_or_else(|| error("NOT_FOUND", "no such client"))
}

async fn set_user_disabled(ctx: &Context<'_>, id: ID, disabled: bool) -> Result<UserObject> {
    let caller = require_admin(ctx)?;
    let done = state(ctx)?.admin.set_user_disabled(&id, disabled, context(ctx, &caller)).await.map_err(admin_error)?;
    settle(ctx).await?;
    UserObject::from_state(&id, &done.state).ok_or_else(|| error("NOT_FOUND", "no such user"))
}
