#!/usr/bin/env bash
# Coverage-guided fuzzing of every cargo-fuzz target in fuzz/ (libFuzzer, one worker each).
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 30 s, all targets)
#
# Builds the targets (release, debug assertions and overflow checks on, no sanitizer: stable
# toolchain), runs each for SECONDS_PER_TARGET on its committed seeds (fuzz/seeds/<target>) and
# its local corpus (fuzz/corpus/<target>, gitignored, grown by every run), and prints per target
# the executions and the coverage (libFuzzer's cov: edges and ft: features). A crash leaves its
# input in fuzz/artifacts/<target>/ and makes the script exit non-zero; replay it with
#   fuzz/target/x86_64-unknown-linux-gnu/release/<target> fuzz/artifacts/<target>/crash-...
# or under `cargo test -p rvoip-sdk --test fuzz_replay` once it is committed there.
# Environment: FUZZ_SANITIZER=address for an ASan build (needs RUSTC_BOOTSTRAP=1 on stable);
# FUZZ_NO_BUILD=1 runs the binaries built before (fuzz/target) without rebuilding.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT/fuzz"
SECS=${1:-30}
shift || true
SAN=${FUZZ_SANITIZER:-none}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz missing: installing it"
  cargo install cargo-fuzz --locked || cargo install cargo-fuzz || { echo "cannot install cargo-fuzz"; exit 2; }
fi

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cd fuzz_targets && ls *.rs | sed 's/\.rs$//' | sort)
fi

# Longest input per target: datagram-sized for SIP and media, scripts for the stateful ones.
max_len() {
  case $1 in
    sip_message) echo 65536 ;;
    sdp) echo 16384 ;;
    digest) echo 4096 ;;
    bencode) echo 16384 ;;
    ng) echo 65536 ;;
    rtp_rtcp | srtp | dtls) echo 16384 ;;
    server_core) echo 65536 ;;
    *) echo 65536 ;;
  esac
}

if [ "${FUZZ_NO_BUILD:-0}" = 1 ]; then
  echo "using the fuzz targets built before (FUZZ_NO_BUILD=1)"
else
  echo "building fuzz targets (sanitizer: $SAN)"
  if ! cargo fuzz build -s "$SAN" >build.log 2>&1; then
    tail -40 build.log
    echo "FAIL: cargo fuzz build"
    exit 2
  fi
fi
BIN="$ROOT/fuzz/target/x86_64-unknown-linux-gnu/release"

# One fuzzing process per target, in the foreground (one worker: libFuzzer's -jobs=1 would
# fork a child that logs to ./fuzz-0.log instead, clobbered by concurrent runs).
failed=()
printf '\n%-12s %12s %8s %8s %8s %s\n' target execs cov ft corpus result
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="corpus/$t.log"
  "$BIN/$t" "corpus/$t" "seeds/$t" \
    -max_total_time="$SECS" -rss_limit_mb=2048 -max_len="$(max_len "$t")" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  # libFuzzer's last status line: "#N  DONE  cov: C ft: F corp: K/..." (or the last pulse).
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
  [ -n "$execs" ] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(ls "corpus/$t" | wc -l)
  if [ $rc -ne 0 ]; then
    result="CRASH rc=$rc: $(grep -oE 'artifacts/[^ ]+' "$log" | tail -1)"
    failed+=("$t")
  else
    result=ok
  fi
  printf '%-12s %12s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corp" "$result"
  echo "$(date -u +%FT%TZ) $t secs=$SECS execs=${execs:-?} cov=${cov:-?} ft=${ft:-?} corpus=$corp rc=$rc" >>runs.log
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAIL: crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/corpus/<target>.log)"
  exit 1
fi
echo "all ${#TARGETS[@]} targets ran ${SECS}s each without a crash"
