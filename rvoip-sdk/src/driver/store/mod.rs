//! Where the server keeps its registrations beyond the process (issue 16): the driver side of
//! the location service.
//!
//! The sans-IO location ([`crate::server::location::Location`]) records every binding change;
//! the event loop drains them after each batch of input and hands them to a [`StoreWriter`],
//! whose own thread writes them to a [`BindingStore`] (one transaction per batch, so a burst of
//! REGISTERs costs one commit, not one per REGISTER). The event loop never waits for the disk.
//! At start the live bindings are loaded back ([`load_into`]) and expired ones deleted.
//!
//! Stores: [`redb_store::RedbStore`] (embedded, the binary's zero-config default, a file in the
//! data directory). Without a store (`store = "memory"`) nothing is recorded.

pub mod record;
pub mod redb_store;
pub mod redis_store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::server::location::{Binding, BindingChange, Location};

/// A store failure: what failed and why (the store's own error as text).
#[derive(Debug, thiserror::Error)]
#[error("{store} store: {what}: {reason}")]
pub struct StoreError {
    /// The store (`redb`, `redis`).
    pub store: &'static str,
    /// The operation (`open`, `load`, `write`).
    pub what: &'static str,
    /// The underlying error.
    pub reason: String,
}

/// A persistent home for bindings. Implementations run on the [`StoreWriter`]'s thread (or at
/// start, before the event loop), never on the event loop.
pub trait BindingStore: Send + 'static {
    /// The store's name for logs (`redb`, `redis`).
    fn name(&self) -> &'static str;
    /// Every stored binding live at `now` (Unix seconds), as `(aor, binding)`; expired or
    /// unreadable records are deleted (unreadable ones are logged). Errors: the store cannot be
    /// read.
    fn load(&mut self, now: u64) -> Result<Vec<(String, Binding)>, StoreError>;
    /// Applies `changes` in order, atomically where the store allows: `Added`/`Refreshed` write
    /// the binding, `Removed`/`Expired` delete it. Errors: nothing was written (the caller
    /// retries the same batch).
    fn apply(&mut self, changes: &[BindingChange]) -> Result<(), StoreError>;
    /// The digest nonce secret kept in the store, made (32 random bytes) and stored on first
    /// use, so that nonces stay valid across restarts. Errors: the store cannot be read or
    /// written.
    fn nonce_secret(&mut self) -> Result<[u8; 32], StoreError>;
    /// Checks that the store answers (run by the writer when idle, so that an outage is
    /// noticed before the next write). Errors: the store is unreachable.
    fn ping(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// How long the writer gathers changes after the first one of a batch before it commits
    /// them (default [`LINGER`], 100 ms; redb 1 s). A commit costs about the same for 1 change as for 100
    /// (redb: copy-on-write pages and an fsync; Redis: a round trip), so under load the writer
    /// commits once per linger instead of once per REGISTER, as Kamailio's usrloc write-back
    /// mode flushes on a timer. A REGISTER's 200 never waits for it; a `kill -9` can lose the
    /// changes of the last linger, which the phones' next refresh restores, and other nodes
    /// (Redis) see a change up to one linger late.
    fn linger(&self) -> Duration {
        LINGER
    }
}

/// A store opened by [`open`]: the store, and for a shared store the changes other nodes make.
pub struct Opened {
    /// The store.
    pub store: Box<dyn BindingStore>,
    /// Batches of other nodes' changes (Redis), to apply with
    /// [`crate::server::location::Location::apply_remote`].
    pub remote: Option<tokio::sync::mpsc::UnboundedReceiver<Vec<BindingChange>>>,
}

/// Opens the store `cfg.store` asks for (`None` or `memory`: no store). The redb file is
/// `registrations.redb` in `cfg.data_dir`; without a configured data directory it goes in the
/// default one ([`crate::driver::tls::default_data_dir`]) as `registrations-PORT.redb`, PORT
/// being the first bound port, so that several servers on one host keep their own.
/// With `redis`, the server at `cfg.redis_url` (default `redis://127.0.0.1:6379/`) is shared
/// with the other nodes and a subscriber thread follows their changes.
/// Errors: the store cannot be opened (see [`redb_store::RedbStore::open`],
/// [`redis_store::RedisStore::open`]).
pub fn open(
    cfg: &crate::server::config::ServerConfig,
    bound: &[(crate::sip::transport::Transport, std::net::SocketAddr)],
) -> Result<Option<Opened>, StoreError> {
    use crate::server::config::StoreKind;
    match cfg.store {
        None | Some(StoreKind::Memory) => Ok(None),
        Some(StoreKind::Redis) => {
            let url = cfg
                .redis_url
                .as_deref()
                .unwrap_or("redis://127.0.0.1:6379/");
            let store = redis_store::RedisStore::open(url, rand::random())?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            store.subscribe(tx)?;
            tracing::info!(url, "registrations are shared in redis");
            Ok(Some(Opened {
                store: Box::new(store),
                remote: Some(rx),
            }))
        }
        Some(StoreKind::Redb) => {
            let path = match &cfg.data_dir {
                Some(dir) => dir.join("registrations.redb"),
                None => {
                    let port = bound.first().map_or(0, |(_, a)| a.port());
                    crate::driver::tls::default_data_dir()
                        .join(format!("registrations-{port}.redb"))
                }
            };
            let store = redb_store::RedbStore::open(&path)?;
            tracing::info!(path = %path.display(), "registrations are kept in redb");
            Ok(Some(Opened {
                store: Box::new(store),
                remote: None,
            }))
        }
    }
}

