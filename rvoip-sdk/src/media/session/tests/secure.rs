//! SRTP on a session pair: SDES and DTLS-SRTP keys, tone both ways, the wire not plaintext,
//! and forged, replayed and plain packets dropped and counted.

use super::*;
use crate::media::dtls::{self, DtlsIdentity, DtlsRole};
use crate::media::g711;
use crate::media::sdes::{CryptoAttribute, CryptoSuite};
use crate::sdp::MediaSecurity;

/// The 440 Hz share of the µ-law payloads in `packets` read as plaintext.
fn plaintext_tone_share(packets: &[Bytes]) -> f64 {
    let mut pcm = Vec::new();
    for p in packets.iter().skip(10) {
        if p.len() >= 12 + 160 {
            g711::decode_ulaw(&p[12..12 + 160], &mut pcm);
        }
    }
    tone_fraction_blocks(&pcm, 440.0, 8000, 160)
}

fn sdes_pair(suite: CryptoSuite) -> (Pair, Shared) {
    let (ka, kb) = (
        CryptoAttribute::generate(1, suite),
        CryptoAttribute::generate(1, suite),
    );
    let mut a = cfg(AudioCodec::PCMU, b_rtp());
    a.security = MediaSecurity::Sdes {
        local: ka.clone(),
        remote: kb.clone(),
    };
    let mut b = cfg(AudioCodec::PCMU, a_rtp());
    b.security = MediaSecurity::Sdes {
        local: kb,
        remote: ka,
    };
    let sink = Shared::new(8000);
    let p = Pair::new(
        a,
        b,
        tone(8000),
        Box::new(Shared::new(8000)),
        silence(8000),
        Box::new(sink.clone()),
    );
    (p, sink)
}

#[test]
fn sdes_streams_carry_the_tone_and_no_plaintext() {
    for suite in CryptoSuite::ALL {
        let (mut p, sink) = sdes_pair(suite);
        p.run(Duration::from_secs(2));
        assert!(tone_share(&sink, 8000) >= 0.9, "{suite:?}");
        let st = p.b.stats(p.now);
        assert_eq!(st.srtp_keying, Some("SDES"));
        assert_eq!(st.srtp_suite, Some(suite.name()));
        assert!(st.rx_packets >= 95, "{st:?}");
        assert_eq!((st.srtp_auth_failures, st.srtp_replays), (0, 0));
        // The same payloads read as plaintext µ-law are noise, not the tone.
        let share = plaintext_tone_share(&p.a_sent);
        assert!(share < 0.2, "{suite:?}: plaintext share {share}");
    }
    // Control: a plain pair's wire is the tone (the check above can fail).
    let (mut plain, _) = tone_pair(AudioCodec::PCMU, 8000, 8000);
    plain.run(Duration::from_secs(1));
    assert!(plaintext_tone_share(&plain.a_sent) > 0.9);
}

