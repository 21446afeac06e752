#!/usr/bin/env bash
# workers_dispatch: the dispatcher with workers = 2 (issue 16). A NO_SERVER test: its own server (udp,
# PORT_BASE default 5460) with presence, offline messages and conference rooms off, and one set "gw" of
# three SIPp UAS gateways (round robin, OPTIONS probes every second, answered by SIPp -aa; fr_timer 1 s),
# route prefix "00".
#  1. 3 s of probing (each worker probes every gateway 3 times), then 200 calls to 0049301234: 200
#     successful, and no gateway was ever marked down. Each worker waits for its own probes' answers;
#     they come back to it only because their Call-IDs hash to it (an answer steered to the other worker
#     is lost, and the probe's timeout marks the gateway down: "dispatch: destination down").
#  2. gateway 3 is killed (kill -9), at once another 200 calls: 0 failed at the UAC (the calls that
#     reach gateway 3 fail over on whichever worker they are), all answered by gateways 1 and 2, and the
#     log shows gateway 3 marked down.
#  3. At SIGTERM both workers log having handled messages.
# Logs: $OUT/server.log, $OUT/{gw1,gw2,gw3,uac1,uac2}.* (SIPp).
set -u
: "${SIPP_TIMEOUT:=120}"
. "$(dirname "$0")/lib.sh"
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
N=${CALLS:-200}
BASE=${PORT_BASE:-5460}
SRV=$BASE GW1=$((BASE + 11)) GW2=$((BASE + 12)) GW3=$((BASE + 13)) UACP=$((BASE + 20))
SERVER_PID=
trap 'cleanup_bg; stop_pid "$SERVER_PID"' EXIT

cat >"$OUT/server.toml" <<EOF2
listen = ["udp:127.0.0.1:$SRV"]
domain = "127.0.0.1"
trusted_sources = ["127.0.0.1/32"]
relay = "off"
invite_auth = false
workers = 2
presence = false
offline_messages = false
conference_prefix = ""

[dispatch]
probe_interval_s = 1
probe_timeout_ms = 1000

[[dispatch.sets]]
name = "gw"
fr_timer_ms = 1000
destinations = [{ uri = "sip:127.0.0.1:$GW1" }, { uri = "sip:127.0.0.1:$GW2" }, { uri = "sip:127.0.0.1:$GW3" }]

[[dispatch.routes]]
prefix = "00"
set = "gw"
EOF2

for p in $SRV $GW1 $GW2 $GW3 $UACP; do
  ss -lun 2>/dev/null | grep -q "127.0.0.1:$p " && fail "port $p is busy (PORT_BASE=... picks others)"
done
sipp_bg gw1 -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p $GW1 -aa; G1=$SIPP_BG_PID
sipp_bg gw2 -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p $GW2 -aa; G2=$SIPP_BG_PID
sipp_bg gw3 -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p $GW3 -aa; G3=$SIPP_BG_PID
for p in $GW1 $GW2 $GW3; do wait_udp_port $p || fail "SIPp UAS did not bind $p"; done

RUST_LOG="info,rvoip_sdk::server::core::dispatch=debug" "$RVOIP_SERVER" --config "$OUT/server.toml" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
up=0
for _ in $(seq 50); do
  python3 "$ROOT/tests/integration/options_probe.py" "127.0.0.1:$SRV" >/dev/null 2>&1 && { up=1; break; }
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
[ $up = 1 ] || fail "server did not start: $(tail -3 "$OUT/server.log")"
grep -q '^workers: 2$' "$OUT/server.log" || fail "server does not say it runs 2 workers: $(head -8 "$OUT/server.log")"
log() { sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log"; }
ok_of() { local v; v=$(csv_col "$1" 'SuccessfulCall(C)'); echo "${v:-0}"; }
uac() {  # uac TAG NUMBER CALLS
  sipp_fg "$1" "127.0.0.1:$SRV" -sf "$SC/uac_proxy.xml" -s "$2" -i $LOCAL_IP -p $UACP \
    -m "$3" -r 50 -l 100 -d 200
}

# ---- 1. probes answered to the worker that sent them ----
sleep 3
uac uac1 0049301234 "$N"; rc=$?
R=$(check_run uac1 $rc "$N") || fail "batch 1: $R"
DOWN=$(log | grep -c "dispatch: destination down")
[ "$DOWN" = 0 ] || fail "batch 1: gateways marked down $DOWN time(s) while all answered: $(log | grep -m1 'dispatch: destination down' | cut -c1-240)"
echo "batch 1: $N calls, 0 failed, no gateway marked down after 3 s of probes from 2 workers"

# ---- 2. gateway 3 dies: every worker fails over ----
for _ in $(seq 30); do [ $(( $(ok_of gw1) + $(ok_of gw2) + $(ok_of gw3) )) -ge "$N" ] && break; sleep 0.1; done
C12=$(( $(ok_of gw1) + $(ok_of gw2) ))
G3SIPP=$(pgrep -P "$G3" sipp)
[ -n "$G3SIPP" ] || fail "gateway 3's SIPp process not found (child of $G3)"
kill -9 $G3SIPP; wait "$G3" 2>/dev/null
uac uac2 0049301235 "$N"; rc=$?
R=$(check_run uac2 $rc "$N") || fail "batch 2 (gateway 3 killed): $R"
for _ in $(seq 150); do [ $(( $(ok_of gw1) + $(ok_of gw2) - C12 )) -ge "$N" ] && break; sleep 0.1; done
D=$(( $(ok_of gw1) + $(ok_of gw2) - C12 ))
[ "$D" = "$N" ] || fail "batch 2: gateways 1+2 answered $D calls, want $N"
log | grep "dispatch: destination down" | grep -qF "sip:127.0.0.1:$GW3" || fail "batch 2: gateway 3 never marked down"
echo "batch 2: $N calls with gateway 3 dead, 0 failed, $D answered by gateways 1 and 2; $(log | grep -c 'dispatch: failover') failover(s)"

# ---- 3. both workers worked ----
kill -TERM $SERVER_PID
for _ in $(seq 50); do kill -0 $SERVER_PID 2>/dev/null || break; sleep 0.1; done
wait $SERVER_PID 2>/dev/null; SERVER_PID=
for w in 0 1; do
  M=$(grep 'worker state at shutdown' "$OUT/server.log" | grep -o "worker=$w messages=[0-9]*" | grep -o '[0-9]*$')
  [ -n "$M" ] || fail "no shutdown line for worker $w"
  [ "$M" -gt 0 ] || fail "worker $w handled no message"
  echo "worker $w handled $M messages"
done
echo "workers_dispatch: probes answered to their workers, failover on both workers, $((2 * N)) calls 0 failed"
