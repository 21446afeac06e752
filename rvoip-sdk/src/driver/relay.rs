//! The media relay's packet loop: one thread polls every relay socket (a level-triggered epoll,
//! through rustix), reads what each readable one holds, hands every datagram to the sans-IO
//! [`Relay`] and sends what it forwards. One receive buffer pool for the thread's life: no
//! allocation per packet.
//!
//! Reads cost one system call per datagram at most, and a socket with a backlog is read in
//! batches. A socket seen readable in two rounds in a row (so it holds a backlog) is read with
//! a batched `recvmmsg` (quinn-udp, [`BATCH`] datagrams); otherwise with one `recvfrom`. The
//! epoll is level-triggered, so whatever a round leaves queued is reported again in the next
//! one, and no read is ever spent only to see `EAGAIN`. (An edge-triggered poll must drain each
//! socket to `EAGAIN`: at 50 packets/s per stream that is a second, empty read per packet,
//! about 5 % of the relay's CPU.)
//!
//! The SIP side reaches the relay through a [`RelayHandle`] (the proxy's
//! [`RelayControl`]): it binds the UDP sockets of the ports the core hands out, registers them
//! with the poll, and closes them when the context is released. Core and sockets sit under one
//! mutex, taken once per poll round by the thread and per call-setup step by the SIP side.

use std::io::{ErrorKind, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use rustix::event::{EventfdFlags, Timespec, epoll, eventfd};

use crate::media::relay::{
    Latching, MediaId, MediaStats, MediaTap, Relay, RelayConfig, RelayError, RelayEvent,
    RelayStats, Side, TranscodeSpec,
};
use crate::server::relay::RelayControl;
use crate::server::relay::sdp::Stream;

/// Datagrams read per `recvmmsg`.
const BATCH: usize = 8;
/// Bytes per receive buffer: larger than any accepted datagram, so an oversized one is seen as
/// such (and dropped, counted) rather than silently truncated to a valid size.
const BUF_LEN: usize = 4096;
/// The epoll data of the waker (relay ports are `u16`).
const WAKER: u64 = u64::MAX;
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// A poll round that read at least [`COALESCE_FROM`] but fewer than this many datagrams is
/// followed by a pause of [`COALESCE`] before the next poll, so each wake-up serves several
/// packets (interrupt coalescing, as NICs do): with thousands of streams at 50 packets/s a
/// wake-up per packet or two costs as much as forwarding them. Lighter rounds (a few calls) do
/// not pause: there a timer wake-up costs more than it saves.
const COALESCE_BELOW: usize = 64;
/// See [`COALESCE_BELOW`].
const COALESCE_FROM: usize = 4;
/// The pause after a light round: bounded added latency, far inside a 20 ms packet interval.
const COALESCE: Duration = Duration::from_micros(300);

/// One bound relay port.
struct PortSocket {
    sock: UdpSocket,
    /// The last poll round that read this socket (a socket read in two rounds in a row holds a
    /// backlog: read it in batches).
    last_round: u32,
}

struct State {
    core: Relay,
    /// Indexed by `port - port_min`.
    sockets: Vec<Option<PortSocket>>,
    /// One receive state for every socket: `recvmmsg` needs no per-socket options here (no
    /// GRO, ECN or packet info for 20 ms RTP), and building one per port costs ~70 µs of kernel
    /// work each (quinn-udp's capability probes), four times per call.
    rx: UdpSocketState,
    bind_ip: IpAddr,
    /// Sends that failed (socket buffer full, unreachable peer).
    send_errors: u64,
}

struct Shared {
    state: Mutex<State>,
    /// The epoll instance (level-triggered) over every relay socket and the waker.
    epoll: OwnedFd,
    /// An eventfd that wakes the thread (deadline changes, stop).
    waker: OwnedFd,
    stop: AtomicBool,
}

impl Shared {
    /// Wakes the relay thread out of `epoll_wait`.
    fn wake(&self) {
        let _ = rustix::io::write(&self.waker, &1u64.to_ne_bytes());
    }
}

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The relay thread; stops (and closes every relay socket) when dropped.
pub struct RelayDriver {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A cloneable handle to the relay for the SIP side.
#[derive(Clone)]
pub struct RelayHandle {
    shared: Arc<Shared>,
}

impl RelayDriver {
    /// Starts the relay thread over `cfg`'s port range, binding relay ports on `bind_ip`
    /// (`0.0.0.0` for every interface). Errors: the poll or waker could not be created, or the
    /// thread could not be spawned.
    pub fn start(cfg: RelayConfig, bind_ip: IpAddr) -> std::io::Result<RelayDriver> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let waker = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &ep,
            &waker,
            epoll::EventData::new_u64(WAKER),
            epoll::EventFlags::IN,
        )?;
        let span = usize::from(cfg.port_max.saturating_sub(cfg.port_min)) + 1;
        let mut sockets = Vec::new();
        sockets.resize_with(span, || None);
        let probe = std::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0))?;
        let rx = UdpSocketState::new(UdpSockRef::from(&probe))?;
        drop(probe);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core: Relay::new(cfg),
                sockets,
                rx,
                bind_ip,
                send_errors: 0,
            }),
            epoll: ep,
            waker,
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rvoip-relay".into())
            .spawn(move || run(s))?;
        Ok(RelayDriver {
            shared,
            thread: Some(thread),
        })
    }

    /// A handle for the proxy's anchor.
    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for RelayDriver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut st = lock(&self.shared);
        for s in st.sockets.iter_mut() {
            if let Some(p) = s.take() {
                let _ = epoll::delete(&self.shared.epoll, &p.sock);
            }
        }
    }
}

