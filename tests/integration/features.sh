#!/usr/bin/env bash
# features: the server's call features with SDK softphones (target/release/examples/softphone), on
# servers this test starts itself (a NO_SERVER test): a proxy on 127.0.0.1:5060 whose config file
# forwards three users' calls to user0006, and a redirect server on 127.0.0.1:5062.
#  1. no answer: user0005 rings (--ring-only); after no_answer_s = 3 the server CANCELs it and the call
#     goes to user0006; the caller connects 3-6 s after dialing and hears user0006's 660 Hz, user0006
#     hears the caller's 440 Hz.
#  2. busy: user0007 answers 486; the call goes to user0006, tones both ways.
#  3. unconditional: a call to user0008 goes straight to user0006.
# (The Diversion headers of each case are checked by the server's unit tests, server/tests/forward.rs.)
#  4. offline message: user0001 sends a MESSAGE to user0009 (not registered): 202; user0009 registers
#     later and receives it (--expect-message).
#  5. redirect: user0006 registers at the redirect server; an account-less softphone calls
#     sip:user0006@127.0.0.1:5062, gets 302 with user0006's contact, follows it (CallRedirected) and
#     connects with tones both ways.
#  6. busy-lamp field: user0002 subscribes to user0006's dialog package; a call to user0006 shows it
#     ringing, then in call (--expect-line ringing,in-call).
# Logs: $OUT/proxy.log, $OUT/redirect.log, $OUT/N.NAME.out per softphone.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE"
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
trap 'for p in $BG_PIDS; do kill $p 2>/dev/null; done; wait 2>/dev/null' EXIT

users() { for u in 0001 0002 0005 0006 0007 0008 0009; do echo "user$u = \"secret\""; done; }
cat >"$OUT/proxy.toml" <<EOF
listen = ["udp:127.0.0.1:5060"]
domain = "127.0.0.1"
trusted_sources = ["127.0.0.1/32"]

[users]
$(users)

[forward.user0005]
no_answer = "user0006"
no_answer_s = 3

[forward.user0007]
busy = "user0006"

[forward.user0008]
unconditional = "user0006"
EOF
cat >"$OUT/redirect.toml" <<EOF
listen = ["udp:127.0.0.1:5062"]
domain = "127.0.0.1"
trusted_sources = ["127.0.0.1/32"]
redirect = true
relay = "off"
invite_auth = false

[users]
$(users)
EOF
# a server with CONFIG on PORT, up when it answers OPTIONS
serve() {
  local name=$1 port=$2
  RUST_LOG=info "$RVOIP_SERVER" --config "$OUT/$name.toml" >"$OUT/$name.log" 2>&1 &
  BG_PIDS="$BG_PIDS $!"
  for _ in $(seq 50); do python3 "$ROOT/tests/integration/options_probe.py" "127.0.0.1:$port" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "$name server did not start: $(tail -3 "$OUT/$name.log")"
}
serve proxy 5060
serve redirect 5062

# t_of N NAME EVENT: the softphone's timestamp (s) of the first line matching EVENT
t_of() { grep -m1 "$3" "$OUT/$1.$2.out" | sed -E 's/^\[ *([0-9.]+)\].*/\1/'; }
P=127.0.0.1:5060
SUMMARY=

# ---- 1. no answer after 3 s ----
sp 1 T user0006 $P --auto-answer --play tone:660 --expect-tone 440 --duration 3 --timeout 30; T=$SP
sp 1 N user0005 $P --ring-only --timeout 12; N=$SP
sp_ready 1 T; sp_ready 1 N
sp 1 C user0001 $P --call sip:user0005@127.0.0.1 --play tone:440 --expect-tone 660 --duration 3 --timeout 15; C=$SP
sp_result 1 C $C; sp_result 1 T $T
kill $N 2>/dev/null; wait $N 2>/dev/null
t0=$(t_of 1 C 'calling '); t1=$(t_of 1 C 'state: Connected')
waited=$(echo "$t1 - $t0" | bc)
[ "$(echo "$waited >= 2.9 && $waited <= 6" | bc)" = 1 ] || fail "step 1: connected after $waited s (want 3..6 s of ringing first)"
grep -q 'letting .* ring' "$OUT/1.N.out" || fail "step 1: user0005 never rang"
SUMMARY="1: no-answer forward connected after $waited s, $(grep -o 'tone check: [0-9.]* %' "$OUT/1.C.out")"

