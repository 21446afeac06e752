#!/usr/bin/env bash
# Server CPU per 1000 operations at one fixed SIPp rate, for several servers alternated in one
# invocation: rvoip-server binaries (for example before and after a change) and the Kamailio
# reference of benches/load.sh. Each run starts its server afresh in a private network namespace
# (own loopback: 127.0.0.1:5060 is free whatever else runs), registers the SIPp UAS, warms up for
# WARM s (default 2) at RATE/s, then measures SECS s at RATE/s. WARM=40 measures at steady state:
# rvoip's UDP transactions live 32 s (RFC 3261 Timers J/L/M), so by then they end as fast as they
# start. A freshly started Kamailio reads 10-25 % higher here than in load.sh after its ladders
# (cause not established; page faults are ruled out): compare against load.sh for targets. Unlike load.sh, no ladder runs first, so every server holds
# the same state (10 000 users, a fresh redb store) and runs can be compared one to one.
#
# Usage: benches/fixed_rate.sh MODE RATE SECS      MODE: call (proxied calls, 407 INVITE auth) or
#                                                  reg (REGISTER with digest)
#   env: SERVERS="target/release/rvoip-server kamailio" (paths of rvoip-server binaries, and/or
#        "kamailio"), ROUNDS=2, WARM=2 (s), STORE=redb|memory (rvoip's --store), OUTDIR=target/bench-fixed
# Prints one line per run: round, server, CPU-s per 1000 operations (utime+stime from /proc; for
# Kamailio all its processes), voluntary and involuntary context switches of the server (rvoip).
# Needs root (unshare -n), sip-tester (sipp), bc, kamailio for the reference.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${RVOIP_IN_NETNS:-}" ]; then
  exec unshare -n env RVOIP_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
MODE=${1:-call}; RATE=${2:-500}; SECS=${3:-15}
SHARED=${SHARED:-$(cd "$ROOT/../shared" 2>/dev/null && pwd)}
SC=$ROOT/tests/scenarios
SERVERS=${SERVERS:-"$ROOT/target/release/rvoip-server kamailio"}
ROUNDS=${ROUNDS:-2}
WARM=${WARM:-2}
OUT=${OUTDIR:-$ROOT/target/bench-fixed}
mkdir -p "$OUT" && cd "$OUT" || exit 1
{ for i in $(seq -w 0 9999); do echo "user$i:secret"; done; echo uas:secret; } >users.txt
{ echo SEQUENTIAL; for i in $(seq -w 0 9999); do echo "user$i;secret"; done; } >users.csv
printf 'SEQUENTIAL\nuas;secret\n' >uas.csv

SPID=; UAS=
pids() { if [ "$SRV" = kamailio ]; then echo "$SPID $(pgrep -P "$SPID" | tr '\n' ' ')"; else echo "$SPID"; fi; }
ticks() { local p; for p in $(pids); do awk '{print $14+$15}' /proc/$p/stat 2>/dev/null; done | awk '{s+=$1} END {print s+0}'; }
ctxt() { awk '/^voluntary_ctxt/{v=$2} /^nonvoluntary_ctxt/{n=$2} END {print v+0, n+0}' /proc/$SPID/status 2>/dev/null; }
stop() {
  [ -n "$UAS" ] && kill "$UAS" 2>/dev/null
  if [ "$SRV" = kamailio ]; then "$SHARED/peers/kamailio.sh" stop >/dev/null 2>&1
  elif [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null; fi
  wait 2>/dev/null; SPID=; UAS=
}
trap stop EXIT
run() {
  SRV=$1
  if [ "$SRV" = kamailio ]; then
    "$SHARED/peers/kamailio.sh" start -A WITH_LAX_AUTHUSER -A WITH_INVITE_AUTH >/dev/null || return 1
    SPID=$(cat /tmp/peers/kam/kamailio.pid)
  else
    rm -rf data
    RUST_LOG=warn "$SRV" --relay off --lax-auth-user --trusted-source 127.0.0.1/32 --listen udp:127.0.0.1:5060 \
      --users users.txt --domain 127.0.0.1 --store "${STORE:-redb}" --data-dir "$OUT/data" >server.log 2>&1 &
    SPID=$!
  fi
  sleep 1
  timeout 20 sipp 127.0.0.1:5060 -sf "$SC/register_auth.xml" -inf uas.csv -au user9000 -ap secret \
    -i 127.0.0.1 -p 5070 -m 1 -nostdin -timeout 10s >/dev/null 2>&1
  local args
  if [ "$MODE" = call ]; then
    timeout $((WARM + SECS + 40)) sipp -sf "$SC/uas_proxy.xml" -i 127.0.0.1 -p 5070 -nostdin -timeout $((WARM + SECS + 30))s \
      -default_behaviors all,-abortunexp >/dev/null 2>&1 &
    UAS=$!; sleep 0.5
    args=(-sf "$SC/uac_proxy_auth.xml" -s uas -au user9001 -ap secret -default_behaviors all,-abortunexp)
  else
    args=(-sf "$SC/register_auth.xml" -inf users.csv -au user9001 -ap secret)
  fi
  timeout $((WARM + 30)) sipp 127.0.0.1:5060 "${args[@]}" -i 127.0.0.1 -p 5062 -m $((RATE * WARM)) -r "$RATE" \
    -nostdin -timeout $((WARM + 20))s >/dev/null 2>&1
  local t0 t1 c0 c1
  t0=$(ticks); c0=$(ctxt)
  timeout $((SECS + 30)) sipp 127.0.0.1:5060 "${args[@]}" -i 127.0.0.1 -p 5063 -m $((RATE * SECS)) -r "$RATE" \
    -nostdin -timeout $((SECS + 15))s -trace_stat -stf "run.csv" >/dev/null 2>&1
  local rc=$?
  t1=$(ticks); c1=$(ctxt)
  printf '%s  %-40s %-5s %s/s x %ss: %.3f cpu-s/1000  rc=%s' "$ROUND" "$SRV" "$MODE" "$RATE" "$SECS" \
    "$(echo "($t1 - $t0) / $(getconf CLK_TCK) * 1000 / ($RATE * $SECS)" | bc -l)" "$rc"
  if [ "$SRV" != kamailio ]; then
    set -- $c0 $c1; printf '  switches: %s voluntary, %s involuntary' $(($3 - $1)) $(($4 - $2))
  fi
  echo
  stop
}
for ROUND in $(seq "$ROUNDS"); do
  for s in $SERVERS; do run "$s"; done
done
