//! The relays under test: rvoip's in-process relay (the proxy's `RelayControl` calls, without
//! SIP) and rtpengine, reached over its ng control protocol (bencode, offer / answer / delete).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rvoip_sdk::driver::relay::{RelayDriver, RelayHandle};
use rvoip_sdk::media::relay::{RelayConfig, Side};
use rvoip_sdk::server::relay::RelayControl;
use rvoip_sdk::server::relay::sdp::Stream;

use crate::LOCALHOST;
use crate::ng::{Ng, Val, benc_get, s};

// ---------------------------------------------------------------- rvoip

/// rvoip's relay on 127.0.0.1, ports `port_min`..=`port_max`.
pub fn rvoip_driver(port_min: u16, port_max: u16) -> RelayDriver {
    RelayDriver::start(
        RelayConfig {
            port_min,
            port_max,
            ..RelayConfig::default()
        },
        LOCALHOST,
    )
    .expect("relay driver")
}

/// Relays the call between `pa` (A) and `pb` (B): `create`, `set_remote` of both sides,
/// `confirm`. Returns the addresses A and B send to.
pub fn rvoip_call(h: &mut RelayHandle, pa: SocketAddr, pb: SocketAddr) -> (SocketAddr, SocketAddr) {
    let now = Instant::now();
    let id = h.create(now).expect("relay create");
    let st = |rtp| Stream {
        index: 0,
        rtp,
        rtcp: None,
        rtcp_mux: false,
        clock_rate: 8000,
        proto: "RTP/AVP".into(),
        secure: false,
    };
    h.set_remote(id, Side::Caller, &st(pa)).expect("set_remote");
    h.set_remote(id, Side::Callee, &st(pb)).expect("set_remote");
    h.confirm(now, id);
    (
        SocketAddr::new(LOCALHOST, h.local_port(id, Side::Caller).unwrap()),
        SocketAddr::new(LOCALHOST, h.local_port(id, Side::Callee).unwrap()),
    )
}

// ---------------------------------------------------------------- rtpengine over ng

fn sdp(port: u16, sess: usize) -> String {
    format!(
        "v=0\r\no=- {sess} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// The address of the first `m=audio` stream of an SDP body (c= line and m= port).
fn sdp_addr(s: &str) -> Option<SocketAddr> {
    let mut ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    for l in s.lines() {
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            ip = ip.or(c.trim().parse().ok());
        }
        if let Some(m) = l.strip_prefix("m=audio ") {
            port = port.or(m.split_whitespace().next()?.parse().ok());
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// The call id of call `c` at rtpengine.
fn call_id(c: usize) -> String {
    format!("relay-bench-{}-{c}", std::process::id())
}

/// Sets up call `c` between `pa` (A) and `pb` (B): an ng `offer` with A's SDP and an `answer`
/// with B's. Returns the addresses A and B send to (from the SDP of the replies).
pub fn rtpengine_call(
    ng: &mut Ng,
    c: usize,
    pa: SocketAddr,
    pb: SocketAddr,
) -> (SocketAddr, SocketAddr) {
    let cid = call_id(c);
    let common = |cmd: &str, port: u16, sess: usize| -> Vec<(&'static str, Val)> {
        vec![
            ("command", s(cmd)),
            ("call-id", s(cid.clone())),
            ("from-tag", s(format!("a{c}"))),
            ("sdp", s(sdp(port, sess))),
            (
                "replace",
                Val::L(vec![s("origin"), s("session-connection")]),
            ),
            ("ICE", s("remove")),
        ]
    };
    let send = |ng: &mut Ng, items: Vec<(&'static str, Val)>| {
        let r = ng.cmd(items);
        assert_eq!(
            benc_get(&r, "result").as_deref(),
            Some("ok"),
            "rtpengine: {}",
            String::from_utf8_lossy(&r)
        );
        sdp_addr(&benc_get(&r, "sdp").expect("sdp in reply")).expect("m=audio in reply")
    };
    // The offer's SDP goes to B: its address is where B sends. The answer's goes to A.
    let to_b = send(ng, common("offer", pa.port(), 2 * c + 1));
    let mut answer = common("answer", pb.port(), 2 * c + 2);
    answer.push(("to-tag", s(format!("b{c}"))));
    let to_a = send(ng, answer);
    (to_a, to_b)
}

/// Deletes call `c` at rtpengine.
pub fn rtpengine_delete(ng: &mut Ng, c: usize) {
    let cid = call_id(c);
    let from = format!("a{c}");
    ng.cmd(vec![
        ("command", s("delete")),
        ("call-id", s(cid)),
        ("from-tag", s(from)),
    ]);
}
