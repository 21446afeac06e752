//! The ng control core on the sans-IO relay, with requests shaped as Kamailio 5.6's rtpengine
//! module sends them (unsorted keys, command last).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::bencode::{Limits, Value, decode};
use super::{NgConfig, NgControl};
use crate::media::relay::{Relay, RelayConfig};

const KAM: &str = "127.0.0.1:45000";

fn a(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn sdp(ip: &str, port: u16, proto: &str) -> String {
    format!(
        "v=0\r\no=- 1001 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=ice-ufrag:Xa1b\r\na=ice-pwd:0123456789abcdef01234567\r\n\
         a=candidate:1 1 UDP 2130706431 {ip} {port} typ host\r\na=sendrecv\r\n"
    )
}

fn t(s: &str) -> Value {
    Value::text(s)
}

fn d(items: Vec<(&str, Value)>) -> Value {
    Value::Dict(
        items
            .into_iter()
            .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v))
            .collect(),
    )
}

/// An offer or answer as Kamailio 5.6 sends it, with `flags`.
fn kamailio(
    command: &str,
    call: &str,
    ft: &str,
    tt: Option<&str>,
    body: &str,
    flags: &[&str],
) -> Value {
    let mut items = vec![
        ("supports", Value::List(vec![t("load limit")])),
        ("sdp", t(body)),
        ("ICE", t("remove")),
        (
            "replace",
            Value::List(vec![t("origin"), t("session-connection")]),
        ),
        ("flags", Value::List(flags.iter().map(|f| t(f)).collect())),
        ("call-id", t(call)),
        ("received-from", Value::List(vec![t("IP4"), t("192.0.2.9")])),
        ("from-tag", t(ft)),
    ];
    if let Some(tt) = tt {
        items.push(("to-tag", t(tt)));
    }
    items.push(("command", t(command)));
    d(items)
}

struct Fixture {
    ng: NgControl<Relay>,
    now: Instant,
    n: u32,
}

impl Fixture {
    fn new() -> Fixture {
        let relay = Relay::new(RelayConfig {
            port_min: 40000,
            port_max: 40099,
            media_timeout: Duration::from_secs(10),
            ..RelayConfig::default()
        });
        Fixture {
            ng: NgControl::new(relay, NgConfig::new("203.0.113.5".parse().expect("ip"))),
            now: Instant::now(),
            n: 0,
        }
    }

    /// Sends `body` under a fresh cookie; returns (cookie, raw reply).
    fn raw(&mut self, body: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        self.n += 1;
        let cookie = format!("0_16392_{}", self.n).into_bytes();
        let mut dg = cookie.clone();
        dg.push(b' ');
        dg.extend_from_slice(body);
        let r = self
            .ng
            .handle_datagram(self.now, SystemTime::now(), a(KAM), &dg);
        (cookie, r)
    }

    /// Offer from the caller (`ft`, at 10.0.0.2:4000) and answer from the callee (`tt`, at
    /// 10.0.0.3:5000), each with its flags; both must succeed. Returns the relay ports handed to
    /// the callee (in the offer) and to the caller (in the answer).
    fn setup(&mut self, call: &str, offer_flags: &[&str], answer_flags: &[&str]) -> (u16, u16) {
        let offer = sdp("10.0.0.2", 4000, "RTP/AVP");
        let r = self.call(&kamailio("offer", call, "ft", None, &offer, offer_flags));
        assert_eq!(s(&r, "result"), "ok", "{r:?}");
        let for_callee = m_port(s(&r, "sdp"));
        let answer = sdp("10.0.0.3", 5000, "RTP/AVP");
        let r = self.call(&kamailio(
            "answer",
            call,
            "ft",
            Some("tt"),
            &answer,
            answer_flags,
        ));
        assert_eq!(s(&r, "result"), "ok", "{r:?}");
        (for_callee, m_port(s(&r, "sdp")))
    }

