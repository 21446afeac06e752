//! The message counters and first-response latencies (`/metrics`, `Server::stats`) and the
//! `/status` report, on simulated time: every request and response of a registration and a
//! challenged, forked, answered call is counted once, retransmissions apart.

use super::*;
use crate::sip::transaction::class_index;

fn sent(h: &Harness, m: Method, status: u16) -> u64 {
    let c = h.core.tl.counts();
    c.responses_sent[crate::sip::transaction::method_index(&m)][class_index(status).unwrap()]
}

#[test]
fn a_registration_and_a_call_are_counted_exactly() {
    let mut h = Harness::new(true);
    let (n, b1, _b2) = call_bob(&mut h);
    // The callee rings 30 ms after the INVITE: that is the INVITE's first-response latency.
    h.advance(Duration::from_millis(30));
    let out = h.send_bytes(BOB1, uas_response(&b1, 180, "t1", BOB1));
    assert_eq!(resp(&out[0]).status, 180);
    h.send_bytes(BOB1, uas_response(&b1, 200, "t1", BOB1));
    // A retransmitted INVITE is absorbed, not counted as a request.
    let ts = h.core.tl.counts().requests(&Method::Invite);
    let retx = invite(n, "bob", "")
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(&format!("inv{n}"), &format!("inv{n}b"));
    h.send(ALICE, &retx);
    let c = *h.core.tl.counts();
    assert_eq!(c.requests(&Method::Invite), ts);

    // Two registrations of bob: 4 REGISTERs, 2 × 401, 2 × 200.
    assert_eq!(c.requests(&Method::Register), 4);
    assert_eq!(sent(&h, Method::Register, 401), 2);
    assert_eq!(sent(&h, Method::Register, 200), 2);
    assert_eq!(c.latency_of(&Method::Register).count, 4);
    // INVITE, 407 (no 100 Trying before an immediate final, §17.2.1), ACK (absorbed by the
    // transaction, still a request), INVITE with credentials, 100, the relayed 180 and 200.
    assert_eq!(c.requests(&Method::Invite), 2);
    assert_eq!(c.requests(&Method::Ack), 1);
    assert_eq!(
        sent(&h, Method::Invite, 100),
        2,
        "one 100 Trying and the 180"
    );
    assert_eq!(sent(&h, Method::Invite, 407), 1);
    assert_eq!(sent(&h, Method::Invite, 200), 1);
    assert_eq!(c.retransmissions_received, 1);
    // The INVITE latencies: the 407 at once, the 180 after 30 ms (bucket le=0.05).
    let inv = c.latency_of(&Method::Invite);
    assert_eq!(inv.count, 2);
    assert_eq!(inv.sum_us, 30_000);
    let cum = inv.cumulative();
    assert_eq!(cum[0], (0.0005, 1));
    assert_eq!(cum[5], (0.025, 1));
    assert_eq!(cum[6], (0.05, 2));
    // Nothing else was counted.
    let total_requests: u64 = c.requests_received.iter().sum();
    assert_eq!(total_requests, 4 + 2 + 1);
    let total_responses: u64 = c.responses_sent.iter().flatten().sum();
    assert_eq!(total_responses, 4 + 2 + 1 + 1);
}

#[test]
fn status_lists_bindings_and_calls_up_to_the_limit() {
    let mut h = Harness::new(true);
    let (n, b1, _b2) = call_bob(&mut h);
    h.advance(Duration::from_secs(3));
    let report = crate::driver::stats::status(&h.core, h.now, 10);
    assert_eq!(report.bindings_total, 2);
    let contacts: Vec<&str> = report.bindings.iter().map(|b| b.contact.as_str()).collect();
    assert_eq!(
        contacts,
        [format!("sip:bob@{BOB1}"), format!("sip:bob@{BOB2}")]
    );
    let b = &report.bindings[0];
    assert_eq!((b.aor.as_str(), b.transport.as_str()), ("bob", "udp"));
    assert_eq!(b.source, BOB1);
    assert_eq!(b.expires_s, 597, "600 s less the 3 s that passed");
    assert_eq!(report.calls_total, 1);
    let call = &report.calls[0];
    assert_eq!(call.call_id, format!("call{n}@test"));
    assert_eq!(call.state, "early");
    assert_eq!(call.age_s, 3);
    assert!(call.from.contains("sip:alice@127.0.0.1"), "{}", call.from);
    assert!(call.to.contains("sip:bob@127.0.0.1"), "{}", call.to);
    h.send_bytes(BOB1, uas_response(&b1, 200, "t1", BOB1));
    let report = crate::driver::stats::status(&h.core, h.now, 1);
    assert_eq!(report.calls[0].state, "confirmed");
    assert_eq!((report.bindings.len(), report.bindings_total), (1, 2));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["calls"][0]["state"], "confirmed");
    assert_eq!(json["bindings_total"], 2);
}
