//! The sending half of a [`MediaSession`] tick: DTMF events (RFC 4733 §2.5.1) or one audio frame.

use bytes::Bytes;

use super::{DTMF_DURATION_MS, DTMF_GAP_MS, DtmfTx, MediaSession, MediaTransmit};
use crate::media::dtmf::event_packets;

impl MediaSession {
    /// Sends what this tick carries: the next packet(s) of a DTMF key, or one audio frame (silence
    /// while muted, without a source, or after a finite source ended).
    pub(crate) fn send_frame(&mut self) {
        if self.send_dtmf_tick() {
            return;
        }
        self.dtmf_gap = self.dtmf_gap.saturating_sub(1);
        let n = self
            .tx_resampler
            .as_ref()
            .map_or(self.codec.samples, |r| r.input_frame());
        self.pcm.clear();
        self.pcm.resize(n, 0);
        if let Some(src) = self.source.as_mut() {
            let got = src.read(&mut self.pcm).min(n);
            self.pcm[got..].fill(0);
        }
        if self.muted {
            self.pcm.fill(0);
        }
        self.pcm2.clear();
        match self.tx_resampler.as_mut() {
            Some(r) => r.process(&self.pcm, &mut self.pcm2),
            None => self.pcm2.extend_from_slice(&self.pcm),
        }
        self.pcm2.resize(self.codec.samples, 0);
        self.payload.clear();
        if let Err(e) = self.codec.encoder.encode(&self.pcm2, &mut self.payload) {
            tracing::debug!(error = %e, "encoding failed: frame skipped");
            let units = self.codec.units;
            self.restart_sender(self.cfg.payload_type, units);
            return;
        }
        let payload = Bytes::copy_from_slice(&self.payload);
        match self.rtp.frame(payload, self.codec.units) {
            Ok(bytes) => self.push_rtp(bytes),
            Err(e) => tracing::debug!(error = %e, "cannot packetize a frame"),
        }
    }

    fn push_rtp(&mut self, bytes: Bytes) {
        self.sent_since_report = true;
        self.transmits.push_back(MediaTransmit {
            dest: self.cfg.remote_rtp,
            rtcp: false,
            bytes,
        });
    }

    /// Runs the DTMF sender for one tick; `true` when the tick was spent on an event (audio is
    /// not sent in parallel, the media timestamp still advances by one frame).
    fn send_dtmf_tick(&mut self) -> bool {
        let Some(pt) = self.cfg.telephone_event_pt else {
            self.dtmf_tx = None;
            self.dtmf_queue.clear();
            return false;
        };
        if self.dtmf_tx.is_none() && self.dtmf_gap == 0 {
            while let Some(key) = self.dtmf_queue.pop_front() {
                let packets = event_packets(
                    key,
                    self.rtp.next_timestamp(),
                    self.cfg.codec.clock_rate,
                    DTMF_DURATION_MS,
                    self.cfg.frame_ms,
                );
                if let Some(packets) = packets {
                    self.dtmf_tx = Some(DtmfTx { packets, next: 0 });
                    break;
                }
            }
        }
        let Some(tx) = self.dtmf_tx.as_mut() else {
            return false;
        };
        // One packet per frame while the key is held; the three end packets together (§2.5.1.4).
        let mut out = Vec::with_capacity(3);
        while let Some(p) = tx.packets.get(tx.next) {
            tx.next += 1;
            out.push(*p);
            if !p.event.end {
                break;
            }
        }
        let done = tx.next >= tx.packets.len();
        for p in out {
            let payload = Bytes::copy_from_slice(&p.event.to_bytes());
            match self.rtp.event(pt, p.marker, p.timestamp, payload) {
                Ok(bytes) => self.push_rtp(bytes),
                Err(e) => tracing::debug!(error = %e, "cannot packetize a telephone-event"),
            }
        }
        if done {
            self.dtmf_tx = None;
            self.dtmf_sent += 1;
            self.dtmf_gap = DTMF_GAP_MS.div_ceil(self.cfg.frame_ms.max(1));
        }
        let units = self.codec.units;
        self.restart_sender(self.cfg.payload_type, units);
        true
    }
}
