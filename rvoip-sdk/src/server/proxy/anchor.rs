//! Media anchoring: the [`MediaHook`] that puts the media relay into every call the proxy
//! forwards (what Kamailio's `rtpengine_manage()` does with rtpengine).
//!
//! One relay context per RTP stream and fork branch: the caller's offer is rewritten per branch
//! toward that branch's callee-facing ports; each answer (18x/2xx, or the ACK of a late offer)
//! toward the caller-facing ports. The 2xx collapses the branches; BYE, CANCEL, a final failure
//! or a timeout release the ports. Modes ([`RelayMode`]): always, only when a NAT is involved,
//! or off.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::media::{ConferenceEvent, EndReason, MediaHook, Party, SdpPassage};
use super::route::is_private;
use super::transcoding::{self, Decision};
use crate::media::relay::{MediaId, RelayEvent, Side};
use crate::server::relay::codecs::Format;
use crate::server::relay::conference::ConferenceMedia;
use crate::server::relay::sdp::Sdp;
use crate::server::relay::{CallRecorder, RelayControl};

/// When rvoip-server anchors media (TOML `relay`, flag `--relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// Every call's media goes through the relay (the zero-config default).
    #[default]
    Always,
    /// Only calls where a party is behind a NAT: an SDP address that is private or differs from
    /// the signalling source, or a caller/callee whose REGISTER/INVITE came through a NAT.
    Nat,
    /// Signalling only; SDP passes untouched.
    Off,
}

impl std::str::FromStr for RelayMode {
    type Err = String;
    /// Parses `always`, `nat` or `off` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(RelayMode::Always),
            "nat" => Ok(RelayMode::Nat),
            "off" => Ok(RelayMode::Off),
            _ => Err(format!("relay mode must be always, nat or off, not {s:?}")),
        }
    }
}

fn side(p: Party) -> Side {
    match p {
        Party::Caller => Side::Caller,
        Party::Callee => Side::Callee,
    }
}

/// The relay contexts of one fork branch: one per anchored `m=` line.
#[derive(Debug, Default)]
struct BranchMedia {
    /// (m-line index, context).
    streams: Vec<(usize, MediaId)>,
    /// The caller's payload formats of each plain-RTP audio stream of its initial offer
    /// (m-line index, formats): what an answer must be written back into when transcoding.
    offered: Vec<(usize, Vec<Format>)>,
    /// The offer was widened with transcodable codecs after a 488: the formats it added, per
    /// m-line index.
    widened: bool,
    added: Vec<(usize, Vec<Format>)>,
    /// The callee's first answer to the widened offer was decided on.
    decided: bool,
    /// Streams transcoded, with the formats each party (caller, callee) must see in every SDP
    /// it receives.
    transcoded: Vec<(usize, [Vec<Format>; 2])>,
    /// Scratch for `transcode_answer`: answer formats trimmed to the caller's.
    trimmed: Vec<(usize, Vec<Format>)>,
    /// Each party's payload formats of the first audio stream as it sends them (caller,
    /// callee): what a recording decodes.
    sent_formats: [Vec<Format>; 2],
    /// The m-line index of that stream, and whether either party made it SRTP (then it is
    /// not recorded: the relay never holds SRTP keys).
    audio_index: Option<usize>,
    secure_audio: bool,
    /// Last `o=` version received from each party and the version we wrote toward the other.
    versions: [Option<(u64, u64)>; 2],
}

/// One anchored call.
#[derive(Debug, Default)]
struct Call {
    branches: HashMap<u32, BranchMedia>,
    answered: Option<u32>,
    /// The call's recording, once answered (see [`MediaHook::record_call`]).
    recording: Option<u64>,
}

/// Counters of the anchor (the server's status counters).
#[derive(Debug, Default, Clone, Copy)]
pub struct AnchorStats {
    /// Calls whose media went through the relay.
    pub calls_anchored: u64,
    /// Calls left to flow directly (mode nat without a NAT, or off).
    pub calls_direct: u64,
    /// Requests refused with 503 because the port pool was exhausted.
    pub pool_exhausted: u64,
    /// Calls ended because no media flowed.
    pub media_timeouts: u64,
    /// Offers widened with transcodable codecs after a 488.
    pub offers_widened: u64,
    /// Streams transcoded (the answer picked a codec the caller did not offer).
    pub streams_transcoded: u64,
    /// Totals over released contexts: packets and bytes forwarded, lost (RFC 3550 A.3).
    pub packets: u64,
    /// Bytes forwarded by released contexts.
    pub bytes: u64,
    /// Packets lost by released contexts.
    pub lost: u64,
}

