//! # rvoip-sdk
//!
//! The rvoip engine: SIP signalling (RFC 3261) as sans-IO protocol cores under a tokio driver.
//!
//! Layers (dependencies point down only):
//! - [`sip::msg`]: our own strict SIP message parser and serializer (RFC 3261 §7, §25).
//! - [`sip::transaction`]: client and server transactions with timers A–K (RFC 3261 §17).
//! - [`auth`]: HTTP digest authentication (RFC 7616, RFC 8760) for the registrar and proxy.
//! - [`server`]: registrar (§10), location service and stateful proxy (§16), sans-IO.
//! - [`driver`]: tokio UDP/TCP transports (§18) that feed the cores, and the `rvoip-server` runtime.
//! - [`sdp`]: RFC 3264 offer/answer for one audio stream; [`media`]: G.711, DTMF (RFC 4733),
//!   jitter buffer, RTP statistics (RFC 3550) and MOS — the start of the SDK user agent (issue 3).

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod api;
pub mod auth;
pub mod driver;
pub mod media;
pub mod sdp;
pub mod server;
pub mod sip;

/// The crate version, e.g. `"0.1.0"`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The crate version as a C string, for the C ABI.
pub const VERSION_CSTR: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(s) => s,
    Err(_) => c"0",
};
