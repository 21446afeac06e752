//! Virtual hosting and reload on simulated time: one user name in two domains is two AORs
//! with their own passwords and bindings; a host not served is not looked up locally
//! (REGISTER 403, a request goes out through DNS or is refused to a stranger); each domain
//! challenges in its own realm; a reload adds a user while a call is up and keeps bindings
//! and nonces.

use super::*;
use crate::server::core::restart_needed;
use crate::server::domains::{DomainConfig, LoadedConfig};

const A_PHONE: &str = "127.0.0.1:6001";
const B_PHONE: &str = "127.0.0.1:6002";
const CALLER: &str = "127.0.0.1:6003";

fn domain(users: &[(&str, &str)], invite_auth: Option<bool>) -> DomainConfig {
    DomainConfig {
        users: users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect(),
        invite_auth,
        ..DomainConfig::default()
    }
}

/// A server for example.com (alice, bob, carol) that also serves a.example and b.example,
/// both with a user alice (different passwords).
fn two_domains(invite_auth: bool) -> Harness {
    let cfg = ServerConfig {
        invite_auth,
        domains: [
            ("a.example".to_string(), domain(&[("alice", "pw-a")], None)),
            ("b.example".to_string(), {
                let mut d = domain(&[("alice", "pw-b"), ("dave", "pw-d")], Some(false));
                d.aliases = vec!["sip.b.example".into()];
                d.max_bindings_per_aor = Some(1);
                d
            }),
        ]
        .into_iter()
        .collect(),
        ..ServerConfig::default()
    };
    let domains = cfg.load_domains().unwrap();
    let mut h = Harness::with_config(cfg);
    h.core.set_domains(&domains);
    h
}

/// REGISTER `user@host` from `phone`, answering the 401 with `pw`. Returns the 401 and the
/// final response.
fn register_at(
    h: &mut Harness,
    user: &str,
    host: &str,
    pw: &str,
    phone: &str,
) -> (Response, Response) {
    let n = h.next();
    let reg = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:{host} SIP/2.0\nVia: SIP/2.0/UDP {phone};branch=z9hG4bKvh{n}x{cseq}\nMax-Forwards: 70\n\
             From: <sip:{user}@{host}>;tag=v{n}\nTo: <sip:{user}@{host}>\nCall-ID: vh{n}@test\nCSeq: {cseq} REGISTER\n\
             Contact: <sip:{user}@{phone}>\n{auth}Expires: 600\nContent-Length: 0\n\n"
        )
    };
    let out = h.send(phone, &reg(1, ""));
    let first = resp(&out[0]);
    if first.status != 401 {
        return (first.clone(), first);
    }
    let authz = answer(
        &first,
        HeaderName::WwwAuthenticate,
        user,
        pw,
        "REGISTER",
        &format!("sip:{host}"),
    );
    let out = h.send(phone, &reg(2, &format!("Authorization: {authz}\n")));
    (first, resp(&out[0]))
}

fn realm_of(r: &Response, name: HeaderName) -> String {
    let v = r.headers.get(&name).expect("a challenge");
    Auth::parse(v)
        .unwrap()
        .get("realm")
        .unwrap_or("")
        .to_string()
}

/// An INVITE to `to` (a whole URI) from `from` (a whole URI), sent from CALLER.
fn invite_to(n: u32, to: &str, from: &str, extra: &str) -> String {
    format!(
        "INVITE {to} SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKvi{n}\nMax-Forwards: 70\n\
         From: <{from}>;tag=c{n}\nTo: <{to}>\nCall-ID: vi{n}@test\nCSeq: 1 INVITE\n\
         Contact: <sip:caller@{CALLER}>\n{extra}Content-Length: 0\n\n"
    )
}

fn dests(out: &[Transmit]) -> Vec<SocketAddr> {
    out.iter()
        .filter(|t| matches!(parse(t), Message::Request(_)))
        .map(|t| t.dest)
        .collect()
}

fn statuses(out: &[Transmit]) -> Vec<u16> {
    out.iter()
        .filter_map(|t| match parse(t) {
            Message::Response(r) => Some(r.status),
            Message::Request(_) => None,
        })
        .collect()
}

