#!/usr/bin/env bash
# nat: SDK softphones behind NAT routers, in network namespaces, call through rvoip-server and must hear
# each other; the server's media relay (`--relay always|nat|off`) is what makes that work.
#
# Layout (every namespace is created here, named rvnat<PID>-*, and deleted on exit; nothing is routed
# out of them, no packet leaves this test's namespaces):
#
#   ua1 10.0.1.2 --(lan 10.0.1.1) nat1 (wan 198.18.0.11) --+
#   ua2 10.0.2.2 --(lan 10.0.2.1) nat2 (wan 198.18.0.12) --+-- br0 in "pub": rvoip-server 198.18.0.1
#                                     pubua 198.18.0.20 ---+
#
#   The public segment is 198.18.0.0/24 (RFC 2544 benchmarking range; not private in the RFC 1918 sense,
#   so the server treats it as public). nat1/nat2 masquerade everything leaving their wan leg (iptables,
#   or nftables when only nft is there) and forward wan->lan only for established flows; they have no
#   route to the other LAN, so ua1 and ua2 reach each other only through the server. The phones' default
#   route is their router; pubua and the server have no default route at all. No conntrack helper is
#   attached (no SIP ALG: kernels >= 6.0 never assign one automatically), so the NATs do not touch SIP.
#
# Accounts (server users file): alice (ua1), bob (ua2), carol (pubua), password <user>-pw.
# Phones: target/release/examples/softphone (SOFTPHONE=...) with --listen <own private/public IP>:5060,
# so Contact, Via and SDP carry the phone's own (private) address. Callee: --auto-answer --play
# tone:1000 --expect-tone 440; caller: --call ... --play tone:440 --expect-tone 1000 --duration 4.
# --expect-tone makes a softphone exit 1 unless >= 90 % of the received energy is at that tone.
#
# Layouts: 1 = alice (ua1, behind nat1) calls carol (pubua, public)
#          2 = alice (ua1, behind nat1) calls bob (ua2, behind nat2)
# Modes (server restarted per mode with --relay MODE):
#   always: both layouts must pass (both phones exit 0), and captures in pub must show > 100 UDP
#           packets to/from 198.18.0.1 on its relay ports (RELAY_PORTS, default 30000-39999) and none
#           between nat1's WAN address and anything but the server (no media bypassing the relay).
#   nat:    the same as always (in both layouts a party is behind a NAT, so the relay must anchor).
#   off:    no packet may touch the relay ports, and layout 2 must FAIL (at least one phone exits
#           non-zero: the audio cannot cross two NATs without a relay; this proves the test can fail).
#           Layout 1 is run and reported but its audio is not asserted by default: the public phone
#           latches onto nat1's address (symmetric RTP, RFC 4961) and both sides hear each other
#           without a relay (measured: both 99.99/100 %, ~400 packets direct between nat1 and pubua).
#           OFF_LAYOUT1=fail|pass asserts an outcome.
#
# Environment:
#   RVOIP_SERVER=path        server binary (default target/release/rvoip-server)
#   SOFTPHONE=path           softphone (default target/release/examples/softphone)
#   RELAY_FLAG_SUPPORTED=0   do not pass --relay (a server without the relay): every mode then runs the
#                            plain server, so "always"/"nat" are expected to FAIL -- the negative control
#                            against a binary that predates the relay. Default 1 (pass --relay MODE).
#   TARGET=kamailio|external the test is skipped (exit 0): it always starts its own rvoip-server.
#   MODES="always nat off"   which modes to run;  LAYOUTS="1 2" which layouts to run.
#   CAPTURE=tcpdump|tshark   capture tool (default tcpdump when installed, else tshark).
# Needs root (ip netns), iproute2, iptables (or nft), tcpdump (or tshark); installs iproute2, iptables
# and tcpdump with apt-get when missing and root.
# Prints one summary line per layout/mode; the failure reason is the LAST line (exit 1).
# Logs: $OUT (default tests/out/nat): server-MODE.log, L<layout>-MODE-{caller,callee}.out, *.pcap.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${ROOT:-$(cd "$HERE/../.." && pwd)}
OUT=${OUT:-$ROOT/tests/out/nat}
mkdir -p "$OUT"
. "$HERE/lib.sh"
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
SOFTPHONE=${SOFTPHONE:-$ROOT/target/release/examples/softphone}
RELAY_FLAG_SUPPORTED=${RELAY_FLAG_SUPPORTED:-1}
MODES=${MODES:-always nat off}
LAYOUTS=${LAYOUTS:-1 2}
OFF_LAYOUT1=${OFF_LAYOUT1:-any}
RELAY_PORTS=${RELAY_PORTS:-30000-39999}   # the server's default --relay-ports
case ${TARGET:-rvoip} in
  rvoip) ;;
  *) echo "nat: skipped for TARGET=$TARGET (this test runs its own rvoip-server in a namespace)"; exit 0 ;;
