#!/usr/bin/env bash
# baresip: two headless baresip UAs (configs from shared/peers/baresip, copied to tests/out) register
# with digest auth to the server on 127.0.0.1:5060; user0001 (5081, 440 Hz sine) calls user0002
# (5091, wav file, auto-answer) through the server (INVITE 407 challenge answered by baresip).
# Asserted from a tshark capture on lo: both REGISTERs got 200, the INVITE got 200 and was ACKed,
# the call ended with BYE/200, and RTP flowed in both directions (>= 100 packets each way).
set -u
. "$(dirname "$0")/lib.sh"
D=${CALL_SECONDS:-6}
command -v baresip >/dev/null || fail "baresip not installed"
command -v tshark >/dev/null || fail "tshark not installed"
B=$OUT/baresip; mkdir -p "$B"
WAV=$B/tone48k.wav
if command -v sox >/dev/null; then sox -n -r 48000 -c 2 -b 16 "$WAV" synth 30 sine 880 vol 0.5
else python3 - "$WAV" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(2); w.setsampwidth(2); w.setframerate(48000)
fr = b"".join(struct.pack("<hh", v, v) for v in (int(16000 * math.sin(2 * math.pi * 880 * i / 48000)) for i in range(48000)))
w.writeframes(fr * 30); w.close()
PY
fi
for u in a b; do
  rm -rf "$B/$u"; cp -r "$SHARED/peers/baresip/$u" "$B/$u"; chmod -R u+w "$B/$u"
  sed -i "s|/tmp/peers/baresip/tone48k.wav|$WAV|" "$B/$u/config"
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
A2B=$(tshark -r "$B/cap.pcap" -Y 'udp.srcport >= 40000 && udp.srcport < 40100 && udp.dstport >= 40100 && udp.dstport < 40200 && !rtcp' 2>/dev/null | wc -l)
B2A=$(tshark -r "$B/cap.pcap" -Y 'udp.srcport >= 40100 && udp.srcport < 40200 && udp.dstport >= 40000 && udp.dstport < 40100 && !rtcp' 2>/dev/null | wc -l)
echo "RTP packets a->b=$A2B b->a=$B2A"
[ "$A2B" -ge 100 ] && [ "$B2A" -ge 100 ] || fail "too little RTP: a->b=$A2B b->a=$B2A (want >= 100 each)"
echo "baresip call established and ended with BYE/200; RTP a->b=$A2B b->a=$B2A"