impl RelayHandle {
    /// The relay's counters (contexts and ports in use, forwarded, dropped by reason).
    pub fn stats(&self) -> RelayStats {
        lock(&self.shared).core.stats()
    }

    /// Sends that failed since start.
    pub fn send_errors(&self) -> u64 {
        lock(&self.shared).send_errors
    }

    /// Installs where recorded packets go (the recorder's handle, `driver::record`).
    pub fn set_tap(&self, tap: Box<dyn MediaTap>) {
        lock(&self.shared).core.set_tap(tap);
    }

    /// Runs `f` on the sans-IO core (tests and benchmarks: statistics of one context).
    pub fn with_core<T>(&self, f: impl FnOnce(&mut Relay) -> T) -> T {
        f(&mut lock(&self.shared).core)
    }

    fn ports_of(core: &Relay, id: MediaId) -> Vec<u16> {
        [Side::Caller, Side::Callee]
            .into_iter()
            .filter_map(|s| core.local_port(id, s))
            .flat_map(|p| [p, p.saturating_add(1)])
            .collect()
    }

    fn close(&self, st: &mut State, port: u16) {
        let min = st.core.config().port_min;
        if let Some(slot) = port
            .checked_sub(min)
            .and_then(|i| st.sockets.get_mut(usize::from(i)))
        {
            if let Some(p) = slot.take() {
                let _ = epoll::delete(&self.shared.epoll, &p.sock);
            }
        }
    }

    /// Puts a bound socket in its slot and registers it with the poll (under the lock, so the
    /// thread never sees a readiness event for a port whose socket it cannot find).
    fn install(&self, st: &mut State, port: u16, sock: UdpSocket) -> std::io::Result<()> {
        let min = st.core.config().port_min;
        let idx = usize::from(port.checked_sub(min).ok_or(ErrorKind::InvalidInput)?);
        let slot = st.sockets.get_mut(idx).ok_or(ErrorKind::InvalidInput)?;
        epoll::add(
            &self.shared.epoll,
            &sock,
            epoll::EventData::new_u64(u64::from(port)),
            epoll::EventFlags::IN,
        )?;
        *slot = Some(PortSocket {
            sock,
            last_round: 0,
        });
        Ok(())
    }
}

