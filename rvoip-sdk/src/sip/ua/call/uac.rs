//! Requests a call sends and the responses to them: the initial INVITE (§13.2.2), CANCEL (§9.1),
//! re-INVITE (§14.1), BYE (§15.1.1), digest retries (§22), and the call's own timers.

use std::time::Instant;

use super::{Call, Cx, Phase, build};
use crate::sdp::{self, Direction};
use crate::sip::dialog::{Dialog, DialogState};
use crate::sip::msg::{HeaderName, Method, Response, reason_phrase};
use crate::sip::transaction::ClientTxId;
use crate::sip::ua::dialogs::PeerPath;
use crate::sip::ua::{CallState, UaError, UaEvent};

impl Call {
    /// A response to one of our requests. Returns events and a new client transaction when a
    /// challenged request was re-sent with credentials.
    pub(in crate::sip::ua) fn on_response(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        tx: ClientTxId,
        resp: &Response,
    ) -> (Vec<UaEvent>, Option<ClientTxId>) {
        if Some(tx) == self.invite_tx {
            return self.on_invite_response(now, cx, resp);
        }
        if self.is_info(tx) {
            return (Vec::new(), self.on_info_response(now, cx, Some(resp)));
        }
        if self.reinvite.as_ref().is_some_and(|(t, _, _)| *t == tx) {
            return self.on_reinvite_response(now, cx, resp);
        }
        if self.bye.as_ref().is_some_and(|(t, _)| *t == tx) && resp.status >= 200 {
            if let Some(new_tx) =
                self.retry_with_auth(now, cx, resp, |c| c.bye.as_ref().map(|b| &b.1))
            {
                if let Some(b) = self.bye.as_mut() {
                    b.0 = new_tx.0;
                    b.1 = new_tx.1;
                    return (Vec::new(), Some(b.0));
                }
            }
            self.bye = None;
            self.phase = Phase::Done;
        }
        (Vec::new(), None)
    }

    /// Re-sends a challenged request with credentials (§22.2); `None` if not challenged, no
    /// credentials, or the credentials were already refused.
    pub(super) fn retry_with_auth(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        resp: &Response,
        pick: impl Fn(&Call) -> Option<&crate::sip::msg::Request>,
    ) -> Option<(ClientTxId, crate::sip::msg::Request)> {
        if resp.status != 401 && resp.status != 407 {
            return None;
        }
        let creds = self.creds.clone()?;
        let req = pick(self)?;
        if build::is_rejected_credential(req, resp) {
            return None;
        }
        let mut req = build::authorize(req, resp, &creds, self.local, self.transport)?;
        if let Some(d) = cx.dialogs.get_mut(self.dialog).map(|e| &mut e.dialog) {
            if let Ok(c) = req.headers.cseq() {
                if req.headers.to().is_ok_and(|t| t.tag().is_some()) {
                    d.local_seq = c.seq;
                }
            }
        }
        // An out-of-dialog retry keeps the To without tag.
        if req.method == Method::Invite && self.phase == Phase::Outgoing {
            req.headers.remove_all(&HeaderName::Route);
        }
        let hop = if self.phase == Phase::Outgoing {
            self.dest
        } else {
            self.next_hop(cx)
        };
        let tx = cx.tl.send_request(now, req.clone(), hop, self.transport);
        Some((tx, req))
    }