# ---- 2. busy ----
sp 2 T user0006 $P --auto-answer --play tone:660 --expect-tone 440 --duration 3 --timeout 30; T=$SP
sp 2 B user0007 $P --reject 486 --timeout 10; B=$SP
sp_ready 2 T; sp_ready 2 B
sp 2 C user0001 $P --call sip:user0007@127.0.0.1 --play tone:440 --expect-tone 660 --duration 3 --timeout 15; C=$SP
sp_result 2 C $C; sp_result 2 T $T
kill $B 2>/dev/null; wait $B 2>/dev/null
grep -q 'IncomingCall' "$OUT/2.B.out" || fail "step 2: user0007 was never called"
SUMMARY="$SUMMARY; 2: busy forward $(grep -o 'tone check: [0-9.]* %' "$OUT/2.C.out")"

# ---- 3. unconditional ----
sp 3 T user0006 $P --auto-answer --play tone:660 --expect-tone 440 --duration 3 --timeout 30; T=$SP
sp_ready 3 T
sp 3 C user0001 $P --call sip:user0008@127.0.0.1 --play tone:440 --expect-tone 660 --duration 3 --timeout 15; C=$SP
sp_result 3 C $C; sp_result 3 T $T
grep -q 'to: "<\?sip:user0008@127.0.0.1' "$OUT/3.T.out" || fail "step 3: user0006's call was not the one to user0008: $(grep -m1 IncomingCall "$OUT/3.T.out")"
SUMMARY="$SUMMARY; 3: unconditional $(grep -o 'tone check: [0-9.]* %' "$OUT/3.C.out")"

# ---- 4. offline message ----
sp 4 S user0001 $P --message "stored hello" --message-to sip:user0009@127.0.0.1 --timeout 10; S=$SP
sp_result 4 S $S
grep -q 'MessageResult { .*status: 202' "$OUT/4.S.out" || fail "step 4: the sender was not told 202: $(grep MessageResult "$OUT/4.S.out")"
sp 4 R user0009 $P --expect-message "stored hello" --timeout 10; R=$SP
sp_result 4 R $R
SUMMARY="$SUMMARY; 4: offline message 202, delivered at REGISTER"

# ---- 5. redirect server ----
sp 5 T user0006 127.0.0.1:5062 --auto-answer --play tone:660 --expect-tone 440 --duration 3 --timeout 30; T=$SP
sp_ready 5 T
timeout -k 5 30 "$SOFTPHONE" --listen 127.0.0.1:0 --call sip:user0006@127.0.0.1:5062 --play tone:440 \
  --expect-tone 660 --duration 3 --timeout 15 >"$OUT/5.C.out" 2>&1 &
C=$!; BG_PIDS="$BG_PIDS $C"
sp_result 5 C $C; sp_result 5 T $T
grep -q 'CallRedirected { .*status: 302' "$OUT/5.C.out" || fail "step 5: no 302 followed: $(grep -m2 -E 'Redirect|Ended' "$OUT/5.C.out")"
SUMMARY="$SUMMARY; 5: 302 followed, $(grep -o 'tone check: [0-9.]* %' "$OUT/5.C.out")"

# ---- 6. busy-lamp field ----
sp 6 T user0006 $P --auto-answer --play tone:660 --duration 3 --timeout 30; T=$SP
sp 6 L user0002 $P --blf sip:user0006@127.0.0.1 --expect-line ringing,in-call --timeout 20; L=$SP
sp_ready 6 T; sp_ready 6 L
sleep 0.5
sp 6 C user0001 $P --call sip:user0006@127.0.0.1 --play tone:440 --duration 3 --timeout 15; C=$SP
sp_result 6 L $L; sp_result 6 C $C; sp_result 6 T $T
SUMMARY="$SUMMARY; 6: $(grep -o 'line check: .*' "$OUT/6.L.out")"
echo "OK $SUMMARY"
