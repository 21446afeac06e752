//! Call forwarding and redirect mode for this domain's users ([`crate::server::forward`]):
//! the unconditional forward at once, the busy and no-answer forwards when the proxy gives a
//! call back ([`crate::server::proxy::Proxy::poll_diverted`]), the loop guard, and the 302
//! answers of redirect mode (RFC 3261 §8.3, §21.3.3).

use std::net::SocketAddr;
use std::time::Instant;

use super::*;
use crate::server::forward::{self, ChainCheck, DivertReason, ForwardRule, ForwardTarget};
use crate::server::proxy::{DivertCause, DivertWatch};
use crate::server::registrar::format_q;

/// What the caller gets when a forward cannot be made.
pub(super) enum Fallback {
    /// The loop guard's answer: 482 for a cycle, 480 for a chain too long, 483 when
    /// Max-Forwards is used up.
    Check,
    /// The call's own outcome (the busy response).
    Response(Response),
    /// This status (480 for a no-answer).
    Status(u16),
}

impl ServerCore {
    /// Sets (`Some`) or clears (`None`) `user`'s call forwarding. Calls being set up keep the
    /// rule they started with for busy and no answer only if it is still set when they end.
    pub fn set_forwarding(&mut self, user: &str, rule: Option<ForwardRule>) {
        self.forwarding.set(user, rule);
    }

    /// `user`'s call forwarding, if any.
    pub fn forwarding(&self, user: &str) -> Option<&ForwardRule> {
        self.forwarding.get(user)
    }

