#!/usr/bin/env bash
# redis: two rvoip-server nodes share one redis-server (issue 16). A NO_SERVER test: it starts a private
# redis-server on 127.0.0.1:6390 (append-only file, fsync always, in $OUT/redis) and two nodes, A on
# udp:127.0.0.1:5060 and B on udp:127.0.0.1:5070, both with --store redis.
#  0. control: with --store memory, a phone registered at A is not reachable through B (480).
#  1. user0002 (SDK softphone, 660 Hz) registers at A; user0001 (440 Hz) registers at B and calls
#     sip:user0002@127.0.0.1 through B: B finds the binding A wrote, the call connects.
#  2. mid-call, redis-server is killed (SIGKILL) for 10 s: A notices (log "store unreachable"), a new
#     REGISTER at A gets 503, the call goes on; redis is started again from its append-only file, A logs
#     "store reachable again" and the same REGISTER gets 200. Both phones hear each other's tone at the
#     end (>= 90 % of the energy of the last half of the 16 s call) and the call ends normally.
#  3. after the outage user0003 registers at A and is called through B (B's subscription recovered);
#     redis then holds user0010's binding and none of the phones' (they unregistered on exit).
# Logs: $OUT/{a,b,redis}.log, softphones $OUT/N.NAME.out, SIPp traces.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE"
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
command -v redis-server >/dev/null || fail "redis-server not installed (tests/run-all.sh installs it)"
trap 'for p in ${BG_PIDS:-} ${REDIS:-}; do kill -9 $p 2>/dev/null; done; wait 2>/dev/null' EXIT
RPORT=6390
mkdir -p "$OUT/redis"

redis_start() {
  redis-server --port $RPORT --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
    --dir "$OUT/redis" --daemonize no >>"$OUT/redis.log" 2>&1 &
  REDIS=$!
  for _ in $(seq 50); do redis-cli -p $RPORT ping 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done
  fail "redis-server did not start: $(tail -3 "$OUT/redis.log")"
}
node() {  # node NAME PORT STORE RELAY_PORTS
  RUST_LOG=info "$RVOIP_SERVER" --lax-auth-user --trusted-source 127.0.0.1/32 --listen "udp:127.0.0.1:$2" \
    --users "$USERS_FILE" --domain 127.0.0.1 --store "$3" --redis-url "redis://127.0.0.1:$RPORT/" \
    --data-dir "$OUT/$1.data" --relay-ports "$4" >"$OUT/$1.log" 2>&1 &
  eval "PID_$1=$!"; BG_PIDS="${BG_PIDS:-} $!"
  for _ in $(seq 100); do python3 "$ROOT/tests/integration/options_probe.py" "127.0.0.1:$2" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "node $1 did not start: $(tail -3 "$OUT/$1.log")"
}
stop_node() { eval "local p=\$PID_$1"; kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; }
reachable_via() {  # reachable_via PORT USER: USER's binding is known to the node on PORT (up to 5 s)
  for _ in $(seq 50); do python3 "$ROOT/tests/integration/options_probe.py" "127.0.0.1:$1" "$2" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
wait_log() { for _ in $(seq $(($3 * 10))); do grep -q "$2" "$OUT/$1.log" && return 0; sleep 0.1; done; return 1; }
A=127.0.0.1:5060; B=127.0.0.1:5070

# ---- 0. control: no shared store ----
node a 5060 memory 30000-30999; node b 5070 memory 31000-31999
sp 0 X user0004 $A --auto-answer --timeout 20; X=$SP
sp_ready 0 X
reachable_via 5060 user0004 || fail "control: user0004 not reachable through A, where it registered"
if reachable_via 5070 user0004; then fail "control: user0004 reachable through B without a shared store?"; fi
kill $X 2>/dev/null; wait $X 2>/dev/null
stop_node a; stop_node b

# ---- 1. register at A, call through B ----
redis_start
node a 5060 redis 30000-30999; node b 5070 redis 31000-31999
sp 1 T user0002 $A --auto-answer --play tone:660 --expect-tone 440 --duration 16 --timeout 40; T=$SP
sp_ready 1 T
reachable_via 5070 user0002 || fail "step 1: B does not know user0002's binding from A"
sp 1 C user0001 $B --call sip:user0002@127.0.0.1 --play tone:440 --expect-tone 660 --duration 16 --timeout 40; C=$SP
for _ in $(seq 100); do grep -q 'state: Connected' "$OUT/1.C.out" && break; sleep 0.1; done
grep -q 'state: Connected' "$OUT/1.C.out" || fail "step 1: the call through B did not connect: $(tail -2 "$OUT/1.C.out")"

# ---- 2. redis down for 10 s mid-call ----
t_kill=$(date +%s.%N)
kill -9 $REDIS; wait $REDIS 2>/dev/null; REDIS=
wait_log a 'store unreachable' 5 || fail "step 2: A did not notice the outage within 5 s"
printf 'SEQUENTIAL\nuser0010;secret\n' >"$OUT/u10.inf"
sipp_fg reg_down $A -sf "$SC/register_auth.xml" -inf "$OUT/u10.inf" -au bench -ap secret -i $LOCAL_IP -p 5066 -m 1 -r 1
grep -q '^SIP/2.0 503' "$OUT/reg_down.msg" || fail "step 2: REGISTER during the outage not answered 503 (see reg_down.msg)"
grep -q '^Retry-After:' "$OUT/reg_down.msg" || fail "step 2: the 503 has no Retry-After"
sleep "$(echo "10 - ($(date +%s.%N) - $t_kill)" | bc | sed 's/^-.*/0/')"
redis_start
wait_log a 'store reachable again' 10 || fail "step 2: A did not see redis come back within 10 s"
sipp_fg reg_up $A -sf "$SC/register_auth.xml" -inf "$OUT/u10.inf" -au bench -ap secret -i $LOCAL_IP -p 5066 -m 1 -r 1
R=$(check_run reg_up $? 1) || fail "step 2: REGISTER after redis came back: $R"
sp_result 1 C $C; sp_result 1 T $T
SUMMARY="call through B across a 10 s redis outage: caller $(grep -o 'tone check: [0-9.]* %' "$OUT/1.C.out"), callee $(grep -o 'tone check: [0-9.]* %' "$OUT/1.T.out")"

# ---- 3. after the outage ----
sp 3 T user0003 $A --auto-answer --play tone:660 --expect-tone 440 --duration 3 --timeout 30; T=$SP
sp_ready 3 T
reachable_via 5070 user0003 || fail "step 3: B did not learn user0003's binding after the outage"
sp 3 C user0001 $B --call sip:user0003@127.0.0.1 --play tone:440 --expect-tone 660 --duration 3 --timeout 20; C=$SP
sp_result 3 C $C; sp_result 3 T $T
# In redis now: user0010 (registered by SIPp after the outage); the softphones unregistered on exit.
# The node writes a change up to one linger (100 ms) after its 200: wait up to 5 s for the deletes.
for _ in $(seq 50); do
  keys=$(redis-cli -p $RPORT --scan --pattern 'rvoip:b:*' | tr -d '\0' | sort | tr '\n' ' ')
  case "$keys" in *user0002*|*user0003*) sleep 0.1 ;; *) break ;; esac
done
case "$keys" in *user0010*) ;; *) fail "step 3: user0010's binding (registered after the outage) is not in redis: $keys" ;; esac
case "$keys" in *user0002*|*user0003*) fail "step 3: an unregistered binding is still in redis: $keys" ;; esac
echo "$SUMMARY; after the outage: $(grep -o 'tone check: [0-9.]* %' "$OUT/3.C.out"); in redis: $keys"
