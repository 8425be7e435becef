//! The live view: what the hot paths need, kept in memory and fed by the
//! live subscription, so that `/token`, `/introspect`, `/jwks` and
//! `/userinfo` never read the database. Clients, users, signing keys (the
//! active ones unsealed), refresh tokens in force, and revoked grants — the
//! revocation index. A change committed on any node reaches every node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;

use crate::domain::client::{ClientEvent, GrantType, SigningAlg};
use crate::domain::grant::GrantEvent;
use crate::domain::installation::InstallationEvent;
use crate::domain::signing_key::SigningKeyEvent;
use crate::domain::user::UserEvent;
use crate::eventstore::{EventStore, RecordedEvent, StoreError};
use crate::jose::{JwsError, JwsSigner, JwsVerifier, VerifiedTokens};
use crate::keys::MasterKey;

#[derive(Debug, Clone, PartialEq)]
pub struct ClientEntry {
    /// The aggregate id (`client-{id}`).
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub confidential: bool,
    pub first_party: bool,
    pub secret_hash: Option<String>,
    pub disabled: bool,
    pub id_token_alg: SigningAlg,
}

impl ClientEntry {
    pub fn allows(&self, grant_type: GrantType) -> bool {
        self.grant_types.contains(&grant_type)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserEntry {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub password_hash: String,
    pub disabled: bool,
}

/// The refresh token in force for a grant.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshEntry {
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub client_id: String,
    pub subject: String,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
struct KeyEntry {
    alg: SigningAlg,
    public_jwk: Value,
    sealed_private_key: String,
    active: bool,
    verify_until: Option<DateTime<Utc>>,
}

/// Signing material derived from the key events.
#[derive(Default)]
pub struct KeyRing {
    pub eddsa: Option<Arc<JwsSigner>>,
    pub rs256: Option<Arc<JwsSigner>>,
    pub verifier: JwsVerifier,
    /// Access tokens `verifier` accepted, remembered for this key set only.
    pub verified: VerifiedTokens,
    /// `{"keys": [...]}`, serialized once per change.
    pub jwks: Arc<String>,
}

impl KeyRing {
    pub fn signer(&self, alg: SigningAlg) -> Option<&Arc<JwsSigner>> {
        match alg {
            SigningAlg::EdDSA => self.eddsa.as_ref(),
            SigningAlg::RS256 => self.rs256.as_ref(),
        }
    }

    /// The claims of an access token (`typ: at+jwt`) signed by one of these
    /// keys; times, issuer and revocation are the caller's to check.
    pub fn verify_access_token(&self, token: &str) -> Result<Arc<Value>, JwsError> {
        self.verified.verify(&self.verifier, token, "at+jwt")
    }
}

#[derive(Default)]
struct State {
    clients: HashMap<String, Arc<ClientEntry>>,
    client_ids: HashMap<String, String>,
    users: HashMap<String, Arc<UserEntry>>,
    usernames: HashMap<String, String>,
    keys: HashMap<String, KeyEntry>,
    refresh: HashMap<String, RefreshEntry>,
    revoked: HashSet<String>,
    admin_client_id: Option<String>,
    position: i64,
}

#[derive(Clone)]
pub struct LiveView {
    state: Arc<RwLock<State>>,
    keyring: Arc<RwLock<Arc<KeyRing>>>,
    master: Option<MasterKey>,
    /// The last log position folded in, for callers waiting on their own writes.
    applied: Arc<watch::Sender<i64>>,
}

impl LiveView {
    /// An empty view; `master` unseals signing keys (without it the view
    /// serves no signer).
    pub fn new(master: Option<MasterKey>) -> Self {
        LiveView {
            state: Arc::default(),
            keyring: Arc::new(RwLock::new(Arc::new(KeyRing::default()))),
            master,
            applied: Arc::new(watch::channel(0).0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn client(&self, client_id: &str) -> Option<Arc<ClientEntry>> {
        self.read().clients.get(client_id).cloned()
    }

    pub fn user(&self, user_id: &str) -> Option<Arc<UserEntry>> {
        self.read().users.get(user_id).cloned()
    }

    pub fn user_by_username(&self, username: &str) -> Option<Arc<UserEntry>> {
        let state = self.read();
        let id = state.usernames.get(&username.to_lowercase())?;
        state.users.get(id).cloned()
    }

    /// The client `init` registered with the `admin` and `audit` scopes.
    pub fn admin_client_id(&self) -> Option<String> {
        self.read().admin_client_id.clone()
    }

    /// Whether the grant has been revoked.
    pub fn is_revoked(&self, grant_id: &str) -> bool {
        self.read().revoked.contains(grant_id)
    }

    pub fn revoked_count(&self) -> usize {
        self.read().revoked.len()
    }

    /// The refresh token in force for `grant_id`, if any.
    pub fn refresh_token(&self, grant_id: &str) -> Option<RefreshEntry> {
        self.read().refresh.get(grant_id).cloned()
    }

    /// The last log position folded into the view.
    pub fn position(&self) -> i64 {
        self.read().position
    }

    /// Waits until the view has folded in every event up to `position`: a
    /// handler that just recorded events waits for them before answering,
    /// so that the client's next request to this node (introspection,
    /// userinfo, a refresh) sees its own writes. `false` after `timeout`.
    pub async fn caught_up(&self, position: i64, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        matches!(tokio::time::timeout(timeout, applied.wait_for(|p| *p >= position)).await, Ok(Ok(_)))
    }

    pub fn keyring(&self) -> Arc<KeyRing> {
        self.keyring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Folds one event into the view.
    pub fn apply(&self, event: &RecordedEvent) {
        let prefix = event.stream_id.split('-').next().unwrap_or_default();
        let id = event.stream_id.get(prefix.len() + 1..).unwrap_or_default();
        let mut keys_changed = false;
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            match prefix {
                "client" => {
                    if let Ok(e) = event.decode::<ClientEvent>() {
                        apply_client(&mut state, id, e);
                    }
                }
                "user" => {
                    if let Ok(e) = event.decode::<UserEvent>() {
                        apply_user(&mut state, id, e);
                    }
                }
                // Most grant events are tokens issued, which the view does
                // not hold: not decoded at all.
                "grant" if GRANT_EVENTS_IN_VIEW.contains(&event.event_type.as_str()) => {
                    if let Ok(e) = event.decode::<GrantEvent>() {
                        apply_grant(&mut state, id, e, event.recorded_at);
                    }
                }
                "installation" => {
                    if let Ok(InstallationEvent::InstallationInitialized(e)) = event.decode::<InstallationEvent>() {
                        state.admin_client_id = Some(e.admin_client_id);
                    }
                }
                "key" => {
                    if let Ok(e) = event.decode::<SigningKeyEvent>() {
                        apply_key(&mut state, id, e);
                        keys_changed = true;
                    }
                }
                _ => {}
            }
            state.position = state.position.max(event.position);
        }
        if keys_changed {
            self.rebuild_keyring();
        }
        self.applied.send_if_modified(|p| {
            let advanced = event.position > *p;
            if advanced {
                *p = event.position;
            }
            advanced
        });
    }

    fn rebuild_keyring(&self) {
        let state = self.read();
        let now = Utc::now();
        let mut ring = KeyRing::default();
        let mut published = Vec::new();
        let mut verifying = Vec::new();
        let mut kids: Vec<&String> = state.keys.keys().collect();
        kids.sort();
        for kid in kids {
            let key = &state.keys[kid];
            let in_use = key.active || key.verify_until.is_some_and(|until| until > now);
            if !in_use {
                continue;
            }
            published.push(key.public_jwk.clone());
            if key.alg == SigningAlg::EdDSA {
                verifying.push(key.public_jwk.clone());
            }
            if !key.active {
                continue;
            }
            let Some(master) = &self.master else { continue };
            let signer = match key.alg {
                SigningAlg::EdDSA => crate::keys::open_ed25519(master, kid, &key.sealed_private_key).and_then(|k| {
                    JwsSigner::ed25519(kid.clone(), k).map_err(|e| crate::keys::KeyError::Refused(kid.clone(), e.to_string()))
                }),
                SigningAlg::RS256 => crate::keys::open_rsa(master, kid, &key.sealed_private_key).map(|k| JwsSigner::rsa(kid.clone(), k)),
            };
            match signer {
                Ok(signer) => match key.alg {
                    SigningAlg::EdDSA => ring.eddsa = Some(Arc::new(signer)),
                    SigningAlg::RS256 => ring.rs256 = Some(Arc::new(signer)),
                },
                Err(e) => tracing::error!(kid = %kid, error = %e, "cannot use an active signing key: is the master key right?"),
            }
        }
        ring.verifier = JwsVerifier::from_jwks(&verifying);
        ring.jwks = Arc::new(crate::jose::jwks(&published).to_string());
        drop(state);
        *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
    }

    /// Replays the log into a new view and keeps it current from the live
    /// subscription. Returns once the view has caught up with the log.
    pub async fn follow(store: &EventStore, master: Option<MasterKey>) -> Result<LiveView, StoreError> {
        let view = LiveView::new(master);
        let mut position = 0;
        loop {
            let page = store.read_all(position, 5000).await?;
            let Some(last) = page.last().map(|e| e.position) else { break };
            page.iter().for_each(|e| view.apply(e));
            position = last;
        }
        view.rebuild_keyring();
        let follower = view.clone();
        let mut live = Box::pin(store.subscribe(position));
        tokio::spawn(async move {
            while let Some(event) = live.next().await {
                match event {
                    Ok(e) => follower.apply(&e),
                    Err(e) => tracing::error!(error = %e, "the live view cannot read an event"),
                }
            }
        });
        Ok(view)
    }
}

fn apply_client(state: &mut State, id: &str, event: ClientEvent) {
    let client_id = match &event {
        ClientEvent::ClientRegistered(e) => e.client_id.clone(),
        _ => match state.client_ids.get(id) {
            Some(c) => c.clone(),
            None => return,
        },
    };
    if let ClientEvent::ClientRegistered(e) = event {
        state.client_ids.insert(id.to_string(), client_id.clone());
        let entry = ClientEntry {
            id: id.to_string(),
            client_id: e.client_id,
            name: e.name,
            redirect_uris: e.redirect_uris,
            grant_types: e.grant_types,
            scopes: e.scopes,
            confidential: e.confidential,
            first_party: e.first_party,
            secret_hash: e.secret_hash,
            disabled: false,
            id_token_alg: e.id_token_signed_response_alg,
        };
        state.clients.insert(client_id, Arc::new(entry));
        return;
    }
    let Some(current) = state.clients.get(&client_id) else { return };
    let mut entry = (**current).clone();
    match event {
        ClientEvent::ClientRegistered(_) => {}
        ClientEvent::ClientUpdated(e) => {
            entry.name = e.name;
            entry.redirect_uris = e.redirect_uris;
            entry.grant_types = e.grant_types;
            entry.scopes = e.scopes;
            entry.first_party = e.first_party;
            entry.id_token_alg = e.id_token_signed_response_alg;
        }
        ClientEvent::ClientSecretRotated(e) => entry.secret_hash = Some(e.secret_hash),
        ClientEvent::ClientDisabled(_) => entry.disabled = true,
        ClientEvent::ClientEnabled(_) => entry.disabled = false,
    }
    state.clients.insert(client_id, Arc::new(entry));
}

fn apply_user(state: &mut State, id: &str, event: UserEvent) {
    if let UserEvent::UserRegistered(e) = event {
        state.usernames.insert(e.username.to_lowercase(), id.to_string());
        let entry = UserEntry {
            id: id.to_string(),
            username: e.username,
            email: e.email,
            name: e.name,
            password_hash: e.password_hash,
            disabled: false,
        };
        state.users.insert(id.to_string(), Arc::new(entry));
        return;
    }
    let Some(current) = state.users.get(id) else { return };
    let mut entry = (**current).clone();
    match event {
        UserEvent::UserRegistered(_) => {}
        UserEvent::UserUpdated(e) => {
            if state.usernames.get(&entry.username.to_lowercase()).is_some_and(|owner| owner == id) {
                state.usernames.remove(&entry.username.to_lowercase());
            }
            state.usernames.insert(e.username.to_lowercase(), id.to_string());
            entry.username = e.username;
            entry.email = e.email;
            entry.name = e.name;
        }
        UserEvent::UserPasswordChanged(e) => entry.password_hash = e.password_hash,
        UserEvent::UserDisabled(_) => entry.disabled = true,
        UserEvent::UserEnabled(_) => entry.disabled = false,
    }
    state.users.insert(id.to_string(), Arc::new(entry));
}

/// The grant events [`apply_grant`] folds in; it ignores every other.
const GRANT_EVENTS_IN_VIEW: [&str; 3] = ["RefreshTokenIssued", "RefreshTokenRotated", "GrantRevoked"];

fn apply_grant(state: &mut State, grant_id: &str, event: GrantEvent, at: DateTime<Utc>) {
    match event {
        GrantEvent::RefreshTokenIssued(e) => {
            let entry = RefreshEntry {
                token_hash: e.token_hash,
                expires_at: e.expires_at,
                issued_at: at,
                client_id: e.client_id,
                subject: e.subject,
                user_id: e.user_id,
                scopes: e.scopes,
            };
            state.refresh.insert(grant_id.to_string(), entry);
        }
        GrantEvent::RefreshTokenRotated(e) => {
            if let Some(entry) = state.refresh.get_mut(grant_id) {
                entry.token_hash = e.token_hash;
                entry.expires_at = e.expires_at;
                entry.issued_at = at;
            }
        }
        GrantEvent::GrantRevoked(_) => {
            state.revoked.insert(grant_id.to_string());
            state.refresh.remove(grant_id);
        }
        _ => {}
    }
}

fn apply_key(state: &mut State, kid: &str, event: SigningKeyEvent) {
    match event {
        SigningKeyEvent::SigningKeyGenerated(e) => {
            state.keys.insert(
                kid.to_string(),
                KeyEntry {
                    alg: e.alg,
                    public_jwk: e.public_jwk,
                    sealed_private_key: e.sealed_private_key,
                    active: false,
                    verify_until: None,
                },
            );
        }
        SigningKeyEvent::SigningKeyActivated(_) => {
            // One active key per algorithm: activating a key supersedes the
            // previous one, which stays published until it is retired.
            let alg = state.keys.get(kid).map(|k| k.alg);
            for (other, key) in state.keys.iter_mut() {
                if Some(key.alg) == alg && other != kid && key.active {
                    key.active = false;
                    key.verify_until.get_or_insert(DateTime::<Utc>::MAX_UTC);
                }
            }
            if let Some(k) = state.keys.get_mut(kid) {
                k.active = true;
            }
        }
        SigningKeyEvent::SigningKeyRetired(e) => {
            if let Some(k) = state.keys.get_mut(kid) {
                k.active = false;
                k.verify_until = Some(e.verify_until);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DomainEvent;
    use crate::domain::grant::{GrantRevoked, RefreshTokenIssued, RefreshTokenRotated, RevocationReason};

    #[test]
    fn the_grant_events_in_view_are_the_ones_apply_grant_folds_in() {
        let at = Utc::now();
        let issued = GrantEvent::RefreshTokenIssued(RefreshTokenIssued {
            token_hash: "h1".into(),
            expires_at: at,
            client_id: "c".into(),
            subject: "s".into(),
            user_id: None,
            scopes: vec![],
        });
        let rotated =
            GrantEvent::RefreshTokenRotated(RefreshTokenRotated { previous_hash: "h1".into(), token_hash: "h2".into(), expires_at: at });
        let revoked = GrantEvent::GrantRevoked(GrantRevoked { reason: RevocationReason::RefreshTokenReused });
        let mut state = State::default();
        for event in [issued, rotated, revoked] {
            assert!(GRANT_EVENTS_IN_VIEW.contains(&event.event_type()), "{} is folded in", event.event_type());
            let before = (state.refresh.get("g").map(|r| r.token_hash.clone()), state.revoked.len());
            apply_grant(&mut state, "g", event, at);
            assert_ne!((state.refresh.get("g").map(|r| r.token_hash.clone()), state.revoked.len()), before);
        }
    }
}
