#!/usr/bin/env bash
# dispatch: outbound routing to gateways (issue 16 point 5), on a server this test starts itself
# (a NO_SERVER test) with a [dispatch] table:
#  - set "gw": three SIPp UAS gateways on 127.0.0.1 (ports GW1..GW3), weights 50/30/20, algorithm
#    "weighted", probed with OPTIONS every second (SIPp -aa answers them), fr_timer 1 s;
#  - set "trunk": one SIPp UAS (scenarios/uas_trunk_auth.xml) that challenges every INVITE with 401
#    and checks the credentials of the re-sent one (verifyauth), with the set's username/password;
#  - routes: prefix "00" -> gw, prefix "99" -> trunk.
# 1. weights: N calls (default 200) to 0049301234 through the server; every call succeeds and each
#    gateway's share of the calls (SuccessfulCall of its SIPp statistics) is within TOL (5)
#    percentage points of its weight (the smooth weighted round robin gives exactly 100/60/40).
# 2. failover: gateway 3 is killed (kill -9), at once another N calls: 0 failed calls at the UAC, all
#    answered by gateways 1 and 2; the server's log shows gateway 3 marked down, at least one call
#    that reached it failing over after fr_timer, and no request sent to it after it was marked down.
# 3. trunk auth: 5 calls to 99123: the trunk's 401 is answered by the server (the caller never sees
#    it), the trunk accepts the credentials, 5 successful calls on both sides.
# Ports: PORT_BASE (default 5360): server PORT_BASE, gateways +11..+13, trunk +14, UAC +20.
# Logs: $OUT/server.log, $OUT/{gw1,gw2,gw3,trunk,uac1,uac2,uac3}.* (SIPp).
set -u
: "${SIPP_TIMEOUT:=120}"
. "$(dirname "$0")/lib.sh"
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
N=${CALLS:-200}
TOL=${TOL:-5}
BASE=${PORT_BASE:-5360}
SRV=$BASE GW1=$((BASE + 11)) GW2=$((BASE + 12)) GW3=$((BASE + 13)) TRUNK=$((BASE + 14)) UACP=$((BASE + 20))
SERVER_PID=
trap 'cleanup_bg; stop_pid "$SERVER_PID"' EXIT

cat >"$OUT/server.toml" <<EOF
listen = ["udp:127.0.0.1:$SRV"]
domain = "127.0.0.1"
trusted_sources = ["127.0.0.1/32"]
relay = "off"
invite_auth = false

[dispatch]
probe_interval_s = 1
probe_timeout_ms = 1000

[[dispatch.sets]]
name = "gw"
algorithm = "weighted"
fr_timer_ms = 1000
destinations = [
  { uri = "sip:127.0.0.1:$GW1", weight = 50 },
  { uri = "sip:127.0.0.1:$GW2", weight = 30 },
  { uri = "sip:127.0.0.1:$GW3", weight = 20 },
]

[[dispatch.sets]]
name = "trunk"
username = "acct"
password = "trunk-secret"
realm = "trunk.test"
destinations = [{ uri = "sip:127.0.0.1:$TRUNK" }]

[[dispatch.routes]]
prefix = "00"
set = "gw"

[[dispatch.routes]]
prefix = "99"
set = "trunk"
EOF

for p in $SRV $GW1 $GW2 $GW3 $TRUNK $UACP; do
  ss -lun 2>/dev/null | grep -q "127.0.0.1:$p " && fail "port $p is busy (PORT_BASE=... picks others)"
done
# the gateways and the trunk first: the server's first probe round finds them up
sipp_bg gw1 -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p $GW1 -aa; G1=$SIPP_BG_PID
sipp_bg gw2 -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p $GW2 -aa; G2=$SIPP_BG_PID
sipp_bg gw3 -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p $GW3 -aa; G3=$SIPP_BG_PID
sipp_bg trunk -sf "$SC/uas_trunk_auth.xml" -i $LOCAL_IP -p $TRUNK -aa; TR=$SIPP_BG_PID
for p in $GW1 $GW2 $GW3 $TRUNK; do wait_udp_port $p || fail "SIPp UAS did not bind $p"; done

RUST_LOG="info,rvoip_sdk::server::core::dispatch=debug" "$RVOIP_SERVER" --config "$OUT/server.toml" \
  >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
