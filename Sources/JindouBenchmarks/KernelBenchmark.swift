import Dispatch
import Foundation
import JindouModel
import JindouNumerics

/// `jindouctl bench kernels`: how close the expert GEMV kernels run to this machine's
/// memory-bandwidth roofline, per weight format and thread count, measured in one run.
///
/// - Read bandwidth: a STREAM-like pass (SIMD sum) over a buffer far larger than the
///   caches, with the same threads; the best of several passes.
/// - Kernels: one decode step's worth of expert matrices of the chosen shape (gate, up
///   and down of `experts` experts; by default Qwen3-30B-A3B's 2048 → 768 → 2048), each
///   multiplied with one token (and with 4), rows split over the threads, best of several
///   passes over the whole set, so every weight comes from memory. Achieved GB/s = weight
///   bytes ÷ time; the ratio to the measured read bandwidth is the roofline fraction.
///
/// Block formats: any of `BlockFormat`'s (q4_0 … mxfp4). Where Jindou can encode the format,
/// one expert's matrices are quantised from random floats and their bytes copied into every
/// expert (each expert has its own memory, so nothing is cache-resident; quantising hundreds
/// of MB with the reference encoders would take minutes); the IQ1/IQ2/IQ3 grid formats,
/// which need an importance matrix to encode, get random bytes (their kernels' speed does
/// not depend on the values).
public struct KernelBenchmark: Sendable {
    public struct Options: Sendable {
        public var hidden: Int
        public var intermediate: Int
        public var experts: Int
        public var threads: [Int]
        public var formats: [String]
        public var repetitions: Int
        /// Token counts multiplied per matrix (1: decode; more: a prefill tile).
        public var tokens: [Int]

        public init(hidden: Int = 2048, intermediate: Int = 768, experts: Int = 48, threads: [Int] = [1, 2],
                    formats: [String] = ["bf16", "f16", "q8_0", "q4_k"], repetitions: Int = 5, tokens: [Int] = [1, 4]) {
            self.hidden = hidden
            self.intermediate = intermediate
            self.experts = experts
            self.threads = threads
            self.formats = formats
            self.repetitions = repetitions
            self.tokens = tokens
        }
    }

    public struct Result: Codable, Sendable {
        public var format: String
        public var threads: Int
        public var tokens: Int
        public var weightBytes: Int
        public var seconds: Double
        public var gigabytesPerSecond: Double
        /// Achieved ÷ measured read bandwidth at the same thread count.
        public var rooflineFraction: Double
        /// Weights multiplied per second (÷ 1e9), the compute side of the same figure.
        public var gigaweightsPerSecond: Double
    }

    public struct Report: Codable, Sendable {
        public var machine: String
        public var date: String
        public var shape: String
        public var readBandwidth: [String: Double]
        public var results: [Result]
    }

    public let options: Options
    public init(options: Options) { self.options = options }

    public func run(progress: (String) -> Void = { _ in }) throws -> Report {
        var bandwidth: [String: Double] = [:]
        for t in options.threads {
            bandwidth[String(t)] = Self.readBandwidth(threads: t, repetitions: min(options.repetitions, 10))
            progress(String(format: "read bandwidth, %d thread(s): %.1f GB/s", t, bandwidth[String(t)]! / 1e9))
        }
        var results: [Result] = []
        for name in options.formats {
            let matrices = try makeExperts(format: name)
            let bytes = matrices.reduce(0) { $0 + $1.byteCount }
            let weights = matrices.reduce(0) { $0 + $1.rows * $1.columns }
            for t in options.threads {
                for tokens in options.tokens {
                    let seconds = Self.time(matrices, tokens: tokens, threads: t, repetitions: options.repetitions)
                    let rate = Double(bytes) / seconds
                    results.append(Result(format: name, threads: t, tokens: tokens, weightBytes: bytes, seconds: seconds,
                                          gigabytesPerSecond: rate / 1e9, rooflineFraction: rate / bandwidth[String(t)]!,
                                          gigaweightsPerSecond: Double(weights) / seconds / 1e9))
                    progress(String(format: "%@ × %d token(s), %d thread(s): %.1f GB/s (%.0f%% of read bandwidth)",
                                    name, tokens, t, rate / 1e9, 100 * rate / bandwidth[String(t)]!))
                }
            }
        }
        return Report(machine: ClusterBenchmark.machine, date: ISO8601DateFormatter().string(from: Date()),
                      shape: "\(options.experts) experts × (gate \(options.intermediate)×\(options.hidden), up \(options.intermediate)×\(options.hidden), down \(options.hidden)×\(options.intermediate))",
                      readBandwidth: bandwidth, results: results)
    }

