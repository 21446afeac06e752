//! The relay's public statistics: per leg (what one party sent into the relay), per media
//! context, and relay-wide counters.

use std::net::SocketAddr;

/// What one party sent into the relay, as seen on the leg facing it. Only packets accepted
/// from the party's (latched) source count; foreign packets only raise `dropped_foreign`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LegStats {
    /// RTP packets accepted (RTCP multiplexed on the RTP port excluded).
    pub packets: u64,
    /// Bytes of those RTP packets: whole UDP payloads (RTP header included), in bytes.
    pub bytes: u64,
    /// RTCP packets accepted, on the RTCP port or multiplexed on the RTP port (RFC 5761).
    pub rtcp_packets: u64,
    /// Bytes of those RTCP packets (UDP payloads), in bytes.
    pub rtcp_bytes: u64,
    /// Cumulative packets lost (RFC 3550 A.3: extended highest sequence number − base + 1 −
    /// received, never negative), summed over every SSRC the party used. The first packet of
    /// each SSRC is its probation packet (RFC 3550 A.1) and is not part of the count.
    pub lost: u64,
    /// Interarrival jitter of the current SSRC (RFC 3550 A.8), in milliseconds, from the
    /// `now` arrival times and the clock rate given to `set_remote`.
    pub jitter_ms: f64,
    /// The party's latched RTP source (RFC 4961 symmetric RTP), if any packet was accepted.
    pub latched: Option<SocketAddr>,
    /// Packets that arrived on this leg from a third address and were dropped.
    pub dropped_foreign: u64,
}

/// Both directions of one media context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaStats {
    /// What the caller sent into the relay (received on the caller-facing leg).
    pub caller: LegStats,
    /// What the callee sent into the relay (received on the callee-facing leg).
    pub callee: LegStats,
}

/// Relay-wide counters. Every `handle_datagram` call adds exactly one to `forwarded`,
/// `transcoded` or one of the `dropped_*` counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Live media contexts.
    pub contexts: usize,
    /// Local ports held by live contexts (four per context).
    pub ports_in_use: usize,
    /// Datagrams forwarded (a `Forward` was returned).
    pub forwarded: u64,
    /// Bytes of forwarded datagrams (UDP payloads), in bytes.
    pub forwarded_bytes: u64,
    /// Datagrams from a third address after the leg latched (RFC 4961), dropped.
    pub dropped_foreign: u64,
    /// Datagrams that are not RTP (< 12 bytes) or RTCP (< 8 bytes) version 2.
    pub dropped_malformed: u64,
    /// Datagrams longer than `RelayConfig::max_datagram`.
    pub dropped_oversized: u64,
    /// Datagrams to a port outside the range or not allocated to a context.
    pub dropped_unknown_port: u64,
    /// Valid datagrams whose destination party has neither SDP nor latched address yet.
    pub dropped_no_destination: u64,
    /// `RelayEvent::MediaTimeout` events emitted.
    pub media_timeouts: u64,
    /// Datagrams taken in by a transcoder (RTP and RTCP of a transcoded context).
    pub transcoded: u64,
    /// Datagrams transcoders originated ([`super::Relay::poll_transmit`]).
    pub transcoded_sent: u64,
}
