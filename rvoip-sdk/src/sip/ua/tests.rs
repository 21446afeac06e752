//! Call flows of the user agent core on simulated time: two user agents (and the real server core
//! as registrar/proxy) wired in memory. REGISTER with 401, INVITE with 407, answer, hold/resume
//! directions (RFC 3264 §8.4), BYE, CANCEL → 487, reject 486, 488, refresh and backoff.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::sdp::{AudioCodec, Direction, LocalMedia};
use crate::server::config::ServerConfig;
use crate::server::core::ServerCore;
use crate::server::local::LocalIdentity;
use crate::sip::msg::Uri;

const SERVER: &str = "127.0.0.1:5060";
const ALICE: &str = "127.0.0.1:5070";
const BOB: &str = "127.0.0.1:5080";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn uri(s: &str) -> Uri {
    Uri::parse(&s.into()).unwrap()
}

struct Net {
    now: Instant,
    server: Option<ServerCore>,
    alice: UserAgent,
    bob: UserAgent,
    events_a: Vec<UaEvent>,
    events_b: Vec<UaEvent>,
    /// Every SIP message seen on the wire, as text (for asserting SDP directions).
    wire: Vec<String>,
    /// (source, destination, request method or response status line) of every message sent.
    hops: Vec<(SocketAddr, SocketAddr, String)>,
    /// Drop everything addressed to this address.
    blackhole: Option<SocketAddr>,
}

fn local_media(port: u16) -> LocalMedia {
    LocalMedia {
        addr: "127.0.0.1".parse().unwrap(),
        port,
        codecs: vec![AudioCodec::PCMU, AudioCodec::PCMA],
        dtmf: true,
        direction: Direction::SendRecv,
        security: crate::sdp::LocalSecurity::plain(),
    }
}

impl Net {
    fn new(with_server: bool) -> Net {
        Net::with_bob_config(with_server, UaConfig::default())
    }

    fn with_bob_config(with_server: bool, bob_cfg: UaConfig) -> Net {
        let now = Instant::now();
        let server = with_server.then(|| {
            let cfg = ServerConfig::default();
            let local = LocalIdentity::new(
                &[(Transport::Udp, addr(SERVER))],
                "127.0.0.1",
                "127.0.0.1",
                &[],
            );
            let users = vec![
                ("alice".to_string(), "apw".to_string()),
                ("bob".to_string(), "bpw".to_string()),
            ];
            ServerCore::new(&cfg, local, &users, now, 1_700_000_000)
        });
        Net {
            now,
            server,
            alice: UserAgent::new(UaConfig::default()),
            bob: UserAgent::new(bob_cfg),
            events_a: Vec::new(),
            events_b: Vec::new(),
            wire: Vec::new(),
            hops: Vec::new(),
            blackhole: None,
        }
    }

    fn account(&mut self, who: &str, password: &str) -> AccountId {
        let (ua, local) = if who == "alice" {
            (&mut self.alice, addr(ALICE))
        } else {
            (&mut self.bob, addr(BOB))
        };
        ua.add_account(AccountConfig {
            aor: uri(&format!("sip:{who}@127.0.0.1")),
            credentials: Credentials {
                username: who.into(),
                password: password.into(),
            },
            server: addr(SERVER),
            transport: Transport::Udp,
            local,
            expires_s: 120,
            alternates: Vec::new(),
            srtp: Default::default(),
            dtmf_mode: Default::default(),
        })
    }

