//! rvoip-server's proxy reaching another domain by DNS (RFC 3263), over real sockets on
//! 127.0.0.1 with a private dnsmasq (tests/common/dns.rs):
//! - server A serves `127.0.0.1` and asks dnsmasq; server B serves `other.test`, where bob is
//!   registered. dnsmasq has NAPTR `other.test` → `SIP+D2T` → `_sip._tcp.other.test`, whose SRV
//!   priority 10 names a refused port and priority 20 server B's TCP port.
//! - alice (account at A) calls `sip:bob@other.test`: A resolves NAPTR → SRV → A, tries the
//!   refused port, fails over to B at once (RFC 3263 §4.3; well under Timer B), B rings bob, the
//!   call connects and ends with BYE. dnsmasq saw the NAPTR and SRV queries.
//! - negative control: with only the refused port in DNS the call fails at once (a transport
//!   error ranked as 503, sent upstream as 500), never reaching bob.
//! - a `From` of another domain may not relay through A (403), and no DNS query is made.
//!
//! Without the proxy's DNS routing A answered every foreign Request-URI as a local user lookup
//! (404 for bob), so the first test fails at its "connected" wait; without failover it fails with
//! the 500 of the refused port.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::dns::{Dnsmasq, Record};
use common::{Party, serial, start_server};
use rvoip_sdk::api::{AccountOptions, CallOptions, CallState, EndpointConfig, Transport};

const LOCALHOST: [u8; 4] = [127, 0, 0, 1];

fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn party() -> Party {
    Party::with_config(EndpointConfig {
        stats_interval: None,
        ..EndpointConfig::loopback()
    })
}

/// dnsmasq for other.test: NAPTR → `_sip._tcp.other.test`, SRV priorities 10, 20… to `ports`.
fn dns_for(ports: &[u16]) -> Dnsmasq {
    let mut records = vec![
        Record::naptr("other.test", 10, 10, "SIP+D2T", "_sip._tcp.other.test"),
        Record::a("b.other.test", LOCALHOST),
    ];
    for (i, p) in ports.iter().enumerate() {
        records.push(Record::srv(
            "_sip._tcp.other.test",
            10 * (i as u16 + 1),
            0,
            *p,
            "b.other.test",
        ));
    }
    Dnsmasq::start(&records)
}

/// Server A (domain 127.0.0.1, UDP and TCP) resolving with `dns`.
fn server_a(dns: &Dnsmasq) -> (rvoip_sdk::api::Server, u16) {
    let dns_addr = dns.addr();
    let (s, ports) = start_server("127.0.0.1", &["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], |c| {
        c.dns_server = Some(dns_addr)
    });
    let udp = ports.port(Transport::Udp);
    (s, udp)
}

/// alice registers at A and calls `target`; returns the call's final state (or Connected).
fn alice_calls(a_udp: u16, target: &str, hang_up: bool) -> (CallState, Duration) {
    let mut alice = party();
    let mut o = AccountOptions::new("sip:alice@127.0.0.1", "apw");
    o.server = Some(format!("127.0.0.1:{a_udp}"));
    let acc = alice.register_with(o);
    let started = Instant::now();
    let call = alice
        .ep
        .make_call(Some(&acc), target, CallOptions::default())
        .expect("call placed");
    let state = alice.state(&call, "connected or ended", |s| {
        matches!(s, CallState::Connected | CallState::Ended { .. })
    });
    let took = started.elapsed();
    if hang_up && state == CallState::Connected {
        call.hangup().unwrap();
        let end = alice.state(&call, "ended", |s| matches!(s, CallState::Ended { .. }));
        assert!(
            matches!(end, CallState::Ended { status: 200, .. }),
            "{end:?}"
        );
    }
    (state, took)
}

#[test]
fn a_call_to_another_domain_follows_naptr_and_srv_and_fails_over_to_the_live_server() {
    let _s = serial();
    // Server B for other.test, without INVITE authentication (alice is not its user).
    let (_b, b_ports) = start_server("other.test", &["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], |c| {
        c.invite_auth = false
    });
    let dns = dns_for(&[refused_port(), b_ports.port(Transport::Tcp)]);
    let (_a, a_udp) = server_a(&dns);
    // bob registers at B (as bob@other.test) and answers.
    let mut bob = party();
    let mut o = AccountOptions::new("sip:bob@other.test", "bpw");
    o.server = Some(format!("127.0.0.1:{}", b_ports.port(Transport::Udp)));
    let _bob_acc = bob.register_with(o);
    let bob_thread = std::thread::spawn(move || {
        let call = bob.incoming();
        call.answer(CallOptions::default()).unwrap();
        bob.state(&call, "ended by alice", |s| {
            matches!(s, CallState::Ended { .. })
        })
    });
    let (state, took) = alice_calls(a_udp, "sip:bob@other.test", true);
    assert_eq!(state, CallState::Connected, "the call reached bob at B");
    assert!(
        took < Duration::from_secs(5),
        "failover took {took:?} (Timer B is 32 s)"
    );
    let bob_end = bob_thread.join().unwrap();
    assert!(
        matches!(bob_end, CallState::Ended { status: 200, .. }),
        "{bob_end:?}"
    );
    assert!(dns.was_asked("NAPTR", "other.test"), "{}", dns.log());
    assert!(
        dns.was_asked("SRV", "_sip._tcp.other.test"),
        "{}",
        dns.log()
    );
}

#[test]
fn only_a_dead_destination_fails_the_call_at_once() {
    let _s = serial();
    let dns = dns_for(&[refused_port()]);
    let (_a, a_udp) = server_a(&dns);
    let (state, took) = alice_calls(a_udp, "sip:bob@other.test", false);
    match state {
        CallState::Ended { status, .. } => assert_eq!(status, 500, "{state:?}"),
        other => panic!("the call should fail, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "failed after {took:?}");
}

#[test]
fn a_foreign_sender_cannot_relay_and_an_unauthenticated_user_is_challenged() {
    let _s = serial();
    let dns = dns_for(&[refused_port()]);
    let (_a, a_udp) = server_a(&dns);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = sock.local_addr().unwrap();
    let options = |from: &str, n: u32| {
        format!(
            "OPTIONS sip:carol@other.test SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKrelay{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <{from}>;tag=m{n}\r\nTo: <sip:carol@other.test>\r\n\
             Call-ID: relay{n}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let ask = |text: String| {
        sock.send_to(text.as_bytes(), ("127.0.0.1", a_udp)).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let foreign = ask(options("sip:mallory@evil.test", 1));
    assert!(foreign.starts_with("SIP/2.0 403"), "{foreign}");
    // One of A's users without credentials: challenged (the control: the From decides).
    let own = ask(options("sip:alice@127.0.0.1", 2));
    assert!(own.starts_with("SIP/2.0 407"), "{own}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!dns.was_asked("NAPTR", "other.test"), "{}", dns.log());
}
