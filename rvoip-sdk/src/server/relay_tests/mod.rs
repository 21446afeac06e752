//! Scenario tests of the proxy with the media relay anchored (`RelayAnchor` over the sans-IO
//! `Relay`), on simulated time and without sockets: the SDP on the wire, symmetric latching
//! through the whole server, NAT flows for signalling, late offer, hold, forking, the release
//! of relay ports, the media timeout and the relay modes. The test feeds RTP to the same relay
//! the anchor controls (a shared `Relay` behind a small `RelayControl` wrapper).
//!
//! This module is the harness (phones, the shared relay, calls and a simulated-time `Harness`),
//! `wire` builds and checks the messages and media; the scenarios are grouped by topic in `sdp`,
//! `nat` and `lifecycle`.

mod conference;
mod lifecycle;
mod nat;
mod record;
mod sdp;
mod transcode;
mod wire;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::media::relay::{
    Forward, Latching, MediaId, MediaStats, Relay, RelayConfig, RelayError, RelayEvent, Side,
    TranscodeSpec,
};
use crate::server::config::ServerConfig;
use crate::server::core::ServerCore;
use crate::server::local::LocalIdentity;
use crate::server::proxy::anchor::{RelayAnchor, RelayMode};
use crate::server::relay::RelayControl;
use crate::server::relay::sdp::Stream;
use crate::sip::msg::{HeaderName, Message, Method, Request, Response};
use crate::sip::transaction::{Transmit, Transport};
use wire::*;

/// The address the relay writes into SDP.
const ADVERTISE: &str = "198.51.100.1";
/// The relay's port range in most tests: ten RTP/RTCP pairs.
const PORT_MIN: u16 = 30000;
const PORT_MAX: u16 = 30019;
const BOB1: &str = "127.0.0.1:5080";
const BOB2: &str = "127.0.0.1:5082";
/// Where alice's RTP really comes from: her NAT's public address, not her SDP address.
const ALICE_RTP_NAT: &str = "203.0.113.9:7000";
const BOB_RTP: &str = "127.0.0.1:6000";
const CRYPTO_A: &str =
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const CRYPTO_B: &str =
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

/// A phone as the server sees it.
#[derive(Debug, Clone, Copy)]
struct Phone {
    /// Where its datagrams come from (its NAT's public address when NATed).
    source: &'static str,
    /// The sent-by it writes in Via.
    via: &'static str,
    /// The host:port it writes in Contact.
    contact: &'static str,
}

impl Phone {
    /// A phone not behind a NAT: Via = Contact = source = `at`.
    const fn at(at: &'static str) -> Phone {
        Phone::nated(at, at)
    }

    /// A phone behind a NAT: packets from `public`, `private` in Via and Contact.
    const fn nated(public: &'static str, private: &'static str) -> Phone {
        Phone {
            source: public,
            via: private,
            contact: private,
        }
    }
}

/// alice on the server's network.
const ALICE: Phone = Phone::at("127.0.0.1:5070");
/// alice behind a NAT: private Via/Contact, packets from her NAT's public address.
const ALICE_NAT: Phone = Phone::nated("203.0.113.9:5062", "10.0.1.2:5060");
const BOB: Phone = Phone::at(BOB1);
const BOB_2: Phone = Phone::at(BOB2);
/// bob behind a NAT.
const BOB_NAT: Phone = Phone::nated("203.0.113.20:40000", "10.0.2.5:5060");

/// The relay shared by the anchor (inside the core) and the test, which injects RTP into it.
#[derive(Clone)]
struct SharedRelay(Arc<Mutex<Relay>>);

impl SharedRelay {
    fn lock(&self) -> MutexGuard<'_, Relay> {
        self.0.lock().expect("relay lock")
    }
}