    /// Sends `msg`; returns the reply dictionary.
    fn call(&mut self, msg: &Value) -> Value {
        let (cookie, r) = self.raw(&msg.encode());
        let r = r.expect("a reply");
        assert!(r.starts_with(&cookie) && r.get(cookie.len()) == Some(&b' '));
        let body = Bytes::copy_from_slice(&r[cookie.len() + 1..]);
        decode(&body, &Limits::default()).expect("reply is bencode")
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn m_port(body: &str) -> u16 {
    body.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("m= port")
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x11, 0x11, 0x11];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

#[test]
fn offer_answer_media_query_list_delete() {
    let mut f = Fixture::new();
    assert_eq!(
        s(&f.call(&d(vec![("command", t("ping"))])), "result"),
        "pong"
    );
    let offer = sdp("10.0.0.2", 4000, "RTP/AVP");
    let r = f.call(&kamailio(
        "offer",
        "c1",
        "ft1",
        None,
        &offer,
        &["trust-address"],
    ));
    assert_eq!(s(&r, "result"), "ok", "{r:?}");
    let o = s(&r, "sdp").to_string();
    assert!(o.contains("c=IN IP4 203.0.113.5\r\n"), "{o}");
    assert!(o.contains("o=- 1001 1 IN IP4 203.0.113.5"), "{o}");
    assert!(
        !o.contains("candidate") && !o.contains("ice-") && !o.contains("10.0.0.2"),
        "{o}"
    );
    assert!(
        o.contains("m=audio") && o.contains("RTP/AVP 0 8 101"),
        "{o}"
    );
    let for_callee = m_port(&o);
    let answer = sdp("10.0.0.3", 5000, "RTP/AVP");
    let r = f.call(&kamailio(
        "answer",
        "c1",
        "ft1",
        Some("tt1"),
        &answer,
        &["trust-address"],
    ));
    assert_eq!(s(&r, "result"), "ok", "{r:?}");
    let for_caller = m_port(s(&r, "sdp"));
    assert_ne!(for_caller, for_callee);
    // Media both ways through the relay: the caller sends to the port of the answer.
    let now = f.now;
    let fwd =
        f.ng.relay()
            .handle_datagram(now, for_caller, a("10.0.0.2:4000"), &mut rtp(1));
    assert_eq!(
        fwd.map(|x| (x.from_port, x.dest)),
        Some((for_callee, a("10.0.0.3:5000")))
    );
    let fwd =
        f.ng.relay()
            .handle_datagram(now, for_callee, a("10.0.0.3:5000"), &mut rtp(1));
    assert_eq!(
        fwd.map(|x| (x.from_port, x.dest)),
        Some((for_caller, a("10.0.0.2:4000")))
    );
    let mut rr = vec![0x80, 201, 0, 1, 0x11, 0x11, 0x11, 0x11];
    assert!(
        f.ng.relay()
            .handle_datagram(now, for_caller + 1, a("10.0.0.2:4001"), &mut rr)
            .is_some()
    );

    let q = f.call(&d(vec![("command", t("query")), ("call-id", t("c1"))]));
    assert_eq!(s(&q, "result"), "ok");
    assert!(
        q.get("created")
            .and_then(Value::as_int)
            .is_some_and(|c| c > 1_700_000_000)
    );
    assert!(q.get("last signal").and_then(Value::as_int).is_some());
    let tags = q.get("tags").expect("tags");
    assert!(
        tags.get("ft1").is_some() && tags.get("tt1").is_some(),
        "{tags:?}"
    );
    assert_eq!(s(tags.get("ft1").expect("ft1"), "in dialogue with"), "tt1");
    let totals = q.get("totals").expect("totals");
    let rtp_t = totals.get("RTP").expect("RTP");
    assert_eq!(rtp_t.get("packets").and_then(Value::as_int), Some(2));
    assert_eq!(rtp_t.get("bytes").and_then(Value::as_int), Some(2 * 172));
    let rtcp_t = totals.get("RTCP").expect("RTCP");
    assert_eq!(rtcp_t.get("packets").and_then(Value::as_int), Some(1));
    assert_eq!(rtcp_t.get("bytes").and_then(Value::as_int), Some(8));

    let l = f.call(&d(vec![("command", t("list"))]));
    assert_eq!(
        l.get("calls").and_then(Value::as_list).map(|c| c.len()),
        Some(1)
    );
    let del = f.call(&d(vec![
        ("call-id", t("c1")),
        ("from-tag", t("ft1")),
        ("command", t("delete")),
    ]));
    assert_eq!(s(&del, "result"), "ok");
    assert!(del.get("totals").is_some());
    assert_eq!(f.ng.relay().ports_in_use(), 0);
    let q = f.call(&d(vec![("command", t("query")), ("call-id", t("c1"))]));
    assert_eq!(
        (s(&q, "result"), s(&q, "error-reason")),
        ("error", "Unknown call-id")
    );
    let l = f.call(&d(vec![("command", t("list"))]));
    assert_eq!(
        l.get("calls").and_then(Value::as_list).map(|c| c.len()),
        Some(0)
    );
}

#[test]
fn the_sdp_address_is_trusted_unless_sip_source_address_is_asked() {
    let mut f = Fixture::new();
    // With SIP-source-address the caller is reached at received-from (192.0.2.9), SDP port.
    let (for_callee, _) = f.setup("c2", &["SIP-source-address"], &[]);
    let now = f.now;
    let fwd =
        f.ng.relay()
            .handle_datagram(now, for_callee, a("10.0.0.3:5000"), &mut rtp(1));
    assert_eq!(fwd.map(|x| x.dest), Some(a("192.0.2.9:4000")));
    // By default (no flag, as Kamailio sends), the SDP's address.
    let (for_callee, _) = f.setup("c2b", &[], &[]);
    let fwd =
        f.ng.relay()
            .handle_datagram(now, for_callee, a("10.0.0.3:5000"), &mut rtp(1));
    assert_eq!(fwd.map(|x| x.dest), Some(a("10.0.0.2:4000")));
    // Empty tags are refused: they would match a party not yet known.
    let r = f.call(&kamailio(
        "answer",
        "c2b",
        "",
        Some("tt"),
        &sdp("10.0.0.3", 5000, "RTP/AVP"),
        &[],
    ));
    assert_eq!(s(&r, "result"), "error");
}

#[test]
fn a_retransmission_gets_the_cached_reply_and_creates_nothing() {
    let mut f = Fixture::new();
    let dg = [
        &b"7_7_7 "[..],
        &kamailio(
            "offer",
            "c3",
            "ft",
            None,
            &sdp("10.0.0.2", 4000, "RTP/AVP"),
            &[],
        )
        .encode(),
    ]
    .concat();
    let now = f.now;
    let r1 = f.ng.handle_datagram(now, SystemTime::now(), a(KAM), &dg);
    let r2 =
        f.ng.handle_datagram(now + Duration::from_secs(1), SystemTime::now(), a(KAM), &dg);
    assert!(r1.is_some());
    assert_eq!(r1, r2);
    assert_eq!((f.ng.calls(), f.ng.relay().ports_in_use()), (1, 4));
    assert_eq!(f.ng.stats().replayed, 1);
    // The same cookie from another client is another request (it gets its own reply).
    let r3 =
        f.ng.handle_datagram(now, SystemTime::now(), a("127.0.0.1:45001"), &dg);
    assert_eq!(
        r3.map(|r| r.starts_with(b"7_7_7 d6:result2:ok")),
        Some(true)
    );
}

#[test]
fn malformed_requests_get_error_replies_and_the_core_keeps_answering() {
    let mut f = Fixture::new();
    let mut big = vec![("command", t("ping"))];
    let keys: Vec<String> = (0..6500).map(|i| format!("k{i:05}")).collect();
    for k in &keys {
        big.push((k.as_str(), t("")));
    }
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"d7:command4:pi".to_vec(), "Failed to decode"),
        (b"d7:command99999:ping".to_vec(), "Failed to decode"),
        (b"l4:pinge".to_vec(), "not a dictionary"),
        (Vec::new(), "Failed to decode"),
        (
            d(vec![("command", t("frobnicate"))]).encode(),
            "Unrecognized command",
        ),
        (d(vec![("command", Value::Int(5))]).encode(), "No command"),
        (
            d(vec![
                ("sdp", t(&sdp("10.0.0.2", 4000, "RTP/AVP"))),
                ("from-tag", t("x")),
                ("command", t("offer")),
            ])
            .encode(),
            "No call-id",
        ),
        (
            kamailio(
                "answer",
                "nope",
                "ft",
                Some("tt"),
                &sdp("10.0.0.3", 5000, "RTP/AVP"),
                &[],
            )
            .encode(),
            "Unknown call-id",
        ),
        (d(big).encode(), "Failed to decode"),
        (
            [
                &b"d7:command4:ping5:flags"[..],
                &b"l".repeat(20000),
                &b"e".repeat(20001),
            ]
            .concat(),
            "Failed to decode",
        ),
        (
            kamailio("offer", "c4", "ft", None, "not sdp at all", &[]).encode(),
            "SDP",
        ),
    ];
    for (body, want) in cases {
        let (_, r) = f.raw(&body);
        let r = r.expect("a reply");
        let text = String::from_utf8_lossy(&r).to_string();
        assert!(
            text.contains("6:result5:error") && text.contains(want),
            "{want}: {text}"
        );
        assert_eq!(
            s(&f.call(&d(vec![("command", t("ping"))])), "result"),
            "pong"
        );
    }
    // No cookie: nothing to answer.
    let now = f.now;
    assert_eq!(
        f.ng.handle_datagram(now, SystemTime::now(), a(KAM), b"d7:command4:pinge"),
        None
    );
    assert_eq!(f.ng.calls(), 0);
}

