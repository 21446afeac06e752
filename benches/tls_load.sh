#!/usr/bin/env bash
# SIP over TLS load benchmark (issue 11): rvoip-server vs Kamailio 5.6 with its tls module, in the
# same invocation (shared, noisy machines: only the ratios are meaningful).
#
# Both servers run on 127.0.0.1 (TLS 5061, UDP 5060), one after the other, never at the same time:
#   rvoip:    target/release/rvoip-server --relay off --lax-auth-user --listen tls:127.0.0.1:5061
#             --listen udp:127.0.0.1:5060 --tls-cert cert.pem --tls-key key.pem --users ... --domain 127.0.0.1
#             (INVITE auth on, as by default; SSL_CERT_FILE=the bench CA, so that its TLS client
#             verifies the SIPp UAS, which registers as "uas" with Contact 127.0.0.1:5070;transport=tls)
#   kamailio: kamailio -f benches/tls/kamailio-tls.cfg -DD -E -m 1024 -M 16 -A WITH_LAX_AUTHUSER -A WITH_INVITE_AUTH
#             (../shared/peers/kamailio.cfg plus the tls module; 4 UDP workers and ONE TCP/TLS worker:
#             Kamailio 5.6.3 + OpenSSL 3.0 corrupts shared memory and aborts with two workers doing
#             handshakes at once (see the cfg); KAM_TLS_WORKERS=2 runs two, the idle client then opens
#             its connections one at a time; user "uas" routed statically to sip:127.0.0.1:5070;transport=tls)
# Both get the same certificate and key (OUTDIR/pki: a bench CA and a leaf for IP 127.0.0.1,
# RSA 2048 by default, KEY_TYPE=ec for P-256), and so does SIPp (-tls_cert/-tls_key).
#
# Figures per server:
#   1. memory per idle TLS connection, on a fresh server: benches/tls/idle_tls.py opens IDLE_STEPS
#      connections (1000, then 5000 in all; IDLE_CONCURRENCY handshakes at a time), each with a TLS
#      handshake and a REGISTER with digest for its own AOR (user0000...), and holds them open and silent; memory (rvoip: RSS of its one
#      process; kamailio: PSS summed over all its processes, shared memory counted once) is read
#      IDLE_SETTLE s after each step: (memory with N - memory before) / N
#   2. CPU-seconds per 1000 operations at fixed rates, FIXED_SECS s each, from /proc/PID/stat
#      utime+stime (kamailio: all processes summed), SIPp over TLS, in ROUNDS rounds (3) that
#      alternate the servers (each round on a fresh server); the table shows the median per server
#      and the ratio of the medians, and each round's own ratio below it:
#        REGISTER+digest -t l1 (one connection) at REG_L1_RATE/s
#        REGISTER+digest -t ln (one new connection, so one full handshake, per registration) at REG_LN_RATE/s
#        proxied calls -t l1 (INVITE -> 407 -> INVITE with credentials -> 200 -> ACK -> BYE; the
#        proxy reaches the SIPp UAS over TLS too) at CALL_L1_RATE/s
#      Every run reports its failed calls; a figure whose run had failures, or after which the server
#      was gone, is marked in the table.
#   3. LADDER=1: before the fixed-rate runs, a ladder per workload (LADDER_SECS s per rung, stops at
#      the first rung with failures) to find the rates both servers sustain with 0 failures; the
#      fixed rates default to about a third of what both sustain or less (see BENCHMARKS.md).
# Everything is bounded (-m, -timeout, timeout(1), the idle client's deadline), killed on exit
# (trap), and goes only to 127.0.0.1. About 4 minutes with the defaults (6 with LADDER=1).
#
# SIPp with TLS: Debian bookworm's sip-tester (3.6.1) is built without TLS, and its source archive
# (apt-get source sip-tester) is not served by the Debian mirror reachable here (the .dsc is, the
# .orig.tar.gz answers 404). trixie's sip-tester 3.7.3 has TLS through wolfSSL, but its TLS client
# does not work (SSL_write fails after the handshake: "Unable to send TLS message"). Debian sid's
# sip-tester 3.8.0 is built with OpenSSL and works. So, unless SIPP_TLS names a TLS-capable sipp (or
# the system's sipp has TLS), this script downloads sid's sip-tester and the libraries it needs
# (libc6, libstdc++6, libssl3t64, ...) with apt-get download, using a private apt state under
# target/sipp-tls/apt (the system's sources and installed packages are not touched), unpacks them
# under target/sipp-tls/root, and runs that sipp through the unpacked dynamic loader
# (target/sipp-tls/sipp is the wrapper). Later runs reuse it. SIPP_SUITE=... picks another suite.
#
# Usage: benches/tls_load.sh   (env: SERVERS="rvoip kamailio", OUTDIR, RVOIP_SERVER, SIPP_TLS, SIPP_SUITE,
#                               KEY_TYPE=rsa|ec, REG_L1_RATE, REG_LN_RATE, CALL_L1_RATE, FIXED_SECS, ROUNDS,
#                               IDLE_STEPS, IDLE_SETTLE, IDLE_CONCURRENCY, KAM_TLS_WORKERS=1|2, LADDER=1, LADDER_RATES_*, LADDER_SECS, RVOIP_NETNS=1)
# Needs: kamailio + kamailio-tls-modules, openssl, python3, bc, iproute2 (ss), apt-get + dpkg-deb
# (for SIPp); root for apt-get when a package is missing.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=$ROOT/benches/$(basename "$0")
SC=$ROOT/tests/scenarios
TLSDIR=$ROOT/benches/tls
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
SERVERS=${SERVERS:-"rvoip kamailio"}
OUTDIR=${OUTDIR:-$ROOT/target/bench-tls}
KEY_TYPE=${KEY_TYPE:-rsa}
REG_L1_RATE=${REG_L1_RATE:-1000}
REG_LN_RATE=${REG_LN_RATE:-200}
CALL_L1_RATE=${CALL_L1_RATE:-500}
FIXED_SECS=${FIXED_SECS:-10}
ROUNDS=${ROUNDS:-3}
IDLE_STEPS=${IDLE_STEPS:-1000,5000}
IDLE_SETTLE=${IDLE_SETTLE:-3}
KAM_TLS_WORKERS=${KAM_TLS_WORKERS:-1}
IDLE_CONCURRENCY=${IDLE_CONCURRENCY:-$([ "$KAM_TLS_WORKERS" = 1 ] && echo 8 || echo 1)}
LADDER=${LADDER:-0}
LADDER_SECS=${LADDER_SECS:-5}
LADDER_RATES_REG_L1=${LADDER_RATES_REG_L1:-"500 1000 2000 3000"}
LADDER_RATES_REG_LN=${LADDER_RATES_REG_LN:-"100 200 400 800"}
LADDER_RATES_CALL_L1=${LADDER_RATES_CALL_L1:-"250 500 1000 1500"}
SIPP_SUITE=${SIPP_SUITE:-sid}
KAM_RUN=/tmp/rvoip-tls-bench/kam   # must match RUNDIR in benches/tls/kamailio-tls.cfg
TCK=$(getconf CLK_TCK)
mkdir -p "$OUTDIR" "$KAM_RUN"; cd "$OUTDIR" || exit 1

