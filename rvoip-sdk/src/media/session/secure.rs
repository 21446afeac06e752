//! The SRTP layer of a [`MediaSession`] (RFC 3711): every RTP and RTCP packet we send is
//! protected and every one we receive unprotected, with keys from SDES (RFC 4568) or from a
//! DTLS handshake on the RTP port (RFC 5764, demultiplexed by first byte as RFC 7983).
//!
//! Once a stream is secure nothing plain passes: a received packet that fails authentication,
//! is a replay or is not SRTP is dropped and counted, and until a DTLS handshake finishes
//! nothing is sent or played.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{MediaConfig, MediaError, MediaEvent, MediaSession, MediaTransmit};
use crate::media::dtls::{self, DtlsIdentity, DtlsSrtp, DtlsState};
use crate::media::rtp;
use crate::media::srtp::{SrtpCounters, SrtpSession};
use crate::sdp::MediaSecurity;

/// The SRTP state of a stream (one per call, never moved once built: the size gap between
/// the variants costs nothing).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Secure {
    /// Plain RTP.
    Plain,
    /// Keyed by SDES.
    Sdes(SrtpSession),
    /// Keyed by DTLS: the handshake of the RTP component, then the session it produced, and
    /// the separate handshake of the RTCP component on the RTCP ports (RFC 5764 §4.1: without
    /// rtcp-mux each component has its own DTLS session), whose keys protect SRTCP.
    Dtls {
        /// The RTP component's handshake; dropped [`DTLS_LINGER`] after both components are
        /// keyed (the keys live on in `srtp`/`srtcp`).
        dtls: Option<Box<DtlsSrtp>>,
        srtp: Option<SrtpSession>,
        failed: bool,
        /// The RTCP component's handshake; dropped when the peer runs none (it fails), and
        /// SRTCP then uses the RTP component's keys.
        rtcp: Option<Box<DtlsSrtp>>,
        srtcp: Option<SrtpSession>,
        /// When both components were keyed.
        keyed_at: Option<Instant>,
    },
}

/// How long the DTLS state stays after both components are keyed, to answer a peer that
/// retransmits its last flight because ours was lost (RFC 6347 §4.2.4: its timer doubles from
/// 1 s; `rtc-dtls` retries 7 times 1 s apart). Then it is dropped: the SRTP keys are all a call
/// needs, and the handshake state is half of a DTLS call's memory.
pub(crate) const DTLS_LINGER: std::time::Duration = std::time::Duration::from_secs(15);

impl Secure {
    /// The state for `cfg`'s agreed security at `now`. Errors: [`MediaError::Security`] (keys
    /// that do not make a context; DTLS without our certificate).
    pub(crate) fn new(cfg: &MediaConfig, now: Instant) -> Result<Secure, MediaError> {
        match &cfg.security {
            MediaSecurity::Plain => Ok(Secure::Plain),
            MediaSecurity::Sdes { local, remote } => SrtpSession::from_sdes(local, remote)
                .map(Secure::Sdes)
                .map_err(|e| MediaError::Security(e.to_string())),
            MediaSecurity::Dtls { role, remote } => {
                let identity: &DtlsIdentity = cfg.dtls_identity.as_ref().ok_or_else(|| {
                    MediaError::Security("DTLS-SRTP agreed but no certificate".into())
                })?;
                let make = || {
                    DtlsSrtp::new(identity, *role, remote.clone(), now)
                        .map(Box::new)
                        .map_err(|e| MediaError::Security(e.to_string()))
                };
                Ok(Secure::Dtls {
                    dtls: Some(make()?),
                    srtp: None,
                    failed: false,
                    rtcp: Some(make()?),
                    srtcp: None,
                    keyed_at: None,
                })
            }
        }
    }

    /// The session for RTP (and RTCP multiplexed on the RTP port).
    fn session(&mut self) -> Option<&mut SrtpSession> {
        match self {
            Secure::Plain => None,
            Secure::Sdes(s) => Some(s),
            Secure::Dtls { srtp, .. } => srtp.as_mut(),
        }
    }

    /// The session for RTCP on the RTCP port: the RTCP component's keys once agreed; none while
    /// its handshake still runs; the RTP component's when the peer runs no RTCP handshake.
    fn rtcp_session(&mut self) -> Option<&mut SrtpSession> {
        match self {
            Secure::Dtls {
                srtp, rtcp, srtcp, ..
            } => match (srtcp, rtcp) {
                (Some(s), _) => Some(s),
                (None, Some(_)) => None,
                (None, None) => srtp.as_mut(),
            },
            other => other.session(),
        }
    }

