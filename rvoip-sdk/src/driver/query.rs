//! Questions other tasks and threads ask the event task: is it alive, what are its counters,
//! which bindings and calls does it hold. The event task owns the [`ServerCore`]; it answers
//! between two steps of its loop, so no one locks the core.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::server::core::ServerCore;

use super::stats::{
    ServerStats, Sources, StatusReport, merge_worker_stats, merge_worker_status, snapshot, status,
};

/// Most questions waiting for the event task.
pub(crate) const QUERY_QUEUE: usize = 64;

/// Where an answer goes (a oneshot channel of either kind).
type Reply<T> = Box<dyn FnOnce(T) + Send>;

/// A question for the event task.
pub(crate) enum Query {
    /// Liveness: answered with nothing.
    Ping(Reply<()>),
    /// Every counter and gauge.
    Stats(Reply<ServerStats>),
    /// At most `limit` bindings and calls.
    Status {
        limit: usize,
        reply: Reply<StatusReport>,
    },
}

/// Answers `q` from the core at `now`.
pub(crate) fn answer(core: &ServerCore, src: &Sources, now: Instant, q: Query) {
    match q {
        Query::Ping(reply) => reply(()),
        Query::Stats(reply) => reply(snapshot(core, src, now)),
        Query::Status { limit, reply } => reply(status(core, now, limit)),
    }
}

/// Splits one reply into `n` (one per worker): each part's answer is kept at its index, and
/// `done` gets them all, in order, when the last one arrives. A part dropped unanswered (its
/// worker stopped, or its queue was full) means `done` is dropped unanswered too, once the
/// other parts are gone: the asker sees [`QueryError::Stopped`] or its own timeout.
fn gather<T: Send + 'static>(n: usize, done: Reply<Vec<T>>) -> Vec<Reply<T>> {
    struct Gather<T> {
        parts: Vec<Option<T>>,
        left: usize,
        done: Option<Reply<Vec<T>>>,
    }
    let state = Arc::new(Mutex::new(Gather {
        parts: (0..n).map(|_| None).collect(),
        left: n,
        done: Some(done),
    }));
    (0..n)
        .map(|i| {
            let state = state.clone();
            Box::new(move |v: T| {
                let mut g = state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(slot) = g.parts.get_mut(i) {
                    *slot = Some(v);
                    g.left = g.left.saturating_sub(1);
                }
                if g.left == 0 {
                    let parts = g.parts.drain(..).flatten().collect();
                    if let Some(done) = g.done.take() {
                        drop(g);
                        done(parts);
                    }
                }
            }) as Reply<T>
        })
        .collect()
}

/// Asks every worker's event loop `q` (`workers`: their question queues, worker 0 first) and
/// answers it with their answers merged: a ping when every loop answered, the counters summed
/// ([`merge_worker_stats`]), the status merged ([`merge_worker_status`]). One stuck worker
/// leaves the question unanswered, so `/healthz` times out. Never blocks: a worker whose queue
/// is full gets no question (the asker then sees an error).
pub(crate) fn fan_out(q: Query, workers: &[mpsc::Sender<Query>]) {
    let n = workers.len();
    let questions: Vec<Query> = match q {
        Query::Ping(reply) => gather(n, Box::new(move |_: Vec<()>| reply(())))
            .into_iter()
            .map(Query::Ping)
            .collect(),
        Query::Stats(reply) => gather(
            n,
            Box::new(move |parts: Vec<ServerStats>| reply(merge_worker_stats(&parts))),
        )
        .into_iter()
        .map(Query::Stats)
        .collect(),
        Query::Status { limit, reply } => gather(
            n,
            Box::new(move |parts: Vec<StatusReport>| reply(merge_worker_status(parts, limit))),
        )
        .into_iter()
        .map(|reply| Query::Status { limit, reply })
        .collect(),
    };
    for (i, (tx, q)) in workers.iter().zip(questions).enumerate() {
        if tx.try_send(q).is_err() {
            tracing::debug!(worker = i, "worker's question queue full or closed");
        }
    }
}

/// Why a question got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The server is stopped (its event loop ended).
    #[error("server stopped")]
    Stopped,
    /// The event loop did not answer in time (stuck or overloaded), or too many questions are
    /// waiting.
    #[error("event loop did not answer in time")]
    Timeout,
}

/// Asks a running server's event task for its counters and status, from any task or thread.
/// Cloneable; a handle to a stopped server answers [`QueryError::Stopped`].
#[derive(Debug, Clone)]
pub struct QueryHandle {
    pub(crate) tx: mpsc::Sender<Query>,
}