# 5000 idle connections + SIPp -t ln: raise the soft fd limit (inherited by the servers and SIPp)
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ] && { echo "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); need >= 12000"; exit 2; }
MAXSOCK=10000

need_pkg() {  # need_pkg COMMAND-OR-FILE PACKAGE
  { command -v "$1" >/dev/null || [ -e "$1" ]; } && return 0
  if [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null 2>&1 || { echo "apt-get install $2 failed"; exit 2; }
  else echo "missing $2 (apt-get install -y $2)"; exit 2; fi
}
for t in "openssl openssl" "python3 python3" "bc bc" "ss iproute2" "dpkg-deb dpkg"; do need_pkg $t; done
if [[ " $SERVERS " == *" kamailio "* ]]; then
  need_pkg kamailio kamailio
  need_pkg /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so kamailio-tls-modules
fi
[[ " $SERVERS " == *" rvoip "* ]] && [ ! -x "$RVOIP_SERVER" ] && { echo "no $RVOIP_SERVER (cargo build --release -p rvoip-sdk --features opus --bin rvoip-server)"; exit 2; }

# ---- a SIPp with TLS -------------------------------------------------------------------------
sipp_has_tls() { "$@" -v 2>&1 | grep -q -- '-TLS'; }
SIPP=()
if [ -n "${SIPP_TLS:-}" ]; then SIPP=("$SIPP_TLS")
elif command -v sipp >/dev/null && sipp_has_tls sipp; then SIPP=(sipp)
else
  SDIR=$ROOT/target/sipp-tls
  if ! { [ -x "$SDIR/sipp" ] && sipp_has_tls "$SDIR/sipp"; }; then
    echo "fetching a TLS-capable SIPp (Debian $SIPP_SUITE sip-tester) into $SDIR ..."
    command -v apt-get >/dev/null || { echo "no apt-get: set SIPP_TLS to a sipp built with TLS"; exit 2; }
    rm -rf "$SDIR/apt" "$SDIR/root" "$SDIR/debs"
    mkdir -p "$SDIR/apt/lists/partial" "$SDIR/apt/cache/archives/partial" "$SDIR/debs" "$SDIR/root"
    KR=/usr/share/keyrings/debian-archive-keyring.gpg
    echo "deb [signed-by=$KR] http://deb.debian.org/debian $SIPP_SUITE main" >"$SDIR/apt/sources.list"
    APTO=(-o "Dir::Etc::SourceList=$SDIR/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$SDIR/apt/lists" -o "Dir::Cache=$SDIR/apt/cache" -o Dir::State::status=/dev/null
          -o APT::Architecture=amd64 -o APT::Architectures=amd64)
    apt-get "${APTO[@]}" update >"$SDIR/apt/update.log" 2>&1 || { echo "apt-get update ($SIPP_SUITE) failed: $(tail -2 "$SDIR/apt/update.log")"; exit 2; }
    # sip-tester and the libraries it links, at that suite's versions (libpcap's libdbus and the
    # like come from the system)
    PKGS="sip-tester libc6 libgcc-s1 libstdc++6 libssl3t64 libpugixml1v5 libgsl28 libgslcblas0 libncursesw6 libtinfo6 libpcap0.8t64 libsctp1 libzstd1 zlib1g"
    (cd "$SDIR/debs" && apt-get "${APTO[@]}" download $PKGS) >"$SDIR/apt/download.log" 2>&1 || { echo "apt-get download failed: $(grep -E '^E:' "$SDIR/apt/download.log" | head -3)"; exit 2; }
    for d in "$SDIR"/debs/*.deb; do dpkg-deb -x "$d" "$SDIR/root" || exit 2; done
    cat >"$SDIR/sipp" <<'EOF'
#!/bin/sh
# SIPp from Debian's sip-tester, run with its own libraries through their dynamic loader (tls_load.sh)
R=$(cd "$(dirname "$0")" && pwd)/root; L=$R/usr/lib/x86_64-linux-gnu
exec "$L/ld-linux-x86-64.so.2" --library-path "$L" "$R/usr/bin/sipp" "$@"
EOF
    chmod +x "$SDIR/sipp"
    sipp_has_tls "$SDIR/sipp" || { echo "the downloaded sipp does not run or has no TLS: $("$SDIR/sipp" -v 2>&1 | head -3)"; exit 2; }
  fi
  SIPP=("$SDIR/sipp")
fi
# Opt-in: RVOIP_NETNS=1 runs the rest in a private network namespace (own loopback, so 5060/5061
# are free even when another server holds them on this shared machine). Needs root (unshare -n).
# Entered here, after the packages and SIPp are in place (the namespace has no other network).
if [ "${RVOIP_NETNS:-0}" = 1 ] && [ -z "${RVOIP_IN_NETNS:-}" ]; then
  exec unshare -n env RVOIP_IN_NETNS=1 SIPP_TLS="${SIPP[*]}" bash -c 'ip link set lo up && exec "$0" "$@"' "$SELF" "$@"
fi
SIPP_VERSION=$("${SIPP[@]}" -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1)
echo "SIPp: ${SIPP[*]} ($SIPP_VERSION)"

# ---- certificates: a bench CA and a leaf for 127.0.0.1 (shared by both servers and SIPp) ---------
PKI=$OUTDIR/pki; mkdir -p "$PKI"
if [ ! -s "$PKI/cert.pem" ] || [ "$(cat "$PKI/type" 2>/dev/null)" != "$KEY_TYPE" ]; then
  case $KEY_TYPE in
    rsa) NK=(-newkey rsa:2048) ;;
    ec)  NK=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    *) echo "KEY_TYPE rsa|ec"; exit 2 ;;
  esac
  openssl req -x509 "${NK[@]}" -nodes -keyout "$PKI/ca-key.pem" -out "$PKI/ca.pem" -days 3650 -subj "/CN=rvoip bench CA" 2>/dev/null &&
  openssl req "${NK[@]}" -nodes -keyout "$PKI/key.pem" -out "$PKI/leaf.csr" -subj /CN=127.0.0.1 2>/dev/null &&
  printf 'basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$PKI/leaf.ext" &&
  openssl x509 -req -in "$PKI/leaf.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca-key.pem" -CAcreateserial -days 3650 \
    -extfile "$PKI/leaf.ext" -out "$PKI/cert.pem" 2>/dev/null || { echo "openssl failed"; exit 2; }
  echo "$KEY_TYPE" >"$PKI/type"
fi
CERT=$PKI/cert.pem; KEY=$PKI/key.pem
cp "$CERT" "$KAM_RUN/cert.pem"; cp "$KEY" "$KAM_RUN/key.pem"
cat >"$KAM_RUN/tls.cfg" <<EOF
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = $KAM_RUN/key.pem
certificate = $KAM_RUN/cert.pem

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
EOF
TLSARGS=(-tls_cert "$CERT" -tls_key "$KEY" -max_socket $MAXSOCK)

# ---- users -----------------------------------------------------------------------------------
USERS_CSV=$OUTDIR/users.csv; USERS_FILE=$OUTDIR/users.txt
{ echo SEQUENTIAL; for i in $(seq -w 0 9999); do echo "user$i;secret"; done; } >"$USERS_CSV"
{ for i in $(seq -w 0 9999); do echo "user$i:secret"; done; echo uas:secret; } >"$USERS_FILE"
printf 'SEQUENTIAL\nuas;secret\n' >"$OUTDIR/uas.csv"

# ---- servers ---------------------------------------------------------------------------------
port_busy() { ss -ltn 2>/dev/null | grep -qE ':(5061|5070) ' || ss -lun 2>/dev/null | grep -q ':5060 '; }
wait_port_free() { local i; for i in $(seq 120); do port_busy || return 0; sleep 0.5; done; return 1; }
SRV=; SPID=
pids() { if [ "$SRV" = kamailio ]; then echo "$SPID $(pgrep -P "$SPID" | tr '\n' ' ')"; else echo "$SPID"; fi; }
ticks() { local p; for p in $(pids); do awk '{print $14+$15}' /proc/$p/stat 2>/dev/null; done | awk '{s+=$1} END {print s+0}'; }
mem() {  # kB: rvoip RSS (VmRSS), kamailio PSS summed over all processes
  local p
  if [ "$SRV" = kamailio ]; then for p in $(pids); do awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null; done | awk '{s+=$1} END {print s+0}'
  else awk '/^VmRSS:/{print $2}' /proc/$SPID/status 2>/dev/null; fi
}
alive() { [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null && { [ "$SRV" != kamailio ] || ! grep -q 'exited by a signal' "$OUTDIR/kamailio-$NSTART.log"; }; }
tls_conns() { ss -Htn state established '( sport = :5061 )' 2>/dev/null | wc -l; }
NSTART=0
start_server() {
  wait_port_free || { echo "ports 5060/5061/5070 stay busy: $(ss -ltnup | grep -E ':50(60|61|70) ')"; return 1; }
  NSTART=$((NSTART + 1))
  if [ "$SRV" = kamailio ]; then
    kamailio -f "$TLSDIR/kamailio-tls.cfg" -DD -E -m "${KAM_SHM_MB:-1024}" -M 16 -A WITH_LAX_AUTHUSER -A WITH_INVITE_AUTH \
      $([ "$KAM_TLS_WORKERS" = 2 ] && echo -A WITH_TWO_TLS_WORKERS) \
      >"$OUTDIR/kamailio-$NSTART.log" 2>&1 &
    SPID=$!
    sleep 2
    kill -0 $SPID 2>/dev/null || { echo "kamailio exited: $(grep -E 'ERROR|CRITICAL' "$OUTDIR/kamailio-$NSTART.log" | head -3)"; return 1; }
  else
    SSL_CERT_FILE=$PKI/ca.pem RUST_LOG=${RUST_LOG:-warn} "$RVOIP_SERVER" --relay off --lax-auth-user --trusted-source 127.0.0.1/32 \
      --listen tls:127.0.0.1:5061 --listen udp:127.0.0.1:5060 --tls-cert "$CERT" --tls-key "$KEY" \
      --users "$USERS_FILE" --domain 127.0.0.1 --data-dir "$OUTDIR/rvoip-data" >"$OUTDIR/rvoip-server-$NSTART.log" 2>&1 &
    SPID=$!
    sleep 1
    kill -0 $SPID 2>/dev/null || { echo "rvoip-server exited: $(tail -3 "$OUTDIR/rvoip-server-$NSTART.log")"; return 1; }
  fi
}
stop_server() {
  if [ -n "$SPID" ]; then
    kill $SPID 2>/dev/null; for _ in $(seq 40); do kill -0 $SPID 2>/dev/null || break; sleep 0.25; done
    kill -9 $SPID 2>/dev/null; wait $SPID 2>/dev/null
  fi
  SPID=
}
UASPID=; IDLEPID=
cleanup() {
  [ -n "$UASPID" ] && kill $UASPID 2>/dev/null
  [ -n "$IDLEPID" ] && kill $IDLEPID 2>/dev/null
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- SIPp runs -------------------------------------------------------------------------------
# Every SIPp process authenticates as another user (see benches/load.sh: SIPp does not seed its cnonces)
AUTHN=9000
next_auth() { AUTHU=user$AUTHN; AUTHN=$((AUTHN + 1)); }
col() { echo "$HDR" | tr ';' '\n' | grep -nx "$1" | cut -d: -f1; }
# run_sipp TAG MODE RATE COUNT TIMEOUT -> RC OK FAIL EL (wall s) CPUS (server CPU s)
#   MODE: reg_l1, reg_ln, call_l1
run_sipp() {
  local tag=$1 mode=$2 rate=$3 n=$4 to=$5 t args t0 s e t1 last
  UASPID=; next_auth
  case $mode in
    reg_l1|reg_ln) t=${mode#reg_}; args=(-sf "$SC/register_auth.xml" -inf "$USERS_CSV" -au "$AUTHU" -ap secret) ;;
    call_l1)
      t=l1
      timeout $((to + 20)) "${SIPP[@]}" -sf "$SC/uas_proxy.xml" -t l1 "${TLSARGS[@]}" -i 127.0.0.1 -p 5070 -nostdin \
        -timeout $((to + 10))s -default_behaviors all,-abortunexp -trace_err -error_file "uas_$tag.err" >/dev/null 2>&1 &
      UASPID=$!; sleep 0.5
      args=(-sf "$SC/uac_proxy_auth.xml" -s uas -au "$AUTHU" -ap secret -default_behaviors all,-abortunexp) ;;
  esac
  t0=$(ticks); s=$(date +%s.%N)
  timeout $((to + 15)) "${SIPP[@]}" 127.0.0.1:5061 -t "$t" "${TLSARGS[@]}" "${args[@]}" -i 127.0.0.1 -p 5062 -m "$n" -r "$rate" \
    -l $((rate * 4)) -nostdin -timeout "${to}s" -timeout_error -trace_stat -stf "uac_$tag.csv" -fd 1 \
    -trace_err -error_file "uac_$tag.err" >/dev/null 2>&1
  RC=$?
  e=$(date +%s.%N); t1=$(ticks)
  if [ -n "$UASPID" ]; then kill $UASPID 2>/dev/null; wait $UASPID 2>/dev/null; UASPID=; fi
  HDR=$(head -1 "uac_$tag.csv" 2>/dev/null); last=$(tail -1 "uac_$tag.csv" 2>/dev/null)
  OK=$(echo "$last" | cut -d';' -f"$(col 'SuccessfulCall(C)')" 2>/dev/null); FAIL=$(echo "$last" | cut -d';' -f"$(col 'FailedCall(C)')" 2>/dev/null)
  OK=${OK:-0}; FAIL=${FAIL:-?}
  [ "$RC" != 0 ] && [ "$FAIL" = 0 ] && FAIL="rc$RC"   # timed out / aborted with calls still open
  alive || FAIL="$FAIL, server gone"
  EL=$(echo "$e - $s" | bc); CPUS=$(echo "($t1 - $t0) / $TCK" | bc -l)
}
register_uas() {  # rvoip needs a binding for "uas" (Contact 127.0.0.1:5070;transport=TLS); kamailio routes it statically
  next_auth
  timeout 20 "${SIPP[@]}" 127.0.0.1:5061 -t l1 "${TLSARGS[@]}" -sf "$SC/register_auth.xml" -inf "$OUTDIR/uas.csv" -au "$AUTHU" \
    -ap secret -i 127.0.0.1 -p 5070 -m 1 -nostdin -timeout 10s -timeout_error >/dev/null 2>&1
}
ladder() {  # ladder MODE "RATES" -> R[$SRV,${MODE}_max]
  local mode=$1 r best=0
  for r in $2; do
    run_sipp "${SRV}_ladder_${mode}_$r" "$mode" "$r" $((r * LADDER_SECS)) $((LADDER_SECS + 15))
    printf '  ladder %-7s rate=%-5s n=%-6s rc=%s ok=%s failed=%s wall=%.1fs cpu=%.0f%%\n' "$mode" "$r" $((r * LADDER_SECS)) \
      "$RC" "$OK" "$FAIL" "$EL" "$(echo "$CPUS / $EL * 100" | bc -l)"
    if [ "$RC" = 0 ] && [ "$FAIL" = 0 ]; then best=$r; else break; fi
  done
  R[$SRV,${mode}_max]=$best
}
fixed() {  # fixed MODE RATE -> R[$SRV,$MODE] (CPU-s per 1000 of every round), R[$SRV,${MODE}_ok|_fail]
  local mode=$1 rate=$2 v
  run_sipp "${SRV}_r${RND}_$mode" "$mode" "$rate" $((rate * FIXED_SECS)) $((FIXED_SECS + 20))
  v=$(echo "$CPUS * 1000 / ($OK + ($OK == 0))" | bc -l)
  R[$SRV,$mode]+=" $v"; R[$SRV,$mode,$RND]=$v
  R[$SRV,${mode}_okn]=$(( ${R[$SRV,${mode}_okn]:-0} + OK )); R[$SRV,${mode}_n]=$(( ${R[$SRV,${mode}_n]:-0} + rate * FIXED_SECS ))
  [ "$FAIL" != 0 ] && R[$SRV,${mode}_fail]+="r$RND:$FAIL "
  printf '  %-7s %s/s x %ss: ok=%s failed=%s wall=%.1fs server cpu=%.2fs (%.0f%% of a core) -> %.3f cpu-s/1000\n' "$mode" "$rate" \
    "$FIXED_SECS" "$OK" "$FAIL" "$EL" "$CPUS" "$(echo "$CPUS / $EL * 100" | bc -l)" "$v"
}

# ---- idle connections ------------------------------------------------------------------------
idle_conns() {
  local line before m n last=0
  before=$(mem); R[$SRV,idle_before]=$before
  echo "  idle TLS connections: memory before $before kB"
  coproc IDLE { exec python3 "$TLSDIR/idle_tls.py" --port 5061 --steps "$IDLE_STEPS" --concurrency "$IDLE_CONCURRENCY" \
    --deadline 300 2>"$OUTDIR/idle_${SRV}.err"; }
  IDLEPID=$IDLE_PID
  local out=${IDLE[0]} in=${IDLE[1]}
  while read -r -t 240 -u "$out" line; do
    echo "$line" >>"$OUTDIR/idle_${SRV}.log"
    case $line in
      READY*)
        n=$(echo "$line" | awk '{print $2}')
        sleep "$IDLE_SETTLE"; m=$(mem)
        R[$SRV,idle_$n]=$(echo "($m - $before) / $n" | bc -l); R[$SRV,idle_${n}_mem]=$m
        R[$SRV,idle_${n}_state]="$(echo "$line" | awk '{print $3, $4}') est=$(tls_conns)"
        alive || { R[$SRV,idle_${n}_state]+=" SERVER GONE"; R[$SRV,idle_$n]=; echo "  $SRV is gone (see its log)"; }
        printf '  %s: server sees %s established, memory %s kB -> %.2f kB per connection\n' "$line" "$(tls_conns)" "$m" "${R[$SRV,idle_$n]}"
        echo >&"$in" ;;
      CLOSED*|DEADLINE*) echo "  $line"; [ "${line%% *}" = CLOSED ] && break ;;
    esac
  done
  wait "$IDLEPID" 2>/dev/null; IDLEPID=
  sleep "$IDLE_SETTLE"
  R[$SRV,idle_after]=$(mem); alive || R[$SRV,idle_after]="gone"
  echo "  memory ${IDLE_SETTLE}s after closing them: ${R[$SRV,idle_after]} kB (established now: $(tls_conns))"
}

declare -A R
idle_phase() {  # memory per idle connection on a fresh server (+ the ladders with LADDER=1)
  SRV=$1
  echo "=== $SRV: idle TLS connections ==="
  start_server || { echo "$SRV: could not start"; return 1; }
  R[$SRV,mem_idle]=$(mem)
  echo "$SRV idle memory: ${R[$SRV,mem_idle]} kB ($([ "$SRV" = kamailio ] && echo PSS || echo RSS))"
  idle_conns
  if [ "$LADDER" = 1 ]; then
    stop_server; start_server || return 1
    register_uas || echo "  (REGISTER of uas failed)"
    ladder reg_l1 "$LADDER_RATES_REG_L1"; ladder reg_ln "$LADDER_RATES_REG_LN"; ladder call_l1 "$LADDER_RATES_CALL_L1"
  fi
  stop_server
}
load_round() {  # load_round SERVER ROUND: the three fixed-rate runs on a fresh server
  SRV=$1; RND=$2
  echo "=== $SRV: round $RND (load average $(cut -d' ' -f1-3 /proc/loadavg)) ==="
  start_server || { echo "$SRV: could not start"; return 1; }
  register_uas || echo "  (REGISTER of uas failed)"
  fixed reg_l1 "$REG_L1_RATE"
  fixed reg_ln "$REG_LN_RATE"
  fixed call_l1 "$CALL_L1_RATE"
  R[$SRV,mem_load]=$(mem)
  echo "  memory after the load: ${R[$SRV,mem_load]} kB"
  stop_server
}

T0=$(date +%s); LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for s in $SERVERS; do idle_phase "$s"; done
# the servers alternate round by round, so that both see the same background load
for r in $(seq "$ROUNDS"); do for s in $SERVERS; do load_round "$s" "$r"; done; done
for lg in "$OUTDIR"/rvoip-server-*.log "$OUTDIR"/kamailio-*.log; do
  [ -f "$lg" ] && printf '%s: %s warning/error lines\n' "${lg##*/}" "$(grep -ciE 'warn|error|critical|alert' "$lg")"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) exit; print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { local a=${1:-} b=${2:-}; if [ -z "$a" ] || [ -z "$b" ] || [ "$(echo "$b == 0" | bc -l)" = 1 ]; then echo "n/a"; else printf '%.2f' "$(echo "$a / $b" | bc -l)"; fi; }
