//! The tokio driver for the server core (RFC 3261 §18 transports).
//!
//! One event task owns the sans-IO [`ServerCore`]: socket tasks hand it received messages over a
//! channel, it runs the core, and sends what the core transmits. UDP datagrams are one message
//! each; TCP streams are framed by Content-Length ([`crate::sip::msg::frame`]) and connections
//! are reused both ways (a response goes back on the connection its request came on; a request
//! to a TCP binding uses the connection the REGISTER came on). TLS ([`tls`]) and WebSocket
//! ([`ws`], RFC 7118) are more connection kinds feeding the same channel.

pub mod conn;
pub mod health;
mod http;
mod lag;
pub mod media;
pub mod metrics;
pub mod ng;
pub mod query;
pub mod record;
pub mod relay;
mod setup;
mod shard_relay;
pub mod stats;
pub mod store;
pub(crate) mod tcp;
pub mod tls;
pub(crate) mod transport;
pub(crate) mod udp;
mod worker_loop;
mod worker_stats;
pub mod workers;
pub mod ws;

use lag::{LoopLag, Step};
pub use setup::disable_transparent_huge_pages;
use setup::{
    Dns, listen_tcp, release_free_memory, set_udp_receive_buffer, start_recorder, start_relay,
    tls_identity,
};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use udp::SipUdp;

use crate::server::config::{ConfigError, ServerConfig};
use crate::server::core::ServerCore;
use crate::server::local::{LocalIdentity, primary_ipv4};
use crate::server::proxy::anchor::RelayAnchor;
use crate::sip::msg::Limits;
use crate::sip::transaction::Transport;
use transport::Transports;

/// Errors from starting the server.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A socket could not be bound (address in use, permission).
    #[error("cannot listen on {spec}: {source}")]
    Bind {
        /// The listen spec, e.g. `udp:0.0.0.0:5060`.
        spec: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The bindings' store could not be opened or read.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// No listen address was configured.
    #[error("no listen address configured")]
    NoListen,
    /// The media relay's thread or poll could not start.
    #[error("cannot start the media relay: {0}")]
    Relay(std::io::Error),
    /// The TLS certificate or key could not be loaded or made.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The recording directory could not be created (`recording_dir`).
    #[error("cannot start call recording in {dir}: {source}")]
    Recording {
        /// The directory.
        dir: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What socket tasks tell the event task.
pub(crate) enum Inbound {
    /// One SIP message (UDP datagram or TCP frame).
    Msg {
        data: Bytes,
        source: SocketAddr,
        transport: Transport,
    },
    /// A TCP connection is up; messages for `peer` go to `tx`.
    TcpOpened { peer: SocketAddr, tx: conn::ConnTx },
    /// A TCP connection is gone.
    TcpClosed { peer: SocketAddr },
    /// A connection to `peer` could not be opened: the requests waiting on it fail at once
    /// (RFC 3261 §8.1.3.1).
    ConnectFailed {
        peer: SocketAddr,
        transport: Transport,
        /// Why, for the user (e.g. the certificate error).
        reason: String,
    },
    /// The answer to the core's DNS query `id` (RFC 3263).
    Resolved {
        id: u64,
        result: Result<Vec<crate::sip::resolve::Destination>, crate::sip::resolve::ResolveError>,
    },
}

/// A change to the running core, from the app ([`ControlHandle`]). Cloned to every worker.
#[derive(Debug, Clone)]
enum Control {
    /// Sets or clears a user's call forwarding.
    SetForwarding(String, Option<crate::server::forward::ForwardRule>),
    /// Applies a reloaded configuration, its files already read and checked.
    Reload(Box<crate::server::domains::LoadedConfig>),
}

/// Most control changes waiting for the event task.
const CONTROL_QUEUE: usize = 256;

/// Changes the running server's state from another thread (an app's
/// [`crate::api::Server`]). Cloneable; a handle to a stopped server fails.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Control>,
}

/// Applies one change from the app to the running core.
fn apply_control(core: &mut ServerCore, c: Control) {
    match c {
        Control::SetForwarding(user, rule) => core.set_forwarding(&user, rule),
        Control::Reload(new) => match core.reload(&new) {
            Ok(s) => {
                // Routes and destination sets; destinations that stay keep their state.
                core.reconfigure_dispatch(&new.cfg.dispatch, std::time::Instant::now());
                tracing::info!(
                    users = s.users,
                    domains = s.domains,
                    forwarding_rules = s.forwarding_rules,
                    "configuration reloaded"
                )
            }
            Err(e) => tracing::warn!(error = %e, "reload refused: the running settings stay"),
        },
    }
}

impl ControlHandle {
    /// Sets (`Some`) or clears (`None`) `user`'s call forwarding in the running core; applied
    /// before the next message is handled. Errors: the server stopped, or 256 changes are
    /// already waiting (the message says which).
    pub fn set_forwarding(
        &self,
        user: &str,
        rule: Option<crate::server::forward::ForwardRule>,
    ) -> Result<(), String> {
        self.tx
            .try_send(Control::SetForwarding(user.to_string(), rule))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => "too many pending changes".to_string(),
                mpsc::error::TrySendError::Closed(_) => "server stopped".to_string(),
            })
    }

    /// Applies `new` (read and checked by
    /// [`crate::server::domains::LoadedConfig::load`]) to the running core before the next
    /// message: users, domains, forwarding, limits ([`ServerCore::reload`]); calls and
    /// bindings are kept. The event loop logs "configuration reloaded". Errors: the server
    /// stopped, or 256 changes are already waiting.
    pub fn reload(&self, new: crate::server::domains::LoadedConfig) -> Result<(), String> {
        self.tx
            .try_send(Control::Reload(Box::new(new)))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => "too many pending changes".to_string(),
                mpsc::error::TrySendError::Closed(_) => "server stopped".to_string(),
            })
    }
}

