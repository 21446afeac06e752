//! The `sip_message` fuzz target.

use bytes::Bytes;

use crate::sip::msg::{
    Auth, ByteString, CSeq, Frame, HeaderName, Headers, Limits, Message, NameAddr, Uri, Via,
    error_response, frame, validate_request,
};

use super::UNLIMITED;

/// The SIP message parser on one datagram (RFC 3261 §7, §25):
/// - [`Message::parse`] never panics; a message it accepts serializes ([`Message::to_bytes`])
///   to bytes that parse again to the same message: method or status and reason, Request-URI,
///   every header (name and value, in order; Content-Length is recomputed) and the body;
/// - [`frame`] (TCP framing) never panics, never claims more bytes than it was given, and the
///   framed prefix goes through the parser like a datagram;
/// - [`validate_request`] and the typed views (Via, From/To/Contact/Route as name-addr, CSeq,
///   Max-Forwards, Expires, Authorization) never panic, and what they accept prints
///   (`Display`) to text that parses back to the same value;
/// - for input that does not parse, [`error_response`] never panics and the response it builds
///   (400/505/513) is itself a parsable SIP response with that status.
pub fn sip_message(data: &[u8]) {
    let limits = Limits::default();
    let buf = Bytes::copy_from_slice(data);
    match Message::parse(buf.clone(), &limits) {
        Ok(msg) => {
            check_round_trip(&msg);
            check_typed(msg.headers());
            if let Message::Request(req) = &msg {
                let _ = validate_request(req);
                check_uri(&req.uri);
            }
        }
        Err(err) => {
            if let Some(resp) = error_response(data, &err) {
                let wire = resp.to_bytes();
                match Message::parse(wire.clone(), &UNLIMITED) {
                    Ok(Message::Response(back)) => assert_eq!(back.status, resp.status),
                    other => panic!(
                        "error_response built an unparsable response {:?}: {other:?}",
                        String::from_utf8_lossy(&wire)
                    ),
                }
            }
        }
    }
    // Stream framing: what a TCP connection would do with the same bytes.
    let mut rest = data;
    for _ in 0..8 {
        match frame(rest, &limits) {
            Ok(Some(Frame::Keepalive(n))) => {
                assert!(n > 0 && n <= rest.len(), "keepalive {n} of {}", rest.len());
                rest = &rest[n..];
            }
            Ok(Some(Frame::Message(n))) => {
                assert!(n > 0 && n <= rest.len(), "frame {n} of {}", rest.len());
                if let Ok(msg) = Message::parse(Bytes::copy_from_slice(&rest[..n]), &limits) {
                    check_round_trip(&msg);
                }
                rest = &rest[n..];
            }
            Ok(None) | Err(_) => break,
        }
    }
}

fn same_headers(a: &Headers, b: &Headers) -> bool {
    let strip = |h: &Headers| {
        h.iter()
            .filter(|h| h.name != HeaderName::ContentLength)
            .map(|h| (h.name.as_str().to_ascii_lowercase(), h.value.clone()))
            .collect::<Vec<_>>()
    };
    strip(a) == strip(b)
}

/// Serialize and parse back: the same message.
fn check_round_trip(msg: &Message) {
    let wire = msg.to_bytes();
    let back = match Message::parse(wire.clone(), &UNLIMITED) {
        Ok(b) => b,
        Err(e) => panic!(
            "our own serialization does not parse ({e}): {:?}",
            String::from_utf8_lossy(&wire)
        ),
    };
    let body = |m: &Message| match m {
        Message::Request(r) => r.body.clone(),
        Message::Response(r) => r.body.clone(),
    };
    match (msg, &back) {
        (Message::Request(a), Message::Request(b)) => {
            assert_eq!((&a.method, &a.uri), (&b.method, &b.uri));
        }
        (Message::Response(a), Message::Response(b)) => {
            assert_eq!((a.status, &a.reason), (b.status, &b.reason));
        }
        _ => panic!("request/response kind changed by a round trip"),
    }
    assert!(
        same_headers(msg.headers(), back.headers()),
        "headers changed: {:?} -> {:?}",
        msg.headers(),
        back.headers()
    );
    assert_eq!(body(msg), body(&back));
    if let Message::Response(r) = msg {
        assert_eq!(r.wire_len(), wire.len(), "Response::wire_len");
    }
    // A second round trip is byte-identical.
    assert_eq!(back.to_bytes(), wire, "serialization is not stable");
}

fn check_uri(uri: &Uri) {
    let _ = uri.user_unescaped();
    let _ = uri.param("transport");
    let text = ByteString::from(uri.to_string());
    match Uri::parse(&text) {
        Ok(back) => assert_eq!(&back, uri, "URI changed by Display: {text}"),
        Err(e) => panic!("URI Display does not parse ({e}): {text}"),
    }
}

fn check_name_addr(v: &ByteString) {
    let Ok(na) = NameAddr::parse(v) else { return };
    let _ = na.tag();
    check_uri(&na.uri);
    let text = ByteString::from(na.to_string());
    match NameAddr::parse(&text) {
        Ok(back) => assert_eq!(back, na, "name-addr changed by Display: {v} -> {text}"),
        Err(e) => panic!("name-addr Display does not parse ({e}): {v} -> {text}"),
    }
}

/// Every typed view of every header, and the accessors the cores use.
fn check_typed(h: &Headers) {
    let _ = h.call_id();
    let _ = h.cseq();
    let _ = h.top_via();
    let _ = h.from();
    let _ = h.to();
    let _ = h.max_forwards();
    let _ = h.expires();
    let _ = h.content_type();
    for hd in h.iter() {
        let v = &hd.value;
        match hd.name {
            HeaderName::Via => {
                if let Ok(via) = Via::parse(v) {
                    let _ = (via.branch(), via.received(), via.has_rport());
                    let text = ByteString::from(via.to_string());
                    match Via::parse(&text) {
                        Ok(back) => assert_eq!(back, via, "Via changed by Display: {v} -> {text}"),
                        Err(e) => panic!("Via Display does not parse ({e}): {v} -> {text}"),
                    }
                }
            }
            HeaderName::From
            | HeaderName::To
            | HeaderName::Contact
            | HeaderName::Route
            | HeaderName::RecordRoute
            | HeaderName::ReferTo
            | HeaderName::ReferredBy
            | HeaderName::Path => check_name_addr(v),
            HeaderName::CSeq => {
                if let Ok(c) = CSeq::parse(v) {
                    let text = ByteString::from(c.to_string());
                    assert_eq!(CSeq::parse(&text).ok(), Some(c), "CSeq: {v} -> {text}");
                }
            }
            HeaderName::Authorization
            | HeaderName::ProxyAuthorization
            | HeaderName::WwwAuthenticate
            | HeaderName::ProxyAuthenticate
            | HeaderName::AuthenticationInfo => {
                if let Ok(a) = Auth::parse(v) {
                    let _ = (a.get("realm"), a.get("nonce"), a.get("response"));
                }
            }
            _ => {}
        }
    }
}
