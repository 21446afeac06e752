//! Call features on simulated time: 3xx redirects followed (RFC 3261 §8.1.3.4), early media
//! from the callee (183 with SDP, RFC 3960), DTMF by SIP INFO both ways, and two accounts of one
//! endpoint on two servers each receiving its own calls.

use super::transfer::{CAROL, World};
use super::*;

#[test]
fn a_302_is_followed_to_its_contact() {
    let mut w = World::new(&[ALICE, BOB, CAROL]);
    let call = w.dial(0, 1, 40000);
    let b = w.incoming(1).unwrap();
    let now = w.now;
    w.ua(1)
        .redirect(now, b, 302, &[uri("sip:carol@127.0.0.1:5090")])
        .unwrap();
    w.settle();
    let redirected = w.events(0).iter().find_map(|e| match e {
        UaEvent::CallRedirected { status, target, .. } => Some((*status, target.clone())),
        _ => None,
    });
    assert_eq!(
        redirected,
        Some((302, "sip:carol@127.0.0.1:5090".to_string()))
    );
    let c = w.incoming(2).expect("carol rings");
    let now = w.now;
    w.ua(2).answer(now, c, local_media(43000)).unwrap();
    w.settle();
    assert_eq!(w.ua(0).call_state(call).unwrap(), CallState::Connected);
    // The second INVITE went to carol with the next CSeq and a new branch.
    let invites: Vec<&String> = w.wire.iter().filter(|m| m.starts_with("INVITE ")).collect();
    assert!(invites[1].starts_with("INVITE sip:carol@127.0.0.1:5090 "));
    assert!(invites[1].contains("CSeq: 2 INVITE"));
}

#[test]
fn redirect_loops_and_chains_stop() {
    // Bob redirects to carol, carol back to bob: the call ends with the last 3xx.
    let mut w = World::new(&[ALICE, BOB, CAROL]);
    let call = w.dial(0, 1, 40000);
    let b = w.incoming(1).unwrap();
    let now = w.now;
    w.ua(1)
        .redirect(now, b, 302, &[uri("sip:carol@127.0.0.1:5090")])
        .unwrap();
    w.settle();
    let c = w.incoming(2).unwrap();
    let now = w.now;
    w.ua(2)
        .redirect(now, c, 302, &[uri("sip:bob@127.0.0.1:5080")])
        .unwrap();
    w.settle();
    assert!(w.ua(0).call_state(call).is_err(), "the call ended");
    let ended = w.events(0).iter().rev().find_map(|e| match e {
        UaEvent::CallState {
            state: CallState::Ended { status, .. },
            ..
        } => Some(*status),
        _ => None,
    });
    assert_eq!(ended, Some(302));
}

#[test]
fn early_media_then_answer_with_the_same_sdp() {
    let mut w = World::new(&[ALICE, BOB]);
    let call = w.dial(0, 1, 40000);
    let b = w.incoming(1).unwrap();
    let now = w.now;
    w.ua(1).answer_early(now, b, local_media(41000)).unwrap();
    w.settle();
    assert_eq!(w.ua(0).call_state(call).unwrap(), CallState::EarlyMedia);
    assert_eq!(w.ua(1).call_state(b).unwrap(), CallState::EarlyMedia);
    let started = |evs: &[UaEvent]| {
        evs.iter()
            .filter(|e| matches!(e, UaEvent::MediaStart { .. }))
            .count()
    };
    assert_eq!((started(w.events(0)), started(w.events(1))), (1, 1));
    // A second early answer is refused; the real answer repeats the 183's SDP.
    let now = w.now;
    assert!(w.ua(1).answer_early(now, b, local_media(41000)).is_err());
    w.ua(1).answer(now, b, local_media(41500)).unwrap();
    w.settle();
    assert_eq!(w.ua(0).call_state(call).unwrap(), CallState::Connected);
    let body = |start: &str| {
        let m = w.wire.iter().find(|m| m.starts_with(start)).unwrap();
        m.split("\r\n\r\n").nth(1).unwrap().to_string()
    };
    assert_eq!(body("SIP/2.0 183"), body("SIP/2.0 200"));
    assert!(body("SIP/2.0 183").contains("m=audio 41000 "));
    // Media started once on each side (the 2xx changed nothing).
    assert_eq!((started(w.events(0)), started(w.events(1))), (1, 1));
}

