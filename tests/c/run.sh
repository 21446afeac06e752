#!/usr/bin/env bash
# The C ABI checks: builds the release library (cargo build --release -p rvoip-ffi) and its
# pkg-config file (ffi/rvoip-pc.sh), compiles the C smoke tests (tests/c/smoke_*.c) with
# gcc -std=c11 and g++ -x c++ (-Wall -Wextra -Werror) against both librvoip.a and librvoip.so
# and runs all of them, runs them again under valgrind (release .so) and AddressSanitizer +
# LeakSanitizer (shared and static), checks that both tools do catch a deliberate leak, builds
# examples-c with make and CMake (shared and static), places a call between the examples
# (server + two softphones: DTMF and both tones checked), and compiles the "Use from C" snippet
# of examples-c/README.md as written. Exits non-zero, naming every failed step, on any failure.
#
# Installs missing tools (cmake, valgrind, g++, pkg-config) with apt-get when run as root.
# Builds and logs go to target/c-tests/ (logs/ has one file per run).
set -u
set -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=$ROOT/target/c-tests
LOGS=$OUT/logs
LIBDIR=$ROOT/target/release
START=$(date +%s)
FAILED=()
TESTS=(smoke_call smoke_badargs smoke_reentrant smoke_tls smoke_message smoke_dns smoke_transfer smoke_presence smoke_stats smoke_reload)
CWARN=(-Wall -Wextra -Werror)

step() { printf '\n---- %s\n' "$*"; }
fail() { echo "FAIL: $*"; FAILED+=("$*"); }
# Prints the tail of a log (after a failure).
show() { echo "     (last lines of $1)"; tail -n "${2:-25}" "$1" | sed 's/^/     | /'; }

step "tools"
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v cmake >/dev/null || need+=(cmake)
command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
  echo "missing: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
      { apt-get update >/dev/null && apt-get install -y "${need[@]}"; } ||
      { echo "FAIL: apt-get install ${need[*]}"; exit 1; }
  else
    echo "FAIL: not root: install ${need[*]} (apt-get install -y ${need[*]}) and re-run"
    exit 1
  fi
