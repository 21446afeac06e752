#!/usr/bin/env python3
"""Malformed-datagram flood: COUNT UDP datagrams (default 200,000; at most --max-seconds, paced at
--rate/s) from the --sources addresses round-robin: truncated requests, broken start lines and headers,
bad Content-Lengths, 300-Via and 200-header requests, stray responses, random bytes, and about 1 % of
oversized ones (up to 65,000 bytes). The flood limit is expected to ban these sources.
  - during the flood and after it, a client at --legit (not a flood source) registers and gets
    OPTIONS answered (200 each)
  - server RSS (VmRSS of --pid): before (after a warm-up of the same mix from --warmup-src, under the
    flood limit), peak during, right after: growth after vs before < --max-growth (10 %); then it
    must come down to <= 2 x before within --settle s (polled every 2 s; passes as soon as it holds)

Usage: flood.py --pid PID --server 127.0.0.1:5070 [--count 200000] [--sources 127.0.0.2-9]
"""
import argparse
import os
import random
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sipclient import SipClient, hostport  # noqa: E402
from conns import rss_kb, udp_sockets  # noqa: E402

R = random.Random(13)


def tok(n=8):
    return "".join(R.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def valid(method="OPTIONS", extra=(), body=b""):
    h = ["%s sip:%s@127.0.0.1 SIP/2.0" % (method, tok(4)),
         "Via: SIP/2.0/UDP 192.0.2.%d:5060;branch=z9hG4bK-%s;rport" % (R.randint(1, 254), tok()),
         "Max-Forwards: 70", "From: <sip:%s@127.0.0.1>;tag=%s" % (tok(5), tok()),
         "To: <sip:%s@127.0.0.1>" % tok(5), "Call-ID: %s@flood" % tok(12), "CSeq: %d %s" % (R.randint(1, 9999), method)]
    h += list(extra)
    h.append("Content-Length: %d" % len(body))
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def payload():
    k = R.random()
    if k < 0.01:  # oversized: up to 65,000 bytes
        n = R.randint(60000, 65000)
        if R.random() < 0.5:
            return valid("MESSAGE", ["Content-Type: text/plain"], b"x" * (n - 400))
        return bytes(R.getrandbits(8) for _ in range(n))
    if k < 0.20:  # truncated
        m = valid(R.choice(["OPTIONS", "REGISTER", "INVITE", "MESSAGE", "SUBSCRIBE"]))
        return m[:R.randint(1, len(m) - 1)]
    if k < 0.32:  # broken start line
        start = R.choice(["INVITE sip: SIP/2.0", "OPTIONS sip:x SIP/3.0", "\x00\x01 sip:x SIP/2.0", "OPTIONS  SIP/2.0",
                          "OPT IONS sip:x@127.0.0.1 SIP/2.0", "SIP/2.0 999999 Huh", "SIP/2.0 abc", "%s %s %s" % (tok(), tok(), tok()),
                          "REGISTER sip:" + "a" * 3000 + " SIP/2.0"])
        return (start + "\r\n").encode() + valid().split(b"\r\n", 1)[1]
    if k < 0.45:  # broken headers
        bad = R.choice(["NoColonHere", "Via: \x00\x00\x00", "From: <sip:\xff\xfe@x>", "CSeq: abc OPTIONS",
                        "CSeq: 99999999999999999999 OPTIONS", "Max-Forwards: -5", "To: <<<<<<<<sip:x>>",
                        "Via: SIP/2.0/UDP", "Contact: " + "<sip:a@b>," * 500, "X-Long: " + "y" * 10000,
                        "Call-ID:", "Expires: 99999999999999"])
        m = valid(extra=[bad])
        return m
    if k < 0.55:  # bad Content-Length
        cl = R.choice(["-1", "99999999", "12abc", "", "100", "4294967296"])
        m = valid(body=b"0123456789")
        return m.replace(b"Content-Length: 10", b"Content-Length: " + cl.encode())
    if k < 0.60:  # 300 Vias, comma form or lines
        vias = ["SIP/2.0/UDP 10.0.%d.%d:5060;branch=z9hG4bK-%s" % (i // 250, i % 250, tok()) for i in range(300)]
        if R.random() < 0.5:
            return valid(extra=["Via: " + ", ".join(vias)])
        return valid(extra=["Via: " + v for v in vias])
    if k < 0.64:  # 200 headers (over max_headers)
        return valid(extra=["X-H%d: %s" % (i, tok()) for i in range(200)])
    if k < 0.70:  # stray responses
        return ("SIP/2.0 %d OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-%s\r\nFrom: <sip:a@b>;tag=1\r\n"
                "To: <sip:a@b>;tag=2\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
                % (R.choice([100, 180, 200, 486, 603]), tok(), tok())).encode()
    if k < 0.80:  # well-formed requests for nobody / bad credentials
        m = R.choice(["OPTIONS", "REGISTER", "INVITE", "MESSAGE", "BYE", "CANCEL", "ACK", "FOO"])
        extra = []
        if R.random() < 0.5:
            extra.append('Authorization: Digest username="%s", realm="127.0.0.1", nonce="%s", uri="sip:127.0.0.1", '
                         'response="%s"' % (tok(4), tok(20), tok(32)))
        return valid(m, extra)
    return bytes(R.getrandbits(8) for _ in range(R.randint(1, 1400)))  # random bytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", type=hostport, default=("127.0.0.1", 5070))
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--rate", type=float, default=20000.0)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--sources", default="127.0.0.2-9")
    ap.add_argument("--warmup-src", default="127.0.0.32")
    ap.add_argument("--legit", default="127.0.0.1")
    ap.add_argument("--max-growth", type=float, default=0.10)
    ap.add_argument("--settle", type=float, default=60.0)
    a = ap.parse_args()

    pool = [payload() for _ in range(3000)]
    sizes = sorted(len(p) for p in pool)
    print("payload pool: %d datagrams, %d-%d bytes, %d over 60000 bytes" % (len(pool), sizes[0], sizes[-1],
                                                                        sum(1 for n in sizes if n > 60000)))
    # warm-up: the same mix once, slowly enough to stay under the flood limit
    w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    w.bind((a.warmup_src, 0))
    for i, p in enumerate(pool[:800]):
        w.sendto(p, a.server)
        if i % 20 == 19:
            time.sleep(0.02)
    w.close()
    c = SipClient(a.legit, a.server)
    r = c.register("legit", "legit-pw")
    c.close()
    if r is None or r.code != 200:
        print("before the flood, REGISTER from %s: %s" % (a.legit, r.first if r else "no answer"))
        return 1
    time.sleep(2)
    rss_before = rss_kb(a.pid)

    socks = udp_sockets(a.sources)
    for s in socks:
        s.setblocking(False)
    done = threading.Event()
    stats = {"replies": 0, "reply_bytes": 0, "peak": rss_before, "legit": []}

    def reader():
        while not done.is_set() or select.select(socks, [], [], 0.5)[0]:
            for s in select.select(socks, [], [], 0.2)[0]:
                try:
                    while True:
                        d = s.recv(65535)
                        stats["replies"] += 1
                        stats["reply_bytes"] += len(d)
                except OSError:
                    pass

    def sampler():
        while not done.is_set():
            stats["peak"] = max(stats["peak"], rss_kb(a.pid))
            time.sleep(0.1)

    def legit_round(when):
        c = SipClient(a.legit, a.server)
        t = time.monotonic()
        r1 = c.register("legit", "legit-pw", timeout=16)
        r2 = c.request("OPTIONS", "sip:127.0.0.1", "sip:legit@127.0.0.1", timeout=16)
        c.close()
        stats["legit"].append((when, r1.code if r1 else None, r2.code if r2 else None, time.monotonic() - t))

    def legit():
        while not done.is_set():
            legit_round("during")
            time.sleep(0.5)

    ths = [threading.Thread(target=f, daemon=True) for f in (reader, sampler, legit)]
    for t in ths:
        t.start()
    t0 = time.monotonic()
    sent = sent_bytes = dropped = 0
    n = len(socks)
    while sent < a.count and time.monotonic() - t0 < a.max_seconds:
        p = pool[sent % len(pool)]
        try:
            socks[sent % n].sendto(p, a.server)
            sent_bytes += len(p)
        except BlockingIOError:
            dropped += 1  # our own send buffer is full: counted, not retried
        except OSError:
            dropped += 1
        sent += 1
        if sent % 200 == 0:
            ahead = t0 + sent / a.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    dt = time.monotonic() - t0
    done.set()
    for t in ths:
        t.join(40)
    rss_after = rss_kb(a.pid)
    legit_round("after")
    print("flood: %d datagrams (%.1f MB) from %s in %.1f s (%.0f/s), %d not sent (own buffer full); "
          "%d replies (%d bytes) came back to the flood sources"
          % (sent, sent_bytes / 1e6, a.sources, dt, sent / dt, dropped, stats["replies"], stats["reply_bytes"]))
    bad = [x for x in stats["legit"] if x[1] != 200 or x[2] != 200]
    lat = [x[3] for x in stats["legit"]]
    print("legitimate client %s: %d rounds (REGISTER + OPTIONS) during and after, %d not 200/200, slowest %.2f s"
          % (a.legit, len(stats["legit"]), len(bad), max(lat) if lat else 0))
    growth = (rss_after - rss_before) / rss_before
    print("server RSS: before %d kB, peak %d kB, right after %d kB (%+.1f %%)"
          % (rss_before, stats["peak"], rss_after, 100 * growth))
    errs = []
    if not [x for x in stats["legit"] if x[0] == "during"]:
        errs.append("no legitimate round completed during the flood")
    if bad:
        errs.append("legitimate client not served: %s" % ", ".join("%s REGISTER %s OPTIONS %s" % x[:3] for x in bad[:3]))
    if growth >= a.max_growth:
        errs.append("RSS grew %.1f %% over the flood (%d -> %d kB; limit %d %%)"
                    % (100 * growth, rss_before, rss_after, 100 * a.max_growth))
    t1 = time.monotonic()
    settled = rss_kb(a.pid)
    while settled > 2 * rss_before and time.monotonic() - t1 < a.settle:
        time.sleep(2)
        settled = rss_kb(a.pid)
    print("server RSS %.0f s after the flood: %d kB (%.2f x before)" % (time.monotonic() - t1, settled, settled / rss_before))
    if settled > 2 * rss_before:
        errs.append("RSS %d kB %.0f s after the flood > 2 x before (%d kB)" % (settled, a.settle, rss_before))
    if errs:
        print("; ".join(errs))
        return 1
    print("malformed flood: legitimate client served, RSS bounded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
