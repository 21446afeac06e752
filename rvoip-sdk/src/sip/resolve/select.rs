//! Sans-IO RFC 3263 target selection: a [`Plan`] asks for DNS records one [`Query`] at a time and
//! turns the [`Answer`]s into an ordered list of [`Destination`]s. No sockets, no clock; randomness
//! (RFC 2782 weighted SRV selection) comes in as an `&mut impl Rng`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use rand::Rng;

use super::{Answer, Destination, Naptr, Query, ResolveError, Srv, Target};
use crate::sip::transport::Transport;

/// Most DNS queries one [`Plan`] asks for; past it the plan stops and keeps what it has found, so a
/// hostile zone with thousands of NAPTR/SRV targets cannot make one request do unbounded work.
pub const MAX_QUERIES: usize = 32;
/// Most destinations one [`Plan`] returns (each is one address to try on failover).
pub const MAX_DESTINATIONS: usize = 64;
/// Most NAPTR or SRV records of one answer that are considered (after ordering by order/priority).
const MAX_RECORDS: usize = 64;

/// A SIP transport as RFC 3263 names it: the NAPTR service, the SRV prefix and the default port.
///
/// Local stand-in for [`Transport`] (convertible both ways with `From`) until the NAPTR/SRV names
/// move onto the shared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// SIP over UDP (RFC 3261 §18).
    Udp,
    /// SIP over TCP (RFC 3261 §18).
    Tcp,
    /// SIP over TLS over TCP (RFC 3261 §26.2, `sips:`).
    Tls,
    /// SIP over WebSocket (RFC 7118).
    Ws,
    /// SIP over secure WebSocket (RFC 7118).
    Wss,
}

/// Per transport, in [`Proto::ALL`] order: NAPTR service, SRV prefix (RFC 3263 §4.1, RFC 7118
/// §5), default port (RFC 3261 §19.1.2; WS/WSS: RFC 6455 §3) and `transport=` value.
const NAMES: [(&str, &str, u16, &str); 5] = [
    ("SIP+D2U", "_sip._udp", 5060, "udp"),
    ("SIP+D2T", "_sip._tcp", 5060, "tcp"),
    ("SIPS+D2T", "_sips._tcp", 5061, "tls"),
    ("SIP+D2W", "_sip._ws", 80, "ws"),
    ("SIPS+D2W", "_sips._ws", 443, "wss"),
];

impl Proto {
    /// Every transport, in declaration order (the same order as [`Transport::ALL`]).
    pub const ALL: [Proto; 5] = [Proto::Udp, Proto::Tcp, Proto::Tls, Proto::Ws, Proto::Wss];

    fn names(self) -> (&'static str, &'static str, u16, &'static str) {
        NAMES[self as usize]
    }

    /// The NAPTR service field (RFC 3263 §4.1, RFC 7118 §5): `"SIP+D2U"`, `"SIP+D2T"`,
    /// `"SIPS+D2T"`, `"SIP+D2W"`, `"SIPS+D2W"`.
    pub fn naptr_service(self) -> &'static str {
        self.names().0
    }

    /// The transport for a NAPTR service field, ignoring ASCII case; `None` for services this
    /// resolver does not support (e.g. `SIP+D2S`, SCTP).
    pub fn from_naptr_service(service: &str) -> Option<Proto> {
        Proto::ALL
            .into_iter()
            .find(|p| p.naptr_service().eq_ignore_ascii_case(service.trim()))
    }

    /// The SRV owner-name prefix (RFC 3263 §4.1, RFC 7118 §5): `"_sip._udp"`, `"_sip._tcp"`,
    /// `"_sips._tcp"`, `"_sip._ws"`, `"_sips._ws"`.
    pub fn srv_prefix(self) -> &'static str {
        self.names().1
    }

    /// The port used when neither the URI nor SRV gives one: 5060, TLS 5061 (RFC 3261 §19.1.2),
    /// WS 80, WSS 443 (RFC 6455 §3).
    pub fn default_port(self) -> u16 {
        self.names().2
    }

    /// The transport for a `transport=` URI parameter (RFC 3261 §19.1.1, RFC 7118 §5), ignoring
    /// ASCII case; `None` for unknown values (e.g. `sctp`).
    pub fn from_param(param: &str) -> Option<Proto> {
        Proto::ALL
            .into_iter()
            .find(|p| p.names().3.eq_ignore_ascii_case(param.trim()))
    }

    /// True for the transports that protect the hop with TLS (TLS, WSS).
    pub fn is_secure(self) -> bool {
        matches!(self, Proto::Tls | Proto::Wss)
    }

    /// The transport to use for a `sips:` URI that names this one: `sips:…;transport=tcp` means TLS
    /// (RFC 5630 §3.1.2), `ws` means WSS; `None` for UDP, which has no secure form.
    pub fn secured(self) -> Option<Proto> {
        match self {
            Proto::Udp => None,
            Proto::Tcp | Proto::Tls => Some(Proto::Tls),
            Proto::Ws | Proto::Wss => Some(Proto::Wss),
        }
    }
}

