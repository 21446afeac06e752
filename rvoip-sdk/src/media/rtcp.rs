//! RTCP (RFC 3550 §6) over the webrtc-rs `rtc-rtcp` crate, sans-IO: compound SR/RR + SDES CNAME
//! reports built from [`ReceiverStats`], parsing of incoming compound packets (garbage yields an
//! error, never a panic), round-trip time from a report block about us (§6.4.1) and the
//! randomized report interval (§6.2, 6.3.1), all on caller-supplied `now: Instant`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtc_rtcp::goodbye::Goodbye;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};

use crate::media::stats::ReceiverStats;

/// The nominal report interval (RFC 3550 §6.2 minimum, 5 s); each actual interval is this times
/// a random factor in 0.5..1.5 (§6.3.1).
pub const NOMINAL_INTERVAL: Duration = Duration::from_secs(5);

/// Seconds between the NTP epoch (1900-01-01) and the Unix epoch (1970-01-01).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// The largest cumulative loss a report block can carry (24-bit signed, RFC 3550 §6.4.1).
const MAX_CUMULATIVE_LOST: i64 = 0x7F_FFFF;

/// RTCP failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Not a valid RTCP compound packet (bad version, truncated, lengths that do not add up).
    #[error("malformed RTCP packet: {0}")]
    Malformed(String),
    /// The report could not be serialized.
    #[error("cannot serialize RTCP: {0}")]
    Marshal(String),
}

/// The sender-info section of an SR (RFC 3550 §6.4.1) that the caller knows about its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// RTP timestamp corresponding to the report's NTP time, in the payload's clock units.
    pub rtp_timestamp: u32,
    /// Packets sent since the stream started (wraps at 2^32).
    pub packets: u32,
    /// Payload bytes sent since the stream started (wraps at 2^32).
    pub octets: u32,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// SSRC of the source this block is about.
    pub ssrc: u32,
    /// Fraction lost since the previous report, fixed point /256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub extended_highest_seq: u32,
    /// Interarrival jitter, in RTP timestamp units (RFC 3550 A.8).
    pub jitter: u32,
    /// Last SR timestamp: the middle 32 bits of the NTP time of the last SR received (0: none).
    pub lsr: u32,
    /// Delay since that SR, in units of 1/65536 s.
    pub dlsr: u32,
}

/// What an incoming compound RTCP packet said.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RtcpReport {
    /// SSRC of the sender of the SR/RR, if there was one.
    pub ssrc: Option<u32>,
    /// NTP time (64-bit, 32.32 fixed point) and sender info of an SR.
    pub sender: Option<(u64, SenderInfo)>,
    /// Reception report blocks of the SR/RR.
    pub blocks: Vec<ReportBlock>,
    /// The CNAME of the first SDES chunk that has one.
    pub cname: Option<String>,
    /// Whether the compound packet contained a BYE.
    pub bye: bool,
    /// Round-trip time in ms computed from a block about us (set by [`Rtcp::handle`] only).
    pub rtt_ms: Option<f64>,
}

/// The 64-bit NTP timestamp (seconds since 1900 in 32.32 fixed point) of a wall-clock time.
pub fn ntp_from_system_time(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    duration_to_ntp(d).wrapping_add(NTP_UNIX_OFFSET_SECS << 32)
}

/// A duration in NTP 32.32 fixed point.
fn duration_to_ntp(d: Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32).wrapping_add(frac)
}

