#!/usr/bin/env python3
"""A small SIP client for the hostile-network tests (stdlib only): UDP or TCP from a chosen loopback
source address, UDP retransmission (RFC 3261 timer A/E), digest authentication (MD5, qop=auth, or no
qop) on 401/407 -> request again with credentials -> final response.

Library use (the other scripts in this directory import it):
    c = SipClient("127.0.0.2", ("127.0.0.1", 5070), transport="udp")
    r = c.register("1234", "4817", domain="127.0.0.1")      # -> Response (r.code == 200)
    r = c.request("OPTIONS", "sip:127.0.0.1", from_uri="sip:x@attacker.example")
    c.close()

Command line (prints one line, exits 0 when the final response has the wanted code):
    sipclient.py register --src 127.0.0.2 --server 127.0.0.1:5070 --user 1234 --password 4817 [--tcp]
    sipclient.py options  --src 127.0.0.1 --server 127.0.0.1:5070 [--uri sip:127.0.0.1] [--want 200]
"""
import argparse
import hashlib
import os
import random
import re
import socket
import sys
import time

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding"}


def rand_token(n=10):
    return "%x" % random.getrandbits(4 * n)


class Response:
    """A parsed SIP message (response or request): first line, headers (lower-case names, compact
    forms expanded, values in order), body, and the raw bytes."""

    def __init__(self, raw):
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        self.first = lines[0]
        self.headers = {}
        for ln in lines[1:]:
            if ":" not in ln:
                continue
            k, v = ln.split(":", 1)
            k = k.strip().lower()
            k = COMPACT.get(k, k)
            self.headers.setdefault(k, []).append(v.strip())
        m = re.match(r"SIP/2\.0 (\d{3})", self.first)
        self.code = int(m.group(1)) if m else None

    def h(self, name, default=None):
        v = self.headers.get(name.lower())
        return v[0] if v else default

    def cseq_method(self):
        v = self.h("cseq", "")
        p = v.split()
        return p[1] if len(p) == 2 else None

    def __repr__(self):
        return "<%s (%d bytes)>" % (self.first, len(self.raw))


def parse_challenge(value):
    """Digest challenge parameters (lower-case names) of a WWW-/Proxy-Authenticate value."""
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "digest":
        return None
    params = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*("([^"\\]|\\.)*"|[^,\s]+)', rest):
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1]
        params[m.group(1).lower()] = v
    return params


