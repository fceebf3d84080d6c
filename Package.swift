// swift-tools-version: 6.1
import Foundation
import PackageDescription

// Kernels are unusable without optimisation (generic SIMD code in a debug build runs
// ~100x slower), so the numerics modules are always compiled optimised, also in debug
// builds and `swift test`. Everything else follows the build configuration.
//
// Runtime CPU dispatch: the hot loops (Sources/JindouKernelsGeneric) are compiled five
// times — for the baseline CPU (JindouKernelsGeneric), x86-64-v3 (AVX2/FMA/F16C/BMI2:
// JindouKernelsAVX2), x86-64-v3 + AVX-VNNI (256-bit `vpdpbusd`: JindouKernelsAVXVNNI),
// x86-64-v4 (AVX-512 F/BW/CD/DQ/VL: JindouKernelsAVX512) and x86-64-v4 + AVX512-VNNI,
// VBMI and BF16 (JindouKernelsAVX512VNNI) — the variants hold symbolic links to the
// generic module's files, and JindouNumerics picks the best one the running CPU supports
// (JINDOU_KERNELS overrides). The variants name feature sets (`-march=x86-64-vN` plus
// explicit extensions) rather than CPU models, so the CPUID check before a set is chosen
// (CJindouSupport/cpu_features.c) covers every feature its compiler may use — a CPU model
// such as skylake-avx512 also enables e.g. PKU and RDSEED, which some VMs hide.
// Swift has no per-function target attributes, so a module per instruction set is how
// one binary carries them all. The rest is compiled for the baseline, JINDOU_TARGET_CPU
// (default: `x86-64`, any 64-bit x86; e.g. `native` to tune everything for this machine).
let targetCPU = ProcessInfo.processInfo.environment["JINDOU_TARGET_CPU"]
#if arch(x86_64)
let baselineCPU: String? = targetCPU ?? "x86-64"
#else
let baselineCPU: String? = targetCPU
#endif
let optimisedKernels: [SwiftSetting] = [
    .unsafeFlags(["-O", "-enforce-exclusivity=unchecked"] + (baselineCPU.map { cpu -> [String] in ["-target-cpu", cpu] } ?? [])),
]
/// The kernel modules: name, compiler flags, defines (JINDOU_AVX2: the x86 SIMD kernels;
/// JINDOU_AVX512: 512-bit registers; JINDOU_VNNI: `vpdpbusd`/`vpdpwssd`; JINDOU_BF16: `vdpbf16ps`).
let kernelVariants: [(name: String, settings: [SwiftSetting])] = {
    let flags = ["-O", "-enforce-exclusivity=unchecked"]
    func features(_ march: String, _ extensions: [String] = []) -> [String] {
        flags + ["-Xcc", "-march=\(march)"] + extensions.flatMap { ["-Xcc", "-m\($0)"] }
    }
    #if arch(x86_64)
    return [
        ("JindouKernelsGeneric", optimisedKernels),
        ("JindouKernelsAVX2", [.unsafeFlags(features("x86-64-v3")), .define("JINDOU_AVX2")]),
        ("JindouKernelsAVXVNNI", [.unsafeFlags(features("x86-64-v3", ["avxvnni"])), .define("JINDOU_AVX2"), .define("JINDOU_VNNI")]),
        ("JindouKernelsAVX512", [.unsafeFlags(features("x86-64-v4")), .define("JINDOU_AVX2"), .define("JINDOU_AVX512")]),
        ("JindouKernelsAVX512VNNI", [.unsafeFlags(features("x86-64-v4", ["avx512vnni", "avx512vbmi", "avx512bf16"])),
                                     .define("JINDOU_AVX2"), .define("JINDOU_AVX512"), .define("JINDOU_VNNI"), .define("JINDOU_BF16")]),
    ]
    #else
    // Other architectures: one baseline copy under each name (the dispatcher never picks
    // the x86 ones there).
    return ["JindouKernelsGeneric", "JindouKernelsAVX2", "JindouKernelsAVXVNNI", "JindouKernelsAVX512", "JindouKernelsAVX512VNNI"]
        .map { ($0, optimisedKernels) }
    #endif
}()

let kernelTargets: [Target] = kernelVariants.map {
    .target(name: $0.name, dependencies: ["JindouTensors", "CJindouSupport"], swiftSettings: $0.settings)
}
let kernelDependencies: [Target.Dependency] = kernelVariants.map { .target(name: $0.name) }

