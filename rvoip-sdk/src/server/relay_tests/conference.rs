//! Conference rooms through the server core: a call to `sip:conf-<name>@domain` is answered
//! by the server itself with the relay's SDP, its 2xx retransmitted until the ACK, BYE leaves
//! the room (whose relay ports go), a full room answers 486 and an offer the room cannot mix
//! 488.

use super::*;

fn conference(max: usize) -> Harness {
    let cfg = ServerConfig {
        conference_max_members: max,
        ..no_invite_auth()
    };
    Harness::build(RelayMode::Always, PORT_MAX, cfg, None)
}

/// An in-dialog request from `caller` to the room (To carries our tag).
fn in_dialog(caller: Phone, n: u32, method: &str, cseq: u32, to: &str) -> Bytes {
    in_dialog_with(caller, n, method, cseq, to, None)
}

fn in_dialog_with(
    caller: Phone,
    n: u32,
    method: &str,
    cseq: u32,
    to: &str,
    body: Option<&str>,
) -> Bytes {
    msg(
        &format!(
            "{method} sip:conf-team@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bK{method}{n}c{cseq}\n\
             Max-Forwards: 70\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\nTo: {to}\nCall-ID: call{n}@test\n\
             CSeq: {cseq} {method}",
            caller.via
        ),
        body,
    )
}

#[test]
fn a_member_joins_with_the_relay_s_answer_and_bye_leaves_the_room() {
    let mut h = conference(30);
    let (n, out) = h.invite(ALICE, "conf-team", Some(&alice_offer()));
    let ok = one_response(&out, ALICE.source, 200);
    let to = ok.headers.get(&HeaderName::To).expect("To").to_string();
    assert!(to.contains(";tag=conf"), "{to}");
    let contact = ok
        .headers
        .get(&HeaderName::Contact)
        .expect("Contact")
        .to_string();
    assert_eq!(contact, "<sip:conf-team@127.0.0.1:5060>");
    let body = text(&ok.body);
    let port = m_port(&body);
    assert!((PORT_MIN..=PORT_MAX).contains(&port), "{body}");
    assert!(body.contains(&format!("c=IN IP4 {ADVERTISE}")), "{body}");
    assert!(
        body.contains("RTP/AVP 0 101"),
        "PCMU and telephone-event: {body}"
    );
    assert_eq!(h.ports(), 4);
    // No ACK yet: the 200 again after T1 (500 ms), then after 1 s more.
    let again = h.advance(Duration::from_millis(600));
    assert_eq!(statuses_to(&again, ALICE.source), [200], "{}", dump(&again));
    let out = h.send(ALICE.source, in_dialog(ALICE, n, "ACK", 1, &to));
    assert!(out.is_empty(), "{}", dump(&out));
    let later = h.advance(Duration::from_secs(3));
    assert!(
        statuses_to(&later, ALICE.source).is_empty(),
        "{}",
        dump(&later)
    );
    // A member's media flows into the room (the relay takes it in, forwards nothing as is).
    assert_eq!(h.rtp(port, "10.0.1.2:4000", 1, 0xa1), None);
    assert_eq!(h.relay.lock().stats().transcoded, 1);
    // BYE: 200, and the room's ports are free.
    let out = h.send(ALICE.source, in_dialog(ALICE, n, "BYE", 2, &to));
    assert_eq!(statuses_to(&out, ALICE.source), [200], "{}", dump(&out));
    assert_eq!(h.ports(), 0);
}

#[test]
fn a_full_room_answers_486_and_an_offer_it_cannot_mix_488() {
    let mut h = conference(1);
    let (_, out) = h.invite(ALICE, "conf-team", Some(&alice_offer()));
    one_response(&out, ALICE.source, 200);
    let (_, out) = h.invite(ALICE, "conf-team", Some(&alice_offer()));
    assert_eq!(finals(&out, ALICE.source), [486], "{}", dump(&out));
    // Another room has room; G.729 only cannot be mixed.
    let g729 = alice_offer().replace("RTP/AVP 0 101", "RTP/AVP 18 101");
    let (_, out) = h.invite(ALICE, "conf-other", Some(&g729));
    assert_eq!(finals(&out, ALICE.source), [488], "{}", dump(&out));
    assert_eq!(h.ports(), 4, "only the first member holds ports");
}

