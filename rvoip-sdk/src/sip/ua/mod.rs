//! The user agent core (RFC 3261 §8, §10, §12–§15), sans-IO: registrations with digest auth,
//! INVITE sessions (outgoing, incoming, CANCEL, re-INVITE hold/resume, BYE) and instant
//! messages (RFC 3428) over one [`TransactionLayer`].
//!
//! Time and I/O are inputs and outputs, as for every protocol core of this crate: datagrams go in
//! through [`UserAgent::handle_datagram`], timers through [`UserAgent::handle_timeout`]; bytes to
//! send come out of [`UserAgent::poll_transmit`] and [`UaEvent`]s out of
//! [`UserAgent::poll_event`]. The caller (the tokio driver of `crate::api`) resolves names,
//! binds media ports and tells the core which local address faces each peer: the core never
//! touches a socket or the clock.
//!
//! Media itself is not here: the core says when a call's audio stream starts, changes (hold,
//! resume, new codec) and stops ([`UaEvent::MediaStart`], [`UaEvent::MediaUpdate`],
//! [`UaEvent::MediaStop`]) with the result of the SDP offer/answer (RFC 3264).

// Nested `if let`s instead of let-chains: the MSRV is 1.85.
#![allow(clippy::collapsible_if)]

pub mod build;
mod call;
mod dialogs;
mod incoming;
mod message;
mod publish;
mod refer;
mod register;
mod subscribe;
mod types;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::sip::msg::{HeaderName, Message, Method, Request, Response, error_response};
use crate::sip::transaction::{
    ClientTxId, ServerTxId, TransactionLayer, Transmit, Transport, TxEvent,
};

pub use build::Credentials;
use call::{Call, Cx};
use dialogs::Dialogs;

/// The [`Cx`] of a user agent: its transaction layer and dialog table, borrowed apart from its
/// calls.
macro_rules! cx {
    ($s:ident) => {
        &mut Cx {
            tl: &mut $s.tl,
            dialogs: &mut $s.dialogs,
        }
    };
}
pub(crate) use cx;
pub use message::MAX_MESSAGE_BODY;
use register::Registration;
pub use types::{
    AccountConfig, AccountId, CallId, CallState, DtmfMode, EventPackage, MessageId, NextHop,
    RegistrationState, SubscriptionId, SubscriptionState, TransferId, UaConfig, UaError, UaEvent,
};

/// Who owns a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Register(u64),
    Invite(u64),
    /// In-dialog request (BYE, re-INVITE) or CANCEL of a call.
    InDialog(u64),
    /// A MESSAGE outside a dialog (RFC 3428).
    Message(u64),
    /// A REFER we sent or a NOTIFY of a REFER we accepted (RFC 3515).
    Refer(u64),
    /// A SUBSCRIBE of one of our subscriptions (RFC 6665).
    Subscribe(u64),
    /// A PUBLISH of an account's presence (RFC 3903), by account id.
    Publish(u64),
}

/// The user agent core.
pub struct UserAgent {
    cfg: UaConfig,
    tl: TransactionLayer,
    accounts: HashMap<u64, Registration>,
    calls: HashMap<u64, Call>,
    /// Dialogs and their usages (RFC 5057).
    dialogs: Dialogs,
    /// MESSAGEs waiting for their final response.
    messages: HashMap<u64, message::Outgoing>,
    /// REFER usages (RFC 3515), both roles.
    refers: HashMap<u64, refer::Refer>,
    /// Our subscriptions (RFC 6665).
    subs: HashMap<u64, subscribe::Subscription>,
    /// Presence publications, by account (RFC 3903).
    publications: HashMap<u64, publish::Publication>,
    /// Incoming calls that replace another (RFC 3891): new call → replaced call.
    replacing: HashMap<u64, u64>,
    /// How many events at the front of `events` the usages have already looked at.
    watched: usize,
    owners: HashMap<ClientTxId, Owner>,
    next_id: u64,
    events: VecDeque<UaEvent>,
}

