//! Relay tests on simulated time with hand-built RTP/RTCP packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const CALLER_SDP: &str = "10.0.0.1:5000"; // private address in the caller's SDP
const CALLER_NAT: &str = "203.0.113.1:40000"; // where the caller's packets really come from
const CALLER_NAT_RTCP: &str = "203.0.113.1:40001";
const CALLER_NAT_REBOUND: &str = "203.0.113.1:41234"; // the caller's NAT after a port rebinding
const CALLEE_SDP: &str = "198.51.100.2:6000";
const FOREIGN: &str = "192.0.2.66:7777";

fn a(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An RTP packet (RFC 3550 §5.1): version 2, PT 0, 160 payload bytes.
fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// A minimal RTCP packet of type `pt` (200 SR, 201 RR): header + sender SSRC.
fn rtcp(pt: u8) -> Vec<u8> {
    vec![0x80, pt, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]
}

fn fields(p: &[u8]) -> (u16, u32, u32) {
    (leg::be16(p, 2), leg::be32(p, 4), leg::be32(p, 8))
}

fn cfg() -> RelayConfig {
    RelayConfig {
        port_min: 40000,
        port_max: 40019,
        ..RelayConfig::default()
    }
}

/// A relay with one context whose parties' SDP addresses are set (no rtcp-mux, 8 kHz).
/// Returns (relay, id, caller-facing RTP port, callee-facing RTP port, t0).
fn setup(cfg: RelayConfig) -> (Relay, MediaId, u16, u16, Instant) {
    let t0 = Instant::now();
    let mut r = Relay::new(cfg);
    let id = r.create(t0).expect("create");
    r.set_remote(id, Side::Caller, a(CALLER_SDP), None, false, 8000)
        .expect("caller sdp");
    r.set_remote(id, Side::Callee, a(CALLEE_SDP), None, false, 8000)
        .expect("callee sdp");
    let cp = r.local_port(id, Side::Caller).expect("caller port");
    let ep = r.local_port(id, Side::Callee).expect("callee port");
    (r, id, cp, ep, t0)
}

/// The forward decision "out of `from_port` to `dest`".
fn to(from_port: u16, dest: &str) -> Option<Forward> {
    Some(Forward {
        from_port,
        dest: a(dest),
    })
}

fn send(r: &mut Relay, now: Instant, port: u16, from: &str, mut p: Vec<u8>) -> Option<Forward> {
    r.handle_datagram(now, port, a(from), &mut p)
}

#[test]
fn latching_forwards_to_the_latched_address_not_the_sdp_address() {
    let (mut r, id, cp, ep, t0) = setup(cfg());
    assert_eq!((cp, ep), (40000, 40002));
    // Before the caller sent anything, the callee's media goes to the caller's SDP address.
    assert_eq!(
        send(&mut r, t0, ep, CALLEE_SDP, rtp(1, 0, 0xbb)),
        to(cp, CALLER_SDP)
    );
    // The caller's first packet (from behind its NAT) latches the caller leg.
    assert_eq!(
        send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)),
        to(ep, CALLEE_SDP)
    );
    // From now on the callee's media goes to the NAT address.
    assert_eq!(
        send(&mut r, t0 + ms(20), ep, CALLEE_SDP, rtp(2, 160, 0xbb)),
        to(cp, CALLER_NAT)
    );
    let s = r.media_stats(id).expect("stats");
    assert_eq!(s.caller.latched, Some(a(CALLER_NAT)));
    assert_eq!(s.callee.latched, Some(a(CALLEE_SDP)));
    assert_eq!((s.caller.packets, s.callee.packets), (1, 2));
    assert_eq!(s.caller.bytes, 172);
    let st = r.stats();
    assert_eq!(
        (
            st.forwarded,
            st.forwarded_bytes,
            st.contexts,
            st.ports_in_use
        ),
        (3, 516, 1, 4)
    );
}

