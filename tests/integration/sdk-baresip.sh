#!/usr/bin/env bash
# sdk-baresip: our SDK softphone (target/release/examples/softphone) and baresip (Debian) call each other
# through the server on 127.0.0.1:5060 and audio flows both ways.
# baresip: headless, config from shared/peers/baresip/b (copied to $OUT), user0002 on 127.0.0.1:5091,
# RTP 40100-40199, auto-answer, sends an 880 Hz sine (aufile, 48 kHz stereo WAV), codecs opus, G722, PCMU.
#  1. softphone user0001 calls sip:user0002@127.0.0.1 via the server with --codecs pcmu, sends 440 Hz,
#     hangs up after 4 s: it must hear baresip's 880 Hz (--expect-tone 880, exit 0).
#  2. reverse: softphone user0001 --auto-answer --codecs opus,g722,pcmu; baresip dials
#     sip:user0001@127.0.0.1 (offer opus, G722, PCMU; we answer opus); the softphone hangs up after 4 s
#     and must hear 880 Hz.
# Each direction also asserts that our RTP reached baresip: baresip's own end-of-call statistics
# ("packets:" Receive column, rtp_stats) > 0, and that baresip heard our 440 Hz: its sndfile module dumps
# the decoded audio (dump-*-dec.wav), >= 90 % of the energy at 440 Hz per 20 ms block (tone_share.py).
# Media path, from a tshark capture of all UDP on lo:
#   TARGET=rvoip (relay on, the default "always"): every RTP/RTCP packet of the softphone and baresip went
#     to or came from the server's relay ports ($RELAY_PORTS), none phone<->phone, >= 100 relayed packets
#     each way per phone RTP port (relay_capture.py); after each call's BYE the server logs the relay's
#     media context released with ports_in_use=0.
#   TARGET=kamailio (no relay): packets flowed directly between our RTP port and baresip's, both ways.
# Logs: $OUT/baresip/{call1,call2}.{softphone.out,baresip.log}, $OUT/baresip/{call1,call2}.rec/, cap.pcap.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
command -v baresip >/dev/null || fail "baresip not installed"
command -v tshark >/dev/null || fail "tshark not installed"
ss -lun 2>/dev/null | grep -q '127.0.0.1:5091 ' && fail "UDP 127.0.0.1:5091 (baresip's SIP port) is busy"
B=$OUT/baresip; mkdir -p "$B"
TONE=880
WAV=$B/tone$TONE.wav
if command -v sox >/dev/null; then sox -n -r 48000 -c 2 -b 16 "$WAV" synth 30 sine $TONE vol 0.5
else python3 - "$WAV" $TONE <<'PY'
import math, struct, sys, wave
f = float(sys.argv[2])
w = wave.open(sys.argv[1], "wb"); w.setnchannels(2); w.setsampwidth(2); w.setframerate(48000)
fr = b"".join(struct.pack("<hh", v, v) for v in (int(16000 * math.sin(2 * math.pi * f * i / 48000)) for i in range(48000)))
w.writeframes(fr * 30); w.close()
PY
fi
[ -s "$WAV" ] || fail "could not create $WAV"