f3() { [ -z "${1:-}" ] && echo "n/a" || printf '%.3f' "$1"; }
f2() { [ -z "${1:-}" ] && echo "n/a" || printf '%.2f' "$1"; }
flag() { [ -n "${R[$1,${2}_fail]:-}" ] && echo " (FAILED ${R[$1,${2}_fail]% })"; }
row() { printf '%-52s %16s %16s %10s\n' "$1" "$2" "$3" "$4"; }
echo
echo "=== SIP over TLS: rvoip-server vs Kamailio 5.6 tls (same run, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), $SIPP_VERSION, key $KEY_TYPE) ==="
row "figure (CPU: median of $ROUNDS rounds)" "rvoip" "kamailio" "rvoip/kam"
for m in reg_l1 reg_ln call_l1; do
  case $m in reg_l1) d="REGISTER+digest -t l1 @${REG_L1_RATE}/s" ;; reg_ln) d="REGISTER+digest -t ln @${REG_LN_RATE}/s" ;; call_l1) d="calls (407 auth) -t l1 @${CALL_L1_RATE}/s" ;; esac
  a=$(echo "${R[rvoip,$m]:-}" | median); b=$(echo "${R[kamailio,$m]:-}" | median)
  row "CPU-s per 1000, $d" "$(f3 "$a")$(flag rvoip $m)" "$(f3 "$b")$(flag kamailio $m)" "$(ratio "$a" "$b")"
  pr=; for r in $(seq "$ROUNDS"); do pr+="$(ratio "${R[rvoip,$m,$r]:-}" "${R[kamailio,$m,$r]:-}") "; done
  pv() { local x r; for r in $(seq "$ROUNDS"); do x+="$(f3 "${R[$1,$m,$r]:-}") "; done; echo "$x"; }
  echo "    rounds: rvoip $(pv rvoip)| kamailio $(pv kamailio)| ratios $pr"
