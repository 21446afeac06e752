//! Snapshots of a running server for operators and embedders: [`ServerStats`] (every counter
//! and gauge, the source of `/metrics` and [`crate::api::Server::stats`]) and [`StatusReport`]
//! (the bindings and calls of `/status`).
//!
//! Both are taken by the event task, which owns the [`ServerCore`], when another task asks
//! ([`super::query`]); nothing here locks the core.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use crate::media::relay::RelayStats;
use crate::server::core::{ServerCore, Stats};
use crate::server::guard::GuardStats;
use crate::sip::transaction::MessageCounts;

use super::conn::ConnCounters;
use super::relay::RelayHandle;
use super::tls::TlsCounters;
use super::ws::WsCounters;

/// The stream connections' counters at one instant (see [`ConnCounters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Accepted connections open now.
    pub open: u64,
    /// Connections accepted in all.
    pub accepted: u64,
    /// Connections refused because `max_connections` were open.
    pub refused_total: u64,
    /// Connections refused because their source had `max_connections_per_source` open.
    pub refused_per_source: u64,
    /// Connections closed after `connection_idle_timeout_s` without a message.
    pub idle_closed: u64,
    /// Connections closed because a message did not complete within `message_timeout_s`.
    pub slow_closed: u64,
    /// Connections closed after a message over `max_message_bytes` (513).
    pub too_large_closed: u64,
    /// Connections closed after a message that could not be framed (400).
    pub bad_framing_closed: u64,
}

impl ConnStats {
    fn of(c: &ConnCounters) -> ConnStats {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ConnStats {
            open: get(&c.open),
            accepted: get(&c.accepted),
            refused_total: get(&c.refused_total),
            refused_per_source: get(&c.refused_per_source),
            idle_closed: get(&c.idle_closed),
            slow_closed: get(&c.slow_closed),
            too_large_closed: get(&c.too_large_closed),
            bad_framing_closed: get(&c.bad_framing_closed),
        }
    }
}

/// TLS and WebSocket handshake counters at one instant (see [`TlsCounters`], [`WsCounters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeStats {
    /// TLS handshakes completed.
    pub tls_accepted: u64,
    /// TLS handshakes that failed.
    pub tls_failed: u64,
    /// TLS handshakes that timed out.
    pub tls_timed_out: u64,
    /// WebSocket upgrades completed (`sip` subprotocol agreed).
    pub ws_accepted: u64,
    /// WebSocket upgrades refused or failed (no `sip` subprotocol, bad handshake, timeout).
    pub ws_failed: u64,
    /// WebSocket connections closed for a protocol error or an oversized message.
    pub ws_protocol_errors: u64,
}

/// Everything a running server counts, at one instant: the source of `/metrics` and of
/// [`crate::api::Server::stats`]. Counters only grow while the server runs; gauges are the
/// current values.
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    /// Seconds since the event loop started.
    pub uptime_s: u64,
    /// SIP requests received and responses sent by method and class, with the first-response
    /// latencies (REGISTER: request to final response; INVITE: request to the first response
    /// other than 100 Trying).
    pub messages: MessageCounts,
    /// The core's counters: parse errors, rejections, registrations, digest challenges,
    /// forwarded requests, limits hit (`overloaded`, `body_too_large`, `replies_dropped`)…
    pub core: Stats,
    /// The flood and brute-force guard's counters: messages dropped, bans, failed digests.
    pub guard: GuardStats,
    /// Client transactions in progress (gauge).
    pub client_transactions: usize,
    /// Server transactions in progress (gauge).
    pub server_transactions: usize,
    /// Requests the proxy is forwarding now (gauge).
    pub proxy_contexts: usize,
    /// Calls in progress: dialogs the proxy record-routed, early or confirmed (gauge).
    pub calls: usize,
    /// Bindings in the location service, expired ones not yet swept included (gauge).
    pub bindings: usize,
    /// Addresses of record with at least one binding (gauge).
    pub aors: usize,
    /// Bytes of requests held by transactions (gauge).
    pub held_bytes: usize,
    /// The media relay's counters and gauges (`None` with `relay = "off"`).
    pub relay: Option<RelayStats>,
    /// Stream connections (TCP, TLS, WS).
    pub connections: ConnStats,
    /// TLS and WebSocket handshakes.
    pub handshakes: HandshakeStats,
}

/// What the event task reads besides the core to answer a query.
#[derive(Clone)]
pub(crate) struct Sources {
    pub(crate) started: Instant,
    pub(crate) conns: Arc<ConnCounters>,
    pub(crate) relay: Option<RelayHandle>,
    pub(crate) tls: Arc<TlsCounters>,
    pub(crate) ws: Arc<WsCounters>,
}

