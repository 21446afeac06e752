//! The `rtp_rtcp` fuzz target.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::media::dtmf::{DtmfReceiver, TelephoneEvent};
use crate::media::jitter::{JitterBuffer, Playout};
use crate::media::relay::{Relay, RelayConfig, Side};
use crate::media::rtcp::{self, Rtcp};
use crate::media::rtp;
use crate::sdp::AudioCodec;

use super::Cursor;

/// RTP, RTCP, DTMF and the receive paths that consume them:
/// - [`rtp::parse`] and [`rtcp::parse`] never panic; a parsed RTP packet has a 7-bit payload
///   type and a payload no longer than the datagram; [`Rtcp::handle`] takes any datagram;
/// - RFC 4733 events: [`TelephoneEvent::parse`] agrees with `to_bytes`, [`DtmfReceiver`] only
///   yields keys of the DTMF alphabet;
/// - the jitter buffer fed the parsed packets at arbitrary arrival times never panics and
///   never holds more than its bounded span;
/// - a [`crate::media::session::MediaSession`] (PCMU, PCMA or G.722, with telephone-event)
///   takes every datagram on its RTP and RTCP sockets, with its timers run between them;
/// - the media relay ([`Relay::handle_datagram`]) on every port of a context, from several
///   sources: never panics, keeps the length, and forwards only from one of its own ports.
pub fn rtp_rtcp(data: &[u8]) {
    let mut input = Cursor::new(data);
    let mode = input.u8();
    let t0 = Instant::now();
    let mut now = t0;
    let mut jb = JitterBuffer::new(8000, 20, 20, 200);
    let mut dtmf = DtmfReceiver::new();
    let mut rtcp_state = Rtcp::new(0x1234_5678, "fuzz@rvoip", t0, 0xE000_0000_0000_0000, 7);

    let codec = match mode % 3 {
        0 => AudioCodec::PCMU,
        1 => AudioCodec::PCMA,
        _ => AudioCodec::G722,
    };
    let mut cfg = crate::media::session::MediaConfig::new(codec, "192.0.2.1:4000".parse().unwrap());
    cfg.telephone_event_pt = Some(101);
    let mut session = crate::media::session::MediaSession::with_seed(
        cfg,
        Box::new(crate::media::audio::SilenceSource { rate: 8000 }),
        Box::new(crate::media::audio::NullSink { rate: 8000 }),
        t0,
        1,
    )
    .ok();

    let mut relay = Relay::new(RelayConfig {
        port_min: 30_000,
        port_max: 30_007,
        rewrite_ssrc: mode & 0x08 != 0,
        strict_source: mode & 0x10 != 0,
        ..RelayConfig::default()
    });
    let id = relay.create(t0).ok();
    let caller: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let callee: SocketAddr = "198.51.100.2:5000".parse().unwrap();
    if let Some(id) = id {
        let _ = relay.set_remote(id, Side::Caller, caller, None, mode & 0x20 != 0, 8000);
        let _ = relay.set_remote(id, Side::Callee, callee, None, mode & 0x40 != 0, 48_000);
        if mode & 0x80 != 0 {
            relay.confirm(t0, id);
        }
    }
    let relay_ports: Vec<u16> = (30_000..=30_007).collect();
    let sources = [
        caller,
        callee,
        "192.0.2.1:4001".parse().unwrap(),
        "203.0.113.9:6000".parse().unwrap(),
    ];

    while !input.is_empty() {
        let ctl = input.u8();
        now += Duration::from_millis(u64::from(ctl & 0x3f));
        let pkt = input.chunk();
        let bytes = Bytes::copy_from_slice(pkt);

        if let Ok(p) = rtp::parse(&bytes) {
            assert!(p.payload_type < 128);
            assert!(p.payload.len() + 12 <= pkt.len());
            if let Ok(ev) = TelephoneEvent::parse(&p.payload) {
                assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Ok(ev));
            }
            if let Some(k) = dtmf.on_packet(p.timestamp, &p.payload) {
                assert!("0123456789*#ABCD".contains(k), "DTMF key {k:?}");
            }
            jb.insert(p.timestamp, p.payload.clone(), now);
            assert!(
                jb.buffered_ms() <= 64 * 200,
                "jitter buffer grew to {} ms",
                jb.buffered_ms()
            );
        }
        if ctl & 0x40 != 0 {
            match jb.pop() {
                Playout::Frame { .. } | Playout::Missing { .. } | Playout::Underrun => {}
            }
        }
        let _ = rtcp::parse(pkt);
        let _ = rtcp_state.handle(now, pkt);
        let _ = rtcp_state.rtt_ms();

        if let Some(s) = session.as_mut() {
            let from = sources[usize::from(ctl >> 6)];
            s.handle_datagram(now, from, bytes.clone(), ctl & 0x80 != 0 && ctl & 1 != 0);
            s.handle_timeout(now);
            while s.poll_transmit().is_some() {}
            while s.poll_event().is_some() {}
        }

        let port = relay_ports[usize::from(ctl) % relay_ports.len()];
        let source = sources[usize::from(ctl >> 6)];
        let mut buf = pkt.to_vec();
        if let Some(fwd) = relay.handle_datagram(now, port, source, &mut buf) {
            assert!(relay_ports.contains(&fwd.from_port), "{fwd:?}");
            assert_eq!(buf.len(), pkt.len());
        }
        relay.handle_timeout(now);
        while relay.poll_event().is_some() {}
    }
    if let Some(id) = id {
        let _ = relay.media_stats(id);
        let _ = relay.release(id);
    }
    let _ = relay.stats();
    let _ = jb.stats();
    let _ = rtcp_state.build_report(now, None, None);
}