#[test]
fn srtp_passes_through_and_a_conversion_is_refused_not_downgraded() {
    let mut f = Fixture::new();
    let savp = sdp("10.0.0.2", 4000, "RTP/SAVP");
    let r = f.call(&kamailio("offer", "c5", "ft", None, &savp, &["RTP/AVP"]));
    assert_eq!(s(&r, "result"), "error");
    assert!(
        s(&r, "error-reason").contains("RTP/SAVP to RTP/AVP"),
        "{r:?}"
    );
    assert_eq!(f.ng.calls(), 0);
    let mut msg = kamailio("offer", "c5", "ft", None, &savp, &[]);
    if let Value::Dict(items) = &mut msg {
        items.insert(
            0,
            (Bytes::from_static(b"transport-protocol"), t("RTP/SAVP")),
        );
    }
    let r = f.call(&msg);
    assert_eq!(s(&r, "result"), "ok", "{r:?}");
    assert!(s(&r, "sdp").contains("RTP/SAVP 0 8 101"));
}

#[test]
fn without_replace_origin_the_origin_line_is_kept() {
    let mut f = Fixture::new();
    let msg = d(vec![
        ("sdp", t(&sdp("10.0.0.2", 4000, "RTP/AVP"))),
        ("call-id", t("c6")),
        ("from-tag", t("ft")),
        ("command", t("offer")),
    ]);
    let r = f.call(&msg);
    let o = s(&r, "sdp");
    assert!(
        o.contains("o=- 1001 1 IN IP4 10.0.0.2") && o.contains("c=IN IP4 203.0.113.5"),
        "{o}"
    );
}

