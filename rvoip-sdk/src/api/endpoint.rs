//! The endpoint: the tokio driver of one [`UserAgent`] core and the media streams of its calls.
//!
//! One lock (`Shared::core`) guards the user agent core and the per-call media state; API
//! methods and the driver task take it, run the core, send what it transmits (UDP `try_send_to`
//! or a TCP connection's writer channel, both non-blocking) and turn core events into media
//! actions and app [`Event`]s, then release it. No lock is held across an await, and app code
//! (the event handler) never runs under it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, mpsc};

use super::handles::{Account, Call};
use super::{AccountOptions, ApiError, CallOptions, EndpointConfig, Event};
use crate::driver::Inbound;
use crate::driver::media::{MediaHandle, MediaPorts};
use crate::media::audio::{AudioSink, AudioSource, NullSink, SilenceSource};
use crate::media::session::{MediaConfig, MediaEvent};
use crate::sdp::{Direction, LocalMedia, Negotiated};
use crate::sip::msg::{Limits, Uri};
use crate::sip::transaction::{Transmit, TransportKind};
use crate::sip::ua::{
    AccountConfig, AccountId, CallId, CallState, Credentials, UaConfig, UaEvent, UserAgent, build,
};

/// Media state of one call.
#[derive(Default)]
pub(crate) struct CallMedia {
    pub(crate) ports: Option<MediaPorts>,
    pub(crate) handle: Option<MediaHandle>,
    pub(crate) source: Option<Box<dyn AudioSource>>,
    pub(crate) sink: Option<Box<dyn AudioSink>>,
    pub(crate) muted: bool,
}

/// What the lock guards.
pub(crate) struct Core {
    pub(crate) ua: UserAgent,
    pub(crate) media: HashMap<CallId, CallMedia>,
    conns: HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>,
    facing: HashMap<IpAddr, IpAddr>,
}

/// Shared between the API and the driver task.
pub(crate) struct Shared {
    pub(crate) core: Mutex<Core>,
    wake: Notify,
    stop: Notify,
    events: Mutex<Option<std_mpsc::Sender<Event>>>,
    pub(crate) cfg: EndpointConfig,
    udp: Option<Arc<UdpSocket>>,
    bound: Vec<(TransportKind, SocketAddr)>,
    inbound: mpsc::Sender<Inbound>,
    pub(crate) rt: tokio::runtime::Handle,
}

/// Owner of the runtime; dropping the last [`Endpoint`] shuts everything down.
pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    events_rx: Mutex<Option<std_mpsc::Receiver<Event>>>,
    event_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// One SDK instance: transports, the user agent, calls and the event stream. Cheap to clone;
/// every clone is the same endpoint. Thread-safe: every method may be called from any thread,
/// including from inside the event handler.
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("bound", &self.inner.shared.bound)
            .finish()
    }
}

