#!/usr/bin/env python3
"""Flood defence: one source sends COUNT OPTIONS fast (one socket, distinct branches, about 5000/s)
and counts the answers (until 2 s of silence). Past the limit (flood_limit per flood_window_ms) the
source must be dropped: no more than 2 x LIMIT answers, none to the last LIMIT requests, and a fresh
OPTIONS from the same source gets no answer; meanwhile OPTIONS and REGISTER from another source get
200.

Usage: floodlimit.py --src 127.0.0.30 --legit 127.0.0.1 --server 127.0.0.1:5070 --count 5000 --limit 1000
       floodlimit.py --src 127.0.0.30 --check-unbanned   (the ban is over: OPTIONS from SRC gets 200)
"""
import argparse
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sipclient import SipClient, hostport, rand_token  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="127.0.0.30")
    ap.add_argument("--legit", default="127.0.0.1")
    ap.add_argument("--server", type=hostport, default=("127.0.0.1", 5070))
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=5000.0, help="datagrams per second at most")
    ap.add_argument("--user", default="legit")
    ap.add_argument("--password", default="legit-pw")
    ap.add_argument("--check-unbanned", action="store_true")
    ap.add_argument("--wait", type=float, default=40.0, help="--check-unbanned: poll this long at most")
    a = ap.parse_args()

    if a.check_unbanned:  # poll: the ban ends flood_ban_s after it began
        t0 = time.monotonic()
        while True:
            c = SipClient(a.src, a.server)
            r = c.request("OPTIONS", "sip:127.0.0.1", "sip:probe@127.0.0.1", timeout=2)
            c.close()
            if (r is not None and r.code == 200) or time.monotonic() - t0 > a.wait:
                break
        print("after the ban time, OPTIONS from %s: %s (polled %.0f s)"
              % (a.src, r.first if r else "no answer", time.monotonic() - t0))
        return 0 if r is not None and r.code == 200 else 1

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE (root)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    s.bind((a.src, 0))
    port = s.getsockname()[1]
    tag = rand_token(8)
    msgs = []
    for i in range(a.count):
        msgs.append(("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bK-fl%d-%s;rport\r\n"
                     "Max-Forwards: 70\r\nFrom: <sip:flood@127.0.0.1>;tag=%s\r\nTo: <sip:127.0.0.1>\r\n"
                     "Call-ID: fl%d-%s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                     % (a.src, port, i, tag, tag, i, tag)).encode())
    answered = set()

    def drain(timeout):
        s.settimeout(timeout)
        while True:
            try:
                d = s.recv(65535)
            except (socket.timeout, BlockingIOError):
                return
            m = re.search(rb"branch=z9hG4bK-fl(\d+)-", d)
            if m:
                answered.add(int(m.group(1)))
            s.settimeout(timeout)

    # as fast as the server's socket buffer takes them: batches of 25, about 5000/s (a burst much faster
    # than that is mostly dropped by the kernel before the server sees it, and then tests nothing)
    t0 = time.monotonic()
    for i, m in enumerate(msgs):
        s.sendto(m, a.server)
        if i % 25 == 24:
            time.sleep(max(0.0, t0 + (i + 1) / a.rate - time.monotonic()))
    dt = time.monotonic() - t0
    drain(2.0)
    top = max(answered) if answered else -1
    print("flood: %d OPTIONS from %s in %.2f s (%.0f/s): %d answered, the last answered was #%d"
          % (a.count, a.src, dt, a.count / max(dt, 1e-6), len(answered), top))
    s.close()

    # the source is now dropped
    c = SipClient(a.src, a.server)
    r = c.request("OPTIONS", "sip:127.0.0.1", "sip:probe@127.0.0.1", timeout=3)
    c.close()
    print("OPTIONS from %s right after the flood: %s" % (a.src, r.first if r else "no answer (dropped)"))
    # another source is served
    c = SipClient(a.legit, a.server)
    r2 = c.request("OPTIONS", "sip:127.0.0.1", "sip:probe@127.0.0.1")
    r3 = c.register(a.user, a.password)
    c.close()
    print("from %s meanwhile: OPTIONS %s, REGISTER %s" % (a.legit, r2.first if r2 else "no answer",
                                                          r3.first if r3 else "no answer"))
    late = len([i for i in answered if i >= a.count - a.limit])
    if len(answered) > 2 * a.limit or late:
        print("flood not limited: %d of %d answered, %d of the last %d, up to #%d (limit %d per window)"
              % (len(answered), a.count, late, a.limit, top, a.limit))
        return 1
    if r is not None:
        print("the flooding source %s is not dropped after the flood: %s" % (a.src, r.first))
        return 1
    if r2 is None or r2.code != 200 or r3 is None or r3.code != 200:
        print("a legitimate client at %s was not served during the flood ban of %s" % (a.legit, a.src))
        return 1
    print("flood limit: %s dropped after %d answers, %s served" % (a.src, len(answered), a.legit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
