//! The registration client of one account (RFC 3261 §10.2): REGISTER with digest auth (§22),
//! refresh before expiry (§10.2.4: same Call-ID, CSeq incremented), failover to the server's next
//! destination after a transport error, timeout or 503 (RFC 3263 §4.3), re-registration with
//! exponential backoff after a failure or a network error, unregister with `Expires: 0`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::build;
use super::flow::Flow;
use super::{AccountConfig, NextHop, Owner, RegistrationState, UaEvent};
use crate::sip::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};
use crate::sip::transaction::{ClientTxId, TransactionLayer, Transport};

/// Refresh this long before the binding expires (or at half the lifetime when shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(10);

/// One account's registration.
pub(super) struct Registration {
    pub(super) cfg: AccountConfig,
    pub(super) state: RegistrationState,
    /// Whether the app wants to be registered (refreshes and retries run while true).
    pub(super) want: bool,
    /// When to send the next REGISTER (refresh or retry).
    pub(super) next_at: Option<Instant>,
    /// Consecutive failures (backoff exponent).
    pub(super) attempt: u32,
    call_id: String,
    from_tag: String,
    seq: u32,
    /// The REGISTER in flight and whether it unregisters.
    pending: Option<(ClientTxId, bool)>,
    /// The REGISTER in flight (answering a challenge needs it).
    last_req: Option<Request>,
    /// Contact we registered.
    contact: String,
    /// Our public address as the registrar saw it (`received`/`rport` of the top Via of its
    /// 2xx, RFC 3581 §4) when it differs from `cfg.local`: the Contact names it (UDP only).
    public: Option<SocketAddr>,
    /// A Contact we registered before learning `public`: the next REGISTER removes it
    /// (`expires=0`) beside the new one.
    stale_contact: Option<String>,
    /// Our instance-id (RFC 5626 §4.1, a `urn:uuid:` URN): when set, the Contact carries
    /// `+sip.instance` and `reg-id=1` and the REGISTER says `Supported: outbound`.
    pub(super) instance: Option<String>,
    /// The keep-alives of the flow to the registrar (RFC 5626 §4.4).
    pub(super) flow: Flow,
    /// Our account id (for events).
    id: u64,
    /// (first, longest) retry delay.
    backoff: (Duration, Duration),
    /// The server's destinations in order: `cfg.server` as given, then `cfg.alternates`.
    hops: Vec<NextHop>,
    /// Index in `hops` of the destination in use (mirrored in `cfg.server`/`transport`/`local`).
    hop: usize,
    /// The `line` parameter of our Contact: requests the registrar routes to this binding
    /// carry it in their Request-URI, naming the account even when several accounts share a
    /// user name and address (as Snom and Yealink phones do).
    pub(super) line: String,
}

/// Our registered Contact URI for an account: the plain contact plus `;line=`.
fn line_contact(user: &str, local: std::net::SocketAddr, t: Transport, line: &str) -> String {
    format!("{};line={line}", build::contact_uri(user, local, t))
}

impl Registration {
    pub(super) fn new(id: u64, cfg: AccountConfig, backoff: (Duration, Duration)) -> Registration {
        let user = cfg.aor.user.as_deref().unwrap_or("").to_string();
        let line = format!("{:08x}", rand::random::<u32>());
        let contact = line_contact(&user, cfg.local, cfg.transport, &line);
        let first = NextHop {
            addr: cfg.server,
            transport: cfg.transport,
            local: cfg.local,
        };
        let hops = std::iter::once(first)
            .chain(cfg.alternates.iter().copied())
            .collect();
        Registration {
            cfg,
            state: RegistrationState::Unregistered,
            want: false,
            next_at: None,
            attempt: 0,
            call_id: format!("{}@rvoip", build::token()),
            from_tag: build::token(),
            seq: 0,
            pending: None,
            last_req: None,
            contact,
            public: None,
            stale_contact: None,
            instance: None,
            flow: Flow::default(),
            id,
            backoff,
            hops,
            hop: 0,
            line,
        }
    }

