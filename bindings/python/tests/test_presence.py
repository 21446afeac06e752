"""Presence (RFC 3856 over RFC 6665 subscriptions, RFC 3903 PUBLISH) and a busy-lamp field
(RFC 4235 dialog package) through the bindings, mirroring tests/c/smoke_presence.c: alice, bob
and carol registered to the embedded server (its presence agent). alice watches bob's presence
(offline first, then online "away" once bob publishes, offline after he unpublishes) and bob's
line (idle, ringing, in call, idle as carol calls him), then unsubscribes both (Terminated,
"unsubscribed"). Bad arguments raise the documented errors."""

import asyncio

import pytest

import rvoip

from conftest import quiet

BOB = "sip:bob@127.0.0.1"


def of(party, sub_id, kind):
    """party's events of kind ("buddy_presence", "line_state_changed",
    "subscription_state_changed") on subscription sub_id, in order."""
    return [e for e in party.rec.snapshot()
            if getattr(e, f"is_{kind}")() and e.subscription_id == sub_id]


def wait_line(party, sub_id, state, what):
    return party.rec.wait(what, lambda e: e.is_line_state_changed()
                          and e.subscription_id == sub_id and e.state == state)


def wait_terminated(party, sub_id):
    return party.rec.wait(f"Terminated on {sub_id}", lambda e: e.is_subscription_state_changed()
                          and e.subscription_id == sub_id and e.state.is_terminated())


def test_presence_and_busy_lamp(office):
    alice, bob, carol = office

    # 1. alice watches bob's presence: offline first (bob never published).
    sub_p = alice.account.subscribe(BOB, rvoip.EventPackage.PRESENCE)
    assert isinstance(sub_p, int) and sub_p > 0
    first = alice.rec.wait("BuddyPresence", lambda e: e.is_buddy_presence())
    assert first.subscription_id == sub_p
    assert not first.online and first.note is None and first.activity is None
    assert BOB in first.entity
    alice.rec.wait("Active", lambda e: e.is_subscription_state_changed()
                   and e.subscription_id == sub_p and e.state.is_active())
    states = of(alice, sub_p, "subscription_state_changed")
    assert states[0].state.is_subscribing(), states

    # 2. bob publishes "away": his PublishResult is 200, alice sees him online.
    bob.account.publish_presence(True, note="Away", activity="away")
    done = bob.rec.wait("PublishResult", lambda e: e.is_publish_result())
    assert done.status == 200 and done.account_id == bob.account.id() and done.reason
    away = alice.rec.wait("online away", lambda e: e.is_buddy_presence() and e.online)
    assert (away.subscription_id, away.activity, away.note) == (sub_p, "away", "Away")
    # A plain online status replaces it; unpublishing makes bob offline again.
    bob.account.publish_presence(True)
    alice.rec.wait("online, no activity", lambda e: e.is_buddy_presence() and e.online
                   and e.activity is None)
    n = len(of(alice, sub_p, "buddy_presence"))
    bob.account.unpublish_presence()
    alice.rec.wait("offline after unpublish", lambda _: any(
        not x.online for x in of(alice, sub_p, "buddy_presence")[n:]))

    # 3. alice's busy-lamp field for bob; carol calls bob, bob answers, carol hangs up.
    sub_d = alice.account.subscribe(BOB, rvoip.EventPackage.DIALOG)
    assert sub_d not in (0, sub_p)
    wait_line(alice, sub_d, rvoip.LineState.IDLE, "idle")
    call = asyncio.run(carol.ep.make_call(BOB, account=carol.account, options=quiet()))
    inc = bob.rec.wait("IncomingCall", lambda e: e.is_incoming_call())
    wait_line(alice, sub_d, rvoip.LineState.RINGING, "ringing")
    bob.ep.call(inc.call_id).answer(quiet())
    wait_line(alice, sub_d, rvoip.LineState.IN_CALL, "in call")
    carol.wait_call_state(call.id(), lambda s: s.is_connected(), "carol connected")
    n = len(of(alice, sub_d, "line_state_changed"))
    call.hangup()
    alice.rec.wait("idle again", lambda _: any(
        x.state == rvoip.LineState.IDLE for x in of(alice, sub_d, "line_state_changed")[n:]))
    lamp = []
    for e in of(alice, sub_d, "line_state_changed"):
        if not lamp or lamp[-1] != e.state:
            lamp.append(e.state)
    L = rvoip.LineState
    assert lamp == [L.IDLE, L.RINGING, L.IN_CALL, L.IDLE], lamp
    assert all(BOB in e.entity for e in of(alice, sub_d, "line_state_changed"))

    # 4. alice unsubscribes both: Terminated, "unsubscribed"; again: NotFound.
    alice.ep.unsubscribe(sub_p)
    alice.ep.unsubscribe(sub_d)
    with pytest.raises(rvoip.RvoipError.NotFound):
        alice.ep.unsubscribe(sub_p)
    for sub in (sub_p, sub_d):
        assert wait_terminated(alice, sub).state.reason == "unsubscribed"

    # Presence events went to alice only, each on one of her subscriptions.
    presence = ("is_subscription_state_changed", "is_buddy_presence", "is_line_state_changed")
    for p in (bob, carol):
        assert not [e for e in p.rec.snapshot() if any(getattr(e, k)() for k in presence)]
    assert not [e for e in carol.rec.snapshot() if e.is_publish_result()]
    assert {e.subscription_id for e in alice.rec.snapshot()
            if any(getattr(e, k)() for k in presence)} == {sub_p, sub_d}


def test_bad_presence_arguments(alice):
    acc = alice.account
    for target in ["not a uri", "tel:+15551234"]:
        with pytest.raises(rvoip.RvoipError.InvalidArgument):
            acc.subscribe(target, rvoip.EventPackage.PRESENCE)
    for activity in ["out to lunch", "", "away\r\n"]:
        with pytest.raises(rvoip.RvoipError.InvalidArgument):
            acc.publish_presence(True, activity=activity)
    with pytest.raises(rvoip.RvoipError.NotFound):
        acc.unpublish_presence()  # nothing published
    with pytest.raises(rvoip.RvoipError.NotFound):
        alice.ep.unsubscribe(424242)
    acc.remove()
    with pytest.raises(rvoip.RvoipError.NotFound):
        acc.subscribe(BOB, rvoip.EventPackage.DIALOG)
    with pytest.raises(rvoip.RvoipError.NotFound):
        acc.publish_presence(False)
