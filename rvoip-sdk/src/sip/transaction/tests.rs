//! Transaction state machines on simulated time (RFC 3261 §17, RFC 6026).
use super::keys::is_rfc3261_branch;
use super::*;
use crate::sip::msg::Limits;

const SRC: &str = "192.0.2.10:5060";

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn msg(text: &str) -> Message {
    let t = text.replace("\r\n", "\n").replace('\n', "\r\n");
    Message::parse(Bytes::from(t), &Limits::default()).expect("test message parses")
}

fn req(text: &str) -> Request {
    match msg(text) {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

fn parse_bytes(b: &Bytes) -> Message {
    Message::parse(b.clone(), &Limits::default()).expect("transmitted message parses")
}

fn invite_text(branch: &str) -> String {
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch={branch}\n\
         Max-Forwards: 70\n\
         Route: <sip:p1.example.com;lr>\n\
         Route: <sip:p2.example.com;lr>\n\
         To: Bob <sip:bob@biloxi.example.com>\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\n\
         CSeq: 314159 INVITE\n\
         Contact: <sip:alice@pc33.atlanta.example.com>\n\
         Content-Length: 0\n\n"
    )
}

fn request_text(method: &str, branch: &str, via_extra: &str) -> String {
    format!(
        "{method} sip:bob@biloxi.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com:5070;branch={branch}{via_extra}\n\
         Max-Forwards: 70\n\
         To: Bob <sip:bob@biloxi.example.com>\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\n\
         CSeq: 314159 {method}\n\
         Content-Length: 0\n\n"
    )
}

fn response_text(status: u16, branch: &str, method: &str, to_tag: Option<&str>) -> String {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SIP/2.0 {status} {}\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch={branch}\n\
         To: Bob <sip:bob@biloxi.example.com>{tag}\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\n\
         CSeq: 314159 {method}\n\
         Content-Length: 0\n\n",
        crate::sip::msg::reason_phrase(status)
    )
}

fn transmits(l: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}

fn events(l: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

/// Runs timers until nothing is pending, recording (offset from `base`, transmits, events) at
/// every firing.
fn run_timers(l: &mut TransactionLayer, base: Instant) -> Vec<(Duration, usize, Vec<TxEvent>)> {
    let mut out = Vec::new();
    while let Some(at) = l.poll_timeout() {
        l.handle_timeout(at);
        let n = transmits(l).len();
        out.push((at - base, n, events(l)));
        assert!(out.len() < 1000, "timer loop");
    }
    out
}

fn status_of(b: &Bytes) -> u16 {
    match parse_bytes(b) {
        Message::Response(r) => r.status,
        Message::Request(_) => panic!("not a response"),
    }
}

/// The server transaction created by the first Request event.
fn server_tx(evs: &[TxEvent]) -> ServerTxId {
    match evs {
        [TxEvent::Request { tx: Some(tx), .. }] => *tx,
        other => panic!("expected one Request event, got {other:?}"),
    }
}

/// A copy of `r` with another status (the request is gone once a final response went out).
fn with_status(r: &Response, status: u16) -> Response {
    let mut r = r.clone();
    r.status = status;
    r
}

fn response_for(l: &TransactionLayer, tx: ServerTxId, status: u16, tag: Option<&str>) -> Response {
    let mut r = Response::for_request(l.server_request(tx).expect("live"), status);
    if let Some(tag) = tag {
        let to = r.headers.get(&HeaderName::To).expect("To").to_string();
        r.headers.set(HeaderName::To, format!("{to};tag={tag}"));
    }
    r
}

#[test]
fn invite_client_timer_a_and_b() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = new_branch();
    let id = l.send_request(
        base,
        req(&invite_text(&b)),
        sa("198.51.100.1:5060"),
        Transport::Udp,
    );
    let tx = transmits(&mut l);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].dest, sa("198.51.100.1:5060"));
    assert_eq!(l.len(), (1, 0));
    let fired = run_timers(&mut l, base);
    let retx: Vec<Duration> = fired.iter().filter(|f| f.1 > 0).map(|f| f.0).collect();
    assert_eq!(
        retx,
        vec![ms(500), ms(1500), ms(3500), ms(7500), ms(15500), ms(31500)]
    );
    let last = fired.last().expect("fired");
    assert_eq!(last.0, ms(32_000));
    assert_eq!(last.1, 0);
    assert!(matches!(last.2.as_slice(), [TxEvent::Timeout { tx }] if *tx == id));
    assert_eq!(l.len(), (0, 0));
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn non_invite_client_timer_e_capped_and_timer_f() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = new_branch();
    let id = l.send_request(
        base,
        req(&request_text("OPTIONS", &b, "")),
        sa(SRC),
        Transport::Udp,
    );
    assert_eq!(transmits(&mut l).len(), 1);
    let fired = run_timers(&mut l, base);
    let retx: Vec<u64> = fired
        .iter()
        .filter(|f| f.1 > 0)
        .map(|f| f.0.as_millis() as u64)
        .collect();
    assert_eq!(
        retx,
        vec![
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    let last = fired.last().expect("fired");
    assert_eq!(last.0, ms(32_000));
    assert!(matches!(last.2.as_slice(), [TxEvent::Timeout { tx }] if *tx == id));
    assert_eq!(l.len(), (0, 0));
}

#[test]
fn non_invite_client_proceeding_retransmits_at_t2_and_timer_k() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = new_branch();
    let id = l.send_request(
        base,
        req(&request_text("REGISTER", &b, "")),
        sa(SRC),
        Transport::Udp,
    );
    transmits(&mut l);
    l.handle_message(
        base + ms(100),
        msg(&response_text(100, &b, "REGISTER", None)),
        sa(SRC),
        Transport::Udp,
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { tx, resp }] if *tx == id && resp.status == 100)
    );
    assert_eq!(l.poll_timeout(), Some(base + ms(500)));
    l.handle_timeout(base + ms(500));
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(l.poll_timeout(), Some(base + ms(4500)));
    // Final response: Completed, retransmissions absorbed, Timer K = T4.
    l.handle_message(
        base + ms(1000),
        msg(&response_text(200, &b, "REGISTER", Some("x"))),
        sa(SRC),
        Transport::Udp,
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { resp, .. }] if resp.status == 200)
    );
    l.handle_message(
        base + ms(1100),
        msg(&response_text(200, &b, "REGISTER", Some("x"))),
        sa(SRC),
        Transport::Udp,
    );
    assert!(events(&mut l).is_empty());
    assert_eq!(l.poll_timeout(), Some(base + ms(6000)));
    l.handle_timeout(base + ms(6000));
    assert!(transmits(&mut l).is_empty());
    assert_eq!(l.len(), (0, 0));
}

