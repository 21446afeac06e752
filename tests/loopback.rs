//! Loopback tests through the real tokio driver (UDP and TCP sockets on 127.0.0.1:0):
//! REGISTER with digest over both transports, TCP framing of several messages in one segment,
//! and a call from a TCP caller to a UDP callee (double Record-Route, RFC 5658).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rvoip_sdk::auth::authorization_value;
use rvoip_sdk::driver::BoundServer;
use rvoip_sdk::server::config::{ListenSpec, ServerConfig};
use rvoip_sdk::sip::msg::{Auth, HeaderName, Limits, Message, Response};
use rvoip_sdk::sip::transaction::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(5);

async fn start() -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut cfg = ServerConfig {
        listen: vec![
            "udp:127.0.0.1:0".parse::<ListenSpec>().unwrap(),
            "tcp:127.0.0.1:0".parse().unwrap(),
        ],
        domain: Some("127.0.0.1".into()),
        ..ServerConfig::default()
    };
    cfg.users.insert("alice".into(), "apw".into());
    cfg.users.insert("bob".into(), "bpw".into());
    let server = BoundServer::bind(&cfg).await.expect("bind");
    let udp = server
        .bound()
        .iter()
        .find(|(t, _)| *t == Transport::Udp)
        .unwrap()
        .1;
    let tcp = server
        .bound()
        .iter()
        .find(|(t, _)| *t == Transport::Tcp)
        .unwrap()
        .1;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (udp, tcp, tx)
}

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn parse(b: &[u8]) -> Message {
    Message::parse(Bytes::copy_from_slice(b), &Limits::default()).expect("parsable")
}

fn response(m: Message) -> Response {
    match m {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected response, got {}", r.method),
    }
}

fn register_text(user: &str, contact: &str, transport: &str, cseq: u32, auth: &str) -> String {
    crlf(&format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/{transport} {contact};branch=z9hG4bKlb{user}{cseq}{transport}\nMax-Forwards: 70\n\
         From: <sip:{user}@127.0.0.1>;tag=lb{cseq}\nTo: <sip:{user}@127.0.0.1>\nCall-ID: lb-{user}-{transport}@test\nCSeq: {cseq} REGISTER\n\
         Contact: <sip:{user}@{contact};transport={}>\n{auth}Expires: 300\nContent-Length: 0\n\n",
        transport.to_ascii_lowercase()
    ))
}

fn answer(
    r: &Response,
    name: &HeaderName,
    user: &str,
    pw: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let ch = r.headers.get(name).expect("challenge");
    authorization_value(&Auth::parse(ch).unwrap(), user, pw, method, uri, 1, cnonce)
        .expect("answerable")
}

async fn udp_exchange(sock: &UdpSocket, to: SocketAddr, text: &str) -> Response {
    sock.send_to(text.as_bytes(), to).await.unwrap();
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        let r = response(parse(&buf[..n]));
        if r.status >= 200 {
            return r;
        }
    }
}

