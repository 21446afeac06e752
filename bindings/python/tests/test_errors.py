"""Bad input raises the documented RvoipError subclasses, never crashes."""

import asyncio
import os
import tempfile

import pytest

import rvoip

from conftest import quiet


def test_bad_endpoint_options():
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.Endpoint(rvoip.EndpointOptions(udp="not-an-address"))
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", codecs=["GSM"]))
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", ptime_ms=7))
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.Endpoint(rvoip.EndpointOptions(udp="", enable_tcp=False))
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", public_ip="300.1.1.1"))


def test_bind_conflict_is_network_error(server):
    port = server.port(rvoip.Transport.UDP)
    with pytest.raises(rvoip.RvoipError.Network):
        rvoip.Endpoint(rvoip.EndpointOptions(udp=f"127.0.0.1:{port}", enable_tcp=False))


def test_bad_server_options():
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.Server(rvoip.ServerOptions(listen=["sctp:127.0.0.1:0"]))
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.Server(rvoip.ServerOptions(users={"": "x"}))
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.Server.from_toml("/nonexistent/rvoip.toml")


def test_server_start_twice(server):
    assert server.is_running()
    with pytest.raises(rvoip.RvoipError.InvalidState):
        server.start()
    assert server.domain() == "127.0.0.1"
    assert {a.transport for a in server.local_addresses()} == {rvoip.Transport.UDP,
                                                                rvoip.Transport.TCP}


def test_bad_audio():
    with pytest.raises(rvoip.RvoipError.InvalidArgument) as e:
        rvoip.AudioSource.tone(5000.0, 8000)
    assert "5000" in e.value.detail and "5000" in str(e.value)
    assert isinstance(e.value, rvoip.RvoipError)
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.AudioSource.tone(440.0, 1000)
    with pytest.raises(rvoip.RvoipError.Media):
        rvoip.AudioSource.wav("/nonexistent/file.wav")
    with tempfile.NamedTemporaryFile(suffix=".wav", delete=False) as f:
        f.write(b"RIFF garbage, not a WAV file")
    try:
        with pytest.raises(rvoip.RvoipError.Media):
            rvoip.AudioSource.wav(f.name)
    finally:
        os.unlink(f.name)
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.AudioSink.wav("/tmp/x.wav", 100)


def test_bad_account_and_call_arguments(alice):
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        alice.ep.add_account(rvoip.AccountOptions(aor="not a uri", password="x"))
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        alice.ep.add_account(rvoip.AccountOptions(aor="sip:127.0.0.1", password="x"))
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        asyncio.run(alice.ep.make_call("sip:", account=alice.account))
    for target in ("mailto:bob@127.0.0.1", "tel:+15551234", "bob"):
        with pytest.raises(rvoip.RvoipError.InvalidArgument):
            asyncio.run(alice.ep.make_call(target, account=alice.account, options=quiet()))
    with pytest.raises(rvoip.RvoipError.NotFound):
        alice.ep.call(987654321)


def test_wrong_password_raises_registration_failed(server):
    ep = rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", stats_interval_ms=0))
    try:
        acc = ep.add_account(rvoip.AccountOptions(
            aor="sip:alice@127.0.0.1", password="wrong",
            server=f"127.0.0.1:{server.port(rvoip.Transport.UDP)}"))
        with pytest.raises(rvoip.RvoipError.RegistrationFailed) as e:
            asyncio.run(acc.register())
        assert e.value.status in (401, 403)
        assert acc.state().is_failed()
    finally:
        ep.shutdown()


def test_call_state_errors(alice, bob):
    alice.register()
    bob.register()
    source = rvoip.AudioSource.silence()
    call = asyncio.run(alice.ep.make_call("sip:bob@127.0.0.1", account=alice.account,
                                          options=rvoip.CallOptions(source=source)))
    # The source now belongs to the first call.
    with pytest.raises(rvoip.RvoipError.InvalidState):
        asyncio.run(alice.ep.make_call("sip:bob@127.0.0.1",
                                       options=rvoip.CallOptions(source=source)))
    # Only incoming calls are answered or rejected.
    with pytest.raises(rvoip.RvoipError.InvalidState):
        call.answer()
    incoming = bob.rec.wait("IncomingCall", lambda e: e.is_incoming_call())
    bob_call = bob.ep.call(incoming.call_id)
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        bob_call.reject(200)
    bob_call.answer(quiet())
    alice.wait_call_state(call.id(), lambda s: s.is_connected(), "connected")
    bob.rec.wait("media", lambda e: e.is_media_started())
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        call.send_dtmf("12x")
    call.hangup()
    alice.wait_call_state(call.id(), lambda s: s.is_ended(), "ended")
    with pytest.raises(rvoip.RvoipError.NotFound):
        call.hangup()
    with pytest.raises(rvoip.RvoipError.NotFound):
        call.state()


def test_after_shutdown():
    ep = rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0"))
    acc = ep.add_account(rvoip.AccountOptions(aor="sip:carol@127.0.0.1:9", password="x"))
    ep.shutdown()
    ep.shutdown()  # idempotent
    with pytest.raises((rvoip.RvoipError.Shutdown, rvoip.RvoipError.NotFound)):
        acc.start_registration()
    with pytest.raises((rvoip.RvoipError.Shutdown, rvoip.RvoipError.NotFound,
                        rvoip.RvoipError.Network)):
        asyncio.run(ep.make_call("sip:bob@127.0.0.1", options=quiet()))
