//! SIP protocol cores (RFC 3261): messages, transactions, dialogs and the user agent core.
//! Sans-IO: no sockets, no clock.

pub mod dialog;
pub mod keepalive;
pub mod msg;
pub mod presence;
pub mod resolve;
pub mod timer_wheel;
pub mod transaction;
pub mod transport;
pub mod ua;
