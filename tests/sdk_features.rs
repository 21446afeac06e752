//! Call features of the SDK end to end on loopback, through an in-process rvoip-server with
//! real sockets, RTP and codecs: blind and attended transfer (RFC 3515, RFC 3891) with the
//! transferred audio checked at the new peer, DTMF by SIP INFO chosen per account, early media
//! (183 with SDP) heard before the answer, a redirect by the callee followed by the caller.

use std::time::Duration;

use rvoip_sdk::api::{
    Account, AccountOptions, AudioCodec, Call, CallOptions, CallState, DtmfMode, EndpointConfig,
    Event,
};
use rvoip_sdk::media::audio::{SharedSink, ToneSource};
use rvoip_sdk::media::tone::tone_fraction_blocks;
use rvoip_sdk::sip::transaction::Transport;

mod common;
use common::{Party, Ports, serial, start_server};

fn party() -> Party {
    Party::with_config(EndpointConfig {
        codecs: vec![AudioCodec::PCMU],
        stats_interval: None,
        ..EndpointConfig::loopback()
    })
}

fn tone(freq: f64) -> Option<Box<dyn rvoip_sdk::api::AudioSource>> {
    Some(Box::new(ToneSource::new(freq, 8000, 10_000)))
}

/// Share of the energy at `freq` in the last `ms` of `sink`.
fn tail(sink: &SharedSink, freq: f64, ms: usize) -> f64 {
    let s = sink.samples();
    let n = 8 * ms;
    assert!(s.len() >= n, "only {} samples received", s.len());
    tone_fraction_blocks(&s[s.len() - n..], freq, 8000, 160)
}

struct Office {
    _srv: rvoip_sdk::api::Server,
    ports: Ports,
}

fn office() -> Office {
    let (srv, ports) = start_server("127.0.0.1", &["udp:127.0.0.1:0"], |c| {
        c.users.insert("carol".into(), "cpw".into());
    });
    Office { _srv: srv, ports }
}

impl Office {
    fn register(&self, p: &mut Party, user: &str, pw: &str, info: bool) -> Account {
        let mut o = AccountOptions::new(&format!("sip:{user}@127.0.0.1"), pw);
        o.server = Some(format!("127.0.0.1:{}", self.ports.port(Transport::Udp)));
        o.expires_s = 300;
        if info {
            o.dtmf_mode = DtmfMode::SipInfo;
        }
        p.register_with(o)
    }
}

/// `from` calls `to_user`, the callee answers with `opts`; both connected.
fn call(
    from: &mut Party,
    acc: &Account,
    to: &mut Party,
    to_user: &str,
    opts: CallOptions,
) -> (Call, Call) {
    let c = from
        .ep
        .make_call(
            Some(acc),
            &format!("sip:{to_user}@127.0.0.1"),
            CallOptions::default(),
        )
        .unwrap();
    let known: Vec<_> = to
        .seen
        .iter()
        .filter_map(|e| match e {
            Event::IncomingCall { call, .. } => Some(*call),
            _ => None,
        })
        .collect();
    let id = to.wait("incoming", |e| match e {
        Event::IncomingCall { call, .. } if !known.contains(call) => Some(*call),
        _ => None,
    });
    let b = to.ep.call(id).unwrap();
    b.answer(opts).unwrap();
    from.state(&c, "connected", |s| *s == CallState::Connected);
    (c, b)
}

fn transfer_statuses(p: &Party) -> Vec<(u16, bool)> {
    p.seen
        .iter()
        .filter_map(|e| match e {
            Event::TransferStatus {
                status, is_final, ..
            } => Some((*status, *is_final)),
            _ => None,
        })
        .collect()
}

