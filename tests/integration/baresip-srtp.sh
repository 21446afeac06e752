#!/usr/bin/env bash
# baresip-srtp: encrypted media (RFC 3711) between our SDK softphone (target/release/examples/softphone)
# and baresip (Debian 1.0, modules srtp and dtls_srtp) through rvoip-server, SIP over TLS ($TLS_PROXY,
# the run's test CA $TLS_CA) and the media through the server's relay, which passes SRTP untouched.
# baresip: headless, config from shared/peers/baresip/b (as baresip-tls), account
# <sip:user0002@127.0.0.1;transport=tls> with ;mediaenc=srtp-mand (SDES, RTP/SAVP) or ;mediaenc=dtls_srtp
# (UDP/TLS/RTP/SAVP), PCMU only (so the wire check below can read the payload as G.711), sends 880 Hz,
# records what it hears.
#  1. SDK -> baresip srtp-mand: softphone --srtp mandatory (SDES over TLS: RTP/SAVP + a=crypto).
#  2. baresip srtp-mand -> SDK: softphone with the default policy (optional) answers with SDES.
#  3. baresip dtls_srtp -> SDK: the softphone answers UDP/TLS/RTP/SAVP, setup:active, DTLS handshake on
#     the RTP port through the relay.
#  4. SDK -> baresip dtls_srtp: softphone --srtp mandatory --srtp-keying dtls (offer actpass).
#  5. SDK --srtp mandatory -> baresip without SRTP: the call fails with 488 and a reason that says SRTP
#     was refused (softphone --expect-status 488), never a plaintext call.
# Calls 1-4: the softphone heard 880 Hz and baresip 440 Hz (>= 90 % per 20 ms block), the softphone's
# MediaStarted names the keying and its statistics before hangup say SDES/DTLS with no authentication
# failure (--expect-srtp); baresip's SIP trace shows TLS only.
# Capture (tshark on lo, calls 1-4): tls_capture.py (every SIP byte in TLS, no "SIP/2.0" on our ports,
# media relayed: >= 100 packets each way between each phone RTP port and relay ports, none direct) and
# srtp_capture.py (the RTP payloads of every phone port read as plaintext G.711 carry neither tone:
# share < 0.2, after a self-test that plaintext G.711 reads >= 0.9).
# TARGET=kamailio|external: skipped (exit 0), the test needs our server's TLS listener and test CA.
# Logs: $OUT/baresip-srtp/call{1..5}.{softphone.out,baresip.log}, call{1..4}.rec/, cap.pcap.
set -u
. "$(dirname "$0")/lib.sh"
case $TARGET in
  rvoip) ;;
  *) echo "baresip-srtp: skipped for TARGET=$TARGET (needs rvoip-server's TLS listener and the run's test CA)"; exit 0 ;;
esac
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
command -v baresip >/dev/null || fail "baresip not installed"
command -v tshark >/dev/null || fail "tshark not installed"
for m in sndfile srtp dtls_srtp; do
  [ -f /usr/lib/baresip/modules/$m.so ] || fail "baresip module $m missing (/usr/lib/baresip/modules/$m.so)"
done
[ -s "${TLS_CA:-}" ] && [ -n "${TLS_PIN:-}" ] && [ -n "${TLS_PROXY:-}" ] \
  || fail "TLS_CA/TLS_PIN/TLS_PROXY not set (run through tests/run-integration.sh)"
BS_PORT=5095   # baresip's sip_listen (UDP/TCP; its TLS listener is the next port)
for p in $BS_PORT $((BS_PORT + 1)); do
  ss -lntu 2>/dev/null | grep -q "127.0.0.1:$p " && fail "127.0.0.1:$p (baresip's SIP port) is busy"
done
B=$OUT/baresip-srtp; mkdir -p "$B"
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