    fn on_invite_response(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        resp: &Response,
    ) -> (Vec<UaEvent>, Option<ClientTxId>) {
        let mut ev = Vec::new();
        let status = resp.status;
        if status < 200 {
            if self.phase != Phase::Outgoing {
                return (ev, None);
            }
            self.provisional = true;
            if self.cancel_pending {
                self.cancel_pending = false;
                self.send_cancel(now, cx);
            }
            if self.cancelled || status == 100 {
                return (ev, None);
            }
            let has_tag = resp.headers.to().is_ok_and(|t| t.tag().is_some());
            if has_tag && self.dialog.is_none() {
                if let Some(d) = self
                    .invite
                    .as_ref()
                    .and_then(|i| Dialog::from_uac(i, resp).ok())
                {
                    self.attach_dialog(cx, d);
                }
            }
            if let (Some(answer), Some(media)) = (
                build::sdp_body(&resp.headers, &resp.body),
                self.media.as_ref(),
            ) {
                if let Ok(n) = sdp::process_answer(answer, media) {
                    ev.extend(self.media_event(n));
                    ev.extend(self.set_state(CallState::EarlyMedia));
                    return (ev, None);
                }
            }
            if status == 180 && self.state == CallState::Calling {
                ev.extend(self.set_state(CallState::Ringing));
            }
            return (ev, None);
        }
        if (200..300).contains(&status) {
            if self.phase != Phase::Outgoing {
                // A retransmitted 2xx: ACK it again; a 2xx from another fork: ACK and BYE it in
                // its own dialog (§13.2.2.4).
                let ours = cx
                    .dialogs
                    .get(self.dialog)
                    .is_some_and(|e| e.dialog.matches(&resp.headers, false));
                if ours {
                    self.ack_2xx(now, cx, resp, None);
                } else {
                    self.ack_and_bye_fork(now, cx, resp);
                }
                return (ev, None);
            }
            let confirmed = match &self.invite {
                Some(inv) => Dialog::from_uac(inv, resp).ok(),
                None => None,
            };
            let Some(mut dialog) = confirmed else {
                // No usable To tag / Contact: cannot even ACK properly.
                ev.extend(self.end(502, "bad 2xx to INVITE", Phase::Done));
                return (ev, None);
            };
            // Keep the CSeq counter if an early dialog already advanced it.
            if let Some(early) = cx.dialogs.get(self.dialog) {
                dialog.local_seq = dialog.local_seq.max(early.dialog.local_seq);
            }
            dialog.state = DialogState::Confirmed;
            match self.dialog {
                Some(key) => cx.dialogs.replace(key, dialog),
                None => self.attach_dialog(cx, dialog),
            }
            self.phase = Phase::Established;
            self.ack_2xx(now, cx, resp, None);
            if self.cancelled {
                // The 2xx crossed our CANCEL: end the call with a BYE (§9.1, §15).
                let tx = self.send_bye(now, cx);
                let ev = self.end(487, "Request Terminated", Phase::Terminating);
                if tx.is_none() {
                    self.phase = Phase::Done;
                }
                return (ev, tx);
            }
            let answer = build::sdp_body(&resp.headers, &resp.body);
            let negotiated = match (answer, self.media.as_ref()) {
                (Some(a), Some(m)) => sdp::process_answer(a, m).map_err(|e| e.to_string()),
                _ => self
                    .negotiated
                    .clone()
                    .ok_or_else(|| "no SDP answer".to_string()),
            };
            match negotiated {
                Ok(n) => {
                    ev.extend(self.media_event(n));
                    let st = self.up_state();
                    ev.extend(self.set_state(st));
                    (ev, None)
                }
                Err(why) => {
                    tracing::info!(call = self.id, reason = %why, "unacceptable SDP answer: BYE");
                    let tx = self.send_bye(now, cx);
                    let reason = format!("no acceptable SDP answer: {why}");
                    ev.extend(self.end(488, &reason, Phase::Terminating));
                    if tx.is_none() {
                        self.phase = Phase::Done;
                    }
                    (ev, tx)
                }
            }
        } else {
            if !self.cancelled {
                if let Some((tx, req)) = self.retry_with_auth(now, cx, resp, |c| c.invite.as_ref())
                {
                    self.invite = Some(req);
                    self.invite_tx = Some(tx);
                    self.provisional = false;
                    return (ev, Some(tx));
                }
                // A 3xx, or a failure with redirect targets left to try (§8.1.3.4).
                if (300..400).contains(&status) || !self.redirect_targets.is_empty() {
                    if let Some(r) = self.follow_redirect(now, cx, resp) {
                        return r;
                    }
                }
            }
            let mut reason = if resp.reason.is_empty() {
                reason_phrase(status).to_string()
            } else {
                resp.reason.to_string()
            };
            let srtp_mandatory = self
                .media
                .as_ref()
                .is_some_and(|m| m.security.policy == sdp::SrtpPolicy::Mandatory);
            if status == 488 && srtp_mandatory {
                reason.push_str(
                    " (the peer refused our SRTP offer; this account's SRTP policy is mandatory)",
                );
            }
            ev.extend(self.end(status, &reason, Phase::Done));
            (ev, None)
        }
    }

