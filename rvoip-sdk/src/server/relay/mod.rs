//! What the SIP side needs from the media relay, shared by the two controllers that put calls
//! through it: the proxy's anchor (`server::proxy::anchor`, SDP seen in passing SIP messages)
//! and the ng control protocol (`server::ng`, SDP handed over by Kamailio or OpenSIPS).
//! [`sdp`] reads each party's streams from a session description and writes the relay's
//! address and ports into it.

pub mod codecs;
pub mod conference;
pub mod sdp;

use std::time::Instant;

use crate::media::relay::{
    Latching, MediaId, MediaStats, Relay, RelayError, RelayEvent, Side, TranscodeSpec,
};
use sdp::Stream;

/// What the anchor needs from a relay: the sans-IO [`Relay`] itself (tests on simulated time)
/// or the driver's handle to the relay thread (`driver::relay::RelayHandle`), which also binds
/// the sockets of the ports it hands out.
pub trait RelayControl: Send {
    /// A new context with two RTP/RTCP port pairs. Errors: [`RelayError::PoolExhausted`].
    fn create(&mut self, now: Instant) -> Result<MediaId, RelayError>;
    /// The RTP port of the leg facing `side` (RTCP is + 1).
    fn local_port(&self, id: MediaId, side: Side) -> Option<u16>;
    /// Where `side` receives media, from its SDP. Errors: [`RelayError::NotFound`].
    fn set_remote(&mut self, id: MediaId, side: Side, stream: &Stream) -> Result<(), RelayError>;
    /// How the leg facing `side` admits sources ([`Latching`]). Errors: [`RelayError::NotFound`].
    fn set_latching(
        &mut self,
        id: MediaId,
        side: Side,
        latching: Latching,
    ) -> Result<(), RelayError>;
    /// Statistics of both directions of the context so far; `None` for unknown ids.
    fn media_stats(&self, id: MediaId) -> Option<MediaStats>;
    /// Makes context `id` a member of conference room `room` in `spec`'s codec (its caller
    /// leg faces the member; it hears the others' mix). Leaves with [`RelayControl::release`].
    /// Errors: [`RelayError::NotFound`], [`RelayError::Busy`], [`RelayError::Transcoding`].
    fn join_room(
        &mut self,
        now: Instant,
        id: MediaId,
        room: u32,
        spec: TranscodeSpec,
    ) -> Result<(), RelayError>;
    /// Copies the accepted RTP of context `id` to the relay's recorder as recording
    /// `recording` (`None` stops). Errors: [`RelayError::NotFound`].
    fn set_recording(&mut self, id: MediaId, recording: Option<u64>) -> Result<(), RelayError>;
    /// Transcodes between the caller's and the callee's codecs (`Some([caller, callee])`), or
    /// forwards packets as they are (`None`). Errors: [`RelayError::NotFound`],
    /// [`RelayError::Transcoding`].
    fn set_transcoding(
        &mut self,
        now: Instant,
        id: MediaId,
        specs: Option<[TranscodeSpec; 2]>,
    ) -> Result<(), RelayError>;
    /// The call was answered: the media timeout runs.
    fn confirm(&mut self, now: Instant, id: MediaId);
    /// Frees the context's ports; its final statistics.
    fn release(&mut self, id: MediaId) -> Option<MediaStats>;
    /// The next relay event (media timeouts).
    fn poll_event(&mut self) -> Option<RelayEvent>;
    /// Ports currently held by live contexts (for the logs and status counters).
    fn ports_in_use(&self) -> usize;
    /// When [`RelayControl::handle_timeout`] must run (`None` when the relay runs its own timers).
    fn poll_timeout(&self) -> Option<Instant>;
    /// Runs the relay's timers (a no-op when the relay runs its own).
    fn handle_timeout(&mut self, now: Instant);
}

impl RelayControl for Relay {
    fn create(&mut self, now: Instant) -> Result<MediaId, RelayError> {
        Relay::create(self, now)
    }
    fn local_port(&self, id: MediaId, side: Side) -> Option<u16> {
        Relay::local_port(self, id, side)
    }
    fn set_remote(&mut self, id: MediaId, side: Side, s: &Stream) -> Result<(), RelayError> {
        Relay::set_remote(self, id, side, s.rtp, s.rtcp, s.rtcp_mux, s.clock_rate)?;
        Relay::set_secure(self, id, side, s.secure)
    }
    fn set_latching(
        &mut self,
        id: MediaId,
        side: Side,
        latching: Latching,
    ) -> Result<(), RelayError> {
        Relay::set_latching(self, id, side, latching)
    }
    fn media_stats(&self, id: MediaId) -> Option<MediaStats> {
        Relay::media_stats(self, id)
    }
    fn set_transcoding(
        &mut self,
        now: Instant,
        id: MediaId,
        specs: Option<[TranscodeSpec; 2]>,
    ) -> Result<(), RelayError> {
        Relay::set_transcoding(self, now, id, specs)
    }
    fn set_recording(&mut self, id: MediaId, recording: Option<u64>) -> Result<(), RelayError> {
        Relay::set_recording(self, id, recording)
    }
    fn join_room(
        &mut self,
        now: Instant,
        id: MediaId,
        room: u32,
        spec: TranscodeSpec,
    ) -> Result<(), RelayError> {
        Relay::join_room(self, now, id, room, spec)
    }
    fn confirm(&mut self, now: Instant, id: MediaId) {
        Relay::confirm(self, now, id)
    }
    fn release(&mut self, id: MediaId) -> Option<MediaStats> {
        Relay::release(self, id)
    }
    fn poll_event(&mut self) -> Option<RelayEvent> {
        Relay::poll_event(self)
    }
    fn ports_in_use(&self) -> usize {
        Relay::ports_in_use(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Relay::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Relay::handle_timeout(self, now)
    }
}

/// Where recorded calls go (the driver's recorder thread, `driver::record`): one stereo
/// recording per call, caller left and callee right, fed by the relay's tap.
pub trait CallRecorder: Send {
    /// Starts the recording of `call_id` (RFC 3261 Call-ID) at `now`; its id for the relay's
    /// tap ([`RelayControl::set_recording`]).
    fn open(&mut self, call_id: &str, now: Instant) -> u64;
    /// The payload types of `side`'s packets: (payload type, codec). Others are ignored.
    fn set_codecs(&mut self, recording: u64, side: Side, codecs: Vec<(u8, crate::sdp::AudioCodec)>);
    /// Ends the recording at `now` (the file is completed off the packet path).
    fn close(&mut self, recording: u64, now: Instant);
}
