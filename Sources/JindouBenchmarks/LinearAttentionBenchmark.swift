import Foundation
import JindouBalancing
import JindouModel
import JindouNumerics

/// `jindouctl bench linear-attention`: one decode token's token mixers in Qwen3-Next-80B-A3B's
/// shape (36 Gated DeltaNet layers and 12 gated full-attention layers) against Qwen3-30B-A3B's
/// (48 full-attention layers) at each context length, and the memory one sequence holds by
/// context length. The linear layer's cost is its projections plus one pass over its fixed
/// state (32 heads × 128 × 128 fp32 = 2 MiB); the full-attention layers read the whole cache.
/// Weights are random (bf16), caches random rows: the work does not depend on the values.
public struct LinearAttentionBenchmark {
    /// Context lengths, repetitions, and where the synthetic checkpoints are written.
    public typealias Options = SparseAttentionBenchmark.Options

    public struct Row: Codable, Sendable {
        public var context: Int
        /// Qwen3-Next: one linear layer's and one full-attention layer's decode step.
        public var linearLayerSeconds: Double
        public var nextFullLayerSeconds: Double
        /// Qwen3-30B-A3B: one attention layer's decode step.
        public var qwen3LayerSeconds: Double
        /// Every token mixer of one decode token (36 + 12 layers; 48 layers).
        public var nextMixersSeconds: Double
        public var qwen3MixersSeconds: Double
        /// What one sequence of this length holds (cache and state, fp32).
        public var nextSequenceBytes: Int
        public var qwen3SequenceBytes: Int
    }

    public struct Report: Codable, Sendable {
        public var machine: String
        public var date: String
        public var threads: Int
        public var nextLinearLayers: Int
        public var nextFullLayers: Int
        public var qwen3Layers: Int
        /// Fixed state of one sequence (every linear layer), and cache bytes per token.
        public var nextFixedStateBytes: Int
        public var nextBytesPerToken: Int
        public var qwen3BytesPerToken: Int
        public var rows: [Row]
        /// Memory per sequence at more context lengths (exact, from the descriptions).
        public var memory: [MemoryPoint]
    }

    public struct MemoryPoint: Codable, Sendable {
        public var context: Int
        public var nextBytes: Int
        public var qwen3Bytes: Int
    }

    let options: Options

    public init(options: Options) { self.options = options }

    public func run(log: (String) -> Void) throws -> Report {
        let next = try model("qwen3-next-80b-a3b", layers: 4, log: log)   // layers 0–2 linear, 3 full
        let qwen3 = try model("qwen3-30b-a3b", layers: 1, log: log)
        let nd = next.description, qd = qwen3.description
        let linearLayer = try require(nd.linearAttentionLayers.firstIndex(of: true))
        let fullLayer = try require(nd.linearAttentionLayers.firstIndex(of: false))
        let nextLinear = 36, nextFull = 12, qwen3Layers = 48  // the full models' layer counts
        var random = SplitMix64(seed: 11)
        func unit() -> Float { SparseAttentionBenchmark.uniform(&random) * 2 - 1 }
        let input = (0..<nd.hiddenSize).map { _ in unit() }
        func best(_ body: () -> Void) -> Double { SparseAttentionBenchmark.fastest(options.repetitions, body) }
        /// A cache of `context` random rows in every layer of rows.
        func filled(_ model: DecoderModel, _ context: Int) -> KVCache {
            let cache = model.makeCache()
            cache.reserve(context + 1)
            let widths = model.description.keyValueCacheWidths
            for l in 0..<model.description.cacheLayerCount where !model.description.isLinearAttentionLayer(l) {
                let keys = cache.keys(layer: l), values = cache.values(layer: l)
                for i in 0..<(context * widths.keys) { keys[i] = unit() }
                for i in 0..<(context * widths.values) { values[i] = unit() }
            }
            cache.commit(context)
            return cache
        }
        var rows: [Row] = []
        for context in options.contexts {
            let nextCache = filled(next, context), qwen3Cache = filled(qwen3, context)
            let linear = best { _ = next.mixerDecodeStep(layer: linearLayer, input: input, cache: nextCache) }
            let full = best { _ = next.mixerDecodeStep(layer: fullLayer, input: input, cache: nextCache) }
            let dense = best { _ = qwen3.mixerDecodeStep(layer: 0, input: input, cache: qwen3Cache) }
            let row = Row(context: context, linearLayerSeconds: linear, nextFullLayerSeconds: full, qwen3LayerSeconds: dense,
                          nextMixersSeconds: Double(nextLinear) * linear + Double(nextFull) * full,
                          qwen3MixersSeconds: Double(qwen3Layers) * dense,
                          nextSequenceBytes: Self.sequenceBytes(nd, layers: (nextLinear, nextFull), context: context),
                          qwen3SequenceBytes: qd.keyValueCacheBytesPerToken * qwen3Layers * context)
            log(String(format: "context %6d: Qwen3-Next linear %.2f ms, full %.2f ms (mixers %.1f ms); Qwen3-30B layer %.2f ms (mixers %.1f ms)",
                       context, linear * 1000, full * 1000, row.nextMixersSeconds * 1000, dense * 1000, row.qwen3MixersSeconds * 1000))
            rows.append(row)
        }
        let memory = [1024, 4096, 8192, 16384, 32768, 65536, 131072, 262144].map {
            MemoryPoint(context: $0, nextBytes: Self.sequenceBytes(nd, layers: (nextLinear, nextFull), context: $0),
                        qwen3Bytes: qd.keyValueCacheBytesPerToken * qwen3Layers * $0)
        }
        let perLinearLayer = nd.linearAttention!.stateFloats * MemoryLayout<Float>.size
        return Report(machine: ClusterBenchmark.machine, date: ISO8601DateFormatter().string(from: Date()), threads: Parallelism.threads,
                      nextLinearLayers: nextLinear, nextFullLayers: nextFull, qwen3Layers: qwen3Layers,
                      nextFixedStateBytes: perLinearLayer * nextLinear,
                      nextBytesPerToken: nd.keyValueCacheBytesPerToken * nextFull, qwen3BytesPerToken: qd.keyValueCacheBytesPerToken * qwen3Layers,
                      rows: rows, memory: memory)
    }