impl From<Proto> for Transport {
    /// The engine-wide transport with the same name.
    fn from(p: Proto) -> Transport {
        Transport::ALL[p as usize]
    }
}

impl From<Transport> for Proto {
    /// The RFC 3263 transport with the same name.
    fn from(t: Transport) -> Proto {
        Proto::ALL[t as usize]
    }
}

/// Usable NAPTR services for one domain, in the order to try them (see [`select_naptr`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NaptrSelection {
    /// (transport, SRV name) pairs, best first, without duplicates.
    pub services: Vec<(Proto, String)>,
    /// True when a plaintext `SIP+…` service was dropped because the target is `sips:`.
    pub plaintext_offered: bool,
}

/// Orders and filters NAPTR records per RFC 3263 §4.1: by order then preference; keeps only "S"
/// records with a replacement and a supported service; for `secure` only `SIPS+…` services.
pub fn select_naptr(records: &[Naptr], secure: bool) -> NaptrSelection {
    let mut sorted: Vec<&Naptr> = records.iter().collect();
    sorted.sort_by_key(|r| (r.order, r.preference));
    let mut sel = NaptrSelection::default();
    for r in sorted.into_iter().take(MAX_RECORDS) {
        let name = normalize(&r.replacement);
        if !r.flags.trim().eq_ignore_ascii_case("s") || name.is_empty() {
            continue;
        }
        let plaintext = r
            .services
            .trim()
            .get(..4)
            .is_some_and(|s| s.eq_ignore_ascii_case("SIP+"));
        match Proto::from_naptr_service(&r.services) {
            Some(p) if !secure || p.is_secure() => {
                if !sel.services.iter().any(|(q, n)| *q == p && *n == name) {
                    sel.services.push((p, name));
                }
            }
            _ => sel.plaintext_offered |= secure && plaintext,
        }
    }
    sel
}

/// Orders SRV records per RFC 2782: ascending priority; within a priority, weighted random
/// selection (weight-0 records first in the running sum, so they are rarely picked before
/// weighted ones). Drops records whose target is `"."` or empty or whose port is 0, and duplicate
/// (target, port) pairs. Targets come back lower case without a trailing dot.
pub fn order_srv<R: Rng + ?Sized>(records: &[Srv], rng: &mut R) -> Vec<Srv> {
    let mut usable: Vec<Srv> = Vec::new();
    for r in records {
        let target = normalize(&r.target);
        if r.port == 0
            || target.is_empty()
            || usable
                .iter()
                .any(|u| u.target == target && u.port == r.port)
        {
            continue;
        }
        usable.push(Srv {
            target,
            ..r.clone()
        });
    }
    usable.sort_by_key(|r| r.priority);
    usable.truncate(MAX_RECORDS);
    let mut out = Vec::with_capacity(usable.len());
    for group in usable.chunk_by(|a, b| a.priority == b.priority) {
        let mut group = group.to_vec();
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = rng.gen_range(0..=total);
            let mut running = 0u64;
            let idx = group
                .iter()
                .position(|r| {
                    running += u64::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(idx));
        }
    }
    out
}

