#!/usr/bin/env python3
"""Bytes held for a contact that never answers. User `sink` registers with a Contact at a UDP socket
here that reads and never answers; then COUNT unauthenticated OPTIONS From sip:x@attacker.example
with BODY-byte bodies go to sip:sink@DOMAIN from the --sources addresses (round-robin, paced well
under the flood limit). Each forwarded one is held by the proxy until its timer F; the server's
max_held_bytes (--held-cap) must stop that: server RSS grows by no more than the cap (or
--max-rss-growth-mb MiB),
what reaches the sink is at most about held-cap / request size, and the rest is answered 503.
With --body-cap-check instead: one such OPTIONS must get 513 (max_forward_body_bytes) and a small one
is forwarded.

Usage: held.py --server 127.0.0.1:5071 --pid PID --count 2000 --body 61440 --held-cap 33554432
       held.py --server 127.0.0.1:5070 --body-cap-check --body 61440
"""
import argparse
import collections
import os
import re
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sipclient import SipClient, hostport, rand_token  # noqa: E402
from conns import rss_kb, udp_sockets  # noqa: E402


class Sink:
    """Reads datagrams, never answers; counts distinct Call-IDs."""

    def __init__(self, ip="127.0.0.1"):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root)
        except OSError:
            pass
        self.s.bind((ip, 0))
        self.port = self.s.getsockname()[1]
        self.call_ids, self.datagrams, self.bytes = set(), 0, 0
        self.stop = False
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        self.s.settimeout(0.2)
        while not self.stop:
            try:
                d = self.s.recv(65535)
            except socket.timeout:
                continue
            self.datagrams += 1
            self.bytes += len(d)
            m = re.search(rb"(?im)^(?:call-id|i)\s*:\s*(\S+)", d)
            if m:
                self.call_ids.add(m.group(1))


def options(src, port, body, call_id, domain):
    b = "z9hG4bK-" + rand_token()
    head = ("OPTIONS sip:sink@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=%s;rport\r\nMax-Forwards: 70\r\n"
            "From: <sip:x@attacker.example>;tag=%s\r\nTo: <sip:sink@%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"
            "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
            % (domain, src, port, b, rand_token(6), domain, call_id, len(body)))
    return head.encode() + body


def register_sink(a, sink):
    c = SipClient("127.0.0.1", a.server)
    r = c.register("sink", "sink-pw", a.domain, contact="<sip:sink@127.0.0.1:%d>" % sink.port, expires=600)
    c.close()
    return r


