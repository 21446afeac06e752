//! Scenario tests of the server core on simulated time (no sockets): registration with digest,
//! proxy authentication, forking, CANCEL, routing of ACK/BYE, and the §16.3 request checks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::authorization_value;
use crate::server::config::ServerConfig;
use crate::server::core::ServerCore;
use crate::server::local::LocalIdentity;
use crate::sip::msg::{Auth, HeaderName, Limits, Message, Method, Request, Response};
use crate::sip::transaction::{Transmit, Transport};

const ALICE: &str = "127.0.0.1:5070";
const BOB1: &str = "127.0.0.1:5080";
const BOB2: &str = "127.0.0.1:5082";

struct Harness {
    core: ServerCore,
    now: Instant,
    n: u32,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn wire(text: &str) -> Bytes {
    let mut s = text
        .trim_start()
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    if !s.ends_with("\r\n\r\n") {
        s.push_str("\r\n");
    }
    Bytes::from(s)
}

fn parse(t: &Transmit) -> Message {
    Message::parse(t.bytes.clone(), &Limits::default()).expect("server sent an unparsable message")
}

fn resp(t: &Transmit) -> Response {
    match parse(t) {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

fn req(t: &Transmit) -> Request {
    match parse(t) {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {}", r.status),
    }
}

impl Harness {
    fn new(invite_auth: bool) -> Harness {
        Harness::with_config(ServerConfig {
            invite_auth,
            ..ServerConfig::default()
        })
    }

    /// A harness on `cfg` (both digest algorithms offered, MD5 first).
    fn with_config(cfg: ServerConfig) -> Harness {
        let now = Instant::now();
        let cfg = ServerConfig {
            digest_algorithms: vec![crate::auth::Algorithm::Md5, crate::auth::Algorithm::Sha256],
            ..cfg
        };
        let local = LocalIdentity::new(
            &[(Transport::Udp, addr("127.0.0.1:5060"))],
            "127.0.0.1",
            "example.com",
            &[],
        );
        let users = vec![
            ("alice".to_string(), "apw".to_string()),
            ("bob".to_string(), "bpw".to_string()),
            ("carol".to_string(), "cpw".to_string()),
        ];
        Harness {
            core: ServerCore::new(&cfg, local, &users, now, 1_700_000_000),
            now,
            n: 0,
        }
    }

    /// Sends `text` from `from` and returns everything the server transmits in reaction.
    fn send(&mut self, from: &str, text: &str) -> Vec<Transmit> {
        self.core
            .handle_datagram(self.now, wire(text), addr(from), Transport::Udp);
        self.drain()
    }

    fn send_bytes(&mut self, from: &str, bytes: Bytes) -> Vec<Transmit> {
        self.core
            .handle_datagram(self.now, bytes, addr(from), Transport::Udp);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Transmit> {
        let mut v = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            v.push(t);
        }
        v
    }

    fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        self.now += d;
        self.core.handle_timeout(self.now);
        self.drain()
    }

    fn next(&mut self) -> u32 {
        self.n += 1;
        self.n
    }

    /// REGISTER user with contact at `contact_addr`, answering the 401 challenge.
    fn register(&mut self, user: &str, pw: &str, contact_addr: &str) -> Response {
        let n = self.next();
        let base = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {contact_addr};branch=z9hG4bKreg{n}x{cseq}\nMax-Forwards: 70\n\
                 From: <sip:{user}@127.0.0.1>;tag=r{n}\nTo: <sip:{user}@127.0.0.1>\nCall-ID: reg{n}@test\nCSeq: {cseq} REGISTER\n\
                 Contact: <sip:{user}@{contact_addr}>\n{auth}Expires: 600\nContent-Length: 0\n\n"
            )
        };
        let out = self.send(contact_addr, &base(1, ""));
        assert_eq!(out.len(), 1);
        let r401 = resp(&out[0]);
        assert_eq!(r401.status, 401);
        let authz = answer(
            &r401,
            HeaderName::WwwAuthenticate,
            user,
            pw,
            "REGISTER",
            "sip:127.0.0.1",
        );
        let out = self.send(contact_addr, &base(2, &format!("Authorization: {authz}\n")));
        assert_eq!(out.len(), 1);
        resp(&out[0])
    }
}