let package = Package(
    name: "Jindou",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "jindouctl", targets: ["jindouctl"]),
        .executable(name: "jindoud", targets: ["jindoud"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C libraries from Debian's -dev packages.
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CPNG",
            pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"])]
        ),
        .systemLibrary(
            name: "CJPEG",
            pkgConfig: "libjpeg",
            providers: [.apt(["libjpeg62-turbo-dev"])]
        ),
        .systemLibrary(
            name: "CIBVerbs",
            pkgConfig: "libibverbs",
            providers: [.apt(["libibverbs-dev"])]
        ),
        .systemLibrary(
            name: "CRDMACM",
            pkgConfig: "librdmacm",
            providers: [.apt(["librdmacm-dev"])]
        ),
        // RDMA endpoints for worker links: thin wrappers over libibverbs' static inline
        // data-path verbs, and the queue pair's set-up and teardown.
        .target(name: "CJindouRDMA", dependencies: ["CIBVerbs", "CRDMACM"]),
        // libpng/libjpeg calls behind return codes: their longjmp error handling must not
        // unwind through Swift frames.
        .target(name: "CJindouImageCodecs", dependencies: ["CPNG", "CJPEG"]),

        // Layer 1: tensors, dtypes, block formats (JindouTensors); the hot loops, compiled
        // once per instruction set (JindouKernels*); linear layers, attention, norms and the
        // runtime choice of kernels (JindouNumerics, which re-exports JindouTensors).
        .target(name: "JindouTensors", dependencies: ["CJindouSupport"], swiftSettings: optimisedKernels),
    ] + kernelTargets + [
        .target(
            name: "JindouNumerics",
            dependencies: ["COpenBLAS", "CJindouSupport", "JindouTensors"] + kernelDependencies,
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
            dependencies: ["JindouNumerics", "JindouRouting", "CJindouSupport", .product(name: "Crypto", package: "swift-crypto")]
        ),

        // Images for vision-language models: PNG/JPEG decoding and Qwen2-VL/Qwen3-VL
        // preprocessing (resize, normalise, patchify). Pixel loops run per pixel, so
        // compiled optimised like the kernels.
        .target(
            name: "JindouImages",
            dependencies: ["CJindouImageCodecs"],
            swiftSettings: optimisedKernels
        ),

        // Text: tokenizer.json BPE tokenizers and chat templates (a Jinja subset).
        .target(name: "JindouTokenizer"),
        .target(name: "JindouTemplates"),

        // Reasoning and tool calls split out of generated text, per family (pure values).
        .target(name: "JindouOutputParsing", dependencies: ["JindouTemplates"]),

        // Structured outputs: JSON schemas compiled to byte matchers and token masks.
        .target(name: "JindouGrammar", dependencies: ["JindouTemplates", "JindouModel"]),

        // Hardware CRC-32C (SSE4.2) with a portable fallback, for frame checksums.
        .target(name: "CJindouSupport"),

        // Layer 4: wire format (generated protobuf header + raw tensor payloads), pure codecs.
        .target(
            name: "JindouWire",
            dependencies: [
                "CJindouSupport", "JindouNumerics", "JindouRouting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Layer 4: transport (TCP on SwiftNIO) behind the `WorkerLink` interface.
        .target(
            name: "JindouTransport",
            dependencies: [
                "JindouWire", "CJindouRDMA", "CIBVerbs",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Placement: which worker hosts which (layer, expert), versioned.
        .target(
            name: "JindouPlacement",
            dependencies: ["JindouModel", "JindouWire"]
        ),
        // The admin API's JSON types (coordinator, workers joining, jindouctl).
        .target(
            name: "JindouAdmin",
            dependencies: [
                "JindouModel", "JindouPlacement", "JindouTransport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // Layer 5: the worker daemon's service.
        .target(
            name: "JindouWorker",
            dependencies: [
                "JindouAdmin", "JindouModel", "JindouNumerics", "JindouPlacement", "JindouTransport", "JindouWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Layer 5: the coordinator: worker pool and the dispatch/combine expert backend.
        .target(
            name: "JindouCoordinator",
            dependencies: [
                "JindouAdmin", "JindouBalancing", "JindouModel", "JindouPlacement", "JindouTransport", "JindouWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Layer 6: serving: continuous batching over the engine.
        .target(
            name: "JindouServing",
            dependencies: ["JindouModel", "JindouRouting", "JindouTokenizer", "JindouTemplates", "JindouImages", .product(name: "Metrics", package: "swift-metrics")]
        ),
        // Layer 6: HTTP API on the coordinator.
        .target(
            name: "JindouServer",
            dependencies: [
                "JindouAdmin", "JindouCoordinator", "JindouModel", "JindouServing", "JindouTokenizer", "JindouTemplates", "JindouOutputParsing", "JindouGrammar",
                "JindouWorker",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // Load balancing, offline: routing traces, synthetic skewed traces, the EPLB-style
        // replication planner, serving-bias simulation and the replayer (docs/balancing.md).
        // Replays loop over millions of routing choices, so compiled optimised like the kernels.
        .target(
            name: "JindouBalancing",
            dependencies: ["JindouModel", "JindouPlacement", "JindouRouting"],
            swiftSettings: optimisedKernels
        ),

        // Benchmarks (`jindouctl bench`): measured runs that write results, never tests.
        .target(
            name: "JindouBenchmarks",
            dependencies: [
                "JindouBalancing", "JindouCoordinator", "JindouModel", "JindouNumerics", "JindouPlacement", "JindouTransport", "JindouServing",
                "JindouWire", "JindouGrammar", "JindouTemplates", .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Flags both executables share.
        .target(
            name: "JindouCommandLine",
            dependencies: ["JindouTransport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Yams", package: "Yams")]
        ),

        // Thin executables.
        .executableTarget(
            name: "jindouctl",
            dependencies: [
                "JindouAdmin", "JindouModel", "JindouRouting", "JindouNumerics", "JindouBenchmarks", "JindouWire", "JindouTransport", "JindouTokenizer", "JindouTemplates",
                "JindouCommandLine", "JindouPlacement", "JindouServing", "JindouBalancing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        .executableTarget(
            name: "jindoud",
            dependencies: [
                "JindouWorker", "JindouCoordinator", "JindouServer", "JindouServing", "JindouPlacement", "JindouModel", "JindouNumerics", "JindouCommandLine", "JindouOutputParsing",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // Fixture paths, golden decoding and process helpers shared by the test targets.
        .target(
            name: "JindouTestSupport",
            dependencies: ["JindouModel", "JindouRouting"],
            path: "Tests/JindouTestSupport"
        ),
        .testTarget(name: "JindouNumericsTests",
                    dependencies: ["JindouNumerics", "JindouTensors", "JindouTestSupport"] + kernelDependencies),
        .testTarget(name: "JindouWireTests", dependencies: ["JindouWire", "JindouNumerics"]),
        .testTarget(name: "JindouServingTests", dependencies: ["JindouServing", "JindouModel", "JindouRouting", "JindouTemplates", "JindouTokenizer", "JindouTestSupport"]),
        .testTarget(name: "JindouTokenizerTests", dependencies: ["JindouTokenizer", "JindouTemplates", "JindouTestSupport"]),
        .testTarget(
            name: "JindouClusterTests",
            dependencies: ["CIBVerbs", "JindouServer", .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Prometheus", package: "swift-prometheus"), "JindouOutputParsing", "JindouGrammar", "JindouAdmin", "JindouBalancing", "JindouBenchmarks", "JindouCoordinator", "JindouImages", "JindouModel", "JindouPlacement", "JindouTransport", "JindouWire", "JindouServing", "JindouTemplates",
                           "JindouTestSupport", .product(name: "Logging", package: "swift-log"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl")]
        ),
        .testTarget(name: "JindouGrammarTests", dependencies: ["JindouGrammar", "JindouTemplates", "JindouModel", "JindouTokenizer", "JindouTestSupport"]),
        .testTarget(name: "JindouOutputParsingTests", dependencies: ["JindouOutputParsing", "JindouTemplates", "JindouTestSupport"]),
        .testTarget(name: "JindouRoutingTests", dependencies: ["JindouRouting", "JindouModel"]),
        .testTarget(name: "JindouBalancingTests", dependencies: ["JindouBalancing", "JindouPlacement", "JindouModel"]),
        .testTarget(name: "JindouImagesTests", dependencies: ["JindouImages", "JindouModel", "JindouTestSupport"]),
        .testTarget(name: "JindouModelTests",
                    dependencies: ["JindouModel", "JindouTestSupport", "JindouTokenizer", "JindouTemplates", "CAllocationCounter", "CJindouSupport"]),
        // Per-thread heap allocation counts for the no-allocation-per-token tests (defines
        // malloc and friends in the test executable only).
        .target(name: "CAllocationCounter", path: "Tests/CAllocationCounter"),
    ],
    swiftLanguageModes: [.v6]
)
