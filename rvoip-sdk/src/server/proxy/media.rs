//! The points where session descriptions pass through the proxy, for a media relay to anchor
//! the media (RFC 3264 offer/answer as carried by RFC 3261 INVITE/ACK/2xx, RFC 3262 reliable
//! provisionals and RFC 3311 UPDATE).
//!
//! The proxy calls a [`MediaHook`] at each point: the SDP of an initial INVITE (once per fork
//! branch), of a re-INVITE or UPDATE, of a provisional or 2xx response, of an ACK (late offer),
//! and when a branch or the whole call ends (BYE, CANCEL, final failure, transaction timeout).
//! The hook may rewrite the body in place. [`NoMedia`] leaves everything untouched (signalling
//! only, `relay = "off"`).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::sip::msg::Method;

/// The two parties of a call, as seen from the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// The UAC that sent the initial INVITE (its From tag identifies its requests).
    Caller,
    /// The UAS that answered it.
    Callee,
}

impl Party {
    /// The other party.
    pub fn other(self) -> Party {
        match self {
            Party::Caller => Party::Callee,
            Party::Callee => Party::Caller,
        }
    }
}

/// One session description passing through the proxy.
#[derive(Debug, Clone)]
pub struct SdpPassage<'a> {
    /// The call's Call-ID.
    pub call_id: &'a str,
    /// The fork branch of the initial INVITE this belongs to (0-based; in-dialog requests and
    /// their responses carry the branch that was answered).
    pub branch: u32,
    /// Who wrote this SDP.
    pub sender: Party,
    /// The method of the request or of the request the response answers.
    pub method: Method,
    /// `Some(status)` for a response.
    pub status: Option<u16>,
    /// Whether it belongs to the dialog-creating INVITE (or its ACK).
    pub initial: bool,
    /// The sender's signalling address, when the proxy knows it (the request's source, or the
    /// flow a response's branch went to).
    pub source: Option<SocketAddr>,
    /// Whether either party is known to sit behind a NAT (its REGISTER or INVITE came from an
    /// address other than the one it wrote in Via/Contact).
    pub nat: bool,
}

/// Why the media of a call (or of one fork branch) ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// BYE (either side).
    Bye,
    /// The INVITE was cancelled.
    Cancel,
    /// A final non-2xx response, or the branch lost to another branch's 2xx.
    Failure,
    /// A transaction timed out (Timer B/F/C), or the dialog was dropped unanswered.
    Timeout,
    /// No media flowed for the relay's media timeout; the proxy sent BYE to both sides.
    MediaTimeout,
}

/// What the media side of the proxy does with session descriptions. Implemented by the relay
/// anchor (`super::anchor::RelayAnchor`) and by [`NoMedia`].
pub trait MediaHook: Send {
    /// An SDP body about to be forwarded; rewrite `body` in place to anchor the media.
    /// `Err(status)` refuses a request (503 when the relay has no ports left, 488 when the SDP
    /// cannot be anchored); for responses an error leaves the body as it is.
    fn on_sdp(&mut self, now: Instant, p: &SdpPassage<'_>, body: &mut Bytes) -> Result<(), u16>;
    /// A 2xx answered the initial INVITE on `branch`: the other branches' media can go.
    fn on_answered(&mut self, now: Instant, call_id: &str, branch: u32);
    /// One fork branch ended without being answered.
    fn on_branch_end(&mut self, now: Instant, call_id: &str, branch: u32, why: EndReason);
    /// The whole call ended: every resource for `call_id` can go.
    fn on_call_end(&mut self, now: Instant, call_id: &str, why: EndReason);
    /// The next instant [`MediaHook::handle_timeout`] must run.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// Runs expired timers.
    fn handle_timeout(&mut self, _now: Instant) {}
    /// A call whose media stopped flowing (media timeout): the proxy ends it with BYE both ways.
    fn poll_media_timeout(&mut self) -> Option<String> {
        None
    }
    /// Joins call `call_id` to conference room `room` with the member's SDP `offer`; the
    /// answer for its 200. Errors: the status to refuse the INVITE with (488 no codec the room
    /// mixes, 400 unreadable SDP, 503 no relay or no ports). Default: 503 (no media relay).
    fn conference_join(
        &mut self,
        _now: Instant,
        _call_id: &str,
        _room: &str,
        _offer: &[u8],
    ) -> Result<Bytes, u16> {
        Err(503)
    }
    /// Takes call `call_id` out of its room: the room and the members it has left (0: the
    /// room ended); `None` when it was no member.
    fn conference_leave(&mut self, _now: Instant, _call_id: &str) -> Option<(String, usize)> {
        None
    }
    /// The next thing a conference member did or suffered in the media.
    fn poll_conference_event(&mut self) -> Option<ConferenceEvent> {
        None
    }
    /// Records call `call_id` (the server's recording policy chose it, before its INVITE is
    /// forwarded): once answered, its media is recorded. Default: no recording.
    fn record_call(&mut self, _call_id: &str) {}
    /// Whether [`MediaHook::widen_offer`] can ever succeed (the proxy then keeps a copy of
    /// each initial INVITE with SDP for a second try).
    fn may_widen(&self) -> bool {
        false
    }
    /// The callee refused the (anchored) offer `body` of `branch` with 488: adds the codecs
    /// the relay can convert, so that parties with no codec in common still connect. Returns
    /// whether the body was widened (the proxy then sends it again; once per branch).
    fn widen_offer(
        &mut self,
        _now: Instant,
        _call_id: &str,
        _branch: u32,
        _body: &mut Bytes,
    ) -> bool {
        false
    }
}

/// What happened to a conference member in the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConferenceEvent {
    /// No media from the member for the relay's media timeout: the server ends its call.
    MediaTimeout(String),
    /// The member muted or unmuted itself with DTMF `*6`.
    Muted {
        /// Its Call-ID.
        call_id: String,
        /// Whether it is muted now.
        muted: bool,
    },
}

/// Signalling only: bodies pass untouched.
#[derive(Debug, Default)]
pub struct NoMedia;

impl MediaHook for NoMedia {
    fn on_sdp(&mut self, _: Instant, _: &SdpPassage<'_>, _: &mut Bytes) -> Result<(), u16> {
        Ok(())
    }
    fn on_answered(&mut self, _: Instant, _: &str, _: u32) {}
    fn on_branch_end(&mut self, _: Instant, _: &str, _: u32, _: EndReason) {}
    fn on_call_end(&mut self, _: Instant, _: &str, _: EndReason) {}
}
