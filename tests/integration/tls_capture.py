#!/usr/bin/env python3
"""Checks from a capture (pcap on lo, tshark) that SIP went over TLS only, and that the media went
through the server's relay.

TLS (every TCP stream with the server's TLS port --tls-port at one end):
  * each direction's payload, reassembled by TCP sequence number (retransmissions dropped), parses
    as a gapless sequence of TLS records from its first byte to its last: content type 20..23, version
    3.x, length <= 2^14 + 2048 (RFC 8446 §5.1/5.2); a stream that does not is not TLS (plaintext SIP
    would be "REGISTER sip:...": content type 0x52);
  * the client's first record is a handshake ClientHello (type 1), the server's first a ServerHello
    (type 2), and both directions then carry application data (content type 23);
  * at least --min-conns such connections, each with a completed handshake.
Plaintext:
  * no frame to or from one of our SIP ports contains the bytes "SIP/2.0" (every SIP request line,
    status line and Via has them). Our ports: the server's (--sip-port, --tls-port), the phones' own
    listeners (--port, repeatable) and the client ports of the TLS connections above. Frames of other
    processes on a shared loopback are counted and printed, not judged; with --strict (a private
    network namespace, RVOIP_NETNS=1) no frame at all may carry "SIP/2.0";
  * no packet to or from a plaintext SIP port of the server (--sip-port, default 5060, UDP and TCP).
Media (--relay MIN-MAX with --phone-port P...): SIP is encrypted, so the phones' RTP ports cannot be
taken from the SDP in the capture (as relay_capture.py does); the caller gives them (the server logs
the address it latched for each party). Every UDP packet with a phone RTP or RTCP (+1) port at one end
is classified by its other end: relayed (a relay port that is not a phone's), direct (another phone
port: around the relay) or other. Passes only with no direct and no other packet and >= --min packets
each way between every phone RTP port and the relay.

Usage: tls_capture.py PCAP [--tls-port 5061] [--sip-port 5060] [--port P ...] [--strict] [--min-conns 2]
                      [--relay 30000-39999 --phone-port P ...] [--min 100] [--label NAME]
Prints the figures and a last line "NAME: ok: ..." or "NAME: FAILED: reason"; exit 0/1.
"""
import argparse
import collections
import subprocess
import sys

CONTENT = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
MAX_RECORD = (1 << 14) + 2048


def tshark(pcap, display_filter, fields, extra=()):
    cmd = ["tshark", "-r", pcap, *extra, "-Y", display_filter, "-T", "fields", "-E", "separator=;"]
    for f in fields:
        cmd += ["-e", f]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, text=True)
    if r.returncode != 0:
        raise SystemExit("tshark failed (%s): %s" % (display_filter, r.stderr.strip()[:300]))
    return [line.split(";") for line in r.stdout.splitlines() if line.strip()]


def reassemble(segments):
    """segments: [(seq, bytes)] of one direction -> (bytes, gaps). Retransmissions are dropped."""
    data = bytearray()
    gaps = 0
    nxt = None
    for seq, payload in sorted(segments, key=lambda s: s[0]):
        if nxt is None:
            nxt = seq
        if seq + len(payload) <= nxt:
            continue  # retransmission of what we have
        if seq > nxt:
            gaps += 1
            nxt = seq
        data += payload[nxt - seq:]
        nxt = seq + len(payload)
    return bytes(data), gaps


def records(data):
    """Walks TLS records: ([(content_type, first_body_byte_or_None, length)], error or None)."""
    out = []
    i = 0
    while i < len(data):
        if len(data) - i < 5:
            return out, "a truncated record header at byte %d" % i
        ct, major, length = data[i], data[i + 1], int.from_bytes(data[i + 3:i + 5], "big")
        if ct not in CONTENT or major != 3 or length > MAX_RECORD:
            return out, "not a TLS record at byte %d: %r" % (i, data[i:i + 16])
        if i + 5 + length > len(data):
            return out, "a record cut short at byte %d (%d of %d bytes)" % (i, len(data) - i - 5, length)
        out.append((ct, data[i + 5] if length else None, length))
        i += 5 + length
    return out, None


