//! What an app hears about: [`Event`] and the state and statistics records it carries, converted
//! from [`rvoip_sdk::api`]. Ids are the `u64` of the SDK's `AccountId` / `CallId`, never reused.

use rvoip_sdk::api as sdk;

/// Registration state of an account (RFC 3261 §10.2).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum RegistrationState {
    /// A REGISTER is on its way (first time or refresh).
    Registering,
    /// The registrar accepted the binding for `expires_s` seconds (refreshed automatically
    /// 10 s before it expires).
    Registered {
        /// Granted lifetime in seconds.
        expires_s: u32,
    },
    /// The binding is removed (unregistered, or never registered).
    Unregistered,
    /// The last REGISTER failed with SIP `status` (408: timeout, 503: transport error); the
    /// engine retries after `retry_in_ms` (0: no retry scheduled).
    Failed {
        /// SIP status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// Milliseconds until the next attempt (exponential backoff, 2 s to 300 s).
        retry_in_ms: u64,
    },
}

impl From<sdk::RegistrationState> for RegistrationState {
    fn from(s: sdk::RegistrationState) -> Self {
        match s {
            sdk::RegistrationState::Registering => RegistrationState::Registering,
            sdk::RegistrationState::Registered { expires_s } => {
                RegistrationState::Registered { expires_s }
            }
            sdk::RegistrationState::Unregistered => RegistrationState::Unregistered,
            sdk::RegistrationState::Failed {
                status,
                reason,
                retry_in_ms,
            } => RegistrationState::Failed {
                status,
                reason,
                retry_in_ms,
            },
        }
    }
}

/// The state of a call as an app shows it (RFC 3261 §13; hold per RFC 3264 §8.4).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum CallState {
    /// INVITE sent, no provisional response yet.
    Calling,
    /// Outgoing: 180 Ringing received; incoming: we are ringing (180 sent).
    Ringing,
    /// Outgoing: a provisional response carried SDP (early media, RFC 3960).
    EarlyMedia,
    /// Answered (2xx and ACK): media flows both ways.
    Connected,
    /// Up but on hold: `local` when we put the peer on hold, `remote` when the peer did.
    Held {
        /// We sent sendonly/inactive.
        local: bool,
        /// The peer sent sendonly/inactive.
        remote: bool,
    },
    /// Over: the final SIP status (486, 487, 603 …) or 200 after a BYE, and a reason.
    Ended {
        /// SIP status code.
        status: u16,
        /// Reason, e.g. `"Busy Here"`, `"remote hangup"`.
        reason: String,
    },
}

impl From<sdk::CallState> for CallState {
    fn from(s: sdk::CallState) -> Self {
        match s {
            sdk::CallState::Calling => CallState::Calling,
            sdk::CallState::Ringing => CallState::Ringing,
            sdk::CallState::EarlyMedia => CallState::EarlyMedia,
            sdk::CallState::Connected => CallState::Connected,
            sdk::CallState::Held { local, remote } => CallState::Held { local, remote },
            sdk::CallState::Ended { status, reason } => CallState::Ended { status, reason },
        }
    }
}

/// The state of a subscription (`Account.subscribe`; RFC 6665 §4.1.2, `Subscription-State`).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum SubscriptionState {
    /// SUBSCRIBE sent, nothing confirmed yet.
    Subscribing,
    /// The notifier has not authorized it yet (`pending`).
    Pending,
    /// Notifications flow (`active`).
    Active,
    /// Over; the subscription id is stale from now on.
    Terminated {
        /// Why: `unsubscribed` (`Endpoint.unsubscribe`), the notifier's reason (e.g.
        /// `noresource`, `rejected`, `timeout`) or a refusal (e.g. `403 Forbidden`).
        reason: String,
    },
}

impl From<sdk::SubscriptionState> for SubscriptionState {
    fn from(s: sdk::SubscriptionState) -> Self {
        match s {
            sdk::SubscriptionState::Subscribing => SubscriptionState::Subscribing,
            sdk::SubscriptionState::Pending => SubscriptionState::Pending,
            sdk::SubscriptionState::Active => SubscriptionState::Active,
            sdk::SubscriptionState::Terminated { reason } => {
                SubscriptionState::Terminated { reason }
            }
        }
    }
}

