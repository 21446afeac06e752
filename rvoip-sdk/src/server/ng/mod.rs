//! rtpengine's "ng" control protocol, by which Kamailio's and OpenSIPS's `rtpengine` modules
//! drive a media relay: over UDP, each message is a cookie, a space and a bencoded dictionary
//! ([`bencode`]); the reply repeats the cookie.
//!
//! [`control::NgControl`] is the sans-IO core (`rvoip-server --relay-only --ng udp:IP:PORT`
//! runs it under `driver::ng`): `ping`, `offer`, `answer`, `delete`, `query` and `list`, with
//! replies cached by cookie ([`cache`]) so that retransmissions are harmless. [`request`]
//! decodes a request and its flags.

pub mod bencode;
pub mod cache;
pub mod control;
pub mod request;
#[cfg(test)]
mod tests;

pub use control::{NgConfig, NgControl, NgStats};
