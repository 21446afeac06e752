//! Events as C sees them: one flat struct with a kind; strings owned by the library.

use std::ffi::{CString, c_char};

use rvoip_sdk::api::{
    CallState, CallStats, Event, LineState, RegistrationState, SubscriptionState,
};

use crate::util::{copy_into, cstring};

/// What an [`rvoip_event`] is about.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rvoip_event_kind {
    /// `account_id`'s registration state changed: `registration_state`, `expires_s`, and for
    /// FAILED `status`, `reason`, `retry_in_ms`.
    RVOIP_EVENT_REGISTRATION_STATE = 0,
    /// A call arrived (we ring): `call_id`, `account_id` (0 if none), `from`, `to`, and
    /// `replaces_call_id` when it replaces one of our calls (an INVITE with `Replaces`,
    /// RFC 3891: the last step of an attended transfer; answer it as usual, the replaced call
    /// ends once it is up), else 0.
    RVOIP_EVENT_INCOMING_CALL = 1,
    /// `call_id`'s state changed: `call_state`; held calls set `held_local`/`held_remote`;
    /// ENDED carries `status` (SIP status, 200 for a normal hang-up) and `reason`.
    RVOIP_EVENT_CALL_STATE = 2,
    /// Audio started or changed on `call_id`: `codec`, `remote_addr`, `direction`, `security`.
    RVOIP_EVENT_MEDIA_STARTED = 3,
    /// Audio stopped on `call_id`.
    RVOIP_EVENT_MEDIA_STOPPED = 4,
    /// A DTMF key arrived on `call_id` (RFC 4733): `digit`.
    RVOIP_EVENT_DTMF_RECEIVED = 5,
    /// Statistics of `call_id` (periodic, and once more when its media stops): `stats`.
    RVOIP_EVENT_STATISTICS = 6,
    /// An instant message arrived (RFC 3428 MESSAGE, answered 200 OK): `account_id` (0 if
    /// none), `from`, `to`, `content_type`, `body`/`body_len`.
    RVOIP_EVENT_MESSAGE_RECEIVED = 7,
    /// The final result of a message we sent: `message_id`, `status` (2xx: delivered; e.g. 404,
    /// 408 on timeout, 503 on a transport error) and `reason`.
    RVOIP_EVENT_MESSAGE_RESULT = 8,
    /// The DTLS-SRTP handshake of `call_id` failed (RFC 5764: the peer's certificate does not
    /// match its SDP fingerprint, no common SRTP protection profile, a fatal alert), so its
    /// media cannot flow: `reason` says what failed. The call stays up; apps usually hang up.
    RVOIP_EVENT_MEDIA_SECURITY_FAILED = 9,
    /// The peer of `call_id` asks us to transfer the call (RFC 3515 REFER): `transfer_id`,
    /// `target` (the Refer-To URI; with `?Replaces=…` for an attended transfer, RFC 3891) and
    /// `referred_by` (the Referred-By value, RFC 3892; empty when not given). Decide within
    /// 8 s with `rvoip_endpoint_accept_transfer` (the library places the new call, reports its
    /// progress to the peer and ends `call_id` once the new call is up) or
    /// `rvoip_endpoint_reject_transfer`; undecided, the request is refused with 480.
    RVOIP_EVENT_TRANSFER_REQUESTED = 10,
    /// Progress of a transfer we asked for (`rvoip_call_transfer`,
    /// `rvoip_call_transfer_to_call`) on `call_id`: `status` (the SIP status of the
    /// transferee's new call, RFC 3515 §2.4.5 sipfrag: 100, 180, 200…, or the failure of the
    /// REFER itself, e.g. 603 when refused), `reason` and `is_final` (true on the last one).
    /// After a final 2xx the transferee ends `call_id` (CALL_STATE ENDED follows).
    RVOIP_EVENT_TRANSFER_STATUS = 11,
    /// Our outgoing call `call_id` was redirected (a 3xx response, RFC 3261 §8.1.3.4) and
    /// now tries `target`: `status` is the 3xx (301, 302…). The call id stays the same.
    RVOIP_EVENT_CALL_REDIRECTED = 12,
    /// The state of our subscription `subscription_id` (`rvoip_account_subscribe`) changed:
    /// `subscription_state`; TERMINATED carries `reason` (e.g. `unsubscribed`, `noresource`,
    /// `timeout`, or a refusal such as `403 Forbidden`); the id is stale from then on.
    RVOIP_EVENT_SUBSCRIPTION_STATE = 13,
    /// A buddy's presence (RFC 3856 NOTIFY with a PIDF document, RFC 3863/4480) on the presence
    /// subscription `subscription_id`: `entity` (the buddy's URI), `online` (reachable, PIDF
    /// `basic` open; false: offline, also for a buddy that never published), `note` (e.g.
    /// `Away`) and `activity` (RPID, e.g. `away`, `busy`, `on-the-phone`), empty when not given.
    RVOIP_EVENT_BUDDY_PRESENCE = 14,
    /// A monitored line's state (RFC 4235 dialog NOTIFY, a busy-lamp field) on the dialog
    /// subscription `subscription_id`: `entity` (the line's URI) and `line_state`.
    RVOIP_EVENT_LINE_STATE = 15,
    /// The result of `rvoip_account_publish_presence` for `account_id` (RFC 3903): `status`
    /// 2xx when the presence server took it, else the failure, and `reason`. Refreshes are
    /// reported only when they fail.
    RVOIP_EVENT_PUBLISH_RESULT = 16,
}

