//! [`Account`] and [`Call`]: handles that name an account or call by id. They hold the
//! endpoint weakly: once it is shut down every method gives [`ApiError::Shutdown`]; once the
//! call ended, [`ApiError::NotFound`].

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::endpoint::{Inner, Shared};
use super::{ApiError, CallOptions, CallState, CallStats, RegistrationState, Transport};
use crate::media::audio::{AudioSink, AudioSource};
use crate::sdp::LocalMedia;
use crate::sip::ua::{AccountId, CallId, MessageId};

fn upgrade(ep: &Weak<Inner>) -> Result<Arc<Inner>, ApiError> {
    let inner = ep.upgrade().ok_or(ApiError::Shutdown)?;
    if inner.is_shut_down() {
        return Err(ApiError::Shutdown);
    }
    Ok(inner)
}

/// Runs `f` under the endpoint's lock, then sends and dispatches what it caused.
fn with_core<T>(
    ep: &Weak<Inner>,
    f: impl FnOnce(&Shared, &mut super::endpoint::Core) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let inner = upgrade(ep)?;
    let shared = &inner.shared;
    let mut core = shared.core.lock().unwrap_or_else(|p| p.into_inner());
    let r = f(shared, &mut core);
    shared.pump(&mut core);
    r
}

/// An account of an endpoint (RFC 3261 §10 registration).
#[derive(Clone, Debug)]
pub struct Account {
    id: AccountId,
    ep: Weak<Inner>,
}

impl Account {
    pub(crate) fn new(id: AccountId, ep: Weak<Inner>) -> Account {
        Account { id, ep }
    }

    /// The account's id (in [`super::Event`]s).
    pub fn id(&self) -> AccountId {
        self.id
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Shared, &mut super::endpoint::Core) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        with_core(&self.ep, f)
    }

    /// Registers now and keeps the registration refreshed; retries with backoff after
    /// failures (events: [`super::Event::RegistrationState`]). Errors: [`ApiError::NotFound`]
    /// (removed), [`ApiError::Shutdown`].
    pub fn register(&self) -> Result<(), ApiError> {
        self.with(|_, core| Ok(core.ua.register(Instant::now(), self.id)?))
    }

    /// Removes our binding (REGISTER with Expires 0) and stops refreshing.
    /// Errors: as [`Account::register`].
    pub fn unregister(&self) -> Result<(), ApiError> {
        self.with(|_, core| Ok(core.ua.unregister(Instant::now(), self.id)?))
    }

    /// Unregisters if registered and forgets the account. Errors: as [`Account::register`].
    pub fn remove(&self) -> Result<(), ApiError> {
        self.with(|_, core| Ok(core.ua.remove_account(Instant::now(), self.id)?))
    }

    /// The current registration state. Errors: as [`Account::register`].
    pub fn state(&self) -> Result<RegistrationState, ApiError> {
        self.with(|_, core| Ok(core.ua.registration_state(self.id)?))
    }

    /// The server destination the account uses now (transport, IP address and port): the
    /// first one resolved when it was added, or the one its registration failed over to (RFC
    /// 3263 §4.3). Its calls and messages go there. Errors: as [`Account::register`].
    pub fn server(&self) -> Result<(Transport, SocketAddr), ApiError> {
        self.with(|_, core| {
            let c = core.ua.account_config(self.id)?;
            Ok((c.transport, c.server))
        })
    }

    /// Sends an instant message (RFC 3428 MESSAGE, outside a dialog) to `to` (a SIP URI) through
    /// the account's server, answering its digest challenge. `content_type` is e.g.
    /// `text/plain;charset=utf-8`; `body` at most [`crate::sip::ua::MAX_MESSAGE_BODY`] bytes.
    /// The result arrives as [`super::Event::MessageResult`] with this id (2xx: delivered).
    /// Errors: [`ApiError::InvalidArgument`] (bad URI, content type or size; a `sips:` target
    /// from a non-TLS account), [`ApiError::NotFound`] (removed), [`ApiError::Shutdown`].
    pub fn send_message(
        &self,
        to: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<MessageId, ApiError> {
        let target = super::net::parse_uri(to)?;
        self.with(|shared, core| {
            let c = core.ua.account_config(self.id)?;
            let (dest, transport) = (c.server, c.transport);
            if target.scheme == crate::sip::msg::Scheme::Sips && !transport.is_secure() {
                return Err(ApiError::InvalidArgument(format!(
                    "{target}: a sips: target is reached over TLS only (RFC 5630); the account \
                     uses {transport}"
                )));
            }
            let local = shared.local_for_locked(core, dest, transport);
            Ok(core.ua.send_message(
                Instant::now(),
                Some(self.id),
                target,
                dest,
                transport,
                local,
                content_type,
                bytes::Bytes::copy_from_slice(body),
            )?)
        })
    }
}

