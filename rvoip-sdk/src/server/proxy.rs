//! Stateful proxy behaviour (RFC 3261 §16): forwarding with Via/Record-Route/Max-Forwards,
//! parallel forking with best-response selection (§16.7), CANCEL propagation (§16.10), stateless
//! forwarding of ACK for 2xx and of stray responses, and loop detection (§16.3 step 4).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;

use crate::server::core::ServerCore;
use crate::server::local::LocalIdentity;
use crate::sip::msg::{
    BRANCH_MAGIC, ByteString, HeaderName, Headers, Method, NameAddr, Request, Response, Scheme,
    Uri, Via,
};
use crate::sip::transaction::{ClientTxId, ServerTxId, TransportKind, new_branch};

/// Where one forwarded copy of a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The new Request-URI (a registered contact), or `None` to keep the received one.
    pub uri: Option<Uri>,
    /// The next-hop address.
    pub dest: SocketAddr,
    /// The transport to the next hop.
    pub transport: TransportKind,
}

/// One client transaction of a forked request.
#[derive(Debug)]
struct Branch {
    tx: ClientTxId,
    dest: SocketAddr,
    transport: TransportKind,
    provisional: bool,
    done: bool,
    cancel_sent: bool,
}

/// The proxy state of one server transaction: its branches and the best final response so far.
#[derive(Debug, Default)]
struct Context {
    branches: Vec<Branch>,
    best: Option<Response>,
    final_sent: bool,
    cancelled: bool,
    /// When Timer C fires for this INVITE (§16.6 step 11, §16.8); `None` for non-INVITE.
    timer_c: Option<Instant>,
}

/// Timer C: an INVITE branch that rings longer than this is cancelled (RFC 3261 §16.6: > 3 min).
pub const TIMER_C: Duration = Duration::from_secs(181);

/// Proxy state: contexts by server transaction, and the owner of each branch.
#[derive(Debug, Default)]
pub struct Proxy {
    contexts: HashMap<ServerTxId, Context>,
    branch_owner: HashMap<ClientTxId, ServerTxId>,
    /// Timer C deadlines; an entry is stale when its context's deadline moved or ended.
    timer_c: BinaryHeap<Reverse<(Instant, ServerTxId)>>,
}

impl Proxy {
    /// Live proxy contexts (one per server transaction being forwarded).
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// Whether no request is being forwarded.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// The earliest pending Timer C (may be stale; firing a stale entry does nothing).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_c.peek().map(|Reverse((t, _))| *t)
    }

    fn arm_timer_c(&mut self, stx: ServerTxId, at: Instant) {
        if let Some(ctx) = self.contexts.get_mut(&stx) {
            ctx.timer_c = Some(at);
            self.timer_c.push(Reverse((at, stx)));
        }
    }

    /// §16.3 step 4: the request carries a Via of ours whose branch hash equals this request's:
    /// it has looped (a spiral changes the Request-URI, so its hash differs).
    pub fn is_loop(&self, local: &LocalIdentity, req: &Request, hash: u64) -> bool {
        let tag = format!("{BRANCH_MAGIC}{hash:016x}");
        req.headers
            .get_all(&HeaderName::Via)
            .filter(|v| v.contains(tag.as_str()))
            .any(|v| {
                Via::parse(v)
                    .map(|via| {
                        local.is_local_via(&via)
                            && via.branch().is_some_and(|b| b.starts_with(&tag))
                    })
                    .unwrap_or(false)
            })
    }
}

/// FNV-1a, 64 bit: the branch hash of §16.6 step 8 (not security relevant).
fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The loop-detection hash of a request (§16.6 step 8): Request-URI, From, To, Call-ID, CSeq and
/// Proxy-Require, excluding the Via (so that a looped copy hashes the same).
pub fn loop_hash(req: &Request) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    h = fnv(h, req.uri.user.as_deref().unwrap_or("").as_bytes());
    h = fnv(h, req.uri.host.as_bytes());
    h = fnv(h, &req.uri.port.unwrap_or(0).to_be_bytes());
    h = fnv(h, req.uri.params.as_bytes());
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::ProxyRequire,
    ] {
        for v in req.headers.get_all(&name) {
            h = fnv(h, v.as_bytes());
        }
    }
    h
}

