//! Registration failover over the server's destinations (RFC 3263 §4.3), on simulated time:
//! after a transport error (TCP connect refused: a synthesized 503), a timeout (Timer F: 408) or
//! a 503 response, the REGISTER goes at once to the next destination, which the account then
//! uses; other failures stay put; past the last destination the failure is reported with backoff
//! and the retry starts again from the first.

use super::*;
use crate::sip::msg::Limits;

/// Nothing listens here: TCP connects are refused, UDP datagrams vanish.
const DEAD: &str = "127.0.0.1:5091";
const DEAD2: &str = "127.0.0.1:5092";

fn hop(a: &str, transport: Transport) -> NextHop {
    NextHop {
        addr: addr(a),
        transport,
        local: addr(ALICE),
    }
}

/// Alice's account at `hops[0]`, failing over to the rest.
fn account(net: &mut Net, hops: &[NextHop]) -> AccountId {
    net.alice.add_account(AccountConfig {
        aor: uri("sip:alice@127.0.0.1"),
        credentials: Credentials {
            username: "alice".into(),
            password: "apw".into(),
        },
        server: hops[0].addr,
        transport: hops[0].transport,
        local: hops[0].local,
        expires_s: 120,
        alternates: hops[1..].to_vec(),
        srtp: Default::default(),
        dtmf_mode: Default::default(),
    })
}

/// Where each REGISTER alice sent went, in order.
fn register_dests(net: &Net) -> Vec<SocketAddr> {
    net.hops
        .iter()
        .filter(|(from, _, what)| *from == addr(ALICE) && what == "REGISTER")
        .map(|(_, to, _)| *to)
        .collect()
}

/// Registration states alice reported for `a`.
fn reg_states(net: &Net, a: AccountId) -> Vec<RegistrationState> {
    net.events_a
        .iter()
        .filter_map(|e| match e {
            UaEvent::Registration { account, state } if *account == a => Some(state.clone()),
            _ => None,
        })
        .collect()
}

fn failures(net: &Net, a: AccountId) -> Vec<RegistrationState> {
    reg_states(net, a)
        .into_iter()
        .filter(|s| matches!(s, RegistrationState::Failed { .. }))
        .collect()
}

/// Answers alice's pending transmit (a REGISTER to [`FAKE`]) with `status`, as FAKE would.
fn answer_with(net: &mut Net, status: u16) {
    let t = net.alice.poll_transmit().expect("a REGISTER");
    assert_eq!(t.dest, addr(FAKE));
    net.hops.push((addr(ALICE), t.dest, "REGISTER".to_string()));
    let Ok(Message::Request(req)) = Message::parse(t.bytes, &Limits::default()) else {
        panic!("not a request");
    };
    assert_eq!(req.method, Method::Register);
    let resp = Response::for_request(&req, status);
    let now = net.now;
    net.alice.handle_datagram(
        now,
        resp.to_bytes(),
        addr(FAKE),
        Transport::Udp,
        addr(ALICE),
    );
}

#[test]
fn connect_refused_fails_over_to_the_next_destination_at_once() {
    let mut net = Net::new(true);
    let a = account(
        &mut net,
        &[hop(DEAD, Transport::Tcp), hop(SERVER, Transport::Udp)],
    );
    let start = net.now;
    net.alice.register(start, a).unwrap();
    net.settle();
    assert_eq!(register_dests(&net), [addr(DEAD)]);
    // The driver reports the refused connect: the REGISTER goes on to the server over UDP, with
    // Via and Contact for UDP, and is answered (401, then 200) without any time passing.
    net.alice.connection_failed(
        start,
        addr(DEAD),
        Transport::Tcp,
        "TCP connect to 127.0.0.1:5091: Connection refused",
    );
    net.settle();
    assert_eq!(net.now, start);
    assert!(registered(&net.events_a, a), "{:?}", net.events_a);
    assert_eq!(failures(&net, a), []);
    assert_eq!(
        register_dests(&net),
        [addr(DEAD), addr(SERVER), addr(SERVER)]
    );
    let to_server: Vec<&String> = net
        .wire
        .iter()
        .filter(|w| w.starts_with("REGISTER ") && w.contains("Authorization:"))
        .collect();
    assert_eq!(to_server.len(), 1);
    assert!(
        to_server[0].contains("Via: SIP/2.0/UDP "),
        "{}",
        to_server[0]
    );
    assert!(!to_server[0].contains("transport=tcp"), "{}", to_server[0]);
    // The account now uses the working destination (for its calls and refreshes too).
    let c = net.alice.account_config(a).unwrap();
    assert_eq!((c.server, c.transport), (addr(SERVER), Transport::Udp));
    net.advance(Duration::from_secs(115));
    assert_eq!(register_dests(&net).last(), Some(&addr(SERVER)));
    assert_eq!(failures(&net, a), []);
}