impl RelayControl for SharedRelay {
    fn create(&mut self, now: Instant) -> Result<MediaId, RelayError> {
        self.lock().create(now)
    }
    fn local_port(&self, id: MediaId, side: Side) -> Option<u16> {
        self.lock().local_port(id, side)
    }
    fn set_remote(&mut self, id: MediaId, side: Side, s: &Stream) -> Result<(), RelayError> {
        RelayControl::set_remote(&mut *self.lock(), id, side, s)
    }
    fn set_latching(
        &mut self,
        id: MediaId,
        side: Side,
        latching: Latching,
    ) -> Result<(), RelayError> {
        self.lock().set_latching(id, side, latching)
    }
    fn media_stats(&self, id: MediaId) -> Option<MediaStats> {
        self.lock().media_stats(id)
    }
    fn set_transcoding(
        &mut self,
        now: Instant,
        id: MediaId,
        specs: Option<[TranscodeSpec; 2]>,
    ) -> Result<(), RelayError> {
        self.lock().set_transcoding(now, id, specs)
    }
    fn set_recording(&mut self, id: MediaId, recording: Option<u64>) -> Result<(), RelayError> {
        self.lock().set_recording(id, recording)
    }
    fn join_room(
        &mut self,
        now: Instant,
        id: MediaId,
        room: u32,
        spec: TranscodeSpec,
    ) -> Result<(), RelayError> {
        self.lock().join_room(now, id, room, spec)
    }
    fn confirm(&mut self, now: Instant, id: MediaId) {
        self.lock().confirm(now, id)
    }
    fn release(&mut self, id: MediaId) -> Option<MediaStats> {
        self.lock().release(id)
    }
    fn poll_event(&mut self) -> Option<RelayEvent> {
        self.lock().poll_event()
    }
    fn ports_in_use(&self) -> usize {
        self.lock().ports_in_use()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.lock().poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.lock().handle_timeout(now)
    }
}

/// The harness's usual configuration: INVITEs are not challenged.
fn no_invite_auth() -> ServerConfig {
    ServerConfig {
        invite_auth: false,
        ..ServerConfig::default()
    }
}

/// Payload types and codecs, as the recorder is told them.
type Codecs = Vec<(u8, crate::sdp::AudioCodec)>;

/// What the anchor and the relay's tap told the recorder.
#[derive(Debug, Default)]
struct Recorded {
    /// (recording, Call-ID) per open.
    opened: Vec<(u64, String)>,
    /// (recording, side, codecs) per set_codecs.
    codecs: Vec<(u64, Side, Codecs)>,
    /// (recording, side, RTP sequence number) per tapped packet.
    packets: Vec<(u64, Side, u16)>,
    closed: Vec<u64>,
}

/// A recorder that keeps what it is told (the relay's tap and the anchor's recorder).
#[derive(Clone, Default)]
struct FakeRecorder(Arc<Mutex<Recorded>>);

impl FakeRecorder {
    fn get(&self) -> MutexGuard<'_, Recorded> {
        self.0.lock().expect("recorder lock")
    }
}

impl crate::media::relay::MediaTap for FakeRecorder {
    fn packet(&mut self, recording: u64, side: Side, _arrival: Instant, rtp: &[u8]) {
        let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
        self.get().packets.push((recording, side, seq));
    }
}

impl crate::server::relay::CallRecorder for FakeRecorder {
    fn open(&mut self, call_id: &str, _now: Instant) -> u64 {
        let mut r = self.get();
        let id = r.opened.len() as u64 + 7;
        r.opened.push((id, call_id.to_string()));
        id
    }
    fn set_codecs(
        &mut self,
        recording: u64,
        side: Side,
        codecs: Vec<(u8, crate::sdp::AudioCodec)>,
    ) {
        self.get().codecs.push((recording, side, codecs));
    }
    fn close(&mut self, recording: u64, _now: Instant) {
        self.get().closed.push(recording);
    }
}

/// One call as both phones know it after the 2xx.
#[derive(Debug, Clone)]
struct Call {
    n: u32,
    caller: Phone,
    call_id: String,
    /// alice's From (with tag) and bob's To (with tag).
    from: String,
    to: String,
    /// The Record-Route of the 2xx: the route set of both phones.
    route: String,
    /// Remote targets: alice's and bob's Contact URIs.
    alice_uri: String,
    bob_uri: String,
    /// alice's next CSeq.
    cseq: u32,
}

impl Call {
    /// The call of number `n` from `caller` to `callee`, from the 2xx alice got: the dialog's
    /// identifiers and route set from its headers, the remote targets from the phones' Contacts.
    fn from_ok(n: u32, caller: Phone, callee: Phone, ok: &Response) -> Call {
        let hdr = |name: HeaderName, what: &str| {
            ok.headers
                .get(&name)
                .unwrap_or_else(|| panic!("{what} in the 2xx"))
                .to_string()
        };
        Call {
            n,
            caller,
            call_id: format!("call{n}@test"),
            from: hdr(HeaderName::From, "From"),
            to: hdr(HeaderName::To, "To"),
            route: hdr(HeaderName::RecordRoute, "Record-Route"),
            alice_uri: format!("sip:alice@{}", caller.contact),
            bob_uri: format!("sip:bob@{}", callee.contact),
            cseq: 2,
        }
    }

