#!/usr/bin/env bash
# durable: registrations survive kill -9 (issue 16). A NO_SERVER test: it starts its own servers on
# udp:127.0.0.1:5060 with --data-dir $OUT/...:
#  1. store = redb (the binary's default): SIPp registers 1000 AORs (user0000..user0999, contact
#     127.0.0.1:5062, Expires 3600); once the store's writer logs written=1000 the server is killed with
#     SIGKILL and started again. It must log "bindings loaded" with bindings=1000, and a SIPp call from
#     port 5064 to user0500 reaches the SIPp UAS on 5062 (the contact restored from the store).
#  2. control, store = memory: the same steps with 10 AORs load nothing and the call to user0005 fails
#     (480: no binding), so this test fails when persistence does not work.
# Logs: $OUT/{redb1,redb2,mem1,mem2}.log and SIPp traces.
set -u
. "$(dirname "$0")/lib.sh"
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
trap 'for p in ${BG_PIDS:-} ${PID:-}; do kill -9 $p 2>/dev/null; done; wait 2>/dev/null' EXIT

start() {  # start STORE DATA_DIR LOG
  RUST_LOG=info "$RVOIP_SERVER" --lax-auth-user --trusted-source 127.0.0.1/32 --relay off \
    --listen udp:127.0.0.1:5060 --users "$USERS_FILE" --domain 127.0.0.1 \
    --store "$1" --data-dir "$2" >"$OUT/$3.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do
    python3 "$ROOT/tests/integration/options_probe.py" 127.0.0.1:5060 >/dev/null 2>&1 && return 0
    kill -0 $PID 2>/dev/null || fail "server ($3) exited at start: $(tail -3 "$OUT/$3.log")"
    sleep 0.1
  done
  fail "server ($3) did not answer OPTIONS within 10 s"
}
wait_log() {  # wait_log LOG PATTERN SECONDS
  for _ in $(seq $(($3 * 10))); do grep -Eq "$2" "$OUT/$1.log" && return 0; sleep 0.1; done
  return 1
}
kill9() { kill -9 $PID; wait $PID 2>/dev/null; PID=; }
register_n() {  # register_n TAG N
  sipp_fg "$1" 127.0.0.1:5060 -sf "$SC/register_auth.xml" -inf "$USERS_CSV" -au bench -ap secret \
    -i $LOCAL_IP -p 5062 -r 200 -m "$2" -l "$2"
  check_run "$1" $? "$2"
}
call_user() {  # call_user TAG USER: one call from 5064 to USER, answered by a SIPp UAS on 5062
  sipp_bg "$1_uas" -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p 5062 -m 1
  local uas=$SIPP_BG_PID
  wait_udp_port 5062 || fail "SIPp UAS did not bind 5062"
  sipp_fg "$1_uac" 127.0.0.1:5060 -sf "$SC/uac_proxy_auth.xml" -s "$2" -au bench -ap secret \
    -i $LOCAL_IP -p 5064 -m 1 -r 1 -d 100 -default_behaviors all,-abortunexp
  local rc=$?
  if [ $rc = 0 ]; then wait $uas; else kill $uas 2>/dev/null; wait $uas 2>/dev/null; fi
  check_run "$1_uac" $rc 1
}

# 1. redb
start redb "$OUT/redb" redb1
R=$(register_n reg 1000) || fail "1000 REGISTERs: $R"
wait_log redb1 'store synced.*written=1000' 15 || fail "the store did not report 1000 written bindings: $(grep 'store' "$OUT/redb1.log" | tail -2)"
kill9
start redb "$OUT/redb" redb2
grep -q 'bindings loaded.*bindings=1000' "$OUT/redb2.log" || fail "after kill -9: $(grep 'bindings loaded' "$OUT/redb2.log" || echo 'no bindings loaded line')"
R=$(call_user after_restart user0500) || fail "call to user0500 after the restart: $R"
kill9
echo "1000 bindings back after kill -9; the call to user0500 connected"

# 2. control: memory
start memory "$OUT/mem" mem1
R=$(register_n reg_mem 10) || fail "10 REGISTERs (memory store): $R"
kill9
start memory "$OUT/mem" mem2
if grep -q 'bindings loaded' "$OUT/mem2.log"; then fail "memory store loaded bindings?"; fi
if R=$(call_user mem_after_restart user0005); then fail "control: the call to user0005 connected without a store"; fi
grep -q "480" "$OUT/mem_after_restart_uac.msg" || fail "control: expected 480 for user0005, see mem_after_restart_uac.msg"
kill9
echo "control: with store=memory the restart lost the bindings (480)"
