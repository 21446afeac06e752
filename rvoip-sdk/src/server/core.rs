//! The sans-IO server core: registrar + record-routing stateful proxy (RFC 3261 §10, §16).
//!
//! Bytes and `now` go in ([`ServerCore::handle_datagram`], [`ServerCore::handle_timeout`]);
//! [`Transmit`]s and a next deadline come out ([`ServerCore::poll_transmit`],
//! [`ServerCore::poll_timeout`]). The tokio driver owns the sockets and the clock.
//!
//! Request processing order (after the transaction layer has absorbed retransmissions):
//! 1. syntax checks ([`validate_request`]) → 400; Max-Forwards 0 → 483 (§16.3);
//!    unsupported Request-URI scheme → 416; Proxy-Require → 420 with Unsupported; loop → 482.
//! 2. CANCEL → §16.10; ACK for a 2xx → forwarded statelessly along the route set.
//! 3. Our own Route entries are removed (loose routing, §16.4); in-dialog requests follow the
//!    remaining route or their Request-URI.
//! 4. REGISTER → 403 for a domain not served → digest auth (401, the domain's realm) →
//!    registrar. OPTIONS without a user part → 200.
//! 5. INVITE/MESSAGE/SUBSCRIBE from a local user → 407 unless authorized (switchable per
//!    domain).
//! 6. A Request-URI host not served goes to that domain (RFC 3263), for local senders only;
//!    else the location lookup of the Request-URI user in its domain: 404 unknown user, 480
//!    no binding; else parallel forking with Record-Route ([`super::proxy`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

mod auth;
mod conference;
mod dispatch;
mod domains;
mod forward;
mod messages;
mod outbound;
mod path;
mod presence;
mod reload;
mod users;
mod via;
pub use outbound::{DnsQuery, MAX_PENDING_LOOKUPS};
pub use reload::{ReloadSummary, restart_needed};
use via::stamp_received;

use crate::auth::{Algorithm, AuthOutcome};
use crate::server::config::ServerConfig;
use crate::server::guard::{Admit, Guard, GuardConfig};
use crate::server::local::LocalIdentity;
use crate::server::location::Location;
use crate::server::proxy::{Io, MediaHook, Proxy, Target, route};
use crate::server::registrar::Registrar;
use crate::server::reply::{self, Replier, send_local_response};
use crate::sip::msg::{
    ByteString, HeaderName, Limits, Message, Method, Request, Response, Scheme, error_response,
    validate_request,
};
use crate::sip::transaction::{
    ServerTxId, TimerConfig, TransactionLayer, Transmit, Transport, TxEvent,
};

pub use crate::server::reply::Stats;

/// The registrar + proxy core. Single-threaded; owned by the driver's event task.
pub struct ServerCore {
    pub(crate) local: LocalIdentity,
    limits: Limits,
    pub(crate) tl: TransactionLayer,
    pub(crate) registrar: Registrar,
    /// The served domains: the default one, then `[domains]` ([`crate::server::domains`]).
    domains: domains::Domains,
    digest_algorithms: Vec<Algorithm>,
    pub(crate) proxy: Proxy,
    max_transactions: usize,
    /// Limits on what one source may make the proxy hold (see [`ServerConfig`]).
    max_transactions_per_source: usize,
    max_held_bytes: usize,
    max_held_bytes_per_source: usize,
    max_forward_body_bytes: usize,
    /// Flood and brute-force defence.
    pub guard: Guard,
    /// Stream flows that just got a registration (for the driver's idle-connection policy).
    new_flows: Vec<SocketAddr>,
    epoch: (Instant, u64),
    next_sweep: Instant,
    replier: Replier,
    /// Record every call (`record_calls`), else the calls of these users (`record_users`).
    record_all: bool,
    record_users: std::collections::HashSet<String>,
    /// Requests for other domains waiting for their DNS answer.
    lookups: outbound::Lookups,
    /// Conference rooms' member dialogs (the server as UAS).
    conferences: conference::Conferences,
    /// The users' call forwarding ([`crate::server::forward`]).
    forwarding: crate::server::forward::ForwardTable,
    /// Most diversions in one call's chain.
    forward_max_chain: u32,
    /// Redirect server mode (302 instead of proxying INVITEs to local users).
    redirect: bool,
    /// Offline instant messages ([`crate::server::offline`]).
    offline: messages::Offline,
    /// The presence agent ([`crate::server::presence`]).
    presence: presence::PresenceAgent,
    /// Whether the bindings' store takes writes (the driver says; REGISTER gets 503 if not).
    store_available: bool,
    /// Outbound routing to trunks and gateways ([`crate::server::dispatch`]).
    dispatch: dispatch::Dispatch,
    /// Counters.
    pub stats: Stats,
    /// Whether REGISTERs over a connection or through a NAT get this node's Path URI
    /// (`record_path`, [`crate::server::path`]).
    record_path: bool,
}