#[test]
fn a_third_address_is_dropped_after_latching() {
    let (mut r, id, cp, ep, t0) = setup(cfg());
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)).is_some());
    // Same SSRC from elsewhere, well within relatch_after: no hijack.
    assert!(send(&mut r, t0 + ms(10), cp, FOREIGN, rtp(2, 160, 0xaa)).is_none());
    assert!(send(&mut r, t0 + ms(4999), cp, FOREIGN, rtp(3, 320, 0xaa)).is_none());
    assert!(send(&mut r, t0 + ms(20), cp, CALLER_NAT, rtp(2, 160, 0xaa)).is_some());
    let f = send(&mut r, t0 + ms(30), ep, CALLEE_SDP, rtp(1, 0, 0xbb)).expect("forward");
    assert_eq!(f.dest, a(CALLER_NAT));
    let s = r.media_stats(id).expect("stats");
    assert_eq!((s.caller.dropped_foreign, s.caller.packets), (2, 2));
    assert_eq!(s.caller.latched, Some(a(CALLER_NAT)));
    assert_eq!(r.stats().dropped_foreign, 2);
}

#[test]
fn a_new_ssrc_from_a_third_ip_is_dropped_while_the_source_is_active() {
    let (mut r, id, cp, ep, t0) = setup(cfg());
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)).is_some());
    // A fresh SSRC from another host while the caller still sends: no hijack.
    assert!(send(&mut r, t0 + ms(20), cp, FOREIGN, rtp(900, 5000, 0xcc)).is_none());
    assert!(send(&mut r, t0 + ms(30), cp, FOREIGN, rtp(901, 5160, 0xcd)).is_none());
    assert!(send(&mut r, t0 + ms(40), cp, CALLER_NAT, rtp(2, 160, 0xaa)).is_some());
    let f = send(&mut r, t0 + ms(45), ep, CALLEE_SDP, rtp(1, 0, 0xbb)).expect("forward");
    assert_eq!(f.dest, a(CALLER_NAT));
    // 4.999 s after the caller's last packet the source is still active: still dropped.
    assert!(send(&mut r, t0 + ms(5039), cp, FOREIGN, rtp(902, 5320, 0xce)).is_none());
    let s = r.media_stats(id).expect("stats");
    assert_eq!(
        (s.caller.latched, s.caller.dropped_foreign, s.caller.packets),
        (Some(a(CALLER_NAT)), 3, 2)
    );
    assert_eq!(r.stats().dropped_foreign, 3);
}

#[test]
fn a_new_ssrc_from_the_same_ip_on_a_new_port_relatches() {
    let (mut r, id, cp, ep, t0) = setup(cfg());
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)).is_some());
    // Same IP, new port, same SSRC, within relatch_after: not enough (could be anyone
    // behind the same NAT replaying the SSRC).
    assert!(
        send(
            &mut r,
            t0 + ms(10),
            cp,
            CALLER_NAT_REBOUND,
            rtp(2, 160, 0xaa)
        )
        .is_none()
    );
    // Same IP, new port, new SSRC (the NAT rebound, the phone restarted its stream).
    let f = send(
        &mut r,
        t0 + ms(20),
        cp,
        CALLER_NAT_REBOUND,
        rtp(900, 5000, 0xcc),
    )
    .expect("re-latched");
    assert_eq!(f.dest, a(CALLEE_SDP));
    assert_eq!(
        r.media_stats(id).expect("stats").caller.latched,
        Some(a(CALLER_NAT_REBOUND))
    );
    let f = send(&mut r, t0 + ms(25), ep, CALLEE_SDP, rtp(1, 0, 0xbb)).expect("forward");
    assert_eq!(f.dest, a(CALLER_NAT_REBOUND));
    // The old port with the new stream's SSRC is now the foreign one.
    assert!(send(&mut r, t0 + ms(40), cp, CALLER_NAT, rtp(901, 5160, 0xcc)).is_none());
    assert_eq!(r.stats().dropped_foreign, 2);
}

