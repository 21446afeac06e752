#!/usr/bin/env python3
"""PJSIP (pjsua2) peer for tests/integration/sdk-pjsip.sh: answers a call, or (--call) makes one.

One pjsua2 Endpoint (UDP on 127.0.0.1, null audio device, no STUN/ICE, main-thread polling) with one
account (default user0003, password "secret", realm "*") registered at --server (401 challenge answered
by pjsua). It prints "READY registered ..." once the REGISTER got 200.
With --tls-ca FILE the endpoint has a TLS transport only (no UDP, so no SIP can go in plaintext):
registrar and outbound proxy are sip:SERVER;transport=tls, the server's certificate is verified against
the CA file (TlsConfig.CaListFile, verifyServer: a certificate that does not verify fails the REGISTER
with 503 PJSIP_TLS_ECERTVERIF); the READY line then names the TLS listener PJSIP opened
("READY registered ... over TLS, listener 127.0.0.1:PORT").
  callee (default): waits for one incoming call (up to --wait seconds), answers it 180 then 200, and
    waits for the caller's BYE (up to --max-call seconds);
  caller (--call URI): calls URI through the server (407 challenge answered by pjsua), holds the
    confirmed call --duration seconds and hangs up (BYE).
Either way, as soon as the call's audio media is active it plays a WAV file of a --tone Hz sine (16 kHz
mono, looped, pj.AudioMediaPlayer) into the call and, with --record FILE, records what it receives
(pj.AudioMediaRecorder: WAV at the conference bridge's 16 kHz mono; the file is closed before exit).
While the call is up it samples the stream statistics (call.getStreamStat(0).rtcp.rxStat.pkt /
txStat.pkt) and the stream info (codec); then it unregisters.

Exit 0 only if: registered (200), the call reached CONFIRMED, ended by a BYE answered 200 (callee: our
200 to the remote BYE; caller: the 200 we received to ours, both from the message log), and the RTP rx
packet counter was > 0 (and tx > 0). The last line is a summary:
"PJSIP-PEER OK|FAIL: role=... codec=... rx_pkt=N tx_pkt=N ...: reason".
The full pjsua log (SIP messages at level 5) goes to --log.

Usage: sdk_pjsip_peer.py [--server 127.0.0.1:5060] [--tls-ca FILE] [--user user0003] [--tone 1000] [--wav FILE]
                         [--record FILE] [--call URI --duration 4]
                         [--log FILE] [--wait 20] [--max-call 20] [--prefer G722/16000/1]
"""
import argparse
import gc
import math
import re
import struct
import sys
import time
import wave

import pjsua2 as pj

T0 = time.monotonic()


def note(s):
    print("  [%.3f] %s" % (time.monotonic() - T0, s), flush=True)


def write_tone_wav(path, hz, rate=16000, seconds=2):
    """A mono 16-bit sine WAV with a whole number of periods (so the looped playback is seamless)."""
    n = rate * seconds
    w = wave.open(path, "wb")
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate))) for i in range(n)))
    w.close()


class Log(pj.LogWriter):
    """Every pjsua log entry goes to the file; SIP messages are kept for the BYE check."""

    def __init__(self, path):
        pj.LogWriter.__init__(self)
        self.f = open(path, "a", encoding="utf-8", errors="replace")
        self.msgs = []  # (TX|RX, first line, body)

    def write(self, entry):
        m = entry.msg
        self.f.write(m if m.endswith("\n") else m + "\n")
        h = re.search(r"\b(TX|RX) \d+ bytes (Request|Response) msg \S+ \(\w+\) (?:to|from) \S+ [\d.]+:\d+:\n(.*)", m, re.S)
        if h:
            body = h.group(3)
            self.msgs.append((h.group(1), body.split("\n", 1)[0].strip(), body))

    def close(self):
        self.f.close()

    def sent_response(self, method, direction="TX"):
        """Status codes of the responses to METHOD that we sent (TX) or received (RX)."""
        out = []
        for d, first, body in self.msgs:
            if d != direction or not first.startswith("SIP/2.0 "):
                continue
            cs = re.search(r"^CSeq:\s*\d+\s+(\S+)", body, re.M | re.I)
            if cs and cs.group(1) == method:
                out.append(int(first.split()[1]))
        return out


