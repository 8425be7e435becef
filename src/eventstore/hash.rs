//! The tamper-evident chain: each event's hash covers the previous event's
//! hash and the event's own canonical content.

use serde_json::Value;
use sha2::{Digest, Sha256};

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
        return value.to_string();
    }
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
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
                out.push_str(&Value::String(k.clone()).to_string());
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
        other => out.push_str(&other.to_string()),
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
