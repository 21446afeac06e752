//! One worker's thread and event loop ([`super::workers`]): its UDP sockets, its inbox,
//! replicated binding changes, control changes, questions and timers, as
//! [`super::BoundServer::run`] for one worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::lag::{LoopLag, Step};
use super::setup::{Dns, release_free_memory, set_udp_receive_buffer};
use super::transport::Transports;
use super::workers::{Peers, ServerStats};
use super::{
    COLLECT_INTERVAL, Control, Inbound, PIN_INTERVAL, STATUS_INTERVAL, apply_control,
    handle_inbound, on_timer_grid, query, stats, store, udp,
};
use crate::server::core::{ServerCore, Stats};
use crate::server::location::BindingChange;
use crate::server::shard::worker_for;
use crate::sip::transaction::Transport;

/// What one worker's event loop owns.
pub(super) struct Worker {
    pub(super) index: usize,
    pub(super) core: ServerCore,
    pub(super) udp: Vec<Arc<udp::SipUdp>>,
    pub(super) inbox: mpsc::Receiver<Inbound>,
    pub(super) changes: mpsc::UnboundedReceiver<Arc<[BindingChange]>>,
    pub(super) control: mpsc::UnboundedReceiver<Control>,
    pub(super) peers: Arc<Peers>,
    /// Where connections opened by this worker report (the router).
    pub(super) router: mpsc::Sender<Inbound>,
    pub(super) conns: Arc<super::conn::Conns>,
    pub(super) max_message_bytes: usize,
    pub(super) store: Option<Arc<store::StoreWriter>>,
    pub(super) dns_server: Option<SocketAddr>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) board: Arc<ServerStats>,
    /// Questions for this worker (its part of a `/metrics`, `/status`, `/healthz` or
    /// `Server::stats()` question, [`query::fan_out`]).
    pub(super) queries: mpsc::Receiver<query::Query>,
    /// What a snapshot reads besides the core (shared by every worker).
    pub(super) sources: stats::Sources,
    /// What `/healthz` says of the bindings' store: worker 0 keeps it up to date.
    pub(super) location_health: Option<super::health::StoreHealth>,
}

/// How a worker ended (for the shutdown line).
pub(super) struct Summary {
    pub(super) messages: u64,
    pub(super) handed_over: u64,
    pub(super) stats: Stats,
}

/// A worker's thread: its own current-thread runtime, its UDP sockets registered there.
pub(super) fn worker_thread(
    mut w: Worker,
    socks: Vec<std::net::UdpSocket>,
    receive_buffer: usize,
) -> Option<Summary> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = w.index, error = %e, "cannot start a worker runtime");
            return None;
        }
    };
    rt.block_on(async move {
        for s in socks {
            match udp::SipUdp::from_std(s) {
                Ok(s) => {
                    set_udp_receive_buffer(&s, receive_buffer);
                    w.udp.push(Arc::new(s));
                }
                Err(e) => tracing::error!(worker = w.index, error = %e, "udp socket"),
            }
        }
        // As in the binary: the loop runs as a task, not as the `block_on` future.
        tokio::spawn(worker_loop(w)).await.ok()
    })
}

