//! Redirect server mode (`redirect = true`) on simulated time: 302 with the bindings (q,
//! expires) instead of forking, 302 to an unconditional forward target, 480 without a binding,
//! 404 for an unknown user to an authenticated local sender; and the proxying control.

use super::*;
use crate::server::forward::Forwarding;

fn redirecting(invite_auth: bool) -> Harness {
    Harness::with_config(ServerConfig {
        invite_auth,
        redirect: true,
        ..ServerConfig::default()
    })
}

fn contacts(r: &Response) -> Vec<String> {
    r.headers
        .get_all(&HeaderName::Contact)
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn invite_gets_302_with_the_bindings_instead_of_being_forked() {
    // Control: a proxy forks to both bindings.
    let mut h = Harness::new(false);
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    let out = h.send(ALICE, &invite(1, "bob", ""));
    assert_eq!(out.iter().filter(|t| t.dest == addr(BOB1)).count(), 1);

    let mut h = redirecting(false);
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    h.now += Duration::from_secs(100);
    // A second binding with q=0.5.
    let reg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {BOB2};branch=z9hG4bKrq1\nMax-Forwards: 70\n\
         From: <sip:bob@127.0.0.1>;tag=q1\nTo: <sip:bob@127.0.0.1>\nCall-ID: rq@test\nCSeq: 1 REGISTER\n\
         Contact: <sip:bob@{BOB2}>;q=0.5\nExpires: 300\nContent-Length: 0\n\n"
    );
    let r401 = resp(&h.send(BOB2, &reg)[0]);
    let authz = answer(
        &r401,
        HeaderName::WwwAuthenticate,
        "bob",
        "bpw",
        "REGISTER",
        "sip:127.0.0.1",
    );
    let reg2 = reg
        .replace("z9hG4bKrq1", "z9hG4bKrq2")
        .replace("CSeq: 1", "CSeq: 2")
        .replace("Expires:", &format!("Authorization: {authz}\nExpires:"));
    assert_eq!(resp(&h.send(BOB2, &reg2)[0]).status, 200);

    // The INVITE's size stands for its SDP: over UDP an unauthenticated sender's reply is no
    // larger than its request (no reflection amplification).
    let pad = format!("Subject: {}\n", "x".repeat(200));
    let out = h.send(ALICE, &invite(2, "bob", &pad));
    assert!(out.iter().all(|t| t.dest == addr(ALICE)), "nothing proxied");
    let r = resp(out.last().unwrap());
    assert_eq!(r.status, 302);
    assert!(r.headers.to().unwrap().tag().is_some());
    assert_eq!(
        contacts(&r),
        vec![
            format!("<sip:bob@{BOB1}>;q=1;expires=500"),
            format!("<sip:bob@{BOB2}>;q=0.5;expires=300"),
        ]
    );
    assert_eq!(h.core.stats.redirected, 1);
    // The caller's ACK for the 302 is absorbed.
    let ack = format!(
        "ACK sip:bob@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKinv2\nMax-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=a2\nTo: {}\nCall-ID: call2@test\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        r.headers.get(&HeaderName::To).unwrap()
    );
    assert!(h.send(ALICE, &ack).is_empty());
}

#[test]
fn unconditional_forward_is_a_302_to_the_target() {
    let mut h = redirecting(false);
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    let rule = Forwarding {
        unconditional: Some("sip:vm@other.test".into()),
        ..Forwarding::default()
    };
    h.core.set_forwarding("bob", Some(rule.rule().unwrap()));
    let out = h.send(ALICE, &invite(1, "bob", ""));
    let r = resp(out.last().unwrap());
    assert_eq!(r.status, 302);
    assert_eq!(contacts(&r), vec!["<sip:vm@other.test>".to_string()]);
    assert_eq!(
        r.headers.get(&HeaderName::Diversion).map(|v| v.to_string()),
        Some("<sip:bob@example.com>;reason=unconditional;counter=1".into())
    );
    assert!(h.core.poll_dns_query().is_none(), "not proxied");
}

#[test]
fn no_binding_480_and_unknown_user_404_to_an_authenticated_sender() {
    let mut h = redirecting(false);
    for (n, user) in [(1, "carol"), (2, "nobody")] {
        let out = h.send(ALICE, &invite(n, user, ""));
        assert_eq!(resp(out.last().unwrap()).status, 480, "{user}");
    }
    // alice authenticates: an unknown user is 404, a known one without binding 480.
    let mut h = redirecting(true);
    for (n, user, status) in [(1, "nobody", 404), (2, "carol", 480)] {
        let out = h.send(ALICE, &invite(n, user, ""));
        let r407 = resp(out.last().unwrap());
        assert_eq!(r407.status, 407);
        let uri = format!("sip:{user}@127.0.0.1");
        let authz = answer(
            &r407,
            HeaderName::ProxyAuthenticate,
            "alice",
            "apw",
            "INVITE",
            &uri,
        );
        let text = invite(n, user, &format!("Proxy-Authorization: {authz}\n"))
            .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
            .replace(&format!("inv{n}"), &format!("inv{n}b"));
        let out = h.send(ALICE, &text);
        assert_eq!(resp(out.last().unwrap()).status, status, "{user}");
    }
}