    /// The suite in use, once keyed.
    pub(crate) fn suite(&self) -> Option<&'static str> {
        match self {
            Secure::Plain => None,
            Secure::Sdes(s) => Some(s.suite().name()),
            Secure::Dtls { srtp, .. } => srtp.as_ref().map(|s| s.suite().name()),
        }
    }

    /// `SDES`, `DTLS` or none.
    pub(crate) fn keying(&self) -> Option<&'static str> {
        match self {
            Secure::Plain => None,
            Secure::Sdes(_) => Some("SDES"),
            Secure::Dtls { .. } => Some("DTLS"),
        }
    }

    /// The SRTP counters so far (zero while plain or handshaking).
    pub(crate) fn counters(&self) -> SrtpCounters {
        match self {
            Secure::Sdes(s) => s.counters(),
            Secure::Dtls { srtp, srtcp, .. } => {
                let (a, b) = (
                    srtp.as_ref().map(SrtpSession::counters).unwrap_or_default(),
                    srtcp
                        .as_ref()
                        .map(SrtpSession::counters)
                        .unwrap_or_default(),
                );
                SrtpCounters {
                    protected: a.protected + b.protected,
                    unprotected: a.unprotected + b.unprotected,
                    auth_failures: a.auth_failures + b.auth_failures,
                    replays: a.replays + b.replays,
                    malformed: a.malformed + b.malformed,
                }
            }
            Secure::Plain => SrtpCounters::default(),
        }
    }
}

