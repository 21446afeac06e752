//! The user agent's call operations (RFC 3261 §13–§15 and the features on top): placing,
//! answering (also with early media, RFC 3960), redirecting and refusing calls, hold and resume
//! (RFC 3264 §8.4), hang-up, DTMF by SIP INFO, and what the app may ask about a call.

use std::net::SocketAddr;
use std::time::Instant;

use super::call::{Call, Cx};
use super::*;

impl UserAgent {
    /// Places a call (§13.2): an INVITE with our SDP offer for `media` to `dest` (the account's
    /// server when `account` is given, else the target's own address), from the account's AOR or
    /// `sip:<contact_user>@<local>`. `local` is our address facing `dest`.
    /// Errors: [`UaError::NotFound`] (account), [`UaError::Sdp`] (wildcard media address).
    #[allow(clippy::too_many_arguments)]
    pub fn make_call(
        &mut self,
        now: Instant,
        account: Option<AccountId>,
        target: crate::sip::msg::Uri,
        dest: SocketAddr,
        transport: Transport,
        local: SocketAddr,
        media: crate::sdp::LocalMedia,
    ) -> Result<CallId, UaError> {
        self.make_call_with(
            now,
            account,
            target,
            dest,
            transport,
            local,
            media,
            Vec::new(),
        )
    }

