#!/usr/bin/env bash
# sdk-pjsip-srtp: encrypted media (RFC 3711) between our SDK softphone (target/release/examples/softphone)
# and PJSIP 2.15 (pjsua2 Python, PyPI pjsua2-python, libsrtp inside) through rvoip-server: SIP over TLS
# ($TLS_PROXY, the run's test CA), media through the server's relay (which passes SRTP untouched), PCMU.
# tests/integration/sdk_pjsip_peer.py as in sdk-pjsip-tls, with --srtp (pjsua srtpUse) and --srtp-keying.
#  1. SDK --srtp mandatory -> PJSIP SRTP mandatory (SDES): RTP/SAVP with a=crypto both ways.
#  2. PJSIP SRTP mandatory (SDES) -> SDK (default policy, optional): answered with SDES.
#  (DTLS-SRTP with PJSIP is not tested: the PyPI pjsua2 build offers plain RTP/AVP when asked for DTLS
#  keying only, so it has no DTLS-SRTP; baresip-srtp covers DTLS-SRTP both ways.)
#  4. PJSIP SRTP mandatory -> SDK with --srtp off: PJSIP's call fails with 488 (never a plaintext
#     answer); the softphone never sees the call.
#  5. SDK --srtp mandatory -> PJSIP without SRTP: the softphone's call ends 488 with a reason naming SRTP.
# Calls 1-2: tones heard both ways (>= 90 % per 20 ms block), the softphone's statistics say SDES/DTLS
# with no authentication failure, PJSIP's call dump says SRTP Active, PJSIP's SIP all over TLS; the
# capture shows only TLS for SIP, the media relayed, and payloads that do not read as plaintext G.711
# (srtp_capture.py).
# TARGET=kamailio|external: skipped (exit 0).
# Logs: $OUT/call{1..5}.softphone.out, $OUT/call{1..5}.pjsip_peer.out, .pjsua_peer.log, $OUT/cap.pcap.
set -u
. "$(dirname "$0")/lib.sh"
case $TARGET in
  rvoip) ;;
  *) echo "sdk-pjsip-srtp: skipped for TARGET=$TARGET (needs rvoip-server's TLS listener and the run's test CA)"; exit 0 ;;
esac
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
python3 -c 'import pjsua2' 2>/dev/null || fail "python module pjsua2 missing (pip install pjsua2-python)"
command -v tshark >/dev/null || fail "tshark not installed"
[ -s "${TLS_CA:-}" ] && [ -n "${TLS_PIN:-}" ] && [ -n "${TLS_PROXY:-}" ] \
  || fail "TLS_CA/TLS_PIN/TLS_PROXY not set (run through tests/run-integration.sh)"
TONE=1000   # PJSIP sends
OURS=440    # the softphone sends
PEER=$ROOT/tests/integration/sdk_pjsip_peer.py