/// The server's counters and gauges at `now`.
pub(crate) fn snapshot(core: &ServerCore, src: &Sources, now: Instant) -> ServerStats {
    let (client_transactions, server_transactions) = core.tl.len();
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    ServerStats {
        uptime_s: now.saturating_duration_since(src.started).as_secs(),
        messages: *core.tl.counts(),
        core: core.stats,
        guard: core.guard.stats,
        client_transactions,
        server_transactions,
        proxy_contexts: core.proxy.len(),
        calls: core.proxy.dialogs().len(),
        bindings: core.registrar.location.len(),
        aors: core.registrar.location.aor_count(),
        held_bytes: core.tl.held_bytes(),
        relay: src.relay.as_ref().map(|r| r.stats()),
        connections: ConnStats::of(&src.conns),
        handshakes: HandshakeStats {
            tls_accepted: get(&src.tls.accepted),
            tls_failed: get(&src.tls.handshake_failures),
            tls_timed_out: get(&src.tls.handshake_timeouts),
            ws_accepted: get(&src.ws.accepted),
            ws_failed: get(&src.ws.no_sip_subprotocol)
                + get(&src.ws.handshake_failures)
                + get(&src.ws.handshake_timeouts),
            ws_protocol_errors: get(&src.ws.protocol_errors),
        },
    }
}

/// One binding in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindingStatus {
    /// The address of record (the user part this server keys bindings by).
    pub aor: String,
    /// The contact URI.
    pub contact: String,
    /// Seconds until the binding expires (0: expired, not yet swept).
    pub expires_s: u64,
    /// The transport the REGISTER came over (`udp`, `tcp`, `tls`, `ws`, `wss`).
    pub transport: String,
    /// Where the REGISTER came from, `IP:port`.
    pub source: String,
}

/// One call in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallStatus {
    /// The dialog's Call-ID.
    pub call_id: String,
    /// The caller's From header value.
    pub from: String,
    /// The initial INVITE's To header value.
    pub to: String,
    /// `early` (INVITE forwarded, no 2xx yet) or `confirmed` (a 2xx was forwarded).
    pub state: String,
    /// Seconds since the initial INVITE was forwarded.
    pub age_s: u64,
}

/// The bindings and calls of a running server (`GET /status`), at most `limit` of each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// Bindings stored in all.
    pub bindings_total: usize,
    /// Up to `limit` of them, sorted by AOR then contact.
    pub bindings: Vec<BindingStatus>,
    /// Calls in progress in all.
    pub calls_total: usize,
    /// Up to `limit` of them, oldest first.
    pub calls: Vec<CallStatus>,
}

/// The status at `now`: the first `limit` bindings and calls met (the stores are unordered;
/// the chosen ones are then sorted).
pub(crate) fn status(core: &ServerCore, now: Instant, limit: usize) -> StatusReport {
    let location = &core.registrar.location;
    let unix = core.unix_secs(now);
    let mut bindings: Vec<BindingStatus> = location
        .iter()
        .take(limit)
        .map(|(aor, b)| BindingStatus {
            aor: aor.to_string(),
            contact: b.contact.to_string(),
            expires_s: b.remaining_secs(unix),
            transport: b.transport.as_str().to_ascii_lowercase(),
            source: b.source.to_string(),
        })
        .collect();
    bindings.sort_by(|a, b| (&a.aor, &a.contact).cmp(&(&b.aor, &b.contact)));
    let dialogs = core.proxy.dialogs();
    let mut calls: Vec<(Instant, CallStatus)> = dialogs
        .iter()
        .take(limit)
        .map(|(call_id, r)| {
            (
                r.started,
                CallStatus {
                    call_id: call_id.to_string(),
                    from: r.caller.header.clone().unwrap_or_default(),
                    to: r.to.clone().unwrap_or_default(),
                    state: if r.answered.is_some() {
                        "confirmed"
                    } else {
                        "early"
                    }
                    .to_string(),
                    age_s: now.saturating_duration_since(r.started).as_secs(),
                },
            )
        })
        .collect();
    calls.sort_by_key(|(started, _)| *started);
    StatusReport {
        bindings_total: location.len(),
        bindings,
        calls_total: dialogs.len(),
        calls: calls.into_iter().map(|(_, c)| c).collect(),
    }
}

