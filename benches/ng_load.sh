#!/usr/bin/env bash
# ng control-protocol load benchmark: rtpengine-daemon (userspace reference, --table=-1) vs
# `rvoip-server --relay-only --ng`, in the same invocation (shared, noisy machines: the ratios are
# what matters).
#
# Starts both relays (each with 1000 media ports, --delete-delay=0 for rtpengine), waits until
# each answers an ng ping, then runs benches/ng_load.rs once against both: CALLS calls per round
# (offer, answer, delete; Kamailio 5.6's keys and order; no media), WINDOW calls in flight from
# one UDP socket, ROUNDS rounds alternating rtpengine, rvoip, rtpengine, rvoip, ... after WARMUP
# unmeasured calls each. Per target and round it prints calls/s and requests/s, latency
# p50/p99/max per request (µs), failures and retransmissions, and the relay's CPU-seconds per
# 1000 calls (whole process, /proc/PID/task/*/schedstat); then the best round per target and
# the ratios rvoip / rtpengine of calls/s (higher is better) and of CPU per call (lower is better).
#
#   rtpengine: rtpengine --config-file=none --foreground --log-stderr --table=-1 --interface=127.0.0.1
#              --listen-ng=127.0.0.1:2232 --port-min=41000 --port-max=41999 --delete-delay=0 --log-level=3
#   rvoip:     RUST_LOG=warn $RVOIP_SERVER --relay-only --ng udp:127.0.0.1:2223 --relay-ports 40000-40999
#              --relay-advertise 127.0.0.1     (ready when it prints "ng control listening on udp:...")
#
# The run happens in a private network namespace (unshare -n; own loopback) when root: no port
# clashes with other work on the box (e.g. tests using 2223). NG_NETNS=0 to stay in the host
# namespace. Before building, it waits (up to BUILD_WAIT s, default 1800) while another cargo
# build/check/test runs: one cargo at a time on a 2-core box. The rvoip-server binary is not built
# here (cargo build --release -p rvoip-sdk --features opus --bin rvoip-server).
#
# Usage: benches/ng_load.sh     (env: TARGETS="rtpengine rvoip", CALLS=20000, WINDOW=64, ROUNDS=2,
#                                WARMUP=500, RVOIP_SERVER=target/release/rvoip-server, RTPE_ARGS=,
#                                NG_NETNS=1, BUILD_WAIT=1800, OUTDIR=target/bench-ng)
#        TARGETS=rtpengine benches/ng_load.sh    the reference alone
# Extra arguments are passed to the bench binary. Needs: cargo, python3, rtpengine-daemon
# (apt-get installed if missing and root), util-linux unshare for the namespace.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUTDIR:-$ROOT/target/bench-ng}
TARGETS=${TARGETS:-"rtpengine rvoip"}
CALLS=${CALLS:-20000}
WINDOW=${WINDOW:-64}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-500}
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
RTPE_ARGS=${RTPE_ARGS:-}   # extra rtpengine options, e.g. --num-threads=1
BUILD_WAIT=${BUILD_WAIT:-1800}
RTPE_NG=127.0.0.1:2232
RVOIP_NG=127.0.0.1:2223
NG_CLIENT=$ROOT/tests/integration/ng_client.py
mkdir -p "$OUTDIR"

