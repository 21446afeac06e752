//! Transaction ids by matching key (RFC 3261 §17.1.3, §17.2.3), holding only ids.
//!
//! A `HashMap<Key, id>` keeps a copy of every key: its strings are heap blocks of their own,
//! read on every lookup that hits and every removal. At 500 calls/s about 100 000 transactions
//! are live (Timers J, L and M keep them 32 s), so those reads miss the cache: removing ended
//! transactions took 5 % of the server's CPU. Here the table holds (key hash, id) pairs of 16
//! bytes. The key itself stays in its transaction, where a lookup compares it only when the
//! 64-bit hash already matched; a removal compares ids alone.

use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;

/// Ids by key hash. Keys come from peers, so the hash is SipHash with a random key
/// (`RandomState`): a peer cannot aim many keys at one bucket.
#[derive(Default)]
pub(super) struct KeyIndex {
    table: HashTable<(u64, u64)>,
    state: RandomState,
}

impl KeyIndex {
    /// The hash a key is filed under.
    pub(super) fn hash<K: Hash>(&self, key: &K) -> u64 {
        self.state.hash_one(key)
    }

    /// The id filed under `hash` whose transaction's key equals the one looked up:
    /// `same_key(id)` says so.
    pub(super) fn find(&self, hash: u64, mut same_key: impl FnMut(u64) -> bool) -> Option<u64> {
        self.table
            .find(hash, |&(h, id)| h == hash && same_key(id))
            .map(|&(_, id)| id)
    }

    /// Files `id` under `hash`. The caller removes any other id with the same key first.
    pub(super) fn insert(&mut self, hash: u64, id: u64) {
        self.table.insert_unique(hash, (hash, id), |&(h, _)| h);
    }

    /// Removes `id`, filed under `hash`; nothing if it is not there.
    pub(super) fn remove(&mut self, hash: u64, id: u64) {
        if let Ok(e) = self.table.find_entry(hash, |&(h, i)| h == hash && i == id) {
            e.remove();
        }
    }

    /// How many ids are filed.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_key_and_removes_by_id() {
        let mut ix = KeyIndex::default();
        let keys = ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"];
        for (id, k) in keys.iter().enumerate() {
            let h = ix.hash(k);
            ix.insert(h, id as u64);
        }
        let key_of = |id: u64| keys[id as usize];
        for (id, k) in keys.iter().enumerate() {
            let h = ix.hash(k);
            assert_eq!(ix.find(h, |i| key_of(i) == *k), Some(id as u64));
        }
        // A hash that matches with a key that does not finds nothing.
        let h = ix.hash(&keys[0]);
        assert_eq!(ix.find(h, |_| false), None);
        ix.remove(h, 1); // the wrong id: nothing happens
        assert_eq!(ix.len(), 3);
        ix.remove(h, 0);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.find(h, |i| key_of(i) == keys[0]), None);
        let h1 = ix.hash(&keys[1]);
        assert_eq!(ix.find(h1, |i| key_of(i) == keys[1]), Some(1));
    }
}
