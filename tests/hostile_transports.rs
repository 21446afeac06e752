//! WebSocket listeners (RFC 7118) and hostile input on the TLS and WebSocket listeners of
//! rvoip-server (issue 11), over real sockets on 127.0.0.1:
//! - an upgrade must ask for the `sip` subprotocol: without it the answer is 400, counted; with
//!   it the answer carries `Sec-WebSocket-Protocol: sip`, and a REGISTER over ws: and wss: gets
//!   its 401 challenge back down the same WebSocket;
//! - a WebSocket message larger than the parser's limit closes that connection (counted), and
//!   the listener goes on serving;
//! - garbage instead of a TLS handshake (tls: and wss:) and instead of an HTTP upgrade (ws:) is
//!   counted and the connection closed;
//! - a handshake that stalls is dropped after the 10 s handshake timeout, counted.
//!
//! Each case also checks the counter was 0 before, so a listener that ignored the input (or
//! kept the connection) fails the test.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rvoip_sdk::api::{Server, ServerConfig, TlsOptions, Transport};
use rvoip_sdk::driver::tls::client_config;
use rvoip_sdk::server::config::ListenSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The parser's message limit the server runs with (bytes).
const MAX_MESSAGE: usize = 8192;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rvoip-ws-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Listening {
    server: Server,
    tls: u16,
    ws: u16,
    wss: u16,
}

fn server(tag: &str) -> Listening {
    let mut cfg = ServerConfig {
        listen: ["udp", "tls", "ws", "wss"]
            .iter()
            .map(|t| format!("{t}:127.0.0.1:0").parse::<ListenSpec>().unwrap())
            .collect(),
        domain: Some("127.0.0.1".into()),
        data_dir: Some(temp_dir(tag)),
        relay: "off".parse().unwrap(),
        max_message_bytes: MAX_MESSAGE,
        ..ServerConfig::default()
    };
    cfg.users.insert("alice".into(), "apw".into());
    let server = Server::new(cfg);
    server.start().expect("server starts");
    let port = |t: Transport| {
        server
            .local_addrs()
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, a)| a.port())
            .unwrap()
    };
    let (tls, ws, wss) = (
        port(Transport::Tls),
        port(Transport::Ws),
        port(Transport::Wss),
    );
    Listening {
        server,
        tls,
        ws,
        wss,
    }
}

fn register(transport: &str, port: u16) -> String {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} abc.invalid;branch=z9hG4bK-ws-{port}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=ws1\r\n\
         To: <sip:alice@127.0.0.1>\r\n\
         Call-ID: ws-{port}@abc.invalid\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@abc.invalid;transport=ws>\r\n\
         Expires: 60\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn ws_request(
    url: &str,
    subprotocol: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().unwrap();
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    req
}

/// A TLS connection to the wss: listener, trusting its certificate by fingerprint.
async fn tls_to(l: &Listening, port: u16) -> tokio_rustls::client::TlsStream<TcpStream> {
    let cfg = client_config(&TlsOptions {
        ca_file: None,
        pin_sha256: l.server.tls_fingerprint(),
    })
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .expect("tls handshake")
}

/// Reads until the server closes the connection; returns whether it did within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Waits (up to 2 s) until `read` returns at least `want`.
async fn counter_reaches(read: impl Fn() -> u64, want: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(2);
    while read() < want && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    read()
}

async fn websocket_needs_the_sip_subprotocol_and_carries_sip_both_ways_body(l: &Listening) {
    let ws = l.server.ws_counters().unwrap();
    assert_eq!(ws.no_sip_subprotocol.load(Ordering::Relaxed), 0);

    // No subprotocol, or another one: 400, counted.
    for offered in [None, Some("chat")] {
        let url = format!("ws://127.0.0.1:{}/", l.ws);
        let e = tokio_tungstenite::client_async(
            ws_request(&url, offered),
            TcpStream::connect(("127.0.0.1", l.ws)).await.unwrap(),
        )
        .await
        .expect_err("upgrade without sip must be refused");
        match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 400),
            other => panic!("expected an HTTP 400, got {other:?}"),
        }
    }
    let refused = counter_reaches(|| ws.no_sip_subprotocol.load(Ordering::Relaxed), 2).await;
    assert_eq!(refused, 2);

    // With it, over ws: and wss:: the answer names `sip`, and a REGISTER's 401 comes back down
    // the same WebSocket.
    let url = format!("ws://127.0.0.1:{}/", l.ws);
    let (mut plain, resp) = tokio_tungstenite::client_async(
        ws_request(&url, Some("sip")),
        TcpStream::connect(("127.0.0.1", l.ws)).await.unwrap(),
    )
    .await
    .expect("upgrade with sip");
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "sip");
    let url = format!("wss://127.0.0.1:{}/", l.wss);
    let (mut secure, resp) =
        tokio_tungstenite::client_async(ws_request(&url, Some("sip")), tls_to(l, l.wss).await)
            .await
            .expect("upgrade over TLS with sip");
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "sip");

    plain
        .send(Message::text(register("WS", l.ws)))
        .await
        .unwrap();
    secure
        .send(Message::text(register("WSS", l.wss)))
        .await
        .unwrap();
    let answers = [
        (
            "ws",
            tokio::time::timeout(Duration::from_secs(5), plain.next()).await,
        ),
        (
            "wss",
            tokio::time::timeout(Duration::from_secs(5), secure.next()).await,
        ),
    ];
    for (name, m) in answers {
        let m = m
            .unwrap_or_else(|_| panic!("{name}: no answer"))
            .expect("open")
            .expect("message");
        let text = m.into_text().expect("a text message");
        assert!(text.starts_with("SIP/2.0 401"), "{name}: {text}");
        assert!(text.contains("WWW-Authenticate"), "{name}: {text}");
    }
    assert_eq!(ws.accepted.load(Ordering::Relaxed), 2);
}

