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
        ..no_invite_auth()
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
        ..no_invite_auth()
    };
    let mut h = Harness::recording(cfg, &rec);
    call_and_talk(&mut h);
    assert!(rec.get().opened.is_empty() && rec.get().packets.is_empty());
    // bob listed: his calls are.
    let rec = FakeRecorder::default();
    let cfg = ServerConfig {
        record_users: vec!["bob".into()],
        ..no_invite_auth()
    };
    let mut h = Harness::recording(cfg, &rec);
    let call = call_and_talk(&mut h);
    assert_eq!(rec.get().opened, [(7, call.call_id)]);
    assert_eq!(rec.get().packets.len(), 2);
}

#[test]
fn an_srtp_call_is_not_recorded_and_the_audio_stream_is_the_one_tapped() {
    let rec = FakeRecorder::default();
    let cfg = ServerConfig {
        record_calls: true,
        ..no_invite_auth()
    };
    let mut h = Harness::recording(cfg, &rec);
    let offer = sdp("alice", 1, "10.0.1.2", 4000, &[CRYPTO_A]);
    let answer = sdp("bob", 1, "127.0.0.1", 6000, &[CRYPTO_B]);
    let (_call, inv, ok, _) = h.connect(ALICE, Some(&offer), BOB, Some(&answer), None);
    assert!(rec.get().opened.is_empty(), "an SRTP call was recorded");
    // Its packets are never tapped either.
    let (a, b) = (m_port(&text(&ok.body)), m_port(&text(&inv.body)));
    assert!(h.rtp(a, "10.0.1.2:4000", 1, 0xa1).is_some());
    assert!(h.rtp(b, BOB_RTP, 2, 0xb0).is_some());
    assert!(rec.get().packets.is_empty());
    // A video stream before the audio one: the audio stream is the one recorded.
    let video_first = |user: &str, ip: &str, port: u16| {
        sdp(user, 1, ip, port, &[]).replace(
            "m=audio",
            &format!(
                "m=video {} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio",
                port + 100
            ),
        )
    };
    let (_call, inv, ok, _) = h.connect(
        ALICE,
        Some(&video_first("alice", "10.0.1.2", 4000)),
        BOB,
        Some(&video_first("bob", "127.0.0.1", 6000)),
        None,
    );
    assert_eq!(rec.get().opened.len(), 1);
    let audio_port = |body: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next()?.parse::<u16>().ok())
            .expect("m=audio")
    };
    let (a, b) = (audio_port(&text(&ok.body)), audio_port(&text(&inv.body)));
    assert!(h.rtp(a, "10.0.1.2:4000", 5, 0xa1).is_some());
    assert!(h.rtp(b, BOB_RTP, 6, 0xb0).is_some());
    let packets = rec.get().packets.clone();
    assert_eq!(packets.len(), 2, "{packets:?}");
}
