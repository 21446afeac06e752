#!/usr/bin/env bash
# rfc4475: every RFC 4475 torture message over UDP; replies checked against the expectation table in
# rfc4475_udp.py (from conformance/rfc4475/MANIFEST.tsv); then OPTIONS must still get 200.
set -u
. "$(dirname "$0")/lib.sh"
python3 "$(dirname "$0")/rfc4475_udp.py" "$SHARED/conformance/rfc4475" | tee "$OUT/rfc4475.txt"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || fail "$(grep -c '^FAIL' "$OUT/rfc4475.txt") message(s) mishandled: $(grep '^FAIL' "$OUT/rfc4475.txt" | cut -d: -f1 | sed 's/^FAIL //' | tr '\n' ' ')"
