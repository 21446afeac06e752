//! Presence publications (RFC 3903 §6, the event state compositor's side): per AOR, each
//! publication has an entity tag, a PIDF document and an expiry. A PUBLISH without
//! `SIP-If-Match` creates one; with it, it refreshes (no body), modifies (a body) or removes
//! (`Expires: 0`) the publication that tag names, and a tag that names none (unknown, expired)
//! is refused (412). Every accepted PUBLISH gets a fresh entity tag (§6 step 7). The composite
//! state of an AOR is the document of its most recently created or modified live publication.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One publication of an AOR.
#[derive(Debug, Clone)]
struct Publication {
    /// Its current entity tag (RFC 3903 §4.1).
    etag: String,
    /// The PIDF document.
    document: Bytes,
    /// When it expires unless refreshed.
    expires_at: Instant,
    /// Order of the last creation or modification (the highest is the composite state).
    seq: u64,
}

/// Why a PUBLISH was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The `SIP-If-Match` tag names no live publication of the AOR (412, RFC 3903 §6 step 4).
    #[error("unknown or expired entity tag")]
    UnknownTag,
    /// The AOR already has its most publications (403).
    #[error("too many publications for this AOR")]
    TooMany,
    /// An initial PUBLISH (no `SIP-If-Match`) without a document (400, RFC 3903 §6 step 3).
    #[error("initial PUBLISH without a body")]
    NoDocument,
}

/// An accepted PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The entity tag for the `SIP-ETag` header (a removed publication's last tag).
    pub etag: String,
    /// The lifetime granted, seconds (0: removed or nothing stored).
    pub expires_s: u32,
}

/// The publications of every AOR, with their expiry.
#[derive(Debug)]
pub struct PublicationStore {
    by_aor: HashMap<String, Vec<Publication>>,
    /// Expiry deadlines by AOR; an entry is stale when the AOR's publications moved on.
    deadlines: BinaryHeap<Reverse<(Instant, String)>>,
    max_per_aor: usize,
    seq: u64,
    tag_seed: u64,
}

impl PublicationStore {
    /// An empty store allowing `max_per_aor` live publications per AOR.
    pub fn new(max_per_aor: usize) -> PublicationStore {
        PublicationStore {
            by_aor: HashMap::new(),
            deadlines: BinaryHeap::new(),
            max_per_aor,
            seq: 0,
            tag_seed: rand::random::<u64>(),
        }
    }

