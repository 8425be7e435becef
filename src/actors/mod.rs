//! One actix actor per live aggregate: commands to one aggregate are handled
//! one at a time, so two requests on the same consent or grant never race in
//! this process. Across processes the store's expected-version check decides:
//! the loser reloads the new events and decides again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::domain::Aggregate;
use crate::eventstore::{CommandContext, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamWrite};

/// How often a command is decided again after losing a race.
const MAX_ATTEMPTS: usize = 50;

/// A command that was decided and whose events are durably appended.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    pub events: Vec<A::Event>,
    pub recorded: Vec<Arc<RecordedEvent>>,
    /// The aggregate after the events.
    pub state: A,
    pub version: i64,
}

/// Errors split the cqrs way: the domain said no, the race was lost too often,
/// or the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    #[error("rejected: {0}")]
    Rejected(E),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage: {0}")]
    Storage(StoreError),
}

/// Loads an aggregate from its stream, from `version + 1` on.
pub async fn load<A: Aggregate>(store: &EventStore, stream_id: &str, mut state: A, mut version: i64) -> Result<(A, i64), StoreError> {
    for recorded in store.read_stream(stream_id, version + 1).await? {
        state.apply(&recorded.decode::<A::Event>()?);
        version = recorded.stream_version;
    }
    Ok((state, version))
}

/// Decides and appends, reloading and deciding again after a conflict.
/// Returns the aggregate as it now is, whatever the outcome.
pub async fn decide_and_append<A: Aggregate>(
    store: &EventStore,
    stream_id: &str,
    mut state: A,
    mut version: i64,
    command: &A::Command,
    context: &CommandContext,
) -> (A, i64, Result<Executed<A>, CommandError<A::Error>>) {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            // Two nodes racing on one aggregate would otherwise collide in
            // step; a short random pause lets one of them through.
            let pause = rand::random_range(0..=(attempt as u64).min(20) * 500);
            tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
        }
        let events = match state.decide(command) {
            Ok(events) => events,
            Err(e) => return (state, version, Err(CommandError::Rejected(e))),
        };
        if events.is_empty() {
            let done = Executed { events, recorded: vec![], state: state.clone(), version };
            return (state, version, Ok(done));
        }
        let new: Vec<NewEvent> = events.iter().map(|e| NewEvent::from_domain(e, context)).collect();
        match store.append_to(stream_id, ExpectedVersion::from_loaded(version), new).await {
            Ok(recorded) => {
                events.iter().for_each(|e| state.apply(e));
                version = recorded.last().map_or(version, |r| r.stream_version);
                let done = Executed { events, recorded, state: state.clone(), version };
                return (state, version, Ok(done));
            }
            Err(StoreError::Conflict { .. }) => match load(store, stream_id, state.clone(), version).await {
                Ok((s, v)) => (state, version) = (s, v),
                Err(e) => return (state, version, Err(CommandError::Storage(e))),
            },
            Err(e) => return (state, version, Err(CommandError::Storage(e))),
        }
    }
    let msg = format!("{stream_id} kept changing under {MAX_ATTEMPTS} attempts");
    (state, version, Err(CommandError::Conflict(msg)))
}

/// Runs a command that opens a new stream (a fresh grant id, say): nothing to
/// load, nobody to race, no actor needed. One append.
pub async fn execute_new<A: Aggregate>(
    store: &EventStore,
    id: &str,
    command: &A::Command,
    context: &CommandContext,
) -> Result<Executed<A>, CommandError<A::Error>> {
    execute_new_then(store, id, command, context, |_| ()).await.map(|(done, ())| done)
}

/// [`execute_new`], running `prepare` on the decided events while their
/// append waits for its batch; what it makes is handed back only once they
/// are recorded.
pub async fn execute_new_then<A: Aggregate, T>(
    store: &EventStore,
    id: &str,
    command: &A::Command,
    context: &CommandContext,
    prepare: impl FnOnce(&[A::Event]) -> T,
) -> Result<(Executed<A>, T), CommandError<A::Error>> {
    let stream_id = A::stream_id(id);
    let state = A::default();
    let events = state.decide(command).map_err(CommandError::Rejected)?;
    let new: Vec<NewEvent> = events.iter().map(|e| NewEvent::from_domain(e, context)).collect();
    let failed = |e| match e {
        StoreError::Conflict { .. } => CommandError::Conflict(format!("{stream_id} already exists")),
        other => CommandError::Storage(other),
    };
    let write = StreamWrite { stream_id: stream_id.clone(), expected: ExpectedVersion::NoStream, events: new };
    let recorded = store.enqueue(vec![write]).await.map_err(failed)?;
    let prepared = prepare(&events);
    let recorded = recorded.await.map_err(failed)?;
    let mut state = state;
    events.iter().for_each(|e| state.apply(e));
    let version = recorded.last().map_or(0, |r| r.stream_version);
    Ok((Executed { events, recorded, state, version }, prepared))
}

/// The message an aggregate actor handles.
pub struct Execute<A: Aggregate> {
    pub command: A::Command,
    pub context: CommandContext,
}

