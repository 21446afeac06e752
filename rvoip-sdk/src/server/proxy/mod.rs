//! The stateful proxy (RFC 3261 §16) as one object: forwarding with Via/Record-Route/
//! Max-Forwards, parallel forking with best-response selection (§16.7), CANCEL propagation
//! (§16.10), stateless forwarding of ACK for 2xx and of stray responses, loop detection (§16.3
//! step 4), the calls it record-routed ([`dialogs`]: NAT flows, BYE on media timeout), and the
//! explicit points where SDP passes ([`media::MediaHook`]: initial INVITE per branch, re-INVITE,
//! UPDATE, 18x/2xx with SDP, ACK with SDP, and the end of a call).
//!
//! [`Proxy`] knows nothing of the registrar: the core hands it the targets of a request. It
//! sends through the transaction layer it is given in an [`Io`].

pub mod anchor;
pub mod dialogs;
pub mod media;
pub mod rewrite;
pub mod route;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use self::dialogs::BranchInfo;
pub use self::dialogs::{CallRecord, Dialogs, PartyInfo};
pub use self::media::{EndReason, MediaHook, NoMedia, Party, SdpPassage};
use self::route::{fnv, pop_own_routes, rank, transport_token, via_destination};
pub use self::route::{is_private, loop_hash, plaintext_reachable, resolve, sender_behind_nat};
use crate::server::local::LocalIdentity;
use crate::server::reply::{Replier, Stats};
use crate::sip::msg::{
    BRANCH_MAGIC, ByteString, HeaderName, Headers, Method, NameAddr, Request, Response, Uri,
};
use crate::sip::transaction::{
    ClientTxId, ServerTxId, TransactionLayer, TransportKind, new_branch,
};

/// Where one forwarded copy of a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The new Request-URI (a registered contact), or `None` to keep the received one.
    pub uri: Option<Uri>,
    /// The next-hop address.
    pub dest: SocketAddr,
    /// The transport to the next hop.
    pub transport: TransportKind,
    /// Whether the target sits behind a NAT (`dest` is then its flow, not its Contact).
    pub nat: bool,
}

/// What the proxy needs from its owner for one call: the transaction layer to send on, the
/// server's identity (Via, Record-Route), the replier for its own responses and the counters.
pub(crate) struct Io<'a> {
    pub tl: &'a mut TransactionLayer,
    pub local: &'a LocalIdentity,
    pub replier: &'a mut Replier,
    pub stats: &'a mut Stats,
}

impl Io<'_> {
    fn reply(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        status: u16,
        extra: Vec<(HeaderName, String)>,
    ) {
        self.replier
            .reply(self.tl, self.stats, now, tx, req, status, extra);
    }
}

/// One client transaction of a forked request.
#[derive(Debug)]
struct Branch {
    tx: ClientTxId,
    /// The media branch index (fork index of an initial INVITE, else the answered branch).
    index: u32,
    dest: SocketAddr,
    transport: TransportKind,
    provisional: bool,
    done: bool,
    cancel_sent: bool,
}

/// The proxy state of one server transaction: its branches and the best final response so far.
#[derive(Debug)]
struct Context {
    branches: Vec<Branch>,
    best: Option<Response>,
    final_sent: bool,
    cancelled: bool,
    /// When Timer C fires for this INVITE (§16.6 step 11, §16.8); `None` for non-INVITE.
    timer_c: Option<Instant>,
    /// The request's Call-ID, method and sender, for the SDP hook points of its responses.
    call_id: String,
    method: Method,
    sender: Party,
    /// Whether this is the dialog-creating INVITE.
    initial: bool,
    /// The request's Via, From, To, Call-ID and CSeq, to answer it ourselves (408): the
    /// transaction layer drops its copy of the request once a provisional response went out.
    head: Request,
}

/// Timer C: an INVITE branch that rings longer than this is cancelled (RFC 3261 §16.6: > 3 min).
pub const TIMER_C: Duration = Duration::from_secs(181);

