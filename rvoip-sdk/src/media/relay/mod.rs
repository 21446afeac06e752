//! The sans-IO core of an RTP/RTCP media relay (rtpengine-style userspace forwarding).
//!
//! No sockets, no clock: the driver binds one UDP socket per port this core hands out, feeds
//! every received datagram to [`Relay::handle_datagram`] with `now`, and sends the packet as
//! the returned [`Forward`] says. The SIP proxy, as SDP passes, calls [`Relay::create`] (two
//! RTP/RTCP port pairs, RFC 3550 §11: RTP even, RTCP = RTP + 1), [`Relay::set_remote`] with
//! each party's SDP address, [`Relay::confirm`] when the call is answered and
//! [`Relay::release`] when it ends. Timers are [`Relay::poll_timeout`] /
//! [`Relay::handle_timeout`]; events (media timeouts) come from [`Relay::poll_event`].
//!
//! A media context has two legs: the leg facing the caller ([`Side::Caller`]) and the leg
//! facing the callee. Each leg latches its party's real source (RFC 4961 symmetric RTP, as
//! NATs rewrite addresses), forwards to the other party's latched source (else its SDP
//! address), demultiplexes RTCP on RTP ports (RFC 5761 §4), keeps RFC 3550 A.1/A.3/A.8
//! statistics and can keep the outgoing SSRC, sequence numbers and timestamps continuous
//! across SSRC changes (`rewrite_ssrc`).
//!
//! The packet path is O(1) and allocation-free: the local port indexes a `Vec` of port pairs,
//! whose owner indexes a `Vec` of contexts.

#![warn(missing_docs)]

mod conference;
#[cfg(test)]
mod conference_tests;
mod datagram;
mod engine;
mod leg;
mod pipe;
mod pool;
mod stats;
#[cfg(test)]
mod tests;
mod transcode;
#[cfg(test)]
mod transcode_tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use conference::{Member, Room};
use engine::Engine;
use leg::{LatchRules, Leg};
use pool::PortPool;
use transcode::Transcoder;

pub use crate::media::session::MediaError;
pub use conference::MIX_RATE;
pub use stats::{LegStats, MediaStats, RelayStats};
pub use transcode::TranscodeSpec;

/// Relay limits and policies. Build with `RelayConfig { port_min: 40000, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Lowest local UDP port of the pool (rounded up to even for the first RTP port).
    /// Default 30000.
    pub port_min: u16,
    /// Highest local UDP port of the pool (an RTCP port at most). Default 39999.
    pub port_max: u16,
    /// A confirmed context with no accepted packet in either direction for this long raises
    /// [`RelayEvent::MediaTimeout`]. Default 60 s.
    pub media_timeout: Duration,
    /// A latched source silent for at least this long may be replaced by a source at another
    /// IP (RFC 4961 re-latching). Before that, only a new SSRC from the latched source's own IP
    /// (a NAT rebinding its port, a restarted stream) re-latches. Default 5 s.
    pub relatch_after: Duration,
    /// Never re-latch once a leg has latched (neither on SSRC change nor after silence).
    /// Default false.
    pub strict_source: bool,
    /// Rewrite SSRC, sequence number and timestamp (RFC 3550 §5.1) so each direction keeps
    /// one SSRC and continuous numbering across input SSRC changes. Default false: packets
    /// pass unmodified.
    pub rewrite_ssrc: bool,
    /// Longest accepted datagram (UDP payload), in bytes. Default 1500.
    pub max_datagram: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            port_min: 30000,
            port_max: 39999,
            media_timeout: Duration::from_secs(60),
            relatch_after: Duration::from_secs(5),
            strict_source: false,
            rewrite_ssrc: false,
            max_datagram: 1500,
        }
    }
}

/// A party of the call, naming the leg that faces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The party that sent the initial INVITE (RFC 3261 UAC).
    Caller,
    /// The party that answers it (RFC 3261 UAS).
    Callee,
}

impl Side {
    /// The other party.
    pub fn other(self) -> Side {
        match self {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        }
    }

