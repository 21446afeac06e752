//! Offer/answer tests.

use super::*;

fn local(codecs: Vec<AudioCodec>, direction: Direction) -> LocalMedia {
    LocalMedia {
        addr: "192.0.2.10".parse().unwrap(),
        port: 40_000,
        codecs,
        dtmf: true,
        direction,
        security: LocalSecurity::plain(),
    }
}

#[test]
fn offer_lists_codecs_in_order_with_a_real_address() {
    let l = local(
        vec![
            AudioCodec::OPUS,
            AudioCodec::G722,
            AudioCodec::PCMU,
            AudioCodec::PCMA,
        ],
        Direction::SendRecv,
    );
    let o = create_offer(&l, 1, 1).unwrap();
    assert!(o.contains("m=audio 40000 RTP/AVP 111 9 0 8 101"), "{o}");
    assert!(o.contains("c=IN IP4 192.0.2.10"));
    assert!(o.contains("a=rtpmap:111 opus/48000/2"));
    assert!(o.contains("a=rtpmap:101 telephone-event/8000"));
    assert!(o.contains("a=sendrecv"));
    let wild = LocalMedia {
        addr: "0.0.0.0".parse().unwrap(),
        ..l
    };
    assert_eq!(create_offer(&wild, 1, 1), Err(SdpError::Unspecified));
}

#[test]
fn answer_takes_our_first_common_codec_in_the_offerers_numbering() {
    // SIPp-style offer: static PCMU and PCMA without rtpmap for 8, dynamic telephone-event 96.
    let offer = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 6000 RTP/AVP 0 8 96\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\n";
    let l = local(
        vec![AudioCodec::PCMA, AudioCodec::PCMU],
        Direction::SendRecv,
    );
    let (text, n) = answer(offer, &l, 7, 1).unwrap();
    assert_eq!(n.codec, AudioCodec::PCMA);
    assert_eq!(n.payload_type, 8);
    assert_eq!(n.telephone_event_pt, Some(96));
    assert_eq!(n.remote, "127.0.0.1:6000".parse::<SocketAddr>().unwrap());
    assert!(text.contains("m=audio 40000 RTP/AVP 8 96"), "{text}");
    // The offerer reads our answer back.
    let ol = local(
        vec![AudioCodec::PCMU, AudioCodec::PCMA],
        Direction::SendRecv,
    );
    let back = process_answer(&text, &ol).unwrap();
    assert_eq!(back.codec, AudioCodec::PCMA);
    assert_eq!(
        back.remote,
        "192.0.2.10:40000".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn no_common_codec_is_488_material() {
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let l = local(vec![AudioCodec::PCMU], Direction::SendRecv);
    assert_eq!(
        answer(offer, &l, 1, 1).unwrap_err(),
        SdpError::NoCommonCodec
    );
    assert!(matches!(
        answer("garbage", &l, 1, 1),
        Err(SdpError::Malformed(_) | SdpError::NoAudio)
    ));
}

#[test]
fn srtp_offers_are_refused_not_downgraded() {
    let l = local(vec![AudioCodec::PCMU], Direction::SendRecv);
    for proto in ["RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP"] {
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 6000 {proto} 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
        );
        assert_eq!(
            answer(&offer, &l, 1, 1).unwrap_err(),
            SdpError::SecureProfile(proto.into()),
            "{proto}"
        );
        assert!(process_answer(&offer, &l).is_err(), "{proto}");
    }
    // The same offer with RTP/AVP is answered (the check can fail).
    let plain = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
    assert!(answer(plain, &l, 1, 1).is_ok());
}

#[test]
fn hold_directions_follow_rfc3264_section_8_4() {
    let l = local(vec![AudioCodec::PCMU], Direction::SendRecv);
    for (offered, expected) in [
        ("sendonly", Direction::RecvOnly),
        ("recvonly", Direction::SendOnly),
        ("inactive", Direction::Inactive),
        ("sendrecv", Direction::SendRecv),
    ] {
        let offer = format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na={offered}\r\n"
        );
        let (text, n) = answer(&offer, &l, 1, 2).unwrap();
        assert_eq!(n.direction, expected, "{offered}");
        assert!(text.contains(&format!("a={}", expected.as_str())), "{text}");
    }
    assert_eq!(
        Direction::SendRecv.answer_to(Direction::SendOnly),
        Direction::SendOnly
    );
}

