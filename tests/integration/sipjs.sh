#!/usr/bin/env bash
# sipjs: a real JavaScript SIP stack (SIP.js 0.21 from npm, over the `ws` package under node) talks to
# an SDK softphone through rvoip-server over secure WebSocket (RFC 7118), issue 11.
# A second rvoip-server runs here with udp:127.0.0.1:$UDP_PORT and wss:127.0.0.1:$WSS_PORT and its
# zero-config self-signed certificate in $OUT/data (node verifies it: NODE_EXTRA_CA_CERTS, the
# certificate names 127.0.0.1). The SDK softphone registers user0012 over UDP, answers calls with a
# 440 Hz tone and echoes every MESSAGE back to its sender (--echo-messages).
# SIP.js (tests/integration/sipjs/peer.mjs) registers user0011 over wss:// with digest, sends a MESSAGE
# to user0012 (must get 2xx), receives the echo MESSAGE (the server routes it down the WebSocket),
# INVITEs user0012 (a fixed PCMU offer: node has no WebRTC), gets the 2xx, counts >= 10 RTP packets
# from the relay at its offered port in 1.5 s, sends BYE (200) and unregisters.
# Checks: SIP.js prints "SIPJS OK"; the softphone logged the MESSAGE and the echo's 200 result and the
# call ended with 200; the server is still running.
# Logs: $OUT/sipjs.out, $OUT/softphone.out, $OUT/server2.log.
set -u
. "$(dirname "$0")/lib.sh"
if [ "$TARGET" != rvoip ]; then echo "sipjs: WebSocket listeners are rvoip-server's (TARGET=$TARGET has none)"; exit 0; fi
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE"
command -v node >/dev/null || fail "node not installed (tests/run-all.sh installs nodejs)"
JS=$ROOT/tests/integration/sipjs
if [ ! -d "$JS/node_modules/sip.js" ] || [ ! -d "$JS/node_modules/ws" ]; then
  (cd "$JS" && npm ci --no-audit --no-fund >"$OUT/npm.log" 2>&1) || fail "npm ci in $JS failed (see $OUT/npm.log)"
fi
UDP_PORT=5270 WSS_PORT=5273
mkdir -p "$OUT/data"
RUST_LOG=info "$RVOIP_SERVER" --listen udp:127.0.0.1:$UDP_PORT --listen wss:127.0.0.1:$WSS_PORT \
  --data-dir "$OUT/data" --users "$USERS_FILE" --domain 127.0.0.1 >"$OUT/server2.log" 2>&1 &
SP=$!; BG_PIDS="$BG_PIDS $SP"
for _ in $(seq 50); do [ -s "$OUT/data/tls-cert.pem" ] && ss -ltn | grep -q ":$WSS_PORT " && break; sleep 0.1; done
ss -ltn | grep -q ":$WSS_PORT " || fail "server did not listen on wss:127.0.0.1:$WSS_PORT (see $OUT/server2.log)"

timeout -k 5 40 "$SOFTPHONE" --listen 127.0.0.1:0 --account sip:user0012@127.0.0.1 --password secret \
  --server 127.0.0.1:$UDP_PORT --auto-answer --echo-messages --codecs pcmu --play tone:440 --duration 30 --timeout 30 \
  >"$OUT/softphone.out" 2>&1 &
BP=$!; BG_PIDS="$BG_PIDS $BP"
for _ in $(seq 50); do grep -q 'Registered' "$OUT/softphone.out" 2>/dev/null && break; sleep 0.1; done
grep -q 'Registered' "$OUT/softphone.out" || fail "softphone user0012 did not register (see $OUT/softphone.out)"

NODE_EXTRA_CA_CERTS=$OUT/data/tls-cert.pem TIMEOUT_S=30 timeout -k 5 40 \
  node "$JS/peer.mjs" "wss://127.0.0.1:$WSS_PORT" user0011 secret 127.0.0.1 sip:user0012@127.0.0.1 >"$OUT/sipjs.out" 2>&1
JRC=$?
wait "$BP"; BRC=$?
echo "--- SIP.js (user0011 over WSS)"; cat "$OUT/sipjs.out"
echo "--- softphone (user0012 over UDP)"; cat "$OUT/softphone.out"
kill -0 "$SP" 2>/dev/null || fail "rvoip-server exited during the test (see $OUT/server2.log)"
[ $JRC = 0 ] || fail "SIP.js: $(tail -1 "$OUT/sipjs.out")"
grep -q 'SIPJS OK' "$OUT/sipjs.out" || fail "SIP.js did not finish"
grep -q 'MessageReceived' "$OUT/softphone.out" || fail "the softphone saw no MESSAGE"
grep -q 'MessageResult .*status: 200' "$OUT/softphone.out" || fail "the softphone's echo MESSAGE was not answered 200"
[ $BRC = 0 ] || fail "softphone exit $BRC: $(tail -1 "$OUT/softphone.out")"
echo "SIP.js over WSS <-> SDK via rvoip-server: REGISTER, MESSAGE both ways, INVITE/RTP/BYE ok"