    /// 0 for the caller, 1 for the callee (array indexes of per-party state).
    pub fn index(self) -> usize {
        match self {
            Side::Caller => 0,
            Side::Callee => 1,
        }
    }
}

/// How a leg learns where its party's packets come from (rtpengine's `symmetric`,
/// `port-latching`/`strict-source` and `asymmetric` flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Latching {
    /// RFC 4961 symmetric RTP: latch the first source, re-latch as `RelayConfig` allows (a new
    /// SSRC from the same IP, or after `relatch_after` of silence; never with `strict_source`).
    #[default]
    Symmetric,
    /// Latch the first source and keep it, whatever its silence or SSRC changes, until the
    /// party's SDP address changes: packets from any other address are dropped (rtpengine's
    /// `port-latching` and `strict-source`).
    Fixed,
    /// Never latch: packets from any source are accepted, and the party is sent media at its
    /// SDP address only (a party that sends from another port than it receives on).
    Asymmetric,
}

/// One media context (one RTP session relayed between two parties: two legs, four ports).
/// Ids of released contexts stay invalid for a long time (a 16-bit generation per slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaId(pub u32);

impl MediaId {
    fn new(slot: u16, generation: u16) -> MediaId {
        MediaId((u32::from(generation) << 16) | u32::from(slot))
    }

    fn slot(self) -> usize {
        (self.0 & 0xffff) as usize
    }
}

/// Relay control-plane failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// Fewer than two free port pairs are left in `[port_min, port_max]`.
    #[error("relay port pool exhausted")]
    PoolExhausted,
    /// No live media context has this id (never created, or released).
    #[error("no such media context")]
    NotFound,
    /// The context already transcodes or belongs to a room.
    #[error("the media context is busy")]
    Busy,
    /// A transcoder could not be built (a codec not built in, a bad packetization time).
    #[error("cannot transcode between these codecs")]
    Transcoding,
}

/// A forward decision: send the (possibly rewritten) packet out of local UDP port `from_port`
/// to `dest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// The local port (RTP or RTCP port of the other leg) to send from.
    pub from_port: u16,
    /// The other party's address.
    pub dest: SocketAddr,
}

/// A datagram the relay itself originates (a transcoded stream's RTP and RTCP): send `bytes`
/// out of local UDP port `from_port` to `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local port (RTP or RTCP port of the leg facing the receiving party).
    pub from_port: u16,
    /// The party's address (latched source, else its SDP address).
    pub dest: SocketAddr,
    /// The datagram.
    pub bytes: Bytes,
}

/// Where the relay hands copies of recorded packets (call recording): every RTP packet a
/// recorded context's legs accept, forwarded or transcoded, with the recording's id, the
/// party that sent it and its arrival time. Called on the packet path: it must not block
/// (the driver's recorder queues a copy and returns).
pub trait MediaTap: Send {
    /// One accepted RTP packet (RFC 3550 §5.1, at least 12 bytes) of recording `recording`,
    /// sent by the party on `side`, received at `arrival`.
    fn packet(&mut self, recording: u64, side: Side, arrival: Instant, rtp: &[u8]);
}

impl std::fmt::Debug for dyn MediaTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaTap")
    }
}

/// Something the SIP layer should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEvent {
    /// A confirmed context saw no packet in either direction for `media_timeout` (once per
    /// context; it stays until [`Relay::release`]). A proxy typically ends the call (BYE).
    MediaTimeout {
        /// The silent context.
        id: MediaId,
    },
    /// A conference member muted or unmuted itself (DTMF `*6`).
    MemberMuted {
        /// The member's context.
        id: MediaId,
        /// Whether it is muted now.
        muted: bool,
    },
}

/// One media context: two legs and the media-timeout state.
#[derive(Debug)]
struct Context {
    id: MediaId,
    /// Indexed by [`Side::index`]: caller-facing, callee-facing.
    legs: [Leg; 2],
    confirmed: bool,
    timed_out: bool,
    /// A heap entry for this context is pending.
    armed: bool,
    /// Last accepted packet (or creation / confirmation).
    last_activity: Instant,
    /// Set when the relay terminates the context's streams (transcoding, conference): they
    /// end in media sessions here.
    engine: Option<Box<Engine>>,
    /// The recording this context's RTP is copied to ([`Relay::set_recording`]).
    recording: Option<u64>,
    /// The engine's deadline that has an entry in `Relay::ticks`.
    tick_at: Option<Instant>,
}