# mkcfg NAME auto|dial MEDIAENC: fresh baresip config dir over TLS (baresip writes uuid/contacts into
# it), account with ;mediaenc=MEDIAENC (srtp-mand, dtls_srtp) unless MEDIAENC is "none", PCMU only
mkcfg() {
  local d=$B/$1 mode= enc=
  [ "${2:-}" = auto ] && mode="answermode=auto;"
  [ "${3:-none}" != none ] && enc="mediaenc=$3;"
  rm -rf "$d"; cp -r "$SHARED/peers/baresip/b" "$d"; chmod -R u+w "$d"
  sed -i -e "s|/tmp/peers/baresip/tone48k.wav|$WAV|" \
    -e "s|^sip_listen[[:space:]].*|sip_listen\t\t127.0.0.1:$BS_PORT|" \
    -e "s|^sip_trans_def[[:space:]].*|sip_trans_def\t\ttls|" "$d/config"
  grep -q '^module[[:space:]]*opus.so' "$d/config" || sed -i 's|^\(module[[:space:]]*\)g711.so|&\n\1opus.so\n\1g722.so|' "$d/config"
  rm -rf "$d.rec"; mkdir -p "$d.rec"
  sed -i 's|^\(module[[:space:]]*\)aufile.so|&\n\1sndfile.so|' "$d/config"
  [ -n "$enc" ] && sed -i 's|^\(module[[:space:]]*\)g711.so|&\n\1srtp.so\n\1dtls_srtp.so|' "$d/config"
  printf 'snd_path\t\t%s\nsip_cafile\t\t%s\n' "$d.rec" "$TLS_CA" >>"$d/config"
  printf '<sip:user0002@127.0.0.1;transport=tls>;auth_pass=secret;regint=600;%s%saudio_codecs=PCMU\n' \
    "$mode" "$enc" >"$d/accounts"
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
# check_call N SOFTPHONE-RC CODEC ROLE KEYING: as baresip-tls, plus the softphone's MediaStarted names
# the SRTP KEYING (SDES or DTLS-SRTP) and its --expect-srtp check passed (in its exit code)
check_call() {
  local n=$1 rc=$2 codec=$3 so=$B/call$1.softphone.out bl=$B/call$1.baresip.log tone rx rec heard sec
  echo "--- call $n: softphone"; cat "$so"
  echo "--- call $n: baresip"; grep -aE 'Call established|terminated|^packets:|^lost:|Set audio|incoming rtp' "$bl"
  grep -q "MediaStarted .*codec: \"$codec\"" "$so" || fail "call $n: softphone did not start $codec media (see $so)"
  grep -q "MediaStarted .*security: \"$5" "$so" || fail "call $n: softphone media not secured by $5 (see $so)"
  sec=$(grep -o 'srtp check: .*' "$so" | tail -1)
  tone=$(grep -o 'tone check: .*' "$so" | tail -1)
  [ "$rc" = 0 ] || fail "call $n: softphone exit $rc: ${tone:-$(tail -1 "$so")}"
  rx=$(grep -a '^packets:' "$bl" | tail -1 | awk '{print $3}')
  [ "${rx:-0}" -gt 0 ] 2>/dev/null || fail "call $n: baresip received no RTP from us (its stats: rx packets=${rx:-none})"
  rec=$(ls "$B/call$n.rec"/dump-*-dec.wav 2>/dev/null | tail -1)
  heard=$(tone_check "$rec" $OURS "baresip heard" --min-seconds 2 --also $TONE) || fail "call $n: $heard"
  TRACE=$(trace_check "$n" "$bl" "$4") || fail "$TRACE"
  SUMMARY="call $n: $codec, $sec; softphone $tone; $heard; baresip rx $rx RTP packets"
}

# sdk_calls N MEDIAENC KEYING [softphone args]: the softphone calls baresip (auto-answer, MEDIAENC)
sdk_calls() {
  local n=$1 enc=$2 keying=$3; shift 3
  mkcfg call$n auto "$enc"
  timeout 40 baresip -s -f "$B/call$n" -t 30 >"$B/call$n.baresip.log" 2>&1 &
  BP=$!; BG_PIDS="$BG_PIDS $BP"
  wait_log "$B/call$n.baresip.log" 'user0002@127.0.0.1: \{0/TLS/v4\} 200 OK' 50 \
    || fail "call $n: baresip user0002 did not register over TLS (see $B/call$n.baresip.log)"
  timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
    --tls --tls-ca "$TLS_CA" --call sip:user0002@127.0.0.1 --codecs pcmu --play tone:$OURS --expect-tone $TONE \
    --duration 4 --timeout 10 "$@" >"$B/call$n.softphone.out" 2>&1
  RC=$?
  wait_log "$B/call$n.baresip.log" '^packets:' 30
  stop_pid "$BP"
  check_call "$n" $RC PCMU callee "$keying"
}
# baresip_calls N MEDIAENC KEYING: baresip (MEDIAENC) calls the auto-answering softphone
baresip_calls() {
  local n=$1 enc=$2 keying=$3
  mkcfg call$n dial "$enc"
  timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
    --tls --tls-ca "$TLS_CA" --auto-answer --codecs pcmu --play tone:$OURS --expect-tone $TONE \
    --expect-srtp "$(echo "$keying" | cut -c1-4 | tr -d -)" --duration 20 --timeout 15 >"$B/call$n.softphone.out" 2>&1 &
  SP=$!; BG_PIDS="$BG_PIDS $SP"
  wait_log "$B/call$n.softphone.out" 'Registered' 50 || fail "call $n: softphone did not register (see $B/call$n.softphone.out)"
  timeout 25 baresip -s -f "$B/call$n" -t 6 -e "/dial sip:user0001@127.0.0.1" >"$B/call$n.baresip.log" 2>&1 &
  BP=$!; BG_PIDS="$BG_PIDS $BP"
  wait "$SP"; RC=$?
  stop_pid "$BP"
  check_call "$n" $RC PCMU caller "$keying"
}

# ---- capture: everything on lo ----
timeout 150 tshark -i lo -a duration:140 -w "$B/cap.pcap" >"$B/tshark.log" 2>&1 &
TSP=$!; BG_PIDS="$BG_PIDS $TSP"
wait_log "$B/tshark.log" '^Capturing on' 100 || fail "tshark did not start capturing on lo (see $B/tshark.log)"

sdk_calls 1 srtp-mand SDES --srtp mandatory --expect-srtp sdes; S1=$SUMMARY
L1=$(relay_released 1) || fail "call 1: $L1"
baresip_calls 2 srtp-mand SDES; S2=$SUMMARY
L2=$(relay_released 2) || fail "call 2: $L2"
baresip_calls 3 dtls_srtp DTLS-SRTP; S3=$SUMMARY
L3=$(relay_released 3) || fail "call 3: $L3"
sdk_calls 4 dtls_srtp DTLS-SRTP --srtp mandatory --srtp-keying dtls --expect-srtp dtls; S4=$SUMMARY
L4=$(relay_released 4) || fail "call 4: $L4"
stop_pid "$TSP"

# ---- 5. SRTP mandatory against a peer without SRTP: 488, no call ----
mkcfg call5 auto none
timeout 30 baresip -s -f "$B/call5" -t 20 >"$B/call5.baresip.log" 2>&1 &
BP=$!; BG_PIDS="$BG_PIDS $BP"
wait_log "$B/call5.baresip.log" 'user0002@127.0.0.1: \{0/TLS/v4\} 200 OK' 50 \
  || fail "call 5: baresip user0002 did not register over TLS (see $B/call5.baresip.log)"
timeout -k 5 20 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$TLS_PROXY" \
  --tls --tls-ca "$TLS_CA" --call sip:user0002@127.0.0.1 --codecs pcmu --srtp mandatory --expect-status 488 \
  --duration 4 --timeout 10 >"$B/call5.softphone.out" 2>&1
RC5=$?
stop_pid "$BP"
cat "$B/call5.softphone.out"
E5=$(grep -o 'call ended: .*' "$B/call5.softphone.out" | tail -1)
[ "$RC5" = 0 ] || fail "call 5: SRTP-mandatory softphone to a baresip without SRTP: want 488, got ${E5:-exit $RC5}"
echo "$E5" | grep -qi 'srtp' || fail "call 5: the 488's reason does not say SRTP: $E5"
grep -q 'Connected' "$B/call5.softphone.out" && fail "call 5: the call connected"

# ---- the capture: SIP in TLS only, media relayed and not plaintext ----
PORTS="--port $BS_PORT --port $((BS_PORT + 1))"
for n in 1 2 3 4; do
  for p in $(grep -o '(\(Udp\|Tcp\), 127.0.0.1:[0-9]*)' "$B/call$n.softphone.out" | grep -o '[0-9]*)' | tr -d ')' | sort -u); do
    PORTS="$PORTS --port $p"
  done
done
PHONES=
for n in 1 2 3 4; do
  lp=$(latched_ports $n)
  [ "$(echo "$lp" | wc -w)" = 2 ] || fail "call $n: the server logged no latched RTP address for both phones ($lp)"
  for p in $lp; do PHONES="$PHONES --phone-port $p"; done
done
STRICT=; [ -n "${RVOIP_IN_NETNS:-}" ] && STRICT=--strict
# shellcheck disable=SC2086
C=$(python3 "$INTEG_DIR/tls_capture.py" "$B/cap.pcap" --tls-port "${TLS_PROXY##*:}" --sip-port 5060 $PORTS $STRICT \
  --min-conns 8 --relay "$RELAY_PORTS" $PHONES --min 100 --label "SDK<->baresip SRTP over TLS (calls 1-4)") \
  || fail "$(echo "$C" | tail -1)"
echo "$C"
# shellcheck disable=SC2086
W=$(python3 "$INTEG_DIR/srtp_capture.py" "$B/cap.pcap" $PHONES --tone $OURS --tone $TONE --min 100 \
  --label "SRTP payloads (calls 1-4)") || fail "$(echo "$W" | tail -1)"
echo "$W"
echo "$S1"; echo "call 1: $L1"
echo "$S2"; echo "call 2: $L2"
echo "$S3"; echo "call 3: $L3"
echo "$S4"; echo "call 4: $L4"
echo "call 5: SRTP mandatory to a peer without SRTP: $E5"
echo "SDK <-> baresip with SRTP (SDES both ways, DTLS-SRTP both ways) over TLS via $TLS_PROXY through the relay: tones heard both ways, no plaintext SIP or audio on the wire; mandatory vs plain peer refused with 488"
