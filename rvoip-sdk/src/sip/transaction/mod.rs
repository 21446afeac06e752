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
//! Timers live in one [`TimerWheel`] with lazy cancellation: every transaction stores the deadline
//! of its (at most two) armed timers; a due entry that no longer matches is ignored.

// Nested `if let`s instead of let-chains: the MSRV is 1.85.
#![allow(clippy::collapsible_if)]

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use crate::sip::timer_wheel::TimerWheel;

/// Transactions by the layer's own ids (a counter, never chosen by a peer): a multiplicative
/// hash is enough, and SipHash would cost more than the lookup.
type IdMap<V> = HashMap<u64, V, rustc_hash::FxBuildHasher>;

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
    /// `key`'s hash in [`TransactionLayer::client_index`].
    key_hash: u64,
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
    /// The request's method slot in [`MessageCounts`].
    method: u8,
    /// When the request arrived (first-response latency).
    started: Instant,
    /// Whether a response other than 100 Trying was sent (its latency is recorded).
    answered: bool,
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
    /// `key`'s hash in [`TransactionLayer::server_index`].
    key_hash: u64,
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
    clients: IdMap<Box<ClientTx>>,
    servers: IdMap<Box<ServerTx>>,
    /// Client transactions by [`ClientKey`] (the keys stay in the transactions).
    client_index: index::KeyIndex,
    /// Server transactions by [`ServerKey`] (the keys stay in the transactions).
    server_index: index::KeyIndex,
    /// Server transactions created by requests without a magic-cookie branch, by Call-ID.
    legacy_index: HashMap<ByteString, Vec<u64>>,
    timers: TimerWheel<(u64, Slot)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    /// Wire length of the message being handed in by [`TransactionLayer::handle_received`].
    incoming_len: usize,
    /// Bytes held by live transactions: received requests of server transactions, sent
    /// requests of client transactions.
    held_bytes: usize,
    /// Per source IP: live server transactions and the bytes of their requests.
    per_source: HashMap<IpAddr, (u32, usize)>,
    /// Messages received and sent, by method and class.
    counts: MessageCounts,
    /// Whether a new INVITE's 100 Trying waits until the transmits are next polled, and is
    /// dropped if the transaction user answered in the meantime ([`TransactionLayer::set_defer_trying`]).
    defer_trying: bool,
    /// INVITE server transactions whose 100 Trying is owed (deferred mode).
    owed_trying: Vec<u64>,
    /// Whether non-INVITE server transactions keep a copy of their request
    /// ([`TransactionLayer::set_keep_non_invite_requests`]).
    keep_non_invite_requests: bool,
    /// Whether server transactions keep only their request's response head
    /// ([`TransactionLayer::set_keep_request_heads`]).
    keep_request_heads: bool,
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
    timers: &mut TimerWheel<(u64, Slot)>,
    slot_field: &mut Option<Instant>,
    at: Instant,
    id: u64,
    slot: Slot,
) {
    *slot_field = Some(at);
    timers.push(at, (id, slot));
}

/// Whether a timer entry is still armed: its transaction exists and holds that deadline in
/// that slot (a re-armed or cancelled timer leaves a dead entry behind).
fn is_live(
    clients: &IdMap<Box<ClientTx>>,
    servers: &IdMap<Box<ServerTx>>,
    at: Instant,
    id: u64,
    slot: Slot,
) -> bool {
    match slot {
        Slot::ClientRetx => clients.get(&id).is_some_and(|t| t.retx_at == Some(at)),
        Slot::ClientEnd => clients.get(&id).is_some_and(|t| t.end_at == Some(at)),
        Slot::ServerRetx => servers.get(&id).is_some_and(|t| t.retx_at == Some(at)),
        Slot::ServerEnd => servers.get(&id).is_some_and(|t| t.end_at == Some(at)),
    }
}