    /// Makes `hops[hop]` the destination in use: server, transport, local address and Contact.
    fn use_hop(&mut self, hop: usize) {
        let Some(h) = self.hops.get(hop).copied() else {
            return;
        };
        self.hop = hop;
        self.cfg.server = h.addr;
        self.cfg.transport = h.transport;
        self.cfg.local = h.local;
        // A new path: what the old one's NAT showed does not hold.
        self.public = None;
        let user = self.cfg.aor.user.as_deref().unwrap_or("");
        self.contact = line_contact(user, h.local, h.transport, &self.line);
    }

    /// The address our Contact names: the learned public address, else `cfg.local`.
    pub(super) fn contact_addr(&self) -> SocketAddr {
        self.public.unwrap_or(self.cfg.local)
    }

    /// Learns our public address from the top Via of a 2xx to REGISTER (RFC 3581 §4: the
    /// registrar's `received` and `rport`), over UDP only (a stream's responses come back on
    /// the connection, whatever its address). When it differs from the address our Contact
    /// names, the Contact is rewritten, the old one is kept for removal, and `true` says that
    /// a new REGISTER should go now (as PJSIP's `allow_contact_rewrite` and linphone do).
    fn learn_public(&mut self, resp: &Response) -> bool {
        if self.cfg.transport != Transport::Udp {
            return false;
        }
        let Some(seen) = resp.headers.top_via().ok().and_then(|v| seen_address(&v)) else {
            return false;
        };
        self.adopt_public(seen)
    }

    /// Makes `seen` (where the registrar or a STUN keep-alive saw us) the address our
    /// Contact names, if it is not already; `true` when the Contact changed and a REGISTER
    /// should go now (UDP only).
    pub(super) fn adopt_public(&mut self, seen: SocketAddr) -> bool {
        if self.cfg.transport != Transport::Udp || seen == self.contact_addr() {
            return false;
        }
        tracing::info!(account = self.id, public = %seen, local = %self.cfg.local, "registrar sees another address: Contact rewritten");
        self.public = (seen != self.cfg.local).then_some(seen);
        let user = self.cfg.aor.user.as_deref().unwrap_or("");
        let new = line_contact(user, seen, self.cfg.transport, &self.line);
        let old = std::mem::replace(&mut self.contact, new);
        self.stale_contact.get_or_insert(old);
        true
    }

    /// Whether a binding may exist at the registrar.
    pub(super) fn is_bound(&self) -> bool {
        matches!(
            self.state,
            RegistrationState::Registered { .. } | RegistrationState::Registering
        )
    }

    fn set_state(&mut self, id: u64, state: RegistrationState) -> Option<UaEvent> {
        if self.state == state {
            return None;
        }
        self.state = state.clone();
        Some(UaEvent::Registration {
            account: super::AccountId(id),
            state,
        })
    }

    /// The Request-URI of REGISTER: the AOR's domain (§10.2: no user part).
    fn registrar_uri(&self) -> Uri {
        let a = &self.cfg.aor;
        Uri::new_sip(
            None,
            a.host.trim_start_matches('[').trim_end_matches(']'),
            a.port,
            "",
        )
    }

    /// Sends a REGISTER (a refresh, or `Expires: 0` when `unregister`).
    pub(super) fn send(
        &mut self,
        now: Instant,
        tl: &mut TransactionLayer,
        owners: &mut HashMap<ClientTxId, Owner>,
        id: u64,
        unregister: bool,
    ) -> Vec<UaEvent> {
        if let Some((old, _)) = self.pending.take() {
            owners.remove(&old);
        }
        self.seq = self.seq.wrapping_add(1) & 0x7fff_ffff;
        let aor = self.cfg.aor.to_string();
        let mut req = build::new_request(
            Method::Register,
            self.registrar_uri(),
            &aor,
            &self.from_tag,
            &aor,
            &self.call_id,
            self.seq,
        );
        let expires = if unregister { 0 } else { self.cfg.expires_s };
        let ob = match &self.instance {
            Some(urn) => format!(";+sip.instance=\"<{urn}>\";reg-id=1"),
            None => String::new(),
        };
        req.headers.push(
            HeaderName::Contact,
            format!("<{}>{ob};expires={expires}", self.contact),
        );
        if self.instance.is_some() {
            req.headers.push(HeaderName::Supported, "outbound, path");
        }
        if let Some(old) = &self.stale_contact {
            req.headers
                .push(HeaderName::Contact, format!("<{old}>;expires=0"));
        }
        req.headers.push(HeaderName::Expires, expires.to_string());
        req.headers.push(HeaderName::Allow, build::ALLOW);
        build::finish_request(&mut req, self.cfg.local, self.cfg.transport);
        self.send_request(now, tl, owners, id, req, unregister);
        let mut ev = Vec::new();
        if !unregister {
            ev.extend(self.set_state(id, RegistrationState::Registering));
        }
        ev
    }

