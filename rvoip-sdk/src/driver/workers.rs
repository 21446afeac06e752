//! The server on several cores (config `workers`, `--workers N`), the way Kamailio runs worker
//! processes: N workers, each owning a whole [`ServerCore`] on its own thread.
//!
//! - **Steering.** A message belongs to the worker chosen by a hash of its Call-ID
//!   ([`crate::server::shard::worker_for`]): every transaction and dialog of a call, and every
//!   REGISTER of a registration, stays on one worker.
//! - **UDP.** Each worker has its own `SO_REUSEPORT` socket on every UDP listen address, so the
//!   kernel spreads receive work over them; a worker hands a datagram whose Call-ID another
//!   worker owns to that worker over a channel. Responses and forwarded requests go out of the
//!   owning worker's socket (the same local address).
//! - **Streams** (TCP, TLS, WS) are accepted where they are with one worker: a router task
//!   steers each framed message to its Call-ID's worker and tells every worker of each
//!   connection opened or closed, so that any worker can send on any connection.
//! - **Shared state by replication.** Each worker's location is a replica: after each input batch
//!   a worker sends the binding changes it made to the others (which apply them without
//!   recording, so nothing echoes) and to the store (each change once, from the worker that made
//!   it). The digest nonce secret is the same on every worker; the media relay thread is shared
//!   ([`super::shard_relay`]). Control changes ([`super::ControlHandle`]) reach every worker, and
//!   so do other nodes' binding changes (`store = "redis"`: the subscriber's batches).
//! - **Questions** (`/metrics`, `/status`, `/healthz`, `Server::stats()`) go to every worker and
//!   their answers are merged ([`super::query::fan_out`]): counters summed, bindings once.
//! - **Dispatcher probes** carry Call-IDs owned by the worker that sends them, so the answers
//!   come back to it ([`ServerCore::set_probe_worker`]).
//!
//! With one worker none of this runs: [`super::BoundServer::run`] is the single event loop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::shard_relay::{RelayEvents, ShardedRelay};
use super::worker_loop::{Worker, worker_loop, worker_thread};
use super::{BoundServer, DriverError, Inbound, query, record, relay, stats};
use crate::server::config::ServerConfig;
use crate::server::core::ServerCore;
use crate::server::location::BindingChange;
use crate::server::proxy::MediaHook;
use crate::server::proxy::anchor::RelayAnchor;
use crate::server::shard::{sum_stats, worker_for};
use crate::sip::transaction::Transport;

pub use super::worker_stats::{ServerStats, WorkerStats};

/// What [`BoundServer::bind`] prepares for workers 1..N (worker 0 is the bound server's own
/// core and sockets).
pub(crate) struct Workers {
    /// How many workers (at least 2).
    count: usize,
    /// The cores of workers 1..N.
    cores: Vec<ServerCore>,
    /// For workers 1..N: one socket on each UDP listen address (registered with the worker's
    /// own runtime when it starts).
    sockets: Vec<Vec<std::net::UdpSocket>>,
    /// The receive buffer asked for those sockets (`udp_receive_buffer_bytes`).
    receive_buffer: usize,
}

impl Workers {
    /// How many workers, worker 0 included.
    pub(crate) fn count(&self) -> usize {
        self.count
    }
}

