"""Subscriptions: several listeners, cancel and drop end delivery, a raising listener does not
disturb the others, shutdown drops every listener."""

import gc

import rvoip

from conftest import Recorder


class Raises(rvoip.EndpointListener):
    def __init__(self):
        self.calls = 0

    def on_event(self, event):
        self.calls += 1
        raise RuntimeError("listener bug")


def test_two_listeners_and_cancel(server, alice):
    second = Recorder()
    sub = alice.ep.subscribe(second)
    assert alice.ep.listener_count() == 2 and sub.is_active()
    alice.register()
    assert [e for e in second.snapshot() if e.is_registration_changed()] == \
        [e for e in alice.rec.snapshot() if e.is_registration_changed()]
    sub.cancel()
    assert not sub.is_active() and alice.ep.listener_count() == 1
    seen = len(second.snapshot())
    alice.register()
    assert len(second.snapshot()) == seen, "a cancelled listener got events"


def test_drop_ends_subscription(server, alice):
    other = Recorder()
    sub = alice.ep.subscribe(other)
    assert alice.ep.listener_count() == 2
    del sub
    gc.collect()
    assert alice.ep.listener_count() == 1
    alice.register()
    assert other.snapshot() == []


def test_raising_listener_does_not_stop_others(server, alice):
    bad = Raises()
    sub = alice.ep.subscribe(bad)
    alice.register()
    assert bad.calls >= 2  # Registering, Registered
    assert alice.account.state().is_registered()
    sub.cancel()


def test_shutdown_drops_listeners(server, alice):
    alice.register()
    alice.ep.shutdown()
    assert alice.ep.listener_count() == 0
    assert not alice.sub.is_active()