/// Answers the SHA-256 challenge of `r` (both SHA-256 and MD5 are offered, MD5 first).
fn answer(r: &Response, name: HeaderName, user: &str, pw: &str, method: &str, uri: &str) -> String {
    let ch: Vec<_> = r.headers.get_all(&name).collect();
    assert_eq!(ch.len(), 2, "expected SHA-256 and MD5 challenges");
    assert!(
        ch[0].contains("algorithm=MD5") && ch[1].contains("algorithm=SHA-256"),
        "{ch:?}"
    );
    let auth = Auth::parse(ch[1]).unwrap();
    // A fresh cnonce per answer, as a real client sends (the same nonce may be handed out twice
    // within one second, and nonce-count replay is tracked per nonce+user+cnonce).
    static CNONCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let cnonce = format!(
        "c{:08x}",
        CNONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    authorization_value(&auth, user, pw, method, uri, 1, &cnonce).unwrap()
}

fn invite(n: u32, to_user: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{to_user}@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKinv{n}\nMax-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=a{n}\nTo: <sip:{to_user}@127.0.0.1>\nCall-ID: call{n}@test\nCSeq: 1 INVITE\n\
         Contact: <sip:alice@{ALICE}>\n{extra}Content-Length: 0\n\n"
    )
}

/// A response from a UAS to a forwarded request, echoing its Via/From/To/Call-ID/CSeq and
/// Record-Route, with a To tag.
fn uas_response(r: &Request, status: u16, to_tag: &str, contact: &str) -> Bytes {
    let mut resp = Response::for_request(r, status);
    let to = r.headers.get(&HeaderName::To).unwrap().to_string();
    resp.headers
        .set(HeaderName::To, format!("{to};tag={to_tag}"));
    for rr in r.headers.get_all(&HeaderName::RecordRoute) {
        resp.headers.push(HeaderName::RecordRoute, rr.clone());
    }
    resp.headers
        .push(HeaderName::Contact, format!("<sip:{contact}>"));
    resp.to_bytes()
}

#[test]
fn register_challenge_then_200_lists_binding() {
    let mut h = Harness::new(true);
    let ok = h.register("bob", "bpw", BOB1);
    assert_eq!(ok.status, 200);
    let contacts: Vec<_> = ok.headers.get_all(&HeaderName::Contact).collect();
    assert_eq!(contacts.len(), 1);
    assert!(contacts[0].contains(BOB1), "{contacts:?}");
    assert_eq!(h.core.stats.registrations, 1);
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let mut h = Harness::new(true);
    let bad = h.register("bob", "wrong", BOB1);
    let unknown = h.register("mallory", "whatever", BOB2);
    assert_eq!(bad.status, 401);
    assert_eq!(unknown.status, 401);
    let shape = |r: &Response| {
        r.headers
            .get_all(&HeaderName::WwwAuthenticate)
            .map(|v| v.split("nonce").next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&bad), shape(&unknown));
    assert_eq!(bad.reason, unknown.reason);
}

/// alice calls bob (two bindings) through the proxy, answering the 407 challenge.
fn call_bob(h: &mut Harness) -> (u32, Request, Request) {
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    assert_eq!(h.register("bob", "bpw", BOB2).status, 200);
    let n = h.next();
    let out = h.send(ALICE, &invite(n, "bob", ""));
    let statuses: Vec<u16> = out.iter().map(|t| resp(t).status).collect();
    assert_eq!(statuses, vec![407], "no 100 Trying before an immediate 407");
    let r407 = resp(&out[0]);
    // ACK for the 407 is absorbed by the server transaction.
    let ack = format!(
        "ACK sip:bob@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKinv{n}\nMax-Forwards: 70\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\n\
         To: {}\nCall-ID: call{n}@test\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        r407.headers.get(&HeaderName::To).unwrap()
    );
    assert!(h.send(ALICE, &ack).is_empty());
    let authz = answer(
        &r407,
        HeaderName::ProxyAuthenticate,
        "alice",
        "apw",
        "INVITE",
        "sip:bob@127.0.0.1",
    );
    let text = invite(n, "bob", &format!("Proxy-Authorization: {authz}\n"))
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(&format!("inv{n}"), &format!("inv{n}b"));
    let out = h.send(ALICE, &text);
    assert_eq!(out.len(), 3, "100 Trying + two forks");
    assert_eq!(out[0].dest, addr(ALICE));
    assert_eq!(resp(&out[0]).status, 100);
    let mut forks: Vec<(SocketAddr, Request)> = out[1..].iter().map(|t| (t.dest, req(t))).collect();
    forks.sort_by_key(|(d, _)| *d);
    assert_eq!(forks[0].0, addr(BOB1));
    assert_eq!(forks[1].0, addr(BOB2));
    for (dest, r) in &forks {
        assert_eq!(r.method, Method::Invite);
        assert!(
            r.uri.to_string().contains(&dest.to_string()),
            "R-URI rewritten to the contact: {}",
            r.uri
        );
        assert_eq!(r.headers.max_forwards().unwrap(), Some(69));
        assert!(
            r.headers.get(&HeaderName::ProxyAuthorization).is_none(),
            "credentials consumed"
        );
        let rr = r.headers.get(&HeaderName::RecordRoute).unwrap();
        assert!(rr.contains("127.0.0.1:5060") && rr.contains(";lr"), "{rr}");
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.port, Some(5060));
        assert_eq!(r.headers.get_all(&HeaderName::Via).count(), 2);
    }
    let b2 = forks.pop().unwrap().1;
    let b1 = forks.pop().unwrap().1;
    (n, b1, b2)
}

