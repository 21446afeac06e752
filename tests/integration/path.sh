#!/usr/bin/env bash
# path: RFC 3327 Path between two rvoip-server nodes sharing one redis-server (issue 16). A NO_SERVER test.
#
# Layout (namespaces named rvpath<PID>-*, created here and deleted on exit; nothing leaves them):
#
#   ua1 10.0.1.2 --(lan 10.0.1.1) nat1 (wan 198.18.0.11) --- br0 in "pub" 198.18.0.1:
#                                                              node A udp:198.18.0.1:5060 (relay 30000-30999)
#                                                              node B udp:198.18.0.1:5070 (relay 31000-31999)
#                                                              redis-server 127.0.0.1:6391, caller carol
#
#   nat1 masquerades ua1 and lets in only packets of established flows (conntrack): after alice (ua1)
#   registers at A, only A's socket (198.18.0.1:5060) can reach her mapping; a packet from B's socket
#   (198.18.0.1:5070) matches no conntrack entry and is dropped by nat1. That is the "flow only A can reach".
#
# Every run: alice registers at A (--auto-answer, plays 1000 Hz, expects 440 Hz); once B knows her binding
# (an OPTIONS through B is no longer answered 480/404 at once), carol (public, registered at B) calls
# sip:alice@198.18.0.1 through B (plays 440 Hz, expects 1000 Hz). Both nodes use t1_ms = 100, so a silent
# branch ends after 6.4 s (Timer B). redis-server and the nodes are started afresh for each run.
#  1. nopath, record_path = false: B sends the INVITE straight to alice's NAT mapping, which drops it: the
#     call must FAIL with 408 (or 503; 480/404 would mean B did not know the binding), never connect, and
#     alice's binding in redis carries no Path ("p").
#  2. path, record_path unset (the default with store = "redis": on): A records its flow URI in the binding
#     ("p" in redis: <sip:TOKEN@198.18.0.1:5060;transport=udp;lr;ob>), B routes the INVITE to A with that
#     Route, A relays it down alice's flow: the call must connect, both phones hear each other (>= 90 % of
#     the energy of the last half at the expected tone), and carol's BYE after 4 s reaches alice through
#     B and A (alice ends with "remote hangup").
#  3. path-callee-bye: as 2, but alice hangs up after 3 s: her BYE goes A -> B -> carol ("remote hangup").
# Needs root (ip netns), iproute2, iptables (or nft), redis-server; installs them with apt-get when missing.
# Logs: $OUT/{a,b}-RUN.log, $OUT/redis.log, $OUT/RUN.{alice,carol}.out.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${ROOT:-$(cd "$HERE/../.." && pwd)}
OUT=${OUT:-$ROOT/tests/out/path}
mkdir -p "$OUT"
. "$HERE/lib.sh"
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
case ${TARGET:-rvoip} in
  rvoip) ;;
  *) echo "path: skipped for TARGET=$TARGET (this test runs its own rvoip-server nodes)"; exit 0 ;;
esac
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER"
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE"
[ "$(id -u)" = 0 ] || fail "needs root (network namespaces, iptables)"

need=
command -v ip >/dev/null || need="$need iproute2"
command -v iptables >/dev/null || command -v nft >/dev/null || need="$need iptables"
command -v redis-server >/dev/null || need="$need redis-server"
if [ -n "$need" ]; then
  echo "installing:$need"
  { timeout 300 apt-get update && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y $need; } \
    >"$OUT/apt.log" 2>&1 || fail "apt-get install$need failed (see $OUT/apt.log)"
fi