/// Registration states (RFC 3261 §10).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rvoip_registration_state {
    /// Not registered.
    RVOIP_REGISTRATION_UNREGISTERED = 0,
    /// A REGISTER is on its way.
    RVOIP_REGISTRATION_REGISTERING = 1,
    /// Registered for `expires_s` seconds (refreshed automatically).
    RVOIP_REGISTRATION_REGISTERED = 2,
    /// The last attempt failed with `status`; the next one follows in `retry_in_ms`.
    RVOIP_REGISTRATION_FAILED = 3,
}

/// Call states.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rvoip_call_state {
    /// INVITE sent.
    RVOIP_CALL_CALLING = 0,
    /// Ringing (180 received, or we ring an incoming call).
    RVOIP_CALL_RINGING = 1,
    /// Early media (a provisional response with SDP).
    RVOIP_CALL_EARLY_MEDIA = 2,
    /// Connected.
    RVOIP_CALL_CONNECTED = 3,
    /// On hold (see `held_local`, `held_remote`).
    RVOIP_CALL_HELD = 4,
    /// Over (see `status`, `reason`); the call id is stale from now on.
    RVOIP_CALL_ENDED = 5,
}

/// Subscription states (RFC 6665 §4.1.2, `Subscription-State`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rvoip_subscription_state {
    /// SUBSCRIBE sent, nothing confirmed yet.
    RVOIP_SUBSCRIPTION_SUBSCRIBING = 0,
    /// The notifier has not authorized it yet (`pending`).
    RVOIP_SUBSCRIPTION_PENDING = 1,
    /// Notifications flow (`active`).
    RVOIP_SUBSCRIPTION_ACTIVE = 2,
    /// Over (see `reason`); the subscription id is stale from now on.
    RVOIP_SUBSCRIPTION_TERMINATED = 3,
}

/// Line states of a busy-lamp field (RFC 4235 §4.1.1: any confirmed dialog is in call, else
/// any trying/proceeding/early one is ringing, else idle).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rvoip_line_state {
    /// No call, or only ended ones.
    RVOIP_LINE_IDLE = 0,
    /// A call is being set up (ringing).
    RVOIP_LINE_RINGING = 1,
    /// A call is up.
    RVOIP_LINE_IN_CALL = 2,
}

