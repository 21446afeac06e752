#!/usr/bin/env python3
"""Checks from a capture (pcap on lo, tshark) that the media of SRTP calls was not plaintext audio.

Every UDP packet with a phone RTP port (--phone-port, repeatable) at one end and a payload that starts
like RTP version 2 (first byte 0x80..0xBF, payload type not 72..76 = RTCP) is taken as one media packet.
Its payload after the 12-byte header (and CSRCs/extension, when the header says so) is decoded as if it
were plaintext G.711 (mu-law, and A-law), and the share of the energy at each --tone HZ is measured per
20 ms block (Goertzel, as tone_share.py). Plaintext G.711 of a sine gives a share near 1.0; SRTP's
AES-CM or GCM ciphertext decodes to white noise, a share near 20 ms * 2 Hz resolution ~ 0.01.

Before judging, the detector checks itself on a synthetic plaintext mu-law and A-law 440 Hz payload
(share must be >= 0.9), so the check can fail.

Passes when >= --min media packets were seen for each phone port and no tone's share is >= --max (0.2)
for any phone port. Also prints the number of packets whose size says they carry an SRTP tag (payload
length 160 + 4/10/16 for 20 ms of G.711).

Usage: srtp_capture.py PCAP --phone-port P [...] [--tone 440 ...] [--min 100] [--max 0.2] [--label NAME]
Prints the figures and a last line "NAME: ok: ..." or "NAME: FAILED: reason"; exit 0/1.
"""
import argparse
import collections
import math
import subprocess
import sys


def ulaw(b):
    b = ~b & 0xFF
    sign, exp, man = b & 0x80, (b >> 4) & 7, b & 0x0F
    v = ((man << 3) + 0x84) << exp
    v -= 0x84
    return -v if sign else v


def alaw(b):
    b ^= 0x55
    sign, exp, man = b & 0x80, (b >> 4) & 7, b & 0x0F
    v = (man << 4) + 8 if exp == 0 else ((man << 4) + 0x108) << (exp - 1)
    return v if sign else -v


ULAW = [ulaw(i) for i in range(256)]
ALAW = [alaw(i) for i in range(256)]


def share(samples, hz, rate=8000, block=160):
    """Energy share at hz per block, summed over blocks (Goertzel)."""
    num = den = 0.0
    k = 2 * math.cos(2 * math.pi * hz / rate)
    for i in range(0, len(samples) - block + 1, block):
        s1 = s2 = 0.0
        energy = 0.0
        for x in samples[i:i + block]:
            s0 = x + k * s1 - s2
            s2, s1 = s1, s0
            energy += x * x
        power = s1 * s1 + s2 * s2 - k * s1 * s2
        num += 2 * power / block
        den += energy
    return num / den if den else 0.0


def rtp_payload(p):
    if len(p) < 12 or not 0x80 <= p[0] <= 0xBF or 72 <= (p[1] & 0x7F) <= 76:
        return None
    off = 12 + 4 * (p[0] & 0x0F)
    if p[0] & 0x10 and len(p) >= off + 4:
        off += 4 + 4 * int.from_bytes(p[off + 2:off + 4], "big")
    return p[off:]


def self_test():
    tone = [int(8000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(8000)]
    enc_u = bytes(min(range(256), key=lambda c: abs(ULAW[c] - x)) for x in tone[:1600])
    enc_a = bytes(min(range(256), key=lambda c: abs(ALAW[c] - x)) for x in tone[:1600])
    su = share([ULAW[b] for b in enc_u], 440)
    sa = share([ALAW[b] for b in enc_a], 440)
    if su < 0.9 or sa < 0.9:
        raise SystemExit("self-test: the detector misses plaintext G.711 (%.2f / %.2f)" % (su, sa))
    return su, sa


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("--phone-port", type=int, action="append", default=[])
    ap.add_argument("--tone", type=float, action="append", default=[])
    ap.add_argument("--min", type=int, default=100)
    ap.add_argument("--max", type=float, default=0.2)
    ap.add_argument("--label", default="srtp")
    a = ap.parse_args()
    tones = a.tone or [440.0]
    label = a.label
    su, sa = self_test()
    if not a.phone_port:
        print("%s: FAILED: no --phone-port" % label)
        return 1
    flt = "udp && (" + " || ".join("udp.port == %d" % p for p in a.phone_port) + ")"
    r = subprocess.run(["tshark", "-r", a.pcap, "-Y", flt, "-T", "fields", "-E", "separator=;",
                        "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.payload"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("%s: FAILED: tshark: %s" % (label, r.stderr.strip()[:300]))
        return 1
    per = collections.defaultdict(list)
    tagged = collections.Counter()
    for line in r.stdout.splitlines():
        parts = line.split(";")
        if len(parts) != 3 or not parts[2]:
            continue
        sport, dport, hexp = int(parts[0]), int(parts[1]), parts[2].replace(":", "")
        try:
            p = bytes.fromhex(hexp)
        except ValueError:
            continue
        pl = rtp_payload(p)
        if pl is None:
            continue
        port = sport if sport in a.phone_port else dport
        per[port].append(pl)
        if len(pl) in (164, 170, 176):
            tagged[port] += 1
    print("%s: detector self-test on plaintext 440 Hz: mu-law %.2f, A-law %.2f" % (label, su, sa))
    bad = []
    for port in a.phone_port:
        pls = per.get(port, [])
        if len(pls) < a.min:
            bad.append("phone port %d: %d media packets (want >= %d)" % (port, len(pls), a.min))
            continue
        body = pls[25:] or pls
        mu = [ULAW[b] for pl in body for b in pl[:160]]
        al = [ALAW[b] for pl in body for b in pl[:160]]
        worst = 0.0
        for hz in tones:
            worst = max(worst, share(mu, hz), share(al, hz))
        print("%s: phone port %d: %d media packets (%d with an SRTP-sized payload), largest tone share "
              "read as plaintext G.711 %.3f" % (label, port, len(pls), tagged[port], worst))
        if worst >= a.max:
            bad.append("phone port %d: the payload reads as plaintext audio (tone share %.2f)" % (port, worst))
    if bad:
        print("%s: FAILED: %s" % (label, "; ".join(bad)))
        return 1
    print("%s: ok: %d phone ports, no plaintext audio on the wire" % (label, len(a.phone_port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
