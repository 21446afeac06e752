//! Outbound routing to gateways on simulated time ([`crate::server::dispatch`]): a prefix rule
//! sends a call to a set, which fails over on 503, 408 and silence (fr_timer) with the best
//! response upstream once the set is exhausted; trunk authentication (401 answered once, CSeq
//! kept consistent for the rest of the dialog); probes taking a gateway out and back; domain
//! rules; DNS-named destinations; who may use a route.

use super::*;
use crate::server::dispatch::{DestState, config::DispatchConfig};
use crate::sip::resolve::{Destination, Proto};

const GW: [&str; 3] = ["127.0.0.1:5091", "127.0.0.1:5092", "127.0.0.1:5093"];

fn dispatch_cfg(extra_set: &str, probe_interval_s: u64) -> ServerConfig {
    #[derive(serde::Deserialize)]
    struct Wrap {
        dispatch: DispatchConfig,
    }
    let text = format!(
        "[dispatch]\nprobe_interval_s = {probe_interval_s}\nprobe_timeout_ms = 500\n\
         [[dispatch.sets]]\nname = \"pstn\"\nfr_timer_ms = 1000\n{extra_set}\
         destinations = [{{ uri = \"sip:{}\" }}, {{ uri = \"sip:{}\" }}, {{ uri = \"sip:{}\" }}]\n\
         [[dispatch.sets]]\nname = \"partner\"\ndestinations = [{{ uri = \"sip:gw.partner.example\" }}]\n\
         [[dispatch.routes]]\nprefix = \"00\"\nset = \"pstn\"\n\
         [[dispatch.routes]]\ndomain = \"partner.example\"\nset = \"partner\"\n",
        GW[0], GW[1], GW[2]
    );
    let w: Wrap = toml::from_str(&text).unwrap();
    ServerConfig {
        invite_auth: false,
        dispatch: w.dispatch,
        ..ServerConfig::default()
    }
}

fn harness(extra_set: &str, probe_interval_s: u64) -> Harness {
    let mut h = Harness::with_config(dispatch_cfg(extra_set, probe_interval_s));
    // The domain rule's destination needs DNS: answer its lookup (not used by most tests).
    h.advance(Duration::ZERO);
    if let Some(q) = h.core.poll_dns_query() {
        let d = Destination {
            addr: addr("127.0.0.1:5095"),
            proto: Proto::Udp,
            host: "gw.partner.example".into(),
        };
        h.core.dns_resolved(h.now, q.id, Ok(vec![d]));
    }
    h
}

fn number_invite(n: u32, number: &str) -> String {
    invite(n, number, "")
}

fn to(out: &[Transmit], dest: &str) -> Vec<Message> {
    out.iter()
        .filter(|t| t.dest == addr(dest))
        .map(parse)
        .collect()
}

fn statuses(out: &[Transmit], dest: &str) -> Vec<u16> {
    to(out, dest)
        .into_iter()
        .filter_map(|m| match m {
            Message::Response(r) => Some(r.status),
            Message::Request(_) => None,
        })
        .collect()
}

fn requests(out: &[Transmit], dest: &str, method: Method) -> Vec<Request> {
    to(out, dest)
        .into_iter()
        .filter_map(|m| match m {
            Message::Request(r) if r.method == method => Some(r),
            _ => None,
        })
        .collect()
}

fn state(h: &Harness, gw: usize) -> DestState {
    h.core.dispatcher().sets()[0].destinations[gw].state
}

#[test]
fn a_prefix_routes_to_the_set_and_fails_over_on_503_and_408_to_the_next_gateway() {
    let mut h = harness("", 0);
    let out = h.send(ALICE, &number_invite(1, "0049301234"));
    assert_eq!(statuses(&out, ALICE), vec![100]);
    let first = requests(&out, GW[0], Method::Invite);
    assert_eq!(first.len(), 1, "{out:?}");
    assert_eq!(
        first[0].uri.to_string(),
        format!("sip:0049301234@{}", GW[0])
    );
    assert!(first[0].headers.get(&HeaderName::RecordRoute).is_some());

    let out = h.send_bytes(GW[0], uas_response(&first[0], 503, "g1", GW[0]));
    assert_eq!(
        statuses(&out, ALICE),
        Vec::<u16>::new(),
        "nothing upstream yet"
    );
    let second = requests(&out, GW[1], Method::Invite);
    assert_eq!(second.len(), 1, "failover to the next gateway: {out:?}");
    assert_eq!(second[0].headers.cseq().unwrap().seq, 1);
    assert_eq!(state(&h, 0), DestState::Down);

    let out = h.send_bytes(GW[1], uas_response(&second[0], 408, "g2", GW[1]));
    let third = requests(&out, GW[2], Method::Invite);
    assert_eq!(third.len(), 1);
    assert_eq!(state(&h, 1), DestState::Down);

    let out = h.send_bytes(GW[2], uas_response(&third[0], 200, "g3", GW[2]));
    assert_eq!(statuses(&out, ALICE), vec![200]);
    assert_eq!(state(&h, 2), DestState::Up);
    assert_eq!(h.core.dispatcher().stats.failovers, 2);
    // The next call goes straight to the one gateway still up.
    let out = h.send(ALICE, &number_invite(2, "0049301235"));
    assert_eq!(requests(&out, GW[2], Method::Invite).len(), 1);
}

