//! grantd: an event-sourced OAuth 2.1 / OpenID Connect authorization server.

pub mod actors;
pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod eventstore;
pub mod export;
pub mod graphql;
pub mod http;
pub mod issuance;
pub mod jose;
pub mod keys;
pub mod oauth;
pub mod passwords;
pub mod projections;
pub mod setup;
