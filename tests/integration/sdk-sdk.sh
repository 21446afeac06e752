#!/usr/bin/env bash
# sdk-sdk: two SDK softphones (target/release/examples/softphone, separate processes) call each other
# through the server on 127.0.0.1:5060, as real programs on the wire (the in-process version with the
# relay's own counters is tests/relay_calls.rs).
# user0002 (--auto-answer, sends 1000 Hz, --expect-tone 440) registers; user0001 calls
# sip:user0002@127.0.0.1 (--codecs opus,g722,pcmu: opus), sends 440 Hz (--expect-tone 1000) and hangs up
# after 4 s. Both must exit 0: the call was answered and ended with 200, and each heard the other's tone
# (>= 90 % of the energy of the last half of the call at the tone, per 20 ms block).
# Media path (TARGET=rvoip, relay on, the default "always"), from a tshark capture of all UDP on lo:
# every RTP/RTCP packet of the two softphones went to or came from the server's relay ports
# ($RELAY_PORTS), none phone<->phone, >= 100 relayed packets each way per phone RTP port
# (relay_capture.py); after the BYE the server logs the relay's media context released with
# ports_in_use=0. TARGET=kamailio (no relay): the audio checks only.
# Logs: $OUT/caller.out, $OUT/callee.out, $OUT/cap.pcap.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
command -v tshark >/dev/null || fail "tshark not installed"
A_TONE=440 B_TONE=1000

timeout 40 tshark -i lo -f "udp" -a duration:30 -w "$OUT/cap.pcap" -q >"$OUT/tshark.log" 2>&1 &
TSP=$!; BG_PIDS="$BG_PIDS $TSP"
for _ in $(seq 50); do [ -s "$OUT/cap.pcap" ] && break; sleep 0.1; done; sleep 0.5
[ -s "$OUT/cap.pcap" ] || fail "tshark did not start capturing on lo (see $OUT/tshark.log)"

timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0002@127.0.0.1 --password secret --server "$PROXY" \
  --auto-answer --codecs opus,g722,pcmu --play tone:$B_TONE --expect-tone $A_TONE --duration 20 --timeout 15 \
  >"$OUT/callee.out" 2>&1 &
BP=$!; BG_PIDS="$BG_PIDS $BP"
for _ in $(seq 50); do grep -q 'Registered' "$OUT/callee.out" 2>/dev/null && break; sleep 0.1; done
grep -q 'Registered' "$OUT/callee.out" || fail "callee user0002 did not register (see $OUT/callee.out)"
timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret --server "$PROXY" \
  --call sip:user0002@127.0.0.1 --codecs opus,g722,pcmu --play tone:$A_TONE --expect-tone $B_TONE --duration 4 --timeout 10 \
  >"$OUT/caller.out" 2>&1
ARC=$?
wait "$BP"; BRC=$?
echo "--- caller (user0001)"; cat "$OUT/caller.out"
echo "--- callee (user0002)"; cat "$OUT/callee.out"
AT=$(grep -o 'tone check: .*' "$OUT/caller.out" | tail -1)
BT=$(grep -o 'tone check: .*' "$OUT/callee.out" | tail -1)
grep -q 'MediaStarted .*codec: "opus"' "$OUT/caller.out" || fail "caller did not start opus media (see $OUT/caller.out)"
[ $ARC = 0 ] || fail "caller exit $ARC: ${AT:-$(tail -1 "$OUT/caller.out")}"
[ $BRC = 0 ] || fail "callee exit $BRC: ${BT:-$(tail -1 "$OUT/callee.out")}"
[ -n "$AT" ] && [ -n "$BT" ] || fail "no tone check in the softphones' output"
if relay_applies; then
  REL=$(relay_released 1) || fail "$REL"
  kill -TERM "$TSP" 2>/dev/null; wait "$TSP" 2>/dev/null
  C=$(relay_capture_check "$OUT/cap.pcap" "SDK<->SDK relay") || fail "$(echo "$C" | tail -1)"
  echo "$C"; echo "$REL"
else
  echo "media path: $TARGET has no relay, relay checks skipped"
fi
echo "caller heard $B_TONE Hz: $AT"
echo "callee heard $A_TONE Hz: $BT"
echo "SDK <-> SDK via $PROXY: opus, tones heard both ways"
