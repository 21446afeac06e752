//! Fuzz entry points (`cargo fuzz`, see `fuzz/` and `tests/fuzz/run.sh`), one per target.
//!
//! Each function runs the real code on arbitrary bytes, as they would arrive from the network,
//! and asserts invariants that hold for every input: a panic here is a bug (either in the code
//! under test, or an invariant stated wrongly). `tests/fuzz_replay.rs` replays the committed
//! seeds and past crashers through the same functions under `cargo test`.
//!
//! Not a stable API: hidden from the documentation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::{Algorithm, AuthOutcome, Authenticator, NonceStatus, UserDb};
use crate::media::dtls::{DtlsIdentity, DtlsRole, DtlsSrtp, Fingerprint, Setup};
use crate::media::dtmf::{DtmfReceiver, TelephoneEvent};
use crate::media::jitter::{JitterBuffer, Playout};
use crate::media::relay::{Relay, RelayConfig, Side};
use crate::media::rtcp::{self, Rtcp};
use crate::media::rtp;
use crate::media::sdes::{CryptoAttribute, CryptoSuite};
use crate::media::srtp::SrtpSession;
use crate::sdp::{self, AudioCodec, Direction, LocalMedia, LocalSecurity, SrtpPolicy};
use crate::sip::msg::{
    Auth, ByteString, CSeq, Frame, HeaderName, Headers, Limits, Message, NameAddr, Uri, Via,
    error_response, frame, validate_request,
};

