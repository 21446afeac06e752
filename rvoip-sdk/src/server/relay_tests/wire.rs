//! The messages and media of the relay tests: what the server sent (parsed, filtered, asserted
//! on), the SIP and SDP the phones send, the checks on a rewritten SDP, and RTP packets.

use std::net::SocketAddr;

use bytes::Bytes;

use super::{ADVERTISE, PORT_MAX, PORT_MIN};
use crate::auth::authorization_value;
use crate::media::relay::Forward;
use crate::sip::msg::{Auth, HeaderName, Limits, Message, Method, Request, Response};
use crate::sip::transaction::Transmit;

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

pub(super) fn parse(t: &Transmit) -> Message {
    Message::parse(t.bytes.clone(), &Limits::default()).expect("server sent an unparsable message")
}

/// The messages sent to `dest`, parsed.
fn sent_to<'a>(out: &'a [Transmit], dest: &str) -> impl Iterator<Item = Message> + 'a {
    let dest = addr(dest);
    out.iter().filter(move |t| t.dest == dest).map(parse)
}

/// Requests sent to `dest`.
pub(super) fn requests_to(out: &[Transmit], dest: &str) -> Vec<Request> {
    sent_to(out, dest)
        .filter_map(|m| match m {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        })
        .collect()
}

/// Responses sent to `dest`.
pub(super) fn responses_to(out: &[Transmit], dest: &str) -> Vec<Response> {
    sent_to(out, dest)
        .filter_map(|m| match m {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        })
        .collect()
}

/// The methods of the requests sent to `dest`.
pub(super) fn methods_to(out: &[Transmit], dest: &str) -> Vec<Method> {
    requests_to(out, dest)
        .into_iter()
        .map(|r| r.method)
        .collect()
}

/// The statuses of the responses sent to `dest`.
pub(super) fn statuses_to(out: &[Transmit], dest: &str) -> Vec<u16> {
    responses_to(out, dest).iter().map(|r| r.status).collect()
}

/// The only element of `v`; `what` names it when there is not exactly one.
fn only<T>(mut v: Vec<T>, what: &str, out: &[Transmit]) -> T {
    assert_eq!(v.len(), 1, "one {what}: {}", dump(out));
    v.remove(0)
}

/// The one request with `method` sent to `dest`.
pub(super) fn one_request(out: &[Transmit], dest: &str, method: Method) -> Request {
    let v = requests_to(out, dest)
        .into_iter()
        .filter(|r| r.method == method)
        .collect();
    only(v, &format!("{method} to {dest}"), out)
}

/// The one response with `status` sent to `dest`.
pub(super) fn one_response(out: &[Transmit], dest: &str, status: u16) -> Response {
    let v = responses_to(out, dest)
        .into_iter()
        .filter(|r| r.status == status)
        .collect();
    only(v, &format!("{status} to {dest}"), out)
}

/// The statuses of the final responses sent to `dest` (retransmissions included).
pub(super) fn finals(out: &[Transmit], dest: &str) -> Vec<u16> {
    statuses_to(out, dest)
        .into_iter()
        .filter(|s| *s >= 200)
        .collect()
}

