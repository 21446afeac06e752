#!/usr/bin/env bash
# vhost: virtual hosting (issue 16 point 4) on a server this test starts itself (a NO_SERVER test),
# on free ports, serving a.example (users file) and b.example (inline users), both with a user alice
# (passwords alice-a and alice-b), with SDK softphones (target/release/examples/softphone) whose
# accounts name those domains (no DNS: the server is their outbound proxy).
#  1. alice@a.example registers with alice-a and alice@b.example with alice-b; alice@b.example with
#     alice-a is refused (401): the domains keep their own passwords.
#  2. bob@a.example calls sip:alice@a.example: a's alice answers (the caller hears her 440 Hz, not b's
#     880 Hz); carol@b.example calls sip:alice@b.example: b's alice answers (880 Hz).
#  3. hosts not served: REGISTER for alice@c.example gets 403; an INVITE for alice@c.example or for
#     alice@192.0.2.7 from a sender of no served domain gets 403 (not looked up, not relayed).
# Logs: $OUT/server.log, $OUT/N.NAME.out per softphone.
set -u
. "$(dirname "$0")/lib.sh"
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE"
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
trap 'for p in $BG_PIDS; do kill $p 2>/dev/null; done; wait 2>/dev/null' EXIT

P=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '# a.example\nalice:alice-a\nbob:bob-a\n' >"$OUT/a-users.txt"
cat >"$OUT/vhost.toml" <<EOT
listen = ["udp:127.0.0.1:$P"]
domain = "127.0.0.1"
trusted_sources = ["127.0.0.1/32"]
relay = "off"

[domains."a.example"]
users_file = "$OUT/a-users.txt"

[domains."b.example"]
[domains."b.example".users]
alice = "alice-b"
carol = "carol-b"
EOT
RUST_LOG=info "$RVOIP_SERVER" --config "$OUT/vhost.toml" >"$OUT/server.log" 2>&1 &
SERVER=$!; BG_PIDS="$BG_PIDS $SERVER"
for _ in $(seq 50); do python3 "$ROOT/tests/integration/options_probe.py" "127.0.0.1:$P" >/dev/null 2>&1 && break; sleep 0.1; done
python3 "$ROOT/tests/integration/options_probe.py" "127.0.0.1:$P" >/dev/null 2>&1 || fail "server did not start: $(tail -3 "$OUT/server.log")"

# vsp N NAME AOR PASSWORD [ARGS...]: a softphone for AOR through this server, in the background (PID in $SP)
vsp() {
  local n=$1 name=$2 aor=$3 pw=$4; shift 4
  timeout -k 5 60 "$SOFTPHONE" --listen 127.0.0.1:0 --account "$aor" --password "$pw" \
    --server "127.0.0.1:$P" "$@" >"$OUT/$n.$name.out" 2>&1 &
  SP=$!; BG_PIDS="$BG_PIDS $SP"
}

# ---- 1. same user name, two domains, two passwords ----
vsp 1 wrong sip:alice@b.example alice-a --timeout 5; W=$SP
vsp 1 A sip:alice@a.example alice-a --auto-answer --play tone:440 --expect-tone 660 --duration 2 --timeout 40; A=$SP
vsp 1 B sip:alice@b.example alice-b --auto-answer --play tone:880 --expect-tone 660 --duration 2 --timeout 40; B=$SP
sp_ready 1 A; sp_ready 1 B
wait $W; WRC=$?
[ "$WRC" != 0 ] || fail "step 1: alice@b.example registered with a.example's password"
grep -q 'Failed' "$OUT/1.wrong.out" || fail "step 1: no registration failure for alice@b.example with a's password: $(tail -2 "$OUT/1.wrong.out")"
grep -q 'Registered' "$OUT/1.wrong.out" && fail "step 1: alice@b.example registered with a.example's password"
echo "step 1: alice@a.example and alice@b.example registered with their own passwords; b with a's refused"

# ---- 2. a call to alice@a reaches a's alice only, to alice@b b's only ----
vsp 2 Ca sip:bob@a.example bob-a --call sip:alice@a.example --play tone:660 --expect-tone 440 --duration 2 --timeout 20; C=$SP
sp_result 2 Ca $C
sp_result 1 A $A
vsp 2 Cb sip:carol@b.example carol-b --call sip:alice@b.example --play tone:660 --expect-tone 880 --duration 2 --timeout 20; C=$SP
sp_result 2 Cb $C
sp_result 1 B $B
echo "step 2: sip:alice@a.example rang a's phone (440 Hz heard), sip:alice@b.example b's (880 Hz heard)"

# ---- 3. hosts not served ----
R=$(python3 - "$P" <<'PY'
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); s.settimeout(2)
me = "127.0.0.1:%d" % s.getsockname()[1]
def ask(n, method, ruri, frm, to):
    msg = (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKvh{n}\r\nMax-Forwards: 70\r\n"
           f"From: <{frm}>;tag=t{n}\r\nTo: <{to}>\r\nCall-ID: vhost{n}@test\r\nCSeq: 1 {method}\r\n"
           f"Contact: <sip:x@{me}>\r\nContent-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), ("127.0.0.1", port))
    while True:
        try:
            data = s.recv(65535).decode(errors="replace")
        except socket.timeout:
            return "none"
        status = data.split(" ", 2)[1] if data.startswith("SIP/2.0 ") else "?"
        if f"vhost{n}@test" in data and status != "100":
            return status
out = [ask(1, "REGISTER", "sip:c.example", "sip:alice@c.example", "sip:alice@c.example"),
       ask(2, "REGISTER", "sip:127.0.0.1", "sip:alice@c.example", "sip:alice@c.example"),
       ask(3, "INVITE", "sip:alice@c.example", "sip:x@198.51.100.1", "sip:alice@c.example"),
       ask(4, "INVITE", "sip:alice@192.0.2.7", "sip:x@198.51.100.1", "sip:alice@192.0.2.7")]
print(" ".join(out))
PY
)
[ "$R" = "403 403 403 403" ] || fail "step 3: foreign hosts: REGISTER c.example, REGISTER To c.example, INVITE c.example, INVITE 192.0.2.7 got '$R' (want 403 403 403 403)"
echo "step 3: REGISTER for c.example 403 (R-URI and To), INVITE for c.example and 192.0.2.7 from a stranger 403"
kill -0 "$SERVER" 2>/dev/null || fail "server died: $(tail -3 "$OUT/server.log")"
echo "vhost: alice@a.example and alice@b.example kept apart; foreign hosts not served"
