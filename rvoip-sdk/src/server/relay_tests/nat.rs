//! NAT through the server: symmetric latching of the media to its real source, and the flows
//! in-dialog requests reach NATed phones at.

use super::*;

/// Scenario 2: Symmetric latching through the proxy: alice's RTP arrives from her NAT (not her SDP
/// address) and reaches bob's SDP address; bob's RTP goes to where alice's really came from; a
/// third host with a fresh SSRC is dropped and counted.
#[test]
fn media_latches_to_the_real_source_end_to_end() {
    let mut h = Harness::with_bob();
    let (_, inv, ok, _) = h.call_bob(ALICE);
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
    let now = h.core.unix_secs(h.now);
    let bindings = h.core.registrar.location.lookup("bob", now);
    assert_eq!(bindings.len(), 1);
    assert!(bindings[0].behind_nat, "REGISTER came through a NAT");
    assert_eq!(bindings[0].source, addr(BOB_NAT.source));

    let offer = alice_offer();
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
    let mut call = Call::from_ok(n, ALICE_NAT, BOB_NAT, &ok);
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
    let call = Call::from_ok(n, alice_plain, BOB_NAT, &ok);
    let out = h.send(BOB_NAT.source, call.bob_sends("BYE", BOB_NAT.via, 1));
    assert!(
        requests_to(&out, alice_plain.source).is_empty(),
        "{}",
        dump(&out)
    );
    let bye = one_request(&out, "127.0.0.1:5072", Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:alice@127.0.0.1:5072");
}
