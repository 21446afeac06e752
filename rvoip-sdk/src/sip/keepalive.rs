//! Keep-alives that share a port with SIP (RFC 5626 §3.5, §4.4): how to tell them from SIP
//! messages, and what a server answers. Sans-IO: the transports call these on bytes they
//! read.
//!
//! - Over a stream (TCP, TLS, WebSocket) a client pings with a double CRLF and the server
//!   answers each ping with a single CRLF pong (§3.5.1, §4.4.1). A lone CRLF (a pong, or the
//!   CRLF some stacks send before a message) is not answered, so two peers never ping-pong.
//! - Over UDP the client pings with a STUN Binding request (RFC 5389) on the SIP port, and the
//!   server answers with a Binding success response that carries the ping's source address
//!   (XOR-MAPPED-ADDRESS), which is how the client learns that its NAT binding changed
//!   (§4.4.2, §8.4).

use std::net::SocketAddr;

use rtc_stun::attributes::{ATTR_FINGERPRINT, AttrType};
use rtc_stun::error_code::{CODE_UNKNOWN_ATTRIBUTE, ErrorCodeAttribute};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::message::{BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, Message};
use rtc_stun::uattrs::UnknownAttributes;
use rtc_stun::xoraddr::XorMappedAddress;

/// The ping a client sends over a stream (RFC 5626 §3.5.1): a double CRLF.
pub const CRLF_PING: &[u8] = b"\r\n\r\n";

/// The pong a server answers a stream ping with (RFC 5626 §3.5.1): a single CRLF.
pub const CRLF_PONG: &[u8] = b"\r\n";

/// Whether `b` (a datagram or one WebSocket message) holds only CR and LF octets: a
/// keep-alive, never a SIP message. An empty input counts as one too.
pub fn is_crlf(b: &[u8]) -> bool {
    b.iter().all(|c| *c == b'\r' || *c == b'\n')
}

/// Whether a datagram is a STUN message (RFC 5389 §6; demultiplexed as in RFC 7983 §7): the
/// two top bits zero, the magic cookie, and a length that is a multiple of 4 and covers the
/// rest of the datagram. A SIP message starts with a letter, so it never matches.
pub fn is_stun(b: &[u8]) -> bool {
    b.len() >= STUN_HEADER
        && b[0] < 4
        && b[4..8] == MAGIC_COOKIE.to_be_bytes()
        && usize::from(u16::from_be_bytes([b[2], b[3]])) == b.len() - STUN_HEADER
        && b.len() % 4 == 0
}

/// The STUN header's size in bytes (RFC 5389 §6).
const STUN_HEADER: usize = 20;

/// The STUN magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Comprehension-required attributes (below 0x8000) that a Binding request may carry and
/// that this answerer understands or may ignore: MAPPED-ADDRESS, USERNAME,
/// MESSAGE-INTEGRITY, ERROR-CODE, UNKNOWN-ATTRIBUTES, REALM, NONCE, XOR-MAPPED-ADDRESS
/// (RFC 5389 §18.2), PRIORITY and USE-CANDIDATE (RFC 8445 §16.1). A keep-alive answerer
/// uses no credentials, so USERNAME and MESSAGE-INTEGRITY are not checked.
const KNOWN_REQUIRED: [u16; 10] = [
    0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x0014, 0x0015, 0x0020, 0x0024, 0x0025,
];

