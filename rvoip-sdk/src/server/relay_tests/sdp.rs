//! The SDP on the wire with the relay anchored: offer and answer rewritten toward the relay,
//! late offer, re-INVITE hold, and the relay modes (off, nat).

use super::*;

/// Scenario 1: The offer reaches bob pointing at the relay (no private address of alice's left) and
/// the answer reaches alice pointing at the relay's other leg; directions and SRTP keys pass.
#[test]
fn offer_and_answer_are_rewritten_toward_the_relay() {
    let mut h = Harness::with_bob();
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

/// Scenario 4: Late offer: no SDP in the INVITE; bob's offer in the 200 is rewritten toward alice
/// and alice's answer in the ACK toward bob, each with the leg facing its receiver. The call is
/// then anchored like any other: media flows, and silence ends it.
#[test]
fn late_offer_in_the_2xx_and_answer_in_the_ack_are_anchored() {
    let mut h = Harness::with_bob();
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
    let mut call = Call::from_ok(n, ALICE, BOB, &ok);
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
    let mut h = Harness::with_bob();
    let (mut call, inv, ok, _) = h.call_bob(ALICE);
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
    let bob_pub = Phone::at("198.51.100.20:5060");
    let alice_pub = Phone::at("192.0.2.10:5060");
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
            Phone::nated("203.0.113.30:41000", "10.0.3.7:5060")
        )
        .status,
        200
    );
    let (_, out) = h.invite(alice_pub, "carol", Some(&offer));
    let inv = one_request(&out, "203.0.113.30:41000", Method::Invite);
    anchored(&text(&inv.body), "192.0.2.10");
    assert_eq!(h.ports(), 8);
}
