//! SRTP between two SDK endpoints on loopback (direct calls, real UDP sockets): DTLS-SRTP and
//! SDES keys, the tone both ways, policies that refuse (488, never plaintext), and forged or
//! replayed packets at the real RTP socket dropped and counted without disturbing the call.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use rvoip_sdk::api::{
    AccountOptions, AudioCodec, Call, CallOptions, CallState, EndpointConfig, Event, SrtpConfig,
    SrtpKeying, SrtpPolicy,
};
use rvoip_sdk::media::audio::{SharedSink, ToneSource};
use rvoip_sdk::media::tone::tone_fraction_blocks;

mod common;
use common::{Party, serial};

fn party(srtp: SrtpConfig) -> Party {
    Party::with_config(EndpointConfig {
        codecs: vec![AudioCodec::PCMU],
        stats_interval: None,
        srtp,
        ..EndpointConfig::loopback()
    })
}

fn policy(policy: SrtpPolicy, keying: SrtpKeying, sdes_over_insecure: bool) -> SrtpConfig {
    SrtpConfig {
        policy,
        keying,
        sdes_over_insecure,
    }
}

fn tone(hz: f64) -> Option<Box<dyn rvoip_sdk::api::AudioSource>> {
    Some(Box::new(ToneSource::new(hz, 8000, 10_000)))
}

/// Share of the energy at `hz` in the last `ms` of `sink`, per 20 ms block.
fn tail(sink: &SharedSink, hz: f64, ms: usize) -> f64 {
    let s = sink.samples();
    let n = (8 * ms).min(s.len());
    tone_fraction_blocks(&s[s.len() - n..], hz, 8000, 160)
}

struct Up {
    _alice: Party,
    bob: Party,
    a_call: Call,
    b_call: Call,
    a_sink: SharedSink,
    b_sink: SharedSink,
    /// Where alice sends bob's RTP (bob's RTP socket: a direct call).
    bob_rtp: SocketAddr,
    a_security: String,
}

/// Alice calls bob directly; both answer with tones (alice 440 Hz, bob 1000 Hz).
fn call(a: SrtpConfig, b: SrtpConfig) -> Up {
    let mut alice = party(a);
    let mut bob = party(b);
    let target = format!("sip:bob@{}", bob.ep.udp_addr().unwrap());
    let (a_sink, b_sink) = (SharedSink::new(8000), SharedSink::new(8000));
    let a_call = alice
        .ep
        .make_call(
            None,
            &target,
            CallOptions {
                source: tone(440.0),
                sink: Some(Box::new(a_sink.clone())),
            },
        )
        .unwrap();
    let b_call = bob.incoming();
    b_call
        .answer(CallOptions {
            source: tone(1000.0),
            sink: Some(Box::new(b_sink.clone())),
        })
        .unwrap();
    let (bob_rtp, a_security) = alice.wait("alice's media", |e| match e {
        Event::MediaStarted {
            remote, security, ..
        } => Some((*remote, security.clone())),
        _ => None,
    });
    alice.state(&a_call, "alice connected", |s| *s == CallState::Connected);
    Up {
        _alice: alice,
        bob,
        a_call,
        b_call,
        a_sink,
        b_sink,
        bob_rtp,
        a_security,
    }
}

fn hang_up(mut up: Up) {
    up.a_call.hangup().unwrap();
    up.bob.state(&up.b_call, "bob ended", |s| {
        matches!(s, CallState::Ended { status: 200, .. })
    });
}

#[test]
fn dtls_srtp_call_over_udp_signalling_carries_both_tones() {
    let _s = serial();
    // Mandatory over plain UDP signalling: SDES may not be used, so the offer is DTLS-SRTP.
    let up = call(
        policy(SrtpPolicy::Mandatory, SrtpKeying::Auto, false),
        SrtpConfig::default(),
    );
    assert_eq!(up.a_security, "DTLS-SRTP");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(tail(&up.b_sink, 440.0, 800) >= 0.9, "bob hears alice");
    assert!(tail(&up.a_sink, 1000.0, 800) >= 0.9, "alice hears bob");
    for c in [&up.a_call, &up.b_call] {
        let st = c.stats().unwrap();
        assert_eq!(st.srtp_keying, Some("DTLS"), "{st:?}");
        assert!(st.srtp_suite.is_some() && st.rx_packets > 50, "{st:?}");
        assert_eq!((st.srtp_auth_failures, st.srtp_replays), (0, 0), "{st:?}");
    }
    hang_up(up);
}

