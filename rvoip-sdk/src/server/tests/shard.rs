//! Two workers' cores sharing bindings by replication ([`crate::server::shard`]): a REGISTER
//! handled by worker 0 lets worker 1 route an INVITE to that binding, a removal is replicated
//! too, and an expiry reaches the store once (from the binding's owner only).

use super::*;
use crate::server::location::ChangeKind;
use crate::server::shard::worker_of_call_id;

/// Two cores (workers 0 and 1 of 2) recording binding changes, INVITE auth off.
fn two_workers() -> (Harness, Harness) {
    let (mut w0, mut w1) = (Harness::new(false), Harness::new(false));
    w0.core.record_binding_changes();
    w1.core.record_binding_changes();
    (w0, w1)
}

fn forwarded_to(out: &[Transmit], dest: &str) -> bool {
    out.iter().any(|t| {
        t.dest == addr(dest)
            && matches!(parse(t), Message::Request(r) if r.method == Method::Invite)
    })
}

fn final_status(out: &[Transmit]) -> Option<u16> {
    out.iter().find_map(|t| match parse(t) {
        Message::Response(r) if r.status >= 200 => Some(r.status),
        _ => None,
    })
}

#[test]
fn register_at_worker_0_routes_invite_at_worker_1() {
    let (mut w0, mut w1) = two_workers();
    assert_eq!(w0.register("bob", "bpw", BOB1).status, 200);
    // Control: before replication worker 1 has no binding for bob.
    let out = w1.send(ALICE, &invite(1, "bob", ""));
    assert_eq!(final_status(&out), Some(480));
    assert!(!forwarded_to(&out, BOB1));

    let changes = w0.core.take_binding_changes(0, 2);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Added);
    assert_eq!(w1.core.apply_binding_changes(w1.now, &changes), 1);
    // Applied changes are not recorded again (no echo back to worker 0 or the store).
    assert!(w1.core.take_binding_changes(1, 2).is_empty());
    assert_eq!(w1.core.binding_count(), 1);
    let out = w1.send(ALICE, &invite(2, "bob", ""));
    assert!(
        forwarded_to(&out, BOB1),
        "worker 1 forwards to bob's binding"
    );
    assert_eq!(w1.core.stats.forwarded, 1);

    // bob unregisters at worker 0 (expires=0, same Call-ID): worker 1 forgets the binding.
    let unreg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {BOB1};branch=z9hG4bKun1\nMax-Forwards: 70\n\
         From: <sip:bob@127.0.0.1>;tag=u1\nTo: <sip:bob@127.0.0.1>\nCall-ID: reg1@test\nCSeq: 9 REGISTER\n\
         Contact: <sip:bob@{BOB1}>;expires=0\nContent-Length: 0\n\n"
    );
    let r401 = resp(&w0.send(BOB1, &unreg)[0]);
    let authz = answer(
        &r401,
        HeaderName::WwwAuthenticate,
        "bob",
        "bpw",
        "REGISTER",
        "sip:127.0.0.1",
    );
    let unreg = unreg
        .replace("CSeq: 9", "CSeq: 10")
        .replace("z9hG4bKun1", "z9hG4bKun2")
        .replace(
            "Content-Length",
            &format!("Authorization: {authz}\nContent-Length"),
        );
    assert_eq!(resp(&w0.send(BOB1, &unreg)[0]).status, 200);
    let changes = w0.core.take_binding_changes(0, 2);
    assert_eq!(
        changes.iter().map(|c| c.kind).collect::<Vec<_>>(),
        vec![ChangeKind::Removed]
    );
    assert_eq!(w1.core.apply_binding_changes(w1.now, &changes), 1);
    let out = w1.send(ALICE, &invite(3, "bob", ""));
    assert_eq!(final_status(&out), Some(480));
}

#[test]
fn an_expiry_is_reported_once_by_the_owner_of_the_call_id() {
    let (mut w0, mut w1) = two_workers();
    assert_eq!(w0.register("bob", "bpw", BOB1).status, 200);
    let added = w0.core.take_binding_changes(0, 2);
    w1.core.apply_binding_changes(w1.now, &added);
    // The registration's Call-ID is "reg1@test"; its owner is one of the two workers.
    let owner = worker_of_call_id(b"reg1@test", 2);
    // Both replicas sweep the expired binding (Expires: 600).
    w0.advance(Duration::from_secs(700));
    w1.advance(Duration::from_secs(700));
    assert_eq!((w0.core.binding_count(), w1.core.binding_count()), (0, 0));
    let e0 = w0.core.take_binding_changes(0, 2);
    let e1 = w1.core.take_binding_changes(1, 2);
    let reported: Vec<usize> = [(0, &e0), (1, &e1)]
        .into_iter()
        .filter(|(_, e)| e.iter().any(|c| c.kind == ChangeKind::Expired))
        .map(|(w, _)| w)
        .collect();
    assert_eq!(reported, vec![owner], "{e0:?} {e1:?}");
    // With one worker, the expiry is always reported.
    let mut solo = Harness::new(false);
    solo.core.record_binding_changes();
    assert_eq!(solo.register("bob", "bpw", BOB1).status, 200);
    solo.advance(Duration::from_secs(700));
    let kinds: Vec<_> = solo
        .core
        .take_binding_changes(0, 1)
        .iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, vec![ChangeKind::Added, ChangeKind::Expired]);
}

#[test]
fn a_stale_expiry_does_not_remove_a_binding_refreshed_elsewhere() {
    let (mut w0, mut w1) = two_workers();
    assert_eq!(w0.register("bob", "bpw", BOB1).status, 200);
    let added = w0.core.take_binding_changes(0, 2);
    w1.core.apply_binding_changes(w1.now, &added);
    // Worker 1 refreshes bob's contact under a new Call-ID (Expires: 600 from 500 s later)...
    w1.now += Duration::from_secs(500);
    w1.n = 10; // Call-ID reg11@test
    assert_eq!(w1.register("bob", "bpw", BOB1).status, 200);
    let refreshed = w1.core.take_binding_changes(1, 2);
    assert_eq!(refreshed[0].kind, ChangeKind::Refreshed);
    // ...while worker 0's old copy expires before the refresh reaches it.
    let mut expired = added.clone();
    expired[0].kind = ChangeKind::Expired;
    assert_eq!(w1.core.apply_binding_changes(w1.now, &expired), 0);
    assert_eq!(w1.core.binding_count(), 1, "the refreshed binding stays");
    // Control: the same expiry of a copy as new as the replica's removes it.
    let mut current = refreshed.clone();
    current[0].kind = ChangeKind::Expired;
    assert_eq!(w1.core.apply_binding_changes(w1.now, &current), 1);
    assert_eq!(w1.core.binding_count(), 0);
}