def start_endpoint(log, user_agent):
    """A pjsua2 Endpoint polled from the main thread (no worker threads), every log entry (SIP
    messages at level 5) to LOG, the null audio device. The caller adds transports and starts it."""
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = user_agent
    cfg.medConfig.threadCnt = 0
    cfg.medConfig.noVad = True
    cfg.logConfig.level = 5
    cfg.logConfig.consoleLevel = 5
    cfg.logConfig.writer = log
    cfg.logConfig.decor = pj.PJ_LOG_HAS_TIME | pj.PJ_LOG_HAS_MICRO_SEC | pj.PJ_LOG_HAS_SENDER | pj.PJ_LOG_HAS_INDENT
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    return ep


def account_config(user, domain, password, server, params, tid):
    """A pjsua2 account registering sip:USER@DOMAIN at sip:SERVER (registrar and outbound proxy,
    PARAMS like ";transport=tls"), digest for any realm, media on 127.0.0.1, no NAT helpers
    (ICE, STUN, Contact/Via/SDP rewriting, outbound) and no registration retry."""
    ac = pj.AccountConfig()
    ac.idUri = "sip:%s@%s" % (user, domain)
    ac.regConfig.registrarUri = "sip:%s%s" % (server, params)
    ac.regConfig.timeoutSec = 300
    ac.regConfig.retryIntervalSec = 0
    ac.sipConfig.proxies.append("sip:%s%s;lr" % (server, params))
    ac.sipConfig.transportId = tid
    ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, pj.PJSIP_CRED_DATA_PLAIN_PASSWD, password))
    ac.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    ac.mediaConfig.transportConfig.port = 0
    ac.natConfig.iceEnabled = False
    ac.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
    ac.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
    ac.natConfig.contactRewriteUse = 0
    ac.natConfig.viaRewriteUse = 0
    ac.natConfig.sdpNatRewriteUse = 0
    ac.natConfig.sipOutboundUse = 0
    return ac


class Call(pj.Call):
    def __init__(self, acc, call_id, player, recorder=None):
        pj.Call.__init__(self, acc, call_id)
        self.player = player
        self.recorder = recorder
        self.states = []
        self.playing = False
        self.last_code = None

    def onCallState(self, prm):
        ci = self.getInfo()
        self.states.append(ci.state)
        self.last_code = ci.lastStatusCode
        note("call state %s last=%d %s" % (ci.stateText, ci.lastStatusCode, ci.lastReason))

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE and not self.playing:
                am = self.getAudioMedia(mi.index)
                self.player.startTransmit(am)
                if self.recorder is not None:
                    am.startTransmit(self.recorder)
                self.playing = True
                note("audio media %d active: playing the tone into the call%s" % (
                    mi.index, ", recording what we receive" if self.recorder is not None else ""))

    def confirmed(self):
        return pj.PJSIP_INV_STATE_CONFIRMED in self.states

    def disconnected(self):
        return pj.PJSIP_INV_STATE_DISCONNECTED in self.states


