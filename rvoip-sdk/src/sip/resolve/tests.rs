//! RFC 3263 selection over an in-memory zone: no DNS server, deterministic with a seeded RNG.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::sip::transport::Transport;

/// An in-memory zone that logs every query it is asked; names in `failing` answer SERVFAIL.
#[derive(Default)]
struct Zone {
    naptr: HashMap<String, Vec<Naptr>>,
    srv: HashMap<String, Vec<Srv>>,
    addrs: HashMap<String, Vec<IpAddr>>,
    failing: Vec<String>,
    log: Mutex<Vec<Query>>,
}

/// A zone from lines like `NAPTR name order pref flags service replacement`,
/// `SRV name prio weight port target`, `A name ip…`; `-` is an empty field.
fn zone(lines: &[&str]) -> Zone {
    let mut z = Zone::default();
    for line in lines {
        let f: Vec<&str> = line
            .split_whitespace()
            .map(|w| if w == "-" { "" } else { w })
            .collect();
        let (n, s) = (
            |i: usize| f[i].parse::<u16>().unwrap(),
            |i: usize| f[i].to_string(),
        );
        match f[0] {
            "NAPTR" => z.naptr.entry(s(1)).or_default().push(Naptr {
                order: n(2),
                preference: n(3),
                flags: s(4),
                services: s(5),
                replacement: s(6),
            }),
            "SRV" => z.srv.entry(s(1)).or_default().push(Srv {
                priority: n(2),
                weight: n(3),
                port: n(4),
                target: s(5),
            }),
            _ => z
                .addrs
                .entry(s(1))
                .or_default()
                .extend(f[2..].iter().map(|ip| ip.parse::<IpAddr>().unwrap())),
        }
    }
    z
}

impl Zone {
    fn answer(&self, q: &Query) -> Result<Answer, ResolveError> {
        self.log.lock().unwrap().push(q.clone());
        let (Query::Naptr(name) | Query::Srv(name) | Query::Addrs(name)) = q;
        if self.failing.contains(name) {
            return Err(ResolveError::Dns(format!("SERVFAIL {name}")));
        }
        Ok(match q {
            Query::Naptr(n) => Answer::Naptr(self.naptr.get(n).cloned().unwrap_or_default()),
            Query::Srv(n) => Answer::Srv(self.srv.get(n).cloned().unwrap_or_default()),
            Query::Addrs(n) => Answer::Addrs(self.addrs.get(n).cloned().unwrap_or_default()),
        })
    }

    fn queries(&self) -> Vec<Query> {
        self.log.lock().unwrap().clone()
    }

    /// Drives a [`Plan`] synchronously.
    fn run(&self, target: &Target, seed: u64) -> Result<Vec<Destination>, ResolveError> {
        self.run_for(target, &Proto::ALL, seed)
    }

    /// [`Zone::run`] for a client that supports only `supported` ([`Plan::with_transports`]).
    fn run_for(
        &self,
        target: &Target,
        supported: &[Proto],
        seed: u64,
    ) -> Result<Vec<Destination>, ResolveError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut plan = Plan::with_transports(target, supported)?;
        while let Some(q) = plan.poll_query() {
            match self.answer(&q) {
                Ok(a) => plan.handle_answer(a, &mut rng),
                Err(e) => plan.handle_failure(e),
            }
        }
        plan.finish()
    }

    /// [`Zone::run`] as `addr/transport` words, e.g. `"192.0.2.1:5060/udp [2001:db8::1]:5060/udp"`.
    fn dests(&self, target: &Target, seed: u64) -> String {
        self.dests_for(target, &Proto::ALL, seed)
    }

    /// [`Zone::dests`] for a client that supports only `supported`.
    fn dests_for(&self, target: &Target, supported: &[Proto], seed: u64) -> String {
        let ds = self.run_for(target, supported, seed).unwrap();
        let words: Vec<String> = ds
            .iter()
            .map(|d| format!("{}/{}", d.addr, Transport::from(d.proto)))
            .collect();
        words.join(" ")
    }
}

impl Lookup for Zone {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, ResolveError> {
        Ok(match self.answer(&Query::Naptr(name.into()))? {
            Answer::Naptr(v) => v,
            _ => vec![],
        })
    }
    async fn srv(&self, name: &str) -> Result<Vec<Srv>, ResolveError> {
        Ok(match self.answer(&Query::Srv(name.into()))? {
            Answer::Srv(v) => v,
            _ => vec![],
        })
    }
    async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        Ok(match self.answer(&Query::Addrs(host.into()))? {
            Answer::Addrs(v) => v,
            _ => vec![],
        })
    }
}

