//! Conference rooms: a call to `sip:<prefix><name>@<our domain>` (prefix `conf-` by default,
//! `conference_prefix`) is answered by the server itself, as a UAS (RFC 3261 §12.1.1, §13.3):
//! 200 with the relay's answer (the member joins the room's mixer), the 2xx retransmitted over
//! UDP until its ACK (§13.3.1.4: T1 doubling to T2, for 64·T1), a re-INVITE answered with the
//! same session, BYE (§15.1.2) ending the membership. Joins, leaves and mutes are logged; a
//! room ends with its last member. A member whose media stopped for the relay's media timeout
//! gets a BYE from the server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::server::proxy::ConferenceEvent;
use crate::server::proxy::route::via_destination;

/// One member's dialog (the server is its UAS).
#[derive(Debug)]
struct Leg {
    room: String,
    /// Our tag (To of the member's requests).
    local_tag: String,
    /// Our 200 to its INVITE (retransmitted until the ACK; its body answers re-INVITEs).
    ok: Response,
    /// Where our responses and our BYE go: over UDP the INVITE's top Via (received/rport),
    /// over a connection the connection it came on.
    dest: (SocketAddr, Transport),
    /// The route set (RFC 3261 §12.1.1: the INVITE's Record-Route, in order) for our BYE.
    route: Vec<String>,
    /// The member's From (our BYE's To) and our To (our BYE's From).
    their_from: String,
    our_to: String,
    /// The member's Contact URI (our BYE's Request-URI).
    contact: String,
    /// Waiting for the ACK of our last 2xx: next retransmission (UDP only), interval, give
    /// up at (64·T1, on every transport: §13.3.1.4).
    retransmit: Option<(Option<Instant>, Duration, Instant)>,
}

/// The server's conference legs and settings.
#[derive(Debug)]
pub(crate) struct Conferences {
    /// The user-part prefix of room URIs (empty: no rooms).
    prefix: String,
    /// Members per room at most (more get 486).
    max_members: usize,
    /// Rooms at most (a join that would open another gets 486).
    max_rooms: usize,
    t1: Duration,
    t2: Duration,
    /// By Call-ID.
    legs: HashMap<String, Leg>,
}

impl Conferences {
    pub(crate) fn new(cfg: &ServerConfig) -> Conferences {
        Conferences {
            prefix: cfg.conference_prefix.clone(),
            max_members: cfg.conference_max_members,
            max_rooms: cfg.conference_max_rooms,
            t1: Duration::from_millis(cfg.t1_ms.max(1)),
            t2: Duration::from_millis(cfg.t2_ms.max(1)),
            legs: HashMap::new(),
        }
    }

    /// The room a Request-URI user names, if it has the prefix and a name after it.
    fn room_of<'a>(&self, user: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            return None;
        }
        let name = user.strip_prefix(self.prefix.as_str())?;
        (!name.is_empty()).then_some(name)
    }

    fn members(&self, room: &str) -> usize {
        self.legs.values().filter(|l| l.room == room).count()
    }

    fn rooms(&self) -> usize {
        let mut rooms: Vec<&str> = self.legs.values().map(|l| l.room.as_str()).collect();
        rooms.sort_unstable();
        rooms.dedup();
        rooms.len()
    }

    /// The earliest 2xx retransmission due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.legs
            .values()
            .filter_map(|l| {
                l.retransmit
                    .map(|(next, _, until)| next.map_or(until, |n| n.min(until)))
            })
            .min()
    }
}

/// The methods a conference dialog takes (RFC 3261 §20.5).
const ALLOW: &str = "INVITE, ACK, BYE, OPTIONS, INFO";

/// The ACK wait of a 2xx sent at `now` over `transport`: retransmissions from `t1` over UDP,
/// and the 64·T1 deadline on every transport (RFC 3261 §13.3.1.4).
fn ack_wait(
    t1: Duration,
    now: Instant,
    transport: Transport,
) -> (Option<Instant>, Duration, Instant) {
    let next = (!transport.is_reliable()).then(|| now + t1);
    (next, t1, now + t1.saturating_mul(64))
}