async fn an_oversized_websocket_message_closes_only_its_connection_body(l: &Listening) {
    let ws = l.server.ws_counters().unwrap();
    assert_eq!(ws.protocol_errors.load(Ordering::Relaxed), 0);
    let url = format!("ws://127.0.0.1:{}/", l.ws);
    let (mut big, _) = tokio_tungstenite::client_async(
        ws_request(&url, Some("sip")),
        TcpStream::connect(("127.0.0.1", l.ws)).await.unwrap(),
    )
    .await
    .unwrap();
    let huge = "X".repeat(MAX_MESSAGE * 4);
    let _ = big.send(Message::text(huge)).await;
    // The server closes: a Close frame, an error, or the end of the stream, within 5 s.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match big.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "the connection with the oversized frame stays open");
    assert_eq!(
        counter_reaches(|| ws.protocol_errors.load(Ordering::Relaxed), 1).await,
        1
    );
    // The listener still serves others.
    let (mut ok, _) = tokio_tungstenite::client_async(
        ws_request(&url, Some("sip")),
        TcpStream::connect(("127.0.0.1", l.ws)).await.unwrap(),
    )
    .await
    .expect("a new connection is served");
    ok.send(Message::text(register("WS", l.ws))).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), ok.next())
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    assert!(m.into_text().unwrap().starts_with("SIP/2.0 401"));
}

async fn garbage_and_stalled_handshakes_are_counted_and_closed_body(l: &Listening) {
    let (tls, ws): (Arc<_>, Arc<_>) = (
        l.server.tls_counters().unwrap(),
        l.server.ws_counters().unwrap(),
    );
    assert_eq!(tls.handshake_failures.load(Ordering::Relaxed), 0);
    assert_eq!(ws.handshake_failures.load(Ordering::Relaxed), 0);

    // Stalled handshakes first (they take the 10 s timeout), on tls: and wss:, plus a ws:
    // upgrade that never finishes its request line.
    let started = Instant::now();
    let mut stalled = Vec::new();
    for port in [l.tls, l.wss] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // the start of a record, then nothing
        stalled.push(s);
    }
    let mut s = TcpStream::connect(("127.0.0.1", l.ws)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    stalled.push(s);

    // Garbage instead of a ClientHello (tls:, wss:) or an HTTP upgrade (ws:).
    for port in [l.tls, l.wss, l.ws] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let garbage: Vec<u8> = (0..2048u32).map(|i| (i * 7 + 3) as u8).collect();
        let _ = s.write_all(&garbage).await;
        assert!(
            closed_within(&mut s, Duration::from_secs(5)).await,
            "port {port}: connection with garbage stays open"
        );
    }
    assert_eq!(
        counter_reaches(|| tls.handshake_failures.load(Ordering::Relaxed), 1).await,
        1
    );
    assert_eq!(
        counter_reaches(|| ws.handshake_failures.load(Ordering::Relaxed), 2).await,
        2
    );

    for s in &mut stalled {
        assert!(
            closed_within(s, Duration::from_secs(15)).await,
            "a stalled handshake is never dropped"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9),
        "dropped after {waited:?}, before the 10 s handshake timeout"
    );
    assert_eq!(tls.handshake_timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(
        counter_reaches(|| ws.handshake_timeouts.load(Ordering::Relaxed), 2).await,
        2
    );
    assert_eq!(tls.accepted.load(Ordering::Relaxed), 0);
}

/// Runs `body` against a fresh server (started outside any runtime: `Server::start` blocks).
fn run<F: std::future::Future<Output = ()>>(tag: &str, body: impl FnOnce(&'static Listening) -> F) {
    let l: &'static Listening = Box::leak(Box::new(server(tag)));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(body(l));
    l.server.stop();
}

#[test]
fn websocket_needs_the_sip_subprotocol_and_carries_sip_both_ways() {
    run(
        "subprotocol",
        websocket_needs_the_sip_subprotocol_and_carries_sip_both_ways_body,
    );
}

#[test]
fn an_oversized_websocket_message_closes_only_its_connection() {
    run(
        "oversized",
        an_oversized_websocket_message_closes_only_its_connection_body,
    );
}

#[test]
fn garbage_and_stalled_handshakes_are_counted_and_closed() {
    run(
        "handshakes",
        garbage_and_stalled_handshakes_are_counted_and_closed_body,
    );
}
