//! SIP protocol cores (RFC 3261): messages, transactions. Sans-IO: no sockets, no clock.

pub mod msg;
pub mod transaction;
