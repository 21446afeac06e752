#!/usr/bin/env python3
"""Writes the curated seed corpus fuzz/seeds/<target>/ from the project's own test material:
the RFC 4475 torture messages (shared/conformance/rfc4475), the SIPp scenarios
(tests/scenarios/*.xml), the messages of the parser's unit tests and the SDP offers of the SDP
tests, plus hand-made RTP/RTCP/SRTP/DTLS/digest inputs. Deterministic; re-run after editing.

    python3 tests/fuzz/make_seeds.py
"""
import hashlib
import os
import re
import struct
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.path.join(ROOT, "..", "shared")
if not os.path.isdir(SHARED):
    SHARED = "/work/shared"
OUT = os.path.join(ROOT, "fuzz", "seeds")


def put(target, data, name=None):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rust_literals(path):
    """The "..." string literals of a Rust file, decoded (escapes, line continuations)."""
    text = open(path, encoding="utf-8").read()
    out = []
    for m in re.finditer(r'(?<![A-Za-z0-9_\'])"((?:[^"\\]|\\.|\\\n)*)"', text, re.S):
        s = m.group(1)
        s = re.sub(r"\\\n\s*", "", s)
        s = (s.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")
             .replace('\\"', '"').replace("\\0", "\0").replace("\\\\", "\\"))
        out.append(s)
    return out


SIPP = {
    "[local_ip]": "192.0.2.10", "[remote_ip]": "192.0.2.1", "[transport]": "UDP",
    "[local_port]": "5060", "[remote_port]": "5060", "[call_number]": "1", "[pid]": "42",
    "[service]": "bob", "[call_id]": "1-42@192.0.2.10", "[media_port]": "6000",
    "[media_ip_type]": "4", "[media_ip]": "192.0.2.10", "[local_ip_type]": "4",
    "[field0]": "alice", "[routes]": "", "[next_url]": "sip:bob@192.0.2.1",
    "[peer_tag_param]": ";tag=peer1", "[$invvia]": "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx",
    "[$invcseq]": "1",
}


def sipp_messages(path, auth="Authorization: @AUTH@"):
    text = open(path, encoding="utf-8").read()
    msgs = []
    for m in re.finditer(r"<send[^>]*>\s*<!\[CDATA\[(.*?)\]\]>", text, re.S):
        body = m.group(1).strip("\n")
        lines = [l.strip() for l in body.split("\n")]
        lines = [l for l in lines if not l.startswith("[last_")]
        body = "\n".join(lines)
        body = re.sub(r"\[branch(-\d+)?\]", "z9hG4bK-42-1", body)
        body = body.replace("[authentication]", "@AUTH@" if auth else "")
        body = re.sub(r"\[authentication[^]]*\]", "@AUTH@", body)
        for k, v in SIPP.items():
            body = body.replace(k, v)
        head, sep, sdp = body.partition("\n\n")
        sdp = sdp.replace("\n", "\r\n") if sep else ""
        head = head.replace("[len]", str(len(sdp)))
        head = "\r\n".join(l for l in head.split("\n"))
        msgs.append(head + "\r\n\r\n" + sdp)
    return msgs


