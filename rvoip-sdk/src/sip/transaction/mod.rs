//! Transactions (RFC 3261 §17, with the RFC 6026 Accepted states), sans-IO.
//!
//! One [`TransactionLayer`] holds every client and server transaction of an element. Time and I/O are
//! inputs and outputs: received messages go in through [`TransactionLayer::handle_message`], expired
//! timers through [`TransactionLayer::handle_timeout`]; datagrams/stream writes come out of
//! [`TransactionLayer::poll_transmit`] and transaction-user events out of
//! [`TransactionLayer::poll_event`].
//!
//! State machines (Figures 5–8 of RFC 3261, RFC 6026 §7):
//! - INVITE client: Calling (Timer A, B) → Proceeding → Completed (automatic ACK, Timer D) or
//!   Accepted (Timer M, 2xx retransmissions passed up) → Terminated.
//! - non-INVITE client: Trying (Timer E, F) → Proceeding → Completed (Timer K) → Terminated.
//! - INVITE server: Proceeding (100 Trying sent at once) → Completed (Timer G, H) → Confirmed
//!   (Timer I) → Terminated, or → Accepted (Timer L) → Terminated.
//! - non-INVITE server: Trying → Proceeding → Completed (Timer J) → Terminated.
//!
//! As RFC 3261 Figure 5 says, Timer B only runs in Calling: once an INVITE client transaction is in
//! Proceeding, ending it is the TU's job (a proxy's Timer C, §16.8, followed by CANCEL).
//!
//! Timers live in one binary heap with lazy cancellation: every transaction stores the deadline of
//! its (at most two) armed timers; a popped heap entry that no longer matches is ignored.

// Nested `if let`s instead of let-chains: the MSRV is 1.85.
#![allow(clippy::collapsible_if)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::msg::{BRANCH_MAGIC, HeaderName, Headers, Message, Method, Request, Response, Via};
use keys::{ClientKey, LegacyKey, LegacyMatch, ServerKey, branch_of, server_key, tag_of};

/// Timer D for unreliable transports: "at least 32 seconds" (RFC 3261 §17.1.1.2).
const TIMER_D: Duration = Duration::from_secs(32);

/// The RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Maximum duration a message remains in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J, L, M.
    fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

pub use crate::sip::transport::Transport;

/// The id of a client transaction. Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(pub u64);

/// The id of a server transaction. Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(pub u64);

/// Bytes to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Where to send them.
    pub dest: SocketAddr,
    /// Over which transport.
    pub transport: Transport,
    /// One complete SIP message.
    pub bytes: Bytes,
}

/// What the transaction layer tells its user (TU).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // messages are moved, not copied around in bulk
pub enum TxEvent {
    /// A request that created a new server transaction (any method but ACK), or an ACK that matched
    /// no INVITE server transaction in Completed state (ACK for a 2xx: `tx: None`; the proxy forwards
    /// it statelessly).
    Request {
        /// The new server transaction; `None` for an ACK.
        tx: Option<ServerTxId>,
        /// The request.
        req: Request,
        /// Where it came from.
        source: SocketAddr,
        /// Over which transport.
        transport: Transport,
    },
    /// A response for a client transaction: provisional, final, and (INVITE, RFC 6026 Accepted
    /// state) 2xx retransmissions. Retransmitted non-2xx finals are absorbed.
    Response {
        /// The client transaction.
        tx: ClientTxId,
        /// The response.
        resp: Response,
    },
    /// Timer B or F fired with no final response (or a transport error was reported): the TU must
    /// act as if a 408 arrived.
    Timeout {
        /// The client transaction, now terminated.
        tx: ClientTxId,
    },
    /// The connection a client transaction's request was to go on could not be opened (or broke
    /// before a final response): RFC 3261 §8.1.3.1 and §16.9, the TU must act as if a 503
    /// arrived (or try the next RFC 3263 target). Reported at once, not after Timer B or F.
    TransportError {
        /// The client transaction, now terminated.
        tx: ClientTxId,
        /// Its request, if still kept (to synthesize the 503 from).
        request: Option<Box<Request>>,
        /// Why the connection failed, for the user (e.g. the certificate error).
        reason: String,
    },
    /// A response matching no client transaction (the proxy forwards these statelessly, §16.7 /
    /// §18.1.2).
    StrayResponse {
        /// The response.
        resp: Response,
        /// Where it came from.
        source: SocketAddr,
        /// Over which transport.
        transport: Transport,
    },
    /// An INVITE server transaction saw no ACK before Timer H (64*T1): informational.
    AckTimeout {
        /// The server transaction, now terminated.
        tx: ServerTxId,
    },
}