esac
[ -x "$RVOIP_SERVER" ] || fail "rvoip-server not found at $RVOIP_SERVER (cargo build --release --bin rvoip-server)"
[ -x "$SOFTPHONE" ] || fail "softphone not found at $SOFTPHONE (cargo build --release -p rvoip-sdk --features opus --example softphone)"
[ "$(id -u)" = 0 ] || fail "needs root (network namespaces, iptables)"

# --- tools: install what is missing (one apt-get update) ---------------------------------------------
need=
command -v ip >/dev/null || need="$need iproute2"
command -v ss >/dev/null || need="$need iproute2"
command -v iptables >/dev/null || command -v nft >/dev/null || need="$need iptables"
command -v tcpdump >/dev/null || command -v tshark >/dev/null || need="$need tcpdump"
if [ -n "$need" ]; then
  echo "installing:$need"
  { timeout 300 apt-get update && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y $need; } \
    >"$OUT/apt.log" 2>&1 || fail "apt-get install$need failed (see $OUT/apt.log)"
fi

# --- namespaces -----------------------------------------------------------------------------------------
P=rvnat$$
PUB=$P-pub NAT1=$P-nat1 NAT2=$P-nat2 UA1=$P-ua1 UA2=$P-ua2 PUBUA=$P-pubua
NSS="$PUB $NAT1 $NAT2 $UA1 $UA2 $PUBUA"
SRV=198.18.0.1 NAT1_WAN=198.18.0.11 NAT2_WAN=198.18.0.12 PUBUA_IP=198.18.0.20
UA1_IP=10.0.1.2 UA2_IP=10.0.2.2
PIDS=     # background processes started here (server, callee, captures)

