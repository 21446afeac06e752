//! SDK ↔ SDK calls through rvoip-server with the media relay on (issue 10), over real sockets
//! on 127.0.0.1: the media goes through the relay's ports (each side's RTP goes to a relay port,
//! never to the other phone), the tone is heard both ways (≥ 90 % of the energy per 20 ms block),
//! hold/resume work through it, a forked call collapses to the branch that answered, an
//! exhausted port pool gives 503, and after BYE the relay holds no port. `relay = "off"` is the
//! control: there the media goes straight to the other phone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rvoip_sdk::api::{
    Account, AudioCodec, Call, CallOptions, CallState, EndpointConfig, Event, Server,
};
use rvoip_sdk::media::audio::{SharedSink, ToneSource};
use rvoip_sdk::media::tone::tone_fraction_blocks;
use rvoip_sdk::server::config::{ListenSpec, PortRange, ServerConfig};
use rvoip_sdk::server::proxy::anchor::RelayMode;
use rvoip_sdk::sip::transaction::Transport;

mod common;
use common::{Party, WAIT, serial};

fn server(mode: RelayMode, ports: (u16, u16)) -> (Server, SocketAddr) {
    let mut cfg = ServerConfig {
        listen: vec!["udp:127.0.0.1:0".parse::<ListenSpec>().unwrap()],
        domain: Some("127.0.0.1".into()),
        relay: mode,
        relay_ports: PortRange {
            min: ports.0,
            max: ports.1,
        },
        ..ServerConfig::default()
    };
    for u in ["alice", "bob", "carol"] {
        cfg.users.insert(u.into(), format!("{u}-pw"));
    }
    let s = Server::new(cfg);
    s.start().expect("server");
    let addr = s
        .local_addrs()
        .iter()
        .find(|(t, _)| *t == Transport::Udp)
        .unwrap()
        .1;
    (s, addr)
}

impl Party {
    fn new() -> Party {
        Party::with_config(EndpointConfig {
            codecs: vec![AudioCodec::PCMU],
            stats_interval: None,
            ..EndpointConfig::loopback()
        })
    }

    fn register(&mut self, srv: SocketAddr, user: &str) -> Account {
        self.register_at(&srv.to_string(), user, &format!("{user}-pw"))
    }

    /// Calls bob through the server with `acc`, sending 440 Hz and recording into `sink`.
    fn call_bob(&mut self, acc: &Account, sink: &SharedSink) -> Call {
        self.ep
            .make_call(
                Some(acc),
                "sip:bob@127.0.0.1",
                CallOptions {
                    source: tone(440.0),
                    sink: Some(Box::new(sink.clone())),
                },
            )
            .unwrap()
    }

    /// Where this side's RTP goes (the first MediaStarted of `call`).
    fn media_remote(&mut self, call: &Call) -> SocketAddr {
        let id = call.id();
        self.wait("media started", |e| match e {
            Event::MediaStarted { call, remote, .. } if *call == id => Some(*remote),
            _ => None,
        })
    }
}

fn tone(freq: f64) -> Option<Box<dyn rvoip_sdk::api::AudioSource>> {
    Some(Box::new(ToneSource::new(freq, 8000, 10_000)))
}

/// Energy share at `freq` in the last `ms` of `sink`, per 20 ms block.
fn tail(sink: &SharedSink, freq: f64, ms: usize) -> f64 {
    let s = sink.samples();
    let n = 8 * ms;
    if s.len() < n {
        return 0.0;
    }
    tone_fraction_blocks(&s[s.len() - n..], freq, 8000, 160)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out: {what}");
}

struct Up {
    alice: Party,
    bob: Party,
    a_call: Call,
    b_call: Call,
    a_sink: SharedSink,
    b_sink: SharedSink,
}

fn call_bob(srv: SocketAddr) -> Up {
    let mut alice = Party::new();
    let mut bob = Party::new();
    let acc = alice.register(srv, "alice");
    bob.register(srv, "bob");
    let (a_sink, b_sink) = (SharedSink::new(8000), SharedSink::new(8000));
    let a_call = alice.call_bob(&acc, &a_sink);
    let b_call = bob.incoming();
    b_call
        .answer(CallOptions {
            source: tone(1000.0),
            sink: Some(Box::new(b_sink.clone())),
        })
        .unwrap();
    alice.state(&a_call, "alice connected", |s| *s == CallState::Connected);
    bob.state(&b_call, "bob connected", |s| *s == CallState::Connected);
    Up {
        alice,
        bob,
        a_call,
        b_call,
        a_sink,
        b_sink,
    }
}

