//! Outbound routing to trunks and gateways ([`crate::server::dispatch`]) in the server core:
//! which requests a rule routes, who may use a route, forwarding to the selected destination,
//! serial failover and trunk authentication (through the proxy's diversion machinery: the
//! proxy hands a failed or challenged request back, [`DivertCause::Failover`]), the OPTIONS
//! probes the core sends as a UAC, and the RFC 3263 lookups of destinations named by DNS.
//!
//! Routing order for an out-of-dialog request with a user part (after REGISTER, OPTIONS to the
//! server itself, in-dialog routing and the sender's authentication):
//! 1. a Request-URI host this server does not serve that a **domain** rule names → its set
//!    (before RFC 3263 routing to that domain);
//! 2. a Request-URI for this server's domain: a **local user** (an account) is always reached
//!    locally (bindings, forwarding, 480), a conference room joins its room; any other user
//!    part matching a **prefix** rule (longest prefix first) → its set;
//! 3. otherwise as without a dispatcher (404/480, DNS for other domains).
//!
//! A routed request costs the operator money: it is forwarded only for a sender that
//! authenticated as a local user (every routed request from a local From is challenged with
//! 407), or that is in `trusted_sources` (a PBX, an SBC), or — with `invite_auth = false` — that
//! names a local user in From. Others get 403.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::*;
use crate::server::dispatch::{
    Attempt, DestId, DispatchConfig, DispatchEvent, Dispatcher, Failure, Probe, TrunkCredentials,
};
use crate::server::proxy::{DivertCause, DivertWatch, Diverted, Failover};
use crate::sip::msg::{Auth, Headers, Uri};
use crate::sip::resolve::{Destination, ResolveError};
use crate::sip::transaction::{ClientTxId, new_branch};

/// The dispatcher and what the core tracks for it.
#[derive(Debug)]
pub(super) struct Dispatch {
    /// The sans-IO dispatcher.
    pub core: Dispatcher,
    /// Probes in flight: client transaction → (destination, probe id).
    probes: HashMap<ClientTxId, (DestId, u64)>,
    /// DNS lookups in flight: query id → destination.
    lookups: HashMap<u64, DestId>,
    /// This core's worker and the number of workers ([`ServerCore::set_probe_worker`]).
    worker: (usize, usize),
}

impl Dispatch {
    /// The dispatcher of `cfg` (probes and lookups start at `now`).
    pub(super) fn new(cfg: &DispatchConfig, now: Instant) -> Dispatch {
        Dispatch {
            core: Dispatcher::new(cfg, now),
            probes: HashMap::new(),
            lookups: HashMap::new(),
            worker: (0, 1),
        }
    }
}

/// `original`'s Request-URI sent to destination `dest`: its user part at the destination's
/// host, port and parameters (as Kamailio's `ds_select_domain`).
fn dispatched_uri(original: &Uri, dest: &Uri) -> Uri {
    Uri {
        user: original.user.clone(),
        password: None,
        headers: None,
        ..dest.clone()
    }
}

/// Answers the trunk's challenge in `resp` (401: Authorization, 407: Proxy-Authorization) on
/// `req`, whose CSeq number goes up by one (RFC 3261 §22.2, §8.1.3.5; RFC 7616 `qop=auth`, or
/// the RFC 2617 form without qop). Only challenges of the credentials' realm are answered when
/// one is set. Returns whether one was answered.
fn authorize(req: &mut Request, resp: &Response, creds: &TrunkCredentials) -> bool {
    let (challenge_hdr, answer_hdr) = match resp.status {
        401 => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
        407 => (
            HeaderName::ProxyAuthenticate,
            HeaderName::ProxyAuthorization,
        ),
        _ => return false,
    };
    let method = req.method.as_str().to_string();
    let uri = req.uri.to_string();
    let answer = resp
        .headers
        .get_all(&challenge_hdr)
        .filter_map(|v| Auth::parse(v).ok())
        .filter(|ch| {
            creds
                .realm
                .as_deref()
                .is_none_or(|r| ch.get("realm").is_some_and(|cr| cr == r))
        })
        .find_map(|ch| {
            let cnonce = crate::sip::ua::build::token();
            crate::auth::authorization_value(
                &ch,
                &creds.username,
                &creds.password,
                &method,
                &uri,
                1,
                &cnonce,
            )
            .or_else(|| {
                crate::auth::authorization_value_without_qop(
                    &ch,
                    &creds.username,
                    &creds.password,
                    &method,
                    &uri,
                )
            })
        });
    let (Some(answer), Ok(cseq)) = (answer, req.headers.cseq()) else {
        return false;
    };
    req.headers.remove_all(&answer_hdr);
    req.headers.push(answer_hdr, answer);
    let seq = cseq.seq.saturating_add(1).min(0x7fff_ffff);
    req.headers
        .set(HeaderName::CSeq, format!("{seq} {}", cseq.method));
    true
}

