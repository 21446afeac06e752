//! Limits on stream connections (TCP, TLS, WebSocket) and their counters.
//!
//! One [`Conns`] is shared by every listener and connection task of a server (or endpoint).
//! It holds the framing [`Limits`], the number of accepted connections in total and per source
//! IP ([`Conns::admit`]), the idle and message timeouts the connection tasks apply, and the
//! flows that carry a live registration, which are never closed for being idle
//! ([`Conns::set_pinned`]).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sip::msg::Limits;

/// Most messages queued for one connection's writer. A peer that does not read what it is
/// sent fills the queue; past it the connection's queue is dropped (its writer ends) rather
/// than letting it hold memory without bound.
pub(crate) const MAX_QUEUED: usize = 1024;

/// The sending end of a connection's write queue.
pub(crate) type ConnTx = tokio::sync::mpsc::Sender<bytes::Bytes>;
/// The receiving end of a connection's write queue (its writer task).
pub(crate) type ConnRx = tokio::sync::mpsc::Receiver<bytes::Bytes>;

/// A new write queue of [`MAX_QUEUED`] messages.
pub(crate) fn write_queue() -> (ConnTx, ConnRx) {
    tokio::sync::mpsc::channel(MAX_QUEUED)
}

/// The connection policy (see the `max_connections*`, `connection_idle_timeout_s` and
/// `message_timeout_s` keys of [`crate::server::config::ServerConfig`]).
#[derive(Debug, Clone)]
pub struct ConnPolicy {
    /// Most accepted connections open at once (more are closed at once).
    pub max_connections: usize,
    /// Most accepted connections open at once from one source IP.
    pub max_connections_per_source: usize,
    /// A connection that received no message (nor keep-alive) for this long is closed, unless
    /// it is pinned. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// A message must arrive complete within this long of its first byte, else the connection
    /// is closed (slowloris). `None`: no deadline.
    pub message_timeout: Option<Duration>,
    /// Sources exempt from `max_connections_per_source` (`trusted_sources`).
    pub trusted: Vec<ipnet::IpNet>,
}

impl ConnPolicy {
    /// No limits (the SDK's own listener, which serves one app's peers).
    pub const UNLIMITED: ConnPolicy = ConnPolicy {
        max_connections: usize::MAX,
        max_connections_per_source: usize::MAX,
        idle_timeout: None,
        message_timeout: None,
        trusted: Vec::new(),
    };
}

/// Counters of the stream connections (gauges and totals).
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Accepted connections open now.
    pub open: AtomicU64,
    /// Connections accepted in all.
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused_total: AtomicU64,
    /// Connections closed at once because their source had `max_connections_per_source` open.
    pub refused_per_source: AtomicU64,
    /// Connections closed after `idle_timeout` without a message.
    pub idle_closed: AtomicU64,
    /// Connections closed because a message did not complete within `message_timeout`.
    pub slow_closed: AtomicU64,
    /// Connections closed after a 513: a message over `max_message_bytes`.
    pub too_large_closed: AtomicU64,
    /// Connections closed after a 400: a message that could not be framed (bad or missing
    /// Content-Length, garbage).
    pub bad_framing_closed: AtomicU64,
}

/// Shared connection state of one server or endpoint.
#[derive(Debug)]
pub struct Conns {
    /// Framing limits of every connection.
    pub limits: Limits,
    /// The limits and timeouts.
    pub policy: ConnPolicy,
    /// Counters.
    pub counters: Arc<ConnCounters>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    pinned: Mutex<HashSet<SocketAddr>>,
}

/// One accepted connection's place in the count; dropping it frees the place.
#[derive(Debug)]
pub struct ConnSlot {
    conns: Arc<Conns>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.conns.counters.open.fetch_sub(1, Ordering::Relaxed);
        let mut m = self
            .conns
            .per_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Conns {
    /// Shared state for connections framed with `limits` under `policy`.
    pub fn new(limits: Limits, policy: ConnPolicy) -> Arc<Conns> {
        Arc::new(Conns {
            limits,
            policy,
            counters: Arc::default(),
            per_source: Mutex::default(),
            pinned: Mutex::default(),
        })
    }

    /// Counts a newly accepted connection from `peer`: its slot, or `None` (counted) when the
    /// total or the source's limit is reached, and the connection is to be closed at once.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<ConnSlot> {
        let ip = peer.ip();
        let mut m = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        let open = self.counters.open.load(Ordering::Relaxed) as usize;
        if open >= self.policy.max_connections {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let n = m.entry(ip).or_insert(0);
        let trusted = self.policy.trusted.iter().any(|t| t.contains(&ip));
        if *n >= self.policy.max_connections_per_source && !trusted {
            self.counters
                .refused_per_source
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        Some(ConnSlot {
            conns: self.clone(),
            ip,
        })
    }

    /// Replaces the set of flows (peer addresses of connections) that carry a live
    /// registration: these are not closed for being idle (RFC 5626 flows, phones that do not
    /// send keep-alives).
    pub fn set_pinned(&self, flows: HashSet<SocketAddr>) {
        *self.pinned.lock().unwrap_or_else(|p| p.into_inner()) = flows;
    }

    /// Adds one flow that now carries a live registration (see [`Conns::set_pinned`]).
    pub fn pin(&self, flow: SocketAddr) {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(flow);
    }

    /// Whether the connection to `peer` carries a live registration.
    pub fn is_pinned(&self, peer: SocketAddr) -> bool {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&peer)
    }

    /// Connections open from `ip` now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_source_limits_and_slots_free_on_drop() {
        let conns = Conns::new(
            Limits::default(),
            ConnPolicy {
                max_connections: 3,
                max_connections_per_source: 2,
                ..ConnPolicy::UNLIMITED
            },
        );
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:1000".parse().unwrap();
        let s1 = conns.admit(a).unwrap();
        let _s2 = conns.admit(a).unwrap();
        assert!(conns.admit(a).is_none(), "per source");
        let _s3 = conns.admit(b).unwrap();
        assert!(conns.admit(b).is_none(), "total");
        assert_eq!(conns.counters.refused_per_source.load(Ordering::Relaxed), 1);
        assert_eq!(conns.counters.refused_total.load(Ordering::Relaxed), 1);
        drop(s1);
        assert_eq!(conns.open_from(a.ip()), 1);
        assert!(conns.admit(a).is_some());
    }
}