/// How often idle call records are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Proxy state: contexts by server transaction, the owner of each branch, the calls it
/// record-routed, and the media hook.
pub struct Proxy {
    contexts: HashMap<ServerTxId, Context>,
    branch_owner: HashMap<ClientTxId, ServerTxId>,
    /// Timer C deadlines; an entry is stale when its context's deadline moved or ended.
    timer_c: BinaryHeap<Reverse<(Instant, ServerTxId)>>,
    dialogs: Dialogs,
    media: Box<dyn MediaHook>,
    next_sweep: Option<Instant>,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy::new(Box::new(NoMedia))
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("contexts", &self.contexts.len())
            .field("calls", &self.dialogs.len())
            .finish()
    }
}

/// Whether a method carries RFC 3264 offers/answers in its body and its responses.
fn carries_sdp(m: &Method) -> bool {
    matches!(
        m,
        Method::Invite | Method::Ack | Method::Update | Method::Prack
    )
}

/// Whether a body is a session description (Content-Type application/sdp).
fn is_sdp(headers: &Headers, body: &Bytes) -> bool {
    !body.is_empty()
        && headers.content_type().is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/sdp")
        })
}

fn call_id_of(headers: &Headers) -> String {
    headers
        .get(&HeaderName::CallId)
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// What a response to `req` is built from (RFC 3261 §8.2.6.2): its Via, From, To, Call-ID and
/// CSeq, without the other headers and the body.
fn response_head(req: &Request) -> Request {
    let mut headers = Headers::with_capacity(6);
    for h in req.headers.iter().filter(|h| {
        matches!(
            h.name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        )
    }) {
        headers.push(h.name.clone(), h.value.clone());
    }
    Request {
        method: req.method.clone(),
        uri: req.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

fn from_tag(req: &Request) -> Option<String> {
    req.headers
        .from()
        .ok()
        .and_then(|f| f.tag().map(|t| t.to_string()))
}

impl Proxy {
    /// A proxy whose SDP hook points call `media`.
    pub fn new(media: Box<dyn MediaHook>) -> Proxy {
        Proxy {
            contexts: HashMap::new(),
            branch_owner: HashMap::new(),
            timer_c: BinaryHeap::new(),
            dialogs: Dialogs::default(),
            media,
            next_sweep: None,
        }
    }

    /// Live proxy contexts (one per server transaction being forwarded).
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// Whether no request is being forwarded.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// The calls this proxy record-routed and still remembers.
    pub fn dialogs(&self) -> &Dialogs {
        &self.dialogs
    }

    /// The earliest pending timer: Timer C (may be stale; firing a stale entry does nothing),
    /// the media hook's, the call-record sweep.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timer_c.peek().map(|Reverse((t, _))| *t),
            self.media.poll_timeout(),
            self.next_sweep,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn arm_timer_c(&mut self, stx: ServerTxId, at: Instant) {
        if let Some(ctx) = self.contexts.get_mut(&stx) {
            ctx.timer_c = Some(at);
            self.timer_c.push(Reverse((at, stx)));
        }
    }

    /// §16.3 step 4: the request carries a Via of ours with this request's hash: a loop.
    pub fn is_loop(&self, local: &LocalIdentity, req: &Request, hash: u64) -> bool {
        route::is_loop(local, req, hash)
    }

    /// Adds Max-Forwards, Record-Route (if asked) and our Via to a request about to be forwarded
    /// (§16.6 steps 3, 4, 8). Returns the branch used.
    fn prepare_forward(
        io: &mut Io<'_>,
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
            if let Some(v) = rr(io.local.interface(in_t)) {
                req.headers.push_front(HeaderName::RecordRoute, v);
            }
            if in_t != out_t {
                // RFC 5658 double Record-Route when the transport changes.
                if let Some(v) = rr(io.local.interface(out_t)) {
                    req.headers.push_front(HeaderName::RecordRoute, v);
                }
            }
        }
        let random = new_branch();
        let branch = format!(
            "{BRANCH_MAGIC}{hash:016x}{}",
            random.trim_start_matches(BRANCH_MAGIC)
        );
        let (host, port) = match io
            .local
            .interface(out_t)
            .or_else(|| io.local.interfaces.first())
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
        io.stats.forwarded += 1;
        branch
    }

    /// Forwards `req` statefully to every target in parallel (§16.6, §16.7). `req` is the
    /// request as received from `source` (our Route entries removed, credentials consumed).
    /// An initial INVITE starts a call record; its SDP passes the media hook once per branch,
    /// and a refusal there (503: no relay ports; 488) answers the request instead.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fork(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        stx: ServerTxId,
        req: Request,
        in_t: TransportKind,
        source: SocketAddr,
        targets: Vec<Target>,
        hash: u64,
    ) {
        let in_dialog = req.headers.to().map(|t| t.tag().is_some()).unwrap_or(false);
        let record_route = !in_dialog
            && matches!(
                req.method,
                Method::Invite | Method::Subscribe | Method::Refer
            );
        let call_id = call_id_of(&req.headers);
        let initial = !in_dialog && req.method == Method::Invite;
        let (sender, media_branch, nat) = if initial {
            let caller_nat = sender_behind_nat(&req, source, in_t);
            let contact = req
                .headers
                .get(&HeaderName::Contact)
                .and_then(|c| NameAddr::parse(c).ok())
                .map(|na| na.uri.to_string());
            self.dialogs.insert(
                &call_id,
                CallRecord {
                    caller_tag: from_tag(&req).unwrap_or_default(),
                    caller: PartyInfo {
                        flow: Some((source, in_t)),
                        nat: caller_nat,
                        contact,
                        header: req.headers.get(&HeaderName::From).map(|v| v.to_string()),
                        cseq: req.headers.cseq().map(|c| c.seq).unwrap_or(1),
                    },
                    callee: PartyInfo::default(),
                    branches: targets
                        .iter()
                        .map(|t| BranchInfo {
                            dest: t.dest,
                            transport: t.transport,
                            nat: t.nat,
                        })
                        .collect(),
                    answered: None,
                    last_activity: now,
                },
            );
            self.arm_sweep(now);
            (Party::Caller, 0, caller_nat)
        } else {
            match self.dialogs.get(&call_id) {
                Some(rec) => (
                    rec.sender_of(from_tag(&req).as_deref()),
                    rec.answered.unwrap_or(0),
                    rec.any_nat(),
                ),
                None => (Party::Caller, 0, false),
            }
        };
        // Run the SDP hook for every copy before sending any, so that a refusal sends nothing.
        let with_sdp = carries_sdp(&req.method) && is_sdp(&req.headers, &req.body);
        let mut copies = Vec::with_capacity(targets.len());
        for (i, t) in targets.into_iter().enumerate() {
            let mut copy = req.clone();
            if let Some(uri) = &t.uri {
                copy.uri = uri.clone();
            }
            let index = if initial { i as u32 } else { media_branch };
            if with_sdp {
                let p = SdpPassage {
                    call_id: &call_id,
                    branch: index,
                    sender,
                    method: req.method.clone(),
                    status: None,
                    initial,
                    source: Some(source),
                    nat: nat || t.nat,
                };
                if let Err(status) = self.media.on_sdp(now, &p, &mut copy.body) {
                    tracing::debug!(%call_id, status, "media hook refused the request");
                    if initial {
                        self.media.on_call_end(now, &call_id, EndReason::Failure);
                        self.dialogs.remove(&call_id);
                    }
                    return io.reply(now, stx, &req, status, vec![]);
                }
            }
            copies.push((index, t, copy));
        }
        let mut ctx = Context {
            branches: Vec::with_capacity(copies.len()),
            best: None,
            final_sent: false,
            cancelled: false,
            timer_c: None,
            call_id,
            method: req.method.clone(),
            sender,
            initial,
            head: response_head(&req),
        };
        for (index, t, mut copy) in copies {
            Self::prepare_forward(io, &mut copy, in_t, t.transport, record_route, hash);
            let ctid = io.tl.send_request(now, copy, t.dest, t.transport);
            self.branch_owner.insert(ctid, stx);
            ctx.branches.push(Branch {
                tx: ctid,
                index,
                dest: t.dest,
                transport: t.transport,
                provisional: false,
                done: false,
                cancel_sent: false,
            });
        }
        let invite = req.method == Method::Invite;
        self.contexts.insert(stx, ctx);
        if invite {
            self.arm_timer_c(stx, now + TIMER_C);
        }
    }

    fn arm_sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
    }

    /// The next hop of an in-dialog request that has no Route left: the other party's flow when
    /// it is behind a NAT (its Contact is unreachable), else its Request-URI. Updates the call
    /// record (sender's CSeq and flow, activity). `None` when the URI cannot be used.
    fn in_dialog_next_hop(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        req: &Request,
        source: SocketAddr,
        in_t: TransportKind,
    ) -> Option<(SocketAddr, TransportKind, bool)> {
        let call_id = call_id_of(&req.headers);
        if let Some(rec) = self.dialogs.get_mut(&call_id) {
            rec.last_activity = now;
            let sender = rec.sender_of(from_tag(req).as_deref());
            let s = rec.party_mut(sender);
            if let Ok(c) = req.headers.cseq() {
                if req.method != Method::Ack && req.method != Method::Cancel {
                    s.cseq = s.cseq.max(c.seq);
                }
            }
            if s.nat {
                // A NAT may rebind; the newest source is the flow.
                s.flow = Some((source, in_t));
            }
            let dst = rec.party(sender.other());
            if let (true, Some((a, t))) = (dst.nat, dst.flow) {
                io.stats.nat_flows_used += 1;
                return Some((a, t, true));
            }
        }
        resolve(&req.uri).map(|(a, t)| (a, t, false))
    }

    /// Runs Timer C (§16.8), the media hook's timers (a media timeout ends the call with BYE to
    /// both sides) and the sweep of idle call records.
    pub(crate) fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.run_timer_c(io, now);
        self.media.handle_timeout(now);
        while let Some(call_id) = self.media.poll_media_timeout() {
            self.end_call_for_media_timeout(io, now, &call_id);
        }
        if self.next_sweep.is_some_and(|t| t <= now) {
            for call_id in self.dialogs.sweep(now) {
                self.media.on_call_end(now, &call_id, EndReason::Timeout);
            }
            self.next_sweep = (!self.dialogs.is_empty()).then(|| now + SWEEP_INTERVAL);
        }
    }

    /// Timer C (§16.8): cancels the branches that rang too long (a branch without a provisional
    /// response counts as a 408) and re-arms for 64·T1; a branch whose CANCEL got no final
    /// response by then is given up as a 408 (§9.1), so that a vanished callee cannot hold the
    /// context (and its relay ports) forever.
    fn run_timer_c(&mut self, io: &mut Io<'_>, now: Instant) {
        while let Some(&Reverse((at, stx))) = self.timer_c.peek() {
            if at > now {
                break;
            }
            self.timer_c.pop();
            let Some(ctx) = self.contexts.get_mut(&stx) else {
                continue;
            };
            if ctx.timer_c != Some(at) {
                continue;
            }
            ctx.timer_c = None;
            ctx.cancelled = true;
            let mut to_cancel = Vec::new();
            let mut give_up = Vec::new();
            for b in ctx.branches.iter_mut().filter(|b| !b.done) {
                if b.cancel_sent {
                    give_up.push(b.tx);
                } else if b.provisional {
                    b.cancel_sent = true;
                    to_cancel.push((b.tx, b.dest, b.transport));
                } else {
                    b.done = true;
                }
            }
            let rearm = !to_cancel.is_empty();
            for (tx, dest, t) in to_cancel {
                Self::send_cancel(io, now, tx, dest, t);
            }
            // Ends the INVITE client transaction with a Timeout event (handled as a 408 by
            // `on_branch_timeout`).
            for tx in give_up {
                io.tl.transport_error(tx);
            }
            if rearm {
                self.arm_timer_c(stx, now + 64 * io.tl.timer_config().t1);
            }
            self.finish_if_done(io, now, stx);
        }
    }

    /// Sends BYE to both parties of an answered call whose media stopped (RFC 3261 §15.1.1 as a
    /// B2BUA-ish proxy would, like Kamailio's `dlg_end_dlg`), and forgets the call.
    fn end_call_for_media_timeout(&mut self, io: &mut Io<'_>, now: Instant, call_id: &str) {
        let Some(rec) = self.dialogs.remove(call_id) else {
            self.media
                .on_call_end(now, call_id, EndReason::MediaTimeout);
            return;
        };
        tracing::info!(%call_id, "media timeout: ending the call with BYE to both sides");
        io.stats.media_timeouts += 1;
        for to in [Party::Caller, Party::Callee] {
            let (target, from_p) = (rec.party(to), rec.party(to.other()));
            let (Some(contact), Some(to_hdr), Some(from_hdr)) =
                (&target.contact, &target.header, &from_p.header)
            else {
                continue;
            };
            let Ok(uri) = Uri::parse(&ByteString::from(contact.as_str())) else {
                continue;
            };
            let dest = match (target.nat, target.flow) {
                (true, Some(f)) => Some(f),
                _ => resolve(&uri).or(target.flow),
            };
            let Some((dest, t)) = dest else { continue };
            let mut h = Headers::with_capacity(8);
            h.push(HeaderName::MaxForwards, "70");
            h.push(HeaderName::From, from_hdr.clone());
            h.push(HeaderName::To, to_hdr.clone());
            h.push(HeaderName::CallId, call_id.to_string());
            h.push(
                HeaderName::CSeq,
                format!("{} BYE", from_p.cseq.saturating_add(1)),
            );
            h.push(
                HeaderName::Other(ByteString::from_static("Reason")),
                "SIP;cause=408;text=\"media timeout\"".to_string(),
            );
            let mut bye = Request {
                method: Method::Bye,
                uri,
                headers: h,
                body: Bytes::new(),
            };
            let hash = loop_hash(&bye);
            Self::prepare_forward(io, &mut bye, t, t, false, hash);
            io.tl.send_request(now, bye, dest, t);
        }
        self.media
            .on_call_end(now, call_id, EndReason::MediaTimeout);
    }

    /// Forwards a request along its Route set, or to the other party of the call (its NAT
    /// flow or its Request-URI) when no Route is left. A BYE ends the call's media.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_routed(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        stx: ServerTxId,
        req: Request,
        in_t: TransportKind,
        source: SocketAddr,
        hash: u64,
    ) {
        let next = match req.headers.get(&HeaderName::Route) {
            Some(r) => NameAddr::parse(r)
                .ok()
                .and_then(|na| resolve(&na.uri))
                .map(|(a, t)| (a, t, false)),
            None => self.in_dialog_next_hop(io, now, &req, source, in_t),
        };
        if req.method == Method::Bye {
            let call_id = call_id_of(&req.headers);
            if self.dialogs.remove(&call_id).is_some() {
                self.media.on_call_end(now, &call_id, EndReason::Bye);
            }
        }
        match next {
            Some((dest, transport, nat)) => self.fork(
                io,
                now,
                stx,
                req,
                in_t,
                source,
                vec![Target {
                    uri: None,
                    dest,
                    transport,
                    nat,
                }],
                hash,
            ),
            None => io.reply(now, stx, &req, 503, vec![]),
        }
    }

    /// ACK for a 2xx (no server transaction): forwarded statelessly along the route (§16.11),
    /// to the callee's NAT flow when needed; an SDP answer in it (late offer) passes the hook.
    pub(crate) fn ack(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        mut req: Request,
        source: SocketAddr,
        in_t: TransportKind,
    ) {
        if req.method != Method::Ack || req.headers.top_via().is_err() {
            return;
        }
        let popped = pop_own_routes(io.local, &mut req);
        let next = match req.headers.get(&HeaderName::Route) {
            // Not on this ACK's route set: not relayed (as for other requests, 403 there).
            Some(_) if !popped => None,
            Some(r) => NameAddr::parse(r).ok().and_then(|na| resolve(&na.uri)),
            // Our Record-Route brought it here: on to the remote target.
            None if popped => self
                .in_dialog_next_hop(io, now, &req, source, in_t)
                .map(|(a, t, _)| (a, t)),
            None => None,
        };
        let Some((dest, out_t)) = next else { return };
        if let Ok(Some(0)) = req.headers.max_forwards() {
            return;
        }
        if is_sdp(&req.headers, &req.body) {
            let call_id = call_id_of(&req.headers);
            if let Some(rec) = self.dialogs.get(&call_id) {
                let p = SdpPassage {
                    call_id: &call_id,
                    branch: rec.answered.unwrap_or(0),
                    sender: rec.sender_of(from_tag(&req).as_deref()),
                    method: Method::Ack,
                    status: None,
                    initial: true,
                    source: Some(source),
                    nat: rec.any_nat(),
                };
                let mut body = req.body.clone();
                if self.media.on_sdp(now, &p, &mut body).is_ok() {
                    req.body = body;
                }
            }
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
        Self::prepare_forward(io, &mut req, in_t, out_t, false, h);
        io.tl.send_stateless(dest, out_t, req.to_bytes());
    }

    /// Passes a response's SDP through the media hook (the answer or a late offer).
    fn response_sdp(&mut self, now: Instant, stx: ServerTxId, bi: usize, resp: &mut Response) {
        let Some(ctx) = self.contexts.get(&stx) else {
            return;
        };
        if !carries_sdp(&ctx.method) || !is_sdp(&resp.headers, &resp.body) {
            return;
        }
        let Some(b) = ctx.branches.get(bi) else {
            return;
        };
        let nat = self.dialogs.get(&ctx.call_id).is_some_and(|r| {
            r.any_nat() || r.branches.get(b.index as usize).is_some_and(|br| br.nat)
        });
        let p = SdpPassage {
            call_id: &ctx.call_id,
            branch: b.index,
            sender: ctx.sender.other(),
            method: ctx.method.clone(),
            status: Some(resp.status),
            initial: ctx.initial,
            source: Some(b.dest),
            nat,
        };
        let mut body = resp.body.clone();
        if self.media.on_sdp(now, &p, &mut body).is_ok() {
            resp.body = body;
        }
    }

    /// A 2xx retransmitted after its transaction ended carries the same SDP as the first: it is
    /// rewritten the same way, so the caller never sees the callee's own address.
    fn retransmitted_2xx_sdp(&mut self, now: Instant, resp: &mut Response) {
        if !is_sdp(&resp.headers, &resp.body) {
            return;
        }
        let call_id = call_id_of(&resp.headers);
        let Some(rec) = self.dialogs.get(&call_id) else {
            return;
        };
        let p = SdpPassage {
            call_id: &call_id,
            branch: rec.answered.unwrap_or(0),
            sender: Party::Callee,
            method: Method::Invite,
            status: Some(resp.status),
            initial: true,
            source: rec.callee.flow.map(|(a, _)| a),
            nat: rec.any_nat(),
        };
        let mut body = resp.body.clone();
        if self.media.on_sdp(now, &p, &mut body).is_ok() {
            resp.body = body;
        }
    }

    /// The initial INVITE was answered on branch `bi`: record the callee and collapse the media.
    fn answered(&mut self, now: Instant, stx: ServerTxId, bi: usize, resp: &Response) {
        let Some(ctx) = self.contexts.get(&stx) else {
            return;
        };
        if !ctx.initial {
            return;
        }
        let Some(b) = ctx.branches.get(bi) else {
            return;
        };
        let (index, call_id) = (b.index, ctx.call_id.clone());
        if let Some(rec) = self.dialogs.get_mut(&call_id) {
            if rec.answered.is_some() {
                return;
            }
            rec.answered = Some(index);
            rec.last_activity = now;
            let nat = rec.branches.get(index as usize).is_some_and(|br| br.nat);
            rec.callee = PartyInfo {
                flow: Some((b.dest, b.transport)),
                nat,
                contact: resp
                    .headers
                    .get(&HeaderName::Contact)
                    .and_then(|c| NameAddr::parse(c).ok())
                    .map(|na| na.uri.to_string()),
                header: resp.headers.get(&HeaderName::To).map(|v| v.to_string()),
                cseq: 0,
            };
        }
        self.media.on_answered(now, &call_id, index);
    }

    /// A response on a branch (§16.7).
    pub(crate) fn on_response(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        ctid: ClientTxId,
        mut resp: Response,
    ) {
        let Some(&stx) = self.branch_owner.get(&ctid) else {
            // Responses to our CANCELs and BYEs end here; a 2xx retransmission after the context
            // is gone is still forwarded (§16.7 step 5).
            let invite = resp
                .headers
                .cseq()
                .map(|c| c.method == Method::Invite)
                .unwrap_or(false);
            if invite && (200..300).contains(&resp.status) {
                self.retransmitted_2xx_sdp(now, &mut resp);
                self.forward_response_stateless(io, resp);
            }
            return;
        };
        let status = resp.status;
        resp.headers.remove_first(&HeaderName::Via);
        let Some(ctx) = self.contexts.get_mut(&stx) else {
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
                Self::send_cancel(io, now, ctid, dest, t);
            }
            if fwd {
                self.response_sdp(now, stx, bi, &mut resp);
                io.tl.respond(now, stx, resp);
            }
            if status > 100 && self.contexts.get(&stx).is_some_and(|c| c.timer_c.is_some()) {
                self.arm_timer_c(stx, now + TIMER_C);
            }
            return;
        }
        ctx.branches[bi].done = true;
        if (200..300).contains(&status) || (600..700).contains(&status) && !ctx.final_sent {
            let first_final = !ctx.final_sent;
            ctx.final_sent = true;
            if (200..300).contains(&status) {
                // SDP first: a late offer in the 2xx creates the branch's relay contexts,
                // which `answered` then confirms (arming their media timeout).
                self.response_sdp(now, stx, bi, &mut resp);
                self.answered(now, stx, bi, &resp);
            } else {
                self.branch_failed(now, stx, bi);
            }
            io.tl.respond(now, stx, resp);
            if first_final {
                self.cancel_pending_branches(io, now, stx);
            }
            if (600..700).contains(&status) {
                self.call_failed(now, stx);
            }
        } else {
            if !ctx.final_sent
                && ctx
                    .best
                    .as_ref()
                    .is_none_or(|b| rank(status) < rank(b.status))
            {
                ctx.best = Some(resp);
            }
            self.branch_failed(now, stx, bi);
        }
        self.finish_if_done(io, now, stx);
    }

    /// A branch of the initial INVITE ended without a 2xx.
    fn branch_failed(&mut self, now: Instant, stx: ServerTxId, bi: usize) {
        if let Some(ctx) = self.contexts.get(&stx) {
            if let (true, Some(b)) = (ctx.initial, ctx.branches.get(bi)) {
                let (call_id, index) = (ctx.call_id.clone(), b.index);
                let why = if ctx.cancelled {
                    EndReason::Cancel
                } else {
                    EndReason::Failure
                };
                self.media.on_branch_end(now, &call_id, index, why);
            }
        }
    }

    /// The initial INVITE got a final non-2xx upstream: the call is over.
    fn call_failed(&mut self, now: Instant, stx: ServerTxId) {
        let Some(ctx) = self.contexts.get(&stx) else {
            return;
        };
        if !ctx.initial {
            return;
        }
        let answered = self
            .dialogs
            .get(&ctx.call_id)
            .is_some_and(|r| r.answered.is_some());
        if answered {
            return;
        }
        let why = if ctx.cancelled {
            EndReason::Cancel
        } else {
            EndReason::Failure
        };
        let call_id = ctx.call_id.clone();
        self.dialogs.remove(&call_id);
        self.media.on_call_end(now, &call_id, why);
    }

    /// Timer B/F on a branch: as if a 408 had arrived (§16.7 step 2 / §16.8).
    pub(crate) fn on_branch_timeout(&mut self, io: &mut Io<'_>, now: Instant, ctid: ClientTxId) {
        let Some(&stx) = self.branch_owner.get(&ctid) else {
            return;
        };
        let mut failed = None;
        if let Some(ctx) = self.contexts.get_mut(&stx) {
            if let Some(bi) = ctx.branches.iter().position(|b| b.tx == ctid) {
                ctx.branches[bi].done = true;
                failed = Some(bi);
            }
        }
        if let Some(bi) = failed {
            self.branch_failed(now, stx, bi);
        }
        self.finish_if_done(io, now, stx);
    }

    /// When every branch is final: send the best response if no final went yet, drop the context.
    fn finish_if_done(&mut self, io: &mut Io<'_>, now: Instant, stx: ServerTxId) {
        let Some(ctx) = self.contexts.get(&stx) else {
            return;
        };
        if !ctx.branches.iter().all(|b| b.done) {
            return;
        }
        if !ctx.final_sent {
            self.call_failed(now, stx);
        }
        let Some(ctx) = self.contexts.remove(&stx) else {
            return;
        };
        for b in &ctx.branches {
            self.branch_owner.remove(&b.tx);
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
                io.tl.respond(now, stx, best);
            }
            None => io.reply(now, stx, &ctx.head, 408, vec![]),
        }
    }

    /// Cancels every branch without a final response (§16.7 step 10, §16.10). Branches without
    /// a provisional response are cancelled when one arrives (§9.1).
    fn cancel_pending_branches(&mut self, io: &mut Io<'_>, now: Instant, stx: ServerTxId) {
        let Some(ctx) = self.contexts.get_mut(&stx) else {
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
        // Timer C now waits 64·T1 for the final responses (see `run_timer_c`).
        let rearm = !to_cancel.is_empty() && ctx.timer_c.is_some();
        for (tx, dest, t) in to_cancel {
            Self::send_cancel(io, now, tx, dest, t);
        }
        if rearm {
            self.arm_timer_c(stx, now + 64 * io.tl.timer_config().t1);
        }
    }

    /// Sends a CANCEL for a branch (§9.1): same Request-URI, Call-ID, From, To, CSeq number, top
    /// Via and Route as the INVITE it cancels.
    fn send_cancel(
        io: &mut Io<'_>,
        now: Instant,
        ctid: ClientTxId,
        dest: SocketAddr,
        t: TransportKind,
    ) {
        let Some(orig) = io.tl.client_request(ctid) else {
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
        io.tl.send_request(now, cancel, dest, t);
    }

    /// A CANCEL received (§16.10): 200 to it, then CANCEL on every pending branch; the 487s
    /// from downstream become the final response. 481 if it matches no INVITE.
    pub(crate) fn cancel(&mut self, io: &mut Io<'_>, now: Instant, tx: ServerTxId, req: Request) {
        let Some(inv) = io.tl.matching_invite(&req) else {
            return io.reply(now, tx, &req, 481, vec![]);
        };
        io.reply(now, tx, &req, 200, vec![]);
        if io.tl.server_is_final(inv) {
            return;
        }
        let pending = self.contexts.get(&inv).is_some_and(|c| !c.final_sent);
        if pending {
            self.cancel_pending_branches(io, now, inv);
        } else if !self.contexts.contains_key(&inv) {
            // Not forwarded anywhere (still being processed): answer 487 ourselves.
            if let Some(ireq) = io.tl.server_request(inv).cloned() {
                io.reply(now, inv, &ireq, 487, vec![]);
            }
        }
    }

    /// Forwards a response that matches no transaction (§16.7 step 3 / §18.1.2): only when the
    /// top Via is ours; it is removed and the response goes to the next Via.
    pub(crate) fn forward_response_stateless(&mut self, io: &mut Io<'_>, mut resp: Response) {
        let Ok(top) = resp.headers.top_via() else {
            return;
        };
        if !io.local.is_local_via(&top) {
            return;
        }
        resp.headers.remove_first(&HeaderName::Via);
        let Ok(next) = resp.headers.top_via() else {
            return;
        };
        if let Some((dest, t)) = via_destination(&next) {
            io.tl.send_stateless(dest, t, resp.to_bytes());
        }
    }
}
