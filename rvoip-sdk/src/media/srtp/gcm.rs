//! The per-packet path of AEAD_AES_128_GCM SRTP for RTP (RFC 7714 §8): one keyed AES-GCM
//! cipher per direction, the 12-byte IV from SSRC, rollover counter and sequence number XOR the
//! session salt (§8.1), the RTP header as associated data (§8.2), and per SSRC the rollover
//! counter (RFC 3711 §3.3.1, Appendix A) and a 64-packet replay window (§3.3.2).
//!
//! It exists for speed: `rtc-srtp`'s context looks each SSRC up twice per packet in a SipHash
//! map and keeps its replay window in a big integer. The keys are derived exactly as RFC 3711
//! §4.3 (AES-CM PRF, KDR 0) and `rtc-srtp` does; its contexts still handle SRTCP and the AES-CM
//! suites, and the tests check both directions against it.

use rtc_srtp::crypto::{AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, RTCCrypto};

use super::{REPLAY_WINDOW, SrtpError};

/// SRTP key derivation labels (RFC 3711 §4.3.2).
const LABEL_ENCRYPTION: u8 = 0x00;
const LABEL_SALT: u8 = 0x02;
/// AES-GCM tag length in bytes (RFC 7714 §6: 16 for AEAD_AES_128_GCM).
const TAG_LEN: usize = 16;

/// The AES-CM PRF of RFC 3711 §4.3.3 with key derivation rate 0: `out_len` bytes of AES-CTR
/// keystream under the master key, from the master salt (left-aligned in the 16-byte block)
/// with `label` at byte 7.
fn derive(
    crypto: &dyn RTCCrypto,
    label: u8,
    master_key: &[u8],
    master_salt: &[u8],
    out_len: usize,
) -> Result<Vec<u8>, SrtpError> {
    let mut out = Vec::with_capacity(out_len + 16);
    let mut i: u16 = 0;
    while out.len() < out_len {
        let mut block = [0u8; 16];
        let n = master_salt.len().min(14);
        block[..n].copy_from_slice(&master_salt[..n]);
        block[7] ^= label;
        block[14..].copy_from_slice(&i.to_be_bytes());
        crypto
            .block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)
            .map_err(|e| SrtpError::Keys(e.to_string()))?;
        out.extend_from_slice(&block);
        i += 1;
    }
    out.truncate(out_len);
    Ok(out)
}

/// Receive or send state of one SSRC.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    /// Highest packet index (ROC · 2^16 + SEQ) seen or sent.
    highest: u64,
    /// Replay bitmap: bit i set = index `highest − i` was received (receive side).
    window: u64,
}

/// One direction of AES-128-GCM SRTP.
pub(super) struct GcmRtp {
    cipher: Box<dyn AeadCipher>,
    salt: [u8; 12],
    /// A call has one SSRC per direction, occasionally a second after a restart: a short list.
    streams: Vec<Stream>,
}

/// At most this many SSRCs are tracked per direction; the oldest is forgotten past it.
const MAX_STREAMS: usize = 4;

impl GcmRtp {
    /// The cipher for `master` (16-byte key then 12-byte salt). Errors: [`SrtpError::Keys`].
    pub(super) fn new(crypto: &dyn RTCCrypto, master: &[u8]) -> Result<GcmRtp, SrtpError> {
        if master.len() != 28 {
            return Err(SrtpError::Keys("AEAD_AES_128_GCM needs 28 bytes".into()));
        }
        let (key, salt) = master.split_at(16);
        let session_key = derive(crypto, LABEL_ENCRYPTION, key, salt, 16)?;
        let session_salt = derive(crypto, LABEL_SALT, key, salt, 12)?;
        let cipher = crypto
            .new_aead(AeadAlgorithm::Aes128Gcm, &session_key)
            .map_err(|e| SrtpError::Keys(e.to_string()))?;
        let mut s = [0u8; 12];
        s.copy_from_slice(&session_salt);
        Ok(GcmRtp {
            cipher,
            salt: s,
            streams: Vec::with_capacity(1),
        })
    }

