//! No silent security downgrade (issues 10 and 11), checked on the wire with real sockets:
//! - the SDK sends `sips:` and `transport=tls` targets over TLS only: a UDP socket on the
//!   target's address receives nothing, and every TCP connection to it opens with a TLS record
//!   (a ClientHello), never plaintext SIP; the call then fails with a 503 that says why (the
//!   listener is no TLS server). WebSocket targets and a `sips:` AOR over UDP are refused
//!   locally. A plain `sip:` target is the control that does reach the capture in plaintext.
//! - an SDK endpoint answers an `RTP/SAVP` offer with 488 and sends no RTP to the offered port.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use rvoip_sdk::api::{
    AccountOptions, ApiError, CallOptions, CallState, Endpoint, EndpointConfig, Event, Transport,
};

fn endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        ..EndpointConfig::default()
    })
    .expect("endpoint")
}

/// Everything that arrives on `udp`, and the first bytes of every TCP connection on `tcp`
/// (closed right after), within `d`.
fn capture(udp: &UdpSocket, tcp: &TcpListener, d: Duration) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    udp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    tcp.set_nonblocking(true).unwrap();
    let end = std::time::Instant::now() + d;
    let (mut datagrams, mut conns) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end {
        if let Ok((n, _)) = udp.recv_from(&mut buf) {
            datagrams.push(buf[..n].to_vec());
        }
        if let Ok((mut c, _)) = tcp.accept() {
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut first = [0u8; 8];
            let n = c.read(&mut first).unwrap_or(0);
            conns.push(first[..n].to_vec());
        }
    }
    (datagrams, conns)
}

/// A TLS record header: handshake (22), version 3.x.
fn is_tls_record(b: &[u8]) -> bool {
    b.len() >= 3 && b[0] == 0x16 && b[1] == 0x03
}

#[test]
fn sips_and_tls_targets_go_over_tls_only_and_nothing_plaintext_reaches_the_wire() {
    let ep = endpoint();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let tcp = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let targets = [
        format!("sips:bob@127.0.0.1:{port}"),
        format!("sip:bob@127.0.0.1:{port};transport=tls"),
        format!("sip:bob@127.0.0.1:{port};transport=TLS"),
    ];
    let mut calls = Vec::new();
    for target in &targets {
        calls.push(
            ep.make_call(None, target, CallOptions::default())
                .unwrap_or_else(|e| panic!("{target}: {e}")),
        );
    }
    // Refused locally: no endpoint WebSocket, and a sips: AOR or target over plaintext.
    for target in [
        format!("sip:bob@127.0.0.1:{port};transport=ws"),
        format!("sips:bob@127.0.0.1:{port};transport=udp"),
    ] {
        assert!(
            matches!(
                ep.make_call(None, &target, CallOptions::default()),
                Err(ApiError::InvalidArgument(_))
            ),
            "{target}: call placed"
        );
    }
    let mut o = AccountOptions::new(&format!("sips:alice@127.0.0.1:{port}"), "pw");
    o.transport = Transport::Udp;
    assert!(matches!(
        ep.add_account(o),
        Err(ApiError::InvalidArgument(_))
    ));
    let (datagrams, conns) = capture(&udp, &tcp, Duration::from_millis(1500));
    assert!(
        datagrams.is_empty(),
        "plaintext sent over UDP: {datagrams:?}"
    );
    assert!(
        !conns.is_empty(),
        "no TLS connection attempt reached the listener"
    );
    for c in &conns {
        assert!(
            is_tls_record(c),
            "not TLS on the wire: {:?}",
            String::from_utf8_lossy(c)
        );
    }
    // Every call ends with a 503 naming the TLS failure.
    let mut ended = 0;
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while ended < calls.len() && std::time::Instant::now() < end {
        if let Some(Event::CallState {
            state: CallState::Ended { status, reason, .. },
            ..
        }) = ep.next_event(Duration::from_millis(100))
        {
            assert_eq!(status, 503, "{reason}");
            assert!(reason.contains("TLS"), "{reason}");
            ended += 1;
        }
    }
    assert_eq!(ended, calls.len(), "not every TLS call failed");
    // Control: a plain sip: target does reach the capture (so the check above can fail).
    let call = ep
        .make_call(
            None,
            &format!("sip:bob@127.0.0.1:{port}"),
            CallOptions::default(),
        )
        .expect("plain call");
    let (datagrams, _) = capture(&udp, &tcp, Duration::from_millis(700));
    assert!(
        datagrams.iter().any(|d| d.starts_with(b"INVITE ")),
        "the control INVITE was not captured"
    );
    let _ = call.hangup();
    ep.shutdown();
}

fn invite(to: SocketAddr, from: SocketAddr, proto: &str, rtp_port: u16) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    );
    format!(
        "INVITE sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-savp-{proto_tag}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{from}>;tag=a1\r\nTo: <sip:bob@{to}>\r\n\
         Call-ID: savp-{proto_tag}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{from}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        proto_tag = proto.replace('/', "")
    )
}

#[test]
fn savp_offer_gets_488_and_no_plaintext_rtp() {
    let ep = endpoint();
    let to = ep.udp_addr().expect("udp");
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    let from = sip.local_addr().unwrap();
    sip.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for proto in ["RTP/SAVP", "RTP/SAVPF"] {
        sip.send_to(invite(to, from, proto, rtp_port).as_bytes(), to)
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut finals = Vec::new();
        while finals.is_empty() {
            let (n, _) = sip.recv_from(&mut buf).expect("an answer");
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let status: u16 = text.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0);
            if status >= 200 {
                finals.push(status);
            }
        }
        assert_eq!(finals, vec![488], "{proto}");
    }
    // Nothing plaintext toward the offered RTP port.
    rtp.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(rtp.recv_from(&mut buf).is_err(), "RTP sent in plaintext");
    // Control: the same offer with RTP/AVP is accepted (ringing or answered, not 488).
    sip.send_to(invite(to, from, "RTP/AVP", rtp_port).as_bytes(), to)
        .unwrap();
    // (Skip retransmissions of the unacknowledged 488s above.)
    let text = loop {
        let (n, _) = sip.recv_from(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.contains("Call-ID: savp-RTPAVP@") {
            break text;
        }
    };
    assert!(!text.starts_with("SIP/2.0 488"), "{text}");
    ep.shutdown();
}
