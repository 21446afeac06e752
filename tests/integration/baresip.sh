#!/usr/bin/env bash
# baresip: two headless baresip UAs (configs from shared/peers/baresip, copied to tests/out) register
# with digest auth to the server on 127.0.0.1:5060; user0001 (5081, RTP 40000-40099) calls user0002
# (5091, RTP 40100-40199, auto-answer) through the server (INVITE 407 challenge answered by baresip), G.711.
# Both play a tone (aufile: a 48 kHz stereo WAV made by sox, a 440 Hz, b 880 Hz) and record what they
# receive (baresip's sndfile module dumps the decoded audio, dump-*-dec.wav, in $OUT/baresip/{a,b}.rec).
# Asserted from a tshark capture on lo: both REGISTERs got 200, the INVITE got 200 and was ACKed,
# the call ended with BYE/200.
# Audio (every TARGET): each side heard the other's tone, >= 90 % of the received energy at it, measured
# per 20 ms block (tests/integration/tone_share.py, as rvoip's tone_fraction_blocks).
# Media path:
#   TARGET=rvoip (relay on, the default "always"): every RTP/RTCP packet of the two phones went to or came
#     from the server's relay ports ($RELAY_PORTS, default 30000-39999), none went phone<->phone, >= 100
#     relayed packets each way per phone (tests/integration/relay_capture.py); after the BYE the server
#     logs the relay's media context released with ports_in_use=0.
#   TARGET=kamailio (no relay): RTP flowed directly in both directions (>= 100 packets each way).
set -u
. "$(dirname "$0")/lib.sh"
D=${CALL_SECONDS:-6}
command -v baresip >/dev/null || fail "baresip not installed"
command -v tshark >/dev/null || fail "tshark not installed"
[ -f /usr/lib/baresip/modules/sndfile.so ] || fail "baresip sndfile module missing (/usr/lib/baresip/modules/sndfile.so)"
B=$OUT/baresip; mkdir -p "$B"
TONE_A=440 TONE_B=880
mkwav() {  # mkwav FILE HZ: 30 s, 48 kHz stereo 16-bit (aufile wants ausrc_srate/ausrc_channels)
  if command -v sox >/dev/null; then sox -n -r 48000 -c 2 -b 16 "$1" synth 30 sine "$2" vol 0.5
  else python3 - "$1" "$2" <<'PY'
import math, struct, sys, wave
f = float(sys.argv[2])
w = wave.open(sys.argv[1], "wb"); w.setnchannels(2); w.setsampwidth(2); w.setframerate(48000)
fr = b"".join(struct.pack("<hh", v, v) for v in (int(16000 * math.sin(2 * math.pi * f * i / 48000)) for i in range(48000)))
w.writeframes(fr * 30); w.close()
PY
  fi
  [ -s "$1" ] || fail "could not create $1"
}
mkwav "$B/tone$TONE_A.wav" $TONE_A
mkwav "$B/tone$TONE_B.wav" $TONE_B
for u in a b; do
  [ $u = a ] && hz=$TONE_A || hz=$TONE_B
  rm -rf "$B/$u" "$B/$u.rec"; cp -r "$SHARED/peers/baresip/$u" "$B/$u"; chmod -R u+w "$B/$u"; mkdir -p "$B/$u.rec"
  sed -i -e "s|^audio_source[[:space:]].*|audio_source\t\taufile,$B/tone$hz.wav|" \
    -e 's|^\(module[[:space:]]*\)aufile.so|&\n\1sndfile.so|' "$B/$u/config"
  printf 'snd_path\t\t%s\n' "$B/$u.rec" >>"$B/$u/config"
  grep -q "aufile,$B/tone$hz.wav" "$B/$u/config" && grep -q 'sndfile.so' "$B/$u/config" \
    || fail "baresip config $B/$u/config not as expected"
done
timeout $((D+20)) tshark -i lo -f "udp" -a duration:$((D+9)) -w "$B/cap.pcap" -q >"$B/tshark.log" 2>&1 &
TSP=$!; BG_PIDS="$BG_PIDS $TSP"
for i in $(seq 50); do [ -s "$B/cap.pcap" ] && break; sleep 0.1; done; sleep 0.5
timeout $((D+15)) baresip -f "$B/b" -t $((D+6)) >"$B/b.log" 2>&1 &
BP=$!; BG_PIDS="$BG_PIDS $BP"
sleep 1.5
timeout $((D+15)) baresip -f "$B/a" -t $((D+2)) -e "/dial sip:user0002@127.0.0.1" >"$B/a.log" 2>&1 &
AP=$!; BG_PIDS="$BG_PIDS $AP"
wait $AP; wait $BP; wait $TSP

