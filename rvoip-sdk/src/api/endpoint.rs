//! The endpoint: the tokio driver of one [`UserAgent`] core and the media streams of its calls.
//!
//! One lock (`Shared::core`) guards the user agent core and the per-call media state; API
//! methods and the driver task take it, run the core, send what it transmits (UDP `try_send_to`
//! or a TCP connection's writer channel, both non-blocking) and turn core events into media
//! actions and app [`Event`]s, then release it. No lock is held across an await, and app code
//! (the event handler) never runs under it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use super::handles::{Account, Call};
use super::net::{Dns, bind, parse_uri, resolve, run, server_target, uri_target};
use super::{AccountOptions, ApiError, CallOptions, EndpointConfig, Event};
use crate::driver::media::{MediaHandle, MediaPorts};
use crate::driver::transport::Transports;
use crate::media::audio::{AudioSink, AudioSource};
use crate::sip::msg::Limits;
use crate::sip::resolve::Proto;
use crate::sip::transaction::Transport;
use crate::sip::ua::{AccountConfig, AccountId, CallId, Credentials, NextHop, UaConfig, UserAgent};

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
    /// The send path (UDP socket, stream connections).
    pub(crate) transports: Transports,
    pub(crate) facing: HashMap<IpAddr, IpAddr>,
}

