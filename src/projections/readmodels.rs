//! The read models: clients, users, consents, grants, signing keys, and
//! the audit trail.

use chrono::{DateTime, Utc};

use super::{Arg, Projection, Stmt};
use crate::domain::client::{ClientEvent, GrantType};
use crate::domain::consent::{ConsentEvent, parse_consent_id};
use crate::domain::grant::GrantEvent;
use crate::domain::signing_key::SigningKeyEvent;
use crate::domain::user::UserEvent;
use crate::eventstore::{RecordedEvent, StoreError};

/// RFC 3339, microseconds, UTC: sorts as text in both backends.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn text(s: &str) -> Arg {
    Arg::Text(s.to_string())
}

/// The aggregate id part of a stream id (`client-{id}` → `{id}`).
fn aggregate_id<'a>(event: &'a RecordedEvent, prefix: &str) -> Option<&'a str> {
    event.stream_id.strip_prefix(prefix)?.strip_prefix('-')
}

fn grant_types(types: &[GrantType]) -> String {
    json_list(&types.iter().map(|g| g.as_str()).collect::<Vec<_>>())
}

pub struct ClientsProjection;

impl Projection for ClientsProjection {
    fn name(&self) -> &'static str {
        "clients"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["clients"]
    }
    fn project(&self, event: &RecordedEvent) -> Result<Vec<Stmt>, StoreError> {
        let Some(id) = aggregate_id(event, "client") else { return Ok(vec![]) };
        let (at, version) = (time_text(event.recorded_at), Arg::Int(event.stream_version));
        Ok(match event.decode::<ClientEvent>()? {
            ClientEvent::ClientRegistered(e) => vec![Stmt::new(
                "INSERT INTO clients (id, client_id, name, redirect_uris, grant_types, scopes, confidential, first_party, id_token_alg, disabled, created_at, updated_at, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, FALSE, $10, $10, $11)",
                vec![
                    text(id),
                    Arg::Text(e.client_id),
                    Arg::Text(e.name),
                    Arg::Text(json_list(&e.redirect_uris)),
                    Arg::Text(grant_types(&e.grant_types)),
                    Arg::Text(json_list(&e.scopes)),
                    Arg::Bool(e.confidential),
                    Arg::Bool(e.first_party),
                    Arg::Text(format!("{:?}", e.id_token_signed_response_alg)),
                    Arg::Text(at),
                    version,
                ],
            )],
            ClientEvent::ClientUpdated(e) => vec![Stmt::new(
                "UPDATE clients SET name = $2, redirect_uris = $3, grant_types = $4, scopes = $5, first_party = $6, id_token_alg = $7, updated_at = $8, version = $9 WHERE id = $1",
                vec![
                    text(id),
                    Arg::Text(e.name),
                    Arg::Text(json_list(&e.redirect_uris)),
                    Arg::Text(grant_types(&e.grant_types)),
                    Arg::Text(json_list(&e.scopes)),
                    Arg::Bool(e.first_party),
                    Arg::Text(format!("{:?}", e.id_token_signed_response_alg)),
                    Arg::Text(at),
                    version,
                ],
            )],
            ClientEvent::ClientSecretRotated(_) => {
                vec![Stmt::new("UPDATE clients SET updated_at = $2, version = $3 WHERE id = $1", vec![text(id), Arg::Text(at), version])]
            }
            ClientEvent::ClientDisabled(_) | ClientEvent::ClientEnabled(_) => {
                let disabled = matches!(event.event_type.as_str(), "ClientDisabled");
                vec![Stmt::new(
                    "UPDATE clients SET disabled = $2, updated_at = $3, version = $4 WHERE id = $1",
                    vec![text(id), Arg::Bool(disabled), Arg::Text(at), version],
                )]
            }
        })
    }
}

pub struct UsersProjection;

impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        "users"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["users"]
    }
    fn project(&self, event: &RecordedEvent) -> Result<Vec<Stmt>, StoreError> {
        let Some(id) = aggregate_id(event, "user") else { return Ok(vec![]) };
        let (at, version) = (time_text(event.recorded_at), Arg::Int(event.stream_version));
        Ok(match event.decode::<UserEvent>()? {
            UserEvent::UserRegistered(e) => vec![Stmt::new(
                "INSERT INTO users (id, username, email, name, disabled, created_at, updated_at, version) VALUES ($1, $2, $3, $4, FALSE, $5, $5, $6)",
                vec![text(id), Arg::Text(e.username), Arg::OptText(e.email), Arg::OptText(e.name), Arg::Text(at), version],
            )],
            UserEvent::UserUpdated(e) => vec![Stmt::new(
                "UPDATE users SET username = $2, email = $3, name = $4, updated_at = $5, version = $6 WHERE id = $1",
                vec![text(id), Arg::Text(e.username), Arg::OptText(e.email), Arg::OptText(e.name), Arg::Text(at), version],
            )],
            UserEvent::UserPasswordChanged(_) => {
                vec![Stmt::new("UPDATE users SET updated_at = $2, version = $3 WHERE id = $1", vec![text(id), Arg::Text(at), version])]
            }
            UserEvent::UserDisabled(_) | UserEvent::UserEnabled(_) => {
                let disabled = event.event_type == "UserDisabled";
                vec![Stmt::new(
                    "UPDATE users SET disabled = $2, updated_at = $3, version = $4 WHERE id = $1",
                    vec![text(id), Arg::Bool(disabled), Arg::Text(at), version],
                )]
            }
        })
    }
}