#[test]
fn a_silent_source_is_replaced_after_relatch_after() {
    let (mut r, id, cp, _, t0) = setup(cfg());
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)).is_some());
    assert!(send(&mut r, t0 + ms(1000), cp, CALLER_NAT, rtp(2, 160, 0xaa)).is_some());
    // Silent for 4.999 s: still latched. Silent for 5 s: the new source takes over.
    assert!(send(&mut r, t0 + ms(5999), cp, FOREIGN, rtp(3, 320, 0xaa)).is_none());
    assert!(send(&mut r, t0 + ms(6000), cp, FOREIGN, rtp(3, 320, 0xaa)).is_some());
    let s = r.media_stats(id).expect("stats");
    assert_eq!(
        (s.caller.latched, s.caller.dropped_foreign),
        (Some(a(FOREIGN)), 1)
    );
}

#[test]
fn strict_source_never_relatches() {
    let (mut r, id, cp, _, t0) = setup(RelayConfig {
        strict_source: true,
        ..cfg()
    });
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)).is_some());
    assert!(send(&mut r, t0 + ms(20), cp, FOREIGN, rtp(9, 9, 0xcc)).is_none());
    let hour = t0 + Duration::from_secs(3600);
    assert!(send(&mut r, hour, cp, FOREIGN, rtp(10, 10, 0xcc)).is_none());
    // The RTCP port latched nothing yet, but RTCP is only taken from the host whose RTP the
    // leg latched: a third host cannot claim it by being first.
    assert!(send(&mut r, hour, cp + 1, FOREIGN, rtcp(200)).is_none());
    assert!(send(&mut r, hour, cp, CALLER_NAT, rtp(2, 160, 0xaa)).is_some());
    let s = r.media_stats(id).expect("stats");
    assert_eq!(
        (s.caller.latched, s.caller.dropped_foreign),
        (Some(a(CALLER_NAT)), 3)
    );
    // The caller's own RTCP source is accepted.
    assert!(send(&mut r, hour, cp + 1, CALLER_NAT_RTCP, rtcp(200)).is_some());
    assert_eq!(r.stats().dropped_foreign, 3);
}

#[test]
fn fixed_latching_on_one_leg_never_relatches_there_only() {
    let (mut r, id, cp, ep, t0) = setup(cfg());
    r.set_latching(id, Side::Caller, Latching::Fixed)
        .expect("latching");
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)).is_some());
    // Neither a new SSRC from the same IP nor an hour of silence re-latches the fixed leg.
    let hour = t0 + Duration::from_secs(3600);
    assert!(send(&mut r, t0 + ms(20), cp, CALLER_NAT_REBOUND, rtp(1, 0, 0xbb)).is_none());
    assert!(send(&mut r, hour, cp, FOREIGN, rtp(2, 160, 0xaa)).is_none());
    // The other leg stays symmetric: silence lets a new source take over there.
    assert!(send(&mut r, t0, ep, CALLEE_SDP, rtp(1, 0, 0xcc)).is_some());
    assert!(send(&mut r, hour, ep, FOREIGN, rtp(2, 160, 0xcc)).is_some());
    let s = r.media_stats(id).expect("stats");
    assert_eq!(
        (s.caller.latched, s.caller.dropped_foreign),
        (Some(a(CALLER_NAT)), 2)
    );
    assert_eq!(s.callee.latched, Some(a(FOREIGN)));
    assert_eq!(
        r.set_latching(MediaId(0xdead), Side::Caller, Latching::Fixed),
        Err(RelayError::NotFound)
    );
}

#[test]
fn asymmetric_latching_accepts_any_source_and_sends_to_the_sdp_address() {
    let (mut r, id, cp, ep, t0) = setup(cfg());
    r.set_latching(id, Side::Caller, Latching::Asymmetric)
        .expect("latching");
    // Packets from two sources both pass; nothing latches.
    assert_eq!(
        send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)),
        to(ep, CALLEE_SDP)
    );
    assert_eq!(
        send(&mut r, t0 + ms(20), cp, FOREIGN, rtp(2, 160, 0xaa)),
        to(ep, CALLEE_SDP)
    );
    assert!(send(&mut r, t0 + ms(20), cp + 1, FOREIGN, rtcp(200)).is_some());
    // Media for the caller goes to its SDP address, not to where its packets came from.
    assert_eq!(
        send(&mut r, t0 + ms(40), ep, CALLEE_SDP, rtp(1, 0, 0xcc)),
        to(cp, CALLER_SDP)
    );
    let s = r.media_stats(id).expect("stats");
    assert_eq!(
        (s.caller.latched, s.caller.dropped_foreign, s.caller.packets),
        (None, 0, 2)
    );
    // Symmetric (the default) on the same flow would have latched and dropped the second.
    let (mut r, _, cp, _, t0) = setup(cfg());
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)).is_some());
    assert!(send(&mut r, t0 + ms(20), cp, FOREIGN, rtp(2, 160, 0xaa)).is_none());
}