/// Binds a UDP socket on `addr` with `SO_REUSEPORT` (each worker binds one on the same
/// address; the kernel spreads datagrams over them by source). Non-blocking.
pub(crate) fn bind_udp_reuseport(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Makes workers 1..`count` next to `core` (worker 0): their cores (the same configuration,
/// users, nonce secret and bindings), their UDP sockets on every address of `bound`, and the
/// relay anchors that share the relay thread. Turns on binding replication. `None` for one
/// worker. Errors: a UDP socket could not be bound.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare(
    count: usize,
    cfg: &ServerConfig,
    bound: &[(Transport, SocketAddr)],
    users: &[(String, String)],
    now: Instant,
    core: &mut ServerCore,
    relay: Option<&(relay::RelayDriver, IpAddr)>,
    recorder: Option<&record::Recorder>,
) -> Result<Option<Workers>, DriverError> {
    if count <= 1 {
        return Ok(None);
    }
    let events = RelayEvents::new(count);
    let hook = |worker: usize| -> Option<Box<dyn MediaHook>> {
        let (driver, ip) = relay?;
        let handle = ShardedRelay::new(driver.handle(), events.clone(), worker);
        let mut anchor =
            RelayAnchor::new(handle, cfg.relay, *ip).with_transcoding(cfg.relay_transcode);
        if let Some(r) = recorder {
            anchor = anchor.with_recorder(Box::new(r.handle()));
        }
        Some(Box::new(anchor))
    };
    if let Some(h) = hook(0) {
        core.set_media_hook(h);
    }
    core.record_binding_changes();
    core.set_probe_worker(0, count);
    let secret = core.nonce_secret();
    let mut cores = Vec::with_capacity(count - 1);
    let mut sockets = Vec::with_capacity(count - 1);
    for worker in 1..count {
        let mut c = ServerCore::new(cfg, core.local().clone(), users, now, core.unix_secs(now));
        c.set_nonce_secret(secret);
        c.set_probe_worker(worker, count);
        // The bindings loaded from the store (recording on, nothing recorded yet).
        c.registrar.location = core.registrar.location.clone();
        if let Some(h) = hook(worker) {
            c.set_media_hook(h);
        }
        cores.push(c);
        let mut socks = Vec::new();
        for (t, addr) in bound {
            if *t == Transport::Udp {
                let s = bind_udp_reuseport(*addr).map_err(|source| DriverError::Bind {
                    spec: format!("udp:{addr} (worker {worker})"),
                    source,
                })?;
                socks.push(s);
            }
        }
        sockets.push(socks);
    }
    tracing::info!(
        workers = count,
        "workers: sharded by Call-ID, bindings replicated"
    );
    Ok(Some(Workers {
        count,
        cores,
        sockets,
        receive_buffer: cfg.udp_receive_buffer_bytes,
    }))
}

/// The channels every worker reaches the others by.
pub(super) struct Peers {
    /// Messages (steered datagrams and frames, connection news, DNS answers) per worker.
    pub(super) inbox: Vec<mpsc::Sender<Inbound>>,
    /// Binding changes per worker (unbounded: a replica must not miss one).
    pub(super) changes: Vec<mpsc::UnboundedSender<Arc<[BindingChange]>>>,
}

/// Most messages waiting for one worker; past it, UDP datagrams handed over are dropped (the
/// sender retransmits) and stream frames wait.
const INBOX: usize = 4096;

/// Runs `server` (worker 0) and `workers` until `shutdown` completes.
pub(crate) async fn run(
    server: BoundServer,
    workers: Workers,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let BoundServer {
        core,
        udp,
        tcp,
        tls,
        ws,
        tls_config,
        limits,
        conns,
        relay,
        recorder,
        tls_counters,
        ws_counters,
        dns_server,
        control: (control_tx, mut control_rx),
        store,
        remote,
        http,
        health,
        queries: (query_tx, mut query_rx),
        stats_board: board,
        ..
    } = server;
    let mut remote = remote;
    drop(control_tx);
    let store = store.map(Arc::new);
    let n = workers.count;
    let (router_tx, mut router_rx) = mpsc::channel::<Inbound>(INBOX);
    let mut tasks = tokio::task::JoinSet::new();
    // The operator's questions reach every worker ([`query::fan_out`]); the listener asks
    // this task, as with one worker.
    if let Some(l) = http {
        let queries = query::QueryHandle { tx: query_tx };
        let cx = super::http::HttpContext {
            queries,
            health: health.clone(),
        };
        tasks.spawn(super::http::serve(l, cx));
    } else {
        drop(query_tx);
    }
    let sources = stats::Sources {
        started: Instant::now(),
        conns: conns.counters.clone(),
        relay: relay.as_ref().map(|r| r.handle()),
        tls: tls_counters.clone(),
        ws: ws_counters.clone(),
    };
    for l in tcp {
        tasks.spawn(super::tcp::accept_loop(l, router_tx.clone(), conns.clone()));
    }
    if let Some((config, _)) = &tls_config {
        for l in tls {
            tasks.spawn(super::tls::accept_loop(
                l,
                config.clone(),
                router_tx.clone(),
                conns.clone(),
                tls_counters.clone(),
            ));
        }
    }
    for (t, l) in ws {
        let tls = match t {
            Transport::Wss => tls_config.as_ref().map(|(c, _)| c.clone()),
            _ => None,
        };
        tasks.spawn(super::ws::accept_loop(
            l,
            t,
            tls,
            router_tx.clone(),
            conns.clone(),
            ws_counters.clone(),
        ));
    }
    let mut peers = Peers {
        inbox: Vec::with_capacity(n),
        changes: Vec::with_capacity(n),
    };
    let (mut receivers, mut control_txs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut query_txs = Vec::with_capacity(n);
    for _ in 0..n {
        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX);
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (q_tx, q_rx) = mpsc::channel(query::QUERY_QUEUE);
        peers.inbox.push(inbox_tx);
        peers.changes.push(changes_tx);
        control_txs.push(control_tx);
        query_txs.push(q_tx);
        receivers.push((inbox_rx, changes_rx, control_rx, q_rx));
    }
    let peers = Arc::new(peers);
    let (stop_tx, stop_rx) = watch::channel(false);
    let receive_buffer = workers.receive_buffer;
    let cores = std::iter::once((core, udp, None)).chain(
        workers
            .cores
            .into_iter()
            .zip(workers.sockets)
            .map(|(c, s)| (c, Vec::new(), Some(s))),
    );
    let mut first = None;
    let mut threads = Vec::new();
    for (index, ((inbox, changes, control, queries), (core, udp, socks))) in
        receivers.into_iter().zip(cores).enumerate()
    {
        let w = Worker {
            index,
            core,
            udp,
            inbox,
            changes,
            control,
            peers: peers.clone(),
            router: router_tx.clone(),
            conns: conns.clone(),
            max_message_bytes: limits.max_message_bytes,
            store: store.clone(),
            dns_server,
            stop: stop_rx.clone(),
            board: board.clone(),
            queries,
            sources: sources.clone(),
            location_health: (index == 0).then(|| health.store("location")).flatten(),
        };
        match socks {
            // Worker 0 runs here, on the bound server's runtime and sockets.
            None => first = Some(tokio::spawn(worker_loop(w))),
            Some(socks) => {
                let spawned = std::thread::Builder::new()
                    .name(format!("rvoip-worker-{index}"))
                    .spawn(move || worker_thread(w, socks, receive_buffer));
                match spawned {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        tracing::error!(worker = index, error = %e, "cannot start a worker thread")
                    }
                }
            }
        }
    }
    drop(router_tx);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(c) = control_rx.recv() => {
                for t in &control_txs {
                    let _ = t.send(c.clone());
                }
            }
            m = router_rx.recv() => {
                let Some(m) = m else { break };
                route(&peers, m).await;
            }
            Some(q) = query_rx.recv() => query::fan_out(q, &query_txs),
            // Other nodes' binding changes (`store = "redis"`): every replica applies them.
            Some(batch) = async {
                match remote.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let shared: Arc<[BindingChange]> = batch.into();
                for tx in &peers.changes {
                    let _ = tx.send(shared.clone());
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    tasks.abort_all();
    let mut summaries = Vec::new();
    if let Some(Ok(s)) = match first {
        Some(f) => Some(f.await),
        None => None,
    } {
        summaries.push(s);
    }
    let joined = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .filter_map(|t| t.join().ok().flatten())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    summaries.extend(joined);
    let messages: Vec<u64> = summaries.iter().map(|s| s.messages).collect();
    let handed_over: u64 = summaries.iter().map(|s| s.handed_over).sum();
    tracing::info!(
        workers = n,
        messages_per_worker = ?messages,
        handed_over,
        bindings = board.bindings(),
        stats = ?sum_stats(summaries.iter().map(|s| &s.stats)),
        relay = ?relay.as_ref().map(|r| r.handle().stats()),
        "server state at shutdown"
    );
    drop(relay);
    // Every worker's handle is gone: the last one writes what is queued.
    drop(store);
    drop(recorder);
}

/// Hands one message from the connection tasks to its worker: a frame to the owner of its
/// Call-ID, connection news to every worker (each keeps its own connection table).
async fn route(peers: &Peers, m: Inbound) {
    let all = |m: &Inbound| -> Option<Inbound> {
        Some(match m {
            Inbound::TcpOpened { peer, tx } => Inbound::TcpOpened {
                peer: *peer,
                tx: tx.clone(),
            },
            Inbound::TcpClosed { peer } => Inbound::TcpClosed { peer: *peer },
            Inbound::ConnectFailed {
                peer,
                transport,
                reason,
            } => Inbound::ConnectFailed {
                peer: *peer,
                transport: *transport,
                reason: reason.clone(),
            },
            Inbound::Msg { .. } | Inbound::Resolved { .. } => return None,
        })
    };
    let owner = match &m {
        Inbound::Msg { data, .. } => worker_for(data, peers.inbox.len()),
        Inbound::Resolved { .. } => 0,
        other => {
            for (i, tx) in peers.inbox.iter().enumerate().skip(1) {
                if let Some(copy) = all(other) {
                    if tx.send(copy).await.is_err() {
                        tracing::debug!(worker = i, "worker stopped");
                    }
                }
            }
            0
        }
    };
    if let Some(tx) = peers.inbox.get(owner) {
        let _ = tx.send(m).await;
    }
}
