//! Offline instant messages (RFC 3428) on simulated time: 202 and storage for a user without a
//! binding, delivery at the next REGISTER (From, Content-Type, body, Date), removal on 2xx,
//! retry after a failure, the per-user limit (486), expiry, and the controls (store off: 480).

use super::*;
use crate::sip::msg::sip_date;

const CAROL: &str = "127.0.0.1:5090";

fn message(n: u32, to_user: &str, body: &str) -> Bytes {
    Bytes::from(format!(
        "MESSAGE sip:{to_user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKmsg{n}\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@127.0.0.1>;tag=m{n}\r\nTo: <sip:{to_user}@127.0.0.1>\r\n\
         Call-ID: msg{n}@test\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain;charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn status(out: &[Transmit]) -> u16 {
    resp(out.last().expect("a response")).status
}

/// REGISTER `user` at `contact` answering the 401; everything the server sends after the 401
/// (the 200, then any stored MESSAGE).
fn register_all(h: &mut Harness, user: &str, pw: &str, contact: &str) -> Vec<Transmit> {
    let n = h.next();
    let base = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {contact};branch=z9hG4bKoreg{n}x{cseq}\nMax-Forwards: 70\n\
             From: <sip:{user}@127.0.0.1>;tag=r{n}\nTo: <sip:{user}@127.0.0.1>\nCall-ID: oreg{n}@test\nCSeq: {cseq} REGISTER\n\
             Contact: <sip:{user}@{contact}>\n{auth}Expires: 600\nContent-Length: 0\n\n"
        )
    };
    let r401 = resp(&h.send(contact, &base(1, ""))[0]);
    let authz = answer(
        &r401,
        HeaderName::WwwAuthenticate,
        user,
        pw,
        "REGISTER",
        "sip:127.0.0.1",
    );
    let out = h.send(contact, &base(2, &format!("Authorization: {authz}\n")));
    assert_eq!(resp(&out[0]).status, 200);
    out
}

fn messages(out: &[Transmit], to: &str) -> Vec<Request> {
    out.iter()
        .filter(|t| t.dest == addr(to))
        .filter_map(|t| match parse(t) {
            Message::Request(r) if r.method == Method::Message => Some(r),
            _ => None,
        })
        .collect()
}

fn uac_reply(r: &Request, code: u16) -> Bytes {
    let mut resp = Response::for_request(r, code);
    let to = r.headers.get(&HeaderName::To).unwrap().to_string();
    resp.headers.set(HeaderName::To, format!("{to};tag=u"));
    resp.to_bytes()
}

#[test]
fn stored_then_delivered_at_register_and_removed_on_2xx() {
    // Control: with the store off, a user without a binding is 480.
    let mut h = Harness::with_config(ServerConfig {
        invite_auth: false,
        offline_messages: false,
        ..ServerConfig::default()
    });
    assert_eq!(status(&h.send_bytes(ALICE, message(1, "carol", "hi"))), 480);

    let mut h = Harness::new(false);
    assert_eq!(
        status(&h.send_bytes(ALICE, message(1, "carol", "hello carol"))),
        202
    );
    assert_eq!(h.core.offline_messages(), 1);
    h.now += Duration::from_secs(90);
    let out = register_all(&mut h, "carol", "cpw", CAROL);
    let m = messages(&out, CAROL);
    assert_eq!(m.len(), 1, "delivered after the 200");
    let m = &m[0];
    assert!(m.uri.to_string().contains(CAROL));
    let from = m.headers.from().unwrap();
    assert_eq!(from.uri.user.as_deref(), Some("alice"));
    assert_eq!(from.display.as_deref(), Some("Alice"));
    assert!(from.tag().is_some_and(|t| t != "m1"), "a new From tag");
    assert_eq!(
        m.headers.content_type().map(|c| c.to_string()),
        Some("text/plain;charset=utf-8".into())
    );
    assert_eq!(&m.body[..], b"hello carol");
    // Received 90 s before the REGISTER (the harness's clock starts at 1 700 000 000).
    assert_eq!(
        m.headers.get(&HeaderName::Date).map(|d| d.to_string()),
        Some(sip_date(1_700_000_000))
    );
    h.send_bytes(CAROL, uac_reply(m, 200));
    assert_eq!(h.core.offline_messages(), 0);
    assert_eq!(h.core.stats.offline_delivered, 1);
    // A later refresh sends nothing again.
    let out = register_all(&mut h, "carol", "cpw", CAROL);
    assert!(messages(&out, CAROL).is_empty());
}

