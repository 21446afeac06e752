//! Requests a call receives: answering or rejecting the initial INVITE (§13.3.1), CANCEL (§9.2),
//! ACK, in-dialog re-INVITE (§14.2, RFC 3264 §8.4 hold), BYE (§15.1.2), OPTIONS.

use std::time::Instant;

use super::{Call, Cx, OkRetx, Phase, build};
use crate::sdp::{self, Direction, LocalMedia};
use crate::sip::msg::{HeaderName, Method, Request, reason_phrase};
use crate::sip::transaction::ServerTxId;
use crate::sip::ua::{CallState, UaError, UaEvent};

impl Call {
    /// Our wanted direction: sendonly while we hold the peer.
    fn wanted_direction(&self) -> Direction {
        if self.local_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        }
    }

    /// Sends a 2xx with `sdp` and starts its retransmission until the ACK.
    fn send_2xx(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        tx: ServerTxId,
        req: &Request,
        sdp: &str,
    ) {
        let contact = self.contact();
        let tag = self.local_tag(cx);
        let mut ok = build::response(req, 200, tag.as_deref(), Some(&contact));
        ok.headers.push(HeaderName::Allow, build::ALLOW);
        build::set_sdp(&mut ok.headers, &mut ok.body, sdp);
        cx.tl.respond(now, tx, ok.clone());
        if !self.transport.is_reliable() {
            self.ok_retx = Some(OkRetx {
                tx,
                resp: ok,
                next: now + self.t1,
                interval: self.t1,
                give_up: now + self.t1 * 64,
            });
        } else {
            self.ok_retx = Some(OkRetx {
                tx,
                resp: ok,
                next: now + self.t1 * 64,
                interval: self.t1 * 64,
                give_up: now + self.t1 * 64,
            });
        }
    }

    /// The server transaction and request of the INVITE we have not answered yet.
    /// Errors: [`UaError::InvalidState`] (not an unanswered incoming call).
    pub(super) fn unanswered_invite(&self) -> Result<(ServerTxId, Request), UaError> {
        if self.phase != Phase::Incoming {
            return Err(UaError::InvalidState("not an unanswered incoming call"));
        }
        match (self.server_tx, self.remote_invite.clone()) {
            (Some(tx), Some(req)) => Ok((tx, req)),
            _ => Err(UaError::InvalidState("no INVITE to answer")),
        }
    }

    /// Answers the incoming call with 200 OK and our SDP (see [`crate::sip::ua::UserAgent::answer`]).
    pub(in crate::sip::ua) fn answer(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        mut media: LocalMedia,
    ) -> Result<Vec<UaEvent>, UaError> {
        let (tx, req) = self.unanswered_invite()?;
        media.direction = Direction::SendRecv;
        let mut ev = Vec::new();
        let early = self.take_early_answer();
        let body = match (early, build::sdp_body(&req.headers, &req.body)) {
            // The 183 carried the answer already: the 2xx repeats it (§13.2.1).
            (Some(answer), _) => answer,
            (None, Some(offer)) => {
                let (answer, n) = sdp::answer(offer, &media, self.sdp_id, self.sdp_version)?;
                self.remote_hold = offer_holds(offer);
                self.media = Some(media);
                ev.extend(self.media_event(n));
                answer
            }
            (None, None) => {
                // Offerless INVITE (§13.2.1): our offer goes in the 2xx, the answer in the ACK.
                let offer = sdp::create_offer(&media, self.sdp_id, self.sdp_version)?;
                self.media = Some(media);
                offer
            }
        };
        self.send_2xx(now, cx, tx, &req, &body);
        self.phase = Phase::WaitAck;
        Ok(ev)
    }

    /// Refuses the incoming call (see [`crate::sip::ua::UserAgent::reject`]).
    pub(in crate::sip::ua) fn reject(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        status: u16,
    ) -> Result<Vec<UaEvent>, UaError> {
        self.reject_with(now, cx, status, &[])
    }

    /// Refuses the incoming call with `status` and `contacts` as Contact headers (a 3xx
    /// redirect, [`crate::sip::ua::UserAgent::redirect`]).
    pub(in crate::sip::ua) fn reject_with(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        status: u16,
        contacts: &[crate::sip::msg::Uri],
    ) -> Result<Vec<UaEvent>, UaError> {
        let (tx, req) = self.unanswered_invite()?;
        let tag = self.local_tag(cx);
        let mut resp = build::response(&req, status, tag.as_deref(), None);
        for (i, c) in contacts.iter().enumerate() {
            let q = 10usize.saturating_sub(i).max(1);
            let q = if q == 10 {
                "1".to_string()
            } else {
                format!("0.{q}")
            };
            resp.headers
                .push(HeaderName::Contact, format!("<{c}>;q={q}"));
        }
        cx.tl.respond(now, tx, resp);
        Ok(self.end(status, reason_phrase(status), Phase::Done))
    }

    /// The caller cancelled before we answered (§9.2): 487 to the INVITE, the call ends.
    pub(in crate::sip::ua) fn on_cancel(&mut self, now: Instant, cx: &mut Cx<'_>) -> Vec<UaEvent> {
        if self.phase != Phase::Incoming {
            return Vec::new();
        }
        if let (Some(tx), Some(req)) = (self.server_tx, self.remote_invite.as_ref()) {
            let tag = self.local_tag(cx);
            let resp = build::response(req, 487, tag.as_deref(), None);
            cx.tl.respond(now, tx, resp);
        }
        self.end(487, "Request Terminated", Phase::Done)
    }

    /// The ACK for our 2xx.
    pub(in crate::sip::ua) fn on_ack(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        req: &Request,
    ) -> (Vec<UaEvent>, Option<crate::sip::transaction::ClientTxId>) {
        let mut ev = Vec::new();
        let Some(r) = &self.ok_retx else {
            return (ev, None);
        };
        let acked = r
            .resp
            .headers
            .cseq()
            .ok()
            .zip(req.headers.cseq().ok())
            .is_some_and(|(a, b)| a.seq == b.seq);
        if !acked {
            return (ev, None);
        }
        self.ok_retx = None;
        if self.bye_after_ack {
            // We hung up while waiting for this ACK: now the BYE may go (§15).
            self.bye_after_ack = false;
            self.phase = Phase::Established;
            let tx = self.send_bye(now, cx);
            self.phase = if tx.is_some() {
                Phase::Terminating
            } else {
                Phase::Done
            };
            return (ev, tx);
        }
        if self.offerless || build::sdp_body(&req.headers, &req.body).is_some() {
            // The answer to the offer we put in the 2xx.
            self.offerless = false;
            if let (Some(answer), Some(m)) = (
                build::sdp_body(&req.headers, &req.body),
                self.media.as_ref(),
            ) {
                if let Ok(n) = sdp::process_answer(answer, m) {
                    ev.extend(self.media_event(n));
                }
            }
        }
        if self.phase == Phase::WaitAck {
            self.phase = Phase::Established;
        }
        let st = self.up_state();
        ev.extend(self.set_state(st));
        (ev, None)
    }

    /// A request inside our dialog (§12.2.2).
    pub(in crate::sip::ua) fn on_in_dialog(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        tx: ServerTxId,
        req: &Request,
    ) -> Vec<UaEvent> {
        match req.method {
            Method::Bye => {
                let resp = build::response(req, 200, None, None);
                cx.tl.respond(now, tx, resp);
                if matches!(self.state, CallState::Ended { .. }) {
                    return Vec::new();
                }
                self.bye = None;
                self.end(200, "remote hangup", Phase::Done)
            }
            Method::Invite => self.on_reinvite(now, cx, tx, req),
            Method::Info => {
                let resp = build::response(req, 200, None, None);
                cx.tl.respond(now, tx, resp);
                self.on_info(req).into_iter().collect()
            }
            Method::Options | Method::Notify => {
                let resp = build::response(req, 200, None, None);
                cx.tl.respond(now, tx, resp);
                Vec::new()
            }
            _ => {
                let mut resp = build::response(req, 405, None, None);
                resp.headers.push(HeaderName::Allow, build::ALLOW);
                cx.tl.respond(now, tx, resp);
                Vec::new()
            }
        }
    }

    /// A re-INVITE from the peer (§14.2): 491 while ours is pending, else answer its offer with
    /// our current direction; the peer holds us with sendonly/inactive (RFC 3264 §8.4).
    fn on_reinvite(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        tx: ServerTxId,
        req: &Request,
    ) -> Vec<UaEvent> {
        let mut ev = Vec::new();
        if self.reinvite.is_some() || self.ok_retx.is_some() || self.phase != Phase::Established {
            let resp = build::response(req, 491, None, None);
            cx.tl.respond(now, tx, resp);
            return ev;
        }
        if let Some(e) = cx.dialogs.get_mut(self.dialog) {
            e.dialog.refresh_target(&req.headers);
        }
        let Some(mut media) = self.media.clone() else {
            let resp = build::response(req, 500, None, None);
            cx.tl.respond(now, tx, resp);
            return ev;
        };
        media.direction = self.wanted_direction();
        self.sdp_version += 1;
        match build::sdp_body(&req.headers, &req.body) {
            Some(offer) => match sdp::answer(offer, &media, self.sdp_id, self.sdp_version) {
                Ok((answer, n)) => {
                    self.remote_hold = offer_holds(offer);
                    self.send_2xx(now, cx, tx, req, &answer);
                    ev.extend(self.media_event(n));
                    let st = self.up_state();
                    ev.extend(self.set_state(st));
                }
                Err(_) => {
                    let resp = build::response(req, 488, None, None);
                    cx.tl.respond(now, tx, resp);
                }
            },
            None => match sdp::create_offer(&media, self.sdp_id, self.sdp_version) {
                Ok(offer) => {
                    self.offerless = true;
                    self.send_2xx(now, cx, tx, req, &offer);
                }
                Err(_) => {
                    let resp = build::response(req, 500, None, None);
                    cx.tl.respond(now, tx, resp);
                }
            },
        }
        ev
    }
}

/// Whether an offer puts us on hold: its audio stream is `sendonly` or `inactive` (RFC 3264
/// §8.4), or its connection address is 0.0.0.0 (RFC 2543 style hold).
pub(super) fn offer_holds(offer: &str) -> bool {
    offer.lines().any(|l| {
        let l = l.trim();
        l == "a=sendonly" || l == "a=inactive" || l.starts_with("c=IN IP4 0.0.0.0")
    })
}
