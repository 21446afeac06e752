// swift-tools-version:5.9
// The rvoip Swift package: the generated UniFFI module (`Rvoip`, over the `rvoipFFI` C module in
// RvoipFFI.xcframework) and a command-line softphone. Run ./build-xcframework.sh first: it builds
// the Rust library for macOS and iOS, generates Sources/Rvoip/rvoip.swift and writes the
// xcframework next to this file.
import PackageDescription

let package = Package(
    name: "Rvoip",
    platforms: [.macOS(.v12), .iOS(.v15)],
    products: [
        .library(name: "Rvoip", targets: ["Rvoip"]),
        .executable(name: "softphone", targets: ["Softphone"]),
    ],
    targets: [
        // The static librvoip_uniffi per platform, with rvoipFFI.h and its module map.
        .binaryTarget(name: "rvoipFFI", path: "RvoipFFI.xcframework"),
        // The generated Swift API (uniffi-bindgen); links the system frameworks cpal uses.
        .target(
            name: "Rvoip",
            dependencies: ["rvoipFFI"],
            path: "Sources/Rvoip",
            linkerSettings: [
                .linkedFramework("CoreAudio"),
                .linkedFramework("AudioToolbox"),
                .linkedFramework("CoreFoundation"),
                .linkedFramework("SystemConfiguration"),
                .linkedFramework("Security"),
            ]
        ),
        .executableTarget(name: "Softphone", dependencies: ["Rvoip"], path: "Sources/Softphone"),
    ]
)