    /// Delivers messages until the network is quiet (no time passes).
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut queue: VecDeque<(SocketAddr, SocketAddr, bytes::Bytes)> = VecDeque::new();
            while let Some(t) = self.alice.poll_transmit() {
                queue.push_back((addr(ALICE), t.dest, t.bytes));
            }
            while let Some(t) = self.bob.poll_transmit() {
                queue.push_back((addr(BOB), t.dest, t.bytes));
            }
            if let Some(s) = self.server.as_mut() {
                while let Some(t) = s.poll_transmit() {
                    queue.push_back((addr(SERVER), t.dest, t.bytes));
                }
            }
            while let Some(e) = self.alice.poll_event() {
                self.events_a.push(e);
            }
            while let Some(e) = self.bob.poll_event() {
                self.events_b.push(e);
            }
            if queue.is_empty() {
                return;
            }
            for (from, to, bytes) in queue {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let first = text.split(' ').next().unwrap_or("").to_string();
                self.hops.push((from, to, first));
                self.wire.push(text);
                if Some(to) == self.blackhole {
                    continue;
                }
                let now = self.now;
                if to == addr(ALICE) {
                    self.alice
                        .handle_datagram(now, bytes, from, Transport::Udp, addr(ALICE));
                } else if to == addr(BOB) {
                    self.bob
                        .handle_datagram(now, bytes, from, Transport::Udp, addr(BOB));
                } else if to == addr(SERVER) {
                    if let Some(s) = self.server.as_mut() {
                        s.handle_datagram(now, bytes, from, Transport::Udp);
                    }
                }
            }
        }
        panic!("network did not settle");
    }

    /// Advances simulated time by `d`, running every timer that falls due on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            let mut next = end;
            for t in [
                self.alice.poll_timeout(),
                self.bob.poll_timeout(),
                self.server.as_ref().and_then(|s| s.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            {
                next = next.min(t.max(self.now));
            }
            self.now = next;
            let now = self.now;
            self.alice.handle_timeout(now);
            self.bob.handle_timeout(now);
            if let Some(s) = self.server.as_mut() {
                s.handle_timeout(now);
            }
            self.settle();
            if self.now >= end {
                return;
            }
        }
    }

    fn states(events: &[UaEvent], call: CallId) -> Vec<CallState> {
        events
            .iter()
            .filter_map(|e| match e {
                UaEvent::CallState { call: c, state } if *c == call => Some(state.clone()),
                _ => None,
            })
            .collect()
    }

    fn incoming(&self) -> Option<CallId> {
        self.events_b.iter().find_map(|e| match e {
            UaEvent::IncomingCall { call, .. } => Some(*call),
            _ => None,
        })
    }

    fn last_media(events: &[UaEvent]) -> Option<crate::sdp::Negotiated> {
        events.iter().rev().find_map(|e| match e {
            UaEvent::MediaStart { media, .. } | UaEvent::MediaUpdate { media, .. } => {
                Some(media.clone())
            }
            _ => None,
        })
    }

    /// Alice and bob register to the server (answering its 401s).
    fn register_both(&mut self) -> (AccountId, AccountId) {
        let a = self.account("alice", "apw");
        let b = self.account("bob", "bpw");
        let now = self.now;
        self.alice.register(now, a).unwrap();
        self.bob.register(now, b).unwrap();
        self.settle();
        (a, b)
    }

    /// Alice calls bob through the server with account `a` (answering its 407).
    fn call_bob_through_server(&mut self, a: AccountId) -> CallId {
        let now = self.now;
        let call = self
            .alice
            .make_call(
                now,
                Some(a),
                uri("sip:bob@127.0.0.1"),
                addr(SERVER),
                Transport::Udp,
                addr(ALICE),
                local_media(40000),
            )
            .unwrap();
        self.settle();
        call
    }

    /// Alice calls bob directly and bob answers: (alice's call, bob's call), both up.
    fn answered_direct_call(&mut self) -> (CallId, CallId) {
        let call = self.direct_call();
        self.settle();
        let incoming = self.incoming().unwrap();
        let now = self.now;
        self.bob.answer(now, incoming, local_media(41000)).unwrap();
        self.settle();
        (call, incoming)
    }

    fn direct_call(&mut self) -> CallId {
        let now = self.now;
        self.alice
            .make_call(
                now,
                None,
                uri("sip:bob@127.0.0.1:5080"),
                addr(BOB),
                Transport::Udp,
                addr(ALICE),
                local_media(40000),
            )
            .unwrap()
    }
}