fn lock(m: &Mutex<Core>) -> MutexGuard<'_, Core> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Endpoint {
    /// Starts an endpoint: its runtime, the UDP and TCP listeners of `cfg`, and the driver.
    /// Errors: [`ApiError::Network`] when a socket cannot be bound or the runtime not started,
    /// [`ApiError::InvalidArgument`] when no transport or no usable codec is configured.
    pub fn new(mut cfg: EndpointConfig) -> Result<Endpoint, ApiError> {
        cfg.codecs.retain(crate::media::codec::is_available);
        if cfg.codecs.is_empty() {
            return Err(ApiError::InvalidArgument("no usable codec".into()));
        }
        if cfg.udp.is_none() && cfg.tcp.is_none() {
            return Err(ApiError::InvalidArgument("no transport".into()));
        }
        if !(10..=120).contains(&cfg.ptime_ms) {
            return Err(ApiError::InvalidArgument(format!("ptime {} ms", cfg.ptime_ms)));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.worker_threads.clamp(1, 64))
            .thread_name("rvoip")
            .enable_all()
            .build()
            .map_err(|e| ApiError::Network(format!("runtime: {e}")))?;
        let rt = runtime.handle().clone();
        let (udp, tcp, bound) = {
            let _g = rt.enter();
            bind(&cfg)?
        };
        let ua_cfg = UaConfig {
            timers: cfg.timers,
            limits: Limits::default(),
            codecs: cfg.codecs.clone(),
            dtmf: cfg.dtmf,
            register_retry_min: cfg.register_retry_min,
            register_retry_max: cfg.register_retry_max,
            contact_user: "rvoip".into(),
        };
        let (inbound, inbound_rx) = mpsc::channel(4096);
        let (ev_tx, ev_rx) = std_mpsc::channel();
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                ua: UserAgent::new(ua_cfg),
                media: HashMap::new(),
                conns: HashMap::new(),
                facing: HashMap::new(),
            }),
            wake: Notify::new(),
            stop: Notify::new(),
            events: Mutex::new(Some(ev_tx)),
            cfg,
            udp: udp.clone(),
            bound,
            inbound: inbound.clone(),
            rt: rt.clone(),
        });
        if let Some(l) = tcp {
            rt.spawn(crate::driver::tcp::accept_loop(l, inbound, Limits::default()));
        }
        rt.spawn(run(shared.clone(), udp, inbound_rx));
        Ok(Endpoint {
            inner: Arc::new(Inner {
                shared,
                runtime: Mutex::new(Some(runtime)),
                events_rx: Mutex::new(Some(ev_rx)),
                event_thread: Mutex::new(None),
            }),
        })
    }

    /// The bound transports with their real ports.
    pub fn local_addrs(&self) -> Vec<(TransportKind, SocketAddr)> {
        self.inner.shared.bound.clone()
    }

    /// The bound UDP address, if any (the port to give peers for direct calls).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.inner
            .shared
            .bound
            .iter()
            .find(|(t, _)| *t == TransportKind::Udp)
            .map(|(_, a)| *a)
    }

    /// Waits up to `timeout` for the next event (the pull API for hosts with their own loop).
    /// `None` on timeout, after shutdown, or when an event handler was set.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        let rx = self.inner.events_rx.lock().ok()?;
        rx.as_ref()?.recv_timeout(timeout).ok()
    }

    /// Delivers every further event to `handler`, one at a time, on one SDK event thread (never
    /// under an internal lock: the handler may call any API, including hang-up and shutdown).
    /// Replaces the pull API. Errors: [`ApiError::InvalidState`] if a handler was already set.
    pub fn set_event_handler(
        &self,
        mut handler: Box<dyn FnMut(Event) + Send + 'static>,
    ) -> Result<(), ApiError> {
        let rx = self
            .inner
            .events_rx
            .lock()
            .map_err(|_| ApiError::Shutdown)?
            .take()
            .ok_or_else(|| ApiError::InvalidState("event handler already set".into()))?;
        let t = std::thread::Builder::new()
            .name("rvoip-events".into())
            .spawn(move || {
                while let Ok(ev) = rx.recv() {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(ev)));
                    if r.is_err() {
                        tracing::error!("event handler panicked");
                    }
                }
            })
            .map_err(|e| ApiError::Network(format!("event thread: {e}")))?;
        if let Ok(mut g) = self.inner.event_thread.lock() {
            *g = Some(t);
        }
        Ok(())
    }

    /// Adds an account (not registered yet: [`Account::register`]). The server (or the AOR's
    /// host) is resolved now. Errors: [`ApiError::InvalidArgument`] (bad AOR, transport not
    /// configured), [`ApiError::Network`] (name not resolvable).
    pub fn add_account(&self, opts: AccountOptions) -> Result<Account, ApiError> {
        let aor = parse_uri(&opts.aor)?;
        if aor.user.is_none() {
            return Err(ApiError::InvalidArgument(format!("AOR without user: {}", opts.aor)));
        }
        let server = match &opts.server {
            Some(s) => resolve_hostport(s)?,
            None => resolve_uri(&aor)?,
        };
        let local = self.inner.shared.local_for(server, opts.transport)?;
        let username = if opts.username.is_empty() {
            aor.user_unescaped().unwrap_or_default()
        } else {
            opts.username.clone()
        };
        let cfg = AccountConfig {
            aor,
            credentials: Credentials {
                username,
                password: opts.password.clone(),
            },
            server,
            transport: opts.transport,
            local,
            expires_s: opts.expires_s.max(1),
        };
        let shared = &self.inner.shared;
        let id = lock(&shared.core).ua.add_account(cfg);
        Ok(Account::new(id, Arc::downgrade(&self.inner)))
    }

    /// A handle to an existing account. Errors: [`ApiError::NotFound`].
    pub fn account(&self, id: AccountId) -> Result<Account, ApiError> {
        lock(&self.inner.shared.core).ua.registration_state(id)?;
        Ok(Account::new(id, Arc::downgrade(&self.inner)))
    }

    /// Places a call to `target` (`sip:user@host[:port][;transport=tcp]`): through the
    /// account's server when `account` is given, else directly to the target's host.
    /// Errors: [`ApiError::InvalidArgument`] (URI), [`ApiError::Network`] (resolution, media
    /// ports), [`ApiError::NotFound`] (account removed).
    pub fn make_call(
        &self,
        account: Option<&Account>,
        target: &str,
        opts: CallOptions,
    ) -> Result<Call, ApiError> {
        let target = parse_uri(target)?;
        let shared = &self.inner.shared;
        let (dest, transport) = match account {
            Some(a) => {
                let core = lock(&shared.core);
                let c = core.ua.account_config(a.id())?;
                (c.server, c.transport)
            }
            None => (
                resolve_uri(&target)?,
                build::uri_transport(&target).unwrap_or(TransportKind::Udp),
            ),
        };
        let local = shared.local_for(dest, transport)?;
        let ports = shared.media_ports(local.ip())?;
        let media = shared.local_media(local.ip(), ports.rtp_port());
        let mut core = lock(&shared.core);
        let now = Instant::now();
        let id = core.ua.make_call(
            now,
            account.map(|a| a.id()),
            target,
            dest,
            transport,
            local,
            media,
        )?;
        core.media.insert(
            id,
            CallMedia {
                ports: Some(ports),
                source: opts.source,
                sink: opts.sink,
                ..CallMedia::default()
            },
        );
        shared.pump(&mut core);
        drop(core);
        Ok(Call::new(id, Arc::downgrade(&self.inner)))
    }

    /// A handle to an existing call (e.g. from [`Event::IncomingCall`]). Errors:
    /// [`ApiError::NotFound`] (unknown or ended).
    pub fn call(&self, id: CallId) -> Result<Call, ApiError> {
        lock(&self.inner.shared.core).ua.call_state(id)?;
        Ok(Call::new(id, Arc::downgrade(&self.inner)))
    }

    /// Number of calls not yet ended.
    pub fn call_count(&self) -> usize {
        lock(&self.inner.shared.core).ua.call_count()
    }

    /// Hangs up every call, unregisters every account and stops the runtime (waits up to
    /// 500 ms for the BYEs and REGISTERs to go out). Further calls give [`ApiError::Shutdown`]
    /// or `NotFound`. Also done when the last clone of the endpoint is dropped.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        let Some(runtime) = self.runtime.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let shared = &self.shared;
        {
            let mut core = lock(&shared.core);
            let now = Instant::now();
            let calls: Vec<CallId> = core.media.keys().copied().collect();
            for c in calls {
                let _ = core.ua.hangup(now, c);
            }
            shared.pump(&mut core);
            for (_, m) in core.media.drain() {
                if let Some(h) = m.handle {
                    h.stop();
                }
            }
        }
        shared.stop.notify_one();
        runtime.shutdown_timeout(Duration::from_millis(500));
        if let Ok(mut e) = shared.events.lock() {
            e.take();
        }
        let t = self.event_thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The runtime may be dropped from inside an async context (a test's runtime):
        // shutdown_timeout blocks briefly, which tokio allows outside its own workers.
        if let Some(rt) = self.runtime.lock().ok().and_then(|mut r| r.take()) {
            {
                let mut core = lock(&self.shared.core);
                let now = Instant::now();
                let calls: Vec<CallId> = core.media.keys().copied().collect();
                for c in calls {
                    let _ = core.ua.hangup(now, c);
                }
                self.shared.pump(&mut core);
            }
            rt.shutdown_background();
        }
        if let Ok(mut e) = self.shared.events.lock() {
            e.take();
        }
    }
}

