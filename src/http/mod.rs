//! HTTP endpoints. Handlers parse, call and render.

pub mod health;
