//! Call recording's sans-IO core: the RTP packets both parties send through the media relay in,
//! one stereo PCM stream out (caller on the left channel, callee on the right), aligned by
//! packet arrival time. No clock, no files: `now` and the packets' arrival instants are inputs;
//! `driver::record` runs this on a thread and writes the samples to a WAV file.
//!
//! Each party's packets (RFC 3550 §5.1 RTP, any CSRC count, header extension and padding) are
//! decoded with the codec its payload type maps to ([`StereoRecorder::set_codecs`]; other
//! payload types such as telephone-event, RFC 4733, are ignored), resampled to the file rate and
//! placed on the party's channel by arrival time:
//!
//! - a packet's position is `(arrival − start) × rate` samples;
//! - when the channel's write cursor lags that position by more than [`RESYNC_GAP`] (silence
//!   suppression, DTX, a late start, a network outage), silence fills the gap and the packet
//!   goes at its position;
//! - otherwise the packet goes at the cursor, so ordinary jitter does not tear the audio;
//! - a packet that would put the cursor more than [`MAX_AHEAD`] past its position (a burst
//!   after an outage, a sender whose clock runs fast) is dropped, which bounds the drift
//!   between the channels;
//! - duplicates and late packets (RFC 3550 §A.1: a sequence number not newer than the highest
//!   seen from that SSRC) are dropped: the cursor never goes backwards.
//!
//! [`StereoRecorder::drain`] hands out interleaved `L, R` samples once they are final (older
//! than [`FINAL_DELAY`]), padding a channel that has nothing there with silence;
//! [`StereoRecorder::finish`] hands out the rest. A channel never holds more than
//! [`MAX_BUFFERED`] of audio: older samples are dropped (and come out as silence).

#![warn(missing_docs)]

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::codec::{self, Decoder};
use crate::media::relay::Side;
use crate::media::resample::FrameResampler;
use crate::media::rtp::is_rtcp;
use crate::sdp::AudioCodec;

/// How far behind `now` samples become final in [`StereoRecorder::drain`]: 200 ms, room for
/// network jitter and for the recorder thread's own lag.
pub const FINAL_DELAY: Duration = Duration::from_millis(200);

/// A packet arriving this much (60 ms) or less after its channel's write cursor is appended at
/// the cursor (jitter); one arriving later starts after silence, at its arrival position.
pub const RESYNC_GAP: Duration = Duration::from_millis(60);

/// A packet that arrives while its channel's cursor is already more than this (200 ms) past
/// the packet's arrival position is dropped.
pub const MAX_AHEAD: Duration = Duration::from_millis(200);

/// Most audio a channel holds before [`StereoRecorder::drain`] takes it: 3 s (older samples
/// are dropped and come out as silence).
pub const MAX_BUFFERED: Duration = Duration::from_secs(3);

/// The lowest file rate, in Hz; lower rates are raised to it.
pub const MIN_RATE_HZ: u32 = 8000;

/// The highest file rate, in Hz; higher rates are lowered to it.
pub const MAX_RATE_HZ: u32 = 48_000;

/// The resampler's frame: decoded audio is converted 20 ms at a time.
const CHUNK_MS: u32 = 20;

/// A sequence number at most this far behind the highest one seen (same SSRC) is a duplicate
/// or a late packet; further behind, the stream restarted and the packet is taken.
const LATE_WINDOW: i16 = 100;

/// What happened to one party's packets (counts since [`StereoRecorder::new`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Packets decoded and placed on the channel.
    pub packets: u64,
    /// Packets ignored: not RTP version 2, RTCP (RFC 5761 §4), truncated, a payload type with
    /// no codec (or a codec this build lacks), an empty or undecodable payload.
    pub ignored: u64,
    /// Packets dropped: duplicates, late (sequence number not newer, RFC 3550 §A.1), or more
    /// than [`MAX_AHEAD`] behind the channel's cursor.
    pub dropped: u64,
    /// Silence inserted before packets that arrived more than [`RESYNC_GAP`] after the
    /// channel's cursor, in samples at the file rate.
    pub silence_samples: u64,
}

/// One payload type's decoding path on one channel: the codec's decoder, a resampler to the
/// file rate, and the decoded samples that do not fill a resampler frame yet.
struct Lane {
    payload_type: u8,
    codec: AudioCodec,
    decoder: Box<dyn Decoder>,
    resampler: FrameResampler,
    pending: Vec<i16>,
}

impl Lane {
    /// Converts every whole resampler frame of `pending` and appends it to `out`.
    fn convert(&mut self, out: &mut Vec<i16>) {
        let frame = self.resampler.input_frame();
        let mut used = 0;
        while let Some(chunk) = self.pending.get(used..used + frame) {
            self.resampler.process(chunk, out);
            used += frame;
        }
        self.pending.drain(..used);
    }

