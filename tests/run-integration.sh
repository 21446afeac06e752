#!/usr/bin/env bash
# Integration tests: real SIP peers (SIPp, baresip, raw UDP) against rvoip-server on 127.0.0.1:5060
# (UDP, TCP) and 127.0.0.1:5061 (TLS, a certificate made for the run: see TLS below).
# Builds nothing. Usage:
#   tests/run-integration.sh [TEST...]          # default: all tests in tests/integration/*.sh
#   RVOIP_SERVER=path/to/rvoip-server           # default target/release/rvoip-server
#   TARGET=kamailio tests/run-integration.sh    # reference run against /work/shared/peers Kamailio
#   TARGET=external tests/run-integration.sh    # use a server already running on 127.0.0.1:5060
#                                               # (same users/flags as below; not started/stopped here)
#   NG_TARGET=rtpengine                         # ng tests (ng-compare, kamailio-ng) against the reference
#                                               # rtpengine only (default with TARGET=kamailio); needs no
#                                               # rvoip-server when only those tests run
# NO_SERVER_TESTS start (and stop) their own servers: the framework starts none for them, waits for
# nothing and probes nothing afterwards; they check their own servers' health.
# Prints "PASS name (N s)" / "FAIL name: reason" per test, then "N passed, M failed".
# Logs: tests/out/<test>/ (server.log, SIPp *.csv/*.err/*.msg/*.log).
set -u
# Opt-in: RVOIP_NETNS=1 runs everything in a private network namespace (own loopback, so 5060 is free
# even when another server holds it on this shared machine). Needs root (unshare -n).
if [ "${RVOIP_NETNS:-0}" = 1 ] && [ -z "${RVOIP_IN_NETNS:-}" ]; then
  exec unshare -n env RVOIP_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SHARED=${SHARED:-$(cd "$(git rev-parse --show-toplevel 2>/dev/null || echo "$ROOT")/../shared" 2>/dev/null && pwd)}
export ROOT SHARED
export SC=$ROOT/tests/scenarios PROXY=127.0.0.1:5060 TARGET=${TARGET:-rvoip}
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
OUTROOT=$ROOT/tests/out
mkdir -p "$OUTROOT"

ALL_TESTS="register call cancel lossy fork rfc4475 baresip pjsip sdk-sipp-echo sdk-baresip sdk-pjsip sdk-sdk sdk-pjsip-features features nat baresip-tls sdk-pjsip-tls baresip-srtp sdk-pjsip-srtp sipjs sipvicious hostile transcode record conference durable redis path vhost reload dispatch metrics workers workers_http workers_redis workers_dispatch ng-compare kamailio-ng"
# tests that start their own servers (rtpengine ng relay, Kamailio): no framework server around them
NO_SERVER_TESTS="ng-compare kamailio-ng features durable redis path vhost reload dispatch metrics workers workers_http workers_redis workers_dispatch"
TESTS=${*:-$ALL_TESTS}
no_server() { case " $NO_SERVER_TESTS " in *" $1 "*) return 0 ;; esac; return 1; }
# the ng tests' relay: ours (rvoip-server --relay-only) or the reference rtpengine
[ "$TARGET" = kamailio ] && : "${NG_TARGET:=rtpengine}"
[ -n "${NG_TARGET:-}" ] && export NG_TARGET
export RVOIP_SERVER
# rvoip-server is needed unless every selected test is a NO_SERVER test run against rtpengine
NEED_SERVER_BIN=0
for t in $TESTS; do no_server "$t" && [ "${NG_TARGET:-}" = rtpengine ] || NEED_SERVER_BIN=1; done

for t in sipp python3 ss; do command -v $t >/dev/null || { echo "missing tool: $t (run tests/run-all.sh, which installs it)"; exit 2; }; done
case $TARGET in rvoip|kamailio|external) ;; *) echo "TARGET must be rvoip, kamailio or external"; exit 2 ;; esac
if [ "$TARGET" = rvoip ] && [ $NEED_SERVER_BIN = 1 ] && [ ! -x "$RVOIP_SERVER" ]; then
  echo "rvoip-server not found at $RVOIP_SERVER (cargo build --release --bin rvoip-server)"; exit 2
fi

