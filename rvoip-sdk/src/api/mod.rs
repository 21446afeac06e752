//! The public SDK API: one [`Endpoint`] per app, [`Account`]s that register to a server, and
//! [`Call`]s with two-way audio; everything that happens arrives as one ordered stream of
//! [`Event`]s, pulled with [`Endpoint::next_event`] or pushed to a handler set with
//! [`Endpoint::set_event_handler`] (called one at a time on one SDK event thread).
//!
//! The C ABI (`ffi/`) and the UniFFI bindings (`bindings/`) are thin wrappers over this module.
//! Every method is synchronous and may be called from any thread (including from inside the
//! event handler); the endpoint runs its own tokio runtime for sockets, timers and media.
//!
//! ```no_run
//! use rvoip_sdk::api::{Endpoint, EndpointConfig, AccountOptions, CallOptions, Event};
//! use rvoip_sdk::media::audio::ToneSource;
//! # fn main() -> Result<(), rvoip_sdk::api::ApiError> {
//! let ep = Endpoint::new(EndpointConfig::default())?;
//! let alice = ep.add_account(AccountOptions::new("sip:alice@127.0.0.1", "alice-secret"))?;
//! alice.register()?;
//! let call = ep.make_call(Some(&alice), "sip:bob@127.0.0.1", CallOptions {
//!     source: Some(Box::new(ToneSource::new(440.0, 8000, 8000))),
//!     ..CallOptions::default()
//! })?;
//! while let Some(ev) = ep.next_event(std::time::Duration::from_secs(10)) {
//!     println!("{ev:?}");
//!     if let Event::CallState { state: rvoip_sdk::api::CallState::Ended { .. }, .. } = ev { break }
//! }
//! # let _ = call; Ok(()) }
//! ```

mod core;
mod endpoint;
mod handles;
mod net;
mod presence;
mod server;
mod transfer;

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::driver::stats::ServerStats;
pub use crate::driver::tls::ClientTlsOptions as TlsOptions;
pub use crate::media::audio::{AudioSink, AudioSource};
pub use crate::media::session::CallStats;
pub use crate::sdp::{AudioCodec, SrtpConfig, SrtpKeying, SrtpPolicy};
pub use crate::server::config::ServerConfig;
pub use crate::sip::presence::LineState;
pub use crate::sip::transaction::{TimerConfig, Transport};
pub use crate::sip::ua::{
    AccountId, CallId, CallState, DtmfMode, EventPackage, MessageId, RegistrationState,
    SubscriptionId, SubscriptionState, TransferId,
};
pub use endpoint::Endpoint;
pub use handles::{Account, Call};
pub use server::Server;

/// Errors of the SDK API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No account or call with this id (never existed, removed, or ended).
    #[error("not found")]
    NotFound,
    /// An argument is malformed (URI, address, status code, DTMF digit …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The operation does not fit the current state (e.g. answering an outgoing call).
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// A socket could not be bound or a name not resolved.
    #[error("network: {0}")]
    Network(String),
    /// A media or audio failure (codec unavailable, WAV file, device).
    #[error("media: {0}")]
    Media(String),
    /// The endpoint was shut down.
    #[error("endpoint is shut down")]
    Shutdown,
}

impl From<crate::sip::ua::UaError> for ApiError {
    fn from(e: crate::sip::ua::UaError) -> Self {
        use crate::sip::ua::UaError;
        match e {
            UaError::NotFound => ApiError::NotFound,
            UaError::InvalidState(s) => ApiError::InvalidState(s.into()),
            UaError::InvalidStatus(s) => ApiError::InvalidArgument(format!("status code {s}")),
            UaError::InvalidUri(u) => ApiError::InvalidArgument(format!("URI {u}")),
            UaError::InvalidArgument(a) => ApiError::InvalidArgument(a.into()),
            UaError::Sdp(e) => ApiError::Media(e.to_string()),
        }
    }
}

impl From<crate::media::session::MediaError> for ApiError {
    fn from(e: crate::media::session::MediaError) -> Self {
        use crate::media::session::MediaError;
        match e {
            MediaError::InvalidDigit(c) => ApiError::InvalidArgument(format!("DTMF digit {c:?}")),
            MediaError::NoTelephoneEvent | MediaError::NotSending => {
                ApiError::InvalidState(e.to_string())
            }
            other => ApiError::Media(other.to_string()),
        }
    }
}

