//! Keep-alives that share a port with SIP (RFC 5626 §3.5, §4.4): how to tell them from SIP
//! messages, and what a server answers. Sans-IO: the transports call these on bytes they
//! read.
//!
//! - Over a stream (TCP, TLS, WebSocket) a client pings with a double CRLF and the server
//!   answers each ping with a single CRLF pong (§3.5.1, §4.4.1). A lone CRLF (a pong, or the
//!   CRLF some stacks send before a message) is not answered, so two peers never ping-pong.
//! - Over UDP the client pings with a STUN Binding request (RFC 5389) on the SIP port, and the
//!   server answers with a Binding success response that carries the ping's source address
//!   (XOR-MAPPED-ADDRESS), which is how the client learns that its NAT binding changed
//!   (§4.4.2, §8.4).

/// The ping a client sends over a stream (RFC 5626 §3.5.1): a double CRLF.
pub const CRLF_PING: &[u8] = b"\r\n\r\n";

/// The pong a server answers a stream ping with (RFC 5626 §3.5.1): a single CRLF.
pub const CRLF_PONG: &[u8] = b"\r\n";

/// Whether `b` (a datagram or one WebSocket message) holds only CR and LF octets: a
/// keep-alive, never a SIP message. An empty input counts as one too.
pub fn is_crlf(b: &[u8]) -> bool {
    b.iter().all(|c| *c == b'\r' || *c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_only_input_is_a_keepalive() {
        assert!(is_crlf(CRLF_PING) && is_crlf(CRLF_PONG) && is_crlf(b"\n"));
        assert!(!is_crlf(b"OPTIONS sip:x SIP/2.0\r\n"));
        assert!(!is_crlf(b"\r\n\r\nX"));
    }
}
