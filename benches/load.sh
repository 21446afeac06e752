#!/usr/bin/env bash
# SIPp load benchmark: rvoip-server vs the Kamailio reference set-up, in the same invocation
# (shared, noisy machines: only the ratios are meaningful).
#
# Both servers run on 127.0.0.1:5060, one after the other (each is stopped before the other starts):
#   rvoip:    target/release/rvoip-server --relay off --lax-auth-user --listen udp/tcp 127.0.0.1:5060 --users ... --domain 127.0.0.1
#             --store $RVOIP_STORE (default redb, the binary's default: bindings committed to a file)
#             (--relay off: the Kamailio reference has no rtpengine, so both carry signalling only)
#             (INVITE auth on, as by default); the SIPp UAS registers as "uas" (127.0.0.1:5070)
#   kamailio: ../shared/peers/kamailio.sh start -A WITH_LAX_AUTHUSER -A WITH_INVITE_AUTH
#             (user "uas" is routed statically to 127.0.0.1:5070)
# Figures per server:
#   1. highest rate with 0 failed calls from a short ladder (REGISTER+digest; proxied calls with 407
#      INVITE auth), RUNG_SECS s per rung, ladder stops at the first rung with failures
#   2. server CPU-seconds per 1000 operations at a fixed rate (REGISTER 1000/s, calls 500/s): the median
#      of FIXED_ROUNDS (default 3) back-to-back runs of FIXED_SECS s (one run scatters by +-25 % here)
#      from /proc/PID/stat utime+stime (kamailio: all its processes summed), at steady state: each
#      measured run follows FIXED_WARM_SECS s (default 35) at the same rate, so that what the ladders
#      left behind has ended (rvoip keeps UDP transactions for RFC 3261's 32 s, Timers J/L/M;
#      Kamailio's wait timer is 5 s) and each server pays for the ends of its own transactions at
#      the rate measured. FIXED_WARM_SECS=0 measures right after the ladders (before 2026-12-07).
#   3. memory: RSS (rvoip, one process) vs PSS (kamailio, all processes, shared memory counted once),
#      idle and after the load; memory per held call, measured first on the fresh server: HOLD_CALLS
#      calls held HOLD_MS ms (uac_proxy_auth.xml with -d), (peak during the hold - before) / calls
# Everything is bounded (-m, -timeout, timeout(1)) and stops by itself; ~8 minutes in total.
#
# Usage: benches/load.sh            (env: RVOIP_NETNS=1, RVOIP_SERVER, SETTLE_SECS, REG_RATES, CALL_RATES, RUNG_SECS, FIXED_SECS, FIXED_WARM_SECS,
#                                    FIXED_ROUNDS, HOLD_CALLS, HOLD_MS, SERVERS="rvoip kamailio", OUTDIR, RVOIP_STORE=redb|memory)
# Needs: sip-tester (sipp), kamailio (installed here with apt-get if missing and root), bc.
set -u
# Opt-in: RVOIP_NETNS=1 runs everything in a private network namespace (own loopback, so 5060 is free
# even when another server holds it on this shared machine). Needs root (unshare -n).
if [ "${RVOIP_NETNS:-0}" = 1 ] && [ -z "${RVOIP_IN_NETNS:-}" ]; then
  exec unshare -n env RVOIP_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" 2>/dev/null && pwd)}
