//! The packet path of the relay: one received datagram in, at most one forward decision out.
//! O(1), allocation-free, no logging above trace.

use std::net::SocketAddr;
use std::time::Instant;

use crate::media::rtp;

use super::leg::LatchRules;
use super::leg::be32;
use super::{Forward, Latching, Relay, Side};

/// What a datagram is, from the port it arrived on and its first two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// RTP on an RTP port (RFC 3550 §5.1).
    Rtp,
    /// RTCP multiplexed on an RTP port (RFC 5761 §4: second byte 192–223).
    MuxRtcp,
    /// Anything on an RTCP port (RTP port + 1), taken as RTCP (RFC 3550 §6.4).
    Rtcp,
    /// A DTLS record on an RTP port (RFC 7983: first byte 20–63), the DTLS-SRTP handshake of
    /// the parties (RFC 5764 §5.1.2): forwarded like RTP, never counted as media.
    Dtls,
}

/// Smallest DTLS record: its header, in bytes (RFC 6347 §4.1).
const DTLS_MIN_LEN: usize = 13;
/// Smallest RTP packet: the fixed header, in bytes (RFC 3550 §5.1).
const RTP_MIN_LEN: usize = 12;
/// Smallest RTCP packet: header and sender SSRC, in bytes (RFC 3550 §6.4).
const RTCP_MIN_LEN: usize = 8;

/// Classifies `p` arriving on an RTP port (`on_rtcp_port == false`) or RTCP port; `None` when
/// it is too short or not version 2.
#[inline]
fn classify(p: &[u8], on_rtcp_port: bool) -> Option<Kind> {
    let &first = p.first()?;
    if (20..=63).contains(&first) {
        // DTLS record header: type, version, epoch, sequence number, length (13 bytes).
        return (p.len() >= DTLS_MIN_LEN).then_some(if on_rtcp_port {
            Kind::Rtcp
        } else {
            Kind::Dtls
        });
    }
    if first >> 6 != 2 {
        return None;
    }
    let kind = if on_rtcp_port {
        Kind::Rtcp
    } else if rtp::is_rtcp(p) {
        Kind::MuxRtcp
    } else {
        Kind::Rtp
    };
    let min = if kind == Kind::Rtp {
        RTP_MIN_LEN
    } else {
        RTCP_MIN_LEN
    };
    (p.len() >= min).then_some(kind)
}

impl Relay {
    /// Handles one datagram that arrived at `now` on local port `local_port` from `source`,
    /// and says where to send it: out of [`Forward::from_port`] to [`Forward::dest`]. The
    /// packet may have been rewritten in place (`RelayConfig::rewrite_ssrc`); send `packet`
    /// as it is after the call. `None`: dropped, and exactly one `dropped_*` counter of
    /// [`Relay::stats`] was raised.
    ///
    /// A packet on the leg facing party X goes out of the other leg's port of the same kind
    /// (RTP → RTP port, RTCP → RTCP port, or the RTP port when the other party uses rtcp-mux,
    /// RFC 5761) to the other party's latched source, else its SDP address. The leg latches
    /// X's real source on the first valid packet (RFC 4961 symmetric RTP) and then drops
    /// packets from third addresses, unless (not `strict_source`) a new SSRC arrives from the
    /// latched source's IP (a NAT rebinding, a restarted stream) or the latched source was
    /// silent for `relatch_after`. A new SSRC from another IP is dropped while the latched
    /// source is active: no hijack by a fresh SSRC. A leg set to [`Latching::Fixed`] never
    /// re-latches; one set to [`Latching::Asymmetric`] accepts every source and never latches.
    ///
    /// Never panics, whatever the bytes, length or port. O(1) and allocation-free.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local_port: u16,
        source: SocketAddr,
        packet: &mut [u8],
    ) -> Option<Forward> {
        let Some(owner) = self.pool.owner(local_port) else {
            self.counters.dropped_unknown_port += 1;
            return None;
        };
        let len = packet.len();
        if len > self.cfg.max_datagram {
            self.counters.dropped_oversized += 1;
            return None;
        }
        let Some(kind) = classify(packet, owner.rtcp) else {
            self.counters.dropped_malformed += 1;
            return None;
        };
        let Some(ctx) = self
            .slots
            .get_mut(usize::from(owner.slot))
            .and_then(|s| s.ctx.as_mut())
        else {
            // The pool and the slots agree by construction; count it rather than panic.
            self.counters.dropped_unknown_port += 1;
            return None;
        };
        let [caller, callee] = &mut ctx.legs;
        let (rx, tx) = if owner.side == 0 {
            (caller, callee)
        } else {
            (callee, caller)
        };
        let rules = match rx.latching {
            Latching::Symmetric => Some(self.rules),
            Latching::Fixed => Some(LatchRules {
                strict: true,
                ..self.rules
            }),
            Latching::Asymmetric => None,
        };
        if let Some(rules) = rules {
            // RTCP on its own port only from the host whose RTP the leg latched: a third host
            // cannot claim the RTCP port just by being first there.
            let rtcp_foreign =
                kind == Kind::Rtcp && rx.rtp_latch.addr.is_some_and(|a| a.ip() != source.ip());
            let (latch, ssrc) = match kind {
                Kind::Rtp => (&mut rx.rtp_latch, Some(be32(packet, 8))),
                Kind::MuxRtcp | Kind::Dtls => (&mut rx.rtp_latch, None),
                Kind::Rtcp => (&mut rx.rtcp_latch, None),
            };
            if rtcp_foreign || !latch.admit(now, source, ssrc, rules) {
                rx.count_foreign();
                self.counters.dropped_foreign += 1;
                return None;
            }
        }
        ctx.last_activity = now;
        if kind == Kind::Rtp
            && !rx.secure
            && !tx.secure
            && let (Some(rec), Some(tap)) = (ctx.recording, self.tap.as_mut())
        {
            let side = if owner.side == 0 {
                Side::Caller
            } else {
                Side::Callee
            };
            tap.packet(rec, side, now, packet);
        }
        if let Some(t) = ctx.engine.as_mut() {
            if kind == Kind::Rtp {
                rx.count_rtp(now, packet);
            } else if kind != Kind::Dtls {
                rx.count_rtcp(len);
            }
            // A transcoded stream is plain RTP (SRTP is never transcoded): DTLS has no business.
            if kind != Kind::Dtls {
                t.receive(now, owner.side, source, packet, kind == Kind::Rtcp);
            }
            self.counters.transcoded += 1;
            Self::collect_transmits(
                ctx,
                &mut self.transmits,
                &mut self.events,
                &mut self.counters,
            );
            return None;
        }
        let dest = if kind == Kind::Rtp {
            rx.count_rtp(now, packet);
            tx.rtp_dest().map(|a| (a, tx.rtp_port))
        } else if kind == Kind::Dtls {
            tx.rtp_dest().map(|a| (a, tx.rtp_port))
        } else {
            rx.count_rtcp(len);
            tx.rtcp_dest().map(|(a, via_rtp)| {
                let port = if via_rtp {
                    tx.rtp_port
                } else {
                    // rtp_port + 1 <= port_max: the pool only makes complete pairs.
                    tx.rtp_port.wrapping_add(1)
                };
                (a, port)
            })
        };
        let Some((dest, from_port)) = dest else {
            self.counters.dropped_no_destination += 1;
            return None;
        };
        if kind == Kind::Rtp && self.cfg.rewrite_ssrc && !rx.secure && !tx.secure {
            rx.rewriter.apply(packet);
        }
        self.counters.forwarded += 1;
        self.counters.forwarded_bytes += len as u64;
        Some(Forward { from_port, dest })
    }
}
