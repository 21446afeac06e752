//! The counters of every worker of a running server ([`ServerStats`]): each worker publishes
//! its own after each input batch, readers (status line, metrics, `api::Server`) sum them.

use std::sync::{Arc, Mutex};

use crate::server::core::{ServerCore, Stats};
use crate::server::guard::GuardStats;
use crate::server::shard::{sum_guard_stats, sum_stats};

/// One worker's counters, as last published by its event loop.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerStats {
    /// The core's counters.
    pub stats: Stats,
    /// The core's flood and brute-force defence counters.
    pub guard: GuardStats,
    /// Bindings in the worker's location replica (every worker holds all of them).
    pub bindings: usize,
    /// SIP messages this worker's core handled (counted with several workers only).
    pub messages: u64,
}

/// The counters of every worker of a running server, for status lines, metrics and
/// `api::Server` snapshots. Each worker publishes its own after each input batch; readers sum.
#[derive(Debug)]
pub struct ServerStats {
    slots: Box<[Mutex<WorkerStats>]>,
}

impl ServerStats {
    /// A board for `workers` workers (at least one), all counters zero.
    pub(crate) fn new(workers: usize) -> Arc<ServerStats> {
        Arc::new(ServerStats {
            slots: (0..workers.max(1))
                .map(|_| Mutex::new(WorkerStats::default()))
                .collect(),
        })
    }

    /// Publishes `core`'s counters as worker `worker`'s (with `messages` handled so far).
    pub(crate) fn publish(&self, worker: usize, core: &ServerCore, messages: u64) {
        if let Some(slot) = self.slots.get(worker) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = WorkerStats {
                stats: core.stats,
                guard: core.guard.stats,
                bindings: core.binding_count(),
                messages,
            };
        }
    }

    /// Each worker's last published counters, worker 0 first.
    pub fn per_worker(&self) -> Vec<WorkerStats> {
        self.slots
            .iter()
            .map(|s| *s.lock().unwrap_or_else(|p| p.into_inner()))
            .collect()
    }

    /// The whole server's counters: the sum over workers.
    pub fn snapshot(&self) -> Stats {
        sum_stats(self.per_worker().iter().map(|w| &w.stats))
    }

    /// The whole server's guard counters: the sum over workers.
    pub fn guard(&self) -> GuardStats {
        sum_guard_stats(self.per_worker().iter().map(|w| &w.guard))
    }

    /// Bindings held (worker 0's replica; every replica converges to the same set).
    pub fn bindings(&self) -> usize {
        self.per_worker().first().map_or(0, |w| w.bindings)
    }
}
