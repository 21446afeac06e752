//! The presence agent on simulated time: PUBLISH (RFC 3903) create/refresh/412/423/489/413/
//! remove, SUBSCRIBE to presence (RFC 6665, RFC 3856) with the offline document first and a
//! NOTIFY per publication, un-SUBSCRIBE and expiry (terminated;reason=timeout), 481 ending a
//! subscription, the subscription limits, digest authentication and the dialog package
//! (RFC 4235) following a call the proxy routes.

use super::*;
use crate::sip::presence::{self, LineState};

const CAROL: &str = "127.0.0.1:5090";

fn status(out: &[Transmit]) -> u16 {
    out.iter()
        .find_map(|t| match parse(t) {
            Message::Response(r) if r.status > 100 => Some(r.status),
            _ => None,
        })
        .expect("a final response")
}

fn final_resp(out: &[Transmit]) -> Response {
    out.iter()
        .find_map(|t| match parse(t) {
            Message::Response(r) if r.status > 100 => Some(r),
            _ => None,
        })
        .expect("a final response")
}

fn notifies(out: &[Transmit], to: &str) -> Vec<Request> {
    out.iter()
        .filter(|t| t.dest == addr(to))
        .filter_map(|t| match parse(t) {
            Message::Request(r) if r.method == Method::Notify => Some(r),
            _ => None,
        })
        .collect()
}

