//! Transcoding between the two parties of a media context that share no codec: the relay
//! terminates each party's RTP stream in a [`MediaSession`] of that party's codec (jitter
//! buffer, PLC, RFC 3550 receiver statistics and RTCP reports, RFC 4733 telephone-events) and
//! joins the two sessions with a pair of sample pipes, so every 20 ms frame is decoded once,
//! resampled once (when the rates differ) and encoded once.
//!
//! Each session's sink writes at the *other* codec's audio rate (the session's receive
//! resampler does the conversion) and its source reads at its own codec's rate, so a PCMU↔Opus
//! call resamples 8 kHz → 48 kHz on one side and 48 kHz → 8 kHz on the other, nothing more.
//! DTMF received as telephone-events from one party is sent to the other as telephone-events of
//! its own payload type and clock (RFC 4733 §2.5: timestamps re-based on the outgoing stream).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::pipe::{PipeSink, PipeSource, SharedPipe, new_pipe};
use crate::media::codec;
use crate::media::session::{MediaConfig, MediaError, MediaEvent, MediaSession};
use crate::sdp::AudioCodec;

/// What one party's stream carries, from offer/answer (RFC 3264): the codec, its payload type
/// in this party's SDP, its telephone-event payload type (RFC 4733) if any, and its
/// packetization time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscodeSpec {
    /// The party's codec (PCMU, PCMA, G722 or opus).
    pub codec: AudioCodec,
    /// Its payload type in the party's SDP (0..=127).
    pub payload_type: u8,
    /// The party's telephone-event payload type, if it negotiated one.
    pub telephone_event: Option<u8>,
    /// Packetization time in ms (10..=120; 20 usually).
    pub ptime_ms: u32,
}

impl TranscodeSpec {
    /// `codec` with its own payload type, no telephone-event and 20 ms frames.
    pub fn new(codec: AudioCodec) -> TranscodeSpec {
        TranscodeSpec {
            codec,
            payload_type: codec.payload_type,
            telephone_event: None,
            ptime_ms: 20,
        }
    }
}

/// One datagram a transcoder sends: toward the party on `side` (0 caller, 1 callee), out of
/// that leg's RTCP port when `rtcp`.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    pub(super) side: usize,
    pub(super) rtcp: bool,
    pub(super) bytes: Bytes,
}

/// Two media sessions back to back: index 0 faces the caller, 1 the callee.
pub(super) struct Transcoder {
    sessions: [MediaSession; 2],
    specs: [TranscodeSpec; 2],
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("specs", &self.specs)
            .finish()
    }
}

impl Transcoder {
    /// Two sessions starting at `now`, the caller's in `specs[0]`, the callee's in `specs[1]`.
    /// Errors: a codec not built in ([`MediaError::Codec`]), a bad ptime
    /// ([`MediaError::Config`]), rates that cannot be converted ([`MediaError::Resample`]).
    pub(super) fn new(now: Instant, specs: [TranscodeSpec; 2]) -> Result<Transcoder, MediaError> {
        let rates = specs.map(|s| codec::audio_rate(&s.codec));
        // caller → callee runs at the callee's rate, callee → caller at the caller's.
        let to_callee = new_pipe(rates[1]);
        let to_caller = new_pipe(rates[0]);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let session = |spec: TranscodeSpec,
                       src: (u32, &SharedPipe),
                       sink: (u32, &SharedPipe)|
         -> Result<MediaSession, MediaError> {
            let mut cfg = MediaConfig::new(spec.codec, unspecified);
            cfg.payload_type = spec.payload_type;
            cfg.telephone_event_pt = spec.telephone_event;
            cfg.frame_ms = spec.ptime_ms;
            cfg.encoder_complexity = Some(super::engine::RELAY_OPUS_COMPLEXITY);
            MediaSession::new(
                cfg,
                Box::new(PipeSource::new(src.0, src.1)),
                Box::new(PipeSink::new(sink.0, sink.1)),
                now,
            )
        };
        let caller = session(specs[0], (rates[0], &to_caller), (rates[1], &to_callee))?;
        let callee = session(specs[1], (rates[1], &to_callee), (rates[0], &to_caller))?;
        Ok(Transcoder {
            sessions: [caller, callee],
            specs,
        })
    }

    /// The specs this transcoder was built with (caller's, callee's).
    pub(super) fn specs(&self) -> [TranscodeSpec; 2] {
        self.specs
    }

    /// A datagram from the party on `side` (RTP, or RTCP when `rtcp`), accepted by the leg.
    /// Telephone-events it completes are queued to the other party.
    pub(super) fn receive(
        &mut self,
        now: Instant,
        side: usize,
        from: SocketAddr,
        packet: &[u8],
        rtcp: bool,
    ) {
        let Some(s) = self.sessions.get_mut(side) else {
            return;
        };
        s.handle_datagram(now, from, Bytes::copy_from_slice(packet), rtcp);
        let mut keys = String::new();
        while let Some(ev) = s.poll_event() {
            if let MediaEvent::Dtmf(key) = ev {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return;
        }
        if let Some(other) = self.sessions.get_mut(1 - side.min(1)) {
            match other.send_dtmf(&keys) {
                Ok(()) => {}
                Err(e) => tracing::debug!(error = %e, %keys, "transcoder: DTMF not relayed"),
            }
        }
    }

    /// When [`Transcoder::handle_timeout`] must run: the earlier session deadline.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.sessions.iter().filter_map(|s| s.poll_timeout()).min()
    }

    /// Runs both sessions' frames and reports due at `now`, the caller's first.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for s in &mut self.sessions {
            s.handle_timeout(now);
            // Events from ticks (RTP timeouts) are the relay's media timeout's business.
            while s.poll_event().is_some() {}
        }
    }

    /// The next datagram to send.
    pub(super) fn poll_transmit(&mut self) -> Option<Outgoing> {
        for (side, s) in self.sessions.iter_mut().enumerate() {
            if let Some(t) = s.poll_transmit() {
                return Some(Outgoing {
                    side,
                    rtcp: t.rtcp,
                    bytes: t.bytes,
                });
            }
        }
        None
    }
}