#[test]
fn sdk_call_through_the_relay_two_way_hold_resume_and_ports_freed() {
    let _s = serial();
    let (srv, addr) = server(RelayMode::Always, (41_000, 41_099));
    let mut up = call_bob(addr);
    // Each side sends to a relay port, not to the other phone.
    let a_remote = up.alice.media_remote(&up.a_call);
    let b_remote = up.bob.media_remote(&up.b_call);
    for r in [a_remote, b_remote] {
        assert!(
            (41_000..=41_099).contains(&r.port()),
            "media not anchored: {r}"
        );
    }
    assert_ne!(a_remote, b_remote, "one leg per party");
    assert_eq!(srv.relay_stats().unwrap().ports_in_use, 4);
    std::thread::sleep(Duration::from_millis(1500));
    let (at_a, at_b) = (
        tail(&up.a_sink, 1000.0, 1000),
        tail(&up.b_sink, 440.0, 1000),
    );
    assert!(
        at_a >= 0.9 && at_b >= 0.9,
        "tone through the relay: alice {at_a:.3} bob {at_b:.3}"
    );
    let st = srv.relay_stats().unwrap();
    assert!(st.forwarded > 100, "{st:?}");

    // Hold (alice sendonly, bob recvonly, through the relay): alice stops hearing bob's 1000 Hz
    // while bob still hears her; resume restarts bob's audio.
    up.a_call.hold().unwrap();
    up.alice
        .state(&up.a_call, "held", |s| matches!(s, CallState::Held { .. }));
    std::thread::sleep(Duration::from_millis(800));
    let (held_a, held_b) = (tail(&up.a_sink, 1000.0, 400), tail(&up.b_sink, 440.0, 400));
    up.a_call.resume().unwrap();
    up.alice
        .state(&up.a_call, "resumed", |s| *s == CallState::Connected);
    std::thread::sleep(Duration::from_millis(800));
    let resumed_a = tail(&up.a_sink, 1000.0, 400);
    assert!(
        held_a < 0.1 && held_b >= 0.9 && resumed_a >= 0.9,
        "held: alice hears {held_a:.3}, bob hears {held_b:.3}; resumed: alice hears {resumed_a:.3}"
    );

    up.a_call.hangup().unwrap();
    up.bob.state(&up.b_call, "bob ended", |s| {
        matches!(s, CallState::Ended { status: 200, .. })
    });
    wait_until("relay ports freed after BYE", || {
        srv.relay_stats()
            .is_some_and(|s| s.ports_in_use == 0 && s.contexts == 0)
    });
}

#[test]
fn relay_off_is_the_control_media_goes_direct() {
    let _s = serial();
    let (srv, addr) = server(RelayMode::Off, (41_100, 41_199));
    let mut up = call_bob(addr);
    let a_remote = up.alice.media_remote(&up.a_call);
    assert!(!(41_100..=41_199).contains(&a_remote.port()), "{a_remote}");
    assert!(srv.relay_stats().is_none());
    std::thread::sleep(Duration::from_millis(800));
    assert!(tail(&up.b_sink, 440.0, 400) >= 0.9);
    up.a_call.hangup().unwrap();
    up.bob.state(&up.b_call, "bob ended", |s| {
        matches!(s, CallState::Ended { .. })
    });
}

#[test]
fn forked_call_answered_by_the_second_phone_collapses_to_its_branch() {
    let _s = serial();
    let (srv, addr) = server(RelayMode::Always, (41_200, 41_299));
    let mut alice = Party::new();
    let mut bob1 = Party::new();
    let mut bob2 = Party::new();
    let acc = alice.register(addr, "alice");
    bob1.register(addr, "bob");
    bob2.register(addr, "bob");
    let a_sink = SharedSink::new(8000);
    let b_sink = SharedSink::new(8000);
    let a_call = alice.call_bob(&acc, &a_sink);
    let c1 = bob1.incoming();
    let c2 = bob2.incoming();
    // Two branches: two contexts, eight ports.
    assert_eq!(srv.relay_stats().unwrap().ports_in_use, 8);
    c2.answer(CallOptions {
        source: tone(1000.0),
        sink: Some(Box::new(b_sink.clone())),
    })
    .unwrap();
    alice.state(&a_call, "connected", |s| *s == CallState::Connected);
    bob1.state(&c1, "first phone cancelled", |s| {
        matches!(s, CallState::Ended { .. })
    });
    wait_until("losing branch released", || {
        srv.relay_stats().is_some_and(|s| s.ports_in_use == 4)
    });
    std::thread::sleep(Duration::from_millis(1200));
    let (at_a, at_b) = (tail(&a_sink, 1000.0, 600), tail(&b_sink, 440.0, 600));
    assert!(at_a >= 0.9 && at_b >= 0.9, "alice {at_a:.3} bob2 {at_b:.3}");
    a_call.hangup().unwrap();
    bob2.state(&c2, "ended", |s| matches!(s, CallState::Ended { .. }));
    wait_until("ports freed", || {
        srv.relay_stats().is_some_and(|s| s.ports_in_use == 0)
    });
}