#[test]
fn asymmetric_flag_sets_the_senders_leg() {
    let mut f = Fixture::new();
    let (for_callee, for_caller) =
        f.setup("c7", &["trust-address", "asymmetric"], &["trust-address"]);
    let now = f.now;
    // The caller sends from two sources; both pass (asymmetric), nothing latches.
    for src in ["10.0.0.2:7000", "10.0.0.2:7002"] {
        assert!(
            f.ng.relay()
                .handle_datagram(now, for_caller, a(src), &mut rtp(1))
                .is_some()
        );
    }
    // The callee's leg is symmetric: a second source is dropped.
    assert!(
        f.ng.relay()
            .handle_datagram(now, for_callee, a("10.0.0.3:5000"), &mut rtp(1))
            .is_some()
    );
    assert!(
        f.ng.relay()
            .handle_datagram(now, for_callee, a("10.0.0.9:5000"), &mut rtp(2))
            .is_none()
    );
}

#[test]
fn a_reoffer_from_the_callee_updates_the_callee_side() {
    let mut f = Fixture::new();
    let (_, for_caller) = f.setup("c8", &["trust-address"], &["trust-address"]);
    // The callee re-INVITEs from a new port: its From tag is tt.
    let r = f.call(&kamailio(
        "offer",
        "c8",
        "tt",
        Some("ft"),
        &sdp("10.0.0.3", 6000, "RTP/AVP"),
        &["trust-address"],
    ));
    assert_eq!(
        m_port(s(&r, "sdp")),
        for_caller,
        "same ports toward the caller"
    );
    assert_eq!(f.ng.relay().ports_in_use(), 4);
    let now = f.now;
    let fwd =
        f.ng.relay()
            .handle_datagram(now, for_caller, a("10.0.0.2:4000"), &mut rtp(1));
    assert_eq!(fwd.map(|x| x.dest), Some(a("10.0.0.3:6000")));
}

