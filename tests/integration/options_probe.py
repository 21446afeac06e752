#!/usr/bin/env python3
"""options_probe.py HOST:PORT [USER]: sends one SIP OPTIONS over UDP from 127.0.0.1 and exits 0 when the
final response is 200 within 0.5 s (provisional responses are skipped), 1 otherwise. Used to see
that a SIP server (ours or Kamailio) is up. With USER the request is for sip:USER@HOST:PORT, which the
proxy forwards to USER's binding: exit 0 when the answer is not 404/480/408/503 (USER is reachable
through that server)."""
import random
import socket
import sys

host, port = sys.argv[1].rsplit(":", 1)
user = sys.argv[2] if len(sys.argv) > 2 else None
ruri = ("%s@%s:%s" % (user, host, port)) if user else ("%s:%s" % (host, port))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(0.5)
p = s.getsockname()[1]
b = "z9hG4bK-probe%d" % random.randint(0, 1 << 30)
m = ("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n"
     "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:%s>\r\n"
     "Call-ID: %s@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n") % (ruri, p, b, ruri, b)
s.sendto(m.encode(), (host, int(port)))
try:
    while True:
        d = s.recv(65535).decode("utf-8", "replace")
        if d.startswith("SIP/2.0 1"):
            continue
        if user:
            sys.exit(1 if d[8:11] in ("404", "480", "408", "503") else 0)
        sys.exit(0 if d.startswith("SIP/2.0 200") else 1)
except socket.timeout:
    sys.exit(1)
