//! The dispatcher on simulated time: the configuration's checks, selection per algorithm,
//! failover order, probe transitions, DNS-named destinations and reconfiguration.

use std::time::{Duration, Instant};

use super::*;
use crate::sip::resolve::Proto;

const GW: [&str; 3] = ["127.0.0.1:5091", "127.0.0.1:5092", "127.0.0.1:5093"];

fn cfg(toml_text: &str) -> DispatchConfig {
    #[derive(serde::Deserialize)]
    struct Wrap {
        dispatch: DispatchConfig,
    }
    toml::from_str::<Wrap>(toml_text)
        .map(|w| w.dispatch)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn three(algorithm: &str, weights: [u32; 3], probe_interval_s: u64) -> DispatchConfig {
    cfg(&format!(
        "[dispatch]\nprobe_interval_s = {probe_interval_s}\nprobe_timeout_ms = 500\n\
         [[dispatch.sets]]\nname = \"gw\"\nalgorithm = \"{algorithm}\"\ndestinations = [\n\
         {{ uri = \"sip:{}\", weight = {} }},\n{{ uri = \"sip:{}\", weight = {} }},\n\
         {{ uri = \"sip:{}\", weight = {} }}]\n[[dispatch.routes]]\nprefix = \"00\"\nset = \"gw\"\n",
        GW[0], weights[0], GW[1], weights[1], GW[2], weights[2]
    ))
}

/// The index (0, 1, 2) of the destination an attempt is at.
fn gw_of(d: &Dispatcher, id: DestId) -> usize {
    let addr = d.destination(id).unwrap().addrs[0].0.to_string();
    GW.iter().position(|g| *g == addr).unwrap()
}

fn ids(d: &Dispatcher) -> Vec<DestId> {
    d.sets()[0].destinations.iter().map(|x| x.id).collect()
}

#[test]
fn config_example_parses_and_bad_tables_are_refused() {
    let c = three("weighted", [50, 30, 20], 5);
    assert_eq!(c.sets[0].algorithm, Algorithm::Weighted);
    assert_eq!(c.sets[0].fr_timer_ms, config::DEFAULT_FR_TIMER_MS);
    assert_eq!(c.routes[0].prefix.as_deref(), Some("00"));
    let bad = |body: &str| {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Wrap {
            dispatch: DispatchConfig,
        }
        toml::from_str::<Wrap>(body)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let set = "[[dispatch.sets]]\nname = \"s\"\n";
    let e = bad(&format!("{set}destinations = []\n"));
    assert!(e.contains("no destinations"), "{e}");
    let e = bad(&format!(
        "{set}destinations = [{{ uri = \"sip:u@1.2.3.4\" }}]\n"
    ));
    assert!(e.contains("no user part"), "{e}");
    let e = bad(&format!("{set}destinations = [{{ uri = \"tel:+1\" }}]\n"));
    assert!(e.contains("tel:+1"), "{e}");
    let e = bad(&format!(
        "{set}destinations = [{{ uri = \"sip:1.2.3.4\", weight = 0 }}]\n"
    ));
    assert!(e.contains("weight"), "{e}");
    let e = bad(&format!(
        "{set}algorithm = \"random\"\ndestinations = [{{ uri = \"sip:1.2.3.4\" }}]\n"
    ));
    assert!(e.contains("random"), "{e}");
    let e = bad(&format!(
        "{set}destinations = [{{ uri = \"sip:1.2.3.4;transport=ws\" }}]\n"
    ));
    assert!(e.contains("WebSocket"), "{e}");
    let e = bad("[[dispatch.routes]]\nprefix = \"0\"\nset = \"none\"\n");
    assert!(e.contains("unknown set"), "{e}");
    let e = bad(&format!(
        "{set}destinations = [{{ uri = \"sip:1.2.3.4\" }}]\n[[dispatch.routes]]\nprefix = \"0\"\ndomain = \"x\"\nset = \"s\"\n"
    ));
    assert!(e.contains("exactly one"), "{e}");
    let e = bad(&format!(
        "{set}password = \"p\"\ndestinations = [{{ uri = \"sip:1.2.3.4\" }}]\n"
    ));
    assert!(e.contains("password without username"), "{e}");
    let e = bad(&format!(
        "{set}destinations = [{{ uri = \"sip:1.2.3.4\", port = 1 }}]\n"
    ));
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn routes_longest_prefix_first_and_domains_case_insensitively() {
    let c = cfg(
        "[[dispatch.sets]]\nname = \"a\"\ndestinations = [{ uri = \"sip:10.0.0.1\" }]\n\
                 [[dispatch.sets]]\nname = \"b\"\ndestinations = [{ uri = \"sip:10.0.0.2\" }]\n\
                 [[dispatch.routes]]\nprefix = \"0\"\nset = \"a\"\n\
                 [[dispatch.routes]]\nprefix = \"0049\"\nset = \"b\"\n\
                 [[dispatch.routes]]\ndomain = \"Partner.Example\"\nset = \"b\"\n",
    );
    let d = Dispatcher::new(&c, Instant::now());
    assert_eq!(d.route_prefix("0049301234"), Some(1));
    assert_eq!(d.route_prefix("0030"), Some(0));
    assert_eq!(d.route_prefix("1234"), None);
    assert_eq!(d.route_domain("partner.EXAMPLE"), Some(1));
    assert_eq!(d.route_domain("other.example"), None);
}

#[test]
fn weighted_spreads_exactly_by_weight_per_cycle_and_skips_down_destinations() {
    let now = Instant::now();
    let mut d = Dispatcher::new(&three("weighted", [50, 30, 20], 0), now);
    let mut counts = [0u32; 3];
    for i in 0..1000 {
        let a = d.select(0, &format!("c{i}")).unwrap();
        counts[gw_of(&d, a.current)] += 1;
        if i % 100 == 99 {
            // Every cycle of sum(weights) = 100 requests holds each weight's share exactly.
            let n = (i + 1) / 100;
            assert_eq!(counts, [50 * n, 30 * n, 20 * n], "after {} requests", i + 1);
        }
    }
    // Down destinations get nothing; the others keep their ratio (50:20).
    d.failed(ids(&d)[1], Failure::Status(503));
    let mut counts = [0u32; 3];
    for i in 0..700 {
        let a = d.select(0, &format!("d{i}")).unwrap();
        counts[gw_of(&d, a.current)] += 1;
    }
    assert_eq!(counts[1], 0);
    let share = f64::from(counts[0]) / 700.0;
    assert!((share - 50.0 / 70.0).abs() < 0.01, "{counts:?}");
}

#[test]
fn round_robin_cycles_and_fails_over_in_list_order() {
    let now = Instant::now();
    let mut d = Dispatcher::new(&three("round-robin", [1, 1, 1], 0), now);
    let firsts: Vec<usize> = (0..6)
        .map(|i| {
            let a = d.select(0, &format!("c{i}")).unwrap();
            gw_of(&d, a.current)
        })
        .collect();
    assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
    // The failover order follows the list after the first pick, wrapping around.
    let mut a = d.select(0, "x").unwrap();
    assert_eq!(gw_of(&d, a.current), 0);
    let second = d.next(&mut a).unwrap();
    assert_eq!(gw_of(&d, second), 1);
    // A destination that went down meanwhile is skipped.
    d.failed(ids(&d)[2], Failure::Timeout);
    assert_eq!(d.next(&mut a), None);
    assert_eq!(a.tried, 2);
    assert_eq!(d.stats.exhausted, 1);
}

#[test]
fn hash_call_id_keeps_a_call_id_on_one_destination_and_spreads_call_ids() {
    let now = Instant::now();
    let mut d = Dispatcher::new(&three("hash-call-id", [1, 1, 1], 0), now);
    let mut counts = [0u32; 3];
    for i in 0..3000 {
        let call_id = format!("{i:08x}-call@host");
        let id = d.select(0, &call_id).unwrap().current;
        let first = gw_of(&d, id);
        for _ in 0..3 {
            let id = d.select(0, &call_id).unwrap().current;
            assert_eq!(gw_of(&d, id), first);
        }
        counts[first] += 1;
    }
    for c in counts {
        assert!((800..=1200).contains(&c), "uneven spread {counts:?}");
    }
    // Its destination down: the Call-ID moves to the next one up, consistently.
    let call_id = "stable@host";
    let home = d.select(0, call_id).unwrap().current;
    d.failed(home, Failure::Status(500));
    let moved = d.select(0, call_id).unwrap().current;
    assert_ne!(moved, home);
    assert_eq!(d.select(0, call_id).unwrap().current, moved);
}

#[test]
fn every_destination_down_is_a_last_resort_not_a_refusal() {
    let now = Instant::now();
    let mut d = Dispatcher::new(&three("round-robin", [1, 1, 1], 0), now);
    for id in ids(&d) {
        d.failed(id, Failure::Timeout);
    }
    let mut a = d.select(0, "c").unwrap();
    assert!(d.next(&mut a).is_some() && d.next(&mut a).is_some());
    assert_eq!(d.next(&mut a), None);
}

/// Runs the dispatcher to `now` and answers every probe sent with `status_of(gateway)`.
fn probe_round(
    d: &mut Dispatcher,
    now: Instant,
    status_of: impl Fn(usize) -> Option<Option<u16>>,
) -> usize {
    d.handle_timeout(now);
    let mut n = 0;
    while let Some(p) = d.poll_probe() {
        n += 1;
        let gw = GW.iter().position(|g| *g == p.addr.to_string()).unwrap();
        assert_eq!(p.uri.to_string(), format!("sip:{}", GW[gw]));
        if let Some(status) = status_of(gw) {
            d.probe_answered(p.dest, p.id, status);
        }
    }
    n
}

#[test]
fn probes_mark_down_on_408_5xx_and_timeout_and_up_on_any_other_final_status() {
    let t0 = Instant::now();
    let mut d = Dispatcher::new(&three("round-robin", [1, 1, 1], 5), t0);
    assert_eq!(d.poll_timeout(), Some(t0), "the first round is due at once");
    // Round 1: gw0 503, gw1 silent, gw2 200.
    let sent = probe_round(&mut d, t0, |gw| match gw {
        0 => Some(Some(503)),
        1 => None,
        _ => Some(Some(200)),
    });
    assert_eq!(sent, 3);
    let state = |d: &Dispatcher, i: usize| d.sets()[0].destinations[i].state;
    assert_eq!(state(&d, 0), DestState::Down);
    assert_eq!(
        state(&d, 1),
        DestState::Up,
        "still within its probe timeout"
    );
    assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    d.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(state(&d, 1), DestState::Down, "probe unanswered in time");
    let events: Vec<DispatchEvent> = std::iter::from_fn(|| d.poll_event()).collect();
    assert_eq!(events.len(), 2);
    assert!(matches!(
        &events[0],
        DispatchEvent::Down {
            failure: Failure::Status(503),
            probe: true,
            ..
        }
    ));
    assert!(matches!(
        &events[1],
        DispatchEvent::Down {
            failure: Failure::Timeout,
            ..
        }
    ));
    // Only gw2 takes requests now.
    for i in 0..4 {
        let a = d.select(0, &format!("c{i}")).unwrap();
        assert_eq!(gw_of(&d, a.current), 2);
    }
    // Round 2 (5 s later): gw0 answers 404 (alive), gw1 100 then 200; gw2 408 (down).
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(d.poll_timeout(), Some(t1));
    d.handle_timeout(t1);
    while let Some(p) = d.poll_probe() {
        let gw = GW.iter().position(|g| *g == p.addr.to_string()).unwrap();
        match gw {
            0 => d.probe_answered(p.dest, p.id, Some(404)),
            1 => {
                d.probe_answered(p.dest, p.id, Some(100));
                assert_eq!(
                    state(&d, 1),
                    DestState::Down,
                    "a provisional changes nothing"
                );
                d.probe_answered(p.dest, p.id, Some(200));
                // A duplicate answer to the same probe is stale.
                d.probe_answered(p.dest, p.id, Some(503));
            }
            _ => d.probe_answered(p.dest, p.id, Some(408)),
        }
    }
    assert_eq!(
        [state(&d, 0), state(&d, 1), state(&d, 2)],
        [DestState::Up, DestState::Up, DestState::Down]
    );
    let ups = std::iter::from_fn(|| d.poll_event())
        .filter(|e| matches!(e, DispatchEvent::Up { .. }))
        .count();
    assert_eq!(ups, 2);
    assert_eq!(d.stats.probes, 6);
}

#[test]
fn a_dns_named_destination_takes_requests_once_resolved() {
    let t0 = Instant::now();
    let c = cfg(
        "[dispatch]\nprobe_interval_s = 0\n[[dispatch.sets]]\nname = \"t\"\n\
                 destinations = [{ uri = \"sip:gw.trunk.example;transport=tcp\" }]\n",
    );
    let mut d = Dispatcher::new(&c, t0);
    assert!(d.select(0, "c").is_none(), "no address yet");
    assert_eq!(d.poll_timeout(), Some(t0));
    d.handle_timeout(t0);
    let (id, target) = d.poll_dns().expect("a lookup");
    assert_eq!(target.host, "gw.trunk.example");
    assert_eq!(target.transport, Some(Proto::Tcp));
    assert!(d.poll_dns().is_none());
    d.resolved(id, t0, Err(ResolveError::Dns("timeout".into())));
    assert!(d.select(0, "c").is_none());
    assert_eq!(d.poll_timeout(), Some(t0 + DNS_RETRY));
    d.handle_timeout(t0 + DNS_RETRY);
    let (id, _) = d.poll_dns().expect("retried");
    let dest = |a: &str| resolve::Destination {
        addr: a.parse().unwrap(),
        proto: Proto::Tcp,
        host: "gw.trunk.example".into(),
    };
    d.resolved(
        id,
        t0 + DNS_RETRY,
        Ok(vec![dest("192.0.2.1:5060"), dest("192.0.2.2:5060")]),
    );
    let a = d.select(0, "c").expect("resolved");
    let addrs = &d.destination(a.current).unwrap().addrs;
    assert_eq!(addrs.len(), 2);
    assert_eq!(
        addrs[0],
        ("192.0.2.1:5060".parse().unwrap(), Transport::Tcp)
    );
    assert_eq!(d.poll_timeout(), Some(t0 + DNS_RETRY + DNS_REFRESH));
}

#[test]
fn reconfigure_keeps_the_state_of_destinations_that_stay() {
    let t0 = Instant::now();
    let mut d = Dispatcher::new(&three("round-robin", [1, 1, 1], 0), t0);
    let before = ids(&d);
    d.failed(before[0], Failure::Timeout);
    let mut a = d.select(0, "in-progress").unwrap();
    // gw2 leaves, gw0 and gw1 stay, a new one comes.
    let c = cfg(&format!(
        "[dispatch]\nprobe_interval_s = 0\n[[dispatch.sets]]\nname = \"gw\"\n\
         destinations = [{{ uri = \"sip:{}\" }}, {{ uri = \"sip:{}\" }}, {{ uri = \"sip:127.0.0.1:5094\" }}]\n\
         [[dispatch.routes]]\nprefix = \"9\"\nset = \"gw\"\n",
        GW[0], GW[1]
    ));
    d.reconfigure(&c, t0);
    let after = ids(&d);
    assert_eq!(after[..2], before[..2], "identities kept");
    assert_ne!(after[2], before[2]);
    assert_eq!(
        d.sets()[0].destinations[0].state,
        DestState::Down,
        "state kept"
    );
    assert_eq!(d.sets()[0].destinations[2].state, DestState::Up);
    assert_eq!(d.route_prefix("00"), None);
    assert_eq!(d.route_prefix("91"), Some(0));
    // The attempt started before goes on; a destination gone is skipped.
    while let Some(id) = d.next(&mut a) {
        assert_ne!(id, before[2]);
    }
}
