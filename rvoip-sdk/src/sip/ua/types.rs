//! The user agent core's public types: ids, settings, states, events and errors.

use std::net::SocketAddr;

use bytes::Bytes;
use std::time::Duration;

use super::build::Credentials;
use crate::sdp::{AudioCodec, Negotiated, SrtpConfig};
use crate::sip::msg::Limits;
use crate::sip::transaction::{TimerConfig, Transport};

/// The id of an account (a registration). Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u64);

/// The id of a call (one INVITE session). Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// The id of an instant message we sent (RFC 3428). Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// The id of a transfer request we received (RFC 3515 REFER). Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u64);

/// The id of a subscription we made (RFC 6665 SUBSCRIBE). Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

/// The event package of a subscription (RFC 6665 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventPackage {
    /// `presence` (RFC 3856): PIDF documents (RFC 3863).
    Presence,
    /// `dialog` (RFC 4235): the calls of a line, for a busy-lamp field.
    Dialog,
}

impl EventPackage {
    /// The Event header token.
    pub fn token(&self) -> &'static str {
        match self {
            EventPackage::Presence => "presence",
            EventPackage::Dialog => "dialog",
        }
    }

    /// The document type we accept for it.
    pub fn content_type(&self) -> &'static str {
        match self {
            EventPackage::Presence => crate::sip::presence::PIDF_TYPE,
            EventPackage::Dialog => crate::sip::presence::DIALOG_INFO_TYPE,
        }
    }
}

/// The state of a subscription (RFC 6665 §4.1.2, Subscription-State).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    /// SUBSCRIBE sent, nothing confirmed yet.
    Subscribing,
    /// The notifier has not authorized it yet (`pending`).
    Pending,
    /// Notifications flow (`active`).
    Active,
    /// Over: refused (the final status), ended by the notifier (its reason, e.g. `noresource`,
    /// `rejected`), or unsubscribed.
    Terminated {
        /// Why, e.g. `403 Forbidden`, `noresource`, `unsubscribed`, `timeout`.
        reason: String,
    },
}

/// How an account sends DTMF keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtmfMode {
    /// RTP telephone-events (RFC 4733), the default.
    #[default]
    Rfc4733,
    /// SIP INFO requests with `application/dtmf-relay` bodies (`Signal=5`, `Duration=160`), as
    /// many PBXes and PJSIP's `PJSUA_DTMF_METHOD_SIP_INFO` send them.
    SipInfo,
}

/// Settings of the user agent core.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// RFC 3261 timer bases (T1, T2, T4).
    pub timers: TimerConfig,
    /// Parser limits for received messages.
    pub limits: Limits,
    /// Codecs offered and accepted, in preference order (RFC 3264 §5.1, §6.1).
    pub codecs: Vec<AudioCodec>,
    /// Offer/accept telephone-event (RFC 4733).
    pub dtmf: bool,
    /// First re-registration delay after a failure (doubles up to [`UaConfig::register_retry_max`]).
    pub register_retry_min: Duration,
    /// Longest re-registration delay after repeated failures.
    pub register_retry_max: Duration,
    /// The user part of our Contact for calls without an account (e.g. `"rvoip"`).
    pub contact_user: String,
    /// SRTP policy of calls without an account (incoming calls to no account's user).
    pub srtp: SrtpConfig,
    /// Our DTLS certificate's fingerprint (RFC 8122), when DTLS-SRTP may be offered or
    /// accepted; `None` turns DTLS-SRTP off.
    pub dtls_fingerprint: Option<crate::media::dtls::Fingerprint>,
    /// Our instance-id for SIP Outbound (RFC 5626 §4.1), a URN such as
    /// `urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6` that stays the same across restarts and
    /// networks. When set, accounts register with `+sip.instance` and `reg-id=1` and say
    /// `Supported: outbound`; a registrar that answers `Require: outbound` gets keep-alives
    /// on the flow (STUN over UDP, CRLF over TCP/TLS), and a failed flow is registered again.
    /// `None` (the default): plain RFC 3261 registration, no keep-alives.
    pub sip_instance: Option<String>,
}

impl Default for UaConfig {
    fn default() -> Self {
        UaConfig {
            timers: TimerConfig::default(),
            limits: Limits::default(),
            codecs: vec![AudioCodec::PCMU, AudioCodec::PCMA, AudioCodec::G722],
            dtmf: true,
            register_retry_min: Duration::from_secs(2),
            register_retry_max: Duration::from_secs(300),
            contact_user: "rvoip".into(),
            srtp: SrtpConfig::default(),
            dtls_fingerprint: None,
            sip_instance: None,
        }
    }
}

