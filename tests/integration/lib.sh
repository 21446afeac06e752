# Shared helpers for tests/integration/*.sh (sourced, not executed).
# Environment provided by tests/run-integration.sh:
#   ROOT   repo root            OUT  per-test log dir (tests/out/<test>)
#   SC     tests/scenarios      PROXY 127.0.0.1:5060 (server under test)
#   USERS_CSV  SIPp injection file (user0000..user9999;secret, SEQUENTIAL)
#   TARGET rvoip|kamailio       (kamailio = reference run; some tests differ)
# A test script prints its failure reason as the LAST line of stdout and exits non-zero.

: "${SIPP_TIMEOUT:=60}"
LOCAL_IP=127.0.0.1
BG_PIDS=

# fail REASON: print reason and exit 1
fail() { echo "$*"; exit 1; }

# csv_col TAG COLUMN -> value of COLUMN in the last line of $OUT/TAG.csv (SIPp -trace_stat)
csv_col() {
  local f="$OUT/$1.csv" hdr idx
  [ -s "$f" ] || { echo ""; return; }
  hdr=$(head -1 "$f")
  idx=$(echo "$hdr" | tr ';' '\n' | grep -nx "$2" | cut -d: -f1)
  [ -n "$idx" ] || { echo ""; return; }
  tail -1 "$f" | cut -d';' -f"$idx"
}

# sipp_fg TAG SIPP-ARGS... : bounded foreground SIPp run with all traces; returns SIPp's exit code
sipp_fg() {
  local tag=$1; shift
  timeout -k 5 $((SIPP_TIMEOUT + 30)) sipp "$@" -nostdin -timeout "${SIPP_TIMEOUT}s" -timeout_error \
    -trace_stat -stf "$OUT/$tag.csv" -fd 1 \
    -trace_err -error_file "$OUT/$tag.err" \
    -trace_msg -message_file "$OUT/$tag.msg" \
    -trace_screen -screen_file "$OUT/$tag.screen" >"$OUT/$tag.log" 2>&1
}

# sipp_bg TAG SIPP-ARGS... : same, in the background; PID in $SIPP_BG_PID (wait on it)
sipp_bg() {
  local tag=$1; shift
  timeout -k 5 $((SIPP_TIMEOUT + 30)) sipp "$@" -nostdin -timeout "${SIPP_TIMEOUT}s" -timeout_error \
    -trace_stat -stf "$OUT/$tag.csv" -fd 1 \
    -trace_err -error_file "$OUT/$tag.err" \
    -trace_msg -message_file "$OUT/$tag.msg" \
    -trace_screen -screen_file "$OUT/$tag.screen" >"$OUT/$tag.log" 2>&1 &
  SIPP_BG_PID=$!
  BG_PIDS="${BG_PIDS:-} $SIPP_BG_PID"
}

# wait for a SIPp UAS to bind its port (max ~3 s)
wait_udp_port() {
  local port=$1 i
  for i in $(seq 30); do
    ss -lun 2>/dev/null | grep -q "127.0.0.1:$port " && return 0
    sleep 0.1
  done
  return 1
}

# check_run TAG RC EXPECTED_SUCCESS : SIPp rc 0, FailedCall(C)=0, SuccessfulCall(C)=EXPECTED
# On failure prints a reason and returns 1.
check_run() {
  local tag=$1 rc=$2 want=$3 ok failed
  ok=$(csv_col "$tag" 'SuccessfulCall(C)'); failed=$(csv_col "$tag" 'FailedCall(C)')
  if [ "$rc" != 0 ] || [ "$failed" != 0 ] || [ "$ok" != "$want" ]; then
    echo "$tag: sipp rc=$rc successful=${ok:-?} (want $want) failed=${failed:-?}"
    return 1
  fi
  return 0
}

# register_contact TAG USER PORT : register USER (password secret) with contact 127.0.0.1:PORT
register_contact() {
  local tag=$1 user=$2 port=$3 rc
  printf 'SEQUENTIAL\n%s;secret\n' "$user" >"$OUT/$tag.inf"
  sipp_fg "$tag" "$PROXY" -sf "$SC/register_auth.xml" -inf "$OUT/$tag.inf" -au bench -ap secret \
    -i $LOCAL_IP -p "$port" -m 1 -r 1
  rc=$?
  check_run "$tag" $rc 1
}

