#!/usr/bin/env bash
# reload: SIGHUP reload (issue 16 point 6) on a server this test starts itself (a NO_SERVER test), on
# free ports, with a config file and a users file (alice, bob; INVITE auth off so SIPp calls need none).
#  1. SIPp UAS registered as bob; a SIPp UAC calls bob and holds the call for 20 s (pause before BYE).
#  2. dave is not a user yet: his REGISTER fails. dave:dave-pw is added to the users file, kill -HUP;
#     the log says "configuration reloaded"; dave registers with his own password and a call to dave
#     connects. The first call is still up and its BYE is answered 200 at the end (SIPp UAC success).
#  3. A broken config file, kill -HUP: the log says why (the file and the TOML error) and the running
#     settings stay: dave still registers. Then a bad users file line: the same.
# Logs: $OUT/server.log, SIPp traces $OUT/*.msg|*.csv|*.log.
set -u
. "$(dirname "$0")/lib.sh"
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
trap 'cleanup_bg; [ -n "${SERVER:-}" ] && stop_pid "$SERVER"' EXIT

# free_ports N: N distinct free UDP ports on 127.0.0.1
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
read -r P BOB_PORT DAVE_PORT UAC1_PORT UAC2_PORT REG_PORT <<<"$(free_ports 6)"
SRV=127.0.0.1:$P
CONF=$OUT/reload.toml USERS=$OUT/reload-users.txt
printf 'alice:secret\nbob:secret\n' >"$USERS"
write_config() {
  cat >"$CONF" <<EOT
listen = ["udp:127.0.0.1:$P"]
domain = "127.0.0.1"
trusted_sources = ["127.0.0.1/32"]
relay = "off"
invite_auth = false
users_file = "$USERS"
EOT
}
write_config
RUST_LOG=info "$RVOIP_SERVER" --config "$CONF" >"$OUT/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do python3 "$ROOT/tests/integration/options_probe.py" "$SRV" >/dev/null 2>&1 && break; sleep 0.1; done
python3 "$ROOT/tests/integration/options_probe.py" "$SRV" >/dev/null 2>&1 || fail "server did not start: $(tail -3 "$OUT/server.log")"

# reg TAG USER PASSWORD PORT: SIPp REGISTER of USER (digest username USER) from 127.0.0.1:PORT; rc 0 on 200
reg() {
  local tag=$1 user=$2 pw=$3 port=$4 rc
  printf 'SEQUENTIAL\n%s;x\n' "$user" >"$OUT/$tag.inf"
  sipp_fg "$tag" "$SRV" -sf "$SC/register_auth.xml" -inf "$OUT/$tag.inf" -au "$user" -ap "$pw" \
    -i $LOCAL_IP -p "$port" -m 1 -r 1
  rc=$?
  check_run "$tag" $rc 1 >/dev/null
}
log() { sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log"; }
# wait_log N PATTERN: waits (up to 5 s) until the log has at least N lines matching PATTERN
wait_log() {
  for _ in $(seq 50); do [ "$(log | grep -c -- "$2")" -ge "$1" ] && return 0; sleep 0.1; done
  return 1
}

# ---- 1. a call that stays up ----
reg reg_bob bob secret "$BOB_PORT" || fail "step 1: bob did not register"
sipp_bg uas_bob -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p "$BOB_PORT" -m 1
UAS1=$SIPP_BG_PID
wait_udp_port "$BOB_PORT" || fail "step 1: SIPp UAS did not bind $BOB_PORT"
sipp_bg call1 "$SRV" -sf "$SC/uac_proxy.xml" -s bob -i $LOCAL_IP -p "$UAC1_PORT" -m 1 -d 20000
UAC1=$SIPP_BG_PID
for _ in $(seq 100); do grep -q 'CSeq: 1 ACK' "$OUT/call1.msg" 2>/dev/null && break; sleep 0.1; done
grep -q 'CSeq: 1 ACK' "$OUT/call1.msg" 2>/dev/null || fail "step 1: the first call was not answered within 10 s"
echo "step 1: call 1 (UAC -> bob) answered; it holds 20 s before its BYE"

# ---- 2. add dave, SIGHUP ----
reg reg_dave0 dave dave-pw "$REG_PORT" && fail "step 2: dave registered before he was added"
echo "dave:dave-pw" >>"$USERS"
kill -HUP "$SERVER"
wait_log 1 'configuration reloaded' || fail "step 2: no 'configuration reloaded' in the log after SIGHUP: $(log | tail -2)"
reg reg_dave dave dave-pw "$DAVE_PORT" || fail "step 2: dave could not register after the reload"
sipp_bg uas_dave -sf "$SC/uas_proxy.xml" -i $LOCAL_IP -p "$DAVE_PORT" -m 1
UAS2=$SIPP_BG_PID
wait_udp_port "$DAVE_PORT" || fail "step 2: SIPp UAS did not bind $DAVE_PORT"
sipp_fg call2 "$SRV" -sf "$SC/uac_proxy.xml" -s dave -i $LOCAL_IP -p "$UAC2_PORT" -m 1 -d 500
R=$(check_run call2 $? 1) || fail "step 2: call to dave: $R"
wait "$UAS2"; R=$(check_run uas_dave $? 1) || fail "step 2: dave's UAS: $R"
kill -0 "$UAC1" 2>/dev/null || fail "step 2: call 1 ended before the reload test was over"
wait "$UAC1"; R=$(check_run call1 $? 1) || fail "step 2: call 1 across the reload (BYE must get 200): $R"
wait "$UAS1"; R=$(check_run uas_bob $? 1) || fail "step 2: bob's UAS: $R"
echo "step 2: SIGHUP added dave (registered, called); call 1 stayed up 20 s and its BYE got 200"

# ---- 3. a broken config, then a broken users file ----
echo 'listen = [ "udp:127.0.0.1:'"$P"'"   # unterminated' >"$CONF"
kill -HUP "$SERVER"
wait_log 1 'reload failed' || fail "step 3: no 'reload failed' in the log after a broken config: $(log | tail -2)"
log | grep 'reload failed' | tail -1 | grep -q "$CONF" || fail "step 3: the reload failure does not name $CONF: $(log | grep 'reload failed' | tail -1)"
reg reg_dave2 dave dave-pw "$REG_PORT" || fail "step 3: dave could not register after a failed reload"
write_config
echo "not a user line" >>"$USERS"
kill -HUP "$SERVER"
wait_log 2 'reload failed' || fail "step 3: no 'reload failed' in the log after a bad users file: $(log | tail -2)"
log | grep 'reload failed' | tail -1 | grep -q "bad users file $USERS: line 4" \
  || fail "step 3: the reload failure does not name the users file line: $(log | grep 'reload failed' | tail -1)"
reg reg_dave3 dave dave-pw "$REG_PORT" || fail "step 3: dave could not register after a failed reload"
[ "$(log | grep -c 'configuration reloaded')" = 1 ] || fail "step 3: a failed reload was applied"
kill -0 "$SERVER" 2>/dev/null || fail "server died: $(log | tail -3)"
echo "step 3: broken config and bad users file refused with the reason logged; the running settings stay"
echo "reload: a user added by SIGHUP while a call was up; bad files keep the old settings"