/// Which timer of which transaction a heap entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// Timer A or E.
    ClientRetx,
    /// Timer B, D, F, K or M.
    ClientEnd,
    /// Timer G.
    ServerRetx,
    /// Timer H, I, J or L.
    ServerEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    /// INVITE, no response yet.
    Calling,
    /// non-INVITE, no response yet.
    Trying,
    Proceeding,
    Completed,
    /// INVITE after a 2xx (RFC 6026).
    Accepted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerState {
    /// non-INVITE, no response yet.
    Trying,
    Proceeding,
    Completed,
    /// INVITE after the ACK for a non-2xx final.
    Confirmed,
    /// INVITE after a 2xx (RFC 6026).
    Accepted,
}

struct ClientTx {
    invite: bool,
    state: ClientState,
    /// The request; dropped once no CANCEL or ACK can be built from it any more (memory).
    request: Option<Box<Request>>,
    /// The request as sent, for retransmission.
    bytes: Bytes,
    key: Option<ClientKey>,
    dest: SocketAddr,
    transport: Transport,
    /// The ACK for a non-2xx final, re-sent for each retransmission of it.
    ack: Option<Bytes>,
    provisional: bool,
    retx_interval: Duration,
    retx_at: Option<Instant>,
    end_at: Option<Instant>,
}

struct ServerTx {
    invite: bool,
    state: ServerState,
    /// The request; dropped once a final response went out (memory).
    request: Option<Box<Request>>,
    /// Bytes of the received request on the wire (0: not known), for the byte accounting and
    /// the reply budget of UDP requests.
    wire_len: usize,
    /// Whether the transaction counts in its source's [`TransactionLayer::source_load`]: from
    /// its creation until its final response (or its end).
    in_progress: bool,
    key: Option<ServerKey>,
    legacy: Option<Box<LegacyKey>>,
    /// Where responses go (§18.2.2, RFC 3581).
    dest: SocketAddr,
    transport: Transport,
    /// The last response sent, re-sent on request retransmissions and by Timer G.
    last_resp: Option<Bytes>,
    /// The To tag of the last response sent (RFC 2543 ACK matching only).
    resp_to_tag: Option<ByteString>,
    retx_interval: Duration,
    retx_at: Option<Instant>,
    end_at: Option<Instant>,
}

/// All client and server transactions of one SIP element (RFC 3261 §17), sans-IO.
pub struct TransactionLayer {
    cfg: TimerConfig,
    next_id: u64,
    clients: HashMap<u64, ClientTx>,
    servers: HashMap<u64, ServerTx>,
    client_index: HashMap<ClientKey, u64>,
    server_index: HashMap<ServerKey, u64>,
    /// Server transactions created by requests without a magic-cookie branch, by Call-ID.
    legacy_index: HashMap<ByteString, Vec<u64>>,
    timers: BinaryHeap<Reverse<(Instant, u64, Slot)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    /// Wire length of the message being handed in by [`TransactionLayer::handle_received`].
    incoming_len: usize,
    /// Bytes held by live transactions: received requests of server transactions, sent
    /// requests of client transactions.
    held_bytes: usize,
    /// Per source IP: live server transactions and the bytes of their requests.
    per_source: HashMap<IpAddr, (u32, usize)>,
}

impl std::fmt::Debug for TransactionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionLayer")
            .field("clients", &self.clients.len())
            .field("servers", &self.servers.len())
            .field("timers", &self.timers.len())
            .finish()
    }
}

/// Arms a timer: records the deadline in the transaction's slot and pushes a heap entry.
fn arm(
    timers: &mut BinaryHeap<Reverse<(Instant, u64, Slot)>>,
    slot_field: &mut Option<Instant>,
    at: Instant,
    id: u64,
    slot: Slot,
) {
    *slot_field = Some(at);
    timers.push(Reverse((at, id, slot)));
}

fn push_transmit(q: &mut VecDeque<Transmit>, dest: SocketAddr, transport: Transport, bytes: Bytes) {
    q.push_back(Transmit {
        dest,
        transport,
        bytes,
    });
}