if [ -z "${RVOIP_IN_NETNS:-}" ]; then
  for t in python3 timeout; do command -v $t >/dev/null || { echo "missing $t"; exit 2; }; done
  if [[ " $TARGETS " == *" rtpengine "* ]] && ! command -v rtpengine >/dev/null; then
    if [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y rtpengine-daemon >/dev/null || { echo "apt-get install rtpengine-daemon failed"; exit 2; }
    else echo "rtpengine missing (apt-get install -y rtpengine-daemon)"; exit 2; fi
  fi
  if [[ " $TARGETS " == *" rvoip "* ]] && [ ! -x "$RVOIP_SERVER" ]; then
    echo "$RVOIP_SERVER missing (cargo build --release -p rvoip-sdk --features opus --bin rvoip-server, or TARGETS=rtpengine)"; exit 2
  fi
  # One cargo at a time on this box: wait for another build to finish, then build the bench.
  t0=$(date +%s)
  while pgrep -f "cargo (build|check|test|bench|clippy)" >/dev/null; do
    [ $(( $(date +%s) - t0 )) -ge "$BUILD_WAIT" ] && { echo "(another cargo still running after ${BUILD_WAIT}s; building anyway)"; break; }
    sleep 5
  done
  (cd "$ROOT" && cargo bench -p rvoip-sdk --bench ng_load --no-run) >"$OUTDIR/build.log" 2>&1 || { tail -20 "$OUTDIR/build.log"; exit 2; }
  BIN=$(sed -n 's/.*Executable.*(\(.*ng_load-[0-9a-f]*\)).*/\1/p' "$OUTDIR/build.log" | tail -1)
  case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
  [ -x "$BIN" ] || { echo "bench executable not found (see $OUTDIR/build.log)"; exit 2; }
  export BIN
  if [ "${NG_NETNS:-1}" = 1 ] && [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    exec unshare -n env RVOIP_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
  fi
  echo "(no private network namespace: running on the host's loopback)"
fi
cd "$OUTDIR" || exit 1
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null

RTPE_PID=; RVOIP_PID=
# stop PID: SIGTERM, up to 5 s, then SIGKILL.
stop() {
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null
}
cleanup() { stop "$RTPE_PID"; stop "$RVOIP_PID"; RTPE_PID=; RVOIP_PID=; }
trap cleanup EXIT
trap 'exit 130' INT TERM

ARGS=()
for t in $TARGETS; do
  case $t in
    rtpengine)
      rtpengine --config-file=none --foreground --log-stderr --table=-1 --interface=127.0.0.1 \
        --listen-ng=$RTPE_NG --port-min=41000 --port-max=41999 --delete-delay=0 --log-level=3 \
        $RTPE_ARGS >"$OUTDIR/rtpengine.log" 2>&1 &
      RTPE_PID=$!
      python3 "$NG_CLIENT" --server $RTPE_NG wait --timeout 10 >/dev/null \
        || { echo "rtpengine not answering on $RTPE_NG: $(tail -3 "$OUTDIR/rtpengine.log")"; exit 1; }
      ARGS+=(--target rtpengine=$RTPE_NG --pid rtpengine=$RTPE_PID) ;;
    rvoip)
      RUST_LOG=warn "$RVOIP_SERVER" --relay-only --ng udp:$RVOIP_NG --relay-ports 40000-40999 \
        --relay-advertise 127.0.0.1 >"$OUTDIR/rvoip.log" 2>&1 &
      RVOIP_PID=$!
      for _ in $(seq 100); do grep -q 'ng control listening' "$OUTDIR/rvoip.log" && break; kill -0 $RVOIP_PID 2>/dev/null || break; sleep 0.1; done
      python3 "$NG_CLIENT" --server $RVOIP_NG wait --timeout 10 >/dev/null \
        || { echo "rvoip-server not answering on $RVOIP_NG: $(tail -3 "$OUTDIR/rvoip.log")"; exit 1; }
      ARGS+=(--target rvoip=$RVOIP_NG --pid rvoip=$RVOIP_PID) ;;
    *) echo "unknown target $t (rtpengine, rvoip)"; exit 2 ;;
  esac
done

echo "=== ng control load: ${TARGETS// / vs }, $(rtpengine --version 2>&1 | head -1 | sed 's/Version: /rtpengine /'), $(nproc) cores, $([ -n "${RVOIP_IN_NETNS:-}" ] && echo "private netns" || echo "host netns"), $(date -u +%Y-%m-%dT%H:%MZ) ==="
T0=$(date +%s)
timeout $(( CALLS * ROUNDS / 50 + 600 )) "$BIN" "${ARGS[@]}" --calls "$CALLS" --window "$WINDOW" --rounds "$ROUNDS" \
  --warmup "$WARMUP" "$@" | tee "$OUTDIR/ng_load.log"
rc=${PIPESTATUS[0]}
for p in "$RTPE_PID" "$RVOIP_PID"; do [ -n "$p" ] && ! kill -0 "$p" 2>/dev/null && echo "WARNING: relay pid $p died during the run"; done
echo "log in $OUTDIR/ng_load.log (daemon logs: rtpengine.log, rvoip.log); total time $(( $(date +%s) - T0 ))s"
exit "$rc"
