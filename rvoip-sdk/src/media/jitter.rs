//! An adaptive jitter buffer (sans-IO). RTP packets go in as they arrive; the media clock pulls
//! one frame per frame period ([`JitterBuffer::pop`]) and gets the frame due, or `Missing` when it
//! was lost (the decoder then conceals), or `Underrun` before playout has started.
//!
//! The playout delay adapts to the interarrival jitter (RFC 3550 A.8 estimate): the target is
//! one frame plus three times the jitter, kept between `min_delay_ms` and `max_delay_ms`
//! (20–200 ms by default). Playout starts (and restarts after an underrun) once that much audio is
//! buffered; when more than the target plus two frames is queued, the oldest frame is dropped so
//! latency comes back down.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

/// What the media clock gets for one frame period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The frame due now: its RTP timestamp and payload.
    Frame {
        /// The RTP timestamp of the frame.
        timestamp: u32,
        /// The encoded payload.
        payload: Bytes,
    },
    /// The frame due now never arrived (lost or too late): conceal it (PLC).
    Missing {
        /// The RTP timestamp the frame would have had.
        timestamp: u32,
    },
    /// Nothing to play yet: buffering up to the target delay (play silence or comfort noise).
    Underrun,
}

/// What happened to an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Queued for playout.
    Queued,
    /// Its playout time has passed: dropped (it was or will be concealed).
    Late,
    /// Already queued: dropped.
    Duplicate,
    /// Further ahead of playout than the buffer can hold (a jump, or a forged timestamp): dropped.
    TooFar,
}

/// Adaptive jitter buffer for one RTP stream with a fixed frame duration.
#[derive(Debug)]
pub struct JitterBuffer {
    clock_rate_hz: u32,
    frame_units: u32,
    min_units: u32,
    max_units: u32,
    /// Queued frames by timestamp distance from `anchor` (wrap-safe ordering).
    queue: BTreeMap<i64, (u32, Bytes)>,
    /// Timestamp the offsets in `queue` are relative to.
    anchor: Option<u32>,
    /// Offset (from `anchor`) of the next frame to play; `None` until playout starts.
    next: Option<i64>,
    /// Jitter estimate in timestamp units (RFC 3550 A.8).
    jitter: f64,
    last_transit: Option<f64>,
    epoch: Option<Instant>,
    /// Consecutive frame periods concealed with nothing queued.
    empty_run: u32,
    /// A packet came too late since the last pull: add one frame of delay if below the target.
    grow: bool,
    /// Counters.
    stats: JitterStats,
}

/// Jitter buffer counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames handed out for playout.
    pub played: u64,
    /// Frame periods concealed because the frame was missing.
    pub concealed: u64,
    /// Packets dropped because they arrived after their playout time.
    pub late: u64,
    /// Frames dropped to bring the delay back to the target.
    pub dropped_for_latency: u64,
    /// Times playout had to (re)start buffering.
    pub underruns: u64,
    /// Frame periods inserted (concealed) to grow the delay after late packets.
    pub stretched: u64,
}

impl JitterBuffer {
    /// A buffer for a stream clocked at `clock_rate_hz` with frames of `frame_ms` ms, keeping the
    /// playout delay between `min_delay_ms` and `max_delay_ms` (e.g. 8000, 20, 20, 200).
    pub fn new(
        clock_rate_hz: u32,
        frame_ms: u32,
        min_delay_ms: u32,
        max_delay_ms: u32,
    ) -> JitterBuffer {
        let units = |ms: u32| (u64::from(clock_rate_hz) * u64::from(ms) / 1000).max(1) as u32;
        let frame_units = units(frame_ms.max(1));
        let min_units = units(min_delay_ms).max(frame_units);
        JitterBuffer {
            clock_rate_hz: clock_rate_hz.max(1),
            frame_units,
            min_units,
            max_units: units(max_delay_ms).max(min_units),
            queue: BTreeMap::new(),
            anchor: None,
            next: None,
            jitter: 0.0,
            last_transit: None,
            epoch: None,
            empty_run: 0,
            grow: false,
            stats: JitterStats::default(),
        }
    }

