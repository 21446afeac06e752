#!/usr/bin/env python3
"""Reflection check: requests with 300 Via headers (one per line; all in one comma-separated line),
OPTIONS and REGISTER, and a malformed request (garbage start line + 300 Vias), one UDP datagram each.
The top Via is ours (the reply comes back here); the other 299 name made-up hosts. Whatever comes back
within 2 s (every datagram) must together be no larger than the request: a server must not amplify.

Usage: vias.py --src 127.0.0.1 --server 127.0.0.1:5070
"""
import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sipclient import hostport, rand_token  # noqa: E402


def request(kind, method, src, port, n=300):
    branch = "z9hG4bK-" + rand_token()
    vias = ["SIP/2.0/UDP %s:%d;branch=%s;rport" % (src, port, branch)]
    vias += ["SIP/2.0/UDP 10.%d.%d.%d:5060;branch=z9hG4bK-%s" % (i // 250, i % 250, i % 7 + 1, rand_token(12))
             for i in range(1, n)]
    if kind == "lines":
        via_lines = ["Via: " + v for v in vias]
    else:
        via_lines = ["Via: " + ", ".join(vias)]
    if method == "GARBAGE":
        start = "\x01GARBAGE%s /// \x7f SIP/9.9" % rand_token(4)
        method_name = "OPTIONS"
    else:
        start = "%s sip:127.0.0.1 SIP/2.0" % method
        method_name = method
    user = "legit" if method == "REGISTER" else "probe"
    h = [start] + via_lines + [
        "Max-Forwards: 70",
        "From: <sip:%s@127.0.0.1>;tag=%s" % (user, rand_token(8)),
        "To: <sip:%s@127.0.0.1>" % user,
        "Call-ID: %s@vias" % rand_token(16),
        "CSeq: 1 %s" % method_name]
    if method == "REGISTER":
        h.append("Contact: <sip:%s@%s:%d>" % (user, src, port))
    h.append("Content-Length: 0")
    return ("\r\n".join(h) + "\r\n\r\n").encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="127.0.0.1")
    ap.add_argument("--server", type=hostport, default=("127.0.0.1", 5070))
    a = ap.parse_args()
    bad = []
    for method in ("OPTIONS", "REGISTER", "GARBAGE"):
        for kind in ("lines", "comma"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((a.src, 0))
            port = s.getsockname()[1]
            req = request(kind, method, a.src, port)
            s.sendto(req, a.server)
            replies = []
            end = time.monotonic() + 2.0
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    replies.append(s.recv(65535))
                except socket.timeout:
                    break
            s.close()
            total = sum(len(r) for r in replies)
            first = ", ".join(r.split(b"\r\n", 1)[0].decode("utf-8", "replace") for r in replies) or "no reply"
            verdict = "ok" if total <= len(req) else "AMPLIFIED"
            print("300 Vias (%s) %-8s request %6d bytes -> %d reply bytes (%s) %s"
                  % (kind, method, len(req), total, first, verdict))
            if total > len(req):
                bad.append("%s/%s: %d -> %d bytes" % (method, kind, len(req), total))
    if bad:
        print("a reply was larger than the 300-Via request: " + "; ".join(bad))
        return 1
    print("300 Vias: no reply larger than its request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
