//! The one integration-test binary: real SQLite and PostgreSQL, real HTTP.

mod actors;
mod cli;
mod cli_clients;

mod event_catalog;
mod eventstore;
mod export;
mod graphql;
mod helpers;
mod oauth_authorize;
mod oauth_endpoints;
mod oauth_support;
mod oauth_token;
mod oidc;
mod projections;
mod server;