fn sip(host: &str) -> Target {
    Target {
        host: host.into(),
        ..Target::default()
    }
}

fn sips(host: &str) -> Target {
    Target {
        host: host.into(),
        secure: true,
        ..Target::default()
    }
}

fn with(t: Target, port: Option<u16>, transport: Option<Proto>) -> Target {
    Target {
        port,
        transport,
        ..t
    }
}

fn not_found(host: &str) -> Result<Vec<Destination>, ResolveError> {
    Err(ResolveError::NotFound(host.into()))
}

#[test]
fn proto_names_follow_rfc_3263_and_7118() {
    for proto in Proto::ALL {
        assert_eq!(
            Proto::from_naptr_service(&proto.naptr_service().to_lowercase()),
            Some(proto)
        );
        let transport = Transport::from(proto);
        assert_eq!(Proto::from(transport), proto);
        assert_eq!(Proto::from_param(transport.as_str()), Some(proto));
        assert_eq!(proto.default_port(), transport.default_port());
        assert_eq!(proto.is_secure(), transport.is_secure());
    }
    assert_eq!(Proto::Wss.srv_prefix(), "_sips._ws");
    assert_eq!(Proto::Tls.srv_prefix(), "_sips._tcp");
    assert_eq!(Proto::Ws.naptr_service(), "SIP+D2W");
    assert_eq!(Proto::from_param(" TLS "), Some(Proto::Tls));
    assert_eq!(Proto::from_param("sctp"), None);
    assert_eq!(Proto::from_naptr_service("SIP+D2S"), None);
}

#[test]
fn ip_literal_needs_no_dns() {
    let z = Zone::default();
    assert_eq!(z.dests(&sip("192.0.2.1"), 1), "192.0.2.1:5060/udp");
    assert_eq!(
        z.dests(&with(sip("192.0.2.1"), Some(5080), Some(Proto::Tcp)), 1),
        "192.0.2.1:5080/tcp"
    );
    assert_eq!(z.dests(&sips("[2001:db8::1]"), 1), "[2001:db8::1]:5061/tls");
    assert_eq!(
        z.run(&sips("[2001:db8::1]"), 1).unwrap()[0].host,
        "2001:db8::1"
    );
    assert!(z.queries().is_empty());
}

#[test]
fn sips_upgrades_tcp_and_ws_and_refuses_udp() {
    let z = Zone::default();
    assert_eq!(
        z.dests(&with(sips("192.0.2.1"), None, Some(Proto::Tcp)), 1),
        "192.0.2.1:5061/tls"
    );
    assert_eq!(
        z.dests(&with(sips("192.0.2.1"), None, Some(Proto::Ws)), 1),
        "192.0.2.1:443/wss"
    );
    let udp = with(sips("192.0.2.1"), None, Some(Proto::Udp));
    assert_eq!(
        z.run(&udp, 1),
        Err(ResolveError::NoSecureTransport("192.0.2.1".into()))
    );
}

#[test]
fn maddr_overrides_host() {
    let z = zone(&[
        "A relay.example.net 198.51.100.7",
        "A example.com 192.0.2.99",
    ]);
    let t = Target {
        maddr: Some("203.0.113.9".into()),
        ..sip("example.com")
    };
    assert_eq!(z.dests(&t, 1), "203.0.113.9:5060/udp");
    let t = Target {
        maddr: Some("relay.example.net".into()),
        port: Some(5070),
        ..sip("example.com")
    };
    assert_eq!(z.dests(&t, 1), "198.51.100.7:5070/udp");
    assert_eq!(z.run(&t, 1).unwrap()[0].host, "relay.example.net");
}

#[test]
fn explicit_port_skips_naptr_and_srv() {
    let z = zone(&[
        "NAPTR example.com 10 10 S SIP+D2T _sip._tcp.example.com",
        "SRV _sip._tcp.example.com 0 0 5060 sip.example.com",
        "A example.com 192.0.2.10 2001:db8::10",
    ]);
    let t = with(sip("Example.COM."), Some(5090), None);
    assert_eq!(
        z.dests(&t, 1),
        "192.0.2.10:5090/udp [2001:db8::10]:5090/udp"
    );
    assert_eq!(z.run(&t, 1).unwrap()[0].host, "example.com");
    assert!(
        z.queries()
            .iter()
            .all(|q| *q == Query::Addrs("example.com".into()))
    );
    assert!(
        z.dests(&with(sips("example.com"), Some(5091), None), 1)
            .starts_with("192.0.2.10:5091/tls ")
    );
}