/// Reads one Content-Length-framed message from a TCP stream (test helper; small messages).
async fn tcp_read(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Message {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            let cl: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let total = end + 4 + cl;
            if pending.len() >= total {
                let msg: Vec<u8> = pending.drain(..total).collect();
                return parse(&msg);
            }
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("data in time")
            .unwrap();
        assert!(n > 0, "server closed the connection");
        pending.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn udp_register_with_digest() {
    let (udp, _tcp, _stop) = start().await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap().to_string();
    let r = udp_exchange(&sock, udp, &register_text("bob", &me, "UDP", 1, "")).await;
    assert_eq!(r.status, 401);
    let authz = answer(
        &r,
        &HeaderName::WwwAuthenticate,
        "bob",
        "bpw",
        "REGISTER",
        "sip:127.0.0.1",
        "u1",
    );
    let r = udp_exchange(
        &sock,
        udp,
        &register_text("bob", &me, "UDP", 2, &format!("Authorization: {authz}\n")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get(&HeaderName::Contact).unwrap().contains(&me));
}

#[tokio::test]
async fn tcp_register_and_call_to_udp_callee() {
    let (udp, tcp, _stop) = start().await;
    // bob registers over UDP.
    let bob = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bob_addr = bob.local_addr().unwrap().to_string();
    let r = udp_exchange(&bob, udp, &register_text("bob", &bob_addr, "UDP", 1, "")).await;
    let authz = answer(
        &r,
        &HeaderName::WwwAuthenticate,
        "bob",
        "bpw",
        "REGISTER",
        "sip:127.0.0.1",
        "b1",
    );
    assert_eq!(
        udp_exchange(
            &bob,
            udp,
            &register_text(
                "bob",
                &bob_addr,
                "UDP",
                2,
                &format!("Authorization: {authz}\n")
            )
        )
        .await
        .status,
        200
    );

    // alice registers over TCP: a CRLF keep-alive and both REGISTERs' framing on one connection.
    let mut alice = TcpStream::connect(tcp).await.unwrap();
    let alice_addr = alice.local_addr().unwrap().to_string();
    let mut pending = Vec::new();
    alice.write_all(b"\r\n\r\n").await.unwrap();
    alice
        .write_all(register_text("alice", &alice_addr, "TCP", 1, "").as_bytes())
        .await
        .unwrap();
    let r = response(tcp_read(&mut alice, &mut pending).await);
    assert_eq!(r.status, 401);
    let authz = answer(
        &r,
        &HeaderName::WwwAuthenticate,
        "alice",
        "apw",
        "REGISTER",
        "sip:127.0.0.1",
        "a1",
    );
    alice
        .write_all(
            register_text(
                "alice",
                &alice_addr,
                "TCP",
                2,
                &format!("Authorization: {authz}\n"),
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(
        response(tcp_read(&mut alice, &mut pending).await).status,
        200
    );

    // alice (TCP) calls bob (UDP), without invite auth challenge answered first.
    let invite = |cseq: u32, auth: &str| {
        crlf(&format!(
            "INVITE sip:bob@127.0.0.1 SIP/2.0\nVia: SIP/2.0/TCP {alice_addr};branch=z9hG4bKlbinv{cseq}\nMax-Forwards: 70\n\
             From: <sip:alice@127.0.0.1>;tag=al\nTo: <sip:bob@127.0.0.1>\nCall-ID: lbcall@test\nCSeq: {cseq} INVITE\n\
             Contact: <sip:alice@{alice_addr};transport=tcp>\n{auth}Content-Length: 0\n\n"
        ))
    };
    alice.write_all(invite(1, "").as_bytes()).await.unwrap();
    let mut r = response(tcp_read(&mut alice, &mut pending).await);
    if r.status == 100 {
        r = response(tcp_read(&mut alice, &mut pending).await);
    }
    assert_eq!(r.status, 407);
    let authz = answer(
        &r,
        &HeaderName::ProxyAuthenticate,
        "alice",
        "apw",
        "INVITE",
        "sip:bob@127.0.0.1",
        "a2",
    );
    alice
        .write_all(invite(2, &format!("Proxy-Authorization: {authz}\n")).as_bytes())
        .await
        .unwrap();

    let mut buf = vec![0u8; 65535];
    let (n, from) = tokio::time::timeout(WAIT, bob.recv_from(&mut buf))
        .await
        .expect("INVITE forwarded")
        .unwrap();
    assert_eq!(from, udp);
    let Message::Request(inv) = parse(&buf[..n]) else {
        panic!("expected INVITE")
    };
    let rrs: Vec<String> = inv
        .headers
        .get_all(&HeaderName::RecordRoute)
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        rrs.len(),
        2,
        "double Record-Route on a transport change: {rrs:?}"
    );
    assert!(
        rrs[0].contains(&udp.to_string()) && rrs[1].contains("transport=tcp"),
        "{rrs:?}"
    );

    // bob answers 200 over UDP; alice gets it on her TCP connection.
    let mut ok = Response::for_request(&inv, 200);
    ok.headers.set(HeaderName::To, "<sip:bob@127.0.0.1>;tag=bt");
    for rr in &rrs {
        ok.headers.push(HeaderName::RecordRoute, rr.clone());
    }
    ok.headers
        .push(HeaderName::Contact, format!("<sip:bob@{bob_addr}>"));
    bob.send_to(&ok.to_bytes(), udp).await.unwrap();
    let mut r = response(tcp_read(&mut alice, &mut pending).await);
    while r.status < 200 {
        r = response(tcp_read(&mut alice, &mut pending).await);
    }
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get_all(&HeaderName::Via).count(), 1);
}