    /// One sequence of the full Qwen3-Next: every linear layer's state plus the full layers' rows.
    static func sequenceBytes(_ d: ModelDescription, layers: (linear: Int, full: Int), context: Int) -> Int {
        d.linearAttention!.stateFloats * MemoryLayout<Float>.size * layers.linear
            + d.keyValueCacheBytesPerToken * layers.full * context
    }

    /// A synthetic checkpoint of `preset` with `layers` layers, 8 experts (the mixers are what
    /// is timed) and a small vocabulary.
    func model(_ preset: String, layers: Int, log: (String) -> Void) throws -> DecoderModel {
        let shape = SyntheticModelShape.presets[preset]!
        var config = try JSONSerialization.jsonObject(with: Data(shape.configJSON.utf8)) as! [String: Any]
        config[preset.hasPrefix("qwen3-next") ? "num_experts" : "num_local_experts"] = 8
        config["num_experts_per_tok"] = 2
        let json = String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self)
        let directory = options.directory + "/" + preset
        if !FileManager.default.fileExists(atPath: directory + "/model.safetensors.index.json") {
            log("writing a \(layers)-layer \(preset) checkpoint to \(directory)")
            try SyntheticCheckpoint.write(shape: SyntheticModelShape(name: preset + "-mixers", configJSON: json), layers: layers,
                                          dtype: .bfloat16, directory: directory, vocabularySize: 256)
        }
        let checkpoint = try Checkpoint(directory: directory)
        return try DecoderModel(description: ModelDescription(checkpoint: checkpoint), checkpoint: checkpoint)
    }
}

private func require<T>(_ value: T?) throws -> T {
    guard let value else { throw CheckpointError.badConfig(path: "benchmark", field: "layer_types", reason: "no such layer") }
    return value
}

