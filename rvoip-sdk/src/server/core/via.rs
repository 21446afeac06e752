//! Stamping the top Via of a received request with where it really came from.

use std::net::SocketAddr;

use crate::sip::msg::{ByteString, HeaderName, Request};

/// RFC 3261 §18.2.1 and RFC 3581 §4: when the top Via's host is not the packet's source IP, or
/// when it asks for `rport`, add `received=IP`; fill in `rport` with the source port. Done before
/// the transaction layer sees the request, so every response (100 Trying included) and every
/// forwarded copy carries the address the request really came from (NAT).
pub(super) fn stamp_received(req: &mut Request, source: SocketAddr) {
    let Ok(via) = req.headers.top_via() else {
        return;
    };
    use std::fmt::Write as _;
    let rport_flag = matches!(via.params.get("rport"), Some(None));
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    // Compared as addresses (§18.2.1: "an IP address that differs from the packet source
    // address"), which needs no allocation; a domain name always differs.
    let host_is_source = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip == source.ip());
    let need_received = (!host_is_source || rport_flag) && via.received().is_none();
    if !rport_flag && !need_received {
        return;
    }
    let mut value = String::with_capacity(via.host.len() + via.params.0.len() + 64);
    let _ = write!(value, "SIP/2.0/{} {}", via.transport, via.host);
    if let Some(p) = via.port {
        let _ = write!(value, ":{p}");
    }
    for p in via.params.0.split(';').filter(|p| !p.is_empty()) {
        value.push(';');
        if p.trim().eq_ignore_ascii_case("rport") {
            let _ = write!(value, "rport={}", source.port());
        } else {
            value.push_str(p);
        }
    }
    if need_received {
        let _ = write!(value, ";received={}", source.ip());
    }
    if let Some(h) = req.headers.0.iter_mut().find(|h| h.name == HeaderName::Via) {
        h.value = ByteString::from(value);
    }
}