/// Orders a host's addresses: IPv4 first, then IPv6, each in DNS order, without duplicates.
pub fn order_addrs(addrs: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(addrs.len());
    for ip in addrs
        .iter()
        .filter(|ip| ip.is_ipv4())
        .chain(addrs.iter().filter(|ip| ip.is_ipv6()))
    {
        if !out.contains(ip) {
            out.push(*ip);
        }
    }
    out
}

/// Lower case, trimmed, without a trailing dot; the root name `"."` becomes `""`.
fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// One step of the plan; jobs run front to back, and a job's follow-ups go to the front.
#[derive(Debug)]
enum Job {
    /// NAPTR lookup of the domain.
    Naptr,
    /// SRV lookup of (name, for transport); the boxed job runs if it yields no usable record.
    Srv(String, Proto, Option<Box<Job>>),
    /// A/AAAA lookup of (host, then port, transport): an SRV target or a name with a port.
    Addrs(String, u16, Proto),
    /// A/AAAA of the domain on (port, transport), skipped once any SRV record was seen (§4.2).
    Fallback(u16, Proto),
}

/// The RFC 3263 §4 procedure for one [`Target`], as a sans-IO state machine.
///
/// Loop: [`Plan::poll_query`] gives the next [`Query`]; answer it with [`Plan::handle_answer`] (or
/// [`Plan::handle_failure`] when the lookup failed); when `poll_query` gives `None`, call
/// [`Plan::finish`]. Answers for the same host are cached within the plan.
#[derive(Debug, Default)]
pub struct Plan {
    domain: String,
    secure: bool,
    jobs: VecDeque<Job>,
    pending: Option<Job>,
    cache: HashMap<String, Vec<IpAddr>>,
    out: Vec<Destination>,
    queries: usize,
    saw_srv: bool,
    plaintext_offered: bool,
    failure: Option<ResolveError>,
    /// The transports the client can use (RFC 3263 §4.1: others are discarded).
    supported: Vec<Proto>,
    /// The transport of a numeric host, of a host with a port and of the A/AAAA fallback when
    /// no `transport=` is given: the first supported of UDP, TCP, TLS (`sips:`: TLS, WSS).
    default: Option<Proto>,
}

impl Plan {
    /// Starts resolving `target` (RFC 3263 §4.1 transport and §4.2 port/address rules; `maddr`
    /// per RFC 3261 §19.1.2) for a client that supports every [`Proto`]. An IP literal needs no
    /// query: the plan is already finished.
    ///
    /// Errors: [`ResolveError::InvalidTarget`] for an empty host or port 0;
    /// [`ResolveError::NoSecureTransport`] for a `sips:` target with `transport=udp`.
    pub fn new(target: &Target) -> Result<Plan, ResolveError> {
        Plan::with_transports(target, &Proto::ALL)
    }