#[test]
fn exhausted_port_pool_answers_503_without_a_crash() {
    let _s = serial();
    // Room for exactly one relayed stream (two RTP/RTCP pairs).
    let (srv, addr) = server(RelayMode::Always, (41_300, 41_303));
    let mut up = call_bob(addr);
    let mut carol = Party::new();
    let acc = carol.register(addr, "carol");
    let c = carol
        .ep
        .make_call(Some(&acc), "sip:alice@127.0.0.1", CallOptions::default())
        .unwrap();
    let st = carol.state(&c, "refused", |s| matches!(s, CallState::Ended { .. }));
    assert!(matches!(st, CallState::Ended { status: 503, .. }), "{st:?}");
    // The first call is unharmed, and after it the pool serves again.
    std::thread::sleep(Duration::from_millis(600));
    assert!(tail(&up.b_sink, 440.0, 400) >= 0.9);
    up.a_call.hangup().unwrap();
    up.bob.state(&up.b_call, "ended", |s| {
        matches!(s, CallState::Ended { .. })
    });
    wait_until("ports freed", || {
        srv.relay_stats().is_some_and(|s| s.ports_in_use == 0)
    });
    let c = carol
        .ep
        .make_call(Some(&acc), "sip:bob@127.0.0.1", CallOptions::default())
        .unwrap();
    up.bob.seen.clear();
    let b = up.bob.incoming();
    let _ = b.answer(CallOptions::default());
    carol.state(&c, "second call connects", |s| *s == CallState::Connected);
    c.hangup().unwrap();
}

