#!/usr/bin/env python3
"""Cost of crossing the Python binding, rvoip (UniFFI over ctypes) vs PJSIP's pjsua2 (SWIG), in
the same run on the same machine:

  * a trivial method (rvoip Endpoint.call_count / pjsua2 Endpoint.libGetState),
  * a record back (rvoip Call.stats, 17 fields, on a live call / pjsua2 Account.getInfo, 9),
  * rvoip only: call setup make_call → Connected as the app sees it (events through the listener).

    python3 benches/bindings_overhead.py [N]      (rvoip from `pip install ./bindings/python`)

Numbers are µs per call (median of 5 rounds of N calls). Needs pjsua2-python for the reference.
"""

import asyncio
import statistics
import sys
import threading
import time

import rvoip

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


def per_call_us(f, n=N, rounds=5):
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            f()
        out.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(out)


class Count(rvoip.EndpointListener):
    def __init__(self):
        self.n = 0
        self.connected = threading.Event()
        self.ended = threading.Event()

    def on_event(self, e):
        self.n += 1
        if e.is_incoming_call():
            self.ep.call(e.call_id).answer(rvoip.CallOptions(
                source=rvoip.AudioSource.silence(), sink=rvoip.AudioSink.discard()))
        if e.is_call_state_changed() and e.state.is_connected():
            self.connected.set()
        if e.is_call_state_changed() and e.state.is_ended():
            self.ended.set()


def rvoip_figures():
    server = rvoip.Server(rvoip.ServerOptions(listen=["udp:127.0.0.1:0"], domain="127.0.0.1",
                                              users={"alice": "apw", "bob": "bpw"}))
    server.start()
    reg = f"127.0.0.1:{server.port(rvoip.Transport.UDP)}"
    eps, counts, accs = [], [], []
    for user, pw in (("alice", "apw"), ("bob", "bpw")):
        ep = rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", stats_interval_ms=0))
        c = Count()
        c.ep = ep
        c.sub = ep.subscribe(c)
        acc = ep.add_account(rvoip.AccountOptions(aor=f"sip:{user}@127.0.0.1", password=pw,
                                                  server=reg))
        asyncio.run(acc.register())
        eps.append(ep), counts.append(c), accs.append(acc)
    alice, bob = eps
    trivial = per_call_us(alice.call_count)
    call = asyncio.run(alice.make_call("sip:bob@127.0.0.1", account=accs[0],
                                       options=rvoip.CallOptions(
                                           source=rvoip.AudioSource.silence(),
                                           sink=rvoip.AudioSink.discard())))
    counts[0].connected.wait(5)
    record = per_call_us(call.stats, n=N // 4)
    # Call setup + teardown, end to end through the server, as the app sees it.
    setups = []
    for _ in range(20):
        for c in counts:
            c.connected.clear(), c.ended.clear()
        t = time.perf_counter()
        cl = asyncio.run(alice.make_call("sip:bob@127.0.0.1", account=accs[0],
                                         options=rvoip.CallOptions(
                                             source=rvoip.AudioSource.silence(),
                                             sink=rvoip.AudioSink.discard())))
        counts[0].connected.wait(5)
        setups.append((time.perf_counter() - t) * 1e3)
        cl.hangup()
        counts[1].ended.wait(5)
    call.hangup()
    for ep in eps:
        ep.shutdown()
    server.stop()
    return trivial, record, statistics.median(setups), max(setups)


def pjsua2_figures():
    import pjsua2 as pj

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    cfg.uaConfig.threadCnt = 1
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    trivial = per_call_us(ep.libGetState)

    acfg = pj.AccountConfig()
    acfg.idUri = "sip:self@127.0.0.1"
    acc = pj.Account()
    acc.create(acfg)
    record = per_call_us(acc.getInfo, n=N // 4)
    acc.shutdown()
    ep.libDestroy()
    return trivial, record


def main():
    r_triv, r_rec, r_setup, r_setup_max = rvoip_figures()
    print(f"rvoip  (UniFFI/ctypes): trivial method {r_triv:6.2f} µs, Call.stats() record {r_rec:6.2f} µs, "
          f"call setup make→connected median {r_setup:.2f} ms (max {r_setup_max:.2f} ms, 20 calls)")
    try:
        p_triv, p_rec = pjsua2_figures()
        print(f"pjsua2 (SWIG)         : trivial method {p_triv:6.2f} µs, Account.getInfo() record {p_rec:6.2f} µs")
        print(f"ratio rvoip/pjsua2    : trivial {r_triv / p_triv:.2f}x, record {r_rec / p_rec:.2f}x")
    except Exception as e:  # the reference is optional; say why it is missing
        print(f"pjsua2 reference not measured: {e!r}")


if __name__ == "__main__":
    main()