P=rvpath$$
PUB=$P-pub NAT1=$P-nat1 UA1=$P-ua1
NSS="$PUB $NAT1 $UA1"
SRV=198.18.0.1 NAT1_WAN=198.18.0.11 UA1_IP=10.0.1.2 RPORT=6391
PIDS=
cleanup() {
  local ns p
  for p in $PIDS; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for ns in $NSS; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  for p in $PIDS; do wait "$p" 2>/dev/null; done
  for ns in $NSS; do ip netns del "$ns" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# leftovers of an earlier run killed hard (its PID is gone)
for ns in $(ip netns list 2>/dev/null | grep -oE '^rvpath[0-9]+-(pub|nat1|ua1)\b'); do
  pid=${ns#rvpath}; pid=${pid%%-*}
  kill -0 "$pid" 2>/dev/null && continue
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
done

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
for ns in $NSS; do
  ip netns add "$ns" || fail "ip netns add $ns failed"
  ip -n "$ns" link set lo up
done
setup() {
  set -e
  ip -n "$PUB" link add br0 type bridge
  ip -n "$PUB" addr add "$SRV/24" dev br0
  ip -n "$PUB" link set br0 up
  ip -n "$PUB" link add p-nat1 type veth peer name wan netns "$NAT1"
  ip -n "$PUB" link set p-nat1 master br0 up
  ip -n "$NAT1" addr add "$NAT1_WAN/24" dev wan; ip -n "$NAT1" link set wan up
  ip -n "$NAT1" link add lan type veth peer name eth0 netns "$UA1"
  ip -n "$NAT1" addr add 10.0.1.1/24 dev lan; ip -n "$NAT1" link set lan up
  ip -n "$UA1" addr add "$UA1_IP/24" dev eth0; ip -n "$UA1" link set eth0 up
  ip -n "$UA1" route add default via 10.0.1.1
  nsx "$NAT1" sysctl -qw net.ipv4.ip_forward=1
  if command -v iptables >/dev/null; then
    nsx "$NAT1" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE
    nsx "$NAT1" iptables -A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    nsx "$NAT1" iptables -A FORWARD -i wan -o lan -j DROP
  else
    nsx "$NAT1" nft -f - <<'NFT'
table ip rvpath {
  chain post { type nat hook postrouting priority srcnat; oifname "wan" masquerade; }
  chain fwd { type filter hook forward priority filter; ct state established,related accept; iifname "wan" oifname "lan" drop; }
}
NFT
  fi
  set +e
}
( setup ) >"$OUT/setup.log" 2>&1 || fail "namespace setup failed: $(tail -1 "$OUT/setup.log")"

# --- redis and the nodes (all in pub) ---
printf 'alice:alice-pw\ncarol:carol-pw\n' >"$OUT/users.txt"
REDIS=
redis_start() {
  # (started with a plain `ip netns exec ... &`, never through a shell function, so that $! is redis itself)
  ip netns exec "$PUB" redis-server --port $RPORT --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --dir "$OUT" >>"$OUT/redis.log" 2>&1 &
  REDIS=$!; PIDS="$PIDS $REDIS"
  for _ in $(seq 50); do
    kill -0 "$REDIS" 2>/dev/null || fail "redis-server exited at start: $(tail -3 "$OUT/redis.log")"
    nsx "$PUB" redis-cli -p $RPORT ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  [ "$(nsx "$PUB" redis-cli -p $RPORT dbsize 2>/dev/null)" = 0 ] || fail "redis-server is not empty at start"
}
NODE_PIDS=
node() {  # node NAME PORT RELAY_PORTS RUN
  local log=$OUT/$1-$4.log
  ip netns exec "$PUB" timeout -k 2 120 env RUST_LOG="${RUST_LOG:-info}" "$RVOIP_SERVER" --config "$OUT/$4.toml" \
    --listen "udp:$SRV:$2" --users "$OUT/users.txt" --domain "$SRV" --store redis \
    --redis-url "redis://127.0.0.1:$RPORT/" --data-dir "$OUT/$1.data" --relay-ports "$3" >"$log" 2>&1 &
  NODE_PIDS="$NODE_PIDS $!"; PIDS="$PIDS $!"
  for _ in $(seq 100); do
    nsx "$PUB" python3 "$HERE/options_probe.py" "$SRV:$2" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "node $1 did not start: $(tail -3 "$log")"
}
stop_nodes() { local p; for p in $NODE_PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; NODE_PIDS=; }
# known_at PORT USER: the node on PORT knows USER's binding: an OPTIONS for USER is not answered 404/480
# within 0.5 s (an unknown user is answered at once; a known one is forwarded).
known_at() {
  nsx "$PUB" python3 - "$SRV" "$1" "$2" <<'PY'
import random, socket, sys
host, port, user = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(0.5)
p = s.getsockname()[1]; b = "z9hG4bK-known%d" % random.randint(0, 1 << 30)
ruri = "%s@%s:%d" % (user, host, port)
m = ("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\nMax-Forwards: 70\r\n"
     "From: <sip:probe@127.0.0.1>;tag=k1\r\nTo: <sip:%s>\r\nCall-ID: %s@known\r\nCSeq: 1 OPTIONS\r\n"
     "Content-Length: 0\r\n\r\n") % (ruri, p, b, ruri, b)
s.sendto(m.encode(), (host, port))
try:
    while True:
        d = s.recv(65535).decode("utf-8", "replace")
        if d.startswith("SIP/2.0 1"):
            continue
        sys.exit(1 if d[8:11] in ("404", "480") else 0)
except socket.timeout:
    sys.exit(0)
PY
}
tone_of() { grep -o 'tone check: [0-9.]* %' "$1" | tail -1 | grep -oE '[0-9.]+ %' || echo "no check"; }

RESULTS=()
run() {  # RUN EXPECT(fail|pass) RECORD_PATH_LINE ALICE_DURATION CAROL_DURATION HANGS_UP(carol|alice)
  local r=$1 expect=$2 adur=$4 cdur=$5 hup=$6 other apid crc arc i rec ended conn line
  printf 't1_ms = 100\n%s\n' "$3" >"$OUT/$r.toml"
  redis_start
  node a 5060 30000-30999 "$r"; node b 5070 31000-31999 "$r"
  rm -f "$OUT/$r.alice.out" "$OUT/$r.carol.out"
  ip netns exec "$UA1" timeout -k 2 40 "$SOFTPHONE" --account "sip:alice@$SRV" --password alice-pw \
    --server "$SRV:5060" --listen "$UA1_IP:5060" --auto-answer --play tone:1000 --expect-tone 440 \
    --duration "$adur" --timeout 30 >"$OUT/$r.alice.out" 2>&1 &
  apid=$!; PIDS="$PIDS $apid"
  for i in $(seq 50); do grep -q 'state: Registered' "$OUT/$r.alice.out" && break; sleep 0.1; done
  grep -q 'state: Registered' "$OUT/$r.alice.out" || fail "$r: alice did not register at A: $(tail -2 "$OUT/$r.alice.out")"
  for i in $(seq 50); do known_at 5070 alice && break; sleep 0.1; done
  known_at 5070 alice || fail "$r: B did not learn alice's binding from redis within 5 s"
  # (the key holds a NUL between AOR and contact: read the records server-side)
  rec=$(nsx "$PUB" redis-cli -p $RPORT --raw eval \
    "local r = {} for _, k in ipairs(redis.call('keys', 'rvoip:b:alice*')) do r[#r + 1] = redis.call('get', k) end return r" 0)
  [ "$(printf '%s\n' "$rec" | grep -c .)" = 1 ] || fail "$r: expected one binding of alice in redis: $rec"
  ip netns exec "$PUB" timeout -k 2 40 "$SOFTPHONE" --account "sip:carol@$SRV" --password carol-pw \
    --server "$SRV:5070" --listen "$SRV:5090" --call "sip:alice@$SRV" --play tone:440 --expect-tone 1000 \
    --duration "$cdur" --timeout 30 >"$OUT/$r.carol.out" 2>&1
  crc=$?
  for i in $(seq 60); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
  kill "$apid" 2>/dev/null; wait "$apid"; arc=$?
  stop_nodes
  kill "$REDIS" 2>/dev/null; wait "$REDIS" 2>/dev/null; REDIS=
  for i in $(seq 50); do nsx "$PUB" redis-cli -p $RPORT ping >/dev/null 2>&1 || break; sleep 0.1; done
  ended=$(grep -oE 'Ended \{ status: [0-9]+' "$OUT/$r.carol.out" | tail -1 | grep -oE '[0-9]+$')
  conn=no; grep -q 'state: Connected' "$OUT/$r.carol.out" && conn=yes
  line="$r: redis record of alice: $rec; carol connected=$conn, ended ${ended:-?}, exit $crc (heard 1000 Hz: $(tone_of "$OUT/$r.carol.out")); alice exit $arc (heard 440 Hz: $(tone_of "$OUT/$r.alice.out"))"
  echo "$line"
  case $expect in
    fail)
      case $rec in *'"p":'*) fail "$r: alice's binding carries a Path with record_path = false: $rec" ;; esac
      [ "$conn" = no ] || fail "$r: the call connected through B without Path (the NAT should have dropped B's INVITE)"
      # The call's end as the softphone prints it (its events in Debug form): 480/404 would mean B did not know
      # the binding, which proves nothing about Path.
      grep -qE 'Ended \{ status: (408|503)' "$OUT/$r.carol.out" \
        || fail "$r: the call failed, but not with 408/503 (did B know the binding?): $(tail -3 "$OUT/$r.carol.out" | tr '\n' ' ')"
      ;;
    pass)
      case $rec in *'"p":["<sip:'*"@$SRV:5060;transport=udp;lr;ob>"*) ;;
        *) fail "$r: alice's binding in redis carries no Path of node A: $rec" ;; esac
      [ "$conn" = yes ] || fail "$r: the call through B did not connect: $(tail -3 "$OUT/$r.carol.out" | tr '\n' ' ')"
      [ "$crc" = 0 ] && [ "$arc" = 0 ] || fail "$r: audio check failed (carol exit $crc, alice exit $arc)"
      # The BYE of the one who hangs up crossed both nodes (and A's flow to alice, or B's way to carol).
      if [ "$hup" = carol ]; then other=alice; else other=carol; fi
      grep -q 'reason: "remote hangup"' "$OUT/$r.$other.out" \
        || fail "$r: $hup hung up but $other saw no BYE: $(grep -o 'Ended .*' "$OUT/$r.$other.out")"
      ;;
  esac
  RESULTS+=("$r:ok")
}

run nopath fail 'record_path = false' 8 4 carol
run path pass '' 8 4 carol
run path-callee-bye pass '' 3 8 alice
echo "path: ${RESULTS[*]} (elapsed ${SECONDS}s)"
