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
    let rport_flag = matches!(via.params.get("rport"), Some(None));
    let src_ip = source.ip().to_string();
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let need_received = (host != src_ip || rport_flag) && via.received().is_none();
    if !rport_flag && !need_received {
        return;
    }
    let mut params = String::new();
    for p in via.params.0.split(';').filter(|p| !p.is_empty()) {
        params.push(';');
        if p.trim().eq_ignore_ascii_case("rport") {
            params.push_str(&format!("rport={}", source.port()));
        } else {
            params.push_str(p);
        }
    }
    if need_received {
        params.push_str(&format!(";received={src_ip}"));
    }
    let port = via.port.map(|p| format!(":{p}")).unwrap_or_default();
    let value = format!("SIP/2.0/{} {}{port}{params}", via.transport, via.host);
    if let Some(h) = req.headers.0.iter_mut().find(|h| h.name == HeaderName::Via) {
        h.value = ByteString::from(value);
    }
}
