"""The endpoint's DNS server (EndpointOptions.dns_server) and the server destination an account
uses (Account.server()), RFC 3263. A stand-in DNS server in this process (a UDP socket on
127.0.0.1 answering every A query with 127.0.0.1 and anything else with no records) shows which
server is asked."""

import asyncio
import socket
import struct
import threading

import pytest

import rvoip


class StandInDns:
    """A UDP DNS server on 127.0.0.1: A → 127.0.0.1 (TTL 60 s), other types → NOERROR, empty."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.queries = []  # (name, qtype)
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                q, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            r = self._answer(q)
            if r:
                self.sock.sendto(r, peer)

    def _answer(self, q):
        if len(q) < 12 or q[2] & 0x80 or q[4:6] != b"\x00\x01":
            return None
        at, labels = 12, []
        while at < len(q) and q[at]:
            n = q[at]
            if n & 0xC0:
                return None
            labels.append(q[at + 1:at + 1 + n].decode("ascii", "replace"))
            at += 1 + n
        end = at + 5
        if end > len(q):
            return None
        qtype, qclass = struct.unpack("!HH", q[at + 1:end])
        is_a = qtype == 1 and qclass == 1
        with self.lock:
            self.queries.append((".".join(labels), qtype))
        flags = struct.pack("!BB", 0x84 | (q[2] & 0x79), 0x80)  # QR AA, opcode+RD; RA NOERROR
        counts = struct.pack("!HHHH", 1, 1 if is_a else 0, 0, 0)
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([127, 0, 0, 1])
        return q[:2] + flags + counts + q[12:end] + (answer if is_a else b"")

    def seen(self):
        with self.lock:
            return list(self.queries)

    def stop(self):
        self.stopped = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def dns():
    d = StandInDns()
    yield d
    d.stop()


def endpoint(dns_server=None):
    return rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", stats_interval_ms=0,
                                                dns_server=dns_server))


def add(ep, server, transport=rvoip.Transport.UDP):
    return ep.add_account(rvoip.AccountOptions(aor="sip:alice@127.0.0.1", password="apw",
                                               server=server, transport=transport))


@pytest.mark.parametrize("bad", ["127.0.0.1", "dns.example.com:53", "127.0.0.1:99999", "[::1]",
                                 "not an address"])
def test_a_dns_server_that_is_not_ip_and_port_is_an_invalid_argument(bad):
    with pytest.raises(rvoip.RvoipError.InvalidArgument):
        endpoint(bad)


def test_no_or_empty_dns_server_is_the_systems():
    assert rvoip.EndpointOptions().dns_server is None
    for s in (None, ""):
        ep = endpoint(s)
        ep.shutdown()


def test_an_ip_literal_server_is_reported_as_given_without_dns(server, dns):
    ep = endpoint(dns.address)
    try:
        port = server.port(rvoip.Transport.UDP)
        acc = add(ep, f"127.0.0.1:{port}")
        s = acc.server()
        assert s == rvoip.ServerAddress(transport=rvoip.Transport.UDP, address=f"127.0.0.1:{port}")
        assert asyncio.run(acc.register()).is_registered()
        # Default ports: 5060, 5061 for TLS; IPv6 in brackets.
        for given, transport, want in [
            ("127.0.0.1", rvoip.Transport.UDP, "127.0.0.1:5060"),
            ("127.0.0.1", rvoip.Transport.TCP, "127.0.0.1:5060"),
            ("127.0.0.1", rvoip.Transport.TLS, "127.0.0.1:5061"),
            ("[2001:db8::5]:5070", rvoip.Transport.TCP, "[2001:db8::5]:5070"),
        ]:
            s = add(ep, given, transport).server()
            assert (s.transport, s.address) == (transport, want), given
        assert dns.seen() == [], "IP literals need no DNS query"
        acc.remove()
        with pytest.raises(rvoip.RvoipError.NotFound):
            acc.server()
    finally:
        ep.shutdown()


def test_a_host_name_is_resolved_by_the_dns_server_given(server, dns):
    ep = endpoint(dns.address)
    try:
        port = server.port(rvoip.Transport.UDP)
        acc = add(ep, f"pbx.example.test:{port}")
        assert acc.server() == rvoip.ServerAddress(transport=rvoip.Transport.UDP,
                                                   address=f"127.0.0.1:{port}")
        assert ("pbx.example.test", 1) in dns.seen(), dns.seen()
        assert asyncio.run(acc.register()).is_registered()
        # No port: NAPTR and SRV (no records here), then A with the default port (RFC 3263).
        s = add(ep, "pbx.example.test", rvoip.Transport.TCP).server()
        assert (s.transport, s.address) == (rvoip.Transport.TCP, "127.0.0.1:5060")
        types = {t for _, t in dns.seen()}
        assert {1, 35, 33} <= types, dns.seen()  # A, NAPTR, SRV
    finally:
        ep.shutdown()
