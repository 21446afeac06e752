//! What `/healthz` reports besides the event loop's liveness: whether the stores the server
//! depends on are reachable.
//!
//! A store's driver (the in-memory location today; redb or Redis later) keeps a
//! [`StoreHealth`] up to date (`set_reachable` / `set_unreachable` after each operation or
//! probe) and registers it once with [`Health::add_store`]. Reading it costs a lock of a few
//! nanoseconds; nothing here does I/O.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// The reachability of one store, shared between the task that talks to it and `/healthz`.
/// Cloneable (clones share the state).
#[derive(Debug, Clone)]
pub struct StoreHealth {
    name: Arc<str>,
    kind: Arc<str>,
    /// `None`: reachable; `Some(reason)`: not.
    down: Arc<Mutex<Option<String>>>,
}

impl StoreHealth {
    /// A reachable store named `name` (what it holds, e.g. `"location"`) of `kind` (e.g.
    /// `"memory"`, `"redb"`, `"redis"`).
    pub fn new(name: &str, kind: &str) -> StoreHealth {
        StoreHealth {
            name: name.into(),
            kind: kind.into(),
            down: Arc::new(Mutex::new(None)),
        }
    }

    /// The store answered: it is reachable.
    pub fn set_reachable(&self) {
        if let Ok(mut d) = self.down.lock() {
            *d = None;
        }
    }

    /// The store failed (connection refused, I/O error…): `/healthz` answers 503 with
    /// `reason` until [`StoreHealth::set_reachable`].
    pub fn set_unreachable(&self, reason: &str) {
        if let Ok(mut d) = self.down.lock() {
            *d = Some(reason.to_string());
        }
    }

    /// `Ok` when reachable, else why not.
    pub fn state(&self) -> Result<(), String> {
        match self.down.lock() {
            Ok(d) => d.clone().map_or(Ok(()), Err),
            Err(_) => Err("health state poisoned".to_string()),
        }
    }

    /// What the store holds.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which kind of store it is.
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

/// The stores a server depends on. Cloneable (clones share the list).
#[derive(Debug, Clone, Default)]
pub struct Health {
    stores: Arc<Mutex<Vec<StoreHealth>>>,
}

/// One store's line in `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreReport {
    /// What it holds (`location`).
    pub name: String,
    /// Its kind (`memory`, `redb`, `redis`).
    pub kind: String,
    /// Whether it is reachable.
    pub reachable: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Health {
    /// Adds `store`, replacing one with the same name (a store that changed kind).
    pub fn add_store(&self, store: StoreHealth) {
        if let Ok(mut list) = self.stores.lock() {
            list.retain(|s| s.name() != store.name());
            list.push(store);
        }
    }

    /// The store named `name`, if registered.
    pub fn store(&self, name: &str) -> Option<StoreHealth> {
        self.stores
            .lock()
            .ok()?
            .iter()
            .find(|s| s.name() == name)
            .cloned()
    }

    /// Every store's state, in the order they were added.
    pub fn report(&self) -> Vec<StoreReport> {
        let list = match self.stores.lock() {
            Ok(l) => l.clone(),
            Err(_) => return Vec::new(),
        };
        list.iter()
            .map(|s| {
                let error = s.state().err();
                StoreReport {
                    name: s.name().to_string(),
                    kind: s.kind().to_string(),
                    reachable: error.is_none(),
                    error,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_reports_down_until_it_is_reachable_again() {
        let health = Health::default();
        let loc = StoreHealth::new("location", "memory");
        health.add_store(loc.clone());
        assert!(health.report().iter().all(|s| s.reachable));
        loc.set_unreachable("connection refused");
        let r = health.report();
        assert_eq!(r.len(), 1);
        assert!(!r[0].reachable);
        assert_eq!(r[0].error.as_deref(), Some("connection refused"));
        loc.set_reachable();
        assert!(health.report()[0].reachable);
        // Same name: replaced, not doubled.
        health.add_store(StoreHealth::new("location", "redis"));
        assert_eq!(health.report().len(), 1);
        assert_eq!(health.store("location").unwrap().kind(), "redis");
    }
}