#[test]
fn timer_f_fails_over_to_the_next_destination() {
    let mut net = Net::new(true);
    let a = account(
        &mut net,
        &[hop(DEAD, Transport::Udp), hop(SERVER, Transport::Udp)],
    );
    let now = net.now;
    net.alice.register(now, a).unwrap();
    net.advance(Duration::from_secs(31));
    assert!(!registered(&net.events_a, a));
    assert!(register_dests(&net).iter().all(|d| *d == addr(DEAD)));
    // Timer F (64·T1 = 32 s) ends the first try; the next destination is tried at once.
    net.advance(Duration::from_secs(2));
    assert!(registered(&net.events_a, a), "{:?}", net.events_a);
    assert_eq!(failures(&net, a), []);
    assert_eq!(register_dests(&net).last(), Some(&addr(SERVER)));
    assert_eq!(net.alice.account_config(a).unwrap().server, addr(SERVER));
}

#[test]
fn a_503_response_fails_over_and_other_failures_stay_put() {
    let mut net = Net::new(true);
    let a = account(
        &mut net,
        &[hop(FAKE, Transport::Udp), hop(SERVER, Transport::Udp)],
    );
    let now = net.now;
    net.alice.register(now, a).unwrap();
    answer_with(&mut net, 503);
    net.settle();
    assert!(registered(&net.events_a, a), "{:?}", net.events_a);
    assert_eq!(failures(&net, a), []);
    assert_eq!(
        register_dests(&net),
        [addr(FAKE), addr(SERVER), addr(SERVER)]
    );

    // A 403 (or any final answer but 503) is the registrar's word: no failover.
    let mut net = Net::new(true);
    let a = account(
        &mut net,
        &[hop(FAKE, Transport::Udp), hop(SERVER, Transport::Udp)],
    );
    let now = net.now;
    net.alice.register(now, a).unwrap();
    answer_with(&mut net, 403);
    net.settle();
    assert!(matches!(
        failures(&net, a).as_slice(),
        [RegistrationState::Failed {
            status: 403,
            retry_in_ms: 2000,
            ..
        }]
    ));
    assert_eq!(register_dests(&net), [addr(FAKE)]);
    assert_eq!(net.alice.account_config(a).unwrap().server, addr(FAKE));
}

#[test]
fn exhausted_list_fails_with_backoff_and_retries_from_the_top() {
    let mut net = Net::new(false);
    let a = account(
        &mut net,
        &[hop(DEAD, Transport::Tcp), hop(DEAD2, Transport::Tcp)],
    );
    let now = net.now;
    net.alice.register(now, a).unwrap();
    net.settle();
    net.alice
        .connection_failed(now, addr(DEAD), Transport::Tcp, "TCP connect to A: refused");
    net.settle();
    assert_eq!(failures(&net, a), []);
    net.alice.connection_failed(
        now,
        addr(DEAD2),
        Transport::Tcp,
        "TCP connect to B: refused",
    );
    net.settle();
    assert_eq!(
        failures(&net, a),
        [RegistrationState::Failed {
            status: 503,
            reason: "TCP connect to B: refused".into(),
            retry_in_ms: 2000,
        }]
    );
    assert_eq!(register_dests(&net), [addr(DEAD), addr(DEAD2)]);
    assert_eq!(net.alice.account_config(a).unwrap().server, addr(DEAD));
    // The retry after the backoff starts again from the first destination.
    net.advance(Duration::from_millis(1999));
    assert_eq!(register_dests(&net).len(), 2);
    net.advance(Duration::from_millis(1));
    assert_eq!(register_dests(&net), [addr(DEAD), addr(DEAD2), addr(DEAD)]);
}

#[test]
fn unregister_does_not_fail_over() {
    let mut net = Net::new(true);
    let a = account(
        &mut net,
        &[hop(SERVER, Transport::Udp), hop(DEAD, Transport::Udp)],
    );
    let now = net.now;
    net.alice.register(now, a).unwrap();
    net.settle();
    assert!(registered(&net.events_a, a));
    net.blackhole = Some(addr(SERVER));
    let now = net.now;
    net.alice.unregister(now, a).unwrap();
    net.advance(Duration::from_secs(40));
    assert!(register_dests(&net).iter().all(|d| *d == addr(SERVER)));
}