#[test]
fn dtmf_by_info_both_ways_one_at_a_time() {
    let mut w = World::new(&[ALICE, BOB]);
    let (a, b) = w.call(0, 1, 40000);
    let now = w.now;
    w.ua(0).send_dtmf_info(now, a, "12#", 160).unwrap();
    w.settle();
    w.ua(1).send_dtmf_info(now, b, "*9", 100).unwrap();
    w.settle();
    let keys = |evs: &[UaEvent]| -> Vec<(char, u32)> {
        evs.iter()
            .filter_map(|e| match e {
                UaEvent::DtmfInfo {
                    digit, duration_ms, ..
                } => Some((*digit, *duration_ms)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(keys(w.events(1)), vec![('1', 160), ('2', 160), ('#', 160)]);
    assert_eq!(keys(w.events(0)), vec![('*', 100), ('9', 100)]);
    let info = w.wire.iter().find(|m| m.starts_with("INFO ")).unwrap();
    assert!(
        info.contains("Content-Type: application/dtmf-relay"),
        "{info}"
    );
    assert!(info.ends_with("Signal=1\r\nDuration=160\r\n"), "{info}");
    // One INFO transaction at a time: each INFO follows the 200 of the one before.
    let seq: Vec<&str> = w
        .wire
        .iter()
        .filter(|m| {
            m.starts_with("INFO ")
                || (m.starts_with("SIP/2.0 200")
                    && m.lines()
                        .any(|l| l.starts_with("CSeq:") && l.ends_with(" INFO")))
        })
        .map(|m| {
            if m.starts_with("INFO ") {
                "INFO"
            } else {
                "200"
            }
        })
        .collect();
    assert_eq!(
        seq,
        [
            "INFO", "200", "INFO", "200", "INFO", "200", "INFO", "200", "INFO", "200"
        ]
    );
    assert!(w.ua(0).send_dtmf_info(now, a, "x", 100).is_err());
}

#[test]
fn two_accounts_on_two_servers_each_get_their_own_calls() {
    // Alice's endpoint has an account on each server, both named "alice"; bob (on server 1)
    // and carol (on server 2) call "alice" at their own server.
    const S1: &str = "127.0.0.1:5060";
    const S2: &str = "127.0.0.2:5060";
    let mut w = World::new(&[ALICE, BOB, CAROL]);
    w.add_server(S1, &[("alice", "a1"), ("bob", "bpw")]);
    w.add_server(S2, &[("alice", "a2"), ("carol", "cpw")]);
    let account = |user: &str, server: &str, pw: &str, local: &str| AccountConfig {
        aor: uri(&format!("sip:{user}@{}", addr(server).ip())),
        credentials: Credentials {
            username: user.into(),
            password: pw.into(),
        },
        server: addr(server),
        transport: Transport::Udp,
        local: addr(local),
        expires_s: 300,
        alternates: Vec::new(),
        srtp: Default::default(),
        dtmf_mode: Default::default(),
    };
    let a1 = w.ua(0).add_account(account("alice", S1, "a1", ALICE));
    let a2 = w.ua(0).add_account(account("alice", S2, "a2", ALICE));
    let b = w.ua(1).add_account(account("bob", S1, "bpw", BOB));
    let c = w.ua(2).add_account(account("carol", S2, "cpw", CAROL));
    let now = w.now;
    for (i, acc) in [(0, a1), (0, a2), (1, b), (2, c)] {
        w.ua(i).register(now, acc).unwrap();
    }
    w.settle();
    for (i, acc) in [(0, a1), (0, a2), (1, b), (2, c)] {
        assert!(
            matches!(
                w.ua(i).registration_state(acc).unwrap(),
                RegistrationState::Registered { .. }
            ),
            "{i}"
        );
    }
    let dial = |w: &mut World, i: usize, acc: AccountId, server: &str| {
        let now = w.now;
        let local = w.uas[i].0;
        w.ua(i)
            .make_call(
                now,
                Some(acc),
                uri(&format!("sip:alice@{}", addr(server).ip())),
                addr(server),
                Transport::Udp,
                local,
                local_media(42000),
            )
            .unwrap();
        w.settle();
    };
    let incoming_accounts = |w: &World| -> Vec<Option<AccountId>> {
        w.events(0)
            .iter()
            .filter_map(|e| match e {
                UaEvent::IncomingCall { account, .. } => Some(*account),
                _ => None,
            })
            .collect()
    };
    dial(&mut w, 2, c, S2);
    dial(&mut w, 1, b, S1);
    assert_eq!(incoming_accounts(&w), vec![Some(a2), Some(a1)]);
    // Both bindings carried their own `line`, and each INVITE came back with it.
    let lines: Vec<&String> = w
        .wire
        .iter()
        .filter(|m| m.starts_with("INVITE sip:alice@127.0.0.1:5070;line="))
        .collect();
    assert_eq!(lines.len(), 2, "{:#?}", w.wire);
}