#[test]
fn one_user_name_in_two_domains_is_two_aors() {
    let mut h = two_domains(false);
    // Each domain challenges in its own realm and checks its own password.
    let (r401, ok) = register_at(&mut h, "alice", "a.example", "pw-a", A_PHONE);
    assert_eq!(realm_of(&r401, HeaderName::WwwAuthenticate), "a.example");
    assert_eq!(ok.status, 200);
    let (r401, wrong) = register_at(&mut h, "alice", "b.example", "pw-a", B_PHONE);
    assert_eq!(realm_of(&r401, HeaderName::WwwAuthenticate), "b.example");
    assert_eq!(wrong.status, 401, "a's password is not b's");
    let (_, ok) = register_at(&mut h, "alice", "sip.b.example", "pw-b", B_PHONE);
    assert_eq!(ok.status, 200, "an alias of b.example");
    let contacts: Vec<_> = ok.headers.get_all(&HeaderName::Contact).collect();
    assert_eq!(
        contacts.len(),
        1,
        "b's alice has only her own binding: {contacts:?}"
    );
    assert!(contacts[0].contains(B_PHONE));
    assert_eq!(
        h.core
            .registrar
            .location
            .lookup("alice@a.example", h.core.unix_secs(h.now))
            .len(),
        1
    );
    assert_eq!(
        h.core
            .registrar
            .location
            .lookup("alice@b.example", h.core.unix_secs(h.now))
            .len(),
        1
    );
    assert!(
        h.core
            .registrar
            .location
            .lookup("alice", h.core.unix_secs(h.now))
            .is_empty()
    );

    // A call to alice@a reaches only a's binding, to alice@b only b's.
    let out = h.send(
        CALLER,
        &invite_to(1, "sip:alice@a.example", "sip:x@198.51.100.1", ""),
    );
    assert_eq!(dests(&out), vec![addr(A_PHONE)]);
    let out = h.send(
        CALLER,
        &invite_to(2, "sip:alice@B.Example", "sip:x@198.51.100.1", ""),
    );
    assert_eq!(dests(&out), vec![addr(B_PHONE)]);
    // The default domain's alice has no binding: 480, neither phone rings.
    let out = h.send(
        CALLER,
        &invite_to(3, "sip:alice@127.0.0.1", "sip:x@198.51.100.1", ""),
    );
    assert_eq!((dests(&out), statuses(&out)), (vec![], vec![480]));
    // b.example keeps one binding per AOR (its own max_bindings_per_aor).
    let (_, full) = register_at(&mut h, "alice", "b.example", "pw-b", "127.0.0.1:6009");
    assert_eq!(full.status, 503);
}

#[test]
fn hosts_not_served_are_not_looked_up_locally() {
    let mut h = two_domains(false);
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    // REGISTER for another domain: 403, no challenge, nothing stored.
    let (r, _) = register_at(&mut h, "bob", "c.example", "bpw", BOB2);
    assert_eq!(r.status, 403);
    // To of another domain under our Request-URI: 403 too.
    let reg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {BOB2};branch=z9hG4bKvf1\nMax-Forwards: 70\n\
         From: <sip:bob@c.example>;tag=f\nTo: <sip:bob@c.example>\nCall-ID: vf@test\nCSeq: 1 REGISTER\n\
         Contact: <sip:bob@{BOB2}>\nContent-Length: 0\n\n"
    );
    assert_eq!(resp(&h.send(BOB2, &reg)[0]).status, 403);
    assert_eq!(h.core.registrar.location.len(), 1);

    // A stranger's INVITE for bob@c.example or bob@<an IP not ours>: refused (no open relay),
    // never sent to the local bob.
    for (n, to) in [(1, "sip:bob@c.example"), (2, "sip:bob@192.0.2.7")] {
        let out = h.send(CALLER, &invite_to(n, to, "sip:x@198.51.100.1", ""));
        assert_eq!((dests(&out), statuses(&out)), (vec![], vec![403]), "{to}");
        assert!(h.core.poll_dns_query().is_none());
    }
    // From a user of a served domain (b.example does not challenge): resolved and sent there.
    let out = h.send(
        CALLER,
        &invite_to(3, "sip:bob@c.example", "sip:dave@b.example", ""),
    );
    assert!(dests(&out).is_empty());
    let q = h.core.poll_dns_query().expect("a DNS lookup for c.example");
    assert_eq!(&*q.target.host, "c.example");
    // Control: the same user and host of ours reaches bob.
    let out = h.send(
        CALLER,
        &invite_to(4, "sip:bob@127.0.0.1", "sip:dave@b.example", ""),
    );
    assert_eq!(dests(&out), vec![addr(BOB1)]);
}

