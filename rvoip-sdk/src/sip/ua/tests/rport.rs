//! RFC 3581 on the client side: the account learns its public address from the `received`
//! and `rport` its registrar writes in the top Via of a 2xx to REGISTER, re-registers with a
//! Contact that names it (removing the old Contact in the same REGISTER), and its calls
//! name it in their Contact too. Nothing changes when the registrar saw our own address, or
//! over TCP. Registrar answers are made by hand, on simulated time.

use super::*;
use crate::sip::msg::Limits;

/// Where a NAT maps alice's socket.
const PUBLIC: &str = "203.0.113.9:40001";

fn account(net: &mut Net, transport: Transport) -> AccountId {
    fake_registrar_account(&mut net.alice, transport, 120)
}

/// Alice's next REGISTER, parsed.
fn next_register(net: &mut Net) -> Option<Request> {
    let t = net.alice.poll_transmit()?;
    assert_eq!(t.dest, addr(FAKE));
    let Ok(Message::Request(req)) = Message::parse(t.bytes, &Limits::default()) else {
        panic!("not a request");
    };
    assert_eq!(req.method, Method::Register);
    Some(req)
}

/// Answers `req` with a 200 whose top Via says the request came from `seen` (RFC 3581).
fn answer_seen_from(net: &mut Net, req: &Request, seen: SocketAddr, transport: Transport) {
    let mut resp = Response::for_request(req, 200);
    let via = req.headers.get(&HeaderName::Via).unwrap().to_string();
    let via = via.replace(
        ";rport",
        &format!(";received={};rport={}", seen.ip(), seen.port()),
    );
    resp.headers.set(HeaderName::Via, via);
    for c in req.headers.get_all(&HeaderName::Contact) {
        resp.headers.push(HeaderName::Contact, c.to_string());
    }
    let now = net.now;
    net.alice
        .handle_datagram(now, resp.to_bytes(), addr(FAKE), transport, addr(ALICE));
}

fn contacts(req: &Request) -> Vec<String> {
    req.headers
        .get_all(&HeaderName::Contact)
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn a_nat_mapping_in_via_rewrites_the_contact_once() {
    let mut net = Net::new(false);
    let a = account(&mut net, Transport::Udp);
    let now = net.now;
    net.alice.register(now, a).unwrap();
    let first = next_register(&mut net).expect("REGISTER");
    assert_eq!(contacts(&first).len(), 1);
    assert!(
        contacts(&first)[0].contains("@127.0.0.1:5070;"),
        "{first:?}"
    );

    answer_seen_from(&mut net, &first, addr(PUBLIC), Transport::Udp);
    let second = next_register(&mut net).expect("a REGISTER with the learned address at once");
    let c = contacts(&second);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(
        c[0].contains("@203.0.113.9:40001;") && c[0].ends_with(";expires=120"),
        "{c:?}"
    );
    assert!(
        c[1].contains("@127.0.0.1:5070;") && c[1].ends_with(";expires=0"),
        "the old Contact is removed: {c:?}"
    );
    // Via still names the socket's own address (the registrar adds received/rport).
    assert!(
        second
            .headers
            .get(&HeaderName::Via)
            .unwrap()
            .contains("127.0.0.1:5070"),
        "{second:?}"
    );

    answer_seen_from(&mut net, &second, addr(PUBLIC), Transport::Udp);
    assert!(
        next_register(&mut net).is_none(),
        "no loop: the Contact holds"
    );
    while let Some(e) = net.alice.poll_event() {
        net.events_a.push(e);
    }
    assert!(registered(&net.events_a, a), "{:?}", net.events_a);

    // The refresh carries only the new Contact.
    net.now += Duration::from_secs(115);
    let now = net.now;
    net.alice.handle_timeout(now);
    let refresh = next_register(&mut net).expect("refresh");
    assert_eq!(contacts(&refresh).len(), 1);
    assert!(contacts(&refresh)[0].contains("@203.0.113.9:40001;"));

    // The account's calls over the same socket name the public address in their Contact.
    let _ = net
        .alice
        .make_call(
            now,
            Some(a),
            uri("sip:bob@127.0.0.1"),
            addr(FAKE),
            Transport::Udp,
            addr(ALICE),
            local_media(40000),
        )
        .unwrap();
    let invite = loop {
        let t = net.alice.poll_transmit().expect("an INVITE");
        if let Ok(Message::Request(r)) = Message::parse(t.bytes, &Limits::default()) {
            if r.method == Method::Invite {
                break r;
            }
        }
    };
    let contact = invite
        .headers
        .get(&HeaderName::Contact)
        .unwrap()
        .to_string();
    assert!(contact.contains("@203.0.113.9:40001"), "{contact}");
}

#[test]
fn no_rewrite_when_the_registrar_saw_our_address_or_over_tcp() {
    // rport equal to our own port, no received: nothing learned.
    let mut net = Net::new(false);
    let a = account(&mut net, Transport::Udp);
    let now = net.now;
    net.alice.register(now, a).unwrap();
    let first = next_register(&mut net).unwrap();
    answer_seen_from(&mut net, &first, addr(ALICE), Transport::Udp);
    assert!(next_register(&mut net).is_none());
    while let Some(e) = net.alice.poll_event() {
        net.events_a.push(e);
    }
    assert!(registered(&net.events_a, a), "{:?}", net.events_a);

    // Over TCP the responses come back on the connection: the Contact is left alone.
    let mut net = Net::new(false);
    let a = account(&mut net, Transport::Tcp);
    let now = net.now;
    net.alice.register(now, a).unwrap();
    let first = next_register(&mut net).unwrap();
    answer_seen_from(&mut net, &first, addr(PUBLIC), Transport::Tcp);
    assert!(next_register(&mut net).is_none());
    while let Some(e) = net.alice.poll_event() {
        net.events_a.push(e);
    }
    assert!(registered(&net.events_a, a), "{:?}", net.events_a);
}
