"""Instant messages (RFC 3428 MESSAGE, pager mode) through the bindings, mirroring
tests/c/smoke_message.c: alice and bob, registered to the embedded server, exchange a MESSAGE
both ways (Account.send_message returns the id; the receiver gets Event.MessageReceived with
the exact bytes, a NUL included; the sender gets Event.MessageResult 200 with that id); a
message to an unknown user ends >= 400; bad arguments raise InvalidArgument."""

import time

import pytest

import rvoip

from conftest import WAIT_S

TEXT = b"hello\x00bob \xe2\x9c\x93"  # a NUL and a UTF-8 check mark
TEXT_TYPE = "text/plain;charset=UTF-8"


def received(party, nth=0, timeout=WAIT_S):
    """The nth Event.MessageReceived at party, waiting up to timeout for it."""
    deadline = time.monotonic() + timeout
    with party.rec.cond:
        while True:
            got = [e for e in party.rec.events if e.is_message_received()]
            if len(got) > nth:
                return got[nth]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no MessageReceived #{nth}; saw {party.rec.events!r}")
            party.rec.cond.wait(left)


def result(party, message_id):
    """The Event.MessageResult of message_id at party (waiting for it)."""
    return party.rec.wait(f"MessageResult of {message_id}",
                          lambda e: e.is_message_result() and e.message_id == message_id)


def test_messages_both_ways_with_exact_bytes(alice, bob):
    alice.register()
    bob.register()

    m1 = alice.account.send_message("sip:bob@127.0.0.1", TEXT_TYPE, TEXT)
    assert isinstance(m1, int) and m1 > 0
    got = received(bob)
    assert got.body == TEXT and len(got.body) == 13
    assert got.content_type == TEXT_TYPE
    assert "sip:alice@127.0.0.1" in got.sender
    assert "sip:bob@127.0.0.1" in got.recipient
    assert got.account_id == bob.account.id()
    done = result(alice, m1)
    assert done.status == 200, done
    assert done.reason

    every_byte = bytes(range(256))
    m2 = bob.account.send_message("sip:alice@127.0.0.1", "application/octet-stream", every_byte)
    got = received(alice)
    assert got.body == every_byte
    assert got.content_type == "application/octet-stream"
    assert "sip:bob@127.0.0.1" in got.sender
    assert got.account_id == alice.account.id()
    assert result(bob, m2).status == 200

    m3 = alice.account.send_message("sip:bob@127.0.0.1", "text/plain", b"")
    assert received(bob, 1).body == b""
    assert result(alice, m3).status == 200
    assert m2 > 0 and m3 != m1  # ids are per endpoint (m2 is bob's)

    # Each side received exactly what was sent to it.
    assert sum(e.is_message_received() for e in bob.rec.snapshot()) == 2
    assert sum(e.is_message_received() for e in alice.rec.snapshot()) == 1


def test_message_to_an_unknown_user_fails(alice, bob):
    alice.register()
    bob.register()
    m = alice.account.send_message("sip:nobody@127.0.0.1", "text/plain", b"anyone?")
    done = result(alice, m)
    assert done.status >= 400, done
    assert not any(e.is_message_received() for e in bob.rec.snapshot())


def test_bad_message_arguments(alice):
    send = alice.account.send_message
    for to, content_type, body in [
        ("not a uri", "text/plain", b"x"),
        ("tel:+15551234", "text/plain", b"x"),
        ("sips:bob@127.0.0.1", "text/plain", b"x"),      # a sips: target needs TLS
        ("sip:bob@127.0.0.1", "text", b"x"),              # type/subtype
        ("sip:bob@127.0.0.1", "", b"x"),
        ("sip:bob@127.0.0.1", "text/plain\r\nX: 1", b"x"),
        ("sip:bob@127.0.0.1", "text/plain", b"a" * 1301),  # over 1300 bytes (RFC 3428 §7)
    ]:
        with pytest.raises(rvoip.RvoipError.InvalidArgument):
            send(to, content_type, body)
    alice.account.remove()
    with pytest.raises(rvoip.RvoipError.NotFound):
        send("sip:bob@127.0.0.1", "text/plain", b"x")