#[test]
fn a_changed_sdp_address_resets_the_latch() {
    let (mut r, id, cp, ep, t0) = setup(cfg());
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)).is_some());
    // Same SDP again (a re-INVITE without change): the latch stays.
    r.set_remote(id, Side::Caller, a(CALLER_SDP), None, false, 8000)
        .expect("same sdp");
    assert_eq!(
        send(&mut r, t0, ep, CALLEE_SDP, rtp(1, 0, 0xbb)).map(|f| f.dest),
        Some(a(CALLER_NAT))
    );
    // A new address (moved to another network): forward to it until the caller sends.
    r.set_remote(id, Side::Caller, a("10.9.9.9:5000"), None, false, 8000)
        .expect("new sdp");
    assert_eq!(r.media_stats(id).expect("stats").caller.latched, None);
    let f = send(&mut r, t0, ep, CALLEE_SDP, rtp(2, 160, 0xbb)).expect("forward");
    assert_eq!(f.dest, a("10.9.9.9:5000"));
    assert_eq!(
        r.set_remote(
            MediaId(12345),
            Side::Caller,
            a(CALLER_SDP),
            None,
            false,
            8000
        ),
        Err(RelayError::NotFound)
    );
}

#[test]
fn rtcp_uses_the_plus_one_ports_and_latches_separately() {
    let (mut r, id, cp, ep, t0) = setup(cfg());
    r.set_remote(
        id,
        Side::Callee,
        a(CALLEE_SDP),
        Some(a("198.51.100.2:6100")),
        false,
        8000,
    )
    .expect("a=rtcp");
    // Caller RTCP on the caller-facing RTCP port goes out of the callee-facing RTCP port to the
    // callee's a=rtcp address.
    assert_eq!(
        send(&mut r, t0, cp + 1, CALLER_NAT_RTCP, rtcp(200)),
        to(ep + 1, "198.51.100.2:6100")
    );
    // Callee RTCP goes to the caller's latched RTCP source, not SDP port + 1 (5001).
    assert_eq!(
        send(&mut r, t0, ep + 1, "198.51.100.2:6100", rtcp(201)),
        to(cp + 1, CALLER_NAT_RTCP)
    );
    // The caller's RTP is not latched by its RTCP: callee RTP still goes to the SDP address.
    let f = send(&mut r, t0, ep, CALLEE_SDP, rtp(1, 0, 0xbb)).expect("forward");
    assert_eq!(f.dest, a(CALLER_SDP));
    let s = r.media_stats(id).expect("stats");
    assert_eq!(
        (s.caller.rtcp_packets, s.caller.packets, s.caller.latched),
        (1, 0, None)
    );
    assert_eq!((s.callee.rtcp_packets, s.callee.packets), (1, 1));
}

