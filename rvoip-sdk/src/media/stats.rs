//! Call-quality statistics: RTP receiver statistics per RFC 3550 Appendix A (sequence number
//! tracking with wrap-around and probation A.1, loss A.3, interarrival jitter A.8) and a MOS
//! estimate from the ITU-T G.107 E-model. Sans-IO: arrival times are inputs.

use std::time::Instant;

/// Packets needed in sequence before a source counts as valid (RFC 3550 A.1 MIN_SEQUENTIAL).
const MIN_SEQUENTIAL: u16 = 2;
/// Largest forward jump still taken as in-order with losses (RFC 3550 A.1 MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;
/// Largest backward jump taken as a reordered/duplicate packet (RFC 3550 A.1 MAX_MISORDER).
const MAX_MISORDER: u16 = 100;
/// Sequence number modulus (RFC 3550 A.1 RTP_SEQ_MOD).
const SEQ_MOD: u32 = 1 << 16;

/// Receiver statistics for one RTP source (SSRC), as RFC 3550 A.1/A.3/A.8 define them.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate_hz: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u16,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Relative transit time of the previous packet, in timestamp units.
    transit: Option<f64>,
    /// Interarrival jitter estimate, in timestamp units (RFC 3550 A.8).
    jitter: f64,
    epoch: Option<Instant>,
    bytes: u64,
    started: bool,
}

/// What [`ReceiverStats::on_packet`] concluded about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence (or a tolerable jump): counted.
    Valid,
    /// Source still on probation (RFC 3550 A.1): not yet counted.
    Probation,
    /// A very large jump or a duplicate/misordered old packet: not counted.
    Discarded,
}

impl ReceiverStats {
    /// Statistics for a source whose RTP clock runs at `clock_rate_hz` (8000 for G.711 and — by
    /// RFC 3551's historical rule — G.722, 48000 for Opus).
    pub fn new(clock_rate_hz: u32) -> ReceiverStats {
        ReceiverStats {
            clock_rate_hz: clock_rate_hz.max(1),
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0.0,
            epoch: None,
            bytes: 0,
            started: false,
        }
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// Accounts one received packet: its sequence number, RTP timestamp, payload size in bytes and
    /// arrival time (RFC 3550 A.1 `update_seq` and A.8 jitter).
    pub fn on_packet(
        &mut self,
        seq: u16,
        rtp_timestamp: u32,
        payload_bytes: usize,
        arrival: Instant,
    ) -> SeqVerdict {
        let verdict = self.update_seq(seq);
        if verdict == SeqVerdict::Valid {
            self.received += 1;
            self.bytes += payload_bytes as u64;
            // A.8: J += (|D| - J) / 16, with D the change in relative transit time.
            let epoch = *self.epoch.get_or_insert(arrival);
            let arrival_units = arrival.saturating_duration_since(epoch).as_secs_f64()
                * f64::from(self.clock_rate_hz);
            let transit = arrival_units - f64::from(rtp_timestamp);
            if let Some(prev) = self.transit {
                // Timestamps wrap at 2^32: fold the difference into (-2^31, 2^31].
                let mut d = transit - prev;
                let wrap = 4_294_967_296.0;
                if d > wrap / 2.0 {
                    d -= wrap;
                } else if d < -wrap / 2.0 {
                    d += wrap;
                }
                self.jitter += (d.abs() - self.jitter) / 16.0;
            }
            self.transit = Some(transit);
        }
        verdict
    }

    fn update_seq(&mut self, seq: u16) -> SeqVerdict {
        if !self.started {
            // First packet of the source (RFC 3550 A.1: init_seq, max_seq = seq - 1, probation).
            self.started = true;
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    return SeqVerdict::Valid;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqVerdict::Probation;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += SEQ_MOD; // wrapped
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump: restart if the next packet continues from here (source restart).
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return SeqVerdict::Discarded;
            }
        } else {
            // Duplicate or reordered packet: RFC 3550 counts it as received.
            return SeqVerdict::Valid;
        }
        SeqVerdict::Valid
    }

    /// Packets received and counted (duplicates included, as RFC 3550 A.3 does).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Payload bytes of counted packets.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Extended highest sequence number received (RFC 3550 A.3).
    pub fn extended_max_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected so far (RFC 3550 A.3): 0 while on probation.
    pub fn expected(&self) -> u64 {
        if self.probation > 0 {
            return 0;
        }
        u64::from(self.extended_max_seq()).saturating_sub(u64::from(self.base_seq)) + 1
    }

    /// Cumulative packets lost (expected − received, never negative here).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Fraction lost since the previous call, as the 8-bit fixed-point value of an RTCP report
    /// block (RFC 3550 A.3: lost/expected × 256, 0 when nothing was lost or duplicates exceed losses).
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        }
    }

    /// Cumulative loss fraction 0.0..=1.0 (lost / expected).
    pub fn loss_fraction(&self) -> f64 {
        let expected = self.expected();
        if expected == 0 {
            0.0
        } else {
            self.lost() as f64 / expected as f64
        }
    }

    /// Interarrival jitter in timestamp units (the RTCP report block field, RFC 3550 A.8).
    pub fn jitter_units(&self) -> u32 {
        self.jitter.round().clamp(0.0, f64::from(u32::MAX)) as u32
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate_hz)
    }
}

/// Codec impairment parameters of the E-model (ITU-T G.113 Appendix I): equipment impairment
/// `ie` and packet-loss robustness `bpl`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Ie: the codec's own impairment at no loss.
    pub ie: f64,
    /// Bpl: how well the codec (with its concealment) tolerates random loss.
    pub bpl: f64,
}

