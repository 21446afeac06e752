#!/usr/bin/env bash
# fork: AOR "uas" has two bindings (127.0.0.1:5070 and 127.0.0.1:5072). Each INVITE must be forked to
# both (parallel forking). 5070 (uas_fork_fast.xml) rings and answers 200 after 300 ms; 5072
# (uas_cancel.xml) rings and must receive the proxy's CANCEL, answer 487 and get the ACK.
# The UAC sees exactly the one 200 and completes ACK/BYE. 10 calls.
set -u
. "$(dirname "$0")/lib.sh"
N=${CALLS:-10}

R=$(register_contact reg_uas1 uas 5070) || fail "REGISTER uas -> 127.0.0.1:5070 failed: $R"
R=$(register_contact reg_uas2 uas 5072) || fail "REGISTER uas -> 127.0.0.1:5072 failed: $R"
sipp_bg uas_fast -sf "$SC/uas_fork_fast.xml" -i $LOCAL_IP -p 5070 -m "$N"
FAST=$SIPP_BG_PID
sipp_bg uas_slow -sf "$SC/uas_cancel.xml" -i $LOCAL_IP -p 5072 -m "$N"
SLOW=$SIPP_BG_PID
wait_udp_port 5070 && wait_udp_port 5072 || fail "SIPp UAS did not bind 5070/5072"

sipp_fg uac "$PROXY" -sf "$SC/uac_proxy_auth_txn.xml" -s uas -au bench -ap secret -i $LOCAL_IP -p 5062 \
  -m "$N" -r 2 -l 20 -d 200 -default_behaviors all,-abortunexp
UACRC=$?
wait $FAST; FASTRC=$?
wait $SLOW; SLOWRC=$?
R=$(check_run uac $UACRC "$N") || fail "UAC: $R"
R=$(check_run uas_fast $FASTRC "$N") || fail "answering branch (5070): $R"
R=$(check_run uas_slow $SLOWRC "$N") || fail "ringing branch (5072) did not get INVITE+CANCEL+ACK for every call: $R"
# exactly one 200 for the INVITE reached the UAC per call (retransmissions of the same 200 aside):
# count distinct To-tags on 200/INVITE responses
TAGS=$(awk -v RS='-----------------------------------------------' '/received/ && /SIP\/2.0 200/ && /CSeq: 2 INVITE/' "$OUT/uac.msg" \
  | grep -i '^To:' | sort -u | wc -l)
[ "$TAGS" = "$N" ] || fail "UAC saw $TAGS distinct 200 (INVITE) dialogs for $N calls"
echo "$N forked calls: one branch answered, the other was CANCELled"