#[test]
fn rtcp_mux_is_demultiplexed_on_the_rtp_port() {
    let (mut r, id, cp, ep, t0) = setup(cfg());
    r.set_remote(id, Side::Callee, a(CALLEE_SDP), None, true, 8000)
        .expect("rtcp-mux");
    // The caller's RTCP (RTCP port) goes out of the callee-facing RTP port to the RTP address.
    assert_eq!(
        send(&mut r, t0, cp + 1, CALLER_NAT_RTCP, rtcp(200)),
        to(ep, CALLEE_SDP)
    );
    // The callee's muxed RTCP (on its RTP port) is RTCP: to the caller's RTCP port and source.
    assert!(send(&mut r, t0, ep, CALLEE_SDP, rtp(1, 0, 0xbb)).is_some());
    assert_eq!(
        send(&mut r, t0, ep, CALLEE_SDP, rtcp(201)),
        to(cp + 1, CALLER_NAT_RTCP)
    );
    // Muxed RTCP never re-latches by "SSRC change" (its SSRC is another field).
    assert!(send(&mut r, t0 + ms(1), ep, FOREIGN, rtcp(200)).is_none());
    let s = r.media_stats(id).expect("stats");
    assert_eq!((s.callee.packets, s.callee.rtcp_packets), (1, 1));
    assert_eq!((s.callee.lost, s.callee.dropped_foreign), (0, 1));
    assert_eq!(s.callee.latched, Some(a(CALLEE_SDP)));
}

#[test]
fn no_destination_is_dropped_and_counted() {
    let t0 = Instant::now();
    let mut r = Relay::new(cfg());
    let id = r.create(t0).expect("create");
    let cp = r.local_port(id, Side::Caller).expect("port");
    let ep = r.local_port(id, Side::Callee).expect("port");
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(1, 0, 0xaa)).is_none());
    assert!(send(&mut r, t0, cp + 1, CALLER_NAT_RTCP, rtcp(200)).is_none());
    assert_eq!(r.stats().dropped_no_destination, 2);
    // Port 0 in an SDP (a rejected stream) is no destination either.
    r.set_remote(id, Side::Callee, a("198.51.100.2:0"), None, false, 8000)
        .expect("sdp");
    assert!(send(&mut r, t0, cp, CALLER_NAT, rtp(2, 160, 0xaa)).is_none());
    assert_eq!(r.stats().dropped_no_destination, 3);
    // The drops still latched the caller: the callee can reach it.
    let f = send(&mut r, t0, ep, CALLEE_SDP, rtp(1, 0, 0xbb)).expect("forward");
    assert_eq!(f.dest, a(CALLER_NAT));
    assert_eq!(r.stats().forwarded, 1);
}

#[test]
fn pool_exhaustion_and_release_with_fifo_reuse() {
    let t0 = Instant::now();
    let mut r = Relay::new(RelayConfig {
        port_min: 39999, // odd: the first RTP port is 40000
        port_max: 40011, // six pairs
        ..cfg()
    });
    let x = r.create(t0).expect("x");
    let y = r.create(t0).expect("y");
    let z = r.create(t0).expect("z");
    assert_eq!(r.create(t0), Err(RelayError::PoolExhausted));
    assert_eq!((r.ports_in_use(), r.contexts()), (12, 3));
    assert_eq!(r.local_port(z, Side::Callee), Some(40010));
    let stats = r.release(x).expect("final stats");
    assert_eq!(stats.caller.packets, 0);
    assert_eq!((r.ports_in_use(), r.contexts()), (8, 2));
    assert_eq!(r.release(x), None);
    assert_eq!(r.local_port(x, Side::Caller), None);
    // A late packet for the released context is an unknown port.
    assert!(send(&mut r, t0, 40000, CALLER_NAT, rtp(1, 0, 1)).is_none());
    assert_eq!(r.stats().dropped_unknown_port, 1);
    let w = r.create(t0).expect("w reuses x's ports");
    assert_ne!(w, x);
    assert_eq!(r.local_port(w, Side::Caller), Some(40000));
    r.release(y);
    r.release(z);
    // FIFO: y's pairs (freed first) come back before z's.
    let v = r.create(t0).expect("v");
    assert_eq!(r.local_port(v, Side::Caller), Some(40004));
    r.release(v);
    r.release(w);
    assert_eq!(
        (r.ports_in_use(), r.contexts(), r.stats().ports_in_use),
        (0, 0, 0)
    );
}

