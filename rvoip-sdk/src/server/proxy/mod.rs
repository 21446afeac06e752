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
mod divert;
mod forward;
pub mod media;
mod responses;
pub mod route;
mod timers;
mod transcoding;
mod trunk;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use self::dialogs::BranchInfo;
pub use self::dialogs::{CallRecord, Dialogs, PartyInfo};
pub use self::divert::DivertCause;
pub(crate) use self::divert::{DivertWatch, Diverted, Failover};
pub use self::media::{ConferenceEvent, EndReason, MediaHook, NoMedia, Party, SdpPassage};
use self::route::{fnv, pop_own_routes, rank, transport_token, via_destination};
pub use self::route::{is_private, loop_hash, plaintext_reachable, resolve, sender_behind_nat};
use crate::server::local::LocalIdentity;
use crate::server::reply::{Replier, Stats};
use crate::sip::msg::{
    BRANCH_MAGIC, ByteString, HeaderName, Headers, Method, NameAddr, Request, Response, Uri,
};
use crate::sip::timer_wheel::TimerWheel;
use crate::sip::transaction::{ClientTxId, ServerTxId, TransactionLayer, Transport, new_branch};
use rustc_hash::FxBuildHasher;

/// Where one forwarded copy of a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The new Request-URI (a registered contact), or `None` to keep the received one.
    pub uri: Option<Uri>,
    /// The next-hop address.
    pub dest: SocketAddr,
    /// The transport to the next hop.
    pub transport: Transport,
    /// Whether the target sits behind a NAT (`dest` is then its flow, not its Contact).
    pub nat: bool,
    /// Further destinations of the same next hop, in RFC 3263 order (SRV priority and weight,
    /// then A/AAAA): tried one after the other when this one fails with a transport error, a
    /// timeout or a 503 (RFC 3263 §4.3). Empty for registered contacts and IP literals.
    pub alternates: Vec<(SocketAddr, Transport)>,
    /// Route header values to put on top of the copy's Route set, top first: a binding's Path
    /// vector (RFC 3327 §5.5). Empty for a direct target.
    pub route: Vec<ByteString>,
    /// The next hop is an RFC 5626 flow that a flow token in the Route named (an edge proxy's
    /// own flow to the user agent). When its connection is gone, the branch ends with 430 Flow
    /// Failed (RFC 5626 §5.3) instead of 503, so that the node that sent the request (or the
    /// caller) knows to use another flow of the user.
    pub flow: bool,
}

/// What the proxy needs from its owner for one call: the transaction layer to send on, the
/// server's identity (Via, Record-Route), the replier for its own responses and the counters.
pub(crate) struct Io<'a> {
    /// The transaction layer requests and responses go out on.
    pub tl: &'a mut TransactionLayer,
    /// The server's interfaces (Via, Record-Route, "is this us").
    pub local: &'a LocalIdentity,
    /// Builds the proxy's own responses (408, 487, 503…).
    pub replier: &'a mut Replier,
    /// The server's counters.
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

/// The progress of a call the proxy routes, for the dialog event package of the presence agent
/// ([`crate::server::presence::dialogs`]); recorded only when asked ([`Proxy::track_calls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallProgress {
    /// An initial INVITE was forked: its Call-ID, From URI and Request-URI.
    Invite {
        /// The Call-ID.
        call_id: String,
        /// The caller's From URI.
        from: Option<Box<Uri>>,
        /// The Request-URI as received (before the bindings' contacts replace it).
        to: Box<Uri>,
    },
    /// A provisional response with a To tag (an early dialog, RFC 3261 §12.1).
    Early(String),
    /// The first 2xx to the initial INVITE.
    Confirmed(String),
    /// The call ended: a final failure, CANCEL, BYE or a timeout.
    Ended(String),
}

/// Most call progress records kept between two drains (older ones are dropped).
const MAX_PROGRESS: usize = 4096;

/// One client transaction of a forked request.
#[derive(Debug)]
struct Branch {
    tx: ClientTxId,
    /// The media branch index (fork index of an initial INVITE, else the answered branch).
    index: u32,
    dest: SocketAddr,
    transport: Transport,
    provisional: bool,
    done: bool,
    cancel_sent: bool,
    /// The next hop is a flow named by a flow token ([`Target::flow`]).
    flow: bool,
    /// What a failover to the next destination (RFC 3263 §4.3) needs; `None` without
    /// alternates.
    retry: Option<Box<Retry>>,
}

