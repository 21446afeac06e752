//! The notifier's subscriptions (RFC 6665 §4.2): each is a dialog the server formed as UAS by
//! answering a SUBSCRIBE (its To tag starts with [`TAG_PREFIX`]), with the subscriber's
//! Contact as remote target, the SUBSCRIBE's Record-Route as route set, and the flow the
//! SUBSCRIBE came on as the destination of its NOTIFYs. One NOTIFY is outstanding per
//! subscription at a time: a change while one is in flight is sent (as the then current state)
//! after its answer. The table indexes subscriptions by dialog, by watched AOR, by subscriber,
//! by NOTIFY transaction and by expiry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Package;
use crate::server::local::LocalIdentity;
use crate::sip::msg::{HeaderName, Headers, Method, Request, Uri};
use crate::sip::transaction::{ClientTxId, Transport, new_branch};

/// The start of the To tag of every subscription dialog of the presence agent.
pub const TAG_PREFIX: &str = "pres";

/// One subscription (the server is its notifier).
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Its package.
    pub package: Package,
    /// The watched user (the presentity's user part in this domain).
    pub aor: String,
    /// The subscribing user (From user in this domain).
    pub subscriber: String,
    /// The dialog's Call-ID.
    pub call_id: String,
    /// Our tag (the To tag of our 2xx, the From tag of our NOTIFYs).
    pub local_tag: String,
    /// The subscriber's From tag.
    pub remote_tag: String,
    /// Our NOTIFYs' From (the SUBSCRIBE's To with our tag).
    pub from_header: String,
    /// Our NOTIFYs' To (the SUBSCRIBE's From).
    pub to_header: String,
    /// The SUBSCRIBE's `Event` value, echoed in NOTIFYs (with its `id`, RFC 6665 §8.2.1).
    pub event: String,
    /// The remote target (the subscriber's Contact URI).
    pub target: Uri,
    /// The route set (RFC 3261 §12.1.1: the SUBSCRIBE's Record-Route, in order).
    pub route: Vec<String>,
    /// Our Contact header value.
    pub contact: String,
    /// Where NOTIFYs go: the flow the SUBSCRIBE came on.
    pub dest: (SocketAddr, Transport),
    /// When the subscription ends unless refreshed.
    pub expires_at: Instant,
    /// Our CSeq number in the dialog (the last NOTIFY's).
    pub cseq: u32,
    /// The last dialog-info `version` sent (RFC 4235 §4.1: 0 first, then +1 per NOTIFY).
    pub version: Option<u64>,
    /// The NOTIFY transaction in flight.
    in_flight: Option<ClientTxId>,
    /// A change happened while a NOTIFY was in flight.
    dirty: bool,
}

impl Subscription {
    /// A subscription formed by a SUBSCRIBE with these dialog fields, expiring at
    /// `expires_at`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        package: Package,
        aor: String,
        subscriber: String,
        req: &Request,
        local_tag: String,
        contact: String,
        dest: (SocketAddr, Transport),
        expires_at: Instant,
    ) -> Option<Subscription> {
        let from = req.headers.from().ok()?;
        let remote_tag = from.tag()?.to_string();
        let target = req
            .headers
            .get(&HeaderName::Contact)
            .and_then(|c| crate::sip::msg::NameAddr::parse(c).ok())
            .map(|na| na.uri)?;
        let to = req.headers.get(&HeaderName::To)?;
        Some(Subscription {
            package,
            aor,
            subscriber,
            call_id: req.headers.call_id()?.to_string(),
            from_header: format!("{to};tag={local_tag}"),
            local_tag,
            remote_tag,
            to_header: req.headers.get(&HeaderName::From)?.to_string(),
            event: req.headers.get(&HeaderName::Event)?.to_string(),
            target,
            route: req
                .headers
                .get_all(&HeaderName::RecordRoute)
                .map(|r| r.to_string())
                .collect(),
            contact,
            dest,
            expires_at,
            cseq: 0,
            version: None,
            in_flight: None,
            dirty: false,
        })
    }

    /// Seconds left at `now` (at least 1 while active).
    pub fn remaining_s(&self, now: Instant) -> u64 {
        self.expires_at
            .saturating_duration_since(now)
            .as_secs()
            .max(1)
    }

    /// The next NOTIFY of this dialog (RFC 6665 §4.2.2, §8.2.3): `state` is the
    /// `Subscription-State` value, `body` the document (of the package's type). Sent from
    /// `local`'s interface for the subscription's transport; `None` without one.
    pub fn notify(&mut self, local: &LocalIdentity, state: &str, body: Bytes) -> Option<Request> {
        let (_, transport) = self.dest;
        let i = local
            .interface(transport)
            .or_else(|| local.interfaces.first())?;
        self.cseq = self.cseq.wrapping_add(1) & 0x7fff_ffff;
        let mut h = Headers::with_capacity(14);
        h.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {}:{};branch={}",
                transport.via_name(),
                i.host,
                i.port,
                new_branch()
            ),
        );
        for r in &self.route {
            h.push(HeaderName::Route, r.clone());
        }
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, self.from_header.clone());
        h.push(HeaderName::To, self.to_header.clone());
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} NOTIFY", self.cseq));
        h.push(HeaderName::Contact, self.contact.clone());
        h.push(HeaderName::Event, self.event.clone());
        h.push(HeaderName::SubscriptionState, state.to_string());
        h.push(HeaderName::ContentType, self.package.content_type());
        Some(Request {
            method: Method::Notify,
            uri: self.target.clone(),
            headers: h,
            body,
        })
    }
}

