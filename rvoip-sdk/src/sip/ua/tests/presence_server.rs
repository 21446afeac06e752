//! Presence end to end on simulated time: the SDK's user agents against the server core's
//! presence agent (RFC 3903 PUBLISH, RFC 6665 subscriptions, RFC 3856 PIDF, RFC 4235 dialog
//! package), digest authentication included: bob publishes "away" and alice, subscribed to
//! bob's presence, sees it; alice's busy-lamp subscription to bob shows ringing, then in call,
//! as carol calls bob through the server.

use super::transfer::{CAROL, World};
use super::*;
use crate::sip::presence::LineState;

const SERVER_AT: &str = "127.0.0.1:5060";

fn account(user: &str, pw: &str, local: &str) -> AccountConfig {
    AccountConfig {
        aor: uri(&format!("sip:{user}@127.0.0.1")),
        credentials: Credentials {
            username: user.into(),
            password: pw.into(),
        },
        server: addr(SERVER_AT),
        transport: Transport::Udp,
        local: addr(local),
        expires_s: 300,
        alternates: Vec::new(),
        srtp: Default::default(),
        dtmf_mode: Default::default(),
    }
}

fn activities(w: &World, i: usize) -> Vec<(bool, Option<String>)> {
    w.events(i)
        .iter()
        .filter_map(|e| match e {
            UaEvent::PresenceNotify { presence, .. } => {
                Some((presence.open, presence.activity.clone()))
            }
            _ => None,
        })
        .collect()
}

fn lines(w: &World, i: usize) -> Vec<LineState> {
    let mut v: Vec<LineState> = w
        .events(i)
        .iter()
        .filter_map(|e| match e {
            UaEvent::LineNotify { line, .. } => Some(*line),
            _ => None,
        })
        .collect();
    v.dedup();
    v
}

#[test]
fn publish_reaches_a_subscriber_and_the_lamp_follows_a_call() {
    let mut w = World::new(&[ALICE, BOB, CAROL]);
    w.add_server(
        SERVER_AT,
        &[("alice", "apw"), ("bob", "bpw"), ("carol", "cpw")],
    );
    let a = w.ua(0).add_account(account("alice", "apw", ALICE));
    let b = w.ua(1).add_account(account("bob", "bpw", BOB));
    let c = w.ua(2).add_account(account("carol", "cpw", CAROL));
    let now = w.now;
    for (i, acc) in [(0, a), (1, b), (2, c)] {
        w.ua(i).register(now, acc).unwrap();
    }
    w.settle();

    // alice watches bob's presence: first offline (bob never published).
    let bob = uri("sip:bob@127.0.0.1");
    w.ua(0)
        .subscribe(now, a, bob.clone(), EventPackage::Presence, 600)
        .unwrap();
    w.settle();
    assert_eq!(activities(&w, 0), vec![(false, None)]);
    // bob publishes "away" through the server.
    w.ua(1)
        .publish(now, b, true, Some("Away"), Some("away"), 600)
        .unwrap();
    w.settle();
    assert!(
        w.events(1)
            .iter()
            .any(|e| matches!(e, UaEvent::PublishResult { status: 200, .. })),
        "{:?}",
        w.events(1)
    );
    assert_eq!(
        activities(&w, 0).last(),
        Some(&(true, Some("away".to_string())))
    );
    assert!(
        w.wire
            .iter()
            .any(|m| m.starts_with("PUBLISH ") && m.contains("Proxy-Authorization")),
        "the PUBLISH was authenticated"
    );

    // alice's busy-lamp field for bob; carol calls bob through the server.
    w.ua(0)
        .subscribe(now, a, bob.clone(), EventPackage::Dialog, 600)
        .unwrap();
    w.settle();
    assert_eq!(lines(&w, 0), vec![LineState::Idle]);
    let local = w.uas[2].0;
    w.ua(2)
        .make_call(
            now,
            Some(c),
            bob,
            addr(SERVER_AT),
            Transport::Udp,
            local,
            local_media(44000),
        )
        .unwrap();
    w.settle();
    let incoming = w.incoming(1).expect("bob rings");
    assert_eq!(lines(&w, 0).last(), Some(&LineState::Ringing));
    w.ua(1).answer(now, incoming, local_media(45000)).unwrap();
    w.settle();
    assert_eq!(
        lines(&w, 0),
        vec![LineState::Idle, LineState::Ringing, LineState::InCall]
    );
    // The subscriptions are refreshed in their dialogs and stay up.
    w.advance(Duration::from_secs(700));
    assert_eq!(w.servers[0].1.presence_subscriptions(), 2);
}