    fn on_reinvite_response(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        resp: &Response,
    ) -> (Vec<UaEvent>, Option<ClientTxId>) {
        let mut ev = Vec::new();
        if resp.status < 200 {
            return (ev, None);
        }
        if (200..300).contains(&resp.status) {
            self.ack_2xx(now, cx, resp, None);
            let Some((_, _, hold)) = self.reinvite.take() else {
                return (ev, None);
            };
            if let Some(e) = cx.dialogs.get_mut(self.dialog) {
                e.dialog.refresh_target(&resp.headers);
            }
            let answer = build::sdp_body(&resp.headers, &resp.body);
            if let (Some(a), Some(m)) = (answer, self.media.as_ref()) {
                if let Ok(n) = sdp::process_answer(a, m) {
                    self.local_hold = hold;
                    ev.extend(self.media_event(n));
                    let st = self.up_state();
                    ev.extend(self.set_state(st));
                }
            }
            return (ev, None);
        }
        if let Some((tx, req)) =
            self.retry_with_auth(now, cx, resp, |c| c.reinvite.as_ref().map(|r| &r.1))
        {
            if let Some(r) = self.reinvite.as_mut() {
                r.0 = tx;
                r.1 = req;
            }
            return (ev, Some(tx));
        }
        // Failed re-INVITE (§14.1): the session stays as it was; 481/408 end the dialog.
        let hold = self.reinvite.take().map(|r| r.2);
        if resp.status == 491 {
            // Glare: retry after 2.1–4 s if we own the Call-ID (we sent the initial INVITE),
            // else after 0–2 s (§14.1).
            let ms = if self.invite.is_some() {
                2100 + rand::random::<u64>() % 1900
            } else {
                rand::random::<u64>() % 2000
            };
            if let Some(h) = hold {
                self.reinvite_retry = Some((now + std::time::Duration::from_millis(ms), h));
            }
        }
        if let Some(m) = self.media.as_mut() {
            m.direction = if self.local_hold {
                Direction::SendOnly
            } else {
                Direction::SendRecv
            };
        }
        if resp.status == 481 || resp.status == 408 {
            let tx = self.send_bye(now, cx);
            ev.extend(self.end(resp.status, &resp.reason, Phase::Terminating));
            if tx.is_none() {
                self.phase = Phase::Done;
            }
            return (ev, tx);
        }
        (ev, None)
    }

    /// A client transaction timed out (Timer B/F or a transport error).
    pub(in crate::sip::ua) fn on_timeout(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        tx: ClientTxId,
        resp: Option<Response>,
    ) -> Vec<UaEvent> {
        if self.is_info(tx) {
            // The peer does not answer our INFO: the keys still queued are dropped.
            self.info = None;
            self.info_queue.clear();
            return Vec::new();
        }
        if Some(tx) == self.invite_tx && self.phase == Phase::Outgoing {
            // The synthesized response says which: 408 (Timer B) or 503 (transport error,
            // RFC 3261 §8.1.3.1, with the reason, e.g. the TLS certificate error).
            let synthesized = resp
                .filter(|r| r.status == 503)
                .map(|r| (503, r.reason.to_string()));
            let (status, reason) = if self.cancelled {
                (487, "Request Terminated".to_string())
            } else {
                synthesized.unwrap_or((408, "Request Timeout".to_string()))
            };
            return self.end(status, &reason, Phase::Done);
        }
        if self.reinvite.as_ref().is_some_and(|(t, _, _)| *t == tx) {
            self.reinvite = None;
            let bye = self.send_bye(now, cx);
            let ev = self.end(408, "re-INVITE timed out", Phase::Terminating);
            if bye.is_none() {
                self.phase = Phase::Done;
            }
            return ev;
        }
        if self.bye.as_ref().is_some_and(|(t, _)| *t == tx) {
            self.bye = None;
            self.phase = Phase::Done;
        }
        Vec::new()
    }

