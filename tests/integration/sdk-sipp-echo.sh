#!/usr/bin/env bash
# sdk-sipp-echo: our SDK softphone (target/release/examples/softphone) calls a SIPp UAS directly (no
# account, no server): SIPp's built-in `uas` scenario on 127.0.0.1:<free port>, answering with PCMU on
# its media port (-mp) and `-rtp_echo` (every RTP packet received on -mp is sent back to its source;
# -mp+2 is echoed too, so RTCP sent to -mp+1 is not), `-m 1`.
# The softphone sends a 440 Hz tone (PCMU) for 4 s and hangs up (BYE); it must hear its own tone in the
# echo (--expect-tone 440: >= 90 % of the energy of the last half of the received audio at 440 Hz).
# Asserted: softphone exit 0 (connected, BYE answered 200, tone check ok), rx_packets > 0 and the remote
# RTP address is SIPp's media port; SIPp ends with 1 successful call and 0 failed.
# Logs: $OUT/softphone.out, $OUT/uas.{log,msg,err,csv,screen}.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
SIPP_TIMEOUT=30

udp_free() { ! ss -lun 2>/dev/null | grep -qE "[:.]$1 "; }
SP=
for p in 5072 5074 5076 5078; do udp_free "$p" && { SP=$p; break; }; done
[ -n "$SP" ] || fail "no free UDP port among 5072..5078 for the SIPp UAS"
MP=
for p in 16000 16010 16020 16030 16040; do
  udp_free "$p" && udp_free $((p + 2)) && { MP=$p; break; }
done
[ -n "$MP" ] || fail "no free UDP media port pair for SIPp -mp"

sipp_bg uas -sn uas -i "$LOCAL_IP" -p "$SP" -mi "$LOCAL_IP" -mp "$MP" -rtp_echo -m 1
UAS=$SIPP_BG_PID
wait_udp_port "$SP" || fail "SIPp UAS did not bind 127.0.0.1:$SP"

timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --call "sip:service@127.0.0.1:$SP" --codecs pcmu \
  --play tone:440 --expect-tone 440 --duration 4 --timeout 10 >"$OUT/softphone.out" 2>&1
SRC=$?
cat "$OUT/softphone.out"
# SIPp -m 1 exits right after the BYE/200; don't wait for its own timeout if the call failed
for _ in $(seq 50); do kill -0 "$UAS" 2>/dev/null || break; sleep 0.1; done
kill "$UAS" 2>/dev/null
wait "$UAS"; URC=$?
BG_PIDS=

grep -q 'MediaStarted .*codec: "PCMU"' "$OUT/softphone.out" || fail "softphone: no PCMU media started (see $OUT/softphone.out)"
grep -q "remote_rtp: Some(127.0.0.1:$MP)" "$OUT/softphone.out" || fail "softphone: remote RTP is not SIPp's media port $MP"
RX=$(grep -o 'final statistics: .*' "$OUT/softphone.out" | grep -o ' rx_packets: [0-9]*' | grep -o '[0-9]*$')
[ "${RX:-0}" -gt 0 ] || fail "softphone received no RTP back from SIPp's rtp_echo (rx_packets=${RX:-?})"
TONE=$(grep -o 'tone check: .*' "$OUT/softphone.out" | tail -1)
[ $SRC = 0 ] || fail "softphone exit $SRC: ${TONE:-$(tail -1 "$OUT/softphone.out")}"
check_run uas "$URC" 1 || fail "SIPp UAS did not end with 1 successful call (rc=$URC, see $OUT/uas.log)"
echo "SDK -> SIPp uas (-rtp_echo, 127.0.0.1:$SP, media $MP): PCMU, rx_packets=$RX, $TONE; SIPp 1 successful call"