/// Media statistics of a call. Counts since the call's media started.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rvoip_call_stats {
    /// Codec encoding name, NUL-terminated (`PCMU`, `PCMA`, `G722`, `opus`).
    pub codec: [c_char; 16],
    /// RTP packets sent.
    pub tx_packets: u64,
    /// RTP payload bytes sent.
    pub tx_bytes: u64,
    /// RTP packets received.
    pub rx_packets: u64,
    /// RTP payload bytes received.
    pub rx_bytes: u64,
    /// Packets lost (RFC 3550 A.3; negative with duplicates).
    pub rx_lost: i64,
    /// Loss fraction 0.0..=1.0.
    pub rx_loss_fraction: f64,
    /// Interarrival jitter in ms (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Round-trip time from RTCP in ms; negative until measured.
    pub rtt_ms: f64,
    /// MOS estimate 1.0..=4.5 (E-model, ITU-T G.107, simplified).
    pub mos: f64,
    /// Jitter buffer delay in ms.
    pub jitter_buffer_ms: u32,
    /// Frames concealed (packet-loss concealment).
    pub concealed_frames: u64,
    /// DTMF keys received.
    pub dtmf_received: u64,
    /// DTMF keys sent.
    pub dtmf_sent: u64,
    /// SRTP key exchange, NUL-terminated: `SDES` (RFC 4568) or `DTLS` (DTLS-SRTP, RFC 5764);
    /// empty for plain RTP.
    pub srtp_keying: [c_char; 16],
    /// SRTP crypto suite in use, NUL-terminated (RFC 4568 §6.2, RFC 7714 §12):
    /// `AES_CM_128_HMAC_SHA1_80`, `AES_CM_128_HMAC_SHA1_32` or `AEAD_AES_128_GCM`; empty for
    /// plain RTP and until a DTLS-SRTP handshake has completed.
    pub srtp_suite: [c_char; 32],
    /// Received SRTP/SRTCP packets dropped because their authentication tag was wrong
    /// (RFC 3711 §3.4).
    pub srtp_auth_failures: u64,
    /// Received SRTP/SRTCP packets dropped as replays (RFC 3711 §3.3.2).
    pub srtp_replays: u64,
    /// Received packets dropped on an SRTP call as not SRTP at all (plain RTP, malformed, or
    /// arrived before the keys).
    pub srtp_dropped: u64,
}

impl rvoip_call_stats {
    pub(crate) fn from_stats(s: &CallStats) -> rvoip_call_stats {
        let mut out = rvoip_call_stats {
            codec: [0; 16],
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            rx_lost: s.rx_lost,
            rx_loss_fraction: s.rx_loss_fraction,
            jitter_ms: s.jitter_ms,
            rtt_ms: s.rtt_ms.unwrap_or(-1.0),
            mos: s.mos,
            jitter_buffer_ms: s.jitter_buffer_ms,
            concealed_frames: s.concealed_frames,
            dtmf_received: s.dtmf_received,
            dtmf_sent: s.dtmf_sent,
            srtp_keying: [0; 16],
            srtp_suite: [0; 32],
            srtp_auth_failures: s.srtp_auth_failures,
            srtp_replays: s.srtp_replays,
            srtp_dropped: s.srtp_dropped,
        };
        copy_into(&mut out.codec, s.codec);
        copy_into(&mut out.srtp_keying, s.srtp_keying.unwrap_or(""));
        copy_into(&mut out.srtp_suite, s.srtp_suite.unwrap_or(""));
        out
    }
}