#[test]
fn fork_first_2xx_wins_and_other_branch_is_cancelled() {
    let mut h = Harness::new(true);
    let (_n, b1, b2) = call_bob(&mut h);
    let out = h.send_bytes(BOB1, uas_response(&b1, 180, "t1", BOB1));
    assert_eq!(out.len(), 1);
    assert_eq!(resp(&out[0]).status, 180);
    assert_eq!(out[0].dest, addr(ALICE));
    assert_eq!(
        resp(&out[0]).headers.get_all(&HeaderName::Via).count(),
        1,
        "our Via removed"
    );
    let out = h.send_bytes(BOB2, uas_response(&b2, 180, "t2", BOB2));
    assert_eq!(out.len(), 1);
    // bob1 answers: 200 goes to alice and bob2 gets a CANCEL with its INVITE's branch.
    let out = h.send_bytes(BOB1, uas_response(&b1, 200, "t1", BOB1));
    assert_eq!(
        out.len(),
        2,
        "{:?}",
        out.iter()
            .map(|t| String::from_utf8_lossy(&t.bytes).to_string())
            .collect::<Vec<_>>()
    );
    let ok = out
        .iter()
        .find(|t| t.dest == addr(ALICE))
        .map(resp)
        .unwrap();
    assert_eq!(ok.status, 200);
    let cancel = out.iter().find(|t| t.dest == addr(BOB2)).map(req).unwrap();
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        cancel.headers.top_via().unwrap().branch(),
        b2.headers.top_via().unwrap().branch()
    );
    assert_eq!(cancel.headers.cseq().unwrap().seq, 2);
    // bob2 answers 487: the proxy ACKs it hop-by-hop and sends nothing to alice.
    let out = h.send_bytes(BOB2, uas_response(&b2, 487, "t2", BOB2));
    assert!(
        out.iter().all(|t| t.dest == addr(BOB2)),
        "nothing more to alice"
    );
    assert!(out.iter().any(|t| req(t).method == Method::Ack));
    assert!(h.core.proxy.is_empty(), "context finished");
}

#[test]
fn cancel_while_ringing_propagates_and_487_returns() {
    let mut h = Harness::new(true);
    let (n, b1, b2) = call_bob(&mut h);
    h.send_bytes(BOB1, uas_response(&b1, 180, "t1", BOB1));
    h.send_bytes(BOB2, uas_response(&b2, 180, "t2", BOB2));
    let cancel = format!(
        "CANCEL sip:bob@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKinv{n}b\nMax-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=a{n}\nTo: <sip:bob@127.0.0.1>\nCall-ID: call{n}@test\nCSeq: 2 CANCEL\nContent-Length: 0\n\n"
    );
    let out = h.send(ALICE, &cancel);
    let to_alice: Vec<u16> = out
        .iter()
        .filter(|t| t.dest == addr(ALICE))
        .map(|t| resp(t).status)
        .collect();
    assert_eq!(to_alice, vec![200]);
    let cancels = out
        .iter()
        .filter(|t| t.dest != addr(ALICE))
        .map(req)
        .filter(|r| r.method == Method::Cancel)
        .count();
    assert_eq!(cancels, 2);
    let out = h.send_bytes(BOB1, uas_response(&b1, 487, "t1", BOB1));
    assert!(
        out.iter().all(|t| t.dest == addr(BOB1)),
        "waits for the other branch"
    );
    let out = h.send_bytes(BOB2, uas_response(&b2, 487, "t2", BOB2));
    let finals: Vec<u16> = out
        .iter()
        .filter(|t| t.dest == addr(ALICE))
        .map(|t| resp(t).status)
        .collect();
    assert_eq!(finals, vec![487]);
}