#[test]
fn explicit_transport_uses_its_srv_then_a_on_default_port() {
    let z = zone(&[
        "SRV _sip._tcp.a.example 0 0 5070 pbx.a.example.",
        "A pbx.a.example 192.0.2.20",
        "A b.example 192.0.2.30",
    ]);
    assert_eq!(
        z.dests(&with(sip("a.example"), None, Some(Proto::Tcp)), 1),
        "192.0.2.20:5070/tcp"
    );
    assert_eq!(
        z.dests(&with(sip("b.example"), None, Some(Proto::Ws)), 1),
        "192.0.2.30:80/ws"
    );
    assert!(
        z.queries()
            .contains(&Query::Srv("_sip._ws.b.example".into()))
    );
}

#[test]
fn naptr_ordered_by_order_then_preference_and_filtered() {
    let z = zone(&[
        "NAPTR example.com 20 5 S SIP+D2U _sip._udp.example.com",
        "NAPTR example.com 10 50 s SIP+D2T _sip._tcp.example.com",
        "NAPTR example.com 10 20 S sips+d2t _sips._tcp.example.com",
        "NAPTR example.com 5 0 S SIP+D2S _sip._sctp.example.com", // unsupported service
        "NAPTR example.com 5 0 A SIP+D2U udp.example.com",        // not an SRV pointer
        "NAPTR example.com 5 0 S SIP+D2U .",                      // no replacement
        "NAPTR example.com 10 20 S SIPS+D2T _sips._tcp.example.com", // duplicate
        "SRV _sip._udp.example.com 0 0 5060 s1.example.com",
        "SRV _sip._tcp.example.com 0 0 5060 s1.example.com",
        "SRV _sips._tcp.example.com 0 0 5061 s1.example.com",
        "SRV _sip._sctp.example.com 0 0 5060 s9.example.com",
        "A s1.example.com 192.0.2.1",
        "A s9.example.com 192.0.2.9",
    ]);
    assert_eq!(
        z.dests(&sip("example.com"), 1),
        "192.0.2.1:5061/tls 192.0.2.1:5060/tcp 192.0.2.1:5060/udp"
    );
    assert!(
        z.run(&sip("example.com"), 1)
            .unwrap()
            .iter()
            .all(|d| d.host == "example.com")
    );
    // s1's addresses were asked once per resolution, then cached.
    let s1 = z
        .queries()
        .iter()
        .filter(|q| **q == Query::Addrs("s1.example.com".into()))
        .count();
    assert_eq!(s1, 2);
    // sips keeps only the SIPS services.
    assert_eq!(z.dests(&sips("example.com"), 1), "192.0.2.1:5061/tls");
}

#[test]
fn sips_target_with_only_plaintext_offered_is_refused() {
    let z = zone(&[
        "NAPTR example.com 10 10 S SIP+D2U _sip._udp.example.com",
        "SRV _sip._udp.example.com 0 0 5060 s1.example.com",
        "SRV _sips._tcp.example.com 0 0 5061 s1.example.com",
        "A s1.example.com 192.0.2.1",
        "A example.com 192.0.2.2",
    ]);
    assert_eq!(
        z.run(&sips("example.com"), 1),
        Err(ResolveError::NoSecureTransport("example.com".into()))
    );
    // No guess at _sips._tcp nor at A records on 5061 after the domain said "UDP only".
    assert_eq!(z.queries(), [Query::Naptr("example.com".into())]);
}

#[test]
fn srv_priority_first_then_weight_deterministic_per_seed() {
    let z = zone(&[
        "SRV _sip._tcp.example.com 20 0 5060 c.example",
        "SRV _sip._tcp.example.com 10 60 5060 a.example",
        "SRV _sip._tcp.example.com 10 40 5060 b.example",
        "A a.example 192.0.2.1",
        "A b.example 192.0.2.2",
        "A c.example 192.0.2.3",
    ]);
    let t = with(sip("example.com"), None, Some(Proto::Tcp));
    let mut a_first = 0;
    for seed in 0..400 {
        let d = z.dests(&t, seed);
        assert_eq!(d, z.dests(&t, seed), "same seed, same order");
        assert!(
            d.ends_with(" 192.0.2.3:5060/tcp"),
            "priority 20 comes last: {d}"
        );
        assert_eq!(d.split(' ').count(), 3);
        a_first += usize::from(d.starts_with("192.0.2.1:"));
    }
    // Weight 60 of 100 wins first place about 60 % of the time.
    assert!((200..280).contains(&a_first), "a first {a_first}/400");
}