def main():
    # ---- sip_message
    corpus = os.path.join(SHARED, "conformance", "rfc4475")
    for f in sorted(os.listdir(corpus)):
        if f.endswith(".dat"):
            put("sip_message", open(os.path.join(corpus, f), "rb").read(), "rfc4475-" + f[:-4])
    scen = os.path.join(ROOT, "tests", "scenarios")
    sipp = []
    for f in sorted(os.listdir(scen)):
        for i, m in enumerate(sipp_messages(os.path.join(scen, f))):
            sipp.append(m)
            put("sip_message", m.replace("@AUTH@", 'Digest username="alice", realm="example.com", '
                'nonce="00", uri="sip:example.com", response="00", qop=auth, nc=00000001, cnonce="c"'),
                "sipp-%s-%d" % (f[:-4], i))
    for s in rust_literals(os.path.join(ROOT, "rvoip-sdk", "src", "sip", "msg", "tests.rs")):
        if re.match(r"^(\r\n)*([A-Z]+ \S+ SIP/2\.0|SIP/2\.0 \d{3})", s):
            put("sip_message", s)

    # ---- sdp: two selector bytes (codecs/direction, SRTP policy) then the text
    sdps = set()
    for f in [os.path.join(ROOT, "rvoip-sdk", "src", "sdp", "tests.rs"),
              os.path.join(ROOT, "rvoip-sdk", "src", "server", "relay", "sdp.rs")]:
        for s in rust_literals(f):
            if s.startswith("v=0"):
                sdps.add(s)
    for m in sipp:
        _, _, body = m.partition("\r\n\r\n")
        if body.startswith("v=0"):
            sdps.add(body)
    for i, s in enumerate(sorted(sdps)):
        for sel, sec in [(0x22, 0x00), (0x23, 0x05), (0x2f, 0x0e), (0x61, 0x1e)]:
            put("sdp", bytes([sel, sec]) + s.encode())

    # ---- rtp_rtcp: mode byte, then records: ctl, u16 length, packet
    def rtp(pt, seq, ts, ssrc, payload, marker=False):
        return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc) + payload

    def rec(ctl, pkt):
        return bytes([ctl]) + struct.pack("!H", len(pkt)) + pkt

    sr = struct.pack("!BBHI", 0x81, 200, 12, 0x1111) + struct.pack("!QII", 0xE000000000000000, 160, 10) + \
        struct.pack("!I", 1600) + struct.pack("!IIIIII", 0x12345678, 0x01000002, 100, 20, 0xE0000000 >> 16, 65536)
    sdes = struct.pack("!BBHI", 0x81, 202, 3, 0x1111) + bytes([1, 4]) + b"fuzz" + b"\0\0"
    bye = struct.pack("!BBHI", 0x81, 203, 1, 0x1111)
    rr = struct.pack("!BBHI", 0x80, 201, 1, 0x2222)
    for mode in [0, 1, 2, 0x28, 0x98]:
        s = bytes([mode])
        for i in range(6):
            s += rec(0x54, rtp(0 if mode % 3 == 0 else (8 if mode % 3 == 1 else 9), 100 + i, 160 * i, 0x1111, bytes(160)))
        s += rec(0x14, rtp(101, 106, 960, 0x1111, bytes([5, 0x0a, 0, 160]), True))
        s += rec(0x14, rtp(101, 107, 960, 0x1111, bytes([5, 0x8a, 1, 64])))
        s += rec(0x81, sr + sdes) + rec(0x41, rr) + rec(0x41, bye)
        s += rec(0x95, bytes([22, 0xfe, 0xfd]) + bytes(10) + b"\x01")
        put("rtp_rtcp", s)
    # an RTP header with CSRCs, extension and padding
    ext = struct.pack("!BBHII", 0xB2, 0, 1, 0, 0x3333) + struct.pack("!II", 1, 2) + \
        struct.pack("!HH", 0xBEDE, 1) + b"\x10\xff\0\0" + b"abc\x01"
    put("rtp_rtcp", bytes([3]) + rec(0x40, ext))

    # ---- digest: user, password, uri, cnonce, method, then header values (one per line)
    put("digest", b"alice\nsecret\nsip:example.com\nc0ffee\nREGISTER\n"
        b'Digest username="alice", realm="fuzz.example.com", nonce="0000000065536f00000000000000000000000000000000000000000000000000", '
        b'uri="sip:fuzz.example.com", response="00112233445566778899aabbccddeeff", algorithm=MD5, cnonce="x", qop=auth, nc=00000001\n'
        b"Basic YWxpY2U6c2VjcmV0\n")
    put("digest", b'bo"b\\\npa ss\nsip:x@y;a=b?c\n"\nINVITE\nDigest realm="fuzz.example.com", nonce=\n')
    put("digest", "ü\nö\nsips:[::1]:5061\nc,n\nMESSAGE\nDigest username=ü, realm=\"fuzz.example.com\",,\n".encode())

    # ---- srtp: suite byte, then records (ctl, u16 length, packet); text lines for the attributes
    for suite in range(3):
        s = bytes([suite])
        for i in range(4):
            s += rec(2 + 4 * i, rtp(0, 1000 + i, 160 * i, 0xCAFE, bytes(range(20)))) + b"\x05"
        s += rec(3, sr + sdes) + b"\x09"
        s += rec(0, rtp(0, 2000, 0, 0xCAFE, bytes(30))) + rec(1, sr)
        put("srtp", s)
    put("srtp", b"\x00\n1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4\n"
        b"2 AEAD_AES_128_GCM inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz KDR=0\n"
        b"sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\n"
        b"actpass\npassive\n")

    # ---- dtls: mode byte (bit 0: man in the middle of a real handshake; bit 1: client)
    put("dtls", b"\x01")
    put("dtls", b"\x01" + bytes(64))
    put("dtls", b"\x01" + bytes([1, 0, 10, 0x41]) + bytes(40))
    client_hello = bytes([22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40]) + bytes([1, 0, 0, 0x34, 0, 0, 0, 0, 0, 0, 0, 0x34, 0xfe, 0xfd]) + bytes(32) + bytes([0, 0, 0, 2, 0xc0, 0x2b, 1, 0])
    put("dtls", b"\x00" + rec(1, client_hello) + rec(200, bytes([21, 0xfe, 0xfd]) + bytes(8) + b"\x00\x02\x02\x28"))
    put("dtls", b"\x02" + rec(1, bytes([22, 0xfe, 0xfd]) + bytes(10)) + rec(255, b""))

    # ---- server_core: config byte, then NUL-separated records (control byte + payload)
    def script(cfg, *recs):
        return bytes([cfg]) + b"".join(b"\0" + r for r in recs)

    def msg(src, text, transport=0):
        return bytes([(transport << 6) | (src << 3) | 0]) + text.encode()

    reg = ("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKr{n};rport\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r1\r\nTo: <sip:alice@example.com>\r\n"
           "Call-ID: reg-1@192.0.2.10\r\nCSeq: {n} REGISTER\r\nContact: <sip:alice@192.0.2.10:5060>\r\n"
           "Expires: 3600\r\n{auth}Content-Length: 0\r\n\r\n")
    sdp_body = ("v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
                "m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
    inv = ("INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.11:5070;branch=z9hG4bKi{n};rport\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=i1\r\nTo: <sip:alice@example.com>\r\n"
           "Call-ID: inv-1@192.0.2.11\r\nCSeq: {n} INVITE\r\nContact: <sip:bob@192.0.2.11:5070>\r\n"
           "{auth}Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}")
    ack = ("ACK sip:alice@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.11:5070;branch=z9hG4bKa1\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=i1\r\nTo: <sip:alice@example.com>;tag=fz2\r\n"
           "Call-ID: inv-1@192.0.2.11\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n")
    bye = ("BYE sip:alice@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.11:5070;branch=z9hG4bKb1\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=i1\r\nTo: <sip:alice@example.com>;tag=fz2\r\n"
           "Call-ID: inv-1@192.0.2.11\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n")
    cancel = inv.replace("INVITE", "CANCEL").format(n=1, auth="", len=0, body="")
    full_call = [
        msg(0, reg.format(n=1, auth="")),
        msg(0, reg.format(n=2, auth="Authorization: @AUTH@\r\n")),
        msg(1, inv.format(n=1, auth="", len=len(sdp_body), body=sdp_body)),
        msg(1, inv.format(n=2, auth="Proxy-Authorization: @AUTH@\r\n", len=len(sdp_body), body=sdp_body)
            .replace("<sip:bob@example.com>", "<sip:alice@example.com>")),
        bytes([4]) + struct.pack("!H", 80),
        bytes([4]) + struct.pack("!H", 100) + sdp_body.replace("alice", "bob").encode(),
        msg(1, ack), bytes([5]) + struct.pack("!H", 100), msg(1, bye), bytes([4]) + struct.pack("!H", 100),
    ]
    put("server_core", script(0, *full_call))
    put("server_core", script(1, *full_call))
    put("server_core", script(0x18, *full_call[:6], msg(1, cancel), bytes([4]) + struct.pack("!H", 387)))
    put("server_core", script(1, msg(0, reg.format(n=1, auth="")), msg(2, inv.format(n=1, auth="", len=0, body="")
        .replace("sip:alice@example.com SIP", "sip:carol@other.example.net SIP")), bytes([6, 1]), bytes([5, 0, 200]), bytes([7])))
    # Transcoding: the callee refuses with 488, the widened offer is answered in Opus.
    opus_answer = ("v=0\r\no=alice 2 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
                   "m=audio 6002 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\n"
                   "a=rtpmap:101 telephone-event/8000\r\n")
    put("server_core", script(0, *full_call[:4], bytes([4]) + struct.pack("!H", 388),
                              bytes([4]) + struct.pack("!H", 100) + opus_answer.encode(), bytes([5, 0, 10])))
    # Conference rooms: join (authenticated), ACK, re-INVITE, BYE, and time for the 2xx retransmits.
    conf = lambda t: t.replace("sip:alice@example.com SIP", "sip:conf-room@example.com SIP").replace(
        "To: <sip:alice@example.com>", "To: <sip:conf-room@example.com>")
    conf_inv = conf(inv.format(n=2, auth="Proxy-Authorization: @AUTH@\r\n", len=len(sdp_body), body=sdp_body)
                    .replace("<sip:bob@example.com>", "<sip:alice@example.com>"))
    put("server_core", script(0, *full_call[:2], msg(1, conf(inv.format(n=1, auth="", len=len(sdp_body), body=sdp_body)
                    .replace("<sip:bob@example.com>", "<sip:alice@example.com>"))), msg(1, conf_inv),
                              bytes([5, 0, 60]), msg(1, conf(ack)), msg(1, conf(bye)), bytes([5, 1, 0])))
    for m in sipp:
        put("server_core", script(1, msg(0, m), msg(0, m.replace("@AUTH@", "")), bytes([5, 0, 50])))
    for f in ["rfc4475-" + n for n in ("wsinv", "intmeth", "unreason", "dblreq", "mcl01", "scalar02", "insuf")]:
        p = os.path.join(OUT, "sip_message", f)
        if os.path.exists(p):
            put("server_core", bytes([1, 0, 0]) + open(p, "rb").read().replace(b"\0", b"%00"))
    # ---- user_agent: records (control byte + payload) separated by NUL; $CID $LT $RT name the
    # established call's dialog, $SCID $ST the pending presence subscription (fuzzing/user_agent.rs)
    def ua(*recs):
        return b"\0".join(recs)

    def from_bob(text):  # control 4 = 0 mod 4 (NUL is the record separator)
        return b"\x04" + text.encode()

    def from_server(text):
        return b"\x05" + text.encode()

    def in_dialog(method, seq, extra, body=""):
        return ("%s sip:alice@192.0.2.10:5060 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKf%s%d\n"
                "Max-Forwards: 70\nFrom: <sip:bob@192.0.2.20:5060>;tag=$RT\nTo: <sip:rvoip@192.0.2.10:5060>;tag=$LT\n"
                "Call-ID: $CID\nCSeq: %d %s\nContact: <sip:bob@192.0.2.20:5060>\n%sContent-Length: 0\n\n%s"
                % (method, method, seq, seq, method, extra, body))
    refer = in_dialog("REFER", 10, "Refer-To: <sip:carol@192.0.2.30>\nReferred-By: <sip:bob@192.0.2.20>\n")
    put("user_agent", ua(from_bob(refer), b"\x03\x01", b"\x02\x05"))
    put("user_agent", ua(from_bob(refer), b"\x03\x02"))
    put("user_agent", ua(from_bob(refer), b"\x02\x64"))
    put("user_agent", ua(from_bob(in_dialog("REFER", 11, "Refer-To: <sip:carol@192.0.2.30?Replaces=x%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>\n")),
                         b"\x03\x01"))
    notify = in_dialog("NOTIFY", 12, "Event: refer;id=2\nSubscription-State: terminated;reason=noresource\n"
                       "Content-Type: message/sipfrag;version=2.0\n", "SIP/2.0 200 OK\n")
    put("user_agent", ua(b"\x03\x08", from_bob(notify)))
    put("user_agent", ua(from_bob(in_dialog("INFO", 13, "Content-Type: application/dtmf-relay\n", "Signal=5\nDuration=160\n")),
                         b"\x03\x03", b"\x02\x0a"))
    put("user_agent", ua(from_bob(in_dialog("INVITE", 14, "Content-Type: application/sdp\n",
                                            "v=0\no=b 1 2 IN IP4 192.0.2.20\ns=-\nc=IN IP4 192.0.2.20\nt=0 0\n"
                                            "m=audio 41000 RTP/AVP 0\na=sendonly\n")), b"\x02\x05"))
    put("user_agent", ua(from_bob(in_dialog("BYE", 15, "")), b"\x03\x05"))
    replaces_invite = ("INVITE sip:alice@192.0.2.10:5060 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bKr1\n"
                       "Max-Forwards: 70\nFrom: <sip:carol@192.0.2.30>;tag=c1\nTo: <sip:alice@example.com>\n"
                       "Call-ID: r1@192.0.2.30\nCSeq: 1 INVITE\nContact: <sip:carol@192.0.2.30>\n"
                       "Replaces: $CID;to-tag=$LT;from-tag=$RT\nRequire: replaces\nContent-Length: 0\n\n")
    put("user_agent", ua(from_bob(replaces_invite), b"\x02\x05"))
    pidf = ('<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:buddy@example.com">'
            '<tuple id="t"><status><basic>open</basic></status><note>Away</note></tuple></presence>')
    pres_notify = ("NOTIFY sip:alice@192.0.2.10:5060 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKp1\n"
                   "Max-Forwards: 70\nFrom: <sip:buddy@example.com>;tag=n1\nTo: <sip:alice@example.com>;tag=$ST\n"
                   "Call-ID: $SCID\nCSeq: 1 NOTIFY\nContact: <sip:ps@192.0.2.1:5060>\nEvent: presence\n"
                   "Subscription-State: active;expires=600\nContent-Type: application/pidf+xml\n"
                   "Content-Length: 0\n\n" + pidf)
    put("user_agent", ua(from_server(pres_notify), b"\x02\xff", b"\x03\x06"))
    put("user_agent", ua(from_server(pres_notify.replace("active;expires=600", "terminated;reason=deactivated")), b"\x03\x07"))
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print("seeds:", {t: len(os.listdir(os.path.join(OUT, t))) for t in sorted(os.listdir(OUT))}, total, "bytes")


if __name__ == "__main__":
    sys.exit(main())
