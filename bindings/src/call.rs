//! Calls: one INVITE session (RFC 3261 §13–15) with two-way audio (RFC 3264 offer/answer,
//! RFC 3550 RTP) and RFC 4733 DTMF.

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

    /// Sends `digits` (`0-9*#A-D`) as RFC 4733 telephone-events, one after another (100 ms
    /// tone, 50 ms gap). Errors: `InvalidArgument` (a digit), `InvalidState` (no media yet,
    /// or the peer did not accept telephone-event), `NotFound`.
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