#[test]
fn invite_client_non_2xx_final_is_acked_and_absorbed() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = new_branch();
    let dest = sa("198.51.100.1:5060");
    let id = l.send_request(base, req(&invite_text(&b)), dest, Transport::Udp);
    transmits(&mut l);
    assert!(!l.client_has_provisional(id));
    l.handle_message(
        base + ms(100),
        msg(&response_text(180, &b, "INVITE", Some("8321234356"))),
        dest,
        Transport::Udp,
    );
    assert!(l.client_has_provisional(id));
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { resp, .. }] if resp.status == 180)
    );
    // Timer A stopped, Timer B no longer runs in Proceeding.
    l.handle_timeout(base + Duration::from_secs(40));
    assert!(transmits(&mut l).is_empty());
    assert!(events(&mut l).is_empty());
    assert_eq!(l.len(), (1, 0));

    let now = base + Duration::from_secs(41);
    l.handle_message(
        now,
        msg(&response_text(486, &b, "INVITE", Some("8321234356"))),
        dest,
        Transport::Udp,
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { tx, resp }] if *tx == id && resp.status == 486)
    );
    let tx = transmits(&mut l);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].dest, dest);
    let Message::Request(ack) = parse_bytes(&tx[0].bytes) else {
        panic!("ACK is a request")
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri.to_string(), "sip:bob@biloxi.example.com");
    let vias: Vec<_> = ack.headers.get_all(&HeaderName::Via).collect();
    assert_eq!(vias.len(), 1);
    assert_eq!(
        ack.headers
            .top_via()
            .expect("via")
            .branch()
            .map(|s| s.to_string()),
        Some(b.clone())
    );
    let routes: Vec<String> = ack
        .headers
        .get_all(&HeaderName::Route)
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        routes,
        vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(
        ack.headers.to().expect("To").tag().map(|s| s.to_string()),
        Some("8321234356".into())
    );
    assert_eq!(
        ack.headers
            .from()
            .expect("From")
            .tag()
            .map(|s| s.to_string()),
        Some("1928301774".into())
    );
    assert_eq!(
        ack.headers.call_id().map(|c| c.to_string()),
        Some("a84b4c76e66710@pc33.atlanta.example.com".into())
    );
    let cseq = ack.headers.cseq().expect("CSeq");
    assert_eq!((cseq.seq, cseq.method), (314159, Method::Ack));
    assert!(ack.headers.get(&HeaderName::Contact).is_none());

    // A retransmitted 486 is absorbed and re-ACKed.
    l.handle_message(
        now + ms(500),
        msg(&response_text(486, &b, "INVITE", Some("8321234356"))),
        dest,
        Transport::Udp,
    );
    assert!(events(&mut l).is_empty());
    let again = transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].bytes, tx[0].bytes);
    // Timer D: 32 s.
    assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(32)));
    l.handle_timeout(now + Duration::from_secs(32));
    assert_eq!(l.len(), (0, 0));
    // Later retransmissions are stray.
    l.handle_message(
        now + Duration::from_secs(33),
        msg(&response_text(486, &b, "INVITE", Some("8321234356"))),
        dest,
        Transport::Udp,
    );
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::StrayResponse { .. }]
    ));
}