#[test]
fn a_silent_gateway_is_given_up_after_fr_timer_and_the_best_response_goes_upstream() {
    let mut h = harness("", 0);
    let out = h.send(ALICE, &number_invite(3, "001555"));
    assert_eq!(requests(&out, GW[0], Method::Invite).len(), 1);
    // fr_timer (1 s): no response at all from gw0.
    let out = h.advance(Duration::from_millis(999));
    assert!(requests(&out, GW[1], Method::Invite).is_empty());
    let out = h.advance(Duration::from_millis(1));
    let second = requests(&out, GW[1], Method::Invite);
    assert_eq!(second.len(), 1, "{out:?}");
    assert_eq!(state(&h, 0), DestState::Down);
    // gw1 rings, then fails with 500; gw2 with 503: the best (500) goes upstream.
    let out = h.send_bytes(GW[1], uas_response(&second[0], 180, "g2", GW[1]));
    assert_eq!(statuses(&out, ALICE), vec![180]);
    // Ringing, it is not given up by the fr_timer.
    let out = h.advance(Duration::from_secs(5));
    assert!(requests(&out, GW[2], Method::Invite).is_empty());
    let out = h.send_bytes(GW[1], uas_response(&second[0], 500, "g2", GW[1]));
    let third = requests(&out, GW[2], Method::Invite);
    assert_eq!(third.len(), 1);
    let out = h.send_bytes(GW[2], uas_response(&third[0], 503, "g3", GW[2]));
    assert_eq!(statuses(&out, ALICE), vec![500]);
    assert_eq!(h.core.dispatcher().stats.exhausted, 1);
}

#[test]
fn a_gateway_that_times_out_everywhere_gives_408() {
    let mut h = harness("", 0);
    h.send(ALICE, &number_invite(4, "00777"));
    let mut upstream = Vec::new();
    for _ in 0..3 {
        let out = h.advance(Duration::from_secs(1));
        upstream.extend(statuses(&out, ALICE));
    }
    assert_eq!(upstream, vec![408]);
    assert!((0..3).all(|i| state(&h, i) == DestState::Down));
}

/// A 401 with a qop=auth challenge, as a gateway sends it.
fn challenge(r: &Request, tag: &str, gw: &str) -> Bytes {
    let text = String::from_utf8(uas_response(r, 401, tag, gw).to_vec()).unwrap();
    let text = text.replacen(
        "\r\n",
        "\r\nWWW-Authenticate: Digest realm=\"trunk.example\", nonce=\"n0nce\", qop=\"auth\", algorithm=MD5\r\n",
        1,
    );
    Bytes::from(text)
}

