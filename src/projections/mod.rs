//! Projections: read models derived from the log.
//!
//! Each projection is a pure reducer from a stored event to SQL statements
//! ([`Stmt`]); the [`runner`] applies them in one transaction together with
//! the projection's checkpoint, so every event is projected exactly once,
//! across crashes and across nodes.

pub mod live;
pub mod queries;
pub mod readmodels;
pub mod runner;

use crate::eventstore::{RecordedEvent, StoreError};

/// A value bound to a statement parameter (`$1`, `$2`, … in both backends).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Bool(bool),
}

/// Binds `Arg`s to a sqlx query of either backend.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                $crate::projections::Arg::Text(s) => q.bind(s.clone()),
                $crate::projections::Arg::OptText(s) => q.bind(s.clone()),
                $crate::projections::Arg::Int(i) => q.bind(*i),
                $crate::projections::Arg::Bool(b) => q.bind(*b),
            };
        }
        q
    }};
}
pub(crate) use bind_args;

/// One SQL statement a projection wants executed.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub sql: &'static str,
    pub args: Vec<Arg>,
}

impl Stmt {
    pub fn new(sql: &'static str, args: Vec<Arg>) -> Self {
        Stmt { sql, args }
    }
}

/// A read model fed from the log.
pub trait Projection: Send + Sync + 'static {
    /// Names the checkpoint row.
    fn name(&self) -> &'static str;
    /// The tables it owns: emptied by a rebuild.
    fn tables(&self) -> &'static [&'static str];
    /// The statements that fold `event` into the read model. Pure.
    fn project(&self, event: &RecordedEvent) -> Result<Vec<Stmt>, StoreError>;
}

/// Every projection, in the order they are applied to each batch (the audit
/// trail reads the grants and clients tables, so it comes last).
pub fn all() -> Vec<Box<dyn Projection>> {
    use readmodels::*;
    vec![
        Box::new(ClientsProjection),
        Box::new(UsersProjection),
        Box::new(ConsentsProjection),
        Box::new(GrantsProjection),
        Box::new(SigningKeysProjection),
        Box::new(AuditTrailProjection),
    ]
}
