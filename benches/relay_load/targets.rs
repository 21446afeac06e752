//! The relays under test: rvoip's in-process relay (the proxy's `RelayControl` calls, without
//! SIP) and rtpengine, reached over its ng control protocol (bencode, offer / answer / delete).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rvoip_sdk::driver::relay::{RelayDriver, RelayHandle};
use rvoip_sdk::media::relay::{RelayConfig, Side};
use rvoip_sdk::server::relay::RelayControl;
use rvoip_sdk::server::relay::sdp::Stream;

use crate::LOCALHOST;

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

// ---------------------------------------------------------------- rtpengine ng client

fn benc_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{}:", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// An ng command argument: a string or a list of strings.
enum Val {
    S(String),
    L(Vec<String>),
}

fn s(v: impl Into<String>) -> Val {
    Val::S(v.into())
}

/// A bencoded dictionary (keys sorted, as bencode wants).
fn benc_dict(items: &mut [(&str, Val)]) -> Vec<u8> {
    items.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = b"d".to_vec();
    for (k, v) in items.iter() {
        benc_str(&mut out, k.as_bytes());
        match v {
            Val::S(v) => benc_str(&mut out, v.as_bytes()),
            Val::L(l) => {
                out.push(b'l');
                for v in l {
                    benc_str(&mut out, v.as_bytes());
                }
                out.push(b'e');
            }
        }
    }
    out.push(b'e');
    out
}

/// The string value of top-level key `key` in a bencoded dictionary (enough for ng replies).
fn benc_get(b: &[u8], key: &str) -> Option<String> {
    fn skip(b: &[u8], i: usize) -> Option<usize> {
        match *b.get(i)? {
            b'i' => Some(i + b[i..].iter().position(|&c| c == b'e')? + 1),
            b'l' | b'd' => {
                let mut j = i + 1;
                while *b.get(j)? != b'e' {
                    j = skip(b, j)?;
                }
                Some(j + 1)
            }
            _ => {
                let colon = i + b[i..].iter().position(|&c| c == b':')?;
                let n: usize = std::str::from_utf8(&b[i..colon]).ok()?.parse().ok()?;
                Some(colon + 1 + n)
            }
        }
    }
    fn string(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
        let colon = i + b[i..].iter().position(|&c| c == b':')?;
        let n: usize = std::str::from_utf8(&b[i..colon]).ok()?.parse().ok()?;
        Some((b.get(colon + 1..colon + 1 + n)?, colon + 1 + n))
    }
    if *b.first()? != b'd' {
        return None;
    }
    let mut i = 1;
    while *b.get(i)? != b'e' {
        let (k, j) = string(b, i)?;
        if k == key.as_bytes() {
            let (v, _) = string(b, j)?;
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        i = skip(b, j)?;
    }
    None
}

pub struct Ng {
    sock: UdpSocket,
    to: SocketAddr,
    n: u64,
}

impl Ng {
    pub fn new(to: SocketAddr) -> Ng {
        let sock = UdpSocket::bind((LOCALHOST, 0)).expect("ng socket");
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Ng { sock, to, n: 0 }
    }

    /// Sends one command, returns the reply's bencoded dictionary.
    fn cmd(&mut self, mut items: Vec<(&str, Val)>) -> Vec<u8> {
        self.n += 1;
        let cookie = format!("{}_{}", std::process::id(), self.n);
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend(benc_dict(&mut items));
        let mut buf = vec![0u8; 65536];
        for _ in 0..3 {
            self.sock.send_to(&msg, self.to).expect("ng send");
            // Until the read times out (then send again): the reply with our cookie.
            while let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let r = &buf[..n];
                if let Some(sp) = r.iter().position(|&c| c == b' ')
                    && &r[..sp] == cookie.as_bytes()
                {
                    return r[sp + 1..].to_vec();
                }
            }
        }
        panic!("rtpengine at {} does not answer (ng)", self.to);
    }
}

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
                Val::L(vec!["origin".into(), "session-connection".into()]),
            ),
            ("ICE", s("remove")),
        ]
    };
    let send = |ng: &mut Ng, items: Vec<(&str, Val)>| {
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