/// Binds the UDP socket and TCP listener of `cfg` (TCP on the UDP port when both are asked
/// for the same address).
#[allow(clippy::type_complexity)]
fn bind(
    cfg: &EndpointConfig,
) -> Result<
    (
        Option<Arc<UdpSocket>>,
        Option<TcpListener>,
        Vec<(TransportKind, SocketAddr)>,
    ),
    ApiError,
> {
    let mut bound = Vec::new();
    let net = |what: &str, a: SocketAddr, e: std::io::Error| {
        ApiError::Network(format!("cannot bind {what} {a}: {e}"))
    };
    let mut udp = None;
    if let Some(a) = cfg.udp {
        let s = std::net::UdpSocket::bind(a).map_err(|e| net("udp", a, e))?;
        s.set_nonblocking(true).map_err(|e| net("udp", a, e))?;
        let la = s.local_addr().map_err(|e| net("udp", a, e))?;
        let s = UdpSocket::from_std(s).map_err(|e| net("udp", a, e))?;
        bound.push((TransportKind::Udp, la));
        udp = Some(Arc::new(s));
    }
    let mut tcp = None;
    if let Some(mut a) = cfg.tcp {
        if a.port() == 0 {
            if let (Some(u), Some(cu)) = (bound.first(), cfg.udp) {
                if cu.ip() == a.ip() {
                    a.set_port(u.1.port());
                }
            }
        }
        let l = std::net::TcpListener::bind(a).map_err(|e| net("tcp", a, e))?;
        l.set_nonblocking(true).map_err(|e| net("tcp", a, e))?;
        let la = l.local_addr().map_err(|e| net("tcp", a, e))?;
        let l = TcpListener::from_std(l).map_err(|e| net("tcp", a, e))?;
        bound.push((TransportKind::Tcp, la));
        tcp = Some(l);
    }
    Ok((udp, tcp, bound))
}

