#!/usr/bin/env bash
# The cost of keeping registrations (issue 16): server CPU-seconds per 1000 REGISTER (digest auth: 401
# then 200, each 200 writes one binding) with --store memory, redb and redis, in one invocation, ROUNDS
# rounds interleaved (shared, noisy machine: compare within a round; the median is printed).
# Each run: a fresh rvoip-server on udp:127.0.0.1:5060 (--relay off, empty data directory, for redis an
# emptied private redis-server on 127.0.0.1:6391), SIPp registers N AORs at RATE/s (each a new binding),
# CPU from /proc/PID/stat utime+stime of the server (all its threads, the store writer included) and,
# for redis, also of redis-server (printed separately).
# Usage: benches/persist.sh   (env: RVOIP_SERVER, N=10000, RATE=1000, ROUNDS=3, OUTDIR)
# Needs: sip-tester (sipp), redis-server, bc.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SC=$ROOT/tests/scenarios
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
N=${N:-10000}; RATE=${RATE:-1000}; ROUNDS=${ROUNDS:-3}
OUTDIR=${OUTDIR:-$ROOT/target/bench-persist}
TCK=$(getconf CLK_TCK)
for t in sipp bc redis-server redis-cli; do command -v $t >/dev/null || { echo "missing $t (apt-get install -y sip-tester bc redis-server)"; exit 2; }; done
[ -x "$RVOIP_SERVER" ] || { echo "no $RVOIP_SERVER (cargo build --release --bin rvoip-server)"; exit 2; }
mkdir -p "$OUTDIR"; cd "$OUTDIR" || exit 1
{ echo SEQUENTIAL; for i in $(seq -w 0 9999); do echo "user$i;secret"; done; } >users.csv
{ for i in $(seq -w 0 9999); do echo "user$i:secret"; done; echo bench:secret; } >users.txt
ticks() { awk '{print $14+$15}' /proc/$1/stat 2>/dev/null || echo 0; }
SPID=; RPID=
cleanup() { for p in $SPID $RPID; do kill $p 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT INT TERM
redis-server --port 6391 --bind 127.0.0.1 --save "" --appendonly no --daemonize no >redis.log 2>&1 &
RPID=$!
for _ in $(seq 50); do redis-cli -p 6391 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

run() {  # run STORE -> prints "cpu_server cpu_redis ok failed"
  local store=$1 t0 r0 t1 r1 ok fail hdr last col_ok col_fail
  rm -rf data; redis-cli -p 6391 flushall >/dev/null
  RUST_LOG=warn "$RVOIP_SERVER" --relay off --lax-auth-user --trusted-source 127.0.0.1/32 --listen udp:127.0.0.1:5060 \
    --users users.txt --domain 127.0.0.1 --store "$store" --data-dir data --redis-url redis://127.0.0.1:6391/ >"server_$store.log" 2>&1 &
  SPID=$!; sleep 1
  t0=$(ticks $SPID); r0=$(ticks $RPID)
  timeout $((N / RATE + 40)) sipp 127.0.0.1:5060 -sf "$SC/register_auth.xml" -inf users.csv -au bench -ap secret \
    -i 127.0.0.1 -p 5062 -m "$N" -r "$RATE" -l "$N" -nostdin -timeout $((N / RATE + 30))s -trace_stat -stf "reg_$store.csv" -fd 1 >/dev/null 2>&1
  sleep 1   # the store writer's last batch
  t1=$(ticks $SPID); r1=$(ticks $RPID)
  kill $SPID; wait $SPID 2>/dev/null; SPID=
  hdr=$(head -1 "reg_$store.csv"); last=$(tail -1 "reg_$store.csv")
  col_ok=$(echo "$hdr" | tr ';' '\n' | grep -nx 'SuccessfulCall(C)' | cut -d: -f1)
  col_fail=$(echo "$hdr" | tr ';' '\n' | grep -nx 'FailedCall(C)' | cut -d: -f1)
  ok=$(echo "$last" | cut -d';' -f"$col_ok"); fail=$(echo "$last" | cut -d';' -f"$col_fail")
  echo "$(echo "($t1 - $t0) / $TCK * 1000 / ${ok:-1}" | bc -l) $(echo "($r1 - $r0) / $TCK * 1000 / ${ok:-1}" | bc -l) ${ok:-0} ${fail:-?}"
}
declare -A CPU
for round in $(seq "$ROUNDS"); do
  for store in memory redb redis; do
    read -r c r ok fail < <(run $store)
    printf 'round %s %-6s: %s REGISTER ok, %s failed: server %.3f cpu-s/1000' "$round" "$store" "$ok" "$fail" "$c"
    [ $store = redis ] && printf ' (+ redis-server %.3f)' "$r"
    echo
    CPU[$store]="${CPU[$store]:-} $c"; [ $store = redis ] && CPU[redis_srv]="${CPU[redis_srv]:-} $r"
  done
done
median() { echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m=$(median ${CPU[memory]}); b=$(median ${CPU[redb]}); r=$(median ${CPU[redis]}); rs=$(median ${CPU[redis_srv]})
printf '\nmedian server CPU-s per 1000 REGISTER: memory %.3f, redb %.3f (%+.0f %%), redis %.3f (%+.0f %%; redis-server itself %.3f)\n' \
  "$m" "$b" "$(echo "($b - $m) / $m * 100" | bc -l)" "$r" "$(echo "($r - $m) / $m * 100" | bc -l)" "$rs"
