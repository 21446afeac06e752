//! Outbound routing to trunks and gateways, as Kamailio's `dispatcher` module does (sans-IO).
//!
//! A [`Dispatcher`] holds destination sets ([`config::SetConfig`]), the state of every
//! destination (up or down, its resolved addresses), the routing rules (Request-URI user prefix,
//! longest first; Request-URI domain) and the OPTIONS probe schedule. It knows no sockets and no
//! clock: the server core asks it which set a request goes to ([`Dispatcher::route_prefix`],
//! [`Dispatcher::route_domain`]), which destination to try first and which next
//! ([`Dispatcher::select`], [`Dispatcher::next`]), and tells it what happened
//! ([`Dispatcher::failed`], [`Dispatcher::probe_answered`], [`Dispatcher::resolved`]); it feeds
//! `now` to [`Dispatcher::handle_timeout`] and sends the probes of [`Dispatcher::poll_probe`].
//!
//! Destination state (what Kamailio's `ds_ping_reply_codes` and `ds_mark_dst` decide there):
//! - a destination starts **up** once it has an address (IP literals at once, DNS names after
//!   their RFC 3263 lookup);
//! - it goes **down** on a probe answered 408 or 5xx, a probe unanswered within
//!   `probe_timeout_ms`, and on a forwarded request answered 408 or 5xx, unanswered within the
//!   set's `fr_timer_ms`, or failing at the transport (one failure is enough);
//! - it comes **up** again on a probe answered with any other final response (2xx, 3xx, 4xx but
//!   408, 6xx): the destination is alive. Kamailio counts only 200 by default and widens that
//!   with `ds_ping_reply_codes`; this equals `ds_ping_reply_codes="class=2;class=3;class=4;
//!   class=6"` without 408. A call's success does not bring a destination up: only probes do,
//!   so with probing off (`probe_interval_s = 0`) a down destination stays down.
//!
//! When every destination of a set is down, requests still go out, to all of them in turn (a
//! last resort rather than refusing every call while the probes catch up).

pub mod config;
mod probe;
mod select;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use self::config::{Algorithm, DispatchConfig, RouteConfig, SetConfig, TrunkCredentials};
use crate::sip::msg::{Response, Uri};
use crate::sip::resolve::{self, Destination as Resolved, ResolveError};
use crate::sip::transaction::Transport;

/// How long a DNS answer for a destination is used before it is looked up again.
pub const DNS_REFRESH: Duration = Duration::from_secs(300);
/// How long after a failed DNS lookup it is tried again.
pub const DNS_RETRY: Duration = Duration::from_secs(30);

/// Identifies one destination of one set while it is configured; kept across
/// [`Dispatcher::reconfigure`] for a destination whose set name and URI stay the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestId(u64);

/// Whether a destination takes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestState {
    /// It takes requests.
    Up,
    /// It failed; only probes go there until one is answered.
    Down,
}

/// What made a destination fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No (first) response in time, or a transport error.
    Timeout,
    /// This final status (408 or 5xx).
    Status(u16),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timeout"),
            Failure::Status(s) => write!(f, "{s}"),
        }
    }
}

/// A change of a destination's state, for the log and for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchEvent {
    /// The destination went down.
    Down {
        /// Its set.
        set: String,
        /// Its URI.
        uri: String,
        /// Why: a probe or a forwarded request failed so.
        failure: Failure,
        /// Whether a probe (else a forwarded request) failed.
        probe: bool,
    },
    /// A probe found the destination alive again.
    Up {
        /// Its set.
        set: String,
        /// Its URI.
        uri: String,
        /// The probe's status.
        status: u16,
    },
}

/// One destination of a set.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Its identity.
    pub id: DestId,
    /// Its URI as configured (host, port, transport; no user).
    pub uri: Uri,
    /// Its weight for the `weighted` algorithm.
    pub weight: u32,
    /// The credentials for its challenges, if any.
    pub credentials: Option<TrunkCredentials>,
    /// Its addresses in RFC 3263 order; empty until resolved.
    pub addrs: Vec<(SocketAddr, Transport)>,
    /// Up or down.
    pub state: DestState,
    /// Requests sent to it first or by failover.
    pub selected: u64,
    /// Times it failed (probes and requests).
    pub failures: u64,
    /// Whether its host needs DNS.
    needs_dns: bool,
    /// A DNS lookup is in flight.
    dns_in_flight: bool,
    /// When its addresses are looked up (again).
    dns_due: Option<Instant>,
    /// The probe in flight: its id and deadline.
    probe: Option<(u64, Instant)>,
    /// Smooth weighted round-robin credit.
    credit: i64,
}

