//! Requests for another domain on simulated time: the relay policy (403 for foreign senders),
//! the DNS query the core asks of its driver, forwarding to the first destination and failover
//! to the next on a connection failure or a 503 (RFC 3263 §4.3), the §16.9 ranking of a
//! transport error (503, sent upstream as 500), lookup failures, and CANCEL while the lookup runs.

use super::*;
use crate::sip::resolve::{Destination, Proto, ResolveError};

const DEAD: &str = "127.0.0.1:5999";
const LIVE: &str = "127.0.0.1:5098";
const OTHER: &str = "127.0.0.1:5097";

fn foreign_invite(n: u32, from_user: &str) -> String {
    format!(
        "INVITE sip:carol@other.test SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKfor{n}\nMax-Forwards: 70\n\
         From: <sip:{from_user}@127.0.0.1>;tag=f{n}\nTo: <sip:carol@other.test>\nCall-ID: foreign{n}@test\nCSeq: 1 INVITE\n\
         Contact: <sip:{from_user}@{ALICE}>\nContent-Length: 0\n\n"
    )
}

fn dest(a: &str, proto: Proto) -> Destination {
    Destination {
        addr: addr(a),
        proto,
        host: "other.test".into(),
    }
}

fn statuses_to(out: &[Transmit], to: &str) -> Vec<u16> {
    out.iter()
        .filter(|t| t.dest == addr(to))
        .filter_map(|t| match parse(t) {
            Message::Response(r) => Some(r.status),
            Message::Request(_) => None,
        })
        .collect()
}

fn invites_to<'a>(out: &'a [Transmit], to: &str) -> Vec<&'a Transmit> {
    out.iter()
        .filter(|t| t.dest == addr(to))
        .filter(|t| matches!(parse(t), Message::Request(r) if r.method == Method::Invite))
        .collect()
}

/// alice's INVITE for carol@other.test: only 100 Trying goes out, and one DNS query.
fn start(h: &mut Harness, n: u32) -> crate::server::core::DnsQuery {
    let out = h.send(ALICE, &foreign_invite(n, "alice"));
    assert_eq!(statuses_to(&out, ALICE), vec![100]);
    assert_eq!(out.len(), 1, "nothing forwarded before the lookup");
    let q = h.core.poll_dns_query().expect("a DNS query");
    assert_eq!(q.target.host, "other.test");
    assert_eq!(q.target.port, None);
    assert!(h.core.poll_dns_query().is_none());
    q
}

#[test]
fn another_domain_is_resolved_then_a_dead_destination_fails_over_to_the_next() {
    let mut h = Harness::new(false);
    let q = start(&mut h, 1);
    h.core.dns_resolved(
        h.now,
        q.id,
        Ok(vec![dest(DEAD, Proto::Tcp), dest(LIVE, Proto::Udp)]),
    );
    let out = h.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].dest, out[0].transport),
        (addr(DEAD), Transport::Tcp)
    );
    let first = req(&out[0]);
    assert_eq!(first.uri.to_string(), "sip:carol@other.test");

    h.core
        .connection_failed(h.now, addr(DEAD), Transport::Tcp, "connection refused");
    let out = h.drain();
    assert_eq!(
        statuses_to(&out, ALICE),
        Vec::<u16>::new(),
        "nothing upstream yet"
    );
    let next = invites_to(&out, LIVE);
    assert_eq!(next.len(), 1, "{out:?}");
    assert_eq!(next[0].transport, Transport::Udp);
    let second = req(next[0]);
    assert_ne!(
        first.headers.top_via().unwrap().branch(),
        second.headers.top_via().unwrap().branch(),
        "a new client transaction"
    );
    let out = h.send_bytes(LIVE, uas_response(&second, 200, "c1", LIVE));
    assert_eq!(statuses_to(&out, ALICE), vec![200]);
    assert_eq!(h.core.stats.dns_lookups, 1);
    assert_eq!(h.core.stats.failovers, 1);
}

#[test]
fn a_503_moves_on_and_the_last_503_goes_upstream_as_500() {
    let mut h = Harness::new(false);
    let q = start(&mut h, 2);
    h.core.dns_resolved(
        h.now,
        q.id,
        Ok(vec![dest(LIVE, Proto::Udp), dest(OTHER, Proto::Udp)]),
    );
    let out = h.drain();
    let first = req(invites_to(&out, LIVE)[0]);
    let out = h.send_bytes(LIVE, uas_response(&first, 503, "x1", LIVE));
    assert_eq!(statuses_to(&out, ALICE), Vec::<u16>::new());
    let second = req(invites_to(&out, OTHER)[0]);
    let out = h.send_bytes(OTHER, uas_response(&second, 503, "x2", OTHER));
    // §16.7 step 6: a 503 from downstream is not passed upstream as a 503.
    assert_eq!(statuses_to(&out, ALICE), vec![500]);
}

