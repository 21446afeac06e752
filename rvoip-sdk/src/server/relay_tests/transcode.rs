//! Transcoding through the proxy: an offer bob refuses with 488 is sent to him again, widened
//! with the codecs the relay converts; his answer in one of those is written back into alice's
//! codec and the relay transcodes. A call with a codec in common is never widened.

use super::*;

/// bob's answer with opus only (dynamic payload type `pt`) and telephone-event 101.
fn opus_answer(pt: u8) -> String {
    format!(
        "v=0\r\no=bob 100 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 6000 RTP/AVP {pt} 101\r\na=rtpmap:{pt} opus/48000/2\r\n\
         a=rtpmap:101 telephone-event/8000\r\n"
    )
}

fn m_line(body: &str) -> String {
    body.lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap_or_else(|| panic!("no m=audio: {body}"))
        .to_string()
}

/// The widened offer bob gets after refusing alice's PCMU offer with 488; returns it with
/// the call's number. alice sees no 488.
fn refuse_then_widened(h: &mut Harness) -> (u32, Request) {
    let (n, inv) = h.invite_bob();
    assert_eq!(
        m_line(&text(&inv.body))
            .split(' ')
            .skip(3)
            .collect::<Vec<_>>(),
        ["0", "101"]
    );
    let out = h.send(BOB1, reply(&inv, 488, &format!("x{n}"), BOB1, None));
    assert!(
        finals(&out, ALICE.source).is_empty(),
        "alice saw: {}",
        dump(&out)
    );
    // The 488 is ACKed hop by hop, and the INVITE goes out again with a new branch.
    assert_eq!(
        methods_to(&out, BOB1),
        [Method::Ack, Method::Invite],
        "{}",
        dump(&out)
    );
    let again = one_request(&out, BOB1, Method::Invite);
    let via = |r: &Request| r.headers.get(&HeaderName::Via).map(|v| v.to_string());
    assert_ne!(via(&again), via(&inv), "a new client transaction");
    (n, again)
}

#[test]
fn a_488_gets_a_widened_offer_and_the_answer_is_transcoded() {
    let mut h = Harness::with_bob();
    let (n, inv) = refuse_then_widened(&mut h);
    let body = text(&inv.body);
    let m = m_line(&body);
    assert!(
        m.starts_with("m=audio ") && m.contains(" RTP/AVP 0 101 8 9"),
        "{body}"
    );
    assert!(body.contains("a=rtpmap:8 PCMA/8000") && body.contains("a=rtpmap:9 G722/8000"));
    let bob_port = anchored(&body, "10.0.1.2");
    // bob picks G.722 (or opus when built): the answer alice gets is in her PCMU.
    let answer = if crate::media::codec::is_available(&crate::sdp::AudioCodec::OPUS) {
        opus_answer(96)
    } else {
        sdp("bob", 1, "127.0.0.1", 6000, &[]).replace("RTP/AVP 0 101", "RTP/AVP 9 101")
    };
    let out = h.send(
        BOB1,
        reply(&inv, 200, &format!("b{n}"), BOB1, Some(&answer)),
    );
    let ok = one_response(&out, ALICE.source, 200);
    let body = text(&ok.body);
    let alice_port = anchored(&body, "127.0.0.1");
    assert_ne!(alice_port, bob_port);
    assert!(m_line(&body).ends_with(" RTP/AVP 0 101"), "{body}");
    assert!(!body.contains("opus") && !body.contains("G722"), "{body}");
    let relay = h.relay.lock();
    assert_eq!(relay.contexts(), 1);
    drop(relay);
    // The context behind both ports transcodes.
    let mut p = rtp_packet(1, 0x1234);
    let fwd = h
        .relay
        .lock()
        .handle_datagram(h.now, alice_port, addr("10.0.1.2:4000"), &mut p);
    assert_eq!(fwd, None, "a transcoded packet is not forwarded as it is");
    assert_eq!(h.relay.lock().stats().transcoded, 1);
}

#[test]
fn a_common_codec_is_never_widened_nor_transcoded() {
    let mut h = Harness::with_bob();
    let (_call, inv, ok, _ack) = h.call_bob(ALICE);
    assert!(m_line(&text(&inv.body)).ends_with(" RTP/AVP 0 101"));
    assert!(m_line(&text(&ok.body)).ends_with(" RTP/AVP 0 101"));
    let alice_port = m_port(&text(&ok.body));
    let mut p = rtp_packet(1, 0x1234);
    let fwd = h
        .relay
        .lock()
        .handle_datagram(h.now, alice_port, addr("10.0.1.2:4000"), &mut p);
    assert!(fwd.is_some(), "plain forwarding");
    assert_eq!(h.relay.lock().stats().transcoded, 0);
}

