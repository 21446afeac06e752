//! The SIP send path (RFC 3261 §18), one for the whole engine: the endpoint (`api`) and the
//! server driver both hand what their core transmits to a [`Transports`].
//!
//! UDP goes out of the bound socket of the destination's address family. A stream transport
//! reuses the open connection to the destination (a response goes back on the connection its
//! request came on; a request to a TCP binding uses the connection the REGISTER came on, RFC
//! 5626 style), else opens one in its own task; the message waits in that connection's queue
//! meanwhile. A TLS connection verifies the server as configured for that destination
//! ([`Transports::set_tls_peer`]: the name to check the certificate against, CA file or pin),
//! else against the system roots for the destination's IP address. WebSocket (RFC 7118) is
//! accept-only: a message goes down the client's open connection or fails at once, and never
//! falls back to another transport.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::udp::SipUdp;
use bytes::Bytes;
use tokio::sync::mpsc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use super::conn::{ConnRx, ConnTx, Conns, write_queue};
use super::{Inbound, tcp, tls, udp};
use crate::sip::transaction::{Transmit, Transport};

/// The sockets and connections a core sends through.
pub(crate) struct Transports {
    /// The bound UDP sockets, each with whether it is IPv4.
    udp: Vec<(Arc<SipUdp>, bool)>,
    /// Open (or opening) stream connections by peer address: the writer task's queue.
    conns: HashMap<SocketAddr, ConnTx>,
    /// Where connection tasks report messages and their opening and closing.
    inbound: mpsc::Sender<Inbound>,
    /// Framing limits and timeouts of connections opened here.
    policy: Arc<Conns>,
    /// The runtime connection and retry tasks run on.
    rt: tokio::runtime::Handle,
    /// How to verify the TLS server at a destination: the name its certificate must carry and
    /// the client configuration (roots, CA file, pin).
    tls_peers: HashMap<SocketAddr, (ServerName<'static>, Arc<ClientConfig>)>,
    /// System roots only, made at the first TLS connection to a destination not configured.
    default_tls: Option<Arc<ClientConfig>>,
    /// [`Transports::send_all`]'s batches, one per UDP socket (kept for their capacity).
    udp_pending: Vec<Vec<(SocketAddr, Bytes)>>,
}

impl Transports {
    /// Sends through `udp` (any number of sockets, IPv4 and IPv6) and connections opened on
    /// `rt`, which report to `inbound`.
    pub(crate) fn new(
        udp: Vec<Arc<SipUdp>>,
        inbound: mpsc::Sender<Inbound>,
        policy: Arc<Conns>,
        rt: tokio::runtime::Handle,
    ) -> Transports {
        let udp = udp
            .into_iter()
            .map(|s| {
                let v4 = s.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
                (s, v4)
            })
            .collect();
        Transports {
            udp,
            conns: HashMap::new(),
            inbound,
            policy,
            rt,
            tls_peers: HashMap::new(),
            default_tls: None,
            udp_pending: Vec::new(),
        }
    }

    /// TLS connections to `dest` verify the server's certificate for `name` (a host name or an
    /// IP address, RFC 5922 §7) with `config` (see [`tls::client_config`]).
    pub(crate) fn set_tls_peer(
        &mut self,
        dest: SocketAddr,
        name: ServerName<'static>,
        config: Arc<ClientConfig>,
    ) {
        self.tls_peers.insert(dest, (name, config));
    }

    /// TLS connections to `dest` verify the server's certificate for `host` (a DNS name or an
    /// IP address) against the system roots; an unusable name leaves the IP address check.
    pub(crate) fn set_tls_name(&mut self, dest: SocketAddr, host: &str) {
        if self.tls_peers.contains_key(&dest) {
            return;
        }
        let Ok(name) = ServerName::try_from(host.to_string()) else {
            return;
        };
        match self.default_config() {
            Ok(cfg) => self.set_tls_peer(dest, name, cfg),
            Err(e) => tracing::warn!(error = %e, "no TLS client configuration"),
        }
    }

    /// The client configuration with the system roots only (made once).
    fn default_config(&mut self) -> Result<Arc<ClientConfig>, String> {
        if let Some(c) = &self.default_tls {
            return Ok(c.clone());
        }
        let c = tls::client_config(&tls::ClientTlsOptions::default()).map_err(|e| e.to_string())?;
        self.default_tls = Some(c.clone());
        Ok(c)
    }

    fn tls_peer(
        &mut self,
        dest: SocketAddr,
    ) -> Result<(ServerName<'static>, Arc<ClientConfig>), String> {
        if let Some(p) = self.tls_peers.get(&dest) {
            return Ok(p.clone());
        }
        let cfg = self.default_config()?;
        Ok((ServerName::IpAddress(dest.ip().into()), cfg))
    }

    /// A connection to `peer` is up: messages for it go to `tx`.
    pub(crate) fn opened(&mut self, peer: SocketAddr, tx: ConnTx) {
        self.conns.insert(peer, tx);
    }

    /// The connection to `peer` is gone.
    pub(crate) fn closed(&mut self, peer: SocketAddr) {
        self.conns.remove(&peer);
    }