/// A server whose sockets are bound but whose event loop has not started yet.
pub struct BoundServer {
    core: ServerCore,
    udp: Vec<Arc<SipUdp>>,
    tcp: Vec<TcpListener>,
    tls: Vec<TcpListener>,
    /// WebSocket listeners (RFC 7118): `ws:` and `wss:` (TLS with the `tls:` certificate).
    ws: Vec<(Transport, TcpListener)>,
    /// The TLS and WSS listeners' configuration and the SHA-256 fingerprint of their certificate.
    tls_config: Option<(Arc<rustls::ServerConfig>, String)>,
    bound: Vec<(Transport, SocketAddr)>,
    limits: Limits,
    /// Stream connection limits, timeouts and counters.
    conns: Arc<conn::Conns>,
    users: usize,
    relay: Option<relay::RelayDriver>,
    /// The call recorder's thread (`record_calls`, `record_users`).
    recorder: Option<record::Recorder>,
    tls_counters: Arc<tls::TlsCounters>,
    ws_counters: Arc<ws::WsCounters>,
    /// The DNS server for RFC 3263 lookups (`None`: the system's configuration).
    dns_server: Option<SocketAddr>,
    /// Changes from the app ([`BoundServer::control`]).
    control: (mpsc::Sender<Control>, mpsc::Receiver<Control>),
    /// The bindings' store writer (`store = "redb"` or `"redis"`).
    store: Option<store::StoreWriter>,
    /// Other nodes' binding changes (`store = "redis"`).
    remote: Option<RemoteChanges>,
    /// The operator's HTTP listener (`http_listen`): /metrics, /healthz, /status.
    http: Option<TcpListener>,
    /// The stores `/healthz` reports on.
    health: health::Health,
    /// Questions for the event task ([`BoundServer::queries`]).
    queries: (mpsc::Sender<query::Query>, mpsc::Receiver<query::Query>),
    /// Workers 1..N when `workers` > 1 ([`workers`]); `None`: this one event loop.
    workers: Option<workers::Workers>,
    /// Every worker's counters ([`BoundServer::stats`]).
    stats_board: Arc<workers::ServerStats>,
}

/// Other nodes' binding changes, as the store's subscriber hands them over.
type RemoteChanges =
    tokio::sync::mpsc::UnboundedReceiver<Vec<crate::server::location::BindingChange>>;

