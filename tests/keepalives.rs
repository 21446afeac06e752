//! Keep-alives on rvoip-server's SIP ports (RFC 5626 §3.5, §4.4; issue 17), over real sockets
//! on 127.0.0.1:
//! - a double-CRLF ping over TCP and over TLS is answered with a single CRLF pong, a lone CRLF
//!   (a pong) is not answered, and SIP goes on over the same connection afterwards;
//! - a STUN Binding request on the SIP UDP port is answered with a Binding success response
//!   that carries the request's source address (XOR-MAPPED-ADDRESS) and its transaction id;
//!   a STUN indication gets no answer, and SIP goes on over the same socket.
//!
//! Without the feature every answer is missing, so each case fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::message::{
    BINDING_REQUEST, BINDING_SUCCESS, CLASS_INDICATION, Getter, METHOD_BINDING, Message,
    MessageType, Setter, TransactionId,
};
use rtc_stun::xoraddr::XorMappedAddress;
use rvoip_sdk::api::{Server, ServerConfig, TlsOptions, Transport};
use rvoip_sdk::driver::tls::client_config;
use rvoip_sdk::server::config::ListenSpec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rvoip-ka-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn server(tag: &str) -> (Server, impl Fn(Transport) -> SocketAddr) {
    let mut cfg = ServerConfig {
        listen: ["udp", "tcp", "tls"]
            .iter()
            .map(|t| format!("{t}:127.0.0.1:0").parse::<ListenSpec>().unwrap())
            .collect(),
        domain: Some("127.0.0.1".into()),
        data_dir: Some(temp_dir(tag)),
        relay: "off".parse().unwrap(),
        ..ServerConfig::default()
    };
    cfg.users.insert("alice".into(), "apw".into());
    let server = Server::new(cfg);
    server.start().expect("server starts");
    let addrs = server.local_addrs();
    let addr = move |t: Transport| addrs.iter().find(|(k, _)| *k == t).unwrap().1;
    (server, addr)
}

fn options(transport: &str, tag: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} ka.invalid;branch=z9hG4bK-ka-{tag};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=ka\r\n\
         To: <sip:127.0.0.1>\r\n\
         Call-ID: ka-{tag}@ka.invalid\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Reads until `done` holds for what arrived, or 5 s passed (slow CI machines).
async fn read_until<S: AsyncRead + Unpin>(s: &mut S, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done(&got) {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

/// Ping, pong; a pong gets no answer (the next bytes are the answer to the SIP request sent
/// right after it); SIP goes on over the same connection.
async fn ping_pong<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, transport: &str) {
    s.write_all(b"\r\n\r\n").await.unwrap();
    assert_eq!(
        read_until(s, |b| b.len() >= 2).await,
        b"\r\n",
        "{transport}: a double CRLF is answered with one CRLF"
    );
    s.write_all(b"\r\n").await.unwrap();
    s.write_all(options(transport, transport).as_bytes())
        .await
        .unwrap();
    let answer = read_until(s, |b| b.windows(4).any(|w| w == b"\r\n\r\n")).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("SIP/2.0 "),
        "{transport}: a lone CRLF (a pong) is not answered, and SIP goes on: {answer:?}"
    );
}

/// Runs `body` in a runtime of its own (`Server::start` blocks, so it runs outside one).
fn block_on<F: std::future::Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
}

#[test]
fn crlf_pings_over_tcp_and_tls_get_pongs() {
    let (server, addr) = server("crlf");
    block_on(async {
        let mut tcp = TcpStream::connect(addr(Transport::Tcp)).await.unwrap();
        ping_pong(&mut tcp, "TCP").await;
        let cfg = client_config(&TlsOptions {
            ca_file: None,
            pin_sha256: server.tls_fingerprint(),
        })
        .unwrap();
        let raw = TcpStream::connect(addr(Transport::Tls)).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(cfg)
            .connect("127.0.0.1".try_into().unwrap(), raw)
            .await
            .expect("tls handshake");
        ping_pong(&mut tls, "TLS").await;
    });
    server.stop();
}

fn binding(class_indication: bool) -> Message {
    let mut m = Message::new();
    m.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .unwrap();
    if class_indication {
        m.set_type(MessageType::new(METHOD_BINDING, CLASS_INDICATION));
    }
    FINGERPRINT.add_to(&mut m).unwrap();
    m
}

async fn recv_within(sock: &UdpSocket, within: Duration) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    match tokio::time::timeout(within, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

#[test]
fn stun_binding_on_the_sip_udp_port_reports_the_source() {
    let (server, addr) = server("stun");
    block_on(async {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(addr(Transport::Udp)).await.unwrap();
        let me = sock.local_addr().unwrap();

        // An indication gets no answer (RFC 5389 §7.3.2): the first datagram back answers
        // the request sent after it.
        sock.send(&binding(true).raw).await.unwrap();
        let req = binding(false);
        sock.send(&req.raw).await.unwrap();
        let raw = recv_within(&sock, Duration::from_secs(5))
            .await
            .expect("a Binding request is answered");
        let mut resp = Message::new();
        resp.unmarshal_binary(&raw).unwrap();
        assert_eq!(resp.typ, BINDING_SUCCESS);
        assert_eq!(resp.transaction_id, req.transaction_id);
        FINGERPRINT.check(&resp).expect("fingerprint");
        let mut mapped = XorMappedAddress {
            ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            port: 0,
        };
        mapped.get_from(&resp).unwrap();
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), me);

        // SIP on the same socket still works.
        sock.send(options("UDP", "udp").as_bytes()).await.unwrap();
        let answer = recv_within(&sock, Duration::from_secs(5))
            .await
            .expect("SIP answered");
        assert!(answer.starts_with(b"SIP/2.0 "));
    });
    server.stop();
}
