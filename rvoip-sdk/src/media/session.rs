//! One call's audio stream, sans-IO (RFC 3550 RTP/RTCP, RFC 4733 DTMF, RFC 4961 symmetric RTP).
//!
//! A [`MediaSession`] owns the codec, the RTP sender and receiver statistics, the jitter buffer,
//! the DTMF sender/receiver, RTCP, and the audio source and sink. It never reads the clock nor
//! touches a socket: the driver feeds datagrams ([`MediaSession::handle_datagram`]) and timer
//! expiries ([`MediaSession::handle_timeout`]) with `now`, and drains
//! [`MediaSession::poll_transmit`] and [`MediaSession::poll_event`].
//!
//! The media clock is a fixed grid `anchor + n · frame_ms`: every tick reads one frame from the
//! source (resampled to the codec rate), encodes and sends it, pops one frame from the jitter
//! buffer, decodes or conceals it, and writes it (resampled to the sink rate) to the sink. A late
//! `handle_timeout` catches up with at most [`MAX_CATCH_UP`] frames, then re-anchors.

mod report;
mod rx;
mod secure;
#[cfg(test)]
mod tests;
mod tx;
mod types;

pub use types::{CallStats, MediaConfig, MediaError, MediaEvent, MediaTransmit};

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::media::audio::{AudioSink, AudioSource};
use crate::media::codec::{self, Decoder, Encoder};
use crate::media::dtmf::{DtmfReceiver, EventPacket};
use crate::media::jitter::JitterBuffer;
use crate::media::resample::FrameResampler;
use crate::media::rtcp::{self, Rtcp};
use crate::media::rtp::RtpSender;
use crate::media::stats::ReceiverStats;
use crate::sdp::Direction;

/// The most frames one late [`MediaSession::handle_timeout`] produces before the clock is
/// re-anchored at `now` (10 frames: 200 ms at 20 ms).
pub const MAX_CATCH_UP: u32 = 10;
/// No RTP for this long while receiving raises [`MediaEvent::RtpTimeout`] (30 s).
pub const RTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Duration of one DTMF key press sent by [`MediaSession::send_dtmf`] (100 ms).
pub const DTMF_DURATION_MS: u32 = 100;
/// Pause between two queued DTMF keys (50 ms).
pub const DTMF_GAP_MS: u32 = 50;
/// Jitter buffer bounds (ms).
const JITTER_MIN_MS: u32 = 20;
const JITTER_MAX_MS: u32 = 200;

/// Per-codec state: rebuilt when the codec or a device rate changes.
pub(crate) struct CodecState {
    pub(crate) encoder: Box<dyn Encoder>,
    pub(crate) decoder: Box<dyn Decoder>,
    /// Samples per frame at the codec's audio rate.
    pub(crate) samples: usize,
    /// RTP timestamp units per frame.
    pub(crate) units: u32,
}

/// A DTMF key being sent.
pub(crate) struct DtmfTx {
    pub(crate) packets: Vec<EventPacket>,
    pub(crate) next: usize,
}

/// The receive side of one remote SSRC.
pub(crate) struct RxSource {
    pub(crate) ssrc: u32,
    pub(crate) stats: ReceiverStats,
    /// A different SSRC and how many packets in a row it sent (switch after 3).
    pub(crate) candidate: Option<(u32, u32)>,
    pub(crate) last_at: Instant,
}

/// The sans-IO audio stream of one call.
pub struct MediaSession {
    pub(crate) cfg: MediaConfig,
    pub(crate) codec: CodecState,
    anchor: Instant,
    ticks: u64,
    pub(crate) source: Option<Box<dyn AudioSource>>,
    pub(crate) sink: Option<Box<dyn AudioSink>>,
    pub(crate) tx_resampler: Option<FrameResampler>,
    pub(crate) rx_resampler: Option<FrameResampler>,
    pub(crate) rtp: RtpSender,
    pub(crate) first_seq: u16,
    pub(crate) muted: bool,
    pub(crate) sent_since_report: bool,
    pub(crate) dtmf_queue: VecDeque<char>,
    pub(crate) dtmf_tx: Option<DtmfTx>,
    /// Ticks of silence left between two keys.
    pub(crate) dtmf_gap: u32,
    pub(crate) dtmf_sent: u64,
    pub(crate) rx: Option<RxSource>,
    pub(crate) jitter: JitterBuffer,
    pub(crate) dtmf_rx: DtmfReceiver,
    pub(crate) dtmf_received: u64,
    pub(crate) rx_packets: u64,
    pub(crate) rx_bytes: u64,
    pub(crate) rtcp: Rtcp,
    pub(crate) transmits: VecDeque<MediaTransmit>,
    pub(crate) events: VecDeque<MediaEvent>,
    pub(crate) loss_rng: StdRng,
    pub(crate) latched_rtp: bool,
    pub(crate) latched_rtcp: bool,
    pub(crate) started: bool,
    pub(crate) last_rx: Instant,
    pub(crate) timeout_reported: bool,
    pub(crate) pcm: Vec<i16>,
    pub(crate) pcm2: Vec<i16>,
    pub(crate) payload: Vec<u8>,
    /// SRTP (or plain).
    pub(crate) secure: secure::Secure,
    /// Received packets dropped as not SRTP on a secure stream.
    pub(crate) srtp_dropped: u64,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("cfg", &self.cfg)
            .field("ssrc", &self.rtp.ssrc())
            .field("ticks", &self.ticks)
            .finish()
    }
}

