//! The endpoint: one per app. It owns the SIP sockets, the accounts and the calls, and
//! delivers events to subscribed [`EndpointListener`]s.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rvoip_sdk::api as sdk;

use crate::RvoipError;
use crate::account::{Account, AccountOptions, SrtpKeying, SrtpPolicy, Transport, srtp_config};
use crate::call::{Call, CallOptions};
use crate::listener::{Dispatcher, EndpointListener, Subscription};
use crate::server::{LocalAddress, addresses, port_of};

/// Settings of an [`Endpoint`]; every field has a default.
#[derive(Debug, Clone, uniffi::Record)]
pub struct EndpointOptions {
    /// UDP listen address `IP:port` (port 0 picks a free one); empty for no UDP.
    #[uniffi(default = "0.0.0.0:5060")]
    pub udp: String,
    /// TCP listen address `IP:port`; empty for the UDP address and port.
    #[uniffi(default = "")]
    pub tcp: String,
    /// Listen on TCP as well.
    #[uniffi(default = true)]
    pub enable_tcp: bool,
    /// Codecs in preference order, from `opus`, `G722`, `PCMU`, `PCMA` (case-insensitive);
    /// empty for the engine's order (Opus if built, G.722, PCMU, PCMA).
    #[uniffi(default)]
    pub codecs: Vec<String>,
    /// Offer and accept telephone-event for DTMF (RFC 4733).
    #[uniffi(default = true)]
    pub dtmf: bool,
    /// RTP packetization time in ms (10..=60, a multiple of 10).
    #[uniffi(default = 20)]
    pub ptime_ms: u32,
    /// The IP written in SDP and Contact instead of the local one (known public address).
    #[uniffi(default)]
    pub public_ip: Option<String>,
    /// Period of `Event.Statistics` in ms; 0 for none.
    #[uniffi(default = 5000)]
    pub stats_interval_ms: u32,
    /// Receive loss emulation on every call's RTP in percent (0..=100), for tests.
    #[uniffi(default = 0.0)]
    pub rx_loss_percent: f32,
    /// The DNS server as `IP:port` (e.g. `127.0.0.1:53`, `[::1]:5353`), asked over UDP then TCP
    /// for the NAPTR, SRV and A/AAAA records that locate account servers and call targets
    /// (RFC 3263); the hosts file is then not read (`localhost` still means 127.0.0.1).
    /// `None` (or empty): the system configuration (`/etc/resolv.conf` and the hosts file).
    /// Not an `IP:port` (a host name, no port): `InvalidArgument` from `Endpoint.new`. Nothing
    /// is asked before the first name that needs a query: IP addresses never do.
    #[uniffi(default)]
    pub dns_server: Option<String>,
    /// SRTP (RFC 3711) for calls made or received without an account (an account has its
    /// own, `AccountOptions.srtp_policy`): `Off`, `Optional` or `Mandatory`; `None` for
    /// `Optional`.
    #[uniffi(default)]
    pub srtp_policy: Option<SrtpPolicy>,
    /// The key exchange of those calls' SRTP offers; `None` for `Auto` (SDES, RFC 4568, over
    /// TLS; DTLS-SRTP, RFC 5764, otherwise).
    #[uniffi(default)]
    pub srtp_keying: Option<SrtpKeying>,
    /// Allow SDES keys (`a=crypto`, RFC 4568) for those calls in SDP carried over UDP or TCP,
    /// where anyone on the path can read them (default false: over TLS only, RFC 4568 §8.3).
    #[uniffi(default = false)]
    pub srtp_sdes_over_insecure: bool,
}

fn addr(what: &str, s: &str) -> Result<SocketAddr, RvoipError> {
    s.trim()
        .parse()
        .map_err(|_| RvoipError::invalid(format!("{what} address {s:?} (want IP:port)")))
}

fn codec(name: &str) -> Result<sdk::AudioCodec, RvoipError> {
    match name.trim().to_ascii_lowercase().as_str() {
        "pcmu" => Ok(sdk::AudioCodec::PCMU),
        "pcma" => Ok(sdk::AudioCodec::PCMA),
        "g722" => Ok(sdk::AudioCodec::G722),
        "opus" => Ok(sdk::AudioCodec::OPUS),
        _ => Err(RvoipError::invalid(format!(
            "codec {name:?} (opus, G722, PCMU, PCMA)"
        ))),
    }
}

