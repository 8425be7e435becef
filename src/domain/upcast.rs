//! Upcasters: stored events are never rewritten; an event stored under an
//! older schema version is lifted to the current one when it is read.

use serde_json::Value;

/// Lifts `payload` of `event_type` from `version` to the current version.
/// Returns `None` when no path exists (an unknown type or a version from
/// the future), which the reader reports as a corrupt event.
pub fn upcast(event_type: &str, version: i32, payload: Value) -> Option<(i32, Value)> {
    let current = current_version(event_type)?;
    let (mut version, mut payload) = (version, payload);
    while version < current {
        payload = step(event_type, version, payload)?;
        version += 1;
    }
    (version == current).then_some((version, payload))
}

/// The current schema version of an event type, or `None` if unknown.
pub fn current_version(event_type: &str) -> Option<i32> {
    FAMILIES.iter().flat_map(|types| types.iter()).find(|(t, _)| *t == event_type).map(|(_, v)| *v)
}

/// The event types of each aggregate with their current schema versions.
const FAMILIES: [&[(&str, i32)]; 7] = {
    use super::*;
    [
        client::ClientEvent::TYPES,
        user::UserEvent::TYPES,
        consent::ConsentEvent::TYPES,
        grant::GrantEvent::TYPES,
        signing_key::SigningKeyEvent::TYPES,
        installation::InstallationEvent::TYPES,
        name_claim::NameClaimEvent::TYPES,
    ]
};

/// Every event type the code emits with its current schema version.
pub fn all_event_types() -> Vec<(&'static str, i32)> {
    FAMILIES.concat()
}

/// One step `version` → `version + 1`.
fn step(event_type: &str, version: i32, payload: Value) -> Option<Value> {
    match (event_type, version) {
        // v1 predates per-client ID token algorithms: every client signed with EdDSA.
        ("ClientRegistered", 1) => {
            let mut payload = payload;
            payload.as_object_mut()?.entry("id_token_signed_response_alg").or_insert(Value::from("EdDSA"));
            Some(payload)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DomainEvent;
    use serde_json::json;

    #[test]
    fn client_registered_v1_gains_the_default_algorithm() {
        let v1 = json!({"client_id": "a", "name": "A", "redirect_uris": [], "grant_types": ["client_credentials"],
                        "scopes": [], "confidential": true, "first_party": false, "secret_hash": "00"});
        let (version, v2) = upcast("ClientRegistered", 1, v1).unwrap();
        assert_eq!(version, 2);
        assert_eq!(v2["id_token_signed_response_alg"], "EdDSA");
        let decoded = crate::domain::client::ClientEvent::from_payload("ClientRegistered", &v2);
        assert!(decoded.is_ok());
    }

    #[test]
    fn current_versions_pass_through_and_unknowns_fail() {
        assert_eq!(upcast("ConsentGranted", 1, json!({"x": 1})), Some((1, json!({"x": 1}))));
        assert_eq!(upcast("NoSuchEvent", 1, json!({})), None);
        assert_eq!(upcast("ConsentGranted", 7, json!({})), None);
    }
}