# ---- media relay checks (rvoip-server anchors RTP on its relay ports; issue 10) ----
# The relay's port range (rvoip-server's default --relay-ports); RELAY_PORTS=MIN-MAX overrides it.
: "${RELAY_PORTS:=30000-39999}"
INTEG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# relay_applies: the relay-specific checks (capture, ports_in_use) run against our own server only:
# the Kamailio reference has no relay and an external server's relay mode is unknown.
relay_applies() { [ "$TARGET" = rvoip ]; }
# relay_capture_check PCAP LABEL [MIN]: every media packet of the phones in the capture went to or came
# from a relay port in $RELAY_PORTS, none phone<->phone, >= MIN (100) relayed each way per phone RTP port
# (tests/integration/relay_capture.py; phones' and relay's ports from the SDP in the same capture).
relay_capture_check() {
  python3 "$INTEG_DIR/relay_capture.py" "$1" --relay "$RELAY_PORTS" --label "$2" --min "${3:-100}"
}
# relay_released N: wait (up to ~3 s) until the server log ($OUT/server.log) holds at least N
# "relay: media context released" lines and the last one says ports_in_use=0. Prints the figures;
# returns 1 (with a reason) otherwise.
relay_released() {
  local want=$1 n=0 last= i
  for i in $(seq 30); do
    n=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log" 2>/dev/null | grep -c 'relay: media context released')
    last=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log" 2>/dev/null | grep 'relay: media context released' \
      | grep -o 'ports_in_use=[0-9]*' | tail -1 | cut -d= -f2)
    [ "$n" -ge "$want" ] && [ "$last" = 0 ] && break
    sleep 0.1
  done
  if [ "$n" -ge "$want" ] && [ "$last" = 0 ]; then
    echo "relay: $n media context(s) released, last ports_in_use=0"; return 0
  fi
  echo "relay: after BYE $n media context release(s) logged (want >= $want), last ports_in_use=${last:-none} (want 0)"
  return 1
}
# tone_check WAV HZ LABEL [tone_share.py options]: >= 90 % of the recording's energy at HZ, per 20 ms block
tone_check() {
  local wav=$1 hz=$2 label=$3; shift 3
  [ -s "$wav" ] || { echo "$label: no recording ($wav)"; return 1; }
  python3 "$INTEG_DIR/tone_share.py" "$wav" "$hz" --label "$label" "$@"
}

# stop background SIPp instances started by sipp_bg (by pid)
cleanup_bg() {
  local p
  for p in ${BG_PIDS:-}; do kill "$p" 2>/dev/null; done
  for p in ${BG_PIDS:-}; do wait "$p" 2>/dev/null; done
  BG_PIDS=
}
trap cleanup_bg EXIT

# start_relay_only LOG NG_PORT RELAY_PORTS: starts $RVOIP_SERVER --relay-only --ng
# udp:127.0.0.1:NG_PORT (media ports RELAY_PORTS, SDP address 127.0.0.1) in the background, its
# pid in NG_RELAY_PID (stop it in the caller's cleanup), and waits up to 10 s for its
# "ng control listening" line; fails otherwise.
NG_RELAY_PID=
start_relay_only() {
  local log=$1 port=$2 ports=$3 i ready=0
  [ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
  RUST_LOG=${RUST_LOG:-info} timeout -k 5 280 "$RVOIP_SERVER" --relay-only --ng udp:127.0.0.1:$port \
    --relay-ports $ports --relay-advertise 127.0.0.1 >"$log" 2>&1 &
  NG_RELAY_PID=$!
  for i in $(seq 100); do
    if sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -q "ng control listening on udp:127.0.0.1:$port"; then ready=1; break; fi
    kill -0 "$NG_RELAY_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ $ready = 1 ] || kill -0 "$NG_RELAY_PID" 2>/dev/null || { NG_RELAY_PID=; fail "rvoip-server --relay-only exited at start-up: $(grep -v "^ *$" "$log" | head -1) (see $log)"; }
  [ $ready = 1 ] || { tail -5 "$log"; fail "rvoip-server --relay-only did not print 'ng control listening on udp:127.0.0.1:$port' within 10 s (see $log)"; }
}

# stop_pid PID: TERM, then KILL after ~3 s (a no-op for an empty PID)
stop_pid() {  # stop_pid PID: TERM, then KILL after ~3 s
  local p=$1 i
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null
  for i in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
  return 0
}

# ---- SDK softphones in the background (sdk-pjsip-features.sh, features.sh) ----
# sp N NAME USER SERVER [ARGS...]: $SOFTPHONE registered as USER (password secret) at SERVER, in the
# background; PID in $SP (also added to $BG_PIDS); output in $OUT/N.NAME.out
sp() {
  local n=$1 name=$2 user=$3 server=$4; shift 4
  timeout -k 5 60 "$SOFTPHONE" --listen 127.0.0.1:0 --account "sip:$user@127.0.0.1" --password secret \
    --server "$server" "$@" >"$OUT/$n.$name.out" 2>&1 &
  SP=$!; BG_PIDS="${BG_PIDS:-} $SP"
}
# sp_ready N NAME: waits (up to 5 s) until softphone NAME of step N registered, else fails the test
sp_ready() {
  for _ in $(seq 50); do grep -q 'Registered' "$OUT/$1.$2.out" 2>/dev/null && return 0; sleep 0.1; done
  fail "step $1: softphone $2 not registered: $(tail -2 "$OUT/$1.$2.out")"
}
# sp_result N NAME PID: waits for PID and fails the test with its check lines unless it exited 0
sp_result() {
  local rc
  wait "$3"; rc=$?
  echo "--- step $1 $2 (rc=$rc)"; tail -6 "$OUT/$1.$2.out"
  [ "$rc" = 0 ] || fail "step $1: $2 failed (rc=$rc): $(grep -E 'check|timed out|failed|PJSIP-FEATURE' "$OUT/$1.$2.out" | tail -2 | tr '\n' ' ')"
}
