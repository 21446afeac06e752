#!/usr/bin/env bash
# metrics: rvoip-server's HTTP listener (--http) on a server this test starts itself (a NO_SERVER
# test: the framework's server has no HTTP listener). Traffic of known size, then /metrics is scraped
# and parsed by the prometheus_client package's OpenMetrics and Prometheus text parsers, and every
# counter must match exactly:
#   N REGISTERs with digest (REGISTER, 401, REGISTER, 200; SIPp) and the UAS's own registration;
#   M calls through the proxy to a SIPp UAS (INVITE, 100, 407, ACK, INVITE, 100, 180, 200, ACK, BYE, 200).
# Also: /healthz (200, event loop alive, location store reachable), /status while the calls are up
# (calls listed with their fields) and after (N+1 bindings, no call), 404 and 405 answers, and the
# relay's session and port gauges back at 0.
# No OPTIONS probe is sent (readiness is the HTTP listener answering), so OPTIONS must count 0.
set -u
. "$(dirname "$0")/lib.sh"
N=${REGISTERS:-200}; M=${CALLS:-50}
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install -q prometheus-client ||
  fail "cannot install the prometheus-client Python package"
CHECK="python3 $ROOT/tests/integration/metrics_check.py"
trap 'for p in $BG_PIDS; do kill $p 2>/dev/null; done; wait 2>/dev/null' EXIT
# METRICS_WORKERS=N (workers_http.sh): the same run on N workers (the features one worker must
# hold turned off).
WORKER_ARGS=()
[ -n "${METRICS_WORKERS:-}" ] &&
  WORKER_ARGS=(--workers "$METRICS_WORKERS" --no-presence --no-offline-messages --conference-prefix "")

RUST_LOG=info "$RVOIP_SERVER" --lax-auth-user --trusted-source 127.0.0.1/32 "${WORKER_ARGS[@]}" \
  --listen udp:127.0.0.1:5060 --users "$USERS_FILE" --domain 127.0.0.1 --http 127.0.0.1:0 \
  >"$OUT/server.log" 2>&1 &
SERVER=$!
BG_PIDS="$BG_PIDS $SERVER"
HTTP=
for _ in $(seq 50); do
  HTTP=$(sed -n 's/^http listening on \([0-9.:]*\) .*/\1/p' "$OUT/server.log")
  [ -n "$HTTP" ] && break
  sleep 0.1
done
[ -n "$HTTP" ] || fail "server printed no http address: $(tail -3 "$OUT/server.log")"
H=http://$HTTP
$CHECK wait "$H/healthz" 5 || fail "HTTP listener not answering"
echo "server pid $SERVER, http $H"

R=$($CHECK healthz "$H/healthz" 2>&1) || fail "healthz: $R"
echo "$R"
$CHECK code "$H/nope" GET 404 || fail "unknown path not 404"
$CHECK code "$H/metrics" POST 405 || fail "POST /metrics not 405"
$CHECK code "$H/status?limit=x" GET 400 || fail "bad /status query not 400"
# Before any SIP traffic every request counter is 0.
R=$($CHECK metrics "$H/metrics" 'rvoip_sip_requests_total{method=REGISTER}=0' \
  'rvoip_sip_requests_total{method=INVITE}=0' 'rvoip_bindings=0' 2>&1) || fail "baseline: $R"

# ---- N registrations (SIPp) + the UAS's registration ----
sipp_fg reg "$PROXY" -sf "$SC/register_auth.xml" -inf "$USERS_CSV" -au bench -ap secret \
  -i $LOCAL_IP -p 5062 -r 100 -m "$N" -l "$N"
R=$(check_run reg $? "$N") || fail "REGISTER: $R"
R=$(register_contact reg_uas uas 5070) || fail "REGISTER uas -> 127.0.0.1:5070 failed: $R"

# ---- M calls (2 s each), /status sampled while they are up ----
sipp_bg uas -sf "$SC/uas_rr_check.xml" -i $LOCAL_IP -p 5070 -m "$M"
UAS=$SIPP_BG_PID
wait_udp_port 5070 || fail "SIPp UAS did not bind 5070"
sipp_bg uac "$PROXY" -sf "$SC/uac_proxy_auth.xml" -s uas -au bench -ap secret -i $LOCAL_IP -p 5064 \
  -m "$M" -r 25 -l "$M" -d 2000 -default_behaviors all,-abortunexp
UAC=$SIPP_BG_PID
UP=
for _ in $(seq 40); do
  if $CHECK status "$H/status" 'calls_total>=1' >/dev/null 2>&1; then UP=1; break; fi
  sleep 0.1
