#!/usr/bin/env bash
# sdk-pjsip: our SDK softphone (target/release/examples/softphone) and PJSIP 2.15 (pjsua2 Python, PyPI
# pjsua2-python) call each other through the server on 127.0.0.1:5060 and the tones are heard both ways.
# tests/integration/sdk_pjsip_peer.py: one pjsua2 account user0003 (null audio device) registers, prints
# READY, plays a looped 1000 Hz sine WAV into the call (AudioMediaPlayer) and records what it receives
# (AudioMediaRecorder, 16 kHz mono WAV); G722 gets its top codec priority.
#  1. SDK -> PJSIP: the softphone registers as user0001 and calls sip:user0003@127.0.0.1 with
#     --codecs g722,pcmu, sends 440 Hz, hangs up after 4 s; PJSIP auto-answers (180, 200).
#  2. PJSIP -> SDK: the softphone (user0001, --auto-answer, 440 Hz) is called by PJSIP
#     (sip:user0001@127.0.0.1, INVITE 407 answered by pjsua), which hangs up (BYE) after 4 s.
# Each call: G722; the softphone heard PJSIP's 1000 Hz (--expect-tone 1000: >= 90 % of the energy of
# the last half of the call, per 20 ms block; exit 0); PJSIP heard our 440 Hz (its recording, >= 90 % of
# the energy per 20 ms block, tone_share.py); PJSIP's call was CONFIRMED and ended by a BYE answered 200,
# and its stream's RTP rx/tx packet counters (getStreamStat(0).rtcp) are > 0.
# Media path (TARGET=rvoip, relay on, the default "always"), from a tshark capture of all UDP on lo:
# every RTP/RTCP packet of the softphone and PJSIP went to or came from the server's relay ports
# ($RELAY_PORTS), none phone<->phone, >= 100 relayed packets each way per phone RTP port
# (relay_capture.py); after each call's BYE the server logs the relay's media context released with
# ports_in_use=0. TARGET=kamailio (no relay): the audio checks only.
# Logs: $OUT/call{1,2}.softphone.out, $OUT/call{1,2}.pjsip_peer.out, $OUT/call{1,2}.pjsua_peer.log
# (pjsua level 5, all SIP messages), $OUT/call{1,2}.pjsip_rx.wav (what PJSIP heard), $OUT/cap.pcap.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
python3 -c 'import pjsua2' 2>/dev/null || fail "python module pjsua2 missing (pip install pjsua2-python)"
command -v tshark >/dev/null || fail "tshark not installed"
TONE=1000   # PJSIP sends
OURS=440    # the softphone sends
PEER=$ROOT/tests/integration/sdk_pjsip_peer.py

