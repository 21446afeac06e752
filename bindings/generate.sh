#!/usr/bin/env bash
# Generates the Swift (rvoip.swift + rvoipFFI.h + rvoipFFI.modulemap), Kotlin
# (uniffi/rvoip/rvoip.kt) and Python (rvoip.py) sources of the UniFFI bindings from the built
# librvoip_uniffi, in library mode.
#
#   bindings/generate.sh [OUT_DIR] [--release]
#
# OUT_DIR defaults to target/bindings; it gets swift/, kotlin/ and python/ subfolders.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bindings
profile=debug
flag=
for a in "$@"; do
    case "$a" in
        --release) profile=release; flag=--release ;;
        *) out=$a ;;
    esac
done
cargo build $flag -p rvoip-uniffi -p uniffi-bindgen
lib=target/$profile/librvoip_uniffi.so
[ "$(uname)" = Darwin ] && lib=target/$profile/librvoip_uniffi.dylib
for lang in swift kotlin python; do
    rm -rf "$out/$lang"
    "target/$profile/uniffi-bindgen" generate --library "$lib" --language "$lang" \
        --out-dir "$out/$lang" --no-format
done
echo "generated: $out/swift $out/kotlin $out/python"