    fn new_etag(&mut self) -> String {
        self.seq += 1;
        let x = (self.tag_seed ^ self.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(23);
        format!("{x:016x}")
    }

    /// Applies a PUBLISH for `aor` at `now` (RFC 3903 §6 steps 4–7): `if_match` is its
    /// `SIP-If-Match`, `document` its body (`None` for a refresh), `expires_s` the lifetime
    /// already granted (0 removes). Errors: [`PublishError`].
    pub fn publish(
        &mut self,
        now: Instant,
        aor: &str,
        if_match: Option<&str>,
        document: Option<Bytes>,
        expires_s: u32,
    ) -> Result<Published, PublishError> {
        self.purge(now, aor);
        if if_match.is_none() {
            if document.is_none() {
                return Err(PublishError::NoDocument);
            }
            let n = self.by_aor.get(aor).map_or(0, Vec::len);
            if expires_s > 0 && n >= self.max_per_aor {
                return Err(PublishError::TooMany);
            }
        }
        let etag = self.new_etag();
        let seq = self.seq;
        let expires_at = now + Duration::from_secs(expires_s as u64);
        let pubs = self.by_aor.entry(aor.to_string()).or_default();
        match if_match {
            Some(tag) => {
                let i = pubs
                    .iter()
                    .position(|p| p.etag == tag.trim())
                    .ok_or(PublishError::UnknownTag)?;
                if expires_s == 0 {
                    let old = pubs.remove(i);
                    if pubs.is_empty() {
                        self.by_aor.remove(aor);
                    }
                    return Ok(Published {
                        etag: old.etag,
                        expires_s: 0,
                    });
                }
                let p = &mut pubs[i];
                p.etag = etag.clone();
                p.expires_at = expires_at;
                if let Some(doc) = document {
                    p.document = doc;
                    p.seq = seq;
                }
            }
            None => {
                let doc = document.ok_or(PublishError::NoDocument)?;
                if expires_s == 0 {
                    // Nothing to store (RFC 3903 §6 step 5 with no publication to remove).
                    if pubs.is_empty() {
                        self.by_aor.remove(aor);
                    }
                    return Ok(Published { etag, expires_s: 0 });
                }
                pubs.push(Publication {
                    etag: etag.clone(),
                    document: doc,
                    expires_at,
                    seq,
                });
            }
        }
        self.deadlines.push(Reverse((expires_at, aor.to_string())));
        Ok(Published { etag, expires_s })
    }

    /// The composite state of `aor` at `now`: the document of its most recently created or
    /// modified live publication, if any.
    pub fn current(&self, now: Instant, aor: &str) -> Option<&Bytes> {
        self.by_aor
            .get(aor)?
            .iter()
            .filter(|p| p.expires_at > now)
            .max_by_key(|p| p.seq)
            .map(|p| &p.document)
    }

    /// Drops `aor`'s expired publications; returns whether any was dropped.
    fn purge(&mut self, now: Instant, aor: &str) -> bool {
        let Some(pubs) = self.by_aor.get_mut(aor) else {
            return false;
        };
        let before = pubs.len();
        pubs.retain(|p| p.expires_at > now);
        let dropped = pubs.len() != before;
        if pubs.is_empty() {
            self.by_aor.remove(aor);
        }
        dropped
    }

    /// Drops the publications expired at `now`; returns the AORs that lost one (their
    /// composite state may have changed).
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut changed = Vec::new();
        while let Some(Reverse((at, _))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, aor))) = self.deadlines.pop() else {
                break;
            };
            if self.purge(now, &aor) && !changed.contains(&aor) {
                changed.push(aor);
            }
        }
        changed
    }

    /// The next expiry to run [`PublicationStore::expire`] at (may be stale: then nothing
    /// expires).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }

    /// Live and expired-but-not-yet-swept publications in all.
    pub fn len(&self) -> usize {
        self.by_aor.values().map(Vec::len).sum()
    }

    /// Whether no publication is stored.
    pub fn is_empty(&self) -> bool {
        self.by_aor.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_refresh_modify_remove_and_expire() {
        let t0 = Instant::now();
        let mut s = PublicationStore::new(2);
        let doc = |t: &str| Some(Bytes::from(t.to_string()));
        assert_eq!(
            s.publish(t0, "bob", None, None, 60),
            Err(PublishError::NoDocument)
        );
        let a = s.publish(t0, "bob", None, doc("a"), 60).unwrap();
        assert_eq!(s.current(t0, "bob").unwrap(), "a");
        // Refresh: a new tag, the old one is gone.
        let a2 = s.publish(t0, "bob", Some(&a.etag), None, 120).unwrap();
        assert_ne!(a2.etag, a.etag);
        assert_eq!(
            s.publish(t0, "bob", Some(&a.etag), None, 60),
            Err(PublishError::UnknownTag)
        );
        let b = s.publish(t0, "bob", None, doc("b"), 60).unwrap();
        assert_eq!(s.current(t0, "bob").unwrap(), "b", "most recent wins");
        assert_eq!(
            s.publish(t0, "bob", None, doc("c"), 60),
            Err(PublishError::TooMany)
        );
        // Modify the older one: it becomes the most recent.
        let a3 = s
            .publish(t0, "bob", Some(&a2.etag), doc("a'"), 120)
            .unwrap();
        assert_eq!(s.current(t0, "bob").unwrap(), "a'");
        s.publish(t0, "bob", Some(&a3.etag), None, 0).unwrap();
        assert_eq!(s.current(t0, "bob").unwrap(), "b");
        // b expires at 60 s.
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(s.expire(t1), vec!["bob".to_string()]);
        assert!(s.current(t1, "bob").is_none() && s.is_empty());
        assert_eq!(
            s.publish(t1, "bob", Some(&b.etag), None, 60),
            Err(PublishError::UnknownTag)
        );
        // Stale deadlines expire nothing.
        assert!(s.expire(t0 + Duration::from_secs(500)).is_empty());
    }
}