#[test]
fn rooms_are_off_with_an_empty_prefix() {
    let cfg = ServerConfig {
        conference_prefix: String::new(),
        ..no_invite_auth()
    };
    let mut h = Harness::build(RelayMode::Always, PORT_MAX, cfg, None);
    let (_, out) = h.invite(ALICE, "conf-team", Some(&alice_offer()));
    // An ordinary user with no binding.
    assert_eq!(finals(&out, ALICE.source), [480], "{}", dump(&out));
}

#[test]
fn a_retransmitted_bye_gets_481_and_a_re_invite_is_answered_with_the_same_session() {
    let mut h = conference(30);
    let (n, out) = h.invite(ALICE, "conf-team", Some(&alice_offer()));
    let ok = one_response(&out, ALICE.source, 200);
    let to = ok.headers.get(&HeaderName::To).expect("To").to_string();
    h.send(ALICE.source, in_dialog(ALICE, n, "ACK", 1, &to));
    // A re-INVITE (hold): 200 with the same answer, retransmitted until its ACK.
    let hold = sdp("alice", 2, "10.0.1.2", 4000, &["a=sendonly"]);
    let reinv = in_dialog_with(ALICE, n, "INVITE", 2, &to, Some(&hold));
    let out = h.send(ALICE.source, reinv);
    let ok2 = one_response(&out, ALICE.source, 200);
    assert_eq!(ok2.body, ok.body, "the session stays as it is");
    let again = h.advance(Duration::from_millis(600));
    assert_eq!(statuses_to(&again, ALICE.source), [200], "{}", dump(&again));
    h.send(ALICE.source, in_dialog(ALICE, n, "ACK", 2, &to));
    assert!(statuses_to(&h.advance(Duration::from_secs(3)), ALICE.source).is_empty());
    let out = h.send(ALICE.source, in_dialog(ALICE, n, "BYE", 3, &to));
    assert_eq!(statuses_to(&out, ALICE.source), [200]);
    // A BYE after the leave (a new transaction, as a UA whose first BYE timed out sends): 481.
    let out = h.send(ALICE.source, in_dialog(ALICE, n, "BYE", 4, &to));
    assert_eq!(statuses_to(&out, ALICE.source), [481], "{}", dump(&out));
}

#[test]
fn a_member_that_never_acks_is_sent_bye_after_64_t1() {
    let mut h = conference(30);
    let (_n, out) = h.invite(ALICE, "conf-team", Some(&alice_offer()));
    one_response(&out, ALICE.source, 200);
    let out = h.advance(Duration::from_secs(40));
    assert!(
        methods_to(&out, ALICE.source).contains(&Method::Bye),
        "{}",
        dump(&out)
    );
    assert_eq!(h.ports(), 0, "the member left the room");
}

#[test]
fn with_invite_auth_a_sender_of_another_domain_cannot_join() {
    let cfg = ServerConfig {
        invite_auth: true,
        ..ServerConfig::default()
    };
    let mut h = Harness::build(RelayMode::Always, PORT_MAX, cfg, None);
    let n = 77;
    let text = format!(
        "INVITE sip:conf-team@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKx{n}\n\
         Max-Forwards: 70\nFrom: <sip:mallory@evil.example>;tag=m{n}\nTo: <sip:conf-team@127.0.0.1>\n\
         Call-ID: evil{n}@test\nCSeq: 1 INVITE\nContact: <sip:mallory@{}>",
        ALICE.via, ALICE.contact
    );
    let out = h.send(ALICE.source, msg(&text, Some(&alice_offer())));
    assert_eq!(finals(&out, ALICE.source), [403], "{}", dump(&out));
    assert_eq!(h.ports(), 0);
}