/// The answer to a STUN message received on a SIP UDP port (RFC 5626 §4.4.2, RFC 5389
/// §7.3.1):
/// - a Binding request gets a Binding success response with the request's transaction id,
///   XOR-MAPPED-ADDRESS = `source` (the address the request came from, as this server saw
///   it) and FINGERPRINT;
/// - a Binding request with a comprehension-required attribute this answerer does not know
///   gets a 420 (Unknown Attribute) error response that lists them (§7.3.1);
/// - everything else (indications, responses, other methods, input that does not decode, a
///   FINGERPRINT that does not match) gets `None`: no answer (§7.3).
///
/// The response is at most 48 bytes longer than the request's header (amplification below
/// 2× for the smallest request).
pub fn stun_answer(request: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    if !is_stun(request) {
        return None;
    }
    let mut req = Message::new();
    req.unmarshal_binary(request).ok()?;
    if req.typ != BINDING_REQUEST {
        return None;
    }
    if req.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&req).is_err() {
        return None;
    }
    let unknown: Vec<AttrType> = req
        .attributes
        .0
        .iter()
        .map(|a| a.typ)
        .filter(|t| t.0 < 0x8000 && !KNOWN_REQUIRED.contains(&t.0))
        .collect();
    let mut resp = Message::new();
    let built = if unknown.is_empty() {
        resp.build(&[
            Box::new(req.transaction_id),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress {
                ip: source.ip(),
                port: source.port(),
            }),
            Box::new(FINGERPRINT),
        ])
    } else {
        resp.build(&[
            Box::new(req.transaction_id),
            Box::new(BINDING_ERROR),
            Box::new(ErrorCodeAttribute {
                code: CODE_UNKNOWN_ATTRIBUTE,
                reason: b"Unknown Attribute".to_vec(),
            }),
            Box::new(UnknownAttributes(unknown)),
            Box::new(FINGERPRINT),
        ])
    };
    built.ok()?;
    Some(resp.raw)
}

/// Finds the double-CRLF pings in the keep-alive octets a stream carries between messages
/// (RFC 5626 §3.5.1), also when a ping is split across reads. One per connection.
#[derive(Debug, Default, Clone)]
pub struct StreamPings {
    /// How many leading octets of [`CRLF_PING`] the last octets matched.
    matched: usize,
}

impl StreamPings {
    /// Most pongs [`StreamPings::on_keepalive`] asks for at once: a peer that sends a burst
    /// of pings gets this many back, not one per ping (an answer is only a liveness sign).
    pub const MAX_PONGS: usize = 4;

    /// Takes keep-alive octets read between two messages (CR and LF only, in order) and
    /// returns how many pongs to send now: one per complete double CRLF, at most
    /// [`Self::MAX_PONGS`]. A lone CRLF (a pong) asks for none.
    pub fn on_keepalive(&mut self, octets: &[u8]) -> usize {
        let mut pongs = 0;
        for &c in octets {
            if CRLF_PING.get(self.matched) == Some(&c) {
                self.matched += 1;
                if self.matched == CRLF_PING.len() {
                    pongs += 1;
                    self.matched = 0;
                }
            } else {
                self.matched = usize::from(c == b'\r');
            }
        }
        pongs.min(Self::MAX_PONGS)
    }

