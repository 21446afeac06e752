//! Requests for other domains (RFC 3261 §16.5, RFC 3263): the relay policy (only this
//! server's own users may send through it: no open relay), the DNS lookup of the next hop
//! (NAPTR, SRV, A/AAAA) asked of the driver while the request waits, and the forwarding to the
//! ordered destinations, failing over from one to the next (RFC 3263 §4.3, in the proxy).
//!
//! The core stays sans-IO: it queues a [`DnsQuery`] ([`ServerCore::poll_dns_query`]), the
//! driver resolves it and hands the answer back ([`ServerCore::dns_resolved`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::ServerCore;
use crate::server::proxy::Target;
use crate::sip::msg::{Request, Uri};
use crate::sip::resolve::{self, Destination, Proto, ResolveError};
use crate::sip::transaction::{ServerTxId, Transport};

/// Most requests that may wait for a DNS answer at once; more get 503 with Retry-After.
pub const MAX_PENDING_LOOKUPS: usize = 4096;

/// A DNS lookup the core needs (RFC 3263 §4): answer it with [`ServerCore::dns_resolved`]
/// and the same `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    /// Identifies the waiting request.
    pub id: u64,
    /// What to resolve (the Request-URI's host, port, `transport=` and `maddr=`).
    pub target: resolve::Target,
}

/// A request waiting for its DNS answer.
#[derive(Debug)]
struct Waiting {
    tx: ServerTxId,
    req: Request,
    source: SocketAddr,
    transport: Transport,
    loop_hash: u64,
}

/// The lookups in flight and the requests waiting on them.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    waiting: HashMap<u64, Waiting>,
    queries: VecDeque<DnsQuery>,
    next_id: u64,
}

/// The transport to send with to a destination; `None` for WebSocket, which a server cannot
/// open (browsers only accept).
fn transport_of(proto: Proto) -> Option<Transport> {
    match Transport::from(proto) {
        t @ (Transport::Udp | Transport::Tcp | Transport::Tls) => Some(t),
        Transport::Ws | Transport::Wss => None,
    }
}

impl Lookups {
    /// A fresh query id (also for lookups that no request waits on).
    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

impl ServerCore {
    /// Whether a Request-URI names a host this server does not serve (another domain, or an
    /// IP address that is not ours): such requests are not looked up locally.
    pub(super) fn is_foreign(&self, uri: &Uri) -> bool {
        uri.is_sip() && self.domain_of(&uri.host).is_none()
    }

    /// Asks the driver to resolve the Request-URI of a request for another domain; the request
    /// waits (its server transaction answers retransmissions with 100 Trying).
    pub(super) fn route_foreign(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        loop_hash: u64,
    ) {
        if self.lookups.waiting.len() >= MAX_PENDING_LOOKUPS {
            return self.reply_overloaded(now, tx, &req);
        }
        let id = self.lookups.next_id;
        self.lookups.next_id += 1;
        self.lookups.queries.push_back(DnsQuery {
            id,
            target: resolve::Target::from_uri(&req.uri),
        });
        self.lookups.waiting.insert(
            id,
            Waiting {
                tx,
                req,
                source,
                transport,
                loop_hash,
            },
        );
        self.stats.dns_lookups += 1;
    }

    /// The next DNS lookup for the driver to run (RFC 3263 §4): a request's next hop, or a
    /// dispatcher destination named by DNS.
    pub fn poll_dns_query(&mut self) -> Option<DnsQuery> {
        self.lookups
            .queries
            .pop_front()
            .or_else(|| self.dispatch_dns_query())
    }

    /// The answer to [`DnsQuery`] `id`: the waiting request is forwarded to the first usable
    /// destination, the others kept for failover (RFC 3263 §4.3). No destination: 404 (no SIP
    /// server for that domain; 416 for a `sips:` one offering no TLS), a DNS failure: 500. An
    /// unknown `id` (already answered or cancelled) is ignored.
    pub fn dns_resolved(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<Vec<Destination>, ResolveError>,
    ) {
        let Some(w) = self.lookups.waiting.remove(&id) else {
            return self.dispatch_resolved(now, id, result);
        };
        let dests: Vec<(SocketAddr, Transport)> = match result {
            Ok(d) => d
                .iter()
                .filter_map(|d| transport_of(d.proto).map(|t| (d.addr, t)))
                .collect(),
            Err(e) => {
                tracing::info!(uri = %w.req.uri, error = %e, "next hop not resolved");
                let status = match e {
                    ResolveError::Dns(_) => 500,
                    ResolveError::NoSecureTransport(_) => 416,
                    ResolveError::NotFound(_) | ResolveError::InvalidTarget(_) => 404,
                };
                self.stats.rejected += 1;
                return self.reply(now, w.tx, &w.req, status, vec![]);
            }
        };
        let Some((&(dest, transport), rest)) = dests.split_first() else {
            self.stats.rejected += 1;
            return self.reply(now, w.tx, &w.req, 404, vec![]);
        };
        let target = Target {
            uri: None,
            dest,
            transport,
            nat: false,
            alternates: rest.to_vec(),
            route: Vec::new(),
            flow: false,
        };
        let (proxy, mut io) = self.io();
        proxy.fork(
            &mut io,
            now,
            w.tx,
            w.req,
            w.transport,
            w.source,
            vec![target],
            w.loop_hash,
        );
        self.drain_events(now);
    }

    /// A CANCEL for an INVITE still waiting for DNS (RFC 3261 §16.10): 200 to the CANCEL, 487
    /// to the INVITE, and the lookup's answer will be ignored. Returns whether it was one.
    pub(super) fn cancel_waiting(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        cancel: &Request,
    ) -> bool {
        let Some(invite) = self.tl.matching_invite(cancel) else {
            return false;
        };
        let Some(id) = self
            .lookups
            .waiting
            .iter()
            .find(|(_, w)| w.tx == invite)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(w) = self.lookups.waiting.remove(&id) {
            self.reply(now, tx, cancel, 200, vec![]);
            self.reply(now, w.tx, &w.req, 487, vec![]);
        }
        true
    }
}
