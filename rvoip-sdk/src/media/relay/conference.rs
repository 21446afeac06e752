//! Conference rooms on the relay: each member's stream ends in a media session of its own
//! codec (G.711, G.722 or Opus; jitter buffer, PLC, RTCP) whose decoded audio goes into the
//! room's mixer at one internal rate ([`MIX_RATE`]); every 20 ms the mixer sums the members'
//! frames and gives each member the sum of the *others* (N−1 mixing), which its session
//! encodes back in its codec. A member mutes and unmutes itself with the DTMF keys `*6`
//! (RFC 4733 telephone-events): a muted member's audio is left out of every mix.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::MediaId;
use super::pipe::{PipeSink, PipeSource, SharedPipe, new_pipe};
use super::transcode::{Outgoing, TranscodeSpec};
use crate::media::session::{MediaConfig, MediaError, MediaEvent, MediaSession};

/// The mixer's sample rate (Hz): wideband, so G.722 and Opus members keep their band.
pub const MIX_RATE: u32 = 16_000;
/// One mixing frame, in ms.
const MIX_FRAME_MS: u32 = 20;
/// Samples per mixing frame.
const MIX_FRAME: usize = (MIX_RATE * MIX_FRAME_MS / 1000) as usize;
/// Most frames one late [`Room::mix_due`] catches up before re-anchoring its clock.
const MAX_CATCH_UP: u32 = 5;

/// One member's stream: a media session facing its party, and the pipes to and from the mixer.
pub(super) struct Member {
    pub(super) room: u32,
    session: MediaSession,
    /// What the member says (its session's sink), at [`MIX_RATE`].
    input: SharedPipe,
    /// The previous key was `*` (for `*6`).
    star: bool,
    /// Mute changes to report: (muted).
    pub(super) mute_changes: Vec<bool>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member").field("room", &self.room).finish()
    }
}

impl Member {
    /// The member's session starting at `now`, and the pipes the room mixes from and into.
    /// Errors as [`MediaSession::new`].
    pub(super) fn new(
        now: Instant,
        room: u32,
        spec: TranscodeSpec,
    ) -> Result<(Member, SharedPipe, SharedPipe), MediaError> {
        let input = new_pipe(MIX_RATE);
        let output = new_pipe(MIX_RATE);
        let mut cfg = MediaConfig::new(spec.codec, SocketAddr::from(([0, 0, 0, 0], 0)));
        cfg.payload_type = spec.payload_type;
        cfg.telephone_event_pt = spec.telephone_event;
        cfg.frame_ms = spec.ptime_ms;
        cfg.encoder_complexity = Some(super::engine::RELAY_OPUS_COMPLEXITY);
        let session = MediaSession::new(
            cfg,
            Box::new(PipeSource::new(MIX_RATE, &output)),
            Box::new(PipeSink::new(MIX_RATE, &input)),
            now,
        )?;
        Ok((
            Member {
                room,
                session,
                input: input.clone(),
                star: false,
                mute_changes: Vec::new(),
            },
            input,
            output,
        ))
    }

    /// Whether the member is muted.
    pub(super) fn muted(&self) -> bool {
        self.input.lock().map(|p| p.muted).unwrap_or(false)
    }

    /// Mutes or unmutes the member (its audio left out of the mix).
    pub(super) fn set_muted(&mut self, muted: bool) {
        if let Ok(mut p) = self.input.lock() {
            p.muted = muted;
        }
    }

    /// A datagram from the member's party (RTP, or RTCP when `rtcp`); `*6` toggles mute.
    pub(super) fn receive(&mut self, now: Instant, from: SocketAddr, packet: &[u8], rtcp: bool) {
        self.session
            .handle_datagram(now, from, Bytes::copy_from_slice(packet), rtcp);
        while let Some(ev) = self.session.poll_event() {
            if let MediaEvent::Dtmf(key) = ev {
                if self.star && key == '6' {
                    let muted = !self.muted();
                    self.set_muted(muted);
                    self.mute_changes.push(muted);
                }
                self.star = key == '*';
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        while self.session.poll_event().is_some() {}
    }

    pub(super) fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.session.poll_transmit().map(|t| Outgoing {
            side: 0,
            rtcp: t.rtcp,
            bytes: t.bytes,
        })
    }
}

/// One room: its members' pipes and the mixing clock.
#[derive(Debug)]
pub(super) struct Room {
    /// (member context, its input pipe, its output pipe).
    members: Vec<(MediaId, SharedPipe, SharedPipe)>,
    /// The next mixing frame is due at `anchor + ticks · 20 ms`.
    anchor: Instant,
    ticks: u32,
    /// Scratch: each member's frame, and their sum.
    frames: Vec<[i16; MIX_FRAME]>,
    total: Vec<i32>,
    out: Vec<i16>,
}

impl Room {
    /// An empty room whose first mix is due at `now`.
    pub(super) fn new(now: Instant) -> Room {
        Room {
            members: Vec::new(),
            anchor: now,
            ticks: 0,
            frames: Vec::new(),
            total: vec![0; MIX_FRAME],
            out: vec![0; MIX_FRAME],
        }
    }

    /// Adds member `id` with its pipes.
    pub(super) fn add(&mut self, id: MediaId, input: SharedPipe, output: SharedPipe) {
        self.members.retain(|(m, _, _)| *m != id);
        self.members.push((id, input, output));
    }

    /// Removes member `id`; whether the room is now empty.
    pub(super) fn remove(&mut self, id: MediaId) -> bool {
        self.members.retain(|(m, _, _)| *m != id);
        self.members.is_empty()
    }

    /// Members in the room.
    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    /// When the next mixing frame is due.
    pub(super) fn next_mix(&self) -> Instant {
        self.anchor + Duration::from_millis(u64::from(MIX_FRAME_MS) * u64::from(self.ticks))
    }

    /// Mixes every frame due at `now` (at most [`MAX_CATCH_UP`]; further behind, the clock
    /// re-anchors at `now`).
    pub(super) fn mix_due(&mut self, now: Instant) {
        let mut done = 0;
        while self.next_mix() <= now {
            if done == MAX_CATCH_UP {
                self.anchor = now + Duration::from_millis(u64::from(MIX_FRAME_MS));
                self.ticks = 0;
                break;
            }
            self.mix_one();
            self.ticks += 1;
            if self.ticks >= 1 << 20 {
                self.anchor = self.next_mix();
                self.ticks = 0;
            }
            done += 1;
        }
    }

    /// One N−1 mix: every member hears the sum of the others' frames (muted members count as
    /// silence), clipped to 16 bits.
    fn mix_one(&mut self) {
        self.frames.resize(self.members.len(), [0; MIX_FRAME]);
        self.total.iter_mut().for_each(|t| *t = 0);
        for ((_, input, _), frame) in self.members.iter().zip(self.frames.iter_mut()) {
            match input.lock() {
                Ok(mut p) => {
                    p.take_into(frame);
                    if p.muted {
                        frame.fill(0);
                    }
                }
                Err(_) => frame.fill(0),
            }
            for (t, &s) in self.total.iter_mut().zip(frame.iter()) {
                *t += i32::from(s);
            }
        }
        for ((_, _, output), frame) in self.members.iter().zip(self.frames.iter()) {
            for ((o, &t), &own) in self.out.iter_mut().zip(&self.total).zip(frame.iter()) {
                *o = (t - i32::from(own)).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
            if let Ok(mut p) = output.lock() {
                p.put(&self.out);
            }
        }
    }
}