    /// Converts what is left (padded with silence to a frame) and appends it to `out`.
    fn flush(&mut self, out: &mut Vec<i16>) {
        self.convert(out);
        if !self.pending.is_empty() {
            self.resampler.process(&self.pending, out);
            self.pending.clear();
        }
    }
}

/// One party's channel: its codecs and decoding lanes, and its samples not yet handed out.
#[derive(Default)]
struct Channel {
    codecs: Vec<(u8, AudioCodec)>,
    lanes: Vec<Lane>,
    /// The payload type of the last placed packet (its lane is flushed on a change).
    last_payload_type: Option<u8>,
    /// (SSRC, highest sequence number) of the last placed packet.
    last_seq: Option<(u32, u16)>,
    /// Samples from index `base` on (absolute, at the file rate, 0 = `start`).
    buf: VecDeque<i16>,
    base: u64,
    stats: ChannelStats,
    /// Reused buffers: a packet's decoded and resampled audio.
    decoded: Vec<i16>,
    converted: Vec<i16>,
}

impl Channel {
    /// The write cursor: the absolute index after the last sample.
    fn cursor(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// The sample at absolute index `at` (silence where the channel has nothing).
    fn sample(&self, at: u64) -> i16 {
        at.checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.buf.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Appends `samples` at the cursor, keeping at most `cap` samples.
    fn append(&mut self, samples: &[i16], cap: usize) {
        self.buf.extend(samples.iter().copied());
        self.trim(cap);
    }

    /// Fills silence from the cursor up to absolute index `to`, keeping at most `cap` samples.
    fn pad_to(&mut self, to: u64, cap: usize) {
        let cursor = self.cursor();
        let Some(n) = to.checked_sub(cursor).filter(|&n| n > 0) else {
            return;
        };
        self.stats.silence_samples += n;
        match usize::try_from(n) {
            Ok(n) if n < cap => {
                self.buf.resize(self.buf.len() + n, 0);
                self.trim(cap);
            }
            // All of it silence: nothing to keep.
            _ => {
                self.buf.clear();
                self.base = to;
            }
        }
    }

    /// Drops the oldest samples beyond `cap`.
    fn trim(&mut self, cap: usize) {
        let excess = self.buf.len().saturating_sub(cap);
        if excess > 0 {
            self.buf.drain(..excess);
            self.base += excess as u64;
        }
    }

    /// Forgets every sample before absolute index `end`; the cursor is at least `end` after.
    fn consume_to(&mut self, end: u64) {
        let Some(n) = end.checked_sub(self.base).filter(|&n| n > 0) else {
            return;
        };
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
        self.buf.drain(..n);
        self.base += n as u64;
        if self.buf.is_empty() {
            self.base = self.base.max(end);
        }
    }

    /// Converts the leftovers of every lane (a talkspurt ended, or `finish`) onto the channel.
    fn flush_lanes(&mut self, cap: usize) {
        let mut out = std::mem::take(&mut self.converted);
        out.clear();
        for lane in &mut self.lanes {
            lane.flush(&mut out);
        }
        self.append(&out, cap);
        self.converted = out;
    }

    /// The lane for `payload_type`, made on first use. `None`: no codec for it, or the codec
    /// (or its resampler) is not available.
    fn lane(&mut self, payload_type: u8, rate_hz: u32) -> Option<&mut Lane> {
        let codec = self
            .codecs
            .iter()
            .find(|(pt, _)| *pt == payload_type)
            .map(|(_, c)| *c)?;
        let at = match self
            .lanes
            .iter()
            .position(|l| l.payload_type == payload_type)
        {
            Some(at) => at,
            None => {
                let decoder = codec::new_decoder(&codec).ok()?;
                let resampler =
                    FrameResampler::new(codec::audio_rate(&codec), rate_hz, CHUNK_MS).ok()?;
                self.lanes.push(Lane {
                    payload_type,
                    codec,
                    decoder,
                    resampler,
                    pending: Vec::new(),
                });
                self.lanes.len() - 1
            }
        };
        self.lanes.get_mut(at)
    }
}

/// The fields of an RTP packet (RFC 3550 §5.1) the recorder uses.
struct RtpView<'a> {
    payload_type: u8,
    sequence_number: u16,
    ssrc: u32,
    payload: &'a [u8],
}

/// Parses an RTP header (RFC 3550 §5.1: version 2, CSRC list, §5.3.1 header extension,
/// padding) without copying. `None` for anything else: RTCP (RFC 5761 §4), another version,
/// a truncated header, a bad padding count, an empty payload.
fn parse_rtp(packet: &[u8]) -> Option<RtpView<'_>> {
    if is_rtcp(packet) {
        return None;
    }
    let [b0, b1, s0, s1, _, _, _, _, c0, c1, c2, c3] = *packet.get(..12)? else {
        return None;
    };
    if b0 >> 6 != 2 {
        return None;
    }
    let csrc_count = usize::from(b0 & 0x0f);
    let mut offset = 12 + 4 * csrc_count;
    if b0 & 0x10 != 0 {
        // Header extension: 16-bit profile data, 16-bit length in 32-bit words.
        let [_, _, l0, l1] = *packet.get(offset..offset + 4)? else {
            return None;
        };
        offset += 4 + 4 * usize::from(u16::from_be_bytes([l0, l1]));
    }
    let mut end = packet.len();
    if b0 & 0x20 != 0 {
        // Padding: the last octet counts the padding octets, itself included (never 0).
        let padding = usize::from(*packet.last()?);
        if padding == 0 {
            return None;
        }
        end = end.checked_sub(padding)?;
    }
    let payload = packet.get(offset..end).filter(|p| !p.is_empty())?;
    Some(RtpView {
        payload_type: b1 & 0x7f,
        sequence_number: u16::from_be_bytes([s0, s1]),
        ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
        payload,
    })
}

