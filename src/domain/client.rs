//! Client aggregate (`client-{uuid}`): an application registered to use grantd.

use serde::{Deserialize, Serialize};

use super::{Aggregate, domain_events, is_valid_scope_token, normalize_scopes};

/// OAuth grant types by their wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    Password,
    Implicit,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Password => "password",
            GrantType::Implicit => "implicit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "authorization_code" => GrantType::AuthorizationCode,
            "refresh_token" => GrantType::RefreshToken,
            "client_credentials" => GrantType::ClientCredentials,
            "password" => GrantType::Password,
            "implicit" => GrantType::Implicit,
            _ => return None,
        })
    }
}

/// JWS algorithm for a client's ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SigningAlg {
    #[default]
    EdDSA,
    RS256,
}

/// The settings an admin chooses for a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientSettings {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub first_party: bool,
    pub id_token_signed_response_alg: SigningAlg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRegistered {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub confidential: bool,
    pub first_party: bool,
    /// Hex SHA-256 of the generated secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub id_token_signed_response_alg: SigningAlg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientUpdated {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub first_party: bool,
    pub id_token_signed_response_alg: SigningAlg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientSecretRotated {
    pub secret_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientDisabled {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientEnabled {}

domain_events!(ClientEvent {
    ClientRegistered = 2,
    ClientUpdated = 1,
    ClientSecretRotated = 1,
    ClientDisabled = 1,
    ClientEnabled = 1,
});

#[derive(Debug, Clone)]
pub enum ClientCommand {
    Register { client_id: String, settings: ClientSettings, confidential: bool, secret_hash: Option<String> },
    Update(ClientSettings),
    RotateSecret { secret_hash: String },
    Disable,
    Enable,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("client already registered")]
    AlreadyRegistered,
    #[error("client not found")]
    NotFound,
    #[error("client is disabled")]
    Disabled,
    #[error("client is already disabled")]
    AlreadyDisabled,
    #[error("client is not disabled")]
    NotDisabled,
    #[error("invalid client: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Client {
    pub registered: Option<RegisteredClient>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredClient {
    pub client_id: String,
    pub settings: ClientSettings,
    pub confidential: bool,
    pub secret_hash: Option<String>,
    pub disabled: bool,
}

impl Aggregate for Client {
    type Command = ClientCommand;
    type Event = ClientEvent;
    type Error = ClientError;
    const STREAM_PREFIX: &'static str = "client";

    fn decide(&self, command: &ClientCommand) -> Result<Vec<ClientEvent>, ClientError> {
        match (command, &self.registered) {
            (ClientCommand::Register { .. }, Some(_)) => Err(ClientError::AlreadyRegistered),
            (ClientCommand::Register { client_id, settings, confidential, secret_hash }, None) => {
                if client_id.trim().is_empty() || client_id.chars().any(|c| c.is_control()) {
                    return Err(ClientError::Invalid("client_id must be printable and not empty".into()));
                }
                let settings = validate_settings(settings, *confidential)?;
                match (confidential, secret_hash) {
                    (true, None) => {
                        return Err(ClientError::Invalid("a confidential client needs a secret".into()));
                    }
                    (false, Some(_)) => {
                        return Err(ClientError::Invalid("a public client has no secret".into()));
                    }
                    _ => {}
                }
                Ok(vec![
                    ClientRegistered {
                        client_id: client_id.clone(),
                        name: settings.name,
                        redirect_uris: settings.redirect_uris,
                        grant_types: settings.grant_types,
                        scopes: settings.scopes,
                        confidential: *confidential,
                        first_party: settings.first_party,
                        secret_hash: secret_hash.clone(),
                        id_token_signed_response_alg: settings.id_token_signed_response_alg,
                    }
                    .into(),
                ])
            }
            (_, None) => Err(ClientError::NotFound),
            // A disabled client is frozen until it is enabled again.
            (ClientCommand::Update(_) | ClientCommand::RotateSecret { .. }, Some(c)) if c.disabled => Err(ClientError::Disabled),
            (ClientCommand::Update(settings), Some(c)) => {
                let settings = validate_settings(settings, c.confidential)?;
                if settings == c.settings {
                    return Ok(vec![]);
                }
                Ok(vec![
                    ClientUpdated {
                        name: settings.name,
                        redirect_uris: settings.redirect_uris,
                        grant_types: settings.grant_types,
                        scopes: settings.scopes,
                        first_party: settings.first_party,
                        id_token_signed_response_alg: settings.id_token_signed_response_alg,
                    }
                    .into(),
                ])
            }
            (ClientCommand::RotateSecret { secret_hash }, Some(c)) => {
                if !c.confidential {
                    return Err(ClientError::Invalid("a public client has no secret".into()));
                }
                Ok(vec![ClientSecretRotated { secret_hash: secret_hash.clone() }.into()])
            }
            (ClientCommand::Disable, Some(c)) if c.disabled => Err(ClientError::AlreadyDisabled),
            (ClientCommand::Disable, Some(_)) => Ok(vec![ClientDisabled {}.into()]),
            (ClientCommand::Enable, Some(c)) if !c.disabled => Err(ClientError::NotDisabled),
            (ClientCommand::Enable, Some(_)) => Ok(vec![ClientEnabled {}.into()]),
        }
    }

    fn apply(&mut self, event: &ClientEvent) {
        match event {
            ClientEvent::ClientRegistered(e) => {
                self.registered = Some(RegisteredClient {
                    client_id: e.client_id.clone(),
                    settings: ClientSettings {
                        name: e.name.clone(),
                        redirect_uris: e.redirect_uris.clone(),
                        grant_types: e.grant_types.clone(),
                        scopes: e.scopes.clone(),
                        first_party: e.first_party,
                        id_token_signed_response_alg: e.id_token_signed_response_alg,
                    },
                    confidential: e.confidential,
                    secret_hash: e.secret_hash.clone(),
                    disabled: false,
                })
            }
            ClientEvent::ClientUpdated(e) => {
                if let Some(c) = &mut self.registered {
                    c.settings = ClientSettings {
                        name: e.name.clone(),
                        redirect_uris: e.redirect_uris.clone(),
                        grant_types: e.grant_types.clone(),
                        scopes: e.scopes.clone(),
                        first_party: e.first_party,
                        id_token_signed_response_alg: e.id_token_signed_response_alg,
                    };
                }
            }
            ClientEvent::ClientSecretRotated(e) => {
                if let Some(c) = &mut self.registered {
                    c.secret_hash = Some(e.secret_hash.clone());
                }
            }
            ClientEvent::ClientDisabled(_) => {
                if let Some(c) = &mut self.registered {
                    c.disabled = true;
                }
            }
            ClientEvent::ClientEnabled(_) => {
                if let Some(c) = &mut self.registered {
                    c.disabled = false;
                }
            }
        }
    }
}

/// Checks a client's settings and returns them normalised (sorted grant
/// types and scopes). Redirect URIs must be absolute, without fragment
/// (RFC 6749 §3.1.2), and are compared later by exact string match.
pub fn validate_settings(settings: &ClientSettings, confidential: bool) -> Result<ClientSettings, ClientError> {
    let name = settings.name.trim();
    if name.is_empty() {
        return Err(ClientError::Invalid("name must not be empty".into()));
    }
    let mut grant_types = settings.grant_types.clone();
    grant_types.sort();
    grant_types.dedup();
    if grant_types.is_empty() {
        return Err(ClientError::Invalid("at least one grant type is required".into()));
    }
    if !confidential && grant_types.contains(&GrantType::ClientCredentials) {
        return Err(ClientError::Invalid("client_credentials needs a confidential client".into()));
    }
    let redirecting = grant_types.contains(&GrantType::AuthorizationCode) || grant_types.contains(&GrantType::Implicit);
    if redirecting && settings.redirect_uris.is_empty() {
        return Err(ClientError::Invalid("authorization_code and implicit need a redirect URI".into()));
    }
    for uri in &settings.redirect_uris {
        validate_redirect_uri(uri)?;
    }
    let mut redirect_uris = settings.redirect_uris.clone();
    redirect_uris.dedup();
    for scope in &settings.scopes {
        if !is_valid_scope_token(scope) {
            return Err(ClientError::Invalid(format!("invalid scope {scope:?}")));
        }
    }
    Ok(ClientSettings {
        name: name.to_string(),
        redirect_uris,
        grant_types,
        scopes: normalize_scopes(&settings.scopes),
        first_party: settings.first_party,
        id_token_signed_response_alg: settings.id_token_signed_response_alg,
    })
}

fn validate_redirect_uri(uri: &str) -> Result<(), ClientError> {
    let parsed = url::Url::parse(uri).map_err(|_| ClientError::Invalid(format!("redirect URI {uri:?} is not an absolute URI")))?;
    if parsed.fragment().is_some() {
        return Err(ClientError::Invalid(format!("redirect URI {uri:?} must not contain a fragment")));
    }
    if parsed.cannot_be_a_base() && parsed.scheme() != "urn" {
        return Err(ClientError::Invalid(format!("redirect URI {uri:?} is not a URL")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ClientSettings {
        ClientSettings {
            name: "Shop".into(),
            redirect_uris: vec!["https://shop.example/cb".into()],
            grant_types: vec![GrantType::RefreshToken, GrantType::AuthorizationCode],
            scopes: vec!["profile".into(), "openid".into()],
            first_party: false,
            id_token_signed_response_alg: SigningAlg::EdDSA,
        }
    }

    fn register() -> ClientCommand {
        ClientCommand::Register { client_id: "shop".into(), settings: settings(), confidential: true, secret_hash: Some("ab".repeat(32)) }
    }

    fn given(events: Vec<ClientEvent>) -> Client {
        let mut c = Client::default();
        for e in &events {
            c.apply(e);
        }
        c
    }

    fn registered() -> ClientEvent {
        let events = Client::default().decide(&register()).expect("registers");
        events.into_iter().next().expect("one event")
    }

    #[test]
    fn register_normalises_settings() {
        let events = given(vec![]).decide(&register()).unwrap();
        let ClientEvent::ClientRegistered(e) = &events[0] else { panic!("wrong event") };
        assert_eq!(e.grant_types, vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
        assert_eq!(e.scopes, vec!["openid", "profile"]);
        assert_eq!(e.client_id, "shop");
    }

    #[test]
    fn register_twice_is_rejected() {
        assert_eq!(given(vec![registered()]).decide(&register()), Err(ClientError::AlreadyRegistered));
    }

    #[test]
    fn register_rejects_bad_settings() {
        let cases = [
            ClientSettings { name: " ".into(), ..settings() },
            ClientSettings { grant_types: vec![], ..settings() },
            ClientSettings { redirect_uris: vec![], ..settings() },
            ClientSettings { redirect_uris: vec!["/relative".into()], ..settings() },
            ClientSettings { redirect_uris: vec!["https://a.example/cb#frag".into()], ..settings() },
            ClientSettings { scopes: vec!["bad scope".into()], ..settings() },
        ];
        for s in cases {
            let cmd =
                ClientCommand::Register { client_id: "x".into(), settings: s.clone(), confidential: true, secret_hash: Some("00".into()) };
            assert!(matches!(Client::default().decide(&cmd), Err(ClientError::Invalid(_))), "{s:?}");
        }
    }

    #[test]
    fn public_clients_have_no_secret_and_no_client_credentials() {
        let cmd = ClientCommand::Register {
            client_id: "spa".into(),
            settings: ClientSettings { grant_types: vec![GrantType::ClientCredentials], ..settings() },
            confidential: false,
            secret_hash: None,
        };
        assert!(matches!(Client::default().decide(&cmd), Err(ClientError::Invalid(_))));
        let cmd =
            ClientCommand::Register { client_id: "spa".into(), settings: settings(), confidential: false, secret_hash: Some("00".into()) };
        assert!(matches!(Client::default().decide(&cmd), Err(ClientError::Invalid(_))));
        let cmd = ClientCommand::Register { client_id: "svc".into(), settings: settings(), confidential: true, secret_hash: None };
        assert!(matches!(Client::default().decide(&cmd), Err(ClientError::Invalid(_))));
    }

    #[test]
    fn update_records_new_settings_and_skips_no_change() {
        let c = given(vec![registered()]);
        assert_eq!(c.decide(&ClientCommand::Update(settings())), Ok(vec![]));
        let changed = ClientSettings { name: "Shop 2".into(), ..settings() };
        let events = c.decide(&ClientCommand::Update(changed)).unwrap();
        let c = given(vec![registered(), events[0].clone()]);
        assert_eq!(c.registered.unwrap().settings.name, "Shop 2");
    }

    #[test]
    fn commands_on_unknown_client_are_rejected() {
        for cmd in [
            ClientCommand::Disable,
            ClientCommand::Enable,
            ClientCommand::Update(settings()),
            ClientCommand::RotateSecret { secret_hash: "x".into() },
        ] {
            assert_eq!(Client::default().decide(&cmd), Err(ClientError::NotFound));
        }
    }

    #[test]
    fn disable_and_enable() {
        let c = given(vec![registered()]);
        assert_eq!(c.decide(&ClientCommand::Enable), Err(ClientError::NotDisabled));
        let events = c.decide(&ClientCommand::Disable).unwrap();
        assert_eq!(events, vec![ClientEvent::ClientDisabled(ClientDisabled {})]);
        let c = given(vec![registered(), events[0].clone()]);
        assert!(c.registered.as_ref().unwrap().disabled);
        assert_eq!(c.decide(&ClientCommand::Disable), Err(ClientError::AlreadyDisabled));
        assert_eq!(c.decide(&ClientCommand::Enable), Ok(vec![ClientEvent::ClientEnabled(ClientEnabled {})]));
    }

    #[test]
    fn a_disabled_client_is_frozen() {
        let c = given(vec![registered(), ClientDisabled {}.into()]);
        assert_eq!(c.decide(&ClientCommand::Update(settings())), Err(ClientError::Disabled));
        assert_eq!(c.decide(&ClientCommand::RotateSecret { secret_hash: "x".into() }), Err(ClientError::Disabled));
    }

    #[test]
    fn rotate_secret_replaces_hash() {
        let c = given(vec![registered()]);
        let events = c.decide(&ClientCommand::RotateSecret { secret_hash: "cd".repeat(32) }).unwrap();
        let c = given(vec![registered(), events[0].clone()]);
        assert_eq!(c.registered.unwrap().secret_hash.as_deref(), Some("cd".repeat(32).as_str()));
    }
}
