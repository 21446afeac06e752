//! Call forwarding on simulated time: unconditional, on busy (486, 600), on no answer (after
//! `no_answer_s`, the ringing branch cancelled), when unavailable, to another domain; the
//! Diversion header and Max-Forwards of the forwarded INVITE; the loop guard (482, 480); and
//! each scenario's control without forwarding (the busy reaches the caller, nothing is
//! cancelled).

use super::*;
use crate::server::forward::Forwarding;

const CAROL: &str = "127.0.0.1:5090";

fn set(h: &mut Harness, user: &str, f: Forwarding) {
    h.core.set_forwarding(user, Some(f.rule().unwrap()));
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

fn requests_to(out: &[Transmit], to: &str, method: Method) -> Vec<Request> {
    out.iter()
        .filter(|t| t.dest == addr(to))
        .filter_map(|t| match parse(t) {
            Message::Request(r) if r.method == method => Some(r),
            _ => None,
        })
        .collect()
}

fn diversions(r: &Request) -> Vec<String> {
    r.headers
        .get_all(&HeaderName::Diversion)
        .map(|v| v.to_string())
        .collect()
}

/// bob (at BOB1) and carol (at CAROL) registered; no INVITE authentication.
fn setup() -> Harness {
    let mut h = Harness::new(false);
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    assert_eq!(h.register("carol", "cpw", CAROL).status, 200);
    h
}

#[test]
fn unconditional_forward_goes_to_the_target_with_diversion() {
    let mut h = setup();
    // Control: without forwarding the call reaches bob.
    let out = h.send(ALICE, &invite(1, "bob", ""));
    assert_eq!(requests_to(&out, BOB1, Method::Invite).len(), 1);
    assert!(requests_to(&out, CAROL, Method::Invite).is_empty());

    set(
        &mut h,
        "bob",
        Forwarding {
            unconditional: Some("carol".into()),
            ..Forwarding::default()
        },
    );
    let out = h.send(ALICE, &invite(2, "bob", ""));
    assert!(requests_to(&out, BOB1, Method::Invite).is_empty());
    let fwd = requests_to(&out, CAROL, Method::Invite);
    assert_eq!(fwd.len(), 1);
    assert!(fwd[0].uri.to_string().contains(CAROL), "{}", fwd[0].uri);
    assert_eq!(
        diversions(&fwd[0]),
        vec!["<sip:bob@example.com>;reason=unconditional;counter=1"]
    );
    // One for the diversion, one for the hop.
    assert_eq!(fwd[0].headers.max_forwards().unwrap(), Some(68));
    assert_eq!(
        fwd[0].headers.to().unwrap().uri.user.as_deref(),
        Some("bob"),
        "To is the original callee"
    );
    // carol answers: the 200 reaches alice.
    let out = h.send_bytes(CAROL, uas_response(&fwd[0], 200, "c1", CAROL));
    assert_eq!(statuses_to(&out, ALICE), vec![200]);
    assert_eq!(h.core.stats.diverted, 1);
}

#[test]
fn busy_goes_to_the_busy_target_instead_of_the_caller() {
    let mut h = setup();
    // Control: without forwarding alice gets bob's 486.
    let out = h.send(ALICE, &invite(1, "bob", ""));
    let b = requests_to(&out, BOB1, Method::Invite).remove(0);
    let out = h.send_bytes(BOB1, uas_response(&b, 486, "b1", BOB1));
    assert_eq!(statuses_to(&out, ALICE), vec![486]);

    set(
        &mut h,
        "bob",
        Forwarding {
            busy: Some("sip:carol@example.com".into()),
            ..Forwarding::default()
        },
    );
    let out = h.send(ALICE, &invite(2, "bob", ""));
    let b = requests_to(&out, BOB1, Method::Invite).remove(0);
    let out = h.send_bytes(BOB1, uas_response(&b, 486, "b2", BOB1));
    assert!(
        statuses_to(&out, ALICE).is_empty(),
        "the busy is not relayed"
    );
    assert_eq!(requests_to(&out, BOB1, Method::Ack).len(), 1);
    let fwd = requests_to(&out, CAROL, Method::Invite);
    assert_eq!(fwd.len(), 1);
    assert_eq!(
        diversions(&fwd[0]),
        vec!["<sip:bob@example.com>;reason=user-busy;counter=1"]
    );
    let out = h.send_bytes(CAROL, uas_response(&fwd[0], 180, "c2", CAROL));
    assert_eq!(statuses_to(&out, ALICE), vec![180]);
    let out = h.send_bytes(CAROL, uas_response(&fwd[0], 200, "c2", CAROL));
    assert_eq!(statuses_to(&out, ALICE), vec![200]);
}

#[test]
fn busy_everywhere_cancels_the_other_branch_then_forwards() {
    let mut h = setup();
    assert_eq!(h.register("bob", "bpw", BOB2).status, 200);
    set(
        &mut h,
        "bob",
        Forwarding {
            busy: Some("carol".into()),
            ..Forwarding::default()
        },
    );
    let out = h.send(ALICE, &invite(1, "bob", ""));
    let b1 = requests_to(&out, BOB1, Method::Invite).remove(0);
    let b2 = requests_to(&out, BOB2, Method::Invite).remove(0);
    h.send_bytes(BOB2, uas_response(&b2, 180, "t2", BOB2));
    let out = h.send_bytes(BOB1, uas_response(&b1, 600, "t1", BOB1));
    assert!(
        statuses_to(&out, ALICE).is_empty(),
        "the 600 is not relayed"
    );
    assert_eq!(requests_to(&out, BOB2, Method::Cancel).len(), 1);
    assert!(requests_to(&out, CAROL, Method::Invite).is_empty());
    let out = h.send_bytes(BOB2, uas_response(&b2, 487, "t2", BOB2));
    assert!(statuses_to(&out, ALICE).is_empty());
    let fwd = requests_to(&out, CAROL, Method::Invite);
    assert_eq!(fwd.len(), 1);
    assert!(diversions(&fwd[0])[0].contains("reason=user-busy"));
}

/// alice calls bob, whose phone rings (180 relayed); returns bob's INVITE.
fn ringing(h: &mut Harness, n: u32) -> Request {
    let out = h.send(ALICE, &invite(n, "bob", ""));
    let b = requests_to(&out, BOB1, Method::Invite).remove(0);
    let out = h.send_bytes(BOB1, uas_response(&b, 180, &format!("r{n}"), BOB1));
    assert_eq!(statuses_to(&out, ALICE), vec![180]);
    b
}

#[test]
fn no_answer_cancels_the_ringing_phone_and_forwards() {
    let mut h = setup();
    // Control: without forwarding nothing is cancelled after 3 s.
    ringing(&mut h, 1);
    let out = h.advance(Duration::from_secs(4));
    assert!(requests_to(&out, BOB1, Method::Cancel).is_empty());

    set(
        &mut h,
        "bob",
        Forwarding {
            no_answer: Some("carol".into()),
            no_answer_s: Some(3),
            ..Forwarding::default()
        },
    );
    let b = ringing(&mut h, 2);
    let out = h.advance(Duration::from_millis(2900));
    assert!(
        requests_to(&out, BOB1, Method::Cancel).is_empty(),
        "too early"
    );
    let out = h.advance(Duration::from_millis(200));
    assert_eq!(requests_to(&out, BOB1, Method::Cancel).len(), 1);
    let out = h.send_bytes(BOB1, uas_response(&b, 487, "r2", BOB1));
    assert!(
        statuses_to(&out, ALICE).is_empty(),
        "the 487 is not relayed"
    );
    let fwd = requests_to(&out, CAROL, Method::Invite);
    assert_eq!(fwd.len(), 1);
    assert_eq!(
        diversions(&fwd[0]),
        vec!["<sip:bob@example.com>;reason=no-answer;counter=1"]
    );
    let out = h.send_bytes(CAROL, uas_response(&fwd[0], 200, "c", CAROL));
    assert_eq!(statuses_to(&out, ALICE), vec![200]);
}

#[test]
fn a_caller_cancel_stops_the_no_answer_forward() {
    let mut h = setup();
    set(
        &mut h,
        "bob",
        Forwarding {
            no_answer: Some("carol".into()),
            no_answer_s: Some(3),
            ..Forwarding::default()
        },
    );
    let b = ringing(&mut h, 1);
    let cancel = format!(
        "CANCEL sip:bob@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKinv1\nMax-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bob@127.0.0.1>\nCall-ID: call1@test\nCSeq: 1 CANCEL\nContent-Length: 0\n\n"
    );
    let out = h.send(ALICE, &cancel);
    assert_eq!(statuses_to(&out, ALICE), vec![200]);
    let out = h.send_bytes(BOB1, uas_response(&b, 487, "r1", BOB1));
    assert_eq!(statuses_to(&out, ALICE), vec![487]);
    assert!(requests_to(&out, CAROL, Method::Invite).is_empty());
    let out = h.advance(Duration::from_secs(5));
    assert!(requests_to(&out, CAROL, Method::Invite).is_empty());
    assert_eq!(h.core.stats.diverted, 0);
}

#[test]
fn unavailable_user_goes_to_the_no_answer_target() {
    let mut h = Harness::new(false);
    assert_eq!(h.register("carol", "cpw", CAROL).status, 200);
    let out = h.send(ALICE, &invite(1, "bob", ""));
    assert_eq!(statuses_to(&out, ALICE), vec![480], "control");
    set(
        &mut h,
        "bob",
        Forwarding {
            no_answer: Some("carol".into()),
            ..Forwarding::default()
        },
    );
    let out = h.send(ALICE, &invite(2, "bob", ""));
    let fwd = requests_to(&out, CAROL, Method::Invite);
    assert_eq!(fwd.len(), 1);
    assert!(diversions(&fwd[0])[0].contains("reason=unavailable"));
}

#[test]
fn chains_follow_and_loops_stop() {
    let mut h = setup();
    let cfu = |t: &str| Forwarding {
        unconditional: Some(t.into()),
        ..Forwarding::default()
    };
    // bob → carol → bob: a cycle, 482, and nothing is sent to anyone but alice.
    set(&mut h, "bob", cfu("carol"));
    set(&mut h, "carol", cfu("bob"));
    let out = h.send(ALICE, &invite(1, "bob", ""));
    assert_eq!(statuses_to(&out, ALICE), vec![482]);
    assert!(out.iter().all(|t| t.dest == addr(ALICE)));
    // bob → carol → alice (at ALICE's binding): two diversions, the newest on top.
    assert_eq!(h.register("alice", "apw", "127.0.0.1:5072").status, 200);
    set(&mut h, "carol", cfu("alice"));
    let out = h.send(ALICE, &invite(2, "bob", ""));
    let fwd = requests_to(&out, "127.0.0.1:5072", Method::Invite);
    assert_eq!(fwd.len(), 1);
    let d = diversions(&fwd[0]);
    assert_eq!(d.len(), 2);
    assert!(d[0].starts_with("<sip:carol@example.com>") && d[1].starts_with("<sip:bob@"));
    assert_eq!(fwd[0].headers.max_forwards().unwrap(), Some(67));
    // The same chain over a limit of one diversion: 480.
    let mut h2 = Harness::with_config(ServerConfig {
        invite_auth: false,
        forward_max_chain: 1,
        ..ServerConfig::default()
    });
    assert_eq!(h2.register("carol", "cpw", CAROL).status, 200);
    set(&mut h2, "bob", cfu("carol"));
    set(&mut h2, "carol", cfu("alice"));
    let out = h2.send(ALICE, &invite(1, "bob", ""));
    assert_eq!(statuses_to(&out, ALICE), vec![480]);
    assert!(requests_to(&out, CAROL, Method::Invite).is_empty());
}

#[test]
fn a_busy_forward_into_a_loop_relays_the_busy() {
    let mut h = setup();
    set(
        &mut h,
        "bob",
        Forwarding {
            busy: Some("bob".into()),
            ..Forwarding::default()
        },
    );
    let out = h.send(ALICE, &invite(1, "bob", ""));
    let b = requests_to(&out, BOB1, Method::Invite).remove(0);
    let out = h.send_bytes(BOB1, uas_response(&b, 486, "b1", BOB1));
    assert_eq!(statuses_to(&out, ALICE), vec![486]);
}

#[test]
fn forward_to_another_domain_is_resolved_and_sent() {
    use crate::sip::resolve::{Destination, Proto};
    let mut h = setup();
    set(
        &mut h,
        "bob",
        Forwarding {
            unconditional: Some("sip:vm@other.test".into()),
            ..Forwarding::default()
        },
    );
    let out = h.send(ALICE, &invite(1, "bob", ""));
    assert_eq!(statuses_to(&out, ALICE), vec![100]);
    let q = h
        .core
        .poll_dns_query()
        .expect("a DNS query for the target's domain");
    assert_eq!(q.target.host, "other.test");
    let gw = "127.0.0.1:5098";
    h.core.dns_resolved(
        h.now,
        q.id,
        Ok(vec![Destination {
            addr: addr(gw),
            proto: Proto::Udp,
            host: "other.test".into(),
        }]),
    );
    let out = h.drain();
    let fwd = requests_to(&out, gw, Method::Invite);
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].uri.to_string(), "sip:vm@other.test");
    assert!(diversions(&fwd[0])[0].contains("reason=unconditional"));
}