SC=$ROOT/tests/scenarios
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
REG_RATES=${REG_RATES:-"1000 2000 3000 4000 6000"}
CALL_RATES=${CALL_RATES:-"500 1000 2000 3000"}
RUNG_SECS=${RUNG_SECS:-5}
FIXED_SECS=${FIXED_SECS:-10}
FIXED_WARM_SECS=${FIXED_WARM_SECS:-35}
FIXED_ROUNDS=${FIXED_ROUNDS:-3}
REG_FIXED=${REG_FIXED:-1000}
CALL_FIXED=${CALL_FIXED:-500}
HOLD_CALLS=${HOLD_CALLS:-2000}
HOLD_MS=${HOLD_MS:-5000}
SETTLE_SECS=${SETTLE_SECS:-35}
SERVERS=${SERVERS:-"rvoip kamailio"}
# rvoip's bindings store: redb (the binary's default: every binding change committed to disk) or memory
RVOIP_STORE=${RVOIP_STORE:-redb}
OUTDIR=${OUTDIR:-$ROOT/target/bench-load}
TCK=$(getconf CLK_TCK)
mkdir -p "$OUTDIR"; cd "$OUTDIR" || exit 1
rm -rf "$OUTDIR/data"

for t in sipp bc ss; do command -v $t >/dev/null || { echo "missing $t (apt-get install -y sip-tester bc iproute2)"; exit 2; }; done
if [[ " $SERVERS " == *" kamailio "* ]] && ! command -v kamailio >/dev/null; then
  if [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y kamailio >/dev/null || { echo "apt-get install kamailio failed"; exit 2; }
  else echo "kamailio missing (apt-get install -y kamailio)"; exit 2; fi
fi
[[ " $SERVERS " == *" rvoip "* ]] && [ ! -x "$RVOIP_SERVER" ] && { echo "no $RVOIP_SERVER (cargo build --release --bin rvoip-server)"; exit 2; }
[ -n "$SHARED" ] && [ -x "$SHARED/peers/kamailio.sh" ] || [[ " $SERVERS " != *" kamailio "* ]] || { echo "no ../shared/peers/kamailio.sh"; exit 2; }

# users (SIPp injection file + rvoip users file)
USERS_CSV=$OUTDIR/users.csv; USERS_FILE=$OUTDIR/users.txt
{ echo SEQUENTIAL; for i in $(seq -w 0 9999); do echo "user$i;secret"; done; } >"$USERS_CSV"
{ for i in $(seq -w 0 9999); do echo "user$i:secret"; done; echo bench:secret; echo uas:secret; } >"$USERS_FILE"
printf 'SEQUENTIAL\nuas;secret\n' >"$OUTDIR/uas.csv"

port_busy() { ss -lun 2>/dev/null | grep -q ':5060 ' || ss -ltn 2>/dev/null | grep -q ':5060 '; }
wait_port_free() { local i; for i in $(seq 120); do port_busy || return 0; sleep 0.5; done; return 1; }

SRV=; SPID=
pids() { if [ "$SRV" = kamailio ]; then echo "$SPID $(pgrep -P "$SPID" | tr '\n' ' ')"; else echo "$SPID"; fi; }
ticks() { local p; for p in $(pids); do awk '{print $14+$15}' /proc/$p/stat 2>/dev/null; done | awk '{s+=$1} END {print s+0}'; }
# memory in kB: rvoip RSS (VmRSS), kamailio PSS summed over all processes
mem() {
  local p
  if [ "$SRV" = kamailio ]; then for p in $(pids); do awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null; done | awk '{s+=$1} END {print s+0}'
  else awk '/^VmRSS:/{print $2}' /proc/$SPID/status 2>/dev/null; fi
}

start_server() {
  wait_port_free || { echo "port 5060 stays busy: $(ss -lunp | grep ':5060 ')"; return 1; }
  if [ "$SRV" = kamailio ]; then
    "$SHARED/peers/kamailio.sh" start -A WITH_LAX_AUTHUSER -A WITH_INVITE_AUTH >/dev/null || return 1
    SPID=$(cat /tmp/peers/kam/kamailio.pid)
  else
    RUST_LOG=${RUST_LOG:-warn} "$RVOIP_SERVER" --relay off --lax-auth-user --trusted-source 127.0.0.1/32 --listen udp:127.0.0.1:5060 --listen tcp:127.0.0.1:5060 \
      --users "$USERS_FILE" --domain 127.0.0.1 --store "$RVOIP_STORE" --data-dir "$OUTDIR/data" >"$OUTDIR/rvoip-server.log" 2>&1 &
    SPID=$!
    sleep 1
    kill -0 $SPID 2>/dev/null || { echo "rvoip-server exited: $(tail -3 "$OUTDIR/rvoip-server.log")"; return 1; }
  fi
}
stop_server() {
  if [ "$SRV" = kamailio ]; then "$SHARED/peers/kamailio.sh" stop >/dev/null 2>&1
  elif [ -n "$SPID" ]; then kill $SPID 2>/dev/null; for _ in $(seq 30); do kill -0 $SPID 2>/dev/null || break; sleep 0.1; done
    kill -9 $SPID 2>/dev/null; wait $SPID 2>/dev/null; fi
  SPID=
}
UASPID=
cleanup() { [ -n "$UASPID" ] && kill $UASPID 2>/dev/null; stop_server; }
trap cleanup EXIT INT TERM

# Each SIPp process authenticates as a different user (user9000, user9001, ...; password "secret", lax
# auth-user mode on both servers). SIPp does not seed rand(), so every SIPp process sends the same cnonce
# sequence (call 1: cnonce 6b8b4567, nc=00000001); a server whose replay check is keyed on
# (username, cnonce, nc) rather than on the nonce would reject every run's first call -- that is a
# correctness issue for tests/integration, not something the throughput figures should trip over.
AUTHN=9000
next_auth() { AUTHU=user$AUTHN; AUTHN=$((AUTHN + 1)); }
col() { echo "$HDR" | tr ';' '\n' | grep -nx "$1" | cut -d: -f1; }
# run_sipp TAG MODE RATE COUNT TIMEOUT [extra args] -> sets RC OK FAIL EL (wall s) CPUS (server CPU s)
run_sipp() {
  local tag=$1 mode=$2 rate=$3 n=$4 to=$5; shift 5
  local args t0 s e t1
  UASPID=; next_auth
  case $mode in
    reg) args=(-sf "$SC/register_auth.xml" -inf "$USERS_CSV" -au "$AUTHU" -ap secret) ;;
    call)
      timeout $((to + 20)) sipp -sf "$SC/uas_proxy.xml" -i 127.0.0.1 -p 5070 -nostdin -timeout $((to + 10))s \
        -default_behaviors all,-abortunexp -trace_err -error_file "uas_$tag.err" >/dev/null 2>&1 &
      UASPID=$!; sleep 0.5
      args=(-sf "$SC/uac_proxy_auth.xml" -s uas -au "$AUTHU" -ap secret -default_behaviors all,-abortunexp) ;;
  esac
  t0=$(ticks); s=$(date +%s.%N)
  timeout $((to + 15)) sipp 127.0.0.1:5060 "${args[@]}" -i 127.0.0.1 -p 5062 -m "$n" -r "$rate" -l $((rate * 4 > n ? rate * 4 : n)) \
    -nostdin -timeout "${to}s" -timeout_error -trace_stat -stf "uac_$tag.csv" -fd 1 \
    -trace_err -error_file "uac_$tag.err" "$@" >/dev/null 2>&1
  RC=$?
  e=$(date +%s.%N); t1=$(ticks)
  if [ -n "$UASPID" ]; then kill $UASPID 2>/dev/null; wait $UASPID 2>/dev/null; UASPID=; fi
  HDR=$(head -1 "uac_$tag.csv" 2>/dev/null); local last; last=$(tail -1 "uac_$tag.csv" 2>/dev/null)
  OK=$(echo "$last" | cut -d';' -f"$(col 'SuccessfulCall(C)')"); FAIL=$(echo "$last" | cut -d';' -f"$(col 'FailedCall(C)')")
  OK=${OK:-0}; FAIL=${FAIL:-?}
  EL=$(echo "$e - $s" | bc); CPUS=$(echo "($t1 - $t0) / $TCK" | bc -l)
}

