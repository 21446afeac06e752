#!/usr/bin/env python3
"""A deliberately leaky SIP responder (the self-check of tests/integration/sipvicious.sh): UDP on
127.0.0.1:PORT, answers 401 (with a challenge) for the users given and 404 for everyone else, the
classic enumeration oracle svwar looks for. Stops by itself after --seconds.

Usage: leaky.py --port 5079 --users 150,1234 [--seconds 120]
"""
import argparse
import re
import socket
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=5079)
ap.add_argument("--users", default="150,1234")
ap.add_argument("--seconds", type=float, default=120)
a = ap.parse_args()
users = set(a.users.split(","))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", a.port))
end = time.monotonic() + a.seconds
while time.monotonic() < end:
    s.settimeout(max(0.1, end - time.monotonic()))
    try:
        data, src = s.recvfrom(65535)
    except socket.timeout:
        break
    text = data.decode("utf-8", "replace")
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    if not head or head[0].startswith("SIP/2.0") or head[0].startswith("ACK "):
        continue
    keep = [h for h in head[1:] if re.match(r"(?i)(via|from|to|call-id|cseq|v|f|t|i)\s*:", h)]
    to = next((h for h in head[1:] if re.match(r"(?i)(to|t)\s*:", h)), "")
    m = re.search(r"sip:([^@>;]+)@", to)
    user = m.group(1) if m else ""
    if user in users:
        status, extra = "401 Unauthorized", ['WWW-Authenticate: Digest realm="leaky", nonce="%x"' % int(time.time())]
    else:
        status, extra = "404 Not Found", []
    resp = "\r\n".join(["SIP/2.0 " + status] + keep + extra + ["Content-Length: 0", "", ""])
    s.sendto(resp.encode(), src)
