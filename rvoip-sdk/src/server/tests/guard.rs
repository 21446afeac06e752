//! The core's defence against hostile senders, on simulated time: no user enumeration, bans
//! after failed digest attempts, the flood limit, the limits on what one source may make the
//! proxy hold (503, 513), and replies no larger than their UDP request.

use super::*;

/// Sources on other IP addresses than ALICE's and BOB's (127.0.0.1).
const OTHER1: &str = "192.0.2.21:5060";
const OTHER2: &str = "192.0.2.22:5060";

/// An unauthenticated request of `method` to `user` from a foreign-domain sender (what
/// `svwar -m OPTIONS` sends).
fn foreign_request(n: u32, method: &str, user: &str, body: &str) -> String {
    format!(
        "{method} sip:{user}@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKfr{n}\nMax-Forwards: 70\n\
         From: <sip:scanner@attacker.example>;tag=s{n}\nTo: <sip:{user}@127.0.0.1>\nCall-ID: scan{n}@test\nCSeq: 1 {method}\n\
         Content-Type: text/plain\nContent-Length: {}\n\n{body}",
        body.len()
    )
}

fn statuses(out: &[Transmit]) -> Vec<u16> {
    out.iter().map(|t| resp(t).status).collect()
}

#[test]
fn unknown_users_and_users_without_binding_are_indistinguishable() {
    let mut h = Harness::new(true);
    for (i, method) in ["OPTIONS", "INVITE", "MESSAGE", "SUBSCRIBE"]
        .iter()
        .enumerate()
    {
        let n = 10 * i as u32;
        let known = h.send(ALICE, &foreign_request(n, method, "carol", ""));
        let unknown = h.send(ALICE, &foreign_request(n + 1, method, "nobody", ""));
        let first_line = |out: &[Transmit]| {
            out.iter()
                .map(|t| {
                    String::from_utf8_lossy(&t.bytes)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(first_line(&known), first_line(&unknown), "{method}");
        // A MESSAGE is stored for a known user without binding (202, RFC 3428) and dropped
        // with the same 202 for an unknown one.
        let expected = if *method == "MESSAGE" { 202 } else { 480 };
        assert_eq!(*statuses(&known).last().unwrap(), expected, "{method}");
    }
    // From a local user (407), known and unknown senders get the same challenge.
    let known = h.send(ALICE, &invite(50, "carol", ""));
    let unknown = h.send(
        ALICE,
        &invite(51, "carol", "").replace("sip:alice@127.0.0.1>;tag", "sip:nobody@127.0.0.1>;tag"),
    );
    assert_eq!(statuses(&known), statuses(&unknown));
    assert_eq!(statuses(&known), vec![407]);
}

#[test]
fn failed_digests_ban_the_source_and_the_user_still_registers_elsewhere() {
    let mut h = Harness::new(true);
    // auth_fail_limit = 10: nine failures are answered 401 like any challenge ...
    for i in 0..9 {
        assert_eq!(h.register("bob", &format!("guess{i}"), OTHER1).status, 401);
    }
    assert_eq!(h.core.guard.stats.auth_failures, 9);
    // ... the tenth goes unanswered and bans the source.
    let n = h.next();
    let first = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {OTHER1};branch=z9hG4bKban{n}\nMax-Forwards: 70\n\
         From: <sip:bob@127.0.0.1>;tag=b{n}\nTo: <sip:bob@127.0.0.1>\nCall-ID: ban{n}@test\nCSeq: 1 REGISTER\n\
         Contact: <sip:bob@{OTHER1}>\nContent-Length: 0\n\n"
    );
    let out = h.send(OTHER1, &first);
    let ch = resp(&out[0]);
    let authz = answer(
        &ch,
        HeaderName::WwwAuthenticate,
        "bob",
        "guess9",
        "REGISTER",
        "sip:127.0.0.1",
    );
    let second = first
        .replace("CSeq: 1", "CSeq: 2")
        .replace("z9hG4bKban", "z9hG4bKban2")
        .replace(
            "Content-Length: 0",
            &format!("Authorization: {authz}\nContent-Length: 0"),
        );
    assert!(
        h.send(OTHER1, &second).is_empty(),
        "the 10th failure is not answered"
    );
    assert_eq!(h.core.guard.stats.auth_bans, 1);
    // Everything from the banned source is dropped now, even the right password.
    assert!(h.send(OTHER1, &first.replace("ban", "after")).is_empty());
    // bob from another address registers.
    assert_eq!(h.register("bob", "bpw", OTHER2).status, 200);
    // The ban ends after auth_ban_s (300 s).
    h.advance(Duration::from_secs(301));
    assert_eq!(h.register("bob", "bpw", OTHER1).status, 200);
}

#[test]
fn a_flooding_source_is_dropped_and_others_are_served() {
    let mut h = Harness::new(true);
    let opt = |n: u32| {
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKfl{n}\nMax-Forwards: 70\n\
             From: <sip:x@127.0.0.1>;tag=f{n}\nTo: <sip:127.0.0.1>\nCall-ID: fl{n}@test\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"
        )
    };
    let mut answered = 0;
    for n in 0..1500 {
        answered += h.send(ALICE, &opt(n)).len();
    }
    assert_eq!(answered, 1000, "flood_limit = 1000 per second");
    assert!(h.core.guard.stats.dropped >= 500);
    assert_eq!(statuses(&h.send(OTHER1, &opt(9999))), vec![200]);
    // After flood_ban_s the source is served again.
    h.advance(Duration::from_secs(11));
    assert_eq!(statuses(&h.send(ALICE, &opt(10_000))), vec![200]);
}

#[test]
fn bodies_and_bytes_held_for_a_silent_contact_are_capped() {
    let mut h = Harness::new(true);
    assert_eq!(h.register("carol", "cpw", BOB2).status, 200);
    // Over max_forward_body_bytes (16 KiB): 513, nothing forwarded.
    let big = "x".repeat(20_000);
    let out = h.send(ALICE, &foreign_request(1, "MESSAGE", "carol", &big));
    assert_eq!(statuses(&out), vec![513]);
    // 8 KiB bodies to a contact that never answers: forwarded until the source holds
    // max_held_bytes_per_source (8 MiB), then 503 with Retry-After.
    let body = "y".repeat(8_000);
    let (mut forwarded, mut refused) = (0, 0);
    for n in 0..1500 {
        // 500 per second: under the flood limit.
        h.advance(Duration::from_millis(2));
        for t in h.send(ALICE, &foreign_request(100 + n, "MESSAGE", "carol", &body)) {
            if t.dest == addr(BOB2) {
                forwarded += 1;
            } else {
                let r = resp(&t);
                assert_eq!(r.status, 503);
                assert!(r.headers.get(&HeaderName::RetryAfter).is_some());
                refused += 1;
            }
        }
    }
    // Each counts as its heap block and its transaction's state (about 14 KB).
    let one = crate::sip::transaction::held_cost(8_300);
    let held = h.core.tl.source_load(addr(ALICE).ip()).1;
    assert!(held <= (8 << 20) + one, "held {held}");
    let expected = (8 << 20) / one;
    assert!(
        forwarded >= expected - 2 && forwarded <= expected + 2 && refused > 800,
        "{forwarded} forwarded (expected {expected}), {refused} refused"
    );
    assert!(h.core.tl.held_bytes() <= 2 * ((8 << 20) + one));
    // Another source is still served.
    let out = h.send(OTHER1, &foreign_request(5000, "MESSAGE", "carol", "hi"));
    assert!(out.iter().any(|t| t.dest == addr(BOB2)));
    // When the transactions time out, the bytes are released.
    h.advance(Duration::from_secs(40));
    h.advance(Duration::from_secs(40));
    assert_eq!(h.core.tl.source_load(addr(ALICE).ip()), (0, 0));
}

#[test]
fn replies_to_udp_requests_are_no_larger_than_the_request() {
    let mut h = Harness::new(true);
    let vias: String = (0..300)
        .map(|i| {
            format!(
                "Via: SIP/2.0/UDP 10.{}.{}.1:5060;branch=z9hG4bKv{i}\n",
                i / 250,
                i % 250
            )
        })
        .collect();
    for (n, method) in ["OPTIONS", "REGISTER", "INVITE"].iter().enumerate() {
        let uri = if *method == "REGISTER" {
            "sip:127.0.0.1"
        } else {
            "sip:nobody@127.0.0.1"
        };
        let text = format!(
            "{method} {uri} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKbig{n}\n{vias}Max-Forwards: 70\n\
             From: <sip:x@127.0.0.1>;tag=v{n}\nTo: <sip:nobody@127.0.0.1>\nCall-ID: vias{n}@test\nCSeq: 1 {method}\n\
             Contact: <sip:x@{ALICE}>\nContent-Length: 0\n\n"
        );
        let len = wire(&text).len();
        let out = h.send(ALICE, &text);
        for t in &out {
            assert!(
                t.bytes.len() <= len,
                "{method}: a {} byte reply to {len} bytes",
                t.bytes.len()
            );
        }
        // Malformed (a bad CSeq) with the same Vias: answered minimally or not at all.
        let bad = text.replace(&format!("CSeq: 1 {method}"), "CSeq: x");
        for t in h.send(ALICE, &bad) {
            assert!(
                t.bytes.len() <= len,
                "malformed {method}: {} > {len}",
                t.bytes.len()
            );
        }
    }
    assert!(h.core.stats.replies_trimmed > 0);
    // Ordinary small requests still get their full answers (tag, received/rport, challenge).
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
}

#[test]
fn transactions_in_progress_are_capped_per_source_and_in_total() {
    let mut h = Harness::with_config(ServerConfig {
        max_transactions_per_source: 5,
        max_transactions: 8,
        ..ServerConfig::default()
    });
    assert_eq!(h.register("carol", "cpw", BOB2).status, 200);
    let count = |h: &mut Harness, from: &str, base: u32, n: u32| {
        let (mut fwd, mut busy) = (0, 0);
        for i in 0..n {
            for t in h.send(from, &foreign_request(base + i, "MESSAGE", "carol", "hi")) {
                if t.dest == addr(BOB2) {
                    fwd += 1;
                } else if resp(&t).status == 503 {
                    busy += 1;
                }
            }
        }
        (fwd, busy)
    };
    // Per source: 5 in progress, then 503.
    assert_eq!(count(&mut h, ALICE, 0, 8), (5, 3));
    // In total (max_transactions = 8, the global cap that existed before): another source
    // gets 3 more, then 503.
    assert_eq!(count(&mut h, OTHER1, 100, 6), (3, 3));
    // When they end (Timer F), both sources are served again.
    h.advance(Duration::from_secs(40));
    h.advance(Duration::from_secs(40));
    assert_eq!(count(&mut h, ALICE, 200, 1), (1, 0));
}

#[test]
fn a_200_listing_many_bindings_is_sent_whatever_its_size() {
    // The reply budget is for unauthenticated requests: an authenticated REGISTER gets its 200
    // with every binding of the AOR, larger than the request (was dropped at 8 bindings).
    let mut h = Harness::new(true);
    for i in 0..10 {
        let ok = h.register("bob", "bpw", &format!("192.0.2.{}:5060", 100 + i));
        assert_eq!(ok.status, 200, "binding {i}");
        assert_eq!(ok.headers.get_all(&HeaderName::Contact).count(), i + 1);
    }
    assert_eq!(h.core.stats.replies_dropped, 0);
}

#[test]
fn answered_requests_leave_the_held_bytes_at_once() {
    // A transaction that got its final response keeps no request: its bytes leave the
    // accounting then, not when its Timer J/K ends (else a busy server crept up to
    // max_held_bytes and answered 503 to everything: found by the soak).
    let mut h = Harness::new(true);
    assert_eq!(h.register("carol", "cpw", BOB2).status, 200);
    for n in 0..50 {
        let out = h.send(ALICE, &foreign_request(n, "MESSAGE", "carol", "hello"));
        let fwd = out
            .iter()
            .find(|t| t.dest == addr(BOB2))
            .map(req)
            .expect("forwarded");
        assert!(h.core.tl.held_bytes() > 0);
        let back = h.send_bytes(BOB2, uas_response(&fwd, 200, "t", BOB2));
        assert_eq!(statuses(&back), vec![200]);
        assert_eq!(h.core.tl.held_bytes(), 0, "after the 200 of request {n}");
    }
    // In Timer J they are no longer in progress: they count against no per-source limit.
    assert_eq!(h.core.tl.source_load(addr(ALICE).ip()), (0, 0));
    assert_eq!(h.core.tl.len().1, 50);
}

/// Proxies `count` unauthenticated MESSAGEs with `body_len`-byte bodies to a contact that never
/// answers, from four sources in turn, 500 per second. Returns the growth of the live heap
/// and of [`crate::sip::transaction::TransactionLayer::held_bytes`], per request.
fn heap_and_held_per_request(body_len: usize, count: u32) -> (usize, usize) {
    let mut h = Harness::new(true);
    assert_eq!(h.register("carol", "cpw", BOB2).status, 200);
    let body = "y".repeat(body_len);
    let (heap0, held0) = (crate::test_heap::live_bytes(), h.core.tl.held_bytes());
    // Exact-size datagrams, as the driver copies them out of its receive buffer.
    let datagrams: Vec<(SocketAddr, Bytes)> = (0..count)
        .map(|n| {
            let from = SocketAddr::from(([198, 51, 100, 1 + (n % 4) as u8], 5060));
            let text = wire(&foreign_request(100 + n, "MESSAGE", "carol", &body));
            (from, Bytes::copy_from_slice(&text))
        })
        .collect();
    for (from, datagram) in datagrams {
        h.advance(Duration::from_millis(2));
        h.core
            .handle_datagram(h.now, datagram, from, Transport::Udp);
        let out = h.drain();
        assert!(out.iter().any(|t| t.dest == addr(BOB2)), "not forwarded");
    }
    let heap = crate::test_heap::live_bytes() - heap0;
    let held = h.core.tl.held_bytes() - held0;
    let n = count as usize;
    (heap.max(0) as usize / n, held / n)
}

#[test]
fn held_bytes_cover_the_heap() {
    // What RSS follows is the heap: the accounting behind max_held_bytes must not count less
    // than a held request really costs (else RSS outgrows the cap), nor grossly more.
    for (body_len, count) in [(0, 2000), (1000, 1000), (16_000, 300)] {
        let (heap, held) = heap_and_held_per_request(body_len, count);
        eprintln!("{body_len}-byte bodies: heap {heap} B, held {held} B per request");
        assert!(
            held >= heap,
            "{body_len}-byte bodies: held {held} < heap {heap} per request"
        );
        if body_len >= 16_000 {
            assert!(
                held * 2 <= heap * 3,
                "{body_len}: held {held} > 1.5 x heap {heap}"
            );
        }
    }
}
