#!/usr/bin/env python3
"""A small client of rtpengine's "ng" control protocol (stdlib only), used by ng_compare.py and
kamailio-ng.sh.

Wire format (rtpengine, Kamailio's rtpengine module): one UDP datagram per message,
    COOKIE SP BENCODED-DICT
and the reply carries the same cookie. Bencode: integers i42e, byte strings 4:spam, lists l...e,
dictionaries d...e.

As a module:
    encode(value, sort_keys=False)  dict keys written in insertion order (as Kamailio sends them);
                                    str -> UTF-8 byte string, bytes as is, int, list/tuple, dict,
                                    Raw(b"...") inserted verbatim (for hostile input)
    decode(data) -> value           strict: the whole input must be one value; dict keys and byte
                                    strings come back as bytes; ValueError("... at byte N") otherwise
    Ng("127.0.0.1:2223").call(dict) -> reply dict (keys as str, values as decoded)
    Ng(...).exchange(datagram)       -> raw reply datagram (bytes) or None on timeout
    text(v)                          bytes -> str (lossless for ASCII/UTF-8, surrogateescape otherwise)

As a command (exit 0 on success, 1 on error/timeout, the reply printed as JSON-ish text):
    ng_client.py [--server IP:PORT] [--timeout S] ping
    ng_client.py [--server IP:PORT] wait [--timeout S]       ping until "pong" (readiness check)
    ng_client.py [--server IP:PORT] query CALL-ID
    ng_client.py [--server IP:PORT] list
    ng_client.py [--server IP:PORT] delete CALL-ID [FROM-TAG]
    ng_client.py [--server IP:PORT] totals CALL-ID           "rtp_packets=N rtp_bytes=N rtcp_packets=N ..."
    ng_client.py [--server IP:PORT] watch --seconds S        list + query every call every 0.25 s, until
        S seconds passed, or the calls seen are gone (deleted) for 1 s; last line
        "watch: calls=N gone=N max_rtp_packets=N max_rtp_bytes=N max_rtcp_packets=N polls=N errors=N"
    ng_client.py pcap FILE [--port 2223]                     the ng datagrams in a capture (tshark),
        one line each: time, direction, cookie, command and its keys in wire order / reply result;
        last line "pcap: requests=N replies=N offer=N answer=N delete=N ok=N error=N unanswered=N
        list_query_polls=N" (list and query are counted, not listed: a watcher's polls)
"""
import os
import socket
import sys
import time

__all__ = ["Raw", "encode", "decode", "text", "Ng", "NgTimeout", "split_reply"]


class Raw(bytes):
    """Bytes inserted into an encoding verbatim (for building malformed or pre-encoded messages)."""


def encode(v, sort_keys=False):
    out = []
    _enc(v, out, sort_keys)
    return b"".join(out)


def _enc(v, out, sort_keys):
    if isinstance(v, Raw):
        out.append(bytes(v))
    elif isinstance(v, bool):
        out.append(b"i%de" % int(v))
    elif isinstance(v, int):
        out.append(b"i%de" % v)
    elif isinstance(v, str):
        b = v.encode("utf-8", "surrogateescape")
        out.append(b"%d:" % len(b))
        out.append(b)
    elif isinstance(v, (bytes, bytearray)):
        out.append(b"%d:" % len(v))
        out.append(bytes(v))
    elif isinstance(v, (list, tuple)):
        out.append(b"l")
        for x in v:
            _enc(x, out, sort_keys)
        out.append(b"e")
    elif isinstance(v, dict):
        out.append(b"d")
        items = list(v.items())
        if sort_keys:
            items.sort(key=lambda kv: kv[0].encode() if isinstance(kv[0], str) else kv[0])
        for k, x in items:
            if not isinstance(k, (str, bytes)):
                raise TypeError("bencode dict key must be str/bytes: %r" % (k,))
            _enc(k, out, sort_keys)
            _enc(x, out, sort_keys)
        out.append(b"e")
    else:
        raise TypeError("cannot bencode %r" % (type(v),))


