#!/usr/bin/env python3
"""PJSIP (pjsua2) peer for tests/integration/sdk-pjsip-features.sh: one account (default user0003,
password "secret") registered at --server over UDP, null audio device, a looped --tone Hz sine played
into every call, and one --mode:

  transferee   answers the first call; accepts the REFER that comes in it (PJSIP places the new call,
               which plays the tone too, and NOTIFYs the transferor); OK once the new call was
               CONFIRMED and the transferred call DISCONNECTED (the SDK's BYE), then waits for the
               new call to end (up to --max-call s).
  transferor   calls --call URI, --after s after CONFIRMED sends REFER to --transfer-to URI (blind,
               call.xfer); OK once a final transfer status 200 arrived (onCallTransferStatus).
  message      sends --text to --message-to (MESSAGE, Buddy.sendInstantMessage); OK once it was
               answered 2xx and a MESSAGE containing --expect arrived (onInstantMessage).
  info         calls --call URI; --after s after CONFIRMED sends --dtmf by SIP INFO
               (PJSUA_DTMF_METHOD_SIP_INFO, 160 ms); OK once the keys --expect-dtmf arrived
               (onDtmfDigit), then hangs up.
  publish      publishes presence (PUBLISH, presConfig.publishEnabled) online with the RPID activity
               away and the note "Away", prints PUBLISHED, stays registered --hold s; OK if the
               PUBLISH got 2xx.

Prints READY once registered; the last line is "PJSIP-FEATURE OK|FAIL: mode=...: reason"; the
pjsua log (SIP messages at level 5) goes to --log. Exit 0 only when OK.
"""
import argparse
import gc
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sdk_pjsip_peer import Log, account_config, note, start_endpoint, write_tone_wav  # noqa: E402

import pjsua2 as pj  # noqa: E402


