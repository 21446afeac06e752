//! The location service (RFC 3261 §10.2, §10.3): address-of-record -> contact bindings.
//!
//! Sans-IO: every method that depends on time takes `now: Instant`.
//!
//! The AOR key is the user part of the To URI, kept exactly as received (case-sensitive). This
//! single-domain server treats every host as its own (like Kamailio's usrloc without the domain
//! module). Expired bindings are invisible to [`Location::lookup`] at once and are freed by
//! [`Location::sweep`], which uses a min-heap of expiry times so that a sweep only touches the AORs
//! that have something to expire.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

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
    /// When the binding expires.
    pub expires_at: Instant,
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
}

impl Binding {
    /// Whether the binding is still valid at `now`.
    pub fn is_live(&self, now: Instant) -> bool {
        self.expires_at > now
    }

    /// Seconds left at `now`, rounded up (0 when expired).
    pub fn remaining_secs(&self, now: Instant) -> u64 {
        let d = self.expires_at.saturating_duration_since(now);
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
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
        && ["transport", "user", "maddr"].iter().all(|n| {
            match (raw_param(&a.params, n), raw_param(&b.params, n)) {
                (None, None) => true,
                (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                _ => false,
            }
        })
}

/// AOR -> bindings, with expiry.
#[derive(Debug)]
pub struct Location {
    aors: HashMap<ByteString, Vec<Binding>>,
    /// (expiry, AOR) for every binding stored; entries for refreshed or removed bindings are left
    /// in place and ignored when popped (lazy deletion), and the heap is rebuilt if it grows too
    /// large compared with the live bindings.
    expiries: BinaryHeap<Reverse<(Instant, ByteString)>>,
    bindings: usize,
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
    pub fn stream_flows(&self, now: Instant) -> std::collections::HashSet<SocketAddr> {
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
            max_bindings_per_aor: 10,
        }
    }

    /// The unexpired bindings of `aor`, highest `q` first (stable: older bindings first among
    /// equal q).
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<&Binding> {
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
        let old = match self.aors.get_mut(aor) {
            Some(slot) if list.is_empty() => {
                let n = slot.len();
                self.aors.remove(aor);
                n
            }
            Some(slot) => {
                let n = slot.len();
                let changed: Vec<Instant> = list
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

    /// Removes every binding of `aor`; returns how many there were.
    pub fn remove_aor(&mut self, aor: &str) -> usize {
        let n = self.aors.remove(aor).map_or(0, |v| v.len());
        self.bindings -= n;
        n
    }

    /// Removes the bindings that have expired at `now`; returns how many were removed.
    pub fn sweep(&mut self, now: Instant) -> usize {
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
    pub fn next_expiry(&self) -> Option<Instant> {
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
    use std::time::Duration;

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

    fn binding(user: &str, q: u16, expires_at: Instant) -> Binding {
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
        }
    }

    #[test]
    fn lookup_sorts_by_q_and_hides_expired() {
        let t0 = Instant::now();
        let mut loc = Location::new();
        let s = Duration::from_secs(1);
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
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut loc = Location::new();
        for i in 0..1000u32 {
            let aor = format!("u{i}");
            loc.set_bindings(&aor, vec![binding("x", 1000, t0 + u32::max(i, 1) * s)]);
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
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut loc = Location::new();
        for i in 1..=5000u32 {
            loc.set_bindings("a", vec![binding("x", 1000, t0 + (i + 10) * s)]);
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
    fn remaining_secs_rounds_up() {
        let t0 = Instant::now();
        let b = binding("a", 1000, t0 + Duration::from_millis(1500));
        assert_eq!(b.remaining_secs(t0), 2);
        assert_eq!(b.remaining_secs(t0 + Duration::from_secs(2)), 0);
    }
}
