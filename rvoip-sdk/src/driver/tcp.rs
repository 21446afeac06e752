//! Stream transports (RFC 3261 §18.3): accept and connect, Content-Length framing, one writer
//! task per connection fed by a channel, so the event task never blocks on a slow peer.
//!
//! [`serve`] works on any `AsyncRead + AsyncWrite` stream: TLS (RFC 3261 §26, e.g. a
//! `tokio_rustls` stream over the accepted `TcpStream`) slots in by wrapping the stream before
//! calling it. WebSocket (RFC 7118) frames one SIP message per WebSocket message instead of by
//! Content-Length, so it gets its own reader feeding the same [`Inbound`] channel.

use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::Inbound;
use crate::sip::msg::{Frame, Limits, frame};
use crate::sip::transaction::Transport;

/// Most bytes of queued messages joined into one write (a TLS record holds up to 16 kB).
const MAX_WRITE_BATCH: usize = 16 * 1024;

/// Accepts connections until the listener fails for good.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    limits: Limits,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let (tx, rx) = mpsc::unbounded_channel();
                if inbound.send(Inbound::TcpOpened { peer, tx }).await.is_err() {
                    return;
                }
                tokio::spawn(serve(
                    stream,
                    peer,
                    Transport::Tcp,
                    rx,
                    inbound.clone(),
                    limits,
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
    rx: mpsc::UnboundedReceiver<Bytes>,
    inbound: mpsc::Sender<Inbound>,
    limits: Limits,
) {
    let connect =
        tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(peer)).await;
    match connect {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            serve(stream, peer, Transport::Tcp, rx, inbound, limits).await
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

/// Reads framed messages from a connected stream (TCP, or TLS over it: `transport`) into the
/// event task and writes queued messages to it, until either side ends; then reports the
/// connection closed.
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    inbound: mpsc::Sender<Inbound>,
    limits: Limits,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        // Messages queued in the same turn of the event loop (the responses to a batch of
        // requests read together) go out in one write: one TLS record and one `writev` instead
        // of one per message.
        let mut batch = BytesMut::new();
        while let Some(first) = rx.recv().await {
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
                break;
            }
        }
    });
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'read: loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            match frame(&buf, &limits) {
                Ok(Some(Frame::Keepalive(n))) => buf.advance(n),
                Ok(Some(Frame::Message(n))) => {
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
                    // A stream that cannot be framed cannot be resynchronised (§18.3): close it.
                    tracing::debug!(%peer, error = %e, "tcp framing error, closing");
                    break 'read;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
    }
    writer.abort();
    let _ = inbound.send(Inbound::TcpClosed { peer }).await;
}
