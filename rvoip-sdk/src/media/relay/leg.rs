//! One leg of a media context: the relay's port pair facing one party, what that party's SDP
//! said, where its packets really come from (symmetric latching, RFC 4961), its receive
//! statistics (RFC 3550 A.1/A.3/A.8) and the optional SSRC/sequence/timestamp rewriter.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::media::stats::ReceiverStats;

use super::Latching;
use super::stats::LegStats;

/// RTP timestamp step assumed before any was observed: 20 ms at 8 kHz, in clock units.
const DEFAULT_TS_DELTA: u32 = 160;
/// Clock rate used before `set_remote` gives one, in Hz.
pub(super) const DEFAULT_CLOCK_RATE: u32 = 8000;

/// Reads a big-endian u16 at `at`; 0 when out of bounds (callers check lengths first).
#[inline]
pub(super) fn be16(p: &[u8], at: usize) -> u16 {
    match p.get(at..at + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// Reads a big-endian u32 at `at`; 0 when out of bounds (callers check lengths first).
#[inline]
pub(super) fn be32(p: &[u8], at: usize) -> u32 {
    match p.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Writes `bytes` at `at` if they fit.
#[inline]
fn put(p: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = p.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// The latched source of one port (RTP or RTCP) of a leg (RFC 4961 symmetric RTP).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Latch {
    /// The source address accepted on this port.
    pub(super) addr: Option<SocketAddr>,
    /// When the latched source last sent an accepted packet.
    last_seen: Option<Instant>,
    /// The SSRC of the latched RTP stream (RTP port only).
    ssrc: Option<u32>,
}

/// The source-latching rules that come from `RelayConfig`.
#[derive(Debug, Clone, Copy)]
pub(super) struct LatchRules {
    /// Never re-latch once latched.
    pub(super) strict: bool,
    /// Silence of the latched source after which another source may take over.
    pub(super) relatch_after: Duration,
}

impl Latch {
    /// Decides whether a packet from `source` is accepted, latching or re-latching as the rules
    /// allow. `ssrc` is the RTP SSRC for RTP packets, `None` for RTCP. Returns `false` for a
    /// foreign packet (to be dropped).
    ///
    /// Re-latching (never with `rules.strict`): a new SSRC from the latched source's IP (its
    /// NAT rebound the port, or the phone restarted its stream) takes over at once; any other
    /// source, whatever its SSRC, only once the latched source was silent for
    /// `rules.relatch_after`. A fresh SSRC alone proves nothing (anyone can pick one), so a
    /// third host cannot hijack a leg whose party is still sending.
    #[inline]
    pub(super) fn admit(
        &mut self,
        now: Instant,
        source: SocketAddr,
        ssrc: Option<u32>,
        rules: LatchRules,
    ) -> bool {
        if let Some(addr) = self.addr
            && addr != source
        {
            if rules.strict {
                return false;
            }
            let new_stream = addr.ip() == source.ip()
                && matches!((ssrc, self.ssrc), (Some(new), Some(old)) if new != old);
            let silent = self
                .last_seen
                .is_none_or(|t| now.saturating_duration_since(t) >= rules.relatch_after);
            if !new_stream && !silent {
                return false;
            }
            tracing::trace!(from = %addr, to = %source, new_stream, "relay: re-latch");
        }
        self.addr = Some(source);
        self.last_seen = Some(now);
        if ssrc.is_some() {
            self.ssrc = ssrc;
        }
        true
    }

    /// Forgets the latched source (the party's SDP address changed).
    pub(super) fn reset(&mut self) {
        *self = Latch::default();
    }
}

/// Keeps one output SSRC and continuous sequence numbers and timestamps across input SSRC
/// changes (RFC 3550 §5.1 fields rewritten in place; RFC 7667 §3.2.1.3 translator behaviour).
#[derive(Debug, Clone, Copy)]
pub(super) struct Rewriter {
    /// The SSRC every output packet carries: the first input SSRC seen.
    out_ssrc: Option<u32>,
    /// The input SSRC the offsets were computed for.
    in_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest output sequence number sent, and its output timestamp.
    last_seq: u16,
    last_ts: u32,
    /// Last observed timestamp step between consecutive sequence numbers, in clock units.
    ts_delta: u32,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            out_ssrc: None,
            in_ssrc: 0,
            seq_offset: 0,
            ts_offset: 0,
            last_seq: 0,
            last_ts: 0,
            ts_delta: DEFAULT_TS_DELTA,
        }
    }
}

impl Rewriter {
    /// Rewrites the SSRC, sequence number and timestamp of the RTP packet `p` (at least 12
    /// bytes, checked by the caller) in place.
    #[inline]
    pub(super) fn apply(&mut self, p: &mut [u8]) {
        let (seq, ts, ssrc) = (be16(p, 2), be32(p, 4), be32(p, 8));
        let out_ssrc = match self.out_ssrc {
            None => {
                self.out_ssrc = Some(ssrc);
                self.in_ssrc = ssrc;
                self.last_seq = seq.wrapping_sub(1);
                self.last_ts = ts.wrapping_sub(self.ts_delta);
                ssrc
            }
            Some(out) => {
                if ssrc != self.in_ssrc {
                    // New input stream: continue right after the last output packet.
                    self.in_ssrc = ssrc;
                    self.seq_offset = self.last_seq.wrapping_add(1).wrapping_sub(seq);
                    self.ts_offset = self.last_ts.wrapping_add(self.ts_delta).wrapping_sub(ts);
                }
                out
            }
        };
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        let step = out_seq.wrapping_sub(self.last_seq) as i16;
        if step > 0 {
            let ts_step = out_ts.wrapping_sub(self.last_ts);
            if step == 1 && ts_step != 0 && ts_step < 1 << 31 {
                self.ts_delta = ts_step;
            }
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        put(p, 2, &out_seq.to_be_bytes());
        put(p, 4, &out_ts.to_be_bytes());
        put(p, 8, &out_ssrc.to_be_bytes());
    }
}

/// One leg: the port pair facing one party and everything the relay knows about that party.
#[derive(Debug)]
pub(super) struct Leg {
    /// The pool's pair index (RTP port = base + 2·pair).
    pub(super) pair: u16,
    /// The RTP port of the pair (RTCP is `rtp_port + 1`).
    pub(super) rtp_port: u16,
    /// The party's RTP address from its SDP (c= and m=), if usable.
    sdp_rtp: Option<SocketAddr>,
    /// The party's RTCP address from its SDP (a=rtcp, RFC 3605, else RTP port + 1).
    sdp_rtcp: Option<SocketAddr>,
    /// The party multiplexes RTCP on its RTP port (a=rtcp-mux, RFC 5761).
    rtcp_mux: bool,
    /// RTP clock rate of the party's stream, in Hz.
    clock_rate: u32,
    /// The party's stream is SRTP: forwarded untouched even with `rewrite_ssrc`.
    pub(super) secure: bool,
    /// How the party's source is learned.
    pub(super) latching: Latching,
    /// Where the party's RTP (and multiplexed RTCP) really comes from.
    pub(super) rtp_latch: Latch,
    /// Where the party's RTCP on the RTCP port really comes from.
    pub(super) rtcp_latch: Latch,
    /// Continuity of the stream the party sends (used when `rewrite_ssrc` is on).
    pub(super) rewriter: Rewriter,
    rx: RxStats,
}

/// Receive statistics of one leg.
#[derive(Debug)]
struct RxStats {
    packets: u64,
    bytes: u64,
    rtcp_packets: u64,
    rtcp_bytes: u64,
    dropped_foreign: u64,
    /// SSRC the sequence statistics follow.
    ssrc: Option<u32>,
    seq: ReceiverStats,
    /// Losses of the party's earlier SSRCs.
    lost_before: u64,
}

impl Leg {
    /// A leg on pool pair `pair` whose RTP port is `rtp_port`, with no SDP yet.
    pub(super) fn new(pair: u16, rtp_port: u16) -> Leg {
        Leg {
            pair,
            rtp_port,
            sdp_rtp: None,
            sdp_rtcp: None,
            rtcp_mux: false,
            clock_rate: DEFAULT_CLOCK_RATE,
            secure: false,
            latching: Latching::Symmetric,
            rtp_latch: Latch::default(),
            rtcp_latch: Latch::default(),
            rewriter: Rewriter::default(),
            rx: RxStats {
                packets: 0,
                bytes: 0,
                rtcp_packets: 0,
                rtcp_bytes: 0,
                dropped_foreign: 0,
                ssrc: None,
                seq: ReceiverStats::new(DEFAULT_CLOCK_RATE),
                lost_before: 0,
            },
        }
    }

    /// Applies the party's SDP: RTP address, RTCP address (`None`: RTP port + 1), rtcp-mux and
    /// clock rate (Hz). An address with port 0 or an unspecified IP (RFC 3264 §8.4 hold,
    /// RFC 2543 style) is no destination. A changed address resets that port's latch (and the
    /// RTCP latch with the RTP one); the first SDP keeps latches learned before it.
    pub(super) fn set_remote(
        &mut self,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        rtcp_mux: bool,
        clock_rate: u32,
    ) {
        let usable = |a: SocketAddr| (a.port() != 0 && !a.ip().is_unspecified()).then_some(a);
        let new_rtp = usable(rtp);
        let new_rtcp = match rtcp {
            Some(a) => usable(a),
            None => new_rtp.and_then(|a| {
                let port = a.port().checked_add(1)?;
                Some(SocketAddr::new(a.ip(), port))
            }),
        };
        let had_sdp = self.sdp_rtp.is_some() || self.sdp_rtcp.is_some();
        if had_sdp && new_rtp != self.sdp_rtp {
            self.rtp_latch.reset();
            self.rtcp_latch.reset();
        } else if had_sdp && new_rtcp != self.sdp_rtcp {
            self.rtcp_latch.reset();
        }
        self.sdp_rtp = new_rtp;
        self.sdp_rtcp = new_rtcp;
        self.rtcp_mux = rtcp_mux;
        let clock_rate = clock_rate.max(1);
        if clock_rate != self.clock_rate {
            self.clock_rate = clock_rate;
            self.restart_seq_stats(self.rx.ssrc);
        }
    }

    /// Where RTP for this party goes: its latched source, else its SDP address.
    #[inline]
    pub(super) fn rtp_dest(&self) -> Option<SocketAddr> {
        self.rtp_latch.addr.or(self.sdp_rtp)
    }

    /// Where RTCP for this party goes, and whether it leaves through the RTP port: with
    /// rtcp-mux the RTP destination through the RTP port, else the latched RTCP source or the
    /// SDP RTCP address through the RTCP port.
    #[inline]
    pub(super) fn rtcp_dest(&self) -> Option<(SocketAddr, bool)> {
        if self.rtcp_mux {
            self.rtp_dest().map(|a| (a, true))
        } else {
            self.rtcp_latch.addr.or(self.sdp_rtcp).map(|a| (a, false))
        }
    }

    /// Counts a foreign packet dropped on this leg.
    #[inline]
    pub(super) fn count_foreign(&mut self) {
        self.rx.dropped_foreign += 1;
    }

    /// Counts an accepted RTCP packet of `len` bytes.
    #[inline]
    pub(super) fn count_rtcp(&mut self, len: usize) {
        self.rx.rtcp_packets += 1;
        self.rx.rtcp_bytes += len as u64;
    }

    /// Accounts an accepted RTP packet `p` (≥ 12 bytes) that arrived at `now` (RFC 3550 A.1,
    /// A.3, A.8), restarting the sequence statistics when the SSRC changes.
    #[inline]
    pub(super) fn count_rtp(&mut self, now: Instant, p: &[u8]) {
        let ssrc = be32(p, 8);
        if self.rx.ssrc != Some(ssrc) {
            self.restart_seq_stats(Some(ssrc));
        }
        self.rx.packets += 1;
        self.rx.bytes += p.len() as u64;
        // Probation, misordered and restarted packets are the tracker's business (A.1).
        self.rx
            .seq
            .on_packet(be16(p, 2), be32(p, 4), p.len().saturating_sub(12), now);
    }

    fn restart_seq_stats(&mut self, ssrc: Option<u32>) {
        self.rx.lost_before = self.rx.lost_before.saturating_add(self.rx.seq.lost());
        self.rx.seq = ReceiverStats::new(self.clock_rate);
        self.rx.ssrc = ssrc;
    }

    /// The public statistics of this leg.
    pub(super) fn stats(&self) -> LegStats {
        LegStats {
            packets: self.rx.packets,
            bytes: self.rx.bytes,
            rtcp_packets: self.rx.rtcp_packets,
            rtcp_bytes: self.rx.rtcp_bytes,
            lost: self.rx.lost_before.saturating_add(self.rx.seq.lost()),
            jitter_ms: self.rx.seq.jitter_ms(),
            latched: self.rtp_latch.addr,
            dropped_foreign: self.rx.dropped_foreign,
        }
    }
}
