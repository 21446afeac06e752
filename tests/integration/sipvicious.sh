#!/usr/bin/env bash
# sipvicious: the SIPVicious attack tools (PyPI sipvicious: svwar, svcrack) against an rvoip-server of
# this test's own (config $OUT/hostile.toml, 127.0.0.1:5070 udp+tcp; users 100..199 and 1234, whose
# password is the 4-digit 4817; nobody registered, so every user is "unreachable" alike):
#  0. self-check: svwar against a deliberately leaky responder (hostile/leaky.py: 401 for 150 and 1234,
#     404 otherwise) must find exactly 150 and 1234, so the parsing below can see a finding
#  1. svwar -m REGISTER / OPTIONS / INVITE --force over 90-210,1234 finds 0 extensions, and our own
#     probe of the same range (hostile/enum.py, also OPTIONS From a foreign domain) sees real and unknown
#     users answered alike. (rvoip-server before issue 13 answered OPTIONS 404 for unknown users and 480
#     for existing unregistered ones, From the user itself or From sip:x@attacker.example: svwar -m OPTIONS
#     listed all 101 users, and svcrack found 4817 in 25 s. Against a server that answers every
#     extension alike svwar gives up at once: 480 to its first probe, or a 401/407 it cannot classify.)
#  2. svcrack -u 1234 -r 0000-9999 -z 4 (one source) does not find the password (the source is banned
#     after auth_fail_limit failures); meanwhile and afterwards 1234 registers with the right password
#     from 127.0.0.2 (200)
#  3. a distributed crack (two more sources) pushes the failures on user 1234 past auth_user_fail_limit:
#     then a fourth source is banned at its first wrong password (that one and its next, correct,
#     REGISTER get no answer) while 127.0.0.2 still registers
#  4. the server log tells of the bans
# Sources: 127.0.0.1 probe, .2 the legitimate phone, .3 svwar, .4 enum.py, .5-.7 svcrack, .8 the
# late guesser (the tools run through hostile/sv.py, which makes them send from the given address).
# Every tool run is bounded by timeout.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hostile/common.sh"
H=$HOSTILE_DIR
PW=4817
python3 -c 'import sipvicious.svwar, sipvicious.svcrack' 2>/dev/null \
  || fail "python module sipvicious not installed (python3 -m pip install sipvicious)"

CFG=$OUT/hostile.toml
{
  echo 'listen = ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]'
  echo 'domain = "127.0.0.1"'
  echo 'relay = "off"'
  echo 'auth_fail_limit = 10'
  echo 'auth_fail_window_s = 60'
  echo 'auth_user_fail_limit = 20'
  echo 'auth_ban_s = 300'
  echo '[users]'
  for u in $(seq 100 199); do echo "\"$u\" = \"pw-$u-secret\""; done
  echo "\"1234\" = \"$PW\""
} >"$CFG"
hostile_start hostile "$CFG" || fail "could not start the test's rvoip-server (see $OUT/hostile-server.log)"
SPID=$HS_PID
echo "server pid $SPID, RSS $(rss_kb $SPID) kB"

# svwar_found TAG: the extensions in svwar's result table ($OUT/TAG.out), one per line
svwar_found() { grep -E '^\| *[^ |]+ *\| *[^ |]+ *\|$' "$OUT/$1.out" | grep -v 'Extension' | awk -F'|' '{gsub(/ /,"",$2); print $2}'; }

# 0. the parsing can see findings
python3 "$H/leaky.py" --port 5079 --users 150,1234 --seconds 60 &
LEAKY=$!; BG_PIDS="$BG_PIDS $LEAKY"
wait_udp_port 5079 || fail "leaky responder did not bind 127.0.0.1:5079"
timeout -k 5 60 python3 "$H/sv.py" 127.0.0.3 svwar -v --force -m REGISTER -e 90-210,1234 -p 5079 127.0.0.1 \
  >"$OUT/svwar-leaky.out" 2>"$OUT/svwar-leaky.err"
kill $LEAKY 2>/dev/null
F=$(svwar_found svwar-leaky | sort | tr '\n' ' ')
[ "$F" = "1234 150 " ] || fail "self-check: svwar against the leaky responder found '${F}' (want '1234 150'): output format changed?"
echo "self-check: svwar finds $F on a leaky responder"

# 1. svwar against the server: nothing found
for m in REGISTER OPTIONS INVITE; do
  t0=$(date +%s.%N)
  timeout -k 5 90 python3 "$H/sv.py" 127.0.0.3 svwar -v --force -m $m -e 90-210,1234 -p 5070 127.0.0.1 \
    >"$OUT/svwar-$m.out" 2>"$OUT/svwar-$m.err"
  rc=$?
  F=$(svwar_found svwar-$m | tr '\n' ' ')
  # why svwar stopped (against a server that answers every extension alike it gives up early)
  why=$(grep -E 'WARNING|ERROR' "$OUT/svwar-$m.err" | grep -vE 'INVITE scan on an endpoint|found nothing|could not bind' \
    | tail -1 | cut -c1-110)
  printf 'svwar -m %s: rc=%s, %.1f s, found: %s (%s)\n' $m $rc \
    "$(echo "$(date +%s.%N) - $t0" | bc)" "${F:-none}" "${why:-ran through the range}"
  [ -z "$F" ] || fail "svwar -m $m enumerated extensions: $F"
  alive_or_fail $SPID hostile "svwar -m $m"