# TLS: the server also listens on tls:127.0.0.1:5061 with a certificate made for this run: a test CA
# ($TLS_CA, the file the phones trust) signs a server certificate for IP 127.0.0.1 and localhost; $TLS_PIN
# is that certificate's SHA-256 fingerprint in the form rvoip-server prints (AB:CD:...). Used by the *-tls
# tests (TARGET=rvoip only; the Kamailio reference has no TLS listener).
export TLS_PORT=5061
export TLS_PROXY=127.0.0.1:$TLS_PORT TLS_DIR=$OUTROOT/tls
export TLS_CA=$TLS_DIR/ca.pem TLS_CERT=$TLS_DIR/server.pem TLS_KEY=$TLS_DIR/server.key TLS_PIN=
if [ "$TARGET" = rvoip ]; then
  command -v openssl >/dev/null || { echo "missing tool: openssl (run tests/run-all.sh, which installs it)"; exit 2; }
  rm -rf "$TLS_DIR"; mkdir -p "$TLS_DIR"
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=rvoip integration test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$TLS_DIR/ca.key" -out "$TLS_CA" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$TLS_KEY" -out "$TLS_DIR/server.csr" &&
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$TLS_DIR/server.ext" &&
    openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_CA" -CAkey "$TLS_DIR/ca.key" -CAcreateserial -days 2 \
      -extfile "$TLS_DIR/server.ext" -out "$TLS_CERT" &&
    openssl verify -CAfile "$TLS_CA" "$TLS_CERT"
  } >"$TLS_DIR/openssl.log" 2>&1 || { echo "could not make the test certificates (see $TLS_DIR/openssl.log)"; exit 2; }
  TLS_PIN=$(openssl x509 -in "$TLS_CERT" -noout -fingerprint -sha256 | cut -d= -f2)
fi

# users: SIPp injection file and the server's users file (user:password)
export USERS_CSV=$OUTROOT/users.csv USERS_FILE=$OUTROOT/users.txt
{ echo SEQUENTIAL; for i in $(seq -w 0 9999); do echo "user$i;secret"; done; } >"$USERS_CSV"
{ echo "# generated by tests/run-integration.sh"; for i in $(seq -w 0 9999); do echo "user$i:secret"; done
  echo bench:secret; echo uas:secret; echo uas2:secret; } >"$USERS_FILE"

port_busy() { ss -lun 2>/dev/null | grep -q ':5060 ' || ss -ltn 2>/dev/null | grep -qE ":(5060|$TLS_PORT) "; }

# probe: OPTIONS to the server itself must get a 200 within ~0.5 s
probe() { python3 "$ROOT/tests/integration/options_probe.py" 127.0.0.1:5060; }