/// The state of a monitored line as a busy-lamp field shows it (RFC 4235 §4.1.1: any
/// confirmed dialog is in call, else any trying/proceeding/early one is ringing, else idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LineState {
    /// No call, or only ended ones.
    Idle,
    /// A call is being set up (ringing).
    Ringing,
    /// A call is up.
    InCall,
}

impl From<sdk::LineState> for LineState {
    fn from(s: sdk::LineState) -> Self {
        match s {
            sdk::LineState::Idle => LineState::Idle,
            sdk::LineState::Ringing => LineState::Ringing,
            sdk::LineState::InCall => LineState::InCall,
        }
    }
}

/// Statistics of a call's audio stream (RFC 3550 §6.4 receiver figures).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CallStats {
    /// Codec encoding name (`PCMU`, `PCMA`, `G722`, `opus`).
    pub codec: String,
    /// RTP packets sent (audio and telephone-events).
    pub tx_packets: u64,
    /// RTP payload bytes sent.
    pub tx_bytes: u64,
    /// RTP packets received.
    pub rx_packets: u64,
    /// RTP payload bytes received.
    pub rx_bytes: u64,
    /// Cumulative packets lost (RFC 3550 A.3; negative with duplicates).
    pub rx_lost: i64,
    /// Cumulative loss fraction 0.0..=1.0.
    pub rx_loss_fraction: f64,
    /// Interarrival jitter in ms (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Round-trip time from RTCP in ms (RFC 3550 §6.4.1), once measured.
    pub rtt_ms: Option<f64>,
    /// MOS estimate 1.0..=4.5 (E-model).
    pub mos: f64,
    /// Jitter buffer target delay in ms.
    pub jitter_buffer_ms: u32,
    /// Frames concealed by packet loss concealment.
    pub concealed_frames: u64,
    /// DTMF keys received.
    pub dtmf_received: u64,
    /// DTMF keys sent.
    pub dtmf_sent: u64,
    /// RTCP reports sent.
    pub rtcp_sent: u64,
    /// RTCP compound packets received.
    pub rtcp_received: u64,
    /// Where our RTP goes now (`IP:port`, after latching), if known.
    pub remote_rtp: Option<String>,
    /// The SRTP key exchange, `SDES` (RFC 4568) or `DTLS` (DTLS-SRTP, RFC 5764); `None` for
    /// plain RTP.
    pub srtp_keying: Option<String>,
    /// The SRTP crypto suite in use (RFC 4568 §6.2, RFC 7714 §12): `AES_CM_128_HMAC_SHA1_80`,
    /// `AES_CM_128_HMAC_SHA1_32` or `AEAD_AES_128_GCM`; `None` for plain RTP and until a
    /// DTLS-SRTP handshake has completed.
    pub srtp_suite: Option<String>,
    /// Received SRTP/SRTCP packets dropped because their authentication tag was wrong
    /// (RFC 3711 §3.4).
    pub srtp_auth_failures: u64,
    /// Received SRTP/SRTCP packets dropped as replays (RFC 3711 §3.3.2).
    pub srtp_replays: u64,
    /// Received packets dropped on an SRTP call as not SRTP at all (plain RTP, malformed, or
    /// arrived before the keys).
    pub srtp_dropped: u64,
}

impl From<sdk::CallStats> for CallStats {
    fn from(s: sdk::CallStats) -> Self {
        CallStats {
            codec: s.codec.to_string(),
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            rx_lost: s.rx_lost,
            rx_loss_fraction: s.rx_loss_fraction,
            jitter_ms: s.jitter_ms,
            rtt_ms: s.rtt_ms,
            mos: s.mos,
            jitter_buffer_ms: s.jitter_buffer_ms,
            concealed_frames: s.concealed_frames,
            dtmf_received: s.dtmf_received,
            dtmf_sent: s.dtmf_sent,
            rtcp_sent: s.rtcp_sent,
            rtcp_received: s.rtcp_received,
            remote_rtp: s.remote_rtp.map(|a| a.to_string()),
            srtp_keying: s.srtp_keying.map(str::to_string),
            srtp_suite: s.srtp_suite.map(str::to_string),
            srtp_auth_failures: s.srtp_auth_failures,
            srtp_replays: s.srtp_replays,
            srtp_dropped: s.srtp_dropped,
        }
    }
}