#[test]
fn senders_are_challenged_in_their_own_domain() {
    let mut h = two_domains(true);
    assert_eq!(
        register_at(&mut h, "alice", "b.example", "pw-b", B_PHONE)
            .1
            .status,
        200
    );
    // a.example inherits invite_auth = true: 407 in realm a.example.
    let out = h.send(
        CALLER,
        &invite_to(1, "sip:alice@b.example", "sip:alice@a.example", ""),
    );
    assert_eq!(statuses(&out), vec![407]);
    let r407 = resp(&out[0]);
    assert_eq!(realm_of(&r407, HeaderName::ProxyAuthenticate), "a.example");
    // b's password does not authenticate a's alice; a's does.
    for (n, pw, want_fork) in [(2, "pw-b", false), (3, "pw-a", true)] {
        let authz = answer(
            &r407,
            HeaderName::ProxyAuthenticate,
            "alice",
            pw,
            "INVITE",
            "sip:alice@b.example",
        );
        let text = invite_to(
            n,
            "sip:alice@b.example",
            "sip:alice@a.example",
            &format!("Proxy-Authorization: {authz}\n"),
        );
        let out = h.send(CALLER, &text);
        assert_eq!(
            dests(&out) == vec![addr(B_PHONE)],
            want_fork,
            "{pw}: {:?}",
            statuses(&out)
        );
    }
    // b.example has invite_auth = false: its users' INVITEs go through unchallenged.
    let out = h.send(
        CALLER,
        &invite_to(4, "sip:alice@b.example", "sip:dave@b.example", ""),
    );
    assert_eq!(dests(&out), vec![addr(B_PHONE)]);
}

fn loaded(cfg: ServerConfig) -> LoadedConfig {
    LoadedConfig::load(cfg).expect("a good configuration")
}

fn inline_users(users: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    users
        .iter()
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect()
}

#[test]
fn reload_adds_a_user_while_a_call_is_up_and_keeps_bindings_and_nonces() {
    let mut cfg = ServerConfig {
        invite_auth: false,
        users: inline_users(&[("alice", "apw"), ("bob", "bpw")]),
        ..ServerConfig::default()
    };
    let mut h = Harness::with_config(cfg.clone());
    assert_eq!(h.register("bob", "bpw", BOB1).status, 200);
    // A call alice → bob, answered.
    let out = h.send(ALICE, &invite(1, "bob", ""));
    let fork = out
        .iter()
        .find(|t| t.dest == addr(BOB1))
        .map(req)
        .expect("bob rings");
    let out = h.send_bytes(BOB1, uas_response(&fork, 200, "b1", BOB1));
    assert_eq!(statuses(&out), vec![200]);
    // dave is unknown; a REGISTER challenge is handed out before the reload.
    assert_eq!(h.register("dave", "dpw", BOB2).status, 401);
    let pending = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {BOB2};branch=z9hG4bKrl1\nMax-Forwards: 70\n\
         From: <sip:dave@127.0.0.1>;tag=rl\nTo: <sip:dave@127.0.0.1>\nCall-ID: rl@test\nCSeq: 1 REGISTER\n\
         Contact: <sip:dave@{BOB2}>\nExpires: 600\nContent-Length: 0\n\n"
    );
    let r401 = resp(&h.send(BOB2, &pending)[0]);

    cfg.users.insert("dave".into(), "dpw".into());
    cfg.max_forward_body_bytes = 100;
    let s = h.core.reload(&loaded(cfg.clone())).unwrap();
    assert_eq!((s.users, s.domains), (3, 0));
    // The nonce from before the reload still works for the new user.
    let authz = answer(
        &r401,
        HeaderName::WwwAuthenticate,
        "dave",
        "dpw",
        "REGISTER",
        "sip:127.0.0.1",
    );
    let text = pending
        .replace("CSeq: 1", "CSeq: 2")
        .replace("z9hG4bKrl1", "z9hG4bKrl2")
        .replace("Expires", &format!("Authorization: {authz}\nExpires"));
    assert_eq!(resp(&h.send(BOB2, &text)[0]).status, 200);
    assert_eq!(
        h.core
            .registrar
            .location
            .lookup("bob", h.core.unix_secs(h.now))
            .len(),
        1,
        "bob kept"
    );
    // The call is still up: alice's BYE follows the route set to bob.
    let bye = format!(
        "BYE sip:bob@{BOB1} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKrlbye\nMax-Forwards: 70\n\
         Route: <sip:127.0.0.1:5060;lr>\nFrom: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bob@127.0.0.1>;tag=b1\n\
         Call-ID: call1@test\nCSeq: 2 BYE\nContent-Length: 0\n\n"
    );
    assert_eq!(dests(&h.send(ALICE, &bye)), vec![addr(BOB1)]);
    // A call to dave reaches him; a new limit applies (a 200-byte body is over 100).
    let out = h.send(ALICE, &invite(2, "dave", ""));
    assert_eq!(dests(&out), vec![addr(BOB2)]);
    let big = invite(3, "dave", "Content-Type: application/sdp\n").replace(
        "Content-Length: 0\n\n",
        &format!("Content-Length: 200\n\n{}", "v".repeat(200)),
    );
    assert_eq!(statuses(&h.send(ALICE, &big)), vec![513]);
}