    /// An in-dialog request from alice (Route: our Record-Route, R-URI: bob's Contact).
    fn alice_sends(&mut self, method: &str, body: Option<&str>) -> Bytes {
        let Call {
            n,
            caller,
            from,
            to,
            route,
            bob_uri,
            call_id,
            ..
        } = self;
        let cseq = if method == "ACK" {
            self.cseq.saturating_sub(1).max(1)
        } else {
            let c = self.cseq;
            self.cseq += 1;
            c
        };
        let lower = method.to_ascii_lowercase();
        msg(
            &format!(
                "{method} {bob_uri} SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bK{lower}{n}c{cseq}\n\
                 Route: {route}\nMax-Forwards: 70\nFrom: {from}\nTo: {to}\nCall-ID: {call_id}\n\
                 CSeq: {cseq} {method}\nContact: <sip:alice@{}>",
                caller.via, caller.contact
            ),
            body,
        )
    }

    /// An in-dialog request from bob (From/To swapped, R-URI: alice's Contact).
    fn bob_sends(&self, method: &str, via: &str, cseq: u32) -> Bytes {
        let Call {
            n,
            from,
            to,
            route,
            alice_uri,
            call_id,
            ..
        } = self;
        msg(
            &format!(
                "{method} {alice_uri} SIP/2.0\nVia: SIP/2.0/UDP {via};rport;branch=z9hG4bKb{n}c{cseq}\n\
                 Route: {route}\nMax-Forwards: 70\nFrom: {to}\nTo: {from}\nCall-ID: {call_id}\n\
                 CSeq: {cseq} {method}"
            ),
            None,
        )
    }
}

struct Harness {
    core: ServerCore,
    relay: SharedRelay,
    now: Instant,
    n: u32,
}

impl Harness {
    fn new(mode: RelayMode) -> Harness {
        Harness::with_ports(mode, PORT_MAX)
    }

    /// The relay always anchoring, bob registered at [`BOB`].
    fn with_bob() -> Harness {
        let mut h = Harness::new(RelayMode::Always);
        assert_eq!(h.register("bob", "bpw", BOB).status, 200);
        h
    }

    fn with_ports(mode: RelayMode, port_max: u16) -> Harness {
        Harness::build(mode, port_max, no_invite_auth(), None)
    }

    /// A harness whose anchor records into `recorder` under `cfg`'s recording policy (and
    /// whose relay taps into it), bob registered.
    fn recording(cfg: ServerConfig, recorder: &FakeRecorder) -> Harness {
        let mut h = Harness::build(RelayMode::Always, PORT_MAX, cfg, Some(recorder));
        assert_eq!(h.register("bob", "bpw", BOB).status, 200);
        h
    }

    fn build(
        mode: RelayMode,
        port_max: u16,
        base: ServerConfig,
        recorder: Option<&FakeRecorder>,
    ) -> Harness {
        let now = Instant::now();
        let cfg = ServerConfig {
            digest_algorithms: vec![crate::auth::Algorithm::Md5, crate::auth::Algorithm::Sha256],
            ..base
        };
        let local = LocalIdentity::new(
            &[(Transport::Udp, addr("127.0.0.1:5060"))],
            "127.0.0.1",
            "example.com",
            &[],
        );
        let users = vec![
            ("alice".to_string(), "apw".to_string()),
            ("bob".to_string(), "bpw".to_string()),
            ("carol".to_string(), "cpw".to_string()),
        ];
        let mut core = ServerCore::new(&cfg, local, &users, now, 1_700_000_000);
        let relay = SharedRelay(Arc::new(Mutex::new(Relay::new(RelayConfig {
            port_min: PORT_MIN,
            port_max,
            media_timeout: Duration::from_secs(60),
            ..RelayConfig::default()
        }))));
        let mut anchor =
            RelayAnchor::new(relay.clone(), mode, ADVERTISE.parse().expect("advertise"));
        if let Some(r) = recorder {
            relay.lock().set_tap(Box::new(r.clone()));
            anchor = anchor.with_recorder(Box::new(r.clone()));
        }
        core.set_media_hook(Box::new(anchor));
        Harness {
            core,
            relay,
            now,
            n: 0,
        }
    }

    fn send(&mut self, from: &str, bytes: Bytes) -> Vec<Transmit> {
        self.core
            .handle_datagram(self.now, bytes, addr(from), Transport::Udp);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Transmit> {
        let mut v = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            v.push(t);
        }
        v
    }