def port_range(s):
    lo, hi = s.split("-")
    return int(lo), int(hi)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("--tls-port", type=int, default=5061)
    ap.add_argument("--sip-port", type=int, action="append", default=None)
    ap.add_argument("--port", type=int, action="append", default=[], help="a phone's SIP listening port")
    ap.add_argument("--strict", action="store_true", help="no frame at all may carry SIP/2.0")
    ap.add_argument("--min-conns", type=int, default=2)
    ap.add_argument("--relay", default=None, help="MIN-MAX: check the media went through the relay")
    ap.add_argument("--phone-port", type=int, action="append", default=[], help="a phone's RTP port")
    ap.add_argument("--min", type=int, default=100, help="relayed packets each way per phone port")
    ap.add_argument("--label", default="tls capture")
    a = ap.parse_args()
    sip_ports = a.sip_port or [5060]

    def fail(why):
        print("%s: FAILED: %s" % (a.label, why))
        sys.exit(1)

    # ---- TLS on the TLS port ----
    rows = tshark(a.pcap, "tcp.port == %d && tcp.len > 0" % a.tls_port,
                  ["tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.payload"])
    syns = tshark(a.pcap, "tcp.port == %d && tcp.flags.syn == 1 && tcp.flags.ack == 0" % a.tls_port,
                  ["tcp.stream"])
    streams = collections.defaultdict(lambda: {"c2s": [], "s2c": [], "client": None})
    for stream, sport, dport, seq, payload in rows:
        st = streams[int(stream)]
        d = "c2s" if int(dport) == a.tls_port else "s2c"
        if d == "c2s":
            st["client"] = int(sport)
        st[d].append((int(seq), bytes.fromhex(payload.replace(":", ""))))
    conns = 0
    totals = {"c2s": 0, "s2c": 0}
    appdata = {"c2s": 0, "s2c": 0}
    for sid in sorted(streams):
        st = streams[sid]
        figures = []
        for d, first_hs, what in (("c2s", 1, "ClientHello"), ("s2c", 2, "ServerHello")):
            data, gaps = reassemble(st[d])
            if gaps:
                fail("stream %d %s: %d gap(s) in the captured TCP payload (capture lost packets?)" % (sid, d, gaps))
            recs, err = records(data)
            if err:
                fail("stream %d (client port %s) %s is not TLS: %s" % (sid, st["client"], d, err))
            if not recs or recs[0][0] != 22 or recs[0][1] != first_hs:
                fail("stream %d %s does not start with a TLS %s (first record %s)" % (
                    sid, d, what, recs[0] if recs else None))
            n_app = sum(1 for r in recs if r[0] == 23)
            b_app = sum(r[2] for r in recs if r[0] == 23)
            if n_app == 0:
                fail("stream %d %s: no application data after the handshake" % (sid, d))
            totals[d] += len(data)
            appdata[d] += b_app
            figures.append("%s %d B in %d records (%d application data, %d B)" % (d, len(data), len(recs), n_app, b_app))
        conns += 1
        print("  TLS connection %d (client port %s): %s" % (sid, st["client"], "; ".join(figures)))
    if conns < a.min_conns:
        fail("%d TLS connection(s) with data on port %d (want >= %d)" % (conns, a.tls_port, a.min_conns))
    tls_frames = len(tshark(a.pcap, "tcp.port == %d" % a.tls_port, ["frame.number"]))

    # ---- no plaintext SIP anywhere ----
    ours = set(sip_ports) | {a.tls_port} | set(a.port) | {st["client"] for st in streams.values()}
    clear = tshark(a.pcap, 'frame contains "SIP/2.0"', ["frame.number", "udp.srcport", "tcp.srcport",
                                                        "udp.dstport", "tcp.dstport"])
    mine = [f for f in clear if {int(x) for x in f[1:] if x.isdigit()} & ours]
    if mine or (a.strict and clear):
        f = (mine or clear)[0]
        fail("%d frame(s) %scarry \"SIP/2.0\" in cleartext (first: frame %s, port %s -> %s)" % (
            len(mine or clear), "of ours " if mine else "", f[0], f[1] or f[2], f[3] or f[4]))
    foreign = len(clear)
    pf = " || ".join("udp.port == %d || tcp.port == %d" % (p, p) for p in sip_ports)
    plain = len(tshark(a.pcap, pf, ["frame.number"]))
    if plain:
        fail("%d packet(s) to or from the plaintext SIP port(s) %s" % (plain, sip_ports))
    total = len(tshark(a.pcap, "frame", ["frame.number"]))
    summary = ("%d TLS connections on port %d (%d SYNs), %d frames on it, %d B client->server / %d B "
               "server->client (application data %d B / %d B); of %d frames on lo none of ours with "
               "\"SIP/2.0\" (ports %s; %d such frames of other processes), none on port(s) %s"
               % (conns, a.tls_port, len(syns), tls_frames, totals["c2s"], totals["s2c"], appdata["c2s"],
                  appdata["s2c"], total, ",".join(map(str, sorted(ours))), foreign,
                  "/".join(map(str, sip_ports))))

    # ---- media through the relay ----
    if a.relay:
        if not a.phone_port:
            fail("--relay needs the phones' RTP ports (--phone-port)")
        lo, hi = port_range(a.relay)
        rtp = set(a.phone_port)
        phone = rtp | {p + 1 for p in rtp}
        relay = lambda p: lo <= p <= hi and p not in phone  # noqa: E731
        to_relay = collections.Counter()
        from_relay = collections.Counter()
        direct = other = 0
        for s, d in tshark(a.pcap, "udp && !icmp", ["udp.srcport", "udp.dstport"]):
            s, d = int(s), int(d)
            if s not in phone and d not in phone:
                continue  # not ours (a shared loopback)
            if s in phone and d in phone:
                direct += 1
            elif s in phone and relay(d):
                to_relay[s] += 1
            elif d in phone and relay(s):
                from_relay[d] += 1
            else:
                other += 1
        for p in sorted(rtp):
            print("  phone RTP port %d: %d packets to the relay, %d from it" % (p, to_relay[p], from_relay[p]))
        if direct:
            fail("%d UDP packet(s) went phone<->phone around the relay" % direct)
        if other:
            fail("%d UDP packet(s) between a phone port and a port outside the relay range %s" % (other, a.relay))
        short = [p for p in sorted(rtp) if to_relay[p] < a.min or from_relay[p] < a.min]
        if short:
            fail("phone RTP port(s) %s relayed fewer than %d packets each way" % (short, a.min))
        summary += "; media: %d phone RTP ports all relayed (fewest %d packets one way, want >= %d), none direct" % (
            len(rtp), min(min(to_relay[p], from_relay[p]) for p in rtp), a.min)
    print("%s: ok: %s" % (a.label, summary))


if __name__ == "__main__":
    main()