    /// Like [`Plan::new`], for a client that can use only the `supported` transports (e.g. an
    /// account configured for TCP): NAPTR services of other transports are discarded and the
    /// SRV probes without NAPTR ask only for these (RFC 3263 §4.1, "supported by the client").
    /// Without `transport=`, a numeric host or a host with a port uses the first supported of
    /// UDP, TCP, TLS (for `sips:`: TLS, WSS), which is UDP (TLS) when all are supported.
    ///
    /// Errors: as [`Plan::new`]; [`ResolveError::InvalidTarget`] when `transport=` names a
    /// transport not in `supported`, or when none of `supported` can reach the target (e.g.
    /// only UDP for a `sips:` target).
    pub fn with_transports(target: &Target, supported: &[Proto]) -> Result<Plan, ResolveError> {
        let raw = target.maddr.as_deref().unwrap_or(&target.host).trim();
        let raw = raw
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw);
        let domain = normalize(raw);
        if domain.is_empty() {
            return Err(ResolveError::InvalidTarget(format!("empty host {raw:?}")));
        }
        if target.port == Some(0) {
            return Err(ResolveError::InvalidTarget(format!("port 0 for {domain}")));
        }
        let transport = match target.transport {
            Some(p) if target.secure => Some(
                p.secured()
                    .ok_or_else(|| ResolveError::NoSecureTransport(domain.clone()))?,
            ),
            other => other,
        };
        if let Some(p) = transport.filter(|p| !supported.contains(p)) {
            return Err(ResolveError::InvalidTarget(format!(
                "transport {} not supported for {domain}",
                Transport::from(p)
            )));
        }
        let preference: &[Proto] = if target.secure {
            &[Proto::Tls, Proto::Wss]
        } else {
            &[Proto::Udp, Proto::Tcp, Proto::Tls]
        };
        let Some(default) = preference.iter().copied().find(|p| supported.contains(p)) else {
            return Err(ResolveError::InvalidTarget(format!(
                "no supported transport reaches {domain}"
            )));
        };
        let mut plan = Plan {
            domain,
            secure: target.secure,
            supported: supported.to_vec(),
            default: Some(default),
            ..Plan::default()
        };
        if let Ok(ip) = raw.parse::<IpAddr>() {
            let proto = transport.unwrap_or(default);
            plan.domain = ip.to_string();
            plan.push_addrs(&[ip], target.port.unwrap_or(proto.default_port()), proto);
            return Ok(plan);
        }
        let job = match (target.port, transport) {
            (Some(port), p) => Job::Addrs(plan.domain.clone(), port, p.unwrap_or(default)),
            (None, Some(p)) => {
                let fallback = Job::Fallback(p.default_port(), p);
                Job::Srv(plan.srv_name(p), p, Some(Box::new(fallback)))
            }
            (None, None) => Job::Naptr,
        };
        plan.jobs.push_back(job);
        Ok(plan)
    }

    /// The next DNS query to make, or `None` when the plan is finished (then call [`Plan::finish`]).
    /// Repeats the same query until it is answered. Stops after [`MAX_QUERIES`] queries or
    /// [`MAX_DESTINATIONS`] destinations.
    pub fn poll_query(&mut self) -> Option<Query> {
        if let Some(job) = &self.pending {
            return self.query_of(job);
        }
        while self.out.len() < MAX_DESTINATIONS {
            let job = match self.jobs.pop_front()? {
                Job::Fallback(..) if self.saw_srv || self.plaintext_offered => continue,
                Job::Fallback(port, proto) => Job::Addrs(self.domain.clone(), port, proto),
                job => job,
            };
            if let Job::Addrs(host, port, proto) = &job {
                if let Some(ips) = self.cache.get(host).cloned() {
                    self.push_addrs(&ips, *port, *proto);
                    continue;
                }
            }
            if self.queries >= MAX_QUERIES {
                self.jobs.clear();
                return None;
            }
            self.queries += 1;
            let query = self.query_of(&job);
            self.pending = Some(job);
            return query;
        }
        None
    }

    /// Feeds the records that answer the last [`Plan::poll_query`]. An answer of the wrong kind is
    /// taken as empty; an answer with no query outstanding is ignored. `rng` orders SRV records
    /// (RFC 2782).
    pub fn handle_answer<R: Rng + ?Sized>(&mut self, answer: Answer, rng: &mut R) {
        let Some(job) = self.pending.take() else {
            return;
        };
        match (job, answer) {
            (Job::Naptr, Answer::Naptr(records)) => self.on_naptr(&records),
            (Job::Srv(_, proto, or_else), Answer::Srv(records)) => {
                let ordered = order_srv(&records, rng);
                self.on_srv(ordered, !records.is_empty(), proto, or_else);
            }
            (Job::Addrs(host, port, proto), Answer::Addrs(ips)) => {
                self.push_addrs(&ips, port, proto);
                self.cache.insert(host, ips);
            }
            (job, _) => self.on_empty(job),
        }
    }

    /// Records that the last [`Plan::poll_query`] failed (timeout, SERVFAIL…). The plan goes on as if
    /// the answer were empty; [`Plan::finish`] returns the first failure if nothing was found.
    pub fn handle_failure(&mut self, error: ResolveError) {
        if let Some(job) = self.pending.take() {
            self.failure.get_or_insert(error);
            self.on_empty(job);
        }
    }

    /// The destinations found, in the order to try them.
    ///
    /// Errors: [`ResolveError::NoSecureTransport`] when a `sips:` target's NAPTR records offered only
    /// plaintext; the first [`Plan::handle_failure`] error; else [`ResolveError::NotFound`].
    pub fn finish(self) -> Result<Vec<Destination>, ResolveError> {
        if !self.out.is_empty() {
            Ok(self.out)
        } else if self.secure && self.plaintext_offered {
            Err(ResolveError::NoSecureTransport(self.domain))
        } else if let Some(e) = self.failure {
            Err(e)
        } else {
            Err(ResolveError::NotFound(self.domain))
        }
    }

    /// The SRV owner name for `proto` at the domain, e.g. `_sip._udp.example.com`.
    fn srv_name(&self, proto: Proto) -> String {
        format!("{}.{}", proto.srv_prefix(), self.domain)
    }

    fn query_of(&self, job: &Job) -> Option<Query> {
        Some(match job {
            Job::Naptr => Query::Naptr(self.domain.clone()),
            Job::Srv(name, ..) => Query::Srv(name.clone()),
            Job::Addrs(host, ..) => Query::Addrs(host.clone()),
            Job::Fallback(..) => return None,
        })
    }

    fn on_empty(&mut self, job: Job) {
        match job {
            Job::Naptr => self.on_naptr(&[]),
            Job::Srv(_, proto, or_else) => self.on_srv(Vec::new(), false, proto, or_else),
            Job::Addrs(host, ..) => {
                self.cache.insert(host, Vec::new());
            }
            Job::Fallback(..) => {}
        }
    }

    /// RFC 3263 §4.1: follow usable NAPTR services; with none, probe SRV per transport, then A/AAAA.
    fn on_naptr(&mut self, records: &[Naptr]) {
        let mut sel = select_naptr(records, self.secure);
        sel.services.retain(|(p, _)| self.supported.contains(p));
        self.plaintext_offered |= sel.plaintext_offered;
        if !sel.services.is_empty() {
            for (proto, name) in sel.services.into_iter().rev() {
                self.jobs.push_front(Job::Srv(name, proto, None));
            }
            return;
        }
        if self.secure && self.plaintext_offered {
            return; // the domain offers only plaintext: no silent downgrade, no guessing
        }
        let probes: &[Proto] = if self.secure {
            &[Proto::Tls]
        } else {
            &[Proto::Udp, Proto::Tcp, Proto::Tls]
        };
        let Some(default) = self.default else {
            return;
        };
        let mut next = Job::Fallback(default.default_port(), default);
        for &p in probes.iter().rev() {
            if self.supported.contains(&p) {
                next = Job::Srv(self.srv_name(p), p, Some(Box::new(next)));
            }
        }
        self.jobs.push_front(next);
    }

    fn on_srv(
        &mut self,
        ordered: Vec<Srv>,
        had_records: bool,
        proto: Proto,
        or_else: Option<Box<Job>>,
    ) {
        self.saw_srv |= had_records;
        if ordered.is_empty() {
            if let Some(next) = or_else {
                self.jobs.push_front(*next);
            }
            return;
        }
        for srv in ordered.into_iter().rev() {
            self.jobs
                .push_front(Job::Addrs(srv.target, srv.port, proto));
        }
    }

    fn push_addrs(&mut self, ips: &[IpAddr], port: u16, proto: Proto) {
        if (self.secure && !proto.is_secure()) || !self.supported.contains(&proto) {
            return;
        }
        for ip in order_addrs(ips) {
            let addr = SocketAddr::new(ip, port);
            if self.out.len() < MAX_DESTINATIONS
                && !self.out.iter().any(|d| d.addr == addr && d.proto == proto)
            {
                self.out.push(Destination {
                    addr,
                    proto,
                    host: self.domain.clone(),
                });
            }
        }
    }
}
