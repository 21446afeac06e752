#!/usr/bin/env bash
# Builds RvoipFFI.xcframework (static librvoip_uniffi for macOS arm64+x86_64, iOS arm64 and the
# iOS simulator arm64+x86_64, each with rvoipFFI.h and module.modulemap) and generates
# Sources/Rvoip/rvoip.swift, so that `swift build` / `swift run softphone` and Xcode work.
# Runs on macOS with Xcode and rustup. Opus needs libopus built for each target, so the
# Apple builds use G.722, PCMU and PCMA only (cargo features: audio-device, no opus).
#
#   ./build-xcframework.sh            # all platforms
#   ./build-xcframework.sh macos      # macOS only (faster while developing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
which=${1:-all}

macos=(aarch64-apple-darwin x86_64-apple-darwin)
ios=(aarch64-apple-ios)
sim=(aarch64-apple-ios-sim x86_64-apple-ios)
targets=("${macos[@]}")
[ "$which" = all ] && targets+=("${ios[@]}" "${sim[@]}")

rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
    cargo build --release -p rvoip-uniffi --no-default-features --features audio-device --target "$t"
done

# Swift sources, header and module map, from the host (macOS) build's metadata.
cargo build --release -p uniffi-bindgen
gen=$root/target/swift-gen
rm -rf "$gen"
target/release/uniffi-bindgen generate --library "target/${macos[0]}/release/librvoip_uniffi.a" \
    --language swift --out-dir "$gen"
cp "$gen/rvoip.swift" "$here/Sources/Rvoip/rvoip.swift"
headers=$root/target/swift-headers
rm -rf "$headers" && mkdir -p "$headers"
cp "$gen/rvoipFFI.h" "$headers/"
cp "$gen/rvoipFFI.modulemap" "$headers/module.modulemap"

# One fat library per platform.
lipo_to() { # out, targets...
    local out=$1; shift
    mkdir -p "$(dirname "$out")"
    lipo -create $(for t in "$@"; do echo "target/$t/release/librvoip_uniffi.a"; done) -output "$out"
}
libs=()
lipo_to target/apple/macos/librvoip_uniffi.a "${macos[@]}"
libs+=(-library target/apple/macos/librvoip_uniffi.a -headers "$headers")
if [ "$which" = all ]; then
    lipo_to target/apple/ios/librvoip_uniffi.a "${ios[@]}"
    lipo_to target/apple/ios-sim/librvoip_uniffi.a "${sim[@]}"
    libs+=(-library target/apple/ios/librvoip_uniffi.a -headers "$headers")
    libs+=(-library target/apple/ios-sim/librvoip_uniffi.a -headers "$headers")
fi
rm -rf "$here/RvoipFFI.xcframework"
xcodebuild -create-xcframework "${libs[@]}" -output "$here/RvoipFFI.xcframework"
echo "built $here/RvoipFFI.xcframework and Sources/Rvoip/rvoip.swift; now: cd examples-swift && swift run softphone --help"
