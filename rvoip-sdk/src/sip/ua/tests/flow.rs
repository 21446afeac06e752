//! RFC 5626 on the client side, on simulated time against a registrar answered by hand:
//! with an instance-id the REGISTER carries `+sip.instance`, `reg-id` and
//! `Supported: outbound`; once the registrar answers `Require: outbound`, STUN keep-alives
//! go to it every 23–29 s over UDP; an unanswered keep-alive is sent once more and then fails
//! the flow, which is registered again; a keep-alive answer with a new mapped address
//! re-registers with a Contact that names it. A registrar without outbound gets no
//! keep-alives.

use super::*;
use crate::sip::keepalive;
use crate::sip::msg::Limits;

const PUBLIC: &str = "203.0.113.9:40001";
const URN: &str = "urn:uuid:00000000-0000-1000-8000-000a95a0e128";

fn alice(net: &mut Net) -> AccountId {
    net.alice = UserAgent::new(UaConfig {
        sip_instance: Some(URN.into()),
        ..UaConfig::default()
    });
    fake_registrar_account(&mut net.alice, Transport::Udp, 600)
}

/// What alice sent next: a parsed REGISTER, or the raw bytes of anything else.
enum Sent {
    Register(Box<Request>),
    Stun(Vec<u8>),
}

fn next(net: &mut Net) -> Option<Sent> {
    let t = net.alice.poll_transmit()?;
    assert_eq!(t.dest, addr(FAKE));
    if keepalive::is_stun(&t.bytes) {
        return Some(Sent::Stun(t.bytes.to_vec()));
    }
    match Message::parse(t.bytes, &Limits::default()) {
        Ok(Message::Request(r)) if r.method == Method::Register => {
            Some(Sent::Register(Box::new(r)))
        }
        other => panic!("unexpected: {other:?}"),
    }
}

fn register(net: &mut Net) -> Request {
    match next(net) {
        Some(Sent::Register(r)) => *r,
        Some(Sent::Stun(_)) => panic!("a STUN request, not a REGISTER"),
        None => panic!("nothing sent"),
    }
}

fn stun(net: &mut Net) -> Vec<u8> {
    match next(net) {
        Some(Sent::Stun(b)) => b,
        Some(Sent::Register(r)) => panic!("a REGISTER, not STUN: {r:?}"),
        None => panic!("nothing sent"),
    }
}

/// A 200 to `req` as the registrar saw it from alice's own address, with `Require: outbound`
/// when `outbound`.
fn ok(net: &mut Net, req: &Request, outbound: bool) {
    let mut resp = Response::for_request(req, 200);
    let via = req.headers.get(&HeaderName::Via).unwrap().to_string();
    resp.headers
        .set(HeaderName::Via, via.replace(";rport", ";rport=5070"));
    if let Some(c) = req.headers.get(&HeaderName::Contact) {
        resp.headers.push(HeaderName::Contact, c.to_string());
    }
    if outbound {
        resp.headers.push(HeaderName::Require, "outbound");
    }
    let now = net.now;
    net.alice.handle_datagram(
        now,
        resp.to_bytes(),
        addr(FAKE),
        Transport::Udp,
        addr(ALICE),
    );
}

fn stun_answer(net: &mut Net, req: &[u8], seen: &str) {
    let answer = keepalive::stun_answer(req, addr(seen)).expect("a Binding request");
    let now = net.now;
    net.alice
        .handle_datagram(now, answer.into(), addr(FAKE), Transport::Udp, addr(ALICE));
}

/// Alice (with an instance-id) registered at the stand-in registrar, which answered with
/// `Require: outbound` when `outbound`.
fn registered_at_fake(outbound: bool) -> Net {
    let mut net = Net::new(false);
    let a = alice(&mut net);
    let now = net.now;
    net.alice.register(now, a).unwrap();
    let req = register(&mut net);
    ok(&mut net, &req, outbound);
    net
}

/// Moves simulated time by `d` and runs alice's timers.
fn wait(net: &mut Net, d: Duration) {
    net.now += d;
    let now = net.now;
    net.alice.handle_timeout(now);
}

#[test]
fn an_outbound_flow_is_kept_alive_with_stun() {
    let mut net = Net::new(false);
    let a = alice(&mut net);
    let now = net.now;
    net.alice.register(now, a).unwrap();
    let req = register(&mut net);
    let contact = req.headers.get(&HeaderName::Contact).unwrap().to_string();
    assert!(
        contact.contains(&format!(";+sip.instance=\"<{URN}>\";reg-id=1")),
        "{contact}"
    );
    assert!(
        req.headers
            .get_all(&HeaderName::Supported)
            .any(|v| v.contains("outbound")),
        "{req:?}"
    );
    ok(&mut net, &req, true);
    assert!(next(&mut net).is_none());
    // Nothing before 80 % of 29 s; a STUN keep-alive by 29 s.
    wait(&mut net, Duration::from_secs(23));
    assert!(next(&mut net).is_none(), "no keep-alive before 23.2 s");
    wait(&mut net, Duration::from_secs(6));
    let ping = stun(&mut net);
    stun_answer(&mut net, &ping, ALICE);
    assert!(next(&mut net).is_none(), "the mapping holds: nothing more");
    wait(&mut net, Duration::from_secs(29));
    let ping = stun(&mut net);
    stun_answer(&mut net, &ping, ALICE);
    assert!(next(&mut net).is_none());
}

#[test]
fn an_unanswered_keepalive_fails_the_flow_and_registers_again() {
    let mut net = registered_at_fake(true);
    wait(&mut net, Duration::from_secs(29));
    let first = stun(&mut net);
    wait(&mut net, Duration::from_secs(3));
    assert_eq!(stun(&mut net), first, "sent once more, same transaction");
    wait(&mut net, Duration::from_secs(6));
    assert!(next(&mut net).is_none(), "not failed before 10 s");
    wait(&mut net, Duration::from_secs(1));
    let again = register(&mut net);
    assert!(
        again
            .headers
            .get(&HeaderName::Contact)
            .unwrap()
            .contains("reg-id=1")
    );
}

#[test]
fn a_new_mapping_in_a_keepalive_answer_rewrites_the_contact() {
    let mut net = registered_at_fake(true);
    wait(&mut net, Duration::from_secs(29));
    let ping = stun(&mut net);
    stun_answer(&mut net, &ping, PUBLIC);
    let again = register(&mut net);
    let contacts: Vec<String> = again
        .headers
        .get_all(&HeaderName::Contact)
        .map(|c| c.to_string())
        .collect();
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    assert!(contacts[0].contains("@203.0.113.9:40001;"), "{contacts:?}");
    assert!(contacts[1].ends_with(";expires=0"), "{contacts:?}");
}

#[test]
fn a_registrar_without_outbound_gets_no_keepalives() {
    let mut net = registered_at_fake(false);
    for _ in 0..10 {
        wait(&mut net, Duration::from_secs(30));
        assert!(next(&mut net).is_none());
    }
}
