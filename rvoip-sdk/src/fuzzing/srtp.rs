//! The `srtp` fuzz target.

use crate::media::dtls::{DtlsRole, Fingerprint, Setup};
use crate::media::sdes::{CryptoAttribute, CryptoSuite};
use crate::media::srtp::SrtpSession;

use super::Cursor;

fn session_pair(suite: CryptoSuite) -> (SrtpSession, SrtpSession) {
    let k1: Vec<u8> = (0..suite.master_len()).map(|i| i as u8).collect();
    let k2: Vec<u8> = (0..suite.master_len()).map(|i| 0xA0 ^ i as u8).collect();
    let a = SrtpSession::new(suite, &k1, &k2).expect("keys of the suite's length");
    let b = SrtpSession::new(suite, &k2, &k1).expect("keys of the suite's length");
    (a, b)
}

/// SRTP/SRTCP (RFC 3711, RFC 7714) with fixed keys on all three suites (our AES-GCM path and
/// `rtc-srtp`'s AES-CM), and the SDP attributes that key it:
/// - unprotecting arbitrary datagrams never panics and never succeeds (no forgery without
///   the key);
/// - an RTP or RTCP packet protected by one side unprotects on the other to the same bytes,
///   and the same packet with one bit flipped is refused;
/// - `a=crypto` ([`CryptoAttribute::parse`]), `a=fingerprint` ([`Fingerprint::parse`]) and
///   `a=setup` ([`Setup::parse`]) never panic, and what they accept prints back to the same value.
pub fn srtp(data: &[u8]) {
    let mut input = Cursor::new(data);
    let suite = CryptoSuite::ALL[usize::from(input.u8()) % CryptoSuite::ALL.len()];
    let (mut a, mut b) = session_pair(suite);
    while !input.is_empty() {
        let ctl = input.u8();
        let pkt = input.chunk();
        match ctl % 4 {
            0 => assert!(b.unprotect_rtp(pkt).is_err(), "forged SRTP accepted"),
            1 => assert!(b.unprotect_rtcp(pkt).is_err(), "forged SRTCP accepted"),
            2 | 3 => {
                let rtcp = ctl % 4 == 3;
                let protected = if rtcp {
                    a.protect_rtcp(pkt)
                } else {
                    a.protect_rtp(pkt)
                };
                let Ok(protected) = protected else { continue };
                let unprotect = |s: &mut SrtpSession, p: &[u8]| {
                    if rtcp {
                        s.unprotect_rtcp(p)
                    } else {
                        s.unprotect_rtp(p)
                    }
                };
                // Tampered first (a refused packet must not advance the replay window).
                if !protected.is_empty() {
                    let mut bad = protected.to_vec();
                    let bit = usize::from(ctl >> 2) * 7 + usize::from(input.u8());
                    let i = (bit / 8) % bad.len();
                    bad[i] ^= 1 << (bit % 8);
                    assert!(
                        unprotect(&mut b, &bad).is_err(),
                        "tampered packet accepted (byte {i})"
                    );
                }
                if let Ok(plain) = unprotect(&mut b, &protected) {
                    assert_eq!(&plain[..], pkt, "round trip changed the packet");
                }
            }
            _ => unreachable!(),
        }
    }
    let _ = (a.counters(), b.counters());

    // The SDP attributes of SRTP keying.
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(16) {
        if let Ok(c) = CryptoAttribute::parse(line) {
            let _ = c.is_acceptable();
            let printed = c.to_string();
            assert_eq!(
                CryptoAttribute::parse(&printed).as_ref(),
                Ok(&c),
                "{line} -> {printed}"
            );
            if let (true, Some(k)) = (c.is_acceptable(), c.keys.first()) {
                assert_eq!(k.master.len(), c.suite.master_len());
                let _ = SrtpSession::from_sdes(&c, &c).expect("acceptable attribute keys");
            }
        }
        if let Some(f) = Fingerprint::parse(line) {
            let printed = f.to_string();
            assert_eq!(Fingerprint::parse(&printed).as_ref(), Some(&f), "{printed}");
        }
        if let Some(s) = Setup::parse(line) {
            assert_eq!(Setup::parse(s.as_str()), Some(s));
            let _ = DtlsRole::for_answer(s);
            let _ = DtlsRole::for_offerer(s);
        }
    }
}