/// A context slot; the generation makes ids of released contexts stale.
#[derive(Debug)]
struct Slot {
    generation: u16,
    ctx: Option<Context>,
}

/// The live context `id`, if any.
fn ctx_mut(slots: &mut [Slot], id: MediaId) -> Option<&mut Context> {
    slots
        .get_mut(id.slot())
        .and_then(|s| s.ctx.as_mut())
        .filter(|c| c.id == id)
}

/// The sans-IO media relay: port pool, media contexts, counters and timers.
#[derive(Debug)]
pub struct Relay {
    cfg: RelayConfig,
    rules: LatchRules,
    pool: PortPool,
    slots: Vec<Slot>,
    /// Free context slots, least recently freed first.
    free_slots: VecDeque<u16>,
    live: usize,
    /// Media-timeout deadlines; entries of released or re-armed contexts are skipped lazily.
    timers: BinaryHeap<Reverse<(Instant, MediaId)>>,
    events: VecDeque<RelayEvent>,
    /// Transcoder deadlines (frames, RTCP reports); stale entries are skipped lazily.
    ticks: BinaryHeap<Reverse<(Instant, MediaId)>>,
    /// Datagrams transcoders originated, oldest first.
    transmits: VecDeque<Transmit>,
    /// Where recorded contexts' packets go.
    tap: Option<Box<dyn MediaTap>>,
    /// Conference rooms by number, each with at least one member.
    rooms: std::collections::BTreeMap<u32, Room>,
    /// `contexts` and `ports_in_use` are filled in by [`Relay::stats`].
    counters: RelayStats,
}

impl Relay {
    /// A relay with an empty port pool over `[cfg.port_min, cfg.port_max]` (no context).
    pub fn new(cfg: RelayConfig) -> Relay {
        let pool = PortPool::new(cfg.port_min, cfg.port_max);
        Relay {
            rules: LatchRules {
                strict: cfg.strict_source,
                relatch_after: cfg.relatch_after,
            },
            slots: Vec::with_capacity(pool.capacity() / 2),
            pool,
            cfg,
            free_slots: VecDeque::new(),
            live: 0,
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            ticks: BinaryHeap::new(),
            transmits: VecDeque::new(),
            tap: None,
            rooms: std::collections::BTreeMap::new(),
            counters: RelayStats::default(),
        }
    }

    /// Creates a media context with two RTP/RTCP port pairs (RTP even, RTCP = RTP + 1,
    /// RFC 3550 §11): one facing the caller, one facing the callee, least recently freed
    /// first. Errors: [`RelayError::PoolExhausted`] when fewer than two pairs are free.
    pub fn create(&mut self, now: Instant) -> Result<MediaId, RelayError> {
        if self.pool.free_pairs() < 2 {
            return Err(RelayError::PoolExhausted);
        }
        let slot = match self.free_slots.pop_front() {
            Some(slot) => slot,
            None => {
                let slot =
                    u16::try_from(self.slots.len()).map_err(|_| RelayError::PoolExhausted)?;
                self.slots.push(Slot {
                    generation: 1,
                    ctx: None,
                });
                slot
            }
        };
        let Some([caller, callee]) = self.pool.take_two(slot) else {
            self.free_slots.push_front(slot);
            return Err(RelayError::PoolExhausted);
        };
        let Some(entry) = self.slots.get_mut(usize::from(slot)) else {
            return Err(RelayError::PoolExhausted);
        };
        let id = MediaId::new(slot, entry.generation);
        entry.ctx = Some(Context {
            id,
            legs: [
                Leg::new(caller, self.pool.rtp_port(caller)),
                Leg::new(callee, self.pool.rtp_port(callee)),
            ],
            confirmed: false,
            timed_out: false,
            armed: false,
            last_activity: now,
            engine: None,
            recording: None,
            tick_at: None,
        });
        self.live += 1;
        tracing::debug!(id = id.0, "relay: media context created");
        Ok(id)
    }