done
for n in ${IDLE_STEPS//,/ }; do
  row "memory per idle TLS connection, kB (at $n)" "$(f2 "${R[rvoip,idle_$n]:-}")" "$(f2 "${R[kamailio,idle_$n]:-}")" "$(ratio "${R[rvoip,idle_$n]:-}" "${R[kamailio,idle_$n]:-}")"
  row "  memory with $n connections, kB (RSS / PSS)" "${R[rvoip,idle_${n}_mem]:-n/a}" "${R[kamailio,idle_${n}_mem]:-n/a}" "$(ratio "${R[rvoip,idle_${n}_mem]:-}" "${R[kamailio,idle_${n}_mem]:-}")"
done
row "memory idle, kB (RSS / PSS)" "${R[rvoip,mem_idle]:-n/a}" "${R[kamailio,mem_idle]:-n/a}" "$(ratio "${R[rvoip,mem_idle]:-}" "${R[kamailio,mem_idle]:-}")"
row "memory after closing the idle connections, kB" "${R[rvoip,idle_after]:-n/a}" "${R[kamailio,idle_after]:-n/a}" "$(ratio "${R[rvoip,idle_after]:-}" "${R[kamailio,idle_after]:-}")"
row "memory after a round of fixed-rate load, kB" "${R[rvoip,mem_load]:-n/a}" "${R[kamailio,mem_load]:-n/a}" "$(ratio "${R[rvoip,mem_load]:-}" "${R[kamailio,mem_load]:-}")"
if [ "$LADDER" = 1 ]; then
  for m in reg_l1 reg_ln call_l1; do
    row "highest ladder rate with 0 failures, $m (/s)" "${R[rvoip,${m}_max]:-n/a}" "${R[kamailio,${m}_max]:-n/a}" "$(ratio "${R[rvoip,${m}_max]:-}" "${R[kamailio,${m}_max]:-}")"
  done
fi
for s in rvoip kamailio; do
  st=; for n in ${IDLE_STEPS//,/ }; do st+=" [$n: ${R[$s,idle_${n}_state]:-n/a}]"; done
  echo "$s: ok/total reg_l1 ${R[$s,reg_l1_okn]:-0}/${R[$s,reg_l1_n]:-0}, reg_ln ${R[$s,reg_ln_okn]:-0}/${R[$s,reg_ln_n]:-0}, call_l1 ${R[$s,call_l1_okn]:-0}/${R[$s,call_l1_n]:-0}; idle$st"
done
echo "kamailio TLS workers: $KAM_TLS_WORKERS; idle client: $IDLE_CONCURRENCY handshakes at a time"
echo "rvoip-server: $RVOIP_SERVER (built $(date -u -r "$RVOIP_SERVER" +%Y-%m-%dT%H:%MZ 2>/dev/null), tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null))"
echo "load average at start $LOAD0, at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "total time $(( $(date +%s) - T0 ))s; logs in $OUTDIR"