fi
echo "gcc $(gcc -dumpfullversion), $(cmake --version | head -1), $(valgrind --version), pkg-config $(pkg-config --version)"
mkdir -p "$OUT" "$LOGS"
rm -f "$LOGS"/*.log

step "cargo build --release -p rvoip-ffi"
if ! cargo build --release -p rvoip-ffi; then
  echo "FAIL: cargo build --release -p rvoip-ffi (nothing else can run)"
  exit 1
fi
for f in librvoip.so librvoip.a; do
  [ -f "$LIBDIR/$f" ] || { echo "FAIL: $LIBDIR/$f missing after the build"; exit 1; }
done

step "pkg-config file (ffi/rvoip-pc.sh)"
export PKG_CONFIG_PATH=$LIBDIR${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
WANT_VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -1)
if ffi/rvoip-pc.sh && pkg-config --exists rvoip; then
  # (echo: without pkg-config's trailing blanks)
  PC_CFLAGS=$(echo $(pkg-config --cflags rvoip))
  PC_LIBS=$(echo $(pkg-config --libs rvoip))
  STATICLIB=$(pkg-config --variable=staticlib rvoip)
  # Libs.private without the -lrvoip of Libs (the archive is named explicitly).
  NATIVE=$(echo $(pkg-config --static --libs-only-l rvoip | sed 's/\(^\| \)-lrvoip\b//'))
  echo "cflags: $PC_CFLAGS"
  echo "libs: $PC_LIBS"
  echo "static: $STATICLIB $NATIVE"
  [ "$(pkg-config --modversion rvoip)" = "$WANT_VERSION" ] || fail "rvoip.pc version $(pkg-config --modversion rvoip) != $WANT_VERSION"
  [ "$PC_CFLAGS" = "-I$ROOT/include" ] || fail "rvoip.pc Cflags '$PC_CFLAGS' != -I$ROOT/include"
  [ "$STATICLIB" = "$LIBDIR/librvoip.a" ] || fail "rvoip.pc staticlib '$STATICLIB' != $LIBDIR/librvoip.a"
else
  echo "FAIL: ffi/rvoip-pc.sh / pkg-config rvoip (nothing else can be linked)"
  exit 1
fi

# cc_variant NAME SRC: compiles SRC as variant NAME (c-shared, c-static, cxx-shared,
# cxx-static, asan-shared, asan-static) into $OUT/bin/<base>.<NAME>.
mkdir -p "$OUT/bin"
cc_variant() {
  local v=$1 src=$2 base exe
  base=$(basename "$src" .c)
  exe=$OUT/bin/$base.$v
  local shared=($PC_LIBS "-Wl,-rpath,$LIBDIR")
  local static=("$STATICLIB" $NATIVE)
  local cmd
  case $v in
    c-shared)    cmd=(gcc -std=c11 "${CWARN[@]}" -O1 -g $PC_CFLAGS "$src" -o "$exe" "${shared[@]}" -lpthread -lm) ;;
    c-static)    cmd=(gcc -std=c11 "${CWARN[@]}" -O1 -g $PC_CFLAGS "$src" -o "$exe" "${static[@]}") ;;
    cxx-shared)  cmd=(g++ -x c++ "${CWARN[@]}" -O1 -g $PC_CFLAGS "$src" -x none -o "$exe" "${shared[@]}" -lpthread -lm) ;;
    cxx-static)  cmd=(g++ -x c++ "${CWARN[@]}" -O1 -g $PC_CFLAGS "$src" -x none -o "$exe" "${static[@]}") ;;
    asan-shared) cmd=(gcc -std=c11 "${CWARN[@]}" -O1 -g -fsanitize=address -fno-omit-frame-pointer $PC_CFLAGS "$src" -o "$exe" "${shared[@]}" -lpthread -lm) ;;
    asan-static) cmd=(gcc -std=c11 "${CWARN[@]}" -O1 -g -fsanitize=address -fno-omit-frame-pointer $PC_CFLAGS "$src" -o "$exe" "${static[@]}") ;;
  esac
  if ! "${cmd[@]}" > "$LOGS/build.$base.$v.log" 2>&1; then
    fail "compile $base ($v): ${cmd[*]}"
    show "$LOGS/build.$base.$v.log"
    return 1
  fi
}

step "compile the smoke tests: gcc -std=c11 and g++ -x c++ (-Wall -Wextra -Werror) x static/shared, + ASan"
for t in "${TESTS[@]}"; do
  for v in c-shared c-static cxx-shared cxx-static asan-shared asan-static; do
    cc_variant "$v" "tests/c/$t.c" && echo "ok   $t.$v"
  done
done
cc_variant c-shared tests/c/leak_control.c && cc_variant asan-shared tests/c/leak_control.c
gcc -std=c11 "${CWARN[@]}" -O1 $PC_CFLAGS tests/c/wav_tone.c -o "$OUT/bin/wav_tone" -lm -lpthread ||
  fail "compile tests/c/wav_tone.c"

# run_test NAME EXE [PREFIX...]: runs EXE (bounded by timeout) with a log; checks it passed.
run_test() {
  local name=$1 exe=$2
  shift 2
  local log=$LOGS/$name.log t0 rc
  t0=$(date +%s.%N)
  timeout -k 5 240 "$@" "$exe" > "$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q '^PASS ' "$log"; then
    printf 'PASS %-34s %5.1f s\n' "$name" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
  else
    fail "$name (exit $rc$([ $rc -eq 124 ] && echo ': timed out'))"
    show "$log"
  fi
}

step "run the smoke tests (4 builds each)"
for t in "${TESTS[@]}"; do
  for v in c-shared c-static cxx-shared cxx-static; do
    [ -x "$OUT/bin/$t.$v" ] && run_test "$t.$v" "$OUT/bin/$t.$v"
  done
done
grep -h '^alice: \|^bob: ' "$LOGS/smoke_call.c-shared.log" 2>/dev/null | sed 's/^/     /'

step "valgrind (release librvoip.so): no errors, no definite leaks"
VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-fds=no)
# Narrow, commented entries for third-party code only (see the file).
[ -f tests/c/valgrind.supp ] && VG+=(--suppressions="$ROOT/tests/c/valgrind.supp")
for t in "${TESTS[@]}"; do
  exe=$OUT/bin/$t.c-shared
  [ -x "$exe" ] || continue
  run_test "$t.valgrind" "$exe" env RVOIP_TEST_TIME_SCALE=3 "${VG[@]}" --log-file="$LOGS/$t.valgrind.vg.log"
  summary=$(grep -h 'ERROR SUMMARY\|definitely lost\|possibly lost\|still reachable' "$LOGS/$t.valgrind.vg.log" | sed 's/^==[0-9]*== *//' | tr '\n' ';')
  echo "     valgrind: ${summary:-no leak summary}"
  grep -q 'ERROR SUMMARY: 0 errors' "$LOGS/$t.valgrind.vg.log" || { fail "$t under valgrind: errors"; show "$LOGS/$t.valgrind.vg.log" 40; }