/// Settings of an [`Endpoint`].
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// UDP listen address; `None` for no UDP. Default `0.0.0.0:5060`; port 0 picks a free port.
    pub udp: Option<SocketAddr>,
    /// TCP listen address; `None` for no TCP. Default: the UDP address (same port when the
    /// UDP port was 0 and got one).
    pub tcp: Option<SocketAddr>,
    /// Codecs in preference order (RFC 3264): offered in this order, and an answer takes the
    /// first of these the offer has. Codecs not built in (Opus without the `opus` feature) are
    /// dropped. Default: Opus (if built), G.722, PCMU, PCMA.
    pub codecs: Vec<AudioCodec>,
    /// Offer and accept telephone-event (RFC 4733) for DTMF. Default true.
    pub dtmf: bool,
    /// RTP packetization time (ms). Default 20.
    pub ptime_ms: u32,
    /// The IP written in SDP and Contact instead of the address facing the peer (NAT with a
    /// known public address). Default `None`.
    pub public_ip: Option<std::net::IpAddr>,
    /// RFC 3261 timers (T1, T2, T4).
    pub timers: TimerConfig,
    /// First retry delay after a registration failure (doubles up to `register_retry_max`).
    pub register_retry_min: Duration,
    /// Longest retry delay after repeated registration failures.
    pub register_retry_max: Duration,
    /// Period of [`Event::Statistics`] for calls with media; `None` for none. Default 5 s.
    pub stats_interval: Option<Duration>,
    /// Receive loss emulation on every call's RTP in percent (0..=100), like pjsua's
    /// `--rx-drop-pct`: for tests of concealment and statistics. Default 0.
    pub rx_loss_percent: f32,
    /// Tokio worker threads of the endpoint's runtime. Default 1.
    pub worker_threads: usize,
    /// The DNS server (IP and port, UDP then TCP) asked for the NAPTR, SRV and A/AAAA records
    /// that locate account servers and call targets (RFC 3263), e.g. a local dnsmasq in tests.
    /// `None` (default): the system configuration (`/etc/resolv.conf`, and the hosts file).
    /// With a server set the hosts file is not read; `localhost` still means 127.0.0.1.
    pub dns_server: Option<SocketAddr>,
    /// SRTP settings of calls made or received without an account (see
    /// [`AccountOptions::srtp`]). Default: optional, SDES only over TLS.
    pub srtp: SrtpConfig,
    /// Most events waiting for the app to read them ([`Endpoint::next_event`] or the event
    /// handler). Past it new events are dropped and counted
    /// ([`Endpoint::dropped_events`]), and an incoming call that cannot be announced is
    /// refused with 503, so that an app that stops reading cannot make the SDK grow without
    /// bound under a flood. Default 10000.
    pub max_pending_events: usize,
    /// Our instance-id for SIP Outbound (RFC 5626 §4.1), e.g.
    /// `urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6`: the same on every start of this app on
    /// this device. When set, accounts register as RFC 5626 clients (`+sip.instance`,
    /// `reg-id`, `Supported: outbound`); with a registrar that supports outbound they send
    /// keep-alives on the flow (STUN over UDP, CRLF over TCP/TLS) and register again when one
    /// goes unanswered for 10 s. Default `None`: plain registration.
    pub sip_instance: Option<String>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        let mut codecs = Vec::new();
        for c in [
            AudioCodec::OPUS,
            AudioCodec::G722,
            AudioCodec::PCMU,
            AudioCodec::PCMA,
        ] {
            if crate::media::codec::is_available(&c) {
                codecs.push(c);
            }
        }
        EndpointConfig {
            udp: Some(SocketAddr::from(([0, 0, 0, 0], 5060))),
            tcp: Some(SocketAddr::from(([0, 0, 0, 0], 5060))),
            codecs,
            dtmf: true,
            ptime_ms: 20,
            public_ip: None,
            timers: TimerConfig::default(),
            register_retry_min: Duration::from_secs(2),
            register_retry_max: Duration::from_secs(300),
            stats_interval: Some(Duration::from_secs(5)),
            rx_loss_percent: 0.0,
            worker_threads: 1,
            dns_server: None,
            srtp: SrtpConfig::default(),
            max_pending_events: 10_000,
            sip_instance: None,
        }
    }
}

impl EndpointConfig {
    /// Defaults, listening on UDP and TCP `127.0.0.1` with free ports (tests, loopback apps).
    pub fn loopback() -> EndpointConfig {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        EndpointConfig {
            udp: Some(any),
            tcp: Some(any),
            ..EndpointConfig::default()
        }
    }
}

