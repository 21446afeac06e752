#!/usr/bin/env bash
# workers_http: the HTTP listener with --workers 2 (issue 16). A NO_SERVER test: metrics.sh's whole run
# (its own server on udp:127.0.0.1:5060 with --http; N REGISTERs and M calls of known size; /metrics
# parsed by prometheus_client with every counter matching exactly; /status during and after the calls;
# /healthz) on a server started with --workers 2 (presence, offline messages and conference rooms off).
# The REGISTERs and calls have distinct Call-IDs, spread over both workers, so the exact counts hold
# only when /metrics sums the workers' counters and histograms while counting the replicated bindings
# once, and /status lists each binding once and the calls of both workers. Then, from the server's
# shutdown lines: it ran 2 workers and both handled messages (else the sums prove nothing).
# Logs: $OUT/server.log, $OUT/metrics.txt, SIPp traces.
set -u
. "$(dirname "$0")/lib.sh"
METRICS_WORKERS=2 bash "$ROOT/tests/integration/metrics.sh" || exit 1
grep -q '^workers: 2$' "$OUT/server.log" || fail "server does not say it ran 2 workers: $(head -8 "$OUT/server.log")"
for _ in $(seq 50); do grep -q 'server state at shutdown' "$OUT/server.log" && break; sleep 0.1; done
for w in 0 1; do
  N=$(grep 'worker state at shutdown' "$OUT/server.log" | grep -o "worker=$w messages=[0-9]*" | grep -o '[0-9]*$')
  [ -n "$N" ] || fail "no shutdown line for worker $w"
  [ "$N" -gt 0 ] || fail "worker $w handled no message: the counters were not spread over workers"
  echo "worker $w handled $N messages"
done
echo "workers_http: /metrics, /status and /healthz exact over 2 workers"
