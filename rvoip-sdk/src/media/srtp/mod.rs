//! SRTP and SRTCP for one call's stream (RFC 3711, RFC 7714), over the sans-IO `rtc-srtp`
//! contexts on the ring backend: one context protects what we send with our master key, one
//! unprotects what we receive with the peer's, with replay protection on (a 64-packet window
//! for SRTP, 64 for SRTCP, RFC 3711 §3.3.2).
//!
//! A packet that fails authentication, is a replay, or is too short is dropped and counted
//! ([`SrtpCounters`]); nothing here panics on input from the network.

mod gcm;

use bytes::Bytes;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

use super::sdes::{CryptoAttribute, CryptoSuite};

/// Replay window for SRTP and SRTCP in packets (RFC 3711 §3.3.2: at least 64).
pub const REPLAY_WINDOW: usize = 64;

/// Why a packet was not protected or unprotected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The authentication tag did not verify (a forged, corrupted or wrongly keyed packet).
    #[error("SRTP authentication failed")]
    Authentication,
    /// The packet's index was already received or is older than the replay window.
    #[error("SRTP replay")]
    Replay,
    /// Not a parsable (S)RTP/(S)RTCP packet, or too short for its tag.
    #[error("malformed SRTP packet: {0}")]
    Malformed(String),
    /// The keys cannot make a context (wrong length).
    #[error("SRTP keys: {0}")]
    Keys(String),
}

/// Counters of one SRTP session (packets).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SrtpCounters {
    /// SRTP and SRTCP packets protected.
    pub protected: u64,
    /// SRTP and SRTCP packets unprotected.
    pub unprotected: u64,
    /// Received packets dropped: authentication failed.
    pub auth_failures: u64,
    /// Received packets dropped: replayed.
    pub replays: u64,
    /// Received packets dropped: malformed or too short.
    pub malformed: u64,
}

/// The `rtc-srtp` profile of a suite.
fn profile(suite: CryptoSuite) -> ProtectionProfile {
    match suite {
        CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        CryptoSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
    }
}

/// Sorts an `rtc-srtp` error into ours.
fn classify(e: rtc_shared::error::Error) -> SrtpError {
    use rtc_shared::error::Error as E;
    match e {
        E::RtpFailedToVerifyAuthTag
        | E::RtcpFailedToVerifyAuthTag
        | E::ErrFailedToVerifyAuthTag => SrtpError::Authentication,
        E::SrtpSsrcDuplicated(..) | E::SrtcpSsrcDuplicated(..) => SrtpError::Replay,
        other => SrtpError::Malformed(other.to_string()),
    }
}

/// Whether `rtp` is an RTP version 2 packet whose header `rtc-rtp` parses and writes back at
/// exactly its length on the wire (so the payload `rtc-srtp` encrypts is the real one).
fn rtp_header_round_trips(rtp: &[u8]) -> bool {
    use rtc_shared::marshal::{MarshalSize, Unmarshal};
    if rtp.first().is_none_or(|b| b >> 6 != 2) {
        return false;
    }
    let mut rest = rtp;
    match rtc_rtp::header::Header::unmarshal(&mut rest) {
        Ok(h) => h.marshal_size() == rtp.len() - rest.len(),
        Err(_) => false,
    }
}

/// The SRTP state of one stream: our sending context and the peer's receiving one.
pub struct SrtpSession {
    suite: CryptoSuite,
    tx: Context,
    rx: Context,
    /// AEAD_AES_128_GCM's RTP path ([`gcm`]), in place of `tx`/`rx` for RTP; they keep SRTCP.
    gcm: Option<(gcm::GcmRtp, gcm::GcmRtp)>,
    counters: SrtpCounters,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession")
            .field("suite", &self.suite)
            .field("counters", &self.counters)
            .finish()
    }
}

