//! SRTP and SRTCP for one call's stream (RFC 3711, RFC 7714), over the sans-IO `rtc-srtp`
//! contexts on the ring backend: one context protects what we send with our master key, one
//! unprotects what we receive with the peer's, with replay protection on (a 64-packet window
//! for SRTP, 64 for SRTCP, RFC 3711 §3.3.2) that starts at the first authenticated packet
//! ([`replay`]).
//!
//! A packet that fails authentication, is a replay, or is too short is dropped and counted
//! ([`SrtpCounters`]); nothing here panics on input from the network.

mod gcm;
mod replay;

use bytes::Bytes;
use replay::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::context::Context;
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
    /// Not a parsable (S)RTP/(S)RTCP packet, or too short for its tag. The text says why (a
    /// static string on the per-packet paths: a hostile stream costs no allocation).
    #[error("malformed SRTP packet: {0}")]
    Malformed(std::borrow::Cow<'static, str>),
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
        other => SrtpError::Malformed(other.to_string().into()),
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

/// SRTCP authentication tag length of the AES-CM suites in bytes (RFC 3711 §4.2: 80 bits for
/// both, RFC 4568 §6.2.1).
const SRTCP_AES_CM_TAG_LEN: usize = 10;
/// AEAD_AES_128_GCM tag length in bytes (RFC 7714 §6).
const SRTCP_GCM_TAG_LEN: usize = 16;
/// The first RTCP header and SSRC, sent in the clear (RFC 3711 §3.4), in bytes.
const RTCP_CLEAR_LEN: usize = 8;
/// The E flag and SRTCP index word, in bytes (RFC 3711 §3.4).
const SRTCP_INDEX_LEN: usize = 4;

/// What the E flag (the top bit of the SRTCP index word, RFC 3711 §3.4, RFC 7714 §9) of a
/// received SRTCP packet says, checked before `rtc-srtp` sees it. With AES-CM the index word is
/// followed by the 80-bit tag; with AES-GCM, `rtc-srtp`'s layout ends with it.
fn check_srtcp_e_flag(srtcp: &[u8], gcm: bool) -> Result<(), SrtpError> {
    let (tag, after_index) = if gcm {
        (SRTCP_GCM_TAG_LEN, 0)
    } else {
        (SRTCP_AES_CM_TAG_LEN, SRTCP_AES_CM_TAG_LEN)
    };
    // Too short to be SRTCP at all (a plaintext RTCP packet sent before keying, say): malformed,
    // as `rtc-srtp` would say, not a failed authentication.
    if srtcp.len() < RTCP_CLEAR_LEN + SRTCP_INDEX_LEN + tag {
        return Err(SrtpError::Malformed("too short for SRTCP".into()));
    }
    match srtcp.get(srtcp.len() - after_index - SRTCP_INDEX_LEN) {
        Some(b) if b & 0x80 != 0 => Ok(()),
        _ => Err(SrtpError::Authentication),
    }
}

/// Whether `p` is a whole plain RTCP compound packet (RFC 3550 §6.1): a chain of RTCP headers
/// (version 2, packet type 192–223 as RFC 5761 §4 reserves them) whose lengths end exactly at
/// its last byte, with no SRTCP index or tag after them. Asked only of a packet that failed
/// SRTCP authentication, to tell a peer that sends RTCP unprotected (baresip 1.0 sends its
/// APP and BYE packets in the clear on SRTP calls) from a forgery; both are dropped.
fn is_plain_rtcp(p: &[u8]) -> bool {
    let mut at = 0;
    while let Some(h) = p.get(at..at + 4) {
        if h[0] >> 6 != 2 || !super::rtp::is_rtcp(h) {
            return false;
        }
        at += (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1) * 4;
    }
    at == p.len() && !p.is_empty()
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
    ///
    /// A packet whose E flag (RFC 3711 §3.4, RFC 7714 §9) is clear is refused as an
    /// authentication failure: we never agree to `UNENCRYPTED_SRTCP`
    /// ([`CryptoAttribute::is_acceptable`]). `rtc-srtp` 0.21 returns such an AES-CM packet
    /// without checking its authentication tag (anyone on the path could inject RTCP, a BYE or
    /// forged reports, into a secured call), and with AES-GCM it leaves the flag out of the
    /// authenticated data (forced to 1), so a flipped flag would go unnoticed. A packet too
    /// short to carry the index word and tag is [`SrtpError::Malformed`], and so is a plain
    /// RTCP compound packet that fails authentication (the peer sent RTCP unprotected): it is
    /// dropped all the same, but counted as not SRTP rather than as a forgery.
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<Bytes, SrtpError> {
        let r = check_srtcp_e_flag(srtcp, self.gcm.is_some()).and_then(|()| {
            self.rx
                .decrypt_rtcp(srtcp)
                .map(|b| b.freeze())
                .map_err(classify)
        });
        let r = match r {
            Err(SrtpError::Authentication) if is_plain_rtcp(srtcp) => {
                Err(SrtpError::Malformed("plain RTCP on an SRTP session".into()))
            }
            r => r,
        };
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

    /// Regression (fuzz/artifacts/srtp/crash-unauthenticated-srtcp, crash-gcm-srtcp-e-flag): an
    /// SRTCP packet with the E flag clear is refused: `rtc-srtp` 0.21 returned an AES-CM one
    /// without checking its tag and did not authenticate the flag with AES-GCM.
    #[test]
    fn srtcp_with_the_e_flag_clear_is_not_taken_unauthenticated() {
        for suite in CryptoSuite::ALL {
            let (mut a, mut b) = pair(suite);
            // A plain RTCP RR, an SRTCP index word with E = 0 and a made-up 80-bit tag.
            let mut forged = rtcp();
            forged.extend_from_slice(&[0x00, 0x00, 0x00, 0x01]);
            forged.extend_from_slice(&[0xAB; 10]);
            assert!(
                b.unprotect_rtcp(&forged).is_err(),
                "{suite:?}: forged SRTCP taken"
            );
            if suite != CryptoSuite::AeadAes128Gcm {
                assert_eq!(b.counters().auth_failures, 1, "{suite:?}");
            }
            // A plaintext RTCP packet too short for SRTCP (baresip sends a 16-byte APP
            // before its keys are set) is malformed, not a failed authentication.
            let before = b.counters();
            let app = hex::decode("80cc0003953b31d550494e47504f4e47").unwrap();
            assert!(matches!(
                b.unprotect_rtcp(&app),
                Err(SrtpError::Malformed(_))
            ));
            assert_eq!(
                b.counters().auth_failures,
                before.auth_failures,
                "{suite:?}"
            );
            // Genuine SRTCP still passes, and not once its E flag is flipped (AES-GCM left
            // the flag out of the authenticated data).
            let p = a.protect_rtcp(&rtcp()).unwrap();
            let mut flipped = p.to_vec();
            let e = if suite == CryptoSuite::AeadAes128Gcm {
                flipped.len() - 4
            } else {
                flipped.len() - 14
            };
            flipped[e] ^= 0x80;
            assert!(
                b.unprotect_rtcp(&flipped).is_err(),
                "{suite:?}: E flag not checked"
            );
            assert_eq!(&b.unprotect_rtcp(&p).unwrap()[..], &rtcp()[..], "{suite:?}");
        }
    }

    /// A forged packet that arrives before the peer's first genuine one must not decide where
    /// the replay window starts. `rtc-srtp` 0.21's window took its start from the first index
    /// it was asked about, before authentication: one forged RTP packet with a sequence number
    /// ahead made every genuine packet behind it a "replay" (up to 32,768 packets, 11 minutes
    /// of audio at 50 packets/s), and one forged SRTCP packet all RTCP of the call.
    #[test]
    fn a_forgery_before_the_first_packet_does_not_poison_the_replay_window() {
        for suite in CryptoSuite::ALL {
            let (mut a, mut b) = pair(suite);
            // Forged RTP from the peer's SSRC, sequence number 20000, a made-up tag.
            let mut forged = rtp(20_000);
            forged.extend_from_slice(&[0xAB; 16]);
            assert!(b.unprotect_rtp(&forged).is_err(), "{suite:?}");
            // Forged SRTCP from the same SSRC, index 1,000,000 (E flag set), made-up tag.
            let mut forged = rtcp();
            let index = (1_000_000u32 | 0x8000_0000).to_be_bytes();
            if suite == CryptoSuite::AeadAes128Gcm {
                forged.extend_from_slice(&[0xAB; 16]);
                forged.extend_from_slice(&index);
            } else {
                forged.extend_from_slice(&index);
                forged.extend_from_slice(&[0xAB; 10]);
            }
            assert!(b.unprotect_rtcp(&forged).is_err(), "{suite:?}");
            // The peer's genuine stream starts at sequence number 1 and SRTCP index 0.
            for seq in 1..=5u16 {
                let wire = a.protect_rtp(&rtp(seq)).unwrap();
                assert_eq!(
                    &b.unprotect_rtp(&wire).unwrap()[..],
                    &rtp(seq)[..],
                    "{suite:?} seq {seq}"
                );
            }
            for _ in 0..3 {
                let wire = a.protect_rtcp(&rtcp()).unwrap();
                assert_eq!(
                    &b.unprotect_rtcp(&wire).unwrap()[..],
                    &rtcp()[..],
                    "{suite:?}"
                );
            }
            assert_eq!(b.counters().replays, 0, "{suite:?}");
        }
    }

    /// baresip 1.0 sends its RTCP BYE (RR + SDES CNAME + BYE) unprotected at hangup on an
    /// SRTP call. Its last bytes read as an index word with the E flag either set or clear, so
    /// it was counted as a failed authentication now and then (a flaky `baresip-srtp` test).
    /// It is dropped as not SRTP; the same bytes with an SRTCP trailer are still a forgery.
    #[test]
    fn plain_rtcp_from_the_peer_is_dropped_as_not_srtp() {
        // RR (no blocks), SDES with a 30-byte CNAME, BYE.
        let mut plain = vec![0x80, 201, 0x00, 0x01, 0x95, 0x3b, 0x31, 0xd5];
        plain.extend_from_slice(&[0x81, 202, 0x00, 0x0a, 0x95, 0x3b, 0x31, 0xd5, 1, 30]);
        plain.extend((0..30).map(|i| b'a' + i % 26));
        plain.extend_from_slice(&[0, 0, 0, 0]);
        plain.extend_from_slice(&[0x81, 203, 0x00, 0x01, 0x95, 0x3b, 0x31, 0xd5]);
        assert!(is_plain_rtcp(&plain));
        for e_flag in [0x00, 0x80] {
            let mut p = plain.clone();
            // The byte the E flag is read from (AES-CM: 14 bytes from the end).
            let at = p.len() - 14;
            p[at] = e_flag | (p[at] & 0x7f);
            assert!(is_plain_rtcp(&p));
            for suite in CryptoSuite::ALL {
                let (_, mut b) = pair(suite);
                assert!(
                    matches!(b.unprotect_rtcp(&p), Err(SrtpError::Malformed(_))),
                    "{suite:?}"
                );
                assert_eq!(b.counters().auth_failures, 0, "{suite:?}");
                assert_eq!(b.counters().malformed, 1, "{suite:?}");
                // With an index word and a made-up tag after it, it is a forgery.
                // (AES-CM: index word, then the 80-bit tag; AES-GCM: tag, then index word.)
                let mut forged = plain.clone();
                if suite == CryptoSuite::AeadAes128Gcm {
                    forged.extend_from_slice(&[0xAB; 16]);
                    forged.extend_from_slice(&[0x80, 0, 0, 1]);
                } else {
                    forged.extend_from_slice(&[0x80, 0, 0, 1]);
                    forged.extend_from_slice(&[0xAB; 10]);
                }
                assert!(!is_plain_rtcp(&forged));
                assert_eq!(
                    b.unprotect_rtcp(&forged),
                    Err(SrtpError::Authentication),
                    "{suite:?} {e_flag}"
                );
                assert_eq!(b.counters().auth_failures, 1, "{suite:?}");
            }
        }
        assert!(!is_plain_rtcp(&[]));
        assert!(!is_plain_rtcp(&plain[..plain.len() - 1]));
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
