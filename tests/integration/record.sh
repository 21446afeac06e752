#!/usr/bin/env bash
# record: call recording through the server's relay. The framework's server runs with
# --record-user user0009 --recording-dir tests/out/recordings (per-user recording).
#  1. user0008 (--codecs opus,pcmu, 440 Hz) calls user0009 (--codecs opus, 1000 Hz) for 4 s: both
#     hear each other (--expect-tone), and the server writes one stereo WAV named
#     <UTC time>_<Call-ID>.wav: the left channel (caller) >= 90 % 440 Hz and < 5 % 1000 Hz per 20 ms
#     block, the right channel (callee) >= 90 % 1000 Hz and < 5 % 440 Hz, 3-6 s long.
#  2. the control: user0008 calls user0007 (not listed): the call works and no file is written.
# TARGET=kamailio has no recording: skipped there with a note (no relay).
# Logs: $OUT/call{1,2}.{caller,callee}.out, $OUT/server.log; the WAV is copied to $OUT.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
if ! relay_applies; then echo "record: $TARGET has no media relay, nothing to record"; exit 0; fi
A_TONE=440 B_TONE=1000
RECDIR=$ROOT/tests/out/recordings
TONE_SHARE=$INTEG_DIR/tone_share.py

# call N CALLEE_USER: user0008 calls CALLEE_USER; both must exit 0.
call() {
  local n=$1 callee=$2 bp
  CALLER_OUT=$OUT/call$n.caller.out CALLEE_OUT=$OUT/call$n.callee.out
  timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:$callee@127.0.0.1 --password secret \
    --server "$PROXY" --auto-answer --codecs opus --play tone:$B_TONE --expect-tone $A_TONE --duration 20 \
    --timeout 15 >"$CALLEE_OUT" 2>&1 &
  bp=$!; BG_PIDS="$BG_PIDS $bp"
  for _ in $(seq 50); do grep -q 'Registered' "$CALLEE_OUT" 2>/dev/null && break; sleep 0.1; done
  grep -q 'Registered' "$CALLEE_OUT" || fail "call $n: $callee did not register (see $CALLEE_OUT)"
  timeout -k 5 25 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0008@127.0.0.1 --password secret \
    --server "$PROXY" --call sip:$callee@127.0.0.1 --codecs opus,pcmu --play tone:$A_TONE \
    --expect-tone $B_TONE --duration 4 --timeout 10 >"$CALLER_OUT" 2>&1
  local arc=$?
  wait "$bp"; local brc=$?
  [ $arc = 0 ] || fail "call $n: caller exit $arc: $(grep -o 'tone check: .*' "$CALLER_OUT" | tail -1)"
  [ $brc = 0 ] || fail "call $n: callee exit $brc: $(grep -o 'tone check: .*' "$CALLEE_OUT" | tail -1)"
}

log() { sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log"; }

before=$(ls "$RECDIR" 2>/dev/null | wc -l)
call 1 user0009
# The file is finished when the recorder closes it after the BYE.
LINE=
for _ in $(seq 50); do LINE=$(log | grep 'recording finished' | tail -1); [ -n "$LINE" ] && break; sleep 0.1; done
[ -n "$LINE" ] || fail "call 1: the server logged no finished recording (see $OUT/server.log)"
echo "server: $LINE"
WAV=$(ls -t "$RECDIR"/*.wav 2>/dev/null | head -1)
[ -n "$WAV" ] || fail "call 1: no WAV in $RECDIR"
CALL_ID=$(log | grep 'relay: recording the call' | tail -1 | grep -o 'call_id=[^ ]*' | cut -d= -f2)
case $(basename "$WAV") in
  [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z_*.wav) ;;
  *) fail "call 1: $(basename "$WAV") is not named <UTC time>_<Call-ID>.wav" ;;
esac
[ -n "$CALL_ID" ] && [[ "$(basename "$WAV")" == *"${CALL_ID//@/_}"* ]] || fail "call 1: $(basename "$WAV") does not carry the Call-ID $CALL_ID"
cp "$WAV" "$OUT/"
read -r CH RATE SECS < <(python3 -c "import wave,sys; w=wave.open(sys.argv[1]); print(w.getnchannels(), w.getframerate(), w.getnframes()/w.getframerate())" "$WAV")
[ "$CH" = 2 ] || fail "call 1: $CH channels, want 2"
python3 -c "import sys; s=float(sys.argv[1]); sys.exit(0 if 3.0 <= s <= 6.0 else 1)" "$SECS" || fail "call 1: the recording lasts $SECS s, want about 4"
L=$(python3 "$TONE_SHARE" "$WAV" $A_TONE --channel 0 --also $B_TONE --max-also 0.05 --skip 0.5 --label "left (caller)") || fail "$L"
R=$(python3 "$TONE_SHARE" "$WAV" $B_TONE --channel 1 --also $A_TONE --max-also 0.05 --skip 0.5 --label "right (callee)") || fail "$R"
echo "recording: $(basename "$WAV"), $CH channels at $RATE Hz, $SECS s"
echo "$L"; echo "$R"

call 2 user0007
sleep 0.5
after=$(ls "$RECDIR" 2>/dev/null | wc -l)
[ "$after" = $((before + 1)) ] || fail "call 2 (user0007, not recorded) changed the recordings: $before -> $after files"
echo "control: the call of user0008 and user0007 (not listed) left no recording"
echo "recording: one stereo WAV per recorded call, caller left, callee right"
