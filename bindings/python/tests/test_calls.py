"""End to end over real sockets: embedded server, two endpoints that register, call, send DTMF
and hang up, with the listener's events checked in order."""

import asyncio
import inspect
import math
import threading
import time

import rvoip

from conftest import WAIT_S, quiet, ring


def kinds(events):
    """A compact, comparable trace of events."""
    out = []
    for e in events:
        if e.is_registration_changed():
            s = e.state
            out.append("reg:" + ("registered" if s.is_registered() else
                                 "registering" if s.is_registering() else
                                 "unregistered" if s.is_unregistered() else "failed"))
        elif e.is_incoming_call():
            out.append("incoming")
        elif e.is_call_state_changed():
            s = e.state
            for name in ("calling", "ringing", "early_media", "connected", "held", "ended"):
                if getattr(s, "is_" + name)():
                    out.append("call:" + name)
        elif e.is_media_started():
            out.append("media:" + e.codec)
        elif e.is_media_stopped():
            out.append("media:stopped")
        elif e.is_dtmf_received():
            out.append("dtmf:" + e.digit)
        elif e.is_statistics():
            out.append("stats")
    return out


def goertzel_fraction(samples, freq, rate):
    """Fraction of the signal's energy at freq, 0..1: a Goertzel per 20 ms block (160 samples
    at 8 kHz), summed tone power over summed energy (as rvoip_sdk::media::tone::
    tone_fraction_blocks). One Goertzel over the whole window would be phase-sensitive: a
    jitter-buffer jump of a frame can cancel the tone out. A partial last block is left out."""
    if rate <= 0:
        return 0.0
    block = max(1, rate // 50)
    if len(samples) < block:
        blocks = [samples] if samples else []
    else:
        blocks = [samples[i:i + block] for i in range(0, len(samples) - block + 1, block)]
    k = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    tone = total = 0.0
    for b in blocks:
        s1 = s2 = 0.0
        for x in b:
            s1, s2 = x + k * s1 - s2, s1
        tone += (s1 * s1 + s2 * s2 - k * s1 * s2) / (len(b) / 2.0)
        total += sum(x * x for x in b)
    return 0.0 if total <= 0 else max(0.0, min(1.0, tone / total))


class Collector(rvoip.AudioConsumer):
    def __init__(self):
        self.samples = []
        self.lock = threading.Lock()

    def write_frame(self, samples):
        with self.lock:
            self.samples.extend(samples)

    def take(self):
        with self.lock:
            return list(self.samples)


def test_register_call_dtmf_hangup(alice, bob):
    state = alice.register()
    assert state.is_registered() and state.expires_s > 0
    assert bob.register().is_registered()
    assert alice.account.state().is_registered()

    heard = Collector()
    call = asyncio.run(
        alice.ep.make_call(
            "sip:bob@127.0.0.1",
            account=alice.account,
            options=rvoip.CallOptions(
                source=rvoip.AudioSource.tone(440.0, 8000), sink=rvoip.AudioSink.discard()
            ),
        )
    )
    incoming = bob.rec.wait("IncomingCall", lambda e: e.is_incoming_call())
    assert "sip:alice@127.0.0.1" in incoming.caller and "sip:bob@127.0.0.1" in incoming.callee
    bob_call = bob.ep.call(incoming.call_id)
    bob_call.answer(rvoip.CallOptions(source=rvoip.AudioSource.silence(),
                                      sink=rvoip.AudioSink.callback(8000, heard)))

    alice.wait_call_state(call.id(), lambda s: s.is_connected(), "alice connected")
    bob.wait_call_state(bob_call.id(), lambda s: s.is_connected(), "bob connected")
    assert call.state().is_connected()
    assert "bob" in call.peer()

    media = bob.rec.wait("MediaStarted", lambda e: e.is_media_started())
    # The parties' SRTP policy is the default (optional) and the signalling UDP: no SDES keys
    # in the SDP (RFC 4568 §8.3) and no DTLS-SRTP offer, so the media is plain RTP.
    assert media.security == "none"
    # Bob heard Alice's 440 Hz tone before any DTMF (skip the first 200 ms of
    # jitter-buffer fill, take the last 0.5 s of the first 1.5 s).
    deadline = time.monotonic() + WAIT_S
    while len(heard.take()) < 8000 + 4000 and time.monotonic() < deadline:
        time.sleep(0.05)
    samples = heard.take()[1600:]
    assert len(samples) >= 4000, len(samples)
    assert goertzel_fraction(samples[-4000:], 440.0, 8000) > 0.8

    call.send_dtmf("123#")
    bob.rec.wait("DTMF #", lambda e: e.is_dtmf_received() and e.digit == "#")
    digits = [e.digit for e in bob.rec.snapshot() if e.is_dtmf_received()]
    assert digits == ["1", "2", "3", "#"]

    # A key counts as sent once its end packets are out (after the peer saw it start).
    deadline = time.monotonic() + WAIT_S
    while call.stats().dtmf_sent < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = call.stats()
    assert stats.tx_packets > 20 and stats.dtmf_sent == 4
    assert (stats.srtp_keying, stats.srtp_suite) == (None, None)
    assert (stats.srtp_auth_failures, stats.srtp_replays, stats.srtp_dropped) == (0, 0, 0)
    assert bob_call.stats().dtmf_received == 4

    call.hangup()
    ended = bob.wait_call_state(bob_call.id(), lambda s: s.is_ended(), "bob ended")
    assert ended.state.status == 200
    alice.wait_call_state(call.id(), lambda s: s.is_ended(), "alice ended")

    # The whole ordered trace of each side (periodic statistics are off in these parties; the
    # final figures come once, just before MediaStopped).
    codec = "media:" + stats.codec
    assert kinds(alice.rec.snapshot()) == [
        "reg:registering", "reg:registered", "call:calling", "call:ringing", codec,
        "call:connected", "stats", "media:stopped", "call:ended"]
    assert kinds(bob.rec.snapshot()) == [
        "reg:registering", "reg:registered", "incoming", "call:ringing", codec,
        "call:connected", "dtmf:1", "dtmf:2", "dtmf:3", "dtmf:#", "stats", "media:stopped", "call:ended"]
    assert alice.ep.call_count() == 0


def test_srtp_options_default_to_the_engines(server):
    # RFC 3711 SRTP settings: None means the engine's default (optional policy, automatic
    # keying: SDES over TLS, DTLS-SRTP otherwise), and SDES keys never go over UDP/TCP unless
    # allowed.
    assert {p.name for p in rvoip.SrtpPolicy} == {"OFF", "OPTIONAL", "MANDATORY"}
    assert {k.name for k in rvoip.SrtpKeying} == {"AUTO", "SDES", "DTLS"}
    for o in (rvoip.EndpointOptions(),
              rvoip.AccountOptions(aor="sip:alice@127.0.0.1", password="apw")):
        assert (o.srtp_policy, o.srtp_keying, o.srtp_sdes_over_insecure) == (None, None, False)
    ep = rvoip.Endpoint(rvoip.EndpointOptions(
        udp="127.0.0.1:0", enable_tcp=False, srtp_policy=rvoip.SrtpPolicy.MANDATORY,
        srtp_keying=rvoip.SrtpKeying.DTLS))
    try:
        acc = ep.add_account(rvoip.AccountOptions(
            aor="sip:alice@127.0.0.1", password="apw",
            server=f"127.0.0.1:{server.port(rvoip.Transport.UDP)}",
            srtp_policy=rvoip.SrtpPolicy.MANDATORY, srtp_keying=rvoip.SrtpKeying.SDES,
            srtp_sdes_over_insecure=True))
        assert acc.id() > 0
    finally:
        ep.shutdown()
    # The new event and the statistics' SRTP fields are part of the API.
    assert hasattr(rvoip.Event, "MEDIA_SECURITY_FAILED")
    fields = inspect.signature(rvoip.CallStats).parameters
    assert {"srtp_keying", "srtp_suite", "srtp_auth_failures", "srtp_replays",
            "srtp_dropped"} <= set(fields)


def test_reject_busy(alice, bob):
    call, incoming = ring(alice, bob)
    bob.ep.call(incoming.call_id).reject(486)
    ended = alice.wait_call_state(call.id(), lambda s: s.is_ended(), "alice ended")
    assert ended.state.status == 486


def test_cancel_before_answer(alice, bob):
    call, incoming = ring(alice, bob)
    alice.wait_call_state(call.id(), lambda s: s.is_ringing(), "alice ringing")
    call.hangup()
    assert alice.wait_call_state(call.id(), lambda s: s.is_ended(), "a").state.status == 487
    assert bob.wait_call_state(incoming.call_id, lambda s: s.is_ended(), "b").state.status == 487


def resumed_after(party, call_id, what):
    """Waits until party's trace shows call_id Held and then Connected again."""
    def trace():
        return [e.state for e in party.rec.snapshot()
                if e.is_call_state_changed() and e.call_id == call_id]

    def done(_):
        t = trace()
        held = [i for i, s in enumerate(t) if s.is_held()]
        return bool(held) and any(s.is_connected() for s in t[held[0]:])
    party.rec.wait(what, done)


def test_hold_and_resume(alice, bob):
    call, incoming = ring(alice, bob)
    bob.ep.call(incoming.call_id).answer(quiet())
    alice.wait_call_state(call.id(), lambda s: s.is_connected(), "connected")
    call.hold()
    held = bob.wait_call_state(incoming.call_id, lambda s: s.is_held(), "bob held")
    assert held.state.remote and not held.state.local
    mine = alice.wait_call_state(call.id(), lambda s: s.is_held(), "alice held")
    assert mine.state.local and not mine.state.remote
    assert call.state().is_held()
    call.resume()
    resumed_after(alice, call.id(), "alice resumed")
    resumed_after(bob, incoming.call_id, "bob resumed")
    call.hangup()


class Beeper(rvoip.AudioProducer):
    """440 Hz at 8 kHz, but raises on every 5th frame."""

    def __init__(self):
        self.n = 0
        self.phase = 0

    def read_frame(self, samples):
        self.n += 1
        if self.n % 5 == 0:
            raise RuntimeError("app bug in the audio callback")
        out = [int(8000 * math.sin(2 * math.pi * 440 * (self.phase + i) / 8000))
               for i in range(samples)]
        self.phase += samples
        return out


class FlakyCollector(Collector):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def write_frame(self, samples):
        self.calls += 1
        if self.calls % 7 == 0:
            raise ValueError("app bug in the sink callback")
        super().write_frame(samples)


def test_raising_audio_callbacks_do_not_end_the_call(alice, bob):
    beeper, heard = Beeper(), FlakyCollector()
    call, incoming = ring(alice, bob, rvoip.CallOptions(
        source=rvoip.AudioSource.callback(8000, beeper), sink=rvoip.AudioSink.discard()))
    bob.ep.call(incoming.call_id).answer(rvoip.CallOptions(
        source=rvoip.AudioSource.silence(), sink=rvoip.AudioSink.callback(8000, heard)))
    alice.wait_call_state(call.id(), lambda s: s.is_connected(), "connected")
    deadline = time.monotonic() + WAIT_S
    while (beeper.n < 40 or heard.calls < 40) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert beeper.n >= 40 and heard.calls >= 40, (beeper.n, heard.calls)
    assert call.state().is_connected()
    # Every 5th frame is silence and every 7th received frame is dropped: measured ≈ 0.87 per
    # 20 ms block (≈ 0.60 with one Goertzel over the whole window).
    assert goertzel_fraction(heard.take()[-2000:], 440.0, 8000) > 0.5
    call.hangup()
    alice.wait_call_state(call.id(), lambda s: s.is_ended(), "ended")
