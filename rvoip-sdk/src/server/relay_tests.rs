//! Scenario tests of the proxy with the media relay anchored (`RelayAnchor` over the sans-IO
//! `Relay`), on simulated time and without sockets: the SDP on the wire, symmetric latching
//! through the whole server, NAT flows for signalling, late offer, hold, forking, the release
//! of relay ports, the media timeout and the relay modes. The test feeds RTP to the same relay
//! the anchor controls (a shared `Relay` behind a small `RelayControl` wrapper).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::authorization_value;
use crate::media::relay::{
    Forward, MediaId, MediaStats, Relay, RelayConfig, RelayError, RelayEvent, Side,
};
use crate::server::config::ServerConfig;
use crate::server::core::ServerCore;
use crate::server::local::LocalIdentity;
use crate::server::proxy::anchor::{RelayAnchor, RelayControl, RelayMode};
use crate::server::proxy::rewrite::Stream;
use crate::sip::msg::{Auth, HeaderName, Limits, Message, Method, Request, Response};
use crate::sip::transaction::{Transmit, TransportKind};

/// The address the relay writes into SDP.
const ADVERTISE: &str = "198.51.100.1";
/// The relay's port range in most tests: ten RTP/RTCP pairs.
const PORT_MIN: u16 = 30000;
const PORT_MAX: u16 = 30019;
const BOB1: &str = "127.0.0.1:5080";
const BOB2: &str = "127.0.0.1:5082";
/// Where alice's RTP really comes from: her NAT's public address, not her SDP address.
const ALICE_RTP_NAT: &str = "203.0.113.9:7000";
const BOB_RTP: &str = "127.0.0.1:6000";
const CRYPTO_A: &str =
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const CRYPTO_B: &str =
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

/// A phone as the server sees it.
#[derive(Debug, Clone, Copy)]
struct Phone {
    /// Where its datagrams come from (its NAT's public address when NATed).
    source: &'static str,
    /// The sent-by it writes in Via.
    via: &'static str,
    /// The host:port it writes in Contact.
    contact: &'static str,
}

/// alice on the server's network: Via = Contact = source.
const ALICE: Phone = Phone {
    source: "127.0.0.1:5070",
    via: "127.0.0.1:5070",
    contact: "127.0.0.1:5070",
};
/// alice behind a NAT: private Via/Contact, packets from her NAT's public address.
const ALICE_NAT: Phone = Phone {
    source: "203.0.113.9:5062",
    via: "10.0.1.2:5060",
    contact: "10.0.1.2:5060",
};
const BOB: Phone = Phone {
    source: BOB1,
    via: BOB1,
    contact: BOB1,
};
const BOB_2: Phone = Phone {
    source: BOB2,
    via: BOB2,
    contact: BOB2,
};
/// bob behind a NAT.
const BOB_NAT: Phone = Phone {
    source: "203.0.113.20:40000",
    via: "10.0.2.5:5060",
    contact: "10.0.2.5:5060",
};

/// The relay shared by the anchor (inside the core) and the test, which injects RTP into it.
#[derive(Clone)]
struct SharedRelay(Arc<Mutex<Relay>>);

impl SharedRelay {
    fn lock(&self) -> MutexGuard<'_, Relay> {
        self.0.lock().expect("relay lock")
    }
}