    /// The gate, up and down matrices of `experts` experts in `format`, random contents.
    func makeExperts(format: String) throws -> [WeightMatrix] {
        var matrices: [WeightMatrix] = []
        var generator = SplitMix64(seed: 7)
        let shapes = [(options.intermediate, options.hidden), (options.intermediate, options.hidden), (options.hidden, options.intermediate)]
        // Quantised formats: one expert encoded from random floats, copied into every expert.
        var prototypes: [WeightMatrix]?
        if let blockFormat = try Self.blockFormat(format), blockFormat.canQuantize {
            prototypes = try shapes.map { try Self.quantizedPrototype(rows: $0.0, columns: $0.1, format: blockFormat, generator: &generator) }
        }
        for _ in 0..<options.experts {
            for (index, (rows, columns)) in shapes.enumerated() {
                if let prototypes {
                    let prototype = prototypes[index]
                    let storage = OwnedBytes(byteCount: prototype.byteCount)
                    storage.pointer.copyMemory(from: prototype.rowPointer(0), byteCount: prototype.byteCount)
                    matrices.append(WeightMatrix(rows: rows, columns: columns, quantized: prototype.blockFormat!,
                                                 base: UnsafeRawPointer(storage.pointer), owner: storage))
                } else {
                    matrices.append(try Self.randomMatrix(rows: rows, columns: columns, format: format, generator: &generator))
                }
            }
        }
        return matrices
    }

    /// The block format a `--formats` name spells (`q4_k`, `Q4_K`, `iq4_xs` …); nil for bf16/f16;
    /// an error for anything else.
    static func blockFormat(_ name: String) throws -> BlockFormat? {
        if name == "bf16" || name == "f16" { return nil }
        guard let format = BlockFormat(rawValue: name.lowercased()) else {
            throw BenchmarkError("unknown format '\(name)' (bf16, f16, or a block format: "
                                 + BlockFormat.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
        return format
    }

    /// A `rows × columns` matrix of random floats (a spread like trained weights) encoded in `format`.
    static func quantizedPrototype(rows: Int, columns: Int, format: BlockFormat, generator: inout SplitMix64) throws -> WeightMatrix {
        guard format.rowBytes(columns: columns) != nil else {
            throw BenchmarkError("\(format.rawValue) needs columns divisible by \(format.blockSize), got \(columns)")
        }
        let values = (0..<(rows * columns)).map { _ in
            // A sum of uniforms: bell-shaped, with occasional larger values.
            Float(Int(generator.next() % 2001) + Int(generator.next() % 2001) - 2000) * 1e-5
        }
        return WeightMatrix(rows: rows, columns: columns, float32: values).quantized(format)
    }

    static func randomMatrix(rows: Int, columns: Int, format: String, generator: inout SplitMix64) throws -> WeightMatrix {
        func fill(_ storage: OwnedBytes) {
            let words = storage.pointer.bindMemory(to: UInt64.self, capacity: storage.byteCount / 8)
            for i in 0..<(storage.byteCount / 8) { words[i] = generator.next() }
        }
        if let blockFormat = try blockFormat(format) {
            guard let rowBytes = blockFormat.rowBytes(columns: columns) else {
                throw BenchmarkError("\(format) needs columns divisible by \(blockFormat.blockSize), got \(columns)")
            }
            let storage = OwnedBytes(byteCount: (rows * rowBytes + 7) / 8 * 8)
            fill(storage)
            return WeightMatrix(rows: rows, columns: columns, quantized: blockFormat, base: UnsafeRawPointer(storage.pointer), owner: storage)
        }
        let storage = OwnedBytes(byteCount: rows * columns * 2)
        let halves = storage.pointer.bindMemory(to: UInt16.self, capacity: rows * columns)
        for i in 0..<(rows * columns) {
            let value = Float(Int(generator.next() % 2001) - 1000) * 2e-5
            halves[i] = format == "bf16" ? BFloat16Conversion.bits(from: value) : Float16(value).bitPattern
        }
        return WeightMatrix(rows: rows, columns: columns, dtype: format == "bf16" ? .bfloat16 : .float16,
                            base: UnsafeRawPointer(storage.pointer), owner: storage)
    }

    /// Best time of `repetitions` passes multiplying every matrix with `tokens` tokens,
    /// rows split over `threads` threads.
    static func time(_ matrices: [WeightMatrix], tokens: Int, threads: Int, repetitions: Int) -> Double {
        let columns = matrices.map(\.columns).max()!
        let rows = matrices.map(\.rows).max()!
        let x = (0..<(tokens * columns)).map { Float(($0 % 17) - 8) * 0.01 }
        let outputs = (0..<threads).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: tokens * rows) }
        defer { outputs.forEach { $0.deallocate() } }
        var best = Double.infinity
        x.withUnsafeBufferPointer { xp in
            for _ in 0..<(repetitions + 1) {  // the first pass warms up
                let start = ContinuousClock.now
                runConcurrently(threads) { thread in
                    for weight in matrices {
                        let share = (weight.rows + threads - 1) / threads
                        let range = (thread * share)..<min(weight.rows, (thread + 1) * share)
                        // Each thread writes its own buffer: no false sharing, nothing allocated.
                        linearRows(xp.baseAddress!, tokens: tokens, weight: weight, rows: range, into: outputs[thread],
                                   outputStride: weight.rows)
                    }
                }
                best = min(best, (ContinuousClock.now - start).seconds)
            }
        }
        return best
    }