/// A stand-in registrar that tests answer by hand (nothing listens there).
const FAKE: &str = "127.0.0.1:5095";

/// Alice's account (`alice`/`apw`, from [`ALICE`]) at the stand-in registrar [`FAKE`].
fn fake_registrar_account(ua: &mut UserAgent, transport: Transport, expires_s: u32) -> AccountId {
    ua.add_account(AccountConfig {
        aor: uri("sip:alice@127.0.0.1"),
        credentials: Credentials {
            username: "alice".into(),
            password: "apw".into(),
        },
        server: addr(FAKE),
        transport,
        local: addr(ALICE),
        expires_s,
        alternates: Vec::new(),
        srtp: Default::default(),
        dtmf_mode: Default::default(),
    })
}

fn registered(events: &[UaEvent], acc: AccountId) -> bool {
    events.iter().any(|e| {
        matches!(e, UaEvent::Registration { account, state: RegistrationState::Registered { .. } } if *account == acc)
    })
}

#[test]
fn register_call_hold_resume_hangup_through_the_server() {
    let mut net = Net::new(true);
    let (a, b) = net.register_both();
    assert!(registered(&net.events_a, a), "{:?}", net.events_a);
    assert!(registered(&net.events_b, b), "{:?}", net.events_b);
    // The first REGISTER was challenged: the wire shows a 401 and an Authorization.
    assert!(net.wire.iter().any(|m| m.starts_with("SIP/2.0 401")));
    assert!(net.wire.iter().any(|m| m.contains("Authorization: Digest")));

    let call = net.call_bob_through_server(a);
    // The proxy challenged the INVITE with 407; alice answered it.
    assert!(net.wire.iter().any(|m| m.starts_with("SIP/2.0 407")));
    assert!(
        net.wire
            .iter()
            .any(|m| m.contains("Proxy-Authorization: Digest"))
    );
    let incoming = net.incoming().expect("bob sees the call");
    assert_eq!(net.alice.call_state(call).unwrap(), CallState::Ringing);
    let now = net.now;
    net.bob.answer(now, incoming, local_media(41000)).unwrap();
    net.settle();
    assert_eq!(net.alice.call_state(call).unwrap(), CallState::Connected);
    assert_eq!(net.bob.call_state(incoming).unwrap(), CallState::Connected);
    let ma = Net::last_media(&net.events_a).unwrap();
    let mb = Net::last_media(&net.events_b).unwrap();
    assert_eq!(ma.codec, AudioCodec::PCMU);
    assert_eq!(ma.remote, addr("127.0.0.1:41000"));
    assert_eq!(mb.remote, addr("127.0.0.1:40000"));
    assert_eq!(ma.telephone_event_pt, Some(101));

    // Hold: alice offers sendonly, bob answers recvonly (RFC 3264 §8.4).
    let before = net.wire.len();
    let now = net.now;
    net.alice.set_hold(now, call, true).unwrap();
    net.settle();
    let offer = net.wire[before..]
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("re-INVITE");
    assert!(offer.contains("a=sendonly"), "{offer}");
    let answer = net.wire[before..]
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200") && m.contains("INVITE") && m.contains("v=0"))
        .expect("200 to re-INVITE");
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert_eq!(
        Net::last_media(&net.events_a).unwrap().direction,
        Direction::SendOnly
    );
    assert_eq!(
        Net::last_media(&net.events_b).unwrap().direction,
        Direction::RecvOnly
    );
    assert_eq!(
        net.alice.call_state(call).unwrap(),
        CallState::Held {
            local: true,
            remote: false
        }
    );
    assert_eq!(
        net.bob.call_state(incoming).unwrap(),
        CallState::Held {
            local: false,
            remote: true
        }
    );

    // Resume.
    let now = net.now;
    net.alice.set_hold(now, call, false).unwrap();
    net.settle();
    assert_eq!(
        Net::last_media(&net.events_a).unwrap().direction,
        Direction::SendRecv
    );
    assert_eq!(
        Net::last_media(&net.events_b).unwrap().direction,
        Direction::SendRecv
    );
    assert_eq!(net.bob.call_state(incoming).unwrap(), CallState::Connected);

    // Hang up.
    let now = net.now;
    net.alice.hangup(now, call).unwrap();
    net.settle();
    let bob_states = Net::states(&net.events_b, incoming);
    assert!(
        matches!(
            bob_states.last(),
            Some(CallState::Ended { status: 200, .. })
        ),
        "{bob_states:?}"
    );
    assert!(
        net.events_b
            .iter()
            .any(|e| matches!(e, UaEvent::MediaStop { .. }))
    );
    assert_eq!(net.alice.call_state(call), Err(UaError::NotFound));
    assert_eq!(net.alice.hangup(net.now, call), Err(UaError::NotFound));

    // Unregister.
    let now = net.now;
    net.alice.unregister(now, a).unwrap();
    net.settle();
    assert_eq!(
        net.alice.registration_state(a).unwrap(),
        RegistrationState::Unregistered
    );
}

