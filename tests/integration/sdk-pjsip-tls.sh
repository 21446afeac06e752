#!/usr/bin/env bash
# sdk-pjsip-tls: SIP over TLS between our SDK softphone (target/release/examples/softphone) and PJSIP 2.15
# (pjsua2 Python, PyPI pjsua2-python, OpenSSL inside) through the server's tls: listener ($TLS_PROXY,
# 127.0.0.1:5061, the certificate run-integration.sh made for this run, signed by the test CA $TLS_CA).
# tests/integration/sdk_pjsip_peer.py --tls-ca: one pjsua2 account user0003 with a TLS transport only
# (no UDP transport at all), registrar and outbound proxy sip:127.0.0.1:5061;transport=tls, the server's
# certificate verified against $TLS_CA (verifyServer); it plays a looped 1000 Hz sine into the call and
# records what it receives; G722 first.
#  0. PJSIP verifies: the peer with a CA made here (not the one that signed the server's certificate)
#     must fail its REGISTER with 503 PJSIP_TLS_ECERTVERIF, so the registrations below verified the chain.
#  1. SDK -> PJSIP: the softphone (user0001, --tls --tls-ca $TLS_CA) calls sip:user0003@127.0.0.1 with
#     --codecs g722,pcmu, sends 440 Hz, hangs up after 4 s; PJSIP auto-answers (180, 200).
#  2. PJSIP -> SDK: the softphone (user0001, --tls --tls-pin $TLS_PIN, --auto-answer, 440 Hz) is called
#     by PJSIP (INVITE 407 answered by pjsua), which hangs up (BYE) after 4 s.
# Each call: G722; the softphone heard PJSIP's 1000 Hz (--expect-tone: >= 90 % of the energy of the last
# half of the call per 20 ms block; exit 0, which also needs Connected and Ended with 200); PJSIP heard our
# 440 Hz (its recording, >= 90 % per 20 ms block, tone_share.py); PJSIP's call was CONFIRMED and ended by a
# BYE answered 200, its RTP rx/tx counters > 0 (sdk_pjsip_peer.py's own checks); every SIP message PJSIP
# sent or received went over TLS (its log: "TX/RX ... to/from TLS 127.0.0.1:5061").
# Capture (tshark, everything on lo, tls_capture.py): every TCP stream on the TLS port is TLS from its
# first byte (ClientHello, ServerHello, application data both ways), >= 4 connections; no frame to or from
# our SIP ports (the server's 5060/5061, the softphones' listeners, PJSIP's TLS listener, the TLS client
# ports) carries "SIP/2.0" and not one packet used port 5060; the phones' RTP ports (latched by the server,
# from its log) exchanged >= 100 packets each way with relay ports ($RELAY_PORTS), none phone<->phone.
# After each call's BYE the server logs the relay's media context released with ports_in_use=0.
# TARGET=kamailio|external: skipped (exit 0), the test needs our server's TLS listener and test CA.
# Logs: $OUT/call{1,2}.softphone.out, $OUT/call{0,1,2}.pjsip_peer.out, $OUT/call{0,1,2}.pjsua_peer.log
# (pjsua level 5, all SIP messages), $OUT/call{1,2}.pjsip_rx.wav (what PJSIP heard), $OUT/cap.pcap.
set -u
. "$(dirname "$0")/lib.sh"
case $TARGET in
  rvoip) ;;
  *) echo "sdk-pjsip-tls: skipped for TARGET=$TARGET (needs rvoip-server's TLS listener and the run's test CA)"; exit 0 ;;
esac
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
python3 -c 'import pjsua2' 2>/dev/null || fail "python module pjsua2 missing (pip install pjsua2-python)"
command -v tshark >/dev/null || fail "tshark not installed"
command -v openssl >/dev/null || fail "openssl not installed"
[ -s "${TLS_CA:-}" ] && [ -n "${TLS_PIN:-}" ] && [ -n "${TLS_PROXY:-}" ] \
  || fail "TLS_CA/TLS_PIN/TLS_PROXY not set (run through tests/run-integration.sh)"