    fn offset(&self, ts: u32) -> i64 {
        match self.anchor {
            Some(a) => i64::from(ts.wrapping_sub(a) as i32),
            None => 0,
        }
    }

    /// The current target playout delay in ms (one frame plus three times the jitter, bounded).
    pub fn target_delay_ms(&self) -> u32 {
        (u64::from(self.target_units()) * 1000 / u64::from(self.clock_rate_hz)) as u32
    }

    fn target_units(&self) -> u32 {
        let t = f64::from(self.frame_units) + 3.0 * self.jitter;
        (t.round() as u32).clamp(self.min_units, self.max_units)
    }

    /// The jitter estimate in ms (RFC 3550 A.8).
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate_hz)
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Audio queued, in ms.
    pub fn buffered_ms(&self) -> u32 {
        (self.queue.len() as u64 * u64::from(self.frame_units) * 1000
            / u64::from(self.clock_rate_hz)) as u32
    }

    /// Adds a received packet (its RTP timestamp, payload and arrival time).
    pub fn insert(&mut self, timestamp: u32, payload: Bytes, arrival: Instant) -> Insert {
        if self.anchor.is_none() {
            self.anchor = Some(timestamp);
        }
        let off = self.offset(timestamp);
        // Bounded memory: nothing further ahead of the playout point than a few maximum delays
        // (late packets are handled below, after they have taught the jitter estimate).
        let horizon = 4 * i64::from(self.max_units);
        let reference = self
            .next
            .or_else(|| self.queue.first_key_value().map(|(&k, _)| k))
            .unwrap_or(off);
        if off - reference > horizon {
            return Insert::TooFar;
        }
        // Jitter estimate (RFC 3550 A.8) from arrival vs timestamp spacing.
        let epoch = *self.epoch.get_or_insert(arrival);
        let arrival_units =
            arrival.saturating_duration_since(epoch).as_secs_f64() * f64::from(self.clock_rate_hz);
        let transit = arrival_units - off as f64;
        if let Some(prev) = self.last_transit {
            self.jitter += ((transit - prev).abs() - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        if self.next.is_some_and(|next| off < next) {
            self.stats.late += 1;
            self.grow = true;
            return Insert::Late;
        }
        if self.queue.contains_key(&off) {
            return Insert::Duplicate;
        }
        self.queue.insert(off, (timestamp, payload));
        Insert::Queued
    }

    /// The frame for the current frame period. Call once per `frame_ms`, from the media clock.
    pub fn pop(&mut self) -> Playout {
        let next = match self.next {
            Some(n) => n,
            None => {
                // Buffering: start once the queued span reaches the target delay.
                let (Some((&first, _)), Some((&last, _))) =
                    (self.queue.first_key_value(), self.queue.last_key_value())
                else {
                    return Playout::Underrun;
                };
                if last - first + i64::from(self.frame_units) < i64::from(self.target_units()) {
                    return Playout::Underrun;
                }
                first
            }
        };
        // Too much queued: drop the oldest frames to come back to the target (latency).
        let limit = i64::from(self.target_units()) + 2 * i64::from(self.frame_units);
        let mut next = next;
        if let Some((&last, _)) = self.queue.last_key_value() {
            let span = last - next + i64::from(self.frame_units);
            if span > limit {
                // Skip whole frames so that `limit` remains; drop what is skipped.
                let frames =
                    (span - limit + i64::from(self.frame_units) - 1) / i64::from(self.frame_units);
                next += frames * i64::from(self.frame_units);
                let kept = self.queue.split_off(&next);
                self.stats.dropped_for_latency += self.queue.len() as u64;
                self.queue = kept;
            }
        }
        if self.queue.is_empty() {
            // Nothing queued: keep the playout clock running (so stragglers are recognised as
            // late) and conceal, for up to the maximum delay; then go back to buffering.
            if self.empty_run * self.frame_units < self.max_units {
                self.empty_run += 1;
                self.next = Some(next + i64::from(self.frame_units));
                self.stats.concealed += 1;
                let anchor = self.anchor.unwrap_or(0);
                return Playout::Missing {
                    timestamp: anchor.wrapping_add(next as u32),
                };
            }
            self.next = None;
            self.empty_run = 0;
            self.stats.underruns += 1;
            return Playout::Underrun;
        }
        self.empty_run = 0;
        if std::mem::take(&mut self.grow) {
            // Packets are arriving too late for the current delay: if below the target, hold the
            // playout point for one period (one concealed frame) so the delay grows by a frame.
            let span = self
                .queue
                .last_key_value()
                .map(|(&last, _)| last - next + i64::from(self.frame_units))
                .unwrap_or(0);
            if span < i64::from(self.target_units()) {
                self.next = Some(next);
                self.stats.stretched += 1;
                let anchor = self.anchor.unwrap_or(0);
                return Playout::Missing {
                    timestamp: anchor
                        .wrapping_add(next.wrapping_sub(i64::from(self.frame_units)) as u32),
                };
            }
        }
        self.next = Some(next + i64::from(self.frame_units));
        match self.queue.remove(&next) {
            Some((timestamp, payload)) => {
                self.stats.played += 1;
                Playout::Frame { timestamp, payload }
            }
            None => {
                self.stats.concealed += 1;
                let anchor = self.anchor.unwrap_or(0);
                Playout::Missing {
                    timestamp: anchor.wrapping_add(next as u32),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const FRAME: u32 = 160; // 20 ms at 8 kHz

    fn payload(i: u32) -> Bytes {
        Bytes::from(i.to_be_bytes().to_vec())
    }

    /// Sends frames 0..n (timestamps `base + i*160`) with per-frame arrival offsets, pulling one
    /// frame per 20 ms from the same clock, and returns what was played.
    fn simulate(
        jb: &mut JitterBuffer,
        n: u32,
        base: u32,
        arrive_ms: impl Fn(u32) -> Option<u64>,
    ) -> Vec<Playout> {
        let t0 = Instant::now();
        let mut arrivals: Vec<(u64, u32)> = (0..n)
            .filter_map(|i| arrive_ms(i).map(|a| (a, i)))
            .collect();
        arrivals.sort();
        let mut out = Vec::new();
        let mut k = 0;
        for tick in 0..(n as u64 + 30) {
            let now_ms = tick * 20;
            while k < arrivals.len() && arrivals[k].0 <= now_ms {
                let i = arrivals[k].1;
                jb.insert(
                    base.wrapping_add(i * FRAME),
                    payload(i),
                    t0 + Duration::from_millis(arrivals[k].0),
                );
                k += 1;
            }
            out.push(jb.pop());
        }
        out
    }

    /// Concealed periods while the stream was still playing (the tail after the end excluded).
    fn missing_before_last_frame(out: &[Playout]) -> usize {
        let last = out
            .iter()
            .rposition(|p| matches!(p, Playout::Frame { .. }))
            .unwrap_or(0);
        out[..last]
            .iter()
            .filter(|p| matches!(p, Playout::Missing { .. }))
            .count()
    }

    fn frames(out: &[Playout]) -> Vec<u32> {
        out.iter()
            .filter_map(|p| match p {
                Playout::Frame { payload, .. } => Some(u32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ])),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn in_order_stream_plays_everything_in_order() {
        let mut jb = JitterBuffer::new(8000, 20, 20, 200);
        let out = simulate(&mut jb, 200, 1000, |i| Some(u64::from(i) * 20));
        assert_eq!(frames(&out), (0..200).collect::<Vec<_>>());
        assert_eq!(missing_before_last_frame(&out), 0);
    }

    #[test]
    fn reordered_packets_play_in_order_and_losses_are_concealed_in_place() {
        let mut jb = JitterBuffer::new(8000, 20, 40, 200);
        // Pairs swapped (i odd arrives before i-1), every 10th lost; 10 ms of extra delay on evens.
        let out = simulate(&mut jb, 300, u32::MAX - 5000, |i| {
            if i % 10 == 7 {
                None
            } else if i % 2 == 0 {
                Some(u64::from(i) * 20 + 25)
            } else {
                Some(u64::from(i) * 20)
            }
        });
        let played = frames(&out);
        assert!(
            played.windows(2).all(|w| w[0] < w[1]),
            "in order across the timestamp wrap"
        );
        let missing: Vec<u32> = out
            .iter()
            .filter_map(|p| match p {
                Playout::Missing { timestamp } => {
                    Some(timestamp.wrapping_sub(u32::MAX - 5000) / FRAME)
                }
                _ => None,
            })
            .collect();
        // Frames 300.. are the concealment after the stream ended.
        let missing: Vec<u32> = missing.into_iter().filter(|&m| m < 300).collect();
        assert!(
            missing.iter().all(|m| m % 10 == 7),
            "concealed exactly the lost frames: {missing:?}"
        );
        assert!(missing.len() >= 25, "{}", missing.len());
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn delay_adapts_to_jitter_within_bounds() {
        let mut jb = JitterBuffer::new(8000, 20, 20, 200);
        simulate(&mut jb, 100, 0, |i| Some(u64::from(i) * 20));
        let calm = jb.target_delay_ms();
        assert_eq!(calm, 20);
        // ±30 ms of jitter: the target grows, but never past 200 ms.
        let mut jb = JitterBuffer::new(8000, 20, 20, 200);
        let out = simulate(&mut jb, 400, 0, |i| {
            Some(u64::from(i) * 20 + if i % 3 == 0 { 60 } else { 0 })
        });
        assert!(jb.target_delay_ms() > 60, "target {}", jb.target_delay_ms());
        assert!(jb.target_delay_ms() <= 200);
        let played = frames(&out);
        assert!(
            played.len() > 370,
            "the delay grew: little lost to lateness: {}",
            played.len()
        );
        assert!(jb.stats().stretched > 0);
        let mut wild = JitterBuffer::new(8000, 20, 20, 200);
        simulate(&mut wild, 200, 0, |i| {
            Some(u64::from(i) * 20 + u64::from(i % 2) * 900)
        });
        assert_eq!(wild.target_delay_ms(), 200, "capped at the maximum");
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped() {
        let mut jb = JitterBuffer::new(8000, 20, 20, 200);
        let t = Instant::now();
        assert_eq!(jb.insert(0, payload(0), t), Insert::Queued);
        assert_eq!(jb.insert(0, payload(0), t), Insert::Duplicate);
        assert_eq!(jb.insert(160, payload(1), t), Insert::Queued);
        assert!(matches!(jb.pop(), Playout::Frame { timestamp: 0, .. }));
        assert!(matches!(jb.pop(), Playout::Frame { timestamp: 160, .. }));
        assert_eq!(jb.insert(0, payload(0), t), Insert::Late);
        // Empty: concealed while the playout clock runs on, then back to buffering.
        assert_eq!(jb.pop(), Playout::Missing { timestamp: 320 });
        for _ in 0..9 {
            assert!(matches!(jb.pop(), Playout::Missing { .. }));
        }
        assert_eq!(
            jb.pop(),
            Playout::Underrun,
            "after the maximum delay: buffering again"
        );
        assert_eq!(jb.stats().underruns, 1);
    }

    #[test]
    fn far_future_timestamps_are_refused() {
        let mut jb = JitterBuffer::new(8000, 20, 20, 200);
        let t = Instant::now();
        assert_eq!(jb.insert(1000, payload(0), t), Insert::Queued);
        assert_eq!(
            jb.insert(1000u32.wrapping_add(1 << 30), payload(1), t),
            Insert::TooFar
        );
        assert_eq!(jb.insert(1160, payload(2), t), Insert::Queued);
        assert!(matches!(
            jb.pop(),
            Playout::Frame {
                timestamp: 1000,
                ..
            }
        ));
    }

    #[test]
    fn a_burst_is_trimmed_back_to_the_target() {
        let mut jb = JitterBuffer::new(8000, 20, 20, 200);
        let t = Instant::now();
        // 50 frames arrive at once (a stalled network releasing a backlog).
        for i in 0..50u32 {
            jb.insert(i * FRAME, payload(i), t);
        }
        let first = jb.pop();
        assert!(matches!(first, Playout::Frame { .. }));
        assert!(jb.stats().dropped_for_latency > 0);
        assert!(
            jb.buffered_ms() <= jb.target_delay_ms() + 40,
            "buffered {} ms",
            jb.buffered_ms()
        );
    }
}
