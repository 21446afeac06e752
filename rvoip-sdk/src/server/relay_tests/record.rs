//! Call recording through the proxy: the server's policy (every call, or the calls of some
//! users) picks the calls; once answered, the relay copies both parties' accepted RTP to the
//! recorder with the recording's id and the sender's side, and the BYE closes it.

use super::*;
use crate::sdp::AudioCodec;

/// alice calls bob, both send one packet through the relay, alice hangs up.
fn call_and_talk(h: &mut Harness) -> Call {
    let (mut call, inv, ok, _ack) = h.call_bob(ALICE);
    let alice_leg = m_port(&text(&ok.body));
    let bob_leg = m_port(&text(&inv.body));
    assert!(h.rtp(alice_leg, "10.0.1.2:4000", 11, 0xa1).is_some());
    assert!(h.rtp(bob_leg, BOB_RTP, 22, 0xb0).is_some());
    let out = h.send(ALICE.source, call.alice_sends("BYE", None));
    let _ = one_request(&out, BOB1, Method::Bye);
    call
}

#[test]
fn every_call_is_recorded_when_record_calls_is_on() {
    let rec = FakeRecorder::default();
    let cfg = ServerConfig {
        record_calls: true,
        ..ServerConfig::default()
    };
    let mut h = Harness::recording(cfg, &rec);
    let call = call_and_talk(&mut h);
    let r = rec.get();
    assert_eq!(r.opened, [(7, call.call_id.clone())]);
    // Both parties' codecs (PCMU 0; telephone-event is not decoded).
    for side in [Side::Caller, Side::Callee] {
        let last = r
            .codecs
            .iter()
            .rev()
            .find(|(id, s, _)| *id == 7 && *s == side);
        assert_eq!(
            last.map(|c| c.2.clone()),
            Some(vec![(0, AudioCodec::PCMU)]),
            "{side:?}"
        );
    }
    assert_eq!(r.packets, [(7, Side::Caller, 11), (7, Side::Callee, 22)]);
    assert_eq!(r.closed, [7]);
}

#[test]
fn only_the_listed_users_calls_are_recorded() {
    let rec = FakeRecorder::default();
    let cfg = ServerConfig {
        record_users: vec!["carol".into()],
        ..ServerConfig::default()
    };
    let mut h = Harness::recording(cfg, &rec);
    call_and_talk(&mut h);
    assert!(rec.get().opened.is_empty() && rec.get().packets.is_empty());
    // bob listed: his calls are.
    let rec = FakeRecorder::default();
    let cfg = ServerConfig {
        record_users: vec!["bob".into()],
        ..ServerConfig::default()
    };
    let mut h = Harness::recording(cfg, &rec);
    let call = call_and_talk(&mut h);
    assert_eq!(rec.get().opened, [(7, call.call_id)]);
    assert_eq!(rec.get().packets.len(), 2);
}
