//! The registrar (RFC 3261 §10.3), sans-IO.
//!
//! [`Registrar::handle_register`] is called for a REGISTER *after* authentication succeeded
//! (§10.3 steps 1–5: Request-URI domain, Require, authentication and authorization are the
//! caller's job). It applies steps 6–8 to the [`Location`] service and builds the response.
//!
//! Choices where RFC 3261 leaves room (documented here, tested below):
//! - A contact whose stored binding has the **same Call-ID and a CSeq greater than or equal to**
//!   the request's is an out-of-order or repeated REGISTER (§10.3 step 7). Rather than failing the
//!   whole request, that contact is silently ignored (the stored, newer binding wins) and the
//!   request still gets a 200 listing the current bindings. The same holds for `Contact: *`: such
//!   bindings are kept.
//! - More than [`Location::max_bindings_per_aor`] bindings after the update: 503
//!   "Too Many Registered Contacts", nothing changed — what Kamailio's registrar answers.
//! - The AOR is the user part of the To URI (case-sensitive); a To URI without a user, or not
//!   `sip`/`sips`, gets 404 (§10.3 step 3).
//! - A malformed `expires` contact parameter or Expires header counts as absent (§20.19 asks for
//!   3600, our `default_expires`); values above `max_expires` are lowered to it.
//! - No `Date` header: this core has no wall clock; the driver may add one.

use std::net::SocketAddr;

use crate::server::location::{Binding, Location, Transport, contact_uri_eq};
use crate::server::outbound::{self, FlowKey};
use crate::sip::msg::{ByteString, HeaderName, NameAddr, Request, Response, Scheme};

/// The registrar: policy (expiry bounds) over a [`Location`] service.
#[derive(Debug)]
pub struct Registrar {
    /// The bindings.
    pub location: Location,
    /// Smallest accepted non-zero expiry in seconds (default 60); shorter gets 423.
    pub min_expires: u32,
    /// Largest granted expiry in seconds (default 3600); longer requests are lowered to it.
    pub max_expires: u32,
    /// Expiry when the request gives none (default 3600).
    pub default_expires: u32,
}

impl Default for Registrar {
    fn default() -> Self {
        Registrar::new(Location::new())
    }
}

/// One parsed Contact of the request.
struct ContactReq {
    addr: NameAddr,
    value: ByteString,
    expires: u32,
    q: u16,
    /// The flow it registers (RFC 5626 §6), when the REGISTER uses outbound.
    flow: Option<FlowKey>,
}

impl ContactReq {
    /// Whether stored binding `b` is the one this contact writes: the same flow (AOR,
    /// instance-id, reg-id; RFC 5626 §6) when the contact registers a flow, else the same
    /// contact URI (§10.3 step 7, §19.1.4).
    fn names(&self, b: &Binding) -> bool {
        match &self.flow {
            Some(k) => outbound::binding_flow_key(b).as_ref() == Some(k),
            None => contact_uri_eq(&b.contact, &self.addr.uri),
        }
    }
}

/// What a REGISTER gives every binding it writes, besides the contact itself.
struct Registration<'a> {
    now: u64,
    call_id: &'a ByteString,
    cseq: u32,
    source: SocketAddr,
    transport: Transport,
    behind_nat: bool,
    path: &'a [ByteString],
}

impl Registration<'_> {
    /// The binding `c` makes, expiring `c.expires` seconds from now.
    fn bind(&self, c: ContactReq) -> Binding {
        Binding {
            contact: c.addr.uri,
            contact_value: c.value,
            q: c.q,
            expires_at: self.now + u64::from(c.expires),
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            source: self.source,
            transport: self.transport,
            behind_nat: self.behind_nat,
            path: self.path.to_vec(),
        }
    }
}

/// Parses a q-value (`0`, `1`, `0.5`, `1.000`: §20.10, at most 3 decimals) as `q * 1000`.
pub fn parse_q(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u16 = match int {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    if s.contains('.') && frac.is_empty() {
        return None;
    }
    let mut milli: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        milli += u16::from(b - b'0') * [100, 10, 1][i];
    }
    let q = int * 1000 + milli;
    (q <= 1000).then_some(q)
}