/// One event. String pointers are never NULL (empty when not set) and belong to the library:
/// in a callback they are valid during the callback only; from
/// [`crate::rvoip_endpoint_next_event`] until the next call of it on the same endpoint or the
/// endpoint's free.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rvoip_event {
    /// What happened (decides which fields are set).
    pub kind: rvoip_event_kind,
    /// The account, or 0 (REGISTRATION_STATE, INCOMING_CALL, MESSAGE_RECEIVED, PUBLISH_RESULT).
    pub account_id: u64,
    /// The call, or 0.
    pub call_id: u64,
    /// REGISTRATION_STATE: the new state.
    pub registration_state: rvoip_registration_state,
    /// REGISTRATION_STATE: the granted lifetime (s) when REGISTERED.
    pub expires_s: u32,
    /// REGISTRATION_STATE (FAILED): ms until the next attempt (0: none).
    pub retry_in_ms: u64,
    /// CALL_STATE: the new state.
    pub call_state: rvoip_call_state,
    /// CALL_STATE HELD: we put the peer on hold.
    pub held_local: bool,
    /// CALL_STATE HELD: the peer put us on hold.
    pub held_remote: bool,
    /// SIP status: CALL_STATE ENDED (e.g. 486, 487, 200), REGISTRATION FAILED (e.g. 401),
    /// MESSAGE_RESULT, TRANSFER_STATUS (100, 180, 200, 603…), CALL_REDIRECTED (3xx) or
    /// PUBLISH_RESULT.
    pub status: u16,
    /// Reason text of `status`; MEDIA_SECURITY_FAILED: what failed; SUBSCRIPTION_STATE
    /// TERMINATED: why.
    pub reason: *const c_char,
    /// INCOMING_CALL: the From header value.
    pub from: *const c_char,
    /// INCOMING_CALL: the To header value.
    pub to: *const c_char,
    /// MEDIA_STARTED: codec name.
    pub codec: *const c_char,
    /// MEDIA_STARTED: where our RTP goes, `ip:port`.
    pub remote_addr: *const c_char,
    /// MEDIA_STARTED: `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub direction: *const c_char,
    /// DTMF_RECEIVED: the key, `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: c_char,
    /// STATISTICS: the figures.
    pub stats: rvoip_call_stats,
    /// MESSAGE_RESULT: the message (the id its send returned), or 0.
    pub message_id: u64,
    /// MESSAGE_RECEIVED: the Content-Type, e.g. `text/plain;charset=UTF-8`.
    pub content_type: *const c_char,
    /// MESSAGE_RECEIVED: the content (`body_len` bytes, not NUL-terminated; may hold NULs);
    /// never NULL.
    pub body: *const u8,
    /// MESSAGE_RECEIVED: the content's length in bytes.
    pub body_len: usize,
    /// MEDIA_STARTED: the media encryption, `none` (plain RTP), `SDES <suite>` (SRTP keyed by
    /// SDP `a=crypto`, RFC 4568; e.g. `SDES AES_CM_128_HMAC_SHA1_80`) or `DTLS-SRTP` (keyed by a
    /// handshake on the media path, RFC 5764; the suite is in the statistics' `srtp_suite` once
    /// it completes).
    pub security: *const c_char,
    /// TRANSFER_REQUESTED: the request's id (non-zero, never reused), for
    /// `rvoip_endpoint_accept_transfer` / `rvoip_endpoint_reject_transfer`; else 0.
    pub transfer_id: u64,
    /// TRANSFER_REQUESTED: the Refer-To URI (with `?Replaces=…` for an attended transfer);
    /// CALL_REDIRECTED: the URI the call tries now.
    pub target: *const c_char,
    /// TRANSFER_REQUESTED: who asked for the transfer (the Referred-By value, RFC 3892);
    /// empty when the request did not say.
    pub referred_by: *const c_char,
    /// TRANSFER_STATUS: this is the last status of the transfer.
    pub is_final: bool,
    /// INCOMING_CALL: the call this one replaces (RFC 3891 `Replaces`), else 0.
    pub replaces_call_id: u64,
    /// SUBSCRIPTION_STATE, BUDDY_PRESENCE, LINE_STATE: the subscription (the id
    /// `rvoip_account_subscribe` returned), else 0.
    pub subscription_id: u64,
    /// SUBSCRIPTION_STATE: the new state.
    pub subscription_state: rvoip_subscription_state,
    /// BUDDY_PRESENCE, LINE_STATE: the URI whose state this is.
    pub entity: *const c_char,
    /// BUDDY_PRESENCE: reachable (PIDF `basic` open) rather than offline.
    pub online: bool,
    /// BUDDY_PRESENCE: the note (e.g. `Away`); empty when none.
    pub note: *const c_char,
    /// BUDDY_PRESENCE: the RPID activity (`away`, `busy`, `on-the-phone`, ...); empty when none.
    pub activity: *const c_char,
    /// LINE_STATE: the line's state.
    pub line_state: rvoip_line_state,
}

/// An event with the strings it points into (kept alive as long as the C view is used).
pub(crate) struct OwnedEvent {
    pub(crate) ev: rvoip_event,
    _strings: Vec<CString>,
    /// The bytes `ev.body` points into (a heap buffer: moving the value keeps it valid).
    _body: Vec<u8>,
}

// SAFETY: the raw pointers point into `_strings`, owned by the same value and never shared
// mutably; moving the whole value between threads keeps them valid.
unsafe impl Send for OwnedEvent {}

