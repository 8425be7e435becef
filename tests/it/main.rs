//! The one integration-test binary: real SQLite and PostgreSQL, real HTTP.

mod actors;
mod cli;

mod event_catalog;
mod eventstore;
mod helpers;
mod oidc;
mod projections;
mod server;