    /// The RTP port of the leg facing `side` (its RTCP port is one more): the port to write in
    /// the SDP that `side` receives, e.g. `local_port(id, Side::Callee)` goes into the offer
    /// forwarded to the callee. `None` for unknown ids.
    pub fn local_port(&self, id: MediaId, side: Side) -> Option<u16> {
        let ctx = self.slots.get(id.slot())?.ctx.as_ref()?;
        (ctx.id == id).then(|| ctx.legs[side.index()].rtp_port)
    }

    /// Records `side`'s SDP (RFC 3264): where it receives RTP (`rtp`, from c= and m=), RTCP
    /// (`rtcp`, from a=rtcp RFC 3605, `None`: RTP port + 1), whether it multiplexes RTCP on the
    /// RTP port (a=rtcp-mux, RFC 5761) and the RTP clock rate in Hz (for jitter, RFC 3550
    /// A.8). Port 0 or an unspecified IP is no destination (latching still works). When the
    /// address differs from that of a previous SDP, the leg's latch is reset.
    /// Errors: [`RelayError::NotFound`].
    pub fn set_remote(
        &mut self,
        id: MediaId,
        side: Side,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        rtcp_mux: bool,
        clock_rate: u32,
    ) -> Result<(), RelayError> {
        let ctx = ctx_mut(&mut self.slots, id).ok_or(RelayError::NotFound)?;
        ctx.legs[side.index()].set_remote(rtp, rtcp, rtcp_mux, clock_rate);
        Ok(())
    }

    /// Marks `side`'s stream as SRTP (from its SDP: RFC 3711 profiles, `a=crypto`,
    /// `a=fingerprint`): its packets are forwarded byte for byte, never SSRC-rewritten (that
    /// would break their authentication tag). Errors: [`RelayError::NotFound`].
    pub fn set_secure(&mut self, id: MediaId, side: Side, secure: bool) -> Result<(), RelayError> {
        let ctx = ctx_mut(&mut self.slots, id).ok_or(RelayError::NotFound)?;
        ctx.legs[side.index()].secure = secure;
        Ok(())
    }

    /// Sets how the leg facing `side` admits sources ([`Latching`]; default
    /// [`Latching::Symmetric`]). Takes effect with the next packet; a source already latched
    /// stays latched, except that [`Latching::Asymmetric`] forgets it (media then goes to the
    /// SDP address only). Errors: [`RelayError::NotFound`].
    pub fn set_latching(
        &mut self,
        id: MediaId,
        side: Side,
        latching: Latching,
    ) -> Result<(), RelayError> {
        let ctx = ctx_mut(&mut self.slots, id).ok_or(RelayError::NotFound)?;
        let leg = &mut ctx.legs[side.index()];
        if latching == Latching::Asymmetric && leg.latching != Latching::Asymmetric {
            leg.rtp_latch.reset();
            leg.rtcp_latch.reset();
        }
        leg.latching = latching;
        Ok(())
    }

