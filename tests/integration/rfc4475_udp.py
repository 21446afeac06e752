#!/usr/bin/env python3
"""RFC 4475 torture messages over UDP against the server on 127.0.0.1:5060 (stdlib only).

Each .dat in the conformance directory is sent as one datagram from a fresh socket. The sent-by of the
top Via (and its transport token, since we really send over UDP) is rewritten to this socket's
127.0.0.1:PORT so that responses come back here; nothing else in the message is touched (responses
such as bcast.dat are sent unmodified). The reply (or silence) is checked against EXPECT below, which
is written from conformance/rfc4475/MANIFEST.tsv for THIS server: a registrar + proxy for which every
domain is local and the users in the messages are unknown.

Usage: rfc4475_udp.py [DIR] [--host 127.0.0.1] [--port 5060]
Prints PASS/FAIL per file and "N passed, M failed"; exits 1 on any failure.
"""
import os
import re
import socket
import sys
import time

# kinds:
#   ("codes", {c...})   a final response with one of these codes
#   ("silence",)        nothing at all within SILENCE_WAIT
#   ("processed",)      a final response that is neither 400 nor 5xx (the message was parsed and
#                       processed; an unknown user gives 404, an unauthenticated local caller 407, ...)
#   ("processed_or_400",) any final response that is not 5xx (MANIFEST allows rejecting)
# optional checks: header that must be present, tokens that must be in a header
EXPECT = {
    # --- valid (3.1.1): parse and process
    "wsinv.dat": ("processed",),
    "intmeth.dat": ("processed", {"allow": {501}}),  # unknown method: 405/501/404/407..., never 400
    "esc01.dat": ("processed",),
    "escnull.dat": ("codes", {401}, {"header": "WWW-Authenticate"}),  # REGISTER without credentials
    # method "RE%47IST%45R" is NOT REGISTER (escapes are not decoded in methods): an unknown method to
    # the server itself (no user part) -> 405/501 (a registrar that challenges first: 401)
    "esc02.dat": ("processed", {"allow": {501}}),
    "lwsdisp.dat": ("processed",),
    "longreq.dat": ("processed",),
    "dblreq.dat": ("codes", {401}, {"header": "WWW-Authenticate", "only_one": True}),  # 2nd msg ignored
    "semiuri.dat": ("processed",),
    "transports.dat": ("processed",),
    # mpart01 carries a pre-loaded "Route: <sip:127.0.0.1:5080>": a proxy forwards it there (RFC 3261
    # 16.6; we listen on 5080 and count that as processed), or processes it itself (404/407...)
    "mpart01.dat": ("processed", {"forward_port": 5080}),
    "unreason.dat": ("silence",),  # a response not for us: drop
    "noreason.dat": ("silence",),
    # --- invalid (3.1.2): 400 where a response can be formed
    "badinv01.dat": ("codes", {400}),
    "clerr.dat": ("codes", {400}),
    "ncl.dat": ("codes", {400}),
    "scalar02.dat": ("codes", {400}),
    "scalarlg.dat": ("silence",),  # response: drop
    "quotbal.dat": ("codes", {400}),
    "ltgtruri.dat": ("codes", {400}),
    "lwsruri.dat": ("codes", {400}),
    "lwsstart.dat": ("codes", {400}),
    "trws.dat": ("codes", {400}),
    "escruri.dat": ("codes", {400}),
    "baddate.dat": ("processed_or_400",),  # reject or ignore the bad Date
    "regbadct.dat": ("codes", {400}),
    "badaspec.dat": ("codes", {400}),
    "baddn.dat": ("codes", {400}),
    "badvers.dat": ("codes", {505}),
    "mismatch01.dat": ("codes", {400}),
    "mismatch02.dat": ("codes", {400}),
    "bigcode.dat": ("silence",),  # response code > 699: drop
    # --- semantic (3.2 - 3.4)
    "badbranch.dat": ("processed",),
    "insuf.dat": ("codes", {400}),
    "unkscm.dat": ("codes", {416}),
    "novelsc.dat": ("codes", {416}),  # soap.beep: not supported here
    "unksm2.dat": ("codes", {401}, {"header": "WWW-Authenticate"}),  # processed normally: challenge
    "bext01.dat": ("codes", {420}, {"tokens": ("Unsupported", ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"])}),
    "invut.dat": ("codes", {415}, {"header": "Accept"}),
    "regaut01.dat": ("codes", {401}, {"header": "WWW-Authenticate"}),
    "multi01.dat": ("codes", {400}),
    "mcl01.dat": ("codes", {400}),
    "bcast.dat": ("silence",),
    "zeromf.dat": ("codes", {483}),
    "cparam01.dat": ("codes", {401}, {"header": "WWW-Authenticate"}),
    "cparam02.dat": ("codes", {401}, {"header": "WWW-Authenticate"}),
    "regescrt.dat": ("codes", {401}, {"header": "WWW-Authenticate"}),
    "sdp01.dat": ("codes", {406}),
    "inv2543.dat": ("processed_or_400",),
}

SILENCE_WAIT = 1.0   # seconds of silence required for "silence"
FINAL_WAIT = 3.0     # max seconds to wait for a final response
AFTER_FINAL = 0.4    # keep listening after the final (dblreq: no 2nd response; catches duplicates)

VIA_RE = re.compile(rb"^(?:via|v)[ \t]*:", re.I | re.M)
SENTBY_RE = re.compile(rb"SIP\s*/\s*[0-9.]+\s*/\s*([A-Za-z]+)\s+([^\s;,]+)")


def rewrite_top_via(msg: bytes, port: int) -> bytes:
    """Point the top Via's sent-by (and transport) at 127.0.0.1:port. Requests only."""
    if msg.startswith(b"SIP/"):
        return msg
    end = msg.find(b"\r\n\r\n")
    head = msg if end < 0 else msg[:end]
    m = VIA_RE.search(head)
    if not m:
        return msg
    s = SENTBY_RE.search(head, m.end())
    if not s:
        return msg
    out = msg[: s.start(1)] + b"UDP" + msg[s.end(1): s.start(2)] + b"127.0.0.1:%d" % port + msg[s.end(2):]
    return out


def parse_response(data: bytes):
    text = data.decode("utf-8", "replace")
    first, _, rest = text.partition("\r\n")
    m = re.match(r"SIP/2\.0 (\d{3})(?: (.*))?$", first)
    if not m:
        return None
    code = int(m.group(1))
    headers = {}
    for line in rest.split("\r\n"):
        if not line:
            break
        if ":" in line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    return code, first, headers




def hdr(headers, name):
    return headers.get(name.lower(), [])


def ack_for(request: bytes, response: bytes):
    """ACK for a non-2xx final response to an INVITE (stops the server's Timer G retransmissions):
    Request-URI from the request line, Via/From/To/Call-ID from the response, CSeq number + ACK."""
    line = request.split(b"\r\n", 1)[0].split()
    if len(line) < 3 or line[0] != b"INVITE":
        return None
    keep = []
    cseq = None
    for h in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name = h.split(b":", 1)[0].strip().lower()
        if name in (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i"):
            keep.append(h)
        elif name == b"cseq":
            cseq = h.split(b":", 1)[1].split()[0] if len(h.split(b":", 1)[1].split()) else b"1"
    if cseq is None:
        return None
    return (b"ACK " + line[1] + b" SIP/2.0\r\n" + b"\r\n".join(keep) +
            b"\r\nMax-Forwards: 70\r\nCSeq: " + cseq + b" ACK\r\nContent-Length: 0\r\n\r\n")


def run_one(path, host, port):
    name = os.path.basename(path)
    exp = EXPECT.get(name)
    if exp is None:
        return False, "no expectation in the table for this file"
    kind = exp[0]
    raw = open(path, "rb").read()
    opts0 = exp[-1] if isinstance(exp[-1], dict) else {}
    fwd = None
    if "forward_port" in opts0:
        try:
            fwd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            fwd.bind(("127.0.0.1", opts0["forward_port"]))
        except OSError:
            fwd = None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    lport = sock.getsockname()[1]
    msg = rewrite_top_via(raw, lport)
    sock.sendto(msg, (host, port))
    got = []  # (code, first line, headers)
    start = time.monotonic()
    deadline = start + (SILENCE_WAIT if kind == "silence" else FINAL_WAIT)
    final_at = None
    while True:
        now = time.monotonic()
        limit = deadline if final_at is None else min(deadline, final_at + AFTER_FINAL)
        if now >= limit:
            break
        sock.settimeout(limit - now)
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            break
        r = parse_response(data)
        if r is None:
            got.append((0, data[:60].decode("utf-8", "replace"), {}))
            continue
        got.append(r)
        if r[0] >= 300:
            ack = ack_for(msg, data)
            if ack:
                sock.sendto(ack, (host, port))
        if r[0] >= 200 and final_at is None:
            final_at = time.monotonic()
    sock.close()
    forwarded = False
    if fwd is not None:
        fwd.settimeout(0.05)
        try:
            data, _ = fwd.recvfrom(65535)
            forwarded = not data.startswith(b"SIP/")
        except socket.timeout:
            pass
        fwd.close()
        if forwarded and not any(g[0] == 400 or g[0] >= 500 for g in got):
            return True, "forwarded per its Route header to 127.0.0.1:%d" % opts0["forward_port"]
    finals = [g for g in got if g[0] >= 200 or g[0] == 0]
    seen = ", ".join(g[1] for g in got) or "silence"
    if kind == "silence":
        return (not got), ("silence" if not got else "expected silence, got: " + seen)
    if not finals:
        return False, "expected a final response, got: " + seen
    code, first, headers = finals[0]
    opts = exp[2] if len(exp) > 2 else (exp[1] if len(exp) > 1 and isinstance(exp[1], dict) else {})
    if kind == "codes":
        if code not in exp[1]:
            return False, "expected %s, got: %s" % ("/".join(map(str, sorted(exp[1]))), seen)
    elif kind == "processed":
        allow = opts.get("allow", set())
        if code == 0 or code == 400 or (code >= 500 and code not in allow):
            return False, "expected processing (not 400/5xx), got: " + seen
    elif kind == "processed_or_400":
        if code == 0 or code >= 500:
            return False, "expected a non-5xx final, got: " + seen
    if "header" in opts and not hdr(headers, opts["header"]):
        return False, "%s lacks a %s header" % (first, opts["header"])
    if "tokens" in opts:
        h, toks = opts["tokens"]
        have = {t.strip().lower() for v in hdr(headers, h) for t in v.split(",")}
        missing = [t for t in toks if t.lower() not in have]
        if missing:
            return False, "%s: %s header %r lacks %s" % (first, h, hdr(headers, h), ", ".join(missing))
    if opts.get("only_one") and len(finals) > 1:
        return False, "more than one final response (trailing message not ignored?): " + seen
    return True, first


def options_alive(host, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    lport = sock.getsockname()[1]
    m = ("OPTIONS sip:%s:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-alive-%d\r\n"
         "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=a1\r\nTo: <sip:%s>\r\n"
         "Call-ID: alive-%d@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
         % (host, port, lport, os.getpid(), host, os.getpid()))
    sock.sendto(m.encode(), (host, port))
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            break
        r = parse_response(data)
        if r and r[0] >= 200:
            return r[0] == 200, r[1]
    return False, "no answer"


def main():
    args = sys.argv[1:]
    host, port = "127.0.0.1", 5060
    d = None
    i = 0
    while i < len(args):
        if args[i] == "--host":
            host = args[i + 1]; i += 2
        elif args[i] == "--port":
            port = int(args[i + 1]); i += 2
        else:
            d = args[i]; i += 1
    if d is None:
        here = os.path.dirname(os.path.abspath(__file__))
        d = os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "conformance", "rfc4475"))
    files = sorted(f for f in os.listdir(d) if f.endswith(".dat"))
    if not files:
        print("FAIL no .dat files in %s" % d)
        return 1
    npass = nfail = 0
    for f in files:
        ok, why = run_one(os.path.join(d, f), host, port)
        print("%s %s: %s" % ("PASS" if ok else "FAIL", f, why))
        if ok:
            npass += 1
        else:
            nfail += 1
    missing = sorted(set(EXPECT) - set(files))
    for f in missing:
        print("FAIL %s: listed in the expectation table but missing from %s" % (f, d))
        nfail += 1
    ok, why = options_alive(host, port)
    print("%s server alive after the torture tests (OPTIONS -> 200): %s" % ("PASS" if ok else "FAIL", why))
    npass += ok
    nfail += not ok
    print("%d passed, %d failed" % (npass, nfail))
    return 0 if nfail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