# wait_log FILE REGEX TENTHS: poll until FILE matches REGEX
wait_log() {
  local i
  for i in $(seq "$3"); do grep -aqE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# stop_pid PID: SIGTERM, then wait (bounded)
stop_pid() {
  local i
  kill -TERM "$1" 2>/dev/null
  for i in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null
}
# start_peer N [ARGS...]: the pjsua2 peer (user0003, TLS) for call N in the background, PID in $PP, up to
# READY; its TLS listener port in $PJ_PORTS
PJ_PORTS=
start_peer() {
  local n=$1; shift
  rm -f "$OUT/call$n.pjsua_peer.log" "$OUT/call$n.pjsip_rx.wav"
  timeout -k 5 45 python3 "$PEER" --server "$TLS_PROXY" --tls-ca "$TLS_CA" --user user0003 --tone $TONE \
    --prefer PCMU/8000/1 --wav "$OUT/pjsip_tone.wav" --record "$OUT/call$n.pjsip_rx.wav" --log "$OUT/call$n.pjsua_peer.log" "$@" \
    >"$OUT/call$n.pjsip_peer.out" 2>&1 &
  PP=$!; BG_PIDS="$BG_PIDS $PP"
  for _ in $(seq 100); do
    grep -q '^READY' "$OUT/call$n.pjsip_peer.out" 2>/dev/null && break
    kill -0 "$PP" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^READY registered .* over TLS, listener 127.0.0.1:[0-9]*$' "$OUT/call$n.pjsip_peer.out" \
    || fail "call $n: PJSIP user0003 not registered over TLS: $(tail -1 "$OUT/call$n.pjsip_peer.out")"
  PJ_PORTS="$PJ_PORTS $(grep '^READY' "$OUT/call$n.pjsip_peer.out" | grep -o '[0-9]*$')"
}
# pjsip_over_tls N: every SIP message in PJSIP's log went over TLS to/from the server
pjsip_over_tls() {
  local log=$OUT/call$1.pjsua_peer.log all tls
  all=$(grep -cE '(TX|RX) [0-9]+ bytes (Request|Response) msg' "$log")
  tls=$(grep -cE "(TX|RX) [0-9]+ bytes (Request|Response) msg .* (to|from) TLS ${TLS_PROXY}:" "$log")
  [ "$all" -gt 0 ] || { echo "call $1: no SIP message in PJSIP's log ($log)"; return 1; }
  [ "$all" = "$tls" ] || { echo "call $1: $((all - tls)) of PJSIP's $all SIP messages not over TLS with $TLS_PROXY: $(grep -E '(TX|RX) [0-9]+ bytes (Request|Response) msg' "$log" | grep -v " TLS $TLS_PROXY:" | head -1)"; return 1; }
  echo "PJSIP's $all SIP messages all over TLS with $TLS_PROXY"
}
# check_call N SOFTPHONE-RC PEER-RC KEYING: the call's own checks (run right after it); sets SUMMARY
check_call() {
  local n=$1 src=$2 prc=$3 so po sum tonel rx heard tls sec
  so=$OUT/call$n.softphone.out po=$OUT/call$n.pjsip_peer.out
  echo "--- call $n: softphone"; cat "$so"
  echo "--- call $n: pjsua2 peer"; cat "$po"
  sum=$(grep '^PJSIP-PEER ' "$po" | tail -1)
  grep -q 'MediaStarted .*codec: "PCMU"' "$so" || fail "call $n: softphone did not start PCMU media with PJSIP (see $so)"
  grep -q "MediaStarted .*security: \"$4" "$so" || fail "call $n: softphone media not secured by $4 (see $so)"
  echo "$sum" | grep -q 'srtp=\[.*Active' || fail "call $n: PJSIP's SRTP not active: $sum"
  tonel=$(grep -o 'tone check: .*' "$so" | tail -1)
  [ "$src" = 0 ] || fail "call $n: softphone exit $src: ${tonel:-$(tail -1 "$so")}"
  [ -n "$sum" ] || fail "call $n: PJSIP peer printed no summary (rc=$prc, see $po)"
  [ "$prc" = 0 ] || fail "call $n: PJSIP peer failed (rc=$prc): $sum"
  rx=$(echo "$sum" | grep -o 'rx_pkt=[0-9]*' | cut -d= -f2)
  [ "${rx:-0}" -gt 0 ] || fail "call $n: PJSIP received no RTP from us: $sum"
  heard=$(tone_check "$OUT/call$n.pjsip_rx.wav" $OURS "PJSIP heard" --min-seconds 2 --also $TONE) || fail "call $n: $heard"
  tls=$(pjsip_over_tls "$n") || fail "$tls"
  sec=$(grep -o 'srtp check: .*' "$so" | tail -1)
  SUMMARY="call $n: $sec; PJSIP $(echo "$sum" | grep -o 'srtp=\[[^]]*\]'); softphone $tonel; $heard; PJSIP rx_pkt=$rx; $tls"
}
# latched_ports N: the phones' RTP ports the server latched, from the Nth "media context released" line
latched_ports() {
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log" | grep 'relay: media context released' | sed -n "$1p" \
    | grep -o 'latched=Some([0-9.]*:[0-9]*)' | grep -o '[0-9]*)$' | tr -d ')'
}


# sdk_calls N KEYING [softphone args]: the softphone calls PJSIP (SRTP mandatory, SDES)
sdk_calls() {
  local n=$1 keying=$2; shift 2
  start_peer "$n" --wait 20 --max-call 20 --srtp mandatory --srtp-keying sdes
  timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
    --tls --tls-ca "$TLS_CA" --call sip:user0003@127.0.0.1 --codecs pcmu --play tone:$OURS --expect-tone $TONE \
    --duration 4 --timeout 10 "$@" >"$OUT/call$n.softphone.out" 2>&1
  SRC=$?
  wait "$PP"; PRC=$?
  check_call "$n" $SRC $PRC "$keying"
}
# pjsip_calls N KEYING PEER-KEYING: PJSIP (SRTP mandatory, PEER-KEYING) calls the auto-answering softphone
pjsip_calls() {
  local n=$1 keying=$2 pk=$3
  timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
    --tls --tls-pin "$TLS_PIN" --auto-answer --codecs pcmu --play tone:$OURS --expect-tone $TONE \
    --expect-srtp "$pk" --duration 20 --timeout 15 >"$OUT/call$n.softphone.out" 2>&1 &
  SP=$!; BG_PIDS="$BG_PIDS $SP"
  wait_log "$OUT/call$n.softphone.out" 'Registered' 50 || fail "call $n: softphone did not register (see $OUT/call$n.softphone.out)"
  start_peer "$n" --call sip:user0001@127.0.0.1 --duration 4 --srtp mandatory --srtp-keying "$pk"
  wait "$PP"; PRC=$?
  wait "$SP"; SRC=$?
  check_call "$n" $SRC $PRC "$keying"
}

# ---- capture: everything on lo ----
timeout 120 tshark -i lo -a duration:110 -w "$OUT/cap.pcap" >"$OUT/tshark.log" 2>&1 &
TSP=$!; BG_PIDS="$BG_PIDS $TSP"
wait_log "$OUT/tshark.log" '^Capturing on' 100 || fail "tshark did not start capturing on lo (see $OUT/tshark.log)"

sdk_calls 1 SDES --srtp mandatory --expect-srtp sdes; S1=$SUMMARY
L1=$(relay_released 1) || fail "call 1: $L1"
pjsip_calls 2 SDES sdes; S2=$SUMMARY
L2=$(relay_released 2) || fail "call 2: $L2"
stop_pid "$TSP"

# ---- 4. PJSIP SRTP mandatory -> SDK with SRTP off: 488 ----
timeout -k 5 20 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
  --tls --tls-pin "$TLS_PIN" --auto-answer --codecs pcmu --srtp off --duration 4 --timeout 8 >"$OUT/call4.softphone.out" 2>&1 &
SP=$!; BG_PIDS="$BG_PIDS $SP"
wait_log "$OUT/call4.softphone.out" 'Registered' 50 || fail "call 4: softphone did not register (see $OUT/call4.softphone.out)"
start_peer 4 --call sip:user0001@127.0.0.1 --srtp mandatory --srtp-keying sdes --expect-status 488
wait "$PP"; PRC=$?
stop_pid "$SP"
P4=$(grep '^PJSIP-PEER ' "$OUT/call4.pjsip_peer.out" | tail -1)
[ "$PRC" = 0 ] || fail "call 4: PJSIP SRTP-mandatory caller to an SDK with SRTP off: $P4"
grep -q 'IncomingCall\|MediaStarted' "$OUT/call4.softphone.out" && fail "call 4: the softphone with SRTP off was offered or started the call"
W4=$(grep -a 'Warning: 305' "$OUT/call4.pjsua_peer.log" | head -1 | tr -d '\r')
[ -n "$W4" ] || fail "call 4: the 488 carried no Warning naming the reason (see $OUT/call4.pjsua_peer.log)"

# ---- 5. SDK SRTP mandatory -> PJSIP without SRTP: the call fails with a clear reason ----
start_peer 5 --wait 15 --max-call 10
timeout -k 5 20 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
  --tls --tls-ca "$TLS_CA" --call sip:user0003@127.0.0.1 --codecs pcmu --srtp mandatory --expect-status 488 \
  --duration 4 --timeout 10 >"$OUT/call5.softphone.out" 2>&1
RC5=$?
stop_pid "$PP"
cat "$OUT/call5.softphone.out"
E5=$(grep -o 'call ended: .*' "$OUT/call5.softphone.out" | tail -1)
[ "$RC5" = 0 ] || fail "call 5: SRTP-mandatory softphone to a PJSIP without SRTP: want 488, got ${E5:-exit $RC5}"
echo "$E5" | grep -qi 'srtp' || fail "call 5: the reason does not say SRTP: $E5"

# ---- the capture: SIP in TLS only, media relayed and not plaintext ----
PORTS=
for p in $PJ_PORTS; do PORTS="$PORTS --port $p"; done
for n in 1 2; do
  for p in $(grep -o '(\(Udp\|Tcp\), 127.0.0.1:[0-9]*)' "$OUT/call$n.softphone.out" | grep -o '[0-9]*)' | tr -d ')' | sort -u); do
    PORTS="$PORTS --port $p"
  done
done
PHONES=
for n in 1 2; do
  lp=$(latched_ports $n)
  [ "$(echo "$lp" | wc -w)" = 2 ] || fail "call $n: the server logged no latched RTP address for both phones ($lp)"
  for p in $lp; do PHONES="$PHONES --phone-port $p"; done
done
STRICT=; [ -n "${RVOIP_IN_NETNS:-}" ] && STRICT=--strict
# shellcheck disable=SC2086
C=$(python3 "$INTEG_DIR/tls_capture.py" "$OUT/cap.pcap" --tls-port "${TLS_PROXY##*:}" --sip-port 5060 $PORTS $STRICT \
  --min-conns 4 --relay "$RELAY_PORTS" $PHONES --min 100 --label "SDK<->PJSIP SRTP over TLS (calls 1-2)") \
  || fail "$(echo "$C" | tail -1)"
echo "$C"
# shellcheck disable=SC2086
W=$(python3 "$INTEG_DIR/srtp_capture.py" "$OUT/cap.pcap" $PHONES --tone $OURS --tone $TONE --min 100 \
  --label "SRTP payloads (calls 1-2)") || fail "$(echo "$W" | tail -1)"
echo "$W"
echo "$S1"; echo "call 1: $L1"
echo "$S2"; echo "call 2: $L2"
echo "call 4: PJSIP SRTP mandatory -> SDK SRTP off: $P4; $W4"
echo "call 5: SDK SRTP mandatory -> PJSIP without SRTP: $E5"
echo "SDK <-> PJSIP with SRTP (SDES both ways) over TLS via $TLS_PROXY through the relay: tones heard both ways, no plaintext SIP or audio on the wire; refusals are 488 with reasons, never plaintext"
