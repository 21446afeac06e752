"""Call transfer (RFC 3515 REFER, RFC 3891 Replaces), early media (RFC 3960), redirect (3xx)
and DTMF by SIP INFO through the bindings, over real sockets: an embedded server with alice,
bob and carol, each on an endpoint of their own."""

import asyncio

import pytest

import rvoip

from conftest import quiet

CAROL = "sip:carol@127.0.0.1"


def answer_next(party, seen, what):
    """Answers the first IncomingCall at `party` whose call id is not in `seen`; returns the
    event."""
    inc = party.rec.wait(what, lambda e: e.is_incoming_call() and e.call_id not in seen)
    seen.add(inc.call_id)
    party.ep.call(inc.call_id).answer(quiet())
    return inc


def connect(caller, callee, target, seen):
    """caller calls target, callee answers; both connected. Returns (caller's, callee's) calls."""
    call = asyncio.run(caller.ep.make_call(target, account=caller.account, options=quiet()))
    inc = answer_next(callee, seen, "IncomingCall")
    caller.wait_call_state(call.id(), lambda s: s.is_connected(), "caller connected")
    callee.wait_call_state(inc.call_id, lambda s: s.is_connected(), "callee connected")
    return call, callee.ep.call(inc.call_id)


def statuses(party, call_id):
    return [(e.status, e.is_final) for e in party.rec.snapshot()
            if e.is_transfer_status() and e.call_id == call_id]


def test_blind_transfer_reports_its_progress(office):
    alice, bob, carol = office
    seen = set()
    a_call, b_call = connect(alice, bob, "sip:bob@127.0.0.1", seen)

    a_call.transfer(CAROL)
    req = bob.rec.wait("TransferRequested", lambda e: e.is_transfer_requested())
    assert req.call_id == b_call.id() and req.transfer_id > 0
    assert req.target == CAROL
    assert req.referred_by is not None and "sip:alice@127.0.0.1" in req.referred_by

    b_new = asyncio.run(bob.ep.accept_transfer(req.transfer_id, options=quiet()))
    assert b_new.id() != b_call.id()
    inc = answer_next(carol, set(), "carol IncomingCall")
    assert "bob" in inc.caller and inc.replaces_call_id is None
    bob.wait_call_state(b_new.id(), lambda s: s.is_connected(), "bob's new call connected")

    alice.rec.wait("final TransferStatus", lambda e: e.is_transfer_status() and e.is_final)
    st = statuses(alice, a_call.id())
    assert st[0] == (100, False), st
    assert st[-1] == (200, True), st
    assert all(not f and 100 <= s < 200 for s, f in st[:-1]), st
    alice.wait_call_state(a_call.id(), lambda s: s.is_ended(), "alice's call ended")
    bob.wait_call_state(b_call.id(), lambda s: s.is_ended(), "bob's old call ended")
    # The request is decided: a second decision finds nothing.
    with pytest.raises(rvoip.RvoipError.NotFound):
        bob.ep.reject_transfer(req.transfer_id)
    assert b_new.state().is_connected()
    b_new.hangup()


def test_rejected_transfer_keeps_the_call(office):
    alice, bob, _carol = office
    a_call, b_call = connect(alice, bob, "sip:bob@127.0.0.1", set())
    a_call.transfer(CAROL)
    req = bob.rec.wait("TransferRequested", lambda e: e.is_transfer_requested())
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        bob.ep.reject_transfer(req.transfer_id, 200)
    bob.ep.reject_transfer(req.transfer_id, 603)
    alice.rec.wait("TransferStatus", lambda e: e.is_transfer_status())
    assert statuses(alice, a_call.id()) == [(603, True)]
    with pytest.raises(rvoip.RvoipError.NotFound):
        asyncio.run(bob.ep.accept_transfer(req.transfer_id))
    assert a_call.state().is_connected() and b_call.state().is_connected()
    a_call.hangup()
    bob.wait_call_state(b_call.id(), lambda s: s.is_ended(), "bob ended")