/// Everything an [`crate::listener::EndpointListener`] hears, in the order it happened.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum Event {
    /// An account's registration state changed.
    RegistrationChanged {
        /// The account ([`crate::account::Account::id`]).
        account_id: u64,
        /// The new state.
        state: RegistrationState,
    },
    /// A call arrived and we are ringing: answer or reject it via
    /// [`crate::endpoint::Endpoint::call`].
    IncomingCall {
        /// The call ([`crate::call::Call::id`]).
        call_id: u64,
        /// The account whose user the request names, if any.
        account_id: Option<u64>,
        /// The caller: the From header value (`"Alice" <sip:alice@example.com>;tag=…`).
        caller: String,
        /// The callee: the To header value.
        callee: String,
        /// The call this one replaces (an INVITE with `Replaces`, RFC 3891: the last step of
        /// an attended transfer); it ends once this one is up.
        replaces_call_id: Option<u64>,
    },
    /// A call's state changed.
    CallStateChanged {
        /// The call.
        call_id: u64,
        /// The new state.
        state: CallState,
    },
    /// Audio started or changed on a call (after the offer/answer, RFC 3264).
    MediaStarted {
        /// The call.
        call_id: u64,
        /// Codec encoding name.
        codec: String,
        /// Where our RTP goes (`IP:port`).
        remote: String,
        /// `"sendrecv"`, `"sendonly"`, `"recvonly"` or `"inactive"`.
        direction: String,
        /// The media encryption: `"none"` (plain RTP), `"SDES <suite>"` (SRTP keyed by SDP
        /// `a=crypto`, RFC 4568; e.g. `"SDES AES_CM_128_HMAC_SHA1_80"`) or `"DTLS-SRTP"` (keyed
        /// by a handshake on the media path, RFC 5764; the suite is in
        /// `CallStats.srtp_suite` once it completes).
        security: String,
    },
    /// Audio stopped on a call.
    MediaStopped {
        /// The call.
        call_id: u64,
    },
    /// A DTMF key arrived (RFC 4733), once per press, in order.
    DtmfReceived {
        /// The call.
        call_id: u64,
        /// `0`–`9`, `*`, `#` or `A`–`D` (a one-character string).
        digit: String,
    },
    /// Statistics of a call with media: every `stats_interval_ms`, and once more with the final
    /// figures just before `MediaStopped`.
    Statistics {
        /// The call.
        call_id: u64,
        /// The figures.
        stats: CallStats,
    },
    /// An instant message arrived (RFC 3428 MESSAGE outside a dialog, answered 200 OK).
    MessageReceived {
        /// The account whose user the request names, if any.
        account_id: Option<u64>,
        /// The sender (From header value).
        sender: String,
        /// The To header value.
        recipient: String,
        /// The Content-Type, e.g. `text/plain;charset=UTF-8`.
        content_type: String,
        /// The content, as received.
        body: Vec<u8>,
    },
    /// The final result of a message we sent: status 2xx means delivered; a failure carries
    /// its status (e.g. 404, 408 on timeout, 503 with the transport error) and reason.
    MessageResult {
        /// The message (the id its send returned).
        message_id: u64,
        /// The final SIP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The peer asks to transfer a call (RFC 3515 REFER): accept with
    /// `Endpoint::accept_transfer` or refuse with `Endpoint::reject_transfer` within 8 s.
    TransferRequested {
        /// The call to transfer.
        call_id: u64,
        /// The request's id.
        transfer_id: u64,
        /// The Refer-To URI (with `?Replaces=…` for an attended transfer).
        target: String,
        /// The Referred-By value (RFC 3892), if any.
        referred_by: Option<String>,
    },
    /// Progress of a transfer this app asked for (`Call::transfer`,
    /// `Call::transfer_to_call`): the new call's status at the transferee (100, 180, 200, or a
    /// failure), or the REFER's own failure; `is_final` on the last one.
    TransferStatus {
        /// The transferred call.
        call_id: u64,
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
        call_id: u64,
        /// The 3xx status.
        status: u16,
        /// The new target URI.
        target: String,
    },
    /// A subscription's state changed (`Account.subscribe`).
    SubscriptionStateChanged {
        /// The subscription (the id `Account.subscribe` returned).
        subscription_id: u64,
        /// The new state; `Terminated` says why.
        state: SubscriptionState,
    },
    /// A buddy's presence (RFC 3856 NOTIFY with a PIDF document, RFC 3863/4480), on a
    /// `EventPackage.Presence` subscription; the first arrives at once (offline for a buddy
    /// that never published).
    BuddyPresence {
        /// The presence subscription.
        subscription_id: u64,
        /// The buddy's URI.
        entity: String,
        /// Reachable (PIDF `basic` open) or offline (closed).
        online: bool,
        /// The note (e.g. `Away`), if any.
        note: Option<String>,
        /// The RPID activity (`away`, `busy`, ...), if any.
        activity: Option<String>,
    },
    /// A monitored line's state (RFC 4235 dialog NOTIFY, a busy-lamp field), on a
    /// `EventPackage.Dialog` subscription; the first arrives at once.
    LineStateChanged {
        /// The dialog subscription.
        subscription_id: u64,
        /// The monitored URI.
        entity: String,
        /// Idle, ringing or in call.
        state: LineState,
    },
    /// The result of `Account.publish_presence` (RFC 3903): 2xx when the server took it, else
    /// the failure (refreshes are reported only when they fail).
    PublishResult {
        /// The account.
        account_id: u64,
        /// The final SIP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The DTLS-SRTP handshake of a call failed (RFC 5764: the peer's certificate does not
    /// match its SDP fingerprint, no common SRTP protection profile, a fatal alert), so its
    /// media cannot flow. The call stays up; apps usually hang up.
    MediaSecurityFailed {
        /// The call.
        call_id: u64,
        /// What failed.
        reason: String,
    },
}

impl From<sdk::Event> for Event {
    fn from(e: sdk::Event) -> Self {
        match e {
            sdk::Event::RegistrationState { account, state } => Event::RegistrationChanged {
                account_id: account.0,
                state: state.into(),
            },
            sdk::Event::IncomingCall {
                call,
                account,
                from,
                to,
                replaces,
            } => Event::IncomingCall {
                call_id: call.0,
                account_id: account.map(|a| a.0),
                caller: from,
                callee: to,
                replaces_call_id: replaces.map(|c| c.0),
            },
            sdk::Event::CallState { call, state } => Event::CallStateChanged {
                call_id: call.0,
                state: state.into(),
            },
            sdk::Event::MediaStarted {
                call,
                codec,
                remote,
                direction,
                security,
            } => Event::MediaStarted {
                call_id: call.0,
                codec,
                remote: remote.to_string(),
                direction,
                security,
            },
            sdk::Event::MediaSecurityFailed { call, reason } => Event::MediaSecurityFailed {
                call_id: call.0,
                reason,
            },
            sdk::Event::MediaStopped { call } => Event::MediaStopped { call_id: call.0 },
            sdk::Event::DtmfReceived { call, digit } => Event::DtmfReceived {
                call_id: call.0,
                digit: digit.to_string(),
            },
            sdk::Event::Statistics { call, stats } => Event::Statistics {
                call_id: call.0,
                stats: stats.into(),
            },
            sdk::Event::MessageReceived {
                account,
                from,
                to,
                content_type,
                body,
            } => Event::MessageReceived {
                account_id: account.map(|a| a.0),
                sender: from,
                recipient: to,
                content_type,
                body,
            },
            sdk::Event::MessageResult {
                message,
                status,
                reason,
            } => Event::MessageResult {
                message_id: message.0,
                status,
                reason,
            },
            sdk::Event::TransferRequested {
                call,
                transfer,
                target,
                referred_by,
            } => Event::TransferRequested {
                call_id: call.0,
                transfer_id: transfer.0,
                target,
                referred_by,
            },
            sdk::Event::TransferStatus {
                call,
                status,
                reason,
                is_final,
            } => Event::TransferStatus {
                call_id: call.0,
                status,
                reason,
                is_final,
            },
            sdk::Event::CallRedirected {
                call,
                status,
                target,
            } => Event::CallRedirected {
                call_id: call.0,
                status,
                target,
            },
            sdk::Event::SubscriptionState {
                subscription,
                state,
            } => Event::SubscriptionStateChanged {
                subscription_id: subscription.0,
                state: state.into(),
            },
            sdk::Event::BuddyPresence {
                subscription,
                entity,
                online,
                note,
                activity,
            } => Event::BuddyPresence {
                subscription_id: subscription.0,
                entity,
                online,
                note,
                activity,
            },
            sdk::Event::LineState {
                subscription,
                entity,
                line,
            } => Event::LineStateChanged {
                subscription_id: subscription.0,
                entity,
                state: line.into(),
            },
            sdk::Event::PublishResult {
                account,
                status,
                reason,
            } => Event::PublishResult {
                account_id: account.0,
                status,
                reason,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_security_and_srtp_statistics_reach_the_bindings() {
        let remote = "192.0.2.7:4000".parse().unwrap();
        let e = Event::from(sdk::Event::MediaStarted {
            call: sdk::CallId(5),
            codec: "PCMU".into(),
            remote,
            direction: "sendrecv".into(),
            security: "DTLS-SRTP".into(),
        });
        assert!(
            matches!(e, Event::MediaStarted { call_id: 5, ref security, .. } if security == "DTLS-SRTP")
        );
        let e = Event::from(sdk::Event::MediaSecurityFailed {
            call: sdk::CallId(6),
            reason: "fingerprint mismatch".into(),
        });
        assert_eq!(
            e,
            Event::MediaSecurityFailed {
                call_id: 6,
                reason: "fingerprint mismatch".into()
            }
        );
        let s = CallStats::from(sdk::CallStats {
            srtp_keying: Some("SDES"),
            srtp_suite: Some("AES_CM_128_HMAC_SHA1_80"),
            srtp_auth_failures: 3,
            srtp_replays: 2,
            srtp_dropped: 1,
            ..sdk::CallStats::default()
        });
        assert_eq!(s.srtp_keying.as_deref(), Some("SDES"));
        assert_eq!(s.srtp_suite.as_deref(), Some("AES_CM_128_HMAC_SHA1_80"));
        assert_eq!(
            (s.srtp_auth_failures, s.srtp_replays, s.srtp_dropped),
            (3, 2, 1)
        );
        let plain = CallStats::from(sdk::CallStats::default());
        assert_eq!((plain.srtp_keying, plain.srtp_suite), (None, None));
    }

    #[test]
    fn presence_events_reach_the_bindings() {
        let e = Event::from(sdk::Event::SubscriptionState {
            subscription: sdk::SubscriptionId(3),
            state: sdk::SubscriptionState::Terminated {
                reason: "unsubscribed".into(),
            },
        });
        assert_eq!(
            e,
            Event::SubscriptionStateChanged {
                subscription_id: 3,
                state: SubscriptionState::Terminated {
                    reason: "unsubscribed".into()
                }
            }
        );
        for (s, want) in [
            (
                sdk::SubscriptionState::Subscribing,
                SubscriptionState::Subscribing,
            ),
            (sdk::SubscriptionState::Pending, SubscriptionState::Pending),
            (sdk::SubscriptionState::Active, SubscriptionState::Active),
        ] {
            assert_eq!(SubscriptionState::from(s), want);
        }
        for (l, want) in [
            (sdk::LineState::Idle, LineState::Idle),
            (sdk::LineState::Ringing, LineState::Ringing),
            (sdk::LineState::InCall, LineState::InCall),
        ] {
            let e = Event::from(sdk::Event::LineState {
                subscription: sdk::SubscriptionId(4),
                entity: "sip:bob@192.0.2.1".into(),
                line: l,
            });
            assert_eq!(
                e,
                Event::LineStateChanged {
                    subscription_id: 4,
                    entity: "sip:bob@192.0.2.1".into(),
                    state: want
                }
            );
        }
        let e = Event::from(sdk::Event::BuddyPresence {
            subscription: sdk::SubscriptionId(5),
            entity: "sip:bob@192.0.2.1".into(),
            online: true,
            note: Some("Away".into()),
            activity: None,
        });
        assert!(matches!(
            e,
            Event::BuddyPresence { subscription_id: 5, online: true, ref note, activity: None, .. }
                if note.as_deref() == Some("Away")
        ));
    }
}