#[test]
fn reload_changes_domains_and_refuses_bad_rules_without_changing_anything() {
    let mut h = two_domains(false);
    assert_eq!(
        register_at(&mut h, "alice", "a.example", "pw-a", A_PHONE)
            .1
            .status,
        200
    );
    // Drop b.example, add c.example.
    let mut cfg = ServerConfig {
        invite_auth: false,
        // As the harness offers them (the answers below take the SHA-256 one).
        digest_algorithms: vec![crate::auth::Algorithm::Md5, crate::auth::Algorithm::Sha256],
        domains: [("a.example".to_string(), domain(&[("alice", "pw-a")], None))]
            .into_iter()
            .collect(),
        ..ServerConfig::default()
    };
    cfg.domains
        .insert("c.example".into(), domain(&[("erin", "pw-e")], None));
    // A bad forwarding rule: refused, and b.example is still served.
    let mut bad = cfg.clone();
    bad.forward.insert(
        "bob".into(),
        crate::server::forward::Forwarding {
            busy: Some("tel:1".into()),
            ..Default::default()
        },
    );
    let bad = LoadedConfig {
        users: bad.load_users().unwrap(),
        domains: bad.load_domains().unwrap(),
        cfg: bad,
    };
    assert!(h.core.reload(&bad).is_err());
    assert_eq!(h.core.domain_count(), 3);
    assert_eq!(
        register_at(&mut h, "alice", "b.example", "pw-b", B_PHONE)
            .1
            .status,
        200
    );

    h.core.reload(&loaded(cfg)).unwrap();
    assert_eq!(h.core.domain_count(), 3);
    assert_eq!(
        register_at(&mut h, "erin", "c.example", "pw-e", BOB1)
            .1
            .status,
        200
    );
    assert_eq!(
        register_at(&mut h, "alice", "b.example", "pw-b", B_PHONE)
            .0
            .status,
        403
    );
    // a.example's binding survived the reload and still gets calls.
    let out = h.send(
        CALLER,
        &invite_to(1, "sip:alice@a.example", "sip:x@198.51.100.1", ""),
    );
    assert_eq!(dests(&out), vec![addr(A_PHONE)]);
}

#[test]
fn settings_that_need_a_restart_are_named() {
    let old = ServerConfig::default();
    let mut new = old.clone();
    new.users.insert("x".into(), "y".into());
    new.max_bindings_per_aor = 3;
    assert!(restart_needed(&old, &new).is_empty());
    new.listen = vec!["udp:127.0.0.1:5099".parse().unwrap()];
    new.relay_ports = "40000-40099".parse().unwrap();
    assert_eq!(restart_needed(&old, &new), vec!["listen", "relay_ports"]);
}