/// An account to add with [`Endpoint::add_account`].
#[derive(Debug, Clone)]
pub struct AccountOptions {
    /// The address-of-record, e.g. `sip:alice@example.com` (`sip:alice@10.0.0.1:5070`).
    pub aor: String,
    /// Digest user name; empty for the AOR's user part.
    pub username: String,
    /// Digest password.
    pub password: String,
    /// Registrar / outbound proxy as `host[:port]` (or a `sip:`/`sips:` URI); `None` for the
    /// AOR's host and port. Resolved when the account is added, per RFC 3263: an IP address or
    /// an explicit port needs no NAPTR/SRV (a name with a port only A/AAAA); a name alone is
    /// looked up by NAPTR (services of `transport` only), else the SRV records of `transport`
    /// (`_sip._udp`, `_sip._tcp`, `_sips._tcp`) by priority and weight, else A/AAAA on the
    /// default port. The addresses found in that order are the registration's failover list
    /// (RFC 3263 §4.3; see [`Account::server`]).
    pub server: Option<String>,
    /// UDP, TCP or TLS to the server. Default UDP. A `sips:` AOR needs TLS. A `transport=`
    /// parameter of a `server` URI takes precedence.
    pub transport: Transport,
    /// How the server's TLS certificate is verified (with `transport` TLS): the system roots,
    /// plus a CA file, or a pinned SHA-256 fingerprint. Default: system roots only.
    pub tls: TlsOptions,
    /// Requested registration lifetime (s). Default 3600.
    pub expires_s: u32,
    /// SRTP for the account's calls (RFC 3711): the policy (off, optional, mandatory), the key
    /// exchange of our offers (SDES when the signalling is TLS, else DTLS-SRTP, by default),
    /// and whether SDES keys may travel over unencrypted signalling (default no). Default:
    /// optional.
    pub srtp: SrtpConfig,
    /// How the account's calls send DTMF ([`crate::api::Call::send_dtmf`]): RTP
    /// telephone-events (RFC 4733, the default) or SIP INFO (`application/dtmf-relay`).
    /// Received keys are taken both ways.
    pub dtmf_mode: crate::sip::ua::DtmfMode,
}

impl AccountOptions {
    /// An account for `aor` with `password`, the user name from the AOR, the AOR's host as
    /// server, UDP, 3600 s.
    pub fn new(aor: &str, password: &str) -> AccountOptions {
        AccountOptions {
            aor: aor.into(),
            username: String::new(),
            password: password.into(),
            server: None,
            transport: Transport::Udp,
            tls: TlsOptions::default(),
            expires_s: 3600,
            srtp: SrtpConfig::default(),
            dtmf_mode: Default::default(),
        }
    }
}

