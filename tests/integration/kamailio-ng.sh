#!/usr/bin/env bash
# kamailio-ng: Kamailio 5.6 with its rtpengine module (WITH_RTPENGINE, /work/shared/peers/kamailio.cfg copied
# to $OUT with its run directory moved to $OUT/kam) controls OUR media relay over the ng protocol, exactly as
# it controls rtpengine: rtpengine_offer/answer("replace-origin replace-session-connection ICE=remove") on
# INVITE/200, rtpengine_delete on BYE, to udp:127.0.0.1:2223. A NO_SERVER test of run-integration.sh (it
# starts its own servers; Kamailio needs 127.0.0.1:5060, waited for up to 60 s).
#   NG_TARGET=rvoip (default)  $RVOIP_SERVER --relay-only --ng udp:127.0.0.1:2223 --relay-ports 42000-42999
#                              --relay-advertise 127.0.0.1 (log $OUT/relay.log)
#   NG_TARGET=rtpengine        the reference: rtpengine --table=-1 --interface=127.0.0.1
#                              --listen-ng=127.0.0.1:2223, ports 42000-42999 (log $OUT/relay.log)
# Two headless baresip phones (shared/peers/baresip configs copied to $OUT, as baresip-call.sh and
# baresip.sh do: user0001 on 5081 RTP 40000-40099 plays 440 Hz, user0002 on 5091 RTP 40100-40199 plays
# 880 Hz, auto-answer, G.711) register (digest) and user0001 calls user0002 through Kamailio (INVITE
# challenged, WITH_INVITE_AUTH) for $CALL_SECONDS (6) s. Asserted:
#   * SIP (tshark on lo): REGISTERs 200, INVITE 200 + ACK through Kamailio, BYE/200;
#   * ng (same capture, port 2223): Kamailio sent offer, answer and delete, every one answered ok/pong;
#   * media (tests/integration/relay_capture.py): every SDP Kamailio sent has its m= port in 42000-42999,
#     every RTP/RTCP packet of the phones went to or came from a relay port, none phone<->phone, and each
#     phone RTP port sent and received >= $MIN_RTP (200) packets to/from the relay;
#   * the relay's own view (ng list + query polled during the call, ng_client.py watch): one call, its
#     totals RTP packets >= 2 x $MIN_RTP, gone from `list` after the BYE's delete;
#   * audio: each phone heard the other's tone (>= 90 % of the energy, tests/integration/tone_share.py);
#   * the relay and Kamailio still run at the end (and the relay answers ng ping).
set -u
. "$(dirname "$0")/lib.sh"
[ "${TARGET:-rvoip}" = external ] && fail "kamailio-ng runs its own Kamailio on 127.0.0.1:5060: not with TARGET=external"
NG_TARGET=${NG_TARGET:-rvoip}
[ "$NG_TARGET" = both ] && NG_TARGET=rvoip   # ng-compare's default: here it means ours
case $NG_TARGET in rvoip|rtpengine) ;; *) fail "NG_TARGET must be rvoip or rtpengine (not $NG_TARGET)" ;; esac
RVOIP_SERVER=${RVOIP_SERVER:-$ROOT/target/release/rvoip-server}
D=${CALL_SECONDS:-6}
MIN_RTP=${MIN_RTP:-200}
NG_PORT=2223 NG_RELAY_PORTS=42000-42999
NGC=$INTEG_DIR/ng_client.py
for t in kamailio baresip tshark sox; do command -v $t >/dev/null || fail "$t not installed (tests/run-all.sh installs it)"; done
[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/rtpengine.so ] || fail "Kamailio's rtpengine module missing"
[ -f /usr/lib/baresip/modules/sndfile.so ] || fail "baresip sndfile module missing (/usr/lib/baresip/modules/sndfile.so)"

RELAY_PID= KAM_PID= TSP= AP= BP= WATCH_PID=
cleanup() {
  local p
  for p in $AP $BP $WATCH_PID $TSP $KAM_PID $RELAY_PID $NG_RELAY_PID; do stop_pid "$p"; done
  AP= BP= WATCH_PID= TSP= KAM_PID= RELAY_PID= NG_RELAY_PID=
}
trap cleanup EXIT INT TERM

# held PROTO PORT: something listens on 127.0.0.1:PORT (or any address)
held() { ss -ln"$1" 2>/dev/null | awk '{print $5}' | grep -qE "^(127\.0\.0\.1|0\.0\.0\.0|\*|\[::\]):$2\$"; }
# wait_free: up to 60 s for SIP 5060 (udp+tcp), the ng port and the phones' SIP ports
for i in $(seq 600); do
  busy=
  held u 5060 && busy="$busy udp/5060"; held t 5060 && busy="$busy tcp/5060"
  held u $NG_PORT && busy="$busy udp/$NG_PORT"
  for p in 5081 5091; do held u $p && busy="$busy udp/$p"; done
  [ -z "$busy" ] && break
  sleep 0.1
