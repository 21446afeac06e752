#!/usr/bin/env python3
"""User enumeration check: ask the server about every extension in a range the way svwar does
(REGISTER without credentials, OPTIONS and INVITE to sip:EXT@DOMAIN From the extension itself) and
also OPTIONS From a foreign domain (sip:x@attacker.example), and compare what real users get with
what non-existent ones get. A server that does not leak answers every extension of one probe kind
alike (same status line, same header names); a difference is an enumeration oracle.
(rvoip-server before issue 13: OPTIONS From a foreign domain got 404 for unknown users and 480 for
existing unregistered ones.)

Usage: enum.py --src 127.0.0.4 --server 127.0.0.1:5070 --users 100-199,1234 --range 90-210,1234
Prints a table per probe kind; last line is the verdict; exit 1 on a leak or no answers at all.
"""
import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sipclient import SipClient, hostport, rand_token  # noqa: E402

SDP = ("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def expand(r):
    out = []
    for part in r.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += [str(i) for i in range(int(a), int(b) + 1)]
        elif part:
            out.append(part)
    return out


def signature(r):
    if r is None:
        return "(no answer)"
    ignore = {"via", "from", "to", "call-id", "cseq", "content-length"}
    names = sorted(set(k for k in r.headers if k not in ignore))
    return "%s [%s]" % (r.first, ",".join(names))


def probe(c, kind, ext, domain):
    uri = "sip:%s@%s" % (ext, domain)
    if kind == "REGISTER":
        return c.request("REGISTER", "sip:%s" % domain, uri, uri, contact="<sip:%s@%s:%d>" % (ext, c.src, c.port),
                         timeout=3)
    if kind == "OPTIONS":
        return c.request("OPTIONS", uri, uri, uri, timeout=3)
    if kind == "OPTIONS-foreign":
        return c.request("OPTIONS", uri, "sip:x@attacker.example", uri, timeout=3)
    # INVITE: then ACK a non-2xx final (same branch), CANCEL is not needed (no user is registered)
    body = SDP.format(ip=c.src)
    data, branch, call_id, cseq = c.build("INVITE", uri, uri, uri, body=body,
                                          headers=["Content-Type: application/sdp"],
                                          contact="<sip:%s@%s:%d>" % (ext, c.src, c.port), from_tag="e" + ext)
    r = c.transaction(data, branch, "INVITE", timeout=3)
    if r is not None and r.code >= 300:
        to = r.h("to", "<%s>" % uri)
        ack = ("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=%s;rport\r\nMax-Forwards: 70\r\n"
               "From: <%s>;tag=e%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d ACK\r\nContent-Length: 0\r\n\r\n"
               % (uri, c.src, c.port, branch, uri, ext, to, call_id, cseq))
        c.send_raw(ack.encode())
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="127.0.0.4")
    ap.add_argument("--server", type=hostport, default=("127.0.0.1", 5070))
    ap.add_argument("--domain", default="127.0.0.1")
    ap.add_argument("--users", required=True, help="the real users, e.g. 100-199,1234")
    ap.add_argument("--range", required=True, help="extensions to probe, e.g. 90-210,1234")
    ap.add_argument("--kinds", default="REGISTER,OPTIONS,OPTIONS-foreign,INVITE")
    a = ap.parse_args()
    users = set(expand(a.users))
    exts = expand(a.range)
    c = SipClient(a.src, a.server)
    leaks, answered = [], 0
    for kind in a.kinds.split(","):
        by = {True: collections.Counter(), False: collections.Counter()}
        for ext in exts:
            r = probe(c, kind, ext, a.domain)
            answered += r is not None
            by[ext in users][signature(r)] += 1
        print("%s:" % kind)
        for real in (True, False):
            for sig, n in sorted(by[real].items()):
                print("  %-9s %4d x %s" % ("real" if real else "unknown", n, sig))
        if set(by[True]) != set(by[False]):
            leaks.append(kind)
    c.close()
    if answered == 0:
        print("enumeration check: no answers at all (server dropping %s?)" % a.src)
        return 1
    if leaks:
        print("user enumeration possible: real and unknown users answered differently to %s" % ", ".join(leaks))
        return 1
    print("enumeration check: real and unknown users answered alike (%d probes answered)" % answered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
