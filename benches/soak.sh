#!/usr/bin/env bash
# Soak test (outside CI): rvoip-server under steady REGISTER and proxied-call load for a long time,
# RSS sampled every SAMPLE_SECS. Reports the RSS growth after the warm-up and the failures.
#
# Load (SIPp, all on 127.0.0.1): REGISTER+digest at REG_RATE/s (1000 AORs re-registering in turn)
# and proxied calls with 407 INVITE auth at CALL_RATE/s to a SIPp UAS registered as "uas", each
# call held CALL_HOLD_MS. The defaults are half the capacity measured by benches/load.sh on this
# machine (REGISTER >= 6000/s, calls >= 3000/s, both SIPp-bound: BENCHMARKS.md).
# The server trusts 127.0.0.1 (trusted_sources), because all the load comes from that one address
# and the default flood limit (1000 messages/s per source) would ban it.
#
# Usage: benches/soak.sh     (env: DURATION_SECS=1800 WARMUP_SECS=300 SAMPLE_SECS=30 REG_RATE=3000
#                             CALL_RATE=1500 CALL_HOLD_MS=1000 RVOIP_SERVER OUTDIR RVOIP_NETNS=1)
# Everything is bounded (-m, -timeout, timeout(1)) and stops by itself.
set -u
if [ "${RVOIP_NETNS:-0}" = 1 ] && [ -z "${RVOIP_IN_NETNS:-}" ]; then
  exec unshare -n env RVOIP_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SC=$ROOT/tests/scenarios
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
DURATION_SECS=${DURATION_SECS:-1800}
WARMUP_SECS=${WARMUP_SECS:-300}
SAMPLE_SECS=${SAMPLE_SECS:-30}
REG_RATE=${REG_RATE:-3000}
CALL_RATE=${CALL_RATE:-1500}
CALL_HOLD_MS=${CALL_HOLD_MS:-1000}
OUTDIR=${OUTDIR:-$ROOT/target/bench-soak}
mkdir -p "$OUTDIR"; cd "$OUTDIR" || exit 1
for t in sipp bc ss; do command -v $t >/dev/null || { echo "missing $t (apt-get install -y sip-tester bc iproute2)"; exit 2; }; done
[ -x "$RVOIP_SERVER" ] || { echo "no $RVOIP_SERVER (cargo build --release --bin rvoip-server)"; exit 2; }

{ echo SEQUENTIAL; for i in $(seq -w 0 999); do echo "user$i;secret"; done; } >users.csv
printf 'SEQUENTIAL\nuas;secret\n' >uas.inf
{
  echo 'listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]'
  echo 'domain = "127.0.0.1"'
  echo 'relay = "off"'
  echo 'lax_auth_user = true'
  echo 'trusted_sources = ["127.0.0.1/32"]'
  echo 'max_transactions_per_source = 1000000'
  echo 'max_held_bytes_per_source = 1073741824'
  echo '[users]'
  for i in $(seq -w 0 999); do echo "user$i = \"secret\""; done
  echo 'uas = "secret"'; echo 'caller = "secret"'
} >soak.toml

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT INT TERM

