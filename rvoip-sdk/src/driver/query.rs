//! Questions other tasks and threads ask the event task: is it alive, what are its counters,
//! which bindings and calls does it hold. The event task owns the [`ServerCore`]; it answers
//! between two steps of its loop, so no one locks the core.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::server::core::ServerCore;

use super::stats::{ServerStats, Sources, StatusReport, snapshot, status};

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