grep -q "TLS certificate SHA-256 fingerprint: $TLS_PIN" "$OUT/server.log" \
  || fail "the server did not print the test certificate's fingerprint $TLS_PIN (see $OUT/server.log)"
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
    --wav "$OUT/pjsip_tone.wav" --record "$OUT/call$n.pjsip_rx.wav" --log "$OUT/call$n.pjsua_peer.log" "$@" \
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
# check_call N SOFTPHONE-RC PEER-RC: the call's own checks (run right after it); sets SUMMARY
check_call() {
  local n=$1 src=$2 prc=$3 so po sum tonel rx heard tls
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
  tls=$(pjsip_over_tls "$n") || fail "$tls"
  SUMMARY="call $n: softphone $tonel; $heard; PJSIP rx_pkt=$rx; $tls"
}
# latched_ports N: the phones' RTP ports the server latched, from the Nth "media context released" line
latched_ports() {
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log" | grep 'relay: media context released' | sed -n "$1p" \
    | grep -o 'latched=Some([0-9.]*:[0-9]*)' | grep -o '[0-9]*)$' | tr -d ')'
}

# ---- 0. PJSIP refuses a server certificate that does not verify ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=untrusted test CA" \
  -keyout "$OUT/untrusted-ca.key" -out "$OUT/untrusted-ca.pem" >/dev/null 2>&1 || fail "openssl: could not make a CA"
timeout -k 5 30 python3 "$PEER" --server "$TLS_PROXY" --tls-ca "$OUT/untrusted-ca.pem" --user user0003 \
  --wav "$OUT/pjsip_tone.wav" --log "$OUT/call0.pjsua_peer.log" --wait 1 >"$OUT/call0.pjsip_peer.out" 2>&1
RC0=$?
V0=$(grep '^PJSIP-PEER ' "$OUT/call0.pjsip_peer.out" | tail -1)
[ "$RC0" != 0 ] && echo "$V0" | grep -q 'registration failed: 503 .*PJSIP_TLS_ECERTVERIF' \
  || fail "PJSIP with an untrusted CA: rc=$RC0, want its REGISTER failed with 503 PJSIP_TLS_ECERTVERIF: ${V0:-$(tail -1 "$OUT/call0.pjsip_peer.out")}"
V0="untrusted CA: PJSIP $(echo "$V0" | grep -o 'registration failed: .*')"

# ---- capture: everything on lo ----
timeout 90 tshark -i lo -a duration:80 -w "$OUT/cap.pcap" >"$OUT/tshark.log" 2>&1 &
TSP=$!; BG_PIDS="$BG_PIDS $TSP"
wait_log "$OUT/tshark.log" '^Capturing on' 100 || fail "tshark did not start capturing on lo (see $OUT/tshark.log)"

# ---- 1. SDK calls PJSIP ----
start_peer 1 --wait 20 --max-call 20
timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
  --tls --tls-ca "$TLS_CA" --call sip:user0003@127.0.0.1 --codecs g722,pcmu --play tone:$OURS --expect-tone $TONE \
  --duration 4 --timeout 10 >"$OUT/call1.softphone.out" 2>&1
SRC=$?
wait "$PP"; PRC=$?
check_call 1 $SRC $PRC
S1=$SUMMARY
L1=$(relay_released 1) || fail "call 1: $L1"

# ---- 2. PJSIP calls the SDK ----
timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
  --tls --tls-pin "$TLS_PIN" --auto-answer --codecs g722,pcmu --play tone:$OURS --expect-tone $TONE \
  --duration 20 --timeout 15 >"$OUT/call2.softphone.out" 2>&1 &
SP=$!; BG_PIDS="$BG_PIDS $SP"
wait_log "$OUT/call2.softphone.out" 'Registered' 50 || fail "call 2: softphone (auto-answer, --tls-pin) did not register (see $OUT/call2.softphone.out)"
start_peer 2 --call sip:user0001@127.0.0.1 --duration 4
wait "$PP"; PRC=$?
wait "$SP"; SRC=$?
check_call 2 $SRC $PRC
S2=$SUMMARY
L2=$(relay_released 2) || fail "call 2: $L2"
stop_pid "$TSP"

# ---- the capture: TLS only, no plaintext SIP, media through the relay ----
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
  --min-conns 4 --relay "$RELAY_PORTS" $PHONES --min 100 --label "SDK<->PJSIP over TLS (calls 1 and 2)") \
  || fail "$(echo "$C" | tail -1)"
echo "$C"
echo "$V0"
echo "$S1"; echo "call 1: $L1"
echo "$S2"; echo "call 2: $L2"
echo "SDK <-> PJSIP over TLS via $TLS_PROXY: both directions on G722, $OURS Hz and $TONE Hz heard both ways, $(echo "$C" | tail -1 | sed 's/^[^:]*: ok: //; s/ (application data.*//'), no plaintext SIP, media relayed"
