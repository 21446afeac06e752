#!/usr/bin/env python3
"""Driver of tests/integration/ng-compare.sh: the same rtpengine "ng" control session against the
reference (rtpengine-daemon, userspace) and against ours (rvoip-server --relay-only --ng), compared.

Per side (--ref and/or --ours, each SERVER=IP:PORT with its relay port range):
  ping -> pong; offer (as Kamailio's rtpengine module sends it: unsorted keys, command last, sdp,
  ICE=remove, replace [origin, session-connection], flags, call-id, via-branch, received-from, from-tag)
  of an SDP of phone A (127.0.0.2, PCMU/PCMA/telephone-event, ICE attributes) -> ok and an SDP rewritten
  to the relay (c= and o= 127.0.0.1, m= port in the side's range, formats/rtpmap/fmtp kept, ICE removed);
  answer (+ to-tag) of phone B (127.0.0.3) -> the same; RTP PCMU, 50 packets each way every 20 ms
  A -> relay -> B and B -> relay -> A (plus 5 RTCP each way, reported only): >= 90 % delivered, from the
  relay port each phone sends to; query -> ok, created, last signal, tags (from-tag, to-tag), totals
  {RTP,RTCP}{packets,bytes} counting the RTP sent; list -> calls holds the call-id; delete -> ok;
  afterwards query -> error and list no longer holds it.
Hostile input against ours (--ours; the reference gets the same datagrams and its replies are printed,
not asserted): malformed bencode, not a dictionary, no cookie, empty body, unknown command, command not
a string, missing call-id, answer for an unknown call, a 60 KB dictionary (6,500 keys), a 60 KB list
(30,000 items), 20,000 nested lists, binary garbage, and a replayed cookie (same cookie + same offer
twice: byte-identical replies, one call more in `list`, not two). Each must get a reply with the
request's cookie, result "error" and an error-reason (the replay: the cached reply), and ping must still
answer pong after each. A datagram without a cookie cannot be answered in a way Kamailio could match:
silence (what rtpengine does) or an error reply are both accepted.

Prints a side-by-side table of the keys of each reply, both rewritten SDPs, the RTP figures and the
hostile replies; every exchange's request and reply bytes go to OUT/ng-exchanges-<side>.txt.
The last line is "ng-compare: ok: ..." or "ng-compare: FAILED: reason | reason ..."; exit 0/1.
"""
import argparse
import os
import random
import re
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ng_client import Ng, NgTimeout, Raw, decode, encode, split_reply, strkeys, text  # noqa: E402

RANGES = {}
FAILS = []
LOGS = {}


def fail(side, msg):
    FAILS.append("%s: %s" % (side, msg))
    print("  FAIL [%s] %s" % (side, msg))


def check(side, cond, msg):
    if not cond:
        fail(side, msg)
    return bool(cond)


def log(side, what, req, rep):
    f = LOGS.get(side)
    if f:
        f.write("### %s\n>>> %r\n<<< %r\n\n" % (what, req, rep))
        f.flush()


def call(side, ng, what, msg, cookie=None, timeout=2.0):
    """One request; returns (reply dict or None, raw reply or None). Never raises."""
    try:
        r, raw, req = ng.call_raw(msg, cookie=cookie, timeout=timeout)
        log(side, what, req, raw)
        return r, raw
    except NgTimeout as e:
        log(side, what, msg if isinstance(msg, bytes) else encode(msg), None)
        fail(side, "%s: no reply (%s)" % (what, e))
    except ValueError as e:
        fail(side, "%s: reply is not bencode: %s" % (what, e))
    return None, None


# ---------------------------------------------------------------- SDP
def phone_sdp(ip, port, sess):
    return ("v=0\r\n"
            "o=- %d 1 IN IP4 %s\r\n"
            "s=-\r\n"
            "c=IN IP4 %s\r\n"
            "t=0 0\r\n"
            "m=audio %d RTP/AVP 0 8 101\r\n"
            "a=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-16\r\n"
            "a=ptime:20\r\n"
            "a=ice-ufrag:Xa1b\r\n"
            "a=ice-pwd:0123456789abcdef01234567\r\n"
            "a=candidate:1 1 UDP 2130706431 %s %d typ host\r\n"
            "a=candidate:1 2 UDP 2130706430 %s %d typ host\r\n"
            "a=sendrecv\r\n") % (sess, ip, ip, port, ip, port, ip, port + 1)


