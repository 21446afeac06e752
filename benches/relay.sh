#!/usr/bin/env bash
# Media relay benchmark (issue 10): rvoip's relay (driver::relay, in-process) vs rtpengine
# (userspace only, --table=-1), in the same invocation (shared, noisy machines: the ratios are
# what matters).
#
# For each call count in CALLS (default 100 500 1000) and each target, benches/relay_load/ sets
# up N relayed calls (rvoip: RelayControl create / set_remote / confirm on ports 30000-39999;
# rtpengine: ng offer + answer per call, ports 40000-49999) and drives G.711 streams through
# them: 2 endpoints per call, a 172-byte RTP packet every 20 ms each way (100 packets/s per call)
# for SECONDS s (default 10) after a 1 s warm-up, preceded by a 3 s calibration run of the same
# streams straight between the endpoints (the generator's own latency). Per run it reports packets
# forwarded, relay CPU-s per million packets (rvoip: its "rvoip-relay" thread; rtpengine: the
# whole process), latency through the relay and added over the direct path (p50/p99), loss and
# RSS per relayed call. rtpengine is started fresh for every run (its own temp dir, killed on
# exit) so that each RSS delta starts from the same state.
#
# The whole run happens in a private network namespace (unshare -n; own loopback) when root: no
# port clashes with other work on the box, and no packet capture running on the host's lo (a
# tshark/dumpcap on lo would see 100 k packets/s and slow every packet). RELAY_NETNS=0 to stay
# in the host namespace.
#
# The machine is shared: every run records the load average and "other_cores" (CPU used by
# everything but the bench and the relay during the window, from /proc/stat); a run with
# other_cores > BUSY (default 0.25) is repeated up to RETRIES times (default 2) and the quietest
# attempt is kept. Before every attempt it waits (up to QUIET_WAIT s, default 180) until the
# machine's busy time over 2 s is at most BUSY cores.
#
# Usage: benches/relay.sh                (env: SECONDS=10, CALLS="100 500 1000", TARGETS="rvoip
#                                         rtpengine", THREADS=1, BUSY=0.25, RETRIES=2,
#                                         QUIET_WAIT=180, PIN=0, RTPE_ARGS=, RELAY_NETNS=1,
#                                         OUTDIR=target/bench-relay)
# Needs: cargo, rtpengine-daemon (apt-get installed if missing and root), bc, util-linux unshare.
RELAY_SECS=${RELAY_SECS:-$SECONDS}   # bash's SECONDS counts up from the value it was given
[ "$RELAY_SECS" -ge 1 ] 2>/dev/null || RELAY_SECS=10
export RELAY_SECS
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUTDIR:-$ROOT/target/bench-relay}
CALLS=${CALLS:-"100 500 1000"}
TARGETS=${TARGETS:-"rvoip rtpengine"}
THREADS=${THREADS:-1}
BUSY=${BUSY:-0.25}
RETRIES=${RETRIES:-2}
QUIET_WAIT=${QUIET_WAIT:-180}
NG_PORT=${NG_PORT:-22230}
RTPE_ARGS=${RTPE_ARGS:-}   # extra rtpengine options, e.g. --num-threads=2
PIN=${PIN:-0}              # 1: relay on CPU 0, generator on the last CPU (default: the scheduler decides)
mkdir -p "$OUTDIR"