/// RFC 3261 §12.1.1: the UAS copies Record-Route into its 1xx/2xx, so the caller's ACK and BYE
/// follow the route set through the proxy instead of going straight to the callee's Contact.
#[test]
fn ack_and_bye_follow_the_record_route_through_the_server() {
    let mut net = Net::new(true);
    let (a, _) = net.register_both();
    let call = net.call_bob_through_server(a);
    let incoming = net.incoming().expect("bob sees the call");
    let now = net.now;
    net.bob.answer(now, incoming, local_media(41000)).unwrap();
    net.settle();
    let ok = net
        .wire
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200") && m.contains(" INVITE"))
        .expect("200 to INVITE");
    assert!(ok.contains("Record-Route:"), "{ok}");
    let now = net.now;
    net.alice.hangup(now, call).unwrap();
    net.settle();
    let from_alice: Vec<_> = net
        .hops
        .iter()
        .filter(|(f, _, m)| *f == addr(ALICE) && (m == "ACK" || m == "BYE"))
        .collect();
    // The ACK of the 407, the ACK of the 200 and the BYE.
    assert_eq!(from_alice.len(), 3, "{:?}", net.hops);
    assert!(
        from_alice.iter().all(|(_, to, _)| *to == addr(SERVER)),
        "{from_alice:?}"
    );
    // …and the server relays both to bob.
    for m in ["ACK", "BYE"] {
        assert!(
            net.hops
                .iter()
                .any(|(f, t, x)| *f == addr(SERVER) && *t == addr(BOB) && x == m),
            "{m}: {:?}",
            net.hops
        );
    }
}

#[test]
fn cancel_before_answer_gives_487_on_both_sides() {
    let mut net = Net::new(false);
    let call = net.direct_call();
    net.settle();
    let incoming = net.incoming().unwrap();
    let now = net.now;
    net.alice.hangup(now, call).unwrap();
    net.settle();
    let a = Net::states(&net.events_a, call);
    let b = Net::states(&net.events_b, incoming);
    assert!(
        matches!(a.last(), Some(CallState::Ended { status: 487, .. })),
        "{a:?}"
    );
    assert!(
        matches!(b.last(), Some(CallState::Ended { status: 487, .. })),
        "{b:?}"
    );
    assert!(net.wire.iter().any(|m| m.starts_with("CANCEL ")));
    assert_eq!(net.alice.call_count(), 0);
    assert_eq!(net.bob.call_count(), 0);
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut net = Net::new(false);
    net.blackhole = Some(addr(BOB));
    let call = net.direct_call();
    net.settle();
    let now = net.now;
    net.alice.hangup(now, call).unwrap();
    net.settle();
    assert!(
        !net.wire.iter().any(|m| m.starts_with("CANCEL ")),
        "no CANCEL before a 1xx (§9.1)"
    );
    // Nobody answers: the call still ends, as 487, after the INVITE times out.
    net.advance(Duration::from_secs(40));
    let a = Net::states(&net.events_a, call);
    assert!(
        matches!(a.last(), Some(CallState::Ended { status: 487, .. })),
        "{a:?}"
    );
}