/// One account: an address-of-record registered at a registrar (RFC 3261 §10.2).
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// The AOR, e.g. `sip:alice@example.com`.
    pub aor: crate::sip::msg::Uri,
    /// Digest credentials for REGISTER and for challenged requests (§22).
    pub credentials: Credentials,
    /// The registrar / outbound proxy address (next hop of REGISTER and of the account's calls).
    /// After a failover it is the destination in use ([`UserAgent::account_config`]).
    ///
    /// [`UserAgent::account_config`]: super::UserAgent::account_config
    pub server: SocketAddr,
    /// UDP, TCP or TLS to `server`.
    pub transport: Transport,
    /// Our address facing `server` (IP and SIP port), written in Via and Contact.
    pub local: SocketAddr,
    /// Requested registration lifetime in seconds (`Expires`, §10.2.1.1), e.g. 3600.
    pub expires_s: u32,
    /// Further destinations of the same server, in the order to try them after `server`
    /// (RFC 3263 §4.3: the rest of the resolver's list). When a REGISTER fails with a transport
    /// error (503), a timeout (408) or a 503 response, it is sent again at once to the next one,
    /// which then becomes `server`/`transport`/`local`; past the last, the failure is reported
    /// with the usual backoff and the retry starts again from the first. Empty: no failover.
    pub alternates: Vec<NextHop>,
    /// SRTP policy of the account's calls, both ways.
    pub srtp: SrtpConfig,
    /// How the account's calls send DTMF keys (received keys are taken either way).
    pub dtmf_mode: DtmfMode,
}

/// One destination of an account's server (an entry of the RFC 3263 §4.3 failover list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Where to send: IP address and port.
    pub addr: SocketAddr,
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// Our address facing `addr` (IP and SIP port), for Via and Contact.
    pub local: SocketAddr,
}

/// Registration state of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// A REGISTER is on its way (first time or refresh).
    Registering,
    /// The registrar accepted our binding for `expires_s` seconds.
    Registered {
        /// The granted lifetime (s).
        expires_s: u32,
    },
    /// Our binding was removed (REGISTER with expires 0 answered, or never registered).
    Unregistered,
    /// The last REGISTER failed (final status, 408 for a timeout or 503 for a network error);
    /// a retry is scheduled after `retry_in_ms` (0: none, e.g. after an unregister).
    Failed {
        /// The SIP status.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// Delay until the next attempt (ms).
        retry_in_ms: u64,
    },
}

/// The state of a call, as an app shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallState {
    /// INVITE sent, no provisional response with a tag yet.
    Calling,
    /// Outgoing: 180 received; incoming: we are ringing (180 sent).
    Ringing,
    /// Outgoing: a provisional response carried SDP (early media, RFC 3960).
    EarlyMedia,
    /// 2xx and ACK: the call is up with media flowing both ways.
    Connected,
    /// Up, but on hold (RFC 3264 §8.4): `local` when we put the peer on hold, `remote` when the
    /// peer put us on hold.
    Held {
        /// We sent sendonly/inactive.
        local: bool,
        /// The peer sent sendonly/inactive.
        remote: bool,
    },
    /// The call is over: the final SIP status (e.g. 486, 487, 408) or 200 after a BYE, and a reason.
    Ended {
        /// SIP status: the final response to the INVITE, or 200 for a normal hang-up.
        status: u16,
        /// Reason text, e.g. `"Busy Here"`, `"remote hangup"`.
        reason: String,
    },
}

