//! Protocol rules as plain functions: no I/O, no clock, no randomness.

pub mod pkce;
