#!/usr/bin/env bash
# baresip-tls: SIP over TLS end to end. Our SDK softphone (target/release/examples/softphone) and baresip
# (Debian 1.0) both register over TLS with the server's tls: listener ($TLS_PROXY, 127.0.0.1:5061, the
# certificate run-integration.sh made for this run, signed by the test CA $TLS_CA) and call each other.
# baresip: headless, config from shared/peers/baresip/b (copied to $OUT), account
# <sip:user0002@127.0.0.1;transport=tls>, sip_trans_def tls, sip_cafile $TLS_CA, sip_listen
# 127.0.0.1:5095 (its TLS listener on 5096, unused: the server reaches it down its connection), RTP
# 40100-40199, sends an 880 Hz sine (aufile), records what it hears (sndfile), SIP trace on (-s: every
# message it sends or receives, with its transport, in clear in its log).
#  0. the softphone refuses a server it cannot verify: --tls --tls-ca with a CA made here that did not
#     sign the server's certificate must fail the registration with 503 naming the certificate.
#  1. SDK -> baresip: softphone user0001 (--tls --tls-ca $TLS_CA) calls sip:user0002@127.0.0.1 with
#     --codecs pcmu, sends 440 Hz, hangs up after 4 s (BYE through the server to baresip).
#  2. baresip -> SDK: softphone user0001 (--tls --tls-pin $TLS_PIN, the fingerprint the server printed)
#     auto-answers, opus,g722,pcmu; baresip dials sip:user0001@127.0.0.1 (offer opus, G722, PCMU) and
#     hangs up when it quits (-t, BYE through the server to the softphone).
# Each call: the softphone heard 880 Hz (--expect-tone 880: >= 90 % of the energy of the last half of
# the call per 20 ms block, exit 0, which also needs Connected and Ended with 200); baresip heard 440 Hz
# (its recording, >= 90 % per 20 ms block, tone_share.py); baresip's SIP trace shows only TLS and the
# whole dialog: the INVITE, its 200, the ACK, the BYE and its 200 (each in the right direction).
# Capture (tshark, everything on lo, tls_capture.py):
#   * every TCP stream on the TLS port parses as TLS records from the first byte (ClientHello,
#     ServerHello, then application data both ways), at least 4 connections (two phones, two calls);
#   * no frame to or from our SIP ports (the server's 5060/5061, the phones' listeners, the TLS client
#     ports) carries "SIP/2.0", and not one packet used port 5060 (UDP or TCP);
#   * media through the relay: the phones' RTP ports (the server logs what it latched) exchanged >= 100
#     packets each way with relay ports ($RELAY_PORTS), none went phone<->phone.
# After each call's BYE the server logs the relay's media context released with ports_in_use=0.
# TARGET=kamailio|external: skipped (exit 0), the test needs our server's TLS listener and test CA.
# Logs: $OUT/baresip/{call1,call2}.{softphone.out,baresip.log}, {call1,call2}.rec/, cap.pcap.
set -u
. "$(dirname "$0")/lib.sh"
case $TARGET in
  rvoip) ;;
  *) echo "baresip-tls: skipped for TARGET=$TARGET (needs rvoip-server's TLS listener and the run's test CA)"; exit 0 ;;
esac
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
command -v baresip >/dev/null || fail "baresip not installed"
command -v tshark >/dev/null || fail "tshark not installed"
command -v openssl >/dev/null || fail "openssl not installed"
[ -f /usr/lib/baresip/modules/sndfile.so ] || fail "baresip sndfile module missing (/usr/lib/baresip/modules/sndfile.so)"
[ -s "${TLS_CA:-}" ] && [ -n "${TLS_PIN:-}" ] && [ -n "${TLS_PROXY:-}" ] \
  || fail "TLS_CA/TLS_PIN/TLS_PROXY not set (run through tests/run-integration.sh)"
grep -q "TLS certificate SHA-256 fingerprint: $TLS_PIN" "$OUT/server.log" \
  || fail "the server did not print the test certificate's fingerprint $TLS_PIN (see $OUT/server.log)"