    /// Switches context `id` to transcoding (`Some([caller's, callee's])`, for parties that
    /// share no codec) or back to plain forwarding (`None`). While transcoding, each party's
    /// RTP and RTCP end in a media session of its codec here (jitter buffer, PLC, RFC 3550
    /// reports) and the relay sends each party a stream of its own codec, with telephone-events
    /// (RFC 4733) carried across; see [`Relay::poll_transmit`]. The same specs again keep the
    /// running transcoder. Errors: [`RelayError::NotFound`], [`RelayError::Transcoding`] (a
    /// codec not built in, a bad ptime); the context is unchanged then.
    pub fn set_transcoding(
        &mut self,
        now: Instant,
        id: MediaId,
        specs: Option<[TranscodeSpec; 2]>,
    ) -> Result<(), RelayError> {
        let ctx = ctx_mut(&mut self.slots, id).ok_or(RelayError::NotFound)?;
        let Some(specs) = specs else {
            ctx.engine = None;
            ctx.tick_at = None;
            return Ok(());
        };
        if matches!(ctx.engine.as_deref(), Some(Engine::Transcode(t)) if t.specs() == specs) {
            return Ok(());
        }
        let t = Transcoder::new(now, specs).map_err(|e| {
            tracing::warn!(id = id.0, error = %e, "relay: cannot transcode");
            RelayError::Transcoding
        })?;
        let due = t.poll_timeout();
        ctx.engine = Some(Box::new(Engine::Transcode(t)));
        ctx.tick_at = due;
        if let Some(due) = due {
            self.ticks.push(Reverse((due, id)));
        }
        tracing::debug!(
            id = id.0,
            caller = specs[0].codec.name,
            callee = specs[1].codec.name,
            "relay: transcoding"
        );
        Ok(())
    }

    /// Installs the receiver of recorded packets (the driver's recorder).
    pub fn set_tap(&mut self, tap: Box<dyn MediaTap>) {
        self.tap = Some(tap);
    }

    /// Copies every RTP packet of context `id` that its legs accept to the [`MediaTap`] as
    /// recording `recording` (`None` stops). Errors: [`RelayError::NotFound`].
    pub fn set_recording(&mut self, id: MediaId, recording: Option<u64>) -> Result<(), RelayError> {
        let ctx = ctx_mut(&mut self.slots, id).ok_or(RelayError::NotFound)?;
        ctx.recording = recording;
        Ok(())
    }

    /// Makes context `id` a member of conference room `room` (created on its first member):
    /// the party facing its caller leg (the SDP set with `set_remote(id, Side::Caller, …)`)
    /// sends and receives in `spec`'s codec, and hears the mix of the other members (N−1, at
    /// [`MIX_RATE`]); DTMF `*6` mutes and unmutes it ([`RelayEvent::MemberMuted`]). The callee
    /// leg is unused. Errors: [`RelayError::NotFound`], [`RelayError::Busy`] (it transcodes or
    /// is a member already), [`RelayError::Transcoding`] (a codec not built in).
    pub fn join_room(
        &mut self,
        now: Instant,
        id: MediaId,
        room: u32,
        spec: TranscodeSpec,
    ) -> Result<(), RelayError> {
        let ctx = ctx_mut(&mut self.slots, id).ok_or(RelayError::NotFound)?;
        if ctx.engine.is_some() {
            return Err(RelayError::Busy);
        }
        let (member, input, output) = Member::new(now, room, spec).map_err(|e| {
            tracing::warn!(id = id.0, error = %e, "relay: cannot join the room");
            RelayError::Transcoding
        })?;
        let due = member.poll_timeout();
        ctx.engine = Some(Box::new(Engine::Member(member)));
        ctx.tick_at = due;
        if let Some(due) = due {
            self.ticks.push(Reverse((due, id)));
        }
        self.rooms
            .entry(room)
            .or_insert_with(|| Room::new(now))
            .add(id, input, output);
        Ok(())
    }

    /// Takes context `id` out of its room (the room goes when empty); its engine stops.
    /// Whether it was a member.
    pub fn leave_room(&mut self, id: MediaId) -> bool {
        let Some(ctx) = ctx_mut(&mut self.slots, id) else {
            return false;
        };
        let Some(Engine::Member(m)) = ctx.engine.as_deref() else {
            return false;
        };
        let room = m.room;
        ctx.engine = None;
        ctx.tick_at = None;
        if self.rooms.get_mut(&room).is_some_and(|r| r.remove(id)) {
            self.rooms.remove(&room);
        }
        true
    }

    /// Members of room `room` (0 when it does not exist).
    pub fn room_size(&self, room: u32) -> usize {
        self.rooms.get(&room).map_or(0, Room::len)
    }

    /// Whether member `id` is muted; `None` when it is no member.
    pub fn is_muted(&self, id: MediaId) -> Option<bool> {
        let ctx = self.slots.get(id.slot())?.ctx.as_ref()?;
        match ctx.engine.as_deref() {
            Some(Engine::Member(m)) if ctx.id == id => Some(m.muted()),
            _ => None,
        }
    }