/// Parses a target or AOR; accepts `user@host` without the scheme.
pub(crate) fn parse_uri(s: &str) -> Result<Uri, ApiError> {
    let s = s.trim();
    let text = if s.contains(':') && (s.starts_with("sip:") || s.starts_with("sips:")) {
        s.to_string()
    } else if s.contains('@') {
        format!("sip:{s}")
    } else {
        s.to_string()
    };
    let uri = Uri::parse(&text.clone().into())
        .map_err(|_| ApiError::InvalidArgument(format!("not a SIP URI: {s}")))?;
    if !uri.is_sip() {
        return Err(ApiError::InvalidArgument(format!("not a SIP URI: {s}")));
    }
    Ok(uri)
}

fn resolve_uri(uri: &Uri) -> Result<SocketAddr, ApiError> {
    if let Some(a) = build::uri_addr(uri) {
        return Ok(a);
    }
    let host = uri.host.trim_start_matches('[').trim_end_matches(']');
    resolve(host, uri.port.unwrap_or(5060))
}

fn resolve_hostport(s: &str) -> Result<SocketAddr, ApiError> {
    let s = s.trim();
    if s.starts_with("sip:") || s.starts_with("sips:") {
        return resolve_uri(&parse_uri(s)?);
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 5060));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => resolve(h, p.parse().unwrap_or(5060)),
        _ => resolve(s, 5060),
    }
}