/// Hostile input on the real sockets of the relay driver: after both legs latched, RTP from a
/// third address is dropped; random, truncated and oversized datagrams to the relay's ports
/// cause no panic, are counted, and the legitimate stream keeps flowing.
#[test]
fn hostile_datagrams_to_relay_ports_are_dropped_and_counted() {
    use rand::{Rng, SeedableRng};
    use rvoip_sdk::driver::relay::RelayDriver;
    use rvoip_sdk::media::relay::{RelayConfig, Side};
    use rvoip_sdk::server::relay::RelayControl;
    use rvoip_sdk::server::relay::sdp::Stream;
    use std::net::UdpSocket;

    let _s = serial();
    let driver = RelayDriver::start(
        RelayConfig {
            port_min: 41_400,
            port_max: 41_499,
            ..RelayConfig::default()
        },
        "127.0.0.1".parse().unwrap(),
    )
    .expect("relay");
    let mut h = driver.handle();
    let now = Instant::now();
    let id = h.create(now).expect("context");
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Another host (loopback answers on all of 127/8).
    let evil = UdpSocket::bind("127.0.0.2:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    let stream = |addr: SocketAddr| Stream {
        index: 0,
        rtp: addr,
        rtcp: None,
        rtcp_mux: false,
        clock_rate: 8000,
        proto: "RTP/AVP".into(),
        secure: false,
    };
    h.set_remote(id, Side::Caller, &stream(a.local_addr().unwrap()))
        .unwrap();
    h.set_remote(id, Side::Callee, &stream(b.local_addr().unwrap()))
        .unwrap();
    h.confirm(now, id);
    let to_a_leg: SocketAddr = ([127, 0, 0, 1], h.local_port(id, Side::Caller).unwrap()).into();
    let to_b_leg: SocketAddr = ([127, 0, 0, 1], h.local_port(id, Side::Callee).unwrap()).into();
    let rtp = |ssrc: u32, seq: u16, marker: u8| {
        let mut p = vec![0u8; 172];
        p[0] = 0x80;
        p[1] = marker;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    };
    let mut buf = [0u8; 2048];
    // Both legs latch; packets cross.
    a.send_to(&rtp(0xA, 1, 0), to_a_leg).unwrap();
    let (n, _) = b.recv_from(&mut buf).expect("alice's packet reaches bob");
    assert_eq!(n, 172);
    b.send_to(&rtp(0xB, 1, 0), to_b_leg).unwrap();
    a.recv_from(&mut buf).expect("bob's packet reaches alice");
    // A third address, with the stream's SSRC or a new one, while alice is active: dropped,
    // nothing reaches bob (no media hijack).
    evil.send_to(&rtp(0xA, 2, 0), to_a_leg).unwrap();
    evil.send_to(&rtp(0xE, 3, 0), to_a_leg).unwrap();
    assert!(b.recv_from(&mut buf).is_err(), "hijacked packet forwarded");
    // Random, truncated and oversized datagrams to every port of the context.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let ports = [to_a_leg, to_b_leg]
        .into_iter()
        .flat_map(|p| [p, SocketAddr::new(p.ip(), p.port() + 1)]);
    let ports: Vec<SocketAddr> = ports.collect();
    let mut sent = 0u64;
    for i in 0..3000 {
        let dest = ports[i % ports.len()];
        let len = match i % 3 {
            0 => rng.gen_range(0..12),      // truncated
            1 => rng.gen_range(12..1400),   // random
            _ => rng.gen_range(1501..9000), // oversized
        };
        let mut d: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        if i % 3 == 1 && !d.is_empty() {
            d[0] = 0x00; // version 0: malformed
        }
        if evil.send_to(&d, dest).is_ok() {
            sent += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let st = h.stats();
    let dropped = st.dropped_malformed + st.dropped_oversized + st.dropped_foreign;
    assert!(st.dropped_foreign >= 2, "{st:?}");
    assert!(st.dropped_oversized >= 900, "{st:?}");
    assert!(st.dropped_malformed >= 1500, "{st:?}");
    assert!(dropped >= sent, "sent {sent}, counted {st:?}");
    // Nothing of it reached the phones, and the legitimate stream still flows.
    while b.recv_from(&mut buf).is_ok() {}
    a.send_to(&rtp(0xA, 4, 0), to_a_leg).unwrap();
    let (n, from) = b.recv_from(&mut buf).expect("stream still relayed");
    assert_eq!((n, from), (172, to_b_leg));
    assert!(h.release(id).is_some());
    assert_eq!(h.ports_in_use(), 0);
}

/// Through the relay thread (`RelayHandle`, not the sans-IO core), a stream whose SDP says SRTP
/// is forwarded byte for byte even with `rewrite_ssrc` on: rewriting its SSRC or sequence number
/// would break its authentication tag (RFC 3711 §3.4). The plain stream of the same context is
/// rewritten (the control: a new SSRC comes out as the first one), so the test fails when the
/// handle forgets to mark the secure leg.
#[test]
fn the_relay_thread_never_rewrites_an_srtp_stream() {
    use rvoip_sdk::driver::relay::RelayDriver;
    use rvoip_sdk::media::relay::{RelayConfig, Side};
    use rvoip_sdk::server::relay::RelayControl;
    use rvoip_sdk::server::relay::sdp::Stream;
    use std::net::UdpSocket;

    let _s = serial();
    let driver = RelayDriver::start(
        RelayConfig {
            port_min: 41_500,
            port_max: 41_599,
            rewrite_ssrc: true,
            ..RelayConfig::default()
        },
        "127.0.0.1".parse().unwrap(),
    )
    .expect("relay");
    let mut h = driver.handle();
    let now = Instant::now();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    let rtp = |ssrc: u32, seq: u16| {
        let mut p = vec![0u8; 182];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    };
    // The SSRC of what comes out of the relay when alice's stream changes SSRC from 0xA to 0xC.
    let mut ssrc_after_change = |secure: bool| -> u32 {
        let id = h.create(now).expect("context");
        let (proto, secure_caller) = if secure {
            ("RTP/SAVP", true)
        } else {
            ("RTP/AVP", false)
        };
        let stream = |addr: SocketAddr, secure: bool| Stream {
            index: 0,
            rtp: addr,
            rtcp: None,
            rtcp_mux: false,
            clock_rate: 8000,
            proto: proto.into(),
            secure,
        };
        h.set_remote(
            id,
            Side::Caller,
            &stream(a.local_addr().unwrap(), secure_caller),
        )
        .unwrap();
        h.set_remote(
            id,
            Side::Callee,
            &stream(b.local_addr().unwrap(), secure_caller),
        )
        .unwrap();
        let to_a_leg: SocketAddr = ([127, 0, 0, 1], h.local_port(id, Side::Caller).unwrap()).into();
        let mut buf = [0u8; 2048];
        a.send_to(&rtp(0xA, 1), to_a_leg).unwrap();
        let (n, _) = b.recv_from(&mut buf).expect("first packet relayed");
        assert_eq!(
            buf[..n],
            rtp(0xA, 1)[..],
            "the first packet passes unchanged"
        );
        let sent = rtp(0xC, 500);
        a.send_to(&sent, to_a_leg).unwrap();
        let (n, _) = b.recv_from(&mut buf).expect("second packet relayed");
        if secure {
            assert_eq!(
                buf[..n],
                sent[..],
                "an SRTP packet was modified by the relay"
            );
        }
        h.release(id);
        u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]])
    };
    assert_eq!(
        ssrc_after_change(false),
        0xA,
        "control: plain RTP is rewritten"
    );
    assert_eq!(ssrc_after_change(true), 0xC, "SRTP passes untouched");
}