done
[ -z "$busy" ] || fail "ports held by other processes after 60 s:$busy ($(ss -lntup 2>/dev/null | grep -E ':(5060|5081|5091|'$NG_PORT') ' | tr -s ' ' | cut -c1-200 | tr '\n' ';'))"

# sip_ok: OPTIONS to 127.0.0.1:5060 answered 200 within 0.5 s
sip_ok() { python3 "$INTEG_DIR/options_probe.py" 127.0.0.1:5060; }

# ---- capture first: the ng ping Kamailio sends at start-up is in it too
B=$OUT/baresip; mkdir -p "$B"
CAP=$OUT/cap.pcap
timeout -k 2 $((D + 60)) tshark -i lo -f "udp" -a duration:$((D + 50)) -w "$CAP" >"$OUT/tshark.log" 2>&1 &
TSP=$!
for i in $(seq 100); do grep -q "Capturing on" "$OUT/tshark.log" 2>/dev/null && break; kill -0 $TSP 2>/dev/null || break; sleep 0.1; done
grep -q "Capturing on" "$OUT/tshark.log" || fail "tshark did not start capturing on lo (see $OUT/tshark.log)"

# ---- the relay on udp:127.0.0.1:2223
if [ "$NG_TARGET" = rvoip ]; then
  start_relay_only "$OUT/relay.log" $NG_PORT $NG_RELAY_PORTS
  RELAY_PID=$NG_RELAY_PID
  RELAY_NAME="rvoip-server --relay-only"