#[test]
fn ack_and_bye_follow_the_record_route() {
    let mut h = Harness::new(true);
    let (n, b1, b2) = call_bob(&mut h);
    h.send_bytes(BOB2, uas_response(&b2, 486, "t2", BOB2));
    let out = h.send_bytes(BOB1, uas_response(&b1, 200, "t1", BOB1));
    let ok = out
        .iter()
        .find(|t| t.dest == addr(ALICE))
        .map(resp)
        .unwrap();
    assert_eq!(ok.status, 200);
    let route = ok
        .headers
        .get(&HeaderName::RecordRoute)
        .unwrap()
        .to_string();
    let to = ok.headers.get(&HeaderName::To).unwrap().to_string();
    for (method, cseq, branch) in [("ACK", 2, "ack"), ("BYE", 3, "bye")] {
        let text = format!(
            "{method} sip:bob@{BOB1} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK{branch}{n}\nRoute: {route}\nMax-Forwards: 70\n\
             From: <sip:alice@127.0.0.1>;tag=a{n}\nTo: {to}\nCall-ID: call{n}@test\nCSeq: {cseq} {method}\nContent-Length: 0\n\n"
        );
        let out = h.send(ALICE, &text);
        let fwd: Vec<Request> = out
            .iter()
            .filter(|t| t.dest == addr(BOB1))
            .map(req)
            .collect();
        assert_eq!(fwd.len(), 1, "{method} forwarded to bob1");
        assert_eq!(fwd[0].method.as_str(), method);
        assert!(
            fwd[0].headers.get(&HeaderName::Route).is_none(),
            "our Route removed"
        );
        assert_eq!(fwd[0].headers.get_all(&HeaderName::Via).count(), 2);
        if method == "BYE" {
            let out = h.send_bytes(BOB1, uas_response(&fwd[0], 200, "t1", BOB1));
            assert_eq!(
                out.iter()
                    .filter(|t| t.dest == addr(ALICE))
                    .map(|t| resp(t).status)
                    .collect::<Vec<_>>(),
                vec![200]
            );
        }
    }
    // The 486 branch was ACKed by the proxy; the 2xx retransmission still reaches alice.
    let out = h.send_bytes(BOB1, uas_response(&b1, 200, "t1", BOB1));
    assert_eq!(out.iter().filter(|t| t.dest == addr(ALICE)).count(), 1);
}

#[test]
fn unknown_user_and_user_without_binding_look_the_same_480() {
    // No user enumeration (svwar): to a sender that did not authenticate, an unknown user
    // and a known user with no binding both get 480 (before: 404 and 480).
    let mut h = Harness::new(false);
    let out = h.send(ALICE, &invite(1, "nobody", ""));
    assert_eq!(
        out.iter().map(|t| resp(t).status).collect::<Vec<_>>(),
        vec![480]
    );
    let out = h.send(ALICE, &invite(2, "carol", ""));
    assert_eq!(
        out.iter().map(|t| resp(t).status).collect::<Vec<_>>(),
        vec![480]
    );
    let r = resp(&out[0]);
    assert!(
        r.headers.to().unwrap().tag().is_some(),
        "final response has a To tag"
    );
}

#[test]
fn request_checks_483_420_416_400() {
    let mut h = Harness::new(false);
    let mf0 = invite(1, "bob", "").replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(h.send(ALICE, &mf0).last().map(resp).unwrap().status, 483);
    let pr = invite(2, "bob", "Proxy-Require: foo, bar\n");
    let r = h.send(ALICE, &pr).last().map(resp).unwrap();
    assert_eq!(r.status, 420);
    assert_eq!(r.headers.get_all(&HeaderName::Unsupported).count(), 2);
    let scheme = invite(3, "bob", "").replace("INVITE sip:bob@127.0.0.1", "INVITE tel:+15551234");
    assert_eq!(h.send(ALICE, &scheme).last().map(resp).unwrap().status, 416);
    let mismatch = invite(4, "bob", "").replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    assert_eq!(
        h.send(ALICE, &mismatch).last().map(resp).unwrap().status,
        400
    );
    // Garbage that cannot be answered is dropped without a panic.
    assert!(
        h.send_bytes(ALICE, Bytes::from_static(b"\x00\x01garbage\r\n\r\n"))
            .is_empty()
    );
}