    fn iv(&self, ssrc: u32, index: u64) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&((index >> 16) as u32).to_be_bytes());
        iv[10..12].copy_from_slice(&(index as u16).to_be_bytes());
        for (v, s) in iv.iter_mut().zip(self.salt) {
            *v ^= s;
        }
        iv
    }

    fn stream(&mut self, ssrc: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.ssrc == ssrc)
    }

    /// Protects one RTP packet (header length `header_len`, from [`header_len`]). Errors:
    /// [`SrtpError::Malformed`], [`SrtpError::Keys`] (2^48 packets on one key).
    pub(super) fn protect(&mut self, rtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let hl = header_len(rtp)?;
        let ssrc = u32::from_be_bytes([rtp[8], rtp[9], rtp[10], rtp[11]]);
        let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
        let index = match self.stream(ssrc) {
            Some(i) => {
                let s = &mut self.streams[i];
                let index = estimate_index(s.highest, seq);
                if index >> 48 != 0 {
                    return Err(SrtpError::Keys("2^48 packets sent on one key".into()));
                }
                s.highest = s.highest.max(index);
                index
            }
            None => {
                self.remember(Stream {
                    ssrc,
                    highest: u64::from(seq),
                    window: 1,
                });
                u64::from(seq)
            }
        };
        let iv = self.iv(ssrc, index);
        let mut out = Vec::with_capacity(rtp.len() + TAG_LEN);
        out.extend_from_slice(rtp);
        let mut tag = [0u8; TAG_LEN];
        let (aad, body) = out.split_at_mut(hl);
        self.cipher
            .seal_in_place(&iv, aad, body, &mut tag)
            .map_err(|e| SrtpError::Keys(e.to_string()))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Unprotects one SRTP packet: the replay check first (a packet at or behind the window's
    /// bottom, or already received, is [`SrtpError::Replay`]), then authentication
    /// ([`SrtpError::Authentication`]); the window and rollover counter move only for a packet
    /// that authenticated. Errors also: [`SrtpError::Malformed`].
    pub(super) fn unprotect(&mut self, srtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let hl = header_len(srtp)?;
        if srtp.len() < hl + TAG_LEN {
            return Err(SrtpError::Malformed("shorter than header and tag".into()));
        }
        let ssrc = u32::from_be_bytes([srtp[8], srtp[9], srtp[10], srtp[11]]);
        let seq = u16::from_be_bytes([srtp[2], srtp[3]]);
        let known = self.stream(ssrc);
        let index = match known {
            Some(i) => {
                let s = self.streams[i];
                let index = estimate_index(s.highest, seq);
                if index <= s.highest {
                    let behind = s.highest - index;
                    if behind >= REPLAY_WINDOW as u64 || s.window & (1 << behind) != 0 {
                        return Err(SrtpError::Replay);
                    }
                }
                index
            }
            None => u64::from(seq),
        };
        let iv = self.iv(ssrc, index);
        let body_end = srtp.len() - TAG_LEN;
        let mut out = srtp[..body_end].to_vec();
        let (aad, body) = out.split_at_mut(hl);
        self.cipher
            .open_in_place(&iv, aad, body, &srtp[body_end..])
            .map_err(|_| SrtpError::Authentication)?;
        match known {
            Some(i) => {
                let s = &mut self.streams[i];
                if index > s.highest {
                    let shift = index - s.highest;
                    s.window = if shift >= 64 {
                        1
                    } else {
                        (s.window << shift) | 1
                    };
                    s.highest = index;
                } else {
                    s.window |= 1 << (s.highest - index);
                }
            }
            None => self.remember(Stream {
                ssrc,
                highest: index,
                window: 1,
            }),
        }
        Ok(out)
    }

    fn remember(&mut self, s: Stream) {
        if self.streams.len() == MAX_STREAMS {
            self.streams.remove(0);
        }
        self.streams.push(s);
    }
}

/// The packet index of `seq` relative to the highest index so far (RFC 3711 Appendix A): the
/// rollover counter guess that puts it nearest.
fn estimate_index(highest: u64, seq: u16) -> u64 {
    let roc = highest >> 16;
    let s_l = highest as u16;
    let guess_roc = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.wrapping_sub(1)
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    if guess_roc > 0xffff_ffff {
        // Before the first rollover: treat as ROC 0.
        return u64::from(seq);
    }
    (guess_roc << 16) | u64::from(seq)
}

/// The RTP header length of `p` in bytes (fixed header, CSRCs, extension; RFC 3550 §5.1, §5.3.1).
/// Errors: [`SrtpError::Malformed`].
pub(super) fn header_len(p: &[u8]) -> Result<usize, SrtpError> {
    let bad = |w: &'static str| SrtpError::Malformed(w.into());
    if p.len() < 12 || p[0] >> 6 != 2 {
        return Err(bad("not RTP version 2"));
    }
    let mut n = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let words = p
            .get(n + 2..n + 4)
            .map(|w| usize::from(u16::from_be_bytes([w[0], w[1]])))
            .ok_or_else(|| bad("truncated header extension"))?;
        n += 4 + 4 * words;
    }
    if n > p.len() {
        return Err(bad("header longer than the packet"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdes::{CryptoAttribute, CryptoSuite};
    use rtc_srtp::context::Context;
    use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
    use rtc_srtp::protection_profile::ProtectionProfile;

    fn rtp(seq: u16, ssrc: u32, csrcs: u8, ext: bool) -> Vec<u8> {
        let mut p = vec![0x80 | csrcs | if ext { 0x10 } else { 0 }, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        for i in 0..csrcs {
            p.extend_from_slice(&u32::from(i).to_be_bytes());
        }
        if ext {
            p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
        }
        p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
        p
    }

    fn reference(master: &[u8]) -> Context {
        let provider = rtc_srtp::crypto::default_provider().unwrap();
        Context::new(
            &master[..16],
            &master[16..],
            ProtectionProfile::AeadAes128Gcm,
            Some(srtp_replay_protection(64)),
            Some(srtcp_replay_protection(64)),
            provider.crypto(),
        )
        .unwrap()
    }

    fn ours(master: &[u8]) -> GcmRtp {
        let provider = rtc_srtp::crypto::default_provider().unwrap();
        GcmRtp::new(provider.crypto(), master).unwrap()
    }

    #[test]
    fn interoperates_with_rtc_srtp_both_ways_across_a_rollover() {
        let key = CryptoAttribute::generate(1, CryptoSuite::AeadAes128Gcm).keys[0]
            .master
            .clone();
        let (mut our_tx, mut our_rx) = (ours(&key), ours(&key));
        let (mut ref_tx, mut ref_rx) = (reference(&key), reference(&key));
        // 70 000 packets from seq 65 000: the sequence number wraps (ROC 1), with CSRCs and a
        // header extension on some.
        for i in 0..70_000u32 {
            let seq = (65_000 + i) as u16;
            let p = rtp(seq, 0x1234_5678, (i % 3) as u8, i % 5 == 0);
            let a = our_tx.protect(&p).unwrap();
            let b = ref_tx.encrypt_rtp(&p).unwrap();
            assert_eq!(&a[..], &b[..], "packet {i}: same ciphertext and tag");
            assert_eq!(ref_rx.decrypt_rtp(&a).unwrap()[..], p[..], "{i}");
            assert_eq!(our_rx.unprotect(&b).unwrap(), p, "{i}");
        }
    }

    #[test]
    fn replays_forgeries_and_garbage_are_refused() {
        let key = CryptoAttribute::generate(1, CryptoSuite::AeadAes128Gcm).keys[0]
            .master
            .clone();
        let (mut tx, mut rx) = (ours(&key), ours(&key));
        let sent: Vec<Vec<u8>> = (0..200u16)
            .map(|s| tx.protect(&rtp(s, 7, 0, false)).unwrap())
            .collect();
        // Out of order within the window is fine, once.
        for i in (140..200).rev().filter(|i| i % 2 == 0) {
            rx.unprotect(&sent[i]).unwrap();
        }
        for i in (141..200).filter(|i| i % 2 == 1) {
            rx.unprotect(&sent[i]).unwrap();
        }
        assert_eq!(rx.unprotect(&sent[150]), Err(SrtpError::Replay));
        // Older than the 64-packet window.
        assert_eq!(rx.unprotect(&sent[10]), Err(SrtpError::Replay));
        let mut forged = tx.protect(&rtp(500, 7, 0, false)).unwrap();
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert_eq!(rx.unprotect(&forged), Err(SrtpError::Authentication));
        // A forged packet does not move the window: the genuine one still passes.
        forged[n - 1] ^= 1;
        rx.unprotect(&forged).unwrap();
        for len in 0..60 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x80) as u8).collect();
            assert!(rx.unprotect(&junk).is_err());
            assert!(header_len(&junk).is_err() || junk.len() >= 12);
        }
    }
}