impl OwnedEvent {
    pub(crate) fn new(e: &Event) -> OwnedEvent {
        let mut strings: Vec<CString> = Vec::new();
        let mut put = |s: &str| -> *const c_char {
            let c = cstring(s);
            let p = c.as_ptr();
            strings.push(c);
            p
        };
        let empty = put("");
        let mut body: Vec<u8> = Vec::new();
        let mut ev = rvoip_event {
            kind: rvoip_event_kind::RVOIP_EVENT_CALL_STATE,
            account_id: 0,
            call_id: 0,
            registration_state: rvoip_registration_state::RVOIP_REGISTRATION_UNREGISTERED,
            expires_s: 0,
            retry_in_ms: 0,
            call_state: rvoip_call_state::RVOIP_CALL_CALLING,
            held_local: false,
            held_remote: false,
            status: 0,
            reason: empty,
            from: empty,
            to: empty,
            codec: empty,
            remote_addr: empty,
            direction: empty,
            digit: 0,
            stats: rvoip_call_stats::from_stats(&CallStats::default()),
            message_id: 0,
            content_type: empty,
            body: std::ptr::NonNull::<u8>::dangling().as_ptr(),
            body_len: 0,
            security: empty,
            transfer_id: 0,
            target: empty,
            referred_by: empty,
            is_final: false,
            replaces_call_id: 0,
            subscription_id: 0,
            subscription_state: rvoip_subscription_state::RVOIP_SUBSCRIPTION_SUBSCRIBING,
            entity: empty,
            online: false,
            note: empty,
            activity: empty,
            line_state: rvoip_line_state::RVOIP_LINE_IDLE,
        };
        match e {
            Event::RegistrationState { account, state } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_REGISTRATION_STATE;
                ev.account_id = account.0;
                ev.registration_state = match state {
                    RegistrationState::Unregistered => {
                        rvoip_registration_state::RVOIP_REGISTRATION_UNREGISTERED
                    }
                    RegistrationState::Registering => {
                        rvoip_registration_state::RVOIP_REGISTRATION_REGISTERING
                    }
                    RegistrationState::Registered { expires_s } => {
                        ev.expires_s = *expires_s;
                        rvoip_registration_state::RVOIP_REGISTRATION_REGISTERED
                    }
                    RegistrationState::Failed {
                        status,
                        reason,
                        retry_in_ms,
                    } => {
                        ev.status = *status;
                        ev.reason = put(reason);
                        ev.retry_in_ms = *retry_in_ms;
                        rvoip_registration_state::RVOIP_REGISTRATION_FAILED
                    }
                };
            }
            Event::IncomingCall {
                call,
                account,
                from,
                to,
                replaces,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_INCOMING_CALL;
                ev.call_id = call.0;
                ev.account_id = account.map_or(0, |a| a.0);
                ev.from = put(from);
                ev.to = put(to);
                ev.replaces_call_id = replaces.map_or(0, |c| c.0);
            }
            Event::CallState { call, state } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_CALL_STATE;
                ev.call_id = call.0;
                ev.call_state = match state {
                    CallState::Calling => rvoip_call_state::RVOIP_CALL_CALLING,
                    CallState::Ringing => rvoip_call_state::RVOIP_CALL_RINGING,
                    CallState::EarlyMedia => rvoip_call_state::RVOIP_CALL_EARLY_MEDIA,
                    CallState::Connected => rvoip_call_state::RVOIP_CALL_CONNECTED,
                    CallState::Held { local, remote } => {
                        ev.held_local = *local;
                        ev.held_remote = *remote;
                        rvoip_call_state::RVOIP_CALL_HELD
                    }
                    CallState::Ended { status, reason } => {
                        ev.status = *status;
                        ev.reason = put(reason);
                        rvoip_call_state::RVOIP_CALL_ENDED
                    }
                };
            }
            Event::MediaStarted {
                call,
                codec,
                remote,
                direction,
                security,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_MEDIA_STARTED;
                ev.call_id = call.0;
                ev.codec = put(codec);
                ev.remote_addr = put(&remote.to_string());
                ev.direction = put(direction);
                ev.security = put(security);
            }
            Event::MediaSecurityFailed { call, reason } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_MEDIA_SECURITY_FAILED;
                ev.call_id = call.0;
                ev.reason = put(reason);
            }
            Event::MediaStopped { call } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_MEDIA_STOPPED;
                ev.call_id = call.0;
            }
            Event::DtmfReceived { call, digit } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_DTMF_RECEIVED;
                ev.call_id = call.0;
                ev.digit = if digit.is_ascii() {
                    *digit as u8 as c_char
                } else {
                    0
                };
            }
            Event::Statistics { call, stats } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_STATISTICS;
                ev.call_id = call.0;
                ev.stats = rvoip_call_stats::from_stats(stats);
            }
            Event::MessageReceived {
                account,
                from,
                to,
                content_type,
                body: content,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_MESSAGE_RECEIVED;
                ev.account_id = account.map_or(0, |a| a.0);
                ev.from = put(from);
                ev.to = put(to);
                ev.content_type = put(content_type);
                body = content.clone();
                if !body.is_empty() {
                    ev.body = body.as_ptr();
                    ev.body_len = body.len();
                }
            }
            Event::MessageResult {
                message,
                status,
                reason,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_MESSAGE_RESULT;
                ev.message_id = message.0;
                ev.status = *status;
                ev.reason = put(reason);
            }
            Event::TransferRequested {
                call,
                transfer,
                target,
                referred_by,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_TRANSFER_REQUESTED;
                ev.call_id = call.0;
                ev.transfer_id = transfer.0;
                ev.target = put(target);
                if let Some(by) = referred_by {
                    ev.referred_by = put(by);
                }
            }
            Event::TransferStatus {
                call,
                status,
                reason,
                is_final,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_TRANSFER_STATUS;
                ev.call_id = call.0;
                ev.status = *status;
                ev.reason = put(reason);
                ev.is_final = *is_final;
            }
            Event::CallRedirected {
                call,
                status,
                target,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_CALL_REDIRECTED;
                ev.call_id = call.0;
                ev.status = *status;
                ev.target = put(target);
            }
            Event::SubscriptionState {
                subscription,
                state,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_SUBSCRIPTION_STATE;
                ev.subscription_id = subscription.0;
                ev.subscription_state = match state {
                    SubscriptionState::Subscribing => {
                        rvoip_subscription_state::RVOIP_SUBSCRIPTION_SUBSCRIBING
                    }
                    SubscriptionState::Pending => {
                        rvoip_subscription_state::RVOIP_SUBSCRIPTION_PENDING
                    }
                    SubscriptionState::Active => {
                        rvoip_subscription_state::RVOIP_SUBSCRIPTION_ACTIVE
                    }
                    SubscriptionState::Terminated { reason } => {
                        ev.reason = put(reason);
                        rvoip_subscription_state::RVOIP_SUBSCRIPTION_TERMINATED
                    }
                };
            }
            Event::BuddyPresence {
                subscription,
                entity,
                online,
                note,
                activity,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_BUDDY_PRESENCE;
                ev.subscription_id = subscription.0;
                ev.entity = put(entity);
                ev.online = *online;
                if let Some(n) = note {
                    ev.note = put(n);
                }
                if let Some(a) = activity {
                    ev.activity = put(a);
                }
            }
            Event::LineState {
                subscription,
                entity,
                line,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_LINE_STATE;
                ev.subscription_id = subscription.0;
                ev.entity = put(entity);
                ev.line_state = match line {
                    LineState::Idle => rvoip_line_state::RVOIP_LINE_IDLE,
                    LineState::Ringing => rvoip_line_state::RVOIP_LINE_RINGING,
                    LineState::InCall => rvoip_line_state::RVOIP_LINE_IN_CALL,
                };
            }
            Event::PublishResult {
                account,
                status,
                reason,
            } => {
                ev.kind = rvoip_event_kind::RVOIP_EVENT_PUBLISH_RESULT;
                ev.account_id = account.0;
                ev.status = *status;
                ev.reason = put(reason);
            }
        }
        OwnedEvent {
            ev,
            _strings: strings,
            _body: body,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::net::SocketAddr;

    use rvoip_sdk::api::{AccountId, CallId, SubscriptionId, TransferId};
    use rvoip_sdk::media::sdes::CryptoSuite;

    use super::*;

    fn text(p: *const c_char) -> String {
        // SAFETY: a non-NULL string owned by the OwnedEvent still alive in the caller.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn field(chars: &[c_char]) -> String {
        // SAFETY: copy_into always NUL-terminates inside the array.
        unsafe { CStr::from_ptr(chars.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn every_srtp_name_fits_the_statistics_fields() {
        let mut s = CallStats {
            srtp_keying: Some("DTLS"),
            srtp_auth_failures: 3,
            srtp_replays: 2,
            srtp_dropped: 1,
            ..CallStats::default()
        };
        for suite in CryptoSuite::ALL {
            s.srtp_suite = Some(suite.name());
            let c = rvoip_call_stats::from_stats(&s);
            assert_eq!(field(&c.srtp_suite), suite.name());
            assert_eq!(field(&c.srtp_keying), "DTLS");
            assert_eq!(
                (c.srtp_auth_failures, c.srtp_replays, c.srtp_dropped),
                (3, 2, 1)
            );
        }
        for keying in ["SDES", "DTLS"] {
            s.srtp_keying = Some(keying);
            assert_eq!(field(&rvoip_call_stats::from_stats(&s).srtp_keying), keying);
        }
        let plain = rvoip_call_stats::from_stats(&CallStats::default());
        assert_eq!(
            (field(&plain.srtp_keying), field(&plain.srtp_suite)),
            ("".into(), "".into())
        );
    }

    #[test]
    fn media_security_reaches_c() {
        let remote: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let started = OwnedEvent::new(&Event::MediaStarted {
            call: CallId(5),
            codec: "PCMU".into(),
            remote,
            direction: "sendrecv".into(),
            security: "SDES AES_CM_128_HMAC_SHA1_80".into(),
        });
        assert_eq!(started.ev.kind, rvoip_event_kind::RVOIP_EVENT_MEDIA_STARTED);
        assert_eq!(started.ev.call_id, 5);
        assert_eq!(text(started.ev.security), "SDES AES_CM_128_HMAC_SHA1_80");
        assert_eq!(text(started.ev.reason), "");

        let failed = OwnedEvent::new(&Event::MediaSecurityFailed {
            call: CallId(6),
            reason: "fingerprint mismatch".into(),
        });
        assert_eq!(
            failed.ev.kind,
            rvoip_event_kind::RVOIP_EVENT_MEDIA_SECURITY_FAILED
        );
        assert_eq!(failed.ev.kind as u32, 9);
        assert_eq!(failed.ev.call_id, 6);
        assert_eq!(text(failed.ev.reason), "fingerprint mismatch");
        assert_eq!(text(failed.ev.security), "");
    }

    #[test]
    fn transfer_and_redirect_events_reach_c() {
        // The kinds are appended: the numbers of the older ones never change.
        assert_eq!(rvoip_event_kind::RVOIP_EVENT_TRANSFER_REQUESTED as u32, 10);
        assert_eq!(rvoip_event_kind::RVOIP_EVENT_TRANSFER_STATUS as u32, 11);
        assert_eq!(rvoip_event_kind::RVOIP_EVENT_CALL_REDIRECTED as u32, 12);

        let req = OwnedEvent::new(&Event::TransferRequested {
            call: CallId(3),
            transfer: TransferId(9),
            target: "sip:carol@192.0.2.1".into(),
            referred_by: Some("<sip:alice@192.0.2.1>".into()),
        });
        assert_eq!(
            req.ev.kind,
            rvoip_event_kind::RVOIP_EVENT_TRANSFER_REQUESTED
        );
        assert_eq!((req.ev.call_id, req.ev.transfer_id), (3, 9));
        assert_eq!(text(req.ev.target), "sip:carol@192.0.2.1");
        assert_eq!(text(req.ev.referred_by), "<sip:alice@192.0.2.1>");
        let anon = OwnedEvent::new(&Event::TransferRequested {
            call: CallId(3),
            transfer: TransferId(10),
            target: "sip:carol@192.0.2.1".into(),
            referred_by: None,
        });
        assert_eq!(text(anon.ev.referred_by), "");

        for (status, is_final) in [(100, false), (200, true), (603, true)] {
            let st = OwnedEvent::new(&Event::TransferStatus {
                call: CallId(4),
                status,
                reason: "Why".into(),
                is_final,
            });
            assert_eq!(st.ev.kind, rvoip_event_kind::RVOIP_EVENT_TRANSFER_STATUS);
            assert_eq!(
                (st.ev.call_id, st.ev.status, st.ev.is_final),
                (4, status, is_final)
            );
            assert_eq!(text(st.ev.reason), "Why");
            assert_eq!(st.ev.transfer_id, 0);
        }

        let red = OwnedEvent::new(&Event::CallRedirected {
            call: CallId(5),
            status: 302,
            target: "sip:carol@192.0.2.1".into(),
        });
        assert_eq!(red.ev.kind, rvoip_event_kind::RVOIP_EVENT_CALL_REDIRECTED);
        assert_eq!((red.ev.call_id, red.ev.status), (5, 302));
        assert_eq!(text(red.ev.target), "sip:carol@192.0.2.1");
        assert!(!red.ev.is_final);

        for (replaces, want) in [(Some(CallId(7)), 7), (None, 0)] {
            let inc = OwnedEvent::new(&Event::IncomingCall {
                call: CallId(8),
                account: Some(AccountId(1)),
                from: "<sip:bob@192.0.2.1>".into(),
                to: "<sip:carol@192.0.2.1>".into(),
                replaces,
            });
            assert_eq!(inc.ev.kind, rvoip_event_kind::RVOIP_EVENT_INCOMING_CALL);
            assert_eq!(inc.ev.replaces_call_id, want);
            assert_eq!(
                (text(inc.ev.target), text(inc.ev.referred_by)),
                ("".into(), "".into())
            );
        }
    }

    #[test]
    fn presence_events_reach_c() {
        let states = [
            (
                SubscriptionState::Subscribing,
                rvoip_subscription_state::RVOIP_SUBSCRIPTION_SUBSCRIBING,
                "",
            ),
            (
                SubscriptionState::Pending,
                rvoip_subscription_state::RVOIP_SUBSCRIPTION_PENDING,
                "",
            ),
            (
                SubscriptionState::Active,
                rvoip_subscription_state::RVOIP_SUBSCRIPTION_ACTIVE,
                "",
            ),
            (
                SubscriptionState::Terminated {
                    reason: "unsubscribed".into(),
                },
                rvoip_subscription_state::RVOIP_SUBSCRIPTION_TERMINATED,
                "unsubscribed",
            ),
        ];
        for (state, want, reason) in states {
            let e = OwnedEvent::new(&Event::SubscriptionState {
                subscription: SubscriptionId(4),
                state,
            });
            assert_eq!(e.ev.kind, rvoip_event_kind::RVOIP_EVENT_SUBSCRIPTION_STATE);
            assert_eq!((e.ev.subscription_id, e.ev.subscription_state), (4, want));
            assert_eq!(text(e.ev.reason), reason);
            assert_eq!((e.ev.account_id, e.ev.call_id), (0, 0));
        }

        let away = OwnedEvent::new(&Event::BuddyPresence {
            subscription: SubscriptionId(5),
            entity: "sip:bob@192.0.2.1".into(),
            online: true,
            note: Some("Away".into()),
            activity: Some("away".into()),
        });
        assert_eq!(away.ev.kind, rvoip_event_kind::RVOIP_EVENT_BUDDY_PRESENCE);
        assert_eq!((away.ev.subscription_id, away.ev.online), (5, true));
        assert_eq!(text(away.ev.entity), "sip:bob@192.0.2.1");
        assert_eq!(
            (text(away.ev.note), text(away.ev.activity)),
            ("Away".into(), "away".into())
        );
        let off = OwnedEvent::new(&Event::BuddyPresence {
            subscription: SubscriptionId(5),
            entity: "sip:bob@192.0.2.1".into(),
            online: false,
            note: None,
            activity: None,
        });
        assert!(!off.ev.online);
        assert_eq!(
            (text(off.ev.note), text(off.ev.activity)),
            ("".into(), "".into())
        );

        for (line, want) in [
            (LineState::Idle, rvoip_line_state::RVOIP_LINE_IDLE),
            (LineState::Ringing, rvoip_line_state::RVOIP_LINE_RINGING),
            (LineState::InCall, rvoip_line_state::RVOIP_LINE_IN_CALL),
        ] {
            let e = OwnedEvent::new(&Event::LineState {
                subscription: SubscriptionId(6),
                entity: "sip:bob@192.0.2.1".into(),
                line,
            });
            assert_eq!(e.ev.kind, rvoip_event_kind::RVOIP_EVENT_LINE_STATE);
            assert_eq!((e.ev.subscription_id, e.ev.line_state), (6, want));
            assert_eq!(text(e.ev.entity), "sip:bob@192.0.2.1");
        }

        let p = OwnedEvent::new(&Event::PublishResult {
            account: AccountId(2),
            status: 200,
            reason: "OK".into(),
        });
        assert_eq!(p.ev.kind, rvoip_event_kind::RVOIP_EVENT_PUBLISH_RESULT);
        assert_eq!(
            (p.ev.account_id, p.ev.status, p.ev.subscription_id),
            (2, 200, 0)
        );
        assert_eq!(text(p.ev.reason), "OK");
    }
}