impl RelayControl for SharedRelay {
    fn create(&mut self, now: Instant) -> Result<MediaId, RelayError> {
        self.lock().create(now)
    }
    fn local_port(&self, id: MediaId, side: Side) -> Option<u16> {
        self.lock().local_port(id, side)
    }
    fn set_remote(&mut self, id: MediaId, side: Side, s: &Stream) -> Result<(), RelayError> {
        RelayControl::set_remote(&mut *self.lock(), id, side, s)
    }
    fn confirm(&mut self, now: Instant, id: MediaId) {
        self.lock().confirm(now, id)
    }
    fn release(&mut self, id: MediaId) -> Option<MediaStats> {
        self.lock().release(id)
    }
    fn poll_event(&mut self) -> Option<RelayEvent> {
        self.lock().poll_event()
    }
    fn ports_in_use(&self) -> usize {
        self.lock().ports_in_use()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.lock().poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.lock().handle_timeout(now)
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn parse(t: &Transmit) -> Message {
    Message::parse(t.bytes.clone(), &Limits::default()).expect("server sent an unparsable message")
}

/// Requests sent to `dest`.
fn requests_to(out: &[Transmit], dest: &str) -> Vec<Request> {
    out.iter()
        .filter(|t| t.dest == addr(dest))
        .filter_map(|t| match parse(t) {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        })
        .collect()
}

/// Responses sent to `dest`.
fn responses_to(out: &[Transmit], dest: &str) -> Vec<Response> {
    out.iter()
        .filter(|t| t.dest == addr(dest))
        .filter_map(|t| match parse(t) {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        })
        .collect()
}

/// The one request with `method` sent to `dest`.
fn one_request(out: &[Transmit], dest: &str, method: Method) -> Request {
    let mut v: Vec<Request> = requests_to(out, dest)
        .into_iter()
        .filter(|r| r.method == method)
        .collect();
    assert_eq!(v.len(), 1, "one {method} to {dest}: {}", dump(out));
    v.remove(0)
}

/// The one response with `status` sent to `dest`.
fn one_response(out: &[Transmit], dest: &str, status: u16) -> Response {
    let mut v: Vec<Response> = responses_to(out, dest)
        .into_iter()
        .filter(|r| r.status == status)
        .collect();
    assert_eq!(v.len(), 1, "one {status} to {dest}: {}", dump(out));
    v.remove(0)
}

/// The statuses of the final responses sent to `dest` (retransmissions included).
fn finals(out: &[Transmit], dest: &str) -> Vec<u16> {
    responses_to(out, dest)
        .iter()
        .map(|r| r.status)
        .filter(|s| *s >= 200)
        .collect()
}

fn dump(out: &[Transmit]) -> String {
    out.iter()
        .map(|t| format!("-> {}\n{}", t.dest, String::from_utf8_lossy(&t.bytes)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message from `\n`-separated header lines (no Content-Length) and an optional SDP body.
fn msg(head: &str, body: Option<&str>) -> Bytes {
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

/// An SDP with one audio stream (PCMU + telephone-event) at `ip:port` and extra lines.
fn sdp(user: &str, version: u64, ip: &str, port: u16, extra: &[&str]) -> String {
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

fn text(body: &Bytes) -> String {
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
fn m_port(body: &str) -> u16 {
    let ports: Vec<u16> = body
        .lines()
        .filter_map(|l| l.strip_prefix("m=audio "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(ports.len(), 1, "one m=audio line: {body}");
    ports[0]
}

/// The `o=` session version.
fn o_version(body: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix("o="))
        .and_then(|o| o.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or_else(|| panic!("no o= version: {body}"))
}

/// Checks that `body` points at the relay only: every `c=` is the relay's address, the port is
/// one of the pool's, and `private` (the party's own address) appears nowhere. Returns the port.
fn anchored(body: &str, private: &str) -> u16 {
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
fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

fn fwd(from_port: u16, dest: &str) -> Option<Forward> {
    Some(Forward {
        from_port,
        dest: addr(dest),
    })
}

/// A response of a phone to a request the proxy forwarded: To tag added, Contact for 1xx/2xx,
/// optional SDP body (Record-Route is copied by `Response::for_request`).
fn reply(to: &Request, status: u16, tag: &str, contact: &str, body: Option<&str>) -> Bytes {
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
fn digest(r: &Response, user: &str, pw: &str) -> String {
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

/// One call as both phones know it after the 2xx.
#[derive(Debug, Clone)]
struct Call {
    n: u32,
    caller: Phone,
    call_id: String,
    /// alice's From (with tag) and bob's To (with tag).
    from: String,
    to: String,
    /// The Record-Route of the 2xx: the route set of both phones.
    route: String,
    /// Remote targets: alice's and bob's Contact URIs.
    alice_uri: String,
    bob_uri: String,
    /// alice's next CSeq.
    cseq: u32,
}

impl Call {
    /// An in-dialog request from alice (Route: our Record-Route, R-URI: bob's Contact).
    fn alice_sends(&mut self, method: &str, body: Option<&str>) -> Bytes {
        let Call {
            n,
            caller,
            from,
            to,
            route,
            bob_uri,
            call_id,
            ..
        } = self;
        let cseq = if method == "ACK" {
            self.cseq.saturating_sub(1).max(1)
        } else {
            let c = self.cseq;
            self.cseq += 1;
            c
        };
        let lower = method.to_ascii_lowercase();
        msg(
            &format!(
                "{method} {bob_uri} SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bK{lower}{n}c{cseq}\n\
                 Route: {route}\nMax-Forwards: 70\nFrom: {from}\nTo: {to}\nCall-ID: {call_id}\n\
                 CSeq: {cseq} {method}\nContact: <sip:alice@{}>",
                caller.via, caller.contact
            ),
            body,
        )
    }

    /// An in-dialog request from bob (From/To swapped, R-URI: alice's Contact).
    fn bob_sends(&self, method: &str, via: &str, cseq: u32) -> Bytes {
        let Call {
            n,
            from,
            to,
            route,
            alice_uri,
            call_id,
            ..
        } = self;
        msg(
            &format!(
                "{method} {alice_uri} SIP/2.0\nVia: SIP/2.0/UDP {via};rport;branch=z9hG4bKb{n}c{cseq}\n\
                 Route: {route}\nMax-Forwards: 70\nFrom: {to}\nTo: {from}\nCall-ID: {call_id}\n\
                 CSeq: {cseq} {method}"
            ),
            None,
        )
    }
}

struct Harness {
    core: ServerCore,
    relay: SharedRelay,
    now: Instant,
    n: u32,
}

impl Harness {
    fn new(mode: RelayMode) -> Harness {
        Harness::with_ports(mode, PORT_MAX)
    }

    fn with_ports(mode: RelayMode, port_max: u16) -> Harness {
        let now = Instant::now();
        let cfg = ServerConfig {
            invite_auth: false,
            digest_algorithms: vec![crate::auth::Algorithm::Md5, crate::auth::Algorithm::Sha256],
            ..ServerConfig::default()
        };
        let local = LocalIdentity::new(
            &[(TransportKind::Udp, addr("127.0.0.1:5060"))],
            "127.0.0.1",
            "example.com",
            &[],
        );
        let users = vec![
            ("alice".to_string(), "apw".to_string()),
            ("bob".to_string(), "bpw".to_string()),
            ("carol".to_string(), "cpw".to_string()),
        ];
        let mut core = ServerCore::new(&cfg, local, &users, now, 1_700_000_000);
        let relay = SharedRelay(Arc::new(Mutex::new(Relay::new(RelayConfig {
            port_min: PORT_MIN,
            port_max,
            media_timeout: Duration::from_secs(60),
            ..RelayConfig::default()
        }))));
        core.set_media_hook(Box::new(RelayAnchor::new(
            relay.clone(),
            mode,
            ADVERTISE.parse().expect("advertise"),
        )));
        Harness {
            core,
            relay,
            now,
            n: 0,
        }
    }

    fn send(&mut self, from: &str, bytes: Bytes) -> Vec<Transmit> {
        self.core
            .handle_datagram(self.now, bytes, addr(from), TransportKind::Udp);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Transmit> {
        let mut v = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            v.push(t);
        }
        v
    }

    /// Moves the clock by `d` in steps of at most one second, running the core's timers, and
    /// returns everything it sent.
    fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        let end = self.now + d;
        let mut out = Vec::new();
        while self.now < end {
            self.now = (self.now + Duration::from_secs(1)).min(end);
            self.core.handle_timeout(self.now);
            out.extend(self.drain());
        }
        out
    }

    fn next(&mut self) -> u32 {
        self.n += 1;
        self.n
    }

    fn ports(&self) -> usize {
        self.relay.lock().ports_in_use()
    }

    /// Injects one RTP packet into the relay as if it arrived now on `local_port` from `from`.
    fn rtp(&mut self, local_port: u16, from: &str, seq: u16, ssrc: u32) -> Option<Forward> {
        let mut p = rtp_packet(seq, ssrc);
        self.relay
            .lock()
            .handle_datagram(self.now, local_port, addr(from), &mut p)
    }

    /// REGISTER `user` from `phone` (digest challenge answered); the final response.
    fn register(&mut self, user: &str, pw: &str, phone: Phone) -> Response {
        let n = self.next();
        let base = |cseq: u32, auth: &str| {
            msg(
                &format!(
                    "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKreg{n}x{cseq}\n\
                     Max-Forwards: 70\nFrom: <sip:{user}@127.0.0.1>;tag=r{n}\nTo: <sip:{user}@127.0.0.1>\n\
                     Call-ID: reg{n}@test\nCSeq: {cseq} REGISTER\nContact: <sip:{user}@{}>\n{auth}Expires: 600",
                    phone.via, phone.contact
                ),
                None,
            )
        };
        let out = self.send(phone.source, base(1, ""));
        let r401 = one_response(&out, phone.source, 401);
        let authz = digest(&r401, user, pw);
        let out = self.send(phone.source, base(2, &format!("Authorization: {authz}\n")));
        assert_eq!(out.len(), 1, "{}", dump(&out));
        responses_to(&out, phone.source).remove(0)
    }

    /// alice's initial INVITE to `user` from `caller` (with or without SDP); the call's number
    /// and what the server sent.
    fn invite(&mut self, caller: Phone, user: &str, body: Option<&str>) -> (u32, Vec<Transmit>) {
        let n = self.next();
        let text = format!(
            "INVITE sip:{user}@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKinv{n}\n\
             Max-Forwards: 70\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\nTo: <sip:{user}@127.0.0.1>\n\
             Call-ID: call{n}@test\nCSeq: 1 INVITE\nContact: <sip:alice@{}>",
            caller.via, caller.contact
        );
        let out = self.send(caller.source, msg(&text, body));
        (n, out)
    }

    /// The CANCEL of call `n`'s INVITE.
    fn cancel(&mut self, caller: Phone, n: u32, user: &str) -> Vec<Transmit> {
        let text = format!(
            "CANCEL sip:{user}@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKinv{n}\n\
             Max-Forwards: 70\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\nTo: <sip:{user}@127.0.0.1>\n\
             Call-ID: call{n}@test\nCSeq: 1 CANCEL",
            caller.via
        );
        self.send(caller.source, msg(&text, None))
    }

    /// INVITE from `caller` → forwarded to `callee` → 200 (tag `b{n}`) → ACK, all with the
    /// given bodies. Returns the call, the INVITE bob got, the 200 alice got and the ACK bob got.
    fn connect(
        &mut self,
        caller: Phone,
        offer: Option<&str>,
        callee: Phone,
        answer: Option<&str>,
        ack_body: Option<&str>,
    ) -> (Call, Request, Response, Request) {
        let (n, out) = self.invite(caller, "bob", offer);
        assert_eq!(
            responses_to(&out, caller.source)
                .iter()
                .map(|r| r.status)
                .collect::<Vec<_>>(),
            vec![100],
            "{}",
            dump(&out)
        );
        let inv = one_request(&out, callee.source, Method::Invite);
        let out = self.send(
            callee.source,
            reply(&inv, 200, &format!("b{n}"), callee.contact, answer),
        );
        let ok = one_response(&out, caller.source, 200);
        let mut call = Call {
            n,
            caller,
            call_id: format!("call{n}@test"),
            from: ok.headers.get(&HeaderName::From).expect("From").to_string(),
            to: ok.headers.get(&HeaderName::To).expect("To").to_string(),
            route: ok
                .headers
                .get(&HeaderName::RecordRoute)
                .expect("Record-Route in the 2xx")
                .to_string(),
            alice_uri: format!("sip:alice@{}", caller.contact),
            bob_uri: format!("sip:bob@{}", callee.contact),
            cseq: 2,
        };
        let out = self.send(caller.source, call.alice_sends("ACK", ack_body));
        let ack = one_request(&out, callee.source, Method::Ack);
        (call, inv, ok, ack)
    }
}

/// Scenario 1: The offer reaches bob pointing at the relay (no private address of alice's left) and
/// the answer reaches alice pointing at the relay's other leg; directions and SRTP keys pass.
#[test]
fn offer_and_answer_are_rewritten_toward_the_relay() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 7, "10.0.1.2", 4000, &["a=sendonly", CRYPTO_A]);
    let (_, out) = h.invite(ALICE, "bob", Some(&offer));
    let inv = one_request(&out, BOB1, Method::Invite);
    assert!(
        out.iter()
            .all(|t| !String::from_utf8_lossy(&t.bytes).contains("10.0.1.2")),
        "{}",
        dump(&out)
    );
    assert_eq!(
        inv.headers.content_type().map(|c| c.to_string()),
        Some("application/sdp".to_string())
    );
    let body = text(&inv.body);
    let bob_port = anchored(&body, "10.0.1.2");
    assert!(body.contains("\r\na=sendonly\r\n"), "{body}");
    assert!(body.contains(CRYPTO_A), "{body}");
    assert!(body.contains("m=audio") && body.contains(" RTP/AVP 0 101\r\n"));
    assert_eq!(o_version(&body), 7);
    assert_eq!(h.ports(), 4);

    let answer = sdp("bob", 3, "127.0.0.1", 6000, &["a=recvonly", CRYPTO_B]);
    let out = h.send(BOB1, reply(&inv, 200, "b1", BOB1, Some(&answer)));
    let ok = one_response(&out, ALICE.source, 200);
    let body = text(&ok.body);
    let alice_port = anchored(&body, "127.0.0.1");
    assert_ne!(alice_port, bob_port, "each party gets its own leg");
    assert!(body.contains("\r\na=recvonly\r\n"), "{body}");
    assert!(
        body.contains(CRYPTO_B) && !body.contains(CRYPTO_A),
        "{body}"
    );
    let relay = h.relay.lock();
    assert!(relay.is_allocated(alice_port) && relay.is_allocated(bob_port));
    assert_eq!(relay.ports_in_use(), 4);
}

/// Scenario 2: Symmetric latching through the proxy: alice's RTP arrives from her NAT (not her SDP
/// address) and reaches bob's SDP address; bob's RTP goes to where alice's really came from; a
/// third host with a fresh SSRC is dropped and counted.
#[test]
fn media_latches_to_the_real_source_end_to_end() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let answer = sdp("bob", 1, "127.0.0.1", 6000, &[]);
    let (_, inv, ok, _) = h.connect(ALICE, Some(&offer), BOB, Some(&answer), None);
    let bob_port = m_port(&text(&inv.body));
    let alice_port = m_port(&text(&ok.body));
    // Before alice sent anything, bob's media goes to her SDP address (all the relay knows).
    assert_eq!(
        h.rtp(bob_port, BOB_RTP, 1, 0xb0b),
        fwd(alice_port, "10.0.1.2:4000")
    );
    // alice's first packet, from her NAT's public address, goes to bob out of his leg.
    assert_eq!(
        h.rtp(alice_port, ALICE_RTP_NAT, 1, 0xa11ce),
        fwd(bob_port, BOB_RTP)
    );
    // From now on bob's media goes to where alice's really comes from.
    assert_eq!(
        h.rtp(bob_port, BOB_RTP, 2, 0xb0b),
        fwd(alice_port, ALICE_RTP_NAT)
    );
    // A third host with a new SSRC while alice is active: dropped, counted; no hijack.
    assert_eq!(h.rtp(alice_port, "192.0.2.66:7000", 50, 0xbad), None);
    assert_eq!(h.relay.lock().stats().dropped_foreign, 1);
    assert_eq!(
        h.rtp(bob_port, BOB_RTP, 3, 0xb0b),
        fwd(alice_port, ALICE_RTP_NAT)
    );
    assert_eq!(
        h.rtp(alice_port, ALICE_RTP_NAT, 2, 0xa11ce),
        fwd(bob_port, BOB_RTP)
    );
    assert_eq!(h.relay.lock().stats().forwarded, 5);
}

/// Scenario 3: Signalling through NAT: a binding registered through a NAT is reached at its flow, a
/// NATed caller gets in-dialog requests at its flow; a caller not behind a NAT gets them at its
/// Contact (control).
#[test]
fn nated_phones_are_reached_at_their_flows() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB_NAT).status, 200);
    let now = h.now;
    let bindings = h.core.registrar.location.lookup("bob", now);
    assert_eq!(bindings.len(), 1);
    assert!(bindings[0].behind_nat, "REGISTER came through a NAT");
    assert_eq!(bindings[0].source, addr(BOB_NAT.source));

    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let (n, out) = h.invite(ALICE_NAT, "bob", Some(&offer));
    assert!(requests_to(&out, "10.0.2.5:5060").is_empty());
    let inv = one_request(&out, BOB_NAT.source, Method::Invite);
    assert_eq!(inv.uri.to_string(), "sip:bob@10.0.2.5:5060");
    // 100 Trying went back to alice's NAT (rport).
    assert_eq!(one_response(&out, ALICE_NAT.source, 100).status, 100);

    let answer = sdp("bob", 1, "10.0.2.5", 6000, &[]);
    let out = h.send(
        BOB_NAT.source,
        reply(&inv, 200, "bn", BOB_NAT.contact, Some(&answer)),
    );
    let ok = one_response(&out, ALICE_NAT.source, 200);
    let mut call = Call {
        n,
        caller: ALICE_NAT,
        call_id: format!("call{n}@test"),
        from: ok.headers.get(&HeaderName::From).unwrap().to_string(),
        to: ok.headers.get(&HeaderName::To).unwrap().to_string(),
        route: ok
            .headers
            .get(&HeaderName::RecordRoute)
            .unwrap()
            .to_string(),
        alice_uri: "sip:alice@10.0.1.2:5060".to_string(),
        bob_uri: "sip:bob@10.0.2.5:5060".to_string(),
        cseq: 2,
    };
    // alice's ACK (R-URI: bob's private Contact) reaches bob's flow.
    let out = h.send(ALICE_NAT.source, call.alice_sends("ACK", None));
    let ack = one_request(&out, BOB_NAT.source, Method::Ack);
    assert_eq!(ack.uri.to_string(), "sip:bob@10.0.2.5:5060");
    // bob's BYE (R-URI: alice's private Contact) reaches alice's flow, not 10.0.1.2.
    let out = h.send(BOB_NAT.source, call.bob_sends("BYE", BOB_NAT.via, 1));
    assert!(
        requests_to(&out, "10.0.1.2:5060").is_empty(),
        "{}",
        dump(&out)
    );
    let bye = one_request(&out, ALICE_NAT.source, Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:alice@10.0.1.2:5060");
    assert_eq!(h.ports(), 0);

    // Control: a caller whose Via is its source is not NATed; bob's BYE goes to its Contact
    // (another port than the one it sends from).
    let alice_plain = Phone {
        source: "127.0.0.1:5070",
        via: "127.0.0.1:5070",
        contact: "127.0.0.1:5072",
    };
    let (n, out) = h.invite(alice_plain, "bob", Some(&offer));
    let inv = one_request(&out, BOB_NAT.source, Method::Invite);
    let out = h.send(
        BOB_NAT.source,
        reply(&inv, 200, "bp", BOB_NAT.contact, Some(&answer)),
    );
    let ok = one_response(&out, alice_plain.source, 200);
    let call = Call {
        n,
        caller: alice_plain,
        call_id: format!("call{n}@test"),
        from: ok.headers.get(&HeaderName::From).unwrap().to_string(),
        to: ok.headers.get(&HeaderName::To).unwrap().to_string(),
        route: ok
            .headers
            .get(&HeaderName::RecordRoute)
            .unwrap()
            .to_string(),
        alice_uri: "sip:alice@127.0.0.1:5072".to_string(),
        bob_uri: "sip:bob@10.0.2.5:5060".to_string(),
        cseq: 2,
    };
    let out = h.send(BOB_NAT.source, call.bob_sends("BYE", BOB_NAT.via, 1));
    assert!(
        requests_to(&out, alice_plain.source).is_empty(),
        "{}",
        dump(&out)
    );
    let bye = one_request(&out, "127.0.0.1:5072", Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:alice@127.0.0.1:5072");
}

/// Scenario 4: Late offer: no SDP in the INVITE; bob's offer in the 200 is rewritten toward alice
/// and alice's answer in the ACK toward bob, each with the leg facing its receiver. The call is
/// then anchored like any other: media flows, and silence ends it.
#[test]
fn late_offer_in_the_2xx_and_answer_in_the_ack_are_anchored() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let (n, out) = h.invite(ALICE, "bob", None);
    let inv = one_request(&out, BOB1, Method::Invite);
    assert!(inv.body.is_empty());
    assert_eq!(h.ports(), 0, "nothing to anchor yet");
    let offer = sdp("bob", 5, "127.0.0.1", 6000, &[]);
    let out = h.send(BOB1, reply(&inv, 200, "b", BOB1, Some(&offer)));
    let ok = one_response(&out, ALICE.source, 200);
    let alice_port = anchored(&text(&ok.body), "127.0.0.1");
    assert_eq!(o_version(&text(&ok.body)), 5);
    assert_eq!(h.ports(), 4);
    let mut call = Call {
        n,
        caller: ALICE,
        call_id: format!("call{n}@test"),
        from: ok.headers.get(&HeaderName::From).unwrap().to_string(),
        to: ok.headers.get(&HeaderName::To).unwrap().to_string(),
        route: ok
            .headers
            .get(&HeaderName::RecordRoute)
            .unwrap()
            .to_string(),
        alice_uri: format!("sip:alice@{}", ALICE.contact),
        bob_uri: format!("sip:bob@{BOB1}"),
        cseq: 2,
    };
    let answer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let out = h.send(ALICE.source, call.alice_sends("ACK", Some(&answer)));
    let ack = one_request(&out, BOB1, Method::Ack);
    let bob_port = anchored(&text(&ack.body), "10.0.1.2");
    assert_ne!(bob_port, alice_port);
    assert_eq!(h.ports(), 4, "the ACK reuses the 2xx's context");
    // Each port is the leg facing the party that got it.
    assert_eq!(
        h.rtp(alice_port, ALICE_RTP_NAT, 1, 0xa),
        fwd(bob_port, BOB_RTP)
    );
    assert_eq!(
        h.rtp(bob_port, BOB_RTP, 1, 0xb),
        fwd(alice_port, ALICE_RTP_NAT)
    );
    // The late-offer call is confirmed like any other: 60 s of silence end it.
    let out = h.advance(Duration::from_secs(59));
    assert!(requests_to(&out, BOB1).is_empty(), "{}", dump(&out));
    let out = h.advance(Duration::from_secs(1));
    assert_eq!(
        one_request(&out, ALICE.source, Method::Bye).method,
        Method::Bye
    );
    assert_eq!(one_request(&out, BOB1, Method::Bye).method, Method::Bye);
    assert_eq!(h.ports(), 0);
}

/// Scenario 5: Hold by re-INVITE: a=sendonly / a=recvonly pass, the relay ports stay, and the o=
/// version each side sees goes up with each changed description (not for a refresh).
#[test]
fn reinvite_hold_keeps_ports_and_bumps_versions() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let answer = sdp("bob", 1, "127.0.0.1", 6000, &[]);
    let (mut call, inv, ok, _) = h.connect(ALICE, Some(&offer), BOB, Some(&answer), None);
    let (bob_port, alice_port) = (m_port(&text(&inv.body)), m_port(&text(&ok.body)));
    let (v_to_bob, v_to_alice) = (o_version(&text(&inv.body)), o_version(&text(&ok.body)));

    let hold = sdp("alice", 2, "10.0.1.2", 4000, &["a=sendonly"]);
    let out = h.send(ALICE.source, call.alice_sends("INVITE", Some(&hold)));
    let reinv = one_request(&out, BOB1, Method::Invite);
    let body = text(&reinv.body);
    assert_eq!(anchored(&body, "10.0.1.2"), bob_port, "same relay port");
    assert!(body.contains("\r\na=sendonly\r\n"), "{body}");
    assert!(o_version(&body) > v_to_bob, "{body}");
    let v_to_bob = o_version(&body);
    assert_eq!(h.ports(), 4, "no new context");

    let held = sdp("bob", 2, "127.0.0.1", 6000, &["a=recvonly"]);
    let out = h.send(BOB1, reply(&reinv, 200, "x", BOB1, Some(&held)));
    let ok2 = one_response(&out, ALICE.source, 200);
    let body = text(&ok2.body);
    assert_eq!(anchored(&body, "127.0.0.1"), alice_port, "same relay port");
    assert!(body.contains("\r\na=recvonly\r\n"), "{body}");
    assert!(o_version(&body) > v_to_alice, "{body}");
    let out = h.send(ALICE.source, call.alice_sends("ACK", None));
    one_request(&out, BOB1, Method::Ack);

    // A session refresh with the same description (same version): the version stays.
    let out = h.send(ALICE.source, call.alice_sends("INVITE", Some(&hold)));
    let refresh = one_request(&out, BOB1, Method::Invite);
    assert_eq!(o_version(&text(&refresh.body)), v_to_bob);
    assert_eq!(m_port(&text(&refresh.body)), bob_port);
    assert_eq!(h.ports(), 4);
}

/// Scenario 6: Forking: one context per branch while both ring; the 2xx collapses them to the
/// answered branch, whose ports are the ones in the 2xx to alice.
#[test]
fn forked_branches_collapse_to_the_answered_one() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    assert_eq!(h.register("bob", "bpw", BOB_2).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let (_, out) = h.invite(ALICE, "bob", Some(&offer));
    let inv1 = one_request(&out, BOB1, Method::Invite);
    let inv2 = one_request(&out, BOB2, Method::Invite);
    let p1 = anchored(&text(&inv1.body), "10.0.1.2");
    let p2 = anchored(&text(&inv2.body), "10.0.1.2");
    assert_ne!(p1, p2, "one context per branch");
    assert_eq!(h.ports(), 8);
    assert_eq!(h.relay.lock().contexts(), 2);

    h.send(BOB1, reply(&inv1, 180, "t1", BOB1, None));
    let answer = sdp("bob", 1, "127.0.0.1", 6002, &[]);
    let out = h.send(BOB2, reply(&inv2, 200, "t2", BOB2, Some(&answer)));
    let ok = one_response(&out, ALICE.source, 200);
    let pa = anchored(&text(&ok.body), "127.0.0.1");
    one_request(&out, BOB1, Method::Cancel);
    assert_eq!(h.ports(), 4, "the losing branch's context is released");
    {
        let relay = h.relay.lock();
        assert!(relay.is_allocated(p2) && relay.is_allocated(pa));
        assert!(!relay.is_allocated(p1), "branch 1's port freed");
    }
    // alice's media to the port of the 2xx goes to the branch that answered.
    assert_eq!(h.rtp(pa, ALICE_RTP_NAT, 1, 0xa), fwd(p2, "127.0.0.1:6002"));
    // The cancelled branch's 487 changes nothing.
    let out = h.send(BOB1, reply(&inv1, 487, "t1", BOB1, None));
    one_request(&out, BOB1, Method::Ack);
    assert!(responses_to(&out, ALICE.source).is_empty());
    assert_eq!(h.ports(), 4);
}

/// Scenario 7a: BYE releases the ports (either side's BYE, before its 200).
#[test]
fn bye_releases_the_ports() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let answer = sdp("bob", 1, "127.0.0.1", 6000, &[]);
    let (mut call, ..) = h.connect(ALICE, Some(&offer), BOB, Some(&answer), None);
    assert_eq!(h.ports(), 4);
    let out = h.send(ALICE.source, call.alice_sends("BYE", None));
    let bye = one_request(&out, BOB1, Method::Bye);
    assert_eq!(h.ports(), 0);
    let out = h.send(BOB1, reply(&bye, 200, "", BOB1, None));
    one_response(&out, ALICE.source, 200);
    assert_eq!(h.ports(), 0);
    assert_eq!(h.relay.lock().contexts(), 0);
}

/// Scenario 7b: CANCEL while ringing: 487, ports released.
#[test]
fn cancel_releases_the_ports() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let (n, out) = h.invite(ALICE, "bob", Some(&offer));
    let inv = one_request(&out, BOB1, Method::Invite);
    h.send(BOB1, reply(&inv, 180, "t", BOB1, None));
    assert_eq!(h.ports(), 4);
    let out = h.cancel(ALICE, n, "bob");
    one_response(&out, ALICE.source, 200);
    one_request(&out, BOB1, Method::Cancel);
    let out = h.send(BOB1, reply(&inv, 487, "t", BOB1, None));
    one_response(&out, ALICE.source, 487);
    assert_eq!(h.ports(), 0);
}

/// Scenario 7c: A final failure (486) releases the ports.
#[test]
fn busy_releases_the_ports() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let (_, out) = h.invite(ALICE, "bob", Some(&offer));
    let inv = one_request(&out, BOB1, Method::Invite);
    assert_eq!(h.ports(), 4);
    let out = h.send(BOB1, reply(&inv, 486, "t", BOB1, None));
    one_response(&out, ALICE.source, 486);
    assert_eq!(h.ports(), 0);
}

/// Scenario 7d: Timer B (no answer at all): 408, ports released. Timer C (rings forever): CANCEL,
/// 487, ports released.
#[test]
fn transaction_timeouts_release_the_ports() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let (_, out) = h.invite(ALICE, "bob", Some(&offer));
    one_request(&out, BOB1, Method::Invite);
    assert_eq!(h.ports(), 4);
    let out = h.advance(Duration::from_secs(31));
    assert!(responses_to(&out, ALICE.source).is_empty());
    assert_eq!(h.ports(), 4, "still trying");
    let out = h.advance(Duration::from_secs(2));
    assert_eq!(finals(&out, ALICE.source)[..1], [408], "{}", dump(&out));
    assert_eq!(h.ports(), 0, "Timer B released the ports");

    let (_, out) = h.invite(ALICE, "bob", Some(&offer));
    let inv = one_request(&out, BOB1, Method::Invite);
    h.send(BOB1, reply(&inv, 180, "t", BOB1, None));
    let out = h.advance(Duration::from_secs(180));
    assert!(
        requests_to(&out, BOB1)
            .iter()
            .all(|r| r.method != Method::Cancel)
    );
    assert_eq!(h.ports(), 4, "still ringing");
    let out = h.advance(Duration::from_secs(2));
    assert!(
        requests_to(&out, BOB1)
            .iter()
            .any(|r| r.method == Method::Cancel)
    );
    let out = h.send(BOB1, reply(&inv, 487, "t", BOB1, None));
    one_response(&out, ALICE.source, 487);
    assert_eq!(h.ports(), 0, "Timer C released the ports");
}

/// Scenario 7e: Timer C on a phone that never answers the CANCEL either: the ports do not leak.
#[test]
fn timer_c_with_a_dead_callee_releases_the_ports() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let (_, out) = h.invite(ALICE, "bob", Some(&offer));
    let inv = one_request(&out, BOB1, Method::Invite);
    h.send(BOB1, reply(&inv, 180, "t", BOB1, None));
    let out = h.advance(Duration::from_secs(182));
    assert!(
        requests_to(&out, BOB1)
            .iter()
            .any(|r| r.method == Method::Cancel)
    );
    // bob is gone: no 200 to the CANCEL, no 487. Within 64·T1 the branch is given up.
    let out = h.advance(Duration::from_secs(40));
    let finals = finals(&out, ALICE.source);
    assert!(
        !finals.is_empty() && finals.iter().all(|s| *s == 408),
        "a 408 to alice: {finals:?}"
    );
    assert_eq!(h.ports(), 0);
    assert!(h.core.proxy.is_empty());
}

/// Scenario 7f: An exhausted pool refuses the INVITE with 503 and forwards nothing to bob; the
/// ports come back when the first call ends.
#[test]
fn exhausted_pool_answers_503_and_forwards_nothing() {
    // Four ports: two RTP/RTCP pairs, one call.
    let mut h = Harness::with_ports(RelayMode::Always, PORT_MIN + 3);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let answer = sdp("bob", 1, "127.0.0.1", 6000, &[]);
    let (mut first, ..) = h.connect(ALICE, Some(&offer), BOB, Some(&answer), None);
    assert_eq!(h.ports(), 4);
    let (_, out) = h.invite(ALICE, "bob", Some(&offer));
    assert_eq!(
        responses_to(&out, ALICE.source)
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        vec![100, 503]
    );
    assert!(requests_to(&out, BOB1).is_empty(), "{}", dump(&out));
    assert_eq!(out.len(), 2, "{}", dump(&out));
    assert_eq!(h.ports(), 4);
    // The refused call left no record: its stray ACK/BYE would find nothing.
    assert_eq!(h.core.proxy.dialogs().len(), 1);
    // The first call ends; the next call is anchored.
    let out = h.send(ALICE.source, first.alice_sends("BYE", None));
    one_request(&out, BOB1, Method::Bye);
    assert_eq!(h.ports(), 0);
    let (_, out) = h.invite(ALICE, "bob", Some(&offer));
    let inv = one_request(&out, BOB1, Method::Invite);
    anchored(&text(&inv.body), "10.0.1.2");
    assert_eq!(h.ports(), 4);
}

/// Scenario 8a: Media timeout: a connected call with no RTP for 60 s is ended by the proxy with a
/// BYE to each phone (alice at her NAT flow, From/To swapped for her) and its ports released.
#[test]
fn media_timeout_sends_bye_to_both_phones() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let answer = sdp("bob", 1, "127.0.0.1", 6000, &[]);
    let (call, ..) = h.connect(ALICE_NAT, Some(&offer), BOB, Some(&answer), None);
    assert_eq!(h.ports(), 4);
    let out = h.advance(Duration::from_secs(59));
    assert!(
        out.iter().all(|t| !matches!(parse(t), Message::Request(_))),
        "{}",
        dump(&out)
    );
    assert_eq!(h.ports(), 4);
    let out = h.advance(Duration::from_secs(1));
    assert!(requests_to(&out, "10.0.1.2:5060").is_empty());
    let to_alice = one_request(&out, ALICE_NAT.source, Method::Bye);
    let to_bob = one_request(&out, BOB1, Method::Bye);
    assert_eq!(to_alice.uri.to_string(), "sip:alice@10.0.1.2:5060");
    assert_eq!(to_bob.uri.to_string(), call.bob_uri);
    let hdr = |r: &Request, n: HeaderName| r.headers.get(&n).map(|v| v.to_string());
    for bye in [&to_alice, &to_bob] {
        assert_eq!(hdr(bye, HeaderName::CallId), Some(call.call_id.clone()));
        assert_eq!(bye.headers.cseq().map(|c| c.method).ok(), Some(Method::Bye));
    }
    // To bob: From = alice (her tag), To = bob (his tag); to alice: swapped.
    assert_eq!(hdr(&to_bob, HeaderName::From), Some(call.from.clone()));
    assert_eq!(hdr(&to_bob, HeaderName::To), Some(call.to.clone()));
    assert_eq!(hdr(&to_alice, HeaderName::From), Some(call.to.clone()));
    assert_eq!(hdr(&to_alice, HeaderName::To), Some(call.from.clone()));
    assert!(call.from.contains(";tag=a") && call.to.contains(";tag=b"));
    // bob's CSeq space is alice's + 1 (her INVITE was 1).
    assert_eq!(to_bob.headers.cseq().map(|c| c.seq).ok(), Some(2));
    assert_eq!(h.ports(), 0);
    assert_eq!(h.core.stats.media_timeouts, 1);
    // The phones' 200s to those BYEs end there.
    let out = h.send(BOB1, reply(&to_bob, 200, "", BOB1, None));
    assert!(out.is_empty(), "{}", dump(&out));
    let out = h.send(ALICE_NAT.source, reply(&to_alice, 200, "", "", None));
    assert!(out.is_empty(), "{}", dump(&out));
    // Nothing more later (no second BYE).
    let out = h.advance(Duration::from_secs(120));
    assert!(
        requests_to(&out, BOB1).is_empty() && requests_to(&out, ALICE_NAT.source).is_empty(),
        "{}",
        dump(&out)
    );
}