#[test]
fn a_trunk_challenge_is_answered_once_and_cseq_stays_consistent_in_the_dialog() {
    let mut h = harness(
        "username = \"acct\"\npassword = \"pw\"\nrealm = \"trunk.example\"\n",
        0,
    );
    let out = h.send(ALICE, &number_invite(5, "0049111"));
    let first = requests(&out, GW[0], Method::Invite).remove(0);
    let out = h.send_bytes(GW[0], challenge(&first, "g1", GW[0]));
    assert_eq!(
        statuses(&out, ALICE),
        Vec::<u16>::new(),
        "the challenge is not relayed"
    );
    assert_eq!(
        requests(&out, GW[0], Method::Ack).len(),
        1,
        "hop-by-hop ACK for the 401"
    );
    let second = requests(&out, GW[0], Method::Invite).remove(0);
    assert_eq!(
        second.headers.cseq().unwrap().seq,
        2,
        "CSeq + 1 (RFC 3261 §22.2)"
    );
    let authz = Auth::parse(second.headers.get(&HeaderName::Authorization).unwrap()).unwrap();
    let uri = format!("sip:0049111@{}", GW[0]);
    assert_eq!(authz.get("uri"), Some(uri.as_str()));
    assert_eq!(authz.get("username"), Some("acct"));
    let expected = crate::auth::digest_response(
        crate::auth::Algorithm::Md5,
        "acct",
        "trunk.example",
        "pw",
        "INVITE",
        &uri,
        "n0nce",
        1,
        authz.get("cnonce").unwrap(),
    );
    assert_eq!(authz.get("response"), Some(expected.as_str()));
    assert_eq!(h.core.dispatcher().stats.trunk_auth, 1);
    assert_eq!(state(&h, 0), DestState::Up, "a challenge is no failure");

    // The 200 (CSeq 2 at the trunk) reaches alice with her CSeq 1.
    let out = h.send_bytes(GW[0], uas_response(&second, 200, "g1b", GW[0]));
    let ok = to(&out, ALICE);
    let Some(Message::Response(ok)) = ok.first() else {
        panic!("no 200 to alice: {out:?}")
    };
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.cseq().unwrap().seq, 1);
    // alice's ACK (CSeq 1) and BYE (CSeq 2) reach the trunk as CSeq 2 and 3.
    let rr = ok
        .headers
        .get(&HeaderName::RecordRoute)
        .unwrap()
        .to_string();
    let in_dialog = |method: &str, seq: u32, branch: &str| {
        format!(
            "{method} sip:0049111@{gw} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK{branch}\nMax-Forwards: 70\n\
             Route: {rr}\nFrom: <sip:alice@127.0.0.1>;tag=a5\nTo: <sip:0049111@127.0.0.1>;tag=g1b\n\
             Call-ID: call5@test\nCSeq: {seq} {method}\nContent-Length: 0\n\n",
            gw = GW[0]
        )
    };
    let out = h.send(ALICE, &in_dialog("ACK", 1, "ack5"));
    let ack = requests(&out, GW[0], Method::Ack);
    assert_eq!(ack.len(), 1, "{out:?}");
    assert_eq!(ack[0].headers.cseq().unwrap().seq, 2);
    let out = h.send(ALICE, &in_dialog("BYE", 2, "bye5"));
    let bye = requests(&out, GW[0], Method::Bye).remove(0);
    assert_eq!(bye.headers.cseq().unwrap().seq, 3);
    let out = h.send_bytes(GW[0], uas_response(&bye, 200, "g1b", GW[0]));
    let done = to(&out, ALICE);
    let Some(Message::Response(done)) = done.first() else {
        panic!("no 200 for the BYE: {out:?}")
    };
    assert_eq!(done.headers.cseq().unwrap().seq, 2);
}

#[test]
fn refused_trunk_credentials_give_403_not_the_challenge() {
    let mut h = harness("username = \"acct\"\npassword = \"wrong\"\n", 0);
    let out = h.send(ALICE, &number_invite(6, "0049222"));
    let first = requests(&out, GW[0], Method::Invite).remove(0);
    let out = h.send_bytes(GW[0], challenge(&first, "g1", GW[0]));
    let second = requests(&out, GW[0], Method::Invite).remove(0);
    let out = h.send_bytes(GW[0], challenge(&second, "g1", GW[0]));
    assert_eq!(statuses(&out, ALICE), vec![403]);
    assert!(requests(&out, GW[1], Method::Invite).is_empty());
    // Without credentials the challenge is relayed as any response.
    let mut h = harness("", 0);
    let out = h.send(ALICE, &number_invite(7, "0049333"));
    let first = requests(&out, GW[0], Method::Invite).remove(0);
    let out = h.send_bytes(GW[0], challenge(&first, "g1", GW[0]));
    assert_eq!(statuses(&out, ALICE), vec![401]);
}

#[test]
fn probes_take_a_gateway_out_and_bring_it_back() {
    let mut h = harness("", 5);
    // The first round went out when the harness started, unanswered: all three are down
    // after the probe timeout (500 ms), and those probes are not retransmitted any more.
    h.advance(Duration::from_millis(500));
    assert!((0..3).all(|i| state(&h, i) == DestState::Down));
    // A new round every 5 s.
    let out = h.advance(Duration::from_millis(4500));
    let probes: Vec<Request> = GW
        .iter()
        .flat_map(|g| requests(&out, g, Method::Options))
        .collect();
    assert_eq!(probes.len(), 3, "{out:?}");
    assert_eq!(probes[0].uri.to_string(), format!("sip:{}", GW[0]));
    assert!(
        probes[0]
            .headers
            .from()
            .unwrap()
            .uri
            .to_string()
            .starts_with("sip:dispatcher@")
    );
    let out = h.send_bytes(GW[0], uas_response(&probes[0], 503, "p1", GW[0]));
    assert!(out.is_empty(), "a probe's answer goes nowhere: {out:?}");
    h.send_bytes(GW[1], uas_response(&probes[1], 200, "p2", GW[1]));
    h.send_bytes(GW[2], uas_response(&probes[2], 404, "p3", GW[2]));
    assert_eq!(
        (state(&h, 0), state(&h, 1), state(&h, 2)),
        (DestState::Down, DestState::Up, DestState::Up)
    );
    for n in 10..14 {
        let out = h.send(ALICE, &number_invite(n, "00444"));
        assert!(requests(&out, GW[0], Method::Invite).is_empty());
    }
    // The next round (the calls above, unanswered, took gw1 and gw2 down after fr_timer):
    // every gateway answers 200 and takes calls again.
    let out = h.advance(Duration::from_secs(5));
    for (i, g) in GW.iter().enumerate() {
        let probe = requests(&out, g, Method::Options).remove(0);
        h.send_bytes(g, uas_response(&probe, 200, &format!("p{i}"), g));
        assert_eq!(state(&h, i), DestState::Up);
    }
    let hits = (20..23)
        .map(|n| {
            requests(
                &h.send(ALICE, &number_invite(n, "00555")),
                GW[0],
                Method::Invite,
            )
            .len()
        })
        .sum::<usize>();
    assert_eq!(hits, 1, "round robin over three gateways again");
}