#[test]
fn invite_client_2xx_retransmissions_pass_up_in_accepted() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = new_branch();
    let dest = sa("198.51.100.1:5060");
    let id = l.send_request(base, req(&invite_text(&b)), dest, Transport::Udp);
    transmits(&mut l);
    for i in 0..3u64 {
        l.handle_message(
            base + ms(100 + i * 500),
            msg(&response_text(200, &b, "INVITE", Some("t"))),
            dest,
            Transport::Udp,
        );
        assert!(
            matches!(events(&mut l).as_slice(), [TxEvent::Response { tx, resp }] if *tx == id && resp.status == 200)
        );
        assert!(
            transmits(&mut l).is_empty(),
            "no ACK for a 2xx from the transaction"
        );
    }
    // Timer A stopped; Timer M at 64*T1 after the first 2xx.
    assert_eq!(
        l.poll_timeout(),
        Some(base + ms(100) + Duration::from_secs(32))
    );
    let fired = run_timers(&mut l, base);
    assert!(fired.iter().all(|f| f.1 == 0 && f.2.is_empty()));
    assert_eq!(l.len(), (0, 0));
}

#[test]
fn cancel_client_transaction_is_separate_from_invite() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = new_branch();
    let dest = sa("198.51.100.1:5060");
    let inv = l.send_request(base, req(&invite_text(&b)), dest, Transport::Udp);
    let cancel = l.send_request(
        base,
        req(&request_text("CANCEL", &b, "")),
        dest,
        Transport::Udp,
    );
    assert_ne!(inv, cancel);
    assert_eq!(
        l.client_request(cancel).map(|r| r.method.clone()),
        Some(Method::Cancel)
    );
    l.handle_message(
        base + ms(10),
        msg(&response_text(200, &b, "CANCEL", Some("t"))),
        dest,
        Transport::Udp,
    );
    assert!(matches!(events(&mut l).as_slice(), [TxEvent::Response { tx, .. }] if *tx == cancel));
    l.handle_message(
        base + ms(20),
        msg(&response_text(487, &b, "INVITE", Some("t"))),
        dest,
        Transport::Udp,
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { tx, resp }] if *tx == inv && resp.status == 487)
    );
}

#[test]
fn server_invite_gets_100_trying_and_absorbs_retransmissions() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = "z9hG4bK74bf9";
    let source = sa("192.0.2.10:40000");
    l.handle_message(base, msg(&invite_text(b)), source, Transport::Udp);
    let tx = server_tx(&events(&mut l));
    let t = transmits(&mut l);
    assert_eq!(t.len(), 1);
    // No rport, no port in the Via: (source IP, 5060).
    assert_eq!(t[0].dest, sa("192.0.2.10:5060"));
    let Message::Response(trying) = parse_bytes(&t[0].bytes) else {
        panic!("response")
    };
    assert_eq!(trying.status, 100);
    assert_eq!(trying.headers.to().expect("To").tag(), None);
    assert_eq!(l.len(), (0, 1));
    assert_eq!(
        l.server_request(tx).map(|r| r.method.clone()),
        Some(Method::Invite)
    );

    // Retransmission: absorbed, 100 re-sent.
    l.handle_message(base + ms(500), msg(&invite_text(b)), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    let t2 = transmits(&mut l);
    assert_eq!(t2.len(), 1);
    assert_eq!(status_of(&t2[0].bytes), 100);

    let ringing = response_for(&l, tx, 180, Some("a6c85cf"));
    assert!(l.respond(base + ms(600), tx, ringing));
    assert_eq!(status_of(&transmits(&mut l)[0].bytes), 180);
    l.handle_message(
        base + ms(1000),
        msg(&invite_text(b)),
        source,
        Transport::Udp,
    );
    assert!(events(&mut l).is_empty());
    assert_eq!(status_of(&transmits(&mut l)[0].bytes), 180);
    assert!(!l.server_is_final(tx));
}

#[test]
fn server_invite_non_2xx_timer_g_until_ack_then_timer_i() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = "z9hG4bK74bf9";
    let source = sa("192.0.2.10:5060");
    l.handle_message(base, msg(&invite_text(b)), source, Transport::Udp);
    let tx = server_tx(&events(&mut l));
    transmits(&mut l);
    let busy = response_for(&l, tx, 486, Some("a6c85cf"));
    assert!(l.respond(base, tx, busy.clone()));
    assert!(l.server_is_final(tx));
    assert_eq!(status_of(&transmits(&mut l)[0].bytes), 486);
    // A second final is refused.
    assert!(!l.respond(base, tx, with_status(&busy, 500)));

    let mut times = Vec::new();
    while let Some(at) = l.poll_timeout() {
        if at > base + ms(12_000) {
            break;
        }
        l.handle_timeout(at);
        let t = transmits(&mut l);
        assert_eq!(t.len(), 1);
        assert_eq!(status_of(&t[0].bytes), 486);
        times.push((at - base).as_millis() as u64);
    }
    assert_eq!(times, vec![500, 1500, 3500, 7500, 11500]);

    // A retransmitted INVITE gets the 486 again.
    l.handle_message(
        base + ms(11_600),
        msg(&invite_text(b)),
        source,
        Transport::Udp,
    );
    assert_eq!(status_of(&transmits(&mut l)[0].bytes), 486);

    // The ACK (same branch) is absorbed: no event, no more retransmissions.
    let ack = request_text("ACK", b, "").replace(":5070", "");
    let ack = ack.replace(
        "To: Bob <sip:bob@biloxi.example.com>",
        "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
    );
    let now = base + ms(12_000);
    l.handle_message(now, msg(&ack), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    // ACK retransmissions absorbed too.
    l.handle_message(now + ms(10), msg(&ack), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    // Timer I = T4, nothing transmitted until then.
    assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(5)));
    let fired = run_timers(&mut l, base);
    assert!(fired.iter().all(|f| f.1 == 0 && f.2.is_empty()));
    assert_eq!(l.len(), (0, 0));
}