impl SrtpSession {
    /// A session with `suite`: we protect with `local` (master key followed by salt,
    /// [`CryptoSuite::master_len`] bytes) and unprotect with `remote`. Errors:
    /// [`SrtpError::Keys`] (a length does not fit the suite).
    pub fn new(suite: CryptoSuite, local: &[u8], remote: &[u8]) -> Result<SrtpSession, SrtpError> {
        let make = |master: &[u8]| {
            if master.len() != suite.master_len() {
                return Err(SrtpError::Keys(format!(
                    "{} needs {} bytes of key and salt, got {}",
                    suite.name(),
                    suite.master_len(),
                    master.len()
                )));
            }
            let (key, salt) = master.split_at(suite.key_len());
            let provider =
                rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::Keys(e.to_string()))?;
            Context::new(
                key,
                salt,
                profile(suite),
                Some(srtp_replay_protection(REPLAY_WINDOW)),
                Some(srtcp_replay_protection(REPLAY_WINDOW)),
                provider.crypto(),
            )
            .map_err(|e| SrtpError::Keys(e.to_string()))
        };
        let gcm = if suite == CryptoSuite::AeadAes128Gcm {
            let provider =
                rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::Keys(e.to_string()))?;
            Some((
                gcm::GcmRtp::new(provider.crypto(), local)?,
                gcm::GcmRtp::new(provider.crypto(), remote)?,
            ))
        } else {
            None
        };
        Ok(SrtpSession {
            suite,
            tx: make(local)?,
            rx: make(remote)?,
            gcm,
            counters: SrtpCounters::default(),
        })
    }

    /// A session from the SDES attributes that offer/answer agreed on (RFC 4568 §6.1): ours
    /// keys what we send, the peer's what we receive. Errors: [`SrtpError::Keys`] (different
    /// suites, no key, a key we cannot honour).
    pub fn from_sdes(
        local: &CryptoAttribute,
        remote: &CryptoAttribute,
    ) -> Result<SrtpSession, SrtpError> {
        if local.suite != remote.suite {
            return Err(SrtpError::Keys(
                "the two crypto attributes name different suites".into(),
            ));
        }
        if !local.is_acceptable() || !remote.is_acceptable() {
            return Err(SrtpError::Keys(
                "a crypto attribute this stack cannot honour".into(),
            ));
        }
        let (Some(l), Some(r)) = (local.keys.first(), remote.keys.first()) else {
            return Err(SrtpError::Keys("no key".into()));
        };
        SrtpSession::new(local.suite, &l.master, &r.master)
    }

    /// The suite in use.
    pub fn suite(&self) -> CryptoSuite {
        self.suite
    }

    /// The counters so far.
    pub fn counters(&self) -> SrtpCounters {
        self.counters
    }

    /// Protects one RTP packet (RFC 3711 §3.3). Errors: [`SrtpError::Malformed`] (not RTP
    /// version 2, or a header that `rtc-rtp` does not write back at its own length).
    pub fn protect_rtp(&mut self, rtp: &[u8]) -> Result<Bytes, SrtpError> {
        let out = match &mut self.gcm {
            Some((tx, _)) => Bytes::from(tx.protect(rtp)?),
            None => {
                // rtc-srtp 0.21 encrypts from the header's re-marshalled size on, and slices out
                // of bounds (a panic) when that exceeds the packet.
                if !rtp_header_round_trips(rtp) {
                    return Err(SrtpError::Malformed("not an RTP packet".into()));
                }
                self.tx.encrypt_rtp(rtp).map_err(classify)?.freeze()
            }
        };
        self.counters.protected += 1;
        Ok(out)
    }

    /// Unprotects one received SRTP packet; a failure is counted and the packet must be
    /// dropped. Errors: [`SrtpError::Authentication`], [`SrtpError::Replay`],
    /// [`SrtpError::Malformed`].
    pub fn unprotect_rtp(&mut self, srtp: &[u8]) -> Result<Bytes, SrtpError> {
        let r = match &mut self.gcm {
            Some((_, rx)) => rx.unprotect(srtp).map(Bytes::from),
            None => self
                .rx
                .decrypt_rtp(srtp)
                .map(|b| b.freeze())
                .map_err(classify),
        };
        self.count(r)
    }

    /// Protects one RTCP compound packet (RFC 3711 §3.4). Errors: [`SrtpError::Malformed`].
    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<Bytes, SrtpError> {
        let out = self.tx.encrypt_rtcp(rtcp).map_err(classify)?;
        self.counters.protected += 1;
        Ok(out.freeze())
    }

    /// Unprotects one received SRTCP packet, as [`SrtpSession::unprotect_rtp`].
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<Bytes, SrtpError> {
        let r = self
            .rx
            .decrypt_rtcp(srtcp)
            .map(|b| b.freeze())
            .map_err(classify);
        self.count(r)
    }

    fn count(&mut self, r: Result<Bytes, SrtpError>) -> Result<Bytes, SrtpError> {
        match r {
            Ok(b) => {
                self.counters.unprotected += 1;
                Ok(b)
            }
            Err(e) => {
                match e {
                    SrtpError::Authentication => self.counters.auth_failures += 1,
                    SrtpError::Replay => self.counters.replays += 1,
                    _ => self.counters.malformed += 1,
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 12-byte RTP header (PT 0, `seq`, timestamp, SSRC 0x1234) and 160 bytes of payload.
    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0x1234u32.to_be_bytes());
        p.extend((0..160).map(|i| (i as u8) ^ 0x55));
        p
    }

    /// A receiver report (RTCP PT 201) from SSRC 0x1234 with no blocks.
    fn rtcp() -> Vec<u8> {
        let mut p = vec![0x80, 201, 0x00, 0x01];
        p.extend_from_slice(&0x1234u32.to_be_bytes());
        p
    }

    /// Regression (fuzz/artifacts/srtp/crash-protect-rtp-header-size): protecting an RTP packet
    /// whose header `rtc-rtp` re-marshals longer than the packet panicked inside `rtc-srtp`
    /// (version 3, 14 CSRCs, extension and padding bits); now it is refused as malformed.
    #[test]
    fn protecting_a_packet_with_an_impossible_header_fails_cleanly() {
        let bad = hex::decode(
            "fe000102030405060708ff0a0b0c0d070f10111213050a00208000030a0b0c0d0000cafe0b000000\
             04050886070900000000000000000000000000000000000000000008100000160000000000000405\
             088607090000000000000000000000000000000405060708ff0a0b0c0d070f10111213050a002080\
             00030a0b0c0d0000cafe0b0000000405088607090000000000000000000008090a0b270d0e00caff\
             fffffe",
        )
        .unwrap();
        for suite in CryptoSuite::ALL {
            let (mut a, mut b) = pair(suite);
            assert!(a.protect_rtp(&bad).is_err(), "{suite:?}");
            let mut v2 = bad.clone();
            v2[0] = 0xbe; // version 2, same flags
            let _ = a.protect_rtp(&v2);
            assert!(b.unprotect_rtp(&v2).is_err(), "{suite:?}");
            // Ordinary packets still go through.
            let p = a.protect_rtp(&rtp(7)).unwrap();
            assert_eq!(&b.unprotect_rtp(&p).unwrap()[..], &rtp(7)[..], "{suite:?}");
        }
    }

    fn pair(suite: CryptoSuite) -> (SrtpSession, SrtpSession) {
        let a = CryptoAttribute::generate(1, suite);
        let b = CryptoAttribute::generate(1, suite);
        (
            SrtpSession::from_sdes(&a, &b).unwrap(),
            SrtpSession::from_sdes(&b, &a).unwrap(),
        )
    }

    #[test]
    fn both_directions_round_trip_for_every_suite_and_the_payload_is_encrypted() {
        for suite in CryptoSuite::ALL {
            let (mut alice, mut bob) = pair(suite);
            for seq in 1000..1050u16 {
                let plain = rtp(seq);
                let wire = alice.protect_rtp(&plain).unwrap();
                assert!(wire.len() > plain.len(), "{suite:?}: a tag is appended");
                assert_eq!(&wire[..12], &plain[..12], "the header stays clear");
                assert_ne!(
                    &wire[12..172],
                    &plain[12..],
                    "{suite:?}: the payload is not clear"
                );
                assert_eq!(&bob.unprotect_rtp(&wire).unwrap()[..], &plain[..]);
                let back = bob.protect_rtp(&plain).unwrap();
                assert_eq!(&alice.unprotect_rtp(&back).unwrap()[..], &plain[..]);
            }
            let sr = alice.protect_rtcp(&rtcp()).unwrap();
            assert_eq!(&bob.unprotect_rtcp(&sr).unwrap()[..], &rtcp()[..]);
            assert_eq!(bob.counters().unprotected, 51);
            assert_eq!(bob.counters().auth_failures + bob.counters().replays, 0);
        }
    }

    #[test]
    fn bad_tags_replays_and_garbage_are_dropped_and_counted() {
        for suite in CryptoSuite::ALL {
            let (mut alice, mut bob) = pair(suite);
            let good = alice.protect_rtp(&rtp(1)).unwrap();
            // A flipped bit in the payload or in the tag fails authentication.
            for i in [20, good.len() - 1] {
                let mut bad = good.to_vec();
                bad[i] ^= 0x01;
                assert_eq!(
                    bob.unprotect_rtp(&bad),
                    Err(SrtpError::Authentication),
                    "{suite:?}"
                );
            }
            // The genuine packet still passes once; again is a replay.
            assert!(bob.unprotect_rtp(&good).is_ok());
            assert_eq!(bob.unprotect_rtp(&good), Err(SrtpError::Replay));
            // A packet keyed by a third party fails authentication.
            let (mut mallory, _) = pair(suite);
            let forged = mallory.protect_rtp(&rtp(2)).unwrap();
            assert_eq!(bob.unprotect_rtp(&forged), Err(SrtpError::Authentication));
            // SRTCP: a replay and a bad tag.
            let sr = alice.protect_rtcp(&rtcp()).unwrap();
            assert!(bob.unprotect_rtcp(&sr).is_ok());
            assert_eq!(bob.unprotect_rtcp(&sr), Err(SrtpError::Replay));
            let mut bad = sr.to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 0x80;
            assert!(bob.unprotect_rtcp(&bad).is_err());
            let c = bob.counters();
            assert_eq!(c.unprotected, 2);
            assert!(c.auth_failures >= 3, "{c:?}");
            assert!(c.replays >= 2, "{c:?}");
            // Garbage of every short length: dropped, counted, no panic.
            for n in 0..40 {
                assert!(bob.unprotect_rtp(&vec![0x80; n]).is_err());
                let _ = bob.unprotect_rtcp(&vec![0x80; n]);
            }
            let after = bob.counters();
            assert_eq!(after.unprotected, 2, "{after:?}");
            assert!(after.malformed > 0, "{after:?}");
        }
    }

    #[test]
    fn keys_must_fit_the_suite_and_both_sides_agree() {
        assert!(matches!(
            SrtpSession::new(CryptoSuite::AeadAes128Gcm, &[0; 30], &[0; 28]),
            Err(SrtpError::Keys(_))
        ));
        let a = CryptoAttribute::generate(1, CryptoSuite::AesCm128HmacSha1_80);
        let b = CryptoAttribute::generate(1, CryptoSuite::AesCm128HmacSha1_32);
        assert!(SrtpSession::from_sdes(&a, &b).is_err());
    }
}