/// The sending end of the app's event queue, bounded by `max_pending_events`.
#[derive(Clone)]
pub(crate) struct EventSender {
    tx: std_mpsc::SyncSender<Event>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl EventSender {
    /// Queues `ev` without blocking. Returns false (and counts it) when the queue is full; a
    /// queue whose reader is gone takes nothing either.
    pub(crate) fn send(&self, ev: Event) -> bool {
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(std_mpsc::TrySendError::Full(ev)) => {
                let n = self
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n.is_power_of_two() || n == 0 {
                    tracing::warn!(dropped = n + 1, event = ?ev, "event queue full: the app is not reading events; event dropped");
                }
                false
            }
            Err(std_mpsc::TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Shared between the API and the driver task.
pub(crate) struct Shared {
    pub(crate) core: Mutex<Core>,
    pub(crate) wake: Notify,
    pub(crate) stop: Notify,
    pub(crate) events: Mutex<Option<EventSender>>,
    /// Events dropped because the app had `max_pending_events` unread.
    pub(crate) dropped_events: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) cfg: EndpointConfig,
    pub(crate) bound: Vec<(Transport, SocketAddr)>,
    pub(crate) rt: tokio::runtime::Handle,
    /// Name lookups (RFC 3263) for account servers and call targets.
    pub(crate) dns: Arc<Dns>,
    /// Our DTLS-SRTP certificate (self-signed ECDSA P-256, made once per endpoint); `None` if it
    /// could not be made, which turns DTLS-SRTP off.
    pub(crate) dtls: Option<crate::media::dtls::DtlsIdentity>,
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

pub(crate) fn lock(m: &Mutex<Core>) -> MutexGuard<'_, Core> {
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
            return Err(ApiError::InvalidArgument(format!(
                "ptime {} ms",
                cfg.ptime_ms
            )));
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
        let dtls = match crate::media::dtls::DtlsIdentity::generate() {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(error = %e, "no DTLS certificate: DTLS-SRTP is off");
                None
            }
        };
        let ua_cfg = UaConfig {
            timers: cfg.timers,
            limits: Limits::default(),
            codecs: cfg.codecs.clone(),
            dtmf: cfg.dtmf,
            register_retry_min: cfg.register_retry_min,
            register_retry_max: cfg.register_retry_max,
            contact_user: "rvoip".into(),
            srtp: cfg.srtp,
            dtls_fingerprint: dtls.as_ref().map(|d| d.fingerprint().clone()),
            sip_instance: cfg.sip_instance.clone(),
        };
        let (inbound, inbound_rx) = mpsc::channel(4096);
        let (ev_tx, ev_rx) = std_mpsc::sync_channel(cfg.max_pending_events.max(1));
        let dropped_events = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let dns = Arc::new(Dns::new(cfg.dns_server));
        // The endpoint's own listener serves one app's peers: framing limits, no connection
        // limits (those protect the server).
        let conns = crate::driver::conn::Conns::new(
            Limits::default(),
            crate::driver::conn::ConnPolicy::UNLIMITED,
        );
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                ua: UserAgent::new(ua_cfg),
                media: HashMap::new(),
                transports: Transports::new(
                    udp.iter().cloned().collect(),
                    inbound.clone(),
                    conns.clone(),
                    rt.clone(),
                ),
                facing: HashMap::new(),
            }),
            wake: Notify::new(),
            stop: Notify::new(),
            events: Mutex::new(Some(EventSender {
                tx: ev_tx,
                dropped: dropped_events.clone(),
            })),
            dropped_events,
            cfg,
            bound,
            rt: rt.clone(),
            dns,
            dtls,
        });
        if let Some(l) = tcp {
            rt.spawn(crate::driver::tcp::accept_loop(l, inbound, conns));
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
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.inner.shared.bound.clone()
    }

    /// The bound UDP address, if any (the port to give peers for direct calls).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.inner
            .shared
            .bound
            .iter()
            .find(|(t, _)| *t == Transport::Udp)
            .map(|(_, a)| *a)
    }

    /// Events dropped so far because `max_pending_events` were waiting unread (see
    /// [`super::EndpointConfig::max_pending_events`]).
    pub fn dropped_events(&self) -> u64 {
        self.inner
            .shared
            .dropped_events
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits up to `timeout` for the next event (the pull API for hosts with their own loop).
    /// `None` on timeout, after shutdown, or when an event handler was set.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        let rx = self.inner.events_rx.lock().ok()?;
        rx.as_ref()?.recv_timeout(timeout).ok()
    }

    /// Whether an event handler was set (then [`Endpoint::next_event`] gives nothing).
    pub fn has_event_handler(&self) -> bool {
        self.inner
            .event_thread
            .lock()
            .map(|t| t.is_some())
            .unwrap_or(false)
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
    /// host) is resolved now, per RFC 3263 (see [`AccountOptions::server`]): all the addresses
    /// found become the registration's failover list, in order. For TLS every one of them must
    /// present a certificate for the server's host name (or the AOR's domain), RFC 5922.
    /// May block for the DNS lookups (at most 20 s).
    ///
    /// Errors: [`ApiError::InvalidArgument`] (bad AOR or server, transport not configured, a
    /// `sips:` AOR over a plaintext transport), [`ApiError::Network`] (name not resolvable; a
    /// `sips:` AOR whose domain offers no TLS), [`ApiError::Shutdown`].
    pub fn add_account(&self, opts: AccountOptions) -> Result<Account, ApiError> {
        if self.inner.is_shut_down() {
            return Err(ApiError::Shutdown);
        }
        let aor = parse_uri(&opts.aor)?;
        if aor.user.is_none() {
            return Err(ApiError::InvalidArgument(format!(
                "AOR without user: {}",
                opts.aor
            )));
        }
        if aor.scheme == crate::sip::msg::Scheme::Sips && !opts.transport.is_secure() {
            return Err(ApiError::InvalidArgument(format!(
                "{}: a sips: AOR registers over TLS only (RFC 5630), not {}",
                opts.aor, opts.transport
            )));
        }
        if matches!(opts.transport, Transport::Ws | Transport::Wss) {
            return Err(ApiError::InvalidArgument(format!(
                "transport {} is not supported by an endpoint (UDP, TCP, TLS)",
                opts.transport
            )));
        }
        let mut target = match &opts.server {
            Some(s) => server_target(s)?,
            None => uri_target(&aor),
        };
        // A sips: AOR is registered over TLS hop by hop, whatever the server string says.
        target.secure |= aor.scheme == crate::sip::msg::Scheme::Sips;
        // The one transport this account uses picks the NAPTR services and SRV records
        // (a `transport=` of the server URI over the account's setting).
        let proto = match target.transport {
            Some(p) if target.secure => p.secured().unwrap_or(p),
            Some(p) => p,
            None => Proto::from(opts.transport),
        };
        let shared = &self.inner.shared;
        let dests = resolve(shared, &target, &[proto])?;
        let mut hops = Vec::with_capacity(dests.len());
        let mut tls_config = None;
        for d in &dests {
            let transport = Transport::from(d.proto);
            if transport == Transport::Tls {
                let config = match &tls_config {
                    Some(c) => Arc::clone(c),
                    None => {
                        let c = crate::driver::tls::client_config(&opts.tls)
                            .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
                        tls_config = Some(c.clone());
                        c
                    }
                };
                let name =
                    rustls_pki_types::ServerName::try_from(d.host.clone()).map_err(|_| {
                        ApiError::InvalidArgument(format!("not a TLS server name: {}", d.host))
                    })?;
                lock(&shared.core)
                    .transports
                    .set_tls_peer(d.addr, name, config);
            }
            hops.push(NextHop {
                addr: d.addr,
                transport,
                local: shared.local_for(d.addr, transport)?,
            });
        }
        let Some(first) = hops.first().copied() else {
            return Err(ApiError::Network(format!("no address for {}", target.host)));
        };
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
            server: first.addr,
            transport: first.transport,
            local: first.local,
            expires_s: opts.expires_s.max(1),
            alternates: hops.split_off(1),
            srtp: opts.srtp,
            dtmf_mode: opts.dtmf_mode,
        };
        let id = lock(&shared.core).ua.add_account(cfg);
        Ok(Account::new(id, Arc::downgrade(&self.inner)))
    }

    /// A handle to an existing account. Errors: [`ApiError::NotFound`].
    pub fn account(&self, id: AccountId) -> Result<Account, ApiError> {
        lock(&self.inner.shared.core).ua.registration_state(id)?;
        Ok(Account::new(id, Arc::downgrade(&self.inner)))
    }

    /// Places a call to `target` (`sip:user@host[:port][;transport=tcp]`): through the
    /// account's server (the destination its registration uses) when `account` is given, else
    /// directly to the first destination RFC 3263 finds for the target (NAPTR, SRV, A/AAAA;
    /// `sips:` over TLS only, verified for the target's host name). May block for the DNS
    /// lookups (at most 20 s).
    /// Errors: [`ApiError::InvalidArgument`] (URI), [`ApiError::Network`] (resolution, media
    /// ports), [`ApiError::NotFound`] (account removed), [`ApiError::Shutdown`].
    pub fn make_call(
        &self,
        account: Option<&Account>,
        target: &str,
        opts: CallOptions,
    ) -> Result<Call, ApiError> {
        let target = parse_uri(target)?;
        let account = account.map(|a| a.id());
        let t = target.clone();
        self.place_call(
            account,
            &target,
            opts,
            move |ua, dest, transport, local, media| {
                ua.make_call(Instant::now(), account, t, dest, transport, local, media)
            },
        )
    }

    /// Places a call to `target` the way [`Endpoint::make_call`] does (route, media ports, SRTP
    /// settings), with `start` sending the INVITE.
    pub(crate) fn place_call(
        &self,
        account: Option<AccountId>,
        target: &crate::sip::msg::Uri,
        opts: CallOptions,
        start: impl FnOnce(
            &mut crate::sip::ua::UserAgent,
            SocketAddr,
            Transport,
            SocketAddr,
            crate::sdp::LocalMedia,
        ) -> Result<CallId, crate::sip::ua::UaError>,
    ) -> Result<Call, ApiError> {
        if self.inner.is_shut_down() {
            return Err(ApiError::Shutdown);
        }
        let shared = &self.inner.shared;
        let (dest, transport) = match account {
            Some(a) => {
                let core = lock(&shared.core);
                let c = core.ua.account_config(a)?;
                (c.server, c.transport)
            }
            None => {
                // Outgoing TCP and TLS need no listener; UDP needs the bound socket.
                let supported: &[Proto] = if shared.cfg.udp.is_some() {
                    &[Proto::Udp, Proto::Tcp, Proto::Tls]
                } else {
                    &[Proto::Tcp, Proto::Tls]
                };
                let dests = resolve(shared, &uri_target(target), supported)?;
                let Some(d) = dests.into_iter().next() else {
                    return Err(ApiError::Network(format!("no address for {}", target.host)));
                };
                let transport = Transport::from(d.proto);
                if transport == Transport::Tls {
                    lock(&shared.core).transports.set_tls_name(d.addr, &d.host);
                }
                (d.addr, transport)
            }
        };
        if target.scheme == crate::sip::msg::Scheme::Sips && !transport.is_secure() {
            return Err(ApiError::InvalidArgument(format!(
                "{target}: a sips: target is reached over TLS only (RFC 5630); the account uses \
                 {transport}"
            )));
        }
        let local = shared.local_for(dest, transport)?;
        let ports = shared.media_ports(local.ip())?;
        let mut core = lock(&shared.core);
        let srtp = match account {
            Some(a) => core.ua.account_config(a)?.srtp,
            None => shared.cfg.srtp,
        };
        let media = shared.local_media(local.ip(), ports.rtp_port(), &srtp, transport.is_secure());
        let id = start(&mut core.ua, dest, transport, local, media)?;
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
    /// Whether [`Endpoint::shutdown`] ran (the runtime is gone).
    pub(crate) fn is_shut_down(&self) -> bool {
        self.runtime.lock().map(|r| r.is_none()).unwrap_or(true)
    }

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
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside some async context (not ours): blocking there is not allowed.
            runtime.shutdown_background();
        } else {
            runtime.shutdown_timeout(Duration::from_millis(500));
        }
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
