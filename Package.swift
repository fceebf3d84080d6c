// swift-tools-version: 6.1
import Foundation
import PackageDescription

// Kernels are unusable without optimisation (generic SIMD code in a debug build runs
// ~100x slower), so the numerics module is always compiled optimised, also in debug
// builds and `swift test`. Everything else follows the build configuration.
//
// They are also compiled for the building machine's CPU (`-target-cpu native`, like
// llama.cpp's default GGML_NATIVE): on x86-64 the bf16→f32 widening and FMA only
// vectorise with AVX2/F16C/FMA, and the baseline build is ~16x slower. To build binaries
// for other machines set JINDOU_TARGET_CPU (e.g. `x86-64-v3`, or `x86-64` for any).
let targetCPU = ProcessInfo.processInfo.environment["JINDOU_TARGET_CPU"] ?? "native"
let optimisedKernels: [SwiftSetting] = [
    .unsafeFlags(["-O", "-enforce-exclusivity=unchecked", "-target-cpu", targetCPU]),
]

let package = Package(
    name: "Jindou",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "jindouctl", targets: ["jindouctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C libraries from Debian's -dev packages.
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),

        // Layer 1: tensors, dtypes, kernels.
        .target(
            name: "JindouNumerics",
            dependencies: ["COpenBLAS"],
            swiftSettings: optimisedKernels
        ),
        // Layer 2: routing (scores, bias, groups, top-k, elastic experts-per-token).
        .target(
            name: "JindouRouting",
            dependencies: ["JindouNumerics"]
        ),
        // Layer 3: checkpoints, configs, architectures, the single-process engine.
        .target(
            name: "JindouModel",
            dependencies: ["JindouNumerics", "JindouRouting"]
        ),

        // Thin executables.
        .executableTarget(
            name: "jindouctl",
            dependencies: [
                "JindouModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "JindouNumericsTests", dependencies: ["JindouNumerics"]),
        .testTarget(name: "JindouRoutingTests", dependencies: ["JindouRouting", "JindouModel"]),
        .testTarget(
            name: "JindouModelTests",
            dependencies: ["JindouModel"],
            exclude: []
        ),
    ],
    swiftLanguageModes: [.v6]
)
