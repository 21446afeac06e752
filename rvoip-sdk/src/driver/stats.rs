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