/// The next-hop address for a URI (RFC 3263 without DNS): IP literals and `localhost`;
/// `transport=tcp` selects TCP. `None` for names that would need a DNS lookup, and for every URI
/// that asks for a transport this server does not have (`sips:`, `transport=tls`, `ws`, `sctp`…):
/// such a request is refused, never sent in plaintext.
pub fn resolve(uri: &Uri) -> Option<(SocketAddr, TransportKind)> {
    if uri.scheme != Scheme::Sip {
        return None;
    }
    let transport = match uri.param("transport") {
        Some(Some(t)) if t.eq_ignore_ascii_case("tcp") => TransportKind::Tcp,
        Some(Some(t)) if t.eq_ignore_ascii_case("udp") => TransportKind::Udp,
        Some(_) => return None,
        None => TransportKind::Udp,
    };
    let host = match uri.param("maddr") {
        Some(Some(m)) => m,
        _ => uri.host.as_ref(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().ok()?
    };
    let port = uri.port.unwrap_or(5060);
    Some((SocketAddr::new(ip, port), transport))
}

/// Whether `uri` may be reached over the plaintext UDP/TCP this server has: a `sip:` URI with
/// no transport parameter or `transport=udp|tcp` (not `sips:`, TLS, WS or SCTP).
pub fn plaintext_reachable(uri: &Uri) -> bool {
    uri.scheme == Scheme::Sip
        && match uri.param("transport") {
            None => true,
            Some(Some(t)) => t.eq_ignore_ascii_case("udp") || t.eq_ignore_ascii_case("tcp"),
            Some(None) => false,
        }
}

/// Where a response goes back to, from its (next) Via: `received`/`rport` (RFC 3581) else sent-by.
fn via_destination(via: &Via) -> Option<(SocketAddr, TransportKind)> {
    let host = via.received().unwrap_or(&via.host);
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = match via.params.get("rport") {
        Some(Some(p)) => p.parse().ok()?,
        _ => via.port.unwrap_or(5060),
    };
    let transport = if via.transport.eq_ignore_ascii_case("TCP") {
        TransportKind::Tcp
    } else {
        TransportKind::Udp
    };
    Some((SocketAddr::new(ip, port), transport))
}

fn transport_token(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Udp => "UDP",
        TransportKind::Tcp => "TCP",
    }
}

/// Response ranking for §16.7 step 6: lower is better. 6xx beats everything, then 3xx, 4xx, 5xx;
/// a 408 we made up for a silent branch ranks last of the 4xx.
fn rank(status: u16) -> u16 {
    match status {
        600..=699 => 0,
        408 => 450,
        s => s,
    }
}

impl ServerCore {
    /// The forwarding targets for a user: its registered contacts, best q first. TCP bindings
    /// reuse the connection the REGISTER came on.
    pub(crate) fn proxy_targets(&self, now: Instant, user: &str) -> Vec<Target> {
        self.registrar
            .location
            .lookup(user, now)
            .into_iter()
            // A binding that needs TLS (sips:, transport=tls) or another transport we lack is
            // skipped: never reached in plaintext.
            .filter(|b| plaintext_reachable(&b.contact))
            .map(|b| {
                let (dest, transport) = match b.transport {
                    crate::server::location::Transport::Udp => {
                        resolve(&b.contact).unwrap_or((b.source, TransportKind::Udp))
                    }
                    // Stream bindings reuse the connection the REGISTER came on.
                    _ => (b.source, TransportKind::Tcp),
                };
                Target {
                    uri: Some(b.contact.clone()),
                    dest,
                    transport,
                }
            })
            .collect()
    }

