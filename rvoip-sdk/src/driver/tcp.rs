//! Stream transports (RFC 3261 §18.3): accept and connect, Content-Length framing, one writer
//! task per connection fed by a channel, so the event task never blocks on a slow peer.
//!
//! [`serve`] works on any `AsyncRead + AsyncWrite` stream: TLS (RFC 3261 §26, e.g. a
//! `tokio_rustls` stream over the accepted `TcpStream`) slots in by wrapping the stream before
//! calling it. WebSocket (RFC 7118) frames one SIP message per WebSocket message instead of by
//! Content-Length, so it gets its own reader feeding the same [`Inbound`] channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Inbound;
use super::conn::{ConnSlot, Conns};
use crate::sip::keepalive::{self, StreamPings};
use crate::sip::msg::{Frame, ParseErrorKind, error_response, frame};
use crate::sip::transaction::Transport;

/// Most bytes of queued messages joined into one write (a TLS record holds up to 16 kB).
const MAX_WRITE_BATCH: usize = 16 * 1024;

/// How long the writer gets to send the last words (a 400 or 513) before the close.
const LAST_WORDS_TIMEOUT: Duration = Duration::from_secs(2);

/// Accepts connections until the listener fails for good. A connection over the total or
/// per-source limit of `conns` is closed at once.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    conns: Arc<Conns>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(slot) = conns.admit(peer) else {
                    tracing::debug!(%peer, "tcp connection refused: connection limit");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (tx, rx) = super::conn::write_queue();
                if inbound.send(Inbound::TcpOpened { peer, tx }).await.is_err() {
                    return;
                }
                tokio::spawn(serve(
                    stream,
                    peer,
                    Transport::Tcp,
                    rx,
                    inbound.clone(),
                    conns.clone(),
                    Some(slot),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Opens a connection to `peer` and serves it; messages queued in `rx` are written once connected.
pub(crate) async fn connect(
    peer: SocketAddr,
    rx: super::conn::ConnRx,
    inbound: mpsc::Sender<Inbound>,
    conns: Arc<Conns>,
) {
    let connect =
        tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(peer)).await;
    match connect {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            serve(stream, peer, Transport::Tcp, rx, inbound, conns, None).await
        }
        r => {
            let reason = match r {
                Ok(Err(e)) => format!("TCP connect to {peer}: {e}"),
                _ => format!("TCP connect to {peer} timed out"),
            };
            tracing::debug!(%peer, %reason, "tcp connect failed");
            let _ = inbound
                .send(Inbound::ConnectFailed {
                    peer,
                    transport: Transport::Tcp,
                    reason,
                })
                .await;
        }
    }
}