done

step "AddressSanitizer + LeakSanitizer (shared and static librvoip)"
# No suppressions are needed today; tests/c/lsan.supp is used if it exists (narrow, commented
# entries for the Rust runtime only).
LSAN_SUPP=
[ -f tests/c/lsan.supp ] && LSAN_SUPP=":suppressions=$ROOT/tests/c/lsan.supp"
for t in "${TESTS[@]}"; do
  for v in asan-shared asan-static; do
    [ -x "$OUT/bin/$t.$v" ] || continue
    run_test "$t.$v" "$OUT/bin/$t.$v" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
      LSAN_OPTIONS="print_suppressions=0$LSAN_SUPP"
    if grep -q 'ERROR: \(Address\|Leak\)Sanitizer' "$LOGS/$t.$v.log"; then
      fail "$t ($v): sanitizer report"
      show "$LOGS/$t.$v.log" 40
    fi
  done
done

step "negative control: both tools report a deliberate leak"
if [ -x "$OUT/bin/leak_control.c-shared" ]; then
  "${VG[@]}" --log-file="$LOGS/leak_control.vg.log" "$OUT/bin/leak_control.c-shared" > /dev/null 2>&1
  rc=$?
  if [ $rc -eq 99 ] && grep -q 'definitely lost' "$LOGS/leak_control.vg.log"; then
    echo "ok   valgrind reports the leak: $(grep -h 'definitely lost:' "$LOGS/leak_control.vg.log" | sed 's/^==[0-9]*== *//')"
  else
    fail "valgrind did not report the deliberate leak (exit $rc)"
  fi
fi
if [ -x "$OUT/bin/leak_control.asan-shared" ]; then
  ASAN_OPTIONS=detect_leaks=1 "$OUT/bin/leak_control.asan-shared" > "$LOGS/leak_control.asan.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && grep -q 'detected memory leaks' "$LOGS/leak_control.asan.log"; then
    echo "ok   LeakSanitizer reports the leak: $(grep -h '^SUMMARY' "$LOGS/leak_control.asan.log")"
  else
    fail "LeakSanitizer did not report the deliberate leak (exit $rc)"
  fi
fi

step "examples-c: make (shared, static) and CMake (shared, static)"
for link in shared static; do
  if make -C examples-c BUILD="$OUT/make-$link" LINK="$link" > "$LOGS/make-$link.log" 2>&1; then
    echo "ok   make LINK=$link"
  else
    fail "make -C examples-c LINK=$link"
    show "$LOGS/make-$link.log"
  fi
done
for link in shared static; do
  static=OFF
  [ $link = static ] && static=ON
  if cmake -S examples-c -B "$OUT/cmake-$link" -DRVOIP_STATIC=$static > "$LOGS/cmake-$link.log" 2>&1 &&
     cmake --build "$OUT/cmake-$link" >> "$LOGS/cmake-$link.log" 2>&1; then
    echo "ok   cmake -DRVOIP_STATIC=$static: $(grep -h -- '-- rvoip:' "$LOGS/cmake-$link.log" | sed 's/^-- //')"
  else
    fail "cmake examples-c (RVOIP_STATIC=$static)"
    show "$LOGS/cmake-$link.log"
  fi
done
if [ -x "$OUT/make-shared/softphone" ]; then
  readelf -d "$OUT/make-shared/softphone" | grep -q 'NEEDED.*librvoip' || fail "make LINK=shared: softphone does not use librvoip.so"
fi
if [ -x "$OUT/make-static/softphone" ]; then
  readelf -d "$OUT/make-static/softphone" | grep -q 'NEEDED.*librvoip' && fail "make LINK=static: softphone still needs librvoip.so"
fi