#[test]
fn srv_weight_zero_keeps_dns_order_and_is_rarely_first() {
    let mut rng = StdRng::seed_from_u64(7);
    let srv = |w: u16, t: &str| Srv {
        priority: 1,
        weight: w,
        port: 5060,
        target: t.into(),
    };
    let all_zero = [srv(0, "x"), srv(0, "y"), srv(0, "z")];
    let got: Vec<String> = order_srv(&all_zero, &mut rng)
        .into_iter()
        .map(|s| s.target)
        .collect();
    assert_eq!(got, ["x", "y", "z"]);
    let mixed = [srv(100, "heavy"), srv(0, "zero")];
    let zero_first = (0..1000)
        .filter(|_| order_srv(&mixed, &mut rng)[0].target == "zero")
        .count();
    // RFC 2782 puts weight 0 first in the running sum: picked first when the draw is 0 (1 in 101).
    assert!(
        (1..30).contains(&zero_first),
        "zero first {zero_first}/1000"
    );
}

#[test]
fn srv_dot_target_means_not_available_without_a_fallback() {
    let z = zone(&[
        "SRV _sip._tcp.example.com 0 0 0 .",
        "A example.com 192.0.2.1",
    ]);
    assert_eq!(
        z.run(&with(sip("example.com"), None, Some(Proto::Tcp)), 1),
        not_found("example.com")
    );
    assert!(!z.queries().contains(&Query::Addrs("example.com".into())));
}

#[test]
fn no_naptr_probes_srv_per_transport_then_a() {
    // UDP says "not here", TCP answers: TCP wins and TLS is not asked.
    let z = zone(&[
        "SRV _sip._udp.example.com 0 0 5060 .",
        "SRV _sip._tcp.example.com 0 0 5062 pbx.example.com",
        "A pbx.example.com 192.0.2.5",
    ]);
    assert_eq!(z.dests(&sip("example.com"), 1), "192.0.2.5:5062/tcp");
    assert!(
        !z.queries()
            .contains(&Query::Srv("_sips._tcp.example.com".into()))
    );
    // Only an A record: UDP on 5060, or TLS on 5061 for sips (only _sips._tcp probed).
    let z = zone(&["A example.org 2001:db8::5 192.0.2.6"]);
    assert_eq!(
        z.dests(&sip("example.org"), 1),
        "192.0.2.6:5060/udp [2001:db8::5]:5060/udp"
    );
    let n = z.queries().len();
    assert_eq!(
        z.dests(&sips("example.org"), 1),
        "192.0.2.6:5061/tls [2001:db8::5]:5061/tls"
    );
    let srv_asked: Vec<Query> = z
        .queries()
        .into_iter()
        .skip(n)
        .filter(|q| matches!(q, Query::Srv(_)))
        .collect();
    assert_eq!(srv_asked, [Query::Srv("_sips._tcp.example.org".into())]);
    // Nothing at all.
    assert_eq!(
        z.run(&sip("nowhere.example"), 1),
        not_found("nowhere.example")
    );
}

#[test]
fn addresses_ipv4_first_in_dns_order_without_duplicates() {
    let ips = |s: &str| -> Vec<IpAddr> { s.split(' ').map(|ip| ip.parse().unwrap()).collect() };
    let got = order_addrs(&ips(
        "2001:db8::1 192.0.2.2 192.0.2.1 2001:db8::1 192.0.2.2",
    ));
    assert_eq!(got, ips("192.0.2.2 192.0.2.1 2001:db8::1"));
}