pub struct ConsentsProjection;

impl Projection for ConsentsProjection {
    fn name(&self) -> &'static str {
        "consents"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["consents"]
    }
    fn project(&self, event: &RecordedEvent) -> Result<Vec<Stmt>, StoreError> {
        let Some((user_id, client_id)) = aggregate_id(event, "consent").and_then(parse_consent_id) else { return Ok(vec![]) };
        let at = Arg::Text(time_text(event.recorded_at));
        let (user, client) = (text(user_id), text(client_id));
        Ok(match event.decode::<ConsentEvent>()? {
            ConsentEvent::ConsentGranted(e) => vec![Stmt::new(
                "INSERT INTO consents (user_id, client_id, scopes, active, granted_at, updated_at, revoked_at) VALUES ($1, $2, $3, TRUE, $4, $4, NULL)
                 ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = $3, active = TRUE, granted_at = $4, updated_at = $4, revoked_at = NULL",
                vec![user, client, Arg::Text(json_list(&e.scopes)), at],
            )],
            ConsentEvent::ConsentScopesExtended(e) => vec![Stmt::new(
                "UPDATE consents SET scopes = $3, updated_at = $4 WHERE user_id = $1 AND client_id = $2",
                vec![user, client, Arg::Text(json_list(&e.scopes)), at],
            )],
            ConsentEvent::ConsentRevoked(_) => vec![Stmt::new(
                "UPDATE consents SET scopes = '[]', active = FALSE, updated_at = $3, revoked_at = $3 WHERE user_id = $1 AND client_id = $2",
                vec![user, client, at],
            )],
        })
    }
}

pub struct GrantsProjection;

impl Projection for GrantsProjection {
    fn name(&self) -> &'static str {
        "grants"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["grants"]
    }
    /// Tokens themselves have no table: the revocation index is the live
    /// view in memory, and a grant's tokens are its stream.
    fn project(&self, event: &RecordedEvent) -> Result<Vec<Stmt>, StoreError> {
        let Some(grant_id) = aggregate_id(event, "grant") else { return Ok(vec![]) };
        let at = time_text(event.recorded_at);
        let grant = || text(grant_id);
        if event.event_type == "AccessTokenIssued" {
            return access_token_issued(event, grant_id, at);
        }
        Ok(match event.decode::<GrantEvent>()? {
            GrantEvent::AuthorizationCodeIssued(e) => vec![Stmt::new(
                "INSERT INTO grants (grant_id, grant_type, client_id, subject, user_id, scopes, created_at, updated_at) VALUES ($1, $2, $3, $4, $4, $5, $6, $6)",
                vec![
                    grant(),
                    text(GrantType::AuthorizationCode.as_str()),
                    Arg::Text(e.client_id),
                    Arg::Text(e.user_id),
                    Arg::Text(json_list(&e.scopes)),
                    Arg::Text(at),
                ],
            )],
            GrantEvent::AccessTokenIssued(_) => return access_token_issued(event, grant_id, at),
            GrantEvent::AuthorizationCodeRedeemed(_) | GrantEvent::RefreshTokenIssued(_) | GrantEvent::RefreshTokenRotated(_) => vec![],
            GrantEvent::GrantRevoked(e) => vec![Stmt::new(
                "UPDATE grants SET revoked_at = $2, revocation_reason = $3, updated_at = $2 WHERE grant_id = $1",
                vec![grant(), Arg::Text(at), text(e.reason.as_str())],
            )],
        })
    }
}

/// What the grants table keeps of an `AccessTokenIssued`: read from the
/// payload without the token's own times, which the table does not store
/// (parsing them was most of this projection's work for every token).
#[derive(serde::Deserialize)]
struct TokenOfGrant<'a> {
    grant_type: GrantType,
    #[serde(borrow)]
    client_id: &'a str,
    #[serde(borrow)]
    subject: &'a str,
    #[serde(borrow)]
    user_id: Option<&'a str>,
    #[serde(borrow)]
    scopes: Vec<&'a str>,
}

fn access_token_issued(event: &RecordedEvent, grant_id: &str, at: String) -> Result<Vec<Stmt>, StoreError> {
    let e = <TokenOfGrant as serde::Deserialize>::deserialize(&event.payload)
        .map_err(|e| StoreError::Corrupt { position: event.position, reason: format!("AccessTokenIssued: {e}") })?;
    // Client credentials, password and implicit grants begin with their
    // access token; code and refresh tokens extend a grant.
    let opens_grant = !matches!(e.grant_type, GrantType::AuthorizationCode | GrantType::RefreshToken);
    Ok(vec![if opens_grant {
        Stmt::new(
            "INSERT INTO grants (grant_id, grant_type, client_id, subject, user_id, scopes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            vec![
                text(grant_id),
                text(e.grant_type.as_str()),
                text(e.client_id),
                text(e.subject),
                Arg::OptText(e.user_id.map(str::to_string)),
                Arg::Text(json_list(&e.scopes)),
                Arg::Text(at),
            ],
        )
    } else {
        Stmt::new("UPDATE grants SET updated_at = $2 WHERE grant_id = $1", vec![text(grant_id), Arg::Text(at)])
    }])
}

