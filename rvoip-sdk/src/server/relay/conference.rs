//! The media side of conference rooms (`sip:conf-<name>@domain`): answers a member's offer
//! with the relay's address and one of the codecs the room mixes (RFC 3264 §6, in the
//! member's preference order: PCMU, PCMA, G.722, Opus), and puts a relay context for the member
//! into the room's mixer ([`RelayControl::join_room`]). Rooms are numbered on their first
//! member and forgotten with their last.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::RelayControl;
use super::codecs::transcodable;
use super::sdp::Stream;
use crate::media::relay::{MediaId, Side, TranscodeSpec};
use crate::sdp::{self, Direction, LocalMedia, LocalSecurity};

/// The members of the server's rooms, by Call-ID.
#[derive(Debug, Default)]
pub struct ConferenceMedia {
    /// Room name → (number, members).
    rooms: HashMap<String, (u32, usize)>,
    next_room: u32,
    /// Call-ID → (member context, room name).
    members: HashMap<String, (MediaId, String)>,
    by_media: HashMap<MediaId, String>,
}

impl ConferenceMedia {
    /// Joins call `call_id` to room `room`: a relay context whose caller leg faces the member,
    /// the answer to its `offer` (our address `advertise`, that leg's port, the first codec
    /// of the offer the room mixes, telephone-event when offered, plain RTP), and the
    /// context in the room's mixer. Returns the answer. Errors (a status to answer with): 488
    /// (no codec the room mixes, an SRTP-only offer, no audio), 400 (SDP that does not
    /// parse), 503 (no relay ports).
    pub fn join(
        &mut self,
        relay: &mut dyn RelayControl,
        advertise: IpAddr,
        now: Instant,
        call_id: &str,
        room: &str,
        offer: &[u8],
    ) -> Result<String, u16> {
        if self.members.contains_key(call_id) {
            return Err(491);
        }
        let offer = std::str::from_utf8(offer).map_err(|_| 400u16)?;
        let id = relay.create(now).map_err(|_| 503u16)?;
        let result = (|| {
            let port = relay.local_port(id, Side::Caller).ok_or(503u16)?;
            let local = LocalMedia {
                addr: advertise,
                port,
                codecs: transcodable(),
                dtmf: true,
                direction: Direction::SendRecv,
                security: LocalSecurity::plain(),
            };
            let session = u64::from(id.0);
            let (answer, neg) = sdp::answer(offer, &local, session, 1).map_err(|e| e.status())?;
            let stream = Stream {
                index: 0,
                rtp: neg.remote,
                rtcp: None,
                rtcp_mux: false,
                clock_rate: neg.codec.clock_rate,
                proto: "RTP/AVP".into(),
                secure: false,
            };
            relay
                .set_remote(id, Side::Caller, &stream)
                .map_err(|_| 503u16)?;
            let number = match self.rooms.get(room) {
                Some(&(n, _)) => n,
                None => {
                    self.next_room = self.next_room.wrapping_add(1);
                    self.next_room
                }
            };
            let spec = TranscodeSpec {
                codec: neg.codec,
                payload_type: neg.payload_type,
                telephone_event: neg.telephone_event_pt,
                ptime_ms: 20,
            };
            relay.join_room(now, id, number, spec).map_err(|_| 488u16)?;
            relay.confirm(now, id);
            Ok((answer, number, neg.remote))
        })();
        match result {
            Ok((answer, number, remote)) => {
                let n = &mut self.rooms.entry(room.to_string()).or_insert((number, 0)).1;
                *n += 1;
                self.members
                    .insert(call_id.to_string(), (id, room.to_string()));
                self.by_media.insert(id, call_id.to_string());
                tracing::debug!(%call_id, room, %remote, "conference: media joined");
                Ok(answer)
            }
            Err(status) => {
                relay.release(id);
                Err(status)
            }
        }
    }

    /// Takes call `call_id` out of its room and frees its relay context. Returns the room and
    /// how many members it has left (0: the room ended), or `None` for no member.
    pub fn leave(
        &mut self,
        relay: &mut dyn RelayControl,
        call_id: &str,
    ) -> Option<(String, usize)> {
        let (id, room) = self.members.remove(call_id)?;
        self.by_media.remove(&id);
        relay.release(id);
        let left = match self.rooms.get_mut(&room) {
            Some((_, n)) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.rooms.remove(&room);
        }
        Some((room, left))
    }

    /// The Call-ID of the member whose context is `id`.
    pub fn member(&self, id: MediaId) -> Option<&str> {
        self.by_media.get(&id).map(String::as_str)
    }

    /// Rooms with members.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }
}
