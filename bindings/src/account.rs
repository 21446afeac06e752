//! Accounts: an AOR with digest credentials that registers to a registrar (RFC 3261 §10.2).

use std::sync::Arc;

use rvoip_sdk::api as sdk;

use crate::RvoipError;
use crate::event::RegistrationState;
use crate::listener::{Await, Dispatcher};

/// SIP transport to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Transport {
    /// UDP (RFC 3261 §18).
    Udp,
    /// TCP (RFC 3261 §18).
    Tcp,
    /// SIP over TLS (RFC 3261 §26.2, RFC 5630), default port 5061. The server's certificate is
    /// verified against the system roots, plus `AccountOptions.tls_ca_file`, or accepted by
    /// `AccountOptions.tls_pin_sha256`; a connection never falls back to plaintext.
    Tls,
    /// SIP over WebSocket (RFC 7118): a server's `ws:IP:PORT` listener, e.g. for browser
    /// clients (`Server.port`, `Server.local_addresses`). Server listeners only: an account with
    /// it gives `InvalidArgument` from `Endpoint.add_account`.
    Ws,
    /// SIP over secure WebSocket (WebSocket over TLS, RFC 7118): a server's `wss:IP:PORT`
    /// listener, with the server's TLS certificate. Server listeners only, as `Ws`.
    Wss,
}

impl From<Transport> for sdk::Transport {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Udp => sdk::Transport::Udp,
            Transport::Tcp => sdk::Transport::Tcp,
            Transport::Tls => sdk::Transport::Tls,
            Transport::Ws => sdk::Transport::Ws,
            Transport::Wss => sdk::Transport::Wss,
        }
    }
}

impl Transport {
    /// The bindings' transport of an SDK one.
    pub(crate) fn of(t: sdk::Transport) -> Transport {
        match t {
            sdk::Transport::Udp => Transport::Udp,
            sdk::Transport::Tcp => Transport::Tcp,
            sdk::Transport::Tls => Transport::Tls,
            sdk::Transport::Ws => Transport::Ws,
            sdk::Transport::Wss => Transport::Wss,
        }
    }
}

/// What a subscription (`Account.subscribe`) watches: the event package (RFC 6665 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum EventPackage {
    /// `presence` (RFC 3856): the buddy's status, as `Event.BuddyPresence`.
    Presence,
    /// `dialog` (RFC 4235): the calls of a line, as `Event.LineStateChanged` (a busy-lamp
    /// field).
    Dialog,
}

impl From<EventPackage> for sdk::EventPackage {
    fn from(p: EventPackage) -> Self {
        match p {
            EventPackage::Presence => sdk::EventPackage::Presence,
            EventPackage::Dialog => sdk::EventPackage::Dialog,
        }
    }
}

/// Whether a call's media must, may or must not be SRTP (RFC 3711): see
/// `AccountOptions.srtp_policy` and `EndpointOptions.srtp_policy` (`None` there means
/// `Optional`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SrtpPolicy {
    /// Plain RTP only: an SRTP offer is refused with 488 (never answered in plaintext).
    Off,
    /// SRTP when the peer offers it (the default): SRTP offers are answered with SRTP; our
    /// offers are `RTP/AVP`, carrying `a=crypto` keys (SDES, RFC 4568) when SDES may be used.
    Optional,
    /// SRTP or no call: our offers use a secure profile (`RTP/SAVP` with SDES, RFC 4568;
    /// `UDP/TLS/RTP/SAVP` with DTLS-SRTP, RFC 5764); a plain offer is refused with 488, and a
    /// plain answer ends the call (`CallState.Ended` with status 488 and a reason saying why).
    Mandatory,
}

impl From<SrtpPolicy> for sdk::SrtpPolicy {
    fn from(p: SrtpPolicy) -> Self {
        match p {
            SrtpPolicy::Off => sdk::SrtpPolicy::Off,
            SrtpPolicy::Optional => sdk::SrtpPolicy::Optional,
            SrtpPolicy::Mandatory => sdk::SrtpPolicy::Mandatory,
        }
    }
}