/// A-record lookup (no RFC 3263 NAPTR/SRV yet), IPv4 first.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, ApiError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ApiError::Network(format!("cannot resolve {host}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| ApiError::Network(format!("no address for {host}")))
}

impl Shared {
    /// Our address facing `peer`: the listen IP when bound to one, else the source address the
    /// OS routes from (a connected UDP probe, no packet sent), with our listen port.
    fn local_for(&self, peer: SocketAddr, transport: TransportKind) -> Result<SocketAddr, ApiError> {
        let port_of = |t: TransportKind| {
            self.bound
                .iter()
                .find(|(k, _)| *k == t)
                .or(self.bound.first())
                .map(|(_, a)| *a)
        };
        let Some(listen) = port_of(transport) else {
            return Err(ApiError::InvalidArgument("transport not configured".into()));
        };
        if !listen.ip().is_unspecified() {
            return Ok(listen);
        }
        let ip = {
            let mut core = lock(&self.core);
            match core.facing.get(&peer.ip()) {
                Some(ip) => *ip,
                None => {
                    let ip = facing_ip(peer);
                    core.facing.insert(peer.ip(), ip);
                    ip
                }
            }
        };
        Ok(SocketAddr::new(ip, listen.port()))
    }

    fn local_for_locked(&self, core: &mut Core, peer: SocketAddr, transport: TransportKind) -> SocketAddr {
        let listen = self
            .bound
            .iter()
            .find(|(k, _)| *k == transport)
            .or(self.bound.first())
            .map(|(_, a)| *a)
            .unwrap_or_else(|| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 5060));
        if !listen.ip().is_unspecified() {
            return listen;
        }
        let ip = *core
            .facing
            .entry(peer.ip())
            .or_insert_with(|| facing_ip(peer));
        SocketAddr::new(ip, listen.port())
    }

    /// Binds an RTP/RTCP pair on the interface facing the peer (or the wildcard when listening
    /// on one). Errors: [`ApiError::Network`].
    pub(crate) fn media_ports(&self, facing: IpAddr) -> Result<MediaPorts, ApiError> {
        let listen_ip = self.bound.first().map(|(_, a)| a.ip());
        let ip = match listen_ip {
            Some(ip) if !ip.is_unspecified() => ip,
            _ if facing.is_ipv4() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        MediaPorts::bind(ip).map_err(|e| ApiError::Network(format!("media ports: {e}")))
    }

    pub(crate) fn local_media(&self, facing: IpAddr, port: u16) -> LocalMedia {
        LocalMedia {
            addr: self.cfg.public_ip.unwrap_or(facing),
            port,
            codecs: self.cfg.codecs.clone(),
            dtmf: self.cfg.dtmf,
            direction: Direction::SendRecv,
        }
    }

    pub(crate) fn emit(&self, ev: Event) {
        if let Ok(g) = self.events.lock() {
            if let Some(tx) = g.as_ref() {
                let _ = tx.send(ev);
            }
        }
    }

    /// Sends what the core transmits and acts on its events. Runs under the core lock.
    pub(crate) fn pump(&self, core: &mut Core) {
        loop {
            let mut idle = true;
            while let Some(t) = core.ua.poll_transmit() {
                idle = false;
                self.send(core, t);
            }
            while let Some(ev) = core.ua.poll_event() {
                idle = false;
                self.on_ua_event(core, ev);
            }
            if idle {
                break;
            }
        }
        self.wake.notify_one();
    }

    fn send(&self, core: &mut Core, t: Transmit) {
        match t.transport {
            TransportKind::Udp => {
                let Some(sock) = self.udp.clone() else { return };
                match sock.try_send_to(&t.bytes, t.dest) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        self.rt.spawn(async move {
                            let _ = sock.send_to(&t.bytes, t.dest).await;
                        });
                    }
                    Err(e) => tracing::debug!(dest = %t.dest, error = %e, "udp send failed"),
                }
            }
            TransportKind::Tcp => {
                if let Some(c) = core.conns.get(&t.dest) {
                    if c.send(t.bytes.clone()).is_ok() {
                        return;
                    }
                }
                let (tx, rx) = mpsc::unbounded_channel();
                let _ = tx.send(t.bytes);
                core.conns.insert(t.dest, tx);
                self.rt.spawn(crate::driver::tcp::connect(
                    t.dest,
                    rx,
                    self.inbound.clone(),
                    Limits::default(),
                ));
            }
        }
    }

    fn media_config(&self, n: &Negotiated) -> MediaConfig {
        let mut cfg = MediaConfig::new(n.codec, n.remote);
        cfg.payload_type = n.payload_type;
        cfg.telephone_event_pt = n.telephone_event_pt;
        cfg.direction = n.direction;
        cfg.frame_ms = self.cfg.ptime_ms;
        cfg.rx_loss_percent = self.cfg.rx_loss_percent;
        cfg
    }

    fn on_ua_event(&self, core: &mut Core, ev: UaEvent) {
        match ev {
            UaEvent::Registration { account, state } => {
                self.emit(Event::RegistrationState { account, state })
            }
            UaEvent::IncomingCall {
                call,
                account,
                from,
                to,
            } => {
                core.media.insert(call, CallMedia::default());
                self.emit(Event::IncomingCall {
                    call,
                    account,
                    from,
                    to,
                });
            }
            UaEvent::CallState { call, state } => {
                if matches!(state, CallState::Ended { .. }) {
                    if let Some(m) = core.media.remove(&call) {
                        if let Some(h) = m.handle {
                            h.stop();
                        }
                    }
                }
                self.emit(Event::CallState { call, state });
            }
            UaEvent::MediaStart { call, media } => {
                let cfg = self.media_config(&media);
                let Some(m) = core.media.get_mut(&call) else { return };
                let Some(ports) = m.ports.take() else { return };
                let source = m
                    .source
                    .take()
                    .unwrap_or_else(|| default_source(cfg.codec));
                let sink = m.sink.take().unwrap_or_else(|| default_sink(cfg.codec));
                let events = self.events.lock().ok().and_then(|g| g.clone());
                let on_event: Box<dyn Fn(MediaEvent) + Send + Sync> = Box::new(move |ev| {
                    if let (MediaEvent::Dtmf(digit), Some(tx)) = (ev, events.as_ref()) {
                        let _ = tx.send(Event::DtmfReceived { call, digit });
                    }
                });
                let _g = self.rt.enter();
                match crate::driver::media::spawn(ports, cfg, source, sink, Box::new(on_event)) {
                    Ok(h) => {
                        if m.muted {
                            h.set_mute(true);
                        }
                        m.handle = Some(h);
                        self.emit(media_started(call, &media));
                    }
                    Err(e) => tracing::warn!(call = call.0, error = %e, "media did not start"),
                }
            }
            UaEvent::MediaUpdate { call, media } => {
                let cfg = self.media_config(&media);
                if let Some(h) = core.media.get(&call).and_then(|m| m.handle.as_ref()) {
                    if let Err(e) = h.update(cfg) {
                        tracing::warn!(call = call.0, error = %e, "media update failed");
                    }
                }
                self.emit(media_started(call, &media));
            }
            UaEvent::MediaStop { call } => {
                if let Some(m) = core.media.get_mut(&call) {
                    if let Some(h) = m.handle.take() {
                        // The final figures, before the stream is gone.
                        let stats = h.stats();
                        h.stop();
                        self.emit(Event::Statistics { call, stats });
                    }
                }
                self.emit(Event::MediaStopped { call });
            }
        }
    }
}