    /// A message began: keep-alive octets before it that made no whole ping are dropped.
    pub fn on_message(&mut self) {
        self.matched = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_only_input_is_a_keepalive() {
        assert!(is_crlf(CRLF_PING) && is_crlf(CRLF_PONG) && is_crlf(b"\n"));
        assert!(!is_crlf(b"OPTIONS sip:x SIP/2.0\r\n"));
        assert!(!is_crlf(b"\r\n\r\nX"));
    }

    #[test]
    fn each_double_crlf_is_one_ping_and_a_pong_is_none() {
        let mut p = StreamPings::default();
        assert_eq!(p.on_keepalive(CRLF_PING), 1);
        assert_eq!(p.on_keepalive(CRLF_PONG), 0, "a lone CRLF is a pong");
        assert_eq!(
            p.on_keepalive(CRLF_PONG),
            1,
            "two CRLFs in a row make a ping"
        );
        // Split across reads.
        assert_eq!(p.on_keepalive(b"\r\n\r"), 0);
        assert_eq!(p.on_keepalive(b"\n"), 1);
        // A message in between forgets half a ping.
        assert_eq!(p.on_keepalive(b"\r\n"), 0);
        p.on_message();
        assert_eq!(p.on_keepalive(b"\r\n"), 0);
        // Bare LFs are not a ping; a burst is capped.
        assert_eq!(p.on_keepalive(b"\n\n\n\n"), 0);
        assert_eq!(
            p.on_keepalive(&CRLF_PING.repeat(10)),
            StreamPings::MAX_PONGS
        );
    }

    fn binding_request(attrs: &[(u16, &[u8])], fingerprint: bool) -> Message {
        let mut m = Message::new();
        m.build(&[
            Box::new(rtc_stun::message::TransactionId::new()),
            Box::new(BINDING_REQUEST),
        ])
        .unwrap();
        for (t, v) in attrs {
            m.add(AttrType(*t), v);
        }
        if fingerprint {
            FINGERPRINT.add_to(&mut m).unwrap();
        }
        m
    }

    use rtc_stun::message::{Getter, Setter};

    fn decode(b: &[u8]) -> Message {
        let mut m = Message::new();
        m.unmarshal_binary(b).unwrap();
        m
    }

    #[test]
    fn a_binding_request_gets_its_source_back() {
        for source in ["192.0.2.7:40123", "[2001:db8::5]:5062"] {
            let source: SocketAddr = source.parse().unwrap();
            for fp in [false, true] {
                let req = binding_request(&[(0x8022, b"test")], fp);
                assert!(is_stun(&req.raw));
                let out = stun_answer(&req.raw, source).expect("answered");
                let resp = decode(&out);
                assert_eq!(resp.typ, BINDING_SUCCESS);
                assert_eq!(resp.transaction_id, req.transaction_id);
                let mut mapped = XorMappedAddress {
                    ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
                    port: 0,
                };
                mapped.get_from(&resp).unwrap();
                assert_eq!(SocketAddr::new(mapped.ip, mapped.port), source);
                FINGERPRINT.check(&resp).expect("fingerprint");
            }
        }
    }

    #[test]
    fn unknown_required_attributes_get_420() {
        let req = binding_request(&[(0x0024, &[0, 0, 0, 1]), (0x0777, &[1, 2, 3, 4])], true);
        let out = stun_answer(&req.raw, "192.0.2.1:5060".parse().unwrap()).expect("answered");
        let resp = decode(&out);
        assert_eq!(resp.typ, BINDING_ERROR);
        let mut code = ErrorCodeAttribute::default();
        code.get_from(&resp).unwrap();
        assert!(code.code == CODE_UNKNOWN_ATTRIBUTE);
        let mut u = UnknownAttributes(Vec::new());
        u.get_from(&resp).unwrap();
        assert_eq!(u.0, vec![AttrType(0x0777)]);
    }

    #[test]
    fn only_good_binding_requests_are_answered() {
        let src: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        // A Binding indication (RFC 5389 §7.3.2) and a success response get no answer.
        let mut ind = binding_request(&[], false);
        ind.set_type(rtc_stun::message::MessageType::new(
            rtc_stun::message::METHOD_BINDING,
            rtc_stun::message::CLASS_INDICATION,
        ));
        assert!(stun_answer(&ind.raw, src).is_none());
        let ok = stun_answer(&binding_request(&[], false).raw, src).unwrap();
        assert!(stun_answer(&ok, src).is_none());
        // A damaged FINGERPRINT: dropped.
        let mut bad = binding_request(&[], true).raw;
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        assert!(stun_answer(&bad, src).is_none());
        // SIP, CRLF, truncation and garbage: not STUN, no panic.
        let good = binding_request(&[(0x8022, b"abcd")], true).raw;
        for cut in 0..good.len() {
            assert!(stun_answer(&good[..cut], src).is_none(), "cut at {cut}");
        }
        assert!(!is_stun(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n") && !is_stun(CRLF_PING));
        let mut lying = good.clone();
        lying[3] = lying[3].wrapping_add(4);
        assert!(stun_answer(&lying, src).is_none());
        for seed in 0..2000u32 {
            let mut g = good.clone();
            let i = (seed as usize * 7) % g.len();
            g[i] = g[i].wrapping_add((seed % 251) as u8 + 1);
            let _ = stun_answer(&g, src);
        }
    }
}
