#!/usr/bin/env bash
# SRTP's CPU cost per call in the SDK (issue 12): benches/ua_load.rs with plain RTP (the reference)
# and with SRTP keyed by SDES and by DTLS-SRTP, in one invocation, alternating the modes ROUNDS times
# so that the machine's load drifts alike for all of them.
#   benches/srtp_load.sh [CALLS=100] [SECONDS=10] [ROUNDS=3]
# Prints each run's ua_load line, then per mode the median CPU % per call and its ratio to plain
# (target: SRTP adds <= 15 %, i.e. ratio <= 1.15). Every run must report media_ok=true, which
# with --srtp sdes|dtls also means every leg's statistics say that keying.
set -eu
CALLS=${1:-100} SECONDS_=${2:-10} ROUNDS=${3:-3}
cd "$(dirname "$0")/.."
BIN=$(cargo bench -p rvoip-sdk --bench ua_load --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ua_load" and m.get("executable"):
        print(m["executable"])' | tail -1)
[ -x "$BIN" ] || { echo "ua_load bench binary not built"; exit 1; }
OUT=$(mktemp)
for r in $(seq "$ROUNDS"); do
  for mode in off sdes dtls; do
    line=$("$BIN" --calls "$CALLS" --seconds "$SECONDS_" --setup 20 --srtp "$mode" | grep '^ua_load ')
    echo "round $r: $line"
    echo "$line" >>"$OUT"
    echo "$line" | grep -q 'media_ok=true' || { echo "media not flowing in mode $mode"; exit 1; }
  done
done
python3 - "$OUT" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    runs.setdefault(f["srtp"], []).append((float(f["cpu_pct_per_call"]), float(f["kb_per_call"])))
base = statistics.median(c for c, _ in runs["off"])
for mode in ("off", "sdes", "dtls"):
    cpu = statistics.median(c for c, _ in runs[mode])
    kb = statistics.median(k for _, k in runs[mode])
    print("srtp_load mode=%s cpu_pct_per_call_median=%.4f ratio_to_plain=%.3f kb_per_call_median=%.1f runs=%s"
          % (mode, cpu, cpu / base, kb, ",".join("%.4f" % c for c, _ in runs[mode])))
PY
rm -f "$OUT"