/// Which SRTP key exchange our offers use: see `AccountOptions.srtp_keying` and
/// `EndpointOptions.srtp_keying` (`None` there means `Auto`). Answers accept either kind the
/// offer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SrtpKeying {
    /// SDES (RFC 4568) when the signalling is encrypted (TLS) or `srtp_sdes_over_insecure`
    /// allows it, else DTLS-SRTP (RFC 5763, RFC 5764). The default.
    Auto,
    /// SDES only: the keys travel in the SDP's `a=crypto` lines (RFC 4568). A mandatory offer
    /// on unencrypted signalling fails unless `srtp_sdes_over_insecure` is set.
    Sdes,
    /// DTLS-SRTP only: the keys come from a DTLS handshake on the media path, checked against
    /// the SDP's `a=fingerprint` (RFC 5763, RFC 5764).
    Dtls,
}

impl From<SrtpKeying> for sdk::SrtpKeying {
    fn from(k: SrtpKeying) -> Self {
        match k {
            SrtpKeying::Auto => sdk::SrtpKeying::Auto,
            SrtpKeying::Sdes => sdk::SrtpKeying::Sdes,
            SrtpKeying::Dtls => sdk::SrtpKeying::Dtls,
        }
    }
}

/// The SDK's SRTP settings from the bindings' optional fields (`None`: the SDK's default).
pub(crate) fn srtp_config(
    policy: Option<SrtpPolicy>,
    keying: Option<SrtpKeying>,
    sdes_over_insecure: bool,
) -> sdk::SrtpConfig {
    let d = sdk::SrtpConfig::default();
    sdk::SrtpConfig {
        policy: policy.map_or(d.policy, Into::into),
        keying: keying.map_or(d.keying, Into::into),
        sdes_over_insecure,
    }
}

/// How an account's calls send DTMF keys (`Call.send_dtmf`): see `AccountOptions.dtmf_mode`
/// (`None` there means `Rfc4733`). Received keys are taken both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum DtmfMode {
    /// RTP telephone-events in the media stream (RFC 4733), the default.
    Rfc4733,
    /// SIP INFO requests in the call's dialog (RFC 6086) with `application/dtmf-relay` bodies
    /// (`Signal=5`, `Duration=160`), one after the other, as many PBXes expect.
    SipInfo,
}

impl From<DtmfMode> for sdk::DtmfMode {
    fn from(m: DtmfMode) -> Self {
        match m {
            DtmfMode::Rfc4733 => sdk::DtmfMode::Rfc4733,
            DtmfMode::SipInfo => sdk::DtmfMode::SipInfo,
        }
    }
}

/// Where an account sends its requests: see `Account.server()`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ServerAddress {
    /// `Udp`, `Tcp` or `Tls`: the account's transport.
    pub transport: Transport,
    /// `IP:port`, e.g. `192.0.2.1:5060` or `[2001:db8::1]:5061`.
    pub address: String,
}