#[test]
fn reject_486_reaches_the_caller_as_busy() {
    let mut net = Net::new(false);
    let call = net.direct_call();
    net.settle();
    let incoming = net.incoming().unwrap();
    let now = net.now;
    assert_eq!(
        net.bob.reject(now, incoming, 200),
        Err(UaError::InvalidStatus(200))
    );
    net.bob.reject(now, incoming, 486).unwrap();
    net.settle();
    let a = Net::states(&net.events_a, call);
    assert_eq!(
        a.last(),
        Some(&CallState::Ended {
            status: 486,
            reason: "Busy Here".into()
        })
    );
    // The INVITE client transaction ACKed the 486 itself.
    assert!(net.wire.iter().any(|m| m.starts_with("ACK ")));
}

#[test]
fn no_common_codec_is_answered_488() {
    let cfg = UaConfig {
        codecs: vec![AudioCodec::G722],
        ..UaConfig::default()
    };
    let mut net = Net::with_bob_config(false, cfg);
    let call = net.direct_call();
    net.settle();
    assert!(net.incoming().is_none());
    let a = Net::states(&net.events_a, call);
    assert!(
        matches!(a.last(), Some(CallState::Ended { status: 488, .. })),
        "{a:?}"
    );
}

#[test]
fn remote_bye_and_in_dialog_requests() {
    let mut net = Net::new(false);
    let (call, incoming) = net.answered_direct_call();
    assert_eq!(net.bob.call_state(incoming).unwrap(), CallState::Connected);
    let now = net.now;
    net.bob.hangup(now, incoming).unwrap();
    net.settle();
    let a = Net::states(&net.events_a, call);
    assert_eq!(
        a.last(),
        Some(&CallState::Ended {
            status: 200,
            reason: "remote hangup".into()
        })
    );
    // The dialog went with its last usage (RFC 5057 §5).
    assert_eq!((net.alice.dialog_count(), net.bob.dialog_count()), (0, 0));
}

#[test]
fn lost_ack_makes_the_uas_retransmit_its_2xx() {
    let mut net = Net::new(false);
    let _call = net.direct_call();
    net.settle();
    let incoming = net.incoming().unwrap();
    // Alice goes silent after the 200: no ACK reaches bob.
    net.blackhole = Some(addr(ALICE));
    let now = net.now;
    net.bob.answer(now, incoming, local_media(41000)).unwrap();
    net.advance(Duration::from_secs(3));
    let oks = net
        .wire
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 200") && m.contains("INVITE"))
        .count();
    assert!(oks >= 3, "200 retransmitted at T1, 2T1, 4T1: saw {oks}");
    // After 64*T1 without ACK the call ends with a BYE.
    net.advance(Duration::from_secs(40));
    let b = Net::states(&net.events_b, incoming);
    assert!(
        matches!(b.last(), Some(CallState::Ended { status: 408, .. })),
        "{b:?}"
    );
    assert!(net.wire.iter().any(|m| m.starts_with("BYE ")));
}

#[test]
fn registration_refreshes_before_expiry() {
    let mut net = Net::new(true);
    let a = net.account("alice", "apw");
    let now = net.now;
    net.alice.register(now, a).unwrap();
    net.settle();
    let count = |net: &Net| {
        net.wire
            .iter()
            .filter(|m| m.starts_with("REGISTER "))
            .count()
    };
    let first = count(&net);
    assert_eq!(first, 2, "REGISTER, 401, REGISTER with credentials");
    // Granted 120 s: the refresh goes out 10 s before expiry.
    net.advance(Duration::from_secs(105));
    assert_eq!(count(&net), first);
    net.advance(Duration::from_secs(10));
    assert!(count(&net) > first);
    assert!(matches!(
        net.alice.registration_state(a).unwrap(),
        RegistrationState::Registered { expires_s: 120 }
    ));
}