#[test]
fn a_widened_offer_answered_in_the_caller_s_codec_is_forwarded() {
    let mut h = Harness::with_bob();
    let (n, inv) = refuse_then_widened(&mut h);
    let out = h.send(
        BOB1,
        reply(&inv, 200, &format!("b{n}"), BOB1, Some(&bob_answer())),
    );
    let ok = one_response(&out, ALICE.source, 200);
    let alice_port = m_port(&text(&ok.body));
    let mut p = rtp_packet(1, 0x1234);
    let fwd = h
        .relay
        .lock()
        .handle_datagram(h.now, alice_port, addr("10.0.1.2:4000"), &mut p);
    assert!(fwd.is_some(), "plain forwarding");
}

#[test]
fn a_second_488_reaches_the_caller() {
    let mut h = Harness::with_bob();
    let (n, inv) = refuse_then_widened(&mut h);
    let out = h.send(BOB1, reply(&inv, 488, &format!("y{n}"), BOB1, None));
    assert_eq!(finals(&out, ALICE.source), [488], "{}", dump(&out));
    assert_eq!(h.ports(), 0, "the relay ports are freed");
}

#[test]
fn a_re_invite_of_a_transcoded_call_reaches_each_party_in_its_own_codec() {
    let mut h = Harness::with_bob();
    let (n, inv) = refuse_then_widened(&mut h);
    let g722 = sdp("bob", 1, "127.0.0.1", 6000, &[]).replace("RTP/AVP 0 101", "RTP/AVP 9 101");
    let out = h.send(BOB1, reply(&inv, 200, &format!("b{n}"), BOB1, Some(&g722)));
    let ok = one_response(&out, ALICE.source, 200);
    let mut call = Call::from_ok(n, ALICE, BOB, &ok);
    let out = h.send(ALICE.source, call.alice_sends("ACK", None));
    one_request(&out, BOB1, Method::Ack);
    // alice puts bob on hold with her PCMU offer: bob gets it in G.722.
    let hold = sdp("alice", 2, "10.0.1.2", 4000, &["a=sendonly"]);
    let out = h.send(ALICE.source, call.alice_sends("INVITE", Some(&hold)));
    let reinv = one_request(&out, BOB1, Method::Invite);
    let body = text(&reinv.body);
    assert!(m_line(&body).ends_with(" RTP/AVP 9 101"), "{body}");
    assert!(
        body.contains("a=rtpmap:9 G722/8000") && !body.contains("PCMU"),
        "{body}"
    );
    assert!(body.contains("a=sendonly"), "{body}");
    // bob's G.722 answer reaches alice in PCMU; the transcoder stays.
    let answer = g722.replace("o=bob 100 1", "o=bob 100 2") + "a=recvonly\r\n";
    let out = h.send(
        BOB1,
        reply(&reinv, 200, &format!("b{n}"), BOB1, Some(&answer)),
    );
    let ok = one_response(&out, ALICE.source, 200);
    let body = text(&ok.body);
    assert!(m_line(&body).ends_with(" RTP/AVP 0 101"), "{body}");
    assert!(!body.contains("G722"), "{body}");
    let alice_port = m_port(&body);
    let mut p = rtp_packet(1, 0x1234);
    let fwd = h
        .relay
        .lock()
        .handle_datagram(h.now, alice_port, addr("10.0.1.2:4000"), &mut p);
    assert_eq!(fwd, None, "still transcoded");
}

#[test]
fn an_answer_listing_a_shared_codec_first_is_forwarded_and_trimmed_to_the_caller_s() {
    let mut h = Harness::with_bob();
    let (n, inv) = refuse_then_widened(&mut h);
    let both = sdp("bob", 1, "127.0.0.1", 6000, &["a=rtpmap:9 G722/8000"])
        .replace("RTP/AVP 0 101", "RTP/AVP 0 9 101");
    let out = h.send(BOB1, reply(&inv, 200, &format!("b{n}"), BOB1, Some(&both)));
    let ok = one_response(&out, ALICE.source, 200);
    let body = text(&ok.body);
    assert!(m_line(&body).ends_with(" RTP/AVP 0 101"), "{body}");
    assert!(!body.contains("G722"), "{body}");
    let alice_port = m_port(&body);
    let mut p = rtp_packet(1, 0x1234);
    let fwd = h
        .relay
        .lock()
        .handle_datagram(h.now, alice_port, addr("10.0.1.2:4000"), &mut p);
    assert!(fwd.is_some(), "plain forwarding");
}
