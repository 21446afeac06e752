#!/usr/bin/env bash
# Compiles the generated Kotlin bindings (OUT/uniffi/rvoip/rvoip.kt) with the JetBrains Kotlin
# compiler, together with the README's Kotlin snippet and tests/bindings/kotlin/EndToEnd.kt, and
# runs EndToEnd on the JVM against target/debug/librvoip_uniffi.so through JNA.
#
#   tests/bindings/kotlin.sh [OUT]      (OUT defaults to target/bindings/kotlin)
#
# Kotlin: the npm package kotlin-compiler (JetBrains' kotlinc distribution, with
# kotlinx-coroutines and kotlin-stdlib jars in lib/); Debian's kotlin 1.3 is too old for
# UniFFI's output. JNA: Debian libjna-java. Java: the machine's JDK (default-jdk-headless).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
gen=${1:-$root/target/bindings/kotlin}
KOTLIN_VERSION=2.4.20
work=$root/target/kotlin
mkdir -p "$work"

need=()
command -v javac >/dev/null || need+=(default-jdk-headless)
[ -f /usr/share/java/jna.jar ] || need+=(libjna-java)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
K=$work/kotlin-compiler-$KOTLIN_VERSION
if [ ! -x "$K/bin/kotlinc" ]; then
    (cd "$work" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null &&
        rm -rf package && tar xzf "kotlin-compiler-$KOTLIN_VERSION.tgz" && rm -rf "$K" && mv package "$K")
fi
"$K/bin/kotlinc" -version 2>&1 | head -1
CP=/usr/share/java/jna.jar:$K/lib/kotlinx-coroutines-core-jvm.jar

python3 - "$work/Readme.kt" <<'PY'
import re, sys
text = open("README.md", encoding="utf-8").read()
section = text.split("## Use from Kotlin", 1)[1].split("\n## ", 1)[0]
code = re.findall(r"```kotlin\n(.*?)```", section, re.S)
assert code, "no kotlin snippet under 'Use from Kotlin'"
# The snippet is a file of its own: its imports stay, it gets a package so names do not clash.
open(sys.argv[1], "w").write("package readme\n\n" + code[0])
PY
rm -rf "$work/classes"
start=$(date +%s)
"$K/bin/kotlinc" -nowarn -jvm-target 17 -cp "$CP" -d "$work/classes" \
    "$gen/uniffi/rvoip/rvoip.kt" "$work/Readme.kt" tests/bindings/kotlin/EndToEnd.kt
echo "kotlinc: rvoip.kt + README snippet + EndToEnd.kt compiled in $(( $(date +%s) - start )) s"
timeout 120 java -Djna.library.path="$root/target/debug" \
    -cp "$work/classes:$CP:$K/lib/kotlin-stdlib.jar" EndToEndKt