#[test]
fn a_connect_failure_without_alternates_ends_at_once_as_500_not_408() {
    let mut h = Harness::new(false);
    let q = start(&mut h, 3);
    h.core
        .dns_resolved(h.now, q.id, Ok(vec![dest(DEAD, Proto::Tcp)]));
    h.drain();
    h.core
        .connection_failed(h.now, addr(DEAD), Transport::Tcp, "connection refused");
    let out = h.drain();
    assert_eq!(statuses_to(&out, ALICE), vec![500]);
}

#[test]
fn lookup_failures_are_answered() {
    let mut h = Harness::new(false);
    let q = start(&mut h, 4);
    h.core.dns_resolved(
        h.now,
        q.id,
        Err(ResolveError::NotFound("other.test".into())),
    );
    assert_eq!(statuses_to(&h.drain(), ALICE), vec![404]);
    let q = start(&mut h, 5);
    h.core
        .dns_resolved(h.now, q.id, Err(ResolveError::Dns("SERVFAIL".into())));
    assert_eq!(statuses_to(&h.drain(), ALICE), vec![500]);
    // Only WebSocket destinations: the server cannot open those.
    let q = start(&mut h, 6);
    h.core
        .dns_resolved(h.now, q.id, Ok(vec![dest(LIVE, Proto::Wss)]));
    assert_eq!(statuses_to(&h.drain(), ALICE), vec![404]);
}

#[test]
fn a_foreign_sender_may_not_relay_through_us() {
    let mut h = Harness::new(false);
    let text = foreign_invite(7, "mallory").replace(
        "From: <sip:mallory@127.0.0.1>",
        "From: <sip:mallory@evil.test>",
    );
    let out = h.send(ALICE, &text);
    assert_eq!(statuses_to(&out, ALICE), vec![403]);
    assert!(h.core.poll_dns_query().is_none());
    assert_eq!(h.core.stats.relay_denied, 1);
}

#[test]
fn with_authentication_on_relaying_needs_credentials() {
    let mut h = Harness::new(true);
    let out = h.send(ALICE, &foreign_invite(8, "alice"));
    assert_eq!(statuses_to(&out, ALICE), vec![407]);
    assert!(h.core.poll_dns_query().is_none());
}

#[test]
fn cancel_while_the_lookup_runs_ends_the_invite_and_the_answer_is_ignored() {
    let mut h = Harness::new(false);
    let q = start(&mut h, 9);
    let cancel = format!(
        "CANCEL sip:carol@other.test SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKfor9\nMax-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=f9\nTo: <sip:carol@other.test>\nCall-ID: foreign9@test\nCSeq: 1 CANCEL\nContent-Length: 0\n\n"
    );
    let out = h.send(ALICE, &cancel);
    let mut got = statuses_to(&out, ALICE);
    got.sort();
    assert_eq!(got, vec![200, 487]);
    h.core
        .dns_resolved(h.now, q.id, Ok(vec![dest(LIVE, Proto::Udp)]));
    assert!(invites_to(&h.drain(), LIVE).is_empty());
}

/// RFC 3261 §26.2.2 on a TLS hop: a sips: INVITE that arrived over TLS reaches bob only on his
/// TLS flow (his UDP binding is skipped) and is record-routed with a sips: URI.
#[test]
fn sips_over_tls_goes_only_to_tls_bindings() {
    let mut h = tls_harness();
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    let tls_flow = "127.0.0.1:40123";
    // bob also registers over TLS (the REGISTER's connection is his flow).
    register_tls(&mut h, tls_flow, &format!("sips:bob@{tls_flow}"));

    let sips = invite(h.next(), "bob", "").replace("INVITE sip:bob@", "INVITE sips:bob@");
    let alice_tls = "127.0.0.1:40200";
    h.core
        .handle_datagram(h.now, wire(&sips), addr(alice_tls), Transport::Tls);
    let out = h.drain();
    let forwarded: Vec<_> = out.iter().filter(|t| t.dest != addr(alice_tls)).collect();
    assert_eq!(forwarded.len(), 1, "only the TLS binding: {out:?}");
    assert_eq!(
        (forwarded[0].dest, forwarded[0].transport),
        (addr(tls_flow), Transport::Tls)
    );
    let fwd = req(forwarded[0]);
    let rr: Vec<_> = fwd.headers.get_all(&HeaderName::RecordRoute).collect();
    assert_eq!(rr.len(), 1, "{rr:?}");
    assert!(rr[0].starts_with("<sips:127.0.0.1:5061;"), "{rr:?}");
}