#[test]
fn a_domain_rule_uses_its_dns_named_gateway_and_local_users_are_not_routed() {
    let mut h = harness("", 0);
    let text = invite(30, "bob", "").replace("sip:bob@127.0.0.1", "sip:bob@partner.example");
    let out = h.send(ALICE, &text);
    let inv = requests(&out, "127.0.0.1:5095", Method::Invite);
    assert_eq!(inv.len(), 1, "{out:?}");
    assert_eq!(inv[0].uri.to_string(), "sip:bob@gw.partner.example");
    assert!(
        h.core.poll_dns_query().is_none(),
        "no RFC 3263 lookup of partner.example"
    );
    // A local user whose name starts with the prefix is a local user (480: no binding).
    let mut cfg = dispatch_cfg("", 0);
    cfg.dispatch.routes[0].prefix = Some("ca".into());
    let mut h = Harness::with_config(cfg);
    let out = h.send(ALICE, &invite(31, "carol", ""));
    assert_eq!(statuses(&out, ALICE), vec![480]);
    assert!(
        GW.iter()
            .all(|g| requests(&out, g, Method::Invite).is_empty())
    );
}

#[test]
fn only_local_or_trusted_senders_may_use_a_route() {
    let mut cfg = dispatch_cfg("", 0);
    cfg.invite_auth = true;
    let mut h = Harness::with_config(cfg);
    // A stranger (foreign From): 403.
    let text = number_invite(40, "00999")
        .replace("From: <sip:alice@127.0.0.1>", "From: <sip:eve@evil.test>");
    let out = h.send(ALICE, &text);
    assert_eq!(statuses(&out, ALICE), vec![403]);
    // A local From is challenged (407) before anything is routed.
    let out = h.send(ALICE, &number_invite(41, "00999"));
    assert_eq!(statuses(&out, ALICE), vec![407]);
    assert!(
        GW.iter()
            .all(|g| requests(&out, g, Method::Invite).is_empty())
    );
    // A trusted source needs neither.
    let mut cfg = dispatch_cfg("", 0);
    cfg.invite_auth = true;
    cfg.trusted_sources = vec!["127.0.0.1/32".parse().unwrap()];
    let mut h = Harness::with_config(cfg);
    let out = h.send(ALICE, &text.replace("z9hG4bKinv40", "z9hG4bKinv42"));
    assert_eq!(requests(&out, GW[0], Method::Invite).len(), 1);
}

/// With several workers the answers to a worker's probes are steered by their Call-ID: every
/// probe a core sends as worker w of n has a Call-ID that worker w owns, so its answer comes
/// back to the core that waits for it (and takes the gateway out or back there).
#[test]
fn a_workers_probes_have_call_ids_it_owns() {
    for (me, n) in [(0, 2), (1, 2), (2, 3)] {
        let mut h = harness("", 5);
        h.core.set_probe_worker(me, n);
        h.advance(Duration::from_millis(500));
        for round in 0..4 {
            let out = h.advance(Duration::from_secs(5));
            for (i, g) in GW.iter().enumerate() {
                let probe = requests(&out, g, Method::Options).remove(0);
                let id = probe.headers.get(&HeaderName::CallId).unwrap().to_string();
                assert_eq!(
                    crate::server::shard::worker_of_call_id(id.as_bytes(), n),
                    me,
                    "round {round}, {g}: {id}"
                );
                h.send_bytes(g, uas_response(&probe, 200, &format!("r{round}p{i}"), g));
                assert_eq!(state(&h, i), DestState::Up);
            }
        }
    }
}