if [ -z "${RVOIP_IN_NETNS:-}" ]; then
  for t in bc timeout; do command -v $t >/dev/null || { echo "missing $t"; exit 2; }; done
  if [[ " $TARGETS " == *" rtpengine "* ]] && ! command -v rtpengine >/dev/null; then
    if [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y rtpengine-daemon >/dev/null || { echo "apt-get install rtpengine-daemon failed"; exit 2; }
    else echo "rtpengine missing (apt-get install -y rtpengine-daemon)"; exit 2; fi
  fi
  # Build first (outside the namespace), then find the bench executable.
  (cd "$ROOT" && cargo bench -p rvoip-sdk --bench relay_load --no-run) >"$OUTDIR/build.log" 2>&1 || { tail -20 "$OUTDIR/build.log"; exit 2; }
  BIN=$(sed -n 's/.*Executable.*(\(.*relay_load-[0-9a-f]*\)).*/\1/p' "$OUTDIR/build.log" | tail -1)
  case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
  [ -x "$BIN" ] || { echo "bench executable not found (see $OUTDIR/build.log)"; exit 2; }
  export BIN
  if [ "${RELAY_NETNS:-1}" = 1 ] && [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    exec unshare -n env RVOIP_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
  fi
  echo "(no private network namespace: running on the host's loopback)"
fi
cd "$OUTDIR" || exit 1
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null

RTPE_PID=; RTPE_DIR=
stop_rtpengine() {
  if [ -n "$RTPE_PID" ]; then
    kill "$RTPE_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$RTPE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$RTPE_PID" 2>/dev/null; wait "$RTPE_PID" 2>/dev/null
  fi
  [ -n "$RTPE_DIR" ] && rm -rf "$RTPE_DIR"
  RTPE_PID=; RTPE_DIR=
}
start_rtpengine() {
  RTPE_DIR=$(mktemp -d /tmp/relay-bench-rtpe.XXXXXX)
  rtpengine --config-file=none --foreground --log-stderr --table=-1 --interface=127.0.0.1 \
    --listen-ng=127.0.0.1:$NG_PORT --port-min=40000 --port-max=49999 --log-level=5 \
    --pidfile="$RTPE_DIR/pid" $RTPE_ARGS >"$RTPE_DIR/rtpengine.log" 2>&1 &
  RTPE_PID=$!
  sleep 1
  kill -0 "$RTPE_PID" 2>/dev/null || { echo "rtpengine did not start: $(tail -3 "$RTPE_DIR/rtpengine.log")"; RTPE_PID=; return 1; }
}
trap stop_rtpengine EXIT INT TERM

. "$ROOT/benches/lib.sh"   # busy_cores, quiet, field

declare -A R
# run TARGET N -> sets LINE (the machine-readable line of the quietest attempt)
run() {
  local target=$1 n=$2 try line best= best_other= pin=()
  [ "$PIN" = 1 ] && pin=(--relay-cpu 0 --gen-cpu $(( $(nproc) - 1 )))
  for try in $(seq 0 "$RETRIES"); do
    local extra=()
    if [ "$target" = rtpengine ]; then start_rtpengine || return 1; extra=(--ng 127.0.0.1:$NG_PORT --rtpengine-pid "$RTPE_PID"); fi
    quiet
    local log="$OUTDIR/${target}_${n}_$try.log"
    echo "--- $target, $n calls, attempt $((try + 1)), $(uptime | sed 's/.*load/load/')" | tee "$log"
    timeout $((RELAY_SECS * 2 + 120)) "$BIN" --calls "$n" --seconds "$RELAY_SECS" --target "$target" \
      --threads "$THREADS" "${pin[@]}" "${extra[@]}" >>"$log" 2>&1
    if [ "$target" = rtpengine ]; then cp "$RTPE_DIR/rtpengine.log" "$OUTDIR/rtpengine-daemon_${n}_$try.log" 2>/dev/null; stop_rtpengine; fi
    line=$(grep '^relay_load ' "$log" | tail -1)
    if [ -z "$line" ]; then echo "  failed:"; tail -5 "$log"; continue; fi
    grep -E '^(direct|relay|  )' "$log" | sed 's/^/  /'
    local other; other=$(field other_cores "$line")
    if [ -z "$best" ] || [ "$(echo "$other < $best_other" | bc -l)" = 1 ]; then best=$line; best_other=$other; fi
    [ "$(echo "$other <= $BUSY" | bc -l)" = 1 ] && break
    [ "$try" -lt "$RETRIES" ] && { echo "  (machine busy: other_cores=$other > $BUSY; running it again)"; sleep 5; }
  done
  LINE=$best
}

T0=$(date +%s)
echo "=== media relay: rvoip vs rtpengine $(rtpengine --version 2>&1 | head -1 | sed 's/Version: //'), ${RELAY_SECS}s per run, calls {$CALLS}, $(nproc) cores, $([ -n "${RVOIP_IN_NETNS:-}" ] && echo "private netns" || echo "host netns") ==="
for n in $CALLS; do
  for t in $TARGETS; do
    LINE=; run "$t" "$n"
    R[$t,$n]=$LINE
  done
done

isnum() { [[ ${1:-} =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { local a=${1:-} b=${2:-}; if ! isnum "$a" || ! isnum "$b" || [ "$(echo "$b == 0" | bc -l)" = 1 ]; then echo "n/a"; else printf '%.2f' "$(echo "$a / $b" | bc -l)"; fi; }
g() { local l=${R[$1,$2]:-}; [ -z "$l" ] && { echo "n/a"; return; }; field "$3" "$l"; }
echo
echo "=== media relay: rvoip vs rtpengine (same run, $(date -u +%Y-%m-%dT%H:%MZ), ${RELAY_SECS}s windows) ==="
printf '%-6s %-10s %9s %7s %10s %9s %9s %10s %10s %8s %9s %7s %6s\n' calls target "fwd pps" "CPU %" "CPU-s/Mpkt" "p50 µs" "p99 µs" "+p50 µs" "+p99 µs" "loss %" "kB/call" other load1
for n in $CALLS; do
  for t in $TARGETS; do
    printf '%-6s %-10s %9s %7s %10s %9s %9s %10s %10s %8s %9s %7s %6s\n' "$n" "$t" "$(g $t $n pps)" "$(g $t $n cpu_pct)" \
      "$(g $t $n cpu_s_per_mpkt)" "$(g $t $n p50_us)" "$(g $t $n p99_us)" "$(g $t $n added_p50_us)" "$(g $t $n added_p99_us)" \
      "$(g $t $n loss_pct)" "$(g $t $n kb_per_call)" "$(g $t $n other_cores)" "$(g $t $n load1)"
  done
done
echo
echo "ratios rvoip / rtpengine (targets: CPU per packet ≤ 0.50; rvoip: added p99 < 1000 µs, 0 loss at 1000 calls, ≤ 16 kB per call)"
printf '%-6s %14s %14s %14s\n' calls "CPU/packet" "kB per call" "added p99"
for n in $CALLS; do
  printf '%-6s %14s %14s %14s\n' "$n" "$(ratio "$(g rvoip $n cpu_s_per_mpkt)" "$(g rtpengine $n cpu_s_per_mpkt)")" \
    "$(ratio "$(g rvoip $n kb_per_call)" "$(g rtpengine $n kb_per_call)")" \
    "$(ratio "$(g rvoip $n added_p99_us)" "$(g rtpengine $n added_p99_us)")"
done
echo "per-run logs in $OUTDIR; total time $(( $(date +%s) - T0 ))s"
for n in $CALLS; do for t in $TARGETS; do [ -n "${R[$t,$n]:-}" ] && echo "${R[$t,$n]}"; done; done