/// What to do with a subscription after the answer to its NOTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// Nothing more.
    Done,
    /// A change is waiting: send the current state.
    SendAgain,
    /// The subscriber ended it (481, 408, no answer): it was removed.
    Ended,
}

/// All subscriptions of the presence agent.
#[derive(Debug, Default)]
pub struct Subscriptions {
    subs: HashMap<u64, Subscription>,
    /// By (Call-ID, our tag).
    by_dialog: HashMap<(String, String), u64>,
    /// By NOTIFY transaction.
    by_tx: HashMap<ClientTxId, u64>,
    /// Expiry deadlines (stale when the subscription moved on or is gone).
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
}

impl Subscriptions {
    /// Adds `s`; returns its id.
    pub fn insert(&mut self, s: Subscription) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.by_dialog
            .insert((s.call_id.clone(), s.local_tag.clone()), id);
        self.deadlines.push(Reverse((s.expires_at, id)));
        self.subs.insert(id, s);
        id
    }

    /// The subscription of the dialog (Call-ID, our tag, their tag), if any.
    pub fn find(&self, call_id: &str, local_tag: &str, remote_tag: &str) -> Option<u64> {
        let id = *self
            .by_dialog
            .get(&(call_id.to_string(), local_tag.to_string()))?;
        self.subs
            .get(&id)
            .filter(|s| s.remote_tag == remote_tag)
            .map(|_| id)
    }

    /// Subscription `id`.
    pub fn get(&self, id: u64) -> Option<&Subscription> {
        self.subs.get(&id)
    }

    /// Subscription `id`, mutable.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Subscription> {
        self.subs.get_mut(&id)
    }

    /// Moves subscription `id`'s expiry to `at`.
    pub fn refresh(&mut self, id: u64, at: Instant, dest: (SocketAddr, Transport)) {
        if let Some(s) = self.subs.get_mut(&id) {
            s.expires_at = at;
            s.dest = dest;
            self.deadlines.push(Reverse((at, id)));
        }
    }

    /// Removes subscription `id`.
    pub fn remove(&mut self, id: u64) -> Option<Subscription> {
        let s = self.subs.remove(&id)?;
        self.by_dialog
            .remove(&(s.call_id.clone(), s.local_tag.clone()));
        if let Some(tx) = s.in_flight {
            self.by_tx.remove(&tx);
        }
        Some(s)
    }

    /// The subscriptions to `aor`'s `package`.
    pub fn watchers(&self, aor: &str, package: Package) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.package == package && s.aor == aor)
            .map(|(id, _)| *id)
            .collect();
        v.sort_unstable();
        v
    }

    /// Subscriptions held by `subscriber`.
    pub fn count_for(&self, subscriber: &str) -> usize {
        self.subs
            .values()
            .filter(|s| s.subscriber == subscriber)
            .count()
    }

    /// Subscriptions in all.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Whether subscription `id` may send a NOTIFY now; if one is in flight, the change is
    /// remembered for after its answer and false is returned.
    pub fn may_send(&mut self, id: u64) -> bool {
        match self.subs.get_mut(&id) {
            Some(s) if s.in_flight.is_some() => {
                s.dirty = true;
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Subscription `id`'s NOTIFY went out as transaction `tx`.
    pub fn sent(&mut self, id: u64, tx: ClientTxId) {
        if let Some(s) = self.subs.get_mut(&id) {
            s.in_flight = Some(tx);
            s.dirty = false;
            self.by_tx.insert(tx, id);
        }
    }

    /// The answer to NOTIFY transaction `tx` (`None`: timeout or transport error); `None`
    /// when `tx` is no NOTIFY of ours in flight. A provisional answer changes nothing.
    pub fn answered(
        &mut self,
        tx: ClientTxId,
        status: Option<u16>,
    ) -> Option<(u64, NotifyOutcome)> {
        let id = *self.by_tx.get(&tx)?;
        if status.is_some_and(|s| s < 200) {
            return Some((id, NotifyOutcome::Done));
        }
        self.by_tx.remove(&tx);
        if matches!(status, None | Some(408) | Some(481)) {
            // RFC 6665 §4.2.2: the subscriber no longer has the subscription.
            self.remove(id);
            return Some((id, NotifyOutcome::Ended));
        }
        let s = self.subs.get_mut(&id)?;
        s.in_flight = None;
        let again = std::mem::take(&mut s.dirty);
        Some((
            id,
            if again {
                NotifyOutcome::SendAgain
            } else {
                NotifyOutcome::Done
            },
        ))
    }

    /// The subscriptions expired at `now` (still in the table).
    pub fn expired(&mut self, now: Instant) -> Vec<u64> {
        let mut v = Vec::new();
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self
                .subs
                .get(&id)
                .is_some_and(|s| s.expires_at <= now && !v.contains(&id))
            {
                v.push(id);
            }
        }
        v
    }

    /// The next expiry (may be stale).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }
}

/// The lifetime a `grant`ed Expires gives at `now`.
pub fn expiry(now: Instant, expires_s: u32) -> Instant {
    now + Duration::from_secs(expires_s as u64)
}