    fn send_cancel(&mut self, now: Instant, cx: &mut Cx<'_>) {
        // §9.1: same Request-URI, Call-ID, To, From, CSeq number and top Via as the INVITE.
        let Some(inv) = &self.invite else { return };
        let mut cancel = crate::sip::msg::Request {
            method: Method::Cancel,
            uri: inv.uri.clone(),
            headers: crate::sip::msg::Headers::with_capacity(8),
            body: bytes::Bytes::new(),
        };
        for h in inv.headers.iter() {
            match h.name {
                HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::Route
                | HeaderName::MaxForwards => cancel.headers.push(h.name.clone(), h.value.clone()),
                _ => {}
            }
        }
        if let Ok(c) = inv.headers.cseq() {
            cancel
                .headers
                .push(HeaderName::CSeq, format!("{} CANCEL", c.seq));
        }
        cancel
            .headers
            .push(HeaderName::UserAgent, build::USER_AGENT);
        cx.tl.send_request(now, cancel, self.dest, self.transport);
        self.cancel_deadline = Some(now + self.t1 * 64);
    }

    pub(super) fn send_bye(&mut self, now: Instant, cx: &mut Cx<'_>) -> Option<ClientTxId> {
        let req = self.dialog_request(cx, Method::Bye, None)?;
        let hop = self.next_hop(cx);
        let tx = cx.tl.send_request(now, req.clone(), hop, self.transport);
        self.bye = Some((tx, req));
        Some(tx)
    }

    /// Ends the call from our side (see [`crate::sip::ua::UserAgent::hangup`]).
    pub(in crate::sip::ua) fn hangup(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
    ) -> Result<(Vec<UaEvent>, Option<ClientTxId>), UaError> {
        if matches!(self.state, CallState::Ended { .. }) || self.phase == Phase::Done {
            return Err(UaError::NotFound);
        }
        match self.phase {
            Phase::Outgoing => {
                if self.cancelled {
                    return Err(UaError::InvalidState("already cancelling"));
                }
                self.cancelled = true;
                if self.provisional {
                    self.send_cancel(now, cx);
                } else {
                    self.cancel_pending = true;
                    self.cancel_deadline = Some(now + self.t1 * 64);
                }
                Ok((Vec::new(), None))
            }
            Phase::Incoming => {
                let ev = self.reject(now, cx, 603)?;
                Ok((ev, None))
            }
            Phase::WaitAck => {
                // §15: no BYE before the ACK for our 2xx (or its timeout); keep retransmitting.
                let retx = self.ok_retx.take();
                let ev = self.end(200, "local hangup", Phase::Terminating);
                self.ok_retx = retx;
                self.bye_after_ack = true;
                Ok((ev, None))
            }
            Phase::Established => {
                let tx = self.send_bye(now, cx);
                let ev = self.end(200, "local hangup", Phase::Terminating);
                if tx.is_none() {
                    self.phase = Phase::Done;
                }
                Ok((ev, tx))
            }
            Phase::Terminating | Phase::Done => Err(UaError::NotFound),
        }
    }

    /// Sends a re-INVITE that holds (`a=sendonly`) or resumes (`a=sendrecv`) (RFC 3264 §8.4).
    pub(in crate::sip::ua) fn reinvite(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        hold: bool,
    ) -> Result<ClientTxId, UaError> {
        if self.phase != Phase::Established {
            return Err(UaError::InvalidState("call is not established"));
        }
        if self.reinvite.is_some() || self.ok_retx.is_some() {
            return Err(UaError::InvalidState("a re-INVITE is in progress"));
        }
        let dir = if hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let media = self
            .media
            .as_mut()
            .ok_or(UaError::InvalidState("no media"))?;
        media.direction = dir;
        self.sdp_version += 1;
        let offer = sdp::create_offer(media, self.sdp_id, self.sdp_version)?;
        let mut req = self
            .dialog_request(cx, Method::Invite, None)
            .ok_or(UaError::InvalidState("no dialog"))?;
        build::set_sdp(&mut req.headers, &mut req.body, &offer);
        let hop = self.next_hop(cx);
        let tx = cx.tl.send_request(now, req.clone(), hop, self.transport);
        self.reinvite = Some((tx, req, hold));
        Ok(tx)
    }

