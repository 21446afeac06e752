//! The receiving half of a [`MediaSession`]: RTP/RTCP demux, loss emulation, SSRC tracking,
//! symmetric-RTP latching (RFC 4961), DTMF (RFC 4733) and playout through the jitter buffer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{MediaEvent, MediaSession, RxSource, receives};
use crate::media::jitter::Playout;
use crate::media::rtp;
use crate::media::stats::{ReceiverStats, SeqVerdict};

/// Packets in a row a new SSRC must send before it replaces a still-active one.
const SSRC_SWITCH_PACKETS: u32 = 3;
/// A source silent this long is replaced by the first packet of a new SSRC.
const SSRC_STALE: Duration = Duration::from_millis(500);

impl MediaSession {
    /// Handles one datagram received at `now` from `from`, on the RTCP socket when `rtcp` (RTCP
    /// on the RTP socket is recognized too, RFC 5761 §4). On an SRTP stream the packet is
    /// unprotected first (DTLS records go to the handshake); one that fails authentication or
    /// is replayed is dropped and counted ([`super::CallStats::srtp_auth_failures`]). Malformed
    /// input, unknown payload types and packets of an unexpected SSRC are dropped quietly.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: Bytes, rtcp: bool) {
        let Some(data) = self.secure_in(now, from, data, rtcp) else {
            return;
        };
        if rtcp || rtp::is_rtcp(&data) {
            self.handle_rtcp(now, from, &data);
            return;
        }
        let Ok(p) = rtp::parse(&data) else {
            return;
        };
        let te = self.cfg.telephone_event_pt == Some(p.payload_type);
        if p.payload_type != self.cfg.payload_type && !te {
            return;
        }
        if self.emulate_loss() {
            return;
        }
        if !self.accept_ssrc(p.ssrc, now) {
            return;
        }
        if !self.latched_rtp {
            self.latched_rtp = true;
            if from != self.cfg.remote_rtp {
                self.cfg.remote_rtp = from;
                self.events.push_back(MediaEvent::Latched {
                    addr: from,
                    rtcp: false,
                });
            }
        }
        if !self.started {
            self.started = true;
            self.events.push_back(MediaEvent::FirstPacket { from });
        }
        self.last_rx = now;
        self.timeout_reported = false;
        let Some(rx) = self.rx.as_mut() else {
            return;
        };
        let len = p.payload.len();
        if rx.stats.on_packet(p.sequence_number, p.timestamp, len, now) == SeqVerdict::Discarded {
            return;
        }
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
        if !receives(self.cfg.direction) {
            return;
        }
        if te {
            if let Some(key) = self.dtmf_rx.on_packet(p.timestamp, &p.payload) {
                self.dtmf_received += 1;
                self.events.push_back(MediaEvent::Dtmf(key));
            }
        } else {
            self.jitter.insert(p.timestamp, p.payload, now);
        }
    }

    /// Whether a packet of `ssrc` belongs to the current source, switching sources when the old
    /// one went silent or the new one persists (RFC 3550 §8.2 collisions/restarts).
    fn accept_ssrc(&mut self, ssrc: u32, now: Instant) -> bool {
        let switch = match self.rx.as_mut() {
            None => true,
            Some(r) if r.ssrc == ssrc => {
                r.candidate = None;
                r.last_at = now;
                return true;
            }
            Some(r) => {
                let count = match r.candidate {
                    Some((c, n)) if c == ssrc => n + 1,
                    _ => 1,
                };
                r.candidate = Some((ssrc, count));
                count >= SSRC_SWITCH_PACKETS
                    || now.saturating_duration_since(r.last_at) > SSRC_STALE
            }
        };
        if switch {
            if self.rx.is_some() {
                tracing::debug!(ssrc, "remote SSRC changed");
                self.jitter = crate::media::jitter::JitterBuffer::new(
                    self.cfg.codec.clock_rate,
                    self.cfg.frame_ms,
                    super::JITTER_MIN_MS,
                    super::JITTER_MAX_MS,
                );
            }
            self.rx = Some(RxSource {
                ssrc,
                stats: ReceiverStats::new(self.cfg.codec.clock_rate),
                candidate: None,
                last_at: now,
            });
        }
        switch
    }

    fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Ok(report) = self.rtcp.handle(now, data) else {
            return;
        };
        if !self.latched_rtcp {
            self.latched_rtcp = true;
            if from != self.cfg.remote_rtcp {
                self.cfg.remote_rtcp = from;
                self.events.push_back(MediaEvent::Latched {
                    addr: from,
                    rtcp: true,
                });
            }
        }
        if report.bye {
            self.events.push_back(MediaEvent::Bye);
        }
    }

    /// Plays one frame: decoded, concealed (codec PLC) or silence (buffering, or not receiving),
    /// resampled to the sink's rate.
    pub(crate) fn play_frame(&mut self) {
        let n = self.codec.samples;
        self.pcm.clear();
        if receives(self.cfg.direction) {
            match self.jitter.pop() {
                Playout::Frame { payload, .. } => {
                    if self.codec.decoder.decode(&payload, &mut self.pcm).is_err() {
                        self.pcm.clear();
                        self.codec.decoder.conceal(n, &mut self.pcm);
                    }
                }
                Playout::Missing { .. } => self.codec.decoder.conceal(n, &mut self.pcm),
                Playout::Underrun => {}
            }
        }
        self.pcm.resize(n, 0);
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        let out = match self.rx_resampler.as_mut() {
            Some(r) => {
                self.pcm2.clear();
                r.process(&self.pcm, &mut self.pcm2);
                &self.pcm2
            }
            None => &self.pcm,
        };
        if let Err(e) = sink.write(out) {
            tracing::debug!(error = %e, "sink write failed");
        }
    }
}