/// A cursor over the fuzz input that never fails: past the end it yields zeros.
struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    /// Up to `n` bytes.
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
    /// A chunk with a 2-byte length prefix (clamped to what is left).
    fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Limits with no size or count cap, for re-parsing what we serialized ourselves (the wire
/// form may be longer than the input: full header names, `": "`, a Content-Length).
const UNLIMITED: Limits = Limits {
    max_message_bytes: usize::MAX,
    max_headers: usize::MAX,
};

// ---------------------------------------------------------------------------------------------
// sip_message

/// The SIP message parser on one datagram (RFC 3261 §7, §25):
/// - [`Message::parse`] never panics; a message it accepts serializes ([`Message::to_bytes`])
///   to bytes that parse again to the same message: method or status and reason, Request-URI,
///   every header (name and value, in order; Content-Length is recomputed) and the body;
/// - [`frame`] (TCP framing) never panics, never claims more bytes than it was given, and the
///   framed prefix goes through the parser like a datagram;
/// - [`validate_request`] and the typed views (Via, From/To/Contact/Route as name-addr, CSeq,
///   Max-Forwards, Expires, Authorization) never panic, and what they accept prints
///   (`Display`) to text that parses back to the same value;
/// - for input that does not parse, [`error_response`] never panics and the response it builds
///   (400/505/513) is itself a parsable SIP response with that status.
pub fn sip_message(data: &[u8]) {
    let limits = Limits::default();
    let buf = Bytes::copy_from_slice(data);
    match Message::parse(buf.clone(), &limits) {
        Ok(msg) => {
            check_round_trip(&msg);
            check_typed(msg.headers());
            if let Message::Request(req) = &msg {
                let _ = validate_request(req);
                check_uri(&req.uri);
            }
        }
        Err(err) => {
            if let Some(resp) = error_response(data, &err) {
                let wire = resp.to_bytes();
                match Message::parse(wire.clone(), &UNLIMITED) {
                    Ok(Message::Response(back)) => assert_eq!(back.status, resp.status),
                    other => panic!(
                        "error_response built an unparsable response {:?}: {other:?}",
                        String::from_utf8_lossy(&wire)
                    ),
                }
            }
        }
    }
    // Stream framing: what a TCP connection would do with the same bytes.
    let mut rest = data;
    for _ in 0..8 {
        match frame(rest, &limits) {
            Ok(Some(Frame::Keepalive(n))) => {
                assert!(n > 0 && n <= rest.len(), "keepalive {n} of {}", rest.len());
                rest = &rest[n..];
            }
            Ok(Some(Frame::Message(n))) => {
                assert!(n > 0 && n <= rest.len(), "frame {n} of {}", rest.len());
                if let Ok(msg) = Message::parse(Bytes::copy_from_slice(&rest[..n]), &limits) {
                    check_round_trip(&msg);
                }
                rest = &rest[n..];
            }
            Ok(None) | Err(_) => break,
        }
    }
}

fn same_headers(a: &Headers, b: &Headers) -> bool {
    let strip = |h: &Headers| {
        h.iter()
            .filter(|h| h.name != HeaderName::ContentLength)
            .map(|h| (h.name.as_str().to_ascii_lowercase(), h.value.clone()))
            .collect::<Vec<_>>()
    };
    strip(a) == strip(b)
}

/// Serialize and parse back: the same message.
fn check_round_trip(msg: &Message) {
    let wire = msg.to_bytes();
    let back = match Message::parse(wire.clone(), &UNLIMITED) {
        Ok(b) => b,
        Err(e) => panic!(
            "our own serialization does not parse ({e}): {:?}",
            String::from_utf8_lossy(&wire)
        ),
    };
    match (msg, &back) {
        (Message::Request(a), Message::Request(b)) => {
            assert_eq!(a.method, b.method);
            assert_eq!(a.uri, b.uri);
            assert!(
                same_headers(&a.headers, &b.headers),
                "headers changed: {:?} -> {:?}",
                a.headers,
                b.headers
            );
            assert_eq!(a.body, b.body);
        }
        (Message::Response(a), Message::Response(b)) => {
            assert_eq!(a.status, b.status);
            assert_eq!(a.reason, b.reason);
            assert!(
                same_headers(&a.headers, &b.headers),
                "headers changed: {:?} -> {:?}",
                a.headers,
                b.headers
            );
            assert_eq!(a.body, b.body);
        }
        _ => panic!("request/response kind changed by a round trip"),
    }
    // A second round trip is byte-identical.
    assert_eq!(back.to_bytes(), wire, "serialization is not stable");
}

fn check_uri(uri: &Uri) {
    let _ = uri.user_unescaped();
    let _ = uri.param("transport");
    let text = ByteString::from(uri.to_string());
    match Uri::parse(&text) {
        Ok(back) => assert_eq!(&back, uri, "URI changed by Display: {text}"),
        Err(e) => panic!("URI Display does not parse ({e}): {text}"),
    }
}

fn check_name_addr(v: &ByteString) {
    let Ok(na) = NameAddr::parse(v) else { return };
    let _ = na.tag();
    check_uri(&na.uri);
    let text = ByteString::from(na.to_string());
    match NameAddr::parse(&text) {
        Ok(back) => assert_eq!(back, na, "name-addr changed by Display: {v} -> {text}"),
        Err(e) => panic!("name-addr Display does not parse ({e}): {v} -> {text}"),
    }
}

/// Every typed view of every header, and the accessors the cores use.
fn check_typed(h: &Headers) {
    let _ = h.call_id();
    let _ = h.cseq();
    let _ = h.top_via();
    let _ = h.from();
    let _ = h.to();
    let _ = h.max_forwards();
    let _ = h.expires();
    let _ = h.content_type();
    for hd in h.iter() {
        let v = &hd.value;
        match hd.name {
            HeaderName::Via => {
                if let Ok(via) = Via::parse(v) {
                    let _ = (via.branch(), via.received(), via.has_rport());
                    let text = ByteString::from(via.to_string());
                    match Via::parse(&text) {
                        Ok(back) => assert_eq!(back, via, "Via changed by Display: {v} -> {text}"),
                        Err(e) => panic!("Via Display does not parse ({e}): {v} -> {text}"),
                    }
                }
            }
            HeaderName::From
            | HeaderName::To
            | HeaderName::Contact
            | HeaderName::Route
            | HeaderName::RecordRoute
            | HeaderName::ReferTo
            | HeaderName::ReferredBy
            | HeaderName::Path => check_name_addr(v),
            HeaderName::CSeq => {
                if let Ok(c) = CSeq::parse(v) {
                    let text = ByteString::from(c.to_string());
                    assert_eq!(CSeq::parse(&text).ok(), Some(c), "CSeq: {v} -> {text}");
                }
            }
            HeaderName::Authorization
            | HeaderName::ProxyAuthorization
            | HeaderName::WwwAuthenticate
            | HeaderName::ProxyAuthenticate
            | HeaderName::AuthenticationInfo => {
                if let Ok(a) = Auth::parse(v) {
                    let _ = (a.get("realm"), a.get("nonce"), a.get("response"));
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sdp

fn local_media(sel: u8, security: LocalSecurity) -> LocalMedia {
    let all = [
        AudioCodec::OPUS,
        AudioCodec::G722,
        AudioCodec::PCMU,
        AudioCodec::PCMA,
    ];
    let n = usize::from(sel % 4) + 1;
    let start = usize::from((sel >> 2) % 4);
    let codecs = (0..n).map(|i| all[(start + i) % 4]).collect();
    LocalMedia {
        addr: if sel & 0x10 != 0 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))
        },
        port: 40_000,
        codecs,
        dtmf: sel & 0x20 != 0,
        direction: match sel >> 6 {
            0 => Direction::SendRecv,
            1 => Direction::SendOnly,
            2 => Direction::RecvOnly,
            _ => Direction::Inactive,
        },
        security,
    }
}

fn fixed_crypto() -> Vec<CryptoAttribute> {
    CryptoSuite::ALL
        .iter()
        .enumerate()
        .map(|(i, &suite)| {
            let mut c = CryptoAttribute::generate(i as u32 + 1, suite);
            c.keys[0].master = (0..suite.master_len()).map(|b| b as u8).collect();
            c
        })
        .collect()
}

fn fixed_fingerprint() -> Fingerprint {
    Fingerprint::of_certificate(crate::media::dtls::FingerprintHash::Sha256, b"rvoip fuzz")
}

fn local_security(sel: u8) -> LocalSecurity {
    let policy = match sel % 3 {
        0 => SrtpPolicy::Off,
        1 => SrtpPolicy::Optional,
        _ => SrtpPolicy::Mandatory,
    };
    if policy == SrtpPolicy::Off {
        return LocalSecurity::plain();
    }
    LocalSecurity {
        policy,
        crypto: if sel & 0x04 != 0 {
            fixed_crypto()
        } else {
            Vec::new()
        },
        dtls: (sel & 0x08 != 0).then(fixed_fingerprint),
        prefer_dtls: sel & 0x10 != 0,
    }
}

/// SDP offer/answer (RFC 3264, RFC 4566) and the relay's SDP rewriting:
/// - [`sdp::answer`] to an arbitrary offer, with every SRTP policy and key exchange, never
///   panics; an answer it makes is SDP that we read back ([`sdp::process_answer`]) with the
///   same codec, payload type and our address;
/// - [`sdp::process_answer`] of arbitrary text as the answer to an offer of ours never panics;
/// - the proxy's [`crate::server::proxy::rewrite::Sdp`]: parsing never panics, and an anchored
///   description parses again with every anchored stream at the relay's address and port.
pub fn sdp(data: &[u8]) {
    let mut input = Cursor::new(data);
    let sel = input.u8();
    let sec = input.u8();
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    let local = local_media(sel, local_security(sec));

    if let Ok((answer, neg)) = sdp::answer(&text, &local, 1, 2) {
        assert!(local.codecs.contains(&neg.codec));
        // The offerer reads our answer: same codec and payload type, our address.
        let offerer = LocalMedia {
            codecs: vec![neg.codec],
            dtmf: true,
            direction: Direction::SendRecv,
            security: LocalSecurity {
                policy: SrtpPolicy::Optional,
                ..local.security.clone()
            },
            ..local.clone()
        };
        match sdp::process_answer(&answer, &offerer) {
            Ok(back) => {
                assert_eq!(back.codec, neg.codec, "{answer}");
                assert_eq!(back.payload_type, neg.payload_type, "{answer}");
                assert_eq!(back.remote, SocketAddr::new(local.addr, local.port));
                assert_eq!(back.telephone_event_pt, neg.telephone_event_pt, "{answer}");
            }
            Err(e) => {
                assert!(
                    !matches!(
                        e,
                        sdp::SdpError::Malformed(_)
                            | sdp::SdpError::NoAudio
                            | sdp::SdpError::NoAddress
                    ) && neg.security.is_secure(),
                    "our answer does not read back ({e}): {answer}"
                );
            }
        }
    }
    let _ = sdp::process_answer(&text, &local);
    if let Ok(offer) = sdp::create_offer(&local, 3, 4) {
        let _ = sdp::answer(&offer, &local, 5, 6);
    }

    // The relay's rewriting (RFC 4566 structures via rtc-sdp).
    use crate::server::proxy::rewrite::Sdp;
    if let Ok(parsed) = Sdp::parse(text.as_bytes()) {
        let _ = parsed.version();
        let relay_ip = if sel & 1 == 0 {
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))
        } else {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7))
        };
        let ports: Vec<(usize, u16)> = parsed
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.index, 30_000 + 2 * i as u16))
            .collect();
        let anchored = parsed.anchor(relay_ip, &ports, 9);
        let back = match Sdp::parse(anchored.as_bytes()) {
            Ok(b) => b,
            Err(e) => panic!("anchored SDP does not parse ({e}): {anchored:?}"),
        };
        for &(index, port) in &ports {
            let s = back.streams.iter().find(|s| s.index == index);
            let s = s.unwrap_or_else(|| panic!("anchored stream {index} lost: {anchored:?}"));
            assert_eq!(s.rtp, SocketAddr::new(relay_ip, port), "{anchored:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rtp_rtcp

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

// ---------------------------------------------------------------------------------------------
// digest

const REALM: &str = "fuzz.example.com";
const NOW_SECS: u64 = 1_700_000_000;

fn field<'a>(parts: &mut impl Iterator<Item = &'a [u8]>) -> String {
    String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned()
}

/// Digest authentication (RFC 7616, RFC 8760) as the registrar and proxy run it:
/// - [`Authenticator::check_request`] with arbitrary `Authorization` values, method and AOR
///   never panics and never authorizes (the nonce is ours, MAC'd with a secret);
/// - [`Authenticator::verify_nonce`] of arbitrary text never panics and is `Invalid`, while a
///   nonce we minted verifies;
/// - a client answer built with [`crate::auth::authorization_value`] for arbitrary username,
///   password, URI and cnonce (quotes and backslashes included) is authorized, a replayed
///   nonce-count is not (unless the same request is retransmitted), and a wrong password fails;
/// - [`UserDb::from_file_text`] takes any text.
pub fn digest(data: &[u8]) {
    let mut parts = data.split(|&b| b == b'\n');
    let user = field(&mut parts);
    let password = field(&mut parts);
    let uri = field(&mut parts);
    let cnonce = field(&mut parts);
    let method = field(&mut parts);
    let rest: Vec<ByteString> = parts
        .map(|p| ByteString::from(String::from_utf8_lossy(p).into_owned()))
        .collect();

    let _ = UserDb::from_file_text(&String::from_utf8_lossy(data), REALM);

    let mut db = UserDb::new(REALM);
    db.add("alice", "secret");
    db.add(&user, &password);
    let mut a = Authenticator::with_secret(REALM, db, false, [9u8; 32]);

    // Arbitrary header values: never authorized.
    let out = a.check_request(NOW_SECS, &method, rest.iter(), &user, 1);
    assert!(
        !matches!(out, AuthOutcome::Authorized { .. }),
        "authorized without a nonce of ours: {rest:?}"
    );
    for v in &rest {
        assert_eq!(a.verify_nonce(NOW_SECS, v), NonceStatus::Invalid, "{v}");
        if let Ok(auth) = Auth::parse(v) {
            let out = a.check_digest(NOW_SECS, &method, &auth, "alice");
            assert!(!matches!(out, AuthOutcome::Authorized { .. }));
        }
    }

    // A real exchange with the fuzzed fields.
    let method = if method.is_empty() {
        "REGISTER".to_string()
    } else {
        method
    };
    for which in 0..2 {
        let challenge = ByteString::from(a.challenges(NOW_SECS, false)[which].clone());
        let ch = Auth::parse(&challenge).expect("our challenge parses");
        let nonce = ch.get("nonce").expect("nonce").to_owned();
        assert_eq!(a.verify_nonce(NOW_SECS, &nonce), NonceStatus::Valid);
        assert_eq!(
            a.verify_nonce(NOW_SECS + a.nonce_lifetime + 1, &nonce),
            NonceStatus::Stale
        );
        let Some(value) =
            crate::auth::authorization_value(&ch, &user, &password, &method, &uri, 1, &cnonce)
        else {
            panic!("no answer to our own challenge {challenge}");
        };
        let value = ByteString::from(value);
        let Ok(parsed) = Auth::parse(&value) else {
            // Text the header parser cannot carry (e.g. a field that trims to nothing) is a
            // client-side limit, not an authentication bypass.
            continue;
        };
        let fields_survive = parsed.get("username") == Some(user.as_str())
            && parsed.get("uri") == Some(uri.as_str())
            && parsed.get("cnonce") == Some(cnonce.as_str())
            && !cnonce.is_empty();
        let out = a.check_request(NOW_SECS, &method, std::iter::once(&value), &user, 42);
        if fields_survive {
            assert_eq!(
                out,
                AuthOutcome::Authorized { user: user.clone() },
                "a correct answer was refused: {value}"
            );
            // A retransmission of the same request is authorized again; a replay is not.
            let again = a.check_request(NOW_SECS, &method, std::iter::once(&value), &user, 42);
            assert_eq!(again, AuthOutcome::Authorized { user: user.clone() });
            let replay = a.check_request(NOW_SECS, &method, std::iter::once(&value), &user, 43);
            assert_eq!(replay, AuthOutcome::Challenge { stale: true }, "{value}");
        }
        // The wrong password never passes.
        let wrong = format!("{password}x");
        if let Some(v) =
            crate::auth::authorization_value(&ch, &user, &wrong, &method, &uri, 2, &cnonce)
        {
            let v = ByteString::from(v);
            let out = a.check_request(NOW_SECS, &method, std::iter::once(&v), &user, 44);
            assert!(
                !matches!(out, AuthOutcome::Authorized { .. }),
                "wrong password authorized: {v}"
            );
        }
    }
    let _ = Algorithm::from_wire(&user);
}

// ---------------------------------------------------------------------------------------------
// srtp

fn session_pair(suite: CryptoSuite) -> (SrtpSession, SrtpSession) {
    let k1: Vec<u8> = (0..suite.master_len()).map(|i| i as u8).collect();
    let k2: Vec<u8> = (0..suite.master_len()).map(|i| 0xA0 ^ i as u8).collect();
    let a = SrtpSession::new(suite, &k1, &k2).expect("keys of the suite's length");
    let b = SrtpSession::new(suite, &k2, &k1).expect("keys of the suite's length");
    (a, b)
}

/// SRTP/SRTCP (RFC 3711, RFC 7714) with fixed keys on all three suites (our AES-GCM path and
/// `rtc-srtp`'s AES-CM), and the SDP attributes that key it:
/// - unprotecting arbitrary datagrams never panics and never succeeds (no forgery without
///   the key);
/// - an RTP or RTCP packet protected by one side unprotects on the other to the same bytes,
///   and the same packet with one bit flipped is refused;
/// - `a=crypto` ([`CryptoAttribute::parse`]), `a=fingerprint` ([`Fingerprint::parse`]) and
///   `a=setup` ([`Setup::parse`]) never panic, and what they accept prints back to the same value.
pub fn srtp(data: &[u8]) {
    let mut input = Cursor::new(data);
    let suite = CryptoSuite::ALL[usize::from(input.u8()) % CryptoSuite::ALL.len()];
    let (mut a, mut b) = session_pair(suite);
    while !input.is_empty() {
        let ctl = input.u8();
        let pkt = input.chunk();
        match ctl % 4 {
            0 => assert!(b.unprotect_rtp(pkt).is_err(), "forged SRTP accepted"),
            1 => assert!(b.unprotect_rtcp(pkt).is_err(), "forged SRTCP accepted"),
            2 | 3 => {
                let rtcp = ctl % 4 == 3;
                let protected = if rtcp {
                    a.protect_rtcp(pkt)
                } else {
                    a.protect_rtp(pkt)
                };
                let Ok(protected) = protected else { continue };
                let unprotect = |s: &mut SrtpSession, p: &[u8]| {
                    if rtcp {
                        s.unprotect_rtcp(p)
                    } else {
                        s.unprotect_rtp(p)
                    }
                };
                // Tampered first (a refused packet must not advance the replay window).
                if !protected.is_empty() {
                    let mut bad = protected.to_vec();
                    let bit = usize::from(ctl >> 2) * 7 + usize::from(input.u8());
                    let i = (bit / 8) % bad.len();
                    bad[i] ^= 1 << (bit % 8);
                    assert!(
                        unprotect(&mut b, &bad).is_err(),
                        "tampered packet accepted (byte {i})"
                    );
                }
                if let Ok(plain) = unprotect(&mut b, &protected) {
                    assert_eq!(&plain[..], pkt, "round trip changed the packet");
                }
            }
            _ => unreachable!(),
        }
    }
    let _ = (a.counters(), b.counters());

    // The SDP attributes of SRTP keying.
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(16) {
        if let Ok(c) = CryptoAttribute::parse(line) {
            let _ = c.is_acceptable();
            let printed = c.to_string();
            assert_eq!(
                CryptoAttribute::parse(&printed).as_ref(),
                Ok(&c),
                "{line} -> {printed}"
            );
            if let (true, Some(k)) = (c.is_acceptable(), c.keys.first()) {
                assert_eq!(k.master.len(), c.suite.master_len());
                let _ = SrtpSession::from_sdes(&c, &c).expect("acceptable attribute keys");
            }
        }
        if let Some(f) = Fingerprint::parse(line) {
            let printed = f.to_string();
            assert_eq!(Fingerprint::parse(&printed).as_ref(), Some(&f), "{printed}");
        }
        if let Some(s) = Setup::parse(line) {
            assert_eq!(Setup::parse(s.as_str()), Some(s));
            let _ = DtlsRole::for_answer(s);
            let _ = DtlsRole::for_offerer(s);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// dtls

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

// ---------------------------------------------------------------------------------------------
// server_core

/// Where the fuzzed datagrams come from: public and private IPv4, IPv6, and the loopback.
const SOURCES: [&str; 8] = [
    "192.0.2.10:5060",
    "192.0.2.11:5070",
    "10.1.2.3:5060",
    "198.51.100.20:5062",
    "[2001:db8::5]:5060",
    "127.0.0.1:5080",
    "203.0.113.3:40000",
    "192.0.2.10:5099",
];

/// The registrar + proxy core ([`crate::server::core::ServerCore`]) with three users and the
/// media relay anchoring calls, on simulated time. The input is a script of records separated
/// by NUL bytes; each starts with a control byte:
/// - op 0–3: the rest is a datagram from source `(c >> 3) & 7` over the transport `c >> 6`;
///   the text `@AUTH@` in it is replaced by a valid digest answer (user `alice`) to the last
///   challenge the server sent, so registrations and authenticated calls happen;
/// - op 4: answers the last request the server sent out (a fork branch) with the status in the
///   next 2 bytes, a To tag and the rest as body, from where it was sent;
/// - op 5: advances simulated time by the next 2 bytes (in 10 ms) and runs the timers;
/// - op 6: answers the pending DNS lookup with one of the sources (or a failure);
/// - op 7: reports the connection to the last destination failed.
///
/// After each step every transmit is drained. Nothing may panic; everything the server sends
/// must be a SIP message our own parser accepts.
pub fn server_core(data: &[u8]) {
    use crate::server::config::ServerConfig;
    use crate::server::core::ServerCore;
    use crate::server::local::LocalIdentity;
    use crate::server::proxy::anchor::{RelayAnchor, RelayMode};
    use crate::sip::resolve::{Destination, Proto, ResolveError};
    use crate::sip::transaction::Transport;

    let mut records = data.split(|&b| b == 0);
    let cfg_byte = records.next().and_then(|r| r.first().copied()).unwrap_or(0);
    let t0 = Instant::now();
    let cfg = ServerConfig {
        invite_auth: cfg_byte & 1 == 0,
        lax_auth_user: cfg_byte & 2 != 0,
        digest_algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
        flood_limit: if cfg_byte & 4 != 0 { 5 } else { 100_000 },
        ..ServerConfig::default()
    };
    let local = LocalIdentity::new(
        &[
            (Transport::Udp, "192.0.2.1:5060".parse().unwrap()),
            (Transport::Tcp, "192.0.2.1:5060".parse().unwrap()),
            (Transport::Tls, "192.0.2.1:5061".parse().unwrap()),
            (Transport::Ws, "192.0.2.1:8080".parse().unwrap()),
        ],
        "192.0.2.1",
        "example.com",
        &["sip.example.com".to_string()],
    );
    let users = [
        ("alice".to_string(), "apw".to_string()),
        ("bob".to_string(), "bpw".to_string()),
        ("carol".to_string(), "cpw".to_string()),
    ];
    let mut core = ServerCore::new(&cfg, local, &users, t0, NOW_SECS);
    let mode = match (cfg_byte >> 3) & 3 {
        0 | 1 => RelayMode::Always,
        2 => RelayMode::Nat,
        _ => RelayMode::Off,
    };
    if mode != RelayMode::Off {
        let relay = Relay::new(RelayConfig {
            port_min: 30_000,
            port_max: 30_015,
            ..RelayConfig::default()
        });
        core.set_media_hook(Box::new(RelayAnchor::new(
            relay,
            mode,
            "192.0.2.1".parse().unwrap(),
        )));
    }

    let sources: Vec<SocketAddr> = SOURCES.iter().map(|s| s.parse().unwrap()).collect();
    let mut now = t0;
    let mut state = Seen::default();
    let mut tag = 0u32;

    for rec in records.take(64) {
        let Some((&c, body)) = rec.split_first() else {
            continue;
        };
        let transport = match c >> 6 {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            2 => Transport::Tls,
            _ => Transport::Ws,
        };
        let source = sources[usize::from((c >> 3) & 7)];
        match c & 7 {
            0..=3 => {
                let bytes = substitute_auth(body, state.challenge.as_ref());
                core.handle_datagram(now, bytes, source, transport);
            }
            4 => {
                if let Some((t, req)) = &state.last_request {
                    let mut b = Cursor::new(body);
                    let status = 100 + b.u16() % 600;
                    let mut resp = crate::sip::msg::Response::for_request(req, status);
                    tag += 1;
                    if let Some(to) = resp.headers.0.iter_mut().find(|h| h.name == HeaderName::To)
                        && !to.value.contains(";tag=")
                    {
                        to.value = ByteString::from(format!("{};tag=fz{tag}", to.value));
                    }
                    if (200..300).contains(&status) || status == 183 || status == 180 {
                        resp.headers
                            .push(HeaderName::Contact, format!("<sip:bob@{}>", t.dest));
                    }
                    let body = b.rest();
                    if !body.is_empty() {
                        resp.headers
                            .push(HeaderName::ContentType, "application/sdp");
                        resp.body = Bytes::copy_from_slice(body);
                    }
                    core.handle_datagram(now, resp.to_bytes(), t.dest, t.transport);
                }
            }
            5 => {
                let mut b = Cursor::new(body);
                now += Duration::from_millis(u64::from(b.u16()) * 10);
                core.handle_timeout(now);
                let _ = core.poll_timeout();
            }
            6 => {
                if let Some(id) = state.pending_dns.pop() {
                    let mut b = Cursor::new(body);
                    let pick = b.u8();
                    let result = if pick & 0x80 != 0 {
                        Err(ResolveError::NotFound("fuzz".into()))
                    } else {
                        Ok(vec![Destination {
                            addr: sources[usize::from(pick) % sources.len()],
                            proto: match (pick >> 3) & 3 {
                                0 => Proto::Udp,
                                1 => Proto::Tcp,
                                2 => Proto::Tls,
                                _ => Proto::Ws,
                            },
                            host: "other.example.net".into(),
                        }])
                    };
                    core.dns_resolved(now, id, result);
                }
            }
            _ => {
                if let Some((dest, transport)) = state.last_dest {
                    core.connection_failed(now, dest, transport, "fuzz");
                }
            }
        }
        drain(&mut core, &mut state);
        // A little time passes between datagrams.
        now += Duration::from_millis(1);
    }
    // Let every timer run out.
    for _ in 0..4 {
        now += Duration::from_secs(40);
        core.handle_timeout(now);
        drain(&mut core, &mut state);
    }
    let _ = core.stats;
}

/// What the server sent that the script refers to.
#[derive(Default)]
struct Seen {
    challenge: Option<Auth>,
    last_request: Option<(crate::sip::transaction::Transmit, crate::sip::msg::Request)>,
    last_dest: Option<(SocketAddr, crate::sip::transaction::Transport)>,
    pending_dns: Vec<u64>,
}

/// Drains the server's transmits (each must parse) and DNS queries into `seen`.
fn drain(core: &mut crate::server::core::ServerCore, seen: &mut Seen) {
    while let Some(t) = core.poll_transmit() {
        seen.last_dest = Some((t.dest, t.transport));
        let msg = match Message::parse(t.bytes.clone(), &UNLIMITED) {
            Ok(m) => m,
            Err(e) => panic!(
                "the server sent an unparsable message ({e}): {:?}",
                String::from_utf8_lossy(&t.bytes)
            ),
        };
        match msg {
            Message::Response(r) => {
                for name in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
                    if let Some(v) = r.headers.get(&name)
                        && let Ok(a) = Auth::parse(v)
                    {
                        seen.challenge = Some(a);
                    }
                }
            }
            Message::Request(r) => seen.last_request = Some((t, r)),
        }
    }
    while let Some(q) = core.poll_dns_query() {
        seen.pending_dns.push(q.id);
    }
}

/// Replaces `@AUTH@` in a request by a digest answer (user `alice`) to `challenge`, computed
/// for the request's method and Request-URI (the first two tokens of its first line).
fn substitute_auth(body: &[u8], challenge: Option<&Auth>) -> Bytes {
    const MARK: &[u8] = b"@AUTH@";
    let Some(at) = body.windows(MARK.len()).position(|w| w == MARK) else {
        return Bytes::copy_from_slice(body);
    };
    let first_line = body
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut tokens = first_line.split(|&b| b == b' ');
    let method = String::from_utf8_lossy(tokens.next().unwrap_or(&[])).into_owned();
    let uri = String::from_utf8_lossy(tokens.next().unwrap_or(&[])).into_owned();
    let value = challenge
        .and_then(|ch| {
            crate::auth::authorization_value(ch, "alice", "apw", &method, &uri, 1, "fuzzc")
        })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&body[at + MARK.len()..]);
    Bytes::from(out)
}