# stop_pid PID: SIGTERM, then wait (bounded)
stop_pid() {
  local i
  kill -TERM "$1" 2>/dev/null
  for i in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null
}
# start_peer N [ARGS...]: the pjsua2 peer (user0003) for call N in the background, PID in $PP, up to READY
start_peer() {
  local n=$1; shift
  rm -f "$OUT/call$n.pjsua_peer.log" "$OUT/call$n.pjsip_rx.wav"
  timeout -k 5 45 python3 "$PEER" --server "$PROXY" --user user0003 --tone $TONE --wav "$OUT/pjsip_tone.wav" \
    --record "$OUT/call$n.pjsip_rx.wav" --log "$OUT/call$n.pjsua_peer.log" "$@" >"$OUT/call$n.pjsip_peer.out" 2>&1 &
  PP=$!; BG_PIDS="$BG_PIDS $PP"
  for _ in $(seq 100); do
    grep -q '^READY' "$OUT/call$n.pjsip_peer.out" 2>/dev/null && break
    kill -0 "$PP" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^READY' "$OUT/call$n.pjsip_peer.out" || fail "call $n: PJSIP user0003 not registered: $(tail -1 "$OUT/call$n.pjsip_peer.out")"
}
# check_call N SOFTPHONE-RC PEER-RC: the call's own checks (run right after it); prints a summary line
check_call() {
  local n=$1 src=$2 prc=$3 so po sum tonel rx heard
  so=$OUT/call$n.softphone.out po=$OUT/call$n.pjsip_peer.out
  echo "--- call $n: softphone"; cat "$so"
  echo "--- call $n: pjsua2 peer"; cat "$po"
  sum=$(grep '^PJSIP-PEER ' "$po" | tail -1)
  grep -q 'MediaStarted .*codec: "G722"' "$so" || fail "call $n: softphone did not start G722 media with PJSIP (see $so)"
  tonel=$(grep -o 'tone check: .*' "$so" | tail -1)
  [ "$src" = 0 ] || fail "call $n: softphone exit $src: ${tonel:-$(tail -1 "$so")}"
  [ -n "$sum" ] || fail "call $n: PJSIP peer printed no summary (rc=$prc, see $po)"
  [ "$prc" = 0 ] || fail "call $n: PJSIP peer failed (rc=$prc): $sum"
  rx=$(echo "$sum" | grep -o 'rx_pkt=[0-9]*' | cut -d= -f2)
  [ "${rx:-0}" -gt 0 ] || fail "call $n: PJSIP received no RTP from us: $sum"
  heard=$(tone_check "$OUT/call$n.pjsip_rx.wav" $OURS "PJSIP heard" --min-seconds 2 --also $TONE) || fail "call $n: $heard"
  SUMMARY="call $n: softphone $tonel; $heard; PJSIP rx_pkt=$rx"
}

timeout 60 tshark -i lo -f "udp" -a duration:50 -w "$OUT/cap.pcap" -q >"$OUT/tshark.log" 2>&1 &
TSP=$!; BG_PIDS="$BG_PIDS $TSP"
for _ in $(seq 50); do [ -s "$OUT/cap.pcap" ] && break; sleep 0.1; done; sleep 0.5
[ -s "$OUT/cap.pcap" ] || fail "tshark did not start capturing on lo (see $OUT/tshark.log)"

# ---- 1. SDK calls PJSIP ----
start_peer 1 --wait 20 --max-call 20
timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$PROXY" \
  --call sip:user0003@127.0.0.1 --codecs g722,pcmu --play tone:$OURS --expect-tone $TONE --duration 4 --timeout 10 \
  >"$OUT/call1.softphone.out" 2>&1
SRC=$?
wait "$PP"; PRC=$?
check_call 1 $SRC $PRC
S1=$SUMMARY
if relay_applies; then L1=$(relay_released 1) || fail "call 1: $L1"; S1="$S1; $L1"; fi

# ---- 2. PJSIP calls the SDK ----
timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$PROXY" \
  --auto-answer --codecs g722,pcmu --play tone:$OURS --expect-tone $TONE --duration 20 --timeout 15 \
  >"$OUT/call2.softphone.out" 2>&1 &
SP=$!; BG_PIDS="$BG_PIDS $SP"
for _ in $(seq 50); do grep -q 'Registered' "$OUT/call2.softphone.out" 2>/dev/null && break; sleep 0.1; done
grep -q 'Registered' "$OUT/call2.softphone.out" || fail "call 2: softphone (auto-answer) did not register (see $OUT/call2.softphone.out)"
start_peer 2 --call sip:user0001@127.0.0.1 --duration 4
wait "$PP"; PRC=$?
wait "$SP"; SRC=$?
check_call 2 $SRC $PRC
S2=$SUMMARY
if relay_applies; then L2=$(relay_released 2) || fail "call 2: $L2"; S2="$S2; $L2"; fi
stop_pid "$TSP"

echo "$S1"; echo "$S2"
if relay_applies; then
  C=$(relay_capture_check "$OUT/cap.pcap" "SDK<->PJSIP relay (calls 1 and 2)") || fail "$(echo "$C" | tail -1)"
  echo "$C"
else
  echo "media path: $TARGET has no relay, relay checks skipped"
fi
echo "SDK <-> PJSIP via $PROXY: SDK->PJSIP and PJSIP->SDK on G722, $OURS Hz and $TONE Hz heard both ways"