# fresh baresip config dir (baresip writes uuid/contacts into it): aufile WAV, opus+g722 modules
mkcfg() {
  local d=$B/$1
  rm -rf "$d"; cp -r "$SHARED/peers/baresip/b" "$d"; chmod -R u+w "$d"
  sed -i "s|/tmp/peers/baresip/tone48k.wav|$WAV|" "$d/config"
  grep -q '^module[[:space:]]*opus.so' "$d/config" || sed -i 's|^\(module[[:space:]]*\)g711.so|&\n\1opus.so\n\1g722.so|' "$d/config"
  sed -i 's|audio_codecs=[^;>]*|audio_codecs=opus/48000/2,G722/16000/1,PCMU|' "$d/accounts"
  # record what baresip receives (decoded): sndfile writes $d.rec/dump-<time>-dec.wav
  rm -rf "$d.rec"; mkdir -p "$d.rec"
  sed -i 's|^\(module[[:space:]]*\)aufile.so|&\n\1sndfile.so|' "$d/config"
  printf 'snd_path\t\t%s\n' "$d.rec" >>"$d/config"
  grep -q 'aufile,' "$d/config" && grep -q 'opus.so' "$d/config" && grep -q 'sndfile.so' "$d/config" \
    || fail "baresip config $d not as expected"
}
# wait_log FILE REGEX TENTHS: poll until FILE matches REGEX
wait_log() {
  local i
  for i in $(seq "$3"); do grep -aqE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# stop_pid PID: SIGTERM (baresip and tshark shut down cleanly on it), then wait (bounded)
stop_pid() {
  local i
  kill -TERM "$1" 2>/dev/null
  for i in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null
}
# baresip's end-of-call RTP statistics: "packets:   <tx>   <rx>"
bs_rx() { grep -a '^packets:' "$1" | tail -1 | awk '{print $3}'; }
# UDP packets from port $1 to port $2 in the capture
pkts() { tshark -r "$B/cap.pcap" -Y "udp.srcport == $1 && udp.dstport == $2" 2>/dev/null | wc -l; }
# baresip's RTP port (the softphone's remote_rtp) and ours (where baresip receives RTP from)
remote_rtp_port() { grep -o 'remote_rtp: Some(127.0.0.1:[0-9]*)' "$1" | tail -1 | grep -o '[0-9]*)$' | tr -d ')'; }
our_rtp_port() { grep -ao "incoming rtp for 'audio' established, receiving from 127.0.0.1:[0-9]*" "$1" | tail -1 | grep -o '[0-9]*$'; }

# check_call N SOFTPHONE-OUT BARESIP-LOG RC CODEC: the call itself (run right after it)
check_call() {
  local n=$1 so=$2 bl=$3 rc=$4 codec=$5 rx tone
  grep -q "MediaStarted .*codec: \"$codec\"" "$so" || fail "call $n: softphone did not start $codec media (see $so)"
  grep -aq 'Call established' "$bl" || fail "call $n: baresip did not establish the call (see $bl)"
  tone=$(grep -o 'tone check: .*' "$so" | tail -1)
  [ "$rc" = 0 ] || fail "call $n: softphone exit $rc: ${tone:-$(tail -1 "$so")}"
  rx=$(bs_rx "$bl")
  [ "${rx:-0}" -gt 0 ] 2>/dev/null || fail "call $n: baresip received no RTP from us (its stats: rx packets=${rx:-none})"
  rec=$(ls "$B/call$n.rec"/dump-*-dec.wav 2>/dev/null | tail -1)
  heard=$(tone_check "$rec" 440 "baresip heard" --min-seconds 2 --also $TONE) || fail "call $n: $heard"
  echo "call $n: $codec, $tone; baresip rx $rx RTP packets; $heard"
}
# check_capture N SOFTPHONE-OUT BARESIP-LOG: RTP both ways between our port and baresip's in the capture
check_capture() {
  local n=$1 so=$2 bl=$3 port ours to from
  port=$(remote_rtp_port "$so")
  [ -n "$port" ] || fail "call $n: no remote_rtp in the softphone's final statistics"
  ours=$(our_rtp_port "$bl")
  [ -n "$ours" ] || fail "call $n: baresip never saw incoming RTP (no 'incoming rtp ... established' in $bl)"
  to=$(pkts "$ours" "$port"); from=$(pkts "$port" "$ours")
  [ "$to" -gt 0 ] || fail "call $n: tshark saw no packets from us (:$ours) to baresip's RTP port $port"
  [ "$from" -gt 0 ] || fail "call $n: tshark saw no packets from baresip's RTP port $port to us (:$ours)"
  echo "capture $n: $to packets :$ours -> baresip:$port, $from back"
}

timeout 60 tshark -i lo -f "udp" -a duration:50 -w "$B/cap.pcap" -q >"$B/tshark.log" 2>&1 &
TSP=$!; BG_PIDS="$BG_PIDS $TSP"
for _ in $(seq 50); do [ -s "$B/cap.pcap" ] && break; sleep 0.1; done; sleep 0.5
[ -s "$B/cap.pcap" ] || fail "tshark did not start capturing on lo (see $B/tshark.log)"

# ---- 1. SDK calls baresip ----
mkcfg call1
timeout 25 baresip -f "$B/call1" -t 20 >"$B/call1.baresip.log" 2>&1 &
BP=$!; BG_PIDS="$BG_PIDS $BP"
wait_log "$B/call1.baresip.log" 'user0002@127.0.0.1: .*200 OK' 50 || fail "baresip user0002 did not register (see $B/call1.baresip.log)"
timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$PROXY" \
  --call sip:user0002@127.0.0.1 --codecs pcmu --play tone:440 --expect-tone $TONE --duration 4 --timeout 10 \
  >"$B/call1.softphone.out" 2>&1
RC1=$?
wait_log "$B/call1.baresip.log" '^packets:' 30
stop_pid "$BP"
echo "--- 1. softphone -> baresip"; cat "$B/call1.softphone.out"
grep -aE 'Call established|terminated|^packets:|^lost:|Set audio' "$B/call1.baresip.log"
R1=$(check_call 1 "$B/call1.softphone.out" "$B/call1.baresip.log" $RC1 PCMU) || fail "$R1"
if relay_applies; then L1=$(relay_released 1) || fail "call 1: $L1"; fi

# ---- 2. baresip calls SDK (opus) ----
mkcfg call2
timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$PROXY" \
  --auto-answer --codecs opus,g722,pcmu --play tone:440 --expect-tone $TONE --duration 4 --timeout 10 \
  >"$B/call2.softphone.out" 2>&1 &
SP=$!; BG_PIDS="$BG_PIDS $SP"
wait_log "$B/call2.softphone.out" 'Registered' 50 || fail "softphone (auto-answer) did not register (see $B/call2.softphone.out)"
timeout 25 baresip -f "$B/call2" -t 20 -e "/dial sip:user0001@127.0.0.1" >"$B/call2.baresip.log" 2>&1 &
BP=$!; BG_PIDS="$BG_PIDS $BP"
wait "$SP"; RC2=$?
wait_log "$B/call2.baresip.log" '^packets:' 30
stop_pid "$BP"
stop_pid "$TSP"
echo "--- 2. baresip -> softphone"; cat "$B/call2.softphone.out"
grep -aE 'Call established|terminated|^packets:|^lost:|Set audio' "$B/call2.baresip.log"
R2=$(check_call 2 "$B/call2.softphone.out" "$B/call2.baresip.log" $RC2 opus) || fail "$R2"
if relay_applies; then L2=$(relay_released 2) || fail "call 2: $L2"; fi

if relay_applies; then
  C=$(relay_capture_check "$B/cap.pcap" "SDK<->baresip relay (calls 1 and 2)") || fail "$(echo "$C" | tail -1)"
  echo "$R1"; echo "call 1: $L1"; echo "$R2"; echo "call 2: $L2"; echo "$C"
else
  C1=$(check_capture 1 "$B/call1.softphone.out" "$B/call1.baresip.log") || fail "$C1"
  C2=$(check_capture 2 "$B/call2.softphone.out" "$B/call2.baresip.log") || fail "$C2"
  echo "$R1"; echo "$C1"; echo "$R2"; echo "$C2"
fi
echo "SDK <-> baresip via $PROXY: SDK->baresip PCMU and baresip->SDK opus, tone $TONE Hz heard, baresip received our RTP and heard 440 Hz"
