#!/usr/bin/env python3
"""PJSIP (pjsua2) interop check against a SIP registrar + record-routing proxy.

One pjsua2 Endpoint (UDP on 127.0.0.1, null audio, no STUN/ICE, main-thread polling) with two
accounts, user0003 and user0004 (password "secret", realm "*"). Both REGISTER (401 challenge answered
by pjsua), then user0003 calls sip:user0004@127.0.0.1 through the server (INVITE 407 challenge answered
by pjsua); user0004 auto-answers 200; the call is held ~2 s and hung up by the caller (BYE); both
accounts then unregister.

Exit 0 only if: both registrations got 200, the caller's call reached CONFIRMED, the BYE got 200,
both calls reached DISCONNECTED and both un-REGISTERs got 200. Prints one summary line (last line).
The full pjsua log (SIP messages at level 5) goes to --log; the summary also reports the digest
algorithm pjsua put in its REGISTER Authorization / INVITE Proxy-Authorization headers.

Usage: pjsip_call.py [--server 127.0.0.1:5060] [--log FILE] [--port 0] [--hold 2]
"""
import argparse
import gc
import re
import sys
import time

import pjsua2 as pj

TIMEOUT = 10.0  # seconds for each wait step


def now():
    return time.monotonic()


class Acc(pj.Account):
    def __init__(self, name, rt):
        pj.Account.__init__(self)
        self.name = name
        self.rt = rt
        self.reg_codes = []        # every onRegState code
        self.calls = []            # incoming calls (kept referenced)

    def onRegState(self, prm):
        self.reg_codes.append((prm.code, prm.expiration))
        self.rt.note("%s reg state code=%d reason=%s expires=%d" % (self.name, prm.code, prm.reason, prm.expiration))

    def onIncomingCall(self, prm):
        c = Call(self, self.rt, "%s(uas)" % self.name, prm.callId)
        self.calls.append(c)
        op = pj.CallOpParam()
        op.statusCode = 200
        c.answer(op)
        self.rt.note("%s incoming call answered 200" % self.name)


