//! The presence agent in the server core ([`crate::server::presence`]): PUBLISH (RFC 3903) of
//! `Event: presence` for a local AOR, SUBSCRIBE (RFC 6665) to a local AOR's `presence`
//! (RFC 3856) or `dialog` (RFC 4235) package, the NOTIFYs the server sends as notifier, and the
//! timers (publication and subscription expiry).
//!
//! Who may: a PUBLISH only from the AOR's own user, a SUBSCRIBE from any user of this domain,
//! both authenticated by digest (407) like INVITE and MESSAGE; with `invite_auth` off, a From
//! of this domain is believed. Anyone else gets 403. In-dialog SUBSCRIBEs (refresh,
//! un-subscription) are matched by Call-ID and both tags. Other event packages to a local AOR,
//! and everything for other domains, are proxied as before.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::server::presence::agent::{
    NotifyOutcome, Subscription, Subscriptions, TAG_PREFIX, expiry,
};
use crate::server::presence::dialogs::DialogTracker;
use crate::server::presence::store::{PublicationStore, PublishError};
use crate::server::presence::{Package, PresenceLimits};
use crate::server::proxy::CallProgress;
use crate::server::proxy::route::via_destination;
use crate::sip::presence::{self as doc, PIDF_TYPE};
use crate::sip::transaction::ClientTxId;

/// Most calls the dialog package follows at once.
const MAX_TRACKED_CALLS: usize = 10_000;

/// How often calls without progress are swept from the dialog state.
const TRACKER_SWEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// The presence agent's state in the core.
#[derive(Debug)]
pub(super) struct PresenceAgent {
    /// `presence` in the configuration.
    pub enabled: bool,
    limits: PresenceLimits,
    store: PublicationStore,
    subs: Subscriptions,
    calls: DialogTracker,
    next_sweep: Option<Instant>,
}

impl PresenceAgent {
    pub(super) fn new(cfg: &ServerConfig) -> PresenceAgent {
        let limits = PresenceLimits::from_server(cfg);
        PresenceAgent {
            enabled: cfg.presence,
            limits,
            store: PublicationStore::new(limits.max_publications),
            subs: Subscriptions::default(),
            calls: DialogTracker::new(MAX_TRACKED_CALLS),
            next_sweep: None,
        }
    }
}

/// Where responses and in-dialog requests to the sender of `req` go: over a connection the
/// connection it came on, over UDP its top Via (received/rport).
fn reply_flow(req: &Request, source: SocketAddr, transport: Transport) -> (SocketAddr, Transport) {
    if transport.is_reliable() {
        return (source, transport);
    }
    req.headers
        .top_via()
        .ok()
        .and_then(|v| via_destination(&v))
        .unwrap_or((source, transport))
}

impl ServerCore {
    /// Live presence publications (all AORs).
    pub fn presence_publications(&self) -> usize {
        self.presence.store.len()
    }

    /// Live presence and dialog subscriptions.
    pub fn presence_subscriptions(&self) -> usize {
        self.presence.subs.len()
    }

    /// An out-of-dialog request for local user `req.uri.user` (after digest authentication,
    /// `authenticated`): a PUBLISH, or a SUBSCRIBE to the presence or dialog package, is
    /// answered by the agent (true); anything else is left to the proxy (false).
    pub(super) fn presence_request(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
        authenticated: bool,
    ) -> bool {
        if !self.presence.enabled {
            return false;
        }
        let package = req
            .headers
            .get(&HeaderName::Event)
            .and_then(|e| Package::from_event(e));
        match (&req.method, package) {
            (Method::Publish, _) => self.publish(now, tx, req, authenticated),
            (Method::Subscribe, Some(p)) => {
                self.subscribe(now, tx, req, source, transport, p, authenticated)
            }
            _ => return false,
        }
        true
    }

    /// The local user `req` comes from, when it may use the presence agent: authenticated, or
    /// any From of this domain while requests are not authenticated.
    fn presence_sender(&self, req: &Request, authenticated: bool) -> Option<String> {
        if !authenticated && self.invite_auth_of(req) {
            return None;
        }
        self.local_from_user(req).map(|u| u.to_string())
    }

    /// Answers `req` 2xx (with a To tag) on its server transaction, statefully so that its
    /// retransmissions are absorbed (a retransmitted SUBSCRIBE must not make a second
    /// subscription).
    fn presence_ok(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        to_tag: Option<&str>,
        extra: Vec<(HeaderName, String)>,
    ) {
        let mut resp = Response::for_request(req, 200);
        let tagged = req.headers.to().map(|t| t.tag().is_some()).unwrap_or(true);
        if !tagged {
            let tag = to_tag.map_or_else(|| self.replier.new_tag(), str::to_string);
            if let Some(to) = req.headers.get(&HeaderName::To) {
                resp.headers.set(HeaderName::To, format!("{to};tag={tag}"));
            }
        }
        if req.method == Method::Subscribe {
            // The UAS copies the Record-Route into its 2xx (RFC 3261 §12.1.1).
            for rr in req.headers.get_all(&HeaderName::RecordRoute) {
                resp.headers.push(HeaderName::RecordRoute, rr.clone());
            }
        }
        for (n, v) in extra {
            resp.headers.push(n, v);
        }
        self.tl.respond(now, tx, resp);
    }

