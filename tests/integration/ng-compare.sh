#!/usr/bin/env bash
# ng-compare: our rtpengine "ng" control protocol (rvoip-server --relay-only --ng) against the reference,
# rtpengine-daemon in userspace mode, both started here (a NO_SERVER test of run-integration.sh: the
# framework's own server is not started), on loopback:
#   reference  rtpengine --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:$REF_NG_PORT (2232)
#              --port-min/max 41000-41999 --delete-delay=0 (a deleted call is gone at once, as ours),
#              log $OUT/rtpengine.log
#   ours       $RVOIP_SERVER --relay-only --ng udp:127.0.0.1:2223 --relay-ports 40000-40999
#              --relay-advertise 127.0.0.1, log $OUT/rvoip-ng.log (ready: "ng control listening on ...")
# The same ping/offer/answer/query/list/delete and RTP (50 PCMU packets each way through the relay)
# go to both, then hostile input (asserted on ours only): see ng_compare.py for every check. Prints
# a side-by-side table of the reply keys, both rewritten SDPs, the RTP/totals figures and the hostile replies;
# every request/reply is in $OUT/ng-exchanges-{rtpengine,ours}.txt.
#   NG_TARGET=both (default)  reference and ours
#   NG_TARGET=rtpengine       the reference only (validates the harness; needs no rvoip-server)
#   NG_TARGET=rvoip           ours only (no rtpengine needed)
set -u
. "$(dirname "$0")/lib.sh"
NG_TARGET=${NG_TARGET:-both}
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
REF_NG_PORT=${REF_NG_PORT:-2232}; REF_PORTS=41000-41999
OURS_NG_PORT=2223; OURS_PORTS=40000-40999
case $NG_TARGET in both|rtpengine|rvoip) ;; *) fail "NG_TARGET must be both, rtpengine or rvoip (not $NG_TARGET)" ;; esac
want_ref() { [ "$NG_TARGET" != rvoip ]; }
want_ours() { [ "$NG_TARGET" != rtpengine ]; }

REF_PID= OURS_PID=
cleanup() { stop_pid "$OURS_PID"; stop_pid "$NG_RELAY_PID"; stop_pid "$REF_PID"; OURS_PID= NG_RELAY_PID= REF_PID=; }
trap cleanup EXIT INT TERM

# udp_free PORT: wait up to ~10 s for nothing to hold UDP 127.0.0.1:PORT (or *:PORT)
udp_free() {
  local i
  for i in $(seq 100); do
    ss -lun 2>/dev/null | awk '{print $4}' | grep -qE "^(127\.0\.0\.1|0\.0\.0\.0|\*|\[::\]):$1\$" || return 0
    sleep 0.1
  done
  return 1
}

NGC=$INTEG_DIR/ng_client.py
if want_ref; then
  command -v rtpengine >/dev/null || fail "rtpengine not installed (apt-get install -y rtpengine-daemon)"
  udp_free $REF_NG_PORT || fail "UDP 127.0.0.1:$REF_NG_PORT (reference ng port) is held by another process: $(ss -lunp | grep ":$REF_NG_PORT ")"
  # --config-file=none: not /etc/rtpengine/rtpengine.conf (its listen-cli/http would take 2224/2225)
  timeout -k 5 280 rtpengine --config-file=none --foreground --log-stderr --table=-1 --interface=127.0.0.1 \
    --listen-ng=127.0.0.1:$REF_NG_PORT --port-min=${REF_PORTS%-*} --port-max=${REF_PORTS#*-} \
    --delete-delay=0 --log-level=6 >"$OUT/rtpengine.log" 2>&1 &
  REF_PID=$!
  python3 "$NGC" --server 127.0.0.1:$REF_NG_PORT wait --timeout 10 >"$OUT/rtpengine-ready.txt" 2>&1 \
    || { tail -5 "$OUT/rtpengine.log"; fail "rtpengine did not answer ng ping on 127.0.0.1:$REF_NG_PORT within 10 s (see $OUT/rtpengine.log)"; }
  echo "reference: rtpengine $(rtpengine --version 2>&1 | awk '{print $2}') pid $REF_PID, ng 127.0.0.1:$REF_NG_PORT, ports $REF_PORTS"
fi
if want_ours; then
  udp_free $OURS_NG_PORT || fail "UDP 127.0.0.1:$OURS_NG_PORT (our ng port) is held by another process: $(ss -lunp | grep ":$OURS_NG_PORT ")"
  start_relay_only "$OUT/rvoip-ng.log" $OURS_NG_PORT $OURS_PORTS
  OURS_PID=$NG_RELAY_PID
  python3 "$NGC" --server 127.0.0.1:$OURS_NG_PORT wait --timeout 5 >"$OUT/rvoip-ready.txt" 2>&1 \
    || fail "rvoip-server printed its ng line but did not answer ng ping within 5 s"
  echo "ours: $RVOIP_SERVER pid $OURS_PID, ng 127.0.0.1:$OURS_NG_PORT, ports $OURS_PORTS"
fi

ARGS=(--out "$OUT")
want_ref && ARGS+=(--ref 127.0.0.1:$REF_NG_PORT --ref-ports $REF_PORTS)
want_ours && ARGS+=(--ours 127.0.0.1:$OURS_NG_PORT --ours-ports $OURS_PORTS)
timeout -k 5 200 python3 "$INTEG_DIR/ng_compare.py" "${ARGS[@]}" >"$OUT/ng_compare.out" 2>&1
rc=$?
cat "$OUT/ng_compare.out"
VERDICT=$(tail -1 "$OUT/ng_compare.out")
[ $rc = 124 ] && fail "ng_compare.py timed out after 200 s"

# both daemons must have survived everything (ours: asserted; the reference: reported)
if want_ref && ! kill -0 "$REF_PID" 2>/dev/null; then
  echo "note: rtpengine (reference) is no longer running (see $OUT/rtpengine.log)"; REF_PID=
fi
if want_ours; then
  kill -0 "$OURS_PID" 2>/dev/null || { OURS_PID=; fail "rvoip-server --relay-only died during the test (see $OUT/rvoip-ng.log)"; }
  python3 "$NGC" --server 127.0.0.1:$OURS_NG_PORT ping >/dev/null 2>&1 || fail "rvoip-server does not answer ng ping at the end"
  grep -qi 'panicked' "$OUT/rvoip-ng.log" && fail "rvoip-server log has a panic (see $OUT/rvoip-ng.log)"
fi
[ $rc = 0 ] || fail "${VERDICT:-ng_compare.py failed (rc=$rc)}"
