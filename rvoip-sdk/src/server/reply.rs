//! Responses the server generates itself (RFC 3261 §8.2.6, §16.7), shared by the registrar path
//! of [`super::core::ServerCore`] and by [`super::proxy::Proxy`], and the server's counters.

use std::time::Instant;

use bytes::Bytes;

use crate::sip::msg::{HeaderName, Method, Request, Response};
use crate::sip::transaction::{ServerTxId, TransactionLayer};

/// Counters for logs, tests and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Messages that failed to parse.
    pub parse_errors: u64,
    /// Requests this server answered itself with an error (400, 404, 480, 483, 416, 420, 482…;
    /// digest challenges are counted in `challenges`).
    pub rejected: u64,
    /// Successful registrations (200 to REGISTER).
    pub registrations: u64,
    /// 401/407 challenges sent.
    pub challenges: u64,
    /// Requests forwarded (each fork branch counts once).
    pub forwarded: u64,
    /// Requests sent to a NATed party's flow (the source of its REGISTER or INVITE) instead of
    /// the private address in its Contact.
    pub nat_flows_used: u64,
    /// Calls ended by the proxy itself (BYE to both sides) after a media timeout.
    pub media_timeouts: u64,
    /// Requests for another domain resolved by DNS (RFC 3263) before forwarding.
    pub dns_lookups: u64,
    /// Branches moved to the next DNS destination after a transport error, timeout or 503
    /// (RFC 3263 §4.3).
    pub failovers: u64,
    /// Requests for another domain refused because the sender is not an authenticated user of
    /// this server (403: no open relay).
    pub relay_denied: u64,
    /// Requests refused with 513 because their body is over `max_forward_body_bytes`.
    pub body_too_large: u64,
    /// Requests refused with 503 because their source, or all sources, hold too many
    /// transactions or bytes (`max_transactions_per_source`, `max_held_bytes*`).
    pub overloaded: u64,
    /// Calls sent on to a user's call forwarding target (each diversion counts once).
    pub diverted: u64,
    /// INVITEs answered 302 in redirect mode.
    pub redirected: u64,
    /// MESSAGEs stored for a user without a binding (202 Accepted).
    pub offline_stored: u64,
    /// Stored MESSAGEs delivered (2xx) at the user's REGISTER.
    pub offline_delivered: u64,
    /// Replies to UDP requests cut down to the top Via so as not to be larger than the request.
    pub replies_trimmed: u64,
    /// REGISTERs refused with 503 because the bindings' store was unreachable.
    pub store_unavailable: u64,
    /// Replies to UDP requests not sent because even cut down they were larger than the
    /// request (no reflection amplification).
    pub replies_dropped: u64,
}

/// Builds and sends the responses the server makes itself; owns the To-tag generator.
#[derive(Debug)]
pub(crate) struct Replier {
    tag_counter: u64,
    tag_seed: u64,
}

impl Replier {
    pub(crate) fn new() -> Replier {
        Replier {
            tag_counter: 0,
            tag_seed: rand::random::<u64>(),
        }
    }

    /// A new tag for To headers of our responses (§19.3: at least 32 bits of randomness).
    pub(crate) fn new_tag(&mut self) -> String {
        self.tag_counter = self.tag_counter.wrapping_add(1);
        let x =
            (self.tag_seed ^ self.tag_counter.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(17);
        format!("{x:016x}")
    }

    /// Answers a request on its server transaction: copies Via/From/To/Call-ID/CSeq, adds a To
    /// tag to non-100 responses (§8.2.6.2) and the `extra` headers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reply(
        &mut self,
        tl: &mut TransactionLayer,
        stats: &mut Stats,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        status: u16,
        extra: Vec<(HeaderName, String)>,
    ) {
        let mut resp = Response::for_request(req, status);
        if status > 100 && req.headers.to_tag().is_none() {
            if let Some(to) = req.headers.get(&HeaderName::To) {
                let v = format!("{to};tag={}", self.new_tag());
                resp.headers.set(HeaderName::To, v);
            }
        }
        for (n, v) in extra {
            resp.headers.push(n, v);
        }
        if status >= 300 {
            stats.rejected += u64::from(status != 401 && status != 407);
        }
        send_local_response(tl, stats, now, tx, resp);
    }
}

/// What a reply may add to the size of the UDP request it answers: the fields SIP makes every
/// reply add (the To tag, §8.2.6.2; `received` and `rport` in the top Via, §18.2.1, RFC 3581).
pub const REPLY_ALLOWANCE: usize = 64;

/// Most Vias a reply keeps when it must be cut down (a request that crossed more proxies
/// than this is treated as an attack: its reply keeps the top Via only).
const MAX_REPLY_VIAS: usize = 8;