impl MediaSession {
    /// Unprotects a received datagram: `None` when it was dropped (and counted) or consumed by
    /// the DTLS handshake. Plain streams pass everything through.
    pub(super) fn secure_in(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: Bytes,
        rtcp: bool,
    ) -> Option<Bytes> {
        if let Secure::Dtls {
            dtls,
            rtcp: rtcp_dtls,
            ..
        } = &mut self.secure
        {
            if dtls::is_dtls(&data) {
                // Answer each handshake where it comes from (the peer may be behind NAT).
                if rtcp {
                    if !self.latched_rtcp && from != self.cfg.remote_rtcp {
                        self.cfg.remote_rtcp = from;
                    }
                    if let Some(d) = rtcp_dtls {
                        d.handle_datagram(now, &data);
                    }
                } else {
                    if !self.latched_rtp && from != self.cfg.remote_rtp {
                        self.cfg.remote_rtp = from;
                    }
                    if let Some(d) = dtls {
                        d.handle_datagram(now, &data);
                    }
                }
                self.dtls_progress(now);
                return None;
            }
        }
        if matches!(self.secure, Secure::Plain) {
            return Some(data);
        }
        if data.first().is_some_and(|b| *b < 128) {
            // STUN, DTLS after the handshake, ZRTP: not SRTP (RFC 7983).
            self.srtp_dropped += 1;
            return None;
        }
        let session = if rtcp {
            self.secure.rtcp_session()
        } else {
            self.secure.session()
        };
        let Some(s) = session else {
            // DTLS not finished: nothing can be unprotected yet.
            self.srtp_dropped += 1;
            return None;
        };
        let r = if rtcp || rtp::is_rtcp(&data) {
            s.unprotect_rtcp(&data)
        } else {
            s.unprotect_rtp(&data)
        };
        match r {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::trace!(error = %e, "SRTP packet dropped");
                None
            }
        }
    }

    /// Protects a datagram to send: `None` when it cannot go (DTLS not finished, or a packet
    /// that does not protect).
    pub(super) fn secure_out(&mut self, mut t: MediaTransmit) -> Option<MediaTransmit> {
        if matches!(self.secure, Secure::Plain) {
            return Some(t);
        }
        let s = if t.rtcp {
            self.secure.rtcp_session()?
        } else {
            self.secure.session()?
        };
        let r = if t.rtcp || rtp::is_rtcp(&t.bytes) {
            s.protect_rtcp(&t.bytes)
        } else {
            s.protect_rtp(&t.bytes)
        };
        match r {
            Ok(b) => {
                t.bytes = b;
                Some(t)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot protect a packet");
                None
            }
        }
    }

    /// The next DTLS record to send: the RTP component's to the peer's RTP address, the RTCP
    /// component's to its RTCP address.
    pub(super) fn dtls_transmit(&mut self) -> Option<MediaTransmit> {
        let Secure::Dtls { dtls, rtcp, .. } = &mut self.secure else {
            return None;
        };
        if let Some(bytes) = dtls.as_mut().and_then(|d| d.poll_transmit()) {
            return Some(MediaTransmit {
                dest: self.cfg.remote_rtp,
                rtcp: false,
                bytes,
            });
        }
        let bytes = rtcp.as_mut()?.poll_transmit()?;
        Some(MediaTransmit {
            dest: self.cfg.remote_rtcp,
            rtcp: true,
            bytes,
        })
    }

    /// When a DTLS handshake needs a timer.
    pub(super) fn dtls_timeout(&self) -> Option<Instant> {
        let Secure::Dtls {
            dtls,
            srtp,
            rtcp,
            srtcp,
            ..
        } = &self.secure
        else {
            return None;
        };
        let a = dtls
            .as_ref()
            .filter(|_| srtp.is_none())
            .and_then(|d| d.poll_timeout());
        let b = rtcp
            .as_ref()
            .filter(|_| srtcp.is_none())
            .and_then(|d| d.poll_timeout());
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the DTLS retransmission timers, and drops the handshake state [`DTLS_LINGER`]
    /// after both components are keyed.
    pub(super) fn dtls_handle_timeout(&mut self, now: Instant) {
        let Secure::Dtls {
            dtls,
            srtp,
            rtcp,
            srtcp,
            keyed_at,
            ..
        } = &mut self.secure
        else {
            return;
        };
        if let Some(at) = *keyed_at {
            if now.saturating_duration_since(at) >= DTLS_LINGER
                && (dtls.is_some() || rtcp.is_some())
            {
                *dtls = None;
                *rtcp = None;
                tracing::trace!("DTLS state dropped; the SRTP keys stay");
            }
            return;
        }
        let mut ran = false;
        if let Some(d) = dtls.as_mut().filter(|_| srtp.is_none()) {
            if d.poll_timeout().is_some_and(|t| t <= now) {
                d.handle_timeout(now);
                ran = true;
            }
        }
        if let Some(d) = rtcp.as_mut().filter(|_| srtcp.is_none()) {
            if d.poll_timeout().is_some_and(|t| t <= now) {
                d.handle_timeout(now);
                ran = true;
            }
        }
        if ran {
            self.dtls_progress(now);
        }
    }

    /// Picks up the SRTP keys when a handshake completes; reports a failure of the RTP
    /// component once (a failed RTCP component only means SRTCP uses the RTP keys).
    fn dtls_progress(&mut self, now: Instant) {
        let Secure::Dtls {
            dtls,
            srtp,
            failed,
            rtcp,
            srtcp,
            keyed_at,
        } = &mut self.secure
        else {
            return;
        };
        if let Some(d) = rtcp.as_mut() {
            match d.state() {
                DtlsState::Connected if srtcp.is_none() => *srtcp = d.take_srtp(),
                DtlsState::Failed(reason) => {
                    tracing::debug!(%reason, "no DTLS on the RTCP component: SRTCP uses the RTP keys");
                    *rtcp = None;
                }
                _ => {}
            }
        }
        if let Some(d) = dtls.as_mut() {
            match d.state() {
                DtlsState::Connected if srtp.is_none() => {
                    if let Some(s) = d.take_srtp() {
                        let suite = s.suite().name();
                        *srtp = Some(s);
                        tracing::debug!(suite, "DTLS-SRTP keys agreed");
                        self.events.push_back(MediaEvent::Secured {
                            keying: "DTLS",
                            suite,
                        });
                    }
                }
                DtlsState::Failed(reason) if !*failed => {
                    *failed = true;
                    tracing::warn!(%reason, "DTLS-SRTP handshake failed");
                    self.events
                        .push_back(MediaEvent::SecurityFailed(reason.to_string()));
                }
                _ => {}
            }
        }
        if keyed_at.is_none() && srtp.is_some() && (srtcp.is_some() || rtcp.is_none()) {
            *keyed_at = Some(now);
        }
    }

    /// Applies new agreed security from a re-offer: the keys stay when unchanged (the rollover
    /// counters and replay windows continue), else the stream is re-keyed. Errors as
    /// [`Secure::new`]; nothing changes then.
    pub(super) fn update_security(
        &mut self,
        cfg: &MediaConfig,
        now: Instant,
    ) -> Result<(), MediaError> {
        if cfg.security != self.cfg.security {
            self.secure = Secure::new(cfg, now)?;
        }
        Ok(())
    }
}