register_uas() {  # rvoip needs a binding for "uas"; kamailio routes it statically (harmless there)
  next_auth
  timeout 20 sipp 127.0.0.1:5060 -sf "$SC/register_auth.xml" -inf "$OUTDIR/uas.csv" -au "$AUTHU" -ap secret \
    -i 127.0.0.1 -p 5070 -m 1 -nostdin -timeout 10s -timeout_error >/dev/null 2>&1
}

# warm_up MODE RATE: FIXED_WARM_SECS s of MODE at RATE before a measured fixed-rate run
warm_up() {
  [ "$FIXED_WARM_SECS" -gt 0 ] || return 0
  run_sipp "${SRV}_${1}warm" "$1" "$2" $(($2 * FIXED_WARM_SECS)) $((FIXED_WARM_SECS + 15))
  printf '  %-4s warm-up %s/s x %ss: ok=%s failed=%s server cpu=%.2fs\n' "$1" "$2" "$FIXED_WARM_SECS" "$OK" "$FAIL" "$CPUS"
}

# median of the numbers given
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# fixed_runs MODE RATE: FIXED_ROUNDS measured runs of FIXED_SECS s at RATE, back to back; the
# figure is their median CPU-s per 1000 (one run on this shared VM scatters by +-25 %)
fixed_runs() {
  local mode=$1 rate=$2 i v vals=() oks=() failed=0
  for i in $(seq "$FIXED_ROUNDS"); do
    run_sipp "${SRV}_${mode}fixed$i" "$mode" "$rate" $((rate * FIXED_SECS)) $((FIXED_SECS + 15))
    v=$(echo "$CPUS * 1000 / ($OK + ($OK == 0))" | bc -l); vals+=("$v"); oks+=("$OK")
    case $FAIL in ''|*[!0-9]*) failed=$((failed + 1)) ;; *) failed=$((failed + FAIL)) ;; esac
    printf '  %-4s fixed %s/s x %ss (run %s/%s): ok=%s failed=%s server cpu=%.2fs -> %.3f cpu-s/1000\n' "$mode" "$rate" "$FIXED_SECS" \
      "$i" "$FIXED_ROUNDS" "$OK" "$FAIL" "$CPUS" "$v"
  done
  R[$SRV,${mode}_cpu]=$(median "${vals[@]}")
  R[$SRV,${mode}_cpu_ok]="$(IFS=+; echo "${oks[*]}")/$((rate * FIXED_SECS * FIXED_ROUNDS)) failed=$failed"
  R[$SRV,${mode}_cpu_all]=$(printf '%.3f ' "${vals[@]}")
}