class FCall(pj.Call):
    def __init__(self, acc, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.acc = acc
        self.states = []
        self.playing = False
        self.digits = ""
        self.xfer_status = []  # (status, final)

    def onCallState(self, prm):
        ci = self.getInfo()
        self.states.append(ci.state)
        note("call %d state %s last=%d %s" % (ci.id, ci.stateText, ci.lastStatusCode, ci.lastReason))

    def onCallMediaState(self, prm):
        try:
            self._media()
        except Exception as e:  # a director callback must not raise into PJSIP
            note("media callback error: %r" % e)

    def _media(self):
        ci = self.getInfo()  # keep the CallInfo alive while its media vector is read
        for mi in ci.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE and not self.playing:
                self.acc.player.startTransmit(self.getAudioMedia(mi.index))
                self.playing = True
                note("audio media active: playing the tone")

    def onDtmfDigit(self, prm):
        note("DTMF %r (method %d)" % (prm.digit, prm.method))
        self.digits += prm.digit

    def onCallTransferRequest(self, prm):
        note("REFER to %s: accepted" % prm.dstUri)
        c = FCall(self.acc)
        self.acc.calls.append(c)
        prm.newCall = c
        prm.statusCode = 202

    def onCallTransferStatus(self, prm):
        note("transfer status %d %s final=%s" % (prm.statusCode, prm.reason, prm.finalNotify))
        self.xfer_status.append((prm.statusCode, bool(prm.finalNotify)))

    def confirmed(self):
        return pj.PJSIP_INV_STATE_CONFIRMED in self.states

    def disconnected(self):
        return pj.PJSIP_INV_STATE_DISCONNECTED in self.states


class FAcc(pj.Account):
    def __init__(self, player):
        pj.Account.__init__(self)
        self.player = player
        self.reg = []
        self.calls = []
        self.ims = []
        self.im_status = []

    def onRegState(self, prm):
        self.reg.append(prm.code)
        note("reg state %d %s" % (prm.code, prm.reason))

    def onIncomingCall(self, prm):
        c = FCall(self, prm.callId)
        self.calls.append(c)
        op = pj.CallOpParam()
        op.statusCode = 200
        c.answer(op)
        note("incoming call answered 200")

    def onInstantMessage(self, prm):
        note("MESSAGE from %s (%s): %s" % (prm.fromUri, prm.contentType, prm.msgBody))
        self.ims.append(prm.msgBody)

    def onInstantMessageStatus(self, prm):
        note("MESSAGE status %d %s" % (prm.code, prm.reason))
        self.im_status.append(prm.code)


class FBuddy(pj.Buddy):
    def __init__(self, acc):
        pj.Buddy.__init__(self)
        self.acc = acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True, choices=["transferee", "transferor", "message", "info", "publish"])
    ap.add_argument("--server", default="127.0.0.1:5060")
    ap.add_argument("--user", default="user0003")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--tone", type=float, default=1000.0)
    ap.add_argument("--wav", default="pjsip_tone.wav")
    ap.add_argument("--log", default="pjsua_features.log")
    ap.add_argument("--call", default=None)
    ap.add_argument("--transfer-to", default=None)
    ap.add_argument("--after", type=float, default=1.5)
    ap.add_argument("--message-to", default=None)
    ap.add_argument("--text", default="hello from pjsip")
    ap.add_argument("--expect", default=None)
    ap.add_argument("--dtmf", default="159#")
    ap.add_argument("--expect-dtmf", default=None)
    ap.add_argument("--wait", type=float, default=20.0)
    ap.add_argument("--max-call", type=float, default=20.0)
    ap.add_argument("--hold", type=float, default=10.0)
    a = ap.parse_args()

    write_tone_wav(a.wav, a.tone)
    log = Log(a.log)
    ep = start_endpoint(log, "pjsua2-rvoip-features")
    tc = pj.TransportConfig()
    tc.port = 0
    tc.boundAddress = "127.0.0.1"
    tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    ep.libStart()

    def poll_until(cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            ep.libHandleEvents(10)
        return cond()

    player = pj.AudioMediaPlayer()
    player.createPlayer(a.wav, 0)
    acc = None
    buddy = None
    ok = False
    reason = "?"
    try:
        ac = account_config(a.user, "127.0.0.1", a.password, a.server, "", tid)
        ac.presConfig.publishEnabled = a.mode == "publish"
        acc = FAcc(player)
        acc.create(ac)
        if not poll_until(lambda: acc.reg, 10) or acc.reg[-1] != 200:
            reason = "registration failed: %s" % acc.reg
            return 1
        print("READY registered %s" % a.user, flush=True)

        if a.mode == "transferee":
            if not poll_until(lambda: acc.calls, a.wait):
                reason = "no incoming call within %.0f s" % a.wait
                return 1
            first = acc.calls[0]
            if not poll_until(lambda: len(acc.calls) > 1 and acc.calls[1].confirmed(), a.max_call):
                reason = "no transfer call CONFIRMED (calls %d, first states %s)" % (len(acc.calls), first.states)
                return 1
            if not poll_until(lambda: first.disconnected(), 10):
                reason = "the transferred call was not ended"
                return 1
            new = acc.calls[1]
            poll_until(lambda: new.disconnected(), a.max_call)
            notifies = [m for d, first_line, m in log.msgs if d == "TX" and first_line.startswith("NOTIFY ")]
            frags = [re.search(r"^SIP/2\.0 (\d+)", m, re.M) for m in notifies]
            codes = [int(f.group(1)) for f in frags if f]
            note("NOTIFY sipfrag statuses we sent: %s" % codes)
            ok = new.playing
            reason = "transferred; new call confirmed and audio active; NOTIFYs %s" % codes
            return 0 if ok else 1

        if a.mode in ("transferor", "info"):
            call = FCall(acc)
            acc.calls.append(call)
            call.makeCall(a.call, pj.CallOpParam(True))
            if not poll_until(lambda: call.confirmed() or call.disconnected(), 10) or not call.confirmed():
                reason = "call not CONFIRMED (states %s)" % call.states
                return 1
            poll_until(lambda: False, a.after)
            if a.mode == "transferor":
                call.xfer(a.transfer_to, pj.CallOpParam(True))
                note("REFER to %s" % a.transfer_to)
                if not poll_until(lambda: any(f for _, f in call.xfer_status), 20):
                    reason = "no final transfer status (got %s)" % call.xfer_status
                    return 1
                final = [s for s, f in call.xfer_status if f][-1]
                poll_until(lambda: call.disconnected(), 5)
                ok = final == 200
                reason = "transfer statuses %s, transferred call %s" % (
                    call.xfer_status, "ended" if call.disconnected() else "still up")
                return 0 if ok else 1
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            prm.digits = a.dtmf
            prm.duration = 160
            call.sendDtmf(prm)
            note("sent %s by INFO" % a.dtmf)
            want = a.expect_dtmf or ""
            got = poll_until(lambda: call.digits == want, 10)
            infos = [m for d, first_line, m in log.msgs if d == "TX" and first_line.startswith("INFO ")]
            call.hangup(pj.CallOpParam(True))
            poll_until(lambda: call.disconnected(), 5)
            ok = got and len(infos) >= len(a.dtmf)
            reason = "received %r (want %r); %d INFO sent" % (call.digits, want, len(infos))
            return 0 if ok else 1

        if a.mode == "message":
            bc = pj.BuddyConfig()
            bc.uri = a.message_to
            bc.subscribe = False
            buddy = FBuddy(acc)
            buddy.create(acc, bc)
            prm = pj.SendInstantMessageParam()
            prm.content = a.text
            buddy.sendInstantMessage(prm)
            delivered = poll_until(lambda: acc.im_status, 10)
            seen = poll_until(lambda: any(a.expect in m for m in acc.ims), 10)
            ok = delivered and 200 <= acc.im_status[0] < 300 and seen
            reason = "MESSAGE status %s; received %s" % (acc.im_status, acc.ims)
            return 0 if ok else 1

        if a.mode == "publish":
            ps = pj.PresenceStatus()
            ps.status = pj.PJSUA_BUDDY_STATUS_ONLINE
            ps.activity = pj.PJRPID_ACTIVITY_AWAY
            ps.note = "Away"
            acc.setOnlineStatus(ps)

            def publish_codes():
                return [int(f.split()[1]) for d, f, m in log.msgs
                        if d == "RX" and f.startswith("SIP/2.0 ") and re.search(r"^CSeq:\s*\d+\s+PUBLISH", m, re.M)]
            poll_until(lambda: any(c < 300 and c >= 200 for c in publish_codes()), 10)
            codes = publish_codes()
            print("PUBLISHED %s" % codes, flush=True)
            poll_until(lambda: False, a.hold)
            ok = any(200 <= c < 300 for c in codes)
            reason = "PUBLISH responses %s" % codes
            return 0 if ok else 1
        return 1
    finally:
        try:
            ep.hangupAllCalls()
            poll_until(lambda: False, 0.2)
        except Exception:
            pass
        if acc is not None:
            del acc.calls[:]
            try:
                acc.shutdown()
            except Exception:
                pass
        buddy = None
        acc = None
        player = None
        gc.collect()
        poll_until(lambda: False, 0.1)
        ep.libDestroy()
        del ep
        log.close()
        print("PJSIP-FEATURE %s: mode=%s: %s" % ("OK" if ok else "FAIL", a.mode, reason), flush=True)
        # Leave now: the locals still hold Call objects whose destructors would call into the
        # destroyed library (abort).
        os._exit(0 if ok else 1)


if __name__ == "__main__":
    sys.exit(main())