pub(super) fn dump(out: &[Transmit]) -> String {
    out.iter()
        .map(|t| format!("-> {}\n{}", t.dest, String::from_utf8_lossy(&t.bytes)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message from `\n`-separated header lines (no Content-Length) and an optional SDP body.
pub(super) fn msg(head: &str, body: Option<&str>) -> Bytes {
    let mut s = head.trim().replace('\n', "\r\n");
    s.push_str("\r\n");
    match body {
        Some(b) => s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    Bytes::from(s)
}

/// alice's usual offer: her private address, no attributes.
pub(super) fn alice_offer() -> String {
    sdp("alice", 1, "10.0.1.2", 4000, &[])
}

/// bob's usual answer: his SDP address is where his RTP comes from ([`BOB_RTP`]).
pub(super) fn bob_answer() -> String {
    sdp("bob", 1, "127.0.0.1", 6000, &[])
}

/// An SDP with one audio stream (PCMU + telephone-event) at `ip:port` and extra lines.
pub(super) fn sdp(user: &str, version: u64, ip: &str, port: u16, extra: &[&str]) -> String {
    let mut s = format!(
        "v=0\r\no={user} 100 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    );
    for l in extra {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s
}

pub(super) fn text(body: &Bytes) -> String {
    String::from_utf8(body.to_vec()).expect("UTF-8 body")
}

/// The addresses of every `c=` line.
fn c_addrs(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("c=IN IP4 "))
        .map(|a| a.trim().to_string())
        .collect()
}

/// The port of the (only) `m=audio` line.
pub(super) fn m_port(body: &str) -> u16 {
    let ports: Vec<u16> = body
        .lines()
        .filter_map(|l| l.strip_prefix("m=audio "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(ports.len(), 1, "one m=audio line: {body}");
    ports[0]
}

/// The `o=` session version.
pub(super) fn o_version(body: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix("o="))
        .and_then(|o| o.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or_else(|| panic!("no o= version: {body}"))
}

/// Checks that `body` points at the relay only: every `c=` is the relay's address, the port is
/// one of the pool's, and `private` (the party's own address) appears nowhere. Returns the port.
pub(super) fn anchored(body: &str, private: &str) -> u16 {
    let c = c_addrs(body);
    assert!(
        !c.is_empty() && c.iter().all(|a| a == ADVERTISE),
        "c= {c:?}: {body}"
    );
    assert!(!body.contains(private), "{private} left in: {body}");
    let o = body.lines().find(|l| l.starts_with("o=")).unwrap_or("");
    assert!(o.ends_with(&format!("IN IP4 {ADVERTISE}")), "{o}");
    let port = m_port(body);
    assert!(
        (PORT_MIN..=PORT_MAX).contains(&port) && port % 2 == 0,
        "m= port {port}"
    );
    port
}

/// An RTP packet (RFC 3550 §5.1): version 2, PT 0, 160 payload bytes.
pub(super) fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

pub(super) fn fwd(from_port: u16, dest: &str) -> Option<Forward> {
    Some(Forward {
        from_port,
        dest: addr(dest),
    })
}

/// A response of a phone to a request the proxy forwarded: To tag added, Contact for 1xx/2xx,
/// optional SDP body (Record-Route is copied by `Response::for_request`).
pub(super) fn reply(
    to: &Request,
    status: u16,
    tag: &str,
    contact: &str,
    body: Option<&str>,
) -> Bytes {
    let mut r = Response::for_request(to, status);
    let to_hdr = to.headers.get(&HeaderName::To).expect("To").to_string();
    if status > 100 && !to_hdr.contains(";tag=") {
        r.headers.set(HeaderName::To, format!("{to_hdr};tag={tag}"));
    }
    if (101..300).contains(&status) && !contact.is_empty() {
        let user = to.uri.user.as_deref().unwrap_or("bob").to_string();
        r.headers
            .push(HeaderName::Contact, format!("<sip:{user}@{contact}>"));
    }
    if let Some(b) = body {
        r.headers.set(HeaderName::ContentType, "application/sdp");
        r.body = Bytes::from(b.to_string());
    }
    r.to_bytes()
}

/// Answers the SHA-256 challenge of a 401.
pub(super) fn digest(r: &Response, user: &str, pw: &str) -> String {
    let ch = r
        .headers
        .get_all(&HeaderName::WwwAuthenticate)
        .find(|c| c.contains("SHA-256"))
        .expect("SHA-256 challenge");
    let auth = Auth::parse(ch).expect("challenge parses");
    static CNONCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let cnonce = format!(
        "rc{:08x}",
        CNONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    authorization_value(&auth, user, pw, "REGISTER", "sip:127.0.0.1", 1, &cnonce)
        .expect("authorization")
}