/// Where the responses of a server transaction go (§18.2.2, RFC 3581). The `received` parameter
/// of an incoming Via is not trusted: the source IP is what a correct `received` would say, and
/// using it cannot be turned into a reflection attack.
fn response_dest(via: Option<&Via>, source: SocketAddr, transport: Transport) -> SocketAddr {
    if transport.is_reliable() {
        return source;
    }
    match via {
        Some(v) if !v.has_rport() => SocketAddr::new(source.ip(), v.port.unwrap_or(5060)),
        _ => source,
    }
}

/// The hop-by-hop ACK for a non-2xx final response (§17.1.1.3).
fn build_ack(req: &Request, resp: &Response) -> Request {
    let mut h = Headers::with_capacity(8);
    if let Some(v) = req.headers.get(&HeaderName::Via) {
        h.push(HeaderName::Via, v.clone());
    }
    for r in req.headers.get_all(&HeaderName::Route) {
        h.push(HeaderName::Route, r.clone());
    }
    h.push(HeaderName::MaxForwards, ByteString::from_static("70"));
    if let Some(f) = req.headers.get(&HeaderName::From) {
        h.push(HeaderName::From, f.clone());
    }
    if let Some(t) = resp
        .headers
        .get(&HeaderName::To)
        .or_else(|| req.headers.get(&HeaderName::To))
    {
        h.push(HeaderName::To, t.clone());
    }
    if let Some(c) = req.headers.call_id() {
        h.push(HeaderName::CallId, c.clone());
    }
    let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(1);
    h.push(HeaderName::CSeq, format!("{seq} ACK"));
    Request {
        method: Method::Ack,
        uri: req.uri.clone(),
        headers: h,
        body: Bytes::new(),
    }
}

impl TransactionLayer {
    /// An empty layer. A zero T1 is raised to 1 ms (retransmission intervals must grow).
    pub fn new(timers: TimerConfig) -> Self {
        let mut cfg = timers;
        let min = Duration::from_millis(1);
        cfg.t1 = cfg.t1.max(min);
        cfg.t2 = cfg.t2.max(cfg.t1);
        TransactionLayer {
            cfg,
            next_id: 1,
            clients: HashMap::new(),
            servers: HashMap::new(),
            client_index: HashMap::new(),
            server_index: HashMap::new(),
            legacy_index: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            incoming_len: 0,
            held_bytes: 0,
            per_source: HashMap::new(),
        }
    }

