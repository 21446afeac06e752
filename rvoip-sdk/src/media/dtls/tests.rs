use super::*;
use sha2::Digest;

/// A 12-byte RTP header (V=2, PT 0, `seq`, timestamp, SSRC `ssrc`) and 160 bytes of payload.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ 0x5a));
    p
}

struct Pair {
    client: DtlsSrtp,
    server: DtlsSrtp,
    now: Instant,
}

/// A client and a server that expect each other's fingerprints (unless told otherwise).
fn pair_with(
    client_suites: &[CryptoSuite],
    server_suites: &[CryptoSuite],
    client_expects: Option<Fingerprint>,
    server_expects: Option<Fingerprint>,
) -> Pair {
    let (a, b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let now = Instant::now();
    let cfp = client_expects.unwrap_or_else(|| b.fingerprint().clone());
    let sfp = server_expects.unwrap_or_else(|| a.fingerprint().clone());
    Pair {
        client: DtlsSrtp::with_suites(&a, DtlsRole::Client, cfp, client_suites, now).unwrap(),
        server: DtlsSrtp::with_suites(&b, DtlsRole::Server, sfp, server_suites, now).unwrap(),
        now,
    }
}

fn pair() -> Pair {
    pair_with(&CryptoSuite::ALL, &CryptoSuite::ALL, None, None)
}

impl Pair {
    /// Delivers everything queued, both ways, 1 ms per hop, until both sides are quiet;
    /// returns the number of datagrams moved.
    fn shuttle(&mut self) -> usize {
        let mut moved = 0;
        for _ in 0..64 {
            let mut quiet = true;
            while let Some(d) = self.client.poll_transmit() {
                self.now += Duration::from_millis(1);
                self.server.handle_datagram(self.now, &d);
                moved += 1;
                quiet = false;
            }
            while let Some(d) = self.server.poll_transmit() {
                self.now += Duration::from_millis(1);
                self.client.handle_datagram(self.now, &d);
                moved += 1;
                quiet = false;
            }
            if quiet {
                break;
            }
        }
        moved
    }

    fn assert_srtp_both_ways(&mut self, suite: CryptoSuite) {
        assert_eq!(self.client.srtp_suite(), Some(suite));
        assert_eq!(self.server.srtp_suite(), Some(suite));
        let mut c = self.client.take_srtp().expect("client SRTP");
        let mut s = self.server.take_srtp().expect("server SRTP");
        assert!(self.client.take_srtp().is_none(), "Some once");
        assert!(self.server.take_srtp().is_none(), "Some once");
        assert_eq!((c.suite(), s.suite()), (suite, suite));
        for seq in 7..12u16 {
            let plain = rtp(seq, 0x1111);
            let wire = c.protect_rtp(&plain).unwrap();
            assert_ne!(&wire[12..172], &plain[12..], "the payload is encrypted");
            assert_eq!(&s.unprotect_rtp(&wire).unwrap()[..], &plain[..]);
            let back = rtp(seq, 0x2222);
            let wire = s.protect_rtp(&back).unwrap();
            assert_eq!(&c.unprotect_rtp(&wire).unwrap()[..], &back[..]);
        }
        // A side cannot unprotect its own packets: the two directions have different keys.
        let own = c.protect_rtp(&rtp(99, 0x1111)).unwrap();
        assert!(c.unprotect_rtp(&own).is_err());
    }
}

#[test]
fn client_and_server_connect_and_srtp_works_both_ways() {
    let mut p = pair();
    assert_eq!(p.client.state(), DtlsState::Connecting);
    assert!(p.client.poll_timeout().is_some());
    let start = p.now;
    let moved = p.shuttle();
    assert_eq!(p.client.state(), DtlsState::Connected, "{:?}", p.client);
    assert_eq!(p.server.state(), DtlsState::Connected, "{:?}", p.server);
    assert!(moved <= 12, "{moved} datagrams");
    assert!(p.now - start < Duration::from_millis(50));
    assert_eq!(p.client.poll_timeout(), None);
    assert_eq!(p.server.poll_timeout(), None);
    // Both offer GCM first.
    p.assert_srtp_both_ways(CryptoSuite::AeadAes128Gcm);
    assert_eq!(p.client.counters().ignored, 0);
    assert_eq!(p.server.counters().ignored, 0);
    // Closing sends a close_notify; the peer sees Closed.
    let now = p.now;
    p.client.close(now);
    assert_eq!(p.client.state(), DtlsState::Closed);
    p.shuttle();
    assert_eq!(p.server.state(), DtlsState::Closed);
}

#[test]
fn the_server_takes_the_clients_first_common_profile_and_every_suite_keys() {
    use CryptoSuite::*;
    for (client, server, expected) in [
        (
            &[AesCm128HmacSha1_80, AesCm128HmacSha1_32][..],
            &CryptoSuite::ALL[..],
            AesCm128HmacSha1_80,
        ),
        (
            &[AesCm128HmacSha1_32][..],
            &CryptoSuite::ALL[..],
            AesCm128HmacSha1_32,
        ),
        (
            &CryptoSuite::ALL[..],
            &[AesCm128HmacSha1_32, AesCm128HmacSha1_80][..],
            // The client's order wins: GCM is not there, 80 comes before 32.
            AesCm128HmacSha1_80,
        ),
    ] {
        let mut p = pair_with(client, server, None, None);
        p.shuttle();
        assert_eq!(
            p.client.state(),
            DtlsState::Connected,
            "{client:?}/{server:?}"
        );
        assert_eq!(
            p.server.state(),
            DtlsState::Connected,
            "{client:?}/{server:?}"
        );
        p.assert_srtp_both_ways(expected);
    }
}

#[test]
fn no_common_profile_fails_both_sides() {
    let mut p = pair_with(
        &[CryptoSuite::AeadAes128Gcm],
        &[CryptoSuite::AesCm128HmacSha1_80],
        None,
        None,
    );
    p.shuttle();
    assert!(
        matches!(p.client.state(), DtlsState::Failed(_)),
        "{:?}",
        p.client
    );
    assert!(
        matches!(p.server.state(), DtlsState::Failed(_)),
        "{:?}",
        p.server
    );
    assert!(p.client.take_srtp().is_none() && p.server.take_srtp().is_none());
}

#[test]
fn a_wrong_fingerprint_fails_and_keys_nothing_on_either_side() {
    let stranger = DtlsIdentity::generate().unwrap().fingerprint().clone();
    // The client expects someone else: it aborts at the server's Certificate.
    let mut p = pair_with(
        &CryptoSuite::ALL,
        &CryptoSuite::ALL,
        Some(stranger.clone()),
        None,
    );
    p.shuttle();
    let DtlsState::Failed(reason) = p.client.state() else {
        panic!("client: {:?}", p.client);
    };
    assert!(reason.contains("fingerprint"), "{reason}");
    assert!(
        matches!(p.server.state(), DtlsState::Failed(_)),
        "{:?}",
        p.server
    );
    assert!(p.client.take_srtp().is_none() && p.server.take_srtp().is_none());
    assert_eq!(p.client.poll_timeout(), None);
    // The server expects someone else: it aborts at the client's Certificate.
    let mut p = pair_with(&CryptoSuite::ALL, &CryptoSuite::ALL, None, Some(stranger));
    p.shuttle();
    assert!(
        matches!(p.server.state(), DtlsState::Failed(_)),
        "{:?}",
        p.server
    );
    assert_ne!(p.client.state(), DtlsState::Connected, "{:?}", p.client);
    // Even if the client never hears the alert, it gives up by the deadline.
    let mut now = p.now;
    while let Some(t) = p.client.poll_timeout() {
        now = t;
        p.client.handle_timeout(now);
        while p.client.poll_transmit().is_some() {}
    }
    assert!(matches!(p.client.state(), DtlsState::Failed(_)));
    assert!(now - p.now <= HANDSHAKE_TIMEOUT);
    assert!(p.client.take_srtp().is_none() && p.server.take_srtp().is_none());
}

/// Everything `d` has queued.
fn flight(d: &mut DtlsSrtp) -> Vec<Bytes> {
    std::iter::from_fn(|| d.poll_transmit()).collect()
}

/// Fires `d`'s retransmission timer: nothing 1 ms early, then the flight again on time.
fn retransmit(d: &mut DtlsSrtp, now: &mut Instant) -> Vec<Bytes> {
    let due = d.poll_timeout().expect("a retransmission timer");
    assert!(due > *now && due - *now <= Duration::from_secs(1), "{d:?}");
    d.handle_timeout(due - Duration::from_millis(1));
    assert!(d.poll_transmit().is_none(), "nothing before the timer");
    *now = due;
    d.handle_timeout(due);
    flight(d)
}

#[test]
fn every_lost_flight_is_retransmitted_after_its_timer() {
    let mut p = pair();
    let deliver = |to: &mut DtlsSrtp, now: &mut Instant, datagrams: &[Bytes]| {
        for d in datagrams {
            *now += Duration::from_millis(1);
            to.handle_datagram(*now, d);
        }
    };
    // Flight 1 (ClientHello) is lost: the client sends it again on its timer.
    let lost = flight(&mut p.client);
    assert_eq!(lost.len(), 1);
    let again = retransmit(&mut p.client, &mut p.now);
    // The same ClientHello in a record with the next sequence number (RFC 6347 §4.1).
    assert_eq!(again.len(), 1);
    assert_eq!(again[0][13..], lost[0][13..], "the same ClientHello");
    assert_ne!(
        again[0][5..11],
        lost[0][5..11],
        "a fresh record sequence number"
    );
    assert_eq!(p.client.counters().timeouts, 1);
    deliver(&mut p.server, &mut p.now, &again);
    // Flight 2 (HelloVerifyRequest) is stateless and not retransmitted (RFC 6347 §4.2.1);
    // deliver it, and flight 3 (ClientHello with the cookie).
    let hvr = flight(&mut p.server);
    deliver(&mut p.client, &mut p.now, &hvr);
    let f3 = flight(&mut p.client);
    deliver(&mut p.server, &mut p.now, &f3);
    // Flight 4 (ServerHello … ServerHelloDone) is lost: the server sends it again.
    let lost = flight(&mut p.server);
    assert!(!lost.is_empty());
    let again = retransmit(&mut p.server, &mut p.now);
    assert_eq!(again.len(), lost.len());
    assert!(p.server.counters().timeouts >= 1);
    deliver(&mut p.client, &mut p.now, &again);
    // Flight 5 (Certificate … Finished) is lost: the client sends it again.
    let lost = flight(&mut p.client);
    assert!(!lost.is_empty());
    let again = retransmit(&mut p.client, &mut p.now);
    assert_eq!(again.len(), lost.len());
    deliver(&mut p.server, &mut p.now, &again);
    assert_eq!(p.server.state(), DtlsState::Connected, "{:?}", p.server);
    // Flight 6 (the server's Finished) is lost: the client's timer repeats flight 5, and the
    // server answers the repeat with flight 6 again (RFC 6347 §4.2.4).
    assert!(!flight(&mut p.server).is_empty());
    assert_eq!(p.client.state(), DtlsState::Connecting);
    let again = retransmit(&mut p.client, &mut p.now);
    deliver(&mut p.server, &mut p.now, &again);
    let f6 = flight(&mut p.server);
    assert!(!f6.is_empty(), "flight 6 again");
    deliver(&mut p.client, &mut p.now, &f6);
    assert_eq!(p.client.state(), DtlsState::Connected, "{:?}", p.client);
    p.assert_srtp_both_ways(CryptoSuite::AeadAes128Gcm);
}

#[test]
fn a_silent_peer_fails_the_handshake_on_simulated_time() {
    let a = DtlsIdentity::generate().unwrap();
    let b = DtlsIdentity::generate().unwrap();
    let start = Instant::now();
    for role in [DtlsRole::Client, DtlsRole::Server] {
        let mut d = DtlsSrtp::new(&a, role, b.fingerprint().clone(), start).unwrap();
        let mut now = start;
        let mut steps = 0;
        while let Some(t) = d.poll_timeout() {
            assert!(t >= now, "timers do not go back");
            now = t;
            d.handle_timeout(now);
            while d.poll_transmit().is_some() {}
            steps += 1;
            assert!(steps < 100);
        }
        assert!(matches!(d.state(), DtlsState::Failed(_)), "{role:?}: {d:?}");
        assert!(now - start <= HANDSHAKE_TIMEOUT, "{role:?}");
        assert!(d.take_srtp().is_none());
    }
}

/// xorshift64*, for reproducible garbage.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn garbage_never_panics_nor_connects() {
    let a = DtlsIdentity::generate().unwrap();
    let b = DtlsIdentity::generate().unwrap();
    let now = Instant::now();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..200 {
        let role = if round & 1 == 0 {
            DtlsRole::Client
        } else {
            DtlsRole::Server
        };
        let mut d = DtlsSrtp::new(&a, role, b.fingerprint().clone(), now).unwrap();
        for _ in 0..20 {
            let len = (next(&mut seed) % 300) as usize;
            let mut g: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
            // Mostly plausible record headers: a DTLS content type, DTLS 1.2 or 1.0, epoch 0/1.
            if len >= 13 && next(&mut seed) & 3 != 0 {
                g[0] = [20, 21, 22, 23][(next(&mut seed) % 4) as usize];
                g[1..3].copy_from_slice(&[0xfe, [0xfd, 0xff][(next(&mut seed) % 2) as usize]]);
                g[3..5].copy_from_slice(&[0, (next(&mut seed) % 2) as u8]);
                let body = (len - 13) as u16;
                g[11..13].copy_from_slice(&body.to_be_bytes());
                if len > 25 && g[0] == 22 {
                    // A handshake header whose lengths agree with the record.
                    let hs = (body.saturating_sub(12)) as u32;
                    g[14..17].copy_from_slice(&hs.to_be_bytes()[1..]);
                    g[19..22].copy_from_slice(&[0, 0, 0]);
                    g[22..25].copy_from_slice(&hs.to_be_bytes()[1..]);
                }
            }
            d.handle_datagram(now, &g);
            while d.poll_transmit().is_some() {}
            d.handle_timeout(now + Duration::from_secs(2));
            assert_ne!(d.state(), DtlsState::Connected);
        }
    }
}