/// Formats `q * 1000` as a q-value (`0.5`, `0.125`, `1`).
pub(crate) fn format_q(q: u16) -> String {
    if q >= 1000 {
        return "1".to_owned();
    }
    let s = format!("0.{q:03}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A parsed delta-seconds: `None` if not all digits; values beyond u32 saturate (§20.19).
fn parse_delta(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        s.parse::<u64>()
            .map_or(u32::MAX, |v| u32::try_from(v).unwrap_or(u32::MAX)),
    )
}

/// The contact's header parameters without `expires` and `q` (kept as received otherwise).
fn params_without_expires_q(params: &str) -> String {
    let mut out = String::with_capacity(params.len());
    for p in params.split(';').skip(1) {
        let name = p.split_once('=').map_or(p, |(n, _)| n).trim();
        if name.eq_ignore_ascii_case("expires") || name.eq_ignore_ascii_case("q") {
            continue;
        }
        out.push(';');
        out.push_str(p);
    }
    out
}

impl Registrar {
    /// A registrar over `location` with the default expiry bounds (60 / 3600 / 3600 s).
    pub fn new(location: Location) -> Registrar {
        Registrar {
            location,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
        }
    }

    /// A response to `req` with a To-tag (§8.2.6.2) and the given reason phrase.
    fn reply(req: &Request, status: u16, reason: &str) -> Response {
        let mut r = Response::for_request(req, status);
        r.reason = ByteString::from(reason);
        if r.headers.to_tag().is_none()
            && let Some(to) = r.headers.get(&HeaderName::To)
        {
            let tagged = format!("{to};tag={:016x}", rand::random::<u64>());
            r.headers.set(HeaderName::To, tagged);
        }
        r
    }

    /// 200 OK listing every current binding of `aor` (§10.3 step 8).
    fn ok_with_bindings(&self, req: &Request, aor: &str, now: u64) -> Response {
        let mut r = Self::reply(req, 200, "OK");
        for b in self.location.lookup(aor, now) {
            let mut v = format!("{};expires={}", b.contact_value, b.remaining_secs(now));
            if b.q != 1000 {
                v.push_str(";q=");
                v.push_str(&format_q(b.q));
            }
            r.headers.push(HeaderName::Contact, v);
        }
        r
    }

    /// Applies a REGISTER that passed authentication (RFC 3261 §10.3 steps 6–8) and returns the
    /// response (`now` is the wall-clock time in Unix seconds): 200 with the current bindings, 400 (bad Contact, `*` misuse, missing Call-ID or
    /// CSeq), 404 (no AOR user), 423 with Min-Expires, 439 (a flow registered through a first
    /// hop without outbound, RFC 5626 §6) or 503 (too many bindings). A REGISTER that
    /// registers flows (RFC 5626, see [`crate::server::outbound`]) gets `Require: outbound`.
    pub fn handle_register(
        &mut self,
        now: u64,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Response {
        let Ok(to) = req.headers.to() else {
            return Self::reply(req, 400, "Bad To Header");
        };
        let aor: ByteString = match (&to.uri.scheme, &to.uri.user) {
            (Scheme::Sip | Scheme::Sips, Some(u)) if !u.is_empty() => u.clone(),
            _ => return Self::reply(req, 404, "Not Found"),
        };
        self.handle_register_aor(now, req, &aor, source, transport)
    }

    /// [`Registrar::handle_register`] for the location key `aor` given by the caller (virtual
    /// hosting keys a domain's users as `user@domain`: [`crate::server::domains::aor_key`]).
    /// A To URI without a user still gets 404.
    pub fn handle_register_aor(
        &mut self,
        now: u64,
        req: &Request,
        aor: &str,
        source: SocketAddr,
        transport: Transport,
    ) -> Response {
        self.handle_register_path(now, req, aor, source, transport, &[])
    }

    /// [`Registrar::handle_register_aor`] storing `path` (RFC 3327 §5.3: the Path vector, top
    /// first, as Path header values) with every binding the request adds or refreshes.
    pub fn handle_register_path(
        &mut self,
        now: u64,
        req: &Request,
        aor: &str,
        source: SocketAddr,
        transport: Transport,
        path: &[ByteString],
    ) -> Response {
        match req.headers.to() {
            Ok(to) => self.handle_register_to(now, req, &to.uri, aor, source, transport, path),
            Err(_) => Self::reply(req, 404, "Not Found"),
        }
    }

    /// [`Registrar::handle_register_path`] for a request whose To URI the caller has parsed
    /// already (`to`): the server core parses it once per REGISTER.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_register_to(
        &mut self,
        now: u64,
        req: &Request,
        to: &crate::sip::msg::Uri,
        aor: &str,
        source: SocketAddr,
        transport: Transport,
        path: &[ByteString],
    ) -> Response {
        let no_user = !to.is_sip() || to.user.as_deref().unwrap_or_default().is_empty();
        if no_user {
            return Self::reply(req, 404, "Not Found");
        }
        let aor = ByteString::from(aor);
        let Some(call_id) = req.headers.get(&HeaderName::CallId).cloned() else {
            return Self::reply(req, 400, "Missing Call-ID");
        };
        let Ok(cseq) = req.headers.cseq() else {
            return Self::reply(req, 400, "Bad CSeq");
        };
        let cseq = cseq.seq;
        let kind = match transport {
            Transport::Udp => crate::sip::transaction::Transport::Udp,
            _ => crate::sip::transaction::Transport::Tcp,
        };
        let behind_nat = crate::server::proxy::sender_behind_nat(req, source, kind);
        // A malformed Expires header counts as absent (§20.19).
        let header_expires: Option<u32> = match req.headers.get(&HeaderName::Expires) {
            Some(v) => parse_delta(v),
            None => None,
        };

        let raw: Vec<&ByteString> = req.headers.get_all(&HeaderName::Contact).collect();
        if raw.is_empty() {
            return self.ok_with_bindings(req, &aor, now);
        }

        // Contact: * (§10.2.2, §10.3 step 6).
        if raw.iter().any(|v| v.trim() == "*") {
            if raw.len() != 1 || header_expires != Some(0) {
                return Self::reply(req, 400, "Invalid Wildcard Contact");
            }
            let kept: Vec<Binding> = self
                .location
                .bindings(&aor)
                .iter()
                .filter(|b| b.is_live(now) && b.call_id == call_id && b.cseq >= cseq)
                .cloned()
                .collect();
            self.location.set_bindings(&aor, kept);
            return self.ok_with_bindings(req, &aor, now);
        }

        // Parse and validate every contact before touching the location service.
        let mut contacts = Vec::with_capacity(raw.len());
        for v in raw {
            let Ok(addr) = NameAddr::parse(v) else {
                return Self::reply(req, 400, "Bad Contact");
            };
            let expires = match addr.params.get("expires") {
                Some(Some(e)) => parse_delta(e).or(header_expires),
                _ => header_expires,
            }
            .unwrap_or(self.default_expires)
            .min(self.max_expires);
            if expires > 0 && expires < self.min_expires {
                let mut r = Self::reply(req, 423, "Interval Too Brief");
                r.headers
                    .push(HeaderName::MinExpires, self.min_expires.to_string());
                return r;
            }
            let q = match addr.params.get("q") {
                None => 1000,
                Some(Some(q)) => match parse_q(q.trim()) {
                    Some(q) => q,
                    None => return Self::reply(req, 400, "Bad Contact q-value"),
                },
                Some(None) => return Self::reply(req, 400, "Bad Contact q-value"),
            };
            let value =
                format!("<{}>{}", addr.uri, params_without_expires_q(&addr.params.0)).into();
            contacts.push(ContactReq {
                flow: outbound::flow_key(&addr.params),
                addr,
                value,
                expires,
                q,
            });
        }

        // SIP Outbound (RFC 5626 §6): a reg-id with `Supported: outbound` registers a flow,
        // which needs this registrar to be the first hop (or an edge proxy that supports it).
        // Without `Supported: outbound` the reg-id is ignored.
        let outbound = contacts.iter().any(|c| c.flow.is_some()) && outbound::supported(req);
        if outbound && !outbound::first_hop(req, path) {
            return Self::reply(req, 439, "First Hop Lacks Outbound Support");
        }
        if !outbound {
            for c in &mut contacts {
                c.flow = None;
            }
        }
        let behind_nat = behind_nat || outbound;

        // The usual REGISTER, a refresh: one contact, already bound, and nothing of the AOR
        // expired or over the limit. It is applied in place, the same as the general path
        // below would (same out-of-order rule, same count), without copying the AOR's list.
        let reg = Registration {
            now,
            call_id: &call_id,
            cseq,
            source,
            transport,
            behind_nat,
            path,
        };
        if let [c] = contacts.as_slice() {
            let stored = self.location.bindings(&aor);
            let refresh = c.expires > 0
                && stored.len() <= self.location.max_bindings_per_aor
                && stored.iter().all(|b| b.is_live(now));
            let found = stored.iter().position(|b| c.names(b)).filter(|_| refresh);
            if let Some(i) = found {
                let in_order = stored
                    .get(i)
                    .is_some_and(|b| b.call_id != call_id || b.cseq < cseq);
                if in_order && let Some(c) = contacts.pop() {
                    self.location.refresh_at(&aor, i, reg.bind(c));
                }
                return self.ok_outbound(req, &aor, now, outbound);
            }
        }

        // §10.3 step 7 on a working copy; committed only if the result is acceptable.
        let mut list: Vec<Binding> = self
            .location
            .bindings(&aor)
            .iter()
            .filter(|b| b.is_live(now))
            .cloned()
            .collect();
        // Bindings written by this request (a contact listed twice: the last one wins).
        let mut touched: Vec<bool> = vec![false; list.len()];
        for c in contacts {
            let at = list.iter().position(|b| c.names(b));
            if let Some(i) = at {
                let fresh_here = touched.get(i).copied().unwrap_or(false);
                if !fresh_here && list[i].call_id == call_id && list[i].cseq >= cseq {
                    continue; // out of order: keep the stored binding (see module docs)
                }
            }
            match (at, c.expires) {
                (Some(i), 0) => {
                    list.remove(i);
                    touched.remove(i);
                }
                (None, 0) => {}
                (at, _) => {
                    let b = reg.bind(c);
                    match at {
                        Some(i) => {
                            list[i] = b;
                            touched[i] = true;
                        }
                        None => {
                            list.push(b);
                            touched.push(true);
                        }
                    }
                }
            }
        }
        if list.len() > self.location.max_bindings_per_aor {
            return Self::reply(req, 503, "Too Many Registered Contacts");
        }
        self.location.set_bindings(&aor, list);
        self.ok_outbound(req, &aor, now, outbound)
    }

    /// [`Self::ok_with_bindings`], with `Require: outbound` when the REGISTER registered a
    /// flow (RFC 5626 §6).
    fn ok_outbound(&self, req: &Request, aor: &str, now: u64, outbound: bool) -> Response {
        let mut r = self.ok_with_bindings(req, aor, now);
        if outbound {
            r.headers.push(HeaderName::Require, outbound::OPTION_TAG);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::location::ChangeKind;
    use crate::sip::msg::{Limits, Message};
    use bytes::Bytes;

    const SRC: &str = "192.0.2.10:5060";

    fn req(call_id: &str, cseq: u32, extra: &str) -> Request {
        let text = format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{call_id}{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=f1\r\n\
             To: <sip:alice@example.com>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        parse(&text)
    }

    fn parse(text: &str) -> Request {
        match Message::parse(Bytes::from(text.to_owned()), &Limits::default()) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn reg() -> Registrar {
        Registrar::default()
    }

    fn send(r: &mut Registrar, now: u64, q: &Request) -> Response {
        r.handle_register(now, q, SRC.parse().unwrap(), Transport::Udp)
    }

    fn contacts(resp: &Response) -> Vec<String> {
        resp.headers
            .get_all(&HeaderName::Contact)
            .map(|v| v.to_string())
            .collect()
    }

    fn secs(n: u64) -> u64 {
        n
    }

    #[test]
    fn register_refresh_and_expiry() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        let resp = send(
            &mut r,
            t0,
            &req(
                "c1",
                1,
                "Contact: <sip:alice@192.0.2.10:5060>\r\nExpires: 600\r\n",
            ),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(contacts(&resp), ["<sip:alice@192.0.2.10:5060>;expires=600"]);
        // Response::for_request copies the dialog headers; we add a To-tag.
        assert_eq!(
            resp.headers.get(&HeaderName::CallId).map(|v| &**v),
            Some("c1")
        );
        let to = resp.headers.to().unwrap();
        assert!(to.tag().is_some_and(|t| !t.is_empty()), "To-tag missing");
        let b = &r.location.lookup("alice", t0)[0];
        assert_eq!(
            (b.source, b.transport, b.cseq),
            (SRC.parse().unwrap(), Transport::Udp, 1)
        );
        // Refresh 300 s later with the default expiry.
        let resp = send(
            &mut r,
            t0 + secs(300),
            &req("c1", 2, "Contact: <sip:alice@192.0.2.10:5060>\r\n"),
        );
        assert_eq!(
            contacts(&resp),
            ["<sip:alice@192.0.2.10:5060>;expires=3600"]
        );
        assert_eq!(r.location.len(), 1);
        // The first expiry passes without effect; the refreshed one removes it.
        assert_eq!(r.location.sweep(t0 + secs(601)), 0);
        assert_eq!(r.location.lookup("alice", t0 + secs(601)).len(), 1);
        assert!(r.location.lookup("alice", t0 + secs(3900)).is_empty());
        assert_eq!(r.location.sweep(t0 + secs(3900)), 1);
        assert!(r.location.is_empty());
    }

    #[test]
    fn two_contacts_ordered_by_q_and_query() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        let resp = send(
            &mut r,
            t0,
            &req(
                "c1",
                1,
                "Contact: <sip:alice@192.0.2.10>;q=0.5, <sip:alice@198.51.100.1>;q=0.8;expires=120\r\n",
            ),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(
            contacts(&resp),
            [
                "<sip:alice@198.51.100.1>;expires=120;q=0.8",
                "<sip:alice@192.0.2.10>;expires=3600;q=0.5"
            ]
        );
        // A query (no Contact) lists the bindings with the time left.
        let resp = send(&mut r, t0 + secs(20), &req("other", 1, ""));
        assert_eq!(resp.status, 200);
        assert_eq!(
            contacts(&resp),
            [
                "<sip:alice@198.51.100.1>;expires=100;q=0.8",
                "<sip:alice@192.0.2.10>;expires=3580;q=0.5"
            ]
        );
        assert_eq!(r.location.len(), 2);
        let resp = send(&mut r, t0 + secs(121), &req("other", 2, ""));
        assert_eq!(
            contacts(&resp),
            ["<sip:alice@192.0.2.10>;expires=3479;q=0.5"]
        );
    }

    #[test]
    fn expires_zero_removes_one_and_star_removes_all() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        send(
            &mut r,
            t0,
            &req(
                "c1",
                1,
                "Contact: <sip:a@192.0.2.1>, <sip:a@192.0.2.2>, <sip:a@192.0.2.3>\r\n",
            ),
        );
        assert_eq!(r.location.len(), 3);
        let resp = send(
            &mut r,
            t0,
            &req("c1", 2, "Contact: <sip:a@192.0.2.2>;expires=0\r\n"),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(contacts(&resp).len(), 2);
        assert!(!contacts(&resp).iter().any(|c| c.contains("192.0.2.2")));
        // Expires: 0 header applies to contacts without their own expires.
        let resp = send(
            &mut r,
            t0,
            &req("c1", 3, "Contact: <sip:a@192.0.2.3>\r\nExpires: 0\r\n"),
        );
        assert_eq!(contacts(&resp), ["<sip:a@192.0.2.1>;expires=3600"]);
        // Removing an unknown contact is fine.
        let resp = send(
            &mut r,
            t0,
            &req("c1", 4, "Contact: <sip:a@192.0.2.9>;expires=0\r\n"),
        );
        assert_eq!(resp.status, 200);
        // Contact: * with Expires: 0 (from another Call-ID) removes everything.
        let resp = send(&mut r, t0, &req("c2", 1, "Contact: *\r\nExpires: 0\r\n"));
        assert_eq!(resp.status, 200);
        assert!(contacts(&resp).is_empty());
        assert!(r.location.is_empty() && r.location.aor_count() == 0);
    }

    #[test]
    fn star_misuse_is_400() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        send(&mut r, t0, &req("c1", 1, "Contact: <sip:a@192.0.2.1>\r\n"));
        for extra in [
            "Contact: *\r\n",
            "Contact: *\r\nExpires: 60\r\n",
            "Contact: *, <sip:a@192.0.2.1>\r\nExpires: 0\r\n",
            "Contact: <sip:a@192.0.2.1>\r\nContact: *\r\nExpires: 0\r\n",
        ] {
            let resp = send(&mut r, t0, &req("c1", 5, extra));
            assert_eq!(resp.status, 400, "{extra}");
            assert!(resp.headers.to().unwrap().tag().is_some());
        }
        assert_eq!(r.location.len(), 1, "nothing removed");
    }

    #[test]
    fn interval_too_brief_and_max_cap() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        let resp = send(
            &mut r,
            t0,
            &req("c1", 1, "Contact: <sip:a@192.0.2.1>;expires=30\r\n"),
        );
        assert_eq!(resp.status, 423);
        assert_eq!(
            resp.headers.get(&HeaderName::MinExpires).map(|v| &**v),
            Some("60")
        );
        let resp = send(
            &mut r,
            t0,
            &req("c1", 2, "Contact: <sip:a@192.0.2.1>\r\nExpires: 59\r\n"),
        );
        assert_eq!(resp.status, 423);
        // One bad contact rejects the whole request.
        let resp = send(
            &mut r,
            t0,
            &req(
                "c1",
                3,
                "Contact: <sip:a@192.0.2.2>, <sip:a@192.0.2.1>;expires=1\r\n",
            ),
        );
        assert_eq!(resp.status, 423);
        assert!(r.location.is_empty());
        // Too long is lowered to max_expires; exactly min is fine.
        let resp = send(
            &mut r,
            t0,
            &req(
                "c1",
                4,
                "Contact: <sip:a@192.0.2.1>;expires=99999999999\r\n",
            ),
        );
        assert_eq!(contacts(&resp), ["<sip:a@192.0.2.1>;expires=3600"]);
        let resp = send(
            &mut r,
            t0,
            &req("c1", 5, "Contact: <sip:a@192.0.2.1>;expires=60\r\n"),
        );
        assert_eq!(contacts(&resp), ["<sip:a@192.0.2.1>;expires=60"]);
        // A malformed expires falls back to the header, then the default.
        let resp = send(
            &mut r,
            t0,
            &req(
                "c1",
                6,
                "Contact: <sip:a@192.0.2.1>;expires=soon\r\nExpires: 120\r\n",
            ),
        );
        assert_eq!(contacts(&resp), ["<sip:a@192.0.2.1>;expires=120"]);
    }

    #[test]
    fn cseq_ordering_same_call_id() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        send(
            &mut r,
            t0,
            &req("c1", 10, "Contact: <sip:a@192.0.2.1>;expires=100\r\n"),
        );
        // Same Call-ID, lower and equal CSeq: ignored (still 200, binding unchanged).
        for seq in [9, 10] {
            let resp = send(
                &mut r,
                t0 + secs(1),
                &req("c1", seq, "Contact: <sip:a@192.0.2.1>;expires=0\r\n"),
            );
            assert_eq!(resp.status, 200);
            assert_eq!(contacts(&resp), ["<sip:a@192.0.2.1>;expires=99"]);
        }
        // `*` with an old CSeq keeps that binding too.
        let resp = send(
            &mut r,
            t0 + secs(1),
            &req("c1", 5, "Contact: *\r\nExpires: 0\r\n"),
        );
        assert_eq!(contacts(&resp).len(), 1);
        // Higher CSeq updates.
        let resp = send(
            &mut r,
            t0 + secs(1),
            &req("c1", 11, "Contact: <sip:a@192.0.2.1>;expires=200\r\n"),
        );
        assert_eq!(contacts(&resp), ["<sip:a@192.0.2.1>;expires=200"]);
        // Another Call-ID (e.g. a rebooted phone) replaces regardless of CSeq.
        let resp = send(
            &mut r,
            t0 + secs(2),
            &req("c2", 1, "Contact: <sip:a@192.0.2.1>;expires=300\r\n"),
        );
        assert_eq!(contacts(&resp), ["<sip:a@192.0.2.1>;expires=300"]);
        assert_eq!(r.location.lookup("alice", t0 + secs(2))[0].call_id, "c2");
    }

    /// A refresh of one bound contact (applied in place) follows the same rules as any other
    /// REGISTER: out-of-order CSeqs are ignored, the other bindings stay, the store hears of
    /// one refresh, and a limit lowered below the bindings held still answers 503.
    #[test]
    fn refresh_of_one_contact_keeps_the_rules() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        send(&mut r, t0, &req("c1", 1, "Contact: <sip:a@192.0.2.1>\r\n"));
        send(&mut r, t0, &req("c1", 2, "Contact: <sip:a@192.0.2.2>\r\n"));
        r.location.record_changes(true);
        for (seq, want) in [(2, 3599), (1, 3599), (3, 500)] {
            let resp = send(
                &mut r,
                t0 + secs(1),
                &req("c1", seq, "Contact: <sip:a@192.0.2.2>;expires=500\r\n"),
            );
            assert_eq!(resp.status, 200);
            assert_eq!(
                contacts(&resp),
                [
                    "<sip:a@192.0.2.1>;expires=3599".to_owned(),
                    format!("<sip:a@192.0.2.2>;expires={want}")
                ]
            );
        }
        let changes = r.location.take_changes();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, ChangeKind::Refreshed);
        assert_eq!(changes[0].binding.cseq, 3);
        r.location.max_bindings_per_aor = 1;
        let resp = send(
            &mut r,
            t0 + secs(2),
            &req("c1", 4, "Contact: <sip:a@192.0.2.2>\r\n"),
        );
        assert_eq!(resp.status, 503);
        assert_eq!(r.location.bindings("alice")[1].cseq, 3);
    }

    #[test]
    fn max_bindings_is_503_and_atomic() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        r.location.max_bindings_per_aor = 2;
        send(&mut r, t0, &req("c1", 1, "Contact: <sip:a@192.0.2.1>\r\n"));
        send(&mut r, t0, &req("c1", 2, "Contact: <sip:a@192.0.2.2>\r\n"));
        let resp = send(&mut r, t0, &req("c1", 3, "Contact: <sip:a@192.0.2.3>\r\n"));
        assert_eq!(
            (resp.status, &*resp.reason),
            (503, "Too Many Registered Contacts")
        );
        assert_eq!(r.location.len(), 2);
        // Replacing one in the same request fits.
        let resp = send(
            &mut r,
            t0,
            &req(
                "c1",
                4,
                "Contact: <sip:a@192.0.2.1>;expires=0, <sip:a@192.0.2.3>\r\n",
            ),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(contacts(&resp).len(), 2);
        // Expired bindings do not count.
        let resp = send(
            &mut r,
            t0 + secs(3601),
            &req("c1", 5, "Contact: <sip:a@192.0.2.4>\r\n"),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(contacts(&resp).len(), 1);
    }

    #[test]
    fn contact_matching_ignores_host_case_and_aor_is_case_sensitive() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        send(
            &mut r,
            t0,
            &req("c1", 1, "Contact: <sip:a@GW.example.com;transport=tcp>\r\n"),
        );
        let resp = send(
            &mut r,
            t0,
            &req(
                "c1",
                2,
                "Contact: <sip:a@gw.example.com;transport=TCP>;expires=0\r\n",
            ),
        );
        assert!(contacts(&resp).is_empty());
        let q = parse(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:Alice@example.com>;tag=1\r\nTo: <sip:Alice@example.com>\r\n\
             Call-ID: x\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@192.0.2.1>\r\nContent-Length: 0\r\n\r\n",
        );
        send(&mut r, t0, &q);
        assert_eq!(r.location.lookup("Alice", t0).len(), 1);
        assert!(r.location.lookup("alice", t0).is_empty());
    }

    #[test]
    fn bad_q_and_bad_contact_are_400_and_no_user_is_404() {
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        for extra in [
            "Contact: <sip:a@192.0.2.1>;q=1.5\r\n",
            "Contact: <sip:a@192.0.2.1>;q=abc\r\n",
        ] {
            assert_eq!(
                send(&mut r, t0, &req("c1", 1, extra)).status,
                400,
                "{extra}"
            );
        }
        let q = parse(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:example.com>;tag=1\r\nTo: <sip:example.com>\r\n\
             Call-ID: x\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@192.0.2.1>\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(send(&mut r, t0, &q).status, 404);
        assert!(r.location.is_empty());
    }

    /// RFC 4475 §3.3.12–3.3.14 (cparam01, cparam02, regescrt), byte-exact from shared/.
    #[test]
    fn rfc4475_contact_params_and_escaped_headers() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/conformance/rfc4475/"
        );
        let load = |f: &str| {
            let bytes = std::fs::read(format!("{dir}{f}")).expect("conformance file");
            match Message::parse(Bytes::from(bytes), &Limits::default()) {
                Ok(Message::Request(r)) => r,
                other => panic!("{f}: {other:?}"),
            }
        };
        let t0: u64 = 1_700_000_000;
        let mut r = reg();
        let resp = send(&mut r, t0, &load("cparam01.dat"));
        assert_eq!(resp.status, 200);
        assert_eq!(
            contacts(&resp),
            ["<sip:+19725552222@gw1.example.net>;unknownparam;expires=3600"]
        );
        let b = &r.location.lookup("watson", t0)[0];
        assert_eq!(&*b.contact.params, "");

        let mut r = reg();
        let resp = send(&mut r, t0, &load("cparam02.dat"));
        assert_eq!(
            contacts(&resp),
            ["<sip:+19725552222@gw1.example.net;unknownparam>;expires=3600"]
        );
        assert_eq!(
            &*r.location.lookup("watson", t0)[0].contact.params,
            ";unknownparam"
        );

        let mut r = reg();
        let resp = send(&mut r, t0, &load("regescrt.dat"));
        assert_eq!(resp.status, 200);
        assert_eq!(
            contacts(&resp),
            ["<sip:user@example.com?Route=%3Csip:sip.example.com%3E>;expires=3600"]
        );
        let b = &r.location.lookup("user", t0)[0];
        assert_eq!(
            b.contact.headers.as_deref(),
            Some("Route=%3Csip:sip.example.com%3E")
        );
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.125"), Some(125));
        for bad in ["1.001", "2", "0.1234", ".5", "0.", "", "-0", "0.x"] {
            assert_eq!(parse_q(bad), None, "{bad}");
        }
        assert_eq!(format_q(500), "0.5");
        assert_eq!(format_q(125), "0.125");
        assert_eq!(format_q(0), "0");
        assert_eq!(format_q(1000), "1");
    }
}