tshark -r "$B/cap.pcap" -Y sip -T fields -E separator=';' -e frame.time_relative -e udp.srcport -e udp.dstport \
  -e sip.Method -e sip.Status-Code -e sip.CSeq.method 2>/dev/null >"$B/sip.txt"
cat "$B/sip.txt"
has() { grep -qE "$1" "$B/sip.txt"; }
# fields: time;src;dst;method;status;cseq-method
has '^[^;]*;5060;5081;;200;REGISTER$' || fail "user0001 (5081) got no 200 to REGISTER"
has '^[^;]*;5060;5091;;200;REGISTER$' || fail "user0002 (5091) got no 200 to REGISTER"
has '^[^;]*;5081;5060;INVITE;' || fail "no INVITE from user0001 to the server"
has '^[^;]*;5060;5091;INVITE;' || fail "INVITE not forwarded to user0002 (5091)"
has '^[^;]*;5060;5081;;200;INVITE$' || fail "caller got no 200 to INVITE: call not established"
has '^[^;]*;5081;5060;ACK;' || fail "caller sent no ACK via the server (Record-Route)"
has '^[^;]*;5060;5091;ACK;' || fail "ACK not forwarded to user0002"
has '^[^;]*;(5081|5091);5060;BYE;' || fail "no BYE: call did not end with BYE"
has '^[^;]*;5060;(5081|5091);BYE;' || fail "BYE not forwarded by the server"
has '^[^;]*;5060;(5081|5091);;200;BYE$' || fail "BYE not answered 200 (via the server)"

# ---- media path ----
if relay_applies; then
  RC=$(relay_capture_check "$B/cap.pcap" "baresip<->baresip relay") || fail "$(echo "$RC" | tail -1)"
  echo "$RC"
  REL=$(relay_released 1) || fail "$REL"
  echo "$REL"
  MEDIA="$(echo "$RC" | tail -1 | sed 's/^[^:]*: ok: //'); $REL"
else
  A2B=$(tshark -r "$B/cap.pcap" -Y 'udp.srcport >= 40000 && udp.srcport < 40100 && udp.dstport >= 40100 && udp.dstport < 40200 && !rtcp' 2>/dev/null | wc -l)
  B2A=$(tshark -r "$B/cap.pcap" -Y 'udp.srcport >= 40100 && udp.srcport < 40200 && udp.dstport >= 40000 && udp.dstport < 40100 && !rtcp' 2>/dev/null | wc -l)
  echo "RTP packets a->b=$A2B b->a=$B2A (direct: $TARGET has no relay)"
  [ "$A2B" -ge 100 ] && [ "$B2A" -ge 100 ] || fail "too little RTP: a->b=$A2B b->a=$B2A (want >= 100 each)"
  MEDIA="direct RTP a->b=$A2B b->a=$B2A"
fi

# ---- audio: each side heard the other's tone ----
REC_A=$(ls "$B"/a.rec/dump-*-dec.wav 2>/dev/null | tail -1)
REC_B=$(ls "$B"/b.rec/dump-*-dec.wav 2>/dev/null | tail -1)
[ -n "$REC_A" ] || fail "user0001 recorded nothing (no dump-*-dec.wav in $B/a.rec; see $B/a.log)"
[ -n "$REC_B" ] || fail "user0002 recorded nothing (no dump-*-dec.wav in $B/b.rec; see $B/b.log)"
TA=$(tone_check "$REC_B" $TONE_A "a->b: user0002 heard" --min-seconds 2 --also $TONE_B) || fail "$TA"
TB=$(tone_check "$REC_A" $TONE_B "b->a: user0001 heard" --min-seconds 2 --also $TONE_A) || fail "$TB"
echo "$TA"; echo "$TB"
echo "baresip call established and ended with BYE/200; tones heard both ways ($(echo "$TA" | grep -o '^[^(]*at [0-9]* Hz' | sed 's/.*: //;s/ of the energy//'), $(echo "$TB" | grep -o '^[^(]*at [0-9]* Hz' | sed 's/.*: //;s/ of the energy//')); $MEDIA"
