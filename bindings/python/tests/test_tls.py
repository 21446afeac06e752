"""SIP over TLS (RFC 3261 §26.2, RFC 5630) through the bindings, mirroring tests/c/smoke_tls.c:
a server on tls:127.0.0.1:0 makes a self-signed certificate in its data directory; an account
that pins its fingerprint registers, one without the pin fails with 503 and a reason naming the
certificate."""

import asyncio
import re

import pytest

import rvoip


@pytest.fixture
def tls_server(tmp_path):
    s = rvoip.Server(
        rvoip.ServerOptions(
            listen=["tls:127.0.0.1:0"],
            domain="127.0.0.1",
            users={"alice": "apw"},
            data_dir=str(tmp_path),
        )
    )
    assert s.tls_fingerprint() is None
    s.start()
    yield s
    s.stop()


@pytest.fixture
def endpoint():
    ep = rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", stats_interval_ms=0))
    yield ep
    ep.shutdown()


def tls_account(ep, server, pin=None, ca_file=None):
    return ep.add_account(
        rvoip.AccountOptions(
            aor="sip:alice@127.0.0.1",
            password="apw",
            server=f"127.0.0.1:{server.port(rvoip.Transport.TLS)}",
            transport=rvoip.Transport.TLS,
            expires_s=300,
            tls_pin_sha256=pin,
            tls_ca_file=ca_file,
        )
    )


def test_tls_listener_and_fingerprint(tls_server, tmp_path):
    assert (tmp_path / "tls-cert.pem").stat().st_size > 0
    fp = tls_server.tls_fingerprint()
    assert re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2}){31}", fp), fp
    port = tls_server.port(rvoip.Transport.TLS)
    assert port
    assert tls_server.port(rvoip.Transport.UDP) is None
    assert [(a.transport, a.address) for a in tls_server.local_addresses()] == \
        [(rvoip.Transport.TLS, f"127.0.0.1:{port}")]


def test_pinned_registers_and_unpinned_fails_naming_the_certificate(tls_server, endpoint):
    other = rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", stats_interval_ms=0))
    try:
        # Without a pin the self-signed certificate is refused.
        unpinned = tls_account(other, tls_server)
        with pytest.raises(rvoip.RvoipError.RegistrationFailed) as e:
            asyncio.run(unpinned.register())
        assert e.value.status == 503
        assert "certificate" in e.value.reason.lower(), e.value.reason
        assert unpinned.state().is_failed()
    finally:
        other.shutdown()
    # With the pin (from a separate endpoint: no connection is shared): registered.
    pinned = tls_account(endpoint, tls_server, pin=tls_server.tls_fingerprint())
    state = asyncio.run(pinned.register())
    assert state.is_registered(), state
    # The pin is case- and colon-free (a third endpoint: a new connection and handshake).
    third = rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", stats_interval_ms=0))
    try:
        lower = tls_server.tls_fingerprint().replace(":", "").lower()
        again = tls_account(third, tls_server, pin=lower)
        assert asyncio.run(again.register()).is_registered()
    finally:
        third.shutdown()


def test_bad_tls_options(tls_server, endpoint):
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        tls_account(endpoint, tls_server, pin="not:a:fingerprint")
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        tls_account(endpoint, tls_server, ca_file="/nonexistent/ca.pem")
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        endpoint.add_account(rvoip.AccountOptions(
            aor="sips:alice@127.0.0.1", password="apw", transport=rvoip.Transport.TCP,
            server=f"127.0.0.1:{tls_server.port(rvoip.Transport.TLS)}"))
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        rvoip.Server(rvoip.ServerOptions(listen=["tls:127.0.0.1:0"], tls_cert="/x/cert.pem"))


def test_stopped_server_has_no_tls(tls_server):
    tls_server.stop()
    assert tls_server.tls_fingerprint() is None
    assert tls_server.port(rvoip.Transport.TLS) is None
