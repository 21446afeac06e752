#!/usr/bin/env bash
# hostile: real attacks against an rvoip-server of this test's own (config $OUT/hostile.toml on
# 127.0.0.1:5070 udp+tcp: connection_idle_timeout_s = 5, message_timeout_s = 3,
# max_connections_per_source = 200, flood_ban_s = 20, other limits default), scripts in hostile/:
#  1. vias.py       300 Vias (one per line, and one comma-separated line) in OPTIONS, REGISTER and a
#                   malformed request: no reply larger than its request (no reflection amplification)
#  2. floodlimit.py 5000 OPTIONS from one source (127.0.0.30) at ~5000/s: at most 2 x flood_limit
#                   answered, none of the last 1000, the source dropped afterwards; 127.0.0.1 still served;
#                   (end of the test) after flood_ban_s the source is served again
#  3. conns.py      per-source connection limit (201st from one IP closed at once); bad Content-Length ->
#                   400 then close; Content-Length over max_message_bytes -> 513 then close; 3000 idle
#                   TCP connections (127.0.0.10-25) closed after ~5 s, 200 slowloris ones (127.0.0.26-27)
#                   closed ~3 s after their first byte, silent connections with a live registration kept;
#                   meanwhile a new client registers over TCP and UDP
#  4. flood.py      200,000 malformed/truncated/oversized/garbage datagrams from 127.0.0.2-9: a client at
#                   127.0.0.1 registers and gets OPTIONS 200 during and after; RSS growth < 10 %, and
#                   <= 2 x within 60 s
#  5. held.py       a second server (held.toml, 127.0.0.1:5071: max_forward_body_bytes = 65536,
#                   max_held_bytes = 32 MB): 2000 OPTIONS with 60 KB bodies to a registered contact that
#                   never answers: RSS grows less than the cap, the excess answered 503; and on the first server
#                   (default max_forward_body_bytes) a 60 KB body gets 513
# Figures (RSS, counts, durations) are printed; each step's last line is its verdict.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hostile/common.sh"
H=$HOSTILE_DIR
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 8000 ] \
  || fail "open-file limit $(ulimit -n) too low for 3200+ connections (ulimit -Hn is $(ulimit -Hn))"

CFG=$OUT/hostile.toml
cat >"$CFG" <<'EOF'
listen = ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]
domain = "127.0.0.1"
relay = "off"
max_bindings_per_aor = 300
flood_limit = 1000
flood_window_ms = 1000
flood_ban_s = 20
max_connections_per_source = 200
connection_idle_timeout_s = 5
message_timeout_s = 3
[users]
legit = "legit-pw"
slow = "slow-pw"
sink = "sink-pw"
EOF
hostile_start hostile "$CFG" || fail "could not start the test's rvoip-server (see $OUT/hostile-server.log)"
SPID=$HS_PID
echo "server pid $SPID, RSS $(rss_kb $SPID) kB, open-file limit $(ulimit -n)"

# step NAME TIMEOUT SCRIPT ARGS...: run, show its output; a failing step is recorded (its last line) and
# the next steps still run (all figures in one run); the test then fails with every reason on one line
FAILS=
SNAME=hostile
step() {
  local name=$1 to=$2; shift 2
  local t0=$SECONDS
  echo "--- $name"
  timeout -k 5 "$to" python3 "$@" >"$OUT/$name.out" 2>&1
  local rc=$?
  cat "$OUT/$name.out"
  echo "($name: rc=$rc, $((SECONDS - t0)) s, server RSS $(rss_kb $SPID) kB)"
  alive_or_fail "$SPID" "$SNAME" "$name"
  if [ $rc = 124 ]; then FAILS="$FAILS${FAILS:+ | }$name: timed out after $to s"
  elif [ $rc != 0 ]; then FAILS="$FAILS${FAILS:+ | }$name: $(tail -1 "$OUT/$name.out")"; fi
  return 0
}

step vias 60 "$H/vias.py" --src 127.0.0.1 --server 127.0.0.1:5070
step floodlimit 60 "$H/floodlimit.py" --src 127.0.0.30 --legit 127.0.0.1 --server 127.0.0.1:5070 \
  --count 5000 --limit 1000
step conns 150 "$H/conns.py" --server 127.0.0.1:5070 --pid "$SPID" --idle 5 --msg 3 --per-source 200 \
  --idle-n 3000 --idle-sources 127.0.0.10-25 --slow-n 200 --slow-sources 127.0.0.26-27
step flood 120 "$H/flood.py" --server 127.0.0.1:5070 --pid "$SPID" --count 200000 --max-seconds 30 \
  --sources 127.0.0.2-9 --legit 127.0.0.1 --max-growth 0.10 --settle 60
step bodycap 30 "$H/held.py" --server 127.0.0.1:5070 --body-cap-check --body 61440 --sources 127.0.0.40-47
step unbanned 60 "$H/floodlimit.py" --src 127.0.0.30 --server 127.0.0.1:5070 --check-unbanned --wait 40

HCFG=$OUT/held.toml
cat >"$HCFG" <<'EOF'
listen = ["udp:127.0.0.1:5071"]
domain = "127.0.0.1"
relay = "off"
max_forward_body_bytes = 65536
max_held_bytes = 33554432
[users]
sink = "sink-pw"
EOF
hostile_start held "$HCFG" 5071 || fail "could not start the second server (see $OUT/held-server.log)"
HPID=$HS_PID
echo "held server pid $HPID, RSS $(rss_kb $HPID) kB"
SPID_MAIN=$SPID; SPID=$HPID; SNAME=held
step held 90 "$H/held.py" --server 127.0.0.1:5071 --pid "$HPID" --count 2000 --body 61440 \
  --held-cap 33554432 --sources 127.0.0.40-47
SPID=$SPID_MAIN; SNAME=hostile
hostile_probe 5070 || fail "the first server does not answer OPTIONS at the end"
echo "server RSS at the end: $(rss_kb $SPID) kB (held server $(rss_kb $HPID) kB)"
[ -z "$FAILS" ] || fail "$FAILS"
echo "hostile: all attacks contained"