/// The relay's [`MediaHook`].
pub struct RelayAnchor<R: RelayControl> {
    relay: R,
    mode: RelayMode,
    /// Whether offers refused with 488 are widened with transcodable codecs.
    transcode: bool,
    /// The address written into SDP (`c=`, `o=`, `a=rtcp`).
    advertise: IpAddr,
    calls: HashMap<String, Call>,
    /// Conference room members.
    conference: ConferenceMedia,
    conference_events: std::collections::VecDeque<ConferenceEvent>,
    /// Where recorded calls go; `None`: no recording.
    recorder: Option<Box<dyn CallRecorder>>,
    /// Calls to record once answered.
    to_record: HashSet<String>,
    /// Calls decided not to be anchored (mode nat), so later SDP passes untouched.
    direct: HashMap<String, ()>,
    by_media: HashMap<MediaId, String>,
    timeouts: Vec<String>,
    next_poll: Option<Instant>,
    /// Counters.
    pub stats: AnchorStats,
}

/// How often relay events are polled when the relay runs its own timers.
const EVENT_POLL: Duration = Duration::from_secs(1);

impl<R: RelayControl> RelayAnchor<R> {
    /// An anchor over `relay`, writing `advertise` into SDP, in `mode`.
    pub fn new(relay: R, mode: RelayMode, advertise: IpAddr) -> RelayAnchor<R> {
        RelayAnchor {
            relay,
            mode,
            transcode: true,
            recorder: None,
            to_record: HashSet::new(),
            conference: ConferenceMedia::default(),
            conference_events: std::collections::VecDeque::new(),
            advertise,
            calls: HashMap::new(),
            direct: HashMap::new(),
            by_media: HashMap::new(),
            timeouts: Vec::new(),
            next_poll: None,
            stats: AnchorStats::default(),
        }
    }

    /// Turns transcoding on (the default) or off: with it on, an initial offer the callee
    /// refuses with 488 is sent again with the codecs the relay can convert added (PCMU, PCMA,
    /// G.722, Opus), and a stream whose answer picks one of those is transcoded.
    pub fn with_transcoding(mut self, on: bool) -> Self {
        self.transcode = on;
        self
    }