class Call(pj.Call):
    def __init__(self, acc, rt, name, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.rt = rt
        self.name = name
        self.states = []
        self.last_code = None
        self.bye_code = None       # final response to the BYE we sent (from the message log)

    def onCallState(self, prm):
        ci = self.getInfo()
        self.states.append(ci.state)
        self.last_code = ci.lastStatusCode
        self.rt.note("%s call state %s last=%d %s" % (self.name, ci.stateText, ci.lastStatusCode, ci.lastReason))

    def confirmed(self):
        return pj.PJSIP_INV_STATE_CONFIRMED in self.states

    def disconnected(self):
        return pj.PJSIP_INV_STATE_DISCONNECTED in self.states


class Log(pj.LogWriter):
    """Receives every pjsua log entry (level <= 5, including the TX/RX SIP messages): keeps them for
    the checks below and appends them to the log file."""

    def __init__(self, path):
        pj.LogWriter.__init__(self)
        self.f = open(path, "a", encoding="utf-8", errors="replace")
        self.msgs = []             # (direction, first line of the SIP message, full text)

    def write(self, entry):
        m = entry.msg
        self.f.write(m if m.endswith("\n") else m + "\n")
        h = re.search(r"\b(TX|RX) \d+ bytes (Request|Response) msg \S+ \(\w+\) (?:to|from) \S+ [\d.]+:\d+:\n(.*)", m, re.S)
        if h:
            body = h.group(3)
            self.msgs.append((h.group(1), body.split("\n", 1)[0].strip(), body))

    def close(self):
        self.f.close()

    def responses(self, direction, method):
        """Status codes of responses to METHOD seen in DIRECTION (TX or RX)."""
        out = []
        for d, first, body in self.msgs:
            if d != direction or not first.startswith("SIP/2.0 "):
                continue
            cs = re.search(r"^CSeq:\s*\d+\s+(\S+)", body, re.M | re.I)
            if cs and cs.group(1) == method:
                out.append(int(first.split()[1]))
        return out

    def algorithms(self, header):
        """Digest algorithms in HEADER (Authorization / Proxy-Authorization) of the requests we sent."""
        out = []
        for d, first, body in self.msgs:
            if d != "TX":
                continue
            for m in re.finditer(r"^%s:\s*Digest\s+(.*)$" % header, body, re.M | re.I):
                alg = re.search(r"algorithm=\"?([A-Za-z0-9-]+)", m.group(1))
                name = alg.group(1).upper() if alg else "(none)"
                if name not in out:
                    out.append(name)
        return out


class Runtime:
    def __init__(self, ep, verbose):
        self.ep = ep
        self.verbose = verbose

    def note(self, s):
        if self.verbose:
            print("  [%.3f] %s" % (now() - T0, s), flush=True)

    def poll_until(self, cond, timeout=TIMEOUT):
        end = now() + timeout
        while now() < end:
            if cond():
                return True
            self.ep.libHandleEvents(10)
        return cond()

    def sleep(self, secs):
        end = now() + secs
        while now() < end:
            self.ep.libHandleEvents(10)


T0 = now()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="127.0.0.1:5060", help="registrar/proxy host:port (UDP)")
    ap.add_argument("--domain", default="127.0.0.1")
    ap.add_argument("--log", default="pjsua.log", help="pjsua log file (level 5, SIP messages)")
    ap.add_argument("--port", type=int, default=0, help="local UDP port (0 = any)")
    ap.add_argument("--hold", type=float, default=2.0, help="seconds to hold the confirmed call")
    ap.add_argument("--caller", default="user0003")
    ap.add_argument("--callee", default="user0004")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = "pjsua2-rvoip-interop"
    cfg.medConfig.threadCnt = 0
    log = Log(a.log)
    cfg.logConfig.level = 5
    cfg.logConfig.consoleLevel = 5     # everything up to level 5 goes to the writer (not the console)
    cfg.logConfig.writer = log
    cfg.logConfig.decor = pj.PJ_LOG_HAS_TIME | pj.PJ_LOG_HAS_MICRO_SEC | pj.PJ_LOG_HAS_SENDER | pj.PJ_LOG_HAS_INDENT
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()

    tc = pj.TransportConfig()
    tc.port = a.port
    tc.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    ep.libStart()
    rt = Runtime(ep, not a.quiet)

    res = {"reg": {}, "unreg": {}}
    accs = {}
    caller_call = None
    ok = False
    reason = "?"
    try:
        for user in (a.caller, a.callee):
            ac = pj.AccountConfig()
            ac.idUri = "sip:%s@%s" % (user, a.domain)
            ac.regConfig.registrarUri = "sip:%s" % a.server
            ac.regConfig.timeoutSec = 300
            ac.regConfig.retryIntervalSec = 0       # no automatic re-registration on failure
            # route everything (REGISTER, INVITE) through the server under test
            ac.sipConfig.proxies.append("sip:%s;lr" % a.server)
            ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, pj.PJSIP_CRED_DATA_PLAIN_PASSWD, "secret"))
            ac.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
            ac.mediaConfig.transportConfig.port = 0           # RTP/RTCP on any free port pair
            ac.natConfig.iceEnabled = False
            ac.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
            ac.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
            ac.natConfig.contactRewriteUse = 0
            ac.natConfig.viaRewriteUse = 0
            ac.natConfig.sdpNatRewriteUse = 0
            ac.natConfig.sipOutboundUse = 0
            acc = Acc(user, rt)
            acc.create(ac)
            accs[user] = acc

        def registered(u):
            return any(c == 200 and e > 0 for c, e in accs[u].reg_codes)

        def reg_failed(u):
            return any(c >= 300 or c < 100 for c, _ in accs[u].reg_codes)

        rt.poll_until(lambda: all(registered(u) or reg_failed(u) for u in accs))
        for u in accs:
            res["reg"][u] = accs[u].reg_codes[-1][0] if accs[u].reg_codes else None
        if not all(registered(u) for u in accs):
            reason = "registration failed: %s" % res["reg"]
            return 1

        caller_call = Call(accs[a.caller], rt, "%s(uac)" % a.caller)
        op = pj.CallOpParam(True)
        caller_call.makeCall("sip:%s@%s" % (a.callee, a.domain), op)
        rt.poll_until(lambda: caller_call.confirmed() or caller_call.disconnected())
        if not caller_call.confirmed():
            reason = "call not confirmed (caller last status %s, states %s)" % (caller_call.last_code, caller_call.states)
            return 1
        callee_calls = accs[a.callee].calls
        if not rt.poll_until(lambda: any(c.confirmed() for c in callee_calls), 3):
            reason = "callee side never reached CONFIRMED (ACK not delivered?)"
            return 1
        rt.sleep(a.hold)
        if caller_call.disconnected() or any(c.disconnected() for c in callee_calls):
            reason = "call dropped during the hold period"
            return 1
        caller_call.hangup(pj.CallOpParam())
        # pjsua reports DISCONNECTED as soon as the BYE is sent; the BYE's final response is only seen
        # in the message log (RX response with CSeq ... BYE)
        rt.poll_until(lambda: caller_call.disconnected() and all(c.disconnected() for c in callee_calls)
                      and any(c >= 200 for c in log.responses("RX", "BYE")))
        caller_call.bye_code = next((c for c in log.responses("RX", "BYE") if c >= 200), None)
        if not caller_call.disconnected() or not all(c.disconnected() for c in callee_calls):
            reason = "call not DISCONNECTED on both sides after BYE (bye=%s)" % caller_call.bye_code
            return 1
        if caller_call.bye_code != 200:
            reason = "BYE not answered 200 (bye=%s, caller last status %s)" % (caller_call.bye_code, caller_call.last_code)
            return 1
        if 200 not in log.responses("TX", "BYE"):
            reason = "callee did not receive the BYE"
            return 1

        # unregister
        n0 = {u: len(accs[u].reg_codes) for u in accs}
        for u in accs:
            accs[u].setRegistration(False)
        rt.poll_until(lambda: all(len(accs[u].reg_codes) > n0[u] for u in accs))
        for u in accs:
            res["unreg"][u] = accs[u].reg_codes[-1][0] if len(accs[u].reg_codes) > n0[u] else None
        if not all(res["unreg"][u] == 200 for u in accs):
            reason = "un-REGISTER not answered 200: %s" % res["unreg"]
            return 1
        ok = True
        reason = "ok"
        return 0
    finally:
        # clean shutdown: drop calls, then accounts, then the library
        try:
            ep.hangupAllCalls()
            rt.sleep(0.2)
        except Exception:
            pass
        # every pjsua2 Call object must be gone before libDestroy (its destructor asserts otherwise)
        caller_call = None
        for acc in accs.values():
            del acc.calls[:]
        for acc in accs.values():
            try:
                acc.shutdown()
            except Exception:
                pass
        accs.clear()
        gc.collect()
        rt.sleep(0.1)
        ep.libDestroy()
        del ep
        log.close()
        algos = {"Authorization": log.algorithms("Authorization"),
                 "Proxy-Authorization": log.algorithms("Proxy-Authorization")}
        print("PJSIP %s: server=%s reg=%s unreg=%s REGISTER-auth=%s INVITE-auth=%s: %s" % (
            "OK" if ok else "FAIL", a.server, res["reg"], res["unreg"],
            ",".join(algos["Authorization"]) or "none", ",".join(algos["Proxy-Authorization"]) or "none",
            reason), flush=True)


if __name__ == "__main__":
    sys.exit(main())
