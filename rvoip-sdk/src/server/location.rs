//! The location service (RFC 3261 §10.2, §10.3): address-of-record -> contact bindings.
//!
//! Sans-IO: every method that depends on time takes `now`, the wall-clock time in Unix seconds
//! (the driver's clock), so that bindings keep their meaning when they are persisted and loaded
//! again after a restart, or shared with another node.
//!
//! Every change to the stored bindings can be recorded as a [`BindingChange`] (added, refreshed,
//! removed, expired; [`Location::record_changes`]), which the driver drains after each input and
//! hands to a store (redb, Redis) off the hot path. Bindings loaded back from a store go in with
//! [`Location::restore`], which records nothing.
//!
//! The AOR key is the user part of the To URI, kept exactly as received (case-sensitive). This
//! single-domain server treats every host as its own (like Kamailio's usrloc without the domain
//! module). Expired bindings are invisible to [`Location::lookup`] at once and are freed by
//! [`Location::sweep`], which uses a min-heap of expiry times so that a sweep only touches the AORs
//! that have something to expire.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;

use crate::sip::msg::{ByteString, Uri};

pub use crate::sip::transport::Transport;

/// One binding of an AOR to a contact address (RFC 3261 §10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI (where to send requests for the AOR).
    pub contact: Uri,
    /// The Contact header value to echo in 200 responses: `<uri>` and the contact's header
    /// parameters except `expires` and `q`.
    pub contact_value: ByteString,
    /// Preference, `q * 1000` (0..=1000), default 1000.
    pub q: u16,
    /// When the binding expires, in Unix seconds (wall clock).
    pub expires_at: u64,
    /// The Call-ID of the REGISTER that created or last refreshed it.
    pub call_id: ByteString,
    /// The CSeq number of that REGISTER.
    pub cseq: u32,
    /// Where the REGISTER came from (for NAT traversal by the proxy).
    pub source: SocketAddr,
    /// The transport it came on.
    pub transport: Transport,
    /// Whether the REGISTER came through a NAT (its Via or private Contact is not its source):
    /// requests for this binding then go to `source` (Kamailio's `fix_nated_register`, the
    /// flow of RFC 5626), never to the unreachable private Contact.
    pub behind_nat: bool,
    /// The Path vector (RFC 3327 §5.3): the route set to reach the user agent, top first, as
    /// Path header values (`<uri>;params`). It holds the Path headers the REGISTER arrived
    /// with and, in front of them, the registering node's own flow URI when the flow can only
    /// be reached through that node ([`crate::server::path`]). Empty: reached directly.
    pub path: Vec<ByteString>,
}

impl Binding {
    /// Whether the binding is still valid at `now` (Unix seconds).
    pub fn is_live(&self, now: u64) -> bool {
        self.expires_at > now
    }

    /// Seconds left at `now` (Unix seconds); 0 when expired.
    pub fn remaining_secs(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }

    /// Whether `self` and `other` differ in anything a store keeps (everything but the parsed
    /// contact, which follows from `contact_value`).
    fn differs(&self, other: &Binding) -> bool {
        self.expires_at != other.expires_at
            || self.cseq != other.cseq
            || self.call_id != other.call_id
            || self.q != other.q
            || self.source != other.source
            || self.transport != other.transport
            || self.behind_nat != other.behind_nat
            || self.contact_value != other.contact_value
            || self.path != other.path
    }
}

/// What happened to a binding ([`BindingChange`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A contact bound for the first time (RFC 3261 §10.3 step 7).
    Added,
    /// An existing binding registered again: a new expiry, CSeq, q or flow.
    Refreshed,
    /// Removed by the registrar: `expires=0`, `Contact: *`, or left out when the AOR's bindings
    /// were replaced.
    Removed,
    /// Removed by [`Location::sweep`] because it expired.
    Expired,
}

/// One change to the stored bindings, for the driver's stores (persistence and replication).
/// A store keys a binding by `aor` and `binding.contact` (see [`contact_uri_eq`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingChange {
    /// What happened.
    pub kind: ChangeKind,
    /// The address-of-record.
    pub aor: ByteString,
    /// The binding as it is now (`Added`, `Refreshed`) or as it was (`Removed`, `Expired`).
    pub binding: Binding,
}