def sdp_lines(s):
    return [l for l in s.replace("\r\n", "\n").split("\n") if l]


def check_sdp(side, what, orig, got, relay_ip):
    """Asserts the relay's rewrite; returns the relay's RTP port (or None)."""
    lo, hi = RANGES[side]
    ol, gl = sdp_lines(orig), sdp_lines(got)
    ok = True
    if not check(side, "\r\n" in got, "%s: SDP lines not CRLF-terminated" % what):
        ok = False
    cs = [l for l in gl if l.startswith("c=")]
    ok &= check(side, cs and all(l == "c=IN IP4 %s" % relay_ip for l in cs),
                "%s: c= lines %s, want all 'c=IN IP4 %s'" % (what, cs, relay_ip))
    os_ = [l for l in gl if l.startswith("o=")]
    ok &= check(side, len(os_) == 1 and os_[0].split()[-3:] == ["IN", "IP4", relay_ip],
                "%s: o= %s, want the origin address replaced by %s" % (what, os_, relay_ip))
    ms = [l for l in gl if l.startswith("m=")]
    port = None
    if check(side, len(ms) == 1, "%s: %d m= lines, want 1: %s" % (what, len(ms), ms)):
        f = ms[0].split()
        try:
            port = int(f[1])
        except (IndexError, ValueError):
            port = None
        ok &= check(side, port is not None and lo <= port <= hi,
                    "%s: m= port %s not in the relay range %d-%d (%s)" % (what, port, lo, hi, ms[0]))
        om = [l for l in ol if l.startswith("m=")][0].split()
        ok &= check(side, f[0] == om[0] and f[2:] == om[2:],
                    "%s: m= line %r, want media/proto/formats of %r kept" % (what, ms[0], " ".join(om)))
    else:
        ok = False
    for prefix in ("a=rtpmap:", "a=fmtp:"):
        want = sorted(l for l in ol if l.startswith(prefix))
        have = sorted(l for l in gl if l.startswith(prefix))
        ok &= check(side, want == have, "%s: %s lines %s, want %s" % (what, prefix, have, want))
    ice = [l for l in gl if l.startswith(("a=ice-", "a=candidate", "a=end-of-candidates", "a=remote-candidates"))]
    ok &= check(side, not ice, "%s: ICE=remove, but the SDP still has %s" % (what, ice))
    leaked = [l for l in gl if "127.0.0.2" in l or "127.0.0.3" in l]
    ok &= check(side, not leaked, "%s: the phone's own address is still in the SDP: %s" % (what, leaked))
    rtcp = [l for l in gl if l.startswith("a=rtcp:")]
    if rtcp and port is not None:
        rp = rtcp[0].split(":", 1)[1].split()[0]
        ok &= check(side, rp.isdigit() and int(rp) == port + 1,
                    "%s: %s, want the RTCP port %d (RTP port + 1)" % (what, rtcp[0], (port or 0) + 1))
    return port, ok


# ---------------------------------------------------------------- RTP
def bind_pair(ip):
    """An even/odd UDP port pair on ip (RTP, RTCP)."""
    rnd = random.Random(os.getpid() ^ int(time.time() * 1000) ^ hash(ip))
    for _ in range(200):
        p = rnd.randrange(45000, 49998, 2)
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            a.bind((ip, p))
            b.bind((ip, p + 1))
            return a, b, p
        except OSError:
            a.close()
            b.close()
    raise RuntimeError("no free port pair on %s" % ip)


def rtp_packet(seq, ts, ssrc):
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + bytes([0xFF]) * 160


def is_stun(d):
    return len(d) >= 20 and d[0] < 2 and d[4:8] == b"\x21\x12\xa4\x42"