    /// The timer configuration in use.
    pub fn timer_config(&self) -> TimerConfig {
        self.cfg
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Feed a received, parsed message. Matches server transactions by (branch, sent-by, method
    /// with ACK->INVITE) for magic-cookie branches, and by the RFC 2543 rules otherwise (§17.2.3).
    /// Matches client transactions by (top Via branch, CSeq method) (§17.1.3). A retransmitted
    /// request is absorbed and the last response re-sent. A new INVITE gets a "100 Trying" sent
    /// immediately (§16.2 / §17.2.1).
    pub fn handle_message(
        &mut self,
        now: Instant,
        msg: Message,
        source: SocketAddr,
        transport: Transport,
    ) {
        self.handle_received(now, msg, source, transport, 0)
    }

    /// [`TransactionLayer::handle_message`] for a message that was `wire_len` bytes on the
    /// wire: a new server transaction counts them in [`TransactionLayer::held_bytes`] and its
    /// source's [`TransactionLayer::source_load`], and over UDP they are the budget of
    /// [`TransactionLayer::reply_budget`].
    pub fn handle_received(
        &mut self,
        now: Instant,
        msg: Message,
        source: SocketAddr,
        transport: Transport,
        wire_len: usize,
    ) {
        self.incoming_len = wire_len;
        match msg {
            Message::Request(req) => self.on_request(now, req, source, transport),
            Message::Response(resp) => self.on_response(now, resp, source, transport),
        }
        self.prune();
    }

    fn find_legacy(&self, key: &LegacyKey, how: LegacyMatch) -> Option<u64> {
        let ids = self.legacy_index.get(&key.call_id)?;
        ids.iter().copied().find(|id| {
            self.servers.get(id).is_some_and(|tx| {
                tx.legacy
                    .as_deref()
                    .is_some_and(|l| key.matches(l, tx.resp_to_tag.as_ref(), how))
            })
        })
    }

    fn on_request(&mut self, now: Instant, req: Request, source: SocketAddr, transport: Transport) {
        let via = req.headers.top_via().ok();
        let key = via.as_ref().and_then(|v| server_key(v, &req.method));
        let legacy = if key.is_none() {
            Some(LegacyKey::of(&req))
        } else {
            None
        };

        if req.method == Method::Ack {
            let id = match (&key, &legacy) {
                (Some(k), _) => self.server_index.get(k).copied(),
                (None, Some(l)) => self.find_legacy(l, LegacyMatch::Ack),
                (None, None) => None,
            };
            if let Some(id) = id {
                if let Some(tx) = self.servers.get_mut(&id) {
                    if tx.invite {
                        match tx.state {
                            ServerState::Completed => {
                                tx.state = ServerState::Confirmed;
                                tx.last_resp = None;
                                tx.retx_at = None;
                                if tx.transport.is_reliable() {
                                    self.remove_server(id);
                                } else {
                                    let at = now + self.cfg.t4;
                                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ServerEnd);
                                }
                                return;
                            }
                            ServerState::Confirmed => return,
                            _ => {}
                        }
                    }
                }
            }
            self.events.push_back(TxEvent::Request {
                tx: None,
                req,
                source,
                transport,
            });
            return;
        }

        let existing = match (&key, &legacy) {
            (Some(k), _) => self.server_index.get(k).copied(),
            (None, Some(l)) => self.find_legacy(l, LegacyMatch::Same),
            (None, None) => None,
        };
        if let Some(id) = existing {
            if let Some(tx) = self.servers.get(&id) {
                // A retransmission (§17.2.1, §17.2.2): re-send the last response, if any.
                match tx.state {
                    ServerState::Proceeding | ServerState::Completed => {
                        if let Some(b) = &tx.last_resp {
                            push_transmit(&mut self.transmits, tx.dest, tx.transport, b.clone());
                        }
                    }
                    ServerState::Trying | ServerState::Confirmed | ServerState::Accepted => {}
                }
                return;
            }
        }

        let id = self.alloc_id();
        let invite = req.method == Method::Invite;
        let dest = response_dest(via.as_ref(), source, transport);
        match (&key, &legacy) {
            (Some(k), _) => {
                self.server_index.insert(k.detached(), id);
            }
            (None, Some(l)) => self
                .legacy_index
                .entry(l.call_id.clone())
                .or_default()
                .push(id),
            (None, None) => {}
        }
        let mut tx = ServerTx {
            invite,
            state: ServerState::Trying,
            request: Some(Box::new(req.clone())),
            wire_len: self.incoming_len,
            in_progress: true,
            key: key.map(|k| k.detached()),
            legacy: legacy.map(Box::new),
            dest,
            transport,
            last_resp: None,
            resp_to_tag: None,
            retx_interval: self.cfg.t1,
            retx_at: None,
            end_at: None,
        };
        if invite {
            let trying = Response::for_request(&req, 100).to_bytes();
            push_transmit(&mut self.transmits, dest, transport, trying.clone());
            tx.last_resp = Some(trying);
            tx.state = ServerState::Proceeding;
        }
        self.held_bytes += tx.wire_len;
        let load = self.per_source.entry(tx.dest.ip()).or_default();
        load.0 += 1;
        load.1 += tx.wire_len;
        self.servers.insert(id, tx);
        self.events.push_back(TxEvent::Request {
            tx: Some(ServerTxId(id)),
            req,
            source,
            transport,
        });
    }

    fn on_response(
        &mut self,
        now: Instant,
        resp: Response,
        source: SocketAddr,
        transport: Transport,
    ) {
        let key = resp.headers.top_via().ok().and_then(|v| {
            let branch = branch_of(&v)?;
            let method = resp.headers.cseq().ok()?.method;
            Some(ClientKey { branch, method })
        });
        let id = key.as_ref().and_then(|k| self.client_index.get(k).copied());
        let Some((id, tx)) = id.and_then(|id| self.clients.get_mut(&id).map(|tx| (id, tx))) else {
            self.events.push_back(TxEvent::StrayResponse {
                resp,
                source,
                transport,
            });
            return;
        };
        let status = resp.status;
        if !(100..=699).contains(&status) {
            return;
        }
        let reliable = tx.transport.is_reliable();
        let txid = ClientTxId(id);
        match tx.state {
            ClientState::Calling | ClientState::Proceeding if tx.invite => {
                tx.retx_at = None;
                if status < 200 {
                    tx.state = ClientState::Proceeding;
                    tx.provisional = true;
                    tx.end_at = None; // Timer B runs in Calling only (Figure 5).
                } else if status < 300 {
                    tx.state = ClientState::Accepted;
                    tx.request = None;
                    self.held_bytes = self
                        .held_bytes
                        .saturating_sub(std::mem::take(&mut tx.bytes).len());
                    let at = now + self.cfg.t64();
                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ClientEnd);
                } else {
                    if let Some(req) = tx.request.take() {
                        let ack = build_ack(&req, &resp).to_bytes();
                        push_transmit(&mut self.transmits, tx.dest, tx.transport, ack.clone());
                        tx.ack = Some(ack);
                    }
                    self.held_bytes = self
                        .held_bytes
                        .saturating_sub(std::mem::take(&mut tx.bytes).len());
                    tx.state = ClientState::Completed;
                    if reliable {
                        self.events.push_back(TxEvent::Response { tx: txid, resp });
                        self.remove_client(id);
                        return;
                    }
                    arm(
                        &mut self.timers,
                        &mut tx.end_at,
                        now + TIMER_D,
                        id,
                        Slot::ClientEnd,
                    );
                }
                self.events.push_back(TxEvent::Response { tx: txid, resp });
            }
            ClientState::Completed if tx.invite => {
                if status >= 300 {
                    if let Some(ack) = &tx.ack {
                        push_transmit(&mut self.transmits, tx.dest, tx.transport, ack.clone());
                    }
                }
            }
            ClientState::Accepted => {
                if (200..300).contains(&status) {
                    self.events.push_back(TxEvent::Response { tx: txid, resp });
                }
            }
            ClientState::Trying | ClientState::Proceeding => {
                if status < 200 {
                    tx.state = ClientState::Proceeding;
                    tx.provisional = true;
                } else {
                    tx.state = ClientState::Completed;
                    tx.retx_at = None;
                    tx.request = None;
                    self.held_bytes = self
                        .held_bytes
                        .saturating_sub(std::mem::take(&mut tx.bytes).len());
                    if reliable {
                        self.events.push_back(TxEvent::Response { tx: txid, resp });
                        self.remove_client(id);
                        return;
                    }
                    let at = now + self.cfg.t4;
                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ClientEnd);
                }
                self.events.push_back(TxEvent::Response { tx: txid, resp });
            }
            // non-INVITE Completed absorbs; INVITE Calling/Proceeding/Completed handled above.
            ClientState::Calling | ClientState::Completed => {}
        }
    }

    /// Send a response on a server transaction (1xx..6xx). Destination per §18.2.2 + RFC 3581:
    /// reliable transport → the source address of the request; UDP with `rport` → the source
    /// address; UDP without → (source IP, Via sent-by port or 5060). Returns false if the
    /// transaction is unknown or already completed (a 2xx after a 2xx is allowed for INVITE in the
    /// Accepted state: forwarded 2xx retransmissions).
    pub fn respond(&mut self, now: Instant, tx: ServerTxId, resp: Response) -> bool {
        let id = tx.0;
        let status = resp.status;
        if !(100..=699).contains(&status) {
            return false;
        }
        let Some(tx) = self.servers.get_mut(&id) else {
            return false;
        };
        let reliable = tx.transport.is_reliable();
        match tx.state {
            ServerState::Proceeding if tx.invite => {
                let bytes = resp.to_bytes();
                push_transmit(&mut self.transmits, tx.dest, tx.transport, bytes.clone());
                tx.last_resp = Some(bytes);
                if tx.legacy.is_some() {
                    tx.resp_to_tag = resp.headers.to().ok().and_then(|n| tag_of(&n));
                }
                tx.request = None;
                settle(&mut self.held_bytes, &mut self.per_source, tx);
                if (200..300).contains(&status) {
                    tx.state = ServerState::Accepted;
                    tx.last_resp = None;
                    let at = now + self.cfg.t64();
                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ServerEnd);
                } else if status >= 300 {
                    tx.state = ServerState::Completed;
                    if !reliable {
                        tx.retx_interval = self.cfg.t1;
                        let at = now + self.cfg.t1;
                        arm(&mut self.timers, &mut tx.retx_at, at, id, Slot::ServerRetx);
                    }
                    let at = now + self.cfg.t64();
                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ServerEnd);
                }
                true
            }
            ServerState::Accepted => {
                if !(200..300).contains(&status) {
                    return false;
                }
                push_transmit(&mut self.transmits, tx.dest, tx.transport, resp.to_bytes());
                true
            }
            ServerState::Trying | ServerState::Proceeding => {
                let bytes = resp.to_bytes();
                push_transmit(&mut self.transmits, tx.dest, tx.transport, bytes.clone());
                tx.last_resp = Some(bytes);
                if status < 200 {
                    tx.state = ServerState::Proceeding;
                } else {
                    tx.state = ServerState::Completed;
                    tx.request = None;
                    settle(&mut self.held_bytes, &mut self.per_source, tx);
                    if reliable {
                        self.remove_server(id);
                    } else {
                        let at = now + self.cfg.t64();
                        arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ServerEnd);
                    }
                }
                self.prune();
                true
            }
            ServerState::Completed | ServerState::Confirmed => false,
        }
    }

    /// Sends a final response and forgets the server transaction at once (§8.2.7 stateless UAS
    /// behaviour, as a registrar or an element rejecting a request may use). A retransmitted
    /// request then starts a new transaction and is answered again. Returns false if the
    /// transaction is unknown or the status is not final.
    pub fn respond_stateless(&mut self, tx: ServerTxId, resp: Response) -> bool {
        if !(200..=699).contains(&resp.status) {
            return false;
        }
        let Some(t) = self.servers.get(&tx.0) else {
            return false;
        };
        if !matches!(t.state, ServerState::Trying | ServerState::Proceeding) {
            return false;
        }
        push_transmit(&mut self.transmits, t.dest, t.transport, resp.to_bytes());
        self.remove_server(tx.0);
        true
    }

    /// Start a client transaction for `req` (its top Via with a fresh branch must already be
    /// there: use [`new_branch`]), sending to `dest`. An ACK creates no transaction (§17.1.1.3): it
    /// is sent once and the returned id is unknown to the layer.
    pub fn send_request(
        &mut self,
        now: Instant,
        req: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> ClientTxId {
        let id = self.alloc_id();
        let bytes = req.to_bytes();
        push_transmit(&mut self.transmits, dest, transport, bytes.clone());
        if req.method == Method::Ack {
            return ClientTxId(id);
        }
        let invite = req.method == Method::Invite;
        let key = req
            .headers
            .top_via()
            .ok()
            .and_then(|v| branch_of(&v))
            .map(|branch| ClientKey {
                branch,
                method: req.method.clone(),
            });
        let key = key.map(|k| k.detached());
        if let Some(k) = &key {
            self.client_index.insert(k.clone(), id);
        }
        let mut tx = ClientTx {
            invite,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            request: Some(Box::new(req)),
            bytes,
            key,
            dest,
            transport,
            ack: None,
            provisional: false,
            retx_interval: self.cfg.t1,
            retx_at: None,
            end_at: None,
        };
        if !transport.is_reliable() {
            let at = now + self.cfg.t1;
            arm(&mut self.timers, &mut tx.retx_at, at, id, Slot::ClientRetx);
        }
        let at = now + self.cfg.t64();
        arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ClientEnd);
        self.held_bytes += tx.bytes.len();
        self.clients.insert(id, tx);
        ClientTxId(id)
    }

    /// Send bytes outside any transaction (ACK for 2xx forwarded by a proxy, stateless forwarding
    /// of stray responses).
    pub fn send_stateless(&mut self, dest: SocketAddr, transport: Transport, bytes: Bytes) {
        push_transmit(&mut self.transmits, dest, transport, bytes);
    }

    /// The transport layer failed to send a client transaction's request (§17.1.4): the
    /// transaction ends with a [`TxEvent::Timeout`] if it had no final response yet. Returns false
    /// if the transaction is unknown.
    pub fn transport_error(&mut self, tx: ClientTxId) -> bool {
        let Some(t) = self.clients.get(&tx.0) else {
            return false;
        };
        if matches!(
            t.state,
            ClientState::Calling | ClientState::Trying | ClientState::Proceeding
        ) {
            self.events.push_back(TxEvent::Timeout { tx });
        }
        self.remove_client(tx.0);
        self.prune();
        true
    }

    /// The transport could not open (or lost) the connection to `dest` over `transport`: every
    /// live client transaction sending there without a final response yet ends with a
    /// [`TxEvent::TransportError`] carrying `reason` (RFC 3261 §8.1.3.1). Returns how many
    /// ended. Only reliable transports have connections; for UDP this does nothing.
    pub fn connection_failed(
        &mut self,
        dest: SocketAddr,
        transport: Transport,
        reason: &str,
    ) -> usize {
        if !transport.is_reliable() {
            return 0;
        }
        let ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, t)| {
                t.dest == dest
                    && t.transport == transport
                    && matches!(
                        t.state,
                        ClientState::Calling | ClientState::Trying | ClientState::Proceeding
                    )
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            let request = self.clients.get_mut(id).and_then(|t| t.request.take());
            self.events.push_back(TxEvent::TransportError {
                tx: ClientTxId(*id),
                request,
                reason: reason.to_string(),
            });
            self.remove_client(*id);
        }
        self.prune();
        ids.len()
    }

    /// The original request of a live server transaction (the proxy builds CANCEL/branch state
    /// from it).
    pub fn server_request(&self, tx: ServerTxId) -> Option<&Request> {
        self.servers.get(&tx.0).and_then(|t| t.request.as_deref())
    }

    /// The original request of a live client transaction (to build a CANCEL for it, §9.1).
    pub fn client_request(&self, tx: ClientTxId) -> Option<&Request> {
        self.clients.get(&tx.0).and_then(|t| t.request.as_deref())
    }

    /// For a CANCEL request: the INVITE server transaction it cancels (§9.2: same branch, sent-by
    /// etc. with method INVITE, or the RFC 2543 rules), if live.
    pub fn matching_invite(&self, cancel: &Request) -> Option<ServerTxId> {
        let via = cancel.headers.top_via().ok();
        let id = match via.as_ref().and_then(|v| server_key(v, &Method::Invite)) {
            Some(k) => self.server_index.get(&k).copied(),
            None => self.find_legacy(&LegacyKey::of(cancel), LegacyMatch::Cancel),
        }?;
        self.servers
            .get(&id)
            .filter(|t| t.invite)
            .map(|_| ServerTxId(id))
    }

    /// Whether a client INVITE transaction has received a provisional response yet (a CANCEL may
    /// only be sent after one, §9.1).
    pub fn client_has_provisional(&self, tx: ClientTxId) -> bool {
        self.clients.get(&tx.0).is_some_and(|t| t.provisional)
    }

    /// Whether a server transaction has sent a final response (or is unknown).
    pub fn server_is_final(&self, tx: ServerTxId) -> bool {
        self.servers
            .get(&tx.0)
            .is_none_or(|t| !matches!(t.state, ServerState::Trying | ServerState::Proceeding))
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, id, slot))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.is_live(at, id, slot) {
                self.fire(now, id, slot);
            }
        }
        self.prune();
    }

    fn is_live(&self, at: Instant, id: u64, slot: Slot) -> bool {
        match slot {
            Slot::ClientRetx => self.clients.get(&id).is_some_and(|t| t.retx_at == Some(at)),
            Slot::ClientEnd => self.clients.get(&id).is_some_and(|t| t.end_at == Some(at)),
            Slot::ServerRetx => self.servers.get(&id).is_some_and(|t| t.retx_at == Some(at)),
            Slot::ServerEnd => self.servers.get(&id).is_some_and(|t| t.end_at == Some(at)),
        }
    }

    fn fire(&mut self, now: Instant, id: u64, slot: Slot) {
        let cfg = self.cfg;
        match slot {
            Slot::ClientRetx => {
                let Some(tx) = self.clients.get_mut(&id) else {
                    return;
                };
                tx.retx_at = None;
                let next = match tx.state {
                    // Timer A: doubles without a cap (§17.1.1.2).
                    ClientState::Calling => tx.retx_interval * 2,
                    // Timer E: doubles up to T2 in Trying, T2 in Proceeding (§17.1.2.2).
                    ClientState::Trying => (tx.retx_interval * 2).min(cfg.t2),
                    ClientState::Proceeding if !tx.invite => cfg.t2,
                    _ => return,
                };
                push_transmit(&mut self.transmits, tx.dest, tx.transport, tx.bytes.clone());
                tx.retx_interval = next;
                arm(
                    &mut self.timers,
                    &mut tx.retx_at,
                    now + next,
                    id,
                    Slot::ClientRetx,
                );
            }
            Slot::ClientEnd => {
                let Some(tx) = self.clients.get(&id) else {
                    return;
                };
                if matches!(
                    tx.state,
                    ClientState::Calling | ClientState::Trying | ClientState::Proceeding
                ) {
                    // Timer B / F.
                    self.events
                        .push_back(TxEvent::Timeout { tx: ClientTxId(id) });
                }
                // Otherwise Timer D / K / M.
                self.remove_client(id);
            }
            Slot::ServerRetx => {
                let Some(tx) = self.servers.get_mut(&id) else {
                    return;
                };
                tx.retx_at = None;
                if tx.state != ServerState::Completed {
                    return;
                }
                // Timer G.
                if let Some(b) = &tx.last_resp {
                    push_transmit(&mut self.transmits, tx.dest, tx.transport, b.clone());
                }
                let next = (tx.retx_interval * 2).min(cfg.t2);
                tx.retx_interval = next;
                arm(
                    &mut self.timers,
                    &mut tx.retx_at,
                    now + next,
                    id,
                    Slot::ServerRetx,
                );
            }
            Slot::ServerEnd => {
                let Some(tx) = self.servers.get(&id) else {
                    return;
                };
                if tx.invite && tx.state == ServerState::Completed {
                    // Timer H.
                    self.events
                        .push_back(TxEvent::AckTimeout { tx: ServerTxId(id) });
                }
                // Otherwise Timer I / J / L.
                self.remove_server(id);
            }
        }
    }

    /// Drops stale entries at the top of the timer heap so that `poll_timeout` is exact.
    fn prune(&mut self) {
        while let Some(&Reverse((at, id, slot))) = self.timers.peek() {
            if self.is_live(at, id, slot) {
                break;
            }
            self.timers.pop();
        }
    }

    fn remove_client(&mut self, id: u64) {
        let Some(tx) = self.clients.remove(&id) else {
            return;
        };
        self.held_bytes = self.held_bytes.saturating_sub(tx.bytes.len());
        if let Some(k) = tx.key {
            if self.client_index.get(&k) == Some(&id) {
                self.client_index.remove(&k);
            }
        }
    }

    fn remove_server(&mut self, id: u64) {
        let Some(tx) = self.servers.remove(&id) else {
            return;
        };
        let mut tx = tx;
        settle(&mut self.held_bytes, &mut self.per_source, &mut tx);
        if let Some(k) = tx.key {
            if self.server_index.get(&k) == Some(&id) {
                self.server_index.remove(&k);
            }
        }
        if let Some(l) = tx.legacy {
            if let Some(ids) = self.legacy_index.get_mut(&l.call_id) {
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    self.legacy_index.remove(&l.call_id);
                }
            }
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// Counts of live client and server transactions (for stats and tests).
    pub fn len(&self) -> (usize, usize) {
        (self.clients.len(), self.servers.len())
    }

    /// Bytes held by live transactions: the received requests of server transactions (as
    /// given to [`TransactionLayer::handle_received`]) and the sent requests of client
    /// transactions.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Server transactions in progress (not yet answered finally) whose requests came from
    /// `ip`, and their bytes.
    pub fn source_load(&self, ip: IpAddr) -> (usize, usize) {
        self.per_source
            .get(&ip)
            .map_or((0, 0), |&(n, b)| (n as usize, b))
    }

    /// For a server transaction whose request arrived over UDP with a known size: that size in
    /// bytes, which a reply the element makes itself should not exceed (no reflection
    /// amplification). `None` for stream transports and unknown transactions.
    pub fn reply_budget(&self, tx: ServerTxId) -> Option<usize> {
        let t = self.servers.get(&tx.0)?;
        (t.transport == Transport::Udp && t.wire_len > 0).then_some(t.wire_len)
    }

    /// Forgets a server transaction without answering it (a request dropped on purpose).
    /// Returns false if it is unknown.
    pub fn discard(&mut self, tx: ServerTxId) -> bool {
        let known = self.servers.contains_key(&tx.0);
        self.remove_server(tx.0);
        known
    }

    /// Whether there are no live transactions.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.servers.is_empty()
    }
}

/// A fresh RFC 3261 branch: `"z9hG4bK"` + 16 hex chars, unique within the process (a bijective
/// mix of a process-random seed and a counter) and unpredictable across processes.
pub fn new_branch() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 finalizer: a bijection, so distinct counters give distinct branches.
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("{BRANCH_MAGIC}{z:016x}")
}

mod keys;

#[cfg(test)]
mod tests;

/// A server transaction is no longer in progress (it was answered finally, or it ended): it
/// leaves its source's count, and its request's bytes leave the held-bytes accounting (total
/// and per source). Idempotent.
fn settle(held: &mut usize, per_source: &mut HashMap<IpAddr, (u32, usize)>, tx: &mut ServerTx) {
    if !std::mem::take(&mut tx.in_progress) {
        return;
    }
    let freed = std::mem::take(&mut tx.wire_len);
    *held = held.saturating_sub(freed);
    let ip = tx.dest.ip();
    if let Some(load) = per_source.get_mut(&ip) {
        load.0 = load.0.saturating_sub(1);
        load.1 = load.1.saturating_sub(freed);
        if load.0 == 0 {
            per_source.remove(&ip);
        }
    }
}