/// An account to add with `Endpoint.add_account`.
#[derive(Debug, Clone, uniffi::Record)]
pub struct AccountOptions {
    /// Address-of-record, e.g. `sip:alice@example.com`.
    pub aor: String,
    /// Digest password.
    pub password: String,
    /// Digest user name; empty for the AOR's user part.
    #[uniffi(default = "")]
    pub username: String,
    /// Registrar / outbound proxy as `host[:port]` or a `sip:` URI; `None` for the AOR's host.
    #[uniffi(default)]
    pub server: Option<String>,
    /// Transport to the server; `None` for UDP. A `sips:` AOR needs `Tls` (RFC 5630 §3).
    /// `Ws` and `Wss` are for server listeners only (`InvalidArgument`).
    #[uniffi(default)]
    pub transport: Option<Transport>,
    /// Requested registration lifetime in seconds (RFC 3261 §10.2.1).
    #[uniffi(default = 3600)]
    pub expires_s: u32,
    /// With `Tls`: a PEM file of extra trusted CA certificates, added to the system roots
    /// (RFC 5922 §7: the server's certificate must chain to a trusted root and name the
    /// server's host); `None` for the system roots only. Read by `Endpoint.add_account`
    /// (unreadable, or no certificate in it: `InvalidArgument`). Ignored with UDP and TCP.
    #[uniffi(default)]
    pub tls_ca_file: Option<String>,
    /// With `Tls`: the SHA-256 fingerprint of the server's certificate, 32 hex pairs
    /// (`AB:CD:…`; case, colons and spaces free; what `Server.tls_fingerprint()` and
    /// `rvoip-server` print). A certificate with this fingerprint is accepted whatever signed it
    /// and whatever names it carries (a self-signed server); any other is verified as usual.
    /// `None` for no pin; a malformed one: `InvalidArgument` from `Endpoint.add_account`.
    /// Ignored with UDP and TCP.
    #[uniffi(default)]
    pub tls_pin_sha256: Option<String>,
    /// SRTP (RFC 3711) for the account's calls, made and received: `Off`, `Optional` or
    /// `Mandatory`; `None` for `Optional`. A mandatory call the peer cannot secure ends with
    /// status 488 and a reason naming the cause.
    #[uniffi(default)]
    pub srtp_policy: Option<SrtpPolicy>,
    /// The key exchange of the account's SRTP offers; `None` for `Auto` (SDES, RFC 4568, over
    /// TLS; DTLS-SRTP, RFC 5764, otherwise).
    #[uniffi(default)]
    pub srtp_keying: Option<SrtpKeying>,
    /// Allow SDES keys (`a=crypto`, RFC 4568) in SDP carried over UDP or TCP, where anyone on
    /// the path can read them (default false: SDES over TLS only, RFC 4568 §8.3).
    #[uniffi(default = false)]
    pub srtp_sdes_over_insecure: bool,
    /// How the account's calls send DTMF (`Call.send_dtmf`): `Rfc4733` (RTP
    /// telephone-events) or `SipInfo` (SIP INFO with `application/dtmf-relay`); `None` for
    /// `Rfc4733`. Received keys are taken both ways.
    #[uniffi(default)]
    pub dtmf_mode: Option<DtmfMode>,
}

impl From<AccountOptions> for sdk::AccountOptions {
    fn from(o: AccountOptions) -> Self {
        let mut a = sdk::AccountOptions::new(&o.aor, &o.password);
        a.username = o.username;
        a.server = o.server;
        a.transport = o.transport.unwrap_or(Transport::Udp).into();
        a.expires_s = o.expires_s;
        a.tls.ca_file = o.tls_ca_file.filter(|s| !s.is_empty()).map(Into::into);
        a.tls.pin_sha256 = o.tls_pin_sha256.filter(|s| !s.is_empty());
        a.srtp = srtp_config(o.srtp_policy, o.srtp_keying, o.srtp_sdes_over_insecure);
        a.dtmf_mode = o.dtmf_mode.map_or_else(sdk::DtmfMode::default, Into::into);
        a
    }
}

/// A registration account of an endpoint. Registration refreshes itself before it expires and
/// retries with backoff after failures; every change is also an `Event.RegistrationChanged`.
#[derive(uniffi::Object)]
pub struct Account {
    pub(crate) inner: sdk::Account,
    pub(crate) dispatcher: Arc<Dispatcher>,
}

#[uniffi::export(async_runtime = "tokio")]
impl Account {
    /// The account id (as in events); never reused.
    pub fn id(&self) -> u64 {
        self.inner.id().0
    }

    /// Sends a REGISTER (with digest authentication on 401/407) and waits for the outcome.
    /// Returns the `Registered` state, after every subscribed listener has seen it.
    /// Errors: `RegistrationFailed` (refused, 408 timeout after 32 s, 503 transport error; the
    /// engine keeps retrying with backoff), `NotFound` (removed), `Shutdown`.
    pub async fn register(&self) -> Result<RegistrationState, RvoipError> {
        let rx = self.dispatcher.wait_for(self.id(), Await::Registered);
        self.inner.register()?;
        settle(rx.await)
    }

