//! The reply cache of the ng control: a client that did not get a reply retransmits the same
//! datagram with the same cookie, and must get the same reply, not a second call (rtpengine's
//! cookie cache). Keyed by client address and cookie, and replayed only for the same request
//! body (a restarted client reusing a cookie gets a fresh answer); bounded in entries and
//! bytes; entries expire after a TTL.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Cached replies, oldest first out.
#[derive(Debug)]
pub struct ReplyCache {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    /// Key → (insertion number, hash of the request body, reply).
    map: HashMap<(SocketAddr, Vec<u8>), (u64, u64, Vec<u8>)>,
    /// Insertion order with insertion time and number, for expiry and eviction.
    order: VecDeque<(Instant, u64, SocketAddr, Vec<u8>)>,
    next: u64,
}

impl ReplyCache {
    /// A cache keeping replies for `ttl`, at most `max_entries` of them and `max_bytes` of
    /// cookies and replies together (the oldest go first).
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> ReplyCache {
        ReplyCache {
            ttl,
            max_entries,
            max_bytes,
            bytes: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }

    /// The reply already sent to `from` for `cookie` and this same request `body`, if still
    /// cached at `now`.
    pub fn get(
        &mut self,
        now: Instant,
        from: SocketAddr,
        cookie: &[u8],
        body: &[u8],
    ) -> Option<&[u8]> {
        self.expire(now);
        let h = body_hash(body);
        self.map
            .get(&(from, cookie.to_vec()))
            .filter(|(_, bh, _)| *bh == h)
            .map(|(_, _, r)| r.as_slice())
    }

    /// Remembers `reply` to the request `body` for (`from`, `cookie`) at `now`.
    pub fn insert(
        &mut self,
        now: Instant,
        from: SocketAddr,
        cookie: &[u8],
        body: &[u8],
        reply: &[u8],
    ) {
        self.expire(now);
        let cost = cookie.len() + reply.len();
        if self.max_entries == 0 || cost > self.max_bytes {
            return;
        }
        let key = (from, cookie.to_vec());
        let n = self.next;
        self.next += 1;
        if let Some((_, _, old)) = self.map.insert(key, (n, body_hash(body), reply.to_vec())) {
            // A new request reusing a cookie: the old entry's order slot is skipped later.
            self.bytes = self.bytes.saturating_sub(cookie.len() + old.len());
        }
        self.bytes += cost;
        self.order.push_back((now, n, from, cookie.to_vec()));
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            if !self.evict_oldest() {
                break;
            }
        }
    }

    /// Cached replies.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, _, _, _)) = self.order.front() {
            if now.saturating_duration_since(*t) < self.ttl {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((_, n, from, cookie)) = self.order.pop_front() else {
            return false;
        };
        let key = (from, cookie);
        // Only the entry this slot inserted, not a later one under the same key.
        if self.map.get(&key).is_some_and(|(m, _, _)| *m == n)
            && let Some((_, _, r)) = self.map.remove(&key)
        {
            self.bytes = self.bytes.saturating_sub(key.1.len() + r.len());
        }
        true
    }
}

fn body_hash(body: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn replies_are_kept_per_client_and_cookie_until_the_ttl() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(Duration::from_secs(30), 100, 1 << 20);
        c.insert(t0, a("127.0.0.1:5060"), b"1_2_3", b"req", b"d6:result2:oke");
        assert_eq!(
            c.get(t0, a("127.0.0.1:5060"), b"1_2_3", b"req"),
            Some(&b"d6:result2:oke"[..])
        );
        assert_eq!(c.get(t0, a("127.0.0.1:5061"), b"1_2_3", b"req"), None);
        // The same cookie with another request body: not a retransmission.
        assert_eq!(c.get(t0, a("127.0.0.1:5060"), b"1_2_3", b"other"), None);
        assert_eq!(c.get(t0, a("127.0.0.1:5060"), b"1_2_4", b"req"), None);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(c.get(later, a("127.0.0.1:5060"), b"1_2_3", b"req"), None);
        assert!(c.is_empty());
    }

    #[test]
    fn the_oldest_go_first_past_the_entry_and_byte_bounds() {
        let t0 = Instant::now();
        let from = a("127.0.0.1:5060");
        let mut c = ReplyCache::new(Duration::from_secs(30), 3, 1 << 20);
        for i in 0..10u8 {
            c.insert(t0, from, &[b'c', i], b"", b"reply");
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(t0, from, &[b'c', 9], b"").is_some());
        assert!(c.get(t0, from, &[b'c', 6], b"").is_none());
        let mut c = ReplyCache::new(Duration::from_secs(30), 100, 100);
        for i in 0..10u8 {
            c.insert(t0, from, &[b'c', i], b"", &[0; 40]);
        }
        assert_eq!(c.len(), 2, "two entries of 42 bytes fit in 100");
        // A reply larger than the whole budget is not cached.
        c.insert(t0, from, b"big", b"", &[0; 200]);
        assert!(c.get(t0, from, b"big", b"").is_none());
    }
}
