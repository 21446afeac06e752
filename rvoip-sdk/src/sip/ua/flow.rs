//! Keep-alives of an account's flow to its registrar (RFC 5626 §4.4), sans-IO.
//!
//! They run while the registrar says it supports SIP Outbound (`Require: outbound` in the 2xx
//! to REGISTER, RFC 5626 §4.2.1):
//! - over UDP a STUN Binding request (RFC 5389) to the registrar's SIP port. The response
//!   proves the flow alive, and its XOR-MAPPED-ADDRESS shows the address the NAT maps us to;
//! - over TCP and TLS a double-CRLF ping (§3.5.1); the server's CRLF pong is consumed by the
//!   stream framing.
//!
//! The interval is 80–100 % of the registrar's `Flow-Timer` (§4.4), else of 29 s over UDP and
//! 120 s over a stream (§4.4.1). A STUN request without an answer is sent once more after
//! [`STUN_RETRY`], and the flow counts as failed [`FLOW_TIMEOUT`] after the first one; the
//! account then registers again (§4.5).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtc_stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Getter, Message, TransactionId};
use rtc_stun::xoraddr::XorMappedAddress;

use crate::sip::keepalive;
use crate::sip::msg::{HeaderName, Response};
use crate::sip::transaction::Transport;

/// How long a keep-alive may stay unanswered before the flow counts as failed (RFC 5626
/// §4.4.1: 10 s for a pong).
pub(super) const FLOW_TIMEOUT: Duration = Duration::from_secs(10);

/// When an unanswered STUN keep-alive is sent once more (a datagram may be lost).
pub(super) const STUN_RETRY: Duration = Duration::from_secs(3);

/// The keep-alive state of one account's flow.
#[derive(Debug, Default)]
pub(super) struct Flow {
    /// Whether keep-alives run (the registrar said `Require: outbound`).
    active: bool,
    /// The keep-alive period's upper bound (the lower is 80 % of it).
    period: Duration,
    /// When to send the next keep-alive (or the STUN retry).
    next_at: Option<Instant>,
    /// The STUN request waiting for its answer, when it was first sent, and whether it was
    /// sent again.
    waiting: Option<(TransactionId, Instant, bool)>,
}

/// What a due keep-alive timer asks of the account.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FlowAction {
    /// Send these bytes to the registrar over the account's transport.
    Send(Vec<u8>),
    /// The flow failed: register again (a new flow).
    Failed,
}

/// What a STUN answer told the account.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StunOutcome {
    /// Not an answer to our keep-alive.
    NotOurs,
    /// The flow is alive and the NAT maps us to this address.
    Alive(SocketAddr),
}

impl Flow {
    /// After a 2xx to REGISTER over `transport`: keep-alives start (or go on) when the
    /// registrar supports outbound, and stop otherwise. The first one goes out within the
    /// interval from `now`.
    pub(super) fn on_registered(&mut self, now: Instant, resp: &Response, transport: Transport) {
        let outbound = resp
            .headers
            .get_all(&HeaderName::Require)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("outbound"));
        if !outbound {
            *self = Flow::default();
            return;
        }
        let flow_timer = resp
            .headers
            .get(&HeaderName::Other("Flow-Timer".into()))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0);
        self.period = match (flow_timer, transport) {
            (Some(s), _) => Duration::from_secs(s),
            (None, Transport::Udp) => Duration::from_secs(29),
            (None, _) => Duration::from_secs(120),
        };
        self.active = true;
        if self.waiting.is_none() {
            self.next_at = Some(now + self.interval());
        }
    }

    /// Keep-alives stop (unregistered, failed, removed).
    pub(super) fn stop(&mut self) {
        *self = Flow::default();
    }

    /// A random interval of 80–100 % of the period (RFC 5626 §4.4.1), so that phones that
    /// started together do not ping together.
    fn interval(&self) -> Duration {
        let frac = 0.8 + 0.2 * rand::random::<f64>();
        self.period.mul_f64(frac)
    }

    /// When [`Flow::on_timeout`] must run.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.next_at.filter(|_| self.active)
    }

    /// Runs the keep-alive timer of a flow over `transport`.
    pub(super) fn on_timeout(&mut self, now: Instant, transport: Transport) -> Option<FlowAction> {
        if !self.active || self.next_at.is_none_or(|t| t > now) {
            return None;
        }
        if let Some((tid, sent, retried)) = self.waiting {
            if now >= sent + FLOW_TIMEOUT {
                self.stop();
                return Some(FlowAction::Failed);
            }
            if !retried {
                self.waiting = Some((tid, sent, true));
                self.next_at = Some(sent + FLOW_TIMEOUT);
                return stun_request(tid).map(FlowAction::Send);
            }
            self.next_at = Some(sent + FLOW_TIMEOUT);
            return None;
        }
        if transport != Transport::Udp {
            self.next_at = Some(now + self.interval());
            return Some(FlowAction::Send(keepalive::CRLF_PING.to_vec()));
        }
        let tid = TransactionId::new();
        self.waiting = Some((tid, now, false));
        self.next_at = Some(now + STUN_RETRY);
        stun_request(tid).map(FlowAction::Send)
    }

    /// A STUN message arrived on the account's socket: is it the answer to our keep-alive?
    pub(super) fn on_stun(&mut self, now: Instant, data: &[u8]) -> StunOutcome {
        let Some((tid, _, _)) = self.waiting else {
            return StunOutcome::NotOurs;
        };
        let mut m = Message::new();
        if m.unmarshal_binary(data).is_err() || m.typ != BINDING_SUCCESS || m.transaction_id != tid
        {
            return StunOutcome::NotOurs;
        }
        let mut mapped = XorMappedAddress::default();
        if mapped.get_from(&m).is_err() {
            return StunOutcome::NotOurs;
        }
        self.waiting = None;
        self.next_at = Some(now + self.interval());
        StunOutcome::Alive(SocketAddr::new(mapped.ip, mapped.port))
    }
}

/// A STUN Binding request (RFC 5389 §7.1) with transaction id `tid` and a FINGERPRINT.
fn stun_request(tid: TransactionId) -> Option<Vec<u8>> {
    let mut m = Message::new();
    m.build(&[
        Box::new(tid),
        Box::new(BINDING_REQUEST),
        Box::new(rtc_stun::fingerprint::FINGERPRINT),
    ])
    .ok()?;
    Some(m.raw)
}