BS_PORT=5095   # baresip's sip_listen (UDP/TCP; its TLS listener is the next port)
for p in $BS_PORT $((BS_PORT + 1)); do
  ss -lntu 2>/dev/null | grep -q "127.0.0.1:$p " && fail "127.0.0.1:$p (baresip's SIP port) is busy"
done
B=$OUT/baresip; mkdir -p "$B"
TONE=880 OURS=440
WAV=$B/tone$TONE.wav
sox -n -r 48000 -c 2 -b 16 "$WAV" synth 30 sine $TONE vol 0.5 2>/dev/null || python3 - "$WAV" $TONE <<'PY'
import math, struct, sys, wave
f = float(sys.argv[2])
w = wave.open(sys.argv[1], "wb"); w.setnchannels(2); w.setsampwidth(2); w.setframerate(48000)
fr = b"".join(struct.pack("<hh", v, v) for v in (int(16000 * math.sin(2 * math.pi * f * i / 48000)) for i in range(48000)))
w.writeframes(fr * 30); w.close()
PY
[ -s "$WAV" ] || fail "could not create $WAV"

# mkcfg NAME [auto]: fresh baresip config dir over TLS (baresip writes uuid/contacts into it)
mkcfg() {
  local d=$B/$1 mode=
  [ "${2:-}" = auto ] && mode="answermode=auto;"
  rm -rf "$d"; cp -r "$SHARED/peers/baresip/b" "$d"; chmod -R u+w "$d"
  sed -i -e "s|/tmp/peers/baresip/tone48k.wav|$WAV|" \
    -e "s|^sip_listen[[:space:]].*|sip_listen\t\t127.0.0.1:$BS_PORT|" \
    -e "s|^sip_trans_def[[:space:]].*|sip_trans_def\t\ttls|" "$d/config"
  grep -q '^module[[:space:]]*opus.so' "$d/config" || sed -i 's|^\(module[[:space:]]*\)g711.so|&\n\1opus.so\n\1g722.so|' "$d/config"
  rm -rf "$d.rec"; mkdir -p "$d.rec"
  sed -i 's|^\(module[[:space:]]*\)aufile.so|&\n\1sndfile.so|' "$d/config"
  printf 'snd_path\t\t%s\nsip_cafile\t\t%s\n' "$d.rec" "$TLS_CA" >>"$d/config"
  printf '<sip:user0002@127.0.0.1;transport=tls>;auth_pass=secret;regint=600;%saudio_codecs=opus/48000/2,G722/16000/1,PCMU\n' \
    "$mode" >"$d/accounts"
  grep -q "aufile,$WAV" "$d/config" && grep -q 'sndfile.so' "$d/config" && grep -q "^sip_listen.*:$BS_PORT" "$d/config" \
    && grep -q '^sip_trans_def.*tls' "$d/config" && grep -q '^sip_cafile' "$d/config" \
    || fail "baresip config $d not as expected"
}
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
# sip_trace LOG: baresip's -s trace as "DIR;TRANSPORT;START-LINE;CSEQ-METHOD" lines, DIR = TX (to the
# server, $TLS_PORT) or RX (from it)
sip_trace() {
  sed 's/\x1b\[[0-9;]*m//g; s/\r$//' "$1" | awk -v srv=":$TLS_PORT" '
    /^(UDP|TCP|TLS|WS|WSS) [0-9.:]+ -> [0-9.:]+$/ { tp = $1; dir = ($4 ~ srv "$") ? "TX" : "RX"; want = 1; next }
    want == 1 { start = $0; want = 2; next }
    want == 2 && tolower($1) == "cseq:" { print dir ";" tp ";" start ";" $3; want = 0 }'
}
# trace_check N LOG ROLE: baresip's SIP messages in call N, all over TLS, the whole dialog
trace_check() {
  local n=$1 t=$B/call$1.trace role=$3 bad
  sip_trace "$2" >"$t"
  [ -s "$t" ] || fail "call $n: no SIP trace in $2"
  bad=$(grep -cv '^[TR]X;TLS;' "$t")
  [ "$bad" = 0 ] || fail "call $n: baresip sent or received $bad SIP message(s) not over TLS: $(grep -v '^[TR]X;TLS;' "$t" | head -1)"
  has() { grep -qE "$1" "$t" || fail "call $n: baresip's SIP trace has no $2 (see $t)"; }
  has '^TX;TLS;REGISTER sip:' "REGISTER sent"
  has '^RX;TLS;SIP/2.0 200 .*;REGISTER$' "200 to its REGISTER"
  if [ "$role" = callee ]; then
    has '^RX;TLS;INVITE sip:' "INVITE received"
    has '^TX;TLS;SIP/2.0 200 .*;INVITE$' "200 sent to the INVITE"
    has '^RX;TLS;ACK sip:.*;ACK$' "ACK received for its 200 (through the server)"
    has '^RX;TLS;BYE sip:' "BYE received (the softphone hung up, through the server)"
    has '^TX;TLS;SIP/2.0 200 .*;BYE$' "200 sent to the BYE"
  else
    has '^TX;TLS;INVITE sip:' "INVITE sent"
    has '^RX;TLS;SIP/2.0 200 .*;INVITE$' "200 received to its INVITE"
    has '^TX;TLS;ACK sip:' "ACK sent"
    has '^TX;TLS;BYE sip:' "BYE sent (baresip hung up)"
    has '^RX;TLS;SIP/2.0 200 .*;BYE$' "200 to its BYE (from the softphone, through the server)"
  fi
  echo "call $n: baresip's SIP over TLS only: $(wc -l <"$t") messages ($(cut -d';' -f1,3 "$t" | sed 's/ sip:.*//;s/SIP\/2.0 //' | cut -c1-20 | tr '\n' ' '| sed 's/ *$//'))"
}
# latched_ports N: the phones' RTP ports the server latched, from the Nth "media context released" line
latched_ports() {
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log" | grep 'relay: media context released' | sed -n "$1p" \
    | grep -o 'latched=Some([0-9.]*:[0-9]*)' | grep -o '[0-9]*)$' | tr -d ')'
}
# check_call N SOFTPHONE-RC CODEC ROLE
check_call() {
  local n=$1 rc=$2 codec=$3 so=$B/call$1.softphone.out bl=$B/call$1.baresip.log tone rx rec heard
  echo "--- call $n: softphone"; cat "$so"
  echo "--- call $n: baresip"; grep -aE 'Call established|terminated|^packets:|^lost:|Set audio|incoming rtp' "$bl"
  grep -q "MediaStarted .*codec: \"$codec\"" "$so" || fail "call $n: softphone did not start $codec media (see $so)"
  tone=$(grep -o 'tone check: .*' "$so" | tail -1)
  [ "$rc" = 0 ] || fail "call $n: softphone exit $rc: ${tone:-$(tail -1 "$so")}"
  rx=$(grep -a '^packets:' "$bl" | tail -1 | awk '{print $3}')
  [ "${rx:-0}" -gt 0 ] 2>/dev/null || fail "call $n: baresip received no RTP from us (its stats: rx packets=${rx:-none})"
  rec=$(ls "$B/call$n.rec"/dump-*-dec.wav 2>/dev/null | tail -1)
  heard=$(tone_check "$rec" $OURS "baresip heard" --min-seconds 2 --also $TONE) || fail "call $n: $heard"
  TRACE=$(trace_check "$n" "$bl" "$4") || fail "$TRACE"
  SUMMARY="call $n: $codec, softphone $tone; $heard; baresip rx $rx RTP packets"
}