/// The answer sent before closing a connection whose stream cannot be framed (RFC 3261
/// §18.3): 513 for a message over the size limit, 400 otherwise, copying Via, From, To,
/// Call-ID and CSeq when they can be found; a bare status line when they cannot.
fn framing_error_answer(buf: &[u8], err: &crate::sip::msg::ParseError) -> Bytes {
    match error_response(buf, err) {
        Some(resp) => resp.to_bytes(),
        None if err.kind == ParseErrorKind::TooLarge => {
            Bytes::from_static(b"SIP/2.0 513 Message Too Large\r\nContent-Length: 0\r\n\r\n")
        }
        None => Bytes::from_static(b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
    }
}

/// Reads framed messages from a connected stream (TCP, or TLS over it: `transport`) into the
/// event task and writes queued messages to it, until either side ends; then reports the
/// connection closed. Under the policy of `conns`: a connection with no message for the idle
/// timeout is closed unless it carries a live registration; a message not complete within
/// the message timeout of its first byte closes it; a message over the size limit is answered
/// 513 and one that cannot be framed 400, then the connection is closed. `slot` is the
/// accepted connection's place in the connection count, freed when it ends. A double-CRLF
/// ping between messages is answered with a CRLF pong (RFC 5626 §3.5.1).
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    mut rx: super::conn::ConnRx,
    inbound: mpsc::Sender<Inbound>,
    conns: Arc<Conns>,
    slot: Option<ConnSlot>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (last_tx, mut last_rx) = oneshot::channel::<Bytes>();
    // CRLF pongs (RFC 5626 §3.5.1) from the reader; one waiting is enough.
    let (pong_tx, mut pong_rx) = mpsc::channel::<usize>(1);
    let mut writer = tokio::spawn(async move {
        // Messages queued in the same turn of the event loop (the responses to a batch of
        // requests read together) go out in one write: one TLS record and one `writev` instead
        // of one per message.
        let mut batch = BytesMut::new();
        loop {
            let first = tokio::select! {
                biased;
                last = &mut last_rx => {
                    if let Ok(b) = last {
                        let _ = wr.write_all(&b).await;
                        let _ = wr.flush().await;
                    }
                    let _ = wr.shutdown().await;
                    return;
                }
                Some(n) = pong_rx.recv() => {
                    if wr.write_all(&keepalive::CRLF_PONG.repeat(n)).await.is_err() {
                        return;
                    }
                    continue;
                }
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
            };
            let mut data = first;
            while let Ok(more) = rx.try_recv() {
                if batch.is_empty() {
                    batch.extend_from_slice(&data);
                }
                batch.extend_from_slice(&more);
                if batch.len() >= MAX_WRITE_BATCH {
                    break;
                }
            }
            if !batch.is_empty() {
                data = batch.split().freeze();
            }
            if wr.write_all(&data).await.is_err() {
                return;
            }
        }
    });
    let limits = conns.limits;
    let policy = conns.policy.clone();
    let counters = conns.counters.clone();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut last_activity = Instant::now();
    // When the first byte of the message now in `buf` arrived.
    let mut partial_since: Option<Instant> = None;
    let mut last_words = None;
    let mut pings = StreamPings::default();
    'read: loop {
        let deadline = match partial_since {
            Some(t) => policy.message_timeout.map(|d| t + d),
            None => policy.idle_timeout.map(|d| last_activity + d),
        };
        let read = rd.read_buf(&mut buf);
        let r = match deadline {
            Some(d) => match tokio::time::timeout_at(d, read).await {
                Ok(r) => r,
                Err(_) if partial_since.is_some() => {
                    counters.slow_closed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "message not complete within the message timeout, closing");
                    break;
                }
                Err(_) if conns.is_pinned(peer) => {
                    last_activity = Instant::now();
                    continue;
                }
                Err(_) => {
                    counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "idle connection, closing");
                    break;
                }
            },
            None => read.await,
        };
        match r {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let now = Instant::now();
        let mut framed = false;
        loop {
            match frame(&buf, &limits) {
                Ok(Some(Frame::Keepalive(n))) => {
                    let pongs = pings.on_keepalive(&buf[..n]);
                    if pongs > 0 {
                        let _ = pong_tx.try_send(pongs);
                    }
                    buf.advance(n);
                    last_activity = now;
                }
                Ok(Some(Frame::Message(n))) => {
                    pings.on_message();
                    last_activity = now;
                    framed = true;
                    let data = Bytes::copy_from_slice(&buf.split_to(n));
                    if inbound
                        .send(Inbound::Msg {
                            data,
                            source: peer,
                            transport,
                        })
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // A stream that cannot be framed cannot be resynchronised (§18.3): answer,
                    // then close.
                    tracing::debug!(%peer, error = %e, "tcp framing error, closing");
                    if e.kind == ParseErrorKind::TooLarge {
                        counters.too_large_closed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counters.bad_framing_closed.fetch_add(1, Ordering::Relaxed);
                    }
                    last_words = Some(framing_error_answer(&buf, &e));
                    break 'read;
                }
            }
        }
        if buf.is_empty() {
            partial_since = None;
        } else if partial_since.is_none() || framed {
            partial_since = Some(now);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
    }
    match last_words {
        Some(b) => {
            let _ = last_tx.send(b);
            if tokio::time::timeout(LAST_WORDS_TIMEOUT, &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        }
        None => writer.abort(),
    }
    drop(slot);
    let _ = inbound.send(Inbound::TcpClosed { peer }).await;
}