/// Two parties' RTP streams into one stereo PCM stream: caller left, callee right, at
/// [`StereoRecorder::rate_hz`], aligned by arrival time (see the module documentation).
///
/// Sans-IO: arrival instants and `now` are inputs. Never panics on any packet.
pub struct StereoRecorder {
    start: Instant,
    rate_hz: u32,
    /// Caller (left), callee (right).
    channels: [Channel; 2],
    /// Absolute index of the next sample to hand out (both channels).
    emitted: u64,
    /// Samples a channel keeps at most ([`MAX_BUFFERED`] at the file rate).
    cap: usize,
    resync: u64,
    ahead: u64,
}

impl std::fmt::Debug for StereoRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StereoRecorder")
            .field("rate_hz", &self.rate_hz)
            .field("emitted", &self.emitted)
            .field("caller", &self.channels[0].stats)
            .field("callee", &self.channels[1].stats)
            .finish()
    }
}

impl StereoRecorder {
    /// A recorder whose sample 0 is at `start`, writing `rate_hz` Hz (clamped to
    /// [`MIN_RATE_HZ`]..=[`MAX_RATE_HZ`]; 16000 suits G.711 and G.722 calls). No codecs yet:
    /// every packet is ignored until [`StereoRecorder::set_codecs`].
    pub fn new(start: Instant, rate_hz: u32) -> StereoRecorder {
        let rate_hz = rate_hz.clamp(MIN_RATE_HZ, MAX_RATE_HZ);
        let samples = |d: Duration| samples_in(d, rate_hz);
        StereoRecorder {
            start,
            rate_hz,
            channels: [Channel::default(), Channel::default()],
            emitted: 0,
            cap: usize::try_from(samples(MAX_BUFFERED)).unwrap_or(usize::MAX),
            resync: samples(RESYNC_GAP),
            ahead: samples(MAX_AHEAD),
        }
    }

    /// The output rate in Hz (both channels).
    pub fn rate_hz(&self) -> u32 {
        self.rate_hz
    }

    /// The instant of sample 0.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// What happened to `side`'s packets so far.
    pub fn stats(&self, side: Side) -> ChannelStats {
        self.channel(side).stats
    }

    /// Sets the payload type → codec map of `side`'s packets (RFC 3551 static types, or the
    /// dynamic ones of the SDP's `a=rtpmap`, RFC 4566 §6). Replaces the previous map; a payload
    /// type keeps its decoder state when it keeps its codec (a re-INVITE). The first entry of a
    /// repeated payload type wins; a codec that this build cannot decode
    /// ([`codec::is_available`], e.g. Opus without the `opus` feature) and telephone-event
    /// (RFC 4733) leave their payload type unmapped: those packets are ignored.
    pub fn set_codecs(&mut self, side: Side, codecs: &[(u8, AudioCodec)]) {
        let ch = self.channel_mut(side);
        ch.codecs.clear();
        for &(pt, c) in codecs {
            let pt = pt & 0x7f;
            if codec::is_available(&c) && !ch.codecs.iter().any(|(p, _)| *p == pt) {
                ch.codecs.push((pt, c));
            }
        }
        let codecs = std::mem::take(&mut ch.codecs);
        ch.lanes
            .retain(|l| codecs.contains(&(l.payload_type, l.codec)));
        ch.codecs = codecs;
    }