step "examples-c: a call between the examples (server + two softphones)"
SERVER=$OUT/make-static/server ALICE=$OUT/make-shared/softphone BOB=$OUT/cmake-shared/softphone
if [ -x "$SERVER" ] && [ -x "$ALICE" ] && [ -x "$BOB" ] && [ -x "$OUT/bin/wav_tone" ]; then
  E=$OUT/example-call
  rm -rf "$E" && mkdir -p "$E"
  "$SERVER" --listen udp:127.0.0.1:0 --users alice:secret,bob:secret --seconds 40 > "$E/server.log" 2>&1 &
  SPID=$!
  PORT=
  for _ in $(seq 50); do
    PORT=$(sed -n 's/^udp port //p' "$E/server.log")
    [ -n "$PORT" ] && break
    sleep 0.1
  done
  if [ -z "$PORT" ]; then
    fail "example server did not print its port"
    show "$E/server.log"
  else
    echo "server on udp port $PORT"
    common=(--password secret --server "127.0.0.1:$PORT" --listen 127.0.0.1:0)
    timeout -k 5 40 "$BOB" --account sip:bob@127.0.0.1 "${common[@]}" --auto-answer \
      --play tone:1000 --record "$E/bob.wav" > "$E/bob.log" 2>&1 &
    BPID=$!
    for _ in $(seq 50); do grep -q '^registered' "$E/bob.log" && break; sleep 0.1; done
    timeout -k 5 40 "$ALICE" --account sip:alice@127.0.0.1 "${common[@]}" --call sip:bob@127.0.0.1 \
      --play tone:440 --record "$E/alice.wav" --dtmf '123#' --duration 2 > "$E/alice.log" 2>&1
    arc=$?
    wait $BPID
    brc=$?
    [ $arc -eq 0 ] || { fail "example softphone (caller) exit $arc"; show "$E/alice.log"; }
    [ $brc -eq 0 ] || { fail "example softphone (--auto-answer) exit $brc"; show "$E/bob.log"; }
    digits=$(sed -n 's/^DTMF received: //p' "$E/bob.log" | tr -d '\n')
    [ "$digits" = "123#" ] || fail "example call: bob got DTMF '$digits', want 123#"
    grep -q '^call ended: 200' "$E/alice.log" || fail "example call: alice's call did not end with 200"
    "$OUT/bin/wav_tone" "$E/bob.wav" 440 0.9 1000 || fail "example call: bob.wav lacks the 440 Hz tone"
    "$OUT/bin/wav_tone" "$E/alice.wav" 1000 0.9 1000 || fail "example call: alice.wav lacks the 1000 Hz tone"
    echo "     alice: $(grep -h '^media:\|^call ended' "$E/alice.log" | tr '\n' ';')"
    echo "     bob:   DTMF $digits; $(grep -h '^call ended' "$E/bob.log")"
  fi
  kill -INT $SPID 2>/dev/null
  wait $SPID
  grep -q '^stopping (signal)' "$E/server.log" || fail "example server did not stop on SIGINT"
else
  fail "example call skipped: examples or wav_tone not built"
fi

step "examples-c/README.md: the first \`\`\`c block compiles as written"
SNIP=$OUT/readme_snippet.c
awk '/^```c[[:space:]]*$/ { on = 1; next } on && /^```/ { exit } on { print }' examples-c/README.md > "$SNIP"
lines=$(wc -l < "$SNIP")
if [ "$lines" -eq 0 ]; then
  fail "no \`\`\`c block in examples-c/README.md"
else
  [ "$lines" -le 40 ] || fail "the README snippet has $lines lines (> 40)"
  if gcc -std=c11 "${CWARN[@]}" $PC_CFLAGS "$SNIP" -o "$OUT/bin/readme_snippet" $PC_LIBS "-Wl,-rpath,$LIBDIR" > "$LOGS/readme_snippet.log" 2>&1 &&
     gcc -std=c11 "${CWARN[@]}" $PC_CFLAGS "$SNIP" -o "$OUT/bin/readme_snippet.static" "$STATICLIB" $NATIVE >> "$LOGS/readme_snippet.log" 2>&1 &&
     g++ -x c++ "${CWARN[@]}" $PC_CFLAGS "$SNIP" -x none -o "$OUT/bin/readme_snippet.cxx" $PC_LIBS "-Wl,-rpath,$LIBDIR" >> "$LOGS/readme_snippet.log" 2>&1; then
    echo "ok   README snippet ($lines lines): gcc shared + static, g++"
  else
    fail "the README snippet does not compile"
    show "$LOGS/readme_snippet.log"
  fi
fi

step "summary"
echo "tests/c/run.sh took $(( $(date +%s) - START )) s"
if [ ${#FAILED[@]} -eq 0 ]; then
  echo "C ABI: ALL OK"
  exit 0
fi
printf 'FAILED: %s\n' "${FAILED[@]}"
exit 1