impl QueryHandle {
    async fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Query,
        timeout: Duration,
    ) -> Result<T, QueryError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let q = make(Box::new(move |v| {
            let _ = tx.send(v);
        }));
        self.tx.try_send(q).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueryError::Timeout,
            mpsc::error::TrySendError::Closed(_) => QueryError::Stopped,
        })?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(QueryError::Stopped),
            Err(_) => Err(QueryError::Timeout),
        }
    }

    fn ask_blocking<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Query,
        timeout: Duration,
    ) -> Result<T, QueryError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let q = make(Box::new(move |v| {
            let _ = tx.try_send(v);
        }));
        self.tx.try_send(q).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueryError::Timeout,
            mpsc::error::TrySendError::Closed(_) => QueryError::Stopped,
        })?;
        rx.recv_timeout(timeout).map_err(|e| match e {
            std::sync::mpsc::RecvTimeoutError::Timeout => QueryError::Timeout,
            std::sync::mpsc::RecvTimeoutError::Disconnected => QueryError::Stopped,
        })
    }

    /// Waits until the event loop answers (liveness), at most `timeout`. Returns how long the
    /// answer took.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, QueryError> {
        let start = Instant::now();
        self.ask(Query::Ping, timeout).await?;
        Ok(start.elapsed())
    }

    /// The server's counters and gauges, waiting at most `timeout` for the event loop.
    pub async fn stats(&self, timeout: Duration) -> Result<ServerStats, QueryError> {
        self.ask(Query::Stats, timeout).await
    }

    /// [`QueryHandle::stats`] for a thread outside the server's runtime: blocks the calling
    /// thread up to `timeout` (it must not be the event loop's own thread).
    pub fn stats_blocking(&self, timeout: Duration) -> Result<ServerStats, QueryError> {
        self.ask_blocking(Query::Stats, timeout)
    }

    /// At most `limit` bindings and calls, waiting at most `timeout` for the event loop.
    pub async fn status(
        &self,
        limit: usize,
        timeout: Duration,
    ) -> Result<StatusReport, QueryError> {
        self.ask(|reply| Query::Status { limit, reply }, timeout)
            .await
    }
}

impl super::BoundServer {
    /// The HTTP listener's address (`http_listen`, with the real port when 0 was asked for).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The stores `/healthz` reports on (the location's, `"memory"`, from the start): a store
    /// driver adds its [`super::health::StoreHealth`] here and keeps it up to date.
    pub fn health(&self) -> super::health::Health {
        self.health.clone()
    }

    /// A handle to ask the running event loop for its counters ([`ServerStats`]),
    /// bindings and calls, from any task or thread.
    pub fn queries(&self) -> QueryHandle {
        QueryHandle {
            tx: self.queries.0.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanned_out_question_is_answered_once_every_worker_answered() {
        let (tx0, mut rx0) = mpsc::channel(4);
        let (tx1, mut rx1) = mpsc::channel(4);
        let (answer_tx, answer_rx) = std::sync::mpsc::channel();
        let q = Query::Stats(Box::new(move |s: ServerStats| {
            let _ = answer_tx.send(s);
        }));
        fan_out(q, &[tx0.clone(), tx1.clone()]);
        let stats = |calls| ServerStats {
            calls,
            bindings: 4,
            ..ServerStats::default()
        };
        let Ok(Query::Stats(r1)) = rx1.try_recv() else {
            panic!("worker 1 got no question")
        };
        r1(stats(2));
        assert!(answer_rx.try_recv().is_err(), "answered before worker 0");
        let Ok(Query::Stats(r0)) = rx0.try_recv() else {
            panic!("worker 0 got no question")
        };
        r0(stats(3));
        let merged = answer_rx.try_recv().unwrap();
        assert_eq!((merged.calls, merged.bindings), (5, 4));

        // A worker that never answers (its question dropped): no answer at all, and the
        // asker's channel closes once the other part is gone.
        let (answer_tx, answer_rx) = std::sync::mpsc::channel();
        fan_out(
            Query::Ping(Box::new(move |()| {
                let _ = answer_tx.send(());
            })),
            &[tx0, tx1],
        );
        let Ok(Query::Ping(r0)) = rx0.try_recv() else {
            panic!("worker 0 got no ping")
        };
        r0(());
        drop(rx1.try_recv());
        assert_eq!(
            answer_rx.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected)
        );
    }
}