/// A call of an endpoint.
#[derive(Clone, Debug)]
pub struct Call {
    id: CallId,
    ep: Weak<Inner>,
}

impl Call {
    pub(crate) fn new(id: CallId, ep: Weak<Inner>) -> Call {
        Call { id, ep }
    }

    /// The call's id (in [`super::Event`]s).
    pub fn id(&self) -> CallId {
        self.id
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Shared, &mut super::endpoint::Core) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        with_core(&self.ep, f)
    }

    /// Answers an incoming call (200 OK with our SDP answer) with `opts`' audio.
    /// Errors: [`ApiError::NotFound`], [`ApiError::InvalidState`] (not an unanswered incoming
    /// call), [`ApiError::Network`] (media ports), [`ApiError::Media`].
    pub fn answer(&self, opts: CallOptions) -> Result<(), ApiError> {
        self.with(|shared, core| {
            let (_peer, local) = core.ua.call_signalling_peer(self.id)?;
            if core.media.get(&self.id).is_some_and(|m| m.handle.is_some()) {
                // Early media runs already ([`Call::answer_early`]): the 2xx repeats the 183's
                // SDP and the stream goes on; `opts` is not used.
                let (srtp, secure) = core.ua.call_srtp(self.id)?;
                let unused = shared.local_media(local.ip(), 9, &srtp, secure);
                return Ok(core.ua.answer(Instant::now(), self.id, unused)?);
            }
            let ports = shared.media_ports(local.ip())?;
            let (srtp, secure) = core.ua.call_srtp(self.id)?;
            let media: LocalMedia = shared.local_media(local.ip(), ports.rtp_port(), &srtp, secure);
            let m = core.media.entry(self.id).or_default();
            m.ports = Some(ports);
            m.source = opts.source;
            m.sink = opts.sink;
            let r = core.ua.answer(Instant::now(), self.id, media);
            if r.is_err() {
                if let Some(m) = core.media.get_mut(&self.id) {
                    m.ports = None;
                }
            }
            Ok(r?)
        })
    }

    /// Early media (RFC 3960 §3): answers an unanswered incoming call's offer in a 183 Session
    /// Progress and starts its audio with `opts` (e.g. a ringback tone or an announcement)
    /// before [`Call::answer`], which then sends the same SDP in its 200 and keeps the stream.
    /// Errors: [`ApiError::NotFound`], [`ApiError::InvalidState`] (not an unanswered incoming
    /// call, an INVITE without SDP offer, or early media already started),
    /// [`ApiError::Network`] (media ports).
    pub fn answer_early(&self, opts: CallOptions) -> Result<(), ApiError> {
        self.with(|shared, core| {
            let (_peer, local) = core.ua.call_signalling_peer(self.id)?;
            let ports = shared.media_ports(local.ip())?;
            let (srtp, secure) = core.ua.call_srtp(self.id)?;
            let media: LocalMedia = shared.local_media(local.ip(), ports.rtp_port(), &srtp, secure);
            core.ua.answer_early(Instant::now(), self.id, media)?;
            // The media starts from the events the answer queued, after this closure.
            let m = core.media.entry(self.id).or_default();
            m.ports = Some(ports);
            m.source = opts.source;
            m.sink = opts.sink;
            Ok(())
        })
    }

    /// Redirects an unanswered incoming call (302 Moved Temporarily with `targets` as Contacts,
    /// the first preferred): call forwarding done by the phone itself. The caller's UA follows
    /// it (RFC 3261 §8.1.3.4). Errors: [`ApiError::InvalidArgument`] (no target, or not a SIP
    /// URI), [`ApiError::NotFound`], [`ApiError::InvalidState`].
    pub fn redirect(&self, targets: &[&str]) -> Result<(), ApiError> {
        let uris = targets
            .iter()
            .map(|t| super::net::parse_uri(t))
            .collect::<Result<Vec<_>, _>>()?;
        self.with(|_, core| Ok(core.ua.redirect(Instant::now(), self.id, 302, &uris)?))
    }

    /// Refuses an unanswered incoming call with `status` (300..=699, e.g. 486 Busy Here).
    /// Errors: [`ApiError::NotFound`], [`ApiError::InvalidState`], [`ApiError::InvalidArgument`].
    pub fn reject(&self, status: u16) -> Result<(), ApiError> {
        self.with(|_, core| Ok(core.ua.reject(Instant::now(), self.id, status)?))
    }

    /// Ends the call: CANCEL before an answer, 603 for an unanswered incoming call, BYE once
    /// up. Errors: [`ApiError::InvalidState`] (a CANCEL or BYE already went and the call has
    /// not ended yet), [`ApiError::NotFound`] (already ended).
    pub fn hangup(&self) -> Result<(), ApiError> {
        self.with(|_, core| Ok(core.ua.hangup(Instant::now(), self.id)?))
    }

    /// Puts the peer on hold (re-INVITE with `a=sendonly`). Errors: [`ApiError::NotFound`],
    /// [`ApiError::InvalidState`] (not up, or a re-INVITE in progress).
    pub fn hold(&self) -> Result<(), ApiError> {
        self.with(|_, core| Ok(core.ua.set_hold(Instant::now(), self.id, true)?))
    }

    /// Takes the peer off hold (re-INVITE with `a=sendrecv`). Errors: as [`Call::hold`].
    pub fn resume(&self) -> Result<(), ApiError> {
        self.with(|_, core| Ok(core.ua.set_hold(Instant::now(), self.id, false)?))
    }

    /// Sends DTMF digits in order, the way the call's account says
    /// ([`super::AccountOptions::dtmf_mode`]): RFC 4733 telephone-events (100 ms each, 50 ms
    /// apart) or SIP INFO requests (`application/dtmf-relay`, 160 ms each, one after the other).
    /// Errors: [`ApiError::NotFound`], [`ApiError::InvalidState`] (no media yet, or no
    /// telephone-event negotiated; INFO: not established), [`ApiError::InvalidArgument`] (a
    /// character not in `0-9 * # A-D`).
    pub fn send_dtmf(&self, digits: &str) -> Result<(), ApiError> {
        if let Some(c) = digits
            .chars()
            .find(|c| crate::media::dtmf::event_code(*c).is_none())
        {
            return Err(ApiError::InvalidArgument(format!("DTMF digit {c:?}")));
        }
        self.with(|_, core| {
            core.ua.call_state(self.id)?;
            if core.ua.call_dtmf_mode(self.id)? == crate::sip::ua::DtmfMode::SipInfo {
                return Ok(core
                    .ua
                    .send_dtmf_info(Instant::now(), self.id, digits, 160)?);
            }
            let h = core
                .media
                .get(&self.id)
                .and_then(|m| m.handle.as_ref())
                .ok_or_else(|| ApiError::InvalidState("no media yet".into()))?;
            Ok(h.send_dtmf(digits)?)
        })
    }

    /// Mutes or unmutes what we send (silence goes out instead, so NAT bindings stay).
    /// Errors: [`ApiError::NotFound`].
    pub fn set_mute(&self, muted: bool) -> Result<(), ApiError> {
        self.with(|_, core| {
            core.ua.call_state(self.id)?;
            let m = core.media.entry(self.id).or_default();
            m.muted = muted;
            if let Some(h) = &m.handle {
                h.set_mute(muted);
            }
            Ok(())
        })
    }

    /// Replaces what we send, mid-call (e.g. another device or file). Errors:
    /// [`ApiError::NotFound`], [`ApiError::Media`] (rate cannot be converted).
    pub fn set_source(&self, source: Box<dyn AudioSource>) -> Result<(), ApiError> {
        self.with(|_, core| {
            core.ua.call_state(self.id)?;
            let m = core.media.entry(self.id).or_default();
            match &m.handle {
                Some(h) => Ok(h.set_source(source)?),
                None => {
                    m.source = Some(source);
                    Ok(())
                }
            }
        })
    }

    /// Replaces where received audio goes, mid-call. Errors: as [`Call::set_source`].
    pub fn set_sink(&self, sink: Box<dyn AudioSink>) -> Result<(), ApiError> {
        self.with(|_, core| {
            core.ua.call_state(self.id)?;
            let m = core.media.entry(self.id).or_default();
            match &m.handle {
                Some(h) => Ok(h.set_sink(sink)?),
                None => {
                    m.sink = Some(sink);
                    Ok(())
                }
            }
        })
    }

    /// The call's state. Errors: [`ApiError::NotFound`] (ended).
    pub fn state(&self) -> Result<CallState, ApiError> {
        self.with(|_, core| Ok(core.ua.call_state(self.id)?))
    }

    /// The peer's URI. Errors: [`ApiError::NotFound`].
    pub fn peer(&self) -> Result<String, ApiError> {
        self.with(|_, core| Ok(core.ua.call_peer(self.id)?))
    }

    /// Media statistics now (zeros before media starts). Errors: [`ApiError::NotFound`].
    pub fn stats(&self) -> Result<CallStats, ApiError> {
        self.with(|_, core| {
            core.ua.call_state(self.id)?;
            Ok(core
                .media
                .get(&self.id)
                .and_then(|m| m.handle.as_ref())
                .map(|h| h.stats())
                .unwrap_or_default())
        })
    }
}