impl CodecImpairment {
    /// G.711 with packet-loss concealment (G.113: Ie 0, Bpl 25.1).
    pub const G711_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };
    /// G.722 at 64 kbit/s with concealment (wideband values mapped to the narrowband scale:
    /// a documented simplification, Ie 0, Bpl 25.1 like G.711).
    pub const G722_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };
    /// Opus at voice bit rates with its PLC (no G.113 entry; Ie 11, Bpl 20 are commonly used).
    pub const OPUS: CodecImpairment = CodecImpairment {
        ie: 11.0,
        bpl: 20.0,
    };
}

/// A MOS estimate (1.0..=4.5) from the ITU-T G.107 E-model, simplified: default values for
/// every parameter but the one-way mouth-to-ear delay `one_way_delay_ms` (delay impairment Id
/// after Cole & Rosenbluth's fit of G.107), the random packet loss `loss_fraction` (0.0..=1.0,
/// effective equipment impairment Ie-eff of G.107 §7.5 with BurstR = 1) and the codec's `codec`
/// impairments. R = 93.2 − Id − Ie-eff, then MOS from R by G.107 Annex B.
pub fn mos_estimate(one_way_delay_ms: f64, loss_fraction: f64, codec: CodecImpairment) -> f64 {
    let d = one_way_delay_ms.max(0.0);
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = (loss_fraction.clamp(0.0, 1.0)) * 100.0;
    let ie_eff = codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl);
    let r = 93.2 - id - ie_eff;
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6).clamp(1.0, 4.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Feeds `n` packets 20 ms apart (160 timestamp units at 8 kHz), skipping those `drop` rejects,
    /// with arrival jitter `jitter_of(i)` ms added.
    fn run(
        stats: &mut ReceiverStats,
        start_seq: u16,
        n: u32,
        drop: impl Fn(u32) -> bool,
        jitter_of: impl Fn(u32) -> u64,
    ) {
        let t0 = Instant::now();
        for i in 0..n {
            if drop(i) {
                continue;
            }
            let seq = start_seq.wrapping_add(i as u16);
            let arrival = t0 + Duration::from_millis(u64::from(i) * 20 + jitter_of(i));
            stats.on_packet(seq, i.wrapping_mul(160), 160, arrival);
        }
    }

    #[test]
    fn perfect_stream_has_no_loss_and_no_jitter() {
        let mut s = ReceiverStats::new(8000);
        run(&mut s, 100, 500, |_| false, |_| 0);
        // The first packet is on probation (RFC 3550 A.1): 499 counted.
        assert_eq!(s.received(), 499);
        assert_eq!(s.lost(), 0);
        assert!(s.jitter_ms() < 0.01, "{}", s.jitter_ms());
        assert_eq!(s.take_fraction_lost(), 0);
    }

    #[test]
    fn ten_percent_loss_is_reported_and_wraparound_is_handled() {
        let mut s = ReceiverStats::new(8000);
        // Starts near the top of the sequence space so it wraps.
        run(&mut s, 65_000, 2000, |i| i > 5 && i % 10 == 3, |_| 0);
        assert!(
            s.extended_max_seq() > 65_535,
            "wrapped: {}",
            s.extended_max_seq()
        );
        let f = s.loss_fraction();
        assert!((f - 0.1).abs() < 0.01, "loss {f}");
        let fl = s.take_fraction_lost();
        assert!((24..=27).contains(&fl), "RTCP fraction {fl}/256");
        assert_eq!(
            s.take_fraction_lost(),
            0,
            "nothing new since the last report"
        );
    }

    #[test]
    fn jitter_follows_rfc3550_a8() {
        let mut s = ReceiverStats::new(8000);
        // Alternating 0 / 10 ms late arrivals: |D| = 10 ms every packet, so J converges to 10 ms.
        run(
            &mut s,
            1,
            1000,
            |_| false,
            |i| if i % 2 == 0 { 0 } else { 10 },
        );
        assert!(
            (s.jitter_ms() - 10.0).abs() < 0.5,
            "jitter {} ms",
            s.jitter_ms()
        );
        assert_eq!(s.jitter_units(), 80);
    }

    #[test]
    fn huge_jump_is_discarded_unless_the_source_restarted() {
        let mut s = ReceiverStats::new(8000);
        run(&mut s, 10, 50, |_| false, |_| 0);
        let t = Instant::now() + Duration::from_secs(2);
        assert_eq!(s.on_packet(30_000, 0, 160, t), SeqVerdict::Discarded);
        // The next packet continues from the jump: a restarted source, re-based.
        assert_eq!(s.on_packet(30_001, 160, 160, t), SeqVerdict::Valid);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn mos_falls_with_loss_and_delay() {
        let clean = mos_estimate(20.0, 0.0, CodecImpairment::G711_PLC);
        assert!(clean > 4.3 && clean <= 4.5, "{clean}");
        let lossy = mos_estimate(20.0, 0.10, CodecImpairment::G711_PLC);
        assert!(lossy < 3.5 && lossy > 2.0, "{lossy}");
        let late = mos_estimate(400.0, 0.0, CodecImpairment::G711_PLC);
        assert!(late < clean - 0.5, "{late}");
        assert!(mos_estimate(0.0, 1.0, CodecImpairment::OPUS) < 1.5);
        assert_eq!(
            mos_estimate(1000.0, 0.5, CodecImpairment::G711_PLC),
            1.0,
            "R below 0 clamps"
        );
    }
}