# ---- 0. the softphone does not accept a certificate it cannot verify ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=untrusted test CA" \
  -keyout "$B/untrusted-ca.key" -out "$B/untrusted-ca.pem" >/dev/null 2>&1 || fail "openssl: could not make a CA"
timeout -k 5 15 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
  --tls --tls-ca "$B/untrusted-ca.pem" --timeout 5 >"$B/call0.softphone.out" 2>&1
RC0=$?
cat "$B/call0.softphone.out"
[ "$RC0" != 0 ] && grep -q 'registration failed: 503 .*certificate' "$B/call0.softphone.out" \
  || fail "softphone with an untrusted CA: exit $RC0, want a failed registration (503, certificate): $(tail -1 "$B/call0.softphone.out")"
V0="untrusted CA refused: $(grep -o 'registration failed: 503 .*' "$B/call0.softphone.out" | cut -c1-140)"

# ---- capture: everything on lo ----
timeout 90 tshark -i lo -a duration:80 -w "$B/cap.pcap" >"$B/tshark.log" 2>&1 &
TSP=$!; BG_PIDS="$BG_PIDS $TSP"
wait_log "$B/tshark.log" '^Capturing on' 100 || fail "tshark did not start capturing on lo (see $B/tshark.log)"

# ---- 1. SDK calls baresip ----
mkcfg call1 auto
timeout 40 baresip -s -f "$B/call1" -t 30 >"$B/call1.baresip.log" 2>&1 &
BP=$!; BG_PIDS="$BG_PIDS $BP"
wait_log "$B/call1.baresip.log" 'user0002@127.0.0.1: \{0/TLS/v4\} 200 OK' 50 \
  || fail "baresip user0002 did not register over TLS (see $B/call1.baresip.log)"
timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
  --tls --tls-ca "$TLS_CA" --call sip:user0002@127.0.0.1 --codecs pcmu --play tone:$OURS --expect-tone $TONE \
  --duration 4 --timeout 10 >"$B/call1.softphone.out" 2>&1
RC1=$?
# baresip prints its RTP statistics when the call ends: when the BYE reached it
wait_log "$B/call1.baresip.log" '^packets:' 30
stop_pid "$BP"
check_call 1 $RC1 PCMU callee; S1=$SUMMARY T1=$TRACE
L1=$(relay_released 1) || fail "call 1: $L1"

# ---- 2. baresip calls the SDK ----
mkcfg call2
timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
  --tls --tls-pin "$TLS_PIN" --auto-answer --codecs opus,g722,pcmu --play tone:$OURS --expect-tone $TONE \
  --duration 20 --timeout 15 >"$B/call2.softphone.out" 2>&1 &
SP=$!; BG_PIDS="$BG_PIDS $SP"
wait_log "$B/call2.softphone.out" 'Registered' 50 || fail "softphone (auto-answer, --tls-pin) did not register (see $B/call2.softphone.out)"
# baresip hangs up (BYE) when it quits after -t seconds
timeout 25 baresip -s -f "$B/call2" -t 6 -e "/dial sip:user0001@127.0.0.1" >"$B/call2.baresip.log" 2>&1 &
BP=$!; BG_PIDS="$BG_PIDS $BP"
wait "$SP"; RC2=$?
wait "$BP"
check_call 2 $RC2 opus caller; S2=$SUMMARY T2=$TRACE
L2=$(relay_released 2) || fail "call 2: $L2"
stop_pid "$TSP"

# ---- the capture: TLS only, no plaintext SIP, media through the relay ----
PORTS="--port $BS_PORT --port $((BS_PORT + 1))"
for n in 1 2; do
  for p in $(grep -o '(\(Udp\|Tcp\), 127.0.0.1:[0-9]*)' "$B/call$n.softphone.out" | grep -o '[0-9]*)' | tr -d ')' | sort -u); do
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
C=$(python3 "$INTEG_DIR/tls_capture.py" "$B/cap.pcap" --tls-port "${TLS_PROXY##*:}" --sip-port 5060 $PORTS $STRICT \
  --min-conns 4 --relay "$RELAY_PORTS" $PHONES --min 100 --label "SDK<->baresip over TLS (calls 1 and 2)") \
  || fail "$(echo "$C" | tail -1)"
echo "$C"
echo "$V0"
echo "$S1"; echo "$T1"; echo "call 1: $L1"
echo "$S2"; echo "$T2"; echo "call 2: $L2"
echo "SDK <-> baresip over TLS via $TLS_PROXY: both directions, $OURS Hz and $TONE Hz heard both ways, whole dialogs over TLS, $(echo "$C" | tail -1 | sed 's/^[^:]*: ok: //; s/ (application data.*//'), no plaintext SIP, media relayed"