#[test]
fn wrong_password_fails_and_unreachable_registrar_backs_off() {
    let mut net = Net::new(true);
    let a = net.account("alice", "wrong");
    let now = net.now;
    net.alice.register(now, a).unwrap();
    net.settle();
    assert!(matches!(
        net.alice.registration_state(a).unwrap(),
        RegistrationState::Failed {
            status: 401,
            retry_in_ms: 2000,
            ..
        }
    ));

    let mut net = Net::new(false);
    let b = net.account("alice", "apw");
    let now = net.now;
    net.alice.register(now, b).unwrap();
    net.advance(Duration::from_secs(33));
    let fails: Vec<u64> = net
        .events_a
        .iter()
        .filter_map(|e| match e {
            UaEvent::Registration {
                state:
                    RegistrationState::Failed {
                        status: 408,
                        retry_in_ms,
                        ..
                    },
                ..
            } => Some(*retry_in_ms),
            _ => None,
        })
        .collect();
    assert_eq!(fails, vec![2000]);
    net.advance(Duration::from_secs(40));
    let fails: Vec<u64> = net
        .events_a
        .iter()
        .filter_map(|e| match e {
            UaEvent::Registration {
                state: RegistrationState::Failed { retry_in_ms, .. },
                ..
            } => Some(*retry_in_ms),
            _ => None,
        })
        .collect();
    assert_eq!(fails, vec![2000, 4000]);
}

#[test]
fn garbage_and_unknown_requests_do_not_disturb() {
    let mut net = Net::new(false);
    let now = net.now;
    for junk in [
        &b"\x00\x01garbage"[..],
        b"INVITE sip:x SIP/2.0\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
    ] {
        net.bob.handle_datagram(
            now,
            bytes::Bytes::from_static(junk),
            addr(ALICE),
            Transport::Udp,
            addr(BOB),
        );
    }
    let msg = "PUBLISH sip:bob@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKm1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@x>\r\nCall-ID: m1\r\nCSeq: 1 PUBLISH\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    net.bob.handle_datagram(
        now,
        bytes::Bytes::from(msg),
        addr(ALICE),
        Transport::Udp,
        addr(BOB),
    );
    let mut answers = Vec::new();
    while let Some(t) = net.bob.poll_transmit() {
        answers.push(String::from_utf8_lossy(&t.bytes).into_owned());
    }
    assert!(
        answers.iter().any(|a| a.starts_with("SIP/2.0 405")),
        "{answers:?}"
    );
    assert_eq!(net.bob.call_count(), 0);
}

#[test]
fn uas_hangup_before_the_ack_sends_bye_only_after_it() {
    let mut net = Net::new(false);
    let call = net.direct_call();
    net.settle();
    let incoming = net.incoming().unwrap();
    let now = net.now;
    net.bob.answer(now, incoming, local_media(41000)).unwrap();
    // Hang up in the same instant, before alice's ACK is in.
    net.bob.hangup(now, incoming).unwrap();
    net.settle();
    let ack = net
        .wire
        .iter()
        .position(|m| m.starts_with("ACK "))
        .expect("ACK");
    let bye = net
        .wire
        .iter()
        .position(|m| m.starts_with("BYE "))
        .expect("BYE");
    assert!(ack < bye, "BYE went out before the ACK (§15)");
    let a = Net::states(&net.events_a, call);
    assert!(
        matches!(a.last(), Some(CallState::Ended { status: 200, .. })),
        "{a:?}"
    );
    assert_eq!(net.bob.call_count(), 0);
}