impl EndpointOptions {
    fn config(&self) -> Result<sdk::EndpointConfig, RvoipError> {
        let mut cfg = sdk::EndpointConfig::default();
        cfg.udp = if self.udp.trim().is_empty() {
            None
        } else {
            Some(addr("UDP", &self.udp)?)
        };
        cfg.tcp = match (self.enable_tcp, self.tcp.trim().is_empty()) {
            (false, _) => None,
            (true, true) => cfg.udp.or(Some(SocketAddr::from(([0, 0, 0, 0], 5060)))),
            (true, false) => Some(addr("TCP", &self.tcp)?),
        };
        if cfg.udp.is_none() && cfg.tcp.is_none() {
            return Err(RvoipError::invalid("neither UDP nor TCP enabled"));
        }
        if !self.codecs.is_empty() {
            cfg.codecs = self
                .codecs
                .iter()
                .map(|c| codec(c))
                .collect::<Result<_, _>>()?;
        }
        cfg.dtmf = self.dtmf;
        if !(10..=60).contains(&self.ptime_ms) || !self.ptime_ms.is_multiple_of(10) {
            return Err(RvoipError::invalid(format!(
                "ptime {} ms (10..=60, multiple of 10)",
                self.ptime_ms
            )));
        }
        cfg.ptime_ms = self.ptime_ms;
        cfg.public_ip = match &self.public_ip {
            Some(ip) => Some(
                ip.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| RvoipError::invalid(format!("public IP {ip:?}")))?,
            ),
            None => None,
        };
        cfg.stats_interval = (self.stats_interval_ms > 0)
            .then(|| Duration::from_millis(u64::from(self.stats_interval_ms)));
        if !(0.0..=100.0).contains(&self.rx_loss_percent) {
            return Err(RvoipError::invalid(format!(
                "rx loss {} % (0..=100)",
                self.rx_loss_percent
            )));
        }
        cfg.rx_loss_percent = self.rx_loss_percent;
        cfg.dns_server = match self.dns_server.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(addr("DNS server", s)?),
        };
        cfg.srtp = srtp_config(
            self.srtp_policy,
            self.srtp_keying,
            self.srtp_sdes_over_insecure,
        );
        Ok(cfg)
    }
}

/// A SIP user agent with its sockets, accounts and calls. Call `shutdown()` when done: it
/// hangs up, unregisters, and drops the listeners (which may hold the endpoint).
#[derive(uniffi::Object)]
pub struct Endpoint {
    inner: sdk::Endpoint,
    dispatcher: Arc<Dispatcher>,
}

#[uniffi::export(async_runtime = "tokio")]
impl Endpoint {
    /// Binds the sockets and starts the engine. Errors: `InvalidArgument` (an option),
    /// `Network` (a socket cannot be bound).
    #[uniffi::constructor]
    pub fn new(options: EndpointOptions) -> Result<Arc<Self>, RvoipError> {
        let inner = sdk::Endpoint::new(options.config()?)?;
        let dispatcher = Arc::new(Dispatcher::default());
        let d = dispatcher.clone();
        inner.set_event_handler(Box::new(move |ev| d.dispatch(ev.into())))?;
        Ok(Arc::new(Endpoint { inner, dispatcher }))
    }

    /// Delivers every further event to `listener` until the returned subscription is dropped
    /// or cancelled. Several listeners may be subscribed; each sees every event, in order.
    pub fn subscribe(&self, listener: Arc<dyn EndpointListener>) -> Arc<Subscription> {
        self.dispatcher.subscribe(listener)
    }

    /// Number of subscribed listeners.
    pub fn listener_count(&self) -> u32 {
        u32::try_from(self.dispatcher.listener_count()).unwrap_or(u32::MAX)
    }

    /// The bound SIP sockets.
    pub fn local_addresses(&self) -> Vec<LocalAddress> {
        addresses(&self.inner.local_addrs())
    }

    /// The SIP port for `transport`, if listening on it.
    pub fn port(&self, transport: Transport) -> Option<u16> {
        port_of(&self.inner.local_addrs(), transport)
    }

    /// Adds an account (not registered yet: `Account.register`). The server (or the AOR's
    /// host) is resolved now. Errors: `InvalidArgument` (AOR, transport not enabled),
    /// `Network` (host not resolvable), `Shutdown`.
    pub fn add_account(&self, options: AccountOptions) -> Result<Arc<Account>, RvoipError> {
        let inner = self.inner.add_account(options.into())?;
        Ok(Arc::new(Account {
            inner,
            dispatcher: self.dispatcher.clone(),
        }))
    }