    /// The call's own timers: 2xx retransmission and the ACK deadline (§13.3.1.4), the CANCEL
    /// deadline.
    pub(in crate::sip::ua) fn handle_timeout(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
    ) -> (Vec<UaEvent>, Option<ClientTxId>) {
        if let Some((at, hold)) = self.reinvite_retry {
            if at <= now {
                self.reinvite_retry = None;
                if let Ok(tx) = self.reinvite(now, cx, hold) {
                    return (Vec::new(), Some(tx));
                }
            }
        }
        if self.cancel_deadline.is_some_and(|t| t <= now) {
            self.cancel_deadline = None;
            return (self.end(487, "Request Terminated", Phase::Done), None);
        }
        let Some(r) = self.ok_retx.as_mut() else {
            return (Vec::new(), None);
        };
        if r.give_up <= now {
            // No ACK: confirm and end the session with a BYE (§13.3.1.4).
            self.ok_retx = None;
            if self.bye_after_ack {
                self.bye_after_ack = false;
                let tx = self.send_bye(now, cx);
                if tx.is_none() {
                    self.phase = Phase::Done;
                }
                return (Vec::new(), tx);
            }
            if self.phase == Phase::WaitAck {
                self.phase = Phase::Established;
                let tx = self.send_bye(now, cx);
                let ev = self.end(408, "no ACK for 2xx", Phase::Terminating);
                if tx.is_none() {
                    self.phase = Phase::Done;
                }
                return (ev, tx);
            }
            return (Vec::new(), None);
        }
        if r.next <= now {
            cx.tl.respond(now, r.tx, r.resp.clone());
            r.interval = (r.interval * 2).min(self.t2);
            r.next = now + r.interval;
        }
        (Vec::new(), None)
    }

    /// Whether `resp` answers our initial INVITE (same Call-ID and From tag), whatever its To tag.
    pub(in crate::sip::ua) fn sent_invite_of(&self, resp: &Response) -> bool {
        let Some(inv) = &self.invite else {
            return false;
        };
        let tag =
            |h: &crate::sip::msg::Headers| h.from().ok().and_then(|f| f.tag().map(str::to_string));
        inv.headers.call_id().is_some()
            && inv.headers.call_id() == resp.headers.call_id()
            && tag(&inv.headers).is_some()
            && tag(&inv.headers) == tag(&resp.headers)
    }

    /// Puts the call's (first) dialog in the user agent's table as this call's INVITE usage.
    fn attach_dialog(&mut self, cx: &mut Cx<'_>, dialog: Dialog) {
        let key = cx.dialogs.insert(
            dialog,
            PeerPath {
                dest: self.dest,
                transport: self.transport,
                local: self.local,
                contact_addr: self.contact_addr,
                user: self.user.clone(),
                creds: self.creds.clone(),
            },
        );
        if let Some(e) = cx.dialogs.get_mut(Some(key)) {
            e.invite = Some(self.id);
        }
        self.dialog = Some(key);
    }

    /// A 2xx from a second fork after the call was answered (§13.2.2.4): it forms its own
    /// dialog, which we ACK and then end with a BYE; the call stays in the first dialog.
    pub(in crate::sip::ua) fn ack_and_bye_fork(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        resp: &Response,
    ) {
        let Some(invite) = self.invite.as_ref() else {
            return;
        };
        let Ok(dialog) = Dialog::from_uac(invite, resp) else {
            return;
        };
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        tracing::info!(call = self.id, "2xx from a second fork: ACK and BYE");
        let mut fork = crate::sip::ua::dialogs::DialogEntry {
            dialog,
            path: PeerPath {
                dest: self.dest,
                transport: self.transport,
                local: self.local,
                contact_addr: self.contact_addr,
                user: self.user.clone(),
                creds: None,
            },
            invite: None,
            subs: Vec::new(),
        };
        let mut ack = fork.request(Method::Ack, Some(cseq.seq));
        for h in [HeaderName::Authorization, HeaderName::ProxyAuthorization] {
            for v in invite.headers.get_all(&h) {
                ack.headers.push(h.clone(), v.clone());
            }
        }
        let hop = fork.next_hop();
        cx.tl.send_request(now, ack, hop, self.transport);
        let bye = fork.request(Method::Bye, None);
        cx.tl.send_request(now, bye, hop, self.transport);
    }
}
