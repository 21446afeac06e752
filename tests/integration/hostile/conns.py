#!/usr/bin/env python3
"""TCP connection defences (the server's config: connection_idle_timeout_s = IDLE,
message_timeout_s = MSG, max_connections_per_source = PER_SOURCE):
  A. per source: PER_SOURCE connections from one IP are accepted; the next one is refused or closed
     at once, i.e. before any of the first PER_SOURCE is closed
  B. a message with a bad Content-Length gets "SIP/2.0 400" and then the close; a message whose
     Content-Length is over max_message_bytes gets "SIP/2.0 513" and then the close
  C. IDLE_N idle connections (spread over --idle-sources) are closed after IDLE s (not before
     IDLE - 1 s; all within IDLE + SLACK s); SLOW_N slowloris connections (each first registers
     user `slow` over itself, then sends an unfinished request a few bytes a second) are closed MSG s
     after their first byte (not before MSG - 1; within MSG + SLACK); REG_IDLE registered connections
     that stay silent are still open when the last unregistered idle one has been closed (a live
     registration keeps its connection); meanwhile a new client registers over TCP and UDP (200).
A close is seen as recv() returning b"" or ECONNRESET (or a failing send).

Usage: conns.py --server 127.0.0.1:5070 --pid SERVER_PID [--idle-n 3000 --slow-n 200 ...]
"""
import argparse
import errno
import os
import queue
import resource
import selectors
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sipclient import SipClient, hostport, rand_token  # noqa: E402


def ip_range(spec):
    a, b = spec.split("-")
    base = a.rsplit(".", 1)[0]
    return ["%s.%d" % (base, i) for i in range(int(a.rsplit(".", 1)[1]), int(b) + 1)]


def rss_kb(pid):
    try:
        for ln in open("/proc/%d/status" % pid):
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    except (OSError, ValueError):
        pass
    return -1