#[test]
fn server_invite_timer_h_without_ack() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    l.handle_message(base, msg(&invite_text("z9hG4bKh")), sa(SRC), Transport::Udp);
    let tx = server_tx(&events(&mut l));
    let busy = response_for(&l, tx, 486, Some("x"));
    assert!(l.respond(base, tx, busy));
    transmits(&mut l);
    let fired = run_timers(&mut l, base);
    let last = fired.last().expect("fired");
    assert_eq!(last.0, Duration::from_secs(32));
    assert!(matches!(last.2.as_slice(), [TxEvent::AckTimeout { tx: t }] if *t == tx));
    // G capped at T2: 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5.
    let retx = fired.iter().filter(|f| f.1 > 0).count();
    assert_eq!(retx, 4 + 6);
    assert_eq!(l.len(), (0, 0));
    assert!(!l.respond(
        base + Duration::from_secs(33),
        tx,
        Response::for_request(&req(&invite_text("z9hG4bKh")), 200)
    ));
}

#[test]
fn server_invite_2xx_accepted_and_ack_for_2xx_passes_up() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = "z9hG4bKinv2xx";
    let source = sa("192.0.2.10:5060");
    l.handle_message(base, msg(&invite_text(b)), source, Transport::Udp);
    let tx = server_tx(&events(&mut l));
    transmits(&mut l);
    let ok = response_for(&l, tx, 200, Some("t2"));
    assert!(l.respond(base, tx, ok.clone()));
    assert_eq!(transmits(&mut l).len(), 1);
    // 2xx retransmissions (forwarded by a proxy) are allowed; other codes are not.
    assert!(l.respond(base + ms(500), tx, ok.clone()));
    assert_eq!(transmits(&mut l).len(), 1);
    assert!(!l.respond(base + ms(500), tx, with_status(&ok, 486)));
    assert!(!l.respond(base + ms(500), tx, with_status(&ok, 180)));
    // A retransmitted INVITE is absorbed and nothing re-sent (the TU retransmits 2xx).
    l.handle_message(base + ms(600), msg(&invite_text(b)), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    assert!(transmits(&mut l).is_empty());
    // The ACK for the 2xx has its own branch: passed up with tx None.
    let ack = request_text("ACK", "z9hG4bKack2xx", "");
    l.handle_message(base + ms(700), msg(&ack), source, Transport::Udp);
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Request { tx: None, req, .. }] if req.method == Method::Ack)
    );
    // Timer L.
    assert_eq!(l.poll_timeout(), Some(base + Duration::from_secs(32)));
    l.handle_timeout(base + Duration::from_secs(32));
    assert_eq!(l.len(), (0, 0));
}

#[test]
fn non_invite_server_retransmission_gets_last_final() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = "z9hG4bKopt1";
    let source = sa("192.0.2.10:5070");
    let text = request_text("OPTIONS", b, "");
    l.handle_message(base, msg(&text), source, Transport::Udp);
    let tx = server_tx(&events(&mut l));
    assert!(transmits(&mut l).is_empty(), "no 100 Trying for non-INVITE");
    // Trying: retransmissions absorbed silently.
    l.handle_message(base + ms(500), msg(&text), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    assert!(transmits(&mut l).is_empty());
    let ok = response_for(&l, tx, 200, Some("s"));
    assert!(l.respond(base + ms(600), tx, ok.clone()));
    let t = transmits(&mut l);
    assert_eq!(t[0].dest, sa("192.0.2.10:5070"));
    l.handle_message(base + ms(1500), msg(&text), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    let t2 = transmits(&mut l);
    assert_eq!(t2.len(), 1);
    assert_eq!(t2[0].bytes, t[0].bytes);
    assert!(!l.respond(base + ms(1600), tx, with_status(&ok, 200)));
    // Timer J = 64*T1.
    assert_eq!(
        l.poll_timeout(),
        Some(base + ms(600) + Duration::from_secs(32))
    );
    l.handle_timeout(base + ms(600) + Duration::from_secs(32));
    assert_eq!(l.len(), (0, 0));
    // After J a retransmission is a new transaction.
    l.handle_message(
        base + Duration::from_secs(40),
        msg(&text),
        source,
        Transport::Udp,
    );
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::Request { tx: Some(_), .. }]
    ));
}

