//! RTCP reports (RFC 3550 §6.4) and the statistics snapshot of a [`MediaSession`].

use std::time::Instant;

use super::{CallStats, MediaSession, MediaTransmit};
use crate::media::rtcp;
use crate::media::stats::{CodecImpairment, mos_estimate};

impl MediaSession {
    pub(crate) fn send_report(&mut self, now: Instant) {
        let sender = std::mem::take(&mut self.sent_since_report).then(|| {
            // The RTP time of `now`: the next frame's timestamp minus the time until it.
            let ahead = self.next_tick().saturating_duration_since(now);
            let units = (ahead.as_secs_f64() * f64::from(self.cfg.codec.clock_rate)) as u32;
            rtcp::SenderInfo {
                rtp_timestamp: self.rtp.next_timestamp().wrapping_sub(units),
                packets: self.rtp.packets as u32,
                octets: self.rtp.bytes as u32,
            }
        });
        let source = self.rx.as_mut().map(|r| (r.ssrc, &mut r.stats));
        match self.rtcp.build_report(now, sender, source) {
            Ok(bytes) => self.transmits.push_back(MediaTransmit {
                dest: self.cfg.remote_rtcp,
                rtcp: true,
                bytes,
            }),
            Err(e) => tracing::debug!(error = %e, "cannot build an RTCP report"),
        }
    }

    /// A statistics snapshot at `now`.
    pub fn stats(&self, _now: Instant) -> CallStats {
        let (lost, fraction, jitter_ms) = self.rx.as_ref().map_or((0, 0.0, 0.0), |r| {
            (
                i64::try_from(r.stats.lost()).unwrap_or(i64::MAX),
                r.stats.loss_fraction(),
                r.stats.jitter_ms(),
            )
        });
        let rtt_ms = self.rtcp.rtt_ms();
        let jb_ms = self.jitter.target_delay_ms();
        let impairment = match self.cfg.codec.name.to_ascii_lowercase().as_str() {
            "g722" => CodecImpairment::G722_PLC,
            "opus" => CodecImpairment::OPUS,
            _ => CodecImpairment::G711_PLC,
        };
        let srtp = self.secure.counters();
        let one_way = rtt_ms.unwrap_or(0.0) / 2.0 + f64::from(jb_ms);
        CallStats {
            codec: self.cfg.codec.name,
            tx_packets: self.rtp.packets,
            tx_bytes: self.rtp.bytes,
            rx_packets: self.rx_packets,
            rx_bytes: self.rx_bytes,
            rx_lost: lost,
            rx_loss_fraction: fraction,
            jitter_ms,
            rtt_ms,
            mos: mos_estimate(one_way, fraction, impairment),
            jitter_buffer_ms: jb_ms,
            concealed_frames: self.jitter.stats().concealed,
            dtmf_received: self.dtmf_received,
            dtmf_sent: self.dtmf_sent,
            rtcp_sent: self.rtcp.reports_sent,
            rtcp_received: self.rtcp.reports_received,
            remote_rtp: Some(self.cfg.remote_rtp),
            srtp_keying: self.secure.keying(),
            srtp_suite: self.secure.suite(),
            srtp_auth_failures: srtp.auth_failures,
            srtp_replays: srtp.replays,
            srtp_dropped: self.srtp_dropped + srtp.malformed,
        }
    }
}