class Acc(pj.Account):
    def __init__(self, player, recorder=None):
        pj.Account.__init__(self)
        self.player = player
        self.recorder = recorder
        self.reg_codes = []
        self.reg_reason = ""
        self.calls = []

    def onRegState(self, prm):
        self.reg_codes.append((prm.code, prm.expiration))
        self.reg_reason = prm.reason
        note("reg state code=%d reason=%s expires=%d" % (prm.code, prm.reason, prm.expiration))

    def onIncomingCall(self, prm):
        c = Call(self, prm.callId, self.player, self.recorder)
        self.calls.append(c)
        if len(self.calls) > 1:
            op = pj.CallOpParam()
            op.statusCode = 486
            c.answer(op)
            return
        op = pj.CallOpParam()
        op.statusCode = 180
        c.answer(op)
        op = pj.CallOpParam()
        op.statusCode = 200
        c.answer(op)
        note("incoming call answered 200")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="127.0.0.1:5060")
    ap.add_argument("--tls-ca", default=None, help="SIP over TLS only, verifying the server against this CA file")
    ap.add_argument("--domain", default="127.0.0.1")
    ap.add_argument("--user", default="user0003")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--tone", type=float, default=1000.0, help="Hz of the sine we send")
    ap.add_argument("--wav", default="pjsip_tone.wav", help="WAV file written and played")
    ap.add_argument("--record", default=None, help="record the received audio to this WAV (16 kHz mono)")
    ap.add_argument("--call", default=None, help="call this URI (caller role) instead of waiting for a call")
    ap.add_argument("--duration", type=float, default=4.0, help="caller: seconds to hold the call before BYE")
    ap.add_argument("--log", default="pjsua_peer.log")
    ap.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the incoming call")
    ap.add_argument("--max-call", type=float, default=20.0, help="seconds to wait for the remote BYE")
    ap.add_argument("--prefer", default="G722/16000/1", help="codec id given the highest priority ('' = none)")
    ap.add_argument("--srtp", choices=["off", "optional", "mandatory"], default="off",
                    help="pjsua SRTP use (PJMEDIA_SRTP_DISABLED/OPTIONAL/MANDATORY)")
    ap.add_argument("--srtp-keying", choices=["sdes", "dtls"], default="sdes",
                    help="the only SRTP keying offered and accepted (PJMEDIA_SRTP_KEYING_SDES/DTLS_SRTP)")
    ap.add_argument("--expect-status", type=int, default=None,
                    help="caller: the call must fail with this final status (e.g. 488) and nothing else")
    a = ap.parse_args()

    write_tone_wav(a.wav, a.tone)
    log = Log(a.log)
    ep = start_endpoint(log, "pjsua2-rvoip-sdk-interop")
    if a.prefer:
        ep.codecSetPriority(a.prefer, 255)
    tc = pj.TransportConfig()
    tc.port = 0
    tc.boundAddress = "127.0.0.1"
    if a.tls_ca:
        tc.tlsConfig.CaListFile = a.tls_ca
        tc.tlsConfig.verifyServer = True
        tid = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tc)
        via = "%s over TLS, listener %s" % (a.server, ep.transportGetInfo(tid).localName)
        params = ";transport=tls"
    else:
        tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        via = a.server
        params = ""
    ep.libStart()

    def poll_until(cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            ep.libHandleEvents(10)
        return cond()

    player = pj.AudioMediaPlayer()
    player.createPlayer(a.wav, 0)  # 0: loop
    recorder = None
    if a.record:
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(a.record)
    acc = None
    role = "caller" if a.call else "callee"
    res = {"reg": None, "codec": None, "rx": 0, "tx": 0, "rx_bytes": 0, "bye": None, "unreg": None}
    ok = False
    reason = "?"
    try:
        ac = account_config(a.user, a.domain, a.password, a.server, params, tid)
        if a.srtp != "off":
            ac.mediaConfig.srtpUse = {"optional": pj.PJMEDIA_SRTP_OPTIONAL,
                                      "mandatory": pj.PJMEDIA_SRTP_MANDATORY}[a.srtp]
            # SDES keys go over the TLS signalling; PJSIP's default (1) also demands sips: URIs.
            ac.mediaConfig.srtpSecureSignaling = 0
            keyings = pj.IntVector()
            keyings.append(pj.PJMEDIA_SRTP_KEYING_SDES if a.srtp_keying == "sdes" else pj.PJMEDIA_SRTP_KEYING_DTLS_SRTP)
            ac.mediaConfig.srtpOpt.keyings = keyings
        acc = Acc(player, recorder)
        acc.create(ac)

        poll_until(lambda: acc.reg_codes, 10)
        res["reg"] = acc.reg_codes[-1][0] if acc.reg_codes else None
        if res["reg"] != 200:
            reason = "registration failed: %s %s" % (res["reg"], acc.reg_reason)
            return 1
        print("READY registered %s via %s" % (a.user, via), flush=True)

        if a.call:
            call = Call(acc, pj.PJSUA_INVALID_ID, player, recorder)
            acc.calls.append(call)
            call.makeCall(a.call, pj.CallOpParam(True))
            note("calling %s" % a.call)
        elif not poll_until(lambda: acc.calls, a.wait):
            reason = "no incoming call within %.0f s" % a.wait
            return 1
        call = acc.calls[0]
        if a.expect_status is not None:
            poll_until(lambda: call.disconnected(), 10)
            res["status"] = call.last_code
            if call.confirmed() or call.last_code != a.expect_status:
                reason = "want the call refused with %d, got states %s, last %s" % (
                    a.expect_status, call.states, call.last_code)
                return 1
            ok = True
            reason = "call refused with %d as expected" % call.last_code
            return 0
        if not poll_until(lambda: call.confirmed() or call.disconnected(), 10) or not call.confirmed():
            reason = "call not CONFIRMED (states %s, last %s)" % (call.states, call.last_code)
            return 1
        # sample the stream statistics while the call is up (the stream is gone after DISCONNECTED);
        # the caller hangs up after --duration, the callee waits for the BYE up to --max-call
        end = time.monotonic() + (a.duration if a.call else a.max_call)
        while time.monotonic() < end and not call.disconnected():
            try:
                st = call.getStreamStat(0)
                res["rx"], res["tx"] = st.rtcp.rxStat.pkt, st.rtcp.txStat.pkt
                res["rx_bytes"] = st.rtcp.rxStat.bytes
                si = call.getStreamInfo(0)
                res["codec"] = "%s/%d" % (si.codecName, si.codecClockRate)
                if a.srtp != "off" and not res.get("srtp"):
                    for line in call.dump(True, "").splitlines():
                        if "SRTP" in line:
                            res["srtp"] = " ".join(line.split())
            except pj.Error:
                pass
            ep.libHandleEvents(50)
        note("stream stats: codec=%s rx_pkt=%d rx_bytes=%d tx_pkt=%d" % (res["codec"], res["rx"], res["rx_bytes"], res["tx"]))
        if a.call:
            if call.disconnected():
                reason = "the call ended before we hung up (states %s, last %s)" % (call.states, call.last_code)
                return 1
            call.hangup(pj.CallOpParam(True))
            poll_until(lambda: call.disconnected(), 10)
            poll_until(lambda: log.sent_response("BYE", "RX"), 2)
            byes = log.sent_response("BYE", "RX")
            res["bye"] = byes[-1] if byes else None
            if res["bye"] != 200:
                reason = "our BYE was not answered 200 (responses received: %s)" % byes
                return 1
        else:
            if not call.disconnected():
                reason = "the caller did not hang up within %.0f s" % a.max_call
                return 1
            byes = log.sent_response("BYE")
            res["bye"] = byes[-1] if byes else None
            if res["bye"] != 200:
                reason = "call not ended by a remote BYE answered 200 (our responses to BYE: %s)" % byes
                return 1
        if not call.playing:
            reason = "audio media never became active"
            return 1
        if res["rx"] <= 0:
            reason = "PJSIP received no RTP from the caller (rxStat.pkt=%d)" % res["rx"]
            return 1
        if res["tx"] <= 0:
            reason = "PJSIP sent no RTP (txStat.pkt=%d)" % res["tx"]
            return 1
        if a.srtp != "off":
            note("srtp: %s" % res.get("srtp"))
            if not res.get("srtp") or "Active" not in res["srtp"]:
                reason = "SRTP not active in PJSIP's call dump: %s" % res.get("srtp")
                return 1
        n0 = len(acc.reg_codes)
        acc.setRegistration(False)
        poll_until(lambda: len(acc.reg_codes) > n0, 5)
        res["unreg"] = acc.reg_codes[-1][0] if len(acc.reg_codes) > n0 else None
        ok = True
        reason = "ok"
        return 0
    finally:
        try:
            ep.hangupAllCalls()
            poll_until(lambda: False, 0.2)
        except Exception:
            pass
        call = None
        if acc is not None:
            del acc.calls[:]
            try:
                acc.shutdown()
            except Exception:
                pass
        acc = None
        player = None
        recorder = None  # closes the WAV (pjmedia writes its header sizes on close)
        gc.collect()
        poll_until(lambda: False, 0.1)
        ep.libDestroy()
        del ep
        log.close()
        print("PJSIP-PEER %s: role=%s codec=%s rx_pkt=%d rx_bytes=%d tx_pkt=%d reg=%s bye=%s unreg=%s srtp=[%s]: %s" % (
            "OK" if ok else "FAIL", role, res["codec"], res["rx"], res["rx_bytes"], res["tx"], res["reg"],
            res["bye"], res["unreg"], res.get("srtp", "-"), reason), flush=True)


if __name__ == "__main__":
    sys.exit(main())