# info for the driver: the status line each minute, with the slowest event-loop step
RUST_LOG=${RUST_LOG:-warn,rvoip_sdk::driver=info} "$RVOIP_SERVER" --config soak.toml >server.log 2>&1 &
SPID=$!; PIDS+=("$SPID")
sleep 1
kill -0 "$SPID" 2>/dev/null || { echo "rvoip-server exited: $(tail -3 server.log)"; exit 1; }
rss() { awk '/^VmRSS:/{print $2}' "/proc/$SPID/status" 2>/dev/null; }
# Per sample, beside the RSS: UDP datagrams dropped for a full receive buffer (this namespace's
# /proc/net/snmp), the server's CPU seconds, and the machine's steal ticks (a stalled VM).
udp_drops() { awk '/^Udp:/{if (!h) {for (i=1;i<=NF;i++) if ($i=="RcvbufErrors") c=i; h=1} else print $c}' /proc/net/snmp; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$SPID/stat" 2>/dev/null; }
steal() { awk '/^cpu /{print $9}' /proc/stat; }

RUN_SECS=$((DURATION_SECS + 30))
# "uas" registers first (from the port the UAS then listens on; Expires 3600 covers the run)
timeout 20 sipp 127.0.0.1:5060 -sf "$SC/register_auth.xml" -inf uas.inf -au uas -ap secret -i 127.0.0.1 -p 5070 \
  -m 1 -nostdin -timeout 10s -timeout_error >/dev/null 2>&1 || { echo "could not register uas"; exit 1; }

# The UAS keeps each ended call 32 s, as RFC 3261 §17.2.2 (Timer J) keeps a UAS's BYE transaction,
# so a 200 OK to BYE that was lost is sent again when the BYE is retransmitted.
sed 's/timewait milliseconds="2000"/timewait milliseconds="32000"/' "$SC/uas_proxy.xml" >uas_soak.xml
timeout $((RUN_SECS + 60)) sipp -sf uas_soak.xml -i 127.0.0.1 -p 5070 -nostdin -timeout "${RUN_SECS}s" \
  -default_behaviors all,-abortunexp -trace_err -error_file uas.err -trace_stat -stf uas_stat.csv -fd 30 >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5

# REGISTER load: 1000 AORs in turn (each re-registers every 1000/REG_RATE s)
timeout $((RUN_SECS + 60)) sipp 127.0.0.1:5060 -sf "$SC/register_auth.xml" -inf users.csv -au user000 -ap secret \
  -i 127.0.0.1 -p 5062 -r "$REG_RATE" -m $((REG_RATE * DURATION_SECS)) -l $((REG_RATE * 4)) \
  -nostdin -timeout "${RUN_SECS}s" -trace_stat -stf reg.csv -fd 30 -trace_err -error_file reg.err >/dev/null 2>&1 &
REGPID=$!; PIDS+=("$REGPID")
# call load
timeout $((RUN_SECS + 60)) sipp 127.0.0.1:5060 -sf "$SC/uac_proxy_auth.xml" -s uas -au caller -ap secret \
  -i 127.0.0.1 -p 5064 -r "$CALL_RATE" -m $((CALL_RATE * DURATION_SECS)) -l $((CALL_RATE * 8)) -d "$CALL_HOLD_MS" \
  -default_behaviors all,-abortunexp -nostdin -timeout "${RUN_SECS}s" -trace_stat -stf call.csv -fd 30 \
  -trace_err -error_file call.err >/dev/null 2>&1 &
CALLPID=$!; PIDS+=("$CALLPID")

echo "soak: REGISTER ${REG_RATE}/s + calls ${CALL_RATE}/s (held ${CALL_HOLD_MS} ms) for ${DURATION_SECS}s; RSS every ${SAMPLE_SECS}s"
echo "t_s rss_kB udp_rcvbuf_drops server_cpu_s steal_ticks" >rss.txt
T0=$(date +%s)
while :; do
  t=$(( $(date +%s) - T0 ))
  kill -0 "$SPID" 2>/dev/null || { echo "rvoip-server died at ${t}s"; break; }
  echo "$t $(rss) $(udp_drops) $(cpu_s) $(steal)" | tee -a rss.txt
  kill -0 "$REGPID" 2>/dev/null || kill -0 "$CALLPID" 2>/dev/null || break
  [ "$t" -ge $((DURATION_SECS + 120)) ] && break
  sleep "$SAMPLE_SECS"
done
wait "$REGPID"; REGRC=$?; wait "$CALLPID"; CALLRC=$?

col() { local f=$1 name=$2 idx; idx=$(head -1 "$f" | tr ';' '\n' | grep -nx "$name" | cut -d: -f1); tail -1 "$f" | cut -d';' -f"$idx"; }
for k in reg call; do
  printf '%-5s sipp rc=%s successful=%s failed=%s\n' "$k" "$([ $k = reg ] && echo $REGRC || echo $CALLRC)" \
    "$(col $k.csv 'SuccessfulCall(C)')" "$(col $k.csv 'FailedCall(C)')"
done
# RSS growth after the warm-up: first sample at or after WARMUP_SECS vs the last sample under load
awk -v w="$WARMUP_SECS" -v d="$DURATION_SECS" 'NR>1 && $1>=w && base=="" {base=$2; bt=$1}
  NR>1 && $1<=d {last=$2; lt=$1}
  END { if (base=="") { print "no sample after the warm-up"; exit }
        printf "RSS after warm-up (t=%ss): %s kB; at t=%ss: %s kB; growth %.2f %%\n", bt, base, lt, last, (last-base)*100/base }' rss.txt
echo "server status lines: $(grep -c status server.log) (log: $OUTDIR/server.log)"
echo "UDP receive-buffer drops: $(awk 'NR==2{a=$3} NR>1{b=$3} END{print b-a}' rss.txt)"
echo "slowest event-loop step per minute (ms): $(sed 's/\x1b\[[0-9;]*m//g' server.log | grep -o 'slowest_step_ms=[0-9.]*' | cut -d= -f2 | sort -g | tail -3 | tr '\n' ' ')"
echo "event-loop steps over 125 ms: $(grep -c 'event loop step took' server.log)"
