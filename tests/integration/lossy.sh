#!/usr/bin/env bash
# lossy: as "call" but SIPp drops 10% of the messages it sends/receives on both UAC and UAS (-lost 10).
# 100 calls at 20/s; retransmissions (UAC, proxy, UAS) must recover every loss: 0 failed calls.
# The REGISTER of "uas" runs without loss.
set -u
. "$(dirname "$0")/lib.sh"
N=${CALLS:-100}; RATE=${RATE:-20}; SIPP_TIMEOUT=120

R=$(register_contact reg_uas uas 5070) || fail "REGISTER uas -> 127.0.0.1:5070 failed: $R"
sipp_bg uas -sf "$SC/uas_lossy.xml" -i $LOCAL_IP -p 5070 -m "$N" -lost 10 -default_behaviors all,-abortunexp
UAS=$SIPP_BG_PID
wait_udp_port 5070 || fail "SIPp UAS did not bind 5070"

sipp_fg uac "$PROXY" -sf "$SC/uac_proxy_auth_txn.xml" -s uas -au bench -ap secret -i $LOCAL_IP -p 5062 \
  -m "$N" -r "$RATE" -l 200 -lost 10 -default_behaviors all,-abortunexp
UACRC=$?
wait $UAS; UASRC=$?
R=$(check_run uac $UACRC "$N") || fail "UAC with 10% loss: $R"
R=$(check_run uas $UASRC "$N") || fail "UAS with 10% loss: $R"
echo "$N calls ok with 10% loss; UAC retransmissions $(csv_col uac 'Retransmissions(C)'), UAS $(csv_col uas 'Retransmissions(C)')"