/// Audio of a call: what we send and where what we receive goes.
#[derive(Default)]
pub struct CallOptions {
    /// What we send (tone, WAV file, device, app frames). `None`: the default input device with
    /// the `audio-device` feature, else silence.
    pub source: Option<Box<dyn AudioSource>>,
    /// Where received audio goes. `None`: the default output device with the `audio-device`
    /// feature, else it is discarded.
    pub sink: Option<Box<dyn AudioSink>>,
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("source", &self.source.is_some())
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

/// Everything an app hears about, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An account's registration state changed.
    RegistrationState {
        /// The account.
        account: AccountId,
        /// The new state.
        state: RegistrationState,
    },
    /// A call arrived (we are ringing). Answer or reject it through [`Endpoint::call`].
    IncomingCall {
        /// The call.
        call: CallId,
        /// The account whose user the request names, if any.
        account: Option<AccountId>,
        /// The caller (From header value).
        from: String,
        /// The callee (To header value).
        to: String,
        /// The call this one replaces (an INVITE with `Replaces`, RFC 3891: the last step of an
        /// attended transfer). Answer it as usual; the replaced call ends once it is up.
        replaces: Option<CallId>,
    },
    /// A call's state changed.
    CallState {
        /// The call.
        call: CallId,
        /// The new state (Ended carries the SIP status and reason).
        state: CallState,
    },
    /// Audio started (or changed) on a call.
    MediaStarted {
        /// The call.
        call: CallId,
        /// Codec encoding name (`PCMU`, `PCMA`, `G722`, `opus`).
        codec: String,
        /// Where our RTP goes.
        remote: SocketAddr,
        /// Whether we send and receive (`"sendrecv"`, `"sendonly"`, `"recvonly"`, `"inactive"`).
        direction: String,
        /// Media encryption: `"none"`, `"SDES <suite>"` (e.g. `"SDES AES_CM_128_HMAC_SHA1_80"`)
        /// or `"DTLS-SRTP"` (keys follow from the handshake on the media path).
        security: String,
    },
    /// The DTLS-SRTP handshake of a call failed (the peer's certificate does not match its SDP
    /// fingerprint, no common SRTP profile, a fatal alert): its media cannot flow. The call
    /// stays up; the app usually hangs up.
    MediaSecurityFailed {
        /// The call.
        call: CallId,
        /// What failed.
        reason: String,
    },
    /// Audio stopped on a call.
    MediaStopped {
        /// The call.
        call: CallId,
    },
    /// A DTMF key arrived (RFC 4733), once per key press, in order.
    DtmfReceived {
        /// The call.
        call: CallId,
        /// `0`–`9`, `*`, `#`, `A`–`D`.
        digit: char,
    },
    /// Periodic statistics of a call with media (every [`EndpointConfig::stats_interval`]).
    Statistics {
        /// The call.
        call: CallId,
        /// The figures.
        stats: CallStats,
    },
    /// The peer asks to transfer a call (RFC 3515 REFER). Accept with
    /// [`Endpoint::accept_transfer`] (the SDK places the new call, reports its progress to the
    /// peer and ends this call once the new one is up) or refuse with
    /// [`Endpoint::reject_transfer`], within 8 s (else it is refused with 480).
    TransferRequested {
        /// The call to transfer.
        call: CallId,
        /// The request.
        transfer: TransferId,
        /// Where to: the Refer-To URI (with `?Replaces=…` for an attended transfer).
        target: String,
        /// Who asked (Referred-By, RFC 3892), if given.
        referred_by: Option<String>,
    },
    /// Progress of a transfer this app asked for ([`Call::transfer`],
    /// [`Call::transfer_to_call`]): the transferee's new call's status (100, 180, 200, or a
    /// failure), or the REFER's own failure. `is_final` on the last one.
    TransferStatus {
        /// The transferred call.
        call: CallId,
        /// SIP status.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// Whether this is the last status.
        is_final: bool,
    },
    /// An outgoing call was redirected (3xx, RFC 3261 §8.1.3.4) and now tries `target`.
    CallRedirected {
        /// The call.
        call: CallId,
        /// The 3xx status (301, 302, ...).
        status: u16,
        /// The new target URI.
        target: String,
    },
    /// A subscription's state changed ([`Account::subscribe`]): subscribing, pending, active,
    /// or terminated with a reason (refused, ended by the notifier, unsubscribed).
    SubscriptionState {
        /// The subscription.
        subscription: SubscriptionId,
        /// The new state.
        state: SubscriptionState,
    },
    /// A buddy's presence (RFC 3856 NOTIFY with a PIDF document, RFC 3863/4480).
    BuddyPresence {
        /// The presence subscription.
        subscription: SubscriptionId,
        /// The buddy's URI as the document names it.
        entity: String,
        /// Reachable (`basic` open) or offline (closed).
        online: bool,
        /// The note (e.g. `Away`), if any.
        note: Option<String>,
        /// The RPID activity (`away`, `busy`, `on-the-phone`, ...), if any.
        activity: Option<String>,
    },
    /// A monitored line's state (RFC 4235 dialog NOTIFY): a busy-lamp field.
    LineState {
        /// The dialog subscription.
        subscription: SubscriptionId,
        /// The monitored URI.
        entity: String,
        /// Idle, ringing or in call.
        line: LineState,
    },
    /// The result of [`Account::publish_presence`] (RFC 3903): 2xx when the presence server took
    /// it, else the failure (refreshes are reported only when they fail).
    PublishResult {
        /// The account.
        account: AccountId,
        /// The final SIP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// An instant message arrived (RFC 3428 MESSAGE outside a dialog, answered 200 OK).
    MessageReceived {
        /// The account whose user the request names, if any.
        account: Option<AccountId>,
        /// The sender (From header value).
        from: String,
        /// The To header value.
        to: String,
        /// The Content-Type, e.g. `text/plain;charset=UTF-8`.
        content_type: String,
        /// The content, as received (bytes).
        body: Vec<u8>,
    },
    /// The final result of [`Account::send_message`]: a 2xx status means delivered; a failure
    /// carries its status (e.g. 404, 408 after Timer F, 503 with the transport error).
    MessageResult {
        /// The message.
        message: MessageId,
        /// The final SIP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
}