    /// Places a call to `target` (`sip:user@host[:port][;transport=tcp]`): through `account`'s
    /// server when given, else straight to the target's host. Returns once the INVITE is sent
    /// (progress arrives as `Event.CallStateChanged`). Errors: `InvalidArgument` (URI),
    /// `InvalidState` (an audio object already used), `Network` (resolution, media ports),
    /// `NotFound` (account removed), `Shutdown`.
    #[uniffi::method(default(account = None, options = None))]
    pub async fn make_call(
        &self,
        target: String,
        account: Option<Arc<Account>>,
        options: Option<CallOptions>,
    ) -> Result<Arc<Call>, RvoipError> {
        let o = match options {
            Some(o) => o.take()?,
            None => sdk::CallOptions::default(),
        };
        let ep = self.inner.clone();
        let job = tokio::task::spawn_blocking(move || {
            ep.make_call(account.as_ref().map(|a| &a.inner), &target, o)
        });
        let inner = job.await.map_err(|_| RvoipError::Shutdown)??;
        Ok(Arc::new(Call { inner }))
    }

    /// A handle to a call by id (e.g. from `Event.IncomingCall`). Errors: `NotFound` (unknown
    /// or ended).
    pub fn call(&self, call_id: u64) -> Result<Arc<Call>, RvoipError> {
        let inner = self.inner.call(sdk::CallId(call_id))?;
        Ok(Arc::new(Call { inner }))
    }

    /// Accepts a transfer request (`Event.TransferRequested`, RFC 3515 REFER): the REFER is
    /// answered 202, a new call is placed to its target through the transferred call's
    /// account with `options`' audio, its progress is reported to the transferor (NOTIFY), and
    /// the transferred call ends once the new one is up. Returns the new call (its progress
    /// arrives as `Event.CallStateChanged`). Errors: `NotFound` (unknown, already decided, or
    /// expired after 8 s), `InvalidState` (an audio object already used), `Network`
    /// (resolution, media ports), `Shutdown`.
    #[uniffi::method(default(options = None))]
    pub async fn accept_transfer(
        &self,
        transfer_id: u64,
        options: Option<CallOptions>,
    ) -> Result<Arc<Call>, RvoipError> {
        let o = match options {
            Some(o) => o.take()?,
            None => sdk::CallOptions::default(),
        };
        let ep = self.inner.clone();
        let job = tokio::task::spawn_blocking(move || {
            ep.accept_transfer(sdk::TransferId(transfer_id), o)
        });
        let inner = job.await.map_err(|_| RvoipError::Shutdown)??;
        Ok(Arc::new(Call { inner }))
    }

    /// Refuses a transfer request (`Event.TransferRequested`) with a final SIP `status` in
    /// 300..=699 (default 603 Decline); the transferor sees it as its final
    /// `Event.TransferStatus` and the call stays up. Errors: `InvalidArgument` (status),
    /// `NotFound` (unknown, already decided, or expired), `Shutdown`.
    #[uniffi::method(default(status = 603))]
    pub fn reject_transfer(&self, transfer_id: u64, status: u16) -> Result<(), RvoipError> {
        Ok(self
            .inner
            .reject_transfer(sdk::TransferId(transfer_id), status)?)
    }

    /// Ends a presence or dialog subscription (`Account.subscribe`) with a SUBSCRIBE with
    /// `Expires: 0`; an `Event.SubscriptionStateChanged` with `Terminated` (reason
    /// `unsubscribed`) follows. (Not to be confused with `subscribe(listener)`, whose
    /// `Subscription` ends with `cancel()`.) Errors: `NotFound` (unknown or already
    /// terminated), `Shutdown`.
    pub fn unsubscribe(&self, subscription_id: u64) -> Result<(), RvoipError> {
        Ok(self
            .inner
            .unsubscribe(sdk::SubscriptionId(subscription_id))?)
    }

    /// Number of calls not yet ended.
    pub fn call_count(&self) -> u32 {
        u32::try_from(self.inner.call_count()).unwrap_or(u32::MAX)
    }

    /// Hangs up every call, unregisters every account (waiting up to 500 ms for the requests
    /// to go out), stops the engine and drops every listener. Later calls raise `Shutdown` or
    /// `NotFound`. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown();
        self.dispatcher.clear();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.dispatcher.clear();
    }
}