    /// Records the calls [`MediaHook::record_call`] names into `recorder`: one stereo
    /// recording per answered call (its first audio stream), caller left, callee right.
    pub fn with_recorder(mut self, recorder: Box<dyn CallRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Tells the recorder the codecs `side` sends with (its formats the relay can decode).
    fn record_codecs(recorder: &mut dyn CallRecorder, rec: u64, side: Side, formats: &[Format]) {
        let codecs = formats
            .iter()
            .filter_map(|f| f.codec().map(|c| (f.pt, c)))
            .collect();
        recorder.set_codecs(rec, side, codecs);
    }

    /// Decides, for each stream of the callee's first answer on a widened branch, between
    /// plain forwarding (the callee picked a codec the caller offered: the answer is trimmed
    /// to the caller's formats) and transcoding ([`transcoding::decide`]); remembers what
    /// each party must see from then on.
    fn transcode_answer(&mut self, now: Instant, call_id: &str, branch: u32, sdp: &mut Sdp) {
        let Some(b) = self
            .calls
            .get_mut(call_id)
            .and_then(|c| c.branches.get_mut(&branch))
        else {
            return;
        };
        b.decided = true;
        for s in &sdp.streams {
            let Some((_, offered)) = b.offered.iter().find(|(i, _)| *i == s.index) else {
                continue;
            };
            let Some(&(_, id)) = b.streams.iter().find(|(i, _)| *i == s.index) else {
                continue;
            };
            let added = b
                .added
                .iter()
                .find(|(i, _)| *i == s.index)
                .map_or(&[][..], |(_, a)| a.as_slice());
            match transcoding::decide(offered, added, &sdp.formats(s.index)) {
                None => {}
                Some(Decision::Forward { formats }) => {
                    let _ = self.relay.set_transcoding(now, id, None);
                    b.trimmed.push((s.index, formats));
                }
                Some(Decision::Refuse(why)) => {
                    tracing::warn!(%call_id, why, "relay: cannot transcode this answer");
                }
                Some(Decision::Transcode { specs, formats }) => {
                    match self.relay.set_transcoding(now, id, Some(specs)) {
                        Ok(()) => {
                            self.stats.streams_transcoded += 1;
                            tracing::info!(
                                %call_id,
                                caller = specs[0].codec.name,
                                callee = specs[1].codec.name,
                                "relay: transcoding"
                            );
                            b.transcoded.push((s.index, formats));
                        }
                        Err(e) => tracing::warn!(%call_id, error = %e, "relay: cannot transcode"),
                    }
                }
            }
        }
        for (index, formats) in std::mem::take(&mut b.trimmed) {
            sdp.set_formats(index, &formats);
        }
    }

    /// The relay (tests feed it datagrams).
    pub fn relay(&mut self) -> &mut R {
        &mut self.relay
    }

    /// Calls currently anchored.
    pub fn anchored_calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether this SDP passage must be anchored (mode nat: a NAT is involved).
    fn wants_relay(&self, p: &SdpPassage<'_>, sdp: &Sdp) -> bool {
        match self.mode {
            RelayMode::Always => true,
            RelayMode::Off => false,
            RelayMode::Nat => {
                p.nat
                    || sdp.streams.iter().any(|s| {
                        is_private(s.rtp.ip()) || p.source.is_some_and(|src| src.ip() != s.rtp.ip())
                    })
            }
        }
    }

    fn release_branch(&mut self, call_id: &str, media: BranchMedia) {
        for (_, id) in media.streams {
            self.by_media.remove(&id);
            if let Some(st) = self.relay.release(id) {
                self.stats.packets += st.caller.packets + st.callee.packets;
                self.stats.bytes += st.caller.bytes + st.callee.bytes;
                self.stats.lost += st.caller.lost + st.callee.lost;
                tracing::info!(
                    %call_id,
                    caller.packets = st.caller.packets, caller.bytes = st.caller.bytes,
                    caller.lost = st.caller.lost, caller.jitter_ms = st.caller.jitter_ms,
                    caller.latched = ?st.caller.latched, caller.foreign = st.caller.dropped_foreign,
                    callee.packets = st.callee.packets, callee.bytes = st.callee.bytes,
                    callee.lost = st.callee.lost, callee.jitter_ms = st.callee.jitter_ms,
                    callee.latched = ?st.callee.latched, callee.foreign = st.callee.dropped_foreign,
                    ports_in_use = self.relay.ports_in_use(),
                    "relay: media context released"
                );
            }
        }
    }
}

impl<R: RelayControl> MediaHook for RelayAnchor<R> {
    fn on_sdp(&mut self, now: Instant, p: &SdpPassage<'_>, body: &mut Bytes) -> Result<(), u16> {
        if self.mode == RelayMode::Off || self.direct.contains_key(p.call_id) {
            return Ok(());
        }
        let mut sdp = match Sdp::parse(body) {
            Ok(s) => s,
            // An unreadable offer cannot be anchored: 488 rather than media around the relay.
            Err(_) if p.status.is_none() => return Err(488),
            Err(_) => return Ok(()),
        };
        let known = self
            .calls
            .get(p.call_id)
            .is_some_and(|c| c.branches.contains_key(&p.branch));
        if !known {
            // Only the dialog-creating exchange starts anchoring (a call left direct stays so).
            if !p.initial
                || self
                    .calls
                    .get(p.call_id)
                    .is_some_and(|c| c.answered.is_some())
            {
                return Ok(());
            }
            if !self.calls.contains_key(p.call_id) && !self.wants_relay(p, &sdp) {
                self.direct.insert(p.call_id.to_string(), ());
                self.stats.calls_direct += 1;
                return Ok(());
            }
        }
        let mut fresh = false;
        if !self.calls.contains_key(p.call_id) {
            self.calls.insert(p.call_id.to_string(), Call::default());
            self.stats.calls_anchored += 1;
            fresh = true;
        }
        let mut created = Vec::new();
        let mut ports = Vec::with_capacity(sdp.streams.len());
        let from = side(p.sender);
        let toward = from.other();
        for s in &sdp.streams {
            let existing = self
                .calls
                .get(p.call_id)
                .and_then(|c| c.branches.get(&p.branch))
                .and_then(|b| b.streams.iter().find(|(i, _)| *i == s.index))
                .map(|(_, id)| *id);
            let id = match existing {
                Some(id) => id,
                None => match self.relay.create(now) {
                    Ok(id) => {
                        created.push((s.index, id));
                        id
                    }
                    Err(e) => {
                        tracing::warn!(call_id = p.call_id, error = %e, "relay: cannot anchor");
                        for (_, id) in created {
                            self.relay.release(id);
                        }
                        if fresh {
                            self.calls.remove(p.call_id);
                        }
                        self.stats.pool_exhausted += 1;
                        return Err(503);
                    }
                },
            };
            let _ = self.relay.set_remote(id, from, s);
            if let Some(port) = self.relay.local_port(id, toward) {
                ports.push((s.index, port));
            }
        }
        let call_id = p.call_id.to_string();
        let Some(call) = self.calls.get_mut(&call_id) else {
            return Ok(());
        };
        let branch = call.branches.entry(p.branch).or_default();
        for (i, id) in created {
            branch.streams.push((i, id));
            self.by_media.insert(id, call_id.clone());
        }
        if self.transcode && p.initial && p.status.is_none() && from == Side::Caller {
            branch.offered = sdp
                .streams
                .iter()
                .filter(|s| !s.secure && sdp.is_audio(s.index))
                .map(|s| (s.index, sdp.formats(s.index)))
                .collect();
        }
        if let Some(first) = sdp.streams.iter().find(|s| sdp.is_audio(s.index)) {
            branch.audio_index = Some(first.index);
            branch.secure_audio |= first.secure;
            let formats = sdp.formats(first.index);
            if let (Some(rec), Some(recorder)) = (call.recording, self.recorder.as_mut()) {
                Self::record_codecs(recorder.as_mut(), rec, from, &formats);
            }
            branch.sent_formats[from.index()] = formats;
        }
        if branch.widened && !branch.decided && from == Side::Callee {
            self.transcode_answer(now, &call_id, p.branch, &mut sdp);
        }
        let Some(branch) = self
            .calls
            .get_mut(&call_id)
            .and_then(|c| c.branches.get_mut(&p.branch))
        else {
            return Ok(());
        };
        // A transcoded stream: every SDP reaches each party in its own codec (a re-INVITE's
        // offer and answer alike), and the transcoder stays.
        for (index, formats) in &branch.transcoded {
            sdp.set_formats(*index, &formats[toward.index()]);
        }
        // o= version toward the receiver: bumped whenever the sender's version changes (RFC 3264
        // §8: a changed description carries a higher version).
        let in_version = sdp.version();
        let slot = &mut branch.versions[match from {
            Side::Caller => 0,
            Side::Callee => 1,
        }];
        let out_version = match *slot {
            Some((last_in, last_out)) if last_in == in_version => last_out,
            Some((_, last_out)) => last_out.saturating_add(1),
            None => in_version,
        };
        *slot = Some((in_version, out_version));
        *body = Bytes::from(sdp.anchor(self.advertise, &ports, out_version));
        Ok(())
    }