    /// Takes one whole plain RTP packet (RFC 3550 §5.1, as received; SRTP is never recorded) from `side`,
    /// received at `arrival`. Decodes it and places its audio on the side's channel (see the
    /// module documentation). Anything that is not an RTP packet with a mapped payload type is
    /// ignored (counted in [`ChannelStats::ignored`]); never panics.
    pub fn push_rtp(&mut self, side: Side, arrival: Instant, packet: &[u8]) {
        let rate_hz = self.rate_hz;
        let (cap, resync, ahead) = (self.cap, self.resync, self.ahead);
        let pos = samples_in(arrival.saturating_duration_since(self.start), rate_hz);
        let ch = self.channel_mut(side);
        let Some(rtp) = parse_rtp(packet) else {
            ch.stats.ignored += 1;
            return;
        };
        if let Some((ssrc, seq)) = ch.last_seq
            && ssrc == rtp.ssrc
            && (-LATE_WINDOW..=0).contains(&(rtp.sequence_number.wrapping_sub(seq) as i16))
        {
            ch.stats.dropped += 1;
            return;
        }
        let mut decoded = std::mem::take(&mut ch.decoded);
        decoded.clear();
        let ok = match ch.lane(rtp.payload_type, rate_hz) {
            // The decoder sees every packet, even one dropped below, so its state stays whole.
            Some(lane) => lane.decoder.decode(rtp.payload, &mut decoded).is_ok(),
            None => false,
        };
        if !ok || decoded.is_empty() {
            ch.decoded = decoded;
            ch.stats.ignored += 1;
            return;
        }
        let cursor = ch.cursor();
        if cursor > pos.saturating_add(ahead) {
            ch.decoded = decoded;
            ch.stats.dropped += 1;
            return;
        }
        ch.last_seq = Some((rtp.ssrc, rtp.sequence_number));
        if pos > cursor.saturating_add(resync) {
            // A gap: what the last talkspurt left in the resamplers goes before the silence.
            ch.flush_lanes(cap);
            ch.pad_to(pos, cap);
        } else if ch.last_payload_type != Some(rtp.payload_type) {
            // Another codec: the old lane's leftovers go before the new one's audio.
            ch.flush_lanes(cap);
        }
        ch.last_payload_type = Some(rtp.payload_type);
        let mut converted = std::mem::take(&mut ch.converted);
        converted.clear();
        if let Some(lane) = ch.lane(rtp.payload_type, rate_hz) {
            lane.pending.extend_from_slice(&decoded);
            lane.convert(&mut converted);
        }
        ch.append(&converted, cap);
        ch.stats.packets += 1;
        ch.converted = converted;
        ch.decoded = decoded;
    }

    /// Appends to `out` the interleaved `L, R` samples (caller, callee) that are final at
    /// `now`: every sample before `now − FINAL_DELAY` not handed out yet. A channel with nothing
    /// there gives silence. An earlier `now` than a previous call gives nothing.
    pub fn drain(&mut self, now: Instant, out: &mut Vec<i16>) {
        let done = now
            .saturating_duration_since(self.start)
            .saturating_sub(FINAL_DELAY);
        self.emit_to(samples_in(done, self.rate_hz), out);
    }

    /// Appends to `out` everything left, interleaved `L, R`: the resamplers' leftovers too, the
    /// shorter channel padded with silence to the longer one's end.
    pub fn finish(&mut self, out: &mut Vec<i16>) {
        let cap = self.cap;
        for ch in &mut self.channels {
            ch.flush_lanes(cap);
        }
        let [left, right] = &self.channels;
        let end = left.cursor().max(right.cursor());
        self.emit_to(end, out);
    }

    /// Hands out samples `emitted..end` of both channels.
    fn emit_to(&mut self, end: u64, out: &mut Vec<i16>) {
        let Some(n) = end.checked_sub(self.emitted).filter(|&n| n > 0) else {
            return;
        };
        let [left, right] = &mut self.channels;
        out.reserve(
            usize::try_from(n)
                .unwrap_or(0)
                .min(self.cap)
                .saturating_mul(2),
        );
        for at in self.emitted..end {
            out.push(left.sample(at));
            out.push(right.sample(at));
        }
        left.consume_to(end);
        right.consume_to(end);
        self.emitted = end;
    }

    fn channel(&self, side: Side) -> &Channel {
        let [left, right] = &self.channels;
        match side {
            Side::Caller => left,
            Side::Callee => right,
        }
    }

    fn channel_mut(&mut self, side: Side) -> &mut Channel {
        let [left, right] = &mut self.channels;
        match side {
            Side::Caller => left,
            Side::Callee => right,
        }
    }
}

/// Samples in `d` at `rate_hz` (rounded down, saturating).
fn samples_in(d: Duration, rate_hz: u32) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(rate_hz) / 1_000_000_000).unwrap_or(u64::MAX)
}
