#!/usr/bin/env python3
"""Checks from a capture (pcap on lo) that every media packet of a call went through the server's relay.

Which ports are whose, from the SIP in the same capture (tshark):
  * phone media ports: the m= ports of the SDP that the phones sent TO the server (udp.dstport is one of
    --sip-port), each with its RTCP port (+1);
  * relay ports: the m= ports of the SDP that the server sent (udp.srcport is one of --sip-port), i.e.
    the server's rewrite; each must be inside --relay (MIN-MAX), with its RTCP port (+1).
Every UDP packet that is not SIP (neither port a --sip-port, not decoded as SIP) and has a phone media
port at one end is then classified by its other end:
  relayed  the other end is a relay port (inside --relay)
  direct   the other end is another phone media port (phone<->phone, around the relay)
  other    anything else (an address the server did not hand out)
The check passes only if: the server rewrote every SDP it sent to a relay port in the range, there is
no direct and no other packet, and every phone RTP port sent >= --min packets to the relay and received
>= --min from it (so both directions of every call were relayed). Other traffic on lo (packets with no
phone media port at either end) is ignored, so a shared loopback does not disturb the check.

Usage: relay_capture.py PCAP [--relay 30000-39999] [--sip-port 5060 ...] [--min 100] [--label NAME]
Prints per-phone figures and a last line "NAME: ok: ..." or "NAME: FAILED: reason"; exit 0/1.
"""
import argparse
import subprocess
import sys


def tshark(pcap, display_filter, fields):
    cmd = ["tshark", "-r", pcap, "-Y", display_filter, "-T", "fields", "-E", "separator=;", "-E", "occurrence=a",
           "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False, text=True).stdout
    return [line.split(";") for line in out.splitlines() if line.strip()]


def ports(field):
    return [int(p) for p in field.split(",") if p.strip().isdigit() and int(p) > 0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("--relay", default="30000-39999", help="the relay's port range MIN-MAX")
    ap.add_argument("--sip-port", type=int, action="append", default=[], help="the server's SIP port(s), default 5060")
    ap.add_argument("--min", type=int, default=100, help="minimum packets each way per phone RTP port")
    ap.add_argument("--label", default="relay capture")
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.relay.split("-"))
    sip_ports = set(a.sip_port or [5060])
    in_range = lambda p: lo <= p <= hi

    def fail(reason):
        print("%s: FAILED: %s" % (a.label, reason))
        return 1

    phone_rtp, relay_rtp = set(), set()
    for src, dst, mports in tshark(a.pcap, "sip && sdp", ["udp.srcport", "udp.dstport", "sdp.media.port"]):
        if not src or not dst:
            continue  # SIP over TCP: not used by these tests
        src, dst = int(src), int(dst)
        if dst in sip_ports and src not in sip_ports:
            phone_rtp.update(ports(mports))
        elif src in sip_ports and dst not in sip_ports:
            relay_rtp.update(ports(mports))
    if not phone_rtp:
        return fail("no SDP from a phone to the server in the capture")
    if not relay_rtp:
        return fail("no SDP from the server to a phone in the capture")
    outside = sorted(p for p in relay_rtp if not in_range(p))
    if outside:
        return fail("the server handed out media ports outside %s: %s (phones' own ports: %s)" % (
            a.relay, outside, sorted(phone_rtp)))
    phone_rtp -= relay_rtp  # a relay port is never a phone's, even where the ranges overlap
    phone = phone_rtp | {p + 1 for p in phone_rtp}

    per = {p: {"to_relay": 0, "from_relay": 0} for p in sorted(phone)}
    direct, other = [], []
    for src, dst in tshark(a.pcap, "udp && !sip && !icmp", ["udp.srcport", "udp.dstport"]):
        if not src or not dst:
            continue
        src, dst = int(src), int(dst)
        if src in sip_ports or dst in sip_ports or (src not in phone and dst not in phone):
            continue
        if src in phone and dst in phone:
            direct.append((src, dst))
        elif src in phone and in_range(dst):
            per[src]["to_relay"] += 1
        elif dst in phone and in_range(src):
            per[dst]["from_relay"] += 1
        else:
            other.append((src, dst))
    relayed = sum(v["to_relay"] + v["from_relay"] for v in per.values())
    for p in sorted(phone_rtp):
        print("  phone RTP :%d -> relay %d, relay -> :%d %d; RTCP :%d -> relay %d, relay -> :%d %d" % (
            p, per[p]["to_relay"], p, per[p]["from_relay"],
            p + 1, per[p + 1]["to_relay"], p + 1, per[p + 1]["from_relay"]))
    if direct:
        return fail("%d packets went directly phone<->phone around the relay, e.g. %s" % (len(direct), direct[:3]))
    if other:
        return fail("%d packets between a phone and a port outside the relay range %s, e.g. %s" % (
            len(other), a.relay, other[:3]))
    low = ["%d (to %d, from %d)" % (p, per[p]["to_relay"], per[p]["from_relay"]) for p in sorted(phone_rtp)
           if per[p]["to_relay"] < a.min or per[p]["from_relay"] < a.min]
    if low:
        return fail("fewer than %d relayed packets each way at phone RTP port(s) %s" % (a.min, ", ".join(low)))
    print("%s: ok: %d packets relayed (%d phone media ports, relay ports %s, all in %s), 0 direct, 0 elsewhere" % (
        a.label, relayed, len(phone_rtp), sorted(relay_rtp), a.relay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
