//! Protocol rules as plain functions: no I/O, no clock, no randomness.

pub mod authorize;
pub mod client_auth;
pub mod error;
pub mod params;
pub mod pkce;
pub mod redirect;