extension LinearAttentionBenchmark.Report {
    public var markdown: String {
        func mib(_ b: Int) -> String { String(format: "%.1f", Double(b) / 1_048_576) }
        var lines = [
            "## Linear attention: decode cost and memory by context (`jindouctl bench linear-attention`)",
            "",
            "Qwen3-Next-80B-A3B's token mixers (\(nextLinearLayers) Gated DeltaNet layers: 16 q/k heads and 32 value heads of 128,",
            "a conv of 4; \(nextFullLayers) gated full-attention layers: 16 heads over 2 key/value heads of 256) against",
            "Qwen3-30B-A3B's (\(qwen3Layers) layers: 32 heads over 4 of 128), one decode token each, bf16 weights, fp32 caches",
            "of random rows; the per-model totals are the measured layers × the full models' layer counts (experts and",
            "the rest of the step are the same work at every context and left out). Machine: \(machine), \(threads) kernel",
            "thread(s). Run: \(date).",
            "",
            "| context | Qwen3-Next linear layer ms | Qwen3-Next full layer ms | Qwen3-Next mixers ms | Qwen3-30B layer ms | Qwen3-30B mixers ms | Qwen3-30B ÷ Qwen3-Next | Qwen3-Next MiB / sequence | Qwen3-30B MiB / sequence |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows {
            lines.append(String(format: "| %d | %.2f | %.2f | %.1f | %.2f | %.1f | %.2f | ", r.context, r.linearLayerSeconds * 1000,
                                r.nextFullLayerSeconds * 1000, r.nextMixersSeconds * 1000, r.qwen3LayerSeconds * 1000,
                                r.qwen3MixersSeconds * 1000, r.qwen3MixersSeconds / r.nextMixersSeconds)
                         + "\(mib(r.nextSequenceBytes)) | \(mib(r.qwen3SequenceBytes)) |")
        }
        lines += [
            "",
            "Memory per sequence (fp32, as the scheduler budgets it): Qwen3-Next holds \(mib(nextFixedStateBytes)) MiB of fixed",
            "state (every linear layer's conv history and 32 × 128 × 128 recurrent state) plus \(nextBytesPerToken / 1024) KiB per",
            "token (its \(nextFullLayers) full layers); Qwen3-30B-A3B \(qwen3BytesPerToken / 1024) KiB per token.",
            "",
            "| context | Qwen3-Next MiB | Qwen3-30B-A3B MiB |",
            "|---|---|---|",
        ]
        for m in memory { lines.append("| \(m.context) | \(mib(m.nextBytes)) | \(mib(m.qwen3Bytes)) |") }
        lines += ["", "![memory per sequence by context](benchmarks/linear-attention-memory.png)"]
        return lines.joined(separator: "\n")
    }

    /// Memory per sequence against context (log₂ x axis), one polyline per model.
    public var memoryPlot: RGBImage {
        let next: (UInt8, UInt8, UInt8) = (40, 90, 170), dense: (UInt8, UInt8, UInt8) = (230, 130, 40)
        let left = 80, top = 60, plotWidth = 560, plotHeight = 300
        var image = RGBImage(width: left + plotWidth + 40, height: top + plotHeight + 60)
        image.draw("MEMORY PER SEQUENCE (MIB) BY CONTEXT", x: left, y: 10)
        image.fill(x: left, y: 36, width: 10, height: 10, color: next)
        image.draw("QWEN3-NEXT-80B-A3B", x: left + 14, y: 37, scale: 1)
        image.fill(x: left + 160, y: 36, width: 10, height: 10, color: dense)
        image.draw("QWEN3-30B-A3B", x: left + 174, y: 37, scale: 1)
        let largest = Double(memory.map { max($0.nextBytes, $0.qwen3Bytes) }.max() ?? 1)
        let lo = log2(Double(memory.first?.context ?? 1)), hi = log2(Double(memory.last?.context ?? 2))
        func point(_ context: Int, _ bytes: Int) -> (Int, Int) {
            let x = left + Int(Double(plotWidth) * (log2(Double(context)) - lo) / max(hi - lo, 1))
            let y = top + plotHeight - Int(Double(plotHeight) * Double(bytes) / largest)
            return (x, y)
        }
        image.fill(x: left, y: top + plotHeight, width: plotWidth, height: 1, color: (0, 0, 0))
        image.fill(x: left, y: top, width: 1, height: plotHeight, color: (0, 0, 0))
        image.draw(String(format: "%.0f", largest / 1_048_576), x: 8, y: top, scale: 1)
        image.draw("0", x: 8, y: top + plotHeight - 8, scale: 1)
        for (series, color) in [(memory.map { ($0.context, $0.nextBytes) }, next), (memory.map { ($0.context, $0.qwen3Bytes) }, dense)] {
            for (a, b) in zip(series, series.dropFirst()) {
                let (x0, y0) = point(a.0, a.1), (x1, y1) = point(b.0, b.1)
                let steps = max(abs(x1 - x0), abs(y1 - y0), 1)
                for s in 0...steps {
                    image.fill(x: x0 + (x1 - x0) * s / steps - 1, y: y0 + (y1 - y0) * s / steps - 1, width: 3, height: 3, color: color)
                }
            }
            for (context, bytes) in series {
                let (x, y) = point(context, bytes)
                image.fill(x: x - 3, y: y - 3, width: 7, height: 7, color: color)
            }
        }
        for m in memory {
            let (x, _) = point(m.context, 0)
            image.draw(m.context >= 1024 ? "\(m.context / 1024)K" : "\(m.context)", x: x - 8, y: top + plotHeight + 8, scale: 1)
        }
        image.draw("CONTEXT (TOKENS)", x: left + plotWidth / 2 - 50, y: top + plotHeight + 28, scale: 1)
        return image
    }
}
