#!/usr/bin/env bash
# cancel: CANCEL while ringing. UAS "uas" (127.0.0.1:5070) sends 180 and never answers; the
# authenticated UAC sends CANCEL after 0.5 s. UAC must get 200 (CANCEL) + 487 (INVITE) and ACK;
# UAS must get the forwarded CANCEL and the proxy's ACK for its 487. 20 calls.
set -u
. "$(dirname "$0")/lib.sh"
N=${CALLS:-20}

R=$(register_contact reg_uas uas 5070) || fail "REGISTER uas -> 127.0.0.1:5070 failed: $R"
sipp_bg uas -sf "$SC/uas_cancel.xml" -i $LOCAL_IP -p 5070 -m "$N"
UAS=$SIPP_BG_PID
wait_udp_port 5070 || fail "SIPp UAS did not bind 5070"

sipp_fg uac "$PROXY" -sf "$SC/uac_cancel_auth.xml" -s uas -au bench -ap secret -i $LOCAL_IP -p 5062 \
  -m "$N" -r 10 -l 50 -default_behaviors all,-abortunexp
UACRC=$?
wait $UAS; UASRC=$?
R=$(check_run uac $UACRC "$N") || fail "UAC (200 to CANCEL, 487): $R"
R=$(check_run uas $UASRC "$N") || fail "UAS (CANCEL forwarded, ACK for 487): $R"
echo "$N calls cancelled while ringing"
