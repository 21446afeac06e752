#!/usr/bin/env bash
# workers: rvoip-server on all cores (issue 16 point 7). A NO_SERVER test: it starts its own server on
# udp:127.0.0.1:5060 with --workers 2 (presence, offline messages and conference rooms off, which one
# worker must hold) and the redb store in $OUT/data:
#  1. SIPp registers 1000 AORs (user0000..user0999, contact 127.0.0.1:5062): 1000 successful, 0 failed.
#     The store must report exactly written=1000: each binding change stored once, though every worker's
#     location holds it (replicas apply each other's changes without recording them again).
#  2. 200 calls through the proxy from a SIPp UAC (5064, INVITE auth) to user0500, answered by a SIPp
#     UAS on 5062: 200 successful, 0 failed. The calls have 200 Call-IDs, spread over both workers by
#     their hash, and the binding was made by one of them: the other reaches it only through
#     replication (without it about half the calls would get 480).
#  3. At SIGTERM each worker logs "worker state at shutdown" with its message count: both must have
#     handled messages, and the summed "server state at shutdown" line counts 1000 registrations.
# Logs: $OUT/server.log and SIPp traces.
set -u
. "$(dirname "$0")/lib.sh"
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
trap 'for p in ${BG_PIDS:-} ${PID:-}; do kill -9 $p 2>/dev/null; done; wait 2>/dev/null' EXIT

RUST_LOG=info "$RVOIP_SERVER" --workers 2 --no-presence --no-offline-messages --conference-prefix "" \
  --lax-auth-user --trusted-source 127.0.0.1/32 --relay off --listen udp:127.0.0.1:5060 \
  --users "$USERS_FILE" --domain 127.0.0.1 --store redb --data-dir "$OUT/data" >"$OUT/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
  python3 "$ROOT/tests/integration/options_probe.py" 127.0.0.1:5060 >/dev/null 2>&1 && break
  kill -0 $PID 2>/dev/null || fail "server exited at start: $(tail -3 "$OUT/server.log")"
  sleep 0.1
done
grep -q '^workers: 2$' "$OUT/server.log" || fail "server does not say it runs 2 workers: $(head -8 "$OUT/server.log")"

# 1. registrations
sipp_fg reg 127.0.0.1:5060 -sf "$SC/register_auth.xml" -inf "$USERS_CSV" -au bench -ap secret \
  -i $LOCAL_IP -p 5062 -r 200 -m 1000 -l 1000
R=$(check_run reg $? 1000) || fail "1000 REGISTERs: $R"
for _ in $(seq 150); do grep -q 'store synced.*written=' "$OUT/server.log" && break; sleep 0.1; done
# Two quiet seconds, then the last count must be exactly 1000.
sleep 2
WRITTEN=$(grep -o 'store synced.*written=[0-9]*' "$OUT/server.log" | tail -1 | grep -o '[0-9]*$')
[ "${WRITTEN:-}" = 1000 ] || fail "store: written=${WRITTEN:-none}, want exactly 1000 (one write per binding change)"

# 2. calls through the proxy
sipp_bg uas -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p 5062 -m 200
UAS=$SIPP_BG_PID
wait_udp_port 5062 || fail "SIPp UAS did not bind 5062"
sipp_fg uac 127.0.0.1:5060 -sf "$SC/uac_proxy_auth.xml" -s user0500 -au bench -ap secret \
  -i $LOCAL_IP -p 5064 -r 50 -m 200 -l 100 -d 100 -default_behaviors all,-abortunexp
RC=$?
if [ $RC = 0 ]; then wait $UAS; else kill $UAS 2>/dev/null; wait $UAS 2>/dev/null; fi
R=$(check_run uac $RC 200) || fail "200 calls: $R ($(grep -c '480' "$OUT/uac.msg" 2>/dev/null) lines with 480 in uac.msg)"

# 3. both workers worked; the sums add up
kill -TERM $PID
for _ in $(seq 50); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done
wait $PID 2>/dev/null; PID=
for w in 0 1; do
  N=$(grep 'worker state at shutdown' "$OUT/server.log" | grep -o "worker=$w messages=[0-9]*" | grep -o '[0-9]*$')
  [ -n "$N" ] || fail "no shutdown line for worker $w"
  [ "$N" -gt 0 ] || fail "worker $w handled no message"
  echo "worker $w handled $N messages"
done
grep 'server state at shutdown' "$OUT/server.log" | grep -q 'registrations: 1000,' ||
  fail "summed counters: $(grep -o 'registrations: [0-9]*' <<<"$(grep 'server state at shutdown' "$OUT/server.log")")"
echo "1000 REGISTERs (stored once each) and 200 calls with 0 failures over 2 workers"
