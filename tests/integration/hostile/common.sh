# Shared helpers for the hostile-network tests (tests/integration/sipvicious.sh, hostile.sh); sourced
# after lib.sh. These tests run their OWN rvoip-server (a config file of their own) on 127.0.0.1:5070,
# beside the harness's server on 5060 (which the harness still probes afterwards).
#   hostile_start NAME CONFIG [PORT]   start "$RVOIP_SERVER --config CONFIG", log $OUT/NAME-server.log,
#                                      wait (<= 20 s) until OPTIONS to 127.0.0.1:PORT (5070) gets 200;
#                                      sets HS_PID (and HS_PIDS for the EXIT trap)
#   hostile_stop PID                   SIGTERM, then SIGKILL after 3 s
#   rss_kb PID                         VmRSS in kB
# RVOIP_HOSTILE_OLD_CONFIG=1 strips the issue-13 keys from the config (to measure a server built
# before them: such a server refuses unknown keys); the checks of the new behaviour then fail.
HOSTILE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
HS_PIDS=
NEW_KEYS='flood_limit|flood_window_ms|flood_ban_s|auth_fail_limit|auth_fail_window_s|auth_user_fail_limit|auth_ban_s|trusted_sources|max_transactions_per_source|max_held_bytes|max_held_bytes_per_source|max_forward_body_bytes|max_connections|max_connections_per_source|connection_idle_timeout_s|message_timeout_s'

hostile_probe() {  # $1 port: OPTIONS 200 within ~1 s
  python3 "$HOSTILE_DIR/sipclient.py" options --src 127.0.0.1 --server "127.0.0.1:${1:-5070}" --timeout 1 >/dev/null 2>&1
}

hostile_start() {
  local name=$1 cfg=$2 port=${3:-5070} i
  if [ "${RVOIP_HOSTILE_OLD_CONFIG:-0}" = 1 ]; then
    grep -vE "^($NEW_KEYS) *=" "$cfg" >"$cfg.old" && mv "$cfg.old" "$cfg"
  fi
  for i in $(seq 40); do
    ss -lun 2>/dev/null | grep -q ":$port " || ss -ltn 2>/dev/null | grep -q ":$port " || break
    sleep 0.5
  done
  RUST_LOG=${RUST_LOG:-info} "$RVOIP_SERVER" --config "$cfg" >"$OUT/$name-server.log" 2>&1 &
  HS_PID=$!
  HS_PIDS="$HS_PIDS $HS_PID"
  for i in $(seq 40); do
    kill -0 "$HS_PID" 2>/dev/null || { tail -5 "$OUT/$name-server.log"; return 1; }
    hostile_probe "$port" && return 0
    sleep 0.5
  done
  echo "$name server did not answer OPTIONS on 127.0.0.1:$port within 20 s"
  return 1
}

hostile_stop() {
  local p=$1 i
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null
  for i in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}

hostile_cleanup() {
  local p
  for p in $HS_PIDS; do hostile_stop "$p"; done
  HS_PIDS=
  cleanup_bg
}
trap hostile_cleanup EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# the server still runs (it did not crash under the attack)
alive_or_fail() {  # $1 pid, $2 name, $3 what just ran
  kill -0 "$1" 2>/dev/null || fail "$2 server died during $3 (see $OUT/$2-server.log)"
}
