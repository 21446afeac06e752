//! The `dtls` fuzz target.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::media::dtls::{DtlsIdentity, DtlsRole, DtlsSrtp};

use super::Cursor;

fn identity() -> &'static DtlsIdentity {
    static ID: OnceLock<DtlsIdentity> = OnceLock::new();
    ID.get_or_init(|| DtlsIdentity::generate().expect("DTLS identity"))
}

/// The DTLS-SRTP endpoint (RFC 5764, over `rtc-dtls`), both roles:
/// - mode 0: arbitrary datagrams (a hostile peer) into a fresh client or server, with its timers
///   run: never panics, and never reaches `Connected` (no key, no certificate of ours);
/// - mode 1: a real client–server handshake whose datagrams the input drops, duplicates,
///   corrupts, truncates or replaces in flight (no script: a clean handshake): never panics,
///   and when both ends connect they agree on the SRTP suite and their keys work (one
///   protects, the other unprotects).
pub fn dtls(data: &[u8]) {
    let mut input = Cursor::new(data);
    let mode = input.u8();
    let id = identity();
    let t0 = Instant::now();
    let fp = id.fingerprint().clone();
    if mode & 1 == 0 {
        let role = if mode & 2 == 0 {
            DtlsRole::Server
        } else {
            DtlsRole::Client
        };
        let Ok(mut ep) = DtlsSrtp::new(id, role, fp, t0) else {
            return;
        };
        let mut now = t0;
        while !input.is_empty() {
            let ctl = input.u8();
            let pkt = input.chunk();
            ep.handle_datagram(now, pkt);
            while ep.poll_transmit().is_some() {}
            now += Duration::from_millis(u64::from(ctl) * 16);
            ep.handle_timeout(now);
            while ep.poll_transmit().is_some() {}
            let _ = ep.poll_timeout();
        }
        assert_ne!(
            ep.state(),
            crate::media::dtls::DtlsState::Connected,
            "a peer without our key completed a handshake"
        );
        ep.close(now);
        return;
    }

    // Man in the middle of a real handshake.
    let (Ok(mut client), Ok(mut server)) = (
        DtlsSrtp::new(id, DtlsRole::Client, fp.clone(), t0),
        DtlsSrtp::new(id, DtlsRole::Server, fp, t0),
    ) else {
        return;
    };
    let mut now = t0;
    for _ in 0..64 {
        let mut to_server: Vec<Bytes> = std::iter::from_fn(|| client.poll_transmit()).collect();
        let mut to_client: Vec<Bytes> = std::iter::from_fn(|| server.poll_transmit()).collect();
        if to_server.is_empty() && to_client.is_empty() && input.is_empty() {
            break;
        }
        for (queue, toward_server) in [(&mut to_server, true), (&mut to_client, false)] {
            for pkt in queue.drain(..) {
                let op = input.u8();
                let mut p = pkt.to_vec();
                // 0 (and the end of the input) delivers as sent: an empty script is a clean
                // handshake.
                match op % 8 {
                    5 => continue, // dropped
                    1 if !p.is_empty() => {
                        let i = usize::from(input.u16()) % p.len();
                        p[i] ^= input.u8() | 1;
                    }
                    2 => p = input.chunk().to_vec(), // replaced
                    3 => p.truncate(usize::from(input.u16()) % (p.len() + 1)),
                    _ => {}
                }
                let dest = if toward_server {
                    &mut server
                } else {
                    &mut client
                };
                dest.handle_datagram(now, &p);
                if op % 8 == 4 {
                    dest.handle_datagram(now, &p); // duplicated
                }
            }
        }
        now += Duration::from_millis(u64::from(input.u8()) * 8);
        client.handle_timeout(now);
        server.handle_timeout(now);
    }
    use crate::media::dtls::DtlsState::Connected;
    if client.state() == Connected && server.state() == Connected {
        assert_eq!(client.srtp_suite(), server.srtp_suite());
        let (Some(mut c), Some(mut s)) = (client.take_srtp(), server.take_srtp()) else {
            panic!("connected without SRTP keys");
        };
        let rtp_pkt = [0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 1, 2, 3, 4];
        let p = c.protect_rtp(&rtp_pkt).expect("protect");
        assert_eq!(
            &s.unprotect_rtp(&p).expect("the two ends agree on keys")[..],
            &rtp_pkt
        );
    }
}