impl Destination {
    /// Whether it can take a request now (up and resolved).
    pub fn is_usable(&self) -> bool {
        self.state == DestState::Up && !self.addrs.is_empty()
    }
}

/// A destination set.
#[derive(Debug, Clone)]
pub struct Set {
    /// Its name.
    pub name: String,
    /// Its selection algorithm.
    pub algorithm: Algorithm,
    /// The time a destination has for its first response (Kamailio's `fr_timer`).
    pub fr_timer: Duration,
    /// Its destinations, in configured order.
    pub destinations: Vec<Destination>,
    /// Round robin: where the next search starts.
    rr_next: usize,
}

/// An OPTIONS probe to send (RFC 3261 §11): answer it with [`Dispatcher::probe_answered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The probe's id.
    pub id: u64,
    /// The destination probed.
    pub dest: DestId,
    /// The Request-URI (the destination's URI).
    pub uri: Uri,
    /// The address and transport to send to (its first address).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
}

/// One request's way through a set: the destination being tried, the ones left, and the best
/// final response so far (RFC 3261 §16.7 step 6 ranks them), carried with the request while
/// the proxy forwards it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The set's name.
    pub set: String,
    /// The destination being tried.
    pub current: DestId,
    /// The destinations left, in order.
    remaining: VecDeque<DestId>,
    /// All destinations were down when the request came: down ones are tried too.
    last_resort: bool,
    /// The current destination was sent our credentials (after its 401/407).
    pub authorized: bool,
    /// The time a destination has for its first response.
    pub fr_timer: Duration,
    /// The best final response received so far from the destinations tried.
    pub best: Option<Response>,
    /// Destinations tried.
    pub tried: u32,
}

impl Attempt {
    /// Keeps `resp` if it ranks better than the best so far (RFC 3261 §16.7 step 6).
    pub fn keep_best(&mut self, resp: Option<Response>) {
        let Some(r) = resp else { return };
        let better = self.best.as_ref().is_none_or(|b| {
            crate::server::proxy::route::rank(r.status)
                < crate::server::proxy::route::rank(b.status)
        });
        if better {
            self.best = Some(r);
        }
    }
}

/// The dispatcher's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Requests routed to a set.
    pub routed: u64,
    /// Moves to the next destination after a failure.
    pub failovers: u64,
    /// Requests re-sent with trunk credentials after a 401/407.
    pub trunk_auth: u64,
    /// Requests for which every destination failed.
    pub exhausted: u64,
    /// Probes sent.
    pub probes: u64,
}

/// The dispatcher: sets, destination states, rules and probe schedule.
#[derive(Debug, Default)]
pub struct Dispatcher {
    sets: Vec<Set>,
    /// Prefix rules, longest prefix first: (prefix, set index).
    prefixes: Vec<(String, usize)>,
    /// Domain rules: lower-case domain → set index.
    domains: HashMap<String, usize>,
    probe_interval: Option<Duration>,
    probe_timeout: Duration,
    next_probe: Option<Instant>,
    probes: VecDeque<Probe>,
    /// Probes given up at their deadline, for the core to end their transactions.
    expired: VecDeque<u64>,
    dns: VecDeque<(DestId, resolve::Target)>,
    events: VecDeque<DispatchEvent>,
    next_id: u64,
    next_probe_id: u64,
    /// Counters.
    pub stats: DispatchStats,
}

/// The transport to reach a resolved destination with; `None` for WebSocket (a server cannot
/// open one).
fn transport_of(d: &Resolved) -> Option<(SocketAddr, Transport)> {
    match Transport::from(d.proto) {
        t @ (Transport::Udp | Transport::Tcp | Transport::Tls) => Some((d.addr, t)),
        Transport::Ws | Transport::Wss => None,
    }
}

impl Dispatcher {
    /// A dispatcher for `cfg` (already checked: [`DispatchConfig::check`]); probing starts at
    /// `now`. Destinations whose URI no longer parses are left out (logged).
    pub fn new(cfg: &DispatchConfig, now: Instant) -> Dispatcher {
        let mut d = Dispatcher::default();
        d.reconfigure(cfg, now);
        d
    }