impl UserAgent {
    /// A user agent with no accounts and no calls.
    pub fn new(cfg: UaConfig) -> UserAgent {
        UserAgent {
            tl: TransactionLayer::new(cfg.timers),
            cfg,
            accounts: HashMap::new(),
            calls: HashMap::new(),
            dialogs: Dialogs::default(),
            messages: HashMap::new(),
            refers: HashMap::new(),
            subs: HashMap::new(),
            publications: HashMap::new(),
            replacing: HashMap::new(),
            watched: 0,
            owners: HashMap::new(),
            next_id: 1,
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &UaConfig {
        &self.cfg
    }

    fn alloc(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Adds an account (not registered yet: call [`UserAgent::register`]).
    pub fn add_account(&mut self, cfg: AccountConfig) -> AccountId {
        let id = self.alloc();
        let backoff = (self.cfg.register_retry_min, self.cfg.register_retry_max);
        self.accounts
            .insert(id, Registration::new(id, cfg, backoff));
        AccountId(id)
    }

    /// Sends a REGISTER for the account (§10.2) and keeps it refreshed before expiry. After a
    /// transport error, timeout or 503 it is sent at once to the account's next destination
    /// ([`AccountConfig::alternates`], RFC 3263 §4.3); after any other failure, or when no
    /// destination is left, it retries with exponential backoff. Errors: [`UaError::NotFound`].
    pub fn register(&mut self, now: Instant, account: AccountId) -> Result<(), UaError> {
        let reg = self.accounts.get_mut(&account.0).ok_or(UaError::NotFound)?;
        reg.want = true;
        reg.attempt = 0;
        let ev = reg.send(now, &mut self.tl, &mut self.owners, account.0, false);
        self.events.extend(ev);
        Ok(())
    }

    /// Removes the account's binding (REGISTER with `Expires: 0`, §10.2.2) and stops refreshing.
    /// Errors: [`UaError::NotFound`].
    pub fn unregister(&mut self, now: Instant, account: AccountId) -> Result<(), UaError> {
        let reg = self.accounts.get_mut(&account.0).ok_or(UaError::NotFound)?;
        reg.want = false;
        reg.next_at = None;
        let ev = reg.send(now, &mut self.tl, &mut self.owners, account.0, true);
        self.events.extend(ev);
        Ok(())
    }

    /// Unregisters (if registered) and forgets the account. Its calls go on without it.
    /// Errors: [`UaError::NotFound`].
    pub fn remove_account(&mut self, now: Instant, account: AccountId) -> Result<(), UaError> {
        let reg = self.accounts.get(&account.0).ok_or(UaError::NotFound)?;
        if reg.is_bound() {
            self.unregister(now, account)?;
        }
        self.accounts.remove(&account.0);
        Ok(())
    }

    /// An account's registration state. Errors: [`UaError::NotFound`].
    pub fn registration_state(&self, account: AccountId) -> Result<RegistrationState, UaError> {
        self.accounts
            .get(&account.0)
            .map(|r| r.state.clone())
            .ok_or(UaError::NotFound)
    }

    /// An account's settings. Errors: [`UaError::NotFound`].
    pub fn account_config(&self, account: AccountId) -> Result<&AccountConfig, UaError> {
        self.accounts
            .get(&account.0)
            .map(|r| &r.cfg)
            .ok_or(UaError::NotFound)
    }

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
    fn live(&self, call: CallId) -> Result<&Call, UaError> {
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

    /// Number of dialogs (RFC 3261 §12) the user agent holds: a call's, and those kept alive by
    /// a subscription after the call ended (RFC 5057 §5).
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// Feeds one received datagram or stream frame. `local` is our address that faces `source`
    /// (IP and the port it arrived on), used in the Contact of responses. Unparseable requests
    /// get a 400-class answer where possible (§8.2, RFC 4475), anything else is dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        data: Bytes,
        source: SocketAddr,
        transport: Transport,
        local: SocketAddr,
    ) {
        match Message::parse(data.clone(), &self.cfg.limits) {
            Ok(msg) => {
                self.tl.handle_message(now, msg, source, transport);
                self.drain_tx_events(now, local);
            }
            Err(e) => {
                if let Some(resp) = error_response(&data, &e) {
                    self.tl.send_stateless(source, transport, resp.to_bytes());
                }
            }
        }
    }

    /// Runs due timers: transaction timers, registration refreshes and retries, 2xx
    /// retransmissions.
    /// The driver could not open (or lost) the connection to `dest` over `transport`: requests
    /// waiting on it fail at once with a synthesized 503 (RFC 3261 §8.1.3.1) instead of after
    /// Timer B or F.
    /// `reason` (e.g. the certificate error) becomes the reason phrase of the 503.
    pub fn connection_failed(
        &mut self,
        now: Instant,
        dest: SocketAddr,
        transport: Transport,
        reason: &str,
    ) {
        if self.tl.connection_failed(dest, transport, reason) > 0 {
            self.drain_tx_events_opt(now, None);
        }
    }

    /// Runs due timers (transactions, registration refresh, calls).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tl.handle_timeout(now);
        let ids: Vec<u64> = self.accounts.keys().copied().collect();
        for id in ids {
            if let Some(reg) = self.accounts.get_mut(&id) {
                if reg.next_at.is_some_and(|t| t <= now) {
                    reg.next_at = None;
                    let ev = reg.send(now, &mut self.tl, &mut self.owners, id, false);
                    self.events.extend(ev);
                }
            }
        }
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.calls.get_mut(&id) {
                let (ev, tx) = c.handle_timeout(now, cx!(self));
                if let Some(tx) = tx {
                    self.owners.insert(tx, Owner::InDialog(id));
                }
                self.events.extend(ev);
            }
        }
        self.refer_timeouts(now);
        self.subscription_timeouts(now);
        self.publication_timeouts(now);
        // Transaction timeouts surface as events.
        let local = None;
        self.drain_tx_events_opt(now, local);
        self.finish(now);
    }

    /// The earliest instant [`UserAgent::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.tl.poll_timeout();
        let mut fold = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        for r in self.accounts.values() {
            fold(r.next_at);
        }
        for c in self.calls.values() {
            fold(c.poll_timeout());
        }
        fold(self.refer_poll_timeout());
        fold(self.subscription_poll_timeout());
        fold(self.publication_poll_timeout());
        t
    }