#[test]
fn unusable_ports_are_never_handed_out_again() {
    let t0 = Instant::now();
    let mut r = Relay::new(RelayConfig {
        port_min: 40000,
        port_max: 40007, // four pairs
        ..cfg()
    });
    r.mark_port_unusable(40003); // RTCP port of pair 1: the whole pair goes
    r.mark_port_unusable(50000); // not ours: ignored
    let x = r.create(t0).expect("x");
    assert_eq!(r.local_port(x, Side::Caller), Some(40000));
    assert_eq!(r.local_port(x, Side::Callee), Some(40004));
    assert_eq!(r.create(t0), Err(RelayError::PoolExhausted)); // only pair 3 left
    // The driver could not bind 40004: release, and the retry fails for lack of pairs.
    r.mark_port_unusable(40004);
    r.release(x);
    assert_eq!(r.ports_in_use(), 0);
    let y = r.create(t0).expect("y");
    assert_eq!(r.local_port(y, Side::Caller), Some(40006));
    assert_eq!(r.local_port(y, Side::Callee), Some(40000));
    assert!(r.is_relay_port(40003) && r.is_relay_port(40007) && !r.is_relay_port(40008));
    assert!(r.is_allocated(40001) && !r.is_allocated(40002) && !r.is_allocated(40004));
}

#[test]
fn media_timeout_fires_once_after_silence_and_activity_postpones_it() {
    let (mut r, id, cp, _, t0) = setup(cfg());
    let idle = r.create(t0).expect("unconfirmed context");
    assert_eq!(r.poll_timeout(), None);
    r.confirm(t0, id);
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    r.handle_timeout(t0 + ms(59_999));
    assert_eq!(r.poll_event(), None);
    // A packet at 30 s moves the deadline to 90 s.
    assert!(
        send(
            &mut r,
            t0 + Duration::from_secs(30),
            cp,
            CALLER_NAT,
            rtp(1, 0, 0xaa)
        )
        .is_some()
    );
    r.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(r.poll_event(), None);
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(90)));
    r.handle_timeout(t0 + ms(89_999));
    assert_eq!(r.poll_event(), None);
    r.handle_timeout(t0 + Duration::from_secs(90));
    assert_eq!(r.poll_event(), Some(RelayEvent::MediaTimeout { id }));
    assert_eq!(r.poll_event(), None);
    // Once only; the context stays; the unconfirmed one never times out.
    r.handle_timeout(t0 + Duration::from_secs(3600));
    assert_eq!(r.poll_event(), None);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!((r.stats().media_timeouts, r.contexts()), (1, 2));
    assert!(r.media_stats(idle).is_some());
    // A released confirmed context leaves no event behind.
    r.confirm(t0, idle);
    r.release(idle);
    r.handle_timeout(t0 + Duration::from_secs(7200));
    assert_eq!((r.poll_event(), r.stats().media_timeouts), (None, 1));
}

#[test]
fn rewrite_ssrc_keeps_one_stream_continuous() {
    let (mut r, _, cp, _, t0) = setup(RelayConfig {
        rewrite_ssrc: true,
        ..cfg()
    });
    for i in 0..4u16 {
        let mut p = rtp(100 + i, 1000 + 320 * u32::from(i), 0xaa);
        assert!(r.handle_datagram(t0, cp, a(CALLER_NAT), &mut p).is_some());
        assert_eq!(fields(&p), (100 + i, 1000 + 320 * u32::from(i), 0xaa));
    }
    // A new SSRC (the phone restarted its stream behind a rebound NAT port): same output
    // SSRC, seq 104, ts +320.
    let mut p = rtp(7000, 99_999, 0xcc);
    assert!(
        r.handle_datagram(t0 + ms(40), cp, a(CALLER_NAT_REBOUND), &mut p)
            .is_some()
    );
    assert_eq!(fields(&p), (104, 1000 + 320 * 4, 0xaa));
    let mut p = rtp(7001, 99_999 + 320, 0xcc);
    assert!(
        r.handle_datagram(t0 + ms(60), cp, a(CALLER_NAT_REBOUND), &mut p)
            .is_some()
    );
    assert_eq!(fields(&p), (105, 1000 + 320 * 5, 0xaa));
    assert_eq!(&p[12..], &[0xd5; 160][..]);
}