/// A branch's remaining destinations and its request as it was before our Via, Record-Route and
/// Max-Forwards went on (a retry is a new client transaction with a new branch).
#[derive(Debug)]
struct Retry {
    alternates: std::collections::VecDeque<(SocketAddr, Transport)>,
    /// The media hook already widened this branch's offer for transcoding (after a 488).
    widened: bool,
    request: Request,
    in_t: Transport,
    record_route: bool,
    hash: u64,
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
    /// Call forwarding on busy / no answer watching this INVITE ([`divert`]).
    divert: Option<Box<DivertWatch>>,
    /// What the forwarded copies added to the request's CSeq number (a trunk's challenge was
    /// answered with a new CSeq, [`trunk`]); taken off the responses going upstream.
    cseq_offset: u32,
}

/// Timer C: an INVITE branch that rings longer than this is cancelled (RFC 3261 §16.6: > 3 min).
pub const TIMER_C: Duration = Duration::from_secs(181);

/// How often idle call records are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Proxy state: contexts by server transaction, the owner of each branch, the calls it
/// record-routed, and the media hook.
pub struct Proxy {
    contexts: HashMap<ServerTxId, Context, FxBuildHasher>,
    branch_owner: HashMap<ClientTxId, ServerTxId, FxBuildHasher>,
    /// Timer C deadlines; an entry is stale when its context's deadline moved or ended.
    timer_c: TimerWheel<ServerTxId>,
    dialogs: Dialogs,
    media: Box<dyn MediaHook>,
    next_sweep: Option<Instant>,
    /// No-answer forwarding deadlines; stale entries are skipped as for Timer C.
    no_answer: BinaryHeap<Reverse<(Instant, ServerTxId)>>,
    /// Calls given back to the core for forwarding ([`Proxy::poll_diverted`]).
    diverted: VecDeque<Diverted>,
    /// Call progress for the presence agent (`None`: not recorded).
    progress: Option<VecDeque<CallProgress>>,
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

fn from_tag(req: &Request) -> Option<String> {
    req.headers.from_tag().map(str::to_string)
}

impl Proxy {
    /// The media hook (conference rooms use it directly).
    pub(crate) fn media_mut(&mut self) -> &mut dyn MediaHook {
        self.media.as_mut()
    }

    /// Asks the media hook to record call `call_id` once answered (the server's recording
    /// policy).
    pub(crate) fn record_call(&mut self, call_id: &str) {
        self.media.record_call(call_id);
    }

    /// A proxy whose SDP hook points call `media`.
    pub fn new(media: Box<dyn MediaHook>) -> Proxy {
        Proxy {
            contexts: HashMap::default(),
            branch_owner: HashMap::default(),
            timer_c: TimerWheel::new(),
            dialogs: Dialogs::default(),
            media,
            next_sweep: None,
            no_answer: BinaryHeap::new(),
            diverted: VecDeque::new(),
            progress: None,
        }
    }

    /// Whether to record the progress of the calls routed ([`Proxy::poll_call_progress`]).
    pub(crate) fn track_calls(&mut self, on: bool) {
        self.progress = on.then(VecDeque::new);
    }

    /// The next call progress record, oldest first.
    pub(crate) fn poll_call_progress(&mut self) -> Option<CallProgress> {
        self.progress.as_mut()?.pop_front()
    }

    /// Records call progress when asked to.
    fn progress(&mut self, p: CallProgress) {
        if let Some(q) = self.progress.as_mut() {
            if q.len() >= MAX_PROGRESS {
                q.pop_front();
            }
            q.push_back(p);
        }
    }

    /// The call ended: the media hook and the progress record learn it.
    fn end_call(&mut self, now: Instant, call_id: &str, why: EndReason) {
        self.media.on_call_end(now, call_id, why);
        if self.progress.is_some() {
            self.progress(CallProgress::Ended(call_id.to_string()));
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

    /// The earliest pending timer: Timer C (possibly one whose context ended since the last run;
    /// firing it does nothing), the media hook's, the call-record sweep.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timer_c.earliest(),
            self.media.poll_timeout(),
            self.next_sweep,
            self.no_answer_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether client transaction `tx` is a branch sent down a flow named by a flow token
    /// ([`Target::flow`]): a transport error on it is then a 430 Flow Failed (RFC 5626 §5.3).
    pub(crate) fn is_flow_branch(&self, tx: ClientTxId) -> bool {
        self.branch_owner
            .get(&tx)
            .and_then(|stx| self.contexts.get(stx))
            .is_some_and(|ctx| ctx.branches.iter().any(|b| b.tx == tx && b.flow))
    }

    fn arm_timer_c(&mut self, stx: ServerTxId, at: Instant) {
        if let Some(ctx) = self.contexts.get_mut(&stx) {
            ctx.timer_c = Some(at);
            self.timer_c.push(at, stx);
        }
    }

    /// §16.3 step 4: the request carries a Via of ours with this request's hash: a loop.
    pub fn is_loop(&self, local: &LocalIdentity, req: &Request, hash: u64) -> bool {
        route::is_loop(local, req, hash)
    }
}