else
  command -v rtpengine >/dev/null || fail "rtpengine not installed (apt-get install -y rtpengine-daemon)"
  timeout -k 5 280 rtpengine --config-file=none --foreground --log-stderr --table=-1 --interface=127.0.0.1 \
    --listen-ng=127.0.0.1:$NG_PORT --port-min=${NG_RELAY_PORTS%-*} --port-max=${NG_RELAY_PORTS#*-} \
    --delete-delay=0 --log-level=6 >"$OUT/relay.log" 2>&1 &
  RELAY_PID=$!
  RELAY_NAME="rtpengine $(rtpengine --version 2>&1 | awk '{print $2}')"
fi
python3 "$NGC" --server 127.0.0.1:$NG_PORT wait --timeout 10 >"$OUT/relay-ready.txt" 2>&1 \
  || fail "$RELAY_NAME did not answer ng ping on 127.0.0.1:$NG_PORT within 10 s (see $OUT/relay.log)"
echo "relay: $RELAY_NAME, pid $RELAY_PID, ng udp:127.0.0.1:$NG_PORT, media ports $NG_RELAY_PORTS"

# ---- Kamailio (its own copy of the config: run directory in $OUT)
KRUN=$OUT/kam; mkdir -p "$KRUN"
sed -e "s|^#!substdef \"!RUNDIR!/tmp/peers/kam!g\"|#!substdef \"!RUNDIR!$KRUN!g\"|" "$SHARED/peers/kamailio.cfg" >"$OUT/kamailio.cfg"
grep -q "RUNDIR!$KRUN!g" "$OUT/kamailio.cfg" || fail "could not move Kamailio's run directory in $OUT/kamailio.cfg"
grep -q 'rtpengine_sock", "udp:127.0.0.1:2223"' "$OUT/kamailio.cfg" || fail "kamailio.cfg: rtpengine_sock is not udp:127.0.0.1:2223"
kamailio -c -f "$OUT/kamailio.cfg" -A WITH_RTPENGINE -A WITH_INVITE_AUTH >"$OUT/kamailio-check.log" 2>&1 \
  || { tail -5 "$OUT/kamailio-check.log"; fail "kamailio -c rejects $OUT/kamailio.cfg (see $OUT/kamailio-check.log)"; }
timeout -k 5 280 kamailio -f "$OUT/kamailio.cfg" -DD -E -m 128 -M 16 -A WITH_RTPENGINE -A WITH_INVITE_AUTH \
  >"$OUT/kamailio.log" 2>&1 &
KAM_PID=$!
kok=0
for i in $(seq 50); do sip_ok && { kok=1; break; }; kill -0 $KAM_PID 2>/dev/null || break; sleep 0.1; done
[ $kok = 1 ] || { tail -5 "$OUT/kamailio.log"; fail "Kamailio did not answer OPTIONS on 127.0.0.1:5060 within ~10 s (see $OUT/kamailio.log)"; }
echo "kamailio: $(kamailio -v 2>&1 | head -1 | awk '{print $2}') pid $KAM_PID, WITH_RTPENGINE WITH_INVITE_AUTH, run dir $KRUN"
if grep -qiE 'rtpengine.*(disabl|not respond|fail)' "$OUT/kamailio.log"; then
  grep -iE 'rtpengine' "$OUT/kamailio.log" | tail -3
  fail "Kamailio's rtpengine module could not reach the relay at start-up (see $OUT/kamailio.log)"
fi

# ---- phones
TONE_A=440 TONE_B=880
for hz in $TONE_A $TONE_B; do
  sox -n -r 48000 -c 2 -b 16 "$B/tone$hz.wav" synth 30 sine "$hz" vol 0.5 && [ -s "$B/tone$hz.wav" ] || fail "sox could not make $B/tone$hz.wav"
done
for u in a b; do
  [ $u = a ] && hz=$TONE_A || hz=$TONE_B
  rm -rf "$B/$u" "$B/$u.rec"; cp -r "$SHARED/peers/baresip/$u" "$B/$u"; chmod -R u+w "$B/$u"; mkdir -p "$B/$u.rec"
  sed -i -e "s|^audio_source[[:space:]].*|audio_source\t\taufile,$B/tone$hz.wav|" \
    -e 's|^\(module[[:space:]]*\)aufile.so|&\n\1sndfile.so|' "$B/$u/config"
  printf 'snd_path\t\t%s\n' "$B/$u.rec" >>"$B/$u/config"
  grep -q "aufile,$B/tone$hz.wav" "$B/$u/config" && grep -q 'sndfile.so' "$B/$u/config" \
    || fail "baresip config $B/$u/config not as expected"
done

# the relay's view during the call: list + query every 0.25 s until the call is gone (or D + 30 s)
timeout -k 2 $((D + 40)) python3 "$NGC" --server 127.0.0.1:$NG_PORT --seconds $((D + 30)) watch >"$OUT/ng-watch.txt" 2>&1 &
WATCH_PID=$!

timeout -k 2 $((D + 20)) baresip -f "$B/b" -t $((D + 8)) >"$B/b.log" 2>&1 &
BP=$!
# user0002 registered (its 200 OK in its log) before user0001 dials
for i in $(seq 100); do grep -aq '200 OK' "$B/b.log" 2>/dev/null && break; kill -0 $BP 2>/dev/null || break; sleep 0.1; done
grep -aq '200 OK' "$B/b.log" || fail "user0002 (baresip b) did not register within 10 s (see $B/b.log)"
timeout -k 2 $((D + 15)) baresip -f "$B/a" -t $((D + 2)) -e "/dial sip:user0002@127.0.0.1" >"$B/a.log" 2>&1 &
AP=$!
wait $AP; AP=
wait $BP; BP=
wait $WATCH_PID; WATCH_PID=
# a last ng round trip after the call, then stop the capture
python3 "$NGC" --server 127.0.0.1:$NG_PORT ping >"$OUT/relay-ping-after.txt" 2>&1; PING_AFTER=$?
sleep 0.3   # let the capture write the last packets out before it is stopped
stop_pid $TSP; TSP=

ALIVE_RELAY=1; kill -0 "$RELAY_PID" 2>/dev/null || ALIVE_RELAY=0
ALIVE_KAM=1; kill -0 "$KAM_PID" 2>/dev/null || ALIVE_KAM=0

# ---- SIP
tshark -r "$CAP" -Y sip -T fields -E separator=';' -e frame.time_relative -e udp.srcport -e udp.dstport \
  -e sip.Method -e sip.Status-Code -e sip.CSeq.method 2>/dev/null >"$B/sip.txt"
echo "--- SIP (time;src;dst;method;status;cseq)"; cat "$B/sip.txt"
has() { grep -qE "$1" "$B/sip.txt"; }
has '^[^;]*;5060;5081;;200;REGISTER$' || fail "user0001 (5081) got no 200 to REGISTER"
has '^[^;]*;5060;5091;;200;REGISTER$' || fail "user0002 (5091) got no 200 to REGISTER"
has '^[^;]*;5060;5091;INVITE;' || fail "INVITE not forwarded to user0002 (5091) (see $OUT/kamailio.log)"
has '^[^;]*;5060;5081;;200;INVITE$' || fail "caller got no 200 to INVITE: call not established"
has '^[^;]*;5060;5091;ACK;' || fail "ACK not forwarded to user0002"
has '^[^;]*;5060;(5081|5091);BYE;' || fail "no BYE forwarded by Kamailio"
has '^[^;]*;5060;(5081|5091);;200;BYE$' || fail "BYE not answered 200 (via Kamailio)"

# ---- ng, as Kamailio sent it and the relay answered
python3 "$NGC" pcap "$CAP" --port $NG_PORT >"$OUT/ng-pcap.txt" 2>&1
echo "--- ng control messages on udp/$NG_PORT (Kamailio <-> relay)"; cat "$OUT/ng-pcap.txt"
NGS=$(tail -1 "$OUT/ng-pcap.txt")
ngv() { echo "$NGS" | grep -o " $1=[0-9]*" | cut -d= -f2; }
[ "$(ngv offer)" -ge 1 ] 2>/dev/null || fail "Kamailio sent no ng offer to the relay ($NGS)"
[ "$(ngv answer)" -ge 1 ] 2>/dev/null || fail "Kamailio sent no ng answer to the relay ($NGS)"
[ "$(ngv delete)" -ge 1 ] 2>/dev/null || fail "Kamailio sent no ng delete to the relay on BYE ($NGS)"
[ "$(ngv error)" = 0 ] || fail "the relay answered $(ngv error) ng request(s) from Kamailio with an error ($NGS; see $OUT/ng-pcap.txt)"
[ "$(ngv unanswered)" = 0 ] || fail "the relay left $(ngv unanswered) ng request(s) from Kamailio unanswered ($NGS)"

# ---- media through the relay
RC=$(python3 "$INTEG_DIR/relay_capture.py" "$CAP" --relay $NG_RELAY_PORTS --sip-port 5060 --min "$MIN_RTP" \
  --label "baresip<->baresip via Kamailio+$NG_TARGET") ; rcr=$?
echo "--- media"; echo "$RC"
[ $rcr = 0 ] || fail "$(echo "$RC" | tail -1)"
A2R=$(tshark -r "$CAP" -Y "udp.srcport >= 40000 && udp.srcport < 40200 && udp.dstport >= ${NG_RELAY_PORTS%-*} && udp.dstport <= ${NG_RELAY_PORTS#*-}" 2>/dev/null | wc -l)
R2A=$(tshark -r "$CAP" -Y "udp.dstport >= 40000 && udp.dstport < 40200 && udp.srcport >= ${NG_RELAY_PORTS%-*} && udp.srcport <= ${NG_RELAY_PORTS#*-}" 2>/dev/null | wc -l)
echo "packets phones -> relay ports: $A2R, relay ports -> phones: $R2A"

# ---- the relay's own counters (ng query during the call)
echo "--- the relay's view (ng list/query polled during the call)"; cat "$OUT/ng-watch.txt"
W=$(tail -1 "$OUT/ng-watch.txt")
wv() { echo "$W" | grep -o " $1=[0-9]*" | cut -d= -f2; }
[ "$(wv calls)" = 1 ] || fail "the relay's ng list showed $(wv calls) call(s) during the call, want 1 ($W)"
[ "$(wv max_rtp_packets)" -ge $((2 * MIN_RTP)) ] 2>/dev/null \
  || fail "the relay's ng query totals: RTP packets $(wv max_rtp_packets), want >= $((2 * MIN_RTP)) ($W)"
[ "$(wv gone)" = 1 ] || fail "the call is still in the relay's ng list after the BYE's delete ($W)"
if [ "$NG_TARGET" = rvoip ]; then
  echo "--- relay log (ng/relay lines)"
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/relay.log" | grep -iE 'ng|relay|call' | head -30
  grep -qi 'panicked' "$OUT/relay.log" && fail "rvoip-server log has a panic (see $OUT/relay.log)"
fi

# ---- audio
REC_A=$(ls "$B"/a.rec/dump-*-dec.wav 2>/dev/null | tail -1)
REC_B=$(ls "$B"/b.rec/dump-*-dec.wav 2>/dev/null | tail -1)
[ -n "$REC_A" ] || fail "user0001 recorded nothing (no dump-*-dec.wav in $B/a.rec; see $B/a.log)"
[ -n "$REC_B" ] || fail "user0002 recorded nothing (no dump-*-dec.wav in $B/b.rec; see $B/b.log)"
TA=$(tone_check "$REC_B" $TONE_A "a->b: user0002 heard" --min-seconds 2 --also $TONE_B) || fail "$TA"
TB=$(tone_check "$REC_A" $TONE_B "b->a: user0001 heard" --min-seconds 2 --also $TONE_A) || fail "$TB"
echo "$TA"; echo "$TB"

[ $ALIVE_RELAY = 1 ] || fail "$RELAY_NAME died during the test (see $OUT/relay.log)"
[ $PING_AFTER = 0 ] || fail "$RELAY_NAME does not answer ng ping after the call"
[ $ALIVE_KAM = 1 ] || fail "Kamailio died during the test (see $OUT/kamailio.log)"
echo "kamailio-ng ($NG_TARGET): call through Kamailio + $RELAY_NAME: ng $(ngv offer) offer/$(ngv answer) answer/$(ngv delete) delete all ok; RTP via relay ports phones->relay $A2R, relay->phones $R2A; relay totals RTP $(wv max_rtp_packets) packets; tones heard both ways"