    /// Whether no route is configured (every request is routed as without a dispatcher).
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.domains.is_empty()
    }

    /// Applies a new configuration (a reload): destinations that stay (same set name and URI)
    /// keep their identity, state, addresses and counters; new ones start up (after DNS if
    /// they need it); removed ones are forgotten, and requests on their way through them fail
    /// over as usual. Requests in progress keep the attempt they started with.
    pub fn reconfigure(&mut self, cfg: &DispatchConfig, now: Instant) {
        let mut old: HashMap<(String, String), Destination> = HashMap::new();
        let mut old_rr: HashMap<String, usize> = HashMap::new();
        for s in self.sets.drain(..) {
            old_rr.insert(s.name.clone(), s.rr_next);
            for dest in s.destinations {
                old.insert((s.name.clone(), dest.uri.to_string()), dest);
            }
        }
        for sc in &cfg.sets {
            let name = sc.name.trim().to_string();
            let mut destinations = Vec::with_capacity(sc.destinations.len());
            for dc in &sc.destinations {
                let uri = match config::parse_destination_uri(&dc.uri) {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(set = %name, error = %e, "dispatch destination ignored");
                        continue;
                    }
                };
                let credentials = sc.credentials_of(dc);
                let dest = match old.remove(&(name.clone(), uri.to_string())) {
                    Some(mut d) => {
                        d.weight = dc.weight;
                        d.credentials = credentials;
                        d
                    }
                    None => self.new_destination(uri, dc.weight, credentials, now),
                };
                destinations.push(dest);
            }
            let rr_next = old_rr.get(&name).copied().unwrap_or(0);
            self.sets.push(Set {
                name,
                algorithm: sc.algorithm,
                fr_timer: Duration::from_millis(sc.fr_timer_ms.max(1)),
                destinations,
                rr_next,
            });
        }
        self.prefixes.clear();
        self.domains.clear();
        for r in &cfg.routes {
            let Some(si) = self.sets.iter().position(|s| s.name == r.set.trim()) else {
                continue;
            };
            if let Some(p) = &r.prefix {
                self.prefixes.push((p.clone(), si));
            }
            if let Some(dom) = &r.domain {
                self.domains.insert(dom.trim().to_ascii_lowercase(), si);
            }
        }
        self.prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
        let interval =
            (cfg.probe_interval_s > 0).then(|| Duration::from_secs(cfg.probe_interval_s));
        if interval != self.probe_interval {
            self.next_probe = interval.map(|_| now);
        }
        self.probe_interval = interval;
        self.probe_timeout = Duration::from_millis(cfg.probe_timeout_ms.max(1));
        // Probes and lookups queued for destinations that are gone are dropped.
        let alive: std::collections::HashSet<DestId> = self.ids().collect();
        self.probes.retain(|p| alive.contains(&p.dest));
        self.dns.retain(|(id, _)| alive.contains(id));
    }

    fn new_destination(
        &mut self,
        uri: Uri,
        weight: u32,
        credentials: Option<TrunkCredentials>,
        now: Instant,
    ) -> Destination {
        self.next_id += 1;
        let target = resolve::Target::from_uri(&uri);
        let (addrs, needs_dns) = match resolve::resolve_numeric(&target) {
            Some(Ok(list)) => (list.iter().filter_map(transport_of).collect(), false),
            Some(Err(_)) => (Vec::new(), false),
            None => (Vec::new(), true),
        };
        Destination {
            id: DestId(self.next_id),
            uri,
            weight,
            credentials,
            addrs,
            state: DestState::Up,
            selected: 0,
            failures: 0,
            needs_dns,
            dns_in_flight: false,
            dns_due: needs_dns.then_some(now),
            probe: None,
            credit: 0,
        }
    }

    fn ids(&self) -> impl Iterator<Item = DestId> + '_ {
        self.sets
            .iter()
            .flat_map(|s| s.destinations.iter().map(|d| d.id))
    }

    /// The sets, in configured order (for status pages and metrics).
    pub fn sets(&self) -> &[Set] {
        &self.sets
    }

    /// The set index a domain rule gives Request-URI host `host` (case-insensitive, IPv6
    /// brackets as written).
    pub fn route_domain(&self, host: &str) -> Option<usize> {
        if self.domains.is_empty() {
            return None;
        }
        self.domains.get(&host.to_ascii_lowercase()).copied()
    }

    /// The set index the longest prefix rule matching Request-URI user `user` gives.
    pub fn route_prefix(&self, user: &str) -> Option<usize> {
        self.prefixes
            .iter()
            .find(|(p, _)| user.starts_with(p.as_str()))
            .map(|(_, si)| *si)
    }

    /// The name of set `set`.
    pub fn set_name(&self, set: usize) -> Option<&str> {
        self.sets.get(set).map(|s| s.name.as_str())
    }

    /// Destination `id`, if it is still configured.
    pub fn destination(&self, id: DestId) -> Option<&Destination> {
        self.sets
            .iter()
            .flat_map(|s| s.destinations.iter())
            .find(|d| d.id == id)
    }

    fn locate(&mut self, id: DestId) -> Option<(&str, &mut Destination)> {
        self.sets.iter_mut().find_map(|s| {
            let name = s.name.as_str();
            s.destinations
                .iter_mut()
                .find(|d| d.id == id)
                .map(|d| (name, d))
        })
    }

    /// Picks the first destination of set `set` for a request with this Call-ID, and the
    /// order of the others for failover. `None` when no destination of the set has an address
    /// yet (nothing to send to).
    pub fn select(&mut self, set: usize, call_id: &str) -> Option<Attempt> {
        let s = self.sets.get_mut(set)?;
        let (first, order, last_resort) = select::pick(s, call_id)?;
        let id = s.destinations.get(first)?.id;
        if let Some(d) = s.destinations.get_mut(first) {
            d.selected += 1;
        }
        let remaining = order
            .into_iter()
            .filter_map(|i| s.destinations.get(i).map(|d| d.id))
            .collect();
        self.stats.routed += 1;
        Some(Attempt {
            set: s.name.clone(),
            current: id,
            remaining,
            last_resort,
            authorized: false,
            fr_timer: s.fr_timer,
            best: None,
            tried: 1,
        })
    }

    /// Moves `attempt` to its next destination (skipping those that went down or away since,
    /// unless the attempt is a last resort) and returns it; `None` when the set is exhausted.
    pub fn next(&mut self, attempt: &mut Attempt) -> Option<DestId> {
        while let Some(id) = attempt.remaining.pop_front() {
            let last_resort = attempt.last_resort;
            let Some((_, d)) = self.locate(id) else {
                continue;
            };
            if d.addrs.is_empty() || (!last_resort && d.state == DestState::Down) {
                continue;
            }
            d.selected += 1;
            attempt.current = id;
            attempt.authorized = false;
            attempt.tried += 1;
            self.stats.failovers += 1;
            return Some(id);
        }
        self.stats.exhausted += 1;
        None
    }

    /// A forwarded request failed at destination `id` (408, 5xx, no first response within
    /// `fr_timer_ms`, a transport error): it goes down.
    pub fn failed(&mut self, id: DestId, failure: Failure) {
        self.mark_down(id, failure, false);
    }

    fn mark_down(&mut self, id: DestId, failure: Failure, probe: bool) {
        let Some((set, d)) = self.locate(id) else {
            return;
        };
        d.failures += 1;
        if d.state == DestState::Down {
            return;
        }
        d.state = DestState::Down;
        let ev = DispatchEvent::Down {
            set: set.to_string(),
            uri: d.uri.to_string(),
            failure,
            probe,
        };
        self.events.push_back(ev);
    }

    /// The final response (or `None`: timeout, transport error) to probe `probe` of `dest`:
    /// 408 and 5xx mark it down, any other final status up (see the module doc). A
    /// provisional status, and a stale probe (answered after its deadline, or of a destination
    /// gone), are ignored.
    pub fn probe_answered(&mut self, dest: DestId, probe: u64, status: Option<u16>) {
        let Some((set, d)) = self.locate(dest) else {
            return;
        };
        if d.probe.map(|(p, _)| p) != Some(probe) || status.is_some_and(|s| s < 200) {
            return;
        }
        d.probe = None;
        match status {
            Some(s) if s >= 200 && s != 408 && !(500..600).contains(&s) => {
                if d.state == DestState::Down {
                    d.state = DestState::Up;
                    let ev = DispatchEvent::Up {
                        set: set.to_string(),
                        uri: d.uri.to_string(),
                        status: s,
                    };
                    self.events.push_back(ev);
                }
            }
            Some(s) => self.mark_down(dest, Failure::Status(s), true),
            None => self.mark_down(dest, Failure::Timeout, true),
        }
    }
}