fn validate(cfg: &MediaConfig) -> Result<(), MediaError> {
    if !(10..=120).contains(&cfg.frame_ms) {
        return Err(MediaError::Config(format!("frame_ms {}", cfg.frame_ms)));
    }
    if !(0.0..=100.0).contains(&cfg.rx_loss_percent) {
        return Err(MediaError::Config(format!(
            "rx_loss_percent {}",
            cfg.rx_loss_percent
        )));
    }
    Ok(())
}

fn codec_state(cfg: &MediaConfig) -> Result<CodecState, MediaError> {
    Ok(CodecState {
        encoder: codec::new_encoder_with(&cfg.codec, cfg.encoder_complexity)?,
        decoder: codec::new_decoder(&cfg.codec)?,
        samples: codec::frame_samples(&cfg.codec, cfg.frame_ms),
        units: codec::frame_units(&cfg.codec, cfg.frame_ms),
    })
}

/// A resampler from `from` to `to` Hz, or none when they are equal.
fn resampler(from: u32, to: u32, frame_ms: u32) -> Result<Option<FrameResampler>, MediaError> {
    if from == to {
        return Ok(None);
    }
    Ok(Some(FrameResampler::new(from, to, frame_ms)?))
}

pub(crate) fn sends(d: Direction) -> bool {
    matches!(d, Direction::SendRecv | Direction::SendOnly)
}

pub(crate) fn receives(d: Direction) -> bool {
    matches!(d, Direction::SendRecv | Direction::RecvOnly)
}

impl MediaSession {
    /// A session starting at `now` (the first frame is sent at `now`), with a random SSRC,
    /// sequence number and timestamp (RFC 3550 §5.1). The wall clock is read once here, for
    /// the NTP timestamps of sender reports. Errors: [`MediaError::Codec`] (codec not built in),
    /// [`MediaError::Resample`], [`MediaError::Config`].
    pub fn new(
        cfg: MediaConfig,
        source: Box<dyn AudioSource>,
        sink: Box<dyn AudioSink>,
        now: Instant,
    ) -> Result<MediaSession, MediaError> {
        Self::with_seed(cfg, source, sink, now, rand::random())
    }