/// Most flows kept for [`ServerCore::take_new_flows`] between two calls.
const MAX_NEW_FLOWS: usize = 4096;

/// How often expired bindings are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Seconds a client is asked to wait (`Retry-After`) after a 503 for overload.
const OVERLOAD_RETRY_AFTER_S: u32 = 5;

impl ServerCore {
    /// Builds the core from the configuration, the bound interfaces (`local`), the user accounts
    /// and the current time (`now`, with `now_unix_secs` the matching wall-clock seconds used for
    /// digest nonce time stamps).
    pub fn new(
        cfg: &ServerConfig,
        local: LocalIdentity,
        users: &[(String, String)],
        now: Instant,
        now_unix_secs: u64,
    ) -> ServerCore {
        let realm = cfg.realm.clone().unwrap_or_else(|| local.domain.clone());
        let secret: [u8; 32] = rand::random();
        let default_domain = domains::Domain {
            name: local.domain.clone(),
            hosts: Vec::new(),
            auth: domains::verifier(
                &realm,
                users,
                cfg.lax_auth_user,
                cfg.nonce_lifetime_s,
                secret,
            ),
            invite_auth: cfg.invite_auth,
            registrar: crate::server::domains::RegistrarPolicy::from_server(cfg),
        };
        let domains = domains::Domains::new(default_domain, secret, local.aliases.clone());
        let mut registrar = Registrar::new(Location::new());
        registrar.min_expires = cfg.min_expires_s;
        registrar.max_expires = cfg.max_expires_s;
        registrar.default_expires = cfg.default_expires_s;
        registrar.location.max_bindings_per_aor = cfg.max_bindings_per_aor;
        let timers = TimerConfig {
            t1: Duration::from_millis(cfg.t1_ms.max(1)),
            t2: Duration::from_millis(cfg.t2_ms.max(1)),
            t4: Duration::from_millis(cfg.t4_ms.max(1)),
        };
        let mut core = ServerCore {
            local,
            limits: Limits {
                max_message_bytes: cfg.max_message_bytes,
                max_headers: cfg.max_headers,
            },
            // An INVITE this server answers at once (a 407 challenge, a 404) gets no 100
            // Trying before its final response (§17.2.1), as from Kamailio's sl_send_reply.
            tl: {
                let mut tl = TransactionLayer::new(timers);
                tl.set_defer_trying(true);
                // Responses are built from the request the core is handed.
                tl.set_keep_non_invite_requests(false);
                tl.set_keep_request_heads(true);
                tl
            },
            registrar,
            domains,
            digest_algorithms: if cfg.digest_algorithms.is_empty() {
                vec![Algorithm::Md5]
            } else {
                cfg.digest_algorithms.clone()
            },
            proxy: Proxy::default(),
            presence: presence::PresenceAgent::new(cfg),
            dispatch: dispatch::Dispatch::new(&cfg.dispatch, now),
            max_transactions: cfg.max_transactions,
            max_transactions_per_source: cfg.max_transactions_per_source,
            max_held_bytes: cfg.max_held_bytes,
            max_held_bytes_per_source: cfg.max_held_bytes_per_source,
            max_forward_body_bytes: cfg.max_forward_body_bytes,
            guard: Guard::new(GuardConfig::from_server(cfg)),
            new_flows: Vec::new(),
            epoch: (now, now_unix_secs),
            next_sweep: now + SWEEP_INTERVAL,
            replier: Replier::new(),
            record_all: cfg.record_calls,
            record_users: cfg.record_users.iter().cloned().collect(),
            lookups: outbound::Lookups::default(),
            conferences: conference::Conferences::new(cfg),
            forwarding: forward::forward_table(cfg),
            forward_max_chain: cfg.forward_max_chain,
            redirect: cfg.redirect,
            offline: messages::Offline {
                store: cfg.offline_messages.then(|| {
                    Box::new(crate::server::offline::MemoryStore::new(
                        crate::server::offline::OfflineLimits {
                            max_messages: cfg.offline_max_messages,
                            max_bytes: cfg.offline_max_bytes,
                            ttl_s: cfg.offline_ttl_s,
                        },
                    )) as Box<dyn crate::server::offline::MessageStore>
                }),
                in_flight: Default::default(),
            },
            store_available: true,
            stats: Stats::default(),
            record_path: cfg
                .record_path
                .unwrap_or(cfg.store == Some(crate::server::config::StoreKind::Redis)),
        };
        core.proxy.track_calls(cfg.presence);
        core
    }