fn push_transmit(q: &mut VecDeque<Transmit>, dest: SocketAddr, transport: Transport, bytes: Bytes) {
    q.push_back(Transmit {
        dest,
        transport,
        bytes,
    });
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
            clients: IdMap::default(),
            servers: IdMap::default(),
            client_index: index::KeyIndex::default(),
            server_index: index::KeyIndex::default(),
            legacy_index: HashMap::new(),
            timers: TimerWheel::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            incoming_len: 0,
            held_bytes: 0,
            per_source: HashMap::new(),
            counts: MessageCounts::default(),
            defer_trying: false,
            owed_trying: Vec::new(),
            keep_non_invite_requests: true,
            keep_request_heads: false,
        }
    }

    /// Whether a non-INVITE server transaction keeps a copy of its request for
    /// [`Self::server_request`] until its final response (on by default). A transaction user
    /// that builds its responses from the request it was handed (the server) turns it off:
    /// each REGISTER, BYE or OPTIONS is then not copied (every header's reference count taken
    /// and dropped again). INVITE server transactions always keep theirs (CANCEL's 487, the
    /// deferred 100 Trying).
    pub fn set_keep_non_invite_requests(&mut self, on: bool) {
        self.keep_non_invite_requests = on;
    }

    /// Whether server transactions keep only their request's response head
    /// ([`Request::response_head`]: Via, From, To, Call-ID and CSeq) instead of a copy of the
    /// whole request (off by default). An element that builds nothing from
    /// [`Self::server_request`] but responses with status 100 or ≥ 300 (the server: the
    /// deferred 100 Trying, CANCEL's 487) turns it on. Each INVITE then costs five header
    /// copies instead of all of them, and a ringing call does not pin its INVITE's datagram.
    pub fn set_keep_request_heads(&mut self, on: bool) {
        self.keep_request_heads = on;
    }

    /// Defers the 100 Trying of new INVITEs (off by default). §17.2.1 lets a server
    /// transaction skip the 100 when it knows the transaction user answers within 200 ms: with
    /// this on, the 100 is sent when the transmits are next polled ([`Self::poll_transmit`]),
    /// and only if the transaction user has not sent a response by then. A server that answers
    /// an INVITE at once (a 407 challenge, a 404) then sends one datagram instead of two; one
    /// that forwards it still sends the 100 in the same turn.
    pub fn set_defer_trying(&mut self, on: bool) {
        self.defer_trying = on;
        if !on {
            self.send_owed_trying();
        }
    }

    /// Sends the 100 Trying of every owed INVITE server transaction still without a response,
    /// ahead of the other transmits waiting (what the transaction user forwarded meanwhile).
    fn send_owed_trying(&mut self) {
        for id in std::mem::take(&mut self.owed_trying).into_iter().rev() {
            let Some(tx) = self.servers.get_mut(&id) else {
                continue;
            };
            if tx.state != ServerState::Proceeding || tx.answered || tx.last_resp.is_some() {
                continue;
            }
            let Some(req) = tx.request.as_deref() else {
                continue;
            };
            let trying = Response::for_request(req, 100).to_bytes();
            self.counts.response(usize::from(tx.method), 100);
            self.transmits.push_front(Transmit {
                dest: tx.dest,
                transport: tx.transport,
                bytes: trying.clone(),
            });
            tx.last_resp = Some(trying);
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
    /// immediately (§16.2 / §17.2.1), or at the next [`Self::poll_transmit`] if the transaction
    /// user has not answered by then ([`Self::set_defer_trying`]).
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

    /// The server transaction a request belongs to (§17.2.3): by its RFC 3261 key, else by
    /// the RFC 2543 rules (`legacy`, matched as `how`).
    fn find_server(
        &self,
        key: Option<(&ServerKey, u64)>,
        legacy: Option<&LegacyKey>,
        how: LegacyMatch,
    ) -> Option<u64> {
        match (key, legacy) {
            (Some((k, hash)), _) => self.find_server_by_key(k, hash),
            (None, Some(l)) => self.find_legacy(l, how),
            (None, None) => None,
        }
    }

    /// The server transaction whose RFC 3261 key is `key` (`hash`: its hash in the index).
    fn find_server_by_key(&self, key: &ServerKey, hash: u64) -> Option<u64> {
        let servers = &self.servers;
        self.server_index.find(hash, |id| {
            servers.get(&id).and_then(|t| t.key.as_ref()) == Some(key)
        })
    }

    /// The client transaction whose key is `key` (`hash`: its hash in the index).
    fn find_client_by_key(&self, key: &ClientKey, hash: u64) -> Option<u64> {
        let clients = &self.clients;
        self.client_index.find(hash, |id| {
            clients.get(&id).and_then(|t| t.key.as_ref()) == Some(key)
        })
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

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        loop {
            // A timer that fires may arm another one that is already due.
            self.timers.take_due(now, &mut due);
            if due.is_empty() {
                break;
            }
            for (at, (id, slot)) in due.drain(..) {
                if is_live(&self.clients, &self.servers, at, id, slot) {
                    self.fire(now, id, slot);
                }
            }
        }
        self.prune();
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
        let (clients, servers) = (&self.clients, &self.servers);
        self.timers
            .prune(|at, (id, slot)| is_live(clients, servers, at, id, slot));
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.earliest()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.owed_trying.is_empty() {
            self.send_owed_trying();
        }
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

    /// Whether there are no live transactions.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.servers.is_empty()
    }

    /// The requests received and responses sent so far, by method and class, with the
    /// first-response latencies.
    pub fn counts(&self) -> &MessageCounts {
        &self.counts
    }

    /// Counts a response with `status` to a `method` request that the element sent outside
    /// any server transaction (with [`TransactionLayer::send_stateless`]: a reply to an
    /// unparsable request, a relayed stray 2xx).
    pub fn count_stateless_response(&mut self, method: &Method, status: u16) {
        self.counts.response(method_index(method), status);
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

mod client;
mod counts;
pub use counts::{
    CLASS_NAMES, LATENCY_BUCKETS_US, LatencyHistogram, METHOD_NAMES, METHOD_SLOTS, MessageCounts,
    class_index, method_index,
};
mod index;
mod keys;
mod load;
pub use load::{TX_STATE_BYTES, allocation_size, held_cost};
mod server;

#[cfg(test)]
mod tests;