def decode(data, max_depth=200):
    """Decodes one bencoded value that spans all of data (iterative: deep nesting cannot overflow
    Python's stack; deeper than max_depth is refused). Dict keys and strings are bytes."""
    data = bytes(data)
    n = len(data)
    i = 0
    stack = []   # [container, pending_key_or_None]
    root = None
    have_root = False
    while True:
        if i >= n:
            raise ValueError("truncated at byte %d" % i)
        c = data[i]
        if c == 0x65 and stack:  # 'e' closes the innermost container
            cont, key = stack.pop()
            if isinstance(cont, dict) and key is not None:
                raise ValueError("dictionary key without value at byte %d" % i)
            i += 1
            val = cont
        elif c in (0x6C, 0x64):  # 'l', 'd'
            if len(stack) >= max_depth:
                raise ValueError("nesting deeper than %d at byte %d" % (max_depth, i))
            if stack and isinstance(stack[-1][0], dict) and stack[-1][1] is None:
                raise ValueError("dictionary key is not a byte string at byte %d" % i)
            stack.append([[] if c == 0x6C else {}, None])
            i += 1
            continue
        elif c == 0x69:  # 'i'
            j = data.find(b"e", i + 1)
            if j < 0:
                raise ValueError("truncated integer at byte %d" % i)
            s = data[i + 1:j]
            if not s or not (s.isdigit() or (s[:1] == b"-" and s[1:].isdigit())) \
                    or (len(s) > 1 and s[:1] == b"0") or s.startswith(b"-0"):
                raise ValueError("bad integer at byte %d" % i)
            if stack and isinstance(stack[-1][0], dict) and stack[-1][1] is None:
                raise ValueError("dictionary key is not a byte string at byte %d" % i)
            val = int(s)
            i = j + 1
        elif 0x30 <= c <= 0x39:
            j = data.find(b":", i)
            if j < 0 or not data[i:j].isdigit():
                raise ValueError("bad string length at byte %d" % i)
            ln = int(data[i:j])
            if j + 1 + ln > n:
                raise ValueError("string past the end at byte %d" % i)
            val = data[j + 1:j + 1 + ln]
            i = j + 1 + ln
        else:
            raise ValueError("unexpected byte %r at %d" % (bytes([c]), i))
        # place val
        if not stack:
            root, have_root = val, True
            break
        cont = stack[-1]
        if isinstance(cont[0], list):
            cont[0].append(val)
        elif cont[1] is None:
            cont[1] = val   # a key (bytes guaranteed above)
        else:
            cont[0][cont[1]] = val
            cont[1] = None
    if not have_root:
        raise ValueError("empty")
    if i != n:
        raise ValueError("trailing bytes at byte %d" % i)
    return root


def text(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "surrogateescape")
    return v


def strkeys(v):
    """Recursively: dict keys bytes -> str (values untouched except nested dicts/lists)."""
    if isinstance(v, dict):
        return {text(k): strkeys(x) for k, x in v.items()}
    if isinstance(v, list):
        return [strkeys(x) for x in v]
    return v


def split_reply(datagram):
    """(cookie bytes, body bytes) of a reply datagram; body None if there is no space."""
    ck, sp, body = datagram.partition(b" ")
    return (ck, body) if sp else (datagram, None)


def new_cookie():
    return ("%d_%s" % (os.getpid(), os.urandom(5).hex())).encode()


class NgTimeout(Exception):
    pass


def parse_addr(s):
    s = s.split(":", 1)[1] if s.startswith("udp:") else s
    host, port = s.rsplit(":", 1)
    return host, int(port)