    fn send_request(
        &mut self,
        now: Instant,
        tl: &mut TransactionLayer,
        owners: &mut HashMap<ClientTxId, Owner>,
        id: u64,
        req: Request,
        unregister: bool,
    ) {
        if let Ok(c) = req.headers.cseq() {
            self.seq = c.seq;
        }
        let tx = tl.send_request(now, req.clone(), self.cfg.server, self.cfg.transport);
        self.last_req = Some(req);
        owners.insert(tx, Owner::Register(id));
        self.pending = Some((tx, unregister));
    }

    /// A final or provisional response to our REGISTER.
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        tl: &mut TransactionLayer,
        owners: &mut HashMap<ClientTxId, Owner>,
        id: u64,
        tx: ClientTxId,
        resp: &Response,
    ) -> Vec<UaEvent> {
        let Some((pending, unregister)) = self.pending else {
            return Vec::new();
        };
        if pending != tx || resp.status < 200 {
            return Vec::new();
        }
        self.pending = None;
        let req = self.last_req.take();
        match resp.status {
            200..=299 => {
                if unregister {
                    self.attempt = 0;
                    self.flow.stop();
                    return self
                        .set_state(id, RegistrationState::Unregistered)
                        .into_iter()
                        .collect();
                }
                // The stale Contact (if the REGISTER carried one) is gone now. A REGISTER that
                // just rewrote the Contact does not rewrite it again at once (a NAT that maps
                // each REGISTER anew is followed at the next refresh, not in a loop).
                let rewrote = req
                    .as_ref()
                    .is_some_and(|r| r.headers.get_all(&HeaderName::Contact).count() > 1);
                if rewrote {
                    self.stale_contact = None;
                }
                self.flow.on_registered(now, resp, self.cfg.transport);
                if self.want && !rewrote && self.learn_public(resp) {
                    return self.send(now, tl, owners, id, false);
                }
                let granted = self.granted_expires(resp);
                self.attempt = 0;
                let lifetime = Duration::from_secs(u64::from(granted.max(1)));
                let margin = REFRESH_MARGIN.min(lifetime / 2);
                self.next_at = if self.want {
                    Some(now + lifetime - margin)
                } else {
                    None
                };
                self.set_state(id, RegistrationState::Registered { expires_s: granted })
                    .into_iter()
                    .collect()
            }
            401 | 407 => {
                let creds = self.cfg.credentials.clone();
                let retry = req.as_ref().and_then(|req| {
                    if build::is_rejected_credential(req, resp) {
                        None
                    } else {
                        build::authorize(req, resp, &creds, self.cfg.local, self.cfg.transport)
                    }
                });
                match retry {
                    Some(r) => {
                        self.send_request(now, tl, owners, id, r, unregister);
                        Vec::new()
                    }
                    None => self.on_failure(now, resp.status, &resp.reason),
                }
            }
            423 => {
                // Interval Too Brief (§10.3 step 7): retry with the registrar's Min-Expires.
                let min = resp
                    .headers
                    .get(&HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.cfg.expires_s && !unregister => {
                        self.cfg.expires_s = m;
                        self.send(now, tl, owners, id, false)
                    }
                    _ => self.on_failure(now, resp.status, &resp.reason),
                }
            }
            _ => {
                if unregister {
                    return self
                        .set_state(id, RegistrationState::Unregistered)
                        .into_iter()
                        .collect();
                }
                if resp.status == 503 {
                    return self.failover_or_fail(now, tl, owners, id, resp.status, &resp.reason);
                }
                self.on_failure(now, resp.status, &resp.reason)
            }
        }
    }

    /// The REGISTER in flight ended without a final response: Timer F (`status` 408) or a
    /// transport error (503 with the error as `reason`). A registering account fails over to
    /// its next destination; an unregister just ends.
    pub(super) fn on_error(
        &mut self,
        now: Instant,
        tl: &mut TransactionLayer,
        owners: &mut HashMap<ClientTxId, Owner>,
        id: u64,
        status: u16,
        reason: &str,
    ) -> Vec<UaEvent> {
        let unregister = self.pending.is_some_and(|(_, u)| u);
        self.pending = None;
        self.last_req = None;
        if unregister {
            return self.on_failure(now, status, reason);
        }
        self.failover_or_fail(now, tl, owners, id, status, reason)
    }

    /// RFC 3263 §4.3: after a transport error, a timeout or a 503 response the REGISTER goes at
    /// once to the next destination; with none left, back to the first for the next retry, and
    /// the failure is reported with backoff ([`Registration::on_failure`]).
    fn failover_or_fail(
        &mut self,
        now: Instant,
        tl: &mut TransactionLayer,
        owners: &mut HashMap<ClientTxId, Owner>,
        id: u64,
        status: u16,
        reason: &str,
    ) -> Vec<UaEvent> {
        if !self.want {
            return self.on_failure(now, status, reason);
        }
        if self.hop + 1 < self.hops.len() {
            self.use_hop(self.hop + 1);
            return self.send(now, tl, owners, id, false);
        }
        self.use_hop(0);
        self.on_failure(now, status, reason)
    }

    /// The lifetime the registrar granted our contact (§10.2.4): the Contact's `expires` for our
    /// URI, else the Expires header, else what we asked for.
    fn granted_expires(&self, resp: &Response) -> u32 {
        for v in resp.headers.get_all(&HeaderName::Contact) {
            for part in split_contacts(v) {
                let Ok(n) = NameAddr::parse(&part.into()) else {
                    continue;
                };
                if n.uri.to_string() == self.contact {
                    if let Some(Some(e)) = n.params.get("expires") {
                        if let Ok(e) = e.trim().parse() {
                            return e;
                        }
                    }
                }
            }
        }
        match resp.headers.expires() {
            Ok(Some(e)) => e,
            _ => self.cfg.expires_s,
        }
    }

    /// A failure (final error, timeout, transport error): report and schedule a retry with
    /// exponential backoff while the app wants to be registered.
    pub(super) fn on_failure(&mut self, now: Instant, status: u16, reason: &str) -> Vec<UaEvent> {
        self.flow.stop();
        self.pending = None;
        let retry = if self.want {
            let min = self.retry_min();
            let d = min.saturating_mul(1u32 << self.attempt.min(16));
            self.attempt = self.attempt.saturating_add(1);
            let d = d.min(self.retry_max());
            self.next_at = Some(now + d);
            d
        } else {
            Duration::ZERO
        };
        let state = RegistrationState::Failed {
            status,
            reason: reason.to_string(),
            retry_in_ms: retry.as_millis() as u64,
        };
        let id = self.id;
        self.set_state(id, state).into_iter().collect()
    }

    fn retry_min(&self) -> Duration {
        self.backoff.0
    }

    fn retry_max(&self) -> Duration {
        self.backoff.1
    }
}

/// Splits a Contact header value that may hold several comma-separated contacts, respecting
/// quotes and angle brackets.
fn split_contacts(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle) = (false, false);
    let mut cur = String::new();
    for ch in v.chars() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The address the sender of a request was seen at, from the top Via of the response
/// (RFC 3581 §4): `received` (else the sent-by host, when it is an IP address) and `rport`
/// (else the sent-by port, else 5060). `None` when the Via carries neither `received` nor an
/// `rport` value (the server does not support RFC 3581) or the address does not parse.
fn seen_address(via: &crate::sip::msg::Via) -> Option<SocketAddr> {
    let received = via.params.get("received").flatten();
    let rport = via.params.get("rport").flatten();
    if received.is_none() && rport.is_none() {
        return None;
    }
    let host = received.unwrap_or(&via.host);
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = match rport {
        Some(p) => p.parse().ok()?,
        None => via.port.unwrap_or(5060),
    };
    Some(SocketAddr::new(ip, port))
}
