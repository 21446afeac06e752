//! Presence from the subscriber's side on simulated time, against a scripted notifier (the
//! test plays the presence server byte by byte): a NOTIFY that overtakes the SUBSCRIBE's 2xx
//! forms the dialog (RFC 6665 §4.1.2.4), PIDF and dialog-info documents become events, the
//! subscription is refreshed in its dialog before expiry and ends with un-SUBSCRIBE and a
//! terminated NOTIFY; PUBLISH (RFC 3903) takes the entity tag, refreshes with SIP-If-Match and
//! no body, and starts over after 412.

use super::*;
use crate::sip::msg::{Message, Request, Response};
use crate::sip::presence::{self, LineState};

const PS: &str = "127.0.0.1:5060";

struct Lab {
    now: Instant,
    ua: UserAgent,
    events: Vec<UaEvent>,
    /// Requests the UA sent to the presence server, in order.
    got: Vec<Request>,
}

impl Lab {
    fn new() -> (Lab, AccountId) {
        let mut ua = UserAgent::new(UaConfig::default());
        let acc = ua.add_account(AccountConfig {
            aor: uri("sip:alice@127.0.0.1"),
            credentials: Credentials {
                username: "alice".into(),
                password: "apw".into(),
            },
            server: addr(PS),
            transport: Transport::Udp,
            local: addr(ALICE),
            expires_s: 300,
            alternates: Vec::new(),
            srtp: Default::default(),
            dtmf_mode: Default::default(),
        });
        let lab = Lab {
            now: Instant::now(),
            ua,
            events: Vec::new(),
            got: Vec::new(),
        };
        (lab, acc)
    }

    /// Collects what the UA sent (requests to the server) and its events.
    fn pump(&mut self) {
        while let Some(t) = self.ua.poll_transmit() {
            if let Ok(Message::Request(r)) =
                Message::parse(t.bytes.clone(), &crate::sip::msg::Limits::default())
            {
                self.got.push(r);
            }
        }
        while let Some(e) = self.ua.poll_event() {
            self.events.push(e);
        }
    }

    fn deliver(&mut self, text: String) {
        let now = self.now;
        self.ua.handle_datagram(
            now,
            bytes::Bytes::from(text),
            addr(PS),
            Transport::Udp,
            addr(ALICE),
        );
        self.pump();
    }

    fn respond(&mut self, req: &Request, status: u16, extra: &[(&str, &str)]) {
        let mut resp = Response::for_request(req, status);
        let has_tag = resp.headers.to().ok().is_some_and(|t| t.tag().is_some());
        if !has_tag {
            let to = resp.headers.get(&HeaderName::To).unwrap().clone();
            resp.headers
                .set(HeaderName::To, format!("{to};tag=notifier1"));
        }
        for (n, v) in extra {
            resp.headers
                .push(HeaderName::from_wire(&(*n).into()), v.to_string());
        }
        if req.method == Method::Subscribe {
            resp.headers
                .push(HeaderName::Contact, "<sip:ps@127.0.0.1:5060>");
        }
        self.deliver(String::from_utf8(resp.to_bytes().to_vec()).unwrap());
    }

    /// A NOTIFY in the dialog of `sub` (the SUBSCRIBE that formed it) with `state` and `body`.
    fn notify(&mut self, sub: &Request, seq: u32, state: &str, ctype: &str, body: &str) {
        let from_tag = sub.headers.from().unwrap().tag().unwrap().to_string();
        let call_id = sub.headers.call_id().unwrap().to_string();
        let event = sub.headers.get(&HeaderName::Event).unwrap().to_string();
        let text = format!(
            "NOTIFY sip:alice@127.0.0.1:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKn{seq}\r\n\
             From: <sip:bob@127.0.0.1>;tag=notifier1\r\n\
             To: <sip:alice@127.0.0.1>;tag={from_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {seq} NOTIFY\r\n\
             Contact: <sip:ps@127.0.0.1:5060>\r\n\
             Event: {event}\r\n\
             Subscription-State: {state}\r\n\
             Max-Forwards: 70\r\n\
             Content-Type: {ctype}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.deliver(text);
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.ua.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            let now = self.now;
            self.ua.handle_timeout(now);
            self.pump();
        }
        self.now = end;
    }

    fn last(&self, m: Method) -> Request {
        self.got
            .iter()
            .rev()
            .find(|r| r.method == m)
            .cloned()
            .unwrap()
    }