    /// Wall-clock seconds since the Unix epoch matching `now` (digest nonce time stamps, binding
    /// expiry): the clock the core was built with, advanced by the time since.
    pub fn unix_secs(&self, now: Instant) -> u64 {
        self.epoch.1 + now.saturating_duration_since(self.epoch.0).as_secs()
    }

    /// Tells the core whether the bindings' store takes writes: while it does not, a REGISTER
    /// that passed authentication gets 503 with Retry-After (nothing is lost that way; requests
    /// to bindings already held are served as before).
    pub fn set_store_available(&mut self, available: bool) {
        self.store_available = available;
    }

    /// Uses `secret` for digest nonces (kept by the store, so that nonces stay valid across a
    /// restart and on every node sharing the store).
    pub fn set_nonce_secret(&mut self, secret: [u8; 32]) {
        self.domains.set_secret(secret);
    }

    /// The digest nonce secret in use (every worker of a server gets the same one).
    pub fn nonce_secret(&self) -> [u8; 32] {
        self.domains.secret()
    }

    /// The current wall-clock seconds since the Unix epoch (for drivers building a core).
    pub fn system_unix_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// The stream flows (connection peers) whose REGISTER succeeded since the last call: the
    /// driver keeps those connections open while idle. The full set is
    /// [`crate::server::location::Location::stream_flows`].
    pub fn take_new_flows(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.new_flows)
    }

    /// The server's identity (bound interfaces, domain).
    pub fn local(&self) -> &LocalIdentity {
        &self.local
    }

    /// Feeds one datagram (UDP) or one framed message (TCP) received from `source`.
    /// A source over its flood limit or banned ([`Guard`]) is dropped before parsing.
    /// Malformed requests get 400/505/513 when a response can be formed (over UDP only when
    /// it is no larger than the request), else are dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        data: Bytes,
        source: SocketAddr,
        transport: Transport,
    ) {
        if self.guard.admit(now, source.ip()) != Admit::Yes {
            return;
        }
        let wire_len = data.len();
        match Message::parse(data.clone(), &self.limits) {
            Ok(mut msg) => {
                if let Message::Request(req) = &mut msg {
                    stamp_received(req, source);
                }
                self.tl
                    .handle_received(now, msg, source, transport, wire_len);
                self.drain_events(now);
            }
            Err(err) => {
                self.stats.parse_errors += 1;
                tracing::debug!(%source, ?err, "unparsable message");
                let Some(resp) = error_response(&data, &err) else {
                    return;
                };
                let method = resp.headers.cseq().map(|c| c.method).ok();
                let status = resp.status;
                let budget = (transport == Transport::Udp).then_some(wire_len);
                if let Some(bytes) = reply::fit_budget(resp, budget, &mut self.stats) {
                    let method = method.unwrap_or(Method::Extension(ByteString::from_static("")));
                    self.tl.count_stateless_response(&method, status);
                    self.tl.send_stateless(source, transport, bytes);
                }
            }
        }
    }

    /// Whether the proxy may hold `req` (from `source`) while it forwards it: its body is
    /// within `max_forward_body_bytes` (else 513), its source has fewer than
    /// `max_transactions_per_source` transactions in progress and holds less than
    /// `max_held_bytes_per_source`, and all transactions hold less than `max_held_bytes`
    /// (else 503 with Retry-After). Answers the request itself when it may not.
    pub(crate) fn admit_held(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        source: SocketAddr,
    ) -> bool {
        if req.body.len() > self.max_forward_body_bytes {
            self.stats.body_too_large += 1;
            self.reply(now, tx, req, 513, vec![]);
            return false;
        }
        let (count, bytes) = self.tl.source_load(source.ip());
        let trusted = self.guard.is_trusted(source.ip());
        let over_source = !trusted
            && (count > self.max_transactions_per_source || bytes > self.max_held_bytes_per_source);
        if over_source || self.tl.held_bytes() > self.max_held_bytes {
            self.stats.overloaded += 1;
            tracing::debug!(%source, count, bytes, total = self.tl.held_bytes(), "503: held-request limit");
            self.reply_overloaded(now, tx, req);
            return false;
        }
        true
    }

    /// Runs expired timers (transactions, binding expiry).
    /// The driver could not open (or lost) the connection to `dest` over `transport`: the
    /// branches and requests waiting on it fail at once (RFC 3261 §16.9) instead of after Timer
    /// B or F.
    /// `reason` is logged by the driver; the branches end as timed out.
    pub fn connection_failed(
        &mut self,
        now: Instant,
        dest: SocketAddr,
        transport: Transport,
        reason: &str,
    ) {
        if self.tl.connection_failed(dest, transport, reason) > 0 {
            self.drain_events(now);
        }
    }

    /// Runs due timers (transactions, the proxy's Timer C, the location sweep).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tl.handle_timeout(now);
        let (proxy, mut io) = self.io();
        proxy.handle_timeout(&mut io, now);
        self.conference_timeout(now);
        self.presence_timeout(now);
        self.dispatch_timeout(now);
        if now >= self.next_sweep {
            let n = self.registrar.location.sweep(self.unix_secs(now));
            self.guard.sweep(now);
            self.expire_offline(now);
            if n > 0 {
                tracing::debug!(expired = n, "swept bindings");
            }
            self.next_sweep = now + SWEEP_INTERVAL;
        }
        self.drain_events(now);
    }

    /// The next instant at which [`ServerCore::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_sweep;
        for other in [
            self.tl.poll_timeout(),
            self.proxy.poll_timeout(),
            self.conference_poll_timeout(),
            self.presence_poll_timeout(),
            self.dispatch.core.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(other);
        }
        Some(t)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tl.poll_transmit()
    }

    fn drain_events(&mut self, now: Instant) {
        loop {
            self.drain_tx_events(now);
            // Calls the proxy gave back for forwarding (busy, no answer) start new branches.
            if !self.proxy.has_diverted() {
                break;
            }
            self.run_diversions(now);
        }
        self.presence_calls(now);
    }

    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(ev) = self.tl.poll_event() {
            match ev {
                TxEvent::Request {
                    tx: Some(tx),
                    req,
                    source,
                    transport,
                } => self.on_request(now, tx, req, source, transport),
                TxEvent::Request {
                    tx: None,
                    req,
                    source,
                    transport,
                } => {
                    if self.conference_in_dialog(now, None, &req) {
                        continue;
                    }
                    let (proxy, mut io) = self.io();
                    proxy.ack(&mut io, now, req, source, transport)
                }
                TxEvent::Response { tx, resp } => {
                    if self.delivery_outcome(tx, Some(resp.status))
                        || self.notify_outcome(now, tx, Some(resp.status))
                        || self.probe_outcome(tx, Some(resp.status))
                    {
                        continue;
                    }
                    let (proxy, mut io) = self.io();
                    proxy.on_response(&mut io, now, tx, resp)
                }
                TxEvent::Timeout { tx } => {
                    if self.delivery_outcome(tx, None)
                        || self.notify_outcome(now, tx, None)
                        || self.probe_outcome(tx, None)
                    {
                        continue;
                    }
                    let (proxy, mut io) = self.io();
                    proxy.on_branch_timeout(&mut io, now, tx)
                }
                // A transport error ends the branch at once as a 503 (RFC 3261 §16.9), which
                // also moves it to the next DNS destination (RFC 3263 §4.3); on a flow named by
                // a flow token, as a 430 (RFC 5626 §5.3).
                TxEvent::TransportError {
                    tx,
                    request,
                    reason,
                } => {
                    if self.delivery_outcome(tx, None)
                        || self.notify_outcome(now, tx, None)
                        || self.probe_outcome(tx, None)
                    {
                        continue;
                    }
                    let (proxy, mut io) = self.io();
                    match request {
                        Some(req) => {
                            // RFC 5626 §5.3: a flow named by a flow token that is gone is a 430.
                            let (status, reason) = match proxy.is_flow_branch(tx) {
                                true => (430, ByteString::from_static("Flow Failed")),
                                false => (503, ByteString::from(reason)),
                            };
                            let mut resp = Response::for_request(&req, status);
                            resp.reason = reason;
                            proxy.on_response(&mut io, now, tx, resp)
                        }
                        None => proxy.on_branch_timeout(&mut io, now, tx),
                    }
                }
                TxEvent::StrayResponse { resp, .. } => {
                    let (proxy, mut io) = self.io();
                    proxy.forward_response_stateless(&mut io, resp)
                }
                TxEvent::AckTimeout { .. } => {}
            }
        }
    }

    /// Replaces the proxy's media hook (the relay anchor; default: signalling only).
    pub fn set_media_hook(&mut self, media: Box<dyn MediaHook>) {
        self.proxy = Proxy::new(media);
        self.proxy.track_calls(self.presence.enabled);
    }

    /// The proxy's view of this core: transaction layer, identity, replier, counters.
    fn io(&mut self) -> (&mut Proxy, Io<'_>) {
        (
            &mut self.proxy,
            Io {
                tl: &mut self.tl,
                local: &self.local,
                replier: &mut self.replier,
                stats: &mut self.stats,
            },
        )
    }

    /// Answers a request on its server transaction (see [`Replier::reply`]).
    pub(crate) fn reply(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        status: u16,
        extra: Vec<(HeaderName, String)>,
    ) {
        self.replier
            .reply(&mut self.tl, &mut self.stats, now, tx, req, status, extra);
    }

    /// Answers `req` with 503 and `Retry-After: 5` (RFC 3261 §21.5.4, §20.33): a limit on
    /// what the proxy holds, or on DNS lookups in progress, was reached.
    pub(crate) fn reply_overloaded(&mut self, now: Instant, tx: ServerTxId, req: &Request) {
        self.reply(
            now,
            tx,
            req,
            503,
            vec![(HeaderName::RetryAfter, OVERLOAD_RETRY_AFTER_S.to_string())],
        );
    }

    fn send_local_response(&mut self, now: Instant, tx: ServerTxId, resp: Response) {
        send_local_response(&mut self.tl, &mut self.stats, now, tx, resp);
    }

    fn on_request(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        if let Err(rej) = validate_request(&req) {
            tracing::debug!(%source, status = rej.status, reason = rej.reason, "request rejected");
            let mut resp = Response::for_request(&req, rej.status);
            resp.reason = ByteString::from_static(rej.reason);
            self.stats.rejected += 1;
            self.send_local_response(now, tx, resp);
            return;
        }
        if self.tl.len().1 > self.max_transactions {
            self.reply_overloaded(now, tx, &req);
            return;
        }
        let max_forwards = match req.headers.max_forwards() {
            Ok(mf) => mf,
            Err(_) => return self.reply(now, tx, &req, 400, vec![]),
        };
        if max_forwards == Some(0) {
            // §16.3 step 3: a proxy answers 483 (OPTIONS to the proxy itself may be answered).
            return self.reply(now, tx, &req, 483, vec![]);
        }
        // sips: needs TLS on every hop (RFC 3261 §26.2.2): accepted only over TLS (or WSS) and
        // sent on only over TLS (see `proxy_targets` and `route::resolve`); over a plaintext
        // transport it is 416, never a silent downgrade.
        let secure_request = req.uri.scheme == Scheme::Sips && transport.is_secure();
        if req.uri.scheme != Scheme::Sip && !secure_request {
            return self.reply(now, tx, &req, 416, vec![]);
        }
        // §16.3 step 5: we support no option tags in Proxy-Require.
        let proxy_require: Vec<&str> = req
            .headers
            .get_all(&HeaderName::ProxyRequire)
            .map(|v| v.as_ref())
            .filter(|v: &&str| !v.is_empty())
            .collect();
        if !proxy_require.is_empty() && req.method != Method::Cancel && req.method != Method::Ack {
            let unsupported = proxy_require.join(", ");
            return self.reply(
                now,
                tx,
                &req,
                420,
                vec![(HeaderName::Unsupported, unsupported)],
            );
        }
        if req.method == Method::Cancel {
            if self.cancel_waiting(now, tx, &req) {
                return;
            }
            let (proxy, mut io) = self.io();
            return proxy.cancel(&mut io, now, tx, req);
        }
        if self.conference_in_dialog(now, Some(tx), &req)
            || self.presence_in_dialog(now, tx, &req, source, transport)
        {
            return;
        }
        // A Route to one of our flows (RFC 3327 Path from another node, RFC 5626 §5.3).
        let Some(mut req) = self.route_to_flow(now, tx, req, source, transport) else {
            return;
        };
        let routed = route::pop_own_routes(&self.local, &mut req);
        let in_dialog = req.headers.to_tag().is_some();
        let has_route = req.headers.get(&HeaderName::Route).is_some();
        if has_route && !routed {
            // A Route that does not start with us: we are not on this request's route set and do
            // not relay for others (no open relay). RFC 4475 wsinv gets this answer.
            return self.reply(now, tx, &req, 403, vec![]);
        }
        if has_route || (in_dialog && routed) {
            // Loose routing (§16.4): within a dialog, or along a pre-loaded route beyond us.
            let Some(loop_hash) = self.loop_free_hash(&req) else {
                return self.reply(now, tx, &req, 482, vec![]);
            };
            if !self.admit_held(now, tx, &req, source) {
                return;
            }
            let (proxy, mut io) = self.io();
            return proxy.forward_routed(&mut io, now, tx, req, transport, source, loop_hash);
        }
        if in_dialog {
            // An in-dialog request that did not come through our Record-Route (Kamailio: "Not here").
            return self.reply(now, tx, &req, 404, vec![]);
        }
        match req.method {
            Method::Register => self.register(now, tx, req, source, transport),
            Method::Options if req.uri.user.is_none() => {
                if let Some(r) = req.headers.get(&HeaderName::Require) {
                    let r = r.to_string();
                    return self.reply(now, tx, &req, 420, vec![(HeaderName::Unsupported, r)]);
                }
                self.reply(now, tx, &req, 200, vec![
                    (HeaderName::Allow, "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, REFER, SUBSCRIBE, NOTIFY, PRACK".into()),
                    (HeaderName::Accept, "application/sdp".into()),
                ])
            }
            _ if req.uri.user.is_none() => self.reply(now, tx, &req, 484, vec![]),
            _ => match self.loop_free_hash(&req) {
                Some(loop_hash) => self.route_to_user(now, tx, req, source, transport, loop_hash),
                None => self.reply(now, tx, &req, 482, vec![]),
            },
        }
    }

    /// §16.3 step 4, for requests this proxy is about to forward: the branch hash of `req`
    /// (§16.6 step 8), or `None` when one of our own Via entries carries it (a loop: 482).
    fn loop_free_hash(&self, req: &Request) -> Option<u64> {
        let hash = route::loop_hash(req);
        (!self.proxy.is_loop(&self.local, req, hash)).then_some(hash)
    }
}
