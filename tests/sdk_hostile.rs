//! The SDK under hostile input (issue 13), over its real UDP socket on 127.0.0.1:
//! - every RFC 4475 torture message, and seeded byte mutations of each, sent at the endpoint:
//!   no panic, and it still answers afterwards;
//! - an app that does not read its events: the queue stops at `max_pending_events`, further
//!   events are dropped and counted, and an incoming call that cannot be announced is refused
//!   with 503 instead of ringing forever.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rvoip_sdk::api::{Endpoint, EndpointConfig};

fn endpoint(max_pending_events: usize) -> (Endpoint, SocketAddr) {
    let ep = Endpoint::new(EndpointConfig {
        max_pending_events,
        tcp: None,
        ..EndpointConfig::loopback()
    })
    .expect("endpoint");
    let addr = ep.udp_addr().expect("udp");
    (ep, addr)
}

fn request(method: &str, to: SocketAddr, n: u32, body: &str) -> Vec<u8> {
    let ct = if method == "INVITE" {
        "application/sdp"
    } else {
        "text/plain"
    };
    format!(
        "{method} sip:app@{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKsh{n}{method};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:peer@127.0.0.1:5999>;tag=p{n}\r\nTo: <sip:app@{to}>\r\n\
         Call-ID: sdk-hostile-{n}-{method}@test\r\nCSeq: 1 {method}\r\nContact: <sip:peer@127.0.0.1:5999>\r\n\
         Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Waits for a final response with Call-ID `call_id` on `sock`; its status.
fn final_status(sock: &std::net::UdpSocket, call_id: &str, within: Duration) -> Option<u16> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .ok()?;
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]);
        if !text.contains(call_id) {
            continue;
        }
        let status: u16 = text.get(8..11)?.parse().ok()?;
        if status >= 200 && text.starts_with("SIP/2.0 ") {
            return Some(status);
        }
    }
    None
}

#[test]
fn torture_messages_and_mutations_never_panic_the_endpoint() {
    let (ep, addr) = endpoint(10_000);
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/rfc4475");
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for e in std::fs::read_dir(&dir).expect("the RFC 4475 messages (../shared)") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "dat") {
            inputs.push(std::fs::read(&p).unwrap());
        }
    }
    assert!(
        inputs.len() >= 40,
        "RFC 4475 messages found: {}",
        inputs.len()
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Seeded mutations: flip, truncate, duplicate ranges (xorshift, fixed seed).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut sent = 0;
    for base in &inputs {
        let _ = sock.send_to(base, addr);
        for _ in 0..20 {
            let mut m = base.clone();
            if m.is_empty() {
                break;
            }
            match next() % 3 {
                0 => {
                    for _ in 0..(1 + next() % 8) {
                        let i = (next() as usize) % m.len();
                        m[i] ^= (next() & 0xff) as u8;
                    }
                }
                1 => m.truncate((next() as usize) % m.len()),
                _ => {
                    let i = (next() as usize) % m.len();
                    let tail = m[i..].to_vec();
                    m.extend_from_slice(&tail);
                }
            }
            let _ = sock.send_to(&m, addr);
            sent += 1;
            if sent % 50 == 0 {
                // Let the endpoint keep up (the kernel drops a long burst on a slow machine).
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // Still alive: an OPTIONS gets a final answer.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .send_to(&request("OPTIONS", addr, 1, ""), addr)
        .unwrap();
    assert!(
        final_status(&probe, "sdk-hostile-1-OPTIONS", Duration::from_secs(10)).is_some(),
        "the endpoint stopped answering after {sent} hostile datagrams"
    );
    drop(ep);
}

#[test]
fn unread_events_are_bounded_and_an_unannounced_call_is_refused() {
    let (ep, addr) = endpoint(8);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // MESSAGEs nobody reads: 8 queued, the rest dropped and counted.
    for n in 0..40u32 {
        sock.send_to(&request("MESSAGE", addr, n, "hello"), addr)
            .unwrap();
        assert!(
            final_status(
                &sock,
                &format!("sdk-hostile-{n}-MESSAGE"),
                Duration::from_secs(10)
            )
            .is_some(),
            "MESSAGE {n} answered"
        );
    }
    // The queue holds max_pending_events (one more may be in the handover): the rest dropped.
    let dropped = ep.dropped_events();
    assert!((31..=32).contains(&dropped), "dropped {dropped}");
    // A call arriving now cannot be announced: 503, not a call ringing forever.
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    sock.send_to(&request("INVITE", addr, 100, sdp), addr)
        .unwrap();
    assert_eq!(
        final_status(&sock, "sdk-hostile-100-INVITE", Duration::from_secs(10)),
        Some(503)
    );
    // Reading frees the queue: the next call is announced.
    let mut read = 0;
    while ep.next_event(Duration::from_millis(100)).is_some() {
        read += 1;
    }
    assert!(
        (8..=9).contains(&read),
        "read {read}: the queue was not bounded"
    );
    sock.send_to(&request("INVITE", addr, 101, sdp), addr)
        .unwrap();
    let t0 = Instant::now();
    let mut announced = false;
    while t0.elapsed() < Duration::from_secs(10) && !announced {
        if let Some(ev) = ep.next_event(Duration::from_millis(200)) {
            announced = matches!(ev, rvoip_sdk::api::Event::IncomingCall { .. });
        }
    }
    assert!(announced, "the call after the queue drained was announced");
}