/// What the user agent tells its driver.
#[derive(Debug, Clone)]
pub enum UaEvent {
    /// An account's registration state changed.
    Registration {
        /// The account.
        account: AccountId,
        /// The new state.
        state: RegistrationState,
    },
    /// A new incoming call (we sent 180 Ringing). Answer with [`UserAgent::answer`], refuse with
    /// [`UserAgent::reject`].
    IncomingCall {
        /// The call.
        call: CallId,
        /// The account whose user the Request-URI names, if any.
        account: Option<AccountId>,
        /// The From header value (caller).
        from: String,
        /// The To header value (callee).
        to: String,
        /// The call this one replaces (an INVITE with `Replaces`, RFC 3891 §3: the end of an
        /// attended transfer). The replaced call ends when this one is up.
        replaces: Option<CallId>,
    },
    /// A call's state changed.
    CallState {
        /// The call.
        call: CallId,
        /// The new state.
        state: CallState,
    },
    /// Start the call's audio stream with this offer/answer result (early media or connect).
    MediaStart {
        /// The call.
        call: CallId,
        /// Codec, payload types, remote address, direction.
        media: Negotiated,
    },
    /// The negotiated stream changed (re-INVITE: hold/resume, new address or codec).
    MediaUpdate {
        /// The call.
        call: CallId,
        /// The new result.
        media: Negotiated,
    },
    /// Stop the call's audio stream.
    MediaStop {
        /// The call.
        call: CallId,
    },
    /// The peer asks us to transfer the call (RFC 3515 REFER in the call's dialog). Accept with
    /// [`UserAgent::accept_transfer`] (the REFER is answered 202, the new call placed and its
    /// progress NOTIFYed; the call ends when the new one is up), refuse with
    /// [`UserAgent::reject_transfer`]. Unanswered for 8 s, the REFER gets 480.
    TransferRequested {
        /// The call being transferred.
        call: CallId,
        /// The request.
        transfer: TransferId,
        /// The Refer-To target (its URI with any `?headers`).
        target: String,
        /// The Referred-By value (RFC 3892), if any.
        referred_by: Option<String>,
        /// Whether the target carries `Replaces` (attended transfer, RFC 3891).
        replaces: bool,
    },
    /// Progress of a transfer we asked for ([`UserAgent::transfer`]): the status of the new
    /// call at the transferee, from the NOTIFY's `message/sipfrag` (RFC 3515 §2.4.5, RFC 3420),
    /// or the REFER's own failure. `is_final` on the last one (the subscription ended).
    TransferStatus {
        /// The call we transferred.
        call: CallId,
        /// The SIP status (100, 180, 200, 486, ...).
        status: u16,
        /// Its reason phrase.
        reason: String,
        /// Whether this is the last status.
        is_final: bool,
    },
    /// An outgoing call was redirected (3xx, RFC 3261 §8.1.3.4) and now tries `target`.
    CallRedirected {
        /// The call.
        call: CallId,
        /// The 3xx status.
        status: u16,
        /// The new target URI.
        target: String,
    },
    /// A DTMF key arrived by SIP INFO (`application/dtmf-relay` or `application/dtmf`).
    DtmfInfo {
        /// The call.
        call: CallId,
        /// `0`–`9`, `*`, `#`, `A`–`D`.
        digit: char,
        /// The key's duration (ms), 0 when not given.
        duration_ms: u32,
    },
    /// A subscription's state changed ([`UserAgent::subscribe`]).
    SubscriptionState {
        /// The subscription.
        subscription: SubscriptionId,
        /// The new state.
        state: SubscriptionState,
    },
    /// A presence NOTIFY (RFC 3856) carried the buddy's status.
    PresenceNotify {
        /// The subscription.
        subscription: SubscriptionId,
        /// What the PIDF says.
        presence: crate::sip::presence::Presence,
    },
    /// A dialog NOTIFY (RFC 4235) carried the monitored line's state (busy-lamp field).
    LineNotify {
        /// The subscription.
        subscription: SubscriptionId,
        /// The monitored URI.
        entity: String,
        /// Idle, ringing or in call.
        line: crate::sip::presence::LineState,
    },
    /// The result of publishing an account's presence ([`UserAgent::publish`]): 2xx when the
    /// presence server took it (refreshes are silent unless they fail), else the failure.
    PublishResult {
        /// The account.
        account: AccountId,
        /// The final SIP status (408 on timeout, 503 on a transport error).
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// An instant message arrived outside a dialog (RFC 3428); it was answered 200 OK.
    MessageReceived {
        /// The account whose user the Request-URI names, if any.
        account: Option<AccountId>,
        /// The From header value (sender).
        from: String,
        /// The To header value.
        to: String,
        /// The Content-Type, e.g. `text/plain;charset=UTF-8`.
        content_type: String,
        /// The content (bytes, as received).
        body: Bytes,
    },
    /// The final result of a MESSAGE we sent: 2xx delivered (accepted by the far end), else the
    /// failure (e.g. 404, 408 on timeout, 503 on a transport error with its reason).
    MessageResult {
        /// The message.
        message: MessageId,
        /// The final SIP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
}

/// Errors of user agent operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UaError {
    /// No account or call with this id (never existed, or ended).
    #[error("no such account or call")]
    NotFound,
    /// The operation does not fit the call's state (e.g. answering an outgoing call).
    #[error("not possible in this state: {0}")]
    InvalidState(&'static str),
    /// An SDP could not be made or read.
    #[error("SDP: {0}")]
    Sdp(#[from] crate::sdp::SdpError),
    /// A status code outside what the operation takes (reject: 300..=699).
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    /// The target URI is not a SIP URI.
    #[error("invalid target URI: {0}")]
    InvalidUri(String),
    /// An argument is unusable (e.g. a MESSAGE body over the pager-mode limit).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}