/// Most Call-IDs drawn for one probe until one hashes to the probing worker (each draw hits
/// with probability 1/workers; past this the probe goes out anyway, its answer then lost).
const PROBE_CALL_ID_DRAWS: usize = 256;

impl ServerCore {
    /// Tells the dispatcher that this core is worker `worker` of `workers`
    /// ([`crate::driver::workers`]): its OPTIONS probes then get Call-IDs that
    /// [`crate::server::shard::worker_of_call_id`] maps to this worker, so their answers are
    /// steered back to it. Every worker probes its own copy of the destinations and keeps its own
    /// up/down state (a destination a call found down on one worker is tried first by the others
    /// until their own calls or probes find it down too; failover works on every worker).
    pub fn set_probe_worker(&mut self, worker: usize, workers: usize) {
        self.dispatch.worker = (worker, workers.max(1));
    }

    /// A new Call-ID for a probe, owned by this core's worker.
    fn probe_call_id(&mut self) -> String {
        let (me, n) = self.dispatch.worker;
        let domain = &self.local.domain;
        let mut id = format!("{}@{domain}", self.replier.new_tag());
        for _ in 1..PROBE_CALL_ID_DRAWS {
            if crate::server::shard::worker_of_call_id(id.as_bytes(), n) == me {
                break;
            }
            id = format!("{}@{domain}", self.replier.new_tag());
        }
        id
    }