    /// The next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tl.poll_transmit()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        let ev = self.events.pop_front();
        self.watched = self.watched.saturating_sub(usize::from(ev.is_some()));
        ev
    }

    fn drain_tx_events(&mut self, now: Instant, local: SocketAddr) {
        self.drain_tx_events_opt(now, Some(local));
        self.finish(now);
    }

    /// After every input: lets the usages react to the new events (transfer progress, a
    /// replacing call that came up), then forgets ended calls.
    fn finish(&mut self, now: Instant) {
        while self.watched < self.events.len() {
            let seen = match &self.events[self.watched] {
                UaEvent::CallState { call, state } => Some((call.0, state.clone())),
                _ => None,
            };
            self.watched += 1;
            if let Some((call, state)) = seen {
                self.watch_transfer(now, call, &state);
                self.watch_replacing(now, call, &state);
            }
        }
        self.reap();
    }

    /// A call that replaces another (RFC 3891 §3) is up: the replaced call ends (BYE).
    fn watch_replacing(&mut self, now: Instant, call: u64, state: &CallState) {
        match state {
            CallState::Connected | CallState::Held { .. } => {
                if let Some(old) = self.replacing.remove(&call) {
                    if self.live(CallId(old)).is_ok() {
                        let _ = self.hangup(now, CallId(old));
                    }
                }
            }
            CallState::Ended { .. } => {
                self.replacing.remove(&call);
            }
            _ => {}
        }
    }

    fn drain_tx_events_opt(&mut self, now: Instant, local: Option<SocketAddr>) {
        while let Some(ev) = self.tl.poll_event() {
            match ev {
                TxEvent::Request {
                    tx,
                    req,
                    source,
                    transport,
                } => {
                    let local = local.unwrap_or_else(|| {
                        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), 5060)
                    });
                    self.on_request(now, tx, req, source, transport, local);
                }
                TxEvent::Response { tx, resp } => self.on_response(now, tx, resp),
                TxEvent::Timeout { tx } => {
                    // The request may be gone; then synthesize nothing but still tell the owner.
                    let req = self.tl.client_request(tx).cloned();
                    self.on_timeout(now, tx, req, 408, "Request Timeout");
                }
                TxEvent::TransportError {
                    tx,
                    request,
                    reason,
                } => {
                    self.on_timeout(now, tx, request.map(|r| *r), 503, &reason);
                }
                TxEvent::StrayResponse {
                    resp,
                    source,
                    transport,
                } => {
                    // A 2xx retransmission for an INVITE whose transaction is gone: ACK it again
                    // if it belongs to one of our dialogs (§13.2.2.4).
                    if (200..300).contains(&resp.status) {
                        let call = self
                            .dialogs
                            .find(&resp.headers, false)
                            .and_then(|k| self.dialogs.get(Some(k)))
                            .and_then(|e| e.invite);
                        if let Some(c) = call.and_then(|id| self.calls.get_mut(&id)) {
                            c.ack_2xx(now, cx!(self), &resp, Some((source, transport)));
                        } else if let Some(c) =
                            self.calls.values_mut().find(|c| c.sent_invite_of(&resp))
                        {
                            // A 2xx of another fork of one of our INVITEs (§13.2.2.4).
                            c.ack_and_bye_fork(now, cx!(self), &resp);
                        }
                    }
                }
                TxEvent::AckTimeout { .. } => {}
            }
        }
    }

    /// A client transaction ended without a final response: Timer B/F (`status` 408) or a
    /// transport error (503, RFC 3261 §8.1.3.1). The owner sees a synthesized response whose
    /// reason phrase is `reason`.
    fn on_timeout(
        &mut self,
        now: Instant,
        tx: ClientTxId,
        req: Option<Request>,
        status: u16,
        reason: &str,
    ) {
        let Some(owner) = self.owners.remove(&tx) else {
            return;
        };
        let resp = req.map(|r| {
            let mut resp = Response::for_request(&r, status);
            resp.reason = reason.to_string().into();
            resp
        });
        match owner {
            Owner::Register(id) => {
                if let Some(reg) = self.accounts.get_mut(&id) {
                    let ev = reg.on_error(now, &mut self.tl, &mut self.owners, id, status, reason);
                    self.events.extend(ev);
                }
            }
            Owner::Invite(id) | Owner::InDialog(id) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    let ev = c.on_timeout(now, cx!(self), tx, resp);
                    self.events.extend(ev);
                }
            }
            Owner::Message(id) => match resp {
                Some(r) => self.on_message_response(now, id, &r),
                None => self.on_message_failure(id, status, reason),
            },
            Owner::Refer(id) => match resp {
                Some(r) => self.on_refer_response(now, id, &r),
                None => self.on_refer_failure(id, status, reason),
            },
            Owner::Subscribe(id) => {
                self.on_subscribe_response(now, id, resp.as_ref(), status, reason)
            }
            Owner::Publish(a) => self.on_publish_response(now, a, resp.as_ref(), status, reason),
        }
    }

    fn on_response(&mut self, now: Instant, tx: ClientTxId, resp: Response) {
        let Some(owner) = self.owners.get(&tx).copied() else {
            return;
        };
        if resp.status >= 200 && !(owner_is_invite(owner) && resp.status < 300) {
            self.owners.remove(&tx);
        }
        match owner {
            Owner::Register(id) => {
                if let Some(reg) = self.accounts.get_mut(&id) {
                    let ev = reg.on_response(now, &mut self.tl, &mut self.owners, id, tx, &resp);
                    self.events.extend(ev);
                }
            }
            Owner::Invite(id) | Owner::InDialog(id) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    let (ev, new_tx) = c.on_response(now, cx!(self), tx, &resp);
                    if let Some(t) = new_tx {
                        self.owners.insert(t, owner_for_new(owner, id));
                    }
                    self.events.extend(ev);
                }
            }
            Owner::Message(id) => self.on_message_response(now, id, &resp),
            Owner::Refer(id) => self.on_refer_response(now, id, &resp),
            Owner::Subscribe(id) => {
                let reason = resp.reason.to_string();
                self.on_subscribe_response(now, id, Some(&resp), resp.status, &reason)
            }
            Owner::Publish(a) => {
                let reason = resp.reason.to_string();
                self.on_publish_response(now, a, Some(&resp), resp.status, &reason)
            }
        }
    }

    /// Forgets ended calls (after their MediaStop / Ended events went out) and their transactions'
    /// owners.
    fn reap(&mut self) {
        let ended: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.is_finished())
            .map(|(id, _)| *id)
            .collect();
        if ended.is_empty() {
            return;
        }
        for id in &ended {
            if let Some(c) = self.calls.remove(id) {
                self.dialogs.drop_invite(c.dialog);
            }
        }
        self.owners.retain(|_, o| match o {
            Owner::Invite(id) | Owner::InDialog(id) => !ended.contains(id),
            Owner::Register(_)
            | Owner::Message(_)
            | Owner::Refer(_)
            | Owner::Subscribe(_)
            | Owner::Publish(_) => true,
        });
    }
}

fn owner_is_invite(o: Owner) -> bool {
    matches!(o, Owner::Invite(_))
}

fn owner_for_new(o: Owner, id: u64) -> Owner {
    match o {
        Owner::Invite(_) => Owner::Invite(id),
        _ => Owner::InDialog(id),
    }
}

#[cfg(test)]
mod tests;
