#!/usr/bin/env bash
# register: 1000 AORs REGISTER with digest auth (401 -> 200), 0 failures;
# then 50 REGISTERs with a wrong password must all be answered 401 again.
set -u
. "$(dirname "$0")/lib.sh"

sipp_fg reg "$PROXY" -sf "$SC/register_auth.xml" -inf "$USERS_CSV" -au bench -ap secret \
  -i $LOCAL_IP -p 5062 -r 200 -m 1000 -l 1000
R=$(check_run reg $? 1000) || fail "REGISTER with valid digest: $R"

sipp_fg wrongpw "$PROXY" -sf "$SC/register_wrongpw.xml" -inf "$USERS_CSV" -au bench -ap not-the-password \
  -i $LOCAL_IP -p 5062 -r 50 -m 50 -l 50
R=$(check_run wrongpw $? 50) || fail "REGISTER with wrong password not re-challenged with 401: $R"
echo "1000 registered, 50 wrong-password REGISTERs re-challenged"