#[test]
fn reliable_transport_no_retransmissions_and_zero_wait_timers() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let dest = sa("198.51.100.1:5060");
    // INVITE client over TCP: no Timer A; the 486 ends it at once (Timer D = 0).
    let b = new_branch();
    l.send_request(base, req(&invite_text(&b)), dest, Transport::Tcp);
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(l.poll_timeout(), Some(base + Duration::from_secs(32)));
    l.handle_message(
        base + ms(50),
        msg(&response_text(486, &b, "INVITE", Some("x"))),
        dest,
        Transport::Tcp,
    );
    assert_eq!(transmits(&mut l).len(), 1, "the ACK");
    assert_eq!(events(&mut l).len(), 1);
    assert_eq!(l.len(), (0, 0));
    // non-INVITE client over TCP: no Timer E; Timer K = 0.
    let b2 = new_branch();
    l.send_request(
        base,
        req(&request_text("OPTIONS", &b2, "")),
        dest,
        Transport::Tcp,
    );
    transmits(&mut l);
    l.handle_timeout(base + Duration::from_secs(10));
    assert!(transmits(&mut l).is_empty());
    l.handle_message(
        base + Duration::from_secs(10),
        msg(&response_text(200, &b2, "OPTIONS", Some("x"))),
        dest,
        Transport::Tcp,
    );
    assert_eq!(events(&mut l).len(), 1);
    assert_eq!(l.len(), (0, 0));
    // non-INVITE server over TCP: response to the connection's source, Timer J = 0.
    let source = sa("192.0.2.10:51234");
    l.handle_message(
        base,
        msg(&request_text("OPTIONS", "z9hG4bKtcp1", "")),
        source,
        Transport::Tcp,
    );
    let tx = server_tx(&events(&mut l));
    assert!(l.respond(base, tx, response_for(&l, tx, 200, Some("y"))));
    let t = transmits(&mut l);
    assert_eq!((t[0].dest, t[0].transport), (source, Transport::Tcp));
    assert_eq!(l.len(), (0, 0));
    // INVITE server over TCP: no Timer G; the ACK ends it at once (Timer I = 0).
    l.handle_message(
        base,
        msg(&invite_text("z9hG4bKtcp2")),
        source,
        Transport::Tcp,
    );
    let tx = server_tx(&events(&mut l));
    transmits(&mut l);
    assert!(l.respond(base, tx, response_for(&l, tx, 486, Some("z"))));
    transmits(&mut l);
    assert_eq!(
        l.poll_timeout(),
        Some(base + Duration::from_secs(32)),
        "only Timer H"
    );
    let ack = request_text("ACK", "z9hG4bKtcp2", "").replace(":5070", "");
    l.handle_message(base + ms(100), msg(&ack), source, Transport::Tcp);
    assert!(events(&mut l).is_empty());
    assert_eq!(l.len(), (0, 0));
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn cancel_finds_the_invite_server_transaction() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = "z9hG4bKcancelme";
    let source = sa("192.0.2.10:5060");
    l.handle_message(base, msg(&invite_text(b)), source, Transport::Udp);
    let inv = server_tx(&events(&mut l));
    transmits(&mut l);
    let cancel_text = request_text("CANCEL", b, "").replace(":5070", "");
    l.handle_message(base + ms(100), msg(&cancel_text), source, Transport::Udp);
    let evs = events(&mut l);
    let ctx = server_tx(&evs);
    assert_ne!(ctx, inv);
    let TxEvent::Request { req: cancel, .. } = &evs[0] else {
        panic!()
    };
    assert_eq!(l.matching_invite(cancel), Some(inv));
    // The INVITE transaction is untouched by the CANCEL.
    assert!(transmits(&mut l).is_empty());
    assert_eq!(l.len(), (0, 2));
    // Different branch or different sent-by: no match.
    assert_eq!(
        l.matching_invite(&req(
            &request_text("CANCEL", "z9hG4bKother", "").replace(":5070", "")
        )),
        None
    );
    assert_eq!(
        l.matching_invite(&req(&request_text("CANCEL", b, ""))),
        None
    );
}

#[test]
fn stray_response_and_unknown_tx() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let source = sa("198.51.100.7:5060");
    l.handle_message(
        base,
        msg(&response_text(200, "z9hG4bKnobody", "INVITE", Some("q"))),
        source,
        Transport::Udp,
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::StrayResponse { resp, source: s, .. }] if resp.status == 200 && *s == source)
    );
    assert!(!l.respond(
        base,
        ServerTxId(999),
        Response::for_request(&req(&invite_text("z9hG4bKx")), 200)
    ));
    assert!(l.server_request(ServerTxId(999)).is_none());
    assert!(l.client_request(ClientTxId(999)).is_none());
    assert!(!l.client_has_provisional(ClientTxId(999)));
    assert!(!l.transport_error(ClientTxId(999)));
    l.send_stateless(source, Transport::Udp, Bytes::from_static(b"x"));
    assert_eq!(transmits(&mut l).len(), 1);
}