#[test]
fn options_to_the_server_is_answered() {
    let mut h = Harness::new(true);
    let text = "OPTIONS sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKopt1\nMax-Forwards: 70\n\
                From: <sip:x@127.0.0.1>;tag=o1\nTo: <sip:127.0.0.1>\nCall-ID: opt1@test\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n";
    let out = h.send(ALICE, text);
    assert_eq!(resp(&out[0]).status, 200);
}

#[test]
fn request_routed_back_to_us_is_a_loop() {
    let mut h = Harness::new(false);
    // bob registers the proxy itself as his contact: the request spirals once (new R-URI),
    // then comes back with the same R-URI and our branch hash: 482.
    assert_eq!(h.register("bob", "bpw", "127.0.0.1:5060").status, 200);
    let mut pending = h.send(ALICE, &invite(1, "bob", ""));
    let mut seen_482 = false;
    for _ in 0..10 {
        let mut next = Vec::new();
        for t in pending {
            if t.dest == addr("127.0.0.1:5060") {
                next.extend(h.send_bytes("127.0.0.1:5060", t.bytes.clone()));
            } else if let Message::Response(r) = parse(&t) {
                seen_482 |= r.status == 482;
            }
        }
        pending = next;
        if pending.is_empty() {
            break;
        }
    }
    assert!(seen_482, "loop detected");
}

#[test]
fn branch_timeout_gives_408_and_stale_contexts_end() {
    let mut h = Harness::new(false);
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    let out = h.send(ALICE, &invite(1, "bob", ""));
    assert_eq!(out.len(), 2);
    let mut finals = Vec::new();
    for _ in 0..80 {
        for t in h.advance(Duration::from_millis(500)) {
            if t.dest == addr(ALICE) {
                finals.push(resp(&t).status);
            }
        }
    }
    assert_eq!(finals.first(), Some(&408));
    assert!(h.core.proxy.is_empty());
}

#[test]
fn timer_c_cancels_a_branch_that_rings_forever() {
    let mut h = Harness::new(false);
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    let out = h.send(ALICE, &invite(1, "bob", ""));
    let b1 = out.iter().find(|t| t.dest == addr(BOB1)).map(req).unwrap();
    h.send_bytes(BOB1, uas_response(&b1, 180, "t1", BOB1));
    let mut cancel = None;
    for _ in 0..200 {
        for t in h.advance(Duration::from_secs(1)) {
            if t.dest == addr(BOB1) {
                if let Message::Request(r) = parse(&t) {
                    if r.method == Method::Cancel {
                        cancel = Some(r);
                    }
                }
            }
        }
        if cancel.is_some() {
            break;
        }
    }
    let cancel = cancel.expect("Timer C sent a CANCEL");
    assert_eq!(
        cancel.headers.top_via().unwrap().branch(),
        b1.headers.top_via().unwrap().branch()
    );
    let out = h.send_bytes(BOB1, uas_response(&b1, 487, "t1", BOB1));
    assert!(
        out.iter()
            .any(|t| t.dest == addr(ALICE) && resp(t).status == 487)
    );
}

#[test]
fn foreign_route_is_not_relayed() {
    let mut h = Harness::new(false);
    let text = invite(1, "bob", "Route: <sip:192.0.2.9;lr>\n");
    assert_eq!(h.send(ALICE, &text).last().map(resp).unwrap().status, 403);
}