    /// Removes the binding (REGISTER with `Expires: 0`) and waits for the registrar's answer.
    /// Errors: `RegistrationFailed`, `NotFound`, `Shutdown`.
    pub async fn unregister(&self) -> Result<(), RvoipError> {
        let rx = self.dispatcher.wait_for(self.id(), Await::Unregistered);
        self.inner.unregister()?;
        settle(rx.await).map(|_| ())
    }

    /// Starts a REGISTER without waiting (the outcome arrives as an event). Errors: `NotFound`,
    /// `Shutdown`.
    pub fn start_registration(&self) -> Result<(), RvoipError> {
        Ok(self.inner.register()?)
    }

    /// The current registration state. Errors: `NotFound` (removed).
    pub fn state(&self) -> Result<RegistrationState, RvoipError> {
        Ok(self.inner.state()?.into())
    }

    /// The server destination the account uses now: its transport and `IP:port`. That is the
    /// first destination its server (or its AOR's host) resolved to when it was added, per
    /// RFC 3263 (NAPTR, SRV, A/AAAA, asking `EndpointOptions.dns_server` or the system's DNS;
    /// an IP address is its own destination, with port 5060, or 5061 for TLS, when none is
    /// given), or the one its registration failed over to after a transport error, a timeout
    /// or a 503 (RFC 3263 §4.3). Its REGISTERs, calls and messages go there.
    /// Errors: `NotFound` (removed), `Shutdown`.
    pub fn server(&self) -> Result<ServerAddress, RvoipError> {
        let (transport, address) = self.inner.server()?;
        Ok(ServerAddress {
            transport: Transport::of(transport),
            address: address.to_string(),
        })
    }

    /// Unregisters (without waiting) and forgets the account. Errors: `NotFound`.
    pub fn remove(&self) -> Result<(), RvoipError> {
        Ok(self.inner.remove()?)
    }

    /// Sends an instant message (RFC 3428 MESSAGE in pager mode: outside any dialog) from this
    /// account's AOR to `to` (a SIP URI, e.g. `sip:bob@example.com`) through its server,
    /// answering a digest challenge (401/407) with its credentials; it need not be registered.
    /// `content_type` is the body's MIME type (`type/subtype`, e.g. `text/plain;charset=UTF-8`);
    /// `body` is any bytes, at most 1300 (RFC 3428 §7). Returns the message id at once
    /// (non-zero, never reused); the outcome arrives later as one `Event.MessageResult` with
    /// this id: status 2xx when delivered, else e.g. 404 (no such user), 480 (not registered),
    /// 408 (no answer within 32 s) or 503 (transport error). Errors: `InvalidArgument` (not a
    /// SIP URI, a content type without `/`, a body over 1300 bytes, a `sips:` target from an
    /// account without TLS), `NotFound` (removed), `Shutdown`.
    pub fn send_message(
        &self,
        to: String,
        content_type: String,
        body: Vec<u8>,
    ) -> Result<u64, RvoipError> {
        Ok(self.inner.send_message(&to, &content_type, &body)?.0)
    }

    /// Subscribes through this account's server to `target`'s (a SIP URI, e.g.
    /// `sip:bob@example.com`) `package` (RFC 6665 SUBSCRIBE, answering a digest challenge with
    /// the account's credentials): `Presence` for the buddy's status, `Dialog` for its line.
    /// Returns the subscription id at once (non-zero, never reused); its state arrives as
    /// `Event.SubscriptionStateChanged`, its notifications as `Event.BuddyPresence` or
    /// `Event.LineStateChanged` with this id (the first at once: offline for a buddy that never
    /// published, idle for a quiet line). Refreshed until `Endpoint.unsubscribe` or until the
    /// notifier ends it. Errors: `InvalidArgument` (not a SIP URI), `NotFound` (removed),
    /// `Shutdown`.
    pub fn subscribe(&self, target: String, package: EventPackage) -> Result<u64, RvoipError> {
        Ok(self.inner.subscribe(&target, package.into())?.0)
    }