#[test]
fn blind_transfer_moves_the_audio_to_the_new_peer() {
    let _serial = serial();
    let o = office();
    let (mut alice, mut bob, mut carol) = (party(), party(), party());
    let a = o.register(&mut alice, "alice", "apw", false);
    let _b = o.register(&mut bob, "bob", "bpw", false);
    let _c = o.register(&mut carol, "carol", "cpw", false);
    let (a_call, b_call) = call(&mut alice, &a, &mut bob, "bob", CallOptions::default());
    a_call.transfer("sip:carol@127.0.0.1").unwrap();
    let (transfer, target) = bob.wait("transfer request", |e| match e {
        Event::TransferRequested {
            call,
            transfer,
            target,
            ..
        } if *call == b_call.id() => Some((*transfer, target.clone())),
        _ => None,
    });
    assert_eq!(target, "sip:carol@127.0.0.1");
    let b_new = bob
        .ep
        .accept_transfer(
            transfer,
            CallOptions {
                source: tone(440.0),
                sink: None,
            },
        )
        .unwrap();
    let c_call = carol.incoming();
    let sink = SharedSink::new(8000);
    c_call
        .answer(CallOptions {
            source: None,
            sink: Some(Box::new(sink.clone())),
        })
        .unwrap();
    bob.state(&b_new, "new call up", |s| *s == CallState::Connected);
    alice.wait("final transfer status", |e| match e {
        Event::TransferStatus {
            status: 200,
            is_final: true,
            ..
        } => Some(()),
        _ => None,
    });
    // The transferee ended the transferred call.
    alice.state(&a_call, "transferred call ended", |s| {
        matches!(s, CallState::Ended { .. })
    });
    let st = transfer_statuses(&alice);
    assert_eq!(st.first(), Some(&(100, false)), "{st:?}");
    assert_eq!(st.last(), Some(&(200, true)), "{st:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let heard = tail(&sink, 440.0, 1000);
    assert!(heard >= 0.9, "carol hears bob's 440 Hz at {heard:.3}");
}

#[test]
fn attended_transfer_replaces_the_consultation_call() {
    let _serial = serial();
    let o = office();
    let (mut alice, mut bob, mut carol) = (party(), party(), party());
    let a = o.register(&mut alice, "alice", "apw", false);
    let _b = o.register(&mut bob, "bob", "bpw", false);
    let _c = o.register(&mut carol, "carol", "cpw", false);
    let (a_bob, _b_call) = call(&mut alice, &a, &mut bob, "bob", CallOptions::default());
    let (a_carol, c_alice) = call(&mut alice, &a, &mut carol, "carol", CallOptions::default());
    a_bob.transfer_to_call(&a_carol).unwrap();
    let (transfer, target) = bob.wait("transfer request", |e| match e {
        Event::TransferRequested {
            transfer, target, ..
        } => Some((*transfer, target.clone())),
        _ => None,
    });
    assert!(target.contains("Replaces="), "{target}");
    let b_new = bob
        .ep
        .accept_transfer(
            transfer,
            CallOptions {
                source: tone(440.0),
                sink: None,
            },
        )
        .unwrap();
    let (c_new, replaced) = carol.wait("replacing call", |e| match e {
        Event::IncomingCall {
            call,
            replaces: Some(r),
            ..
        } => Some((*call, *r)),
        _ => None,
    });
    assert_eq!(replaced, c_alice.id());
    let sink = SharedSink::new(8000);
    carol
        .ep
        .call(c_new)
        .unwrap()
        .answer(CallOptions {
            source: None,
            sink: Some(Box::new(sink.clone())),
        })
        .unwrap();
    bob.state(&b_new, "new call up", |s| *s == CallState::Connected);
    carol.state(&c_alice, "replaced call ended", |s| {
        matches!(s, CallState::Ended { .. })
    });
    alice.state(&a_carol, "consultation ended", |s| {
        matches!(s, CallState::Ended { .. })
    });
    alice.state(&a_bob, "transferred call ended", |s| {
        matches!(s, CallState::Ended { .. })
    });
    std::thread::sleep(Duration::from_millis(1500));
    let heard = tail(&sink, 440.0, 1000);
    assert!(heard >= 0.9, "carol hears bob's 440 Hz at {heard:.3}");
}

#[test]
fn dtmf_by_info_when_the_account_says_so() {
    let _serial = serial();
    let o = office();
    let (mut alice, mut bob) = (party(), party());
    let a = o.register(&mut alice, "alice", "apw", true);
    let _b = o.register(&mut bob, "bob", "bpw", false);
    let (a_call, b_call) = call(&mut alice, &a, &mut bob, "bob", CallOptions::default());
    a_call.send_dtmf("19#").unwrap();
    let mut got = String::new();
    for i in 0..3 {
        let d = bob.wait(&format!("key {i}"), |e| match e {
            Event::DtmfReceived { call, digit } if *call == b_call.id() => Some(*digit),
            _ => None,
        });
        let pos = bob
            .seen
            .iter()
            .position(|e| matches!(e, Event::DtmfReceived { .. }))
            .unwrap();
        bob.seen.remove(pos);
        got.push(d);
    }
    assert_eq!(got, "19#");
    // No RTP telephone-event went: the keys came by INFO.
    assert_eq!(a_call.stats().unwrap().dtmf_sent, 0);
}

#[test]
fn early_media_is_heard_before_the_answer() {
    let _serial = serial();
    let o = office();
    let (mut alice, mut bob) = (party(), party());
    let a = o.register(&mut alice, "alice", "apw", false);
    let _b = o.register(&mut bob, "bob", "bpw", false);
    let sink = SharedSink::new(8000);
    let a_call = alice
        .ep
        .make_call(
            Some(&a),
            "sip:bob@127.0.0.1",
            CallOptions {
                source: None,
                sink: Some(Box::new(sink.clone())),
            },
        )
        .unwrap();
    let b_call = bob.incoming();
    b_call
        .answer_early(CallOptions {
            source: tone(1000.0),
            sink: None,
        })
        .unwrap();
    alice.state(&a_call, "early media", |s| *s == CallState::EarlyMedia);
    std::thread::sleep(Duration::from_millis(1200));
    let early = tail(&sink, 1000.0, 800);
    assert!(early >= 0.9, "alice hears the announcement at {early:.3}");
    assert_eq!(a_call.state().unwrap(), CallState::EarlyMedia);
    b_call.answer(CallOptions::default()).unwrap();
    alice.state(&a_call, "connected", |s| *s == CallState::Connected);
    std::thread::sleep(Duration::from_millis(800));
    let after = tail(&sink, 1000.0, 500);
    assert!(
        after >= 0.9,
        "the stream goes on after the answer: {after:.3}"
    );
}

#[test]
fn a_callee_redirect_is_followed() {
    let _serial = serial();
    let o = office();
    let (mut alice, mut bob, mut carol) = (party(), party(), party());
    let a = o.register(&mut alice, "alice", "apw", false);
    let _b = o.register(&mut bob, "bob", "bpw", false);
    let _c = o.register(&mut carol, "carol", "cpw", false);
    let a_call = alice
        .ep
        .make_call(Some(&a), "sip:bob@127.0.0.1", CallOptions::default())
        .unwrap();
    bob.incoming().redirect(&["sip:carol@127.0.0.1"]).unwrap();
    let target = alice.wait("redirected", |e| match e {
        Event::CallRedirected { status, target, .. } => Some((*status, target.clone())),
        _ => None,
    });
    assert_eq!(target, (302, "sip:carol@127.0.0.1".to_string()));
    carol.incoming().answer(CallOptions::default()).unwrap();
    alice.state(&a_call, "connected to carol", |s| {
        *s == CallState::Connected
    });
    assert!(a_call.peer().unwrap().contains("carol"));
}

#[test]
fn two_accounts_on_two_servers_each_receive_their_own_calls() {
    let _serial = serial();
    // Two servers, both for domain 127.0.0.1 with a user "alice"; one endpoint registers alice at
    // each. Bob (server 1) and carol (server 2) call alice at their own server.
    let (_s1, p1) = start_server("127.0.0.1", &["udp:127.0.0.1:0"], |_| {});
    let (_s2, p2) = start_server("127.0.0.1", &["udp:127.0.0.1:0"], |c| {
        c.users.insert("carol".into(), "cpw".into());
    });
    let at = |p: &Ports| format!("127.0.0.1:{}", p.port(Transport::Udp));
    let mut alice = party();
    let a1 = alice.register_at(&at(&p1), "alice", "apw");
    let a2 = alice.register_at(&at(&p2), "alice", "apw");
    let mut bob = party();
    let b = bob.register_at(&at(&p1), "bob", "bpw");
    let mut carol = party();
    let c = carol.register_at(&at(&p2), "carol", "cpw");
    // The n-th incoming call alice saw: (its account, the call), waiting up to 10 s.
    let nth_incoming = |alice: &mut Party, n: usize| {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            alice.drain();
            let found = alice
                .seen
                .iter()
                .filter_map(|e| match e {
                    Event::IncomingCall { account, call, .. } => Some((*account, *call)),
                    _ => None,
                })
                .nth(n);
            if let Some(x) = found {
                return x;
            }
            assert!(std::time::Instant::now() < end, "no incoming call #{n}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let from_carol = carol
        .ep
        .make_call(Some(&c), "sip:alice@127.0.0.1", CallOptions::default())
        .unwrap();
    let (acc, call) = nth_incoming(&mut alice, 0);
    assert_eq!(
        acc,
        Some(a2.id()),
        "carol's call is for the account at server 2"
    );
    alice.ep.call(call).unwrap().reject(486).unwrap();
    carol.state(&from_carol, "busy", |s| {
        matches!(s, CallState::Ended { .. })
    });
    let from_bob = bob
        .ep
        .make_call(Some(&b), "sip:alice@127.0.0.1", CallOptions::default())
        .unwrap();
    let second = nth_incoming(&mut alice, 1);
    assert_eq!(
        second.0,
        Some(a1.id()),
        "bob's call is for the account at server 1"
    );
    alice.ep.call(second.1).unwrap().reject(486).unwrap();
    bob.state(&from_bob, "busy", |s| matches!(s, CallState::Ended { .. }));
}