def connect(src, server, timeout=15.0, blocking=False):
    """A TCP connection from src to server; non-blocking unless asked (then with timeout)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(server)
    if not blocking:
        s.setblocking(False)
    return s


def udp_sockets(spec, rcvbuf_force=0):
    """One UDP socket bound to each address of the range spec, with a 4 MiB send buffer (and a
    forced receive buffer of rcvbuf_force bytes, where the kernel allows it)."""
    socks = []
    for ip in ip_range(spec):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        if rcvbuf_force:
            try:
                s.setsockopt(socket.SOL_SOCKET, 33, rcvbuf_force)  # SO_RCVBUFFORCE
            except OSError:
                pass
        s.bind((ip, 0))
        socks.append(s)
    return socks


def peer_closed(s):
    """True if the server closed s (EOF or reset); data is read and dropped."""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def wait_closed(s, timeout):
    """Read until the server closes s or timeout; returns (data, closed)."""
    s.settimeout(1.0)
    data, end = b"", time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return data, True
        if not d:
            return data, True
        data += d
    return data, False


def phase_a(a):
    src = a.per_source_src
    socks = [connect(src, a.server) for _ in range(a.per_source)]
    t0 = time.monotonic()
    try:
        extra = connect(src, a.server)
    except OSError as e:
        print("A. per source: %d connections from %s open; #%d refused (%s)" % (a.per_source, src, a.per_source + 1, e))
        for s in socks:
            s.close()
        return None
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks + [extra]):
        sel.register(s, selectors.EVENT_READ, i)
    first_closed, end = None, time.monotonic() + 30
    while first_closed is None and time.monotonic() < end:
        for key, _ in sel.select(0.2):
            if peer_closed(key.fileobj):
                first_closed = key.data
                break
    dt = time.monotonic() - t0
    others_closed = sum(1 for s in socks if peer_closed(s))
    for s in socks + [extra]:
        s.close()
    if first_closed == a.per_source and others_closed == 0:
        print("A. per source: %d connections from %s open; #%d closed by the server after %.2f s, the others open"
              % (a.per_source, src, a.per_source + 1, dt))
        return None
    if first_closed is None:
        print("A. per source: connection #%d from %s still open after 30 s" % (a.per_source + 1, src))
        return "per-source limit: connection #%d from %s (limit %d) still open after 30 s" % (
            a.per_source + 1, src, a.per_source)
    print("A. per source: the first close was #%d after %.1f s" % (first_closed + 1, dt))
    return ("per-source limit: the first close among %d+1 connections from %s was #%d after %.1f s (%d of the first %d "
            "closed too): not the one over the limit" % (a.per_source, src, first_closed + 1, dt, others_closed, a.per_source))


def phase_b(a):
    errs = []
    s = connect(a.b_src, a.server, timeout=10, blocking=True)
    port = s.getsockname()[1]
    req = ("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP %s:%d;branch=z9hG4bK-%s\r\nMax-Forwards: 70\r\n"
           "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: %s@cl\r\nCSeq: 1 OPTIONS\r\n"
           "Content-Length: 12abc\r\n\r\n" % (a.b_src, port, rand_token(), rand_token()))
    s.sendall(req.encode())
    data, closed = wait_closed(s, 20)
    s.close()
    line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace") or "nothing"
    print("B. bad Content-Length (12abc): got %s, connection %s" % (line, "closed" if closed else "still open after 20 s"))
    if not data.startswith(b"SIP/2.0 400") or not closed:
        errs.append("bad Content-Length over TCP: got %r, %s (want SIP/2.0 400, then close)"
                    % (line, "closed" if closed else "not closed"))
    s = connect(a.b_src, a.server, timeout=10, blocking=True)
    port = s.getsockname()[1]
    req = ("MESSAGE sip:legit@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP %s:%d;branch=z9hG4bK-%s\r\nMax-Forwards: 70\r\n"
           "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:legit@127.0.0.1>\r\nCall-ID: %s@big\r\nCSeq: 1 MESSAGE\r\n"
           "Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n" % (a.b_src, port, rand_token(), rand_token()))
    s.sendall(req.encode())  # the head only: the declared length alone is over max_message_bytes
    data, closed = wait_closed(s, 20)
    s.close()
    line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace") or "nothing"
    print("B. Content-Length 100000 (> max_message_bytes): got %s, connection %s"
          % (line, "closed" if closed else "still open after 20 s"))
    if not data.startswith(b"SIP/2.0 513") or not closed:
        errs.append("over max_message_bytes over TCP: got %r, %s (want SIP/2.0 513, then close)"
                    % (line, "closed" if closed else "not closed"))
    return "; ".join(errs) or None


class Watch:
    """The close detector: its own thread, sockets handed over through a queue."""

    def __init__(self):
        self.q = queue.Queue()
        self.sel = selectors.DefaultSelector()
        self.info = {}       # fd -> dict(kind, t0, closed_at, sock)
        self.stop = False
        self.slow_payload = b"ab"
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def add(self, sock, kind, t0):
        self.q.put((sock, kind, t0))

    def close_of(self, d, now):
        if d["closed_at"] is None:
            d["closed_at"] = now
            try:
                self.sel.unregister(d["sock"])
            except (KeyError, ValueError):
                pass

    def run(self):
        last_trickle = time.monotonic()
        while not self.stop:
            while True:
                try:
                    sock, kind, t0 = self.q.get_nowait()
                except queue.Empty:
                    break
                d = {"kind": kind, "t0": t0, "closed_at": None, "sock": sock}
                self.info[sock.fileno()] = d
                self.sel.register(sock, selectors.EVENT_READ, d)
            for key, _ in self.sel.select(0.05):
                if peer_closed(key.fileobj):
                    self.close_of(key.data, time.monotonic())
            now = time.monotonic()
            if now - last_trickle >= 1.0:
                last_trickle = now
                for d in list(self.info.values()):
                    if d["kind"] == "slow" and d["closed_at"] is None:
                        try:
                            d["sock"].send(self.slow_payload)
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:
                            self.close_of(d, time.monotonic())

    def open_of(self, kind):
        return [d for d in list(self.info.values()) if d["kind"] == kind and d["closed_at"] is None]

    def times(self, kind):
        return [d["closed_at"] - d["t0"] for d in list(self.info.values()) if d["kind"] == kind and d["closed_at"]]


def fmt(ts):
    if not ts:
        return "none"
    return "min %.1f / median %.1f / max %.1f s" % (min(ts), statistics.median(ts), max(ts))


def phase_c(a):
    w = Watch()
    idle_srcs, slow_srcs = ip_range(a.idle_sources), ip_range(a.slow_sources)
    rss0 = rss_kb(a.pid)
    t_open = time.monotonic()
    stalls = 0
    for i in range(a.idle_n):
        t = time.monotonic()
        try:
            s = connect(idle_srcs[i % len(idle_srcs)], a.server)
        except OSError as e:
            w.stop = True
            return "could open only %d of %d idle connections (%s)" % (i, a.idle_n, e)
        now = time.monotonic()
        stalls += now - t > 0.5  # a SYN dropped (accept queue full) and sent again after 1 s
        w.add(s, "idle", now)
        # paced: an unpaced burst overruns the listen backlog (SYN dropped, retried after 1 s)
        ahead = t_open + (i + 1) / a.connect_rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    t_idle_open = time.monotonic() - t_open
    # registered connections: the slowloris ones (then an unfinished request) and the silent control group
    n_reg = 0
    for kind, n, srcs in (("slow", a.slow_n, slow_srcs), ("regidle", a.reg_idle, [a.reg_idle_src])):
        for i in range(n):
            try:
                c = SipClient(srcs[i % len(srcs)], a.server, "tcp")
                r = c.register("slow", "slow-pw", expires=600, timeout=10)
            except OSError as e:
                w.stop = True
                return "%s connection %d: %s" % (kind, i, e)
            if r is None or r.code != 200:
                w.stop = True
                return "%s connection %d: REGISTER over it got %s" % (kind, i, r.first if r else "no answer")
            n_reg += 1
            s = c.sock
            s.setblocking(False)
            if kind == "slow":
                s.send(("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP %s:%d;branch=z9hG4bK-%s\r\nX-Slow: "
                        % (c.src, c.port, rand_token())).encode())
            w.add(s, kind, time.monotonic())
    t_all_open = time.monotonic() - t_open
    rss1 = rss_kb(a.pid)
    print("C. opened %d idle connections from %s in %.1f s (%d connect(s) took > 0.5 s), then %d slowloris (registered) "
          "from %s and %d registered silent ones from %s (all open after %.1f s); server RSS %d -> %d kB"
          % (a.idle_n, a.idle_sources, t_idle_open, stalls, a.slow_n, a.slow_sources, a.reg_idle, a.reg_idle_src,
             t_all_open, rss0, rss1))
    # a new client meanwhile
    time.sleep(0.3)  # let the watcher take in the last ones
    open_now = a.idle_n + a.slow_n - len(w.times("idle")) - len(w.times("slow"))
    legit = []
    for tr in ("tcp", "udp"):
        try:
            c = SipClient(a.legit, a.server, tr)
            r = c.register("legit", "legit-pw", timeout=16)
            c.close()
            legit.append((tr, r.first if r else "no answer", r is not None and r.code == 200))
        except OSError as e:
            legit.append((tr, "error %s" % e, False))
    print("C. meanwhile (%d of the idle+slowloris connections still open) a new client from %s registers: %s"
          % (open_now, a.legit, ", ".join("%s %s" % (t, s) for t, s, _ in legit)))
    end = time.monotonic() + max(a.idle, a.msg) + a.slack
    while time.monotonic() < end and (len(w.times("idle")) < a.idle_n or len(w.times("slow")) < a.slow_n):
        time.sleep(0.2)
    reg_open_after = len(w.open_of("regidle"))
    t_done = time.monotonic() - t_open
    w.stop = True
    w.th.join(5)
    rss2 = rss_kb(a.pid)
    idle_t, slow_t = w.times("idle"), w.times("slow")
    print("C. idle connections closed: %d of %d, %s after connect (timeout %d s)" % (len(idle_t), a.idle_n, fmt(idle_t), a.idle))
    print("C. slowloris connections closed: %d of %d, %s after their first byte (timeout %d s)"
          % (len(slow_t), a.slow_n, fmt(slow_t), a.msg))
    print("C. registered silent connections still open when the idle ones were gone (%.1f s): %d of %d; RSS %d kB"
          % (t_done, reg_open_after, a.reg_idle, rss2))
    for d in list(w.info.values()):
        d["sock"].close()
    errs = []
    for tr, first, ok in legit:
        if not ok:
            errs.append("REGISTER over %s during the connection attack: %s" % (tr, first))
    if len(idle_t) < a.idle_n:
        errs.append("%d of %d idle connections not closed within %d s" % (a.idle_n - len(idle_t), a.idle_n, a.idle + a.slack))
    elif min(idle_t) < a.idle - 1:
        errs.append("idle connections closed too early (min %.1f s, timeout %d s)" % (min(idle_t), a.idle))
    if len(slow_t) < a.slow_n:
        errs.append("%d of %d slowloris connections not closed within %d s" % (a.slow_n - len(slow_t), a.slow_n, a.msg + a.slack))
    elif min(slow_t) < a.msg - 1:
        errs.append("slowloris connections closed too early (min %.1f s, message timeout %d s)" % (min(slow_t), a.msg))
    if a.reg_idle and reg_open_after < a.reg_idle:
        errs.append("%d of %d silent connections with a live registration were closed as idle"
                    % (a.reg_idle - reg_open_after, a.reg_idle))
    return "; ".join(errs) or None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", type=hostport, default=("127.0.0.1", 5070))
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--idle", type=int, default=5, help="the server's connection_idle_timeout_s")
    ap.add_argument("--msg", type=int, default=3, help="the server's message_timeout_s")
    ap.add_argument("--slack", type=int, default=40)
    ap.add_argument("--per-source", type=int, default=200, help="the server's max_connections_per_source")
    ap.add_argument("--per-source-src", default="127.0.0.28")
    ap.add_argument("--b-src", default="127.0.0.29")
    ap.add_argument("--idle-n", type=int, default=3000)
    ap.add_argument("--connect-rate", type=float, default=2000.0, help="idle connections opened per second")
    ap.add_argument("--idle-sources", default="127.0.0.10-25")
    ap.add_argument("--slow-n", type=int, default=200)
    ap.add_argument("--slow-sources", default="127.0.0.26-27")
    ap.add_argument("--reg-idle", type=int, default=5)
    ap.add_argument("--reg-idle-src", default="127.0.0.31")
    ap.add_argument("--legit", default="127.0.0.1")
    ap.add_argument("--phases", default="ABC")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    errs = []
    for ph, fn in (("A", phase_a), ("B", phase_b), ("C", phase_c)):
        if ph in a.phases:
            e = fn(a)
            if e:
                errs.append(e)
    if errs:
        print("; ".join(errs))
        return 1
    print("connections: per-source limit, 400/513 before close, idle and slowloris timeouts hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