    /// Mutes or unmutes member `id` (as its `*6` does). Errors: [`RelayError::NotFound`] (no
    /// such member).
    pub fn set_muted(&mut self, id: MediaId, muted: bool) -> Result<(), RelayError> {
        match ctx_mut(&mut self.slots, id).and_then(|c| c.engine.as_deref_mut()) {
            Some(Engine::Member(m)) => {
                m.set_muted(muted);
                Ok(())
            }
            _ => Err(RelayError::NotFound),
        }
    }

    /// Whether context `id` transcodes.
    pub fn is_transcoding(&self, id: MediaId) -> bool {
        self.slots
            .get(id.slot())
            .and_then(|s| s.ctx.as_ref())
            .is_some_and(|c| {
                c.id == id && matches!(c.engine.as_deref(), Some(Engine::Transcode(_)))
            })
    }

    /// The next datagram a transcoder originated, to send as it says.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Moves what context `slot`'s transcoder wants to send into `self.transmits`, addressed
    /// through its legs.
    fn collect_transmits(
        ctx: &mut Context,
        transmits: &mut VecDeque<Transmit>,
        events: &mut VecDeque<RelayEvent>,
        counters: &mut RelayStats,
    ) {
        let Some(t) = ctx.engine.as_mut() else {
            return;
        };
        if let Engine::Member(m) = t.as_mut() {
            for muted in m.mute_changes.drain(..) {
                tracing::info!(
                    id = ctx.id.0,
                    room = m.room,
                    muted,
                    "relay: conference member mute"
                );
                events.push_back(RelayEvent::MemberMuted { id: ctx.id, muted });
            }
        }
        while let Some(out) = t.poll_transmit() {
            let Some(leg) = ctx.legs.get(out.side) else {
                continue;
            };
            let dest = if out.rtcp {
                leg.rtcp_dest().map(|(a, via_rtp)| {
                    (
                        a,
                        if via_rtp {
                            leg.rtp_port
                        } else {
                            leg.rtp_port.wrapping_add(1)
                        },
                    )
                })
            } else {
                leg.rtp_dest().map(|a| (a, leg.rtp_port))
            };
            match dest {
                Some((dest, from_port)) => {
                    counters.transcoded_sent += 1;
                    transmits.push_back(Transmit {
                        from_port,
                        dest,
                        bytes: out.bytes,
                    });
                }
                None => counters.dropped_no_destination += 1,
            }
        }
    }

    /// The call was answered: arms the media timeout of context `id` (`media_timeout` after
    /// the later of `now` and its last packet). Unknown ids are ignored.
    pub fn confirm(&mut self, now: Instant, id: MediaId) {
        let Some(ctx) = ctx_mut(&mut self.slots, id) else {
            return;
        };
        ctx.confirmed = true;
        ctx.last_activity = ctx.last_activity.max(now);
        if !ctx.armed
            && !ctx.timed_out
            && let Some(deadline) = ctx.last_activity.checked_add(self.cfg.media_timeout)
        {
            ctx.armed = true;
            self.timers.push(Reverse((deadline, id)));
        }
    }

    /// Ends context `id`: its four ports go back to the end of the free list (usable at once,
    /// unless marked unusable) and its final statistics are returned. `None` for unknown ids.
    pub fn release(&mut self, id: MediaId) -> Option<MediaStats> {
        self.leave_room(id);
        let slot = self.slots.get_mut(id.slot())?;
        if slot.ctx.as_ref()?.id != id {
            return None;
        }
        let ctx = slot.ctx.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        for leg in &ctx.legs {
            self.pool.give_back(leg.pair);
        }
        if let Ok(index) = u16::try_from(id.slot()) {
            self.free_slots.push_back(index);
        }
        self.live = self.live.saturating_sub(1);
        tracing::debug!(id = id.0, "relay: media context released");
        Some(MediaStats {
            caller: ctx.legs[0].stats(),
            callee: ctx.legs[1].stats(),
        })
    }