/// Store state shared with health checks and status reports.
#[derive(Debug)]
pub struct StoreHealth {
    /// The store's name.
    pub name: &'static str,
    reachable: AtomicBool,
    written: AtomicU64,
    queued: AtomicU64,
    failures: AtomicU64,
}

impl StoreHealth {
    fn new(name: &'static str) -> StoreHealth {
        StoreHealth {
            name,
            reachable: AtomicBool::new(true),
            written: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Whether the last write (or the last attempt after a failure) succeeded.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Binding changes written since start.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Binding changes waiting to be written.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Failed write attempts since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Most changes written in one store transaction.
const MAX_BATCH: usize = 4096;

/// How long the writer gathers changes, by default, after the first one of a batch before it
/// commits them ([`BindingStore::linger`]).
pub const LINGER: Duration = Duration::from_millis(100);

/// How long the writer waits before trying a failed batch again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// The writer thread: takes batches of changes from the event loop and writes them in order.
/// Dropping it writes what is queued and stops the thread.
pub struct StoreWriter {
    tx: Option<mpsc::Sender<Vec<BindingChange>>>,
    health: Arc<StoreHealth>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StoreWriter {
    /// Starts the writer thread over `store`. Errors: the thread cannot be spawned.
    pub fn start(store: Box<dyn BindingStore>) -> Result<StoreWriter, StoreError> {
        let health = Arc::new(StoreHealth::new(store.name()));
        let (tx, rx) = mpsc::channel();
        let h = health.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rvoip-store-{}", store.name()))
            .spawn(move || write_loop(store, rx, h))
            .map_err(|e| StoreError {
                store: "writer",
                what: "start",
                reason: e.to_string(),
            })?;
        Ok(StoreWriter {
            tx: Some(tx),
            health,
            thread: Some(thread),
        })
    }

    /// Queues `changes` for writing (returns at once).
    pub fn send(&self, changes: Vec<BindingChange>) {
        if changes.is_empty() {
            return;
        }
        self.health
            .queued
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
        if let Some(tx) = &self.tx {
            if tx.send(changes).is_err() {
                tracing::error!("store writer stopped: binding changes are not persisted");
            }
        }
    }

    /// The store's health and counters.
    pub fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(
    mut store: Box<dyn BindingStore>,
    rx: mpsc::Receiver<Vec<BindingChange>>,
    health: Arc<StoreHealth>,
) {
    let linger = store.linger();
    let mut batch: Vec<BindingChange> = Vec::new();
    let mut unlogged = 0u64;
    let mut last_log = Instant::now();
    // The last batch was cut at MAX_BATCH: more is waiting, so the next one does not linger.
    let mut behind = false;
    loop {
        if batch.is_empty() {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(v) => batch = v,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let ok = store.ping().is_ok();
                    if health.reachable.swap(ok, Ordering::Relaxed) != ok {
                        if ok {
                            tracing::warn!(store = health.name, "store reachable again");
                        } else {
                            tracing::error!(store = health.name, "store unreachable");
                        }
                    }
                    // A quiet second after writes: say how far the store is (tests and
                    // operators wait for this line before a hard kill).
                    if unlogged > 0 {
                        tracing::info!(
                            store = health.name,
                            written = health.written(),
                            "store synced"
                        );
                        unlogged = 0;
                        last_log = Instant::now();
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        // Sleep through the linger instead of waiting on the channel: a sender wakes a
        // waiting receiver (a futex call and a context switch per event-loop turn), but not a
        // sleeping one.
        if !behind {
            std::thread::sleep(linger);
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(mut more) => batch.append(&mut more),
                Err(_) => break,
            }
        }
        behind = batch.len() >= MAX_BATCH;
        match store.apply(&batch) {
            Ok(()) => {
                let n = batch.len() as u64;
                health.written.fetch_add(n, Ordering::Relaxed);
                health.queued.fetch_sub(n, Ordering::Relaxed);
                if !health.reachable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(store = health.name, "store reachable again");
                }
                unlogged += n;
                batch.clear();
                if last_log.elapsed() >= Duration::from_secs(10) {
                    tracing::info!(
                        store = health.name,
                        written = health.written(),
                        "store synced"
                    );
                    unlogged = 0;
                    last_log = Instant::now();
                }
            }
            Err(e) => {
                health.failures.fetch_add(1, Ordering::Relaxed);
                if health.reachable.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "store write failed: retrying");
                }
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}

/// Loads the live bindings of `store` into `location` at `now` (Unix seconds) and returns how
/// many were restored. Errors: the store cannot be read.
pub fn load_into(
    store: &mut dyn BindingStore,
    location: &mut Location,
    now: u64,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for (aor, b) in store.load(now)? {
        n += usize::from(location.restore(&aor, b, now));
    }
    Ok(n)
}