#[test]
fn srtp_streams_are_never_rewritten() {
    let (mut r, id, cp, _, t0) = setup(RelayConfig {
        rewrite_ssrc: true,
        ..cfg()
    });
    r.set_secure(id, Side::Caller, true).unwrap();
    let mut p = rtp(100, 1000, 0xaa);
    assert!(r.handle_datagram(t0, cp, a(CALLER_NAT), &mut p).is_some());
    // The SSRC changes: a plain stream would be rewritten (the test above), SRTP is not.
    let mut p = rtp(7000, 99_999, 0xcc);
    let before = p.clone();
    assert!(
        r.handle_datagram(t0 + ms(20), cp, a(CALLER_NAT), &mut p)
            .is_some()
    );
    assert_eq!(p, before);
    assert_eq!(
        r.set_secure(MediaId(9999), Side::Caller, true),
        Err(RelayError::NotFound)
    );
}

#[test]
fn dtls_handshake_records_pass_between_the_rtp_ports() {
    let (mut r, _, cp, ep, t0) = setup(cfg());
    // A ClientHello-like record (content type 22, DTLS 1.2) from the callee to the caller.
    let mut hello = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0];
    let before = hello.clone();
    let f = r
        .handle_datagram(t0, ep, a(CALLEE_SDP), &mut hello)
        .expect("forwarded");
    assert_eq!((f.from_port, f.dest), (cp, a(CALLER_SDP)));
    assert_eq!(hello, before);
    // Too short for a record header: dropped as malformed.
    let mut short = vec![22, 0xfe, 0xfd];
    assert!(
        r.handle_datagram(t0, ep, a(CALLEE_SDP), &mut short)
            .is_none()
    );
    // Not counted as media.
    assert_eq!(r.stats().dropped_malformed, 1);
}

#[test]
fn packets_pass_unmodified_by_default() {
    let (mut r, _, cp, _, t0) = setup(cfg());
    let mut p = rtp(100, 1000, 0xaa);
    assert!(r.handle_datagram(t0, cp, a(CALLER_NAT), &mut p).is_some());
    let mut p = rtp(7000, 99_999, 0xcc);
    let before = p.clone();
    assert!(
        r.handle_datagram(t0 + ms(20), cp, a(CALLER_NAT), &mut p)
            .is_some()
    );
    assert_eq!(p, before);
}

#[test]
fn loss_and_jitter_follow_rfc3550() {
    let (mut r, id, cp, _, t0) = setup(cfg());
    // 101 packets, 20 ms of 8 kHz timestamps apart, odd ones arriving 5 ms late: every
    // transit difference is ±40 timestamp units.
    for i in 0..=100u16 {
        let arrival = t0 + ms(20 * u64::from(i) + if i % 2 == 1 { 5 } else { 0 });
        assert!(
            send(
                &mut r,
                arrival,
                cp,
                CALLER_NAT,
                rtp(1 + i, 160 * u32::from(i), 0xaa)
            )
            .is_some()
        );
    }
    let s = r.media_stats(id).expect("stats");
    // Packet 0 is the probation packet (A.1), packet 1 the first counted: 99 jitter updates.
    let expected_units = 40.0 * (1.0 - (15.0f64 / 16.0).powi(99));
    assert!(
        (s.caller.jitter_ms - expected_units / 8.0).abs() < 1e-6,
        "{}",
        s.caller.jitter_ms
    );
    assert_eq!((s.caller.lost, s.caller.packets), (0, 101));
    // A second stream: seq 1..=100 without 10, 20, 30 → 3 lost.
    let t1 = t0 + Duration::from_secs(10);
    for seq in (1..=100u16).filter(|s| s % 10 != 0 || *s > 30) {
        assert!(
            send(
                &mut r,
                t1 + ms(20 * u64::from(seq)),
                cp,
                CALLER_NAT,
                rtp(seq, 160 * u32::from(seq), 0xbb)
            )
            .is_some()
        );
    }
    assert_eq!(r.media_stats(id).expect("stats").caller.lost, 3);
    // A third stream across the sequence wrap (extended sequence numbers), without 65534 and
    // 3, plus one duplicate that A.3 counts as received: 2 - 1 = 1 more lost.
    let t2 = t0 + Duration::from_secs(20);
    let seqs = (65530u16..=65535)
        .chain(0..=9)
        .filter(|s| *s != 65534 && *s != 3);
    for (k, seq) in seqs.chain([5]).enumerate() {
        assert!(
            send(
                &mut r,
                t2 + ms(20 * k as u64),
                cp,
                CALLER_NAT,
                rtp(seq, 0, 0xcc)
            )
            .is_some()
        );
    }
    let s = r.media_stats(id).expect("stats");
    assert_eq!((s.caller.lost, s.caller.packets), (4, 101 + 97 + 15));
}