def body_cap_check(a):
    sink = Sink()
    r = register_sink(a, sink)
    if r is None or r.code != 200:
        print("REGISTER sink: %s" % (r.first if r else "no answer"))
        return 1
    res = {}
    for label, size in (("big", a.body), ("small", 1024)):
        c = SipClient(a.sources.split("-")[0], a.server)
        cid = "%s-%s@bodycap" % (label, rand_token())
        data = options(c.src, c.port, b"b" * size, cid, a.domain)
        c.send_raw(data)
        got = None
        end = time.monotonic() + 5
        while time.monotonic() < end and got is None:
            m = c.recv_msg(end - time.monotonic())
            if m is not None and m.code and m.code >= 200:
                got = m
            if cid.encode() in sink.call_ids:
                break
        time.sleep(0.3)
        res[label] = (len(data), got.first if got else None, cid.encode() in sink.call_ids)
        c.close()
        print("%d-byte body (%d-byte request): reply %s, %s the sink"
              % (size, len(data), got.first if got else "none within 5 s", "reached" if res[label][2] else "did not reach"))
    sink.stop = True
    if not (res["big"][1] or "").startswith("SIP/2.0 513") or res["big"][2]:
        print("a %d-byte body to a registered user was not refused with 513 (got %s, %s)"
              % (a.body, res["big"][1], "forwarded" if res["big"][2] else "not forwarded"))
        return 1
    if not res["small"][2]:
        print("control: a 1 KB body to the registered sink was not forwarded")
        return 1
    print("body cap: %d-byte body answered 513, 1 KB body forwarded" % a.body)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", type=hostport, default=("127.0.0.1", 5071))
    ap.add_argument("--domain", default="127.0.0.1")
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--body", type=int, default=61440)
    ap.add_argument("--held-cap", type=int, default=33554432)
    ap.add_argument("--max-rss-growth-mb", type=float, default=None,
                    help="MiB; default: the held-bytes cap")
    ap.add_argument("--sources", default="127.0.0.40-47")
    ap.add_argument("--rate", type=float, default=400.0)
    ap.add_argument("--body-cap-check", action="store_true")
    a = ap.parse_args()
    if a.body_cap_check:
        return body_cap_check(a)
    if a.max_rss_growth_mb is None:
        a.max_rss_growth_mb = a.held_cap / (1 << 20)

    sink = Sink()
    r = register_sink(a, sink)
    if r is None or r.code != 200:
        print("REGISTER sink: %s" % (r.first if r else "no answer"))
        return 1
    time.sleep(1)
    rss0 = rss_kb(a.pid)
    socks = udp_sockets(a.sources, rcvbuf_force=16 << 20)
    codes = collections.Counter()
    answered = set()
    done = threading.Event()
    peak = [rss0]

    def reader():
        while True:
            rl = select.select(socks, [], [], 0.2)[0]
            if not rl and done.is_set():
                return
            for s in rl:
                d = s.recv(65535)
                m = re.match(rb"SIP/2\.0 (\d{3})", d)
                c = re.search(rb"(?im)^(?:call-id|i)\s*:\s*(\S+)", d)
                if m:
                    codes[int(m.group(1))] += 1
                    if int(m.group(1)) >= 200 and c:
                        answered.add(c.group(1))

    def sampler():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(a.pid))
            time.sleep(0.1)

    ths = [threading.Thread(target=f, daemon=True) for f in (reader, sampler)]
    for t in ths:
        t.start()
    body = b"h" * a.body
    t0 = time.monotonic()
    size = 0
    for i in range(a.count):
        s = socks[i % len(socks)]
        ip, port = s.getsockname()
        data = options(ip, port, body, "held%d-%s" % (i, rand_token(6)), a.domain)
        size = len(data)
        s.sendto(data, a.server)
        ahead = t0 + (i + 1) / a.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    dt = time.monotonic() - t0
    # wait until every request is either answered or has reached the sink (or 20 s)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if len(answered | sink.call_ids) >= a.count:
            break
        time.sleep(0.5)
    time.sleep(1)
    done.set()
    for t in ths:
        t.join(5)
    rss1 = rss_kb(a.pid)
    fwd = len(sink.call_ids)
    cap_n = a.held_cap // size
    print("sent %d OPTIONS with %d-byte bodies (%d-byte requests, %.0f MB) from %s in %.1f s"
          % (a.count, a.body, size, a.count * size / 1e6, a.sources, dt))
    print("replies by status: %s; reached the sink: %d distinct (%d datagrams with retransmissions); "
          "held-bytes cap %d B = %d requests" % (dict(sorted(codes.items())), fwd, sink.datagrams, a.held_cap, cap_n))
    growth_mb = (max(peak[0], rss1) - rss0) / 1024
    print("server RSS: before %d kB, peak %d kB, after %d kB (peak growth %.1f MiB, limit %.1f MiB)"
          % (rss0, peak[0], rss1, growth_mb, a.max_rss_growth_mb))
    sink.stop = True
    errs = []
    if growth_mb > a.max_rss_growth_mb:
        errs.append("RSS grew %.1f MiB holding bodies for a silent contact (limit %.1f MiB)" % (growth_mb, a.max_rss_growth_mb))
    if codes[503] == 0:
        errs.append("no 503 for the requests over max_held_bytes")
    if fwd > cap_n + 16:
        errs.append("%d requests forwarded and held, more than max_held_bytes allows (~%d)" % (fwd, cap_n))
    if fwd + codes[503] < 0.95 * a.count:
        errs.append("only %d of %d requests accounted for (forwarded %d + 503 %d)" % (fwd + codes[503], a.count, fwd, codes[503]))
    if errs:
        print("; ".join(errs))
        return 1
    print("held bytes: %d forwarded and held, %d answered 503, RSS +%.1f MiB" % (fwd, codes[503], growth_mb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