    fn on_answered(&mut self, now: Instant, call_id: &str, branch: u32) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.answered.is_some() {
            return;
        }
        call.answered = Some(branch);
        let losers: Vec<u32> = call
            .branches
            .keys()
            .copied()
            .filter(|b| *b != branch)
            .collect();
        let mut freed = Vec::new();
        for b in losers {
            if let Some(m) = call.branches.remove(&b) {
                freed.push(m);
            }
        }
        if let Some(m) = call.branches.get(&branch) {
            for (_, id) in &m.streams {
                self.relay.confirm(now, *id);
            }
            let audio = m
                .streams
                .iter()
                .find(|(i, _)| Some(*i) == m.audio_index)
                .map(|&(_, id)| id);
            let wanted = self.to_record.remove(call_id);
            if wanted && m.secure_audio {
                tracing::info!(%call_id, "relay: an SRTP call is not recorded (no keys at the relay)");
            }
            if let (true, false, Some(recorder), Some(id)) =
                (wanted, m.secure_audio, self.recorder.as_mut(), audio)
            {
                let rec = recorder.open(call_id, now);
                for side in [Side::Caller, Side::Callee] {
                    Self::record_codecs(
                        recorder.as_mut(),
                        rec,
                        side,
                        &m.sent_formats[side.index()],
                    );
                }
                let _ = self.relay.set_recording(id, Some(rec));
                call.recording = Some(rec);
                tracing::info!(%call_id, recording = rec, "relay: recording the call");
            }
        }
        for m in freed {
            self.release_branch(call_id, m);
        }
        if self.next_poll.is_none() {
            self.next_poll = Some(now + EVENT_POLL);
        }
    }