    /// The dispatcher: sets, destination states and counters.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatch.core
    }

    /// Applies a new `[dispatch]` table (a reload): sets, destinations and routes change;
    /// destinations that stay keep their state (up/down, addresses); requests being forwarded
    /// and calls in progress go on untouched. See [`Dispatcher::reconfigure`].
    pub fn reconfigure_dispatch(&mut self, cfg: &DispatchConfig, now: Instant) {
        self.dispatch.core.reconfigure(cfg, now);
        self.dispatch
            .lookups
            .retain(|_, id| self.dispatch.core.destination(*id).is_some());
    }

    /// The set a rule routes `req` to (see the module doc for the order), if any.
    pub(super) fn dispatch_route(&self, req: &Request) -> Option<usize> {
        let d = &self.dispatch.core;
        if d.is_empty() || !req.uri.is_sip() {
            return None;
        }
        if !self.local.is_local_host(&req.uri.host) {
            if let Some(set) = d.route_domain(&req.uri.host) {
                return Some(set);
            }
        }
        if self.is_foreign(&req.uri) {
            return None;
        }
        req.uri.user.as_deref()?;
        if self.user_known(&self.request_key(req)) || self.conference_room(req).is_some() {
            return None;
        }
        d.route_prefix(&req.uri.user_unescaped().unwrap_or_default())
    }

    /// Forwards `req` to the first destination of set `set` (when its sender may use routes).
    /// No destination with an address: 503.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dispatch_request(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        set: usize,
        authenticated: bool,
    ) {
        let allowed = authenticated
            || self.guard.is_trusted(source.ip())
            || (!self.invite_auth_of(&req) && self.local_from_user(&req).is_some());
        if !allowed {
            self.stats.relay_denied += 1;
            tracing::debug!(%source, uri = %req.uri, "dispatch route refused to an unauthenticated sender");
            return self.reply(now, tx, &req, 403, vec![]);
        }
        let call_id = req
            .headers
            .get(&HeaderName::CallId)
            .map(|c| c.to_string())
            .unwrap_or_default();
        let Some(attempt) = self.dispatch.core.select(set, &call_id) else {
            let name = self.dispatch.core.set_name(set).unwrap_or_default();
            tracing::info!(set = %name, "dispatch: no destination has an address");
            return self.reply(now, tx, &req, 503, vec![]);
        };
        let mut attempt = Box::new(attempt);
        loop {
            match self.dispatch_fork(
                now,
                tx,
                &req,
                source,
                transport,
                authenticated,
                attempt,
                None,
            ) {
                Ok(()) => return,
                Err(a) => attempt = a,
            }
            if self.dispatch.core.next(&mut attempt).is_none() {
                return self.reply(now, tx, &req, 503, vec![]);
            }
        }
    }

    /// Sends `original` to the attempt's current destination (answering `challenge` with its
    /// credentials when given), watched for failover. Gives the attempt back when that cannot
    /// be done (the destination is gone, has no address, or the challenge is not answerable).
    #[allow(clippy::too_many_arguments)]
    fn dispatch_fork(
        &mut self,
        now: Instant,
        stx: ServerTxId,
        original: &Request,
        source: SocketAddr,
        in_t: Transport,
        authenticated: bool,
        attempt: Box<Attempt>,
        challenge: Option<&Response>,
    ) -> Result<(), Box<Attempt>> {
        let Some(dest) = self.dispatch.core.destination(attempt.current) else {
            return Err(attempt);
        };
        let Some((&(addr, transport), rest)) = dest.addrs.split_first() else {
            return Err(attempt);
        };
        let uri = dispatched_uri(&original.uri, &dest.uri);
        let alternates = rest.to_vec();
        let credentials = dest.credentials.clone();
        let dest_uri = dest.uri.to_string();
        let mut req = original.clone();
        let mut offset = 0;
        if let Some(ch) = challenge {
            req.uri = uri.clone();
            let answered = credentials
                .as_ref()
                .is_some_and(|c| authorize(&mut req, ch, c));
            if !answered {
                return Err(attempt);
            }
            offset = 1;
        }
        tracing::debug!(set = %attempt.set, uri = %dest_uri, dest = %addr, call_id = ?req.headers.get(&HeaderName::CallId), authorized = offset > 0, "dispatch: forwarded");
        let target = Target {
            uri: Some(uri),
            dest: addr,
            transport,
            nat: false,
            alternates,
            route: Vec::new(),
            flow: false,
        };
        let hash = route::loop_hash(&req);
        let watch = DivertWatch {
            busy: false,
            no_answer_at: None,
            request: original.clone(),
            in_t,
            source,
            user: String::new(),
            authenticated,
            fired: None,
            failover: Some(Box::new(Failover {
                reply_by: now + attempt.fr_timer,
                challenge: credentials.is_some(),
                attempt,
            })),
        };
        let (proxy, mut io) = self.io();
        proxy.fork(&mut io, now, stx, req, in_t, source, vec![target], hash);
        if offset > 0 {
            self.proxy.set_cseq_offset(stx, offset);
        }
        self.proxy.watch(stx, watch);
        Ok(())
    }

    /// A dispatched request the proxy gave back ([`DivertCause::Failover`]): a challenge is
    /// answered once with the destination's credentials (a second one, or one that cannot be
    /// answered, gets 403 upstream, never the trunk's challenge); a failure (408, 5xx, no
    /// response) marks the destination down and moves on to the next one; when the set is
    /// exhausted the best final response goes upstream (a 503 as 500, RFC 3261 §16.7 step 6;
    /// none at all: 408).
    pub(super) fn dispatch_next(&mut self, now: Instant, d: Diverted) {
        debug_assert_eq!(d.cause, DivertCause::Failover);
        let Some(f) = d.failover else {
            return self.reply(now, d.stx, &d.request, 500, vec![]);
        };
        let mut attempt = f.attempt;
        let status = d.fallback.as_ref().map(|r| r.status);
        if matches!(status, Some(401 | 407)) {
            if !attempt.authorized {
                attempt.authorized = true;
                self.dispatch.core.stats.trunk_auth += 1;
                let challenge = d.fallback.as_ref();
                match self.dispatch_fork(
                    now,
                    d.stx,
                    &d.request,
                    d.source,
                    d.in_t,
                    d.authenticated,
                    attempt,
                    challenge,
                ) {
                    Ok(()) => return,
                    Err(a) => attempt = a,
                }
            }
            let uri = self
                .dispatch
                .core
                .destination(attempt.current)
                .map(|d| d.uri.to_string());
            tracing::warn!(set = %attempt.set, ?uri, ?status, "dispatch: trunk authentication failed");
            return self.reply(now, d.stx, &d.request, 403, vec![]);
        }
        let failure = status.map_or(Failure::Timeout, Failure::Status);
        self.dispatch.core.failed(attempt.current, failure);
        self.dispatch_log();
        attempt.keep_best(d.fallback);
        while self.dispatch.core.next(&mut attempt).is_some() {
            tracing::debug!(set = %attempt.set, %failure, "dispatch: failover to the next destination");
            match self.dispatch_fork(
                now,
                d.stx,
                &d.request,
                d.source,
                d.in_t,
                d.authenticated,
                attempt,
                None,
            ) {
                Ok(()) => return,
                Err(a) => attempt = a,
            }
        }
        tracing::info!(set = %attempt.set, tried = attempt.tried, "dispatch: every destination failed");
        match attempt.best.take() {
            Some(mut best) => {
                if best.status == 503 {
                    best.status = 500;
                    best.reason = ByteString::from_static("Server Internal Error");
                }
                self.tl.respond(now, d.stx, best);
            }
            None => self.reply(now, d.stx, &d.request, 408, vec![]),
        }
    }

    /// The dispatcher's due work: probe deadlines, a new probe round (sent here), DNS.
    pub(super) fn dispatch_timeout(&mut self, now: Instant) {
        self.dispatch.core.handle_timeout(now);
        while let Some(id) = self.dispatch.core.poll_expired_probe() {
            // An unanswered probe stops retransmitting (its late answer would be stale).
            let tx = self
                .dispatch
                .probes
                .iter()
                .find(|(_, (_, p))| *p == id)
                .map(|(tx, _)| *tx);
            if let Some(tx) = tx {
                self.dispatch.probes.remove(&tx);
                self.tl.transport_error(tx);
            }
        }
        while let Some(p) = self.dispatch.core.poll_probe() {
            self.send_probe(now, p);
        }
        self.dispatch_log();
    }

    /// Sends probe `p`: an OPTIONS from `sip:dispatcher@<domain>` as a new client transaction.
    fn send_probe(&mut self, now: Instant, p: Probe) {
        let domain = self.local.domain.clone();
        let mut h = Headers::with_capacity(8);
        let (host, port) = self
            .local
            .interface(p.transport)
            .or_else(|| self.local.interfaces.first())
            .map(|i| (i.host.clone(), i.port))
            .unwrap_or_else(|| ("127.0.0.1".to_string(), 5060));
        h.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {host}:{port};branch={}",
                p.transport.via_name(),
                new_branch()
            ),
        );
        h.push(HeaderName::MaxForwards, "70");
        h.push(
            HeaderName::From,
            format!("<sip:dispatcher@{domain}>;tag={}", self.replier.new_tag()),
        );
        h.push(HeaderName::To, format!("<{}>", p.uri));
        h.push(HeaderName::CallId, self.probe_call_id());
        h.push(HeaderName::CSeq, "1 OPTIONS");
        let req = Request {
            method: Method::Options,
            uri: p.uri,
            headers: h,
            body: bytes::Bytes::new(),
        };
        let ctid = self.tl.send_request(now, req, p.addr, p.transport);
        self.dispatch.probes.insert(ctid, (p.dest, p.id));
    }

    /// The outcome of a client transaction, if it is a probe (true): a provisional response is
    /// waited on; a final one, a timeout or a transport error (`None`) goes to the dispatcher.
    pub(super) fn probe_outcome(&mut self, tx: ClientTxId, status: Option<u16>) -> bool {
        if status.is_some_and(|s| s < 200) {
            return self.dispatch.probes.contains_key(&tx);
        }
        let Some((dest, id)) = self.dispatch.probes.remove(&tx) else {
            return false;
        };
        self.dispatch.core.probe_answered(dest, id, status);
        self.dispatch_log();
        true
    }

    /// A DNS lookup a destination needs, under an id of the core's lookups.
    pub(super) fn dispatch_dns_query(&mut self) -> Option<DnsQuery> {
        let (dest, target) = self.dispatch.core.poll_dns()?;
        let id = self.lookups.next_id();
        self.dispatch.lookups.insert(id, dest);
        Some(DnsQuery { id, target })
    }

    /// The answer to a lookup of [`ServerCore::dispatch_dns_query`] (unknown ids are ignored).
    pub(super) fn dispatch_resolved(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<Vec<Destination>, ResolveError>,
    ) {
        if let Some(dest) = self.dispatch.lookups.remove(&id) {
            self.dispatch.core.resolved(dest, now, result);
        }
    }

    /// Logs the destinations' state changes.
    fn dispatch_log(&mut self) {
        while let Some(ev) = self.dispatch.core.poll_event() {
            match ev {
                DispatchEvent::Down {
                    set,
                    uri,
                    failure,
                    probe,
                } => {
                    let by = if probe { "probe" } else { "request" };
                    tracing::info!(%set, %uri, %failure, by, "dispatch: destination down");
                }
                DispatchEvent::Up { set, uri, status } => {
                    tracing::info!(%set, %uri, status, "dispatch: destination up");
                }
            }
        }
    }
}
