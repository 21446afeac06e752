#!/usr/bin/env bash
# pjsip: PJSIP 2.15 (pjsua2 Python, PyPI pjsua2-python) as a real client. tests/integration/pjsip_call.py
# runs one pjsua2 endpoint (UDP 127.0.0.1, null audio) with accounts user0003 and user0004: both REGISTER
# (401 digest challenge answered by PJSIP), user0003 calls sip:user0004@127.0.0.1 through the server
# (INVITE 407 answered by PJSIP; forwarded with Record-Route to user0004's contact, auto-answered 200),
# ~2 s of call, BYE from the caller answered 200, both accounts unregister (200).
#  1. against the server under test ($PROXY, MD5 challenges): the Authorization / Proxy-Authorization
#     PJSIP sent use algorithm=MD5.
#  2. (TARGET=rvoip only) against a second rvoip-server started here on 127.0.0.1:5062 (or the next free
#     of 5064/5066) with --digest-algorithms sha-256,md5: the challenges list SHA-256 first, then MD5
#     (RFC 8760), and PJSIP answers with algorithm=SHA-256 (one Authorization header, 64-hex response).
# Logs: $OUT/pjsua_md5.log, $OUT/pjsua_sha256.log (pjsua level 5, all SIP messages), $OUT/*.out,
# $OUT/server_sha256.log.
set -u
. "$(dirname "$0")/lib.sh"
PY=$ROOT/tests/integration/pjsip_call.py
python3 -c 'import pjsua2' 2>/dev/null || fail "python module pjsua2 missing (pip install pjsua2-python)"

# run_pjsip TAG SERVER: run the PJSIP scenario against SERVER (host:port); prints its summary line
run_pjsip() {
  local tag=$1 server=$2 rc
  rm -f "$OUT/pjsua_$tag.log"
  timeout -k 5 40 python3 "$PY" --server "$server" --log "$OUT/pjsua_$tag.log" >"$OUT/pjsip_$tag.out" 2>&1
  rc=$?
  grep '^PJSIP ' "$OUT/pjsip_$tag.out" | tail -1
  return $rc
}
# sent HDR: header lines HDR (Authorization, Proxy-Authorization, ...) of the messages in a pjsua log
hdr_lines() { grep -iE "^$2:" "$OUT/pjsua_$1.log"; }

# ---- 1. server under test (MD5) ----
S1=$(run_pjsip md5 "$PROXY"); RC=$?
echo "md5:    $S1"
[ $RC = 0 ] || fail "PJSIP against $PROXY failed (rc=$RC): ${S1:-no summary, see $OUT/pjsip_md5.out}"
if [ "$TARGET" = rvoip ]; then
  hdr_lines md5 Authorization | grep -q 'algorithm=MD5' || fail "PJSIP REGISTER Authorization without algorithm=MD5"
  hdr_lines md5 Proxy-Authorization | grep -q 'algorithm=MD5' || fail "PJSIP INVITE Proxy-Authorization without algorithm=MD5"
fi
[ "$TARGET" = rvoip ] || { echo "PJSIP registered, called, BYE 200 via $PROXY (SHA-256 part only for TARGET=rvoip)"; exit 0; }

# ---- 2. second rvoip-server offering sha-256,md5 ----
SRV=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
[ -x "$SRV" ] || fail "rvoip-server not found at $SRV"
P2=
for p in 5062 5064 5066; do
  if ! ss -lun 2>/dev/null | grep -q ":$p " && ! ss -ltn 2>/dev/null | grep -q ":$p "; then P2=$p; break; fi
done
[ -n "$P2" ] || fail "no free port among 5062/5064/5066 for the sha-256 server"
RUST_LOG=${RUST_LOG:-info} "$SRV" --lax-auth-user --digest-algorithms sha-256,md5 --listen "udp:127.0.0.1:$P2" \
  --users "$USERS_FILE" --domain 127.0.0.1 >"$OUT/server_sha256.log" 2>&1 &
SRV2=$!; BG_PIDS="$BG_PIDS $SRV2"
wait_udp_port "$P2" || fail "sha-256 rvoip-server did not bind 127.0.0.1:$P2"
S2=$(run_pjsip sha256 "127.0.0.1:$P2"); RC=$?
echo "sha256: $S2"
kill -0 "$SRV2" 2>/dev/null || fail "sha-256 rvoip-server died"
[ $RC = 0 ] || fail "PJSIP against the sha-256,md5 server failed (rc=$RC): ${S2:-no summary, see $OUT/pjsip_sha256.out}"
# the challenge offers SHA-256 first, then MD5 (same nonce)
hdr_lines sha256 WWW-Authenticate | head -2 | tr '\n' ' ' | grep -qE 'algorithm=SHA-256.*algorithm=MD5' \
  || fail "401 does not offer SHA-256 then MD5: $(hdr_lines sha256 WWW-Authenticate | head -2 | tr '\n' ' ')"
# what PJSIP answered: exactly SHA-256 (no MD5 Authorization at all), 64-hex response
echo "$S2" | grep -q 'REGISTER-auth=SHA-256 ' || fail "PJSIP did not answer the 401 with SHA-256 only: $S2"
echo "$S2" | grep -q 'INVITE-auth=SHA-256:' || fail "PJSIP did not answer the 407 with SHA-256 only: $S2"
hdr_lines sha256 Authorization | grep -qE 'response="[0-9a-f]{64}".*algorithm=SHA-256' \
  || fail "no Authorization with a 64-hex SHA-256 response in $OUT/pjsua_sha256.log"
N_AUTH=$(grep -c '^Authorization:' "$OUT/pjsua_sha256.log")
echo "PJSIP 2.15 registered/called/BYE 200 via $PROXY (MD5) and via 127.0.0.1:$P2 (answered SHA-256 of sha-256,md5; $N_AUTH Authorization headers)"
