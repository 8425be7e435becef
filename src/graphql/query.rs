//! Queries: read models for lists, the log itself for histories.

use std::collections::BTreeMap;

use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};

use super::types::*;
use super::{MAX_PAGE, caught_up, decode_cursor, encode_cursor, error, parse_time, require_admin, require_read, state, store_error};
use crate::domain::Aggregate;
use crate::domain::client::Client;
use crate::domain::consent::{ConsentEvent as DomainConsentEvent, consent_id};
use crate::domain::user::User;
use crate::projections::queries::{self, AuditFilter};

pub struct Query;

fn page_size(first: Option<i32>) -> Result<i64> {
    match first {
        None => Ok(50),
        Some(n) if (1..=MAX_PAGE as i32).contains(&n) => Ok(n as i64),
        Some(_) => Err(error("INVALID_INPUT", format!("first must be between 1 and {MAX_PAGE}"))),
    }
}

#[Object]
impl Query {
    /// Registered clients, ordered by client_id.
    async fn clients(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<Vec<ClientObject>> {
        require_admin(ctx)?;
        caught_up(state(ctx)?).await?;
        let rows = queries::clients(&state(ctx)?.db, page_size(first)?, after.as_deref()).await.map_err(store_error)?;
        Ok(rows.into_iter().map(ClientObject::from).collect())
    }

    /// One client, as its events say now.
    async fn client(&self, ctx: &Context<'_>, client_id: String) -> Result<Option<ClientObject>> {
        require_admin(ctx)?;
        let state = state(ctx)?;
        caught_up(state).await?;
        let Some(entry) = state.live.client(&client_id) else { return Ok(None) };
        let (client, _) =
            crate::actors::load::<Client>(&state.store, &Client::stream_id(&entry.id), Client::default(), 0).await.map_err(store_error)?;
        Ok(ClientObject::from_state(&entry.id, &client))
    }

    /// Users, ordered by id.
    async fn users(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<Vec<UserObject>> {
        require_admin(ctx)?;
        caught_up(state(ctx)?).await?;
        let rows = queries::users(&state(ctx)?.db, page_size(first)?, after.as_deref()).await.map_err(store_error)?;
        Ok(rows.into_iter().map(UserObject::from).collect())
    }

    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<UserObject>> {
        require_admin(ctx)?;
        let state = state(ctx)?;
        let (user, _) = crate::actors::load::<User>(&state.store, &User::stream_id(&id), User::default(), 0).await.map_err(store_error)?;
        Ok(UserObject::from_state(&id, &user))
    }

    /// Consents of a user, of a client, or of both.
    async fn consents(&self, ctx: &Context<'_>, user_id: Option<ID>, client_id: Option<String>) -> Result<Vec<ConsentObject>> {
        require_read(ctx, true)?;
        if user_id.is_none() && client_id.is_none() {
            return Err(error("INVALID_INPUT", "give userId, clientId or both"));
        }
        caught_up(state(ctx)?).await?;
        let rows = queries::consents(&state(ctx)?.db, user_id.as_ref().map(|u| u.as_str()), client_id.as_deref(), MAX_PAGE)
            .await
            .map_err(store_error)?;
        Ok(rows.into_iter().map(ConsentObject::from).collect())
    }

    /// Every consent event of a user and client, oldest first, with who
    /// caused it, from where, and the scopes before and after.
    async fn consent_history(&self, ctx: &Context<'_>, user_id: ID, client_id: String) -> Result<Vec<ConsentEvent>> {
        require_read(ctx, true)?;
        let state = state(ctx)?;
        let stream = crate::domain::consent::Consent::stream_id(&consent_id(&user_id, &client_id));
        let events = state.store.read_stream(&stream, 1).await.map_err(store_error)?;
        let mut scopes: Vec<String> = Vec::new();
        let mut out = Vec::with_capacity(events.len());
        for e in &events {
            let before = scopes.clone();
            let event: DomainConsentEvent = e.decode().map_err(store_error)?;
            let changed = match &event {
                DomainConsentEvent::ConsentGranted(g) => {
                    scopes = g.scopes.clone();
                    g.scopes.clone()
                }
                DomainConsentEvent::ConsentScopesExtended(x) => {
                    scopes = x.scopes.clone();
                    x.added.clone()
                }
                DomainConsentEvent::ConsentRevoked(r) => {
                    scopes.clear();
                    r.scopes.clone()
                }
            };
            let ctx = &e.metadata.context;
            out.push(ConsentEvent {
                event_type: e.event_type.clone(),
                scopes: changed,
                scopes_before: before,
                scopes_after: scopes.clone(),
                recorded_at: crate::projections::readmodels::time_text(e.recorded_at),
                actor: (&ctx.actor).into(),
                request_id: ctx.request_id.clone(),
                source_address: ctx.source_address.clone(),
                authentication: ctx.authentication.clone(),
                position: e.position,
            });
        }
        Ok(out)
    }

    /// Grants of a user and/or client, optionally only active or revoked ones.
    async fn grants(
        &self,
        ctx: &Context<'_>,
        user_id: Option<ID>,
        client_id: Option<String>,
        active: Option<bool>,
    ) -> Result<Vec<GrantObject>> {
        require_read(ctx, true)?;
        if user_id.is_none() && client_id.is_none() {
            return Err(error("INVALID_INPUT", "give userId, clientId or both"));
        }
        caught_up(state(ctx)?).await?;
        let rows = queries::grants(&state(ctx)?.db, user_id.as_ref().map(|u| u.as_str()), client_id.as_deref(), active, MAX_PAGE)
            .await
            .map_err(store_error)?;
        Ok(rows.into_iter().map(GrantObject::from).collect())
    }

    /// One grant with its lineage.
    async fn grant(&self, ctx: &Context<'_>, id: ID) -> Result<Option<GrantObject>> {
        require_read(ctx, true)?;
        let state = state(ctx)?;
        let stream = format!("grant-{}", id.as_str());
        let (grant, _) =
            crate::actors::load::<crate::domain::grant::Grant>(&state.store, &stream, Default::default(), 0).await.map_err(store_error)?;
        Ok(GrantObject::from_state(&id, &grant))
    }

    /// The global log, filtered, with cursor pagination.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditEventFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AuditEventConnection> {
        require_read(ctx, true)?;
        let state = state(ctx)?;
        let first = page_size(first)?;
        let after = after.as_deref().map(decode_cursor).transpose()?.unwrap_or(0);
        let filter = audit_filter(filter.unwrap_or_default())?;
        caught_up(state).await?;
        let mut positions = queries::audit_positions(&state.db, &filter, after, first + 1).await.map_err(store_error)?;
        let has_next_page = positions.len() as i64 > first;
        positions.truncate(first as usize);
        let events = state.store.read_positions(&positions).await.map_err(store_error)?;
        let edges: Vec<AuditEventEdge> =
            events.iter().map(|e| AuditEventEdge { cursor: encode_cursor(e.position), node: AuditEvent::from(e) }).collect();
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        Ok(AuditEventConnection { edges, page_info: PageInfo { has_next_page, end_cursor } })
    }

    /// Which clients held which scopes for a user at an instant, computed
    /// from the events up to that instant (not from today's tables).
    async fn access_at(&self, ctx: &Context<'_>, user_id: ID, at: String) -> Result<Vec<ClientAccess>> {
        require_read(ctx, true)?;
        let state = state(ctx)?;
        let at = parse_time("at", Some(&at))?.unwrap_or_else(Utc::now);
        caught_up(state).await?;
        access_at(state, &user_id, at).await
    }

    /// Signing keys, active and retired.
    async fn signing_keys(&self, ctx: &Context<'_>) -> Result<Vec<SigningKeyObject>> {
        require_admin(ctx)?;
        caught_up(state(ctx)?).await?;
        let rows = queries::signing_keys(&state(ctx)?.db).await.map_err(store_error)?;
        Ok(rows.into_iter().map(SigningKeyObject::from).collect())
    }
}

pub(crate) fn audit_filter(f: AuditEventFilter) -> Result<AuditFilter> {
    Ok(AuditFilter {
        streams: f.streams.unwrap_or_default(),
        event_types: f.event_types.unwrap_or_default(),
        actor_kind: f.actor.as_ref().map(|a| actor_kind_str(a.kind).to_string()),
        actor_id: f.actor.and_then(|a| a.id),
        user_id: f.user_id.map(|id| id.to_string()),
        client_id: f.client_id,
        aggregates: vec![],
        from: parse_time("from", f.from.as_deref())?,
        to: parse_time("to", f.to.as_deref())?,
    })
}

#[derive(Default)]
struct GrantAt {
    client_id: String,
    scopes: Vec<String>,
    revoked: bool,
    valid_until: Option<DateTime<Utc>>,
}

pub(crate) async fn access_at(state: &crate::app::AppState, user_id: &str, at: DateTime<Utc>) -> Result<Vec<ClientAccess>> {
    let filter = AuditFilter {
        user_id: Some(user_id.to_string()),
        aggregates: vec!["consent".into(), "grant".into()],
        to: Some(at),
        ..Default::default()
    };
    let mut consents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut grants: BTreeMap<String, GrantAt> = BTreeMap::new();
    let mut after = 0;
    loop {
        let positions = queries::audit_positions(&state.db, &filter, after, 1000).await.map_err(store_error)?;
        let Some(last) = positions.last().copied() else { break };
        for e in state.store.read_positions(&positions).await.map_err(store_error)? {
            if e.recorded_at > at {
                continue;
            }
            if let Some(id) = e.stream_id.strip_prefix("consent-") {
                let Some((_, client)) = crate::domain::consent::parse_consent_id(id) else { continue };
                match e.decode::<DomainConsentEvent>().map_err(store_error)? {
                    DomainConsentEvent::ConsentGranted(g) => {
                        consents.insert(client.to_string(), g.scopes);
                    }
                    DomainConsentEvent::ConsentScopesExtended(x) => {
                        consents.insert(client.to_string(), x.scopes);
                    }
                    DomainConsentEvent::ConsentRevoked(_) => {
                        consents.remove(client);
                    }
                }
            } else if let Some(id) = e.stream_id.strip_prefix("grant-") {
                use crate::domain::grant::GrantEvent as G;
                let g = grants.entry(id.to_string()).or_default();
                let extend = |g: &mut GrantAt, until: DateTime<Utc>| g.valid_until = Some(g.valid_until.map_or(until, |u| u.max(until)));
                match e.decode::<G>().map_err(store_error)? {
                    G::AuthorizationCodeIssued(c) => {
                        g.client_id = c.client_id;
                        g.scopes = c.scopes;
                    }
                    G::AccessTokenIssued(a) => {
                        if g.client_id.is_empty() {
                            g.client_id = a.client_id;
                            g.scopes = a.scopes;
                        }
                        extend(g, a.expires_at);
                    }
                    G::RefreshTokenIssued(r) => extend(g, r.expires_at),
                    G::RefreshTokenRotated(r) => extend(g, r.expires_at),
                    G::GrantRevoked(_) => g.revoked = true,
                    G::AuthorizationCodeRedeemed(_) => {}
                }
            }
        }
        after = last;
    }
    let mut by_client: BTreeMap<String, ClientAccess> = BTreeMap::new();
    for (client, scopes) in consents {
        by_client.insert(client.clone(), ClientAccess { client_id: client, consented_scopes: scopes, grants: vec![] });
    }
    for (id, g) in grants {
        if g.revoked || g.valid_until.is_none_or(|until| until <= at) || g.client_id.is_empty() {
            continue;
        }
        let entry = by_client.entry(g.client_id.clone()).or_insert_with(|| ClientAccess {
            client_id: g.client_id.clone(),
            consented_scopes: vec![],
            grants: vec![],
        });
        entry.grants.push(GrantAccess { grant_id: ID(id), scopes: g.scopes });
    }
    Ok(by_client.into_values().collect())
}