def digest_header(ch, method, uri, user, password, nc=1):
    """The Authorization value answering challenge `ch` (MD5 only; qop=auth when offered)."""
    alg = ch.get("algorithm", "MD5")
    if alg.upper() != "MD5":
        raise ValueError("only MD5 digest is implemented (challenge offered %s)" % alg)
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()
    realm, nonce = ch.get("realm", ""), ch["nonce"]
    ha1 = md5("%s:%s:%s" % (user, realm, password))
    ha2 = md5("%s:%s" % (method, uri))
    parts = ['username="%s"' % user, 'realm="%s"' % realm, 'nonce="%s"' % nonce, 'uri="%s"' % uri,
             "algorithm=MD5"]
    qops = [q.strip() for q in ch.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        cnonce, ncs = rand_token(8), "%08x" % nc
        resp = md5("%s:%s:%s:%s:auth:%s" % (ha1, nonce, ncs, cnonce, ha2))
        parts += ['response="%s"' % resp, "qop=auth", 'cnonce="%s"' % cnonce, "nc=%s" % ncs]
    else:
        parts.append('response="%s"' % md5("%s:%s:%s" % (ha1, nonce, ha2)))
    if "opaque" in ch:
        parts.append('opaque="%s"' % ch["opaque"])
    return "Digest " + ", ".join(parts)


class SipClient:
    """One socket (UDP, or one TCP connection) from `src` (an IP, port 0 = any) to `server`."""

    def __init__(self, src, server, transport="udp", src_port=0, connect_timeout=10.0):
        self.server = server
        self.transport = transport
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((src, src_port))
        elif transport == "tcp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind((src, src_port))
            self.sock.settimeout(connect_timeout)
            self.sock.connect(server)
            self.rbuf = b""
        else:
            raise ValueError("transport must be udp or tcp")
        self.src, self.port = self.sock.getsockname()
        self.cseq = 0
        self.closed = False  # TCP: the server closed the connection

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- raw I/O ----
    def send_raw(self, data):
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def recv_msg(self, timeout):
        """One SIP message or None on timeout / (TCP) close. TCP frames by Content-Length."""
        deadline = time.monotonic() + timeout
        if self.transport == "udp":
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                try:
                    data, _ = self.sock.recvfrom(65535)
                except socket.timeout:
                    return None
                except ConnectionRefusedError:
                    continue
                return Response(data)
        while True:
            msg = self._tcp_frame()
            if msg is not None:
                return msg
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return None
            except (ConnectionResetError, BrokenPipeError):
                self.closed = True
                return None
            if not d:
                self.closed = True
                continue
            self.rbuf += d

    def _tcp_frame(self):
        self.rbuf = self.rbuf.lstrip(b"\r\n")  # keep-alive CRLFs
        i = self.rbuf.find(b"\r\n\r\n")
        if i < 0:
            return None
        m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", self.rbuf[:i])
        n = int(m.group(1)) if m else 0
        if len(self.rbuf) < i + 4 + n:
            return None
        msg, self.rbuf = self.rbuf[:i + 4 + n], self.rbuf[i + 4 + n:]
        return Response(msg)

    # ---- requests ----
    def build(self, method, ruri, from_uri, to_uri=None, call_id=None, cseq=None, body=b"",
              headers=(), contact=None, branch=None, from_tag=None):
        """Request bytes; returns (bytes, branch, call_id, cseq)."""
        branch = branch or "z9hG4bK-" + rand_token()
        call_id = call_id or rand_token(16) + "@hostile"
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to_uri = to_uri or from_uri
        proto = "UDP" if self.transport == "udp" else "TCP"
        h = ["%s %s SIP/2.0" % (method, ruri),
             "Via: SIP/2.0/%s %s:%d;branch=%s;rport" % (proto, self.src, self.port, branch),
             "Max-Forwards: 70",
             "From: <%s>;tag=%s" % (from_uri, from_tag or rand_token(8)),
             "To: <%s>" % to_uri,
             "Call-ID: %s" % call_id,
             "CSeq: %d %s" % (cseq, method)]
        if contact:
            h.append("Contact: %s" % contact)
        h += list(headers)
        if isinstance(body, str):
            body = body.encode()
        h.append("Content-Length: %d" % len(body))
        return ("\r\n".join(h) + "\r\n\r\n").encode() + body, branch, call_id, cseq

    def transaction(self, data, branch, method, timeout=16.0):
        """Send `data`, retransmit over UDP (500 ms doubling to 4 s) until a final response with our
        branch arrives; returns it or None (timeout / TCP closed)."""
        deadline = time.monotonic() + timeout
        self.send_raw(data)
        interval = 0.5
        next_tx = time.monotonic() + interval
        provisional = False
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            wait = min(deadline, next_tx) - now if (self.transport == "udp" and not provisional) else deadline - now
            r = self.recv_msg(max(wait, 0.001))
            if r is None:
                if self.transport == "tcp" and self.closed:
                    return None
                if self.transport == "udp" and not provisional and time.monotonic() >= next_tx:
                    self.send_raw(data)
                    interval = min(interval * 2, 4.0)
                    next_tx = time.monotonic() + interval
                continue
            if r.code is None:
                continue  # a request to us: ignore
            via = r.h("via", "")
            if branch not in via or r.cseq_method() != method:
                continue  # a stray (earlier transaction's) response
            if r.code < 200:
                provisional = True
                continue
            return r

    def request(self, method, ruri, from_uri, to_uri=None, body=b"", headers=(), contact=None,
                auth=None, timeout=16.0):
        """A request; with auth=(user, password) it answers one 401/407 challenge. Returns the final
        Response or None."""
        call_id, from_tag = rand_token(16) + "@hostile", rand_token(8)
        data, branch, _, cseq = self.build(method, ruri, from_uri, to_uri, call_id=call_id, body=body,
                                           headers=headers, contact=contact, from_tag=from_tag)
        r = self.transaction(data, branch, method, timeout)
        if r is None or r.code not in (401, 407) or auth is None:
            return r
        hname = "www-authenticate" if r.code == 401 else "proxy-authenticate"
        ch = None
        for v in r.headers.get(hname, []):
            ch = parse_challenge(v)
            if ch and ch.get("algorithm", "MD5").upper() == "MD5":
                break
        if not ch:
            return r
        cred = digest_header(ch, method, ruri, auth[0], auth[1])
        aname = "Authorization" if r.code == 401 else "Proxy-Authorization"
        data, branch, _, _ = self.build(method, ruri, from_uri, to_uri, call_id=call_id, body=body,
                                        headers=list(headers) + ["%s: %s" % (aname, cred)],
                                        contact=contact, from_tag=from_tag)
        return self.transaction(data, branch, method, timeout)

    def register(self, user, password, domain="127.0.0.1", contact=None, expires=3600, timeout=16.0):
        """REGISTER sip:domain for user@domain (401 -> credentials -> final). `contact` defaults to
        this socket's address."""
        if contact is None:
            t = ";transport=tcp" if self.transport == "tcp" else ""
            contact = "<sip:%s@%s:%d%s>" % (user, self.src, self.port, t)
        aor = "sip:%s@%s" % (user, domain)
        return self.request("REGISTER", "sip:%s" % domain, aor, aor, contact=contact,
                            headers=["Expires: %d" % expires], auth=(user, password), timeout=timeout)


def hostport(s):
    h, _, p = s.rpartition(":")
    return (h, int(p))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["register", "options"])
    ap.add_argument("--src", default="127.0.0.1")
    ap.add_argument("--server", type=hostport, default=("127.0.0.1", 5070))
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--domain", default="127.0.0.1")
    ap.add_argument("--contact", help="Contact value (default: this socket)")
    ap.add_argument("--expires", type=int, default=3600)
    ap.add_argument("--uri", help="OPTIONS Request-URI (default sip:DOMAIN)")
    ap.add_argument("--from", dest="from_uri", default=None)
    ap.add_argument("--want", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=16.0)
    a = ap.parse_args()
    tr = "tcp" if a.tcp else "udp"
    try:
        c = SipClient(a.src, a.server, tr)
    except OSError as e:
        print("%s from %s over %s: cannot connect/bind: %s" % (a.cmd.upper(), a.src, tr, e))
        return 1
    t0 = time.monotonic()
    if a.cmd == "register":
        r = c.register(a.user, a.password, a.domain, a.contact, a.expires, a.timeout)
        what = "REGISTER %s" % a.user
    else:
        r = c.request("OPTIONS", a.uri or "sip:%s" % a.domain, a.from_uri or "sip:probe@%s" % a.domain,
                      to_uri=a.uri or "sip:%s" % a.domain, timeout=a.timeout)
        what = "OPTIONS %s" % (a.uri or "sip:%s" % a.domain)
    c.close()
    got = r.first if r is not None else "no final response within %.0f s" % a.timeout
    print("%s from %s over %s: %s (%.2f s)" % (what, a.src, tr, got, time.monotonic() - t0))
    return 0 if (r is not None and r.code == a.want) else 1


if __name__ == "__main__":
    sys.exit(main())