declare -A R
bench_server() {
  SRV=$1
  echo "=== $SRV ==="
  start_server || { echo "$SRV: could not start"; return 1; }
  R[$SRV,mem_idle]=$(mem)
  echo "$SRV idle memory: ${R[$SRV,mem_idle]} kB ($([ $SRV = kamailio ] && echo PSS || echo RSS))"
  register_uas || echo "  (REGISTER of uas failed)"
  # 3. memory per held call, on the fresh server (before any load has grown the heap / touched shm):
  #    HOLD_CALLS calls established within ~2 s and held HOLD_MS ms
  local before peak m rate=$((HOLD_CALLS / 2)) hold_to=$(( HOLD_MS / 1000 + 20 ))
  before=$(mem); peak=$before
  run_sipp "${SRV}_hold" call "$rate" "$HOLD_CALLS" "$hold_to" -d "$HOLD_MS" -l $((HOLD_CALLS * 2)) &
  local hp=$!; AUTHN=$((AUTHN + 1))   # the background run used the next auth user
  while kill -0 $hp 2>/dev/null; do m=$(mem); [ "${m:-0}" -gt "$peak" ] && peak=$m; sleep 0.25; done
  wait $hp
  OK=$(tail -1 "uac_${SRV}_hold.csv" 2>/dev/null | cut -d';' -f"$(HDR=$(head -1 "uac_${SRV}_hold.csv"); col 'SuccessfulCall(C)')")
  FAIL=$(tail -1 "uac_${SRV}_hold.csv" 2>/dev/null | cut -d';' -f"$(HDR=$(head -1 "uac_${SRV}_hold.csv"); col 'FailedCall(C)')")
  R[$SRV,hold_ok]="${OK:-?}/$HOLD_CALLS failed=${FAIL:-?}"
  R[$SRV,per_call]=$(echo "($peak - $before) / $HOLD_CALLS" | bc -l)
  printf '  hold %s calls x %sms: ok=%s failed=%s mem before=%s kB peak=%s kB -> %.2f kB/call\n' "$HOLD_CALLS" "$HOLD_MS" \
    "${OK:-?}" "${FAIL:-?}" "$before" "$peak" "${R[$SRV,per_call]}"
  sleep 2
  # 1a. REGISTER ladder
  local best=0 r
  for r in $REG_RATES; do
    run_sipp "${SRV}_reg_$r" reg "$r" $((r * RUNG_SECS)) $((RUNG_SECS + 15))
    printf '  reg  rate=%-5s n=%-6s rc=%s ok=%s failed=%s wall=%.1fs achieved=%.0f/s cpu=%.0f%%\n' "$r" $((r * RUNG_SECS)) \
      "$RC" "$OK" "$FAIL" "$EL" "$(echo "$OK / $EL" | bc -l)" "$(echo "$CPUS / $EL * 100" | bc -l)"
    if [ "$RC" = 0 ] && [ "$FAIL" = 0 ]; then best=$r; else break; fi
  done
  R[$SRV,reg_max]=$best
  echo "  memory after the REGISTER ladder: $(mem) kB"
  # 1b. call ladder (INVITE auth)
  best=0
  for r in $CALL_RATES; do
    run_sipp "${SRV}_call_$r" call "$r" $((r * RUNG_SECS)) $((RUNG_SECS + 15))
    printf '  call rate=%-5s n=%-6s rc=%s ok=%s failed=%s wall=%.1fs achieved=%.0f/s cpu=%.0f%%\n' "$r" $((r * RUNG_SECS)) \
      "$RC" "$OK" "$FAIL" "$EL" "$(echo "$OK / $EL" | bc -l)" "$(echo "$CPUS / $EL * 100" | bc -l)"
    if [ "$RC" = 0 ] && [ "$FAIL" = 0 ]; then best=$r; else break; fi
  done
  R[$SRV,call_max]=$best
  echo "  memory after the call ladder: $(mem) kB"
  # 2. CPU per 1000 operations at a fixed rate, after a warm-up at that rate (steady state)
  warm_up reg "$REG_FIXED"
  fixed_runs reg "$REG_FIXED"
  warm_up call "$CALL_FIXED"
  fixed_runs call "$CALL_FIXED"
  R[$SRV,mem_load]=$(mem)
  # retained or released? transactions (Timer J/K, 32 s) and nonces should have expired after SETTLE_SECS
  sleep "$SETTLE_SECS"
  R[$SRV,mem_after]=$(mem)
  echo "  memory right after the load: ${R[$SRV,mem_load]} kB, ${SETTLE_SECS}s later: ${R[$SRV,mem_after]} kB"
  stop_server
}