    /// Adds Max-Forwards, Record-Route (if asked) and our Via to a request about to be forwarded
    /// (§16.6 steps 3, 4, 8). Returns the branch used.
    fn prepare_forward(
        &mut self,
        req: &mut Request,
        in_t: TransportKind,
        out_t: TransportKind,
        record_route: bool,
        hash: u64,
    ) -> String {
        let mf = match req.headers.max_forwards() {
            Ok(Some(n)) => n.saturating_sub(1),
            _ => 70,
        };
        req.headers.set(HeaderName::MaxForwards, mf.to_string());
        let rr = |i: Option<&crate::server::local::LocalInterface>| {
            i.map(|i| match i.transport {
                TransportKind::Udp => format!("<sip:{}:{};lr>", i.host, i.port),
                TransportKind::Tcp => format!("<sip:{}:{};transport=tcp;lr>", i.host, i.port),
            })
        };
        if record_route {
            if let Some(v) = rr(self.local.interface(in_t)) {
                req.headers.push_front(HeaderName::RecordRoute, v);
            }
            if in_t != out_t {
                // RFC 5658 double Record-Route when the transport changes.
                if let Some(v) = rr(self.local.interface(out_t)) {
                    req.headers.push_front(HeaderName::RecordRoute, v);
                }
            }
        }
        let random = new_branch();
        let branch = format!(
            "{BRANCH_MAGIC}{hash:016x}{}",
            random.trim_start_matches(BRANCH_MAGIC)
        );
        let (host, port) = match self
            .local
            .interface(out_t)
            .or_else(|| self.local.interfaces.first())
        {
            Some(i) => (i.host.clone(), i.port),
            None => ("127.0.0.1".to_string(), 5060),
        };
        req.headers.push_front(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {host}:{port};branch={branch}",
                transport_token(out_t)
            ),
        );
        self.stats.forwarded += 1;
        branch
    }

    /// Forwards `req` statefully to every target in parallel (§16.6, §16.7). `req` is the
    /// request as received (our Route entries removed, credentials consumed).
    pub(crate) fn fork(
        &mut self,
        now: Instant,
        stx: ServerTxId,
        req: Request,
        in_t: TransportKind,
        targets: Vec<Target>,
        hash: u64,
    ) {
        let in_dialog = req.headers.to().map(|t| t.tag().is_some()).unwrap_or(false);
        let record_route = !in_dialog
            && matches!(
                req.method,
                Method::Invite | Method::Subscribe | Method::Refer
            );
        let mut ctx = Context::default();
        for t in targets {
            let mut copy = req.clone();
            if let Some(uri) = &t.uri {
                copy.uri = uri.clone();
            }
            self.prepare_forward(&mut copy, in_t, t.transport, record_route, hash);
            let ctid = self.tl.send_request(now, copy, t.dest, t.transport);
            self.proxy.branch_owner.insert(ctid, stx);
            ctx.branches.push(Branch {
                tx: ctid,
                dest: t.dest,
                transport: t.transport,
                provisional: false,
                done: false,
                cancel_sent: false,
            });
        }
        let invite = req.method == Method::Invite;
        self.proxy.contexts.insert(stx, ctx);
        if invite {
            self.proxy.arm_timer_c(stx, now + TIMER_C);
        }
    }

    /// Runs Timer C (§16.8): every INVITE branch still ringing gets a CANCEL; a branch that
    /// never answered counts as a 408.
    pub(crate) fn proxy_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, stx))) = self.proxy.timer_c.peek() {
            if at > now {
                break;
            }
            self.proxy.timer_c.pop();
            let Some(ctx) = self.proxy.contexts.get_mut(&stx) else {
                continue;
            };
            if ctx.timer_c != Some(at) {
                continue;
            }
            ctx.timer_c = None;
            ctx.cancelled = true;
            let mut to_cancel = Vec::new();
            for b in ctx.branches.iter_mut().filter(|b| !b.done) {
                if b.provisional && !b.cancel_sent {
                    b.cancel_sent = true;
                    to_cancel.push((b.tx, b.dest, b.transport));
                } else if !b.provisional {
                    b.done = true;
                }
            }
            for (tx, dest, t) in to_cancel {
                self.send_cancel(now, tx, dest, t);
            }
            self.finish_if_done(now, stx);
        }
    }

    /// Forwards a request along its Route set or to its Request-URI (in-dialog requests).
    pub(crate) fn forward_routed(
        &mut self,
        now: Instant,
        stx: ServerTxId,
        req: Request,
        in_t: TransportKind,
        hash: u64,
    ) {
        let next = match req.headers.get(&HeaderName::Route) {
            Some(r) => NameAddr::parse(r).ok().and_then(|na| resolve(&na.uri)),
            None => resolve(&req.uri),
        };
        match next {
            Some((dest, transport)) => self.fork(
                now,
                stx,
                req,
                in_t,
                vec![Target {
                    uri: None,
                    dest,
                    transport,
                }],
                hash,
            ),
            None => self.reply(now, stx, &req, 503, vec![]),
        }
    }

    /// ACK for a 2xx (no server transaction): forwarded statelessly along the route (§16.11).
    pub(crate) fn proxy_ack(
        &mut self,
        _now: Instant,
        mut req: Request,
        _source: SocketAddr,
        in_t: TransportKind,
    ) {
        if req.method != Method::Ack || req.headers.top_via().is_err() {
            return;
        }
        let popped = self.pop_own_routes(&mut req);
        let next = match req.headers.get(&HeaderName::Route) {
            // Not on this ACK's route set: not relayed (as for other requests, 403 there).
            Some(_) if !popped => None,
            Some(r) => NameAddr::parse(r).ok().and_then(|na| resolve(&na.uri)),
            // Our Record-Route brought it here: on to the remote target.
            None if popped => resolve(&req.uri),
            None => None,
        };
        let Some((dest, out_t)) = next else { return };
        if let Ok(Some(0)) = req.headers.max_forwards() {
            return;
        }
        // Deterministic branch for a stateless hop (§16.11): derived from the received branch.
        let h = fnv(
            0xcbf2_9ce4_8422_2325,
            req.headers
                .top_via()
                .ok()
                .and_then(|v| v.branch().map(|b| b.as_bytes().to_vec()))
                .unwrap_or_default()
                .as_slice(),
        );
        self.prepare_forward(&mut req, in_t, out_t, false, h);
        self.tl.send_stateless(dest, out_t, req.to_bytes());
    }

    /// A response on a branch (§16.7).
    pub(crate) fn on_response(&mut self, now: Instant, ctid: ClientTxId, mut resp: Response) {
        let Some(&stx) = self.proxy.branch_owner.get(&ctid) else {
            // Responses to our CANCELs end here; a 2xx retransmission after the context is gone
            // is still forwarded (§16.7 step 5).
            let invite = resp
                .headers
                .cseq()
                .map(|c| c.method == Method::Invite)
                .unwrap_or(false);
            if invite && (200..300).contains(&resp.status) {
                self.forward_response_stateless(resp);
            }
            return;
        };
        let status = resp.status;
        resp.headers.remove_first(&HeaderName::Via);
        let Some(ctx) = self.proxy.contexts.get_mut(&stx) else {
            return;
        };
        let Some(bi) = ctx.branches.iter().position(|b| b.tx == ctid) else {
            return;
        };
        if status < 200 {
            let b = &mut ctx.branches[bi];
            b.provisional = true;
            let cancel_now = ctx.cancelled && !b.cancel_sent && !b.done;
            if cancel_now {
                b.cancel_sent = true;
            }
            let (dest, t, fwd) = (b.dest, b.transport, status != 100 && !ctx.final_sent);
            if cancel_now {
                self.send_cancel(now, ctid, dest, t);
            }
            if fwd {
                self.tl.respond(now, stx, resp);
            }
            if status > 100
                && self
                    .proxy
                    .contexts
                    .get(&stx)
                    .is_some_and(|c| c.timer_c.is_some())
            {
                self.proxy.arm_timer_c(stx, now + TIMER_C);
            }
            return;
        }
        ctx.branches[bi].done = true;
        if (200..300).contains(&status) || (600..700).contains(&status) && !ctx.final_sent {
            let first_final = !ctx.final_sent;
            ctx.final_sent = true;
            self.tl.respond(now, stx, resp);
            if first_final {
                self.cancel_pending_branches(now, stx);
            }
        } else if !ctx.final_sent
            && ctx
                .best
                .as_ref()
                .is_none_or(|b| rank(status) < rank(b.status))
        {
            ctx.best = Some(resp);
        }
        self.finish_if_done(now, stx);
    }

    /// Timer B/F on a branch: as if a 408 had arrived (§16.7 step 2 / §16.8).
    pub(crate) fn on_branch_timeout(&mut self, now: Instant, ctid: ClientTxId) {
        let Some(&stx) = self.proxy.branch_owner.get(&ctid) else {
            return;
        };
        if let Some(ctx) = self.proxy.contexts.get_mut(&stx) {
            if let Some(b) = ctx.branches.iter_mut().find(|b| b.tx == ctid) {
                b.done = true;
            }
        }
        self.finish_if_done(now, stx);
    }

    /// When every branch is final: send the best response if no final went yet, drop the context.
    fn finish_if_done(&mut self, now: Instant, stx: ServerTxId) {
        let Some(ctx) = self.proxy.contexts.get(&stx) else {
            return;
        };
        if !ctx.branches.iter().all(|b| b.done) {
            return;
        }
        let Some(ctx) = self.proxy.contexts.remove(&stx) else {
            return;
        };
        for b in &ctx.branches {
            self.proxy.branch_owner.remove(&b.tx);
        }
        if ctx.final_sent {
            return;
        }
        match ctx.best {
            Some(mut best) => {
                if best.status == 503 {
                    // §16.7 step 6: a 503 from downstream must not make upstream think we are down.
                    best.status = 500;
                    best.reason = ByteString::from_static("Server Internal Error");
                }
                self.tl.respond(now, stx, best);
            }
            None => {
                if let Some(req) = self.tl.server_request(stx).cloned() {
                    self.reply(now, stx, &req, 408, vec![]);
                }
            }
        }
    }

    /// Cancels every branch without a final response (§16.7 step 10, §16.10). Branches without
    /// a provisional response are cancelled when one arrives (§9.1).
    fn cancel_pending_branches(&mut self, now: Instant, stx: ServerTxId) {
        let Some(ctx) = self.proxy.contexts.get_mut(&stx) else {
            return;
        };
        ctx.cancelled = true;
        let mut to_cancel = Vec::new();
        for b in ctx
            .branches
            .iter_mut()
            .filter(|b| !b.done && b.provisional && !b.cancel_sent)
        {
            b.cancel_sent = true;
            to_cancel.push((b.tx, b.dest, b.transport));
        }
        for (tx, dest, t) in to_cancel {
            self.send_cancel(now, tx, dest, t);
        }
    }

    /// Sends a CANCEL for a branch (§9.1): same Request-URI, Call-ID, From, To, CSeq number, top
    /// Via and Route as the INVITE it cancels.
    fn send_cancel(&mut self, now: Instant, ctid: ClientTxId, dest: SocketAddr, t: TransportKind) {
        let Some(orig) = self.tl.client_request(ctid) else {
            return;
        };
        let Ok(cseq) = orig.headers.cseq() else {
            return;
        };
        let mut h = Headers::with_capacity(8);
        if let Some(v) = orig.headers.get(&HeaderName::Via) {
            h.push(HeaderName::Via, v.clone());
        }
        h.push(HeaderName::MaxForwards, "70");
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            if let Some(v) = orig.headers.get(&name) {
                h.push(name, v.clone());
            }
        }
        h.push(HeaderName::CSeq, format!("{} CANCEL", cseq.seq));
        for r in orig.headers.get_all(&HeaderName::Route) {
            h.push(HeaderName::Route, r.clone());
        }
        let cancel = Request {
            method: Method::Cancel,
            uri: orig.uri.clone(),
            headers: h,
            body: Bytes::new(),
        };
        self.tl.send_request(now, cancel, dest, t);
    }

    /// A CANCEL received (§16.10): 200 to it, then CANCEL on every pending branch; the 487s
    /// from downstream become the final response. 481 if it matches no INVITE.
    pub(crate) fn proxy_cancel(&mut self, now: Instant, tx: ServerTxId, req: Request) {
        let Some(inv) = self.tl.matching_invite(&req) else {
            return self.reply(now, tx, &req, 481, vec![]);
        };
        self.reply(now, tx, &req, 200, vec![]);
        if self.tl.server_is_final(inv) {
            return;
        }
        let pending = self.proxy.contexts.get(&inv).is_some_and(|c| !c.final_sent);
        if pending {
            self.cancel_pending_branches(now, inv);
        } else if !self.proxy.contexts.contains_key(&inv) {
            // Not forwarded anywhere (still being processed): answer 487 ourselves.
            if let Some(ireq) = self.tl.server_request(inv).cloned() {
                self.reply(now, inv, &ireq, 487, vec![]);
            }
        }
    }

    /// Forwards a response that matches no transaction (§16.7 step 3 / §18.1.2): only when the
    /// top Via is ours; it is removed and the response goes to the next Via.
    pub(crate) fn forward_response_stateless(&mut self, mut resp: Response) {
        let Ok(top) = resp.headers.top_via() else {
            return;
        };
        if !self.local.is_local_via(&top) {
            return;
        }
        resp.headers.remove_first(&HeaderName::Via);
        let Ok(next) = resp.headers.top_via() else {
            return;
        };
        if let Some((dest, t)) = via_destination(&next) {
            self.tl.send_stateless(dest, t, resp.to_bytes());
        }
    }
}