/// Opens the store `cfg` asks for, loads its live bindings and nonce secret into `core`, and
/// starts its writer; `None` without a store. Errors: the store cannot be opened or read.
fn open_store(
    cfg: &ServerConfig,
    bound: &[(Transport, SocketAddr)],
    core: &mut ServerCore,
    now: std::time::Instant,
) -> Result<(Option<store::StoreWriter>, Option<RemoteChanges>), DriverError> {
    let Some(store::Opened {
        store: mut s,
        remote,
    }) = store::open(cfg, bound)?
    else {
        return Ok((None, None));
    };
    let unix = core.unix_secs(now);
    let loaded = store::load_into(s.as_mut(), &mut core.registrar.location, unix)?;
    core.set_nonce_secret(s.nonce_secret()?);
    core.registrar.location.record_changes(true);
    tracing::info!(store = s.name(), bindings = loaded, "bindings loaded");
    Ok((Some(store::StoreWriter::start(s)?), remote))
}

impl BoundServer {
    /// Binds every listen address of `cfg` and builds the core. Must run inside a tokio runtime.
    /// Errors: [`DriverError::Bind`], [`DriverError::Config`] (users file), [`DriverError::NoListen`].
    pub async fn bind(cfg: &ServerConfig) -> Result<BoundServer, DriverError> {
        if cfg.listen.is_empty() {
            return Err(DriverError::NoListen);
        }
        let users = cfg.load_users()?;
        let domains = cfg.load_domains()?;
        cfg.forward_rules()?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let worker_count = crate::server::shard::resolve_workers(cfg, cpus)?;
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut tls = Vec::new();
        let mut ws = Vec::new();
        let mut bound = Vec::new();
        for spec in &cfg.listen {
            let err = |source| DriverError::Bind {
                spec: spec.to_string(),
                source,
            };
            match spec.transport {
                Transport::Udp => {
                    let s = if worker_count > 1 {
                        // Every worker binds the same address (SO_REUSEPORT).
                        let std = workers::bind_udp_reuseport(spec.addr).map_err(err)?;
                        SipUdp::from_std(std).map_err(err)?
                    } else {
                        SipUdp::bind(spec.addr).map_err(err)?
                    };
                    let size = set_udp_receive_buffer(&s, cfg.udp_receive_buffer_bytes);
                    tracing::debug!(addr = %spec.addr, receive_buffer = size, "udp socket");
                    bound.push((Transport::Udp, s.local_addr().map_err(err)?));
                    udp.push(Arc::new(s));
                }
                Transport::Tcp => {
                    let l = listen_tcp(spec.addr).map_err(err)?;
                    bound.push((Transport::Tcp, l.local_addr().map_err(err)?));
                    tcp.push(l);
                }
                Transport::Tls => {
                    let l = listen_tcp(spec.addr).map_err(err)?;
                    bound.push((Transport::Tls, l.local_addr().map_err(err)?));
                    tls.push(l);
                }
                t @ (Transport::Ws | Transport::Wss) => {
                    let l = listen_tcp(spec.addr).map_err(err)?;
                    bound.push((t, l.local_addr().map_err(err)?));
                    ws.push((t, l));
                }
            }
        }
        let advertise = match &cfg.advertise {
            Some(a) => a.clone(),
            None => match primary_ipv4() {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            },
        };
        let domain = cfg.domain.clone().unwrap_or_else(|| {
            bound
                .iter()
                .find(|(_, a)| !a.ip().is_unspecified())
                .map(|(_, a)| a.ip().to_string())
                .unwrap_or_else(|| advertise.clone())
        });
        let secure_ws = ws.iter().any(|(t, _)| *t == Transport::Wss);
        let tls_config = if tls.is_empty() && !secure_ws {
            None
        } else {
            Some(tls_identity(cfg, &bound, &advertise, &domain)?)
        };
        let local = LocalIdentity::new(&bound, &advertise, &domain, &cfg.aliases);
        let now = std::time::Instant::now();
        let mut core = ServerCore::new(cfg, local, &users, now, ServerCore::system_unix_secs());
        core.set_domains(&domains);
        let (store, remote) = open_store(cfg, &bound, &mut core, now)?;
        let relay = start_relay(cfg, &bound, &advertise)?;
        let mut recorder = None;
        if let Some((driver, ip)) = &relay {
            let mut anchor = RelayAnchor::new(driver.handle(), cfg.relay, *ip)
                .with_transcoding(cfg.relay_transcode);
            if cfg.record_calls || !cfg.record_users.is_empty() {
                let r = start_recorder(cfg, driver)?;
                anchor = anchor.with_recorder(Box::new(r.handle()));
                tracing::info!(all = cfg.record_calls, users = ?cfg.record_users, "recording policy");
                recorder = Some(r);
            }
            core.set_media_hook(Box::new(anchor));
        } else if cfg.record_calls || !cfg.record_users.is_empty() {
            tracing::warn!(
                "record_calls/record_users need the media relay (relay = \"off\"): nothing is recorded"
            );
        }
        let workers = workers::prepare(
            worker_count,
            cfg,
            &bound,
            &users,
            now,
            &mut core,
            relay.as_ref(),
            recorder.as_ref(),
        )?;
        let relay = relay.map(|(d, _)| d);
        let http = match cfg.http_listen {
            Some(addr) => Some(listen_tcp(addr).map_err(|source| DriverError::Bind {
                spec: format!("http:{addr}"),
                source,
            })?),
            None => None,
        };
        let health = health::Health::default();
        health.add_store(health::StoreHealth::new(
            "location",
            store.as_ref().map_or("memory", |w| w.health().name),
        ));
        let limits = Limits {
            max_message_bytes: cfg.max_message_bytes,
            max_headers: cfg.max_headers,
        };
        Ok(BoundServer {
            core,
            udp,
            tcp,
            tls,
            ws,
            tls_config,
            bound,
            limits,
            conns: conn::Conns::new(
                limits,
                conn::ConnPolicy {
                    max_connections: cfg.max_connections,
                    max_connections_per_source: cfg.max_connections_per_source,
                    idle_timeout: (cfg.connection_idle_timeout_s > 0)
                        .then(|| std::time::Duration::from_secs(cfg.connection_idle_timeout_s)),
                    message_timeout: (cfg.message_timeout_s > 0)
                        .then(|| std::time::Duration::from_secs(cfg.message_timeout_s)),
                    trusted: cfg.trusted_sources.clone(),
                },
            ),
            users: users.len(),
            relay,
            recorder,
            tls_counters: Arc::default(),
            ws_counters: Arc::default(),
            dns_server: cfg.dns_server,
            control: mpsc::channel(CONTROL_QUEUE),
            store,
            remote,
            http,
            health,
            queries: mpsc::channel(query::QUERY_QUEUE),
            workers,
            stats_board: workers::ServerStats::new(worker_count),
        })
    }