    /// STREAM-like read bandwidth in bytes/s: `threads` threads each sum their part of a
    /// 1 GiB buffer with SIMD loads; the best of `repetitions` passes.
    /// Read bandwidth (bytes/s) with `threads` threads: the best of `repetitions` passes.
    static func readBandwidth(threads: Int, repetitions: Int) -> Double {
        BandwidthProbe.measure(threads: threads, passes: repetitions).best
    }
}

/// A STREAM-like read-bandwidth probe: SIMD sums over a 1 GiB buffer (far beyond the caches),
/// split over the threads. One pass on a shared host can read half of what the machine does
/// on a quiet moment, so a roofline taken from one pass can be exceeded; the probe keeps the
/// best of several passes as the machine's bandwidth and reports the spread, so a reader can
/// tell a quiet measurement from a noisy one.
public struct BandwidthProbe: Codable, Sendable, Equatable {
    /// Bytes/s of the fastest, median and slowest pass.
    public var best: Double
    public var median: Double
    public var worst: Double
    public var passes: Int

    /// best ÷ median above this means the machine was too noisy for one pass to be trusted.
    public static let noisySpread = 1.25

    public var isNoisy: Bool { best / max(median, 1) > Self.noisySpread }

    /// The better of two measurements (e.g. the run's first probe and a row's own).
    public func merged(_ other: BandwidthProbe) -> BandwidthProbe {
        BandwidthProbe(best: max(best, other.best), median: max(median, other.median), worst: min(worst, other.worst),
                       passes: passes + other.passes)
    }

    public static func measure(threads: Int, passes: Int) -> BandwidthProbe {
        let count = 1 << 28  // floats: 1 GiB
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        for i in stride(from: 0, to: count, by: 1024) { buffer[i] = 1 }  // touch every page
        let sink = UnsafeMutablePointer<Float>.allocate(capacity: threads * 16)
        defer { sink.deallocate() }
        var rates: [Double] = []
        for pass in 0..<(max(1, passes) + 1) {
            let start = ContinuousClock.now
            runConcurrently(threads) { thread in
                let share = count / threads
                let base = UnsafeRawPointer(buffer + thread * share)
                var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
                var i = 0
                while i + 64 <= share {
                    a0 += base.load(fromByteOffset: i * 4, as: SIMD16<Float>.self)
                    a1 += base.load(fromByteOffset: i * 4 + 64, as: SIMD16<Float>.self)
                    a2 += base.load(fromByteOffset: i * 4 + 128, as: SIMD16<Float>.self)
                    a3 += base.load(fromByteOffset: i * 4 + 192, as: SIMD16<Float>.self)
                    i += 64
                }
                sink[thread * 16] = (a0 + a1 + a2 + a3).sum()
            }
            // The first pass warms the buffer's TLB entries and is not counted.
            if pass > 0 { rates.append(Double(count * 4) / (ContinuousClock.now - start).seconds) }
        }
        rates.sort()
        return BandwidthProbe(best: rates.last!, median: rates[rates.count / 2], worst: rates.first!, passes: rates.count)
    }
}

extension KernelBenchmark.Report {
    /// The markdown section for docs/benchmarks.md.
    public var markdown: String {
        var lines = [
            "## Kernels on \(ClusterBenchmark.processor(machine)): expert GEMV against the read-bandwidth roofline (`jindouctl bench kernels`)",
            "",
            "Machine: \(machine). Run: \(date). Weights: \(shape), every pass reads them all from memory.",
            "Read bandwidth measured in the same run (STREAM-like SIMD sum over 1 GiB): "
                + readBandwidth.keys.sorted().map { String(format: "%.1f GB/s with %@ thread(s)", readBandwidth[$0]! / 1e9, $0) }
                .joined(separator: ", ") + ".",
            "",
            "| format | bytes/weight | threads | tokens | weight GB/s | % of read bandwidth | Gweights/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results {
            let perWeight = Double(r.weightBytes) / (r.gigaweightsPerSecond * 1e9 * r.seconds)
            lines.append(String(format: "| %@ | %.4f | %d | %d | %.1f | %.0f%% | %.2f |", r.format, perWeight, r.threads, r.tokens,
                                r.gigabytesPerSecond, r.rooflineFraction * 100, r.gigaweightsPerSecond))
        }
        return lines.joined(separator: "\n")
    }
}