#[test]
fn reinvite_glare_gets_491_and_both_retry() {
    let mut net = Net::new(false);
    let call = net.direct_call();
    net.settle();
    let incoming = net.incoming().unwrap();
    let now = net.now;
    net.bob.answer(now, incoming, local_media(41000)).unwrap();
    net.settle();
    // Both hold at the same instant: the re-INVITEs cross.
    let now = net.now;
    net.alice.set_hold(now, call, true).unwrap();
    net.bob.set_hold(now, incoming, true).unwrap();
    net.settle();
    assert!(
        net.wire.iter().any(|m| m.starts_with("SIP/2.0 491")),
        "glare answered 491"
    );
    net.advance(Duration::from_secs(10));
    assert_eq!(
        net.alice.call_state(call).unwrap(),
        CallState::Held {
            local: true,
            remote: true
        }
    );
    assert_eq!(
        net.bob.call_state(incoming).unwrap(),
        CallState::Held {
            local: true,
            remote: true
        }
    );
}

#[test]
fn early_media_from_a_183_with_sdp() {
    let mut net = Net::new(false);
    net.blackhole = Some(addr(BOB));
    let call = net.direct_call();
    net.settle();
    let invite = net
        .wire
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .unwrap()
        .clone();
    let req = match crate::sip::msg::Message::parse(bytes::Bytes::from(invite), &Default::default())
        .unwrap()
    {
        crate::sip::msg::Message::Request(r) => r,
        _ => unreachable!(),
    };
    // A gateway's 183 Session Progress with its SDP answer (RFC 3960 early media).
    let mut resp = build::response(&req, 183, Some("gw1"), Some("sip:gw@127.0.0.1:5080"));
    let sdp = "v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 42000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
    build::set_sdp(&mut resp.headers, &mut resp.body, sdp);
    let now = net.now;
    net.alice
        .handle_datagram(now, resp.to_bytes(), addr(BOB), Transport::Udp, addr(ALICE));
    net.settle();
    assert_eq!(net.alice.call_state(call).unwrap(), CallState::EarlyMedia);
    let m = Net::last_media(&net.events_a).expect("media starts on the 183");
    assert_eq!(m.remote, addr("127.0.0.1:42000"));
    assert!(
        net.events_a
            .iter()
            .any(|e| matches!(e, UaEvent::MediaStart { .. }))
    );
}

mod failover;
mod message;

#[test]
fn a_second_forks_2xx_is_acked_and_byed_in_its_own_dialog() {
    let mut net = Net::new(false);
    let (call, _) = net.answered_direct_call();
    assert_eq!(net.alice.call_state(call).unwrap(), CallState::Connected);
    // A 2xx of another fork: the same response with another To tag and Contact.
    let ok = net
        .wire
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200") && m.contains("INVITE"))
        .unwrap()
        .clone();
    let to = ok.lines().find(|l| l.starts_with("To:")).unwrap();
    let tag = to.split(";tag=").nth(1).unwrap().trim().to_string();
    let fork = ok
        .replace(&format!(";tag={tag}"), ";tag=fork2")
        .replace("127.0.0.1:5080", "127.0.0.1:5090");
    let seen = net.wire.len();
    for _ in 0..2 {
        let now = net.now;
        net.alice.handle_datagram(
            now,
            bytes::Bytes::from(fork.clone()),
            addr(BOB),
            Transport::Udp,
            addr(ALICE),
        );
        net.settle();
    }
    let sent: Vec<&String> = net.wire[seen..].iter().collect();
    let acks = sent
        .iter()
        .filter(|m| m.starts_with("ACK sip:bob@127.0.0.1:5090") && m.contains("tag=fork2"))
        .count();
    let byes = sent
        .iter()
        .filter(|m| m.starts_with("BYE sip:bob@127.0.0.1:5090") && m.contains("tag=fork2"))
        .count();
    assert!(acks >= 1 && byes >= 1, "{sent:#?}");
    // Nothing went into the established dialog, and the call is still up.
    assert!(
        !sent.iter().any(|m| m.contains(&format!("tag={tag}"))),
        "{sent:#?}"
    );
    assert_eq!(net.alice.call_state(call).unwrap(), CallState::Connected);
}
mod features;
mod flow;
mod presence;
mod presence_server;
mod rport;
mod transfer;