#[test]
fn dns_failure_is_skipped_and_reported_only_when_nothing_is_found() {
    let mut z = zone(&["A example.com 192.0.2.1"]);
    z.failing = vec!["example.com".into()];
    // NAPTR and A fail, the SRV probes are empty: the first failure explains the empty result.
    assert_eq!(
        z.run(&sip("example.com"), 1),
        Err(ResolveError::Dns("SERVFAIL example.com".into()))
    );
    // NAPTR fails, an SRV probe answers.
    let mut z = zone(&[
        "SRV _sip._udp.example.com 0 0 5060 s.example.com",
        "A s.example.com 192.0.2.3",
    ]);
    z.failing = vec!["example.com".into()];
    assert_eq!(z.dests(&sip("example.com"), 1), "192.0.2.3:5060/udp");
}

#[test]
fn garbage_never_panics() {
    let max = u16::MAX;
    let z = zone(&[
        "NAPTR evil.example 0 0 - - -",
        "NAPTR evil.example 0 0 S SIP+D2U -",
        &format!("NAPTR evil.example {max} {max} SSS SIP+ ."),
        "NAPTR evil.example 1 1 S SIP+D2T _sip._tcp.evil.example",
        &format!("SRV _sip._tcp.evil.example 0 {max} 0 a.evil"),
        &format!("SRV _sip._tcp.evil.example 0 {max} 5060 a.evil"),
        &format!("SRV _sip._tcp.evil.example 0 {max} 5060 A.EVIL."),
        &format!("SRV _sip._tcp.evil.example 0 {max} 5061 -"),
        "SRV _sip._tcp.evil.example 1 0 5060 b.evil",
        "A a.evil 192.0.2.1",
    ]);
    assert_eq!(z.dests(&sip("evil.example"), 3), "192.0.2.1:5060/tcp");
    let port0 = with(sip("example.com"), Some(0), None);
    for t in [sip(""), sip("  "), sip("."), sip("[]"), port0] {
        assert!(
            matches!(z.run(&t, 1), Err(ResolveError::InvalidTarget(_))),
            "{t:?}"
        );
    }
    assert!(z.run(&sip("\u{0}\u{ff}..:["), 1).is_err());
    // Answers of the wrong kind, or with no query outstanding, are taken as empty.
    let mut rng = StdRng::seed_from_u64(1);
    let mut plan = Plan::new(&sip("example.com")).unwrap();
    plan.handle_answer(Answer::Addrs(vec![]), &mut rng);
    while let Some(q) = plan.poll_query() {
        let wrong = if matches!(q, Query::Srv(_)) {
            Answer::Naptr(vec![])
        } else {
            Answer::Srv(vec![])
        };
        plan.handle_answer(wrong, &mut rng);
    }
    assert_eq!(plan.finish(), not_found("example.com"));
}