#[test]
fn transport_error_times_out_client_transaction() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let id = l.send_request(
        base,
        req(&request_text("OPTIONS", &new_branch(), "")),
        sa(SRC),
        Transport::Tcp,
    );
    assert!(l.transport_error(id));
    assert!(matches!(events(&mut l).as_slice(), [TxEvent::Timeout { tx }] if *tx == id));
    assert_eq!(l.len(), (0, 0));
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn connection_failure_ends_only_the_transactions_to_that_peer() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let dead = sa(SRC);
    let other = sa("203.0.113.9:5060");
    let to_dead = l.send_request(
        base,
        req(&request_text("OPTIONS", &new_branch(), "")),
        dead,
        Transport::Tcp,
    );
    let elsewhere = l.send_request(
        base,
        req(&request_text("OPTIONS", &new_branch(), "")),
        other,
        Transport::Tcp,
    );
    let over_udp = l.send_request(
        base,
        req(&request_text("OPTIONS", &new_branch(), "")),
        dead,
        Transport::Udp,
    );
    let _ = transmits(&mut l);
    // UDP has no connections; nothing ends.
    assert_eq!(l.connection_failed(dead, Transport::Udp, "refused"), 0);
    assert_eq!(l.connection_failed(dead, Transport::Tcp, "refused"), 1);
    let evs = events(&mut l);
    assert!(
        matches!(evs.as_slice(), [TxEvent::TransportError { tx, request: Some(r), reason }] if *tx == to_dead && reason == "refused" && r.method == crate::sip::msg::Method::Options),
        "{evs:?}"
    );
    assert!(l.client_request(to_dead).is_none());
    assert!(l.client_request(elsewhere).is_some());
    assert!(l.client_request(over_udp).is_some());
    // Already ended: a second report changes nothing.
    assert_eq!(l.connection_failed(dead, Transport::Tcp, "refused"), 0);
}

#[test]
fn rport_sends_responses_to_the_source_port() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let source = sa("203.0.113.5:61000");
    l.handle_message(
        base,
        msg(&request_text("OPTIONS", "z9hG4bKrp", ";rport")),
        source,
        Transport::Udp,
    );
    let tx = server_tx(&events(&mut l));
    assert!(l.respond(base, tx, response_for(&l, tx, 200, Some("a"))));
    assert_eq!(transmits(&mut l)[0].dest, source);
    // Without rport: the Via port.
    l.handle_message(
        base,
        msg(&request_text("OPTIONS", "z9hG4bKnorp", "")),
        source,
        Transport::Udp,
    );
    let tx = server_tx(&events(&mut l));
    assert!(l.respond(base, tx, response_for(&l, tx, 200, Some("a"))));
    assert_eq!(transmits(&mut l)[0].dest, sa("203.0.113.5:5070"));
}

#[test]
fn non_invite_server_proceeding_resends_provisional_and_ack_in_accepted_passes_up() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let source = sa("192.0.2.10:5070");
    let text = request_text("SUBSCRIBE", "z9hG4bKsub", "");
    l.handle_message(base, msg(&text), source, Transport::Udp);
    let tx = server_tx(&events(&mut l));
    assert!(l.respond(base, tx, response_for(&l, tx, 100, None)));
    transmits(&mut l);
    l.handle_message(base + ms(500), msg(&text), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    assert_eq!(status_of(&transmits(&mut l)[0].bytes), 100);
    assert!(!l.server_is_final(tx));

    // RFC 6026: an ACK matching an INVITE server transaction in Accepted goes to the TU.
    let b = "z9hG4bKacc";
    let src = sa("192.0.2.10:5060");
    l.handle_message(base, msg(&invite_text(b)), src, Transport::Udp);
    let inv = server_tx(&events(&mut l));
    assert!(l.respond(base, inv, response_for(&l, inv, 200, Some("t"))));
    let ack = request_text("ACK", b, "").replace(":5070", "");
    l.handle_message(base + ms(100), msg(&ack), src, Transport::Udp);
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::Request { tx: None, .. }]
    ));
    assert_eq!(l.len(), (0, 2));
}

const BADBRANCH: &str = "OPTIONS sip:user@example.com SIP/2.0\n\
    To: sip:user@example.com\n\
    From: sip:caller@example.org;tag=33242\n\
    Max-Forwards: 3\n\
    Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\n\
    Accept: application/sdp\n\
    Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\n\
    CSeq: 8 OPTIONS\n\
    l: 0\n\n";