fn header(req: &Request, name: HeaderName) -> String {
    req.headers
        .get(&name)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

impl ServerCore {
    /// The conference room `req` (to a local user) is for, if any.
    pub(super) fn conference_room(&self, req: &Request) -> Option<String> {
        let user = req.uri.user.as_deref()?;
        self.conferences.room_of(user).map(str::to_string)
    }

    /// An out-of-dialog request to room `room`: an INVITE joins it (200 with the relay's
    /// answer; 403 from a sender that did not authenticate as one of our users while INVITEs
    /// are authenticated; 486 when the room or the server's rooms are full; 488 without a
    /// usable offer); OPTIONS gets 200, BYE 481, anything else 405.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conference_request(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        room: String,
        authenticated: bool,
    ) {
        match req.method {
            Method::Invite => {}
            Method::Options => return self.reply(now, tx, &req, 200, vec![]),
            Method::Bye => return self.reply(now, tx, &req, 481, vec![]),
            _ => {
                return self.reply(now, tx, &req, 405, vec![(HeaderName::Allow, ALLOW.into())]);
            }
        }
        let call_id = header(&req, HeaderName::CallId);
        if self.conferences.legs.contains_key(&call_id) {
            // A new INVITE (another branch) of a call already in a room.
            return self.reply(now, tx, &req, 482, vec![]);
        }
        if self.invite_auth_of(&req) && !authenticated {
            // Rooms are for this server's users: a From of another domain cannot authenticate.
            return self.reply(now, tx, &req, 403, vec![]);
        }
        let members = self.conferences.members(&room);
        if members == 0 && self.conferences.rooms() >= self.conferences.max_rooms {
            tracing::info!(%room, max = self.conferences.max_rooms, "conference: too many rooms");
            return self.reply(now, tx, &req, 486, vec![]);
        }
        if members >= self.conferences.max_members {
            tracing::info!(%room, max = self.conferences.max_members, "conference: room full");
            return self.reply(now, tx, &req, 486, vec![]);
        }
        if req.body.is_empty() {
            // No offer: this UAS does not make offers (late offer).
            return self.reply(now, tx, &req, 488, vec![]);
        }
        let answer = match self
            .proxy
            .media_mut()
            .conference_join(now, &call_id, &room, &req.body)
        {
            Ok(a) => a,
            Err(status) => {
                tracing::info!(%room, %call_id, status, "conference: join refused");
                return self.reply(now, tx, &req, status, vec![]);
            }
        };
        let tag = format!("conf{:016x}", rand::random::<u64>());
        let mut ok = Response::for_request(&req, 200);
        let to = header(&req, HeaderName::To);
        let our_to = format!("{to};tag={tag}");
        ok.headers.set(HeaderName::To, our_to.clone());
        let user = req.uri.user.as_deref().unwrap_or_default().to_string();
        if let Some(i) = self.local.interface(transport) {
            let param = if transport == Transport::Udp {
                String::new()
            } else {
                format!(";transport={}", transport.as_str())
            };
            ok.headers.push(
                HeaderName::Contact,
                format!("<sip:{user}@{}:{}{param}>", i.host, i.port),
            );
        }
        ok.headers.set(HeaderName::ContentType, "application/sdp");
        ok.body = answer;
        let dest = if transport.is_reliable() {
            (source, transport)
        } else {
            req.headers
                .top_via()
                .ok()
                .and_then(|v| via_destination(&v))
                .unwrap_or((source, transport))
        };
        let route: Vec<String> = req
            .headers
            .get_all(&HeaderName::RecordRoute)
            .map(|r| r.to_string())
            .collect();
        let contact = req
            .headers
            .get(&HeaderName::Contact)
            .and_then(|c| crate::sip::msg::NameAddr::parse(c).ok())
            .map(|na| na.uri.to_string())
            .unwrap_or_default();
        let retransmit = Some(ack_wait(self.conferences.t1, now, transport));
        let from = header(&req, HeaderName::From);
        // Not fitted to the INVITE's size: the member authenticated (or the operator opened
        // rooms with invite_auth off), and the 2xx must reach it whole.
        crate::server::reply::send_authenticated_response(
            &mut self.tl,
            &mut self.stats,
            now,
            tx,
            ok.clone(),
        );
        self.conferences.legs.insert(
            call_id.clone(),
            Leg {
                room: room.clone(),
                local_tag: tag,
                ok,
                dest,
                route,
                their_from: from.clone(),
                our_to,
                contact,
                retransmit,
            },
        );
        let members = self.conferences.members(&room);
        tracing::info!(%room, %call_id, member = %from, members, "conference: joined");
    }

    /// A request within a conference dialog (ACK when `tx` is `None`): handled here when its
    /// Call-ID and tags name one of our legs. Returns whether it was.
    pub(super) fn conference_in_dialog(
        &mut self,
        now: Instant,
        tx: Option<ServerTxId>,
        req: &Request,
    ) -> bool {
        // Only requests in one of our dialogs: a To tag of ours, found by the header scan (the
        // hot path of every other request stops here, without parsing the To).
        let to_tag = req.headers.to_tag().map(str::to_string);
        if !to_tag.as_deref().is_some_and(|t| t.starts_with("conf")) {
            return false;
        }
        let call_id = req
            .headers
            .get(&HeaderName::CallId)
            .map(|c| c.to_string())
            .unwrap_or_default();
        let known = self
            .conferences
            .legs
            .get(&call_id)
            .is_some_and(|l| to_tag.as_deref() == Some(l.local_tag.as_str()));
        if !known {
            // A request in a room dialog that is over (a retransmitted BYE): 481 (§12.2.2).
            let ours = req.headers.get(&HeaderName::Route).is_none()
                && self.local.is_local_uri(&req.uri)
                && self.conference_room(req).is_some();
            if let (true, Some(tx)) = (ours, tx) {
                self.reply(now, tx, req, 481, vec![]);
            }
            return ours;
        }
        let t1 = self.conferences.t1;
        let Some(leg) = self.conferences.legs.get_mut(&call_id) else {
            return false;
        };
        let Some(tx) = tx else {
            // The ACK of our 2xx: stop retransmitting (§13.3.1.4).
            leg.retransmit = None;
            return true;
        };
        match req.method {
            Method::Bye => {
                self.reply(now, tx, req, 200, vec![]);
                self.conference_leave(now, &call_id, "bye");
            }
            Method::Invite => {
                // A re-INVITE (hold, refresh): the session stays as it is.
                let mut ok = Response::for_request(req, 200);
                ok.headers.set(HeaderName::To, leg.our_to.clone());
                if let Some(c) = leg.ok.headers.get(&HeaderName::Contact) {
                    ok.headers.push(HeaderName::Contact, c.to_string());
                }
                ok.headers.set(HeaderName::ContentType, "application/sdp");
                ok.body = leg.ok.body.clone();
                leg.ok = ok.clone();
                leg.retransmit = Some(ack_wait(t1, now, leg.dest.1));
                crate::server::reply::send_authenticated_response(
                    &mut self.tl,
                    &mut self.stats,
                    now,
                    tx,
                    ok,
                );
            }
            Method::Options | Method::Info => self.reply(now, tx, req, 200, vec![]),
            _ => self.reply(now, tx, req, 405, vec![(HeaderName::Allow, ALLOW.into())]),
        }
        true
    }

    /// Ends leg `call_id`'s membership (`why`: bye, timeout), logging the leave and the room's
    /// end.
    fn conference_leave(&mut self, now: Instant, call_id: &str, why: &str) {
        let Some(leg) = self.conferences.legs.remove(call_id) else {
            return;
        };
        let left = self
            .proxy
            .media_mut()
            .conference_leave(now, call_id)
            .map_or(0, |(_, n)| n);
        tracing::info!(room = %leg.room, %call_id, member = %leg.their_from, why, members = left,
            "conference: left");
        if left == 0 {
            tracing::info!(room = %leg.room, "conference: room ended (empty)");
        }
    }

    /// 2xx retransmissions due at `now`, and the media's conference events (mutes, members
    /// whose media stopped: BYE and leave).
    pub(super) fn conference_timeout(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (call_id, leg) in self.conferences.legs.iter_mut() {
            let Some((next, interval, until)) = leg.retransmit else {
                continue;
            };
            if now >= until {
                // No ACK in 64·T1: the dialog is confirmed never (§13.3.1.4): end it.
                leg.retransmit = None;
                gone.push(call_id.clone());
                continue;
            }
            if next.is_none_or(|n| n > now) {
                continue;
            }
            self.tl
                .send_stateless(leg.dest.0, leg.dest.1, leg.ok.to_bytes());
            let interval = (interval * 2).min(self.conferences.t2);
            leg.retransmit = Some((Some(now + interval), interval, until));
        }
        for call_id in gone {
            self.send_conference_bye(now, &call_id);
            self.conference_leave(now, &call_id, "no ACK");
        }
        while let Some(ev) = self.proxy.media_mut().poll_conference_event() {
            match ev {
                ConferenceEvent::Muted { call_id, muted } => {
                    let room = self.conferences.legs.get(&call_id).map(|l| l.room.clone());
                    tracing::info!(?room, %call_id, muted, "conference: mute (DTMF *6)");
                }
                ConferenceEvent::MediaTimeout(call_id) => {
                    self.send_conference_bye(now, &call_id);
                    self.conference_leave(now, &call_id, "media timeout");
                }
            }
        }
    }

    /// Sends BYE (RFC 3261 §15.1.1) in leg `call_id`'s dialog: to the member's Contact, over
    /// the flow its INVITE came on.
    fn send_conference_bye(&mut self, now: Instant, call_id: &str) {
        let Some(leg) = self.conferences.legs.get(call_id) else {
            return;
        };
        let (dest, transport) = leg.dest;
        let Some(i) = self.local.interface(transport) else {
            return;
        };
        let routes: String = leg
            .route
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect();
        let text = format!(
            "BYE {} SIP/2.0\r\nVia: SIP/2.0/{} {}:{};branch=z9hG4bKconfbye{:016x}\r\n\
             {routes}Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            leg.contact,
            transport.via_name(),
            i.host,
            i.port,
            rand::random::<u64>(),
            leg.our_to,
            leg.their_from,
        );
        match Message::parse(Bytes::from(text), &self.limits) {
            Ok(Message::Request(bye)) => {
                self.tl.send_request(now, bye, dest, transport);
            }
            _ => tracing::warn!(%call_id, "conference: cannot build the BYE"),
        }
    }

    /// The next conference deadline (2xx retransmissions).
    pub(super) fn conference_poll_timeout(&self) -> Option<Instant> {
        self.conferences.poll_timeout()
    }
}