    /// PUBLISH (RFC 3903 §6) for a local AOR.
    fn publish(&mut self, now: Instant, tx: ServerTxId, req: &Request, authenticated: bool) {
        let aor = self.request_key(req);
        if self.presence_sender(req, authenticated).as_deref() != Some(aor.as_str()) {
            // Only the AOR's own user publishes its state.
            return self.reply(now, tx, req, 403, vec![]);
        }
        if !self.user_known(&aor) {
            return self.reply(now, tx, req, 404, vec![]);
        }
        let event = req.headers.get(&HeaderName::Event);
        if event.and_then(|e| Package::from_event(e)) != Some(Package::Presence) {
            let allow = vec![(HeaderName::AllowEvents, "presence".to_string())];
            return self.reply(now, tx, req, 489, allow);
        }
        if req.body.len() > self.presence.limits.max_body_bytes {
            return self.reply(now, tx, req, 413, vec![]);
        }
        let document = if req.body.is_empty() {
            None
        } else {
            let pidf = req
                .headers
                .content_type()
                .and_then(|c| c.split(';').next())
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(PIDF_TYPE));
            if !pidf {
                let accept = vec![(HeaderName::Accept, PIDF_TYPE.to_string())];
                return self.reply(now, tx, req, 415, accept);
            }
            if doc::parse_pidf(&req.body).is_none() {
                return self.reply(now, tx, req, 400, vec![]);
            }
            Some(req.body.clone())
        };
        let expires = match req.headers.expires() {
            Ok(e) => self.presence.limits.grant(e),
            Err(_) => return self.reply(now, tx, req, 400, vec![]),
        };
        let expires = match expires {
            Ok(e) => e,
            Err(min) => {
                let h = vec![(HeaderName::MinExpires, min.to_string())];
                return self.reply(now, tx, req, 423, h);
            }
        };
        let if_match = req.headers.get(&HeaderName::SipIfMatch).map(|v| v.trim());
        let before = self.presence.store.current(now, &aor).cloned();
        match self
            .presence
            .store
            .publish(now, &aor, if_match, document, expires)
        {
            Ok(p) => {
                let extra = vec![
                    (HeaderName::SipETag, p.etag),
                    (HeaderName::Expires, p.expires_s.to_string()),
                ];
                self.presence_ok(now, tx, req, None, extra);
            }
            Err(e) => {
                let status = match e {
                    PublishError::UnknownTag => 412,
                    PublishError::TooMany => 403,
                    PublishError::NoDocument => 400,
                };
                tracing::debug!(%aor, error = %e, status, "PUBLISH refused");
                return self.reply(now, tx, req, status, vec![]);
            }
        }
        if self.presence.store.current(now, &aor) != before.as_ref() {
            self.notify_watchers(now, &aor, Package::Presence);
        }
    }

    /// An initial SUBSCRIBE (RFC 6665 §4.2.1) to local user `req.uri.user`'s `package`.
    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
        package: Package,
        authenticated: bool,
    ) {
        let aor = self.request_key(req);
        let Some(subscriber) = self.presence_sender(req, authenticated) else {
            return self.reply(now, tx, req, 403, vec![]);
        };
        if !self.user_known(&aor) {
            return self.reply(now, tx, req, 404, vec![]);
        }
        let accepts: Vec<&ByteString> = req.headers.get_all(&HeaderName::Accept).collect();
        let acceptable = accepts.is_empty()
            || accepts.iter().flat_map(|a| a.split(',')).any(|t| {
                let t = t.split(';').next().unwrap_or("").trim();
                t.eq_ignore_ascii_case(package.content_type()) || t == "*/*"
            });
        if !acceptable {
            let accept = vec![(HeaderName::Accept, package.content_type().to_string())];
            return self.reply(now, tx, req, 406, accept);
        }
        let expires = match req.headers.expires().map(|e| self.presence.limits.grant(e)) {
            Ok(Ok(e)) => e,
            Ok(Err(min)) => {
                let h = vec![(HeaderName::MinExpires, min.to_string())];
                return self.reply(now, tx, req, 423, h);
            }
            Err(_) => return self.reply(now, tx, req, 400, vec![]),
        };
        let limits = self.presence.limits;
        if expires > 0 {
            if self.presence.subs.len() >= limits.max_subscriptions {
                tracing::info!(%subscriber, "SUBSCRIBE refused: subscription limit");
                return self.reply_overloaded(now, tx, req);
            }
            if self.presence.subs.count_for(&subscriber) >= limits.max_subscriptions_per_user {
                tracing::info!(%subscriber, "SUBSCRIBE refused: per-user subscription limit");
                return self.reply(now, tx, req, 403, vec![]);
            }
        }
        let Some(i) = self.local.interface(transport) else {
            return self.reply(now, tx, req, 500, vec![]);
        };
        let param = match transport {
            Transport::Udp => String::new(),
            t => format!(";transport={}", t.as_str()),
        };
        let contact = format!(
            "<sip:{}@{}:{}{param}>",
            self.key_parts(&aor).0,
            i.host,
            i.port
        );
        let tag = format!("{TAG_PREFIX}{}", self.replier.new_tag());
        let Some(sub) = Subscription::new(
            package,
            aor,
            subscriber,
            req,
            tag.clone(),
            contact.clone(),
            reply_flow(req, source, transport),
            expiry(now, expires),
        ) else {
            // No From tag, Contact or Event to form the dialog with.
            return self.reply(now, tx, req, 400, vec![]);
        };
        let extra = vec![
            (HeaderName::Expires, expires.to_string()),
            (HeaderName::Contact, contact),
        ];
        self.presence_ok(now, tx, req, Some(&tag), extra);
        let id = self.presence.subs.insert(sub);
        if expires == 0 {
            // A fetch (RFC 6665 §4.4.3): the state once, and the subscription is over.
            return self.end_subscription(now, id);
        }
        self.send_notify(now, id);
    }

    /// A request in one of the agent's subscription dialogs: handled
    /// here when its To tag is one of ours (true). A SUBSCRIBE refreshes the subscription (200
    /// and a NOTIFY) or, with `Expires: 0`, ends it (200 and a final NOTIFY); a dialog we do
    /// not know gets 481 (RFC 6665 §4.2.1.2), any other method 405.
    pub(super) fn presence_in_dialog(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> bool {
        if !self.presence.enabled {
            return false;
        }
        // Only a To tag of ours, found by the header scan (other requests' To is not parsed).
        let Some(local_tag) = req.headers.to_tag().filter(|t| t.starts_with(TAG_PREFIX)) else {
            return false;
        };
        if req.headers.get(&HeaderName::Route).is_some() || !self.local.is_local_uri(&req.uri) {
            return false;
        }
        let call_id = req.headers.call_id().map(|c| c.to_string());
        let remote_tag = req
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_string));
        let id = match (call_id, remote_tag) {
            (Some(c), Some(r)) => self.presence.subs.find(&c, local_tag, &r),
            _ => None,
        };
        let Some(id) = id else {
            self.reply(now, tx, req, 481, vec![]);
            return true;
        };
        if req.method != Method::Subscribe {
            let allow = vec![(HeaderName::Allow, "SUBSCRIBE".to_string())];
            self.reply(now, tx, req, 405, allow);
            return true;
        }
        let expires = match req.headers.expires().map(|e| self.presence.limits.grant(e)) {
            Ok(Ok(e)) => e,
            Ok(Err(min)) => {
                let h = vec![(HeaderName::MinExpires, min.to_string())];
                self.reply(now, tx, req, 423, h);
                return true;
            }
            Err(_) => {
                self.reply(now, tx, req, 400, vec![]);
                return true;
            }
        };
        let contact = self
            .presence
            .subs
            .get(id)
            .map(|s| s.contact.clone())
            .unwrap_or_default();
        let extra = vec![
            (HeaderName::Expires, expires.to_string()),
            (HeaderName::Contact, contact),
        ];
        self.presence_ok(now, tx, req, None, extra);
        let flow = reply_flow(req, source, transport);
        self.presence.subs.refresh(id, expiry(now, expires), flow);
        if expires == 0 {
            self.end_subscription(now, id);
        } else {
            self.send_notify(now, id);
        }
        true
    }

    /// The document subscription `id` is to get now, with its Content-Type's package.
    fn document(&mut self, now: Instant, id: u64) -> Option<Bytes> {
        let aor = self.presence.subs.get_mut(id)?.aor.clone();
        let entity = self.key_uri(&aor);
        let s = self.presence.subs.get_mut(id)?;
        Some(match s.package {
            Package::Presence => match self.presence.store.current(now, &s.aor) {
                Some(d) => d.clone(),
                // Never published (or expired): offline (RFC 3863 basic closed).
                None => Bytes::from(doc::pidf(&entity, false, None, None)),
            },
            Package::Dialog => {
                let version = s.version.map_or(0, |v| v + 1);
                s.version = Some(version);
                let entries = self.presence.calls.entries(&s.aor);
                Bytes::from(doc::dialog_info(&entity, version, &entries))
            }
        })
    }

    /// Sends subscription `id` a NOTIFY with the current state (`active;expires=N`), or, when
    /// one is in flight, sends it after that one's answer.
    fn send_notify(&mut self, now: Instant, id: u64) {
        if !self.presence.subs.may_send(id) {
            return;
        }
        let Some(body) = self.document(now, id) else {
            return;
        };
        let Some(s) = self.presence.subs.get_mut(id) else {
            return;
        };
        let state = format!("active;expires={}", s.remaining_s(now));
        let dest = s.dest;
        let Some(req) = s.notify(&self.local, &state, body) else {
            return;
        };
        let ctid = self.tl.send_request(now, req, dest.0, dest.1);
        self.presence.subs.sent(id, ctid);
    }

    /// Ends subscription `id` with a final NOTIFY (`terminated;reason=timeout`, RFC 6665
    /// §4.2.2) carrying the current state, and forgets it.
    fn end_subscription(&mut self, now: Instant, id: u64) {
        let body = self.document(now, id);
        let Some(mut s) = self.presence.subs.remove(id) else {
            return;
        };
        let Some(req) = body.and_then(|b| s.notify(&self.local, "terminated;reason=timeout", b))
        else {
            return;
        };
        self.tl.send_request(now, req, s.dest.0, s.dest.1);
    }

    /// NOTIFYs to every subscriber of `aor`'s `package`.
    fn notify_watchers(&mut self, now: Instant, aor: &str, package: Package) {
        for id in self.presence.subs.watchers(aor, package) {
            self.send_notify(now, id);
        }
    }

    /// The answer to client transaction `tx`, if it is one of our NOTIFYs (true): 481, 408 or
    /// no answer ends the subscription (RFC 6665 §4.2.2); a state that changed meanwhile goes
    /// out next.
    pub(super) fn notify_outcome(
        &mut self,
        now: Instant,
        tx: ClientTxId,
        status: Option<u16>,
    ) -> bool {
        let Some((id, outcome)) = self.presence.subs.answered(tx, status) else {
            return false;
        };
        match outcome {
            NotifyOutcome::SendAgain => self.send_notify(now, id),
            NotifyOutcome::Ended => {
                tracing::debug!(id, ?status, "subscription ended by the subscriber")
            }
            NotifyOutcome::Done => {}
        }
        true
    }

    /// The calls the proxy routed since the last call: the dialog state of their local users,
    /// and NOTIFYs to those users' dialog subscribers.
    pub(super) fn presence_calls(&mut self, now: Instant) {
        let mut changed: Vec<String> = Vec::new();
        while let Some(p) = self.proxy.poll_call_progress() {
            let call_id = match &p {
                CallProgress::Invite { call_id, .. }
                | CallProgress::Early(call_id)
                | CallProgress::Confirmed(call_id)
                | CallProgress::Ended(call_id) => call_id.clone(),
            };
            let users = match p {
                CallProgress::Invite { call_id, from, to } => {
                    let local_user = |u: Option<&crate::sip::msg::Uri>| {
                        u.filter(|u| u.user.is_some()).and_then(|u| self.uri_key(u))
                    };
                    let (caller, callee) = (local_user(from.as_deref()), local_user(Some(&to)));
                    self.presence.calls.started(now, &call_id, caller, callee)
                }
                CallProgress::Early(c) => self.presence.calls.progressed(now, &c, "early"),
                CallProgress::Confirmed(c) => self.presence.calls.progressed(now, &c, "confirmed"),
                CallProgress::Ended(c) => self.presence.calls.ended(now, &c),
            };
            for u in users {
                if !changed.contains(&u) {
                    changed.push(u);
                }
            }
            // Each change gets its own NOTIFY (a call can ring and be answered in one drain).
            for u in changed.drain(..) {
                self.notify_watchers(now, &u, Package::Dialog);
            }
            self.presence.calls.forget_if_terminated(&call_id);
        }
    }

    /// Publication and subscription expiry at `now`, and the sweep of stale call state.
    pub(super) fn presence_timeout(&mut self, now: Instant) {
        if !self.presence.enabled {
            return;
        }
        for aor in self.presence.store.expire(now) {
            self.notify_watchers(now, &aor, Package::Presence);
        }
        for id in self.presence.subs.expired(now) {
            self.end_subscription(now, id);
        }
        if self.presence.next_sweep.is_none_or(|t| t <= now) {
            for u in self.presence.calls.sweep(now) {
                self.notify_watchers(now, &u, Package::Dialog);
            }
            self.presence.next_sweep = Some(now + TRACKER_SWEEP);
        }
    }

    /// The next presence deadline (publication or subscription expiry).
    pub(super) fn presence_poll_timeout(&self) -> Option<Instant> {
        [
            self.presence.store.poll_timeout(),
            self.presence.subs.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