T0=$(date +%s)
for s in $SERVERS; do bench_server "$s"; done

ratio() { local a=$1 b=$2; if [ -z "$a" ] || [ -z "$b" ] || [ "$(echo "$b == 0" | bc -l)" = 1 ]; then echo "n/a"; else printf '%.2f' "$(echo "$a / $b" | bc -l)"; fi; }
f2() { [ -z "${1:-}" ] && echo "n/a" || printf '%.3f' "$1"; }
row() { printf '%-48s %14s %14s %10s\n' "$1" "$2" "$3" "$4"; }
echo
echo "=== rvoip-server vs Kamailio 5.6 (same run, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)) ==="
row "figure" "rvoip" "kamailio" "rvoip/kam"
row "REGISTER+digest max rate, 0 failed (/s)" "${R[rvoip,reg_max]:-n/a}" "${R[kamailio,reg_max]:-n/a}" "$(ratio "${R[rvoip,reg_max]:-}" "${R[kamailio,reg_max]:-}")"
row "calls (407 auth) max rate, 0 failed (/s)" "${R[rvoip,call_max]:-n/a}" "${R[kamailio,call_max]:-n/a}" "$(ratio "${R[rvoip,call_max]:-}" "${R[kamailio,call_max]:-}")"
row "CPU-s per 1000 REGISTER @${REG_FIXED}/s" "$(f2 "${R[rvoip,reg_cpu]:-}")" "$(f2 "${R[kamailio,reg_cpu]:-}")" "$(ratio "${R[rvoip,reg_cpu]:-}" "${R[kamailio,reg_cpu]:-}")"
row "CPU-s per 1000 calls @${CALL_FIXED}/s" "$(f2 "${R[rvoip,call_cpu]:-}")" "$(f2 "${R[kamailio,call_cpu]:-}")" "$(ratio "${R[rvoip,call_cpu]:-}" "${R[kamailio,call_cpu]:-}")"
row "memory idle, kB (rvoip RSS / kam PSS)" "${R[rvoip,mem_idle]:-n/a}" "${R[kamailio,mem_idle]:-n/a}" "$(ratio "${R[rvoip,mem_idle]:-}" "${R[kamailio,mem_idle]:-}")"
row "memory after load, kB (RSS / PSS)" "${R[rvoip,mem_load]:-n/a}" "${R[kamailio,mem_load]:-n/a}" "$(ratio "${R[rvoip,mem_load]:-}" "${R[kamailio,mem_load]:-}")"
row "memory ${SETTLE_SECS}s after load, kB (RSS / PSS)" "${R[rvoip,mem_after]:-n/a}" "${R[kamailio,mem_after]:-n/a}" "$(ratio "${R[rvoip,mem_after]:-}" "${R[kamailio,mem_after]:-}")"
row "memory per held call, kB ($HOLD_CALLS x ${HOLD_MS}ms)" "$(f2 "${R[rvoip,per_call]:-}")" "$(f2 "${R[kamailio,per_call]:-}")" "$(ratio "${R[rvoip,per_call]:-}" "${R[kamailio,per_call]:-}")"
echo "fixed-rate runs ok/total: rvoip reg ${R[rvoip,reg_cpu_ok]:-n/a}, calls ${R[rvoip,call_cpu_ok]:-n/a}, hold ${R[rvoip,hold_ok]:-n/a};" \
  "kamailio reg ${R[kamailio,reg_cpu_ok]:-n/a}, calls ${R[kamailio,call_cpu_ok]:-n/a}, hold ${R[kamailio,hold_ok]:-n/a}"
echo "fixed rates: median of ${FIXED_ROUNDS} runs of ${FIXED_SECS}s, after ${FIXED_WARM_SECS}s at the same rate (steady state)"
echo "  each run, CPU-s/1000: rvoip reg ${R[rvoip,reg_cpu_all]:-n/a}| calls ${R[rvoip,call_cpu_all]:-n/a}|" \
  "kamailio reg ${R[kamailio,reg_cpu_all]:-n/a}| calls ${R[kamailio,call_cpu_all]:-n/a}"
echo "ladders: REGISTER {$REG_RATES}/s, calls {$CALL_RATES}/s, ${RUNG_SECS}s per rung (the top rung is a ceiling: SIPp itself tops out near 3000 calls/s here)"
echo "total time $(( $(date +%s) - T0 ))s; logs in $OUTDIR"
