import Foundation
import JindouKernelsGeneric
import JindouNumerics
import JindouTestSupport
import Testing

/// Runtime CPU dispatch: every kernel set this CPU runs computes the same products as a
/// double-precision reference, and the one in use is the most capable supported one.
@Suite("Kernel dispatch")
struct KernelDispatchTests {
    static func floats(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001) / 1_000_000
        }
    }

    /// A matrix of `values` stored as `dtype` (rounded by the dtype's own conversion).
    static func matrix(rows: Int, columns: Int, _ values: [Float], _ dtype: DType) -> WeightMatrix {
        let storage = OwnedBytes(byteCount: rows * columns * dtype.byteSize)
        for (i, v) in values.enumerated() {
            switch dtype {
            case .bfloat16: storage.pointer.storeBytes(of: BFloat16Conversion.bits(from: v), toByteOffset: 2 * i, as: UInt16.self)
            case .float16: storage.pointer.storeBytes(of: Float16(v), toByteOffset: 2 * i, as: Float16.self)
            default: storage.pointer.storeBytes(of: v, toByteOffset: 4 * i, as: Float.self)
            }
        }
        return WeightMatrix(rows: rows, columns: columns, dtype: dtype, base: UnsafeRawPointer(storage.pointer), owner: storage)
    }

    @Test func theMostCapableSupportedSetIsInUse() throws {
        let names = KernelDispatch.all.map { $0.name }
        #expect(names == ["avx512vnni", "avx512", "avxvnni", "avx2", "generic"])
        #expect(KernelDispatch.supported.last?.name == "generic", "the generic kernels run everywhere")
        if ProcessInfo.processInfo.environment["JINDOU_KERNELS"] == nil {
            #expect(KernelDispatch.active.name == KernelDispatch.supported[0].name)
        }
        #if arch(x86_64)
        // /proc/cpuinfo agrees with CPUID on what this machine can run.
        let info = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flags = Set(info.split(separator: "\n").first { $0.hasPrefix("flags") }!.split(separator: " ").map(String.init))
        // The x86-64-v3 / v4 feature sets the modules are compiled for (Linux's flag names: pni = SSE3).
        let avx2 = flags.isSuperset(of: ["pni", "ssse3", "cx16", "sse4_1", "sse4_2", "popcnt", "lahf_lm", "abm",
                                         "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave"])
        let avx512 = avx2 && flags.isSuperset(of: ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"])
        let avxvnni = avx2 && flags.contains("avx_vnni")
        let avx512vnni = avx512 && flags.isSuperset(of: ["avx512_vnni", "avx512vbmi", "avx512_bf16"])
        #expect(KernelDispatch.supported.contains { $0.name == "avx2" } == avx2)
        #expect(KernelDispatch.supported.contains { $0.name == "avx512" } == avx512)
        #expect(KernelDispatch.supported.contains { $0.name == "avxvnni" } == avxvnni)
        #expect(KernelDispatch.supported.contains { $0.name == "avx512vnni" } == avx512vnni)
        #endif
    }

    /// The instruction-set modules compile the generic module's files through symbolic
    /// links; a kernel file added without its links would silently be missing there.
    @Test func everyKernelSourceIsCompiledIntoEverySet() throws {
        let sources = Fixtures.repositoryRoot + "/Sources/"
        let generic = try FileManager.default.contentsOfDirectory(atPath: sources + "JindouKernelsGeneric").sorted()
        #expect(!generic.isEmpty)
        for variant in ["JindouKernelsAVX2", "JindouKernelsAVXVNNI", "JindouKernelsAVX512", "JindouKernelsAVX512VNNI"] {
            let files = try FileManager.default.contentsOfDirectory(atPath: sources + variant).sorted()
            #expect(files == generic, "\(variant)")
            for file in files {
                let target = try FileManager.default.destinationOfSymbolicLink(atPath: sources + variant + "/" + file)
                #expect(target == "../JindouKernelsGeneric/" + file)
            }
        }
    }

    /// Each module's object code uses the instructions it was compiled for (objdump of the
    /// built objects, next to the test bundle): none wider than SSE in the generic one,
    /// AVX2 integer dots and FMA in the AVX2 one, VEX `vpdpbusd` on 256-bit registers in the
    /// AVX-VNNI one, 512-bit registers in the AVX-512 ones and `vpdpbusd`/`vpdpwssd` on them
    /// in the AVX512-VNNI one — whether or not this CPU can run them.
    @Test func eachModuleUsesItsInstructionSet() throws {
        #if arch(x86_64)
        let build = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        var candidates = [build]
        // `swift test` may run the bundle from inside the .xctest directory.
        candidates.append(URL(fileURLWithPath: build).deletingLastPathComponent().path)
        candidates.append(Fixtures.repositoryRoot + "/.build/debug")
        guard let directory = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/JindouKernelsAVX2.build") }) else {
            Issue.record("no JindouKernelsAVX2.build next to the test bundle (looked in \(candidates))")
            return
        }
        func instructions(_ module: String) throws -> String {
            let objects = try FileManager.default.contentsOfDirectory(atPath: "\(directory)/\(module).build")
                .filter { $0.hasSuffix(".o") }.map { "\(directory)/\(module).build/\($0)" }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["objdump", "-d", "--no-show-raw-insn"] + objects
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "objdump (binutils) failed on \(module)")
            return text
        }
        let generic = try instructions("JindouKernelsGeneric")
        #expect(!generic.isEmpty)
        if ProcessInfo.processInfo.environment["JINDOU_TARGET_CPU"] == nil {  // the baseline x86-64
            #expect(!generic.contains("%ymm") && !generic.contains("%zmm"))
        }
        let avx2 = try instructions("JindouKernelsAVX2")
        #expect(avx2.contains("vpmaddubsw") && avx2.contains("vfmadd") && avx2.contains("%ymm") && !avx2.contains("%zmm"))
        let avxvnni = try instructions("JindouKernelsAVXVNNI")
        #expect(avxvnni.contains("{vex} vpdpbusd") && avxvnni.contains("%ymm") && !avxvnni.contains("%zmm"))
        let avx512 = try instructions("JindouKernelsAVX512")
        #expect(avx512.contains("%zmm") && avx512.contains("vfmadd") && !avx512.contains("vpdpbusd"))
        let avx512vnni = try instructions("JindouKernelsAVX512VNNI")
        #expect(avx512vnni.contains("%zmm") && avx512vnni.range(of: #"vpdpbusd [^\n]*%zmm"#, options: .regularExpression) != nil
                && avx512vnni.contains("vpdpwssd"))
        #endif
    }

    @Test("dense row kernels and widening, every supported set", arguments: [DType.float32, .float16, .bfloat16])
    func denseRows(dtype: DType) {
        let (rows, columns) = (13, 200)  // 200: twelve 16-wide tiles and an 8-column tail
        let weight = Self.matrix(rows: rows, columns: columns, Self.floats(rows * columns, seed: 1), dtype)
        let stored = weight.floatValues()
        for tokens in [1, 3, 4, 7] {
            let x = Self.floats(tokens * columns, seed: UInt64(tokens))
            for kernels in KernelDispatch.supported {
                let y = QuantizedLinearTests.rows(kernels, x, tokens: tokens, weight: weight)
                for t in 0..<tokens {
                    for r in 0..<rows {
                        var reference = 0.0
                        for c in 0..<columns { reference += Double(stored[r * columns + c]) * Double(x[t * columns + c]) }
                        #expect(abs(Double(y[t * rows + r]) - reference) <= 1e-5 * max(1, abs(reference)), "\(kernels.name) \(dtype)")
                    }
                }
            }
        }
        for kernels in KernelDispatch.supported {
            var widened = [Float](repeating: .nan, count: 5 * columns)
            widened.withUnsafeMutableBufferPointer { kernels.widenRows(weight, 4..<9, into: $0.baseAddress!) }
            #expect(widened == Array(stored[(4 * columns)..<(9 * columns)]), "\(kernels.name) widening \(dtype)")
        }
    }

    @Test("block formats widen bit for bit like the reference decoder, every supported set", arguments: BlockFormat.allCases.filter(\.canQuantize))
    func blockWidening(format: BlockFormat) {
        let (rows, columns) = (6, 512)
        let weight = WeightMatrix(rows: rows, columns: columns, float32: Self.floats(rows * columns, seed: 9)).quantized(format)
        let reference = weight.floatValues()
        for kernels in KernelDispatch.supported {
            var widened = [Float](repeating: .nan, count: rows * columns)
            widened.withUnsafeMutableBufferPointer { kernels.widenRows(weight, 0..<rows, into: $0.baseAddress!) }
            #expect(widened == reference, "\(kernels.name) \(format)")
        }
    }

    /// At long contexts grouped-query attention runs as two matrix products per key/value head
    /// (`attendGrouped`); it equals the double reference with and without sinks and windows,
    /// and the per-head kernel path it replaces.
    @Test func groupedAttentionAtLongContextsEqualsTheReference() {
        let (heads, kvHeads, d, length) = (8, 2, 32, groupedProductMinimumLength + 77)
        let q = Self.floats(heads * d, seed: 13), k = Self.floats(length * kvHeads * d, seed: 14), v = Self.floats(length * kvHeads * d, seed: 15)
        for (first, sinks) in [(0, nil), (40, [0.4, 3.0, -1.5, 0.0, 1, 2, -2, 0.5] as [Float])] {
            var out = [Float](repeating: .nan, count: heads * d), kernel = out, scores = [Float](repeating: 0, count: length)
            sinks.withOptionalPointer { sinkPointer in
                attendOneToken(query: q, heads: heads, kvHeads: kvHeads, headDimension: d, keys: k, values: v, rowStride: kvHeads * d,
                               first: first, length: length, scale: 0.2, scores: &scores, into: &out, sinks: sinkPointer)
                KernelDispatch.supported[0].attendOneToken(query: q, heads: heads, kvHeads: kvHeads, headDimension: d, keys: k, values: v,
                                       rowStride: kvHeads * d, first: first, length: length, scale: 0.2, scores: &scores, into: &kernel,
                                       valueDimension: d, valueRowStride: kvHeads * d, sinks: sinkPointer)
            }
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                let logits = (first..<length).map { p in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(k[(p * kvHeads + g) * d + $1]) } * 0.2 }
                let sink = sinks.map { Double($0[h]) }
                let m = max(logits.max()!, sink ?? -.infinity), e = logits.map { exp($0 - m) }
                let total = e.reduce(0, +) + (sink.map { exp($0 - m) } ?? 0)
                for i in 0..<d {
                    let expected = (first..<length).enumerated().reduce(0.0) { $0 + e[$1.offset] / total * Double(v[($1.element * kvHeads + g) * d + i]) }
                    #expect(abs(Double(out[h * d + i]) - expected) <= 1e-5, "head \(h) first \(first)")
                    #expect(abs(out[h * d + i] - kernel[h * d + i]) <= 1e-5)
                }
            }
        }
    }

    @Test func attentionAndTransposedProductEverySupportedSet() {
        let (heads, kvHeads, d, length) = (4, 2, 40, 9)
        let q = Self.floats(heads * d, seed: 3), k = Self.floats(length * kvHeads * d, seed: 4), v = Self.floats(length * kvHeads * d, seed: 5)
        // Without and with gpt-oss's sinks (one logit per head joining the denominator; the
        // second head's is large enough to dominate the scores).
        for sinks in [nil, [0.4, 3.0, -1.5, 0.0] as [Float]] {
            var outputs: [String: [Float]] = [:]
            for kernels in KernelDispatch.supported {
                var out = [Float](repeating: .nan, count: heads * d), scores = [Float](repeating: 0, count: length)
                sinks.withOptionalPointer { sinkPointer in
                    kernels.attendOneToken(query: q, heads: heads, kvHeads: kvHeads, headDimension: d, keys: k, values: v,
                                           rowStride: kvHeads * d, first: 2, length: length, scale: 0.3, scores: &scores, into: &out,
                                           valueDimension: d, valueRowStride: kvHeads * d, sinks: sinkPointer)
                }
                outputs[kernels.name] = out
            }
            // Reference in double.
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                let logits = (2..<length).map { p in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(k[(p * kvHeads + g) * d + $1]) } * 0.3 }
                let sink = sinks.map { Double($0[h]) }
                let m = max(logits.max()!, sink ?? -.infinity), e = logits.map { exp($0 - m) }
                let total = e.reduce(0, +) + (sink.map { exp($0 - m) } ?? 0)
                for i in 0..<d {
                    let expected = (2..<length).enumerated().reduce(0.0) { $0 + e[$1.offset] / total * Double(v[($1.element * kvHeads + g) * d + i]) }
                    for (name, out) in outputs {
                        #expect(abs(Double(out[h * d + i]) - expected) <= 1e-5, "\(name) head \(h) sinks \(sinks != nil)")
                    }
                }
            }
        }
        // x · W (untransposed), 3 tokens.
        let (rows, columns, tokens) = (24, 70, 3)
        let weight = Self.matrix(rows: rows, columns: columns, Self.floats(rows * columns, seed: 6), .bfloat16)
        let stored = weight.floatValues(), x = Self.floats(tokens * rows, seed: 7)
        for kernels in KernelDispatch.supported {
            var y = [Float](repeating: .nan, count: tokens * columns)
            kernels.linearTransposed(x, tokens: tokens, inputStride: rows, weight: weight, into: &y, outputStride: columns)
            for t in 0..<tokens {
                for c in 0..<columns {
                    let expected = (0..<rows).reduce(0.0) { $0 + Double(x[t * rows + $1]) * Double(stored[$1 * columns + c]) }
                    #expect(abs(Double(y[t * columns + c]) - expected) <= 1e-5 * max(1, abs(expected)), "\(kernels.name)")
                }
            }
        }
    }
}

extension Optional where Wrapped == [Float] {
    /// The array's storage (nil when there is no array) for the duration of `body`.
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: body(nil)
        case .some(let values): values.withUnsafeBufferPointer { body($0.baseAddress) }
        }
    }
}
