//! `events(filter, fromPosition)`: replays the log from a position, then
//! streams live events; a consumer that reconnects with its last position
//! misses nothing.

use async_graphql::{Context, Result, Subscription as SubscriptionMacro};
use futures::{Stream, StreamExt};

use super::types::{AuditEvent, AuditEventFilter, actor_kind_str};
use super::{error, parse_time, require_read, state};

pub struct Subscription;

#[SubscriptionMacro]
impl Subscription {
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditEventFilter>,
        from_position: Option<i64>,
    ) -> Result<impl Stream<Item = AuditEvent>> {
        require_read(ctx, true)?;
        let state = state(ctx)?;
        let f = filter.unwrap_or_default();
        if f.user_id.is_some() || f.client_id.is_some() {
            return Err(error("INVALID_INPUT", "subscriptions filter by streams, eventTypes, actor, from and to"));
        }
        let from = parse_time("from", f.from.as_deref())?;
        let to = parse_time("to", f.to.as_deref())?;
        let streams = f.streams.unwrap_or_default();
        let types = f.event_types.unwrap_or_default();
        let actor = f.actor.map(|a| (actor_kind_str(a.kind), a.id));
        let start = from_position.unwrap_or(0).max(0);
        Ok(state.store.subscribe(start).filter_map(move |event| {
            let keep = event.ok().filter(|e| {
                (streams.is_empty() || streams.contains(&e.stream_id))
                    && (types.is_empty() || types.contains(&e.event_type))
                    && actor.as_ref().is_none_or(|(kind, id)| {
                        e.metadata.context.actor.kind.as_str() == *kind && id.as_ref().is_none_or(|id| *id == e.metadata.context.actor.id)
                    })
                    && from.is_none_or(|t| e.recorded_at >= t)
                    && to.is_none_or(|t| e.recorded_at <= t)
            });
            async move { keep.map(|e| AuditEvent::from(e.as_ref())) }
        }))
    }
}
