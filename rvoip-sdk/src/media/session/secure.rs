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

/// The SRTP state of a stream.
pub(crate) enum Secure {
    /// Plain RTP.
    Plain,
    /// Keyed by SDES.
    Sdes(SrtpSession),
    /// Keyed by DTLS: the handshake, then the session it produced.
    Dtls {
        dtls: Box<DtlsSrtp>,
        srtp: Option<SrtpSession>,
        failed: bool,
    },
}

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
                let dtls = DtlsSrtp::new(identity, *role, remote.clone(), now)
                    .map_err(|e| MediaError::Security(e.to_string()))?;
                Ok(Secure::Dtls {
                    dtls: Box::new(dtls),
                    srtp: None,
                    failed: false,
                })
            }
        }
    }

    fn session(&mut self) -> Option<&mut SrtpSession> {
        match self {
            Secure::Plain => None,
            Secure::Sdes(s) => Some(s),
            Secure::Dtls { srtp, .. } => srtp.as_mut(),
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
            Secure::Dtls { srtp: Some(s), .. } => s.counters(),
            _ => SrtpCounters::default(),
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
        if let Secure::Dtls { dtls, .. } = &mut self.secure {
            if dtls::is_dtls(&data) {
                if !self.latched_rtp && from != self.cfg.remote_rtp {
                    // Answer the handshake where it comes from (the peer may be behind NAT).
                    self.cfg.remote_rtp = from;
                }
                dtls.handle_datagram(now, &data);
                self.dtls_progress();
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
        let Some(s) = self.secure.session() else {
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
        let s = self.secure.session()?;
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

    /// The next DTLS record to send, to the peer's RTP address.
    pub(super) fn dtls_transmit(&mut self) -> Option<MediaTransmit> {
        let Secure::Dtls { dtls, .. } = &mut self.secure else {
            return None;
        };
        let bytes = dtls.poll_transmit()?;
        Some(MediaTransmit {
            dest: self.cfg.remote_rtp,
            rtcp: false,
            bytes,
        })
    }

    /// When the DTLS handshake needs a timer.
    pub(super) fn dtls_timeout(&self) -> Option<Instant> {
        match &self.secure {
            Secure::Dtls {
                dtls, srtp: None, ..
            } => dtls.poll_timeout(),
            _ => None,
        }
    }

    /// Runs the DTLS retransmission timer.
    pub(super) fn dtls_handle_timeout(&mut self, now: Instant) {
        if let Secure::Dtls {
            dtls, srtp: None, ..
        } = &mut self.secure
        {
            if dtls.poll_timeout().is_some_and(|t| t <= now) {
                dtls.handle_timeout(now);
                self.dtls_progress();
            }
        }
    }

    /// Picks up the SRTP keys when the handshake completes; reports a failure once.
    fn dtls_progress(&mut self) {
        let Secure::Dtls { dtls, srtp, failed } = &mut self.secure else {
            return;
        };
        match dtls.state() {
            DtlsState::Connected if srtp.is_none() => {
                if let Some(s) = dtls.take_srtp() {
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
