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
mod calls;
mod dialogs;
mod flow;
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
        let mut reg = Registration::new(id, cfg, backoff);
        reg.instance = self.cfg.sip_instance.clone();
        self.accounts.insert(id, reg);
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
        if crate::sip::keepalive::is_stun(&data) {
            self.on_stun(now, &data, source);
            return;
        }
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

    /// A STUN message from `source`: the answer to an account's keep-alive (RFC 5626
    /// §4.4.2). A mapped address other than the one our Contact names means the NAT mapping
    /// changed: the account registers again with the new one.
    fn on_stun(&mut self, now: Instant, data: &[u8], source: SocketAddr) {
        let ids: Vec<u64> = self.accounts.keys().copied().collect();
        for id in ids {
            let Some(reg) = self.accounts.get_mut(&id) else {
                continue;
            };
            if reg.cfg.server != source {
                continue;
            }
            if let flow::StunOutcome::Alive(mapped) = reg.flow.on_stun(now, data) {
                if reg.want && reg.adopt_public(mapped) {
                    tracing::info!(account = id, %mapped, "NAT mapping changed: registering again");
                    let ev = reg.send(now, &mut self.tl, &mut self.owners, id, false);
                    self.events.extend(ev);
                }
                break;
            }
        }
        self.finish(now);
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
                match reg.flow.on_timeout(now, reg.cfg.transport) {
                    Some(flow::FlowAction::Send(bytes)) => {
                        self.tl
                            .send_stateless(reg.cfg.server, reg.cfg.transport, bytes.into());
                    }
                    Some(flow::FlowAction::Failed) => {
                        // RFC 5626 §4.5: a new flow, by registering again.
                        tracing::info!(account = id, server = %reg.cfg.server, "keep-alive unanswered: flow failed, registering again");
                        if reg.want {
                            let ev = reg.send(now, &mut self.tl, &mut self.owners, id, false);
                            self.events.extend(ev);
                        }
                    }
                    None => {}
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
            fold(r.flow.poll_timeout());
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