#[test]
fn random_datagrams_never_panic_and_counters_add_up() {
    let t0 = Instant::now();
    let mut r = Relay::new(RelayConfig {
        port_min: 40000,
        port_max: 40099,
        max_datagram: 1500,
        ..RelayConfig::default()
    });
    let mut rng = StdRng::seed_from_u64(0x5eed_f00d);
    let sources: Vec<SocketAddr> = (0..6)
        .map(|i| SocketAddr::from(([192, 0, 2, i], 10_000 + u16::from(i))))
        .collect();
    let mut ids = Vec::new();
    for k in 0..10 {
        let id = r.create(t0).expect("create");
        if k % 3 != 0 {
            r.set_remote(id, Side::Caller, sources[0], None, k % 2 == 0, 8000)
                .expect("sdp");
            r.set_remote(id, Side::Callee, sources[1], None, false, 48000)
                .expect("sdp");
            r.confirm(t0, id);
        }
        ids.push(id);
    }
    let mut now = t0;
    let mut returned = 0u64;
    let n = 100_000u64;
    for i in 0..n {
        now += Duration::from_micros(rng.gen_range(0..2000));
        let port = if rng.gen_bool(0.8) {
            rng.gen_range(39_990..40_110)
        } else {
            rng.r#gen::<u16>()
        };
        let len = match rng.gen_range(0..10) {
            0 => rng.gen_range(0..13),
            1 => rng.gen_range(1501..4000),
            _ => rng.gen_range(8..400),
        };
        let mut p = vec![0u8; len];
        rng.fill(&mut p[..]);
        if let Some(b) = p.first_mut()
            && rng.gen_bool(0.7)
        {
            *b = 0x80 | (*b & 0x3f);
        }
        let before = p.len();
        let source = sources[rng.gen_range(0..sources.len())];
        if let Some(f) = r.handle_datagram(now, port, source, &mut p) {
            returned += 1;
            assert!(
                r.is_allocated(f.from_port),
                "forward from an unallocated port"
            );
        }
        assert_eq!(p.len(), before);
        if i % 10_000 == 9_999 {
            // Churn: release the oldest context and create another.
            r.release(ids.remove(0));
            ids.push(r.create(now).expect("re-create"));
            r.handle_timeout(now);
        }
    }
    let s = r.stats();
    let dropped = s.dropped_foreign
        + s.dropped_malformed
        + s.dropped_oversized
        + s.dropped_unknown_port
        + s.dropped_no_destination;
    assert_eq!(s.forwarded, returned);
    assert_eq!(s.forwarded + dropped, n);
    for (name, count) in [
        ("forwarded", s.forwarded),
        ("foreign", s.dropped_foreign),
        ("malformed", s.dropped_malformed),
        ("oversized", s.dropped_oversized),
        ("unknown port", s.dropped_unknown_port),
        ("no destination", s.dropped_no_destination),
    ] {
        assert!(count > 10, "{name}: {count} of {n}");
    }
    let legs: u64 = ids
        .iter()
        .filter_map(|id| r.media_stats(*id))
        .map(|m| m.caller.dropped_foreign + m.callee.dropped_foreign)
        .sum();
    assert!(legs <= s.dropped_foreign);
    assert_eq!((r.contexts(), r.ports_in_use()), (10, 40));
}
