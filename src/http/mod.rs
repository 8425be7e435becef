//! HTTP endpoints. Handlers parse, call and render.

pub mod authorize;
pub mod discovery;
pub mod health;
pub mod introspect;
pub mod pages;
pub mod responses;
pub mod session;
pub mod throttle;
pub mod token;
pub mod userinfo;