/// The middle 32 bits of a 64-bit NTP timestamp: the "NTP short format" (16.16 fixed point) of
/// LSR and of the arrival time in RFC 3550 §6.4.1.
pub fn ntp_short(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round-trip time in ms from a report block about us (RFC 3550 §6.4.1): `arrival − LSR − DLSR`,
/// all in NTP short format (1/65536 s) with `arrival` the time the report arrived. `None` when the
/// peer had no SR of ours yet (LSR 0) or the result is implausible (negative, over ~10 min).
pub fn round_trip_ms(arrival_short: u32, lsr: u32, dlsr: u32) -> Option<f64> {
    if lsr == 0 {
        return None;
    }
    let rtt = arrival_short.wrapping_sub(lsr).wrapping_sub(dlsr);
    if rtt > 0x8000_0000 || rtt > 600 * 65_536 {
        return None;
    }
    Some(f64::from(rtt) * 1000.0 / 65_536.0)
}

/// Parses one compound RTCP packet (RFC 3550 §6.1). Unknown packet types are skipped.
/// Errors: [`RtcpError::Malformed`] for anything that is not RTCP version 2 or does not parse.
pub fn parse(data: &[u8]) -> Result<RtcpReport, RtcpError> {
    if data.len() < 4 || data.first().is_none_or(|b| b >> 6 != 2) || data.len() % 4 != 0 {
        return Err(RtcpError::Malformed("not RTCP version 2".into()));
    }
    let mut buf = Bytes::copy_from_slice(data);
    let packets =
        rtc_rtcp::packet::unmarshal(&mut buf).map_err(|e| RtcpError::Malformed(e.to_string()))?;
    let mut out = RtcpReport::default();
    for p in &packets {
        let any = p.as_any();
        if let Some(sr) = any.downcast_ref::<SenderReport>() {
            if out.ssrc.is_none() {
                out.ssrc = Some(sr.ssrc);
                out.sender = Some((
                    sr.ntp_time,
                    SenderInfo {
                        rtp_timestamp: sr.rtp_time,
                        packets: sr.packet_count,
                        octets: sr.octet_count,
                    },
                ));
                out.blocks = sr.reports.iter().map(block_from).collect();
            }
        } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            if out.ssrc.is_none() {
                out.ssrc = Some(rr.ssrc);
                out.blocks = rr.reports.iter().map(block_from).collect();
            }
        } else if let Some(sdes) = any.downcast_ref::<SourceDescription>() {
            if out.cname.is_none() {
                out.cname = sdes
                    .chunks
                    .iter()
                    .flat_map(|c| c.items.iter())
                    .find(|i| i.sdes_type == SdesType::SdesCname)
                    .map(|i| String::from_utf8_lossy(&i.text).into_owned());
            }
        } else if any.downcast_ref::<Goodbye>().is_some() {
            out.bye = true;
        }
    }
    Ok(out)
}

fn block_from(r: &ReceptionReport) -> ReportBlock {
    // 24-bit two's complement.
    let lost = (r.total_lost & 0xFF_FFFF) as i32;
    let lost = if lost & 0x80_0000 != 0 {
        lost - 0x100_0000
    } else {
        lost
    };
    ReportBlock {
        ssrc: r.ssrc,
        fraction_lost: r.fraction_lost,
        cumulative_lost: lost,
        extended_highest_seq: r.last_sequence_number,
        jitter: r.jitter,
        lsr: r.last_sender_report,
        dlsr: r.delay,
    }
}

/// The RTCP state of one RTP session member (us): SSRC and CNAME, the NTP clock mapping, the
/// report schedule, the last SR received from the peer (for LSR/DLSR) and the measured RTT.
#[derive(Debug)]
pub struct Rtcp {
    ssrc: u32,
    cname: String,
    epoch: Instant,
    ntp_epoch: u64,
    interval: Duration,
    next: Instant,
    rng: StdRng,
    /// Middle 32 bits of the peer's last SR NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    rtt_ms: Option<f64>,
    /// Reports built.
    pub reports_sent: u64,
    /// Compound packets parsed successfully.
    pub reports_received: u64,
}