#[test]
fn rfc4475_badbranch_matches_by_rfc2543_rules() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let source = sa("192.0.2.1:5060");
    l.handle_message(base, msg(BADBRANCH), source, Transport::Udp);
    let tx = server_tx(&events(&mut l));
    // Retransmission: absorbed.
    l.handle_message(base + ms(500), msg(BADBRANCH), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    // Another request with the same bare-cookie branch but another CSeq: a new transaction.
    l.handle_message(
        base + ms(600),
        msg(&BADBRANCH.replace("CSeq: 8", "CSeq: 9")),
        source,
        Transport::Udp,
    );
    let tx2 = server_tx(&events(&mut l));
    assert_ne!(tx, tx2);
    // ... and another Call-ID too.
    l.handle_message(
        base + ms(700),
        msg(&BADBRANCH.replace("badbranch.", "other.")),
        source,
        Transport::Udp,
    );
    server_tx(&events(&mut l));
    assert_eq!(l.len(), (0, 3));
    assert!(l.respond(base + ms(800), tx, response_for(&l, tx, 200, Some("b"))));
    let t = transmits(&mut l);
    l.handle_message(base + ms(900), msg(BADBRANCH), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    assert_eq!(transmits(&mut l)[0].bytes, t[0].bytes);
    // Timer J removes it and the legacy index with it.
    l.handle_timeout(base + Duration::from_secs(60));
    assert_eq!(l.len(), (0, 2));
    l.handle_message(
        base + Duration::from_secs(61),
        msg(BADBRANCH),
        source,
        Transport::Udp,
    );
    server_tx(&events(&mut l));
}

const INV2543: &str = "INVITE sip:UserB@example.com SIP/2.0\n\
    Via: SIP/2.0/UDP iftgw.example.com\n\
    From: <sip:+13035551111@ift.client.example.net;user=phone>\n\
    Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>\n\
    To: sip:+16505552222@ss1.example.net;user=phone\n\
    Call-ID: inv2543.1717@ift.client.example.com\n\
    CSeq: 56 INVITE\n\
    Content-Length: 0\n\n";

#[test]
fn rfc4475_inv2543_retransmission_ack_and_cancel() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let source = sa("192.0.2.99:5060");
    l.handle_message(base, msg(INV2543), source, Transport::Udp);
    let tx = server_tx(&events(&mut l));
    assert_eq!(status_of(&transmits(&mut l)[0].bytes), 100);
    l.handle_message(base + ms(500), msg(INV2543), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    assert_eq!(status_of(&transmits(&mut l)[0].bytes), 100);
    // CANCEL by RFC 2543 rules.
    let cancel = req(&INV2543
        .replace("INVITE sip", "CANCEL sip")
        .replace("56 INVITE", "56 CANCEL"));
    assert_eq!(l.matching_invite(&cancel), Some(tx));
    let busy = response_for(&l, tx, 486, Some("rt"));
    assert!(l.respond(base + ms(600), tx, busy));
    transmits(&mut l);
    // ACK with the response's To tag: absorbed.
    let ack = INV2543
        .replace("INVITE sip", "ACK sip")
        .replace("56 INVITE", "56 ACK")
        .replace("user=phone\nCall-ID", "user=phone;tag=rt\nCall-ID");
    l.handle_message(base + ms(700), msg(&ack), source, Transport::Udp);
    assert!(events(&mut l).is_empty());
    l.handle_timeout(base + ms(10_000));
    assert!(transmits(&mut l).is_empty(), "Timer G stopped by the ACK");
    l.handle_timeout(base + ms(20_000));
    assert_eq!(l.len(), (0, 0));
}

#[test]
fn new_branch_is_unique_and_has_the_cookie() {
    let a = new_branch();
    let b = new_branch();
    assert_ne!(a, b);
    assert!(a.starts_with(BRANCH_MAGIC));
    assert!(is_rfc3261_branch(&a));
    assert_eq!(a.len(), BRANCH_MAGIC.len() + 16);
    let all: std::collections::HashSet<String> = (0..10_000).map(|_| new_branch()).collect();
    assert_eq!(all.len(), 10_000);
}

#[test]
fn many_transactions_terminate_and_heap_drains() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let dest = sa("198.51.100.1:5060");
    let mut branches = Vec::new();
    for _ in 0..1000 {
        let b = new_branch();
        l.send_request(
            base,
            req(&request_text("OPTIONS", &b, "")),
            dest,
            Transport::Udp,
        );
        branches.push(b);
    }
    for b in &branches {
        l.handle_message(
            base + ms(10),
            msg(&response_text(200, b, "OPTIONS", Some("z"))),
            dest,
            Transport::Udp,
        );
    }
    assert_eq!(events(&mut l).len(), 1000);
    l.handle_timeout(base + Duration::from_secs(6));
    assert_eq!(l.len(), (0, 0));
    l.handle_timeout(base + Duration::from_secs(60));
    assert_eq!(l.poll_timeout(), None);
    assert!(l.timers.is_empty());
}