/// The whole server's counters from each worker's snapshot (worker 0 first), with `workers` >
/// 1 ([`super::workers`]). Counters — messages, first-response latency histograms (bucket by
/// bucket: every worker uses the same buckets, so the merged histogram is exact), the core's
/// and the guard's — and the per-worker gauges (transactions, calls, proxy contexts, held
/// bytes) are summed. Bindings and AORs are counted once (each worker's location is a replica
/// of the same set: worker 0's is taken). Uptime, connections, handshakes and the relay are
/// shared by every worker and taken from worker 0's snapshot. Empty `parts`: all zero.
pub fn merge_worker_stats(parts: &[ServerStats]) -> ServerStats {
    let Some(first) = parts.first() else {
        return ServerStats::default();
    };
    let mut t = first.clone();
    t.messages = MessageCounts::default();
    let (mut clients, mut servers, mut contexts, mut calls, mut held) = (0, 0, 0, 0, 0);
    for p in parts {
        t.messages.add(&p.messages);
        clients += p.client_transactions;
        servers += p.server_transactions;
        contexts += p.proxy_contexts;
        calls += p.calls;
        held += p.held_bytes;
    }
    t.core = crate::server::shard::sum_stats(parts.iter().map(|p| &p.core));
    t.guard = crate::server::shard::sum_guard_stats(parts.iter().map(|p| &p.guard));
    t.client_transactions = clients;
    t.server_transactions = servers;
    t.proxy_contexts = contexts;
    t.calls = calls;
    t.held_bytes = held;
    t
}

/// The whole server's `/status` from each worker's report (worker 0 first), at most `limit`
/// of each list: the bindings once (worker 0's replica holds them all), the calls of every
/// worker (each call lives on the worker owning its Call-ID), oldest first.
pub fn merge_worker_status(parts: Vec<StatusReport>, limit: usize) -> StatusReport {
    let mut parts = parts.into_iter();
    let Some(mut t) = parts.next() else {
        return StatusReport::default();
    };
    for p in parts {
        t.calls_total += p.calls_total;
        t.calls.extend(p.calls);
    }
    // Oldest first; ties by Call-ID, so the listing is the same at every scrape.
    t.calls.sort_by(|a, b| {
        b.age_s
            .cmp(&a.age_s)
            .then_with(|| a.call_id.cmp(&b.call_id))
    });
    t.calls.truncate(limit);
    t.bindings.truncate(limit);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, age_s: u64) -> CallStatus {
        CallStatus {
            call_id: id.into(),
            from: String::new(),
            to: String::new(),
            state: "confirmed".into(),
            age_s,
        }
    }

    #[test]
    fn worker_stats_sum_counters_and_count_bindings_once() {
        let mut a = ServerStats {
            bindings: 10,
            aors: 9,
            calls: 2,
            client_transactions: 3,
            uptime_s: 7,
            ..ServerStats::default()
        };
        a.messages.requests_received[4] = 5;
        a.core.registrations = 5;
        a.guard.auth_failures = 1;
        a.connections.open = 4;
        let mut b = ServerStats {
            bindings: 10,
            aors: 9,
            calls: 3,
            client_transactions: 1,
            uptime_s: 7,
            ..ServerStats::default()
        };
        b.messages.requests_received[4] = 6;
        b.messages.first_response_latency[4].observe(std::time::Duration::from_millis(1));
        b.core.registrations = 6;
        b.connections.open = 4;
        let t = merge_worker_stats(&[a, b]);
        assert_eq!(t.messages.requests_received[4], 11);
        assert_eq!(t.messages.first_response_latency[4].count, 1);
        assert_eq!((t.core.registrations, t.guard.auth_failures), (11, 1));
        assert_eq!((t.calls, t.client_transactions), (5, 4));
        // Replicated and shared figures are not doubled.
        assert_eq!(
            (t.bindings, t.aors, t.connections.open, t.uptime_s),
            (10, 9, 4, 7)
        );
        assert_eq!(merge_worker_stats(&[]).bindings, 0);
    }

    #[test]
    fn worker_status_lists_bindings_once_and_every_workers_calls() {
        let binding = BindingStatus {
            aor: "alice".into(),
            contact: "sip:alice@192.0.2.1".into(),
            expires_s: 60,
            transport: "udp".into(),
            source: "192.0.2.1:5060".into(),
        };
        let a = StatusReport {
            bindings_total: 1,
            bindings: vec![binding.clone()],
            calls_total: 1,
            calls: vec![call("a1", 5)],
        };
        let b = StatusReport {
            bindings_total: 1,
            bindings: vec![binding],
            calls_total: 2,
            calls: vec![call("b1", 9), call("b2", 1)],
        };
        let t = merge_worker_status(vec![a.clone(), b.clone()], 10);
        assert_eq!((t.bindings_total, t.bindings.len()), (1, 1));
        assert_eq!(t.calls_total, 3);
        let ids: Vec<&str> = t.calls.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["b1", "a1", "b2"]);
        let t = merge_worker_status(vec![a, b], 2);
        assert_eq!((t.calls_total, t.calls.len()), (3, 2));
        assert_eq!(merge_worker_status(Vec::new(), 5), StatusReport::default());
    }
}