    /// As [`MediaSession::new`] with all randomness (SSRC, sequence, timestamp, RTCP interval,
    /// loss emulation) from `seed`, for reproducible tests.
    pub fn with_seed(
        cfg: MediaConfig,
        source: Box<dyn AudioSource>,
        sink: Box<dyn AudioSink>,
        now: Instant,
        seed: u64,
    ) -> Result<MediaSession, MediaError> {
        validate(&cfg)?;
        let codec = codec_state(&cfg)?;
        let rate = codec::audio_rate(&cfg.codec);
        let tx_resampler = resampler(source.sample_rate(), rate, cfg.frame_ms)?;
        let rx_resampler = resampler(rate, sink.sample_rate(), cfg.frame_ms)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let (ssrc, first_seq, ts): (u32, u16, u32) = (rng.r#gen(), rng.r#gen(), rng.r#gen());
        let cname = format!("{:08x}@rvoip", rng.r#gen::<u32>());
        let ntp = rtcp::ntp_from_system_time(SystemTime::now());
        let secure = secure::Secure::new(&cfg, now)?;
        Ok(MediaSession {
            rtp: RtpSender::new(ssrc, first_seq, ts, cfg.payload_type),
            first_seq,
            jitter: JitterBuffer::new(
                cfg.codec.clock_rate,
                cfg.frame_ms,
                JITTER_MIN_MS,
                JITTER_MAX_MS,
            ),
            rtcp: Rtcp::new(ssrc, &cname, now, ntp, rng.r#gen()),
            loss_rng: StdRng::seed_from_u64(rng.r#gen()),
            codec,
            anchor: now,
            ticks: 0,
            source: Some(source),
            sink: Some(sink),
            tx_resampler,
            rx_resampler,
            muted: false,
            sent_since_report: false,
            dtmf_queue: VecDeque::new(),
            dtmf_tx: None,
            dtmf_gap: 0,
            dtmf_sent: 0,
            rx: None,
            dtmf_rx: DtmfReceiver::new(),
            dtmf_received: 0,
            rx_packets: 0,
            rx_bytes: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            latched_rtp: false,
            latched_rtcp: false,
            started: false,
            last_rx: now,
            timeout_reported: false,
            pcm: Vec::new(),
            pcm2: Vec::new(),
            payload: Vec::new(),
            secure,
            srtp_dropped: 0,
            cfg,
        })
    }

    /// The current configuration (with latched remote addresses).
    pub fn config(&self) -> &MediaConfig {
        &self.cfg
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.rtp.ssrc()
    }

    /// Applies a re-INVITE's outcome at `now`: direction, remote addresses, codec and payload
    /// types. SSRC, sequence numbers and the RTP timestamp continue (RFC 3264 §8). A new remote
    /// address may be latched again; a new codec restarts the jitter buffer and the receive
    /// statistics. Errors as [`MediaSession::new`]; the session is unchanged then.
    pub fn update(&mut self, cfg: MediaConfig, now: Instant) -> Result<(), MediaError> {
        validate(&cfg)?;
        self.update_security(&cfg, now)?;
        let codec_changed = cfg.codec != self.cfg.codec || cfg.frame_ms != self.cfg.frame_ms;
        if codec_changed {
            let codec = codec_state(&cfg)?;
            let rate = codec::audio_rate(&cfg.codec);
            let src = self.source.as_ref().map_or(rate, |s| s.sample_rate());
            let snk = self.sink.as_ref().map_or(rate, |s| s.sample_rate());
            let tx = resampler(src, rate, cfg.frame_ms)?;
            let rx = resampler(rate, snk, cfg.frame_ms)?;
            self.codec = codec;
            self.tx_resampler = tx;
            self.rx_resampler = rx;
            self.jitter = JitterBuffer::new(
                cfg.codec.clock_rate,
                cfg.frame_ms,
                JITTER_MIN_MS,
                JITTER_MAX_MS,
            );
            self.rx = None;
        }
        if cfg.remote_rtp != self.cfg.remote_rtp {
            self.latched_rtp = false;
        }
        if cfg.remote_rtcp != self.cfg.remote_rtcp {
            self.latched_rtcp = false;
        }
        let resume = sends(cfg.direction) && !sends(self.cfg.direction);
        if codec_changed || cfg.payload_type != self.cfg.payload_type || resume {
            self.restart_sender(cfg.payload_type, 0);
        }
        if !sends(cfg.direction) || cfg.telephone_event_pt.is_none() {
            self.dtmf_queue.clear();
            self.dtmf_tx = None;
        }
        if receives(cfg.direction) && !receives(self.cfg.direction) && !codec_changed {
            // Stale packets from before the hold are not played.
            self.jitter = JitterBuffer::new(
                cfg.codec.clock_rate,
                cfg.frame_ms,
                JITTER_MIN_MS,
                JITTER_MAX_MS,
            );
        }
        if receives(cfg.direction) && !receives(self.cfg.direction) {
            self.last_rx = now;
            self.timeout_reported = false;
        }
        self.cfg = cfg;
        Ok(())
    }

    /// Replaces the RTP sender by one with the same SSRC and sequence continuity, `payload_type`
    /// and the timestamp advanced by `skip_units` (a new talkspurt: marker on the next frame).
    pub(crate) fn restart_sender(&mut self, payload_type: u8, skip_units: u32) {
        let (packets, bytes) = (self.rtp.packets, self.rtp.bytes);
        let mut s = RtpSender::new(
            self.rtp.ssrc(),
            self.first_seq.wrapping_add(packets as u16),
            self.rtp.next_timestamp().wrapping_add(skip_units),
            payload_type,
        );
        s.packets = packets;
        s.bytes = bytes;
        self.rtp = s;
    }

    /// Switches the audio source (device change, file playback). Errors: [`MediaError::Resample`];
    /// the old source stays then.
    pub fn set_source(&mut self, source: Box<dyn AudioSource>) -> Result<(), MediaError> {
        let rate = codec::audio_rate(&self.cfg.codec);
        self.tx_resampler = resampler(source.sample_rate(), rate, self.cfg.frame_ms)?;
        self.source = Some(source);
        Ok(())
    }

    /// Switches the audio sink; the old one is finished (a WAV file gets its header) and dropped.
    /// Errors: [`MediaError::Resample`]; the old sink stays then.
    pub fn set_sink(&mut self, sink: Box<dyn AudioSink>) -> Result<(), MediaError> {
        let rate = codec::audio_rate(&self.cfg.codec);
        let rx = resampler(rate, sink.sample_rate(), self.cfg.frame_ms)?;
        self.rx_resampler = rx;
        if let Some(mut old) = self.sink.replace(sink) {
            if let Err(e) = old.finish() {
                tracing::debug!(error = %e, "finishing the old sink failed");
            }
        }
        Ok(())
    }

    /// Finishes the sink (flushes a WAV file) and stops playing; used at hangup.
    pub fn finish(&mut self) {
        if let Some(mut s) = self.sink.take() {
            if let Err(e) = s.finish() {
                tracing::debug!(error = %e, "finishing the sink failed");
            }
        }
    }

    /// Mutes (or unmutes) the microphone: while muted, silence frames are encoded and sent so
    /// NAT bindings and the peer's jitter buffer stay alive (as pjsua does).
    pub fn set_mute(&mut self, muted: bool) {
        if self.muted && !muted {
            self.rtp.start_talkspurt();
        }
        self.muted = muted;
    }

    /// Queues DTMF `digits` to send as RFC 4733 telephone-events, in order: each key lasts
    /// [`DTMF_DURATION_MS`], ends with three end packets, and is followed by [`DTMF_GAP_MS`].
    /// Audio is not sent during a key. Errors: [`MediaError::NoTelephoneEvent`],
    /// [`MediaError::NotSending`], [`MediaError::InvalidDigit`] (nothing queued then).
    pub fn send_dtmf(&mut self, digits: &str) -> Result<(), MediaError> {
        if self.cfg.telephone_event_pt.is_none() {
            return Err(MediaError::NoTelephoneEvent);
        }
        if !sends(self.cfg.direction) {
            return Err(MediaError::NotSending);
        }
        if let Some(c) = digits
            .chars()
            .find(|&c| crate::media::dtmf::event_code(c).is_none())
        {
            return Err(MediaError::InvalidDigit(c));
        }
        self.dtmf_queue.extend(digits.chars());
        Ok(())
    }

    fn frame(&self) -> Duration {
        Duration::from_millis(u64::from(self.cfg.frame_ms))
    }

    fn next_tick(&self) -> Instant {
        self.anchor + self.frame() * (self.ticks.min(u64::from(u32::MAX)) as u32)
    }

    /// Re-anchors the grid every 2^20 ticks (~6 h at 20 ms) to keep the arithmetic exact.
    fn advance_tick(&mut self) {
        self.ticks += 1;
        if self.ticks >= 1 << 20 {
            self.anchor = self.next_tick();
            self.ticks = 0;
        }
    }

    /// When [`MediaSession::handle_timeout`] must run next: the next frame or RTCP report.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.next_tick().min(self.rtcp.poll_timeout());
        Some(self.dtls_timeout().map_or(t, |d| d.min(t)))
    }

    /// Runs every frame due at `now` (at most [`MAX_CATCH_UP`]; if more were missed the clock
    /// re-anchors at `now` and the RTP timestamp skips the gap) and a due RTCP report.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dtls_handle_timeout(now);
        let mut done = 0;
        while self.next_tick() <= now {
            if done == MAX_CATCH_UP {
                let behind = now.saturating_duration_since(self.next_tick());
                let missed = (behind.as_millis() / u128::from(self.cfg.frame_ms)) as u32 + 1;
                tracing::debug!(missed, "media clock late: re-anchoring");
                self.restart_sender(
                    self.cfg.payload_type,
                    missed.saturating_mul(self.codec.units),
                );
                self.anchor = now + self.frame();
                self.ticks = 0;
                break;
            }
            self.tick(now);
            self.advance_tick();
            done += 1;
        }
        if self.rtcp.is_due(now) {
            self.send_report(now);
        }
    }

    fn tick(&mut self, now: Instant) {
        if sends(self.cfg.direction) {
            self.send_frame();
        }
        self.play_frame();
        if receives(self.cfg.direction)
            && !self.timeout_reported
            && now.saturating_duration_since(self.last_rx) >= RTP_TIMEOUT
        {
            self.timeout_reported = true;
            self.events.push_back(MediaEvent::RtpTimeout);
        }
    }

    /// The next datagram to send: DTLS handshake records first, then RTP and RTCP (protected
    /// when the stream is SRTP; held back while a DTLS handshake is still running).
    pub fn poll_transmit(&mut self) -> Option<MediaTransmit> {
        if let Some(t) = self.dtls_transmit() {
            return Some(t);
        }
        while let Some(t) = self.transmits.pop_front() {
            if let Some(t) = self.secure_out(t) {
                return Some(t);
            }
        }
        None
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Whether an arriving RTP packet is dropped by the loss emulation.
    pub(crate) fn emulate_loss(&mut self) -> bool {
        self.cfg.rx_loss_percent > 0.0
            && self.loss_rng.gen_range(0.0f32..100.0) < self.cfg.rx_loss_percent
    }
}