    /// Queues `bytes` on the open connection to `dest`; if there is none (or it is gone), makes
    /// a new queue holding them and returns its receiving end for the connection task to open.
    /// A connection whose queue is full (its peer does not read) loses the message and its
    /// queue: its writer ends, and the next message opens a new connection.
    fn queue(&mut self, dest: SocketAddr, bytes: Bytes) -> Option<ConnRx> {
        let bytes = match self.conns.get(&dest) {
            Some(c) => match c.try_send(bytes) {
                Ok(()) => return None,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(%dest, "connection write queue full (the peer is not reading): dropped");
                    self.conns.remove(&dest);
                    return None;
                }
                Err(mpsc::error::TrySendError::Closed(b)) => b,
            },
            None => bytes,
        };
        let (tx, rx) = write_queue();
        let _ = tx.try_send(bytes);
        self.conns.insert(dest, tx);
        Some(rx)
    }

    /// The UDP socket that sends to `dest`: the first of its address family, else the first.
    fn udp_index(&self, dest: SocketAddr) -> Option<usize> {
        self.udp
            .iter()
            .position(|(_, v4)| *v4 == dest.is_ipv4())
            .or(if self.udp.is_empty() { None } else { Some(0) })
    }

    /// Sends every message of `transmits`, as [`Transports::send`] does, with the UDP
    /// datagrams of each socket handed to the kernel together ([`udp::send_batch`]: one
    /// `sendmmsg` on Linux), in order, once the iterator is done. An event loop passes what
    /// its core transmits in one turn.
    pub(crate) fn send_all(&mut self, transmits: impl Iterator<Item = Transmit>) {
        let mut pending = std::mem::take(&mut self.udp_pending);
        pending.resize_with(self.udp.len(), Vec::new);
        for t in transmits {
            if t.transport != Transport::Udp {
                self.send(t);
                continue;
            }
            match self.udp_index(t.dest).and_then(|i| pending.get_mut(i)) {
                Some(batch) => batch.push((t.dest, t.bytes)),
                None => tracing::debug!(dest = %t.dest, "no UDP socket: message not sent"),
            }
        }
        for (i, batch) in pending.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if let Some((sock, _)) = self.udp.get(i) {
                let sent = udp::send_batch(sock, batch);
                for (dest, bytes) in batch.drain(..).skip(sent) {
                    sock.send_later(&self.rt, dest, bytes);
                }
            }
            batch.clear();
        }
        self.udp_pending = pending;
    }

    /// Sends one message. Never blocks: a datagram that finds the UDP socket buffer full waits
    /// in the socket's backlog ([`SipUdp::send_later`]), a stream message is queued to its
    /// connection's writer.
    pub(crate) fn send(&mut self, t: Transmit) {
        match t.transport {
            Transport::Udp => {
                let Some((sock, _)) = self.udp_index(t.dest).and_then(|i| self.udp.get(i)) else {
                    tracing::debug!(dest = %t.dest, "no UDP socket: message not sent");
                    return;
                };
                match sock.try_send_to(&t.bytes, t.dest) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        sock.send_later(&self.rt, t.dest, t.bytes)
                    }
                    Err(e) => tracing::debug!(dest = %t.dest, error = %e, "udp send failed"),
                }
            }
            Transport::Tcp => {
                if let Some(rx) = self.queue(t.dest, t.bytes) {
                    self.rt.spawn(tcp::connect(
                        t.dest,
                        rx,
                        self.inbound.clone(),
                        self.policy.clone(),
                    ));
                }
            }
            Transport::Tls => {
                let Some(rx) = self.queue(t.dest, t.bytes) else {
                    return;
                };
                let inbound = self.inbound.clone();
                match self.tls_peer(t.dest) {
                    Ok((name, config)) => {
                        self.rt.spawn(tls::connect(
                            t.dest,
                            name,
                            config,
                            rx,
                            inbound,
                            self.policy.clone(),
                        ));
                    }
                    // Reported like a failed connect: the queue entry goes, requests fail.
                    Err(reason) => {
                        let dest = t.dest;
                        self.rt.spawn(async move {
                            let _ = inbound
                                .send(Inbound::ConnectFailed {
                                    peer: dest,
                                    transport: Transport::Tls,
                                    reason,
                                })
                                .await;
                        });
                    }
                }
            }
            // WebSocket clients (browsers) cannot be connected to: a message goes down the
            // client's open connection, or fails its transaction at once. Never sent over
            // another transport (no silent downgrade).
            Transport::Ws | Transport::Wss => {
                if let Some(c) = self.conns.get(&t.dest) {
                    if c.try_send(t.bytes).is_ok() {
                        return;
                    }
                    self.conns.remove(&t.dest);
                }
                let (inbound, dest, transport) = (self.inbound.clone(), t.dest, t.transport);
                tracing::debug!(%dest, %transport, "no WebSocket connection: message not sent");
                self.rt.spawn(async move {
                    let _ = inbound
                        .send(Inbound::ConnectFailed {
                            peer: dest,
                            transport,
                            reason: format!("no {transport} connection to {dest}"),
                        })
                        .await;
                });
            }
        }
    }
}
