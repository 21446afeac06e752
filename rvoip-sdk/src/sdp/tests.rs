//! Offer/answer tests.

use super::*;

fn local(codecs: Vec<AudioCodec>, direction: Direction) -> LocalMedia {
    LocalMedia {
        addr: "192.0.2.10".parse().unwrap(),
        port: 40_000,
        codecs,
        dtmf: true,
        direction,
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
    assert_eq!(n.remote, "127.0.0.1:6000".parse().unwrap());
    assert!(text.contains("m=audio 40000 RTP/AVP 8 96"), "{text}");
    // The offerer reads our answer back.
    let ol = local(
        vec![AudioCodec::PCMU, AudioCodec::PCMA],
        Direction::SendRecv,
    );
    let back = process_answer(&text, &ol).unwrap();
    assert_eq!(back.codec, AudioCodec::PCMA);
    assert_eq!(back.remote, "192.0.2.10:40000".parse().unwrap());
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