    /// The bindings' store health and counters (`None` without a store).
    pub fn store_health(&self) -> Option<Arc<store::StoreHealth>> {
        self.store.as_ref().map(|w| w.health())
    }

    /// Every worker's counters while the server runs; [`workers::ServerStats::snapshot`] is the
    /// whole server's [`crate::server::core::Stats`] (summed over workers).
    pub fn stats(&self) -> Arc<workers::ServerStats> {
        self.stats_board.clone()
    }

    /// How many workers (event loops, each with its own core) the server runs.
    pub fn worker_count(&self) -> usize {
        self.workers.as_ref().map_or(1, |w| w.count())
    }

    /// The media relay's handle (`None` with `relay = "off"`): counters and ports in use.
    pub fn relay(&self) -> Option<relay::RelayHandle> {
        self.relay.as_ref().map(|r| r.handle())
    }

    /// The TLS listeners' counters (handshakes accepted, failed, timed out).
    pub fn tls_counters(&self) -> Arc<tls::TlsCounters> {
        self.tls_counters.clone()
    }

    /// The stream connections' counters (open, accepted, refused by the limits, closed idle,
    /// slow, oversized or unframable).
    pub fn conn_counters(&self) -> Arc<conn::ConnCounters> {
        self.conns.counters.clone()
    }

    /// The WebSocket listeners' counters (upgrades, refusals, protocol errors).
    pub fn ws_counters(&self) -> Arc<ws::WsCounters> {
        self.ws_counters.clone()
    }

