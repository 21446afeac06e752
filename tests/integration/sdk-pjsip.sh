#!/usr/bin/env bash
# sdk-pjsip: our SDK softphone (target/release/examples/softphone) calls PJSIP 2.15 (pjsua2 Python, PyPI
# pjsua2-python) through the server on 127.0.0.1:5060 and audio flows both ways.
# tests/integration/sdk_pjsip_peer.py: one pjsua2 account user0003 (null audio device) registers, prints
# READY, auto-answers (180, 200) and plays a looped 1000 Hz sine WAV into the call (AudioMediaPlayer);
# G722 gets its top codec priority.
# The softphone registers as user0001 and calls sip:user0003@127.0.0.1 with --codecs g722,pcmu, sends a
# 440 Hz tone, hangs up after 4 s: it must hear PJSIP's 1000 Hz (--expect-tone 1000, exit 0) on G722.
# PJSIP's side: the call was CONFIRMED, ended by our BYE (200), and its stream's RTP rx packet counter
# (getStreamStat(0).rtcp.rxStat.pkt) is > 0 (tx too).
# Logs: $OUT/softphone.out, $OUT/pjsip_peer.out, $OUT/pjsua_peer.log (pjsua level 5, all SIP messages).
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
python3 -c 'import pjsua2' 2>/dev/null || fail "python module pjsua2 missing (pip install pjsua2-python)"
TONE=1000
rm -f "$OUT/pjsua_peer.log"
timeout -k 5 45 python3 "$ROOT/tests/integration/sdk_pjsip_peer.py" --server "$PROXY" --user user0003 \
  --tone $TONE --wav "$OUT/pjsip_tone.wav" --log "$OUT/pjsua_peer.log" --wait 20 --max-call 20 \
  >"$OUT/pjsip_peer.out" 2>&1 &
PP=$!; BG_PIDS="$BG_PIDS $PP"
for _ in $(seq 100); do
  grep -q '^READY' "$OUT/pjsip_peer.out" 2>/dev/null && break
  kill -0 "$PP" 2>/dev/null || break
  sleep 0.1
done
grep -q '^READY' "$OUT/pjsip_peer.out" || fail "PJSIP user0003 not registered: $(tail -1 "$OUT/pjsip_peer.out")"

timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$PROXY" \
  --call sip:user0003@127.0.0.1 --codecs g722,pcmu --play tone:440 --expect-tone $TONE --duration 4 --timeout 10 \
  >"$OUT/softphone.out" 2>&1
SRC=$?
wait "$PP"; PRC=$?
BG_PIDS=
echo "--- softphone"; cat "$OUT/softphone.out"
echo "--- pjsua2 peer"; cat "$OUT/pjsip_peer.out"

SUM=$(grep '^PJSIP-PEER ' "$OUT/pjsip_peer.out" | tail -1)
grep -q 'MediaStarted .*codec: "G722"' "$OUT/softphone.out" || fail "softphone did not start G722 media with PJSIP (see $OUT/softphone.out)"
TONEL=$(grep -o 'tone check: .*' "$OUT/softphone.out" | tail -1)
[ $SRC = 0 ] || fail "softphone exit $SRC: ${TONEL:-$(tail -1 "$OUT/softphone.out")}"
[ -n "$SUM" ] || fail "PJSIP peer printed no summary (rc=$PRC, see $OUT/pjsip_peer.out)"
[ $PRC = 0 ] || fail "PJSIP peer failed (rc=$PRC): $SUM"
RX=$(echo "$SUM" | grep -o 'rx_pkt=[0-9]*' | cut -d= -f2)
[ "${RX:-0}" -gt 0 ] || fail "PJSIP received no RTP from us: $SUM"
echo "SDK -> PJSIP via $PROXY: G722, $TONEL; PJSIP rx_pkt=$RX ($SUM)"