#[test]
fn retransmitted_authorized_register_gets_200_again() {
    let mut h = Harness::new(true);
    let first = "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKrr1\nMax-Forwards: 70\n\
                 From: <sip:bob@127.0.0.1>;tag=rr\nTo: <sip:bob@127.0.0.1>\nCall-ID: rr@test\nCSeq: 1 REGISTER\n\
                 Contact: <sip:bob@127.0.0.1:5080>\nContent-Length: 0\n\n";
    let r401 = resp(&h.send(BOB1, first)[0]);
    let authz = answer(
        &r401,
        HeaderName::WwwAuthenticate,
        "bob",
        "bpw",
        "REGISTER",
        "sip:127.0.0.1",
    );
    let second = first
        .replace("z9hG4bKrr1", "z9hG4bKrr2")
        .replace("CSeq: 1", "CSeq: 2")
        .replace(
            "Content-Length",
            &format!("Authorization: {authz}\nContent-Length"),
        );
    assert_eq!(resp(&h.send(BOB1, &second)[0]).status, 200);
    // The 200 was lost: the same request again is a retransmission, not a replay.
    assert_eq!(resp(&h.send(BOB1, &second)[0]).status, 200);
    // The same credentials on a different request are a replay.
    let replay = second
        .replace("z9hG4bKrr2", "z9hG4bKrr3")
        .replace("CSeq: 2", "CSeq: 3");
    assert_eq!(resp(&h.send(BOB1, &replay)[0]).status, 401);
}

#[test]
fn via_gets_received_and_rport_filled() {
    let mut h = Harness::new(true);
    let text = "OPTIONS sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.7:5099;rport;branch=z9hG4bKnat1\nMax-Forwards: 70\n\
                From: <sip:x@127.0.0.1>;tag=n1\nTo: <sip:127.0.0.1>\nCall-ID: nat1@test\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n";
    let out = h.send("192.0.2.50:40000", text);
    assert_eq!(
        out[0].dest,
        addr("192.0.2.50:40000"),
        "rport: answer the source port"
    );
    let via = resp(&out[0]).headers.top_via().unwrap();
    assert_eq!(via.received(), Some("192.0.2.50"));
    assert_eq!(via.params.get("rport"), Some(Some("40000")));
    assert_eq!(via.branch(), Some("z9hG4bKnat1"));
}

/// No input may panic the server or leave work stuck: every RFC 4475 message, and seeded byte
/// mutations of each, go through the whole core (parse, validation, auth, registrar, proxy), and
/// then time runs out every transaction.
#[test]
fn hostile_input_never_panics_and_transactions_drain() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance/rfc4475/"
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("conformance corpus beside the repo")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    files.sort();
    assert!(files.len() >= 49, "corpus incomplete: {}", files.len());
    let mut h = Harness::new(true);
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for f in &files {
        let orig = std::fs::read(f).unwrap();
        h.send_bytes(ALICE, Bytes::from(orig.clone()));
        for _ in 0..200 {
            let mut m = orig.clone();
            for _ in 0..(1 + next() % 4) {
                let i = (next() % m.len() as u64) as usize;
                m[i] = b" :;,<>\"\r\n@=%0Zz\x00\xff"[(next() % 17) as usize];
            }
            h.send_bytes(ALICE, Bytes::from(m));
        }
        // The same messages addressed to a registered user exercise the forwarding paths.
        let to_bob =
            String::from_utf8_lossy(&orig).replacen("sip:user@example.com", "sip:bob@127.0.0.1", 1);
        h.send_bytes(BOB2, Bytes::from(to_bob.into_bytes()));
    }
    for _ in 0..400 {
        h.advance(Duration::from_secs(1));
    }
    assert_eq!(h.core.tl.len(), (0, 0), "every transaction ended");
    assert!(h.core.proxy.is_empty(), "every proxy context ended");
}

#[test]
fn responses_carry_rport_and_received_even_for_same_ip() {
    let mut h = Harness::new(false);
    let text = invite(1, "nobody", "")
        .replace(&format!("{ALICE};branch"), &format!("{ALICE};rport;branch"));
    let out = h.send(ALICE, &text);
    for t in &out {
        let via = resp(t).headers.top_via().unwrap();
        assert_eq!(
            via.params.get("rport"),
            Some(Some("5070")),
            "status {}",
            resp(t).status
        );
        assert_eq!(
            via.received(),
            Some("127.0.0.1"),
            "RFC 3581 §4: received even when identical"
        );
    }
    assert_eq!(
        out.len(),
        1,
        "the 404 alone: no 100 Trying before an immediate final"
    );
}