fn fp(byte: u8) -> crate::media::dtls::Fingerprint {
    let hex: Vec<String> = (0..32).map(|_| format!("{byte:02X}")).collect();
    crate::media::dtls::Fingerprint::parse(&format!("sha-256 {}", hex.join(":"))).unwrap()
}

fn secure(policy: SrtpPolicy, tls: bool, dtls: Option<u8>) -> LocalMedia {
    let cfg = SrtpConfig {
        policy,
        ..SrtpConfig::default()
    };
    LocalMedia {
        security: cfg.local(tls, dtls.map(fp)),
        ..local(vec![AudioCodec::PCMU], Direction::SendRecv)
    }
}

#[test]
fn sdes_offer_and_answer_agree_on_one_suite_and_swap_keys() {
    let alice = secure(SrtpPolicy::Mandatory, true, None);
    let offer = create_offer(&alice, 1, 1).unwrap();
    assert!(offer.contains("m=audio 40000 RTP/SAVP 0 101"), "{offer}");
    assert_eq!(offer.matches("a=crypto:").count(), 3, "{offer}");
    let bob = secure(SrtpPolicy::Optional, true, None);
    let (answer_text, bob_n) = answer(&offer, &bob, 2, 1).unwrap();
    assert!(answer_text.contains("RTP/SAVP"), "{answer_text}");
    assert_eq!(answer_text.matches("a=crypto:").count(), 1, "{answer_text}");
    let alice_n = process_answer(&answer_text, &alice).unwrap();
    let (
        MediaSecurity::Sdes {
            local: a_local,
            remote: a_remote,
        },
        MediaSecurity::Sdes {
            local: b_local,
            remote: b_remote,
        },
    ) = (&alice_n.security, &bob_n.security)
    else {
        panic!("{alice_n:?} {bob_n:?}")
    };
    // Our first preference, AEAD_AES_128_GCM, with the offer's tag; keys cross over.
    assert_eq!(
        a_local.suite,
        crate::media::sdes::CryptoSuite::AeadAes128Gcm
    );
    assert_eq!(a_local.keys, b_remote.keys);
    assert_eq!(b_local.keys, a_remote.keys);
    assert_eq!(b_local.tag, a_local.tag);
    assert_ne!(a_local.keys, b_local.keys);
}

#[test]
fn a_real_baresip_srtp_offer_is_answered_with_its_first_usable_suite() {
    // baresip 3.x with mediaenc=srtp-mand: RTP/SAVP, the 32-bit tag suite first.
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 10000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
                 a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
                 a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=sendrecv\r\n";
    let bob = secure(SrtpPolicy::Optional, true, None);
    let (text, n) = answer(offer, &bob, 1, 1).unwrap();
    assert!(
        text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:"),
        "{text}"
    );
    assert_eq!(n.security.describe(), "SDES AES_CM_128_HMAC_SHA1_32");
}