pub struct SigningKeysProjection;

impl Projection for SigningKeysProjection {
    fn name(&self) -> &'static str {
        "signing_keys"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["signing_keys"]
    }
    fn project(&self, event: &RecordedEvent) -> Result<Vec<Stmt>, StoreError> {
        let Some(kid) = aggregate_id(event, "key") else { return Ok(vec![]) };
        let at = time_text(event.recorded_at);
        Ok(match event.decode::<SigningKeyEvent>()? {
            SigningKeyEvent::SigningKeyGenerated(e) => vec![Stmt::new(
                "INSERT INTO signing_keys (kid, alg, status, public_jwk, created_at) VALUES ($1, $2, 'generated', $3, $4)",
                vec![text(kid), Arg::Text(format!("{:?}", e.alg)), Arg::Text(e.public_jwk.to_string()), Arg::Text(at)],
            )],
            SigningKeyEvent::SigningKeyActivated(_) => vec![Stmt::new(
                "UPDATE signing_keys SET status = 'active', activated_at = $2 WHERE kid = $1",
                vec![text(kid), Arg::Text(at)],
            )],
            SigningKeyEvent::SigningKeyRetired(e) => vec![Stmt::new(
                "UPDATE signing_keys SET status = 'retired', retired_at = $2, verify_until = $3 WHERE kid = $1",
                vec![text(kid), Arg::Text(at), Arg::Text(time_text(e.verify_until))],
            )],
        })
    }
}

pub struct AuditTrailProjection;

impl Projection for AuditTrailProjection {
    fn name(&self) -> &'static str {
        "audit_trail"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["audit_trail"]
    }
    fn project(&self, event: &RecordedEvent) -> Result<Vec<Stmt>, StoreError> {
        let aggregate = event.stream_id.split('-').next().unwrap_or_default().to_string();
        let field = |k: &str| event.payload.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let owned = |s: Option<&str>| s.map(str::to_string);
        // Who and what the event concerns; events that do not name them in
        // their payload inherit them from their grant's or client's row.
        let (user_id, client_id, grant_id, client_aggregate) = match aggregate.as_str() {
            "grant" => (field("user_id"), field("client_id"), owned(aggregate_id(event, "grant")), None),
            "user" => (owned(aggregate_id(event, "user")), None, None, None),
            "consent" => match aggregate_id(event, "consent").and_then(parse_consent_id) {
                Some((user, client)) => (Some(user.to_string()), Some(client.to_string()), None, None),
                None => (None, None, None, None),
            },
            "client" => (None, field("client_id"), None, owned(aggregate_id(event, "client"))),
            _ => (None, None, None, None),
        };
        let ctx = &event.metadata.context;
        // Most events name both parties (a token's payload says its user,
        // even when that is nobody): then the row is a plain insert, which
        // the runner merges with its neighbours. Only the others look their
        // grant's or client's row up.
        let names_parties = |keys: &[&str]| keys.iter().all(|k| event.payload.get(*k).is_some());
        let needs_lookup = match aggregate.as_str() {
            "grant" => !names_parties(&["user_id", "client_id"]),
            "client" => client_id.is_none(),
            _ => false,
        };
        let sql = if needs_lookup {
            "INSERT INTO audit_trail (position, stream_id, aggregate, event_type, actor_kind, actor_id, user_id, client_id, grant_id, request_id, source_address, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6,
               COALESCE($7, (SELECT user_id FROM grants WHERE grant_id = $9)),
               COALESCE($8, (SELECT client_id FROM grants WHERE grant_id = $9), (SELECT client_id FROM clients WHERE id = $13)),
               $9, $10, $11, $12)"
        } else {
            "INSERT INTO audit_trail (position, stream_id, aggregate, event_type, actor_kind, actor_id, user_id, client_id, grant_id, request_id, source_address, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        };
        let mut args = vec![
            Arg::Int(event.position),
            text(&event.stream_id),
            Arg::Text(aggregate),
            text(&event.event_type),
            text(ctx.actor.kind.as_str()),
            text(&ctx.actor.id),
            Arg::OptText(user_id),
            Arg::OptText(client_id),
            Arg::OptText(grant_id),
            Arg::OptText(ctx.request_id.clone()),
            Arg::OptText(ctx.source_address.clone()),
            Arg::Text(time_text(event.recorded_at)),
            Arg::OptText(client_aggregate),
        ];
        if !needs_lookup {
            args.pop(); // $13 only feeds the lookup
        }
        Ok(vec![Stmt::new(sql, args)])
    }
}
