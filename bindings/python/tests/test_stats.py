"""Server.stats(): the embedded server's counters match the SIP traffic a test sends it."""

import socket

import pytest

import rvoip


def exchange(port, text):
    """Sends one SIP request over UDP from a fresh socket; returns the first response line."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        me = "127.0.0.1:%d" % s.getsockname()[1]
        s.send(text.replace("ME", me).replace("\n", "\r\n").encode())
        return s.recv(65535).decode(errors="replace").split("\r\n", 1)[0]


def request(method, n):
    return (
        f"{method} sip:127.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP ME;branch=z9hG4bKstats{n}\n"
        "Max-Forwards: 70\n"
        f"From: <sip:carol@127.0.0.1>;tag=s{n}\n"
        "To: <sip:carol@127.0.0.1>\n"
        f"Call-ID: stats{n}@test\n"
        f"CSeq: 1 {method}\n"
        "Contact: <sip:carol@ME>\n"
        "Content-Length: 0\n\n"
    )


def count(stats, method, cls):
    for r in stats.responses:
        if r.method == method and r.status_class == cls:
            return r.count
    return 0


def test_stats_count_requests_responses_and_bindings(server, alice):
    port = server.port(rvoip.Transport.UDP)
    before = server.stats()
    assert before.requests["REGISTER"] == 0
    assert before.bindings == 0
    assert exchange(port, request("OPTIONS", 1)).startswith("SIP/2.0 200")
    assert exchange(port, request("REGISTER", 2)).startswith("SIP/2.0 401")
    assert alice.register().is_registered()  # REGISTER, 401, REGISTER, 200

    s = server.stats()
    assert s.requests["OPTIONS"] == 1
    assert s.requests["REGISTER"] == 3
    assert s.requests["INVITE"] == 0
    assert count(s, "OPTIONS", "2xx") == 1
    assert count(s, "REGISTER", "4xx") == 2
    assert count(s, "REGISTER", "2xx") == 1
    assert s.challenges == 2
    assert s.registrations == 1
    assert s.register_latency_count == 3
    assert s.bindings == 1
    assert s.calls == 0
    assert s.uptime_s >= 0


def test_stats_of_a_stopped_server_is_an_error():
    s = rvoip.Server(rvoip.ServerOptions(listen=["udp:127.0.0.1:0"]))
    with pytest.raises(rvoip.RvoipError.InvalidState):
        s.stats()