/// A server listening on UDP 5060 and TLS 5061 (its Record-Route names the TLS interface), no
/// INVITE authentication, user bob.
fn tls_harness() -> Harness {
    let mut h = Harness::new(false);
    let cfg = ServerConfig {
        invite_auth: false,
        digest_algorithms: vec![crate::auth::Algorithm::Md5, crate::auth::Algorithm::Sha256],
        ..ServerConfig::default()
    };
    let local = LocalIdentity::new(
        &[
            (Transport::Udp, addr("127.0.0.1:5060")),
            (Transport::Tls, addr("127.0.0.1:5061")),
        ],
        "127.0.0.1",
        "example.com",
        &[],
    );
    let users = vec![("bob".to_string(), "bpw".to_string())];
    h.core = ServerCore::new(&cfg, local, &users, h.now, 1_700_000_000);
    h
}

/// Feeds `text` as if it came over the TLS connection from `flow`.
fn tls_send(h: &mut Harness, flow: &str, text: &str) -> Vec<Transmit> {
    h.core
        .handle_datagram(h.now, wire(text), addr(flow), Transport::Tls);
    h.drain()
}

/// bob registers `contact` over the TLS connection from `flow`, answering the 401.
fn register_tls(h: &mut Harness, flow: &str, contact: &str) {
    let n = h.next();
    let reg = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/TLS {flow};branch=z9hG4bKtreg{n}x{cseq}\nMax-Forwards: 70\n\
             From: <sip:bob@127.0.0.1>;tag=tr{n}\nTo: <sip:bob@127.0.0.1>\nCall-ID: treg{n}@test\nCSeq: {cseq} REGISTER\n\
             Contact: <{contact}>\n{auth}Expires: 600\nContent-Length: 0\n\n"
        )
    };
    let out = tls_send(h, flow, &reg(1, ""));
    let r401 = resp(&out[0]);
    let authz = answer(
        &r401,
        HeaderName::WwwAuthenticate,
        "bob",
        "bpw",
        "REGISTER",
        "sip:127.0.0.1",
    );
    let out = tls_send(h, flow, &reg(2, &format!("Authorization: {authz}\n")));
    assert_eq!(resp(&out[0]).status, 200);
}

/// A TLS client that listens nowhere (its Contact names a port without a TLS listener, as the
/// SDK's does) gets the ACK and BYE of its call down its TLS connection, not at its Contact.
#[test]
fn in_dialog_requests_to_a_tls_party_go_down_its_connection() {
    let mut h = tls_harness();
    let flow = "127.0.0.1:40300";
    register_tls(&mut h, flow, "sip:bob@127.0.0.1:5999;transport=tls");
    let n = h.next();
    let out = h.send(ALICE, &invite(n, "bob", ""));
    let inv: Vec<_> = out.iter().filter(|t| t.dest == addr(flow)).collect();
    assert_eq!(inv.len(), 1, "{out:?}");
    assert_eq!(inv[0].transport, Transport::Tls);
    let fwd = req(inv[0]);
    let out = tls_send(
        &mut h,
        flow,
        std::str::from_utf8(&uas_response(
            &fwd,
            200,
            "b1",
            "bob@127.0.0.1:5999;transport=tls",
        ))
        .unwrap(),
    );
    let ok = out
        .iter()
        .find(|t| t.dest == addr(ALICE))
        .map(resp)
        .expect("the 200 reaches alice");
    assert_eq!(ok.status, 200);
    let rr = ok
        .headers
        .get(&HeaderName::RecordRoute)
        .expect("record-routed")
        .to_string();
    let to = ok.headers.get(&HeaderName::To).unwrap().to_string();
    for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
        let text = format!(
            "{method} sip:bob@127.0.0.1:5999;transport=tls SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK{method}{n}\n\
             Max-Forwards: 70\nRoute: {rr}\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\nTo: {to}\nCall-ID: call{n}@test\n\
             CSeq: {cseq} {method}\nContent-Length: 0\n\n"
        );
        let out = h.send(ALICE, &text);
        let sent: Vec<_> = out
            .iter()
            .filter(|t| t.dest != addr(ALICE))
            .map(|t| (t.dest, t.transport))
            .collect();
        assert_eq!(sent, vec![(addr(flow), Transport::Tls)], "{method}");
    }
}