class Ng:
    """One UDP socket talking to one ng server."""

    def __init__(self, server, timeout=2.0, bind="127.0.0.1"):
        self.addr = parse_addr(server) if isinstance(server, str) else server
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((bind, 0))

    def close(self):
        self.sock.close()

    def drain(self):
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(65535)
        except (BlockingIOError, OSError):
            pass
        finally:
            self.sock.setblocking(True)

    def exchange(self, datagram, timeout=None, want_cookie=None):
        """Sends datagram; returns the first reply datagram (whose cookie is want_cookie, if given)
        or None after timeout seconds."""
        self.sock.sendto(datagram, self.addr)
        return self.recv(timeout, want_cookie)

    def recv(self, timeout=None, want_cookie=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, src = self.sock.recvfrom(65535)
            except socket.timeout:
                return None
            if src != self.addr:
                continue
            if want_cookie is None or split_reply(data)[0] == want_cookie:
                return data

    def call_raw(self, msg, cookie=None, timeout=None):
        """Sends dict msg (encoded in insertion order) or pre-encoded bytes; returns
        (reply dict with str keys, raw reply datagram, request datagram). Raises NgTimeout."""
        cookie = cookie or new_cookie()
        body = msg if isinstance(msg, (bytes, bytearray)) else encode(msg)
        req = cookie + b" " + bytes(body)
        data = self.exchange(req, timeout, want_cookie=cookie)
        if data is None:
            raise NgTimeout("no reply from %s:%d within %.1f s to %r" % (
                self.addr[0], self.addr[1], self.timeout if timeout is None else timeout, req[:200]))
        _, rbody = split_reply(data)
        return strkeys(decode(rbody)), data, req

    def call(self, msg, cookie=None, timeout=None):
        return self.call_raw(msg, cookie, timeout)[0]


def show(v, indent=0):
    pad = "  " * indent
    if isinstance(v, dict):
        lines = []
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                lines.append("%s%s:" % (pad, text(k)))
                lines.append(show(x, indent + 1))
            else:
                lines.append("%s%s: %s" % (pad, text(k), _leaf(x)))
        return "\n".join(lines)
    if isinstance(v, list):
        if all(not isinstance(x, (dict, list)) for x in v):
            return pad + "[" + ", ".join(_leaf(x) for x in v) + "]"
        return "\n".join(show(x, indent) if isinstance(x, (dict, list)) else pad + _leaf(x) for x in v)
    return pad + _leaf(v)


def _leaf(x):
    if isinstance(x, (bytes, bytearray)):
        s = text(x)
        return repr(s) if ("\n" in s or len(s) > 200) else s
    if isinstance(x, list):
        return "[" + ", ".join(_leaf(y) for y in x) + "]"
    if isinstance(x, dict):
        return "{}"
    return str(x)


def totals_line(q):
    t = q.get("totals") or {}
    parts = []
    for proto in ("RTP", "RTCP"):
        d = t.get(proto) or {}
        for f in ("packets", "bytes", "errors"):
            parts.append("%s_%s=%s" % (proto.lower(), f, d.get(f, "?")))
    return " ".join(parts)


def watch(server, seconds, interval=0.25):
    ng = Ng(server, timeout=1.0)
    t0 = time.monotonic()
    seen = {}      # call-id -> max totals
    gone = set()
    polls = errors = 0
    empty_since = None
    last_print = 0.0
    while time.monotonic() - t0 < seconds:
        polls += 1
        try:
            calls = ng.call({"command": "list"}).get("calls")
            calls = [text(c) for c in calls] if isinstance(calls, list) else []
        except (NgTimeout, ValueError):
            errors += 1
            calls = []
        now = time.monotonic() - t0
        for c in calls:
            try:
                q = ng.call({"command": "query", "call-id": c})
            except (NgTimeout, ValueError):
                errors += 1
                continue
            if q.get("result") != b"ok":
                continue
            t = q.get("totals") or {}
            cur = {"rtp_packets": (t.get("RTP") or {}).get("packets", 0),
                   "rtp_bytes": (t.get("RTP") or {}).get("bytes", 0),
                   "rtcp_packets": (t.get("RTCP") or {}).get("packets", 0)}
            m = seen.setdefault(c, {"first": now, "rtp_packets": 0, "rtp_bytes": 0, "rtcp_packets": 0})
            for k, v in cur.items():
                if isinstance(v, int) and v > m[k]:
                    m[k] = v
            m["last"] = now
            if now - last_print >= 1.0:
                last_print = now
                print("t=%.1fs %s: %s" % (now, c, totals_line(q)), flush=True)
        for c in seen:
            if c not in calls and c not in gone:
                gone.add(c)
                print("t=%.1fs %s: gone from list" % (now, c), flush=True)
        if seen and not calls:
            empty_since = empty_since if empty_since is not None else now
            if now - empty_since >= 1.0:
                break
        else:
            empty_since = None
        time.sleep(interval)
    mx = lambda k: max((m[k] for m in seen.values()), default=0)
    for c, m in seen.items():
        print("%s: seen %.1f-%.1fs, max rtp_packets=%d rtp_bytes=%d rtcp_packets=%d" % (
            c, m["first"], m.get("last", m["first"]), m["rtp_packets"], m["rtp_bytes"], m["rtcp_packets"]))
    print("watch: calls=%d gone=%d max_rtp_packets=%d max_rtp_bytes=%d max_rtcp_packets=%d polls=%d errors=%d" % (
        len(seen), len(gone), mx("rtp_packets"), mx("rtp_bytes"), mx("rtcp_packets"), polls, errors))
    return 0


def pcap(path, port):
    import subprocess
    out = subprocess.run(["tshark", "-r", path, "-Y", "udp.port == %d" % port, "-T", "fields", "-E", "separator=;",
                          "-e", "frame.time_relative", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.payload"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False).stdout
    # list/query (a watcher's polls) are counted apart: a query racing a delete may fail legitimately
    n = {"requests": 0, "replies": 0, "offer": 0, "answer": 0, "delete": 0, "ok": 0, "error": 0, "polls": 0}
    pending = {}
    quiet = ("list", "query")
    for line in out.splitlines():
        f = line.split(";")
        if len(f) < 4 or not f[3]:
            continue
        t, sp, dp, data = float(f[0]), int(f[1]), int(f[2]), bytes.fromhex(f[3].replace(":", ""))
        ck, body = split_reply(data)
        try:
            d = decode(body) if body is not None else None
        except ValueError as e:
            print("%8.3f %s cookie=%s undecodable (%s): %r" % (t, "->" if dp == port else "<-", text(ck), e, data[:100]))
            continue
        d = strkeys(d) if isinstance(d, dict) else d
        if dp == port:
            cmd = text(d.get("command")) if isinstance(d, dict) else "?"
            pending[ck] = cmd
            if cmd in quiet:
                n["polls"] += 1
                continue
            n["requests"] += 1
            if cmd in n:
                n[cmd] += 1
            keys = list(d) if isinstance(d, dict) else []
            extra = []
            for k in ("supports", "replace", "flags", "ICE", "received-from", "call-id"):
                if isinstance(d, dict) and k in d:
                    v = d[k]
                    extra.append("%s=%s" % (k, "[" + ",".join(text(x) for x in v) + "]" if isinstance(v, list) else text(v)))
            print("%8.3f -> %-5s %-10s keys: %s  %s" % (t, sp, cmd, ",".join(keys), " ".join(extra)))
        else:
            cmd = pending.pop(ck, "?")
            if cmd in quiet:
                continue
            n["replies"] += 1
            res = text(d.get("result")) if isinstance(d, dict) else "?"
            if res in ("ok", "pong"):
                n["ok"] += 1
            else:
                n["error"] += 1
            why = text(d.get("error-reason", b"")) if isinstance(d, dict) else ""
            print("%8.3f <- %-5s %-10s result: %s %s(%d bytes; keys %s)" % (
                t, dp, cmd, res, ("error-reason: %s " % why) if why else "", len(data),
                ",".join(d) if isinstance(d, dict) else "?"))
    unanswered = sum(1 for c in pending.values() if c not in quiet)
    print("pcap: requests=%d replies=%d offer=%d answer=%d delete=%d ok=%d error=%d unanswered=%d list_query_polls=%d" % (
        n["requests"], n["replies"], n["offer"], n["answer"], n["delete"], n["ok"], n["error"], unanswered, n["polls"]))
    return 0


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="rtpengine ng client")
    ap.add_argument("--server", default="127.0.0.1:2223")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="watch: at most this long")
    ap.add_argument("--port", type=int, default=2223, help="pcap: the ng server's port")
    ap.add_argument("cmd", choices=["ping", "wait", "query", "list", "delete", "totals", "watch", "pcap"])
    ap.add_argument("args", nargs="*")
    a = ap.parse_args(argv)
    if a.cmd == "watch":
        return watch(a.server, a.seconds)
    if a.cmd == "pcap":
        if not a.args:
            ap.error("pcap needs a capture file")
        return pcap(a.args[0], a.port)
    if a.cmd == "wait":
        deadline = time.monotonic() + a.timeout
        ng = Ng(a.server, timeout=0.3)
        while time.monotonic() < deadline:
            try:
                r = ng.call({"command": "ping"})
                if r.get("result") == b"pong":
                    print("pong from %s" % a.server)
                    return 0
            except (NgTimeout, ValueError, OSError):
                pass
            time.sleep(0.1)
        print("no pong from %s within %.1f s" % (a.server, a.timeout))
        return 1
    ng = Ng(a.server, timeout=a.timeout)
    msg = {"command": a.cmd if a.cmd != "totals" else "query"}
    if a.cmd in ("query", "delete", "totals"):
        if not a.args:
            ap.error("%s needs a call-id" % a.cmd)
        msg["call-id"] = a.args[0]
        if a.cmd == "delete" and len(a.args) > 1:
            msg["from-tag"] = a.args[1]
    try:
        r = ng.call(msg)
    except NgTimeout as e:
        print(e)
        return 1
    if a.cmd == "totals":
        print(totals_line(r))
    else:
        print(show(r))
    ok = r.get("result") in (b"ok", b"pong")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
