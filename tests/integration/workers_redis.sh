#!/usr/bin/env bash
# workers_redis: the Redis store with --workers 2 (issue 16). A NO_SERVER test: a private redis-server on
# 127.0.0.1:6391 and two nodes sharing it, A on udp:127.0.0.1:5060 (one worker) and B on
# udp:127.0.0.1:5070 with --workers 2 (presence, offline messages and conference rooms off) and --http.
#  1. SIPp registers user0000..user0199 at A (contact 127.0.0.1:5062): 200 successful. B learns the
#     bindings from Redis (its /status lists 200).
#  2. 200 calls through B from a SIPp UAC (5064) to user0100, answered by a SIPp UAS on 5062: 200
#     successful, 0 failed. The calls' Call-IDs spread over B's two workers; A's bindings reach B's
#     subscriber once, and B must hand them to every worker (without that fan-out about half the
#     calls get 480).
#  3. SIPp registers user0200..user0499 at B: 300 successful. B's store writer reports exactly
#     written=300 and A's exactly written=200: each node writes its own changes once, and never
#     writes back what it learnt from the other. Redis then holds 500 bindings.
#  4. At SIGTERM both of B's workers log having handled messages.
# Logs: $OUT/{a,b,redis}.log, SIPp traces.
set -u
. "$(dirname "$0")/lib.sh"
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
command -v redis-server >/dev/null || fail "redis-server not installed (tests/run-all.sh installs it)"
trap 'for p in ${BG_PIDS:-} ${REDIS:-}; do kill -9 $p 2>/dev/null; done; wait 2>/dev/null' EXIT
RPORT=6391
mkdir -p "$OUT/redis"
redis-server --port $RPORT --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT/redis" \
  --daemonize no >"$OUT/redis.log" 2>&1 &
REDIS=$!
for _ in $(seq 50); do redis-cli -p $RPORT ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
redis-cli -p $RPORT ping 2>/dev/null | grep -q PONG || fail "redis-server did not start: $(tail -3 "$OUT/redis.log")"

node() {  # node NAME PORT [EXTRA ARGS...]
  local name=$1 port=$2; shift 2
  RUST_LOG=info "$RVOIP_SERVER" --lax-auth-user --trusted-source 127.0.0.1/32 --listen "udp:127.0.0.1:$port" \
    --users "$USERS_FILE" --domain 127.0.0.1 --store redis --redis-url "redis://127.0.0.1:$RPORT/" \
    --data-dir "$OUT/$name.data" --relay off "$@" >"$OUT/$name.log" 2>&1 &
  eval "PID_$name=$!"; BG_PIDS="${BG_PIDS:-} $!"
  for _ in $(seq 100); do
    python3 "$ROOT/tests/integration/options_probe.py" "127.0.0.1:$port" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "node $name did not start: $(tail -3 "$OUT/$name.log")"
}
written() {  # written NODE: the last "store synced written=N" of NODE, after two quiet seconds
  for _ in $(seq 150); do grep -q 'store synced.*written=' "$OUT/$1.log" && break; sleep 0.1; done
  grep -o 'store synced.*written=[0-9]*' "$OUT/$1.log" | tail -1 | grep -o '[0-9]*$'
}
status_bindings() {  # B's /status bindings_total
  python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1], timeout=3))["bindings_total"])' \
    "http://$HTTP/status?limit=1" 2>/dev/null
}

node a 5060
node b 5070 --workers 2 --no-presence --no-offline-messages --conference-prefix "" --http 127.0.0.1:0
grep -q '^workers: 2$' "$OUT/b.log" || fail "node B does not say it runs 2 workers: $(head -8 "$OUT/b.log")"
HTTP=$(sed -n 's/^http listening on \([0-9.:]*\) .*/\1/p' "$OUT/b.log")
[ -n "$HTTP" ] || fail "node B printed no http address: $(head -8 "$OUT/b.log")"

# 1. 200 registrations at A; B learns them through Redis
sipp_fg reg_a 127.0.0.1:5060 -sf "$SC/register_auth.xml" -inf "$USERS_CSV" -au bench -ap secret \
  -i $LOCAL_IP -p 5062 -r 200 -m 200 -l 200
R=$(check_run reg_a $? 200) || fail "200 REGISTERs at A: $R"
N=
for _ in $(seq 100); do N=$(status_bindings); [ "${N:-}" = 200 ] && break; sleep 0.1; done
[ "${N:-}" = 200 ] || fail "B's /status lists ${N:-no} bindings, want the 200 registered at A"

# 2. 200 calls through B (both workers) to a user registered at A
sipp_bg uas -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p 5062 -m 200
UAS=$SIPP_BG_PID
wait_udp_port 5062 || fail "SIPp UAS did not bind 5062"
sipp_fg uac 127.0.0.1:5070 -sf "$SC/uac_proxy_auth.xml" -s user0100 -au bench -ap secret \
  -i $LOCAL_IP -p 5064 -r 50 -m 200 -l 100 -d 100 -default_behaviors all,-abortunexp
RC=$?
if [ $RC = 0 ]; then wait $UAS; else kill $UAS 2>/dev/null; wait $UAS 2>/dev/null; fi
R=$(check_run uac $RC 200) || fail "200 calls through B: $R ($(grep -c '^SIP/2.0 480' "$OUT/uac.msg" 2>/dev/null) 480 answers in uac.msg)"

# 3. 300 registrations at B; each node writes its own changes once
{ echo SEQUENTIAL; for i in $(seq 200 499); do printf 'user%04d;secret\n' "$i"; done; } >"$OUT/b_users.csv"
sipp_fg reg_b 127.0.0.1:5070 -sf "$SC/register_auth.xml" -inf "$OUT/b_users.csv" -au bench -ap secret \
  -i $LOCAL_IP -p 5066 -r 200 -m 300 -l 300
R=$(check_run reg_b $? 300) || fail "300 REGISTERs at B: $R"
sleep 2
WB=$(written b); WA=$(written a)
[ "${WB:-}" = 300 ] || fail "B's store: written=${WB:-none}, want exactly 300 (its own changes, once each)"
[ "${WA:-}" = 200 ] || fail "A's store: written=${WA:-none}, want exactly 200 (its own changes, once each)"
KEYS=$(redis-cli -p $RPORT --scan --pattern 'rvoip:b:*' | tr -d '\0' | grep -c .)
[ "$KEYS" = 500 ] || fail "redis holds $KEYS bindings, want 500"

# 4. both of B's workers worked
kill -TERM $PID_b
for _ in $(seq 50); do kill -0 $PID_b 2>/dev/null || break; sleep 0.1; done
wait $PID_b 2>/dev/null
for w in 0 1; do
  M=$(grep 'worker state at shutdown' "$OUT/b.log" | grep -o "worker=$w messages=[0-9]*" | grep -o '[0-9]*$')
  [ -n "$M" ] || fail "no shutdown line for B's worker $w"
  [ "$M" -gt 0 ] || fail "B's worker $w handled no message"
  echo "B's worker $w handled $M messages"
done
echo "workers_redis: 200 calls through B (2 workers) to a user registered at A, 0 failed; written A=200, B=300; redis 500 bindings"
