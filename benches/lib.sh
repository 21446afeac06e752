# Shell helpers shared by the bench scripts (relay.sh, transcode.sh). Sourced; needs awk, bc and
# the caller's BUSY (cores) and QUIET_WAIT (s).

# Busy cores of the whole machine over 2 s: CPUs − idle (/proc/stat idle + iowait, which a
# tickless kernel counts exactly; user/system are tick samples that miss short bursts).
busy_cores() {
  local t0 t1 a b n
  n=$(grep -c '^cpu[0-9]' /proc/stat)
  t0=$(date +%s.%N); a=$(awk '/^cpu /{print $5+$6}' /proc/stat); sleep 2
  t1=$(date +%s.%N); b=$(awk '/^cpu /{print $5+$6}' /proc/stat)
  echo "$n $t0 $t1 $a $b" | awk '{ b = $1 - ($5 - $4) / (($3 - $2) * 100); printf "%.2f", (b < 0 ? 0 : b) }'
}

# Waits (up to QUIET_WAIT s) until the machine is quiet (busy ≤ BUSY cores) before a run.
quiet() {
  local t0 b; t0=$(date +%s)
  while :; do
    b=$(busy_cores)
    [ "$(echo "$b <= $BUSY" | bc -l)" = 1 ] && return 0
    [ $(( $(date +%s) - t0 )) -ge "$QUIET_WAIT" ] && { echo "  (machine still busy: $b cores; running anyway)"; return 0; }
    sleep 3
  done
}

# field KEY LINE: the value of KEY=VALUE in a machine-readable bench line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