#[test]
fn a_failed_delivery_is_kept_for_the_next_register() {
    let mut h = Harness::new(false);
    assert_eq!(status(&h.send_bytes(ALICE, message(1, "carol", "a"))), 202);
    assert_eq!(status(&h.send_bytes(ALICE, message(2, "carol", "b"))), 202);
    let out = register_all(&mut h, "carol", "cpw", CAROL);
    let m = messages(&out, CAROL);
    assert_eq!(m.len(), 2);
    assert_eq!(&m[0].body[..], b"a", "oldest first");
    h.send_bytes(CAROL, uac_reply(&m[0], 200));
    h.send_bytes(CAROL, uac_reply(&m[1], 480));
    assert_eq!(h.core.offline_messages(), 1);
    let out = register_all(&mut h, "carol", "cpw", CAROL);
    let m = messages(&out, CAROL);
    assert_eq!(m.len(), 1);
    assert_eq!(&m[0].body[..], b"b");
    // No answer at all (Timer F) keeps it too.
    for _ in 0..40 {
        h.advance(Duration::from_secs(1));
    }
    assert_eq!(h.core.offline_messages(), 1);
    let out = register_all(&mut h, "carol", "cpw", CAROL);
    assert_eq!(messages(&out, CAROL).len(), 1);
}

#[test]
fn full_store_gets_486_and_old_messages_expire() {
    let mut h = Harness::with_config(ServerConfig {
        invite_auth: false,
        offline_max_messages: 2,
        offline_ttl_s: 60,
        ..ServerConfig::default()
    });
    assert_eq!(status(&h.send_bytes(ALICE, message(1, "carol", "1"))), 202);
    assert_eq!(status(&h.send_bytes(ALICE, message(2, "carol", "2"))), 202);
    let out = h.send_bytes(ALICE, message(3, "carol", "3"));
    let r = resp(out.last().unwrap());
    assert_eq!((r.status, &*r.reason), (486, "Offline Store Full"));
    assert_eq!(h.core.offline_messages(), 2);
    // 70 s later (the sweep runs every 5 s) both are gone: the REGISTER delivers nothing.
    for _ in 0..14 {
        h.advance(Duration::from_secs(5));
    }
    assert_eq!(h.core.offline_messages(), 0);
    let out = register_all(&mut h, "carol", "cpw", CAROL);
    assert!(messages(&out, CAROL).is_empty());
}

#[test]
fn unknown_user_gets_202_to_an_unauthenticated_sender_and_nothing_is_stored() {
    let mut h = Harness::new(false);
    assert_eq!(status(&h.send_bytes(ALICE, message(1, "nobody", "x"))), 202);
    assert_eq!(h.core.offline_messages(), 0);
    assert_eq!(h.core.stats.offline_stored, 0);
}

#[test]
fn a_registered_user_gets_the_message_proxied_not_stored() {
    let mut h = Harness::new(false);
    let out = register_all(&mut h, "carol", "cpw", CAROL);
    assert!(messages(&out, CAROL).is_empty());
    let out = h.send_bytes(ALICE, message(1, "carol", "live"));
    assert_eq!(messages(&out, CAROL).len(), 1);
    assert_eq!(h.core.offline_messages(), 0);
}