fn header(r: &Request, name: HeaderName) -> String {
    r.headers
        .get(&name)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// A PUBLISH from `from_user` for `aor` (CSeq `n`) with extra header lines and a body.
fn publish(n: u32, from_user: &str, aor: &str, extra: &str, body: &str) -> String {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/pidf+xml\r\n".to_string()
    };
    format!(
        "PUBLISH sip:{aor}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {BOB1};branch=z9hG4bKpub{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{from_user}@127.0.0.1>;tag=p{n}\r\nTo: <sip:{aor}@127.0.0.1>\r\n\
         Call-ID: pub@test\r\nCSeq: {n} PUBLISH\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn bob_pidf(activity: Option<&str>) -> String {
    presence::pidf("sip:bob@127.0.0.1", true, None, activity)
}

/// A SUBSCRIBE from `user` at `at` to bob's `event` (dialog `n`, no To tag).
fn subscribe(n: u32, user: &str, at: &str, event: &str, expires: u32) -> String {
    format!(
        "SUBSCRIBE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bKsub{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=s{n}\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: sub{n}@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:{user}@{at}>\r\n\
         Event: {event}\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// An in-dialog SUBSCRIBE of the subscription formed by `ok` (the 200 to `subscribe(n, ..)`).
fn resubscribe(n: u32, user: &str, at: &str, ok: &Response, cseq: u32, expires: u32) -> String {
    let to = header_of(ok, HeaderName::To);
    let contact = header_of(ok, HeaderName::Contact);
    let uri = contact.trim_start_matches('<').trim_end_matches('>');
    let event = "presence";
    format!(
        "SUBSCRIBE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bKresub{n}x{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=s{n}\r\nTo: {to}\r\n\
         Call-ID: sub{n}@test\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{user}@{at}>\r\n\
         Event: {event}\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn header_of(r: &Response, name: HeaderName) -> String {
    r.headers
        .get(&name)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn reply_to(r: &Request, code: u16) -> Bytes {
    Response::for_request(r, code).to_bytes()
}

#[test]
fn publish_refresh_412_and_remove() {
    // Control: without the agent the PUBLISH is proxied (bob has no binding: 480).
    let mut off = Harness::with_config(ServerConfig {
        invite_auth: false,
        presence: false,
        ..ServerConfig::default()
    });
    let doc = bob_pidf(Some("away"));
    let first = publish(1, "bob", "bob", "Event: presence\r\nExpires: 600\r\n", &doc);
    assert_eq!(
        status(&off.send_bytes(BOB1, Bytes::from(first.clone()))),
        480
    );

    let mut h = Harness::new(false);
    let ok = final_resp(&h.send_bytes(BOB1, Bytes::from(first)));
    assert_eq!(ok.status, 200);
    assert_eq!(header_of(&ok, HeaderName::Expires), "600");
    let etag = header_of(&ok, HeaderName::SipETag);
    assert!(!etag.is_empty());
    assert_eq!(h.core.presence_publications(), 1);
    // Refresh: no body, SIP-If-Match; a new tag.
    let refresh = publish(
        2,
        "bob",
        "bob",
        &format!("Event: presence\r\nSIP-If-Match: {etag}\r\nExpires: 7200\r\n"),
        "",
    );
    let ok = final_resp(&h.send_bytes(BOB1, Bytes::from(refresh)));
    assert_eq!(ok.status, 200);
    assert_eq!(header_of(&ok, HeaderName::Expires), "3600", "clamped");
    let etag2 = header_of(&ok, HeaderName::SipETag);
    assert_ne!(etag2, etag);
    // The old tag is gone: 412.
    let stale = publish(
        3,
        "bob",
        "bob",
        &format!("Event: presence\r\nSIP-If-Match: {etag}\r\n"),
        "",
    );
    assert_eq!(status(&h.send_bytes(BOB1, Bytes::from(stale))), 412);
    // Too short: 423 with Min-Expires; another package: 489; too big: 413; a body that is no
    // PIDF: 400; no body without a tag: 400.
    let short = publish(4, "bob", "bob", "Event: presence\r\nExpires: 10\r\n", &doc);
    let r = final_resp(&h.send_bytes(BOB1, Bytes::from(short)));
    assert_eq!(
        (r.status, header_of(&r, HeaderName::MinExpires)),
        (423, "60".into())
    );
    let other = publish(5, "bob", "bob", "Event: dialog\r\n", &doc);
    let r = final_resp(&h.send_bytes(BOB1, Bytes::from(other)));
    assert_eq!(
        (r.status, header_of(&r, HeaderName::AllowEvents)),
        (489, "presence".into())
    );
    let big = format!("{doc}<!--{}-->", "x".repeat(9000));
    let big = publish(6, "bob", "bob", "Event: presence\r\n", &big);
    assert_eq!(status(&h.send_bytes(BOB1, Bytes::from(big))), 413);
    let junk = publish(7, "bob", "bob", "Event: presence\r\n", "<nope/>");
    assert_eq!(status(&h.send_bytes(BOB1, Bytes::from(junk))), 400);
    let empty = publish(8, "bob", "bob", "Event: presence\r\n", "");
    assert_eq!(status(&h.send_bytes(BOB1, Bytes::from(empty))), 400);
    // Only bob publishes bob's state.
    let theirs = publish(9, "alice", "bob", "Event: presence\r\n", &doc);
    assert_eq!(status(&h.send_bytes(BOB1, Bytes::from(theirs))), 403);
    assert_eq!(h.core.presence_publications(), 1);
    // Remove.
    let remove = publish(
        10,
        "bob",
        "bob",
        &format!("Event: presence\r\nSIP-If-Match: {etag2}\r\nExpires: 0\r\n"),
        "",
    );
    let ok = final_resp(&h.send_bytes(BOB1, Bytes::from(remove)));
    assert_eq!(
        (ok.status, header_of(&ok, HeaderName::Expires)),
        (200, "0".into())
    );
    assert_eq!(h.core.presence_publications(), 0);
}

#[test]
fn publish_per_aor_limit_and_expiry() {
    let mut h = Harness::with_config(ServerConfig {
        invite_auth: false,
        presence_max_publications: 2,
        ..ServerConfig::default()
    });
    let doc = bob_pidf(None);
    for n in 1..=2 {
        let p = publish(n, "bob", "bob", "Event: presence\r\nExpires: 60\r\n", &doc);
        assert_eq!(status(&h.send_bytes(BOB1, Bytes::from(p))), 200);
    }
    let p = publish(3, "bob", "bob", "Event: presence\r\nExpires: 60\r\n", &doc);
    assert_eq!(status(&h.send_bytes(BOB1, Bytes::from(p))), 403);
    h.advance(Duration::from_secs(61));
    assert_eq!(h.core.presence_publications(), 0, "expired");
}

#[test]
fn subscriber_gets_offline_then_the_published_state() {
    let mut h = Harness::new(false);
    let out = h.send_bytes(
        ALICE,
        Bytes::from(subscribe(1, "alice", ALICE, "presence", 600)),
    );
    let ok = final_resp(&out);
    assert_eq!(ok.status, 200);
    assert_eq!(header_of(&ok, HeaderName::Expires), "600");
    assert!(header_of(&ok, HeaderName::Contact).contains("127.0.0.1:5060"));
    let tag = ok.headers.to().unwrap().tag().unwrap().to_string();
    let n = notifies(&out, ALICE);
    assert_eq!(n.len(), 1, "the first NOTIFY at once");
    let first = &n[0];
    assert_eq!(first.uri.to_string(), format!("sip:alice@{ALICE}"));
    assert_eq!(first.headers.from().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(first.headers.to().unwrap().tag(), Some("s1"));
    assert_eq!(header(first, HeaderName::Event), "presence");
    assert_eq!(
        header(first, HeaderName::SubscriptionState),
        "active;expires=600"
    );
    assert_eq!(
        header(first, HeaderName::ContentType),
        "application/pidf+xml"
    );
    let p = presence::parse_pidf(&first.body).unwrap();
    assert!(!p.open, "never published: offline");
    assert_eq!(p.entity, "sip:bob@example.com");
    h.send_bytes(ALICE, reply_to(first, 200));
    // bob publishes "away": alice's NOTIFY carries it, CSeq one higher.
    let doc = bob_pidf(Some("away"));
    let out = h.send_bytes(
        BOB1,
        Bytes::from(publish(1, "bob", "bob", "Event: presence\r\n", &doc)),
    );
    let n = notifies(&out, ALICE);
    assert_eq!(n.len(), 1);
    let p = presence::parse_pidf(&n[0].body).unwrap();
    assert_eq!((p.open, p.activity.as_deref()), (true, Some("away")));
    assert_eq!(n[0].headers.cseq().unwrap().seq, 2);
    // A change while that NOTIFY is unanswered waits for its answer.
    let doc2 = bob_pidf(Some("busy"));
    let out = h.send_bytes(
        BOB1,
        Bytes::from(publish(2, "bob", "bob", "Event: presence\r\n", &doc2)),
    );
    assert!(notifies(&out, ALICE).is_empty(), "one NOTIFY at a time");
    let out = h.send_bytes(ALICE, reply_to(&n[0], 200));
    let n = notifies(&out, ALICE);
    assert_eq!(n.len(), 1);
    let p = presence::parse_pidf(&n[0].body).unwrap();
    assert_eq!(p.activity.as_deref(), Some("busy"));
}

#[test]
fn unsubscribe_and_expiry_end_with_terminated_notify() {
    let mut h = Harness::new(false);
    let out = h.send_bytes(
        ALICE,
        Bytes::from(subscribe(1, "alice", ALICE, "presence", 600)),
    );
    let ok = final_resp(&out);
    h.send_bytes(ALICE, reply_to(&notifies(&out, ALICE)[0], 200));
    // Refresh in the dialog: 200 and a NOTIFY.
    let out = h.send_bytes(
        ALICE,
        Bytes::from(resubscribe(1, "alice", ALICE, &ok, 2, 300)),
    );
    assert_eq!(status(&out), 200);
    let n = notifies(&out, ALICE);
    assert_eq!(
        header(&n[0], HeaderName::SubscriptionState),
        "active;expires=300"
    );
    h.send_bytes(ALICE, reply_to(&n[0], 200));
    // Un-SUBSCRIBE: 200 and the final NOTIFY.
    let out = h.send_bytes(
        ALICE,
        Bytes::from(resubscribe(1, "alice", ALICE, &ok, 3, 0)),
    );
    assert_eq!(status(&out), 200);
    let n = notifies(&out, ALICE);
    assert_eq!(
        header(&n[0], HeaderName::SubscriptionState),
        "terminated;reason=timeout"
    );
    h.send_bytes(ALICE, reply_to(&n[0], 200));
    assert_eq!(h.core.presence_subscriptions(), 0);
    // The dialog is gone: 481.
    let out = h.send_bytes(
        ALICE,
        Bytes::from(resubscribe(1, "alice", ALICE, &ok, 4, 300)),
    );
    assert_eq!(status(&out), 481);

    // A subscription left to expire gets the final NOTIFY at its end.
    let out = h.send_bytes(
        ALICE,
        Bytes::from(subscribe(2, "alice", ALICE, "presence", 60)),
    );
    h.send_bytes(ALICE, reply_to(&notifies(&out, ALICE)[0], 200));
    assert!(notifies(&h.advance(Duration::from_secs(59)), ALICE).is_empty());
    let n = notifies(&h.advance(Duration::from_secs(1)), ALICE);
    assert_eq!(n.len(), 1);
    assert_eq!(
        header(&n[0], HeaderName::SubscriptionState),
        "terminated;reason=timeout"
    );
    assert_eq!(h.core.presence_subscriptions(), 0);

    // A NOTIFY answered 481 ends the subscription.
    let out = h.send_bytes(
        ALICE,
        Bytes::from(subscribe(3, "alice", ALICE, "presence", 600)),
    );
    assert_eq!(h.core.presence_subscriptions(), 1);
    h.send_bytes(ALICE, reply_to(&notifies(&out, ALICE)[0], 481));
    assert_eq!(h.core.presence_subscriptions(), 0);
}

#[test]
fn subscriptions_over_the_limits_are_refused() {
    let mut h = Harness::with_config(ServerConfig {
        invite_auth: false,
        presence_max_subscriptions_per_user: 2,
        presence_max_subscriptions: 3,
        ..ServerConfig::default()
    });
    for n in 1..=2 {
        let out = h.send_bytes(
            ALICE,
            Bytes::from(subscribe(n, "alice", ALICE, "presence", 600)),
        );
        assert_eq!(status(&out), 200);
    }
    let out = h.send_bytes(
        ALICE,
        Bytes::from(subscribe(3, "alice", ALICE, "dialog", 600)),
    );
    assert_eq!(status(&out), 403, "alice holds her most");
    assert!(notifies(&out, ALICE).is_empty());
    assert_eq!(
        status(&h.send_bytes(
            CAROL,
            Bytes::from(subscribe(4, "carol", CAROL, "presence", 600))
        )),
        200
    );
    let r = final_resp(&h.send_bytes(
        CAROL,
        Bytes::from(subscribe(5, "carol", CAROL, "presence", 600)),
    ));
    assert_eq!(r.status, 503, "the server holds its most");
    assert!(r.headers.get(&HeaderName::RetryAfter).is_some());
    // Another domain's user may not subscribe; another package is proxied as before.
    let foreign = subscribe(6, "mallory", "127.0.0.1:5099", "presence", 600)
        .replace("<sip:mallory@127.0.0.1>", "<sip:mallory@evil.example>");
    assert_eq!(
        status(&h.send_bytes("127.0.0.1:5099", Bytes::from(foreign))),
        403
    );
    let mwi = subscribe(7, "carol", CAROL, "message-summary", 600);
    assert_eq!(status(&h.send_bytes(CAROL, Bytes::from(mwi))), 480);
    assert_eq!(h.core.presence_subscriptions(), 3);
}

#[test]
fn subscribe_and_publish_are_authenticated() {
    let mut h = Harness::new(true);
    let text = subscribe(1, "alice", ALICE, "presence", 600);
    let r407 = final_resp(&h.send_bytes(ALICE, Bytes::from(text.clone())));
    assert_eq!(r407.status, 407);
    let authz = answer(
        &r407,
        HeaderName::ProxyAuthenticate,
        "alice",
        "apw",
        "SUBSCRIBE",
        "sip:bob@127.0.0.1",
    );
    let text = text
        .replace("CSeq: 1 ", "CSeq: 2 ")
        .replace("z9hG4bKsub1", "z9hG4bKsub1b")
        .replace(
            "Expires:",
            &format!("Proxy-Authorization: {authz}\r\nExpires:"),
        );
    let out = h.send_bytes(ALICE, Bytes::from(text));
    assert_eq!(status(&out), 200);
    assert_eq!(notifies(&out, ALICE).len(), 1);
    // alice authenticates, but cannot publish bob's state.
    let doc = bob_pidf(None);
    let p = publish(1, "alice", "bob", "Event: presence\r\n", &doc);
    let r407 = final_resp(&h.send_bytes(BOB1, Bytes::from(p.clone())));
    assert_eq!(r407.status, 407);
    let authz = answer(
        &r407,
        HeaderName::ProxyAuthenticate,
        "alice",
        "apw",
        "PUBLISH",
        "sip:bob@127.0.0.1",
    );
    let p = p
        .replace("z9hG4bKpub1", "z9hG4bKpub1b")
        .replace("Event:", &format!("Proxy-Authorization: {authz}\r\nEvent:"));
    assert_eq!(status(&h.send_bytes(BOB1, Bytes::from(p))), 403);
}

#[test]
fn dialog_subscription_follows_a_routed_call() {
    let mut h = Harness::new(false);
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    let out = h.send_bytes(
        CAROL,
        Bytes::from(subscribe(1, "carol", CAROL, "dialog", 600)),
    );
    assert_eq!(status(&out), 200);
    let n = notifies(&out, CAROL);
    assert_eq!(
        header(&n[0], HeaderName::ContentType),
        "application/dialog-info+xml"
    );
    let line = |r: &Request| presence::parse_dialog_info(&r.body).unwrap();
    let d = line(&n[0]);
    assert_eq!(
        (d.line, d.version, d.entity.as_str()),
        (LineState::Idle, 0, "sip:bob@example.com")
    );
    h.send_bytes(CAROL, reply_to(&n[0], 200));
    // alice calls bob (trying); bob rings (early), then answers (confirmed), then alice hangs
    // up (terminated).
    let mut versions = Vec::new();
    let mut step = |h: &mut Harness, out: &[Transmit], state: &str, want: LineState| {
        let n = notifies(out, CAROL);
        assert_eq!(n.len(), 1, "{state}");
        let body = String::from_utf8_lossy(&n[0].body).into_owned();
        assert!(body.contains(&format!("<state>{state}</state>")), "{body}");
        assert!(body.contains("direction=\"recipient\""), "{body}");
        let d = line(&n[0]);
        assert_eq!(d.line, want);
        versions.push(d.version);
        h.send_bytes(CAROL, reply_to(&n[0], 200));
    };
    let out = h.send(ALICE, &invite(1, "bob", ""));
    step(&mut h, &out, "trying", LineState::Ringing);
    let fwd = out.iter().find(|t| t.dest == addr(BOB1)).map(req).unwrap();
    let out = h.send_bytes(BOB1, uas_response(&fwd, 180, "b1", BOB1));
    step(&mut h, &out, "early", LineState::Ringing);
    let out = h.send_bytes(BOB1, uas_response(&fwd, 200, "b1", BOB1));
    let ok = out
        .iter()
        .filter(|t| t.dest == addr(ALICE))
        .map(resp)
        .find(|r| r.status == 200)
        .expect("the 2xx relayed to alice");
    step(&mut h, &out, "confirmed", LineState::InCall);
    let route = header_of(&ok, HeaderName::RecordRoute);
    let to = header_of(&ok, HeaderName::To);
    let bye = format!(
        "BYE sip:bob@{BOB1} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKbye1\nRoute: {route}\nMax-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=a1\nTo: {to}\nCall-ID: call1@test\nCSeq: 2 BYE\nContent-Length: 0\n\n"
    );
    let out = h.send(ALICE, &bye);
    step(&mut h, &out, "terminated", LineState::Idle);
    assert_eq!(versions, vec![1, 2, 3, 4], "one more per NOTIFY");
    // Forgotten after it was shown: the next document (a refresh) lists no dialog.
    assert_eq!(h.core.presence_subscriptions(), 1);
}