#[test]
fn a_hostile_zone_is_bounded_in_queries_and_destinations() {
    let t = with(sip("example.com"), None, Some(Proto::Tcp));
    // 500 SRV targets of one address each: the query budget stops the plan.
    let mut lines = Vec::new();
    for i in 0..500 {
        lines.push(format!("SRV _sip._tcp.example.com 0 1 5060 t{i}.example"));
        lines.push(format!("A t{i}.example 10.0.{}.{}", i / 250, i % 250));
    }
    let z = zone(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let d = z.run(&t, 1).unwrap();
    assert_eq!(z.queries().len(), MAX_QUERIES);
    assert_eq!(d.len(), MAX_QUERIES - 1);
    // One target with 300 addresses: the destination cap stops the plan.
    let ips: Vec<String> = (0..300)
        .map(|i| format!("10.1.{}.{}", i / 250, i % 250))
        .collect();
    let z = zone(&[
        "SRV _sip._tcp.example.com 0 1 5060 t.example",
        &format!("A t.example {}", ips.join(" ")),
    ]);
    assert_eq!(z.run(&t, 1).unwrap().len(), MAX_DESTINATIONS);
}

#[test]
fn a_client_of_one_transport_follows_only_its_naptr_services() {
    // NAPTR prefers UDP, then TCP at a name of its own: a TCP-only client asks only for the
    // TCP service's SRV name (not _sip._tcp.<domain>, not the UDP one).
    let z = zone(&[
        "NAPTR example.com 10 10 S SIP+D2U _sip._udp.example.com",
        "NAPTR example.com 20 10 S SIP+D2T _tcp-pool.example.com",
        "SRV _sip._udp.example.com 0 0 5060 u.example.com",
        "SRV _tcp-pool.example.com 10 0 5070 t1.example.com",
        "SRV _tcp-pool.example.com 20 0 5071 t2.example.com",
        "A u.example.com 192.0.2.1",
        "A t1.example.com 192.0.2.2",
        "A t2.example.com 192.0.2.3",
    ]);
    assert_eq!(
        z.dests_for(&sip("example.com"), &[Proto::Tcp], 1),
        "192.0.2.2:5070/tcp 192.0.2.3:5071/tcp"
    );
    let q = z.queries();
    assert_eq!(q[0], Query::Naptr("example.com".into()));
    assert!(!q.contains(&Query::Srv("_sip._udp.example.com".into())));
    assert!(!q.contains(&Query::Srv("_sip._tcp.example.com".into())));
    // All transports: the NAPTR order (UDP first).
    assert!(
        z.dests(&sip("example.com"), 1)
            .starts_with("192.0.2.1:5060/udp ")
    );
}

#[test]
fn a_client_of_one_transport_probes_only_its_srv_and_falls_back_on_it() {
    // No NAPTR service for TCP: _sip._tcp is probed (UDP and TLS are not), then A on 5060/tcp.
    let z = zone(&[
        "NAPTR example.com 10 10 S SIP+D2U _sip._udp.example.com",
        "SRV _sip._udp.example.com 0 0 5060 u.example.com",
        "A u.example.com 192.0.2.1",
        "A example.com 192.0.2.9",
    ]);
    assert_eq!(
        z.dests_for(&sip("example.com"), &[Proto::Tcp], 1),
        "192.0.2.9:5060/tcp"
    );
    let srv: Vec<Query> = z
        .queries()
        .into_iter()
        .filter(|q| matches!(q, Query::Srv(_)))
        .collect();
    assert_eq!(srv, [Query::Srv("_sip._tcp.example.com".into())]);
    // A numeric host or a host with a port takes the client's transport, not UDP.
    let z = zone(&["A example.com 192.0.2.9"]);
    assert_eq!(
        z.dests_for(&sip("192.0.2.1"), &[Proto::Tcp], 1),
        "192.0.2.1:5060/tcp"
    );
    assert_eq!(
        z.dests_for(
            &with(sip("example.com"), Some(5080), None),
            &[Proto::Tcp],
            1
        ),
        "192.0.2.9:5080/tcp"
    );
    // transport= naming an unsupported transport, or no transport that can reach a sips: target.
    assert!(matches!(
        z.run_for(
            &with(sip("example.com"), None, Some(Proto::Udp)),
            &[Proto::Tcp],
            1
        ),
        Err(ResolveError::InvalidTarget(_))
    ));
    assert!(matches!(
        z.run_for(&sips("example.com"), &[Proto::Udp, Proto::Tcp], 1),
        Err(ResolveError::InvalidTarget(_))
    ));
}

#[test]
fn a_tls_client_of_a_plaintext_only_domain_is_refused_without_guessing() {
    let z = zone(&[
        "NAPTR example.com 10 10 S SIP+D2T _sip._tcp.example.com",
        "SRV _sip._tcp.example.com 0 0 5060 s1.example.com",
        "SRV _sips._tcp.example.com 0 0 5061 s1.example.com",
        "A s1.example.com 192.0.2.1",
    ]);
    assert_eq!(
        z.run_for(&sips("example.com"), &[Proto::Tls], 1),
        Err(ResolveError::NoSecureTransport("example.com".into()))
    );
    assert_eq!(z.queries(), [Query::Naptr("example.com".into())]);
}

#[tokio::test]
async fn async_resolve_drives_the_plan_over_a_lookup() {
    let z = zone(&[
        "NAPTR example.com 10 10 S SIPS+D2W _sips._ws.example.com",
        "SRV _sips._ws.example.com 0 0 8443 ws.example.com",
        "A ws.example.com 192.0.2.44",
    ]);
    let d = resolve(&z, &sips("example.com"), &mut StdRng::seed_from_u64(1))
        .await
        .unwrap();
    assert_eq!(
        (d[0].addr.to_string(), d[0].proto, d.len()),
        ("192.0.2.44:8443".into(), Proto::Wss, 1)
    );
    // The hickory adapter answers an IP literal without asking any server.
    let dns = DnsResolver::with_nameserver(SocketAddr::from(([127, 0, 0, 1], 9)));
    let d = dns.resolve(&sip("127.0.0.1")).await.unwrap();
    assert_eq!(
        (d[0].addr.to_string(), d[0].proto, d.len()),
        ("127.0.0.1:5060".into(), Proto::Udp, 1)
    );
}
