//! Stream connection limits of rvoip-server (issue 13), over real TCP sockets on 127.0.0.1:
//! - an idle connection is closed after `connection_idle_timeout_s`, unless it carries a live
//!   registration;
//! - a message that does not complete within `message_timeout_s` (slowloris) closes its
//!   connection;
//! - a bad Content-Length is answered 400, a message over `max_message_bytes` 513, before the
//!   close;
//! - past `max_connections_per_source`, a new connection from that source is closed at once.
//!
//! Each case reads the counter before and after, so a server that ignored the input (or kept
//! the connection) fails the test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rvoip_sdk::driver::BoundServer;
use rvoip_sdk::driver::conn::ConnCounters;
use rvoip_sdk::server::config::{ListenSpec, ServerConfig};
use rvoip_sdk::sip::msg::{Auth, ByteString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE_S: u64 = 2;
const MESSAGE_S: u64 = 1;
const PER_SOURCE: usize = 20;

struct Running {
    tcp: SocketAddr,
    counters: Arc<ConnCounters>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Running {
    let mut cfg = ServerConfig {
        listen: vec!["tcp:127.0.0.1:0".parse::<ListenSpec>().unwrap()],
        domain: Some("127.0.0.1".into()),
        relay: "off".parse().unwrap(),
        max_message_bytes: 4096,
        connection_idle_timeout_s: IDLE_S,
        message_timeout_s: MESSAGE_S,
        max_connections_per_source: PER_SOURCE,
        ..ServerConfig::default()
    };
    cfg.users.insert("alice".into(), "apw".into());
    let server = BoundServer::bind(&cfg).await.expect("binds");
    let tcp = server.bound()[0].1;
    let counters = server.conn_counters();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        tcp,
        counters,
        _stop: stop,
    }
}

/// Reads until the peer closes (`Some(everything read)`) or `within` passes (`None`).
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut b = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&b[..n]),
        }
    }
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn register(port: u16, cseq: u32, auth: Option<&str>) -> String {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKcl{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=cl\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: conn-limits@test\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@127.0.0.1:{port};transport=tcp>\r\n\
         {auth}Expires: 600\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Reads one response (headers only: every answer here has no body).
async fn response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&b[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_on_time() {
    let r = start().await;
    // Idle: closed after IDLE_S (not before, with slack either side).
    let idle_before = get(&r.counters.idle_closed);
    let mut idle = TcpStream::connect(r.tcp).await.unwrap();
    let t0 = Instant::now();
    let closed = read_until_closed(&mut idle, Duration::from_secs(IDLE_S + 8)).await;
    assert!(closed.is_some(), "idle connection kept open");
    assert!(
        t0.elapsed() >= Duration::from_millis(IDLE_S * 1000 - 200),
        "closed too early"
    );
    assert_eq!(get(&r.counters.idle_closed), idle_before + 1);

    // Slowloris: one byte every 200 ms, never a whole message: closed after MESSAGE_S.
    let slow_before = get(&r.counters.slow_closed);
    let mut slow = TcpStream::connect(r.tcp).await.unwrap();
    let t0 = Instant::now();
    let text = register(5999, 1, None);
    let mut closed = false;
    for b in text.as_bytes().iter().take(200) {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(200), slow.read(&mut [0u8; 64])).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "stalled message kept its connection open");
    assert!(t0.elapsed() < Duration::from_secs(MESSAGE_S + 8));
    assert_eq!(get(&r.counters.slow_closed), slow_before + 1);
}

#[tokio::test]
async fn framing_errors_are_answered_before_the_close() {
    let r = start().await;
    let bad_before = get(&r.counters.bad_framing_closed);
    let mut s = TcpStream::connect(r.tcp).await.unwrap();
    let bad = register(5998, 1, None).replace("Content-Length: 0", "Content-Length: abc");
    s.write_all(bad.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(got.starts_with("SIP/2.0 400 "), "{got:?}");
    assert!(
        got.contains("branch=z9hG4bKcl1"),
        "answer copies the Via: {got:?}"
    );
    assert_eq!(get(&r.counters.bad_framing_closed), bad_before + 1);

    let big_before = get(&r.counters.too_large_closed);
    let mut s = TcpStream::connect(r.tcp).await.unwrap();
    let body = "x".repeat(8000);
    let big = register(5997, 1, None).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    let _ = s.write_all(big.as_bytes()).await;
    let got = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(got.starts_with("SIP/2.0 513 "), "{got:?}");
    assert_eq!(get(&r.counters.too_large_closed), big_before + 1);
}

#[tokio::test]
async fn past_the_per_source_limit_new_connections_are_closed_at_once() {
    let r = start().await;
    let mut held = Vec::new();
    for _ in 0..PER_SOURCE {
        held.push(TcpStream::connect(r.tcp).await.unwrap());
    }
    // Wait until the server counted them all (accept runs concurrently).
    let t0 = Instant::now();
    while get(&r.counters.open) < PER_SOURCE as u64 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused_before = get(&r.counters.refused_per_source);
    let mut extra = TcpStream::connect(r.tcp).await.unwrap();
    let closed = read_until_closed(&mut extra, Duration::from_secs(1)).await;
    assert_eq!(
        closed.as_deref(),
        Some(""),
        "the extra connection is closed at once"
    );
    assert_eq!(get(&r.counters.refused_per_source), refused_before + 1);
    // One closed: a new one is accepted (it stays open: no answer, not closed within 500 ms).
    drop(held.pop());
    let t0 = Instant::now();
    while get(&r.counters.open) >= PER_SOURCE as u64 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = TcpStream::connect(r.tcp).await.unwrap();
    assert!(
        read_until_closed(&mut again, Duration::from_millis(500))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_connection_carrying_a_registration_is_not_closed_as_idle() {
    let r = start().await;
    let mut s = TcpStream::connect(r.tcp).await.unwrap();
    let port = s.local_addr().unwrap().port();
    s.write_all(register(port, 1, None).as_bytes())
        .await
        .unwrap();
    let challenge = response(&mut s).await;
    assert!(challenge.starts_with("SIP/2.0 401 "), "{challenge}");
    let www = challenge
        .lines()
        .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .expect("challenge");
    let auth = Auth::parse(&ByteString::from(www.to_string())).unwrap();
    let authz = rvoip_sdk::auth::authorization_value(
        &auth,
        "alice",
        "apw",
        "REGISTER",
        "sip:127.0.0.1",
        1,
        "0a4f113b",
    )
    .unwrap();
    s.write_all(register(port, 2, Some(&authz)).as_bytes())
        .await
        .unwrap();
    let ok = response(&mut s).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    // Three idle timeouts pass: the registered flow stays open.
    assert!(
        read_until_closed(&mut s, Duration::from_secs(3 * IDLE_S))
            .await
            .is_none(),
        "the registered flow was closed as idle"
    );
}