    /// Publishes this account's presence through its server (RFC 3903 PUBLISH of a PIDF
    /// document): `online` or offline, with an optional `note` (free text, e.g. `Away`) and
    /// RPID `activity` (`away`, `busy`, `on-the-phone`, ...: letters, digits, `-`, `_`).
    /// Subscribers to the account's presence are notified. The outcome arrives as one
    /// `Event.PublishResult` (2xx: published); the publication is refreshed until
    /// `unpublish_presence`, and a new call replaces the status. Errors: `InvalidArgument` (an
    /// empty activity or one with other characters), `NotFound` (removed), `Shutdown`.
    #[uniffi::method(default(note = None, activity = None))]
    pub fn publish_presence(
        &self,
        online: bool,
        note: Option<String>,
        activity: Option<String>,
    ) -> Result<(), RvoipError> {
        Ok(self
            .inner
            .publish_presence(online, note.as_deref(), activity.as_deref())?)
    }

    /// Removes this account's published presence (PUBLISH with `Expires: 0`) and stops
    /// refreshing it; subscribers see it offline. Errors: `NotFound` (removed, or nothing
    /// published), `Shutdown`.
    pub fn unpublish_presence(&self) -> Result<(), RvoipError> {
        Ok(self.inner.unpublish_presence()?)
    }
}

fn settle(
    r: Result<RegistrationState, tokio::sync::oneshot::error::RecvError>,
) -> Result<RegistrationState, RvoipError> {
    match r {
        Ok(RegistrationState::Failed { status, reason, .. }) => {
            Err(RvoipError::RegistrationFailed { status, reason })
        }
        Ok(s) => Ok(s),
        Err(_) => Err(RvoipError::Shutdown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_message_size_limit_is_the_sdks() {
        // `Account.send_message` documents 1300 bytes.
        assert_eq!(rvoip_sdk::sip::ua::MAX_MESSAGE_BODY, 1300);
    }

    #[test]
    fn srtp_options_reach_the_sdk_and_none_is_its_default() {
        assert_eq!(srtp_config(None, None, false), sdk::SrtpConfig::default());
        let o = AccountOptions {
            aor: "sip:alice@127.0.0.1".into(),
            password: "apw".into(),
            username: String::new(),
            server: None,
            transport: None,
            expires_s: 3600,
            tls_ca_file: None,
            tls_pin_sha256: None,
            srtp_policy: Some(SrtpPolicy::Mandatory),
            srtp_keying: Some(SrtpKeying::Dtls),
            srtp_sdes_over_insecure: true,
            dtmf_mode: None,
        };
        let a = sdk::AccountOptions::from(o.clone());
        assert_eq!(a.dtmf_mode, sdk::DtmfMode::Rfc4733);
        let info = sdk::AccountOptions::from(AccountOptions {
            dtmf_mode: Some(DtmfMode::SipInfo),
            ..o
        });
        assert_eq!(info.dtmf_mode, sdk::DtmfMode::SipInfo);
        assert_eq!(
            sdk::DtmfMode::from(DtmfMode::Rfc4733),
            sdk::DtmfMode::Rfc4733
        );
        assert_eq!(
            a.srtp,
            sdk::SrtpConfig {
                policy: sdk::SrtpPolicy::Mandatory,
                keying: sdk::SrtpKeying::Dtls,
                sdes_over_insecure: true,
            }
        );
        for (p, want) in [
            (SrtpPolicy::Off, sdk::SrtpPolicy::Off),
            (SrtpPolicy::Optional, sdk::SrtpPolicy::Optional),
            (SrtpPolicy::Mandatory, sdk::SrtpPolicy::Mandatory),
        ] {
            assert_eq!(sdk::SrtpPolicy::from(p), want);
        }
        for (k, want) in [
            (SrtpKeying::Auto, sdk::SrtpKeying::Auto),
            (SrtpKeying::Sdes, sdk::SrtpKeying::Sdes),
            (SrtpKeying::Dtls, sdk::SrtpKeying::Dtls),
        ] {
            assert_eq!(sdk::SrtpKeying::from(k), want);
        }
    }
}
