//! Path between two nodes sharing their bindings (RFC 3327, RFC 5626 flow tokens), on simulated
//! time: node A (192.0.2.1:5060) accepts the REGISTERs; node B (192.0.2.2:5060) gets A's
//! bindings as a shared store would hand them over (`Location::restore`) and routes calls.

use super::*;
use crate::server::location::Binding;
use crate::server::path::{self, Flow, OwnRoute};

const SECRET: [u8; 32] = [9; 32];
const T0: u64 = 1_700_000_000;
const A: &str = "192.0.2.1:5060";
const B: &str = "192.0.2.2:5060";
/// A caller registered nowhere, calling through B.
const CALLER: &str = "192.0.2.77:5060";
/// Bob's public flow: his TCP connection's peer, or the NAT's mapping.
const FLOW: &str = "198.51.100.9:40001";

struct Node {
    core: ServerCore,
    now: Instant,
}

fn node(at: &str, record_path: Option<bool>) -> Node {
    let now = Instant::now();
    let cfg = ServerConfig {
        invite_auth: false,
        record_path,
        digest_algorithms: vec![crate::auth::Algorithm::Md5, crate::auth::Algorithm::Sha256],
        ..ServerConfig::default()
    };
    let local = LocalIdentity::new(
        &[(Transport::Udp, addr(at)), (Transport::Tcp, addr(at))],
        "192.0.2.1",
        "example.com",
        &[],
    );
    let users = vec![("bob".to_string(), "bpw".to_string())];
    let mut core = ServerCore::new(&cfg, local, &users, now, T0);
    core.set_nonce_secret(SECRET);
    Node { core, now }
}

impl Node {
    fn send(&mut self, from: &str, t: Transport, text: &str) -> Vec<Transmit> {
        self.core
            .handle_datagram(self.now, wire(text), addr(from), t);
        let mut v = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            v.push(t);
        }
        v
    }

    /// Bob registers from `from` over `t`, his Via sent-by and Contact at `contact`, with the
    /// digest challenge answered; returns the final response.
    fn register(&mut self, from: &str, t: Transport, contact: &str, extra: &str) -> Response {
        let tp = t.via_name();
        let base = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/{tp} {contact};rport;branch=z9hG4bKpr{cseq}\nMax-Forwards: 70\n\
                 From: <sip:bob@example.com>;tag=r1\nTo: <sip:bob@example.com>\nCall-ID: preg@test\nCSeq: {cseq} REGISTER\n\
                 Contact: <sip:bob@{contact};transport={}>\n{extra}{auth}Expires: 600\nContent-Length: 0\n\n",
                t.as_str()
            )
        };
        let out = self.send(from, t, &base(1, ""));
        let r401 = resp(&out[0]);
        assert_eq!(r401.status, 401);
        let authz = answer(
            &r401,
            HeaderName::WwwAuthenticate,
            "bob",
            "bpw",
            "REGISTER",
            "sip:example.com",
        );
        let out = self.send(from, t, &base(2, &format!("Authorization: {authz}\n")));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].dest, out[0].transport), (addr(from), t));
        resp(&out[0])
    }

    fn bindings(&self) -> Vec<Binding> {
        self.core
            .registrar
            .location
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Takes in `other`'s bindings as the shared store would.
    fn learn(&mut self, other: &Node) {
        for (aor, b) in other.core.registrar.location.iter() {
            assert!(self.core.registrar.location.restore(aor, b.clone(), T0));
        }
    }
}

fn invite(n: u32) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKpinv{n}\nMax-Forwards: 70\n\
         From: <sip:carol@elsewhere.example>;tag=c{n}\nTo: <sip:bob@example.com>\nCall-ID: pcall{n}@test\nCSeq: 1 INVITE\n\
         Contact: <sip:carol@{CALLER}>\nContent-Length: 0\n\n"
    )
}

/// The forwarded INVITE among `out` (the 100 Trying aside).
fn forwarded(out: &[Transmit]) -> (Transmit, Request) {
    let t = out
        .iter()
        .find(|t| matches!(parse(t), Message::Request(_)))
        .unwrap_or_else(|| panic!("nothing forwarded: {out:?}"))
        .clone();
    let r = req(&t);
    (t, r)
}