#[test]
fn sdes_over_udp_only_when_both_allow_it() {
    let _s = serial();
    let allow = policy(SrtpPolicy::Mandatory, SrtpKeying::Sdes, true);
    let up = call(allow, policy(SrtpPolicy::Optional, SrtpKeying::Auto, true));
    assert!(up.a_security.starts_with("SDES "), "{}", up.a_security);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(tail(&up.b_sink, 440.0, 600) >= 0.9);
    assert!(tail(&up.a_sink, 1000.0, 600) >= 0.9);
    assert_eq!(up.b_call.stats().unwrap().srtp_keying, Some("SDES"));
    hang_up(up);
    // The callee does not allow SDES over UDP: 488, and the caller (mandatory) says why.
    let mut alice = party(allow);
    let mut bob = party(SrtpConfig::default());
    let target = format!("sip:bob@{}", bob.ep.udp_addr().unwrap());
    let c = alice
        .ep
        .make_call(None, &target, CallOptions::default())
        .unwrap();
    let reason = alice.wait("refused", |e| match e {
        Event::CallState {
            state:
                CallState::Ended {
                    status: 488,
                    reason,
                },
            ..
        } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.contains("SRTP"), "{reason}");
    let _ = c;
    bob.drain();
}

#[test]
fn mandatory_and_off_never_agree_on_plaintext() {
    let _s = serial();
    for (a, b) in [
        // An SRTP offer to an account with SRTP off: 488.
        (
            policy(SrtpPolicy::Mandatory, SrtpKeying::Auto, false),
            policy(SrtpPolicy::Off, SrtpKeying::Auto, false),
        ),
        // A plain offer to an account with SRTP mandatory: 488.
        (
            policy(SrtpPolicy::Off, SrtpKeying::Auto, false),
            policy(SrtpPolicy::Mandatory, SrtpKeying::Auto, false),
        ),
    ] {
        let mut alice = party(a);
        let bob = party(b);
        let target = format!("sip:bob@{}", bob.ep.udp_addr().unwrap());
        alice
            .ep
            .make_call(None, &target, CallOptions::default())
            .unwrap();
        let status = alice.wait("the call's end", |e| match e {
            Event::CallState {
                state: CallState::Ended { status, .. },
                ..
            } => Some(*status),
            Event::MediaStarted { .. } => panic!("media started between {a:?} and {b:?}"),
            _ => None,
        });
        assert_eq!(status, 488, "{a:?} -> {b:?}");
        std::thread::sleep(Duration::from_millis(100));
        while let Some(ev) = bob.ep.next_event(Duration::from_millis(10)) {
            assert!(
                !matches!(ev, Event::IncomingCall { .. }),
                "bob was offered a call it cannot take"
            );
        }
    }
}

#[test]
fn forged_and_replayed_packets_at_the_socket_are_dropped_and_counted() {
    let _s = serial();
    let allow = policy(SrtpPolicy::Mandatory, SrtpKeying::Sdes, true);
    let up = call(allow, allow);
    std::thread::sleep(Duration::from_millis(500));
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Plain RTP of bob's payload type, SRTP-looking packets with random tags, and garbage.
    // In batches of 40 datagrams, each one accounted for before the next batch goes: the
    // receive buffer never holds more than a batch, so the kernel drops none of them.
    let counted = |c: &Call| {
        let st = c.stats().unwrap();
        st.srtp_auth_failures + st.srtp_replays + st.srtp_dropped
    };
    let before = counted(&up.b_call);
    let before_auth = up.b_call.stats().unwrap().srtp_auth_failures;
    for batch in 0..10u32 {
        for i in batch * 20..batch * 20 + 20 {
            let mut p = vec![0x80, 0x00];
            p.extend_from_slice(&(i as u16).to_be_bytes());
            p.extend_from_slice(&(i * 160).to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            p.extend((0..170).map(|j| (i as u8).wrapping_mul(31).wrapping_add(j as u8)));
            attacker.send_to(&p, up.bob_rtp).unwrap();
            attacker
                .send_to(&p[..(i as usize % 40)], up.bob_rtp)
                .unwrap();
        }
        let want = before + u64::from(batch + 1) * 40;
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while counted(&up.b_call) < want && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let st = up.b_call.stats().unwrap();
    // Every datagram was dropped and counted once; the 200 full-size ones failed authentication.
    assert_eq!(counted(&up.b_call) - before, 400, "{st:?}");
    assert!(st.srtp_auth_failures - before_auth >= 200, "{st:?}");
    std::thread::sleep(Duration::from_millis(700));
    assert!(tail(&up.b_sink, 440.0, 600) >= 0.9, "bob still hears alice");
    assert!(tail(&up.a_sink, 1000.0, 600) >= 0.9);
    hang_up(up);
}

#[test]
fn dtls_and_sdes_through_the_server_and_its_relay() {
    let _s = serial();
    for (keying, name) in [(SrtpKeying::Dtls, "DTLS"), (SrtpKeying::Sdes, "SDES")] {
        let (_srv, ports) = common::start_server("127.0.0.1", &["udp:127.0.0.1:0"], |c| {
            c.relay = "always".parse().unwrap();
            c.relay_ports = "41000-41099".parse().unwrap();
        });
        let server = format!("127.0.0.1:{}", ports.port(rvoip_sdk::api::Transport::Udp));
        let srtp = policy(SrtpPolicy::Mandatory, keying, true);
        let (mut alice, mut bob) = (party(SrtpConfig::default()), party(SrtpConfig::default()));
        // The policy is the accounts' (EndpointConfig::srtp covers calls without one).
        let account = |user: &str, pw: &str| {
            let mut o = AccountOptions::new(&format!("sip:{user}@127.0.0.1"), pw);
            o.server = Some(server.clone());
            o.srtp = srtp;
            o
        };
        let a_acc = alice.register_with(account("alice", "apw"));
        bob.register_with(account("bob", "bpw"));
        let (a_sink, b_sink) = (SharedSink::new(8000), SharedSink::new(8000));
        let a_call = alice
            .ep
            .make_call(
                Some(&a_acc),
                "sip:bob@127.0.0.1",
                CallOptions {
                    source: tone(440.0),
                    sink: Some(Box::new(a_sink.clone())),
                },
            )
            .unwrap();
        let b_call = bob.incoming();
        b_call
            .answer(CallOptions {
                source: tone(1000.0),
                sink: Some(Box::new(b_sink.clone())),
            })
            .unwrap();
        let remote = alice.wait("alice's media", |e| match e {
            Event::MediaStarted { remote, .. } => Some(*remote),
            _ => None,
        });
        assert!(
            (41000..41100).contains(&remote.port()),
            "{name}: via the relay: {remote}"
        );
        alice.state(&a_call, "connected", |s| *s == CallState::Connected);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(tail(&b_sink, 440.0, 600) >= 0.9, "{name}: bob hears alice");
        assert!(tail(&a_sink, 1000.0, 600) >= 0.9, "{name}: alice hears bob");
        for c in [&a_call, &b_call] {
            let st = c.stats().unwrap();
            assert_eq!(st.srtp_keying, Some(name), "{st:?}");
            assert_eq!(st.srtp_auth_failures, 0, "{st:?}");
        }
        a_call.hangup().unwrap();
        bob.state(&b_call, "bob ended", |s| {
            matches!(s, CallState::Ended { status: 200, .. })
        });
    }
}