impl Rtcp {
    /// RTCP for our stream `ssrc` with `cname` (RFC 3550 §6.5.1). `ntp_now` is the wall clock at
    /// `now` as a 64-bit NTP timestamp ([`ntp_from_system_time`]; any consistent value works for
    /// RTT). `seed` seeds the interval randomization. The first report is due after half the
    /// nominal interval, randomized (§6.2).
    pub fn new(ssrc: u32, cname: &str, now: Instant, ntp_now: u64, seed: u64) -> Rtcp {
        let mut r = Rtcp {
            ssrc,
            cname: cname.to_string(),
            epoch: now,
            ntp_epoch: ntp_now,
            interval: NOMINAL_INTERVAL,
            next: now,
            rng: StdRng::seed_from_u64(seed),
            last_sr: None,
            rtt_ms: None,
            reports_sent: 0,
            reports_received: 0,
        };
        r.next = now + r.randomized(r.interval / 2);
        r
    }

    /// Sets the nominal interval (default [`NOMINAL_INTERVAL`]) and reschedules from `now`.
    pub fn set_interval(&mut self, interval: Duration, now: Instant) {
        self.interval = interval.max(Duration::from_millis(10));
        self.next = now + self.randomized(self.interval);
    }

    fn randomized(&mut self, base: Duration) -> Duration {
        base.mul_f64(self.rng.gen_range(0.5..1.5))
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The 64-bit NTP time at `now`.
    pub fn ntp(&self, now: Instant) -> u64 {
        self.ntp_epoch
            .wrapping_add(duration_to_ntp(now.saturating_duration_since(self.epoch)))
    }

    /// When the next report is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// Whether a report is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// The last round-trip time measured, in ms.
    pub fn rtt_ms(&self) -> Option<f64> {
        self.rtt_ms
    }

    /// Builds a compound report at `now` and schedules the next one: an SR when `sender` is given
    /// (we sent RTP since the last report), else an RR; one report block about `source`
    /// (its SSRC and statistics; taking the fraction lost resets the interval count) when we
    /// received from one; then SDES CNAME (RFC 3550 §6.1, §6.4). Errors: [`RtcpError::Marshal`].
    pub fn build_report(
        &mut self,
        now: Instant,
        sender: Option<SenderInfo>,
        source: Option<(u32, &mut ReceiverStats)>,
    ) -> Result<Bytes, RtcpError> {
        self.next = now + self.randomized(self.interval);
        let reports: Vec<ReceptionReport> = source
            .map(|(ssrc, stats)| {
                let (lsr, dlsr) = match self.last_sr {
                    Some((lsr, at)) => {
                        let d = duration_to_ntp(now.saturating_duration_since(at));
                        (lsr, (d >> 16).min(u64::from(u32::MAX)) as u32)
                    }
                    None => (0, 0),
                };
                let lost = (stats.lost().min(MAX_CUMULATIVE_LOST as u64)) as u32;
                ReceptionReport {
                    ssrc,
                    fraction_lost: stats.take_fraction_lost(),
                    total_lost: lost,
                    last_sequence_number: stats.extended_max_seq(),
                    jitter: stats.jitter_units(),
                    last_sender_report: lsr,
                    delay: dlsr,
                }
            })
            .into_iter()
            .collect();
        let first: Box<dyn rtc_rtcp::packet::Packet> = match sender {
            Some(s) => Box::new(SenderReport {
                ssrc: self.ssrc,
                ntp_time: self.ntp(now),
                rtp_time: s.rtp_timestamp,
                packet_count: s.packets,
                octet_count: s.octets,
                reports,
                profile_extensions: Bytes::new(),
            }),
            None => Box::new(ReceiverReport {
                ssrc: self.ssrc,
                reports,
                profile_extensions: Bytes::new(),
            }),
        };
        let sdes = SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: self.ssrc,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: Bytes::copy_from_slice(
                        &self.cname.as_bytes()[..self.cname.len().min(255)],
                    ),
                }],
            }],
        };
        let out = rtc_rtcp::packet::marshal(&[first, Box::new(sdes)])
            .map_err(|e| RtcpError::Marshal(e.to_string()))?;
        self.reports_sent += 1;
        Ok(out.freeze())
    }

    /// Handles one incoming compound packet that arrived at `now`: remembers an SR for our next
    /// LSR/DLSR, and computes the RTT from a block about our SSRC (RFC 3550 §6.4.1).
    /// Errors: [`RtcpError::Malformed`]; the state is unchanged then.
    pub fn handle(&mut self, now: Instant, data: &[u8]) -> Result<RtcpReport, RtcpError> {
        let mut report = parse(data)?;
        self.reports_received += 1;
        if let Some((ntp, _)) = report.sender {
            self.last_sr = Some((ntp_short(ntp), now));
        }
        let arrival = ntp_short(self.ntp(now));
        if let Some(b) = report.blocks.iter().find(|b| b.ssrc == self.ssrc) {
            if let Some(rtt) = round_trip_ms(arrival, b.lsr, b.dlsr) {
                self.rtt_ms = Some(rtt);
                report.rtt_ms = Some(rtt);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_with_loss() -> ReceiverStats {
        let mut s = ReceiverStats::new(8000);
        let t0 = Instant::now();
        for i in 0..100u32 {
            if i % 10 == 5 {
                continue;
            }
            s.on_packet(
                1000u16.wrapping_add(i as u16),
                i * 160,
                160,
                t0 + Duration::from_millis(u64::from(i) * 20),
            );
        }
        s
    }

    #[test]
    fn sr_with_block_and_cname_round_trips() {
        let t0 = Instant::now();
        let mut r = Rtcp::new(0xAAAA, "alice@example.com", t0, 0x1234_5678_0000_0000, 1);
        let mut stats = stats_with_loss();
        let bytes = r
            .build_report(
                t0,
                Some(SenderInfo {
                    rtp_timestamp: 777,
                    packets: 50,
                    octets: 8000,
                }),
                Some((0xBBBB, &mut stats)),
            )
            .unwrap();
        let p = parse(&bytes).unwrap();
        assert_eq!(p.ssrc, Some(0xAAAA));
        let (ntp, info) = p.sender.unwrap();
        assert_eq!(ntp, 0x1234_5678_0000_0000);
        assert_eq!(
            (info.rtp_timestamp, info.packets, info.octets),
            (777, 50, 8000)
        );
        assert_eq!(p.blocks.len(), 1);
        let b = p.blocks[0];
        assert_eq!(b.ssrc, 0xBBBB);
        assert_eq!(b.cumulative_lost, 10);
        assert!((20..=30).contains(&b.fraction_lost), "{}", b.fraction_lost);
        assert_eq!(b.extended_highest_seq, 1099);
        assert_eq!((b.lsr, b.dlsr), (0, 0), "no SR from the peer yet");
        assert_eq!(p.cname.as_deref(), Some("alice@example.com"));
        assert!(!p.bye);
        // Without sender info: an RR; nothing new lost since the last report.
        let rr = parse(
            &r.build_report(t0, None, Some((0xBBBB, &mut stats)))
                .unwrap(),
        )
        .unwrap();
        assert!(rr.sender.is_none());
        assert_eq!(rr.blocks[0].fraction_lost, 0);
        assert_eq!(rr.blocks[0].cumulative_lost, 10);
        assert_eq!(r.reports_sent, 2);
    }

    #[test]
    fn rtt_from_a_simulated_sr_rr_exchange() {
        let t0 = Instant::now();
        let one_way = Duration::from_millis(40);
        // Different wall clocks on both sides: only A's matters for the RTT.
        let mut a = Rtcp::new(1, "a", t0, ntp_from_system_time(SystemTime::now()), 1);
        let mut b = Rtcp::new(2, "b", t0, 42 << 32, 2);
        let mut b_stats = ReceiverStats::new(8000);
        for i in 0..5u16 {
            b_stats.on_packet(i, u32::from(i) * 160, 160, t0);
        }
        let sr = a
            .build_report(t0, Some(SenderInfo::default()), None)
            .unwrap();
        let report = b.handle(t0 + one_way, &sr).unwrap();
        assert_eq!(report.rtt_ms, None, "no block about b in a's SR");
        // B holds the SR for 1.3 s before it reports (DLSR), then the RR takes 40 ms back.
        let t_rr = t0 + one_way + Duration::from_millis(1300);
        let rr = b.build_report(t_rr, None, Some((1, &mut b_stats))).unwrap();
        let parsed = parse(&rr).unwrap();
        let dlsr = parsed.blocks[0].dlsr;
        assert!(
            (dlsr as i64 - 85_197).abs() <= 2,
            "1.3 s in 1/65536 s: {dlsr}"
        );
        let got = a.handle(t_rr + one_way, &rr).unwrap().rtt_ms.unwrap();
        assert!((got - 80.0).abs() < 0.5, "rtt {got} ms");
        assert_eq!(a.rtt_ms(), Some(got));
    }

    #[test]
    fn interval_is_randomized_around_five_seconds() {
        let t0 = Instant::now();
        let mut r = Rtcp::new(1, "x", t0, 0, 7);
        let first = r.poll_timeout() - t0;
        assert!(first >= Duration::from_millis(1250) && first <= Duration::from_millis(3750));
        assert!(!r.is_due(t0));
        let mut now = r.poll_timeout();
        assert!(r.is_due(now));
        let mut seen = Vec::new();
        for _ in 0..50 {
            r.build_report(now, None, None).unwrap();
            let d = r.poll_timeout() - now;
            assert!(d >= Duration::from_millis(2500) && d <= Duration::from_millis(7500));
            seen.push(d);
            now = r.poll_timeout();
        }
        let min = seen.iter().min().unwrap();
        let max = seen.iter().max().unwrap();
        assert!(
            *max - *min > Duration::from_secs(1),
            "randomized: {min:?}..{max:?}"
        );
    }

    #[test]
    fn round_trip_rejects_missing_and_implausible_values() {
        assert_eq!(round_trip_ms(1000, 0, 0), None);
        assert_eq!(round_trip_ms(1000, 2000, 0), None, "negative");
        assert_eq!(round_trip_ms(65_536 + 100, 100, 0), Some(1000.0));
        // Wraps around the 32-bit short format.
        assert_eq!(
            round_trip_ms(10, u32::MAX - 6543, 0).map(|v| v.round()),
            Some(100.0)
        );
    }

    #[test]
    fn negative_cumulative_loss_is_sign_extended() {
        let r = ReceptionReport {
            total_lost: 0xFF_FFFE,
            ..Default::default()
        };
        assert_eq!(block_from(&r).cumulative_lost, -2);
    }

    #[test]
    fn garbage_never_panics() {
        let t0 = Instant::now();
        let mut r = Rtcp::new(1, "x", t0, 0, 1);
        let mut stats = stats_with_loss();
        let good = r
            .build_report(t0, Some(SenderInfo::default()), Some((9, &mut stats)))
            .unwrap();
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x80]).is_err());
        assert!(parse(&[0x00, 200, 0, 0]).is_err(), "version 0");
        for cut in 0..good.len() {
            let _ = r.handle(t0, &good[..cut]);
        }
        let mut rng = StdRng::seed_from_u64(99);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..120usize);
            let mut g: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            if let Some(b) = g.first_mut() {
                *b = 0x80 | (*b & 0x3F);
            }
            if let Some(b) = g.get_mut(1) {
                *b = 200 + (*b % 8);
            }
            let _ = r.handle(t0, &g);
            // Also corrupt the valid packet in one byte.
            let mut c = good.to_vec();
            let i = rng.gen_range(0..c.len());
            c[i] = rng.r#gen();
            let _ = r.handle(t0, &c);
        }
        assert_eq!(r.rtt_ms(), None, "nothing about us with a plausible LSR");
    }
}