/// One worker's event loop: its UDP sockets, its inbox, replicated changes, control changes
/// and timers, as [`BoundServer::run`] for one worker.
pub(super) async fn worker_loop(mut w: Worker) -> Summary {
    let me = w.index;
    let n = w.peers.inbox.len();
    let mut out = Transports::new(
        w.udp.clone(),
        w.router.clone(),
        w.conns.clone(),
        tokio::runtime::Handle::current(),
    );
    let mut dns = Dns::new(w.dns_server);
    let own_inbox = w.peers.inbox.get(me).cloned();
    let store_health = w.store.as_ref().map(|s| s.health());
    let mut store_reachable = true;
    let mut batch = udp::RecvBatch::new(w.max_message_bytes.clamp(1500, 65_535) + 1);
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    let sleep = tokio::time::sleep_until(far());
    tokio::pin!(sleep);
    let mut deadline = None;
    let (mut messages, mut handed_over) = (0u64, 0u64);
    let mut next_status = Instant::now() + STATUS_INTERVAL;
    let mut last_status = String::new();
    let mut next_pin = Instant::now();
    let mut next_collect = Instant::now() + COLLECT_INTERVAL;
    let mut lag = LoopLag::default();
    let grid = Instant::now();
    let core = &mut w.core;
    loop {
        let udp = &w.udp;
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
            _ = w.stop.changed() => break,
            i = udp_ready => {
                let now = Instant::now();
                while let Ok(c) = w.control.try_recv() {
                    apply_control(core, c);
                }
                if let Some(sock) = w.udp.get(i) {
                    let peers = &w.peers;
                    udp::drain(sock, &mut batch, |data, source| {
                        let owner = worker_for(&data, n);
                        if owner == me {
                            messages += 1;
                            core.handle_datagram(now, data, source, Transport::Udp);
                        } else if let Some(tx) = peers.inbox.get(owner) {
                            handed_over += 1;
                            let m = Inbound::Msg { data, source, transport: Transport::Udp };
                            if tx.try_send(m).is_err() {
                                tracing::debug!(worker = owner, "worker inbox full: datagram dropped");
                            }
                        }
                    });
                }
                lag.record(Step::Udp, now);
            }
            m = w.inbox.recv() => {
                let Some(m) = m else { break };
                let now = Instant::now();
                while let Ok(c) = w.control.try_recv() {
                    apply_control(core, c);
                }
                let mut next = Some(m);
                let mut count = 0;
                while let Some(m) = next.take() {
                    messages += u64::from(matches!(m, Inbound::Msg { .. }));
                    handle_inbound(&mut out, core, now, m);
                    count += 1;
                    if count < 256 {
                        next = w.inbox.try_recv().ok();
                    }
                }
                lag.record(Step::Inbound, now);
            }
            Some(changes) = w.changes.recv() => {
                let now = Instant::now();
                core.apply_binding_changes(now, &changes);
                while let Ok(more) = w.changes.try_recv() {
                    core.apply_binding_changes(now, &more);
                }
            }
            Some(c) = w.control.recv() => apply_control(core, c),
            Some(q) = w.queries.recv() => query::answer(core, &w.sources, Instant::now(), q),
            _ = &mut sleep => {
                deadline = None;
                let now = Instant::now();
                core.handle_timeout(now);
                lag.record(Step::Timers, now);
            }
        }
        let now = Instant::now();
        if core.poll_timeout().is_some_and(|t| t <= now) {
            core.handle_timeout(now);
            lag.record(Step::Timers, now);
        }
        // Questions are answered under sustained traffic too.
        while let Ok(q) = w.queries.try_recv() {
            query::answer(core, &w.sources, now, q);
        }
        if let Some(tx) = &own_inbox {
            while let Some(q) = core.poll_dns_query() {
                dns.spawn(q, tx, core, now);
            }
        }
        let sending = Instant::now();
        out.send_all(std::iter::from_fn(|| core.poll_transmit()));
        lag.record(Step::Transmit, sending);
        // The changes this worker made: to the other replicas, and once to the store.
        let changes = core.take_binding_changes(me, n);
        if !changes.is_empty() {
            let shared: Arc<[BindingChange]> = changes.as_slice().into();
            for (i, tx) in w.peers.changes.iter().enumerate() {
                if i != me {
                    let _ = tx.send(shared.clone());
                }
            }
            if let Some(s) = &w.store {
                s.send(changes);
            }
        }
        if let Some(h) = &store_health {
            let reachable = h.reachable();
            core.set_store_available(reachable);
            if reachable != store_reachable {
                store_reachable = reachable;
                if let Some(lh) = &w.location_health {
                    match reachable {
                        true => lh.set_reachable(),
                        false => lh.set_unreachable("store writes fail"),
                    }
                }
            }
        }
        for flow in core.take_new_flows() {
            w.conns.pin(flow);
        }
        w.board.publish(me, core, messages);
        if now >= next_collect {
            next_collect = now + COLLECT_INTERVAL;
            let start = Instant::now();
            release_free_memory();
            lag.record(Step::Collect, start);
        }
        // Every replica holds every binding: worker 0 alone hands the full set over.
        if me == 0 && now >= next_pin {
            next_pin = now + PIN_INTERVAL;
            let start = Instant::now();
            w.conns
                .set_pinned(core.registrar.location.stream_flows(core.unix_secs(now)));
            lag.record(Step::Pin, start);
        }
        if now >= next_status {
            next_status = now + STATUS_INTERVAL;
            let (slowest, slowest_us) = lag.take();
            let line = format!("{messages} {:?} {:?}", core.stats, core.guard.stats);
            if line != last_status {
                let (client_tx, server_tx) = core.tl.len();
                tracing::info!(
                    worker = me,
                    messages,
                    handed_over,
                    bindings = core.binding_count(),
                    calls = core.proxy.dialogs().len(),
                    client_tx,
                    server_tx,
                    stats = ?core.stats,
                    guard = ?core.guard.stats,
                    slowest_step = ?slowest,
                    slowest_step_ms = slowest_us as f64 / 1000.0,
                    "worker status"
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
    let (clients, servers) = core.tl.len();
    tracing::info!(
        worker = me,
        messages,
        handed_over,
        client_transactions = clients,
        server_transactions = servers,
        bindings = core.binding_count(),
        stats = ?core.stats,
        "worker state at shutdown"
    );
    Summary {
        messages,
        handed_over,
        stats: core.stats,
    }
}