#[test]
fn mutated_handshake_flights_never_panic_nor_connect_wrongly() {
    // Record each genuine datagram of a handshake, then replay the exchange with one of them
    // bit-flipped, truncated or duplicated.
    let mut seed = 0x5DEE_CE66_D1CE_4E5Bu64;
    for round in 0..60u64 {
        let mut p = pair();
        let mut step = 0u64;
        let target = round % 8;
        for _ in 0..16 {
            let mut quiet = true;
            for to_server in [true, false] {
                let (from, to) = if to_server {
                    (&mut p.client, &mut p.server)
                } else {
                    (&mut p.server, &mut p.client)
                };
                while let Some(d) = from.poll_transmit() {
                    quiet = false;
                    let mut d = d.to_vec();
                    if step == target && !d.is_empty() {
                        match next(&mut seed) % 3 {
                            0 => {
                                let i = (next(&mut seed) as usize) % d.len();
                                d[i] ^= 1 << (next(&mut seed) % 8);
                            }
                            1 => d.truncate((next(&mut seed) as usize) % d.len()),
                            _ => to.handle_datagram(p.now, &d),
                        }
                    }
                    step += 1;
                    p.now += Duration::from_millis(1);
                    to.handle_datagram(p.now, &d);
                }
            }
            if quiet {
                // Let the timers repair what was damaged.
                let t = [p.client.poll_timeout(), p.server.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(t) = t else { break };
                p.now = p.now.max(t);
                p.client.handle_timeout(p.now);
                p.server.handle_timeout(p.now);
            }
        }
        // Whatever happened, both sides connected means working SRTP. (A damaged first,
        // cookie-less ClientHello can change the profile: rtc-dtls negotiates from it.)
        let (c, s) = (p.client.state(), p.server.state());
        if c == DtlsState::Connected && s == DtlsState::Connected {
            let suite = p.client.srtp_suite().unwrap();
            p.assert_srtp_both_ways(suite);
        } else {
            assert!(
                !matches!(c, DtlsState::Connecting) || p.client.poll_timeout().is_some(),
                "a connecting side always has a timer"
            );
        }
    }
}

#[test]
fn malformed_datagrams_mid_handshake_are_ignored() {
    let mut p = pair();
    let hello = p.client.poll_transmit().unwrap();
    for junk in [
        &[][..],
        &[0x80, 0, 0, 1][..],      // RTP-looking: not DTLS
        &[22, 0xfe, 0xfd][..],     // a truncated record header
        &hello[..hello.len() - 1], // a record shorter than its length field
    ] {
        p.server.handle_datagram(p.now, junk);
        p.client.handle_datagram(p.now, junk);
    }
    p.server.handle_datagram(p.now, &hello);
    p.shuttle();
    assert_eq!(p.client.state(), DtlsState::Connected, "{:?}", p.client);
    assert_eq!(p.server.state(), DtlsState::Connected, "{:?}", p.server);
    assert_eq!(p.client.counters().ignored, 4);
    assert_eq!(p.server.counters().ignored, 4);
    // After the handshake, replays and junk change nothing.
    p.server.handle_datagram(p.now, &hello);
    p.client
        .handle_datagram(p.now, &[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 2, 1, 2]);
    assert_eq!(p.client.state(), DtlsState::Connected);
    assert_eq!(p.server.state(), DtlsState::Connected);
    p.shuttle();
    p.assert_srtp_both_ways(CryptoSuite::AeadAes128Gcm);
}

#[test]
fn keying_material_splits_as_rfc_5764_section_4_2() {
    for suite in CryptoSuite::ALL {
        let (k, s) = (suite.key_len(), suite.salt_len());
        let km: Vec<u8> = (0..2 * (k + s) as u8).collect();
        let (cl, cr) = split_keying_material(suite, DtlsRole::Client, &km).unwrap();
        let (sl, sr) = split_keying_material(suite, DtlsRole::Server, &km).unwrap();
        // client_write_key | server_write_key | client_salt | server_salt
        let client: Vec<u8> = km[..k]
            .iter()
            .chain(&km[2 * k..2 * k + s])
            .copied()
            .collect();
        let server: Vec<u8> = km[k..2 * k]
            .iter()
            .chain(&km[2 * k + s..])
            .copied()
            .collect();
        assert_eq!((&cl, &cr), (&client, &server), "{suite:?}");
        assert_eq!((&sl, &sr), (&server, &client), "{suite:?}");
        assert_eq!(cl.len(), suite.master_len());
        assert!(split_keying_material(suite, DtlsRole::Client, &km[1..]).is_none());
    }
}

#[test]
fn fingerprints_print_and_parse() {
    let id = DtlsIdentity::generate().unwrap();
    let fp = id.fingerprint();
    assert_eq!(fp.hash(), FingerprintHash::Sha256);
    assert_eq!(fp.digest(), &sha2::Sha256::digest(id.certificate_der())[..]);
    assert!(fp.matches(id.certificate_der()));
    let text = fp.to_string();
    assert!(text.starts_with("sha-256 "));
    assert_eq!(text.len(), "sha-256 ".len() + 32 * 3 - 1);
    assert_eq!(text, text.to_uppercase().replace("SHA", "sha"));
    assert_eq!(Fingerprint::parse(&text).as_ref(), Some(fp));
    assert_eq!(
        Fingerprint::parse(&format!("  {}  ", text.to_lowercase())).as_ref(),
        Some(fp)
    );
    assert_eq!(
        Fingerprint::parse(&text.replacen("sha-256", "SHA-256", 1)).as_ref(),
        Some(fp)
    );
    // Clones share the certificate; a new identity differs.
    assert_eq!(id.clone().fingerprint(), fp);
    assert_ne!(DtlsIdentity::generate().unwrap().fingerprint(), fp);
    // Other hashes.
    for (hash, n) in [(FingerprintHash::Sha384, 48), (FingerprintHash::Sha512, 64)] {
        let f = Fingerprint::of_certificate(hash, id.certificate_der());
        assert_eq!(f.digest().len(), n);
        assert_eq!(Fingerprint::parse(&f.to_string()), Some(f.clone()));
        assert!(f.matches(id.certificate_der()));
    }
    let pairs = |n: usize, p: &str| vec![p; n].join(":");
    for bad in [
        String::new(),
        "sha-256".into(),
        format!("sha-256 {}", pairs(31, "AB")),
        format!("sha-256 {}", pairs(33, "AB")),
        format!("sha-256 {}:", pairs(32, "AB")),
        format!("sha-256 {}", pairs(32, "GG")),
        format!("sha-256 {}", pairs(32, "+A")),
        format!("sha-256 {}", pairs(32, "ABC")),
        format!("sha-256 {} extra", pairs(32, "AB")),
        format!("sha-1 {}", pairs(20, "AB")),
        format!("md5 {}", pairs(16, "AB")),
        format!("sha-384 {}", pairs(32, "AB")),
        "sha-256 é".into(),
    ] {
        assert_eq!(Fingerprint::parse(&bad), None, "{bad:?}");
    }
    assert!(Fingerprint::new(FingerprintHash::Sha256, vec![0; 31]).is_none());
}

#[test]
fn setup_attribute_and_roles_follow_rfc_5763_section_5() {
    for s in [Setup::Active, Setup::Passive, Setup::ActPass] {
        assert_eq!(Setup::parse(s.as_str()), Some(s));
        assert_eq!(s.to_string(), s.as_str());
    }
    assert_eq!(Setup::parse(" ACTPASS "), Some(Setup::ActPass));
    assert_eq!(Setup::parse("holdconn"), None);
    assert_eq!(Setup::parse(""), None);
    // Offer actpass: we answer active and run the client.
    assert_eq!(
        DtlsRole::for_answer(Setup::ActPass),
        (DtlsRole::Client, Setup::Active)
    );
    assert_eq!(
        DtlsRole::for_answer(Setup::Passive),
        (DtlsRole::Client, Setup::Active)
    );
    assert_eq!(
        DtlsRole::for_answer(Setup::Active),
        (DtlsRole::Server, Setup::Passive)
    );
    // Answer passive: the offerer is the client; active: the server; actpass is invalid.
    assert_eq!(
        DtlsRole::for_offerer(Setup::Passive),
        Some(DtlsRole::Client)
    );
    assert_eq!(DtlsRole::for_offerer(Setup::Active), Some(DtlsRole::Server));
    assert_eq!(DtlsRole::for_offerer(Setup::ActPass), None);
    // The two sides always end up in opposite roles.
    for offer_setup in [Setup::ActPass, Setup::Active, Setup::Passive] {
        let (answerer, answer_setup) = DtlsRole::for_answer(offer_setup);
        let offerer = DtlsRole::for_offerer(answer_setup).unwrap();
        assert_ne!(answerer, offerer, "{offer_setup:?}");
    }
}

#[test]
fn demultiplexing_follows_rfc_7983() {
    assert!(!is_dtls(&[]));
    assert!(!is_dtls(&[0, 1])); // STUN
    assert!(!is_dtls(&[19]));
    assert!(is_dtls(&[20]));
    assert!(is_dtls(&[22, 0xfe, 0xfd]));
    assert!(is_dtls(&[63]));
    assert!(!is_dtls(&[64]));
    assert!(!is_dtls(&[0x80, 0])); // RTP
}

#[test]
fn the_endpoint_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<DtlsSrtp>();
    send::<DtlsIdentity>();
    fn sync<T: Sync>() {}
    sync::<DtlsIdentity>();
}