#[test]
fn forged_replayed_and_plain_packets_are_dropped_and_counted() {
    let (mut p, sink) = sdes_pair(CryptoSuite::AesCm128HmacSha1_80);
    p.run(Duration::from_millis(500));
    let old = p.a_sent[5].clone();
    let mut forged = p.a_sent.last().unwrap().to_vec();
    let n = forged.len();
    forged[n - 1] ^= 0x01;
    // A plain RTP packet of the right payload type from the peer's address.
    let mut plain = vec![0x80, 0x00, 0x12, 0x34, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    plain.extend([0xffu8; 160]);
    let now = p.now;
    let before = p.b.stats(now);
    p.b.handle_datagram(now, a_rtp(), old, false);
    p.b.handle_datagram(now, a_rtp(), Bytes::from(forged), false);
    p.b.handle_datagram(now, a_rtp(), Bytes::from(plain), false);
    let st = p.b.stats(now);
    assert_eq!(st.srtp_replays, before.srtp_replays + 1, "{st:?}");
    // The forged packet and the plain one (its missing tag does not verify).
    assert_eq!(
        st.srtp_auth_failures,
        before.srtp_auth_failures + 2,
        "{st:?}"
    );
    // Random datagrams (some look like old indexes, some like RTCP): all dropped.
    let mut rng = StdRng::seed_from_u64(7);
    for len in 0..300 {
        let junk: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        p.b.handle_datagram(now, a_rtp(), Bytes::from(junk.clone()), false);
        p.b.handle_datagram(now, a_rtcp(), Bytes::from(junk), true);
    }
    let st = p.b.stats(now);
    assert_eq!(
        st.rx_packets, before.rx_packets,
        "nothing forged was counted as media"
    );
    p.run(Duration::from_millis(1500));
    assert!(tone_share(&sink, 8000) >= 0.9);
}

fn dtls_pair(b_trusts: Option<&DtlsIdentity>) -> (Pair, Shared) {
    let (ia, ib) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let mut a = cfg(AudioCodec::PCMU, b_rtp());
    a.security = MediaSecurity::Dtls {
        role: DtlsRole::Server,
        remote: ib.fingerprint().clone(),
    };
    a.dtls_identity = Some(ia.clone());
    let mut b = cfg(AudioCodec::PCMU, a_rtp());
    b.security = MediaSecurity::Dtls {
        role: DtlsRole::Client,
        remote: b_trusts.unwrap_or(&ia).fingerprint().clone(),
    };
    b.dtls_identity = Some(ib);
    let sink = Shared::new(8000);
    let p = Pair::new(
        a,
        b,
        tone(8000),
        Box::new(Shared::new(8000)),
        silence(8000),
        Box::new(sink.clone()),
    );
    (p, sink)
}

#[test]
fn dtls_srtp_keys_the_stream_on_the_media_path() {
    let (mut p, sink) = dtls_pair(None);
    p.run(Duration::from_secs(2));
    for events in [&p.a_events, &p.b_events] {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, MediaEvent::Secured { keying: "DTLS", .. })),
            "{events:?}"
        );
    }
    assert!(tone_share(&sink, 8000) >= 0.85);
    let st = p.b.stats(p.now);
    assert_eq!(st.srtp_keying, Some("DTLS"));
    assert!(st.srtp_suite.is_some());
    assert!(plaintext_tone_share(&p.a_sent) < 0.2);
    // The RTCP component's own handshake (RFC 5764 §4.1) keys SRTCP: reports arrive both ways.
    p.run(Duration::from_secs(10));
    for s in [&p.a, &p.b] {
        let st = s.stats(p.now);
        assert!(st.rtcp_received >= 1 && st.rtcp_sent >= 1, "{st:?}");
        assert_eq!(st.srtp_auth_failures, 0, "{st:?}");
    }
    // DTLS_LINGER after keying the handshake state is dropped; the media goes on.
    p.run(crate::media::session::secure::DTLS_LINGER);
    for s in [&p.a, &p.b] {
        assert!(
            matches!(
                s.secure,
                crate::media::session::secure::Secure::Dtls {
                    dtls: None,
                    rtcp: None,
                    ..
                }
            ),
            "the handshakes are gone"
        );
    }
    let before = p.b.stats(p.now).rx_packets;
    p.run(Duration::from_secs(1));
    assert!(p.b.stats(p.now).rx_packets >= before + 45);
    assert!(tone_share(&sink, 8000) >= 0.85);
}

#[test]
fn a_dtls_peer_with_the_wrong_certificate_gets_no_media() {
    let stranger = DtlsIdentity::generate().unwrap();
    let (mut p, sink) = dtls_pair(Some(&stranger));
    p.run(Duration::from_secs(2));
    assert!(
        p.b_events
            .iter()
            .any(|e| matches!(e, MediaEvent::SecurityFailed(_))),
        "{:?}",
        p.b_events
    );
    assert_eq!(p.b.stats(p.now).rx_packets, 0);
    assert!(
        p.a_sent.iter().all(|b| dtls::is_dtls(b)),
        "only handshake records left A"
    );
    let s = sink.samples();
    assert!(s.iter().all(|x| *x == 0), "B played nothing");
}
