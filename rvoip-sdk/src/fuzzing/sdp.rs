//! The `sdp` fuzz target.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::media::dtls::Fingerprint;
use crate::media::sdes::{CryptoAttribute, CryptoSuite};
use crate::sdp::{self, AudioCodec, Direction, LocalMedia, LocalSecurity, SrtpPolicy};

use super::Cursor;

fn local_media(sel: u8, security: LocalSecurity) -> LocalMedia {
    let all = [
        AudioCodec::OPUS,
        AudioCodec::G722,
        AudioCodec::PCMU,
        AudioCodec::PCMA,
    ];
    let n = usize::from(sel % 4) + 1;
    let start = usize::from((sel >> 2) % 4);
    let codecs = (0..n).map(|i| all[(start + i) % 4]).collect();
    LocalMedia {
        addr: if sel & 0x10 != 0 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))
        },
        port: 40_000,
        codecs,
        dtmf: sel & 0x20 != 0,
        direction: match sel >> 6 {
            0 => Direction::SendRecv,
            1 => Direction::SendOnly,
            2 => Direction::RecvOnly,
            _ => Direction::Inactive,
        },
        security,
    }
}

fn fixed_crypto() -> Vec<CryptoAttribute> {
    CryptoSuite::ALL
        .iter()
        .enumerate()
        .map(|(i, &suite)| {
            let mut c = CryptoAttribute::generate(i as u32 + 1, suite);
            c.keys[0].master = (0..suite.master_len()).map(|b| b as u8).collect();
            c
        })
        .collect()
}

fn fixed_fingerprint() -> Fingerprint {
    Fingerprint::of_certificate(crate::media::dtls::FingerprintHash::Sha256, b"rvoip fuzz")
}

fn local_security(sel: u8) -> LocalSecurity {
    let policy = match sel % 3 {
        0 => SrtpPolicy::Off,
        1 => SrtpPolicy::Optional,
        _ => SrtpPolicy::Mandatory,
    };
    if policy == SrtpPolicy::Off {
        return LocalSecurity::plain();
    }
    LocalSecurity {
        policy,
        crypto: if sel & 0x04 != 0 {
            fixed_crypto()
        } else {
            Vec::new()
        },
        dtls: (sel & 0x08 != 0).then(fixed_fingerprint),
        prefer_dtls: sel & 0x10 != 0,
    }
}

/// SDP offer/answer (RFC 3264, RFC 4566) and the relay's SDP rewriting:
/// - [`sdp::answer`] to an arbitrary offer, with every SRTP policy and key exchange, never
///   panics; an answer it makes is SDP that we read back ([`sdp::process_answer`]) with the
///   same codec, payload type and our address;
/// - [`sdp::process_answer`] of arbitrary text as the answer to an offer of ours never panics;
/// - the relay's [`crate::server::relay::sdp::Sdp`]: parsing never panics, and an anchored
///   description parses again with every anchored stream at the relay's address and port.
pub fn sdp(data: &[u8]) {
    let mut input = Cursor::new(data);
    let sel = input.u8();
    let sec = input.u8();
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    let local = local_media(sel, local_security(sec));

    if let Ok((answer, neg)) = sdp::answer(&text, &local, 1, 2) {
        assert!(local.codecs.contains(&neg.codec));
        // The offerer reads our answer: same codec and payload type, our address.
        let offerer = LocalMedia {
            codecs: vec![neg.codec],
            dtmf: true,
            direction: Direction::SendRecv,
            security: LocalSecurity {
                policy: SrtpPolicy::Optional,
                ..local.security.clone()
            },
            ..local.clone()
        };
        match sdp::process_answer(&answer, &offerer) {
            Ok(back) => {
                assert_eq!(back.codec, neg.codec, "{answer}");
                assert_eq!(back.payload_type, neg.payload_type, "{answer}");
                assert_eq!(back.remote, SocketAddr::new(local.addr, local.port));
                assert_eq!(back.telephone_event_pt, neg.telephone_event_pt, "{answer}");
            }
            Err(e) => {
                assert!(
                    !matches!(
                        e,
                        sdp::SdpError::Malformed(_)
                            | sdp::SdpError::NoAudio
                            | sdp::SdpError::NoAddress
                    ) && neg.security.is_secure(),
                    "our answer does not read back ({e}): {answer}"
                );
            }
        }
    }
    let _ = sdp::process_answer(&text, &local);
    if let Ok(offer) = sdp::create_offer(&local, 3, 4) {
        let _ = sdp::answer(&offer, &local, 5, 6);
    }

    // The relay's rewriting (RFC 4566 structures via rtc-sdp).
    use crate::server::relay::sdp::Sdp;
    if let Ok(parsed) = Sdp::parse(text.as_bytes()) {
        let _ = parsed.version();
        let relay_ip = if sel & 1 == 0 {
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))
        } else {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7))
        };
        let ports: Vec<(usize, u16)> = parsed
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.index, 30_000 + 2 * i as u16))
            .collect();
        let anchored = parsed.anchor(relay_ip, &ports, 9);
        let back = match Sdp::parse(anchored.as_bytes()) {
            Ok(b) => b,
            Err(e) => panic!("anchored SDP does not parse ({e}): {anchored:?}"),
        };
        for &(index, port) in &ports {
            let s = back.streams.iter().find(|s| s.index == index);
            let s = s.unwrap_or_else(|| panic!("anchored stream {index} lost: {anchored:?}"));
            assert_eq!(s.rtp, SocketAddr::new(relay_ip, port), "{anchored:?}");
        }
    }
}
