//! What a media context runs when the relay terminates its streams instead of forwarding
//! them: a transcoder (two parties, no common codec) or a conference member (one party, the
//! room's mix). Both are media sessions on the relay's clock; the relay feeds them the
//! datagrams its legs accept and sends what they originate.

use std::net::SocketAddr;
use std::time::Instant;

use super::conference::Member;
use super::transcode::{Outgoing, Transcoder};

/// The Opus complexity of the relay's encoders (0–10): 5, PJSIP's default. It about halves
/// the encoder's cost against 10, which the relay pays per transcoded call and conference
/// member, with little audible difference for speech at 32 kbit/s.
pub(super) const RELAY_OPUS_COMPLEXITY: u8 = 5;

/// The engine of a context that terminates its streams. It lives boxed in its context
/// (`Option<Box<Engine>>`), so the variants' sizes cost nothing on the forwarding path.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Engine {
    /// Two media sessions back to back.
    Transcode(Transcoder),
    /// A conference room member (the caller-facing leg only).
    Member(Member),
}

impl Engine {
    /// A datagram from the party on `side` (RTP, or RTCP when `rtcp`), accepted by the leg.
    pub(super) fn receive(
        &mut self,
        now: Instant,
        side: usize,
        from: SocketAddr,
        packet: &[u8],
        rtcp: bool,
    ) {
        match self {
            Engine::Transcode(t) => t.receive(now, side, from, packet, rtcp),
            // The callee-facing leg of a member context faces nobody.
            Engine::Member(m) if side == 0 => m.receive(now, from, packet, rtcp),
            Engine::Member(_) => {}
        }
    }

    /// When [`Engine::handle_timeout`] must run.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Engine::Transcode(t) => t.poll_timeout(),
            Engine::Member(m) => m.poll_timeout(),
        }
    }

    /// Runs what is due at `now`.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Engine::Transcode(t) => t.handle_timeout(now),
            Engine::Member(m) => m.handle_timeout(now),
        }
    }

    /// The next datagram to send.
    pub(super) fn poll_transmit(&mut self) -> Option<Outgoing> {
        match self {
            Engine::Transcode(t) => t.poll_transmit(),
            Engine::Member(m) => m.poll_transmit(),
        }
    }
}
