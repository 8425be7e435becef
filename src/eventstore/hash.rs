//! The tamper-evident chain: each event's hash covers the previous event's
//! hash and the event's own canonical content.

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::CommandContext;

pub type Hash = [u8; 32];

/// The `prev_hash` of the first event.
pub const GENESIS: Hash = [0u8; 32];

/// What the hash covers, in the order it is fed to SHA-256.
pub struct HashInput<'a> {
    pub position: i64,
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub payload: &'a str,
    pub metadata: &'a str,
    pub recorded_at_micros: i64,
}

pub fn event_hash(prev: &Hash, e: &HashInput<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(e.position.to_be_bytes());
    field(&mut h, e.stream_id);
    h.update(e.stream_version.to_be_bytes());
    field(&mut h, e.event_type);
    h.update(e.schema_version.to_be_bytes());
    field(&mut h, e.payload);
    field(&mut h, e.metadata);
    h.update(e.recorded_at_micros.to_be_bytes());
    h.finalize().into()
}

/// Length-prefixed so that no two field splits hash alike.
fn field(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

/// JSON with object keys sorted at every level and no insignificant
/// whitespace: the same value always yields the same bytes, however the
/// backend stored it (PostgreSQL's JSONB reorders keys).
pub fn canonical_json(value: &Value) -> String {
    // serde_json's map keeps its keys sorted unless its `preserve_order`
    // feature is on: then its compact output is canonical already, written
    // in one pass. Sorting key by key, allocating each, was a tenth of the
    // token endpoint's CPU, spent in the writer between two batches.
    if keys_sorted(value) {
        return compact(value);
    }
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// The canonical JSON of an event's metadata, exactly as [`canonical_json`]
/// writes an `EventMetadata` made into a value, but without the value: it
/// runs in the writer for every event of a batch. `recorded_at` is the
/// batch time already in JSON. The keys, sorted: actor (id, kind),
/// authentication, event_id, recorded_at, request_id, source_address.
pub fn canonical_metadata(event_id: &Uuid, recorded_at: &str, context: &CommandContext) -> String {
    let mut out = Vec::with_capacity(192);
    out.extend_from_slice(b"{\"actor\":{\"id\":");
    json_into(&mut out, &context.actor.id);
    out.extend_from_slice(b",\"kind\":");
    json_into(&mut out, &context.actor.kind);
    out.push(b'}');
    if let Some(authentication) = &context.authentication {
        out.extend_from_slice(b",\"authentication\":");
        json_into(&mut out, authentication);
    }
    out.extend_from_slice(b",\"event_id\":\"");
    out.extend_from_slice(event_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
    out.extend_from_slice(b"\",\"recorded_at\":");
    out.extend_from_slice(recorded_at.as_bytes());
    if let Some(request_id) = &context.request_id {
        out.extend_from_slice(b",\"request_id\":");
        json_into(&mut out, request_id);
    }
    if let Some(source_address) = &context.source_address {
        out.extend_from_slice(b",\"source_address\":");
        json_into(&mut out, source_address);
    }
    out.push(b'}');
    // Only serde_json's output and UTF-8 text went in.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn json_into(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    // Writing a string or a unit enum variant into memory cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// serde_json's compact text, written straight into memory (its `Display`
/// goes through a formatter, a write call per token: twice the work).
fn compact(value: &Value) -> String {
    // A `Value` always serializes (its keys are strings).
    serde_json::to_string(value).unwrap_or_default()
}

fn keys_sorted(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b) && map.values().all(keys_sorted),
        Value::Array(items) => items.iter().all(keys_sorted),
        _ => true,
    }
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&compact(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": "x"}], "c": null}});
        assert_eq!(canonical_json(&a), r#"{"a":{"c":null,"d":[1,{"y":"x","z":0}]},"b":1}"#);
        let mut out = String::new();
        write_canonical(&a, &mut out);
        assert_eq!(out, canonical_json(&a), "the sorting writer and the fast path agree");
        let escaped = json!({"k\"\u{1}é": "v\n\u{7f}", "n": [1.5, -2, 1e300, true]});
        let mut out = String::new();
        write_canonical(&escaped, &mut out);
        assert_eq!(out, canonical_json(&escaped));
    }

    #[test]
    fn metadata_is_written_as_canonical_json_writes_it() {
        use crate::domain::Actor;
        use crate::eventstore::EventMetadata;
        let odd = "é \" \\ \n \u{1} \u{7f} 😀";
        let contexts = [
            CommandContext::system(),
            CommandContext {
                request_id: Some("req-1".into()),
                source_address: Some("127.0.0.1".into()),
                ..CommandContext::by(Actor::client("bench"))
            },
            CommandContext {
                actor: Actor::user(odd),
                request_id: Some(odd.into()),
                source_address: Some("::1".into()),
                authentication: Some("pwd".into()),
            },
            CommandContext { authentication: Some(odd.into()), ..CommandContext::by(Actor::client("c")) },
        ];
        for (i, context) in contexts.into_iter().enumerate() {
            for recorded_at in ["2026-11-28T16:42:00.471452Z", "2026-11-28T16:42:00Z"] {
                let recorded_at = recorded_at.parse().unwrap();
                let metadata = EventMetadata { event_id: Uuid::from_u128(0xfeed + i as u128), recorded_at, context: context.clone() };
                let expected = canonical_json(&serde_json::to_value(&metadata).unwrap());
                let recorded_at_json = serde_json::to_string(&recorded_at).unwrap();
                assert_eq!(canonical_metadata(&metadata.event_id, &recorded_at_json, &context), expected);
            }
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = HashInput {
            position: 1,
            stream_id: "s",
            stream_version: 1,
            event_type: "T",
            schema_version: 1,
            payload: "{}",
            metadata: "{}",
            recorded_at_micros: 5,
        };
        let h = event_hash(&GENESIS, &base);
        assert_ne!(h, event_hash(&[1; 32], &base));
        assert_ne!(h, event_hash(&GENESIS, &HashInput { position: 2, ..base }));
        assert_ne!(h, event_hash(&GENESIS, &HashInput { payload: "{\"a\":1}", ..base }));
        assert_ne!(h, event_hash(&GENESIS, &HashInput { recorded_at_micros: 6, ..base }));
        assert_eq!(h, event_hash(&GENESIS, &base));
    }
}