    /// A request for one of this domain's users (after authentication and the media checks):
    /// the unconditional forward, redirect mode, the user's bindings (forking, watched for busy
    /// and no answer), the no-answer forward of a user without a binding, the offline message
    /// store, or 404/480.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn route_local(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        loop_hash: u64,
        authenticated: bool,
    ) {
        let user = self.request_key(&req);
        let invite = req.method == Method::Invite;
        let rule = if invite {
            self.forwarding.get(&user).cloned()
        } else {
            None
        };
        if let Some(target) = rule.as_ref().and_then(|r| r.unconditional.clone()) {
            if self.redirect {
                return self.redirect_to_target(now, tx, &req, &user, &target);
            }
            return self.divert(
                now,
                tx,
                req,
                source,
                transport,
                &user,
                &target,
                DivertReason::Unconditional,
                Fallback::Check,
                authenticated,
            );
        }
        if self.redirect && invite {
            return self.redirect_to_bindings(now, tx, &req, &user, authenticated);
        }
        let mut targets = self.proxy_targets(now, &user);
        if req.uri.scheme == Scheme::Sips {
            // RFC 3261 §26.2.2: only over TLS, i.e. bindings whose flow is TLS or WSS.
            targets.retain(|t| t.transport.is_secure());
        }
        if targets.is_empty() {
            if req.method == Method::Message && self.store_offline(now, tx, &req, authenticated) {
                return;
            }
            if let Some(target) = rule.as_ref().and_then(|r| r.no_answer.clone()) {
                return self.divert(
                    now,
                    tx,
                    req,
                    source,
                    transport,
                    &user,
                    &target,
                    DivertReason::Unavailable,
                    Fallback::Status(480),
                    authenticated,
                );
            }
            // No user enumeration: to a sender that has not authenticated, an unknown user and
            // a known user with no binding look the same (480). An authenticated local user
            // learns which it is (404 or 480).
            let known = self.user_known(&user);
            let status = if known || !authenticated { 480 } else { 404 };
            return self.reply(now, tx, &req, status, vec![]);
        }
        let watch = rule
            .filter(|r| r.busy.is_some() || r.no_answer.is_some())
            .map(|r| DivertWatch {
                busy: r.busy.is_some(),
                no_answer_at: r.no_answer.as_ref().map(|_| now + r.no_answer_after),
                request: req.clone(),
                in_t: transport,
                source,
                user,
                authenticated,
                fired: None,
                failover: None,
            });
        let (proxy, mut io) = self.io();
        proxy.fork(&mut io, now, tx, req, transport, source, targets, loop_hash);
        if let Some(w) = watch {
            self.proxy.watch(tx, w);
        }
    }

    /// Sends `req` (for `user`) on to `target` with a Diversion header (see
    /// [`crate::server::forward`] for the loop guard), on the same server transaction: to the
    /// target's bindings (its own forwarding applies in turn), or to another domain.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn divert(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        mut req: Request,
        source: SocketAddr,
        transport: Transport,
        user: &str,
        target: &ForwardTarget,
        reason: DivertReason,
        fallback: Fallback,
        authenticated: bool,
    ) {
        let (name, domain) = self.key_parts(user);
        let from = ForwardTarget::User(name.to_string()).uri(&domain);
        let to = target.uri(&domain);
        let local = &self.local;
        let check = forward::check(&req, &from, &to, self.forward_max_chain, |h| {
            local.is_local_host(h)
        });
        let refused = match check {
            ChainCheck::Ok if forward::divert(&mut req, &from, &to, reason) => None,
            ChainCheck::Ok => Some(483),
            ChainCheck::Cycle => Some(482),
            ChainCheck::TooLong => Some(480),
        };
        if let Some(status) = refused {
            tracing::info!(%user, target = %to, status, "call forward refused (loop guard)");
            return match fallback {
                Fallback::Check => self.reply(now, tx, &req, status, vec![]),
                Fallback::Status(s) => self.reply(now, tx, &req, s, vec![]),
                // Relayed as the proxy relays a downstream response (not fitted as our own).
                Fallback::Response(r) => {
                    self.tl.respond(now, tx, r);
                }
            };
        }
        self.stats.diverted += 1;
        tracing::debug!(%user, target = %to, reason = reason.as_str(), "call forwarded");
        let hash = route::loop_hash(&req);
        if self.local.is_local_host(&to.host) {
            if let Some(room) = self.conference_room(&req) {
                return self.conference_request(
                    now,
                    tx,
                    req,
                    source,
                    transport,
                    room,
                    authenticated,
                );
            }
            return self.route_local(now, tx, req, source, transport, hash, authenticated);
        }
        if self.is_foreign(&to) {
            return self.route_foreign(now, tx, req, source, transport, hash);
        }
        // Another server by IP address.
        let Some((dest, t)) = route::resolve(&to) else {
            return self.reply(now, tx, &req, 404, vec![]);
        };
        let target = Target {
            uri: None,
            dest,
            transport: t,
            nat: false,
            alternates: Vec::new(),
            route: Vec::new(),
            flow: false,
        };
        let (proxy, mut io) = self.io();
        proxy.fork(&mut io, now, tx, req, transport, source, vec![target], hash);
    }

    /// Forwards the calls the proxy gave back (busy, no answer) to their user's target.
    pub(super) fn run_diversions(&mut self, now: Instant) {
        while let Some(d) = self.proxy.poll_diverted() {
            let rule = self.forwarding.get(&d.user);
            let (target, reason) = match d.cause {
                DivertCause::Busy => (rule.and_then(|r| r.busy.clone()), DivertReason::UserBusy),
                DivertCause::NoAnswer => (
                    rule.and_then(|r| r.no_answer.clone()),
                    DivertReason::NoAnswer,
                ),
                // A dispatched request: the next destination of its set.
                DivertCause::Failover => {
                    self.dispatch_next(now, d);
                    continue;
                }
            };
            let fallback = match d.fallback {
                Some(r) => Fallback::Response(r),
                None => Fallback::Status(480),
            };
            match target {
                Some(t) => self.divert(
                    now,
                    d.stx,
                    d.request,
                    d.source,
                    d.in_t,
                    &d.user,
                    &t,
                    reason,
                    fallback,
                    d.authenticated,
                ),
                // The rule was cleared while the call rang.
                None => match fallback {
                    Fallback::Response(r) => {
                        self.tl.respond(now, d.stx, r);
                    }
                    _ => self.reply(now, d.stx, &d.request, 480, vec![]),
                },
            }
        }
    }

    /// Redirect mode: 302 with the user's bindings as Contacts, each with its q and the
    /// seconds it has left (RFC 3261 §20.10); 480 without a binding (404 to an authenticated
    /// local sender for an unknown user: no user enumeration, as when proxying). Binding
    /// contacts are given as registered: one behind a NAT names its private address.
    fn redirect_to_bindings(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        user: &str,
        authenticated: bool,
    ) {
        let unix = self.unix_secs(now);
        let contacts: Vec<(HeaderName, String)> = self
            .registrar
            .location
            .lookup(user, unix)
            .into_iter()
            .map(|b| {
                let v = format!(
                    "{};q={};expires={}",
                    b.contact_value,
                    format_q(b.q),
                    b.remaining_secs(unix)
                );
                (HeaderName::Contact, v)
            })
            .collect();
        if contacts.is_empty() {
            let known = self.user_known(user);
            let status = if known || !authenticated { 480 } else { 404 };
            return self.reply(now, tx, req, status, vec![]);
        }
        self.stats.redirected += 1;
        self.reply_302(now, tx, req, contacts, authenticated);
    }

    /// Sends a 302 with `extra` headers. Over UDP, to a sender that did not authenticate, it
    /// is fitted to the INVITE's size like every reply the server makes (no reflection
    /// amplification, [`reply::fit_response`]): a 302 listing many bindings for a small
    /// INVITE is not sent.
    fn reply_302(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        extra: Vec<(HeaderName, String)>,
        authenticated: bool,
    ) {
        if !authenticated {
            return self.reply(now, tx, req, 302, extra);
        }
        let mut resp = Response::for_request(req, 302);
        if let Some(to) = req.headers.get(&HeaderName::To) {
            let v = format!("{to};tag={}", self.replier.new_tag());
            resp.headers.set(HeaderName::To, v);
        }
        for (n, v) in extra {
            resp.headers.push(n, v);
        }
        reply::send_authenticated_response(&mut self.tl, &mut self.stats, now, tx, resp);
    }

    /// Redirect mode for a user with an unconditional forward: 302 to the target, with the
    /// Diversion header the caller's next INVITE should carry (RFC 5806 §4); 482 for a cycle.
    fn redirect_to_target(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        user: &str,
        target: &ForwardTarget,
    ) {
        let (name, domain) = self.key_parts(user);
        let from = ForwardTarget::User(name.to_string()).uri(&domain);
        let to = target.uri(&domain);
        let local = &self.local;
        match forward::check(req, &from, &to, self.forward_max_chain, |h| {
            local.is_local_host(h)
        }) {
            ChainCheck::Ok => {}
            ChainCheck::Cycle => return self.reply(now, tx, req, 482, vec![]),
            ChainCheck::TooLong => return self.reply(now, tx, req, 480, vec![]),
        }
        self.stats.redirected += 1;
        let contact = (HeaderName::Contact, format!("<{to}>"));
        let diversion = (
            HeaderName::Diversion,
            forward::diversion_value(&from, DivertReason::Unconditional),
        );
        self.reply_302(now, tx, req, vec![contact, diversion], false);
    }
}

/// The forwarding rules of `cfg`; a bad one is logged and left out (the driver refuses such a
/// configuration before building the core: [`ServerConfig::forward_rules`]).
pub(super) fn forward_table(cfg: &ServerConfig) -> crate::server::forward::ForwardTable {
    let mut table = crate::server::forward::ForwardTable::default();
    for (user, f) in &cfg.forward {
        match f.rule() {
            Ok(rule) => table.set(user, Some(rule)),
            Err(e) => tracing::warn!(%user, error = %e, "call forwarding ignored"),
        }
    }
    table
}
