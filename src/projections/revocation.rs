//! The in-memory revocation index: which grants are revoked. Fed by the live
//! subscription, so `/introspect` and token checks never read the database;
//! a revocation committed on any node reaches every node's index.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use futures::StreamExt;

use crate::domain::grant::GrantEvent;
use crate::eventstore::{EventStore, RecordedEvent, StoreError};

#[derive(Clone, Default)]
pub struct RevocationIndex {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    revoked: HashSet<String>,
    position: i64,
}

impl RevocationIndex {
    /// Whether the grant has been revoked.
    pub fn is_revoked(&self, grant_id: &str) -> bool {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).revoked.contains(grant_id)
    }

    /// The last log position folded into the index.
    pub fn position(&self) -> i64 {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).position
    }

    pub fn revoked_count(&self) -> usize {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).revoked.len()
    }

    /// Folds one event into the index.
    pub fn apply(&self, event: &RecordedEvent) {
        let revoked = event.event_type == "GrantRevoked"
            && event.stream_id.starts_with("grant-")
            && matches!(event.decode::<GrantEvent>(), Ok(GrantEvent::GrantRevoked(_)));
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = event.stream_id.strip_prefix("grant-").filter(|_| revoked) {
            inner.revoked.insert(id.to_string());
        }
        inner.position = inner.position.max(event.position);
    }

    /// Replays the log into a new index and keeps it current from the live
    /// subscription. Returns once the index has caught up with the log.
    pub async fn follow(store: &EventStore) -> Result<RevocationIndex, StoreError> {
        let index = RevocationIndex::default();
        let mut position = 0;
        loop {
            let page = store.read_all(position, 5000).await?;
            let Some(last) = page.last().map(|e| e.position) else { break };
            page.iter().for_each(|e| index.apply(e));
            position = last;
        }
        let follower = index.clone();
        let mut live = Box::pin(store.subscribe(position));
        tokio::spawn(async move {
            while let Some(event) = live.next().await {
                match event {
                    Ok(e) => follower.apply(&e),
                    Err(e) => tracing::error!(error = %e, "revocation index cannot read an event"),
                }
            }
        });
        Ok(index)
    }
}
