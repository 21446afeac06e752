#!/usr/bin/env bash
# call: SIPp UAS registered as "uas" (127.0.0.1:5070); authenticated SIPp UAC (INVITE -> 407 -> INVITE
# with Proxy-Authorization) calls sip:uas@127.0.0.1:5060: 500 calls at 100 calls/s, 0 failed on both sides.
# The UAS asserts the INVITE has a Record-Route and that INVITE, ACK and BYE arrive with the proxy's Via on top.
set -u
. "$(dirname "$0")/lib.sh"
N=${CALLS:-500}; RATE=${RATE:-100}

R=$(register_contact reg_uas uas 5070) || fail "REGISTER uas -> 127.0.0.1:5070 failed: $R"

sipp_bg uas -sf "$SC/uas_rr_check.xml" -i $LOCAL_IP -p 5070 -m "$N"
UAS=$SIPP_BG_PID
wait_udp_port 5070 || fail "SIPp UAS did not bind 5070"

sipp_fg uac "$PROXY" -sf "$SC/uac_proxy_auth.xml" -s uas -au bench -ap secret -i $LOCAL_IP -p 5062 \
  -m "$N" -r "$RATE" -l $((RATE*4)) -d 100 -default_behaviors all,-abortunexp
UACRC=$?
wait $UAS; UASRC=$?
R=$(check_run uac $UACRC "$N") || fail "UAC: $R"
R=$(check_run uas $UASRC "$N") || fail "UAS (Record-Route/Via assertions): $R"
echo "$N calls ok through the proxy, ACK and BYE record-routed"
