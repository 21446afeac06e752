//! UniFFI bindings over [`rvoip_sdk::api`]: the same engine for Swift, Kotlin and Python.
//!
//! Thin wrappers, one file per area: [`endpoint::Endpoint`] (sockets, accounts, calls, event
//! listeners), [`account::Account`] (registration, RFC 3261 §10), [`call::Call`] (an INVITE
//! session, RFC 3261 §13–15, with audio and RFC 4733 DTMF), [`server::Server`] (the embedded
//! registrar and proxy), [`audio`] sources and sinks, [`event`] records, and [`error::RvoipError`]
//! (a Swift `Error`, a Kotlin exception, a Python exception).
//!
//! Events reach foreign code through [`listener::EndpointListener`], a foreign trait: each
//! [`endpoint::Endpoint::subscribe`] returns a [`listener::Subscription`] that ends the
//! subscription when dropped (or on `cancel()`).
//!
//! The foreign module is named `rvoip` (Swift module `rvoip`, Kotlin package `uniffi.rvoip`,
//! Python module `rvoip`). `bindings/generate.sh` writes the sources for all three.

uniffi::setup_scaffolding!("rvoip");

pub mod account;
pub mod audio;
pub mod call;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod listener;
pub mod server;
pub mod stats;

pub use error::RvoipError;

/// The engine version, e.g. `"0.1.0"`.
#[uniffi::export]
pub fn version() -> String {
    rvoip_sdk::VERSION.to_string()
}