/// Scenario 8b: RTP every 20 ms until 59 s postpones the media timeout: no BYE at 60 s; it comes 60
/// s after the last packet.
#[test]
fn media_activity_postpones_the_timeout() {
    let mut h = Harness::new(RelayMode::Always);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let answer = sdp("bob", 1, "127.0.0.1", 6000, &[]);
    let (_, _, ok, _) = h.connect(ALICE, Some(&offer), BOB, Some(&answer), None);
    let alice_port = m_port(&text(&ok.body));
    let t0 = h.now;
    let mut seq = 0u16;
    while h.now < t0 + Duration::from_secs(59) {
        h.now += Duration::from_millis(20);
        seq += 1;
        assert!(h.rtp(alice_port, ALICE_RTP_NAT, seq, 0xa).is_some());
        if seq % 50 == 0 {
            h.core.handle_timeout(h.now);
            let out = h.drain();
            assert!(requests_to(&out, BOB1).is_empty(), "{}", dump(&out));
        }
    }
    let out = h.advance(Duration::from_secs(1));
    assert!(
        requests_to(&out, BOB1).is_empty(),
        "no BYE at 60 s: {}",
        dump(&out)
    );
    assert!(requests_to(&out, ALICE.source).is_empty());
    assert_eq!(h.ports(), 4);
    let out = h.advance(Duration::from_secs(58));
    assert!(requests_to(&out, BOB1).is_empty(), "{}", dump(&out));
    let out = h.advance(Duration::from_secs(1));
    one_request(&out, BOB1, Method::Bye);
    one_request(&out, ALICE.source, Method::Bye);
    assert_eq!(h.ports(), 0);
}