fn media_started(call: CallId, n: &Negotiated) -> Event {
    let direction = match n.direction {
        Direction::SendRecv => "sendrecv",
        Direction::SendOnly => "sendonly",
        Direction::RecvOnly => "recvonly",
        Direction::Inactive => "inactive",
    };
    Event::MediaStarted {
        call,
        codec: n.codec.name.to_string(),
        remote: n.remote,
        direction: direction.into(),
    }
}

/// The default input: the system's default microphone with the `audio-device` feature (if it
/// opens), else silence at the codec's rate.
fn default_source(codec: crate::sdp::AudioCodec) -> Box<dyn AudioSource> {
    #[cfg(feature = "audio-device")]
    {
        if let Ok(d) = crate::media::device::DeviceSource::open(None) {
            return Box::new(d);
        }
    }
    Box::new(SilenceSource {
        rate: crate::media::codec::audio_rate(&codec),
    })
}

/// The default output: the default speaker with the `audio-device` feature, else discarded.
fn default_sink(codec: crate::sdp::AudioCodec) -> Box<dyn AudioSink> {
    #[cfg(feature = "audio-device")]
    {
        if let Ok(d) = crate::media::device::DeviceSink::open(None) {
            return Box::new(d);
        }
    }
    Box::new(NullSink {
        rate: crate::media::codec::audio_rate(&codec),
    })
}