    fn states(&self) -> Vec<SubscriptionState> {
        self.events
            .iter()
            .filter_map(|e| match e {
                UaEvent::SubscriptionState { state, .. } => Some(state.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn presence_subscription_lifecycle() {
    let (mut lab, acc) = Lab::new();
    let now = lab.now;
    let sub = lab
        .ua
        .subscribe(
            now,
            acc,
            uri("sip:bob@127.0.0.1"),
            EventPackage::Presence,
            600,
        )
        .unwrap();
    lab.pump();
    let s1 = lab.last(Method::Subscribe);
    assert_eq!(s1.headers.get(&HeaderName::Event).unwrap(), "presence");
    assert_eq!(
        s1.headers.get(&HeaderName::Accept).unwrap(),
        "application/pidf+xml"
    );
    // The first NOTIFY overtakes the 2xx: it forms the dialog.
    let doc = presence::pidf("sip:bob@127.0.0.1", true, Some("Away"), Some("away"));
    lab.notify(&s1, 1, "active;expires=600", presence::PIDF_TYPE, &doc);
    assert_eq!(lab.ua.dialog_count(), 1);
    lab.respond(&s1, 200, &[("Expires", "600")]);
    assert_eq!(
        lab.ua.dialog_count(),
        1,
        "the 2xx joins the NOTIFY's dialog"
    );
    let seen = lab.events.iter().find_map(|e| match e {
        UaEvent::PresenceNotify {
            subscription,
            presence,
        } if *subscription == sub => Some(presence.clone()),
        _ => None,
    });
    let p = seen.expect("presence reported");
    assert_eq!(
        (p.open, p.note.as_deref(), p.activity.as_deref()),
        (true, Some("Away"), Some("away"))
    );
    assert_eq!(
        lab.states(),
        vec![SubscriptionState::Subscribing, SubscriptionState::Active]
    );
    // Refreshed inside the dialog before it expires.
    let before = lab.got.len();
    lab.advance(Duration::from_secs(590));
    let refresh = lab.got[before..]
        .iter()
        .find(|r| r.method == Method::Subscribe)
        .expect("refresh")
        .clone();
    assert_eq!(refresh.headers.to().unwrap().tag(), Some("notifier1"));
    assert_eq!(refresh.uri.to_string(), "sip:ps@127.0.0.1:5060");
    lab.respond(&refresh, 200, &[("Expires", "600")]);
    // The buddy goes offline.
    let doc = presence::pidf("sip:bob@127.0.0.1", false, None, None);
    lab.notify(&s1, 2, "active;expires=590", presence::PIDF_TYPE, &doc);
    assert!(lab.events.iter().any(|e| matches!(
        e,
        UaEvent::PresenceNotify { presence, .. } if !presence.open
    )));
    // Unsubscribe: Expires 0, then the final NOTIFY ends it and the dialog.
    let now = lab.now;
    lab.ua.unsubscribe(now, sub).unwrap();
    lab.pump();
    let un = lab.last(Method::Subscribe);
    assert_eq!(un.headers.get(&HeaderName::Expires).unwrap(), "0");
    lab.respond(&un, 200, &[("Expires", "0")]);
    lab.notify(
        &s1,
        3,
        "terminated;reason=timeout",
        presence::PIDF_TYPE,
        &doc,
    );
    assert_eq!(
        lab.states().last(),
        Some(&SubscriptionState::Terminated {
            reason: "unsubscribed".into()
        })
    );
    assert_eq!(lab.ua.dialog_count(), 0);
    assert!(lab.ua.unsubscribe(now, sub).is_err());
}

#[test]
fn refused_and_deactivated_subscriptions() {
    let (mut lab, acc) = Lab::new();
    let now = lab.now;
    lab.ua
        .subscribe(
            now,
            acc,
            uri("sip:nobody@127.0.0.1"),
            EventPackage::Presence,
            600,
        )
        .unwrap();
    lab.pump();
    let s = lab.last(Method::Subscribe);
    lab.respond(&s, 403, &[]);
    assert_eq!(
        lab.states().last(),
        Some(&SubscriptionState::Terminated {
            reason: "403 Forbidden".into()
        })
    );
    // deactivated: a fresh subscription (new Call-ID) follows at once.
    let now = lab.now;
    lab.ua
        .subscribe(
            now,
            acc,
            uri("sip:bob@127.0.0.1"),
            EventPackage::Presence,
            600,
        )
        .unwrap();
    lab.pump();
    let s = lab.last(Method::Subscribe);
    lab.respond(&s, 200, &[("Expires", "600")]);
    lab.notify(
        &s,
        1,
        "terminated;reason=deactivated",
        "application/pidf+xml",
        "",
    );
    let again = lab.last(Method::Subscribe);
    assert_ne!(again.headers.call_id(), s.headers.call_id());
    assert!(again.headers.to().unwrap().tag().is_none());
}

#[test]
fn busy_lamp_field_follows_the_line() {
    let (mut lab, acc) = Lab::new();
    let now = lab.now;
    let sub = lab
        .ua
        .subscribe(
            now,
            acc,
            uri("sip:bob@127.0.0.1"),
            EventPackage::Dialog,
            600,
        )
        .unwrap();
    lab.pump();
    let s = lab.last(Method::Subscribe);
    assert_eq!(s.headers.get(&HeaderName::Event).unwrap(), "dialog");
    lab.respond(&s, 200, &[("Expires", "600")]);
    let entry = |state: &'static str| presence::DialogEntry {
        id: "d1".into(),
        call_id: "c1@h".into(),
        initiator: false,
        state,
    };
    let mut lines = Vec::new();
    for (seq, state) in [
        (1, None),
        (2, Some("early")),
        (3, Some("confirmed")),
        (4, Some("terminated")),
    ] {
        let dialogs: Vec<_> = state.into_iter().map(entry).collect();
        let doc = presence::dialog_info("sip:bob@127.0.0.1", seq as u64, &dialogs);
        lab.notify(
            &s,
            seq,
            "active;expires=600",
            presence::DIALOG_INFO_TYPE,
            &doc,
        );
        lines.push(lab.events.iter().rev().find_map(|e| match e {
            UaEvent::LineNotify {
                subscription, line, ..
            } if *subscription == sub => Some(*line),
            _ => None,
        }));
    }
    assert_eq!(
        lines,
        vec![
            Some(LineState::Idle),
            Some(LineState::Ringing),
            Some(LineState::InCall),
            Some(LineState::Idle)
        ]
    );
}

#[test]
fn publish_refresh_and_412() {
    let (mut lab, acc) = Lab::new();
    let now = lab.now;
    lab.ua
        .publish(now, acc, true, Some("Away"), Some("away"), 120)
        .unwrap();
    lab.pump();
    let p1 = lab.last(Method::Publish);
    assert_eq!(p1.headers.get(&HeaderName::Event).unwrap(), "presence");
    assert!(p1.headers.get(&HeaderName::SipIfMatch).is_none());
    let doc = presence::parse_pidf(&p1.body).unwrap();
    assert_eq!(doc.activity.as_deref(), Some("away"));
    lab.respond(&p1, 200, &[("SIP-ETag", "etag1"), ("Expires", "120")]);
    assert!(
        lab.events
            .iter()
            .any(|e| matches!(e, UaEvent::PublishResult { status: 200, .. }))
    );
    // Refresh: no body, SIP-If-Match.
    lab.advance(Duration::from_secs(110));
    let p2 = lab.last(Method::Publish);
    assert_eq!(p2.headers.get(&HeaderName::SipIfMatch).unwrap(), "etag1");
    assert!(p2.body.is_empty());
    // The server forgot the tag: the full document goes again without SIP-If-Match.
    lab.respond(&p2, 412, &[]);
    let p3 = lab.last(Method::Publish);
    assert!(p3.headers.get(&HeaderName::SipIfMatch).is_none());
    assert!(!p3.body.is_empty());
    lab.respond(&p3, 200, &[("SIP-ETag", "etag2"), ("Expires", "120")]);
    // Unpublish: Expires 0 with the new tag.
    let now = lab.now;
    lab.ua.unpublish(now, acc).unwrap();
    lab.pump();
    let p4 = lab.last(Method::Publish);
    assert_eq!(p4.headers.get(&HeaderName::Expires).unwrap(), "0");
    assert_eq!(p4.headers.get(&HeaderName::SipIfMatch).unwrap(), "etag2");
    assert!(
        lab.ua
            .publish(now, acc, true, None, Some("bad activity"), 60)
            .is_err()
    );
}

#[test]
fn changes_while_a_publish_is_in_flight_wait_for_its_entity_tag() {
    let (mut lab, acc) = Lab::new();
    let now = lab.now;
    lab.ua
        .publish(now, acc, true, Some("Away"), Some("away"), 120)
        .unwrap();
    lab.pump();
    let p1 = lab.last(Method::Publish);
    // A second status before the first is answered: nothing goes yet (a PUBLISH without the
    // entity tag would leave a second publication at the server).
    lab.ua
        .publish(now, acc, true, Some("Busy"), Some("busy"), 120)
        .unwrap();
    lab.pump();
    assert_eq!(
        lab.got
            .iter()
            .filter(|r| r.method == Method::Publish)
            .count(),
        1
    );
    lab.respond(&p1, 200, &[("SIP-ETag", "e1"), ("Expires", "120")]);
    let p2 = lab.last(Method::Publish);
    assert_eq!(p2.headers.get(&HeaderName::SipIfMatch).unwrap(), "e1");
    let doc = presence::parse_pidf(&p2.body).unwrap();
    assert_eq!(doc.activity.as_deref(), Some("busy"));
    // Unpublish while that one is in flight: the removal follows its 2xx, with its tag.
    let now = lab.now;
    lab.ua.unpublish(now, acc).unwrap();
    lab.pump();
    assert_eq!(
        lab.got
            .iter()
            .filter(|r| r.method == Method::Publish)
            .count(),
        2
    );
    lab.respond(&p2, 200, &[("SIP-ETag", "e2"), ("Expires", "120")]);
    let p3 = lab.last(Method::Publish);
    assert_eq!(p3.headers.get(&HeaderName::Expires).unwrap(), "0");
    assert_eq!(p3.headers.get(&HeaderName::SipIfMatch).unwrap(), "e2");
    lab.respond(&p3, 200, &[("Expires", "0")]);
    // Nothing is refreshed afterwards.
    let n = lab.got.len();
    lab.advance(Duration::from_secs(300));
    assert_eq!(lab.got.len(), n);
}