cleanup() {
  local ns p
  for p in $PIDS; do kill "$p" 2>/dev/null; done
  sleep 0.3
  # anything still running inside our namespaces was started by this script
  for ns in $NSS; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  for p in $PIDS; do wait "$p" 2>/dev/null; done
  for ns in $NSS; do ip netns del "$ns" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# leftovers of an earlier run of this test that was killed hard (its PID is gone)
for ns in $(ip netns list 2>/dev/null | grep -oE '^rvnat[0-9]+-(pub|nat1|nat2|ua1|ua2|pubua)\b'); do
  pid=${ns#rvnat}; pid=${pid%%-*}
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
  # a veth from the bridge in pub to IF in NS
  ip -n "$PUB" link add p-nat1 type veth peer name wan netns "$NAT1"
  ip -n "$PUB" link add p-nat2 type veth peer name wan netns "$NAT2"
  ip -n "$PUB" link add p-pubua type veth peer name eth0 netns "$PUBUA"
  for l in p-nat1 p-nat2 p-pubua; do ip -n "$PUB" link set "$l" master br0 up; done
  ip -n "$NAT1" addr add "$NAT1_WAN/24" dev wan; ip -n "$NAT1" link set wan up
  ip -n "$NAT2" addr add "$NAT2_WAN/24" dev wan; ip -n "$NAT2" link set wan up
  ip -n "$PUBUA" addr add "$PUBUA_IP/24" dev eth0; ip -n "$PUBUA" link set eth0 up
  # LANs
  ip -n "$NAT1" link add lan type veth peer name eth0 netns "$UA1"
  ip -n "$NAT2" link add lan type veth peer name eth0 netns "$UA2"
  ip -n "$NAT1" addr add 10.0.1.1/24 dev lan; ip -n "$NAT1" link set lan up
  ip -n "$NAT2" addr add 10.0.2.1/24 dev lan; ip -n "$NAT2" link set lan up
  ip -n "$UA1" addr add "$UA1_IP/24" dev eth0; ip -n "$UA1" link set eth0 up
  ip -n "$UA2" addr add "$UA2_IP/24" dev eth0; ip -n "$UA2" link set eth0 up
  ip -n "$UA1" route add default via 10.0.1.1
  ip -n "$UA2" route add default via 10.0.2.1
  for r in "$NAT1" "$NAT2"; do
    nsx "$r" sysctl -qw net.ipv4.ip_forward=1
    if command -v iptables >/dev/null; then
      nsx "$r" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE
      nsx "$r" iptables -A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
      nsx "$r" iptables -A FORWARD -i wan -o lan -j DROP
    else
      nsx "$r" nft -f - <<'NFT'
table ip rvnat {
  chain post { type nat hook postrouting priority srcnat; oifname "wan" masquerade; }
  chain fwd { type filter hook forward priority filter; ct state established,related accept; iifname "wan" oifname "lan" drop; }
}
NFT
    fi
  done
  set +e
}
( setup ) >"$OUT/setup.log" 2>&1 || fail "namespace setup failed: $(tail -1 "$OUT/setup.log")"

# --- captures: tcpdump, else tshark; BPF filter at capture time, so the count is the packets stored ---
CAPTURE=${CAPTURE:-$(command -v tcpdump >/dev/null && echo tcpdump || echo tshark)}
command -v "$CAPTURE" >/dev/null || fail "capture tool $CAPTURE not found"
CAP_PID=
cap_start() {  # NS IF FILTER FILE
  local ns=$1 ifc=$2 filter=$3 file=$4 i
  rm -f "$file" "$file.err"
  if [ "$CAPTURE" = tcpdump ]; then
    ip netns exec "$ns" timeout -k 2 60 tcpdump -Z root -n -U --immediate-mode -i "$ifc" -w "$file" "$filter" 2>"$file.err" &
  else
    ip netns exec "$ns" timeout -k 2 60 tshark -q -i "$ifc" -f "$filter" -w "$file" 2>"$file.err" &
  fi
  CAP_PID=$!; PIDS="$PIDS $CAP_PID"
  for i in $(seq 50); do grep -qE 'listening on|Capturing on' "$file.err" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
cap_stop() {  # PID (tshark/dumpcap hand packets over in blocks of up to 1 s: give them time)
  [ "$CAPTURE" = tcpdump ] || sleep 1.1
  kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null
}
cap_count() {  # FILE
  [ -s "$1" ] || { echo 0; return; }
  if [ "$CAPTURE" = tcpdump ]; then tcpdump -n -r "$1" 2>/dev/null | wc -l
  else tshark -n -r "$1" 2>/dev/null | wc -l; fi
}

# --- plumbing checks: ua1 reaches the server and the server sees nat1's address; the LANs are isolated ---
cap_start "$PUB" br0 "udp port 9999" "$OUT/plumbing.pcap" || fail "capture in pub did not start: $(tail -1 "$OUT/plumbing.pcap.err")"
P1=$CAP_PID
nsx "$UA1" timeout 3 bash -c "echo ua1 >/dev/udp/$SRV/9999" || fail "ua1 cannot send to the server $SRV (no route through nat1?)"
nsx "$UA2" timeout 3 bash -c "echo ua2 >/dev/udp/$SRV/9999" || fail "ua2 cannot send to the server $SRV (no route through nat2?)"
cap_start "$UA2" eth0 "udp port 9999" "$OUT/isolation.pcap" || fail "capture in ua2 did not start"
P2=$CAP_PID
nsx "$UA1" timeout 3 bash -c "echo x >/dev/udp/$UA2_IP/9999" 2>/dev/null   # must die at nat1 (no route)
if nsx "$PUBUA" timeout 3 bash -c "echo x >/dev/udp/$UA1_IP/9999" 2>/dev/null; then
  fail "pubua has a route to ua1's private address $UA1_IP"
fi
sleep 0.5
cap_stop "$P1"; cap_stop "$P2"
SEEN=$("$CAPTURE" -n -r "$OUT/plumbing.pcap" 2>/dev/null)
echo "$SEEN" | grep -q "$NAT1_WAN" || fail "server did not see ua1's datagram from nat1's address $NAT1_WAN: $(echo "$SEEN" | tr '\n' ' ')"
echo "$SEEN" | grep -q "$NAT2_WAN" || fail "server did not see ua2's datagram from nat2's address $NAT2_WAN"
echo "$SEEN" | grep -qE "10\.0\.[12]\.2" && fail "a private address reached the public segment: $SEEN"
[ "$(cap_count "$OUT/isolation.pcap")" = 0 ] || fail "ua1's datagram to $UA2_IP reached ua2 without NAT"
echo "plumbing: ua1 -> $SRV arrives from $NAT1_WAN, ua2 -> $SRV from $NAT2_WAN; ua1 -/-> $UA2_IP, pubua -/-> $UA1_IP"

# --- server ---------------------------------------------------------------------------------------------
printf 'alice:alice-pw\nbob:bob-pw\ncarol:carol-pw\n' >"$OUT/users.txt"
# wildcard sockets: the address to write in Via/Record-Route (this namespace has no default route)
# store = "memory": the framework's own server (127.0.0.1:5060) holds this test's data directory
printf 'advertise = "%s"\nstore = "memory"\n' "$SRV" >"$OUT/server.toml"
SERVER_PID=
start_server() {  # MODE
  local mode=$1 log=$OUT/server-$1.log i relay=()
  [ "$RELAY_FLAG_SUPPORTED" = 0 ] || relay=(--relay "$mode")
  for i in $(seq 30); do nsx "$PUB" ss -lun 2>/dev/null | grep -q ':5060 ' || break; sleep 0.1; done
  nsx "$PUB" ss -lun 2>/dev/null | grep -q ':5060 ' && fail "udp 5060 in $PUB still bound before starting the $mode server"
  ip netns exec "$PUB" timeout -k 2 120 env RUST_LOG="${RUST_LOG:-info}" "$RVOIP_SERVER" --config "$OUT/server.toml" \
    --listen udp:0.0.0.0:5060 --listen tcp:0.0.0.0:5060 --domain "$SRV" --users "$OUT/users.txt" \
    "${relay[@]}" >"$log" 2>&1 &
  SERVER_PID=$!; PIDS="$PIDS $SERVER_PID"
  for i in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || { wait "$SERVER_PID"
      fail "server (${relay[*]:-no --relay}) exited $? at start: $(grep -v '^$' "$log" | tail -1)$([ "$RELAY_FLAG_SUPPORTED" = 0 ] || echo " (RELAY_FLAG_SUPPORTED=0 runs a server without --relay)")"; }
    nsx "$PUB" ss -lun 2>/dev/null | grep -q ':5060 ' && return 0
    sleep 0.1
  done
  fail "server did not bind udp 5060 in $PUB within 5 s"
}
stop_server() {
  [ -n "$SERVER_PID" ] || return
  kill "$SERVER_PID" 2>/dev/null
  for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=
}

# --- one call -----------------------------------------------------------------------------------------
# (background processes are started with a plain `ip netns exec ... &`, never through a shell function,
# so that $! is the process itself and can be killed)
phone_args() {  # USER IP -> PA: the account options of a phone
  PA=(--account "sip:$1@$SRV" --password "$1-pw" --server "$SRV:5060" --listen "$2:5060")
}
tone_of() {  # OUTFILE -> "97.3 %" | "only N samples" | "no check"
  local l
  l=$(grep -o 'tone check: .*' "$1" | tail -1)
  case $l in
    *' % of'*) echo "$l" | grep -oE '[0-9.]+ %' | head -1 ;;
    *only*) echo "$l" | grep -oE 'only [0-9]+ samples' ;;
    *) echo "no check" ;;
  esac
}
# the RTP peer from the SDP (MediaStarted); the softphone may latch onto the packets' source later
sdp_peer_of() { grep -o 'MediaStarted .*' "$1" | grep -oE 'remote: [0-9.]+:[0-9]+' | head -1 | cut -d' ' -f2 | grep . || echo "-"; }
rx_of() { grep -oE 'statistics: codec .* rx [0-9]+ pkts' "$1" | tail -1 | grep -oE '[0-9]+ pkts$' | cut -d' ' -f1 | grep . || echo "-"; }