/// The value of URI parameter `name` (case-insensitive) in a raw `;a=b;c` parameter string:
/// `Some("")` for a parameter without a value.
fn raw_param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').skip(1).find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether two contact URIs denote the same binding (RFC 3261 §19.1.4, simplified): same scheme,
/// same user (case-sensitive) and password, same host (case-insensitive), same port (an absent
/// port differs from an explicit 5060, as in §19.1.4), and the same `transport`, `user`, `maddr`
/// parameters when present in either. Other schemes compare their opaque part.
pub fn contact_uri_eq(a: &Uri, b: &Uri) -> bool {
    if a.scheme != b.scheme {
        return false;
    }
    if a.opaque.is_some() || b.opaque.is_some() {
        return a.opaque == b.opaque;
    }
    a.user == b.user
        && a.password == b.password
        && a.host.eq_ignore_ascii_case(&b.host)
        && a.port == b.port
        // The same parameter text (a refresh from the same client) needs no parameter scan.
        && (a.params == b.params
            || ["transport", "user", "maddr"].iter().all(|n| {
            match (raw_param(&a.params, n), raw_param(&b.params, n)) {
                (None, None) => true,
                (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                _ => false,
            }
        }))
}

/// AOR -> bindings, with expiry.
#[derive(Debug, Clone)]
pub struct Location {
    aors: HashMap<ByteString, Vec<Binding>>,
    /// (expiry, AOR) for every binding stored; entries for refreshed or removed bindings are left
    /// in place and ignored when popped (lazy deletion), and the heap is rebuilt if it grows too
    /// large compared with the live bindings.
    expiries: BinaryHeap<Reverse<(u64, ByteString)>>,
    bindings: usize,
    /// Changes recorded since the last [`Location::take_changes`] (only while recording).
    changes: Vec<BindingChange>,
    recording: bool,
    /// Maximum bindings per AOR (default 10). Enforced by the registrar, which answers 503.
    pub max_bindings_per_aor: usize,
}

impl Default for Location {
    fn default() -> Self {
        Location::new()
    }
}

impl Location {
    /// The flows (source addresses) of live bindings registered over a stream transport (TCP,
    /// TLS, WS, WSS): the connections the proxy reaches those users through.
    pub fn stream_flows(&self, now: u64) -> std::collections::HashSet<SocketAddr> {
        self.aors
            .values()
            .flatten()
            .filter(|b| b.transport.is_reliable() && b.is_live(now))
            .map(|b| b.source)
            .collect()
    }

    /// Every stored binding with its AOR (expired ones not yet swept included), in no
    /// particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Binding)> {
        self.aors
            .iter()
            .flat_map(|(aor, list)| list.iter().map(move |b| (aor.as_ref(), b)))
    }

    /// An empty location service.
    pub fn new() -> Location {
        Location {
            aors: HashMap::new(),
            expiries: BinaryHeap::new(),
            bindings: 0,
            changes: Vec::new(),
            recording: false,
            max_bindings_per_aor: 10,
        }
    }

    /// Starts (`true`) or stops recording [`BindingChange`]s. Off by default, so that a server
    /// without a store pays nothing.
    pub fn record_changes(&mut self, on: bool) {
        self.recording = on;
        if !on {
            self.changes = Vec::new();
        }
    }

    /// The changes recorded since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<BindingChange> {
        std::mem::take(&mut self.changes)
    }

    /// Whether changes are waiting for [`Location::take_changes`].
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    fn record(&mut self, kind: ChangeKind, aor: &ByteString, binding: &Binding) {
        if self.recording {
            self.changes.push(BindingChange {
                kind,
                aor: aor.clone(),
                binding: binding.clone(),
            });
        }
    }

    /// Puts back a binding loaded from a store (at start, or from another node): it replaces a
    /// stored binding of the same contact and is dropped when it has expired at `now` (Unix
    /// seconds) or when `aor` already holds `max_bindings_per_aor` bindings. Records no change.
    /// Returns whether it was stored.
    pub fn restore(&mut self, aor: &str, binding: Binding, now: u64) -> bool {
        if !binding.is_live(now) {
            return false;
        }
        let mut list: Vec<Binding> = self.bindings(aor).to_vec();
        match list
            .iter()
            .position(|b| contact_uri_eq(&b.contact, &binding.contact))
        {
            Some(i) => list[i] = binding,
            None if list.len() >= self.max_bindings_per_aor => return false,
            None => list.push(binding),
        }
        let recording = std::mem::replace(&mut self.recording, false);
        self.set_bindings(aor, list);
        self.recording = recording;
        true
    }

    /// The unexpired bindings of `aor`, highest `q` first (stable: older bindings first among
    /// equal q).
    pub fn lookup(&self, aor: &str, now: u64) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = match self.aors.get(aor) {
            Some(list) => list.iter().filter(|b| b.is_live(now)).collect(),
            None => Vec::new(),
        };
        v.sort_by_key(|b| std::cmp::Reverse(b.q));
        v
    }

    /// Every stored binding of `aor`, including expired ones not yet swept, in stored order.
    pub fn bindings(&self, aor: &str) -> &[Binding] {
        self.aors.get(aor).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Replaces the bindings of `aor` (an empty list removes the AOR). The caller (the
    /// registrar) checks [`Location::max_bindings_per_aor`].
    pub fn set_bindings(&mut self, aor: &str, list: Vec<Binding>) {
        if self.recording {
            self.record_diff(aor, &list);
        }
        let old = match self.aors.get_mut(aor) {
            Some(slot) if list.is_empty() => {
                let n = slot.len();
                self.aors.remove(aor);
                n
            }
            Some(slot) => {
                let n = slot.len();
                let changed: Vec<u64> = list
                    .iter()
                    .filter(|b| !slot.iter().any(|o| o.expires_at == b.expires_at))
                    .map(|b| b.expires_at)
                    .collect();
                *slot = list;
                let key = ByteString::from(aor);
                for t in changed {
                    self.expiries.push(Reverse((t, key.clone())));
                }
                n
            }
            None => {
                if list.is_empty() {
                    return;
                }
                let key = ByteString::from(aor);
                for b in &list {
                    self.expiries.push(Reverse((b.expires_at, key.clone())));
                }
                self.aors.insert(key, list);
                0
            }
        };
        self.bindings = self.bindings - old + self.aors.get(aor).map_or(0, Vec::len);
        self.maybe_compact();
    }

    /// Replaces the binding at `index` of `aor`'s stored list (as [`Location::bindings`] lists
    /// them) by `binding`, which the caller found to have the same contact: a refresh
    /// (RFC 3261 §10.3 step 7) that leaves the other bindings as they are. Records `Refreshed`
    /// when anything a store keeps changed. Returns false (and changes nothing) when there is
    /// no such binding.
    pub fn refresh_at(&mut self, aor: &str, index: usize, binding: Binding) -> bool {
        let Some((key, old)) = self
            .aors
            .get_key_value(aor)
            .and_then(|(k, l)| Some((k.clone(), l.get(index)?)))
        else {
            return false;
        };
        let moved = old.expires_at != binding.expires_at;
        if old.differs(&binding) {
            self.record(ChangeKind::Refreshed, &key, &binding);
        }
        if moved {
            self.expiries.push(Reverse((binding.expires_at, key)));
        }
        if let Some(slot) = self.aors.get_mut(aor).and_then(|l| l.get_mut(index)) {
            *slot = binding;
        }
        self.maybe_compact();
        true
    }

    /// Removes the binding of `aor` whose contact equals `contact` (a removal or expiry made
    /// elsewhere: another node or worker). Records no change. Returns whether one was stored.
    pub fn forget(&mut self, aor: &str, contact: &Uri) -> bool {
        let list = self.bindings(aor);
        if !list.iter().any(|b| contact_uri_eq(&b.contact, contact)) {
            return false;
        }
        let kept: Vec<Binding> = list
            .iter()
            .filter(|b| !contact_uri_eq(&b.contact, contact))
            .cloned()
            .collect();
        let recording = std::mem::replace(&mut self.recording, false);
        self.set_bindings(aor, kept);
        self.recording = recording;
        true
    }

    /// Applies a change made by another replica of the location (another node sharing the
    /// store, or another worker of this server) at `now` (Unix seconds): `Added`/`Refreshed`
    /// restore the binding, `Removed`/`Expired` forget it. Records no change, so replicas do not
    /// echo each other's changes. Returns whether the stored bindings changed.
    pub fn apply_remote(&mut self, change: &BindingChange, now: u64) -> bool {
        match change.kind {
            ChangeKind::Added | ChangeKind::Refreshed => {
                self.restore(&change.aor, change.binding.clone(), now)
            }
            ChangeKind::Removed | ChangeKind::Expired => {
                self.forget(&change.aor, &change.binding.contact)
            }
        }
    }

    /// Records what replacing the bindings of `aor` by `list` changes.
    fn record_diff(&mut self, aor: &str, list: &[Binding]) {
        let key = ByteString::from(aor);
        // The old list is read in place: only bindings that went away are copied out of it.
        let old = self.bindings(aor);
        let mut written: Vec<(ChangeKind, usize)> = Vec::new();
        for (i, b) in list.iter().enumerate() {
            match old.iter().find(|o| contact_uri_eq(&o.contact, &b.contact)) {
                None => written.push((ChangeKind::Added, i)),
                Some(o) if o.differs(b) => written.push((ChangeKind::Refreshed, i)),
                Some(_) => {}
            }
        }
        let removed: Vec<Binding> = old
            .iter()
            .filter(|o| !list.iter().any(|b| contact_uri_eq(&o.contact, &b.contact)))
            .cloned()
            .collect();
        for (kind, i) in written {
            if let Some(b) = list.get(i) {
                self.record(kind, &key, b);
            }
        }
        for o in &removed {
            self.record(ChangeKind::Removed, &key, o);
        }
    }

    /// Removes every binding of `aor`; returns how many there were.
    pub fn remove_aor(&mut self, aor: &str) -> usize {
        let list = self.aors.remove(aor).unwrap_or_default();
        let key = ByteString::from(aor);
        for b in &list {
            self.record(ChangeKind::Removed, &key, b);
        }
        self.bindings -= list.len();
        list.len()
    }

    /// Removes the bindings that have expired at `now` (Unix seconds); returns how many were
    /// removed.
    pub fn sweep(&mut self, now: u64) -> usize {
        let mut removed = 0;
        while let Some(Reverse((t, _))) = self.expiries.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, aor))) = self.expiries.pop() else {
                break;
            };
            if let Some(list) = self.aors.get_mut(&aor) {
                let before = list.len();
                if self.recording {
                    for b in list.iter().filter(|b| !b.is_live(now)) {
                        self.changes.push(BindingChange {
                            kind: ChangeKind::Expired,
                            aor: aor.clone(),
                            binding: b.clone(),
                        });
                    }
                }
                list.retain(|b| b.is_live(now));
                removed += before - list.len();
                if list.is_empty() {
                    self.aors.remove(&aor);
                }
            }
        }
        self.bindings -= removed;
        removed
    }

    /// When to call [`Location::sweep`] next: the earliest stored expiry (it may belong to a binding
    /// refreshed since, in which case that sweep finds nothing).
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.peek().map(|Reverse((t, _))| *t)
    }

    /// Number of stored bindings (expired ones count until swept).
    pub fn len(&self) -> usize {
        self.bindings
    }

    /// Whether no binding is stored.
    pub fn is_empty(&self) -> bool {
        self.bindings == 0
    }

    /// Number of AORs with at least one stored binding.
    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    /// Rebuilds the expiry heap when stale entries dominate (many refreshes).
    fn maybe_compact(&mut self) {
        if self.expiries.len() > 4 * self.bindings + 1024 {
            let mut v = Vec::with_capacity(self.bindings);
            for (aor, list) in &self.aors {
                for b in list {
                    v.push(Reverse((b.expires_at, aor.clone())));
                }
            }
            self.expiries = BinaryHeap::from(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const T0: u64 = 1_700_000_000;

    fn uri(user: &str, host: &str, port: Option<u16>, params: &str) -> Uri {
        Uri {
            scheme: crate::sip::msg::Scheme::Sip,
            user: Some(user.into()),
            password: None,
            host: host.into(),
            port,
            params: params.into(),
            headers: None,
            opaque: None,
        }
    }

    fn binding(user: &str, q: u16, expires_at: u64) -> Binding {
        Binding {
            contact: uri(user, "192.0.2.1", Some(5060), ""),
            contact_value: format!("<sip:{user}@192.0.2.1:5060>").into(),
            q,
            expires_at,
            call_id: "c1".into(),
            cseq: 1,
            source: "192.0.2.1:5060".parse().unwrap(),
            transport: Transport::Udp,
            behind_nat: false,
            path: Vec::new(),
        }
    }

    #[test]
    fn lookup_sorts_by_q_and_hides_expired() {
        let t0 = T0;
        let mut loc = Location::new();
        let s = 1u64;
        loc.set_bindings(
            "alice",
            vec![
                binding("a", 500, t0 + 10 * s),
                binding("b", 1000, t0 + 20 * s),
                binding("c", 700, t0 + 5 * s),
            ],
        );
        let users = |v: Vec<&Binding>| -> Vec<String> {
            v.iter()
                .map(|b| b.contact.user.as_deref().unwrap_or("").to_owned())
                .collect()
        };
        assert_eq!(users(loc.lookup("alice", t0)), ["b", "c", "a"]);
        assert_eq!(users(loc.lookup("alice", t0 + 5 * s)), ["b", "a"]);
        assert!(
            loc.lookup("Alice", t0).is_empty(),
            "AOR keys are case-sensitive"
        );
        assert_eq!((loc.len(), loc.aor_count()), (3, 1));
        assert_eq!(loc.next_expiry(), Some(t0 + 5 * s));
    }

    #[test]
    fn sweep_removes_only_expired() {
        let t0 = T0;
        let s = 1u64;
        let mut loc = Location::new();
        for i in 0..1000u32 {
            let aor = format!("u{i}");
            loc.set_bindings(
                &aor,
                vec![binding("x", 1000, t0 + u64::from(u32::max(i, 1)) * s)],
            );
        }
        loc.set_bindings(
            "multi",
            vec![
                binding("a", 1000, t0 + 2 * s),
                binding("b", 1000, t0 + 5000 * s),
            ],
        );
        assert_eq!(loc.len(), 1002);
        assert_eq!(loc.sweep(t0), 0);
        assert_eq!(loc.sweep(t0 + 2 * s), 4); // u0, u1, u2 (expiring at <= 2 s) and multi/a
        assert_eq!(loc.len(), 998);
        assert_eq!(loc.bindings("multi").len(), 1);
        assert_eq!(loc.sweep(t0 + 999 * s), 997);
        assert_eq!((loc.len(), loc.aor_count()), (1, 1));
        assert_eq!(loc.sweep(t0 + 6000 * s), 1);
        assert!(loc.is_empty() && loc.aor_count() == 0 && loc.next_expiry().is_none());
    }

    #[test]
    fn refresh_moves_expiry_and_heap_stays_bounded() {
        let t0 = T0;
        let s = 1u64;
        let mut loc = Location::new();
        for i in 1..=5000u32 {
            loc.set_bindings("a", vec![binding("x", 1000, t0 + u64::from(i + 10) * s)]);
        }
        assert!(loc.expiries.len() <= 4 * loc.len() + 1025);
        assert_eq!(
            loc.sweep(t0 + 100 * s),
            0,
            "refreshed binding must survive its old expiry"
        );
        assert_eq!(loc.len(), 1);
        assert_eq!(loc.remove_aor("a"), 1);
        assert_eq!(loc.sweep(t0 + 10_000 * s), 0);
        assert!(loc.is_empty());
        loc.set_bindings("nobody", Vec::new());
        assert_eq!(loc.aor_count(), 0);
    }

    #[test]
    fn contact_comparison() {
        let a = uri(
            "alice",
            "Host.example.com",
            Some(5060),
            ";transport=TCP;foo",
        );
        assert!(contact_uri_eq(
            &a,
            &uri("alice", "host.EXAMPLE.com", Some(5060), ";transport=tcp")
        ));
        assert!(!contact_uri_eq(
            &a,
            &uri("Alice", "host.example.com", Some(5060), ";transport=tcp")
        ));
        assert!(!contact_uri_eq(
            &a,
            &uri("alice", "host.example.com", None, ";transport=tcp")
        ));
        assert!(!contact_uri_eq(
            &a,
            &uri("alice", "host.example.com", Some(5060), "")
        ));
        assert!(!contact_uri_eq(
            &a,
            &uri("alice", "host.example.com", Some(5060), ";transport=udp")
        ));
    }

    #[test]
    fn remaining_secs_counts_down_to_zero() {
        let t0 = T0;
        let b = binding("a", 1000, t0 + 2);
        assert_eq!(b.remaining_secs(t0), 2);
        assert_eq!(b.remaining_secs(t0 + 2), 0);
        assert_eq!(b.remaining_secs(t0 + 5), 0);
    }

    fn with_contact(user: &str, host: &str, expires_at: u64, cseq: u32) -> Binding {
        let mut b = binding(user, 1000, expires_at);
        b.contact = uri(user, host, Some(5060), "");
        b.contact_value = format!("<sip:{user}@{host}:5060>").into();
        b.cseq = cseq;
        b
    }

    fn kinds(loc: &mut Location) -> Vec<(ChangeKind, String)> {
        loc.take_changes()
            .into_iter()
            .map(|c| (c.kind, c.binding.contact.host.to_string()))
            .collect()
    }

    #[test]
    fn changes_are_recorded_only_while_recording() {
        let mut loc = Location::new();
        loc.set_bindings("a", vec![with_contact("a", "192.0.2.1", T0 + 60, 1)]);
        assert!(!loc.has_changes(), "nothing is recorded by default");
        loc.record_changes(true);
        // Same binding again: no change. A new contact: Added; a new CSeq: Refreshed.
        loc.set_bindings("a", vec![with_contact("a", "192.0.2.1", T0 + 60, 1)]);
        assert!(!loc.has_changes());
        loc.set_bindings(
            "a",
            vec![
                with_contact("a", "192.0.2.1", T0 + 120, 2),
                with_contact("a", "192.0.2.2", T0 + 30, 2),
            ],
        );
        assert_eq!(
            kinds(&mut loc),
            [
                (ChangeKind::Refreshed, "192.0.2.1".into()),
                (ChangeKind::Added, "192.0.2.2".into())
            ]
        );
        // Left out: Removed. Swept: Expired. remove_aor: Removed.
        loc.set_bindings("a", vec![with_contact("a", "192.0.2.2", T0 + 30, 3)]);
        assert_eq!(
            kinds(&mut loc),
            [
                (ChangeKind::Refreshed, "192.0.2.2".into()),
                (ChangeKind::Removed, "192.0.2.1".into())
            ]
        );
        assert_eq!(loc.sweep(T0 + 30), 1);
        assert_eq!(kinds(&mut loc), [(ChangeKind::Expired, "192.0.2.2".into())]);
        loc.set_bindings("b", vec![with_contact("b", "192.0.2.3", T0 + 60, 1)]);
        loc.take_changes();
        assert_eq!(loc.remove_aor("b"), 1);
        let c = loc.take_changes();
        assert_eq!(
            (c.len(), c[0].kind, &*c[0].aor),
            (1, ChangeKind::Removed, "b")
        );
        loc.record_changes(false);
        loc.set_bindings("c", vec![with_contact("c", "192.0.2.4", T0 + 60, 1)]);
        assert!(!loc.has_changes());
    }

    /// A refresh in place records what `set_bindings` would, moves the expiry the sweep sees,
    /// and leaves the other bindings alone.
    #[test]
    fn refresh_in_place_matches_replacing_the_list() {
        let mut loc = Location::new();
        let two = vec![
            with_contact("a", "192.0.2.1", T0 + 60, 1),
            with_contact("a", "192.0.2.2", T0 + 60, 1),
        ];
        loc.set_bindings("a", two);
        loc.record_changes(true);
        // Nothing new: nothing recorded.
        assert!(loc.refresh_at("a", 1, with_contact("a", "192.0.2.2", T0 + 60, 1)));
        assert!(!loc.has_changes());
        assert!(loc.refresh_at("a", 1, with_contact("a", "192.0.2.2", T0 + 600, 2)));
        assert_eq!(
            kinds(&mut loc),
            [(ChangeKind::Refreshed, "192.0.2.2".into())]
        );
        assert_eq!(loc.len(), 2);
        assert_eq!(loc.bindings("a")[1].cseq, 2);
        // The first binding expires at T0 + 60; the refreshed one does not.
        assert_eq!(loc.sweep(T0 + 60), 1);
        assert_eq!(kinds(&mut loc), [(ChangeKind::Expired, "192.0.2.1".into())]);
        assert_eq!(loc.lookup("a", T0 + 61).len(), 1);
        assert_eq!(loc.sweep(T0 + 600), 1);
        assert_eq!(kinds(&mut loc), [(ChangeKind::Expired, "192.0.2.2".into())]);
        assert!(loc.is_empty());
        // No such binding: nothing changes.
        assert!(!loc.refresh_at("a", 0, with_contact("a", "192.0.2.2", T0 + 900, 3)));
        assert!(!loc.has_changes());
    }

    #[test]
    fn replicas_converge_without_echoing_changes() {
        let mut a = Location::new();
        let mut b = Location::new();
        a.record_changes(true);
        b.record_changes(true);
        a.set_bindings("x", vec![with_contact("x", "192.0.2.1", T0 + 60, 1)]);
        a.set_bindings("x", vec![with_contact("x", "192.0.2.1", T0 + 90, 2)]);
        a.set_bindings("y", vec![with_contact("y", "192.0.2.2", T0 + 60, 1)]);
        a.remove_aor("y");
        for c in a.take_changes() {
            b.apply_remote(&c, T0);
        }
        assert!(!b.has_changes(), "applied changes are not recorded again");
        assert_eq!(b.lookup("x", T0)[0].expires_at, T0 + 90);
        assert!(b.lookup("y", T0).is_empty());
        assert_eq!(b.len(), 1);
        assert!(!b.forget("x", &uri("x", "192.0.2.9", Some(5060), "")));
        assert!(b.forget("x", &uri("x", "192.0.2.1", Some(5060), "")));
        assert!(b.is_empty() && !b.has_changes());
    }

    #[test]
    fn restore_drops_expired_replaces_same_contact_and_records_nothing() {
        let mut loc = Location::new();
        loc.record_changes(true);
        loc.max_bindings_per_aor = 2;
        assert!(!loc.restore("a", with_contact("a", "192.0.2.1", T0, 1), T0));
        assert!(loc.restore("a", with_contact("a", "192.0.2.1", T0 + 10, 1), T0));
        assert!(loc.restore("a", with_contact("a", "192.0.2.1", T0 + 99, 2), T0));
        assert!(loc.restore("a", with_contact("a", "192.0.2.2", T0 + 50, 1), T0));
        assert!(!loc.restore("a", with_contact("a", "192.0.2.3", T0 + 50, 1), T0));
        assert!(!loc.has_changes(), "restoring is not a change to persist");
        let got: Vec<(String, u64)> = loc
            .lookup("a", T0)
            .iter()
            .map(|b| (b.contact.host.to_string(), b.expires_at))
            .collect();
        assert_eq!(
            got,
            [("192.0.2.1".into(), T0 + 99), ("192.0.2.2".into(), T0 + 50)]
        );
        assert_eq!(
            loc.next_expiry(),
            Some(T0 + 10),
            "stale heap entries are harmless"
        );
        assert_eq!(loc.sweep(T0 + 60), 1);
        assert_eq!(kinds(&mut loc), [(ChangeKind::Expired, "192.0.2.2".into())]);
    }
}