up=0
for _ in $(seq 50); do
  python3 "$ROOT/tests/integration/options_probe.py" "127.0.0.1:$SRV" >/dev/null 2>&1 && { up=1; break; }
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
[ $up = 1 ] || fail "server did not start: $(tail -3 "$OUT/server.log")"
log() { sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log"; }

# ok_of TAG: SuccessfulCall(C) of a running SIPp (its statistics file is rewritten every second)
ok_of() { local v; v=$(csv_col "$1" 'SuccessfulCall(C)'); echo "${v:-0}"; }
# wait_ok WANT TAG...: waits (up to 15 s) until the gateways' successful calls add up to WANT
wait_ok() {
  local want=$1 sum t i; shift
  for i in $(seq 150); do
    sum=0; for t in "$@"; do sum=$((sum + $(ok_of "$t"))); done
    [ "$sum" -ge "$want" ] && return 0
    sleep 0.1
  done
  return 1
}
uac() {  # uac TAG NUMBER CALLS: CALLS calls to NUMBER through the server, 50 calls/s
  sipp_fg "$1" "127.0.0.1:$SRV" -sf "$SC/uac_proxy.xml" -s "$2" -i $LOCAL_IP -p $UACP \
    -m "$3" -r 50 -l 100 -d 200
}

# ---- 1. spread by weight ----
uac uac1 0049301234 "$N"; rc=$?
R=$(check_run uac1 $rc "$N") || fail "batch 1: $R"
wait_ok "$N" gw1 gw2 gw3 || fail "batch 1: the gateways answered $(ok_of gw1)+$(ok_of gw2)+$(ok_of gw3) calls, want $N"
C1=$(ok_of gw1) C2=$(ok_of gw2) C3=$(ok_of gw3)
echo "batch 1: $N calls, gateways answered $C1 / $C2 / $C3 (weights 50/30/20)"
check_share() {  # check_share NAME COUNT WEIGHT: |100*COUNT/N - WEIGHT| <= TOL
  local pct=$(( (100 * $2 + N / 2) / N ))
  local d=$(( pct > $3 ? pct - $3 : $3 - pct ))
  [ $d -le "$TOL" ] || fail "batch 1: $1 got $2 of $N calls ($pct %), weight $3 % (tolerance $TOL points)"
}
check_share gw1 "$C1" 50; check_share gw2 "$C2" 30; check_share gw3 "$C3" 20

# ---- 2. one gateway dies: failover, no call lost ----
# (sipp_bg's pid is the `timeout` wrapper: the gateway is its child)
G3SIPP=$(pgrep -P "$G3" sipp)
[ -n "$G3SIPP" ] || fail "gateway 3's SIPp process not found (child of $G3)"
kill -9 $G3SIPP; wait "$G3" 2>/dev/null
ss -lun 2>/dev/null | grep -q "127.0.0.1:$GW3 " && fail "gateway 3 still listening after kill -9"
uac uac2 0049301235 "$N"; rc=$?
R=$(check_run uac2 $rc "$N") || fail "batch 2 (gateway 3 killed): $R"
wait_ok $((C1 + C2 + N)) gw1 gw2 || fail "batch 2: gateways 1+2 answered $(( $(ok_of gw1) + $(ok_of gw2) - C1 - C2 )) calls, want $N"
D1=$(( $(ok_of gw1) - C1 )) D2=$(( $(ok_of gw2) - C2 ))
echo "batch 2: $N calls with gateway 3 dead, 0 failed; gateways 1 / 2 answered $D1 / $D2"
G3URI="sip:127.0.0.1:$GW3"
down_line=$(log | grep -n "dispatch: destination down" | grep -F "$G3URI" | head -1 | cut -d: -f1)
[ -n "$down_line" ] || fail "batch 2: the server never marked $G3URI down"
log | grep -F "$G3URI" | grep -q "dispatch: destination up" && fail "$G3URI was marked up again"
to_g3=$(log | grep "dispatch: forwarded" | grep -c "dest=127.0.0.1:$GW3")
sent_b2=$((to_g3 - C3))
after=$(log | tail -n +"$((down_line + 1))" | grep "dispatch: forwarded" | grep -c "dest=127.0.0.1:$GW3")
failovers=$(log | grep -c "dispatch: failover to the next destination")
echo "gateway 3: marked down ($(log | sed -n "${down_line}p" | grep -o 'failure=[^ ]*' ) $(log | sed -n "${down_line}p" | grep -o 'by=[^ ]*')), $sent_b2 call(s) of batch 2 reached it before, $after after; $failovers failover(s)"
[ "$after" = 0 ] || fail "batch 2: $after request(s) sent to gateway 3 after it was marked down"
[ "$sent_b2" -ge 1 ] && [ "$failovers" -ge "$sent_b2" ] ||
  fail "batch 2: $sent_b2 call(s) reached the dead gateway, $failovers failover(s) (want >= 1 and >= calls that reached it)"

# ---- 3. trunk authentication ----
uac uac3 99123 5; rc=$?
R=$(check_run uac3 $rc 5) || fail "trunk: $R"
wait_ok 5 trunk || fail "trunk: $(ok_of trunk) calls accepted with the server's credentials, want 5"
grep -q "SIP/2.0 401" "$OUT/uac3.msg" && fail "trunk: the 401 reached the caller"
challenged=$(grep -c "SIP/2.0 401 Unauthorized" "$OUT/trunk.msg")
echo "trunk: 5 calls, $challenged challenged and answered by the server, accepted by the trunk (verifyauth)"
stop_pid "$SERVER_PID"; SERVER_PID=
echo "dispatch: spread by weight, failover without loss, trunk authentication"