#[test]
fn policies_refuse_what_they_must_and_never_answer_srtp_in_plaintext() {
    let plain_offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
    // Mandatory refuses a plain offer; optional and off answer it in plain RTP.
    let mandatory = secure(SrtpPolicy::Mandatory, true, None);
    assert_eq!(
        answer(plain_offer, &mandatory, 1, 1).unwrap_err(),
        SdpError::SrtpRequired
    );
    for p in [SrtpPolicy::Optional, SrtpPolicy::Off] {
        let (text, n) = answer(plain_offer, &secure(p, true, None), 1, 1).unwrap();
        assert_eq!(n.security, MediaSecurity::Plain);
        assert!(!text.contains("crypto"), "{text}");
    }
    // An SDES offer whose only attribute weakens SRTP, or names an unknown suite: 488.
    for bad in [
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz UNENCRYPTED_SRTP",
        "1 F8_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    ] {
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/SAVP 0\r\na=crypto:{bad}\r\n"
        );
        let e = answer(&offer, &secure(SrtpPolicy::Optional, true, None), 1, 1).unwrap_err();
        assert_eq!(e, SdpError::NoCommonCrypto, "{bad}");
        assert_eq!(e.status(), 488);
    }
    // SDES over plaintext signalling is refused unless allowed.
    let sdes_offer = create_offer(&secure(SrtpPolicy::Mandatory, true, None), 1, 1).unwrap();
    assert_eq!(
        answer(
            &sdes_offer,
            &secure(SrtpPolicy::Optional, false, None),
            1,
            1
        )
        .unwrap_err(),
        SdpError::InsecureKeys
    );
    let allowed = SrtpConfig {
        sdes_over_insecure: true,
        ..SrtpConfig::default()
    };
    let lm = LocalMedia {
        security: allowed.local(false, None),
        ..local(vec![AudioCodec::PCMU], Direction::SendRecv)
    };
    assert!(
        answer(&sdes_offer, &lm, 1, 1)
            .unwrap()
            .1
            .security
            .is_secure()
    );
    // Mandatory on plaintext signalling without DTLS cannot offer at all.
    assert_eq!(
        create_offer(&secure(SrtpPolicy::Mandatory, false, None), 1, 1).unwrap_err(),
        SdpError::NoKeyExchange
    );
    // Optional offers best-effort SDES in RTP/AVP over TLS, plain RTP/AVP over UDP.
    let best_effort = create_offer(&secure(SrtpPolicy::Optional, true, None), 1, 1).unwrap();
    assert!(best_effort.contains("RTP/AVP") && best_effort.contains("a=crypto:"));
    let udp = create_offer(&secure(SrtpPolicy::Optional, false, Some(1)), 1, 1).unwrap();
    assert!(udp.contains("RTP/AVP") && !udp.contains("crypto") && !udp.contains("fingerprint"));
}

#[test]
fn a_plain_answer_to_a_mandatory_offer_fails_and_to_an_optional_one_is_plain() {
    let plain_answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
    assert_eq!(
        process_answer(plain_answer, &secure(SrtpPolicy::Mandatory, true, None)).unwrap_err(),
        SdpError::SrtpRequired
    );
    let n = process_answer(plain_answer, &secure(SrtpPolicy::Optional, true, None)).unwrap();
    assert_eq!(n.security, MediaSecurity::Plain);
    // An answer with a crypto attribute we never offered (wrong tag) is refused.
    let forged = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/SAVP 0\r\n\
                  a=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
    assert_eq!(
        process_answer(forged, &secure(SrtpPolicy::Mandatory, true, None)).unwrap_err(),
        SdpError::NoCommonCrypto
    );
}

#[test]
fn dtls_srtp_offer_and_answer_set_roles_by_setup() {
    use crate::media::dtls::DtlsRole;
    // Mandatory over UDP signalling: DTLS-SRTP, actpass.
    let alice = secure(SrtpPolicy::Mandatory, false, Some(0xAA));
    let offer = create_offer(&alice, 1, 1).unwrap();
    assert!(
        offer.contains("m=audio 40000 UDP/TLS/RTP/SAVP 0 101"),
        "{offer}"
    );
    assert!(offer.contains("a=setup:actpass") && offer.contains("a=fingerprint:sha-256 AA:AA"));
    assert!(!offer.contains("crypto"));
    let bob = secure(SrtpPolicy::Optional, false, Some(0xBB));
    let (text, bob_n) = answer(&offer, &bob, 1, 1).unwrap();
    assert!(
        text.contains("UDP/TLS/RTP/SAVP") && text.contains("a=setup:active"),
        "{text}"
    );
    assert_eq!(
        bob_n.security,
        MediaSecurity::Dtls {
            role: DtlsRole::Client,
            remote: fp(0xAA)
        }
    );
    let alice_n = process_answer(&text, &alice).unwrap();
    assert_eq!(
        alice_n.security,
        MediaSecurity::Dtls {
            role: DtlsRole::Server,
            remote: fp(0xBB)
        }
    );
    // Policy off refuses it; no fingerprint in the offer: no common key exchange.
    assert!(matches!(
        answer(&offer, &secure(SrtpPolicy::Off, false, Some(0xBB)), 1, 1),
        Err(SdpError::SecureProfile(_))
    ));
    let no_fp = offer
        .lines()
        .filter(|l| !l.starts_with("a=fingerprint"))
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    assert_eq!(
        answer(&no_fp, &bob, 1, 1).unwrap_err(),
        SdpError::NoCommonCrypto
    );
}
