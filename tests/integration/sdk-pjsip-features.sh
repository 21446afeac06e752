#!/usr/bin/env bash
# sdk-pjsip-features: call features between our SDK softphone (target/release/examples/softphone) and
# PJSIP 2.15 (pjsua2, tests/integration/pjsip_features_peer.py) through the server on 127.0.0.1:5060.
#  1. blind transfer, SDK transferor: softphone A (user0001, 440 Hz) calls PJSIP (user0003, 1000 Hz) and
#     transfers it (REFER) to softphone B (user0002); PJSIP accepts, calls B; A sees NOTIFY progress
#     ending in 200 (--transfer-to: exit 0 only with a final 200) and hangs up; B hears PJSIP's 1000 Hz.
#  2. blind transfer, SDK transferee: PJSIP calls softphone A and transfers it to softphone B; A accepts
#     the REFER (--accept-transfer), calls B with its 440 Hz, which B hears; PJSIP gets the final 200.
#  3. MESSAGE both ways: PJSIP sends "hello from pjsip" to A, which reports it (--expect-message) and
#     answers with a MESSAGE "echo: hello from pjsip" that PJSIP receives.
#  4. DTMF by SIP INFO both ways: PJSIP calls A and sends 159# by INFO (application/dtmf-relay); A
#     (--dtmf-info) sends 27* by INFO; each checks the keys it received, in order.
#  5. presence: PJSIP publishes "away" (PUBLISH, RPID activity away) to the server's presence agent; A,
#     subscribed to user0003's presence, sees activity away (--expect-presence away).
# Logs: $OUT/N.*.out (softphones, PJSIP peer), $OUT/N.pjsua.log (PJSIP, all SIP messages).
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
python3 -c 'import pjsua2' 2>/dev/null || fail "python module pjsua2 missing (pip install pjsua2-python)"
PEER=$ROOT/tests/integration/pjsip_features_peer.py
trap 'for p in $BG_PIDS; do kill $p 2>/dev/null; done' EXIT

# pj N MODE [ARGS...]: the PJSIP peer (user0003) in the background, PID in $PJ, waits for READY
pj() {
  local n=$1 mode=$2; shift 2
  timeout -k 5 60 python3 "$PEER" --mode "$mode" --server "$PROXY" --wav "$OUT/tone1000.wav" \
    --log "$OUT/$n.pjsua.log" "$@" >"$OUT/$n.pjsip.out" 2>&1 &
  PJ=$!; BG_PIDS="$BG_PIDS $PJ"
  for _ in $(seq 100); do
    grep -q '^READY' "$OUT/$n.pjsip.out" 2>/dev/null && return 0
    kill -0 "$PJ" 2>/dev/null || break
    sleep 0.1
  done
  fail "step $n: PJSIP not registered: $(tail -1 "$OUT/$n.pjsip.out")"
}
SUMMARY=

# ---- 1. SDK transfers PJSIP to softphone B ----
sp 1 B user0002 "$PROXY" --auto-answer --play tone:660 --expect-tone 1000 --duration 3 --timeout 30; B=$SP
sp_ready 1 B
pj 1 transferee --tone 1000 --max-call 20
sp 1 A user0001 "$PROXY" --call sip:user0003@127.0.0.1 --play tone:440 --transfer-to sip:user0002@127.0.0.1 \
  --transfer-after 1.5 --duration 20 --timeout 15; A=$SP
sp_result 1 A $A
sp_result 1 B $B
sp_result 1 pjsip $PJ
SUMMARY="1: $(grep -o 'transfer check: .*' "$OUT/1.A.out"); B $(grep -o 'tone check: [0-9.]* %' "$OUT/1.B.out")"
grep -q 'TransferStatus { .*status: 100' "$OUT/1.A.out" || fail "step 1: no 100 progress seen by the transferor"

# ---- 2. PJSIP transfers softphone A to softphone B ----
sp 2 B user0002 "$PROXY" --auto-answer --play tone:660 --expect-tone 440 --duration 3 --timeout 30; B=$SP
sp 2 A user0001 "$PROXY" --auto-answer --accept-transfer --play tone:440 --duration 5 --timeout 30; A=$SP
sp_ready 2 B; sp_ready 2 A
pj 2 transferor --tone 1000 --call sip:user0001@127.0.0.1 --transfer-to sip:user0002@127.0.0.1
sp_result 2 pjsip $PJ
sp_result 2 A $A
sp_result 2 B $B
grep -q 'accepted transfer to sip:user0002@127.0.0.1' "$OUT/2.A.out" || fail "step 2: softphone A did not accept the REFER"
SUMMARY="$SUMMARY; 2: $(grep -o 'transfer statuses .*' "$OUT/2.pjsip.out"), B $(grep -o 'tone check: [0-9.]* %' "$OUT/2.B.out")"

# ---- 3. MESSAGE both ways ----
sp 3 A user0001 "$PROXY" --echo-messages --expect-message "hello from pjsip" --timeout 15; A=$SP
sp_ready 3 A
pj 3 message --message-to sip:user0001@127.0.0.1 --text "hello from pjsip" --expect "echo: hello from pjsip"
sp_result 3 pjsip $PJ
sp_result 3 A $A
SUMMARY="$SUMMARY; 3: $(grep -o 'MESSAGE status .*' "$OUT/3.pjsip.out" | tail -1)"

# ---- 4. DTMF by SIP INFO both ways ----
sp 4 A user0001 "$PROXY" --auto-answer --dtmf-info --dtmf '27*' --expect-dtmf '159#' --duration 8 --timeout 20; A=$SP
sp_ready 4 A
pj 4 info --call sip:user0001@127.0.0.1 --dtmf '159#' --expect-dtmf '27*' --after 1.0
sp_result 4 pjsip $PJ
sp_result 4 A $A
SUMMARY="$SUMMARY; 4: $(grep -o 'dtmf check: .*' "$OUT/4.A.out"), PJSIP $(grep -o "received '[^']*'" "$OUT/4.pjsip.out" | tail -1)"

# ---- 5. presence: PJSIP publishes away, the SDK subscribed sees it ----
if [ "${SKIP_PRESENCE:-0}" != 1 ]; then
  pj 5 publish --hold 8
  sp 5 A user0001 "$PROXY" --subscribe sip:user0003@127.0.0.1 --expect-presence away --timeout 12; A=$SP
  sp_result 5 A $A
  sp_result 5 pjsip $PJ
  SUMMARY="$SUMMARY; 5: $(grep -o 'presence check: .*' "$OUT/5.A.out")"
fi
echo "OK $SUMMARY"