    /// The driver could not bind `port` (RTP or RTCP): its pair is never handed out again.
    /// A context holding it keeps it until released (release it and create another). Ports
    /// outside the range are ignored.
    pub fn mark_port_unusable(&mut self, port: u16) {
        self.pool.mark_unusable(port);
    }

    /// Runs the transcoders' frames and reports due at `now` (their datagrams then wait in
    /// [`Relay::poll_transmit`]), and raises [`RelayEvent::MediaTimeout`] for every confirmed
    /// context silent for `media_timeout` at `now`; re-arms the others from their last packet.
    pub fn handle_timeout(&mut self, now: Instant) {
        for room in self.rooms.values_mut() {
            room.mix_due(now);
        }
        while let Some(&Reverse((due, id))) = self.ticks.peek() {
            if due > now {
                break;
            }
            self.ticks.pop();
            let Some(ctx) = ctx_mut(&mut self.slots, id) else {
                continue; // released
            };
            if ctx.tick_at != Some(due) {
                continue; // superseded
            }
            let Some(t) = ctx.engine.as_mut() else {
                continue;
            };
            t.handle_timeout(now);
            let next = t.poll_timeout();
            ctx.tick_at = next;
            if let Some(next) = next {
                self.ticks.push(Reverse((next, id)));
            }
            Self::collect_transmits(
                ctx,
                &mut self.transmits,
                &mut self.events,
                &mut self.counters,
            );
        }
        while let Some(&Reverse((deadline, id))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(ctx) = ctx_mut(&mut self.slots, id) else {
                continue; // released
            };
            ctx.armed = false;
            if !ctx.confirmed || ctx.timed_out {
                continue;
            }
            match ctx.last_activity.checked_add(self.cfg.media_timeout) {
                Some(due) if due > now => {
                    ctx.armed = true;
                    self.timers.push(Reverse((due, id)));
                }
                Some(_) => {
                    ctx.timed_out = true;
                    self.counters.media_timeouts += 1;
                    self.events.push_back(RelayEvent::MediaTimeout { id });
                    tracing::debug!(id = id.0, "relay: media timeout");
                }
                None => {} // a timeout beyond the clock's range never fires
            }
        }
    }

    /// The earliest instant [`Relay::handle_timeout`] has work to do (it may find nothing to
    /// do there: deadlines are re-checked lazily), or `None`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let media = self.timers.peek().map(|Reverse((deadline, _))| *deadline);
        let ticks = self.ticks.peek().map(|Reverse((deadline, _))| *deadline);
        let mix = self.rooms.values().map(Room::next_mix).min();
        [media, ticks, mix].into_iter().flatten().min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// Relay-wide counters, with the current number of contexts and ports in use.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            contexts: self.contexts(),
            ports_in_use: self.ports_in_use(),
            ..self.counters.clone()
        }
    }

    /// Statistics of both directions of context `id` so far.
    pub fn media_stats(&self, id: MediaId) -> Option<MediaStats> {
        let ctx = self.slots.get(id.slot())?.ctx.as_ref()?;
        (ctx.id == id).then(|| MediaStats {
            caller: ctx.legs[0].stats(),
            callee: ctx.legs[1].stats(),
        })
    }

    /// Local ports held by live contexts (RTP and RTCP: four per context).
    pub fn ports_in_use(&self) -> usize {
        self.pool.pairs_in_use() * 2
    }

    /// Live media contexts.
    pub fn contexts(&self) -> usize {
        self.live
    }

    /// Whether `port` is one of the pool's RTP or RTCP ports (allocated or not), e.g. to spot
    /// an SDP that already points at this relay.
    pub fn is_relay_port(&self, port: u16) -> bool {
        self.pool.contains(port)
    }

    /// Whether `port` is currently held by a media context (RTP or RTCP port).
    pub fn is_allocated(&self, port: u16) -> bool {
        self.pool.owner(port).is_some()
    }

    /// The configuration this relay runs with.
    pub fn config(&self) -> &RelayConfig {
        &self.cfg
    }
}