/// The server's settings: the 100 Trying of an INVITE waits for the next poll and is not sent
/// when the transaction user answered first (§17.2.1), and is sent, ahead of other transmits,
/// when it did not; non-INVITE requests are not kept when asked, INVITEs always are.
#[test]
fn deferred_trying_and_requests_not_kept() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    l.set_defer_trying(true);
    l.set_keep_non_invite_requests(false);
    let source = sa("192.0.2.10:40000");
    // Answered at once: the 407 alone.
    l.handle_message(base, msg(&invite_text("z9hG4bKd1")), source, Transport::Udp);
    let tx = server_tx(&events(&mut l));
    assert!(l.server_request(tx).is_some(), "INVITEs keep their request");
    let r = response_for(&l, tx, 407, Some("t1"));
    assert!(l.respond(base, tx, r));
    let t = transmits(&mut l);
    assert_eq!(
        t.iter().map(|t| status_of(&t.bytes)).collect::<Vec<_>>(),
        [407]
    );
    // Not answered by the next poll: the 100 goes out then, first.
    l.handle_message(
        base,
        msg(&invite_text("z9hG4bKd2").replace("314159", "314160")),
        source,
        Transport::Udp,
    );
    let tx2 = server_tx(&events(&mut l));
    let t = transmits(&mut l);
    assert_eq!(
        t.iter().map(|t| status_of(&t.bytes)).collect::<Vec<_>>(),
        [100]
    );
    assert!(l.server_request(tx2).is_some());
    // A non-INVITE request is not kept; the transaction still answers.
    l.handle_message(
        base,
        msg(&request_text("OPTIONS", "z9hG4bKd3", "")),
        source,
        Transport::Udp,
    );
    let tx3 = server_tx(&events(&mut l));
    assert!(l.server_request(tx3).is_none());
    let ok = Response::for_request(&req(&request_text("OPTIONS", "z9hG4bKd3", "")), 200);
    assert!(l.respond(base, tx3, ok));
    assert_eq!(
        transmits(&mut l)
            .iter()
            .map(|t| status_of(&t.bytes))
            .collect::<Vec<_>>(),
        [200]
    );
}

#[test]
fn request_heads_only_keep_what_a_response_copies() {
    let base = Instant::now();
    let source = sa("192.0.2.10:40000");
    let mut full = TransactionLayer::new(TimerConfig::default());
    let mut heads = TransactionLayer::new(TimerConfig::default());
    heads.set_keep_request_heads(true);
    let mut kept = Vec::new();
    for l in [&mut full, &mut heads] {
        l.set_defer_trying(true);
        l.handle_message(base, msg(&invite_text("z9hG4bKh1")), source, Transport::Udp);
        let tx = server_tx(&events(l));
        let r = l
            .server_request(tx)
            .expect("an INVITE keeps its request")
            .clone();
        // The deferred 100 Trying is built from what was kept.
        let t = transmits(l);
        assert_eq!(
            t.iter().map(|t| status_of(&t.bytes)).collect::<Vec<_>>(),
            [100]
        );
        kept.push((r, t[0].bytes.clone()));
    }
    let (whole, trying_full) = &kept[0];
    let (head, trying_head) = &kept[1];
    assert_eq!(trying_full, trying_head, "the same 100 Trying either way");
    assert_eq!(head.method, whole.method);
    assert_eq!(head.uri, whole.uri);
    assert!(head.body.is_empty());
    assert!(head.headers.iter().all(|h| matches!(
        h.name,
        HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq
    )));
    assert!(head.headers.0.len() < whole.headers.0.len());
    for status in [100, 408, 487, 500] {
        assert_eq!(
            Response::for_request(head, status).to_bytes(),
            Response::for_request(whole, status).to_bytes(),
            "{status}"
        );
    }
}

#[test]
fn a_reused_client_branch_takes_the_responses_and_the_index_empties_as_transactions_end() {
    let base = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let b = new_branch();
    let text = request_text("OPTIONS", &b, "");
    let first = l.send_request(base, req(&text), sa(SRC), Transport::Udp);
    // The TU sends again on the same branch: the later transaction gets the responses.
    let second = l.send_request(base + ms(1), req(&text), sa(SRC), Transport::Udp);
    transmits(&mut l);
    l.handle_message(
        base + ms(10),
        msg(&response_text(200, &b, "OPTIONS", Some("x"))),
        sa(SRC),
        Transport::Udp,
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { tx, resp }] if *tx == second && resp.status == 200)
    );
    assert_ne!(first, second);
    // A server transaction for a request from the peer, answered.
    l.handle_message(
        base + ms(20),
        msg(&request_text("MESSAGE", "z9hG4bKsrv1", "")),
        sa(SRC),
        Transport::Udp,
    );
    let stx = server_tx(&events(&mut l));
    let ok = response_for(&l, stx, 200, Some("y"));
    assert!(l.respond(base + ms(21), stx, ok));
    assert_eq!(l.server_index.len(), 1);
    assert_eq!(
        l.client_index.len(),
        1,
        "the first branch entry was replaced"
    );
    // Every timer runs out: no transaction and no index entry is left.
    while let Some(t) = l.poll_timeout() {
        l.handle_timeout(t);
    }
    assert_eq!(l.len(), (0, 0));
    assert_eq!(l.client_index.len(), 0);
    assert_eq!(l.server_index.len(), 0);
}