    /// The SHA-256 fingerprint of the TLS and WSS listeners' certificate (`AB:CD:…`), if any
    /// listen.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.tls_config.as_ref().map(|(_, f)| f.as_str())
    }

    /// The bound sockets (with the real ports when port 0 was asked for).
    pub fn bound(&self) -> &[(Transport, SocketAddr)] {
        &self.bound
    }

    /// The domain (and default realm) the server answers for.
    pub fn domain(&self) -> &str {
        &self.core.local().domain
    }

    /// A handle to change the running server's state (call forwarding) from another thread.
    pub fn control(&self) -> ControlHandle {
        ControlHandle {
            tx: self.control.0.clone(),
        }
    }

    /// How many user accounts were loaded.
    pub fn user_count(&self) -> usize {
        self.users
    }

    /// Runs the event loop until `shutdown` completes. Socket errors on one connection never stop
    /// the server; a failed UDP receive is logged and retried.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        if let Some(w) = self.workers.take() {
            return workers::run(self, w, shutdown).await;
        }
        let BoundServer {
            mut core,
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
            stats_board,
            ..
        } = self;
        let mut remote = remote;
        let store_health = store.as_ref().map(|w| w.health());
        // What /healthz says about the bindings' store, updated when its reachability changes.
        let location_health = health.store("location");
        let mut store_reachable = true;
        // Handles keep working only while the loop runs: ours goes with it.
        drop(control_tx);
        let mut dns = Dns::new(dns_server);
        let (tx, mut rx) = mpsc::channel::<Inbound>(4096);
        let mut tasks = tokio::task::JoinSet::new();
        let sources = stats::Sources {
            started: std::time::Instant::now(),
            conns: conns.counters.clone(),
            relay: relay.as_ref().map(|r| r.handle()),
            tls: tls_counters.clone(),
            ws: ws_counters.clone(),
        };
        if let Some(l) = http {
            let queries = query::QueryHandle { tx: query_tx };
            tasks.spawn(http::serve(l, http::HttpContext { queries, health }));
        } else {
            // Handles given out keep working only while the loop runs: ours goes with it.
            drop(query_tx);
        }
        for l in tcp {
            tasks.spawn(tcp::accept_loop(l, tx.clone(), conns.clone()));
        }
        if let Some((config, _)) = &tls_config {
            for l in tls {
                tasks.spawn(tls::accept_loop(
                    l,
                    config.clone(),
                    tx.clone(),
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
            tasks.spawn(ws::accept_loop(
                l,
                t,
                tls,
                tx.clone(),
                conns.clone(),
                ws_counters.clone(),
            ));
        }
        let mut out = Transports::new(
            udp.clone(),
            tx.clone(),
            conns.clone(),
            tokio::runtime::Handle::current(),
        );
        // Reusable receive buffers (one system call reads what is waiting); each datagram is
        // copied out at its exact size, so a message kept by a transaction for 32 s pins only
        // its own bytes.
        let mut batch = udp::RecvBatch::new(limits.max_message_bytes.clamp(1500, 65_535) + 1);
        tokio::pin!(shutdown);
        let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut deadline = None;
        // The status line: the server's and the relay's counters, once a minute when they moved.
        let mut next_status = std::time::Instant::now() + STATUS_INTERVAL;
        let mut last_status = String::new();
        let mut next_pin = std::time::Instant::now();
        let mut next_collect = std::time::Instant::now() + COLLECT_INTERVAL;
        let mut lag = LoopLag::default();
        let grid = std::time::Instant::now();
        loop {
            // UDP sockets are read by this task itself (no hand-off per datagram): wait until one
            // is readable, then drain it without blocking.
            let udp_ready = std::future::poll_fn(|cx| {
                for (i, s) in udp.iter().enumerate() {
                    if s.poll_recv_ready(cx).is_ready() {
                        return std::task::Poll::Ready(i);
                    }
                }
                std::task::Poll::Pending
            });
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                i = udp_ready => {
                    let now = std::time::Instant::now();
                    if let Some(sock) = udp.get(i) {
                        udp::drain(sock, &mut batch, |data, source| {
                            // Changes the app made before this datagram arrived apply to it
                            // (the control branch may not have run yet).
                            while let Ok(c) = control_rx.try_recv() {
                                apply_control(&mut core, c);
                            }
                            core.handle_datagram(now, data, source, Transport::Udp);
                        });
                    }
                    lag.record(Step::Udp, now);
                }
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    let now = std::time::Instant::now();
                    while let Ok(c) = control_rx.try_recv() {
                        apply_control(&mut core, c);
                    }
                    handle_inbound(&mut out, &mut core, now, m);
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(m) => handle_inbound(&mut out, &mut core, now, m),
                            Err(_) => break,
                        }
                    }
                    lag.record(Step::Inbound, now);
                }
                Some(c) = control_rx.recv() => apply_control(&mut core, c),
                Some(batch) = async {
                    match remote.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let unix = core.unix_secs(std::time::Instant::now());
                    for c in &batch {
                        core.registrar.location.apply_remote(c, unix);
                    }
                }
                Some(q) = query_rx.recv() => {
                    query::answer(&core, &sources, std::time::Instant::now(), q);
                }
                _ = &mut sleep => {
                    deadline = None;
                    let now = std::time::Instant::now();
                    core.handle_timeout(now);
                    lag.record(Step::Timers, now);
                }
            }
            // Under sustained traffic a receive branch is always ready: run due timers here too,
            // so retransmissions and timeouts are never starved.
            let now = std::time::Instant::now();
            if core.poll_timeout().is_some_and(|t| t <= now) {
                core.handle_timeout(now);
                lag.record(Step::Timers, now);
            }
            // Questions (metrics, status) are answered under sustained traffic too, when their
            // select branch would not be reached.
            while let Ok(q) = query_rx.try_recv() {
                query::answer(&core, &sources, now, q);
            }
            while let Some(q) = core.poll_dns_query() {
                dns.spawn(q, &tx, &mut core, now);
            }
            let sending = std::time::Instant::now();
            out.send_all(std::iter::from_fn(|| core.poll_transmit()));
            lag.record(Step::Transmit, sending);
            stats_board.publish(0, &core, 0);
            // Binding changes go to the store's own thread; REGISTER waits while it is down.
            if let (Some(w), Some(h)) = (&store, &store_health) {
                if core.registrar.location.has_changes() {
                    w.send(core.registrar.location.take_changes());
                }
                let reachable = h.reachable();
                if reachable != store_reachable {
                    store_reachable = reachable;
                    core.set_store_available(reachable);
                    if let Some(lh) = &location_health {
                        match reachable {
                            true => lh.set_reachable(),
                            false => lh.set_unreachable("store writes fail"),
                        }
                    }
                }
            }
            // Connections that carry a live registration are never closed as idle: new ones
            // at once, and the whole set (expired ones dropped) now and then.
            for flow in core.take_new_flows() {
                conns.pin(flow);
            }
            if now >= next_collect {
                next_collect = now + COLLECT_INTERVAL;
                let start = std::time::Instant::now();
                release_free_memory();
                lag.record(Step::Collect, start);
            }
            if now >= next_pin {
                next_pin = now + PIN_INTERVAL;
                let start = std::time::Instant::now();
                conns.set_pinned(core.registrar.location.stream_flows(core.unix_secs(now)));
                lag.record(Step::Pin, start);
            }
            if now >= next_status {
                next_status = now + STATUS_INTERVAL;
                let (slowest, slowest_us) = lag.take();
                let line = format!(
                    "{:?} {:?} {:?} relay={:?} tls={:?} ws={:?}",
                    core.stats,
                    core.guard.stats,
                    conns.counters,
                    relay.as_ref().map(|r| r.handle().stats()),
                    tls_counters,
                    ws_counters
                );
                if line != last_status {
                    let (client_tx, server_tx) = core.tl.len();
                    tracing::info!(
                        bindings = core.registrar.location.len(),
                        calls = core.proxy.dialogs().len(),
                        client_tx,
                        server_tx,
                        proxy_contexts = core.proxy.len(),
                        held_bytes = core.tl.held_bytes(),
                        stats = ?core.stats,
                        guard = ?core.guard.stats,
                        connections = ?conns.counters,
                        relay = ?relay.as_ref().map(|r| r.handle().stats()),
                        tls = ?tls_counters,
                        ws = ?ws_counters,
                        slowest_step = ?slowest,
                        slowest_step_ms = slowest_us as f64 / 1000.0,
                        "status"
                    );
                    last_status = line;
                }
            }
            let next = core.poll_timeout().map(|t| on_timer_grid(grid, t));
            if next != deadline {
                deadline = next;
                let at = next.map(tokio::time::Instant::from_std).unwrap_or_else(far);
                sleep.as_mut().reset(at);
            }
        }
        tasks.abort_all();
        let (clients, servers) = core.tl.len();
        tracing::info!(
            client_transactions = clients,
            server_transactions = servers,
            proxy_contexts = core.proxy.len(),
            bindings = core.registrar.location.len(),
            stats = ?core.stats,
            relay = ?relay.as_ref().map(|r| r.handle().stats()),
            "server state at shutdown"
        );
        drop(relay);
        // What is queued for the store is written before the process ends.
        drop(store);
        // Open recordings are completed (their WAV headers written) before the process ends.
        drop(recorder);
    }
}