    fn on_branch_end(&mut self, _now: Instant, call_id: &str, branch: u32, _why: EndReason) {
        let m = self.calls.get_mut(call_id).and_then(|c| {
            if c.answered == Some(branch) {
                None
            } else {
                c.branches.remove(&branch)
            }
        });
        if let Some(m) = m {
            self.release_branch(call_id, m);
        }
    }

    fn on_call_end(&mut self, now: Instant, call_id: &str, why: EndReason) {
        self.direct.remove(call_id);
        self.to_record.remove(call_id);
        if let Some(call) = self.calls.remove(call_id) {
            if let (Some(rec), Some(recorder)) = (call.recording, self.recorder.as_mut()) {
                recorder.close(rec, now);
            }
            tracing::debug!(%call_id, ?why, "relay: call ended");
            for (_, m) in call.branches {
                self.release_branch(call_id, m);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.relay.poll_timeout(), self.next_poll]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.relay.handle_timeout(now);
        while let Some(ev) = self.relay.poll_event() {
            match ev {
                RelayEvent::MediaTimeout { id } if self.conference.member(id).is_some() => {
                    let call_id = self.conference.member(id).unwrap_or_default().to_string();
                    self.conference_events
                        .push_back(ConferenceEvent::MediaTimeout(call_id));
                }
                RelayEvent::MemberMuted { id, muted } => {
                    if let Some(call_id) = self.conference.member(id) {
                        self.conference_events.push_back(ConferenceEvent::Muted {
                            call_id: call_id.to_string(),
                            muted,
                        });
                    }
                }
                RelayEvent::MediaTimeout { id } => {
                    if let Some(call_id) = self.by_media.get(&id) {
                        if !self.timeouts.contains(call_id) {
                            self.stats.media_timeouts += 1;
                            self.timeouts.push(call_id.clone());
                        }
                    }
                }
            }
        }
        if self.next_poll.is_some_and(|t| t <= now) {
            let busy = !self.calls.is_empty() || self.conference.rooms() > 0;
            self.next_poll = busy.then(|| now + EVENT_POLL);
        }
    }

    fn poll_media_timeout(&mut self) -> Option<String> {
        self.timeouts.pop()
    }

    fn conference_join(
        &mut self,
        now: Instant,
        call_id: &str,
        room: &str,
        offer: &[u8],
    ) -> Result<Bytes, u16> {
        if self.mode == RelayMode::Off {
            return Err(503);
        }
        let answer =
            self.conference
                .join(&mut self.relay, self.advertise, now, call_id, room, offer)?;
        if self.next_poll.is_none() {
            self.next_poll = Some(now + EVENT_POLL);
        }
        Ok(Bytes::from(answer))
    }

    fn conference_leave(&mut self, _now: Instant, call_id: &str) -> Option<(String, usize)> {
        self.conference.leave(&mut self.relay, call_id)
    }

    fn poll_conference_event(&mut self) -> Option<ConferenceEvent> {
        self.conference_events.pop_front()
    }

    fn record_call(&mut self, call_id: &str) {
        if self.recorder.is_some() && self.mode != RelayMode::Off {
            self.to_record.insert(call_id.to_string());
        }
    }

    fn may_widen(&self) -> bool {
        self.transcode && self.mode != RelayMode::Off
    }

    fn widen_offer(&mut self, _now: Instant, call_id: &str, branch: u32, body: &mut Bytes) -> bool {
        let Some(b) = self
            .calls
            .get_mut(call_id)
            .and_then(|c| c.branches.get_mut(&branch))
        else {
            return false;
        };
        if b.widened || b.offered.is_empty() {
            return false;
        }
        let Ok(mut sdp) = Sdp::parse(body) else {
            return false;
        };
        let mut added = 0;
        for (index, _) in &b.offered {
            let formats = sdp.widen(*index);
            added += formats.len();
            b.added.push((*index, formats));
        }
        if added == 0 {
            b.added.clear();
            return false;
        }
        b.widened = true;
        self.stats.offers_widened += 1;
        tracing::debug!(%call_id, branch, added, "relay: offer widened for transcoding");
        *body = Bytes::from(sdp.rewrite(self.advertise, &[], None));
        true
    }
}
