//! Calls: one INVITE session (RFC 3261 §13–15) with two-way audio (RFC 3264 offer/answer,
//! RFC 3550 RTP), RFC 4733 or SIP INFO DTMF, early media (RFC 3960), redirection (3xx) and
//! transfer (RFC 3515 REFER, RFC 3891 Replaces).

use std::sync::Arc;

use rvoip_sdk::api as sdk;

use crate::RvoipError;
use crate::audio::{AudioSink, AudioSource};
use crate::event::{CallState, CallStats};

/// The audio of a call: what it sends and where what it receives goes. Each object is taken
/// by the call.
#[derive(uniffi::Record)]
pub struct CallOptions {
    /// What we send; `None`: the default input device (with the `audio-device` feature), else
    /// silence.
    #[uniffi(default)]
    pub source: Option<Arc<AudioSource>>,
    /// Where received audio goes; `None`: the default output device (with the
    /// `audio-device` feature), else discarded.
    #[uniffi(default)]
    pub sink: Option<Arc<AudioSink>>,
}

impl CallOptions {
    /// The SDK options, taking the audio objects. Errors: `InvalidState` (an object already
    /// used by another call).
    pub(crate) fn take(&self) -> Result<sdk::CallOptions, RvoipError> {
        Ok(sdk::CallOptions {
            source: self.source.as_ref().map(|s| s.take()).transpose()?,
            sink: self.sink.as_ref().map(|s| s.take()).transpose()?,
        })
    }
}

/// A call (outgoing from `Endpoint.make_call`, incoming from `Event.IncomingCall` and
/// `Endpoint.call`). The handle stays valid after the call ends; its methods then raise
/// `NotFound`.
#[derive(uniffi::Object)]
pub struct Call {
    pub(crate) inner: sdk::Call,
}

#[uniffi::export]
impl Call {
    /// The call id (as in events); never reused.
    pub fn id(&self) -> u64 {
        self.inner.id().0
    }

    /// Answers an incoming ringing call (200 OK with our SDP answer). Errors: `InvalidState`
    /// (outgoing or already answered), `InvalidState` (an audio object already used),
    /// `NotFound` (ended), `Network` (media ports).
    #[uniffi::method(default(options = None))]
    pub fn answer(&self, options: Option<CallOptions>) -> Result<(), RvoipError> {
        let o = match options {
            Some(o) => o.take()?,
            None => sdk::CallOptions::default(),
        };
        Ok(self.inner.answer(o)?)
    }

    /// Early media (RFC 3960 §3): answers an unanswered incoming call's SDP offer in a 183
    /// Session Progress and starts its audio with `options` (e.g. a ringback tone or an
    /// announcement) before [`Call::answer`]; the caller's call goes to `CallState.EarlyMedia`.
    /// A later `answer` sends the same SDP in its 200 and keeps this audio (its own options are
    /// then unused). Errors: `InvalidState` (not an unanswered incoming call, an INVITE without
    /// an SDP offer, early media already started, or an audio object already used),
    /// `NotFound` (ended), `Network` (media ports).
    #[uniffi::method(default(options = None))]
    pub fn answer_early(&self, options: Option<CallOptions>) -> Result<(), RvoipError> {
        let o = match options {
            Some(o) => o.take()?,
            None => sdk::CallOptions::default(),
        };
        Ok(self.inner.answer_early(o)?)
    }

    /// Redirects an unanswered incoming call: a 302 Moved Temporarily with `targets` (SIP
    /// URIs, the first preferred) as Contacts (RFC 3261 §8.1.3.4): call forwarding done by the
    /// phone itself. The caller tries them (an rvoip caller hears `Event.CallRedirected`); this
    /// call ends. Errors: `InvalidArgument` (no target, or one is not a SIP URI),
    /// `InvalidState` (not an unanswered incoming call), `NotFound`.
    pub fn redirect(&self, targets: Vec<String>) -> Result<(), RvoipError> {
        let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        Ok(self.inner.redirect(&targets)?)
    }

    /// Blind transfer (RFC 3515, RFC 5589 §6): asks the peer of this established call to call
    /// `target` (a SIP URI). Progress arrives as `Event.TransferStatus` for this call (100,
    /// then the new call's 180, 200 or failure; or the REFER's own failure, e.g. 603 when the
    /// peer refuses), the last with `is_final`; after a success the peer ends this call.
    /// Errors: `InvalidArgument` (not a SIP URI), `InvalidState` (not established),
    /// `NotFound`, `Shutdown`.
    pub fn transfer(&self, target: String) -> Result<(), RvoipError> {
        Ok(self.inner.transfer(&target)?)
    }