/// Binds one relay port (outside the lock: forwarding goes on meanwhile).
fn bind_port(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddr::new(ip, port))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl RelayControl for RelayHandle {
    fn create(&mut self, now: Instant) -> Result<MediaId, RelayError> {
        // A port another program holds is skipped for good; a few tries, then give up.
        for _ in 0..16 {
            let (id, ports, ip) = {
                let mut st = lock(&self.shared);
                let id = st.core.create(now)?;
                (id, Self::ports_of(&st.core, id), st.bind_ip)
            };
            let mut bound = Vec::with_capacity(ports.len());
            let mut failed = None;
            for &p in &ports {
                match bind_port(ip, p) {
                    Ok(s) => bound.push((p, s)),
                    Err(e) => {
                        tracing::warn!(port = p, error = %e, "relay: cannot bind port; skipping it");
                        failed = Some(p);
                        break;
                    }
                }
            }
            let mut st = lock(&self.shared);
            if failed.is_none() {
                for (p, s) in bound {
                    if let Err(e) = self.install(&mut st, p, s) {
                        tracing::warn!(port = p, error = %e, "relay: cannot poll port");
                        failed = Some(p);
                        break;
                    }
                }
            }
            match failed {
                None => return Ok(id),
                Some(bad) => {
                    for &p in &ports {
                        self.close(&mut st, p);
                    }
                    st.core.release(id);
                    st.core.mark_port_unusable(bad);
                }
            }
        }
        Err(RelayError::PoolExhausted)
    }

    fn local_port(&self, id: MediaId, side: Side) -> Option<u16> {
        lock(&self.shared).core.local_port(id, side)
    }

    fn set_remote(&mut self, id: MediaId, side: Side, s: &Stream) -> Result<(), RelayError> {
        RelayControl::set_remote(&mut lock(&self.shared).core, id, side, s)
    }

    fn set_latching(
        &mut self,
        id: MediaId,
        side: Side,
        latching: Latching,
    ) -> Result<(), RelayError> {
        lock(&self.shared).core.set_latching(id, side, latching)
    }

    fn media_stats(&self, id: MediaId) -> Option<MediaStats> {
        lock(&self.shared).core.media_stats(id)
    }

    fn set_recording(&mut self, id: MediaId, recording: Option<u64>) -> Result<(), RelayError> {
        lock(&self.shared).core.set_recording(id, recording)
    }

    fn join_room(
        &mut self,
        now: Instant,
        id: MediaId,
        room: u32,
        spec: TranscodeSpec,
    ) -> Result<(), RelayError> {
        lock(&self.shared).core.join_room(now, id, room, spec)?;
        // The member's first frame and the room's mix are due now.
        self.shared.wake();
        Ok(())
    }

    fn set_transcoding(
        &mut self,
        now: Instant,
        id: MediaId,
        specs: Option<[TranscodeSpec; 2]>,
    ) -> Result<(), RelayError> {
        lock(&self.shared).core.set_transcoding(now, id, specs)?;
        // The transcoder's first frame is due now: let the thread re-read its deadline.
        self.shared.wake();
        Ok(())
    }

    fn confirm(&mut self, now: Instant, id: MediaId) {
        lock(&self.shared).core.confirm(now, id);
        // The thread's poll timeout may be far away: let it re-read the deadline.
        self.shared.wake();
    }

    fn release(&mut self, id: MediaId) -> Option<MediaStats> {
        let mut st = lock(&self.shared);
        let ports = Self::ports_of(&st.core, id);
        let stats = st.core.release(id);
        for p in ports {
            self.close(&mut st, p);
        }
        stats
    }

    fn poll_event(&mut self) -> Option<RelayEvent> {
        lock(&self.shared).core.poll_event()
    }

    fn ports_in_use(&self) -> usize {
        lock(&self.shared).core.ports_in_use()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn handle_timeout(&mut self, _now: Instant) {}
}

/// The thread: poll, then read every readable socket through the core.
fn run(shared: Arc<Shared>) {
    let mut events: Vec<epoll::Event> = Vec::with_capacity(EVENTS);
    let mut storage = vec![[0u8; BUF_LEN]; BATCH];
    let mut meta = [RecvMeta::default(); BATCH];
    // Round 0 is "never" for a fresh socket.
    let mut round: u32 = 1;
    loop {
        let timeout = {
            let st = lock(&shared);
            st.core
                .poll_timeout()
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1))
        };
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(1),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        events.clear();
        if let Err(e) = epoll::wait(
            &shared.epoll,
            rustix::buffer::spare_capacity(&mut events),
            Some(&ts),
        ) {
            if e != rustix::io::Errno::INTR {
                tracing::error!(error = %e, "relay: epoll_wait failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let mut read = 0;
        {
            let mut st = lock(&shared);
            let st = &mut *st;
            for ev in &events {
                let tok = ev.data.u64();
                if tok == WAKER {
                    let mut b = [MaybeUninit::<u8>::uninit(); 8];
                    let _ = rustix::io::read(&shared.waker, &mut b);
                    continue;
                }
                let Ok(port) = u16::try_from(tok) else {
                    continue;
                };
                read += read_port(st, port, now, round, &mut storage, &mut meta);
            }
            if st.core.poll_timeout().is_some_and(|t| t <= now) {
                st.core.handle_timeout(now);
            }
            send_transmits(st);
        }
        round = round.wrapping_add(1).max(1);
        if (COALESCE_FROM..COALESCE_BELOW).contains(&read) {
            std::thread::sleep(COALESCE);
        }
    }
}

/// Sends what the core originated (transcoded streams) out of the ports it names.
fn send_transmits(st: &mut State) {
    let min = st.core.config().port_min;
    while let Some(t) = st.core.poll_transmit() {
        let out = t
            .from_port
            .checked_sub(min)
            .and_then(|i| st.sockets.get(usize::from(i)))
            .and_then(|s| s.as_ref());
        match out {
            Some(o) if o.sock.send_to(&t.bytes, t.dest).is_ok() => {}
            _ => st.send_errors += 1,
        }
    }
}

/// Reads what `port` holds (one datagram, or a batch if it held a backlog in the previous
/// round too), forwarding every datagram the core accepts; returns how many were read.
fn read_port(
    st: &mut State,
    port: u16,
    now: Instant,
    round: u32,
    storage: &mut [[u8; BUF_LEN]],
    meta: &mut [RecvMeta],
) -> usize {
    let min = st.core.config().port_min;
    let Some(idx) = port.checked_sub(min).map(usize::from) else {
        return 0;
    };
    let n = {
        let Some(Some(ps)) = st.sockets.get_mut(idx) else {
            return 0;
        };
        let backlog = ps.last_round == round.wrapping_sub(1);
        ps.last_round = round;
        if backlog {
            let mut slices = storage.iter_mut().map(|b| IoSliceMut::new(&mut b[..]));
            let mut arr: [IoSliceMut<'_>; BATCH] =
                std::array::from_fn(|_| slices.next().unwrap_or_else(|| IoSliceMut::new(&mut [])));
            match st.rx.recv(UdpSockRef::from(&ps.sock), &mut arr, meta) {
                Ok(n) => n,
                // WouldBlock, EINTR, or an ICMP error reported on this read: the poll says
                // again if anything is left.
                Err(_) => return 0,
            }
        } else {
            let Some(buf) = storage.first_mut() else {
                return 0;
            };
            match ps.sock.recv_from(&mut buf[..]) {
                Ok((len, from)) => {
                    if let Some(m) = meta.first_mut() {
                        m.len = len;
                        m.stride = len;
                        m.addr = from;
                    }
                    1
                }
                Err(_) => return 0,
            }
        }
    };
    for (m, buf) in meta.iter().zip(storage.iter_mut()).take(n) {
        let len = m.len.min(BUF_LEN);
        let stride = if m.stride == 0 { len } else { m.stride };
        if len == 0 {
            // An empty datagram is malformed: let the core count it.
            let _ = st.core.handle_datagram(now, port, m.addr, &mut []);
            continue;
        }
        let mut off = 0;
        while off < len {
            let end = (off + stride).min(len);
            let Some(pkt) = buf.get_mut(off..end) else {
                break;
            };
            if let Some(fwd) = st.core.handle_datagram(now, port, m.addr, pkt) {
                let out = fwd
                    .from_port
                    .checked_sub(min)
                    .and_then(|i| st.sockets.get(usize::from(i)))
                    .and_then(|s| s.as_ref());
                match out {
                    Some(o) => {
                        if o.sock.send_to(pkt, fwd.dest).is_err() {
                            st.send_errors += 1;
                        }
                    }
                    None => st.send_errors += 1,
                }
            }
            off = end;
        }
    }
    n
}