    /// [`UserAgent::make_call`] with `extra` headers on the INVITE (e.g. `Replaces`,
    /// `Referred-By` of a transfer).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn make_call_with(
        &mut self,
        now: Instant,
        account: Option<AccountId>,
        target: crate::sip::msg::Uri,
        dest: SocketAddr,
        transport: Transport,
        local: SocketAddr,
        media: crate::sdp::LocalMedia,
        extra: Vec<(HeaderName, String)>,
    ) -> Result<CallId, UaError> {
        if !target.is_sip() {
            return Err(UaError::InvalidUri(target.to_string()));
        }
        let (from, creds, user) = match account {
            Some(a) => {
                let reg = self.accounts.get(&a.0).ok_or(UaError::NotFound)?;
                let user = reg.cfg.aor.user.as_deref().unwrap_or("").to_string();
                (
                    reg.cfg.aor.to_string(),
                    Some(reg.cfg.credentials.clone()),
                    user,
                )
            }
            None => {
                let user = self.cfg.contact_user.clone();
                (build::contact_uri(&user, local, Transport::Udp), None, user)
            }
        };
        let id = self.alloc();
        let mut call = Call::new_outgoing(
            id,
            account.map(|a| a.0),
            creds,
            user,
            dest,
            transport,
            local,
            media,
        );
        call.contact_addr = self.contact_addr_for(account.map(|a| a.0), local);
        let tx = call.send_invite(now, cx!(self), &target, &from, &extra)?;
        self.owners.insert(tx, Owner::Invite(id));
        self.calls.insert(id, call);
        self.events.push_back(UaEvent::CallState {
            call: CallId(id),
            state: CallState::Calling,
        });
        self.finish(now);
        Ok(CallId(id))
    }

    /// Answers an incoming call with 200 OK and our SDP answer for `media` (§13.3.1.4); the 2xx
    /// is retransmitted until the ACK arrives. Errors: [`UaError::NotFound`],
    /// [`UaError::InvalidState`] (not an unanswered incoming call), [`UaError::Sdp`].
    pub fn answer(
        &mut self,
        now: Instant,
        call: CallId,
        media: crate::sdp::LocalMedia,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call.0).ok_or(UaError::NotFound)?;
        let ev = c.answer(now, cx!(self), media)?;
        self.events.extend(ev);
        self.finish(now);
        Ok(())
    }

    /// Early media (RFC 3960 §3): answers an unanswered incoming call's offer in a 183 Session
    /// Progress with our SDP for `media` and starts the media ([`UaEvent::MediaStart`]) before
    /// the call is answered; [`UserAgent::answer`] later sends the same SDP in its 2xx (its
    /// `media` is then not used). Errors: [`UaError::NotFound`], [`UaError::InvalidState`] (not
    /// an unanswered incoming call, an INVITE without offer, or early media already started),
    /// [`UaError::Sdp`].
    pub fn answer_early(
        &mut self,
        now: Instant,
        call: CallId,
        media: crate::sdp::LocalMedia,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call.0).ok_or(UaError::NotFound)?;
        let ev = c.answer_early(now, cx!(self), media)?;
        self.events.extend(ev);
        self.finish(now);
        Ok(())
    }

    /// Sends DTMF `digits` (`0`–`9`, `*`, `#`, `A`–`D`) by SIP INFO with
    /// `application/dtmf-relay` bodies, each key `duration_ms` long (40..=5000), one INFO
    /// transaction after the other. Errors: [`UaError::NotFound`], [`UaError::InvalidState`]
    /// (not established), [`UaError::InvalidArgument`] (another character).
    pub fn send_dtmf_info(
        &mut self,
        now: Instant,
        call: CallId,
        digits: &str,
        duration_ms: u32,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call.0).ok_or(UaError::NotFound)?;
        if let Some(tx) = c.send_info_dtmf(now, cx!(self), digits, duration_ms)? {
            self.owners.insert(tx, Owner::InDialog(call.0));
        }
        Ok(())
    }

    /// How a call sends DTMF: its account's [`AccountConfig::dtmf_mode`], RFC 4733 for calls
    /// without an account. Errors: [`UaError::NotFound`].
    pub fn call_dtmf_mode(&self, call: CallId) -> Result<DtmfMode, UaError> {
        let c = self.live(call)?;
        Ok(c.account
            .and_then(|a| self.accounts.get(&a))
            .map_or(DtmfMode::Rfc4733, |r| r.cfg.dtmf_mode))
    }

    /// Redirects an unanswered incoming call (RFC 3261 §8.3.4 style, as a phone's call
    /// forwarding does): a 3xx `status` (300..=399, usually 302) with `targets` as Contact
    /// headers, the first preferred. Errors: [`UaError::NotFound`], [`UaError::InvalidState`],
    /// [`UaError::InvalidStatus`], [`UaError::InvalidArgument`] (no target).
    pub fn redirect(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        targets: &[crate::sip::msg::Uri],
    ) -> Result<(), UaError> {
        if !(300..=399).contains(&status) {
            return Err(UaError::InvalidStatus(status));
        }
        if targets.is_empty() {
            return Err(UaError::InvalidArgument("a redirect needs a target"));
        }
        let c = self.calls.get_mut(&call.0).ok_or(UaError::NotFound)?;
        let ev = c.reject_with(now, cx!(self), status, targets)?;
        self.events.extend(ev);
        self.finish(now);
        Ok(())
    }

    /// Refuses an unanswered incoming call with a final status 300..=699 (e.g. 486 Busy Here,
    /// 603 Decline). Errors: [`UaError::NotFound`], [`UaError::InvalidState`],
    /// [`UaError::InvalidStatus`].
    pub fn reject(&mut self, now: Instant, call: CallId, status: u16) -> Result<(), UaError> {
        if !(300..=699).contains(&status) {
            return Err(UaError::InvalidStatus(status));
        }
        let c = self.calls.get_mut(&call.0).ok_or(UaError::NotFound)?;
        let ev = c.reject(now, cx!(self), status)?;
        self.events.extend(ev);
        self.finish(now);
        Ok(())
    }

    /// Ends a call whatever its state: CANCEL for an unanswered outgoing call (§9.1; deferred
    /// until a provisional response arrived), 603 Decline for an unanswered incoming one, BYE
    /// for an established one (§15). Errors: [`UaError::NotFound`] (unknown or already ended).
    pub fn hangup(&mut self, now: Instant, call: CallId) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call.0).ok_or(UaError::NotFound)?;
        let (ev, tx) = c.hangup(now, cx!(self))?;
        if let Some(tx) = tx {
            self.owners.insert(tx, Owner::InDialog(call.0));
        }
        self.events.extend(ev);
        self.finish(now);
        Ok(())
    }

    /// Puts the peer on hold (re-INVITE with `a=sendonly`, RFC 3264 §8.4) or takes it off hold
    /// (`a=sendrecv`). Errors: [`UaError::NotFound`], [`UaError::InvalidState`] (not established,
    /// or another re-INVITE is in progress).
    pub fn set_hold(&mut self, now: Instant, call: CallId, hold: bool) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call.0).ok_or(UaError::NotFound)?;
        let tx = c.reinvite(now, cx!(self), hold)?;
        self.owners.insert(tx, Owner::InDialog(call.0));
        self.finish(now);
        Ok(())
    }

    /// A call's current state. Errors: [`UaError::NotFound`].
    pub fn call_state(&self, call: CallId) -> Result<CallState, UaError> {
        self.live(call).map(|c| c.state.clone())
    }

    /// A call that has not ended (an ended call may linger while its BYE completes, but to the
    /// app it is gone).
    pub(super) fn live(&self, call: CallId) -> Result<&Call, UaError> {
        self.calls
            .get(&call.0)
            .filter(|c| !matches!(c.state, CallState::Ended { .. }))
            .ok_or(UaError::NotFound)
    }

    /// The peer's address of a call (From of an incoming call, To of an outgoing one).
    /// Errors: [`UaError::NotFound`].
    pub fn call_peer(&self, call: CallId) -> Result<String, UaError> {
        self.live(call).map(|c| c.peer.clone())
    }

    /// The remote address RTP of an incoming call's offer would come from, for choosing the
    /// local media address before answering. Errors: [`UaError::NotFound`].
    pub fn call_signalling_peer(&self, call: CallId) -> Result<(SocketAddr, SocketAddr), UaError> {
        self.live(call).map(|c| (c.dest, c.local))
    }

    /// The SRTP settings of a call's account and whether its signalling is encrypted (TLS or
    /// WSS), for building the [`crate::sdp::LocalMedia`] of an answer. Errors:
    /// [`UaError::NotFound`].
    pub fn call_srtp(&self, call: CallId) -> Result<(crate::sdp::SrtpConfig, bool), UaError> {
        self.live(call).map(|c| (c.srtp, c.transport_is_secure()))
    }

    /// Number of calls not yet ended.
    pub fn call_count(&self) -> usize {
        self.calls
            .values()
            .filter(|c| !matches!(c.state, CallState::Ended { .. }))
            .count()
    }
}