SERVER_PID=
PORT_WAIT=120   # half-seconds to wait for 5060 to become free
start_server() {  # $1 = log file
  local log=$1 i
  if [ "$TARGET" = external ]; then echo "external server: $(ss -lunp 2>/dev/null | grep ':5060 ')" >"$log"; probe; return; fi
  # another run (a developer's server, a benchmark) may hold 5060 for a while: wait up to 60 s
  for i in $(seq "$PORT_WAIT"); do port_busy || break; sleep 0.5; done
  if port_busy; then
    PORT_WAIT=1   # don't wait again for the following tests
    echo "(5060 is held by another process; RVOIP_NETNS=1 runs the suite in a private network namespace)" >>"$log"
    echo "port 5060 (or TLS $TLS_PORT) busy before start:" >"$log"; ss -lntup 2>/dev/null | grep -E ":(5060|$TLS_PORT) " >>"$log"
    return 1
  fi
  if [ "$TARGET" = kamailio ]; then
    "$SHARED/peers/kamailio.sh" start -A WITH_LAX_AUTHUSER -A WITH_INVITE_AUTH >"$log" 2>&1 || return 1
  else
    # example.com is an alias of the domain: the RFC 4475 torture REGISTERs (rfc4475.sh) are for it.
    # 127.0.0.1 is trusted: every peer of these tests sends from it (SIPp at 200 REGISTER/s, the RFC 4475
    # mutation run), which the flood limit would ban. The guard is tested with its defaults by
    # sipvicious.sh and hostile.sh, on their own servers, from other 127.0.0.x sources.
    RUST_LOG=${RUST_LOG:-info} "$RVOIP_SERVER" --lax-auth-user --trusted-source 127.0.0.1/32 \
      --listen udp:127.0.0.1:5060 --listen tcp:127.0.0.1:5060 \
      --listen "tls:$TLS_PROXY" --tls-cert "$TLS_CERT" --tls-key "$TLS_KEY" \
      --users "$USERS_FILE" --domain 127.0.0.1 --alias example.com --record-user user0009 --recording-dir "$OUTROOT/recordings" \
      >"$log" 2>&1 &
    SERVER_PID=$!
  fi
  for i in $(seq 50); do probe && return 0; sleep 0.1; done
  echo "server did not answer OPTIONS within 5 s" >>"$log"
  return 1
}
stop_server() {
  if [ "$TARGET" = external ]; then :
  elif [ "$TARGET" = kamailio ]; then
    [ "$1" != /dev/null ] && cat /tmp/peers/kam/kamailio.log >>"$1" 2>/dev/null
    "$SHARED/peers/kamailio.sh" stop >/dev/null 2>&1
  elif [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=
  fi
}
trap 'stop_server /dev/null' EXIT INT TERM

PASS=0; FAILN=0
for t in $TESTS; do
  script=$ROOT/tests/integration/$t.sh
  export OUT=$OUTROOT/$t
  rm -rf "$OUT"; mkdir -p "$OUT"
  # each test keeps its servers' registrations (redb) and certificates in its own data directory
  export RVOIP_DATA_DIR=$OUT/data
  T0=$SECONDS
  if [ ! -f "$script" ]; then echo "FAIL $t: no such test ($script)"; FAILN=$((FAILN+1)); continue; fi
  if no_server "$t"; then
    # the test starts, checks and stops its own servers (bounded the same way)
    timeout -k 5 300 bash "$script" >"$OUT/test.out" 2>&1
    rc=$?
    if [ $rc = 0 ]; then echo "PASS $t ($((SECONDS - T0)) s)"; PASS=$((PASS+1)); continue; fi
    if [ $rc = 124 ] || [ $rc = 137 ]; then reason="test timed out"; else reason=$(tail -1 "$OUT/test.out"); fi
    echo "FAIL $t: $reason"; FAILN=$((FAILN+1))
    echo "    --- tail $OUT/test.out"; tail -15 "$OUT/test.out" | sed 's/^/    | /'
    for f in "$OUT"/*.log; do
      [ -s "$f" ] || continue; echo "    --- tail $f"; tail -8 "$f" | cut -c1-300 | sed 's/^/    | /'
    done
    continue
  fi
  if ! start_server "$OUT/server.log"; then
    echo "FAIL $t: server did not start / answer OPTIONS"; tail -20 "$OUT/server.log" | sed 's/^/    | /'
    stop_server "$OUT/server.log"; FAILN=$((FAILN+1)); continue
  fi
  # each test is bounded; the outer timeout is a safety net
  timeout -k 5 300 bash "$script" >"$OUT/test.out" 2>&1
  rc=$?
  # server must still be alive and answering
  alive=1; probe || alive=0
  if [ "$TARGET" = rvoip ] && [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then alive=0; fi
  stop_server "$OUT/server.log"
  if [ $rc = 0 ] && [ $alive = 1 ]; then
    echo "PASS $t ($((SECONDS - T0)) s)"; PASS=$((PASS+1))
  else
    if [ $rc = 0 ]; then reason="server not answering OPTIONS after the test (crashed/hung?)"
    elif [ $rc = 124 ] || [ $rc = 137 ]; then reason="test timed out"
    else reason=$(tail -1 "$OUT/test.out"); fi
    echo "FAIL $t: $reason"; FAILN=$((FAILN+1))
    echo "    --- tail $OUT/test.out"; tail -15 "$OUT/test.out" | sed 's/^/    | /'
    for f in "$OUT"/*.err; do
      [ -s "$f" ] || continue; echo "    --- tail $f"; tail -15 "$f" | cut -c1-200 | sed 's/^/    | /'
    done
    echo "    --- tail $OUT/server.log"; tail -20 "$OUT/server.log" | cut -c1-300 | sed 's/^/    | /'
  fi
done
echo "$PASS passed, $FAILN failed"
[ $FAILN = 0 ]