/// Scenario 9: relay = off: SDP passes byte for byte, no port is taken (control).
#[test]
fn relay_off_passes_sdp_untouched() {
    let mut h = Harness::new(RelayMode::Off);
    assert_eq!(h.register("bob", "bpw", BOB).status, 200);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &["a=sendonly", CRYPTO_A]);
    let answer = sdp("bob", 1, "127.0.0.1", 6000, &["a=recvonly"]);
    let (_, inv, ok, _) = h.connect(ALICE, Some(&offer), BOB, Some(&answer), None);
    assert_eq!(inv.body, Bytes::from(offer.clone()));
    assert_eq!(ok.body, Bytes::from(answer.clone()));
    assert_eq!(h.ports(), 0);
    assert_eq!(h.relay.lock().contexts(), 0);
}

/// Scenario 10: relay = nat: public phones whose SDP address is their signalling address flow
/// directly (bodies untouched); a private SDP address, or a callee registered through a NAT, is
/// anchored.
#[test]
fn relay_nat_anchors_only_when_a_nat_is_involved() {
    let mut h = Harness::new(RelayMode::Nat);
    let bob_pub = Phone {
        source: "198.51.100.20:5060",
        via: "198.51.100.20:5060",
        contact: "198.51.100.20:5060",
    };
    let alice_pub = Phone {
        source: "192.0.2.10:5060",
        via: "192.0.2.10:5060",
        contact: "192.0.2.10:5060",
    };
    assert_eq!(h.register("bob", "bpw", bob_pub).status, 200);
    let offer = sdp("alice", 1, "192.0.2.10", 4000, &[]);
    let answer = sdp("bob", 1, "198.51.100.20", 6000, &[]);
    let (mut call, inv, ok, _) = h.connect(alice_pub, Some(&offer), bob_pub, Some(&answer), None);
    assert_eq!(
        inv.body,
        Bytes::from(offer.clone()),
        "public caller: untouched"
    );
    assert_eq!(
        ok.body,
        Bytes::from(answer.clone()),
        "public callee: untouched"
    );
    assert_eq!(h.ports(), 0);
    // A later re-INVITE of that call stays direct too.
    let out = h.send(alice_pub.source, call.alice_sends("INVITE", Some(&offer)));
    let reinv = one_request(&out, bob_pub.source, Method::Invite);
    assert_eq!(reinv.body, Bytes::from(offer.clone()));
    assert_eq!(h.ports(), 0);

    // Same phones, but alice's SDP names a private address: anchored.
    let private = sdp("alice", 1, "10.0.1.2", 4000, &[]);
    let (_, inv, ok, _) = h.connect(alice_pub, Some(&private), bob_pub, Some(&answer), None);
    anchored(&text(&inv.body), "10.0.1.2");
    anchored(&text(&ok.body), "198.51.100.20");
    assert_eq!(h.ports(), 4);

    // A public SDP toward a callee registered through a NAT: anchored.
    assert_eq!(
        h.register(
            "carol",
            "cpw",
            Phone {
                source: "203.0.113.30:41000",
                via: "10.0.3.7:5060",
                contact: "10.0.3.7:5060",
            }
        )
        .status,
        200
    );
    let (_, out) = h.invite(alice_pub, "carol", Some(&offer));
    let inv = one_request(&out, "203.0.113.30:41000", Method::Invite);
    anchored(&text(&inv.body), "192.0.2.10");
    assert_eq!(h.ports(), 8);
}
