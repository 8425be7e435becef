//! `grantd audit verify`: walks the whole log and recomputes the hash chain.

use serde_json::Value;

use super::hash::{GENESIS, Hash, HashInput, canonical_json, event_hash};
use super::{EventStore, RawEvent, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainReport {
    /// Every event links to its predecessor and hashes to its stored hash.
    Intact { events: i64, head_hash: Hash },
    /// The first position at which the chain does not hold, and why.
    Broken { position: i64, reason: String },
}

/// Verifies the chain from the first event; `progress` is told the position
/// reached after every page.
pub async fn verify_chain(store: &EventStore, mut progress: impl FnMut(i64)) -> Result<ChainReport, StoreError> {
    let mut prev: Hash = GENESIS;
    let mut last = 0i64;
    loop {
        let page = match store.read_raw(last, 2000).await {
            Ok(page) => page,
            Err(StoreError::Corrupt { position, reason }) => return Ok(ChainReport::Broken { position, reason }),
            Err(e) => return Err(e),
        };
        if page.is_empty() {
            return Ok(ChainReport::Intact { events: last, head_hash: prev });
        }
        for raw in &page {
            if let Err(reason) = check(raw, last, &prev) {
                return Ok(ChainReport::Broken { position: raw.position.min(last + 1), reason });
            }
            prev = raw.hash.as_slice().try_into().unwrap_or(GENESIS);
            last = raw.position;
        }
        progress(last);
    }
}

fn check(raw: &RawEvent, last: i64, prev: &Hash) -> Result<(), String> {
    if raw.position != last + 1 {
        return Err(format!("expected position {} but the next event is at {}: events are missing", last + 1, raw.position));
    }
    if raw.prev_hash.as_slice() != prev {
        return Err("prev_hash does not match the hash of the previous event".into());
    }
    let payload: Value = serde_json::from_str(&raw.payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let metadata: Value = serde_json::from_str(&raw.metadata).map_err(|e| format!("metadata is not JSON: {e}"))?;
    let computed = event_hash(
        prev,
        &HashInput {
            position: raw.position,
            stream_id: &raw.stream_id,
            stream_version: raw.stream_version,
            event_type: &raw.event_type,
            schema_version: raw.schema_version,
            payload: &canonical_json(&payload),
            metadata: &canonical_json(&metadata),
            recorded_at_micros: raw.recorded_at.timestamp_micros(),
        },
    );
    if raw.hash.as_slice() != computed {
        return Err("content does not match its hash: the event was altered".into());
    }
    Ok(())
}
