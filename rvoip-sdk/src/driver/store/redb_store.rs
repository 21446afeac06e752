//! The embedded store: one redb file (`registrations.redb`) in the data directory, one table
//! `bindings` of [`super::record`] keys and records. redb commits are durable when `commit`
//! returns (fsync), so a binding whose change was written survives `kill -9` and power loss.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{BindingStore, StoreError, record};
use crate::server::location::{Binding, BindingChange, ChangeKind};

const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");
/// Server-wide values: `nonce_secret`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Bindings in a redb database file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

fn err(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        store: "redb",
        what,
        reason: e.to_string(),
    }
}

impl RedbStore {
    /// Opens (creating if missing) the database at `path`; its directory is created too.
    /// Errors: the directory or file cannot be created, the file is not a redb database, or
    /// another process has it open (one data directory per server).
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| err("open", format!("{}: {e}", dir.display())))?;
        }
        let db =
            Database::create(path).map_err(|e| err("open", format!("{}: {e}", path.display())))?;
        let w = db.begin_write().map_err(|e| err("open", e))?;
        w.open_table(BINDINGS).map_err(|e| err("open", e))?;
        w.open_table(META).map_err(|e| err("open", e))?;
        w.commit().map_err(|e| err("open", e))?;
        Ok(RedbStore {
            db,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BindingStore for RedbStore {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn load(&mut self, now: u64) -> Result<Vec<(String, Binding)>, StoreError> {
        let mut live = Vec::new();
        let mut dead: Vec<String> = Vec::new();
        {
            let r = self.db.begin_read().map_err(|e| err("load", e))?;
            let t = r.open_table(BINDINGS).map_err(|e| err("load", e))?;
            for entry in t.iter().map_err(|e| err("load", e))? {
                let (k, v) = entry.map_err(|e| err("load", e))?;
                let key = k.value().to_string();
                match (record::aor_of_key(&key), record::decode(v.value())) {
                    (Some(aor), Ok(b)) if b.is_live(now) => live.push((aor.to_string(), b)),
                    (Some(_), Ok(_)) => dead.push(key),
                    (_, res) => {
                        tracing::warn!(key = %key.escape_debug(), error = ?res.err(), "unreadable binding record dropped");
                        dead.push(key);
                    }
                }
            }
        }
        if !dead.is_empty() {
            let w = self.db.begin_write().map_err(|e| err("load", e))?;
            {
                let mut t = w.open_table(BINDINGS).map_err(|e| err("load", e))?;
                for k in &dead {
                    t.remove(k.as_str()).map_err(|e| err("load", e))?;
                }
            }
            w.commit().map_err(|e| err("load", e))?;
        }
        Ok(live)
    }

    /// 1 s: every redb commit is an fsync and copies each B-tree page it touches, which costs a
    /// REGISTER's worth of CPU or more (measured by `benches/persist.sh`: with 100 ms, redb
    /// added 22 % to the CPU of a REGISTER; with 1 s, 12 %); at 1000 REGISTER/s this is one
    /// commit a second, and a page holding several refreshed bindings is copied once.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1000)
    }

    fn apply(&mut self, changes: &[BindingChange]) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(|e| err("write", e))?;
        {
            let mut t = w.open_table(BINDINGS).map_err(|e| err("write", e))?;
            for c in changes {
                let key = record::key(&c.aor, &c.binding.contact);
                match c.kind {
                    ChangeKind::Added | ChangeKind::Refreshed => {
                        let v = record::encode(&c.binding);
                        t.insert(key.as_str(), v.as_slice())
                            .map_err(|e| err("write", e))?;
                    }
                    ChangeKind::Removed | ChangeKind::Expired => {
                        t.remove(key.as_str()).map_err(|e| err("write", e))?;
                    }
                }
            }
        }
        w.commit().map_err(|e| err("write", e))
    }

    fn nonce_secret(&mut self) -> Result<[u8; 32], StoreError> {
        let w = self.db.begin_write().map_err(|e| err("nonce secret", e))?;
        let secret = {
            let mut t = w.open_table(META).map_err(|e| err("nonce secret", e))?;
            let stored: Option<[u8; 32]> = t
                .get("nonce_secret")
                .map_err(|e| err("nonce secret", e))?
                .and_then(|v| v.value().try_into().ok());
            match stored {
                Some(s) => s,
                None => {
                    let s: [u8; 32] = rand::random();
                    t.insert("nonce_secret", &s[..])
                        .map_err(|e| err("nonce secret", e))?;
                    s
                }
            }
        };
        w.commit().map_err(|e| err("nonce secret", e))?;
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::location::{Location, Transport};
    use crate::sip::msg::NameAddr;

    const T0: u64 = 1_700_000_000;

    fn binding(host: &str, expires_at: u64) -> Binding {
        let v = format!("<sip:alice@{host}:5060>");
        Binding {
            contact: NameAddr::parse(&v.clone().into()).unwrap().uri,
            contact_value: v.into(),
            q: 1000,
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
    fn changes_survive_reopening_and_expired_ones_are_dropped() {
        let dir = std::env::temp_dir().join(format!("rvoip-redb-{}", rand::random::<u64>()));
        let path = dir.join("registrations.redb");
        let mut loc = Location::new();
        loc.record_changes(true);
        {
            let mut s = RedbStore::open(&path).unwrap();
            loc.set_bindings(
                "alice",
                vec![binding("192.0.2.1", T0 + 60), binding("192.0.2.2", T0 + 5)],
            );
            loc.set_bindings("bob", vec![binding("192.0.2.3", T0 + 60)]);
            loc.set_bindings("carol", vec![binding("192.0.2.4", T0 + 60)]);
            s.apply(&loc.take_changes()).unwrap();
            loc.set_bindings("carol", vec![]);
            s.apply(&loc.take_changes()).unwrap();
            assert!(
                RedbStore::open(&path).is_err(),
                "one server per database file"
            );
        }
        let mut s = RedbStore::open(&path).unwrap();
        let mut fresh = Location::new();
        let n = super::super::load_into(&mut s, &mut fresh, T0 + 10).unwrap();
        assert_eq!(
            n, 2,
            "alice@192.0.2.1 and bob; alice@192.0.2.2 expired, carol removed"
        );
        assert_eq!(fresh.lookup("alice", T0 + 10).len(), 1);
        assert_eq!(
            *fresh.lookup("bob", T0 + 10)[0],
            binding("192.0.2.3", T0 + 60)
        );
        assert!(fresh.lookup("carol", T0 + 10).is_empty());
        // The expired record was deleted at load.
        assert_eq!(s.load(T0).unwrap().len(), 2);
        let secret = s.nonce_secret().unwrap();
        drop(s);
        let mut s = RedbStore::open(&path).unwrap();
        assert_eq!(
            s.nonce_secret().unwrap(),
            secret,
            "the nonce secret is kept"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
