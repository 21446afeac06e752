"""Fixtures of the rvoip Python binding tests: an embedded server on 127.0.0.1 with free
ports, and parties (an endpoint with a recording listener and an account) registered to it."""

import asyncio
import threading
import time

import pytest

import rvoip

WAIT_S = 10.0


def quiet():
    """Call audio that touches no device: silence out, received audio discarded."""
    return rvoip.CallOptions(source=rvoip.AudioSource.silence(), sink=rvoip.AudioSink.discard())


class Recorder(rvoip.EndpointListener):
    """Records every event in order and lets a test wait for one."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def on_event(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return list(self.events)

    def wait(self, what, pred, timeout=WAIT_S):
        """Returns the first recorded event for which pred is true, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; saw {self.events!r}")
                self.cond.wait(left)


class Party:
    """An endpoint on 127.0.0.1 with a Recorder subscribed and one account on the server."""

    def __init__(self, server, user, password, **opts):
        opts.setdefault("stats_interval_ms", 0)
        self.ep = rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", **opts))
        self.rec = Recorder()
        self.sub = self.ep.subscribe(self.rec)
        self.aor = f"sip:{user}@127.0.0.1"
        self.account = self.ep.add_account(
            rvoip.AccountOptions(
                aor=self.aor,
                password=password,
                server=f"127.0.0.1:{server.port(rvoip.Transport.UDP)}",
            )
        )

    def register(self):
        return asyncio.run(self.account.register())

    def wait_call_state(self, call_id, pred, what):
        return self.rec.wait(
            what,
            lambda e: e.is_call_state_changed() and e.call_id == call_id and pred(e.state),
        )

    def close(self):
        self.sub.cancel()
        self.ep.shutdown()


def ring(alice, bob, options=None):
    """Registers both, places alice → bob; returns (alice's call, bob's IncomingCall event)."""
    alice.register()
    bob.register()
    call = asyncio.run(alice.ep.make_call("sip:bob@127.0.0.1", account=alice.account,
                                          options=options if options is not None else quiet()))
    incoming = bob.rec.wait("IncomingCall", lambda e: e.is_incoming_call())
    return call, incoming


@pytest.fixture
def server():
    s = rvoip.Server(
        rvoip.ServerOptions(
            listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
            domain="127.0.0.1",
            users={"alice": "apw", "bob": "bpw"},
        )
    )
    s.start()
    yield s
    s.stop()


@pytest.fixture
def alice(server):
    p = Party(server, "alice", "apw")
    yield p
    p.close()


@pytest.fixture
def bob(server):
    p = Party(server, "bob", "bpw")
    yield p
    p.close()


@pytest.fixture
def office():
    """A server with three users (alice, bob, carol) and their registered parties."""
    s = rvoip.Server(
        rvoip.ServerOptions(
            listen=["udp:127.0.0.1:0"],
            domain="127.0.0.1",
            users={"alice": "apw", "bob": "bpw", "carol": "cpw"},
        )
    )
    s.start()
    parties = [Party(s, "alice", "apw"), Party(s, "bob", "bpw"), Party(s, "carol", "cpw")]
    for p in parties:
        assert p.register().is_registered()
    yield parties
    for p in parties:
        p.close()
    s.stop()
