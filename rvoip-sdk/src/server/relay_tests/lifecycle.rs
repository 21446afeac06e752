//! The life of a relay context: fork collapse, release of the ports (BYE, CANCEL, failure,
//! Timer B, Timer C), 503 on an exhausted pool, and the media timeout.

use super::*;

/// Scenario 6: Forking: one context per branch while both ring; the 2xx collapses them to the
/// answered branch, whose ports are the ones in the 2xx to alice.
#[test]
fn forked_branches_collapse_to_the_answered_one() {
    let mut h = Harness::with_bob();
    assert_eq!(h.register("bob", "bpw", BOB_2).status, 200);
    let offer = alice_offer();
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
    let mut h = Harness::with_bob();
    let (mut call, ..) = h.call_bob(ALICE);
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
    let mut h = Harness::with_bob();
    let (n, inv) = h.invite_bob();
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
    let mut h = Harness::with_bob();
    let (_, inv) = h.invite_bob();
    assert_eq!(h.ports(), 4);
    let out = h.send(BOB1, reply(&inv, 486, "t", BOB1, None));
    one_response(&out, ALICE.source, 486);
    assert_eq!(h.ports(), 0);
}

/// Scenario 7d: Timer B (no answer at all): 408, ports released. Timer C (rings forever): CANCEL,
/// 487, ports released.
#[test]
fn transaction_timeouts_release_the_ports() {
    let mut h = Harness::with_bob();
    h.invite_bob();
    assert_eq!(h.ports(), 4);
    let out = h.advance(Duration::from_secs(31));
    assert!(responses_to(&out, ALICE.source).is_empty());
    assert_eq!(h.ports(), 4, "still trying");
    let out = h.advance(Duration::from_secs(2));
    assert_eq!(finals(&out, ALICE.source)[..1], [408], "{}", dump(&out));
    assert_eq!(h.ports(), 0, "Timer B released the ports");

    let (_, inv) = h.invite_bob();
    h.send(BOB1, reply(&inv, 180, "t", BOB1, None));
    let out = h.advance(Duration::from_secs(180));
    assert!(!methods_to(&out, BOB1).contains(&Method::Cancel));
    assert_eq!(h.ports(), 4, "still ringing");
    let out = h.advance(Duration::from_secs(2));
    assert!(methods_to(&out, BOB1).contains(&Method::Cancel));
    let out = h.send(BOB1, reply(&inv, 487, "t", BOB1, None));
    one_response(&out, ALICE.source, 487);
    assert_eq!(h.ports(), 0, "Timer C released the ports");
}

/// Scenario 7e: Timer C on a phone that never answers the CANCEL either: the ports do not leak.
#[test]
fn timer_c_with_a_dead_callee_releases_the_ports() {
    let mut h = Harness::with_bob();
    let (_, inv) = h.invite_bob();
    h.send(BOB1, reply(&inv, 180, "t", BOB1, None));
    let out = h.advance(Duration::from_secs(182));
    assert!(methods_to(&out, BOB1).contains(&Method::Cancel));
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
    let (mut first, ..) = h.call_bob(ALICE);
    assert_eq!(h.ports(), 4);
    let (_, out) = h.invite(ALICE, "bob", Some(&alice_offer()));
    assert_eq!(statuses_to(&out, ALICE.source), [503]);
    assert!(requests_to(&out, BOB1).is_empty(), "{}", dump(&out));
    assert_eq!(out.len(), 1, "{}", dump(&out));
    assert_eq!(h.ports(), 4);
    // The refused call left no record: its stray ACK/BYE would find nothing.
    assert_eq!(h.core.proxy.dialogs().len(), 1);
    // The first call ends; the next call is anchored.
    let out = h.send(ALICE.source, first.alice_sends("BYE", None));
    one_request(&out, BOB1, Method::Bye);
    assert_eq!(h.ports(), 0);
    let (_, inv) = h.invite_bob();
    anchored(&text(&inv.body), "10.0.1.2");
    assert_eq!(h.ports(), 4);
}

/// Scenario 8a: Media timeout: a connected call with no RTP for 60 s is ended by the proxy with a
/// BYE to each phone (alice at her NAT flow, From/To swapped for her) and its ports released.
#[test]
fn media_timeout_sends_bye_to_both_phones() {
    let mut h = Harness::with_bob();
    let (call, ..) = h.call_bob(ALICE_NAT);
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
    let mut h = Harness::with_bob();
    let (_, _, ok, _) = h.call_bob(ALICE);
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
