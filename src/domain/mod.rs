//! The pure core: aggregates decide on commands and apply events.
//!
//! Nothing in this module performs I/O, reads a clock or draws a random
//! number: times, fresh ids and hashes arrive inside the commands.

pub mod client;
pub mod consent;
pub mod grant;
pub mod installation;
pub mod name_claim;
pub mod signing_key;
pub mod upcast;
pub mod user;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event-sourced aggregate: `decide` turns a command into new facts,
/// `apply` folds a fact into the state. Both are pure.
pub trait Aggregate: Default + Clone + Send + Sync + Unpin + 'static {
    type Command: Send + 'static;
    type Event: DomainEvent;
    type Error: std::error::Error + Clone + Send + Sync + 'static;

    /// Prefix of the stream id, e.g. `client` for `client-{uuid}`.
    const STREAM_PREFIX: &'static str;

    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
    fn apply(&mut self, event: &Self::Event);

    fn stream_id(id: &str) -> String {
        format!("{}-{}", Self::STREAM_PREFIX, id)
    }
}

/// A typed event: its Rust type name is its stored `event_type`.
pub trait DomainEvent: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Every event type of this aggregate with its current schema version.
    const TYPES: &'static [(&'static str, i32)];

    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> i32;
    fn to_payload(&self) -> Value;
    /// Decodes a payload already upcast to the current schema version.
    fn from_payload(event_type: &str, payload: &Value) -> Result<Self, EventDecodeError>;
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EventDecodeError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("payload of {event_type} does not match its schema: {reason}")]
    BadPayload { event_type: String, reason: String },
}

/// Declares an aggregate's event enum whose variants wrap structs of the same
/// name, so that the Rust type, the stored `event_type` and the schema file
/// share one name.
macro_rules! domain_events {
    ($(#[$meta:meta])* $enum:ident { $($variant:ident = $version:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum { $($variant($variant)),+ }

        impl $crate::domain::DomainEvent for $enum {
            const TYPES: &'static [(&'static str, i32)] = &[$((stringify!($variant), $version)),+];

            fn event_type(&self) -> &'static str {
                match self { $(Self::$variant(_) => stringify!($variant)),+ }
            }

            fn schema_version(&self) -> i32 {
                match self { $(Self::$variant(_) => $version),+ }
            }

            fn to_payload(&self) -> serde_json::Value {
                let value = match self { $(Self::$variant(e) => serde_json::to_value(e)),+ };
                // Serializing plain structs of strings, numbers and vectors cannot fail.
                value.unwrap_or(serde_json::Value::Null)
            }

            fn from_payload(
                event_type: &str,
                payload: &serde_json::Value,
            ) -> Result<Self, $crate::domain::EventDecodeError> {
                match event_type {
                    $(stringify!($variant) => <$variant as serde::Deserialize>::deserialize(payload)
                        .map(Self::$variant)
                        .map_err(|e| $crate::domain::EventDecodeError::BadPayload {
                            event_type: event_type.to_string(),
                            reason: e.to_string(),
                        }),)+
                    other => Err($crate::domain::EventDecodeError::UnknownType(other.to_string())),
                }
            }
        }

        $(impl From<$variant> for $enum {
            fn from(e: $variant) -> Self { Self::$variant(e) }
        })+
    };
}
pub(crate) use domain_events;

/// Who caused an event: the provenance the audit trail answers with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActorKind {
    User,
    Client,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "USER",
            ActorKind::Client => "CLIENT",
            ActorKind::System => "SYSTEM",
        }
    }
}

impl Actor {
    pub fn system() -> Self {
        Actor { kind: ActorKind::System, id: "grantd".into() }
    }
    pub fn client(id: impl Into<String>) -> Self {
        Actor { kind: ActorKind::Client, id: id.into() }
    }
    pub fn user(id: impl Into<String>) -> Self {
        Actor { kind: ActorKind::User, id: id.into() }
    }
}

/// Scopes are kept sorted and de-duplicated so that equal sets compare equal.
pub fn normalize_scopes<I, S>(scopes: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut v: Vec<String> = scopes.into_iter().map(|s| s.as_ref().trim().to_string()).filter(|s| !s.is_empty()).collect();
    v.sort();
    v.dedup();
    v
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
pub fn is_valid_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_sorted_and_unique() {
        assert_eq!(normalize_scopes(["b", "a", "b", " "]), vec!["a", "b"]);
    }

    #[test]
    fn scope_tokens_follow_rfc6749() {
        assert!(is_valid_scope_token("openid"));
        assert!(is_valid_scope_token("api:read"));
        assert!(!is_valid_scope_token("has space"));
        assert!(!is_valid_scope_token("quote\""));
        assert!(!is_valid_scope_token(""));
    }
}