    /// Moves the clock by `d` in steps of at most one second, running the core's timers, and
    /// returns everything it sent.
    fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        let end = self.now + d;
        let mut out = Vec::new();
        while self.now < end {
            self.now = (self.now + Duration::from_secs(1)).min(end);
            self.core.handle_timeout(self.now);
            out.extend(self.drain());
        }
        out
    }

    fn next(&mut self) -> u32 {
        self.n += 1;
        self.n
    }

    fn ports(&self) -> usize {
        self.relay.lock().ports_in_use()
    }

    /// Injects one RTP packet into the relay as if it arrived now on `local_port` from `from`.
    fn rtp(&mut self, local_port: u16, from: &str, seq: u16, ssrc: u32) -> Option<Forward> {
        let mut p = rtp_packet(seq, ssrc);
        self.relay
            .lock()
            .handle_datagram(self.now, local_port, addr(from), &mut p)
    }

    /// REGISTER `user` from `phone` (digest challenge answered); the final response.
    fn register(&mut self, user: &str, pw: &str, phone: Phone) -> Response {
        let n = self.next();
        let base = |cseq: u32, auth: &str| {
            msg(
                &format!(
                    "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKreg{n}x{cseq}\n\
                     Max-Forwards: 70\nFrom: <sip:{user}@127.0.0.1>;tag=r{n}\nTo: <sip:{user}@127.0.0.1>\n\
                     Call-ID: reg{n}@test\nCSeq: {cseq} REGISTER\nContact: <sip:{user}@{}>\n{auth}Expires: 600",
                    phone.via, phone.contact
                ),
                None,
            )
        };
        let out = self.send(phone.source, base(1, ""));
        let r401 = one_response(&out, phone.source, 401);
        let authz = digest(&r401, user, pw);
        let out = self.send(phone.source, base(2, &format!("Authorization: {authz}\n")));
        assert_eq!(out.len(), 1, "{}", dump(&out));
        responses_to(&out, phone.source).remove(0)
    }

    /// alice's initial INVITE to `user` from `caller` (with or without SDP); the call's number
    /// and what the server sent.
    fn invite(&mut self, caller: Phone, user: &str, body: Option<&str>) -> (u32, Vec<Transmit>) {
        let n = self.next();
        let text = format!(
            "INVITE sip:{user}@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKinv{n}\n\
             Max-Forwards: 70\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\nTo: <sip:{user}@127.0.0.1>\n\
             Call-ID: call{n}@test\nCSeq: 1 INVITE\nContact: <sip:alice@{}>",
            caller.via, caller.contact
        );
        let out = self.send(caller.source, msg(&text, body));
        (n, out)
    }

    /// alice's INVITE to bob with the usual offer; the call's number and the INVITE bob got.
    fn invite_bob(&mut self) -> (u32, Request) {
        let (n, out) = self.invite(ALICE, "bob", Some(&alice_offer()));
        (n, one_request(&out, BOB1, Method::Invite))
    }

    /// The CANCEL of call `n`'s INVITE.
    fn cancel(&mut self, caller: Phone, n: u32, user: &str) -> Vec<Transmit> {
        let text = format!(
            "CANCEL sip:{user}@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKinv{n}\n\
             Max-Forwards: 70\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\nTo: <sip:{user}@127.0.0.1>\n\
             Call-ID: call{n}@test\nCSeq: 1 CANCEL",
            caller.via
        );
        self.send(caller.source, msg(&text, None))
    }

    /// INVITE from `caller` → forwarded to `callee` → 200 (tag `b{n}`) → ACK, all with the
    /// given bodies. Returns the call, the INVITE bob got, the 200 alice got and the ACK bob got.
    fn connect(
        &mut self,
        caller: Phone,
        offer: Option<&str>,
        callee: Phone,
        answer: Option<&str>,
        ack_body: Option<&str>,
    ) -> (Call, Request, Response, Request) {
        let (n, out) = self.invite(caller, "bob", offer);
        assert_eq!(statuses_to(&out, caller.source), [100], "{}", dump(&out));
        let inv = one_request(&out, callee.source, Method::Invite);
        let out = self.send(
            callee.source,
            reply(&inv, 200, &format!("b{n}"), callee.contact, answer),
        );
        let ok = one_response(&out, caller.source, 200);
        let mut call = Call::from_ok(n, caller, callee, &ok);
        let out = self.send(caller.source, call.alice_sends("ACK", ack_body));
        let ack = one_request(&out, callee.source, Method::Ack);
        (call, inv, ok, ack)
    }

    /// [`Harness::connect`] from `caller` to [`BOB`] with the usual offer and answer.
    fn call_bob(&mut self, caller: Phone) -> (Call, Request, Response, Request) {
        self.connect(caller, Some(&alice_offer()), BOB, Some(&bob_answer()), None)
    }
}