    /// Attended transfer (RFC 5589 §7): asks the peer of this call to call the peer of the
    /// consultation call `other`, replacing it there (Refer-To with `Replaces`, RFC 3891).
    /// Progress arrives as `Event.TransferStatus` for this call; after a success both calls
    /// end. Errors: `InvalidArgument` (`other` is this call), `InvalidState` (either call not
    /// established), `NotFound`, `Shutdown`.
    pub fn transfer_to_call(&self, other: Arc<Call>) -> Result<(), RvoipError> {
        if other.inner.id() == self.inner.id() {
            return Err(RvoipError::invalid(
                "a call cannot be transferred to itself",
            ));
        }
        Ok(self.inner.transfer_to_call(&other.inner)?)
    }

    /// Refuses an incoming call with a final `status` in 300..=699 (486 Busy Here, 603
    /// Decline, 302 with no Contact …). Errors: `InvalidArgument` (status), `InvalidState`
    /// (outgoing or answered), `NotFound`.
    #[uniffi::method(default(status = 486))]
    pub fn reject(&self, status: u16) -> Result<(), RvoipError> {
        Ok(self.inner.reject(status)?)
    }

    /// Ends the call: CANCEL before an answer (RFC 3261 §9), BYE after it (§15), 603 for an
    /// unanswered incoming call. Errors: `NotFound` (already ended), `InvalidState` (a CANCEL
    /// is already pending).
    pub fn hangup(&self) -> Result<(), RvoipError> {
        Ok(self.inner.hangup()?)
    }

    /// Puts the peer on hold (re-INVITE with `sendonly`, RFC 3264 §8.4). Errors:
    /// `InvalidState` (not connected, or a re-INVITE is in progress), `NotFound`.
    pub fn hold(&self) -> Result<(), RvoipError> {
        Ok(self.inner.hold()?)
    }

    /// Takes the peer off hold (re-INVITE with `sendrecv`). Errors: as [`Call::hold`].
    pub fn resume(&self) -> Result<(), RvoipError> {
        Ok(self.inner.resume()?)
    }

    /// Sends `digits` (`0-9*#A-D`) one after another the way the call's account says
    /// (`AccountOptions.dtmf_mode`): RFC 4733 telephone-events (100 ms tone, 50 ms gap; the
    /// default) or SIP INFO requests (`application/dtmf-relay`). Errors: `InvalidArgument` (a
    /// digit), `InvalidState` (no media yet, or the peer did not accept telephone-event; with
    /// SIP INFO: not established), `NotFound`.
    pub fn send_dtmf(&self, digits: String) -> Result<(), RvoipError> {
        Ok(self.inner.send_dtmf(&digits)?)
    }

    /// Mutes (sends silence) or unmutes our audio. Errors: `NotFound`.
    pub fn set_mute(&self, muted: bool) -> Result<(), RvoipError> {
        Ok(self.inner.set_mute(muted)?)
    }

    /// Replaces what we send (takes `source`). Errors: `InvalidState` (source used),
    /// `NotFound`, `Media` (rate cannot be converted).
    pub fn set_source(&self, source: Arc<AudioSource>) -> Result<(), RvoipError> {
        Ok(self.inner.set_source(source.take()?)?)
    }

    /// Replaces where received audio goes (takes `sink`; the old sink is finished). Errors:
    /// `InvalidState` (sink used), `NotFound`.
    pub fn set_sink(&self, sink: Arc<AudioSink>) -> Result<(), RvoipError> {
        Ok(self.inner.set_sink(sink.take()?)?)
    }

    /// The current state. Errors: `NotFound` (ended and forgotten).
    pub fn state(&self) -> Result<CallState, RvoipError> {
        Ok(self.inner.state()?.into())
    }

    /// The remote party (From of an incoming call, To of an outgoing one). Errors: `NotFound`.
    pub fn peer(&self) -> Result<String, RvoipError> {
        Ok(self.inner.peer()?)
    }

    /// The audio statistics so far (zeros before media starts). Errors: `NotFound`.
    pub fn stats(&self) -> Result<CallStats, RvoipError> {
        Ok(self.inner.stats()?.into())
    }
}