def rtcp_rr(ssrc):
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def exchange_media(a_rtp, a_rtcp, b_rtp, b_rtcp, relay_ip, relay_for_a, relay_for_b, n=50, n_rtcp=5):
    """A sends to relay_for_a (the port in the answer SDP, given to A); B to relay_for_b (offer SDP).
    Returns figures; packets are checked for content and source."""
    sa, sb = 0x11111111, 0x22222222
    sent_a = {rtp_packet(i, i * 160, sa) for i in range(n)}
    sent_b = {rtp_packet(1000 + i, 8000 + i * 160, sb) for i in range(n)}
    got = {"a_rtp": [], "b_rtp": [], "a_rtcp": [], "b_rtcp": []}
    socks = {a_rtp: "a_rtp", b_rtp: "b_rtp", a_rtcp: "a_rtcp", b_rtcp: "b_rtcp"}
    for s in socks:
        s.setblocking(False)

    def pump(until):
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select(list(socks), [], [], left)
            for s in r:
                try:
                    while True:
                        data, src = s.recvfrom(2048)
                        got[socks[s]].append((data, src))
                except (BlockingIOError, InterruptedError):
                    pass

    t0 = time.monotonic()
    for i in range(n):
        a_rtp.sendto(rtp_packet(i, i * 160, sa), (relay_ip, relay_for_a))
        b_rtp.sendto(rtp_packet(1000 + i, 8000 + i * 160, sb), (relay_ip, relay_for_b))
        if i % (n // n_rtcp) == 0:
            a_rtcp.sendto(rtcp_rr(sa), (relay_ip, relay_for_a + 1))
            b_rtcp.sendto(rtcp_rr(sb), (relay_ip, relay_for_b + 1))
        pump(t0 + (i + 1) * 0.020)
    # stragglers: until everything arrived, or 0.5 s
    end = time.monotonic() + 0.5
    while time.monotonic() < end and (len(got["a_rtp"]) < n or len(got["b_rtp"]) < n):
        pump(min(end, time.monotonic() + 0.05))
    pump(time.monotonic() + 0.05)
    f = {}
    f["a_to_b"] = sum(1 for d, _ in got["b_rtp"] if d in sent_a)
    f["b_to_a"] = sum(1 for d, _ in got["a_rtp"] if d in sent_b)
    f["b_rtp_srcs"] = sorted({src for d, src in got["b_rtp"] if d in sent_a})
    f["a_rtp_srcs"] = sorted({src for d, src in got["a_rtp"] if d in sent_b})
    f["a_to_b_rtcp"] = sum(1 for d, _ in got["b_rtcp"] if d == rtcp_rr(sa))
    f["b_to_a_rtcp"] = sum(1 for d, _ in got["a_rtcp"] if d == rtcp_rr(sb))
    # rtpengine sends STUN binding requests to a phone whose SDP had ICE, even with ICE=remove
    f["stun"] = sum(1 for k in got for d, _ in got[k] if is_stun(d))
    f["other"] = sum(len(got[k]) for k in got) - f["a_to_b"] - f["b_to_a"] - f["a_to_b_rtcp"] - f["b_to_a_rtcp"] - f["stun"]
    f["sent"] = n
    f["sent_rtcp"] = n_rtcp
    f["seconds"] = time.monotonic() - t0
    return f


# ---------------------------------------------------------------- one side
def kamailio_offer(call_id, from_tag, sdp, branch, command="offer", to_tag=None):
    """Keys in the order Kamailio 5.6's rtpengine module sends them (supports first, command last;
    flags and via-branch as with rtpengine_offer("trust-address via-branch=1"))."""
    m = {"supports": ["load limit"], "sdp": sdp, "ICE": "remove", "replace": ["origin", "session-connection"],
         "flags": ["trust-address"], "call-id": call_id, "via-branch": branch,
         "received-from": ["IP4", "127.0.0.1"], "from-tag": from_tag}
    if to_tag is not None:
        m["to-tag"] = to_tag
    m["command"] = command
    return m


def keyshape(v):
    if isinstance(v, dict):
        return "dict"
    if isinstance(v, list):
        return "list[%d]" % len(v)
    if isinstance(v, int):
        return "int"
    if isinstance(v, bytes):
        s = text(v)
        if len(s) <= 24 and "\n" not in s:
            return s
        return "str(%d)" % len(v)
    return type(v).__name__


def flat_keys(r, prefix=""):
    out = {}
    if not isinstance(r, dict):
        return out
    for k, v in r.items():
        out[prefix + k] = keyshape(v)
        if prefix == "" and k == "totals" and isinstance(v, dict):
            for p, d in v.items():
                out["totals." + p] = keyshape(d)
                if isinstance(d, dict):
                    for kk, vv in d.items():
                        out["totals.%s.%s" % (p, kk)] = keyshape(vv) if not isinstance(vv, int) else "int=%d" % vv
        if prefix == "" and k == "tags" and isinstance(v, dict):
            for t in v:
                out["tags." + t] = keyshape(v[t])
    return out


def run_flow(side, server, relay_ip):
    print("\n===== %s (%s, relay ports %d-%d) =====" % (side, server, *RANGES[side]))
    ng = Ng(server, timeout=2.0)
    res = {"replies": {}, "sdp": {}}
    tag = "%s-%d-%d" % (side, os.getpid(), int(time.time()))
    cid, ft, tt, br = "ngcmp-" + tag, "ft-" + tag, "tt-" + tag, "z9hG4bK-" + tag

    t = time.monotonic()
    r, raw = call(side, ng, "ping", {"command": "ping"})
    res["replies"]["ping"] = r
    if r is not None:
        check(side, r.get("result") == b"pong", "ping: result %r, want pong (reply %r)" % (r.get("result"), raw))
        print("ping -> %s (%.1f ms)" % (text(r.get("result")), (time.monotonic() - t) * 1e3))

    a_rtp, a_rtcp, pa = bind_pair("127.0.0.2")
    b_rtp, b_rtcp, pb = bind_pair("127.0.0.3")
    osdp_a, osdp_b = phone_sdp("127.0.0.2", pa, 1001), phone_sdp("127.0.0.3", pb, 2002)
    relay_for_b = relay_for_a = None
    try:
        t = time.monotonic()
        r, raw = call(side, ng, "offer", kamailio_offer(cid, ft, osdp_a, br))
        res["replies"]["offer"] = r
        if r is not None:
            ok = check(side, r.get("result") == b"ok", "offer: result %r (%r)" % (r.get("result"), r.get("error-reason")))
            if check(side, isinstance(r.get("sdp"), bytes), "offer: no sdp in the reply: %r" % raw):
                res["sdp"]["offer"] = text(r["sdp"])
                relay_for_b, sok = check_sdp(side, "offer sdp", osdp_a, text(r["sdp"]), relay_ip)
            print("offer -> %s (%.1f ms), relay port handed to B: %s" % (
                text(r.get("result")), (time.monotonic() - t) * 1e3, relay_for_b))
        t = time.monotonic()
        r, raw = call(side, ng, "answer", kamailio_offer(cid, ft, osdp_b, br, "answer", tt))
        res["replies"]["answer"] = r
        if r is not None:
            check(side, r.get("result") == b"ok", "answer: result %r (%r)" % (r.get("result"), r.get("error-reason")))
            if check(side, isinstance(r.get("sdp"), bytes), "answer: no sdp in the reply: %r" % raw):
                res["sdp"]["answer"] = text(r["sdp"])
                relay_for_a, sok = check_sdp(side, "answer sdp", osdp_b, text(r["sdp"]), relay_ip)
            print("answer -> %s (%.1f ms), relay port handed to A: %s" % (
                text(r.get("result")), (time.monotonic() - t) * 1e3, relay_for_a))
        if relay_for_a and relay_for_b:
            check(side, relay_for_a != relay_for_b, "offer and answer SDP give the same relay port %s" % relay_for_a)

        # ---- media
        med = None
        if relay_for_a and relay_for_b:
            med = exchange_media(a_rtp, a_rtcp, b_rtp, b_rtcp, relay_ip, relay_for_a, relay_for_b)
            res["media"] = med
            n = med["sent"]
            print("RTP A(127.0.0.2:%d) -> relay %s:%d -> B(127.0.0.3:%d): %d/%d delivered intact, from %s"
                  % (pa, relay_ip, relay_for_a, pb, med["a_to_b"], n, med["b_rtp_srcs"]))
            print("RTP B(127.0.0.3:%d) -> relay %s:%d -> A(127.0.0.2:%d): %d/%d delivered intact, from %s"
                  % (pb, relay_ip, relay_for_b, pa, med["b_to_a"], n, med["a_rtp_srcs"]))
            print("RTCP (reported only): A->B %d/%d, B->A %d/%d; also received by the phones: %d STUN, %d other; %.2f s"
                  % (med["a_to_b_rtcp"], med["sent_rtcp"], med["b_to_a_rtcp"], med["sent_rtcp"], med["stun"], med["other"],
                     med["seconds"]))
            check(side, med["a_to_b"] >= 0.9 * n, "RTP A->B: %d of %d delivered (want >= 90 %%)" % (med["a_to_b"], n))
            check(side, med["b_to_a"] >= 0.9 * n, "RTP B->A: %d of %d delivered (want >= 90 %%)" % (med["b_to_a"], n))
            check(side, med["b_rtp_srcs"] in ([], [(relay_ip, relay_for_b)]),
                  "RTP to B came from %s, want the relay port B sends to (%s:%d)" % (med["b_rtp_srcs"], relay_ip, relay_for_b))
            check(side, med["a_rtp_srcs"] in ([], [(relay_ip, relay_for_a)]),
                  "RTP to A came from %s, want the relay port A sends to (%s:%d)" % (med["a_rtp_srcs"], relay_ip, relay_for_a))
        else:
            fail(side, "no relay ports from offer/answer: RTP not sent")

        # ---- query
        r, raw = call(side, ng, "query", {"command": "query", "call-id": cid})
        res["replies"]["query"] = r
        if r is not None:
            check(side, r.get("result") == b"ok", "query: result %r (%r)" % (r.get("result"), r.get("error-reason")))
            check(side, isinstance(r.get("created"), int) and abs(r["created"] - time.time()) < 120,
                  "query: created %r, want a Unix time (int) of now" % (r.get("created"),))
            check(side, isinstance(r.get("last signal"), int), "query: 'last signal' %r, want an int" % (r.get("last signal"),))
            tags = r.get("tags")
            check(side, isinstance(tags, dict) and ft in tags and tt in tags,
                  "query: tags %r, want a dictionary with the from-tag and the to-tag" % (list(tags) if isinstance(tags, dict) else tags,))
            tot = r.get("totals")
            if check(side, isinstance(tot, dict), "query: no totals dictionary: %r" % raw[:300]):
                for p in ("RTP", "RTCP"):
                    d = tot.get(p)
                    check(side, isinstance(d, dict) and all(isinstance(d.get(k), int) for k in ("packets", "bytes")),
                          "query: totals.%s %r, want packets and bytes integers" % (p, d))
                rtp = tot.get("RTP") if isinstance(tot.get("RTP"), dict) else {}
                rtcp = tot.get("RTCP") if isinstance(tot.get("RTCP"), dict) else {}
                pk, by = rtp.get("packets"), rtp.get("bytes")
                print("query -> %s; totals RTP packets=%s bytes=%s errors=%s, RTCP packets=%s bytes=%s errors=%s" % (
                    text(r.get("result")), pk, by, rtp.get("errors"), rtcp.get("packets"), rtcp.get("bytes"), rtcp.get("errors")))
                if med and isinstance(pk, int) and isinstance(by, int):
                    relayed = med["a_to_b"] + med["b_to_a"]
                    sent = 2 * med["sent"]
                    check(side, relayed <= pk <= sent,
                          "query: totals RTP packets %d, want between the %d relayed and the %d sent" % (pk, relayed, sent))
                    check(side, pk * 160 <= by <= pk * 172,
                          "query: totals RTP bytes %d for %d packets of 172 bytes (160 payload), want %d..%d" % (
                              by, pk, pk * 160, pk * 172))

        # ---- list
        r, raw = call(side, ng, "list", {"command": "list"})
        res["replies"]["list"] = r
        if r is not None:
            calls = r.get("calls")
            check(side, r.get("result") == b"ok", "list: result %r" % (r.get("result"),))
            check(side, isinstance(calls, list) and cid.encode() in calls, "list: calls %r, want it to hold %s" % (calls, cid))
            print("list -> %s, %s call(s)" % (text(r.get("result")), len(calls) if isinstance(calls, list) else "?"))

        # ---- delete
        r, raw = call(side, ng, "delete", {"supports": ["load limit"], "call-id": cid, "via-branch": br,
                                            "received-from": ["IP4", "127.0.0.1"], "from-tag": ft, "command": "delete"})
        res["replies"]["delete"] = r
        if r is not None:
            check(side, r.get("result") == b"ok", "delete: result %r (%r)" % (r.get("result"), r.get("error-reason")))
            print("delete -> %s" % text(r.get("result")))
        r, raw = call(side, ng, "query after delete", {"command": "query", "call-id": cid})
        res["replies"]["query after delete"] = r
        if r is not None:
            check(side, r.get("result") == b"error" and r.get("error-reason"),
                  "query after delete: %r, want result error with an error-reason" % raw)
            print("query after delete -> %s (%s)" % (text(r.get("result")), text(r.get("error-reason"))))
        r, raw = call(side, ng, "list after delete", {"command": "list"})
        res["replies"]["list after delete"] = r
        if r is not None:
            calls = r.get("calls")
            check(side, isinstance(calls, list) and cid.encode() not in calls,
                  "list after delete: calls %r still holds %s" % (calls, cid))
    finally:
        for s in (a_rtp, a_rtcp, b_rtp, b_rtcp):
            s.close()
        ng.close()
    return res


# ---------------------------------------------------------------- hostile
def hostile_cases():
    rnd = random.Random(4242)
    garbage = bytes(rnd.randrange(256) for _ in range(1000))
    big_dict = {"command": "ping"}
    big_dict.update(("k%05d" % i, "") for i in range(6500))
    return [
        # name, body (after "COOKIE "), or full datagram when cookie is None
        ("malformed bencode (truncated)", b"d7:command4:pi"),
        ("malformed bencode (bad length)", b"d7:command99999:ping"),
        ("not a dictionary", b"l4:pinge"),
        ("no space / no cookie", None),
        ("empty body", b""),
        ("unknown command", encode({"command": "frobnicate"})),
        ("command not a string", encode({"command": 5})),
        ("missing call-id", encode({"sdp": phone_sdp("127.0.0.2", 46000, 9), "from-tag": "x", "command": "offer"})),
        ("answer for an unknown call", encode(kamailio_offer("ngcmp-no-such-call-%d" % os.getpid(), "ft-x",
                                                             phone_sdp("127.0.0.3", 46002, 8), "z9hG4bK-x",
                                                             "answer", "tt-x"))),
        ("huge dictionary (6,500 keys, 60 KB)", encode(big_dict)),
        ("huge list (30,000 items, 60 KB)", encode({"command": "ping", "flags": Raw(b"l" + b"le" * 30000 + b"e")})),
        ("deep nesting (20,000 lists)", encode({"command": "ping", "flags": Raw(b"l" * 20000 + b"e" * 20000)})),
        ("binary garbage (1000 bytes)", garbage),
    ]


def short(b, n=160):
    if b is None:
        return "(no reply)"
    return repr(b if len(b) <= n else b[:n] + b"...(%d bytes)" % len(b))


def hostile(side, server, assert_it):
    """Returns rows (name, request size, reply text)."""
    label = side if assert_it else side + " (reference, not asserted)"
    print("\n===== hostile input: %s (%s) =====" % (label, server))
    ng = Ng(server, timeout=2.0)
    rows = []
    sfail = (lambda m: fail(side, m)) if assert_it else (lambda m: print("  note [%s] %s" % (side, m)))

    def alive(after):
        ng.drain()
        try:
            r = ng.call({"command": "ping"}, timeout=2.0)
            if r.get("result") != b"pong":
                sfail("ping after %s: %r" % (after, r))
                return False
        except (NgTimeout, ValueError) as e:
            sfail("no pong after %s: %s" % (after, e))
            return False
        return True

    for i, (name, body) in enumerate(hostile_cases()):
        cookie = b"hx%d_%d" % (os.getpid(), i)
        if body is None:
            req = encode({"command": "ping"})   # no cookie, no space
        else:
            req = cookie + b" " + body
        ng.drain()
        t = time.monotonic()
        rep = ng.exchange(req, timeout=2.0)
        ms = (time.monotonic() - t) * 1e3
        log(side, "hostile: " + name, req, rep)
        verdict = ""
        if body is None:
            if rep is None:
                verdict = "no reply (accepted: nothing to match it by)"
            else:
                ck, rb = split_reply(rep)
                try:
                    d = strkeys(decode(rb)) if rb is not None else None
                except ValueError:
                    d = None
                if not (isinstance(d, dict) and d.get("result") == b"error" and d.get("error-reason")):
                    sfail("%s: reply %s is not an error with an error-reason" % (name, short(rep)))
                verdict = "replied"
        elif rep is None:
            sfail("%s: no reply within 2 s to %s" % (name, short(req, 80)))
            verdict = "NO REPLY"
        else:
            ck, rb = split_reply(rep)
            d = None
            try:
                d = strkeys(decode(rb)) if rb is not None else None
            except ValueError as e:
                sfail("%s: reply is not bencode (%s): %s" % (name, e, short(rep)))
            if ck != cookie:
                sfail("%s: reply cookie %r, want %r" % (name, ck, cookie))
            if isinstance(d, dict):
                if not (d.get("result") == b"error" and isinstance(d.get("error-reason"), bytes) and d.get("error-reason")):
                    sfail("%s: reply %s, want result error with an error-reason" % (name, short(rep)))
            elif d is not None:
                sfail("%s: reply body is not a dictionary: %s" % (name, short(rep)))
            verdict = "%.1f ms" % ms
        ok = alive(name)
        rows.append((name, len(req), rep, verdict + ("" if ok else ", NO PONG AFTER")))
        print("  %-40s %6d B -> %s [%s]" % (name, len(req), short(rep, 120), rows[-1][3]))

    # replayed cookie: same cookie + same offer twice
    name = "replayed cookie (offer twice)"
    tag = "%s-replay-%d" % (side, os.getpid())
    cid = "ngcmp-" + tag
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.2", 0))
    try:
        before = None
        try:
            lr = ng.call({"command": "list"})
            before = lr.get("calls") if isinstance(lr.get("calls"), list) else None
        except (NgTimeout, ValueError) as e:
            sfail("%s: list before: %s" % (name, e))
        cookie = b"replay%d_%s" % (os.getpid(), os.urandom(3).hex().encode())
        req = cookie + b" " + encode(kamailio_offer(cid, "ft-" + tag, phone_sdp("127.0.0.2", a.getsockname()[1], 77), "z9hG4bK-" + tag))
        ng.drain()
        r1 = ng.exchange(req, timeout=2.0, want_cookie=cookie)
        r2 = ng.exchange(req, timeout=2.0, want_cookie=cookie)
        log(side, name + " (1st)", req, r1)
        log(side, name + " (2nd)", req, r2)
        after = None
        try:
            lr = ng.call({"command": "list"})
            after = lr.get("calls") if isinstance(lr.get("calls"), list) else None
        except (NgTimeout, ValueError) as e:
            sfail("%s: list after: %s" % (name, e))
        if r1 is None or r2 is None:
            sfail("%s: replies %s / %s" % (name, short(r1), short(r2)))
        elif r1 != r2:
            sfail("%s: the replayed request got a different reply:\n    1st %s\n    2nd %s" % (name, short(r1, 400), short(r2, 400)))
        else:
            try:
                d = strkeys(decode(split_reply(r1)[1]))
                if d.get("result") != b"ok":
                    sfail("%s: the offer itself failed: %s" % (name, short(r1)))
            except ValueError as e:
                sfail("%s: reply not bencode: %s" % (name, e))
        figs = "?"
        if before is not None and after is not None:
            added = len(after) - len(before)
            n_cid = after.count(cid.encode())
            figs = "list: %d -> %d call(s), the call-id %d time(s)" % (len(before), len(after), n_cid)
            if added != 1 or n_cid != 1:
                sfail("%s: %s; want exactly one call more" % (name, figs))
        verdict = "byte-identical" if (r1 is not None and r1 == r2) else "DIFFERENT"
        rows.append((name, len(req), r1, "%s; %s" % (verdict, figs)))
        print("  %-40s %6d B -> %s [%s]" % (name, len(req), short(r1, 120), rows[-1][3]))
        try:
            ng.call({"command": "delete", "call-id": cid, "from-tag": "ft-" + tag})
        except (NgTimeout, ValueError):
            pass
        alive(name)
    finally:
        a.close()
        ng.close()
    return rows


# ---------------------------------------------------------------- report
def key_table(ref, ours):
    cmds = ["ping", "offer", "answer", "query", "list", "delete", "query after delete", "list after delete"]
    print("\n===== reply keys side by side (value shown when short; ':' = key absent) =====")
    print("%-20s %-22s %-30s %-30s" % ("command", "key", "rtpengine", "ours"))
    for c in cmds:
        fr = flat_keys((ref or {}).get("replies", {}).get(c)) if ref else {}
        fo = flat_keys((ours or {}).get("replies", {}).get(c)) if ours else {}
        keys = list(fr) + [k for k in fo if k not in fr]
        # tags.<tag>: tags differ per side; show as count
        for k in keys:
            if k.startswith("tags."):
                continue
            vr = fr.get(k, ":") if ref else "n/a"
            vo = fo.get(k, ":") if ours else "n/a"
            if c in ("query", "delete") and k in ("created", "last signal", "created_us", "last redis update"):
                vr = "int" if vr.startswith("int") else vr
                vo = "int" if vo.startswith("int") else vo
            print("%-20s %-22s %-30s %-30s" % (c, k, vr[:30], vo[:30]))
        nt_r = sum(1 for k in fr if k.startswith("tags."))
        nt_o = sum(1 for k in fo if k.startswith("tags."))
        if nt_r or nt_o:
            print("%-20s %-22s %-30s %-30s" % (c, "tags.<tag>", "%d tags" % nt_r if ref else "n/a", "%d tags" % nt_o if ours else "n/a"))


def sdp_table(ref, ours):
    for what in ("offer", "answer"):
        lr = sdp_lines((ref or {}).get("sdp", {}).get(what, "")) if ref else []
        lo = sdp_lines((ours or {}).get("sdp", {}).get(what, "")) if ours else []
        print("\n----- %s SDP returned: rtpengine | ours -----" % what)
        for i in range(max(len(lr), len(lo))):
            print("  %-40s | %s" % (lr[i] if i < len(lr) else "", lo[i] if i < len(lo) else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", help="rtpengine ng address IP:PORT")
    ap.add_argument("--ref-ports", default="41000-41999")
    ap.add_argument("--ours", help="our ng address IP:PORT")
    ap.add_argument("--ours-ports", default="40000-40999")
    ap.add_argument("--relay-ip", default="127.0.0.1")
    ap.add_argument("--out", default=".")
    ap.add_argument("--no-hostile", action="store_true")
    a = ap.parse_args()
    if not a.ref and not a.ours:
        ap.error("--ref and/or --ours")
    RANGES["rtpengine"] = tuple(int(x) for x in a.ref_ports.split("-"))
    RANGES["ours"] = tuple(int(x) for x in a.ours_ports.split("-"))
    ref = ours = None
    if a.ref:
        LOGS["rtpengine"] = open(os.path.join(a.out, "ng-exchanges-rtpengine.txt"), "w")
        ref = run_flow("rtpengine", a.ref, a.relay_ip)
    if a.ours:
        LOGS["ours"] = open(os.path.join(a.out, "ng-exchanges-ours.txt"), "w")
        ours = run_flow("ours", a.ours, a.relay_ip)
    key_table(ref, ours)
    sdp_table(ref, ours)
    if not a.no_hostile:
        rows_o = hostile("ours", a.ours, True) if a.ours else None
        rows_r = hostile("rtpengine", a.ref, False) if a.ref else None
        if rows_o and rows_r:
            print("\n===== hostile replies side by side =====")
            for (n, sz, ro, vo), (_, _, rr, vr) in zip(rows_o, rows_r):
                print("%-40s %6d B\n    rtpengine: %s [%s]\n    ours:      %s [%s]" % (n, sz, short(rr, 110), vr, short(ro, 110), vo))
    for f in LOGS.values():
        f.close()
    sides = " and ".join(s for s, v in (("rtpengine", ref), ("ours", ours)) if v is not None)
    if FAILS:
        print("\n%d failed assertion(s):" % len(FAILS))
        for f in FAILS:
            print("  - " + f)
        print("ng-compare: FAILED: " + " | ".join(f.split("\n")[0] for f in FAILS))
        return 1
    figs = []
    for s, v in (("rtpengine", ref), ("ours", ours)):
        if v and v.get("media"):
            m = v["media"]
            figs.append("%s RTP %d/%d + %d/%d" % (s, m["a_to_b"], m["sent"], m["b_to_a"], m["sent"]))
    print("ng-compare: ok: %s: ping/offer/answer/query/list/delete as expected; %s%s" % (
        sides, ", ".join(figs), "; hostile input answered" if (a.ours and not a.no_hostile) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
