//! The browser-free heart of capture-session: the session engine that decides
//! when to refresh, adopt, retry or end an Akamai Identity Cloud (Janrain
//! Capture) session, and the wire types of the backend contract shared by the
//! browser helper and the reference server.
#![deny(missing_docs)]

pub mod engine;
pub mod token;
pub mod wire;

pub use token::{AccessToken, AuthorizationCode, RefreshToken};