/// §17.2.1: the 100 Trying may be skipped when the answer comes at once. An INVITE answered
/// at once (407, 480) gets its final alone, and a retransmission of it gets the final again;
/// an INVITE that is forwarded gets its 100 Trying first, in the same turn, and a
/// retransmission of it gets the 100 again.
#[test]
fn trying_only_when_the_invite_is_not_answered_at_once() {
    let mut h = Harness::new(false);
    let text = invite(1, "nobody", "");
    let out = h.send(ALICE, &text);
    assert_eq!(
        out.iter().map(|t| resp(t).status).collect::<Vec<_>>(),
        [480]
    );
    let again = h.send(ALICE, &text);
    assert_eq!(
        again.iter().map(|t| resp(t).status).collect::<Vec<_>>(),
        [480]
    );
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    let text = invite(2, "bob", "");
    let out = h.send(ALICE, &text);
    assert_eq!(out.len(), 2, "100 Trying and the forwarded INVITE");
    assert_eq!((out[0].dest, resp(&out[0]).status), (addr(ALICE), 100));
    assert_eq!(
        (out[1].dest, req(&out[1]).method),
        (addr(BOB1), Method::Invite)
    );
    let again = h.send(ALICE, &text);
    assert_eq!(
        again.iter().map(|t| resp(t).status).collect::<Vec<_>>(),
        [100]
    );
}

/// No silent downgrade (issue 10, 11): a sips: request over plaintext is refused (416), a
/// binding that asks for TLS is never reached in plaintext, and a transport=tls next hop is
/// reached over TLS only. Every transmit of the server is inspected.
#[test]
fn sips_and_tls_targets_are_refused_not_sent_in_plaintext() {
    let mut h = Harness::new(false);
    // A sips: Request-URI: 416, and nothing leaves toward anyone but the caller.
    let sips =
        invite(1, "bob", "").replace("INVITE sip:bob@127.0.0.1", "INVITE sips:bob@127.0.0.1");
    let out = h.send(ALICE, &sips);
    assert_eq!(out.last().map(resp).unwrap().status, 416);
    assert!(out.iter().all(|t| t.dest == addr(ALICE)));
    // bob's only binding asks for TLS: the INVITE is not sent to it (480), in no transport.
    let mut h = Harness::new(false);
    let n = h.next();
    let base = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {BOB1};branch=z9hG4bKtls{n}x{cseq}\nMax-Forwards: 70\n\
             From: <sip:bob@127.0.0.1>;tag=t{n}\nTo: <sip:bob@127.0.0.1>\nCall-ID: tls{n}@test\nCSeq: {cseq} REGISTER\n\
             Contact: <sip:bob@{BOB1};transport=tls>\n{auth}Expires: 600\nContent-Length: 0\n\n"
        )
    };
    let r401 = resp(&h.send(BOB1, &base(1, ""))[0]);
    let authz = answer(
        &r401,
        HeaderName::WwwAuthenticate,
        "bob",
        "bpw",
        "REGISTER",
        "sip:127.0.0.1",
    );
    let out = h.send(BOB1, &base(2, &format!("Authorization: {authz}\n")));
    assert_eq!(resp(&out[0]).status, 200);
    let out = h.send(ALICE, &invite(2, "bob", ""));
    assert_eq!(
        out.iter().map(|t| resp(t).status).collect::<Vec<_>>(),
        vec![480]
    );
    assert!(out.iter().all(|t| t.dest == addr(ALICE)));
    // An in-dialog request routed through us toward a transport=tls target goes over TLS only
    // (the driver verifies the server's certificate), never in plaintext.
    let bye = format!(
        "BYE sip:bob@{BOB1};transport=tls SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKbyetls\nMax-Forwards: 70\n\
         Route: <sip:127.0.0.1:5060;lr>\nFrom: <sip:alice@127.0.0.1>;tag=a9\nTo: <sip:bob@127.0.0.1>;tag=b9\n\
         Call-ID: tlsdlg@test\nCSeq: 2 BYE\nContent-Length: 0\n\n"
    );
    let out = h.send(ALICE, &bye);
    let to_bob: Vec<_> = out.iter().filter(|t| t.dest != addr(ALICE)).collect();
    assert_eq!(to_bob.len(), 1, "{out:?}");
    assert_eq!(
        (to_bob[0].dest, to_bob[0].transport),
        (addr(BOB1), Transport::Tls)
    );
    // The same BYE toward a plain sip: target is forwarded (the test can fail).
    let plain = bye
        .replace(";transport=tls", "")
        .replace("z9hG4bKbyetls", "z9hG4bKbyeplain");
    let out = h.send(ALICE, &plain);
    assert!(out.iter().any(|t| t.dest == addr(BOB1)));
}

mod outbound;

mod guard;

mod forward;

mod redirect;

mod offline;

mod presence;

mod dispatch;
mod metrics;
mod path;
mod shard;
mod vhost;