/// Makes `resp` fit the size of the UDP request it answers (`budget` bytes), so that the
/// server reflects no more than it received (a 17 KB reply to a request with 300 Vias was
/// the old reflection).
/// 1. A reply within `budget` + [`REPLY_ALLOWANCE`] + its digest challenge lines goes as is:
///    without the allowance a phone's first REGISTER (a few bytes shorter than its 401) could
///    not register over UDP at all.
/// 2. Else it loses its optional headers (Allow, Accept, Supported, Server) and, past
///    `MAX_REPLY_VIAS` Vias, all Vias but the top one (a hop-by-hop error needs no more to
///    reach the sender), and is sent if it is then within the same bound and no larger than
///    the request when cut to one Via.
/// 3. Else `None`: the request goes unanswered.
///
/// Counted in `stats`.
pub(crate) fn fit_response(resp: Response, budget: usize, stats: &mut Stats) -> Option<Response> {
    let challenge: usize = resp
        .headers
        .0
        .iter()
        .filter(|h| {
            h.name == HeaderName::WwwAuthenticate || h.name == HeaderName::ProxyAuthenticate
        })
        .map(|h| h.name.as_str().len() + h.value.len() + 4)
        .sum();
    let vias = resp
        .headers
        .0
        .iter()
        .filter(|h| h.name == HeaderName::Via)
        .count();
    let loose = budget + REPLY_ALLOWANCE + challenge;
    if vias <= MAX_REPLY_VIAS && resp.wire_len() <= loose {
        return Some(resp);
    }
    let mut resp = resp;
    resp.headers.0.retain(|h| {
        !matches!(
            h.name,
            HeaderName::Allow | HeaderName::Accept | HeaderName::Supported
        ) && !h.name.as_str().eq_ignore_ascii_case("server")
    });
    let bound = if vias > MAX_REPLY_VIAS {
        let mut seen_via = false;
        resp.headers.0.retain(|h| {
            if h.name != HeaderName::Via {
                return true;
            }
            let keep = !seen_via;
            seen_via = true;
            keep
        });
        budget
    } else {
        loose
    };
    if resp.wire_len() <= bound {
        stats.replies_trimmed += 1;
        return Some(resp);
    }
    stats.replies_dropped += 1;
    None
}

/// The bytes of `resp`, fitted to `budget` when there is one (see [`fit_response`]).
pub(crate) fn fit_budget(
    resp: Response,
    budget: Option<usize>,
    stats: &mut Stats,
) -> Option<Bytes> {
    match budget {
        None => Some(resp.to_bytes()),
        Some(b) => fit_response(resp, b, stats).map(|r| r.to_bytes()),
    }
}

/// Sends a response this server generated itself. Final responses to non-INVITE requests
/// are sent statelessly (§8.2.7, like Kamailio's `sl_send_reply`): the server transaction is
/// forgotten at once, so challenges, registrations and rejections cost no memory for the 32 s
/// of Timer J, and the client's own retransmissions (Timer E) get a fresh answer. INVITE
/// finals stay stateful: after our 100 Trying the client stops retransmitting, so only Timer G
/// can recover a lost 407/4xx (the state is small and ends 5 s after the ACK).
/// Over UDP a response to an unauthenticated request is fitted to the request's size
/// ([`fit_response`]); one that does not fit is not sent and the transaction is forgotten.
pub(crate) fn send_local_response(
    tl: &mut TransactionLayer,
    stats: &mut Stats,
    now: Instant,
    tx: ServerTxId,
    resp: Response,
) {
    send_response(tl, stats, now, tx, resp, true)
}

/// [`send_local_response`] for a request whose sender authenticated (its digest was right):
/// no size budget, since the sender is no spoofed victim (a 200 to REGISTER lists every
/// binding of the AOR, which can outgrow the request).
pub(crate) fn send_authenticated_response(
    tl: &mut TransactionLayer,
    stats: &mut Stats,
    now: Instant,
    tx: ServerTxId,
    resp: Response,
) {
    send_response(tl, stats, now, tx, resp, false)
}

fn send_response(
    tl: &mut TransactionLayer,
    stats: &mut Stats,
    now: Instant,
    tx: ServerTxId,
    resp: Response,
    budgeted: bool,
) {
    let budget = if budgeted { tl.reply_budget(tx) } else { None };
    let resp = match budget {
        Some(budget) if resp.status >= 200 => match fit_response(resp, budget, stats) {
            Some(r) => r,
            None => {
                tl.discard(tx);
                return;
            }
        },
        _ => resp,
    };
    let invite = resp
        .headers
        .cseq()
        .map(|c| c.method == Method::Invite)
        .unwrap_or(false);
    if resp.status >= 200 && !invite {
        tl.respond_stateless(now, tx, resp);
    } else {
        tl.respond(now, tx, resp);
    }
}