done
timeout -k 5 120 python3 "$H/enum.py" --src 127.0.0.4 --server 127.0.0.1:5070 --users 100-199,1234 \
  --range 90-210,1234 >"$OUT/enum.out" 2>&1
rc=$?
cat "$OUT/enum.out"
[ $rc = 0 ] || fail "$(tail -1 "$OUT/enum.out")"

# 2. svcrack from one source; the phone registers meanwhile and afterwards
crack() {  # crack TAG SRC RANGE: svcrack in the background (bounded), pid in CRACK_PID
  timeout -k 5 90 python3 "$H/sv.py" "$2" svcrack -v -u 1234 -r "$3" -z 4 -p 5070 127.0.0.1 \
    >"$OUT/$1.out" 2>"$OUT/$1.err" &
  CRACK_PID=$!; BG_PIDS="$BG_PIDS $CRACK_PID"
}
cracked() { grep -qE "The password for 1234 is|^\| *1234 *\| *$PW" "$OUT/$1.out" "$OUT/$1.err"; }
t0=$(date +%s.%N)
crack svcrack 127.0.0.5 0000-9999
C1=$CRACK_PID
sleep 2
R=$(python3 "$H/sipclient.py" register --src 127.0.0.2 --user 1234 --password $PW) \
  || fail "during svcrack, the right password from 127.0.0.2: $R"
echo "during svcrack: $R"
wait $C1; rc=$?
dt=$(echo "$(date +%s.%N) - $t0" | bc)
printf 'svcrack -u 1234 -r 0000-9999 from 127.0.0.5: rc=%s after %.1f s\n' $rc "$dt"
if cracked svcrack; then
  fail "svcrack found the password of 1234 ($PW) in $(printf %.1f "$dt") s"
fi
[ $rc = 124 ] && echo "(svcrack ran into its 90 s bound)"
grep -E 'It has been|no more passwords|no server response' "$OUT/svcrack.err" | tail -1 | sed 's/^/  svcrack: /'
R=$(python3 "$H/sipclient.py" register --src 127.0.0.2 --user 1234 --password $PW) \
  || fail "after svcrack, the right password from 127.0.0.2: $R"
echo "after svcrack: $R"
# the attacking source is banned: even the right password from it gets no answer now
R=$(python3 "$H/sipclient.py" register --src 127.0.0.5 --user 1234 --password $PW --timeout 4) \
  && fail "the cracking source 127.0.0.5 is not banned: $R"
echo "cracking source banned: $R"

# 3. distributed: two more sources, then one wrong guess from a fourth is enough to ban it
crack svcrack2 127.0.0.6 0000-4999; C2=$CRACK_PID
crack svcrack3 127.0.0.7 5000-9999; C3=$CRACK_PID
wait $C2; wait $C3
for t in svcrack2 svcrack3; do cracked $t && fail "$t (distributed crack) found the password of 1234"; done
echo "distributed svcrack from 127.0.0.6 and .7: password not found"
# the failure that bans a source goes unanswered (like the 10th of one source), a 401 would do too
R=$(python3 "$H/sipclient.py" register --src 127.0.0.8 --user 1234 --password wrong-guess --want 401 --timeout 4)
echo "127.0.0.8, one wrong password: $R"
R=$(python3 "$H/sipclient.py" register --src 127.0.0.8 --user 1234 --password $PW --timeout 4) \
  && fail "after the user's failure limit, one wrong password did not ban 127.0.0.8: $R"
echo "after auth_user_fail_limit, 127.0.0.8 banned after its first failure: $R"
R=$(python3 "$H/sipclient.py" register --src 127.0.0.2 --user 1234 --password $PW) \
  || fail "after the distributed crack, the right password from 127.0.0.2: $R"
echo "after the distributed crack: $R"

# 4. the bans are logged
alive_or_fail $SPID hostile "svcrack"
N=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/hostile-server.log" | grep -ci 'ban')
[ "$N" -gt 0 ] || fail "no ban logged in $OUT/hostile-server.log"
echo "server log: $N line(s) about bans, e.g.:"
sed 's/\x1b\[[0-9;]*m//g' "$OUT/hostile-server.log" | grep -i 'ban' | head -3 | cut -c1-200 | sed 's/^/  /'
echo "server RSS at the end $(rss_kb $SPID) kB"
echo "sipvicious: nothing enumerated, password not cracked, legitimate phone unaffected"
