#!/usr/bin/env bash
# conference: three SDK softphones in one room on the server (sip:conf-room1@127.0.0.1, the default
# prefix conf-): user0011 (PCMU, 440 Hz), user0012 (G.722, 660 Hz) and user0013 (Opus, 880 Hz) call in
# at 0, 0.5 and 1 s; user0013 hangs up after 4 s, the other two after 9 s. Each records what it hears
# (--record, a WAV).
#  - while all three are in (2.5-4.5 s of each recording): each hears each of the two others' tones at
#    >= 25 % of the energy per 20 ms block, and its own at < 5 %;
#  - after user0013 left (7-8.5 s): user0011 and user0012 hear each other at >= 90 %, 880 Hz < 5 %.
# The server logs three joins, three leaves and the room's end ("conference: room ended").
# TARGET=kamailio has no rooms: the control, a call to conf-room1 is not answered 200 there.
# Logs: $OUT/m{440,660,880}.{out,wav}, $OUT/server.log.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
TONE_SHARE=$INTEG_DIR/tone_share.py
ROOM=sip:conf-room1@127.0.0.1

# member USER CODEC HZ DURATION: joins the room in the background; sets PIDS.
member() {
  timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:$1@127.0.0.1 --password secret \
    --server "$PROXY" --call $ROOM --codecs "$2" --play tone:$3 --record "$OUT/m$3.wav" --duration "$4" \
    --timeout 10 >"$OUT/m$3.out" 2>&1 &
  PIDS="$PIDS $!"; BG_PIDS="$BG_PIDS $!"
}

if [ "$TARGET" != rvoip ]; then
  PIDS=; member user0011 pcmu 440 2
  wait $PIDS; rc=$?
  grep -q 'state: Connected' "$OUT/m440.out" && fail "control: $TARGET answered the room URI"
  echo "control: $TARGET has no conference rooms (softphone exit $rc, not connected)"
  exit 0
fi

PIDS=
member user0011 pcmu 440 9; sleep 0.5
member user0012 g722 660 9; sleep 0.5
member user0013 opus 880 4
rc=0
for p in $PIDS; do wait "$p" || rc=1; done
for f in 440 660 880; do echo "--- member $f Hz"; cat "$OUT/m$f.out"; done
[ $rc = 0 ] || fail "a member's softphone failed (see $OUT/m*.out)"
for f in 440 660 880; do grep -q 'state: Connected' "$OUT/m$f.out" || fail "member $f Hz did not connect"; done
grep -q 'MediaStarted .*codec: "opus"' "$OUT/m880.out" || fail "member 880 Hz is not on opus"
grep -q 'MediaStarted .*codec: "G722"' "$OUT/m660.out" || fail "member 660 Hz is not on G722"

# check WAV FREQ MIN [tone_share args...]
check() {
  local w=$1 f=$2 min=$3; shift 3
  python3 "$TONE_SHARE" "$OUT/m$w.wav" "$f" --min "$min" --min-seconds 0.5 --label "member $w Hz hears $f Hz" "$@"
}
R=()
for pair in "440 660 880" "660 440 880" "880 440 660"; do
  set -- $pair
  R+=("$(check $1 $2 0.25 --skip 2.5 --until 4.5 --also $1 --max-also 0.05)") || fail "${R[-1]}"
  R+=("$(check $1 $3 0.25 --skip 2.5 --until 4.5)") || fail "${R[-1]}"
done
R+=("$(check 440 660 0.9 --skip 7 --until 8.5 --also 880 --max-also 0.05)") || fail "${R[-1]}"
R+=("$(check 660 440 0.9 --skip 7 --until 8.5 --also 880 --max-also 0.05)") || fail "${R[-1]}"
printf '%s\n' "${R[@]}"
LOG=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log")
J=$(echo "$LOG" | grep -c 'conference: joined'); L=$(echo "$LOG" | grep -c 'conference: left')
[ "$J" -ge 3 ] && [ "$L" -ge 3 ] || fail "the server logged $J joins and $L leaves, want 3 and 3"
echo "$LOG" | grep -q 'conference: room ended' || fail "the server did not log the room's end"
echo "$LOG" | grep 'conference: ' | sed 's/^.*conference: /conference: /' | head -8
echo "conference: three members (PCMU, G.722, Opus) hear each other N-1; one leaves, two still hear each other"