/// The local IP the OS would use toward `peer` (connect() on a UDP socket sends nothing).
fn facing_ip(peer: SocketAddr) -> IpAddr {
    let any: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(peer).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or_else(|| crate::server::local::primary_ipv4())
}

/// The driver task: reads UDP and the TCP inbound channel, runs timers, emits statistics.
async fn run(shared: Arc<Shared>, udp: Option<Arc<UdpSocket>>, mut inbound: mpsc::Receiver<Inbound>) {
    let mut buf = vec![0u8; 65_536];
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    let stats_every = shared.cfg.stats_interval;
    let mut next_stats = stats_every.map(|d| tokio::time::Instant::now() + d);
    loop {
        let deadline = lock(&shared.core)
            .ua
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(far);
        let deadline = next_stats.map_or(deadline, |s| s.min(deadline));
        let recv = async {
            match &udp {
                Some(s) => s.recv_from(&mut buf).await.map(|(n, a)| (n, a)),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.stop.notified() => break,
            r = recv => {
                match r {
                    Ok((n, source)) => {
                        let Some(d) = buf.get(..n) else { continue };
                        if d.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            continue; // keep-alive
                        }
                        let data = Bytes::copy_from_slice(d);
                        let mut core = lock(&shared.core);
                        let local = shared.local_for_locked(&mut core, source, TransportKind::Udp);
                        core.ua.handle_datagram(Instant::now(), data, source, TransportKind::Udp, local);
                        shared.pump(&mut core);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive error");
                    }
                }
            }
            m = inbound.recv() => {
                let Some(m) = m else { break };
                let mut core = lock(&shared.core);
                match m {
                    Inbound::Msg { data, source, transport } => {
                        let local = shared.local_for_locked(&mut core, source, transport);
                        core.ua.handle_datagram(Instant::now(), data, source, transport, local);
                        shared.pump(&mut core);
                    }
                    Inbound::TcpOpened { peer, tx } => {
                        core.conns.insert(peer, tx);
                    }
                    Inbound::TcpClosed { peer } => {
                        core.conns.remove(&peer);
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                let mut core = lock(&shared.core);
                if core.ua.poll_timeout().is_some_and(|t| t <= now) {
                    core.ua.handle_timeout(now);
                    shared.pump(&mut core);
                }
                if let (Some(at), Some(every)) = (next_stats, stats_every) {
                    if at <= tokio::time::Instant::now() {
                        next_stats = Some(at + every);
                        let stats: Vec<_> = core
                            .media
                            .iter()
                            .filter_map(|(c, m)| m.handle.as_ref().map(|h| (*c, h.stats())))
                            .collect();
                        drop(core);
                        for (call, stats) in stats {
                            shared.emit(Event::Statistics { call, stats });
                        }
                    }
                }
            }
            _ = shared.wake.notified() => {}
        }
    }
}
