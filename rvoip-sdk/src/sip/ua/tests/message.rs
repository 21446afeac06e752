//! Instant messages (RFC 3428) between two user agents through the server core, on simulated
//! time: the sender answers the proxy's 407, the receiver answers 200 and reports the content;
//! an unknown user and an unreachable server give failure results (404, 408 after Timer F).

use super::*;

fn results(events: &[UaEvent]) -> Vec<(MessageId, u16)> {
    events
        .iter()
        .filter_map(|e| match e {
            UaEvent::MessageResult {
                message, status, ..
            } => Some((*message, *status)),
            _ => None,
        })
        .collect()
}

fn send(net: &mut Net, a: AccountId, to: &str, body: &'static str) -> MessageId {
    let now = net.now;
    net.alice
        .send_message(
            now,
            Some(a),
            uri(to),
            addr(SERVER),
            Transport::Udp,
            addr(ALICE),
            "text/plain;charset=utf-8",
            bytes::Bytes::from_static(body.as_bytes()),
        )
        .unwrap()
}

#[test]
fn message_through_the_server_is_delivered_and_reported() {
    let mut net = Net::new(true);
    let (a, _b) = net.register_both();
    let m = send(&mut net, a, "sip:bob@127.0.0.1", "hello bob");
    net.settle();
    assert_eq!(results(&net.events_a), vec![(m, 200)]);
    let got: Vec<_> = net
        .events_b
        .iter()
        .filter_map(|e| match e {
            UaEvent::MessageReceived {
                from,
                content_type,
                body,
                ..
            } => Some((from.clone(), content_type.clone(), body.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1, "{:?}", net.events_b);
    assert!(got[0].0.contains("sip:alice@127.0.0.1"), "{}", got[0].0);
    assert_eq!(got[0].1, "text/plain;charset=utf-8");
    assert_eq!(&got[0].2[..], b"hello bob");
    // The proxy challenged the MESSAGE once (407) and the retry carried credentials.
    let messages: Vec<_> = net
        .wire
        .iter()
        .filter(|w| w.starts_with("MESSAGE "))
        .collect();
    assert!(messages.iter().any(|w| w.contains("Proxy-Authorization:")));
    assert!(net.wire.iter().any(|w| w.starts_with("SIP/2.0 407")));
}

#[test]
fn message_failures_are_reported_with_their_status() {
    let mut net = Net::new(true);
    let (a, _b) = net.register_both();
    let unknown = send(&mut net, a, "sip:nobody@127.0.0.1", "anyone?");
    net.settle();
    let r = results(&net.events_a);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, unknown);
    assert!(r[0].1 >= 400, "{r:?}");

    net.blackhole = Some(addr(SERVER));
    let lost = send(&mut net, a, "sip:bob@127.0.0.1", "into the void");
    net.advance(Duration::from_secs(31));
    assert_eq!(results(&net.events_a).len(), 1, "no result before Timer F");
    net.advance(Duration::from_secs(2));
    assert_eq!(results(&net.events_a)[1], (lost, 408));
}

#[test]
fn incoming_message_without_a_content_type_is_refused_415() {
    let mut net = Net::new(false);
    let msg = "MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKm2\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@x>\r\nCall-ID: m2\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 2\r\n\r\nhi";
    let now = net.now;
    net.bob.handle_datagram(
        now,
        bytes::Bytes::from(msg),
        addr(ALICE),
        Transport::Udp,
        addr(BOB),
    );
    let t = net.bob.poll_transmit().expect("an answer");
    assert!(t.bytes.starts_with(b"SIP/2.0 415"));
    assert!(net.bob.poll_event().is_none());
}