def test_attended_transfer_replaces_the_consultation_call(office):
    alice, bob, carol = office
    a_bob, b_call = connect(alice, bob, "sip:bob@127.0.0.1", set())
    carol_seen = set()
    a_carol, c_alice = connect(alice, carol, CAROL, carol_seen)
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        a_bob.transfer_to_call(a_bob)
    a_bob.transfer_to_call(a_carol)
    req = bob.rec.wait("TransferRequested", lambda e: e.is_transfer_requested())
    assert "Replaces=" in req.target
    b_new = asyncio.run(bob.ep.accept_transfer(req.transfer_id, options=quiet()))
    inc = answer_next(carol, carol_seen, "replacing IncomingCall")
    assert inc.replaces_call_id == c_alice.id()
    bob.wait_call_state(b_new.id(), lambda s: s.is_connected(), "bob's new call connected")
    carol.wait_call_state(c_alice.id(), lambda s: s.is_ended(), "replaced call ended")
    alice.wait_call_state(a_carol.id(), lambda s: s.is_ended(), "consultation ended")
    alice.wait_call_state(a_bob.id(), lambda s: s.is_ended(), "transferred call ended")
    assert statuses(alice, a_bob.id())[-1] == (200, True)
    b_new.hangup()


def test_early_media_then_answer(office):
    alice, _bob, carol = office
    call = asyncio.run(alice.ep.make_call(CAROL, account=alice.account, options=quiet()))
    inc = carol.rec.wait("IncomingCall", lambda e: e.is_incoming_call())
    c_call = carol.ep.call(inc.call_id)
    c_call.answer_early(quiet())
    with pytest.raises(rvoip.RvoipError.InvalidState):
        c_call.answer_early()
    alice.wait_call_state(call.id(), lambda s: s.is_early_media(), "alice early media")
    alice.rec.wait("early MediaStarted", lambda e: e.is_media_started() and e.call_id == call.id())
    c_call.answer()
    alice.wait_call_state(call.id(), lambda s: s.is_connected(), "alice connected")
    with pytest.raises(rvoip.RvoipError.InvalidState):
        call.answer_early()
    call.hangup()


def test_redirect_is_followed_and_dtmf_goes_by_info(office):
    alice, bob, carol = office
    # Alice's calls send DTMF by SIP INFO.
    alice.account.remove()
    alice.account = alice.ep.add_account(rvoip.AccountOptions(
        aor=alice.aor, password="apw",
        server=bob.account.server().address, dtmf_mode=rvoip.DtmfMode.SIP_INFO))
    assert alice.register().is_registered()
    assert rvoip.AccountOptions(aor=alice.aor, password="apw").dtmf_mode is None

    call = asyncio.run(alice.ep.make_call("sip:bob@127.0.0.1", account=alice.account,
                                          options=quiet()))
    inc = bob.rec.wait("IncomingCall", lambda e: e.is_incoming_call())
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        bob.ep.call(inc.call_id).redirect([])
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        bob.ep.call(inc.call_id).redirect(["not a uri"])
    bob.ep.call(inc.call_id).redirect([CAROL])
    red = alice.rec.wait("CallRedirected", lambda e: e.is_call_redirected())
    assert (red.call_id, red.status, red.target) == (call.id(), 302, CAROL)
    c_inc = answer_next(carol, set(), "carol IncomingCall")
    alice.wait_call_state(call.id(), lambda s: s.is_connected(), "alice connected to carol")
    assert "carol" in call.peer()

    call.send_dtmf("5#")
    carol.rec.wait("DTMF #", lambda e: e.is_dtmf_received() and e.digit == "#")
    assert [e.digit for e in carol.rec.snapshot()
            if e.is_dtmf_received() and e.call_id == c_inc.call_id] == ["5", "#"]
    assert call.stats().dtmf_sent == 0  # no RTP telephone-event: the keys went by INFO
    call.hangup()