impl<A: Aggregate> Message for Execute<A> {
    type Result = Result<Executed<A>, CommandError<A::Error>>;
}

/// Holds one aggregate's state between commands.
pub struct AggregateActor<A: Aggregate> {
    id: String,
    stream_id: String,
    state: A,
    version: i64,
    loaded: bool,
    store: EventStore,
    last_used: Instant,
    idle_after: Duration,
    registry: Weak<RegistryInner<A>>,
}

impl<A: Aggregate> Actor for AggregateActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.idle_after / 4).max(Duration::from_millis(50));
        ctx.run_interval(every, |act, ctx| {
            if act.last_used.elapsed() >= act.idle_after {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        if let Some(registry) = self.registry.upgrade() {
            let me = ctx.address();
            let mut actors = registry.actors.lock().unwrap_or_else(|p| p.into_inner());
            if actors.get(&self.id).is_some_and(|a| *a == me) {
                actors.remove(&self.id);
            }
        }
    }
}

impl<A: Aggregate> Handler<Execute<A>> for AggregateActor<A> {
    type Result = AtomicResponse<Self, Result<Executed<A>, CommandError<A::Error>>>;

    fn handle(&mut self, msg: Execute<A>, _ctx: &mut Self::Context) -> Self::Result {
        self.last_used = Instant::now();
        let store = self.store.clone();
        let stream_id = self.stream_id.clone();
        let (state, version, loaded) = (self.state.clone(), self.version, self.loaded);
        let work = async move {
            let (state, version) = if loaded {
                (state, version)
            } else {
                match load(&store, &stream_id, A::default(), 0).await {
                    Ok(loaded) => loaded,
                    Err(e) => return (None, Err(CommandError::Storage(e))),
                }
            };
            let (state, version, result) = decide_and_append(&store, &stream_id, state, version, &msg.command, &msg.context).await;
            (Some((state, version)), result)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|(loaded, result), act, _ctx| {
            if let Some((state, version)) = loaded {
                act.state = state;
                act.version = version;
                act.loaded = true;
            }
            act.last_used = Instant::now();
            result
        })))
    }
}

struct RegistryInner<A: Aggregate> {
    store: EventStore,
    idle_after: Duration,
    actors: Mutex<HashMap<String, Addr<AggregateActor<A>>>>,
}

/// Starts aggregate actors on demand and forgets them once they idle out, so
/// memory stays bounded however many aggregates exist.
pub struct Registry<A: Aggregate> {
    inner: Arc<RegistryInner<A>>,
}

impl<A: Aggregate> Clone for Registry<A> {
    fn clone(&self) -> Self {
        Registry { inner: self.inner.clone() }
    }
}

impl<A: Aggregate> Registry<A>
where
    A::Command: Clone,
{
    pub fn new(store: EventStore, idle_after: Duration) -> Self {
        Registry { inner: Arc::new(RegistryInner { store, idle_after, actors: Mutex::new(HashMap::new()) }) }
    }

    /// Sends a command to the aggregate `id`, starting its actor if needed.
    /// Needs a running actix system.
    pub async fn execute(&self, id: &str, command: A::Command, context: CommandContext) -> Result<Executed<A>, CommandError<A::Error>> {
        // An actor may stop for idleness between lookup and delivery: then
        // the mailbox is closed and a fresh actor takes the command.
        for _ in 0..3 {
            let addr = self.actor(id);
            match addr.send(Execute { command: command.clone(), context: context.clone() }).await {
                Ok(result) => return result,
                Err(MailboxError::Closed) | Err(MailboxError::Timeout) => self.forget(id, &addr),
            }
        }
        Err(CommandError::Storage(StoreError::Unavailable(format!("actor for {id} kept stopping"))))
    }

    /// The number of aggregate actors alive now.
    pub fn live_actors(&self) -> usize {
        let actors = self.inner.actors.lock().unwrap_or_else(|p| p.into_inner());
        actors.values().filter(|a| a.connected()).count()
    }

    pub fn store(&self) -> &EventStore {
        &self.inner.store
    }

    fn actor(&self, id: &str) -> Addr<AggregateActor<A>> {
        let mut actors = self.inner.actors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(addr) = actors.get(id).filter(|a| a.connected()) {
            return addr.clone();
        }
        let actor = AggregateActor::<A> {
            id: id.to_string(),
            stream_id: A::stream_id(id),
            state: A::default(),
            version: 0,
            loaded: false,
            store: self.inner.store.clone(),
            last_used: Instant::now(),
            idle_after: self.inner.idle_after,
            registry: Arc::downgrade(&self.inner),
        };
        let addr = actor.start();
        actors.insert(id.to_string(), addr.clone());
        addr
    }

    fn forget(&self, id: &str, addr: &Addr<AggregateActor<A>>) {
        let mut actors = self.inner.actors.lock().unwrap_or_else(|p| p.into_inner());
        if actors.get(id).is_some_and(|a| a == addr) {
            actors.remove(id);
        }
    }
}