#[test]
fn a_call_without_media_is_deleted_after_the_media_timeout() {
    let mut f = Fixture::new();
    f.setup("c9", &[], &[]);
    let at = f.ng.poll_timeout().expect("armed");
    assert_eq!(f.ng.handle_timeout(at), vec!["c9".to_string()]);
    assert_eq!((f.ng.calls(), f.ng.relay().ports_in_use()), (0, 0));
    assert_eq!(f.ng.stats().media_timeouts, 1);
}

#[test]
fn the_port_pool_bounds_calls_with_an_error_reply() {
    let mut f = Fixture::new();
    // 100 ports = 50 pairs = 25 calls.
    for i in 0..25 {
        let r = f.call(&kamailio(
            "offer",
            &format!("p{i}"),
            "ft",
            None,
            &sdp("10.0.0.2", 4000, "RTP/AVP"),
            &[],
        ));
        assert_eq!(s(&r, "result"), "ok");
    }
    let r = f.call(&kamailio(
        "offer",
        "p25",
        "ft",
        None,
        &sdp("10.0.0.2", 4000, "RTP/AVP"),
        &[],
    ));
    assert_eq!(
        (s(&r, "result"), s(&r, "error-reason")),
        ("error", "Ran out of ports")
    );
    assert_eq!(f.ng.calls(), 25);
}

#[test]
fn an_unanswered_call_is_deleted_after_the_setup_timeout() {
    let mut f = Fixture::new();
    let r = f.call(&kamailio(
        "offer",
        "u1",
        "ft",
        None,
        &sdp("10.0.0.2", 4000, "RTP/AVP"),
        &[],
    ));
    assert_eq!(s(&r, "result"), "ok");
    let t0 = f.now;
    assert!(
        f.ng.handle_timeout(t0 + Duration::from_secs(299))
            .is_empty()
    );
    assert_eq!(
        f.ng.handle_timeout(t0 + Duration::from_secs(300)),
        vec!["u1".to_string()]
    );
    assert_eq!((f.ng.calls(), f.ng.relay().ports_in_use()), (0, 0));
    assert_eq!(f.ng.stats().setup_timeouts, 1);
}