done
[ -n "$UP" ] || fail "/status never listed a call while $M calls were placed"
R=$($CHECK status "$H/status" 'calls_total>=1' call_fields 2>&1) || fail "status during calls: $R"
echo "$R"
wait $UAC; UACRC=$?
wait $UAS; UASRC=$?
R=$(check_run uac $UACRC "$M") || fail "UAC: $R"
R=$(check_run uas $UASRC "$M") || fail "UAS: $R"
retx() { csv_col "$1" 'Retransmissions(C)'; }
echo "SIPp retransmissions: reg=$(retx reg) uac=$(retx uac) uas=$(retx uas)"

# ---- the counters ----
REGS=$((N + 1))
# INVITE 1xx per call: the forwarded INVITE's 100 Trying and the relayed 180; the challenged
# first INVITE gets its 407 alone (no 100 Trying before an immediate final, RFC 3261 §17.2.1).
R=$($CHECK metrics "$H/metrics" --save "$OUT/metrics.txt" \
  "rvoip_sip_requests_total{method=REGISTER}=$((2 * REGS))" \
  "rvoip_sip_responses_total{method=REGISTER,class=4xx}=$REGS" \
  "rvoip_sip_responses_total{method=REGISTER,class=2xx}=$REGS" \
  "rvoip_sip_responses_total{method=REGISTER,class=1xx}=0" \
  "rvoip_sip_responses_total{method=REGISTER,class=5xx}=0" \
  "rvoip_sip_requests_total{method=INVITE}=$((2 * M))" \
  "rvoip_sip_requests_total{method=ACK}=$((2 * M))" \
  "rvoip_sip_requests_total{method=BYE}=$M" \
  "rvoip_sip_requests_total{method=CANCEL}=0" \
  "rvoip_sip_requests_total{method=OPTIONS}=0" \
  "rvoip_sip_responses_total{method=INVITE,class=1xx}=$((2 * M))" \
  "rvoip_sip_responses_total{method=INVITE,class=4xx}=$M" \
  "rvoip_sip_responses_total{method=INVITE,class=2xx}=$M" \
  "rvoip_sip_responses_total{method=INVITE,class=5xx}=0" \
  "rvoip_sip_responses_total{method=BYE,class=2xx}=$M" \
  "rvoip_sip_request_retransmissions_total=0" \
  "rvoip_sip_response_latency_seconds_count{method=REGISTER}=$((2 * REGS))" \
  "rvoip_sip_response_latency_seconds_bucket{method=REGISTER,le=+Inf}=$((2 * REGS))" \
  "rvoip_sip_response_latency_seconds_count{method=INVITE}=$((2 * M))" \
  "rvoip_sip_response_latency_seconds_bucket{method=INVITE,le=+Inf}=$((2 * M))" \
  "rvoip_auth_challenges_total=$((REGS + M))" \
  "rvoip_auth_failures_total=0" \
  "rvoip_registrations_total=$REGS" \
  "rvoip_parse_errors_total=0" \
  "rvoip_requests_rejected_total=0" \
  "rvoip_proxy_events_total{event=forwarded}>=$((2 * M))" \
  "rvoip_bindings=$REGS" \
  "rvoip_aors=$REGS" \
  "rvoip_calls=0" \
  "rvoip_proxy_contexts=0" \
  "rvoip_relay_sessions=0" \
  "rvoip_relay_ports_in_use=0" \
  "rvoip_relay_packets_forwarded_total>=0" \
  "rvoip_dropped_messages_total{reason=guard}=0" \
  "rvoip_limits_hit_total{limit=overload}=0" \
  "rvoip_transactions{kind=server}>=0" \
  "rvoip_uptime_seconds>=1" 2>&1)
RC=$?
echo "$R"
[ $RC = 0 ] || fail "$(echo "$R" | tail -1) (SIPp retransmissions reg=$(retx reg) uac=$(retx uac) uas=$(retx uas))"

R=$($CHECK status "$H/status" "bindings_total=$REGS" "bindings_listed=$REGS" calls_total=0 binding_fields 2>&1) ||
  fail "status after calls: $R"
echo "$R"
R=$($CHECK status "$H/status?limit=5" bindings_listed=5 "bindings_total=$REGS" 2>&1) || fail "status limit: $R"
R=$($CHECK healthz "$H/healthz" 2>&1) || fail "healthz after the run: $R"
kill -0 "$SERVER" 2>/dev/null || fail "server died"
echo "metrics: $((2 * REGS)) REGISTER and $M calls counted exactly; /healthz ok; /status lists $REGS bindings"