/// The event loops wake for their core's timers on a grid of this step (a timer fires up to
/// this much late), so that the timers of many transactions (retransmissions, Timer J/K ends)
/// share one wake-up instead of waking the thread once per millisecond that holds a deadline:
/// at 500 calls/s that was about 1 400 extra wake-ups a second. Kamailio's timer ticks at
/// 1/16 s; RFC 3261's shortest timer, T1 = 500 ms, is 25 steps.
const TIMER_STEP: std::time::Duration = std::time::Duration::from_millis(20);

/// `t` rounded up onto the [`TIMER_STEP`] grid that starts at `base` (`t` itself when it is
/// before `base`).
fn on_timer_grid(base: std::time::Instant, t: std::time::Instant) -> std::time::Instant {
    let step = TIMER_STEP.as_nanos().max(1);
    let since = t.saturating_duration_since(base).as_nanos();
    let steps = since.div_ceil(step);
    let nanos = u64::try_from(steps.saturating_mul(step)).unwrap_or(u64::MAX);
    base.checked_add(std::time::Duration::from_nanos(nanos))
        .unwrap_or(t)
}

/// How often the flows of live stream registrations are handed to the connection tasks.
const PIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// How often freed memory is handed back to the OS.
const COLLECT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the status line is logged (when a counter moved).
const STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Hands one [`Inbound`] to the core or to the send path.
fn handle_inbound(
    out: &mut Transports,
    core: &mut ServerCore,
    now: std::time::Instant,
    m: Inbound,
) {
    match m {
        Inbound::Msg {
            data,
            source,
            transport,
        } => core.handle_datagram(now, data, source, transport),
        Inbound::TcpOpened { peer, tx } => out.opened(peer, tx),
        Inbound::TcpClosed { peer } => out.closed(peer),
        Inbound::ConnectFailed {
            peer,
            transport,
            reason,
        } => {
            tracing::info!(%peer, %transport, %reason, "connection failed");
            out.closed(peer);
            core.connection_failed(now, peer, transport, &reason);
        }
        Inbound::Resolved { id, result } => {
            if let Ok(dests) = &result {
                // A TLS next hop is verified for the domain the request was for (RFC 5922 §4).
                for d in dests {
                    if d.proto == crate::sip::resolve::Proto::Tls {
                        out.set_tls_name(d.addr, &d.host);
                    }
                }
            }
            core.dns_resolved(now, id, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deadlines round up onto the 20 ms grid, never down, and one already on it stays.
    #[test]
    fn timers_round_up_onto_the_grid() {
        let base = std::time::Instant::now();
        let ms = std::time::Duration::from_millis;
        assert_eq!(on_timer_grid(base, base), base);
        assert_eq!(on_timer_grid(base, base + ms(1)), base + ms(20));
        assert_eq!(on_timer_grid(base, base + ms(20)), base + ms(20));
        assert_eq!(on_timer_grid(base, base + ms(501)), base + ms(520));
        let before = base.checked_sub(ms(5)).unwrap_or(base);
        assert!(on_timer_grid(base, before) <= base);
    }
}