#[test]
fn one_silent_stream_does_not_end_a_call_whose_other_stream_flows() {
    let mut f = Fixture::new();
    let two = |ip: &str, port: u16| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\nm=audio {} RTP/AVP 0\r\n",
            port + 2
        )
    };
    let r = f.call(&kamailio(
        "offer",
        "m1",
        "ft",
        None,
        &two("10.0.0.2", 4000),
        &[],
    ));
    assert_eq!(s(&r, "result"), "ok");
    let r = f.call(&kamailio(
        "answer",
        "m1",
        "ft",
        Some("tt"),
        &two("10.0.0.3", 5000),
        &[],
    ));
    let for_caller = m_port(s(&r, "sdp"));
    assert_eq!(f.ng.relay().ports_in_use(), 8);
    // The first stream flows at +5 s; the second never does.
    let t0 = f.now;
    let mid = t0 + Duration::from_secs(5);
    assert!(
        f.ng.relay()
            .handle_datagram(mid, for_caller, a("10.0.0.2:4000"), &mut rtp(1))
            .is_some()
    );
    assert!(
        f.ng.handle_timeout(t0 + Duration::from_secs(10)).is_empty(),
        "one stream still flows"
    );
    assert_eq!(f.ng.calls(), 1);
    assert_eq!(
        f.ng.handle_timeout(t0 + Duration::from_secs(15)),
        vec!["m1".to_string()]
    );
    assert_eq!((f.ng.calls(), f.ng.relay().ports_in_use()), (0, 0));
}

/// What the control told the recorder: (opened Call-IDs, codecs per side of the last update,
/// closed recordings).
type Told = std::sync::Arc<std::sync::Mutex<(Vec<String>, Vec<(bool, usize)>, Vec<u64>)>>;

struct Recorder(Told);

impl crate::server::relay::CallRecorder for Recorder {
    fn open(&mut self, call_id: &str, _now: Instant) -> u64 {
        let mut t = self.0.lock().expect("lock");
        t.0.push(call_id.to_string());
        t.0.len() as u64
    }
    fn set_codecs(
        &mut self,
        _recording: u64,
        side: crate::media::relay::Side,
        codecs: Vec<(u8, crate::sdp::AudioCodec)>,
    ) {
        let caller = side == crate::media::relay::Side::Caller;
        self.0.lock().expect("lock").1.push((caller, codecs.len()));
    }
    fn close(&mut self, recording: u64, _now: Instant) {
        self.0.lock().expect("lock").2.push(recording);
    }
}

#[test]
fn record_call_records_from_the_answer_to_the_delete() {
    let told = Told::default();
    let mut f = Fixture::new();
    f.ng = std::mem::replace(
        &mut f.ng,
        NgControl::new(
            Relay::new(RelayConfig::default()),
            NgConfig::new("203.0.113.5".parse().expect("ip")),
        ),
    )
    .with_recorder(Box::new(Recorder(told.clone())));
    // A call without the flag is not recorded.
    f.setup("plain", &[], &[]);
    assert!(told.lock().expect("lock").0.is_empty());
    let (for_callee, for_caller) = f.setup("rec", &["record-call"], &[]);
    {
        let t = told.lock().expect("lock");
        assert_eq!(t.0, ["rec"]);
        // Both sides' codecs: PCMU and PCMA (telephone-event is not decoded).
        assert!(
            t.1.contains(&(true, 2)) && t.1.contains(&(false, 2)),
            "{:?}",
            t.1
        );
    }
    // The relay copies the call's RTP to its tap (tested in media::relay); the delete closes.
    assert_ne!(for_callee, for_caller);
    let r = f.call(&d(vec![
        ("call-id", t("rec")),
        ("from-tag", t("ft")),
        ("command", t("delete")),
    ]));
    assert_eq!(s(&r, "result"), "ok", "{r:?}");
    assert_eq!(told.lock().expect("lock").2, [1]);
}
