//! Offline instant messages (RFC 3428): a MESSAGE for a user of this domain with no binding is
//! kept here (answered 202 Accepted, RFC 3428 §7) and sent to the user's contact at its next
//! successful REGISTER, removed on a 2xx, kept on a failure for the REGISTER after.
//!
//! [`MessageStore`] is the storage seam: [`MemoryStore`] keeps the queues in memory (lost on
//! restart); a durable store (issue 16) implements the same trait. Times are Unix seconds, so
//! a stored message means the same after a restart.
//!
//! Limits per user: [`OfflineLimits::max_messages`] messages and
//! [`OfflineLimits::max_bytes`] body bytes. A message over either is refused with
//! 486 Busy Here "Offline Store Full": the recipient's mailbox is full, which is about that
//! user, not this server (503 would tell the sender to try another server, RFC 3261 §21.5.4).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// One stored MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Set by the store ([`MessageStore::push`]); unique within it.
    pub id: u64,
    /// The sender: the original From header value without its tag.
    pub from: String,
    /// The original To header value without a tag.
    pub to: String,
    /// The original Content-Type, if any.
    pub content_type: Option<String>,
    /// The body as received.
    pub body: Bytes,
    /// When the server received it, Unix seconds (the Date header of the delivery).
    pub received_unix: u64,
}

/// Why a message was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The user's queue holds `max_messages` already, or the body would exceed `max_bytes`.
    #[error("offline message store full")]
    Full,
}

/// Storage of offline messages per user (the AOR's user part).
pub trait MessageStore: Send {
    /// Stores `msg` (its `id` is replaced by a fresh one, which is returned) for `user`.
    /// Errors: [`StoreError::Full`] over the user's limits.
    fn push(&mut self, user: &str, msg: StoredMessage) -> Result<u64, StoreError>;
    /// The messages waiting for `user`, oldest first.
    fn pending(&self, user: &str) -> Vec<StoredMessage>;
    /// Removes message `id` of `user`; whether it was there.
    fn remove(&mut self, user: &str, id: u64) -> bool;
    /// Removes the messages older than the time to live at `now_unix`; how many.
    fn expire(&mut self, now_unix: u64) -> usize;
    /// How many messages are stored in all.
    fn len(&self) -> usize;
    /// Whether no message is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The limits of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfflineLimits {
    /// Most messages per user.
    pub max_messages: usize,
    /// Most body bytes per user.
    pub max_bytes: usize,
    /// Seconds a message is kept.
    pub ttl_s: u64,
}

/// An in-memory [`MessageStore`].
#[derive(Debug)]
pub struct MemoryStore {
    limits: OfflineLimits,
    queues: HashMap<String, VecDeque<StoredMessage>>,
    next_id: u64,
    count: usize,
}

impl MemoryStore {
    /// An empty store with `limits`.
    pub fn new(limits: OfflineLimits) -> MemoryStore {
        MemoryStore {
            limits,
            queues: HashMap::new(),
            next_id: 1,
            count: 0,
        }
    }
}

impl MessageStore for MemoryStore {
    fn push(&mut self, user: &str, mut msg: StoredMessage) -> Result<u64, StoreError> {
        let q = self.queues.entry(user.to_string()).or_default();
        let bytes: usize = q.iter().map(|m| m.body.len()).sum();
        if q.len() >= self.limits.max_messages
            || bytes.saturating_add(msg.body.len()) > self.limits.max_bytes
        {
            if q.is_empty() {
                self.queues.remove(user);
            }
            return Err(StoreError::Full);
        }
        msg.id = self.next_id;
        self.next_id += 1;
        q.push_back(msg);
        self.count += 1;
        Ok(self.next_id - 1)
    }

    fn pending(&self, user: &str) -> Vec<StoredMessage> {
        self.queues
            .get(user)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remove(&mut self, user: &str, id: u64) -> bool {
        let Some(q) = self.queues.get_mut(user) else {
            return false;
        };
        let before = q.len();
        q.retain(|m| m.id != id);
        let removed = before - q.len();
        self.count -= removed;
        if q.is_empty() {
            self.queues.remove(user);
        }
        removed > 0
    }

    fn expire(&mut self, now_unix: u64) -> usize {
        let ttl = self.limits.ttl_s;
        let mut removed = 0;
        self.queues.retain(|_, q| {
            let before = q.len();
            q.retain(|m| m.received_unix.saturating_add(ttl) > now_unix);
            removed += before - q.len();
            !q.is_empty()
        });
        self.count -= removed;
        removed
    }

    fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str, at: u64) -> StoredMessage {
        StoredMessage {
            id: 0,
            from: "<sip:alice@example.com>".into(),
            to: "<sip:bob@example.com>".into(),
            content_type: Some("text/plain".into()),
            body: Bytes::from(body.to_string()),
            received_unix: at,
        }
    }

    #[test]
    fn limits_order_removal_and_expiry() {
        let mut s = MemoryStore::new(OfflineLimits {
            max_messages: 2,
            max_bytes: 10,
            ttl_s: 100,
        });
        let a = s.push("bob", msg("hello", 1000)).unwrap();
        assert_eq!(s.push("bob", msg("toolong", 1001)), Err(StoreError::Full));
        let b = s.push("bob", msg("hi", 1050)).unwrap();
        assert_eq!(s.push("bob", msg("x", 1051)), Err(StoreError::Full));
        assert_eq!(s.push("carol", msg("x", 1051)).map(|_| ()), Ok(()));
        let p = s.pending("bob");
        assert_eq!(p.iter().map(|m| m.id).collect::<Vec<_>>(), vec![a, b]);
        assert!(s.remove("bob", a));
        assert!(!s.remove("bob", a));
        assert_eq!(s.len(), 2);
        // b (1050) lives until 1150; carol's until 1151.
        assert_eq!(s.expire(1149), 0);
        assert_eq!(s.expire(1150), 1);
        assert_eq!(s.expire(1151), 1);
        assert!(s.is_empty() && s.pending("bob").is_empty());
    }
}