fn routes(r: &Request) -> Vec<String> {
    r.headers
        .get_all(&HeaderName::Route)
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn register_over_tcp_records_a_verified_path() {
    let mut a = node(A, Some(true));
    let ok = a.register(FLOW, Transport::Tcp, FLOW, "");
    assert_eq!(ok.status, 200);
    assert!(
        ok.headers.get(&HeaderName::Path).is_none(),
        "our own flow URI is not echoed"
    );
    let b = &a.bindings()[0];
    assert_eq!(b.path.len(), 1, "{:?}", b.path);
    let flow = Flow {
        transport: Transport::Tcp,
        source: addr(FLOW),
        nat: false,
    };
    assert_eq!(
        path::classify(&b.path[0], a.core.local(), &SECRET),
        OwnRoute::Flow(flow)
    );
    assert!(b.path[0].ends_with("@192.0.2.1:5060;transport=udp;lr;ob>"));
    // A itself reaches Bob down his connection, with no Route.
    let (t, inv) = forwarded(&a.send(CALLER, Transport::Udp, &invite(9)));
    assert_eq!((t.dest, t.transport), (addr(FLOW), Transport::Tcp));
    assert!(routes(&inv).is_empty(), "{:?}", routes(&inv));
    // Off: no Path (the default without a Redis store, too).
    for off in [Some(false), None] {
        let mut a = node(A, off);
        a.register(FLOW, Transport::Tcp, FLOW, "");
        assert!(a.bindings()[0].path.is_empty());
    }
}

#[test]
fn udp_binding_without_nat_has_no_path_and_is_routed_directly() {
    let mut a = node(A, Some(true));
    a.register(FLOW, Transport::Udp, FLOW, "");
    assert!(a.bindings()[0].path.is_empty());
    let mut b = node(B, Some(true));
    b.learn(&a);
    let (t, inv) = forwarded(&b.send(CALLER, Transport::Udp, &invite(1)));
    assert_eq!((t.dest, t.transport), (addr(FLOW), Transport::Udp));
    assert!(routes(&inv).is_empty());
    assert_eq!(inv.uri.to_string(), format!("sip:bob@{FLOW};transport=udp"));
}

#[test]
fn the_other_node_routes_through_the_path_and_the_registrar_relays_down_the_flow() {
    let mut a = node(A, Some(true));
    a.register(FLOW, Transport::Tcp, FLOW, "");
    let mut b = node(B, Some(true));
    b.learn(&a);
    let path = a.bindings()[0].path.clone();

    // B: to A's Path URI, the Path as Route set, the contact as Request-URI (RFC 3327 §5.5).
    let (t, inv) = forwarded(&b.send(CALLER, Transport::Udp, &invite(2)));
    assert_eq!((t.dest, t.transport), (addr(A), Transport::Udp));
    assert_eq!(
        routes(&inv),
        path.iter().map(|p| p.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(inv.uri.to_string(), format!("sip:bob@{FLOW};transport=tcp"));

    // A: the token verifies, the Route goes, the request goes down Bob's connection.
    let (t, inv_a) = forwarded(&a.send(B, Transport::Udp, &String::from_utf8_lossy(&t.bytes)));
    assert_eq!((t.dest, t.transport), (addr(FLOW), Transport::Tcp));
    assert!(routes(&inv_a).is_empty(), "{:?}", routes(&inv_a));
    assert_eq!(inv_a.uri, inv.uri);
    assert_eq!(inv_a.headers.count(&HeaderName::Via), 3);
    assert_eq!(
        inv_a.headers.count(&HeaderName::RecordRoute),
        3,
        "B, then A twice (UDP in, TCP out)"
    );

    // Bob answers: back to B by Via, then to the caller.
    let ok = uas_response(&inv_a, 200, "bobtag", FLOW);
    let out = a.send(FLOW, Transport::Tcp, &String::from_utf8_lossy(&ok));
    let to_b = out.iter().find(|t| t.dest == addr(B)).expect("200 to B");
    let out = b.send(A, Transport::Udp, &String::from_utf8_lossy(&to_b.bytes));
    let to_caller = out
        .iter()
        .find(|t| t.dest == addr(CALLER))
        .expect("200 to the caller");
    let ok = resp(to_caller);
    assert_eq!(ok.status, 200);

    // The caller's BYE follows the Record-Route (as the UAS saw it, reversed): B, then A, then
    // Bob's flow.
    let mut route_set: Vec<String> = inv_a
        .headers
        .get_all(&HeaderName::RecordRoute)
        .map(|v| v.to_string())
        .collect();
    route_set.reverse();
    let bye = format!(
        "BYE sip:bob@{FLOW};transport=tcp SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKpbye\nMax-Forwards: 70\n\
         From: <sip:carol@elsewhere.example>;tag=c2\nTo: <sip:bob@example.com>;tag=bobtag\nCall-ID: pcall2@test\nCSeq: 2 BYE\n\
         {}Content-Length: 0\n\n",
        route_set
            .iter()
            .map(|r| format!("Route: {r}\n"))
            .collect::<String>()
    );
    let (t, _) = forwarded(&b.send(CALLER, Transport::Udp, &bye));
    assert_eq!(t.dest, addr(A));
    let (t, bye_a) = forwarded(&a.send(B, Transport::Udp, &String::from_utf8_lossy(&t.bytes)));
    assert_eq!((t.dest, t.transport), (addr(FLOW), Transport::Tcp));
    assert!(routes(&bye_a).is_empty());
}

#[test]
fn a_nat_binding_gets_a_path_and_in_dialog_requests_use_the_flow() {
    let mut a = node(A, Some(true));
    // Via and Contact name a private address; the source is the NAT's mapping.
    a.register(FLOW, Transport::Udp, "10.0.0.5:5060", "");
    let bind = &a.bindings()[0];
    assert!(bind.behind_nat);
    assert!(matches!(
        path::classify(&bind.path[0], a.core.local(), &SECRET),
        OwnRoute::Flow(Flow { nat: true, .. })
    ));
    let mut b = node(B, Some(true));
    b.learn(&a);
    let (t, _) = forwarded(&b.send(CALLER, Transport::Udp, &invite(3)));
    assert_eq!(t.dest, addr(A), "never straight to the NAT mapping from B");
    let (t, inv_a) = forwarded(&a.send(B, Transport::Udp, &String::from_utf8_lossy(&t.bytes)));
    assert_eq!((t.dest, t.transport), (addr(FLOW), Transport::Udp));
    // Bob's BYE goes A -> B -> caller; the caller's BYE reaches Bob's mapping through A.
    let ok = uas_response(&inv_a, 200, "bt3", "10.0.0.5:5060");
    let out = a.send(FLOW, Transport::Udp, &String::from_utf8_lossy(&ok));
    let to_b = out.iter().find(|t| t.dest == addr(B)).expect("200 to B");
    b.send(A, Transport::Udp, &String::from_utf8_lossy(&to_b.bytes));
    let rr: Vec<String> = inv_a
        .headers
        .get_all(&HeaderName::RecordRoute)
        .map(|v| v.to_string())
        .collect();
    let bye = format!(
        "BYE sip:carol@{CALLER} SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKpbb\nMax-Forwards: 70\n\
         From: <sip:bob@example.com>;tag=bt3\nTo: <sip:carol@elsewhere.example>;tag=c3\nCall-ID: pcall3@test\nCSeq: 1 BYE\n\
         {}Content-Length: 0\n\n",
        rr.iter()
            .map(|r| format!("Route: {r}\n"))
            .collect::<String>()
    );
    let (t, _) = forwarded(&a.send(FLOW, Transport::Udp, &bye));
    assert_eq!(t.dest, addr(B));
    let (t, _) = forwarded(&b.send(A, Transport::Udp, &String::from_utf8_lossy(&t.bytes)));
    assert_eq!(t.dest, addr(CALLER));
}

#[test]
fn a_forged_flow_token_gets_430_and_nothing_is_relayed() {
    let mut a = node(A, Some(true));
    let victim = Flow {
        transport: Transport::Udp,
        source: addr("203.0.113.66:5060"),
        nat: true,
    };
    // Made with another secret, and a tampered one.
    let foreign = path::encode_token(&victim, &[1; 32]);
    let mut tampered = hex::decode(path::encode_token(&victim, &SECRET)).unwrap();
    tampered[1] ^= 0x20;
    for tok in [foreign, hex::encode(tampered), "nothex".to_string()] {
        let text = format!(
            "INVITE sip:bob@203.0.113.66 SIP/2.0\nVia: SIP/2.0/UDP {B};branch=z9hG4bKforge{}\nMax-Forwards: 70\n\
             Route: <sip:{tok}@192.0.2.1:5060;transport=udp;lr;ob>\n\
             From: <sip:carol@elsewhere.example>;tag=f\nTo: <sip:bob@example.com>\nCall-ID: forge{}@test\nCSeq: 1 INVITE\n\
             Contact: <sip:carol@{CALLER}>\nContent-Length: 0\n\n",
            tok.len(),
            tok.len()
        );
        let out = a.send(B, Transport::Udp, &text);
        assert!(out.iter().all(|t| t.dest == addr(B)), "{out:?}");
        let last = resp(out.last().unwrap());
        assert_eq!(last.status, 430, "{tok}");
    }
}

#[test]
fn an_edge_proxy_path_is_stored_echoed_and_routed() {
    let mut a = node(A, Some(true));
    let edge = "<sip:edge.example:5062;lr>";
    let ok = a.register(
        FLOW,
        Transport::Udp,
        FLOW,
        &format!("Path: {edge}\nSupported: path\n"),
    );
    assert_eq!(
        ok.headers
            .get_all(&HeaderName::Path)
            .map(|v| v.to_string())
            .collect::<Vec<_>>(),
        [edge]
    );
    assert_eq!(
        a.bindings()[0].path,
        vec![crate::sip::msg::ByteString::from(edge)]
    );
    let edge_ip = "<sip:192.0.2.40:5062;lr>";
    let mut a = node(A, Some(true));
    a.register(FLOW, Transport::Udp, FLOW, &format!("Path: {edge_ip}\n"));
    let mut b = node(B, Some(true));
    b.learn(&a);
    let (t, inv) = forwarded(&b.send(CALLER, Transport::Udp, &invite(5)));
    assert_eq!(t.dest, addr("192.0.2.40:5062"));
    assert_eq!(routes(&inv), [edge_ip]);
}

#[test]
fn a_cancel_follows_the_invite_through_the_registering_node() {
    let mut a = node(A, Some(true));
    a.register(FLOW, Transport::Tcp, FLOW, "");
    let mut b = node(B, Some(true));
    b.learn(&a);
    let (t, _) = forwarded(&b.send(CALLER, Transport::Udp, &invite(6)));
    let (_, inv_a) = forwarded(&a.send(B, Transport::Udp, &String::from_utf8_lossy(&t.bytes)));
    // Bob rings; the 180 goes back A -> B (B's branch is then cancellable, RFC 3261 §9.1).
    let ringing = uas_response(&inv_a, 180, "bt6", FLOW);
    let out = a.send(FLOW, Transport::Tcp, &String::from_utf8_lossy(&ringing));
    let to_b = out.iter().find(|t| t.dest == addr(B)).expect("180 to B");
    b.send(A, Transport::Udp, &String::from_utf8_lossy(&to_b.bytes));
    let cancel = format!(
        "CANCEL sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKpinv6\nMax-Forwards: 70\n\
         From: <sip:carol@elsewhere.example>;tag=c6\nTo: <sip:bob@example.com>\nCall-ID: pcall6@test\nCSeq: 1 CANCEL\n\
         Content-Length: 0\n\n"
    );
    let out = b.send(CALLER, Transport::Udp, &cancel);
    let to_a = out
        .iter()
        .find(|t| {
            t.dest == addr(A)
                && matches!(parse(t), Message::Request(ref r) if r.method == Method::Cancel)
        })
        .expect("CANCEL to A");
    assert_eq!(
        routes(&req(to_a)).len(),
        1,
        "the CANCEL carries the INVITE's Route (§9.1)"
    );
    let out = a.send(B, Transport::Udp, &String::from_utf8_lossy(&to_a.bytes));
    assert!(
        out.iter()
            .any(|t| (t.dest, t.transport) == (addr(FLOW), Transport::Tcp)
                && matches!(parse(t), Message::Request(ref r) if r.method == Method::Cancel)),
        "A cancels the branch down Bob's flow: {out:?}"
    );
}

#[test]
fn a_flow_whose_connection_is_gone_gets_430_through_the_other_node() {
    let mut a = node(A, Some(true));
    a.register(FLOW, Transport::Tcp, FLOW, "");
    let mut b = node(B, Some(true));
    b.learn(&a);
    let (t, _) = forwarded(&b.send(CALLER, Transport::Udp, &invite(7)));
    let (t, _) = forwarded(&a.send(B, Transport::Udp, &String::from_utf8_lossy(&t.bytes)));
    assert_eq!((t.dest, t.transport), (addr(FLOW), Transport::Tcp));

    // Bob's connection is gone: A cannot send down the flow the token names (RFC 5626 §5.3).
    a.core
        .connection_failed(a.now, addr(FLOW), Transport::Tcp, "connection reset");
    let mut out = Vec::new();
    while let Some(t) = a.core.poll_transmit() {
        out.push(t);
    }
    let to_b: Vec<Response> = out
        .iter()
        .filter(|t| t.dest == addr(B))
        .filter_map(|t| match parse(t) {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        })
        .collect();
    let last = to_b
        .last()
        .unwrap_or_else(|| panic!("no response to B: {out:?}"));
    assert_eq!(
        (last.status, &*last.reason),
        (430, "Flow Failed"),
        "not a 503: B must not think A is down"
    );

    // B relays the 430 to the caller.
    let out = b.send(
        A,
        Transport::Udp,
        &String::from_utf8_lossy(&last.to_bytes()),
    );
    let to_caller = out
        .iter()
        .find(|t| t.dest == addr(CALLER) && matches!(parse(t), Message::Response(_)))
        .unwrap_or_else(|| panic!("nothing to the caller: {out:?}"));
    assert_eq!(resp(to_caller).status, 430);
}
