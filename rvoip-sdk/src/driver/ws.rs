//! SIP over WebSocket (RFC 7118) for browser clients: `ws:` listeners, and `wss:` listeners
//! (WebSocket over TLS with the same certificate as the `tls:` listeners).
//!
//! The upgrade must ask for the `sip` subprotocol (`Sec-WebSocket-Protocol: sip`, RFC 7118
//! §4.1); the answer carries it. An upgrade without it gets `400 Bad Request` and the
//! connection is closed. Each WebSocket message holds exactly one SIP message (§5); messages and
//! frames are bounded by the parser's `max_message_bytes`, and a larger one closes the
//! connection. The server never opens WebSocket connections itself (browsers are not
//! reachable): requests to a WS-registered user go down the connection its REGISTER came on
//! (§5.3 and RFC 5626 flows), as for TCP and TLS.
//!
//! Both the TLS handshake (for `wss:`) and the HTTP upgrade must finish within
//! [`super::tls::HANDSHAKE_TIMEOUT`], in their own task, so a stalled client blocks nobody.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::Inbound;
use super::conn::{ConnSlot, Conns};
use super::tls::HANDSHAKE_TIMEOUT;
use crate::sip::keepalive;
use crate::sip::msg::Limits;
use crate::sip::transaction::Transport;

/// The WebSocket subprotocol of SIP (RFC 7118 §4.1, IANA registry).
pub const SUBPROTOCOL: &str = "sip";

/// Counters of the WebSocket listeners (broken or hostile clients).
#[derive(Debug, Default)]
pub struct WsCounters {
    /// Upgrades completed (`sip` subprotocol agreed).
    pub accepted: AtomicU64,
    /// Upgrades refused because they did not ask for the `sip` subprotocol.
    pub no_sip_subprotocol: AtomicU64,
    /// TLS handshakes (`wss:`) or HTTP upgrades that failed (garbage, not a WebSocket upgrade).
    pub handshake_failures: AtomicU64,
    /// TLS handshakes or upgrades that did not finish within the handshake timeout.
    pub handshake_timeouts: AtomicU64,
    /// Connections closed because a frame or message exceeded `max_message_bytes`, or broke the
    /// WebSocket protocol.
    pub protocol_errors: AtomicU64,
}

/// Whether an upgrade request offers the `sip` subprotocol (the header may be repeated and
/// holds a comma-separated token list; tokens compare case-sensitively per RFC 6455 §4.1, but
/// some stacks send `SIP`, so case is ignored).
fn offers_sip(req: &Request) -> bool {
    req.headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(SUBPROTOCOL))
}

/// The upgrade callback: accepts with `Sec-WebSocket-Protocol: sip`, else answers 400.
#[allow(clippy::result_large_err)] // the callback signature is tungstenite's
fn check_upgrade(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    if !offers_sip(req) {
        let mut e = ErrorResponse::new(Some(
            "the WebSocket subprotocol 'sip' is required (RFC 7118)".to_string(),
        ));
        *e.status_mut() = StatusCode::BAD_REQUEST;
        return Err(e);
    }
    resp.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(resp)
}

/// The WebSocket limits for SIP messages of at most `limits.max_message_bytes`.
fn ws_config(limits: &Limits) -> WebSocketConfig {
    let max = limits.max_message_bytes.max(1024);
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Accepts WebSocket connections (`tls`: `Some` for `wss:`) until the listener fails for good.
/// `transport` is [`Transport::Ws`] or [`Transport::Wss`]: the transport of what it receives.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    tls: Option<Arc<rustls::ServerConfig>>,
    inbound: mpsc::Sender<Inbound>,
    conns: Arc<Conns>,
    counters: Arc<WsCounters>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(slot) = conns.admit(peer) else {
                    tracing::debug!(%peer, "websocket connection refused: connection limit");
                    drop(stream);
                    continue;
                };
                let conns = conns.clone();
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let inbound = inbound.clone();
                let counters = counters.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            accept_wss(a, stream, peer, transport, inbound, conns, slot, counters)
                                .await
                        }
                        None => {
                            upgrade_and_serve(
                                stream,
                                peer,
                                transport,
                                inbound,
                                conns,
                                slot,
                                counters,
                                tokio::time::Instant::now() + HANDSHAKE_TIMEOUT,
                            )
                            .await
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "websocket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The TLS handshake of a `wss:` connection, then the upgrade, within one handshake timeout.
async fn accept_wss(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    inbound: mpsc::Sender<Inbound>,
    conns: Arc<Conns>,
    slot: ConnSlot,
    counters: Arc<WsCounters>,
) {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            upgrade_and_serve(
                tls, peer, transport, inbound, conns, slot, counters, deadline,
            )
            .await
        }
        Ok(Err(e)) => {
            counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, error = %e, "wss: tls handshake failed");
        }
        Err(_) => {
            counters.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "wss: tls handshake timed out");
        }
    }
}