FAILS=()
RESULTS=()
run_call() {  # LAYOUT MODE CALLER_NS CALLER CALLER_IP CALLEE_NS CALLEE CALLEE_IP EXPECT(pass|fail|any)
  local lay=$1 mode=$2 cns=$3 cu=$4 cip=$5 ens=$6 eu=$7 eip=$8 expect=$9
  local tag=L$lay-$mode co eo epid crc erc i relay=- direct=- rp dp reg conn verdict desc
  co=$OUT/$tag-caller.out eo=$OUT/$tag-callee.out
  desc="layout $lay $cu@$cip -> $eu@$eip, relay=$mode$([ "$RELAY_FLAG_SUPPORTED" = 0 ] && echo ' (flag not passed)')"
  rm -f "$co" "$eo"   # (a stale file would satisfy the registration wait below)
  phone_args "$eu" "$eip"
  ip netns exec "$ens" timeout -k 2 30 "$SOFTPHONE" "${PA[@]}" --auto-answer --play tone:1000 --expect-tone 440 --duration 8 --timeout 15 >"$eo" 2>&1 &
  epid=$!; PIDS="$PIDS $epid"
  for i in $(seq 50); do
    grep -q 'state: Registered' "$eo" && break
    kill -0 "$epid" 2>/dev/null || break
    sleep 0.1
  done
  reg=yes; grep -q 'state: Registered' "$eo" || reg=no
  cap_start "$PUB" br0 "udp and ((dst host $SRV and dst portrange $RELAY_PORTS) or (src host $SRV and src portrange $RELAY_PORTS))" \
    "$OUT/$tag-relay.pcap" && rp=$CAP_PID || rp=
  cap_start "$PUB" p-nat1 "udp and not host $SRV" "$OUT/$tag-direct.pcap" && dp=$CAP_PID || dp=
  phone_args "$cu" "$cip"
  ip netns exec "$cns" timeout -k 2 30 "$SOFTPHONE" "${PA[@]}" --call "sip:$eu@$SRV" --play tone:440 --expect-tone 1000 --duration 4 --timeout 15 >"$co" 2>&1
  crc=$?
  # the callee ends on the caller's BYE (or after its own --duration 8)
  for i in $(seq 60); do kill -0 "$epid" 2>/dev/null || break; sleep 0.1; done
  kill "$epid" 2>/dev/null; wait "$epid"; erc=$?
  [ -n "$rp" ] && { cap_stop "$rp"; relay=$(cap_count "$OUT/$tag-relay.pcap"); }
  [ -n "$dp" ] && { cap_stop "$dp"; direct=$(cap_count "$OUT/$tag-direct.pcap"); }
  conn=no; grep -q 'state: Connected' "$co" && conn=yes
  local line="$desc: callee registered=$reg, connected=$conn; caller exit $crc (heard 1000 Hz: $(tone_of "$co"), rx $(rx_of "$co") pkts, SDP peer $(sdp_peer_of "$co")); callee exit $erc (heard 440 Hz: $(tone_of "$eo"), rx $(rx_of "$eo") pkts, SDP peer $(sdp_peer_of "$eo")); capture: $relay pkts on relay ports, $direct direct from nat1"
  local why=()
  case $expect in
    pass) [ "$crc" = 0 ] && [ "$erc" = 0 ] || why+=("expected both phones to hear the tone") ;;
    fail) [ "$crc" = 0 ] && [ "$erc" = 0 ] && why+=("expected the audio not to arrive without a relay, but both phones heard it") ;;
  esac
  [ "$relay" = - ] && why+=("the relay-port capture in pub did not start")
  [ "$direct" = - ] && why+=("the capture on p-nat1 did not start")
  case $mode in
    always|nat)  # every layout has a party behind a NAT: "nat" anchors it as well as "always"
      if [ "$relay" != - ] && [ "$relay" -le 100 ]; then why+=("only $relay packets on the server's relay ports"); fi
      if [ "$direct" != - ] && [ "$direct" != 0 ]; then why+=("$direct packets between nat1 and a phone bypass the relay"); fi ;;
    off)  # "off" means no anchoring at all: nothing may touch the server's relay ports
      if [ "$relay" != - ] && [ "$relay" != 0 ]; then why+=("$relay packets on the server's relay ports with --relay off"); fi ;;
  esac
  if [ ${#why[@]} -gt 0 ]; then
    verdict="FAIL ($(IFS=';'; echo "${why[*]}" | sed 's/;/; /g'))"
    FAILS+=("$tag (${verdict#FAIL (}")
  elif [ "$expect" = any ]; then verdict="ok (audio reported, not asserted)"
  else verdict=ok; fi
  echo "$line -> $verdict"
  RESULTS+=("$tag:${verdict%% *}")
}

for mode in $MODES; do
  case $mode in always|nat|off) ;; *) fail "unknown mode $mode (MODES: always nat off)" ;; esac
  start_server "$mode"
  for lay in $LAYOUTS; do
    if [ "$mode" = off ]; then
      if [ "$lay" = 1 ]; then expect=$OFF_LAYOUT1; else expect=fail; fi
    else expect=pass; fi
    case $lay in
      1) run_call 1 "$mode" "$UA1" alice "$UA1_IP" "$PUBUA" carol "$PUBUA_IP" "$expect" ;;
      2) run_call 2 "$mode" "$UA1" alice "$UA1_IP" "$UA2" bob "$UA2_IP" "$expect" ;;
      *) fail "unknown layout $lay (LAYOUTS: 1 2)" ;;
    esac
  done
  stop_server
done

echo "elapsed ${SECONDS}s"
[ ${#FAILS[@]} = 0 ] || fail "nat: ${#FAILS[@]} of ${#RESULTS[@]} runs failed: ${FAILS[*]}"
echo "nat: all ${#RESULTS[@]} runs as expected (${RESULTS[*]})"
