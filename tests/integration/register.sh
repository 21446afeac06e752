#!/usr/bin/env bash
# register: 1000 AORs REGISTER with digest auth (401 -> 200), 0 failures;
# then 9 REGISTERs with a wrong password must all be answered 401 again (the 10th failure from one
# source would ban it: auth_fail_limit, see tests/integration/sipvicious.sh).
set -u
. "$(dirname "$0")/lib.sh"

sipp_fg reg "$PROXY" -sf "$SC/register_auth.xml" -inf "$USERS_CSV" -au bench -ap secret \
  -i $LOCAL_IP -p 5062 -r 200 -m 1000 -l 1000
R=$(check_run reg $? 1000) || fail "REGISTER with valid digest: $R"

sipp_fg wrongpw "$PROXY" -sf "$SC/register_wrongpw.xml" -inf "$USERS_CSV" -au bench -ap not-the-password \
  -i $LOCAL_IP -p 5062 -r 50 -m 9 -l 9
R=$(check_run wrongpw $? 9) || fail "REGISTER with wrong password not re-challenged with 401: $R"
echo "1000 registered, 9 wrong-password REGISTERs re-challenged"