/// The HTTP upgrade (by `deadline`), then [`serve`].
async fn upgrade_and_serve<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    inbound: mpsc::Sender<Inbound>,
    conns: Arc<Conns>,
    slot: ConnSlot,
    counters: Arc<WsCounters>,
    deadline: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut refused = false;
    #[allow(clippy::result_large_err)] // the callback signature is tungstenite's
    let callback = |req: &Request, resp: Response| {
        let r = check_upgrade(req, resp);
        refused = r.is_err();
        r
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(ws_config(&conns.limits)),
    );
    match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => {
            counters.accepted.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = super::conn::write_queue();
            if inbound.send(Inbound::TcpOpened { peer, tx }).await.is_ok() {
                serve(ws, peer, transport, rx, inbound, &counters, &conns).await;
                drop(slot);
            }
        }
        Ok(Err(e)) => {
            if refused {
                counters.no_sip_subprotocol.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "websocket upgrade without the sip subprotocol: 400");
            } else {
                counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, error = %e, "websocket upgrade failed");
            }
        }
        Err(_) => {
            counters.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "websocket upgrade timed out");
        }
    }
}

/// Serves an upgraded connection: each text or binary message is one SIP message for the event
/// task; queued messages go out as text (binary if not UTF-8). A double-CRLF ping is answered
/// with a CRLF pong (RFC 5626 §4.4.1). Ends on close, error, or when the queue's sender is
/// dropped; then reports the connection closed.
async fn serve<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    peer: SocketAddr,
    transport: Transport,
    mut rx: super::conn::ConnRx,
    inbound: mpsc::Sender<Inbound>,
    counters: &WsCounters,
    conns: &Conns,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let idle = conns.policy.idle_timeout;
    let far = std::time::Duration::from_secs(86_400 * 365);
    let mut idle_at = tokio::time::Instant::now() + idle.unwrap_or(far);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(idle_at) => {
                if conns.is_pinned(peer) {
                    idle_at = tokio::time::Instant::now() + idle.unwrap_or(far);
                    continue;
                }
                conns.counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "idle websocket connection, closing");
                break;
            }
            m = stream.next() => {
                idle_at = tokio::time::Instant::now() + idle.unwrap_or(far);
                let data: Bytes = match m {
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    // Pings are answered by tungstenite on the next write or flush.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                        let _ = sink.flush().await;
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "websocket error, closing");
                        break;
                    }
                };
                // CRLFs only (RFC 5626 §4.4.1; some WebSocket stacks send them): a keep-alive.
                if keepalive::is_crlf(&data) {
                    if data.as_ref() == keepalive::CRLF_PING && sink.send(Message::text("\r\n")).await.is_err() {
                        break;
                    }
                    continue;
                }
                if inbound.send(Inbound::Msg { data, source: peer, transport }).await.is_err() {
                    break;
                }
            }
            b = rx.recv() => {
                let Some(b) = b else { break };
                let msg = match Utf8Bytes::try_from(b.clone()) {
                    Ok(t) => Message::Text(t),
                    Err(_) => Message::Binary(b),
                };
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
    let _ = inbound.send(Inbound::TcpClosed { peer }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(protocols: &[&str]) -> Request {
        let mut b = Request::builder().uri("/");
        for p in protocols {
            b = b.header("Sec-WebSocket-Protocol", *p);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_sip_subprotocol_is_required_and_echoed() {
        for offered in [&["sip"][..], &["chat, sip"], &["chat", " SIP "]] {
            let r = check_upgrade(&req(offered), Response::new(())).expect("accepted");
            assert_eq!(r.headers().get("sec-websocket-protocol").unwrap(), "sip");
        }
        for offered in [&[][..], &["chat"], &["sipx, xsip"]] {
            let e = check_upgrade(&req(offered), Response::new(())).expect_err("refused");
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }
    }
}
