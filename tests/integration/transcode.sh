#!/usr/bin/env bash
# transcode: two SDK softphones with no codec in common call each other through the server, which
# transcodes (the callee's 488 gets the offer again, widened with the codecs the relay converts).
#  1. user0001 --codecs pcmu (440 Hz, sends DTMF 1234#) calls user0002 --codecs opus (1000 Hz).
#  2. user0001 --codecs g722 (440 Hz) calls user0002 --codecs pcma (1000 Hz).
# Each call: both softphones exit 0 (answered, ended with 200, and each heard the other's tone at
# >= 90 % of the energy per 20 ms block, --expect-tone), the caller's media runs its own codec and
# the callee's its own (MediaStarted), the server logs "relay: transcoding" with both codecs, and in
# call 1 the callee received the DTMF keys 1 2 3 4 # in that order (telephone-events re-sent by the
# relay in the callee's payload type).
# TARGET=kamailio (no transcoding): the control; the PCMU caller must get the callee's 488.
# Logs: $OUT/call{1,2}.{caller,callee}.out, $OUT/server.log.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
A_TONE=440 B_TONE=1000

# call N CALLER_CODEC CALLEE_CODEC [caller args...]: runs one call; sets CALLER_OUT/CALLEE_OUT.
call() {
  local n=$1 ac=$2 bc=$3; shift 3
  CALLER_OUT=$OUT/call$n.caller.out CALLEE_OUT=$OUT/call$n.callee.out
  timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0002@127.0.0.1 --password secret \
    --server "$PROXY" --auto-answer --codecs "$bc" --play tone:$B_TONE --expect-tone $A_TONE --duration 20 \
    --timeout 15 >"$CALLEE_OUT" 2>&1 &
  local bp=$!; BG_PIDS="$BG_PIDS $bp"
  for _ in $(seq 50); do grep -q 'Registered' "$CALLEE_OUT" 2>/dev/null && break; sleep 0.1; done
  grep -q 'Registered' "$CALLEE_OUT" || fail "call $n: callee did not register (see $CALLEE_OUT)"
  timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0001@127.0.0.1 --password secret \
    --server "$PROXY" --call sip:user0002@127.0.0.1 --codecs "$ac" --play tone:$A_TONE --expect-tone $B_TONE \
    --duration 4 --timeout 10 "$@" >"$CALLER_OUT" 2>&1
  CALLER_RC=$?
  if [ "$TARGET" = rvoip ]; then wait "$bp"; CALLEE_RC=$?; else kill "$bp" 2>/dev/null; wait "$bp" 2>/dev/null; CALLEE_RC=0; fi
  echo "--- call $n caller ($ac)"; cat "$CALLER_OUT"
  echo "--- call $n callee ($bc)"; cat "$CALLEE_OUT"
}

if [ "$TARGET" != rvoip ]; then
  call 1 pcmu opus --expect-status 488
  [ $CALLER_RC = 0 ] || fail "control: the PCMU caller did not get 488 from $TARGET"
  echo "control: $TARGET (no transcoding) answers the PCMU caller 488; transcoding checks are ours only"
  exit 0
fi

# check N CALLER_CODEC CALLEE_CODEC: the common checks of one transcoded call.
check() {
  local n=$1 ac=$2 bc=$3
  local at bt
  at=$(grep -o 'tone check: .*' "$CALLER_OUT" | tail -1); bt=$(grep -o 'tone check: .*' "$CALLEE_OUT" | tail -1)
  [ $CALLER_RC = 0 ] || fail "call $n: caller exit $CALLER_RC: ${at:-$(tail -1 "$CALLER_OUT")}"
  [ $CALLEE_RC = 0 ] || fail "call $n: callee exit $CALLEE_RC: ${bt:-$(tail -1 "$CALLEE_OUT")}"
  [ -n "$at" ] && [ -n "$bt" ] || fail "call $n: no tone check in the softphones' output"
  grep -qi "MediaStarted .*codec: \"$ac\"" "$CALLER_OUT" || fail "call $n: caller media is not $ac"
  grep -qi "MediaStarted .*codec: \"$bc\"" "$CALLEE_OUT" || fail "call $n: callee media is not $bc"
  local t
  t=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log" | grep 'relay: transcoding' | grep -i "caller=\"\\?$ac" | grep -i "callee=\"\\?$bc" | tail -1)
  [ -n "$t" ] || fail "call $n: the server did not log transcoding $ac <-> $bc"
  echo "call $n ($ac -> $bc): caller heard $B_TONE Hz: $at; callee heard $A_TONE Hz: $bt"
}

call 1 pcmu opus --dtmf '1234#'
check 1 PCMU opus
KEYS=$(grep -o "DtmfReceived {[^}]*digit: '.'" "$CALLEE_OUT" | grep -o "'.'" | tr -d "'\n")
[ "$KEYS" = '1234#' ] || fail "call 1: the callee received DTMF '$KEYS', not '1234#'"
echo "call 1: DTMF 1234# arrived in order"
REL=$(relay_released 1) || fail "$REL"

call 2 g722 pcma
check 2 G722 PCMA
REL=$(relay_released 2) || fail "$REL"
echo "$REL"
echo "transcoding: PCMU <-> Opus and G.722 <-> PCMA, tones heard both ways, DTMF in order"
